"""``povsim figures``: every figure builds (at a tiny scale here), carries its provenance, is written atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
import tomllib

import pandas as pd
import pytest
from helpers import REPO, run_cli
from matplotlib.figure import Figure

import povsim
from povsim import figures as F
from povsim.config import ConfigError

EXPERIMENTS = REPO / "experiments"
BENCHMARKS = REPO / "benchmarks"
TINY = F.Scale("tiny", households=300, engine_sizes=(200, 400), numpy_sizes=(200, 400), mesa_sizes=(100,), months=2)
PNG = b"\x89PNG\r\n\x1a\n"


def _seed(file: str) -> int:
    return tomllib.loads((EXPERIMENTS / file).read_text())["seed"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every figure at the tiny scale, and what build_figures logged."""
    out = tmp_path_factory.mktemp("figures") / "docs" / "figures"
    log: list[str] = []
    written = F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, benchmarks=BENCHMARKS, log=log.append)
    return out, written, log


def test_every_figure_is_written_with_the_index(built):
    out, written, _ = built
    assert [p.name for p in written] == [f.file for f in F.FIGURES] + ["index.md"]
    assert sorted(os.listdir(out)) == sorted([f.file for f in F.FIGURES] + ["index.md"])  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    for spec in F.FIGURES:
        data = (out / spec.file).read_bytes()
        assert data[:8] == PNG, spec.file
        assert len(data) > 20_000, f"{spec.file} is suspiciously small"
    for name in [f.file for f in F.FIGURES] + ["index.md"]:
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, f"{name}: not the permissions of a new file"


def test_each_png_carries_its_provenance(built):
    out, _, _ = built
    for spec in F.FIGURES:
        meta = F.read_figure(out / spec.file)
        prov = meta["provenance"]
        assert meta["title"] == spec.title
        assert prov["figure"] == spec.name and prov["number"] == spec.number
        assert prov["povsim_version"] == povsim.__version__
        assert meta["software"] == f"povsim {povsim.__version__}"
        created = dt.datetime.fromisoformat(prov["created"])
        assert abs((dt.datetime.now().astimezone() - created).total_seconds()) < 3600
        assert meta["created"] == prov["created"]
        assert prov["scale"] == "tiny"
        assert [e["file"] for e in prov["experiments"]] == [f"experiments/{f}" for f in spec.experiments]
        for e, file in zip(prov["experiments"], spec.experiments):
            assert e["seed"] == _seed(file)
            assert e["households"] == 300
            assert e["scenarios"][0] == "baseline"
        assert meta["source"] == (", ".join(e["file"] for e in prov["experiments"]) or "measured by povsim figures")


def test_each_caption_names_file_seed_households_version_and_date(built):
    out, _, _ = built
    for spec in F.FIGURES:
        meta = F.read_figure(out / spec.file)
        caption, prov = meta["caption"], meta["provenance"]
        assert caption.startswith(f"Figure {spec.number}. {spec.title}.")
        assert f"povsim {povsim.__version__}" in caption
        assert prov["created"][:10] in caption
        for e in prov["experiments"]:
            assert e["file"] in caption and f"seed {e['seed']}" in caption and "300 households" in caption
    perf = F.read_figure(out / "performance.png")
    assert "Measured by" in perf["caption"] and perf["provenance"]["measured"]["cpu"] in perf["caption"]


def test_the_caption_is_drawn_on_the_figure(tmp_path):
    plot = Figure(figsize=(4, 3))
    plot.subplots().plot([0, 1], [0, 1])
    text = "Figure 9. A test caption. " + "Long enough to wrap onto a second line of the strip. " * 4
    captioned = F.with_caption(plot, text)
    drawn = "\n".join(t.get_text() for t in captioned.texts)
    assert drawn.replace("\n", " ").split() == text.split()
    assert drawn.count("\n") >= 1, "the caption is wrapped to the figure's width"
    width, height = captioned.get_size_inches()
    assert width == pytest.approx(4) and height > 3
    path = F.save_figure(plot, tmp_path / "fig.png", "A title", text, {"povsim_version": "x", "created": "now"})
    from PIL import Image

    with Image.open(path) as image:
        assert image.size[0] == 4 * F.DPI and image.size[1] > 3 * F.DPI


def test_index_is_written_from_the_pngs(built):
    out, _, _ = built
    index = (out / "index.md").read_text()
    assert index == F.index_markdown(out)
    for spec in F.FIGURES:
        meta = F.read_figure(out / spec.file)
        assert f"![{spec.title}]({spec.file})" in index
        assert meta["caption"] in index
        for e in meta["provenance"]["experiments"]:
            assert f"`{e['file']}`: seed {e['seed']}, 300 households" in index
    assert "Not built yet" not in index


def test_index_lists_figures_not_built_yet(tmp_path):
    index = F.index_markdown(tmp_path)
    assert "## Not built yet" in index
    assert all(f"`{f.file}`" in index for f in F.FIGURES)


def test_performance_measures_three_implementations(built):
    out, _, log = built
    prov = F.read_figure(out / "performance.png")["provenance"]
    results = pd.DataFrame(prov["results"])
    assert set(results["implementation"].str.split().str[0]) == {"Engine", "NumPy", "Mesa"}
    assert set(results.loc[results["implementation"].str.startswith("Engine"), "households"]) == {200, 400}
    assert set(results.loc[results["implementation"].str.startswith("Mesa"), "households"]) == {100}
    assert (results["hh_months_per_s"] > 0).all() and (results["bytes_per_household"] > 0).all()
    engine = results[results["implementation"].str.startswith("Engine")]
    threads = prov["measured"]["numba_threads"]
    expected = {"Engine (Numba, 1 thread)"} | ({f"Engine (Numba, {threads} threads)"} if threads > 1 else set())
    assert set(engine["implementation"]) == expected
    assert (engine["bytes_per_household"] >= 56).all(), "at least the 56 bytes of household state"
    assert prov["notes"] == []
    assert prov["measured"]["months"] == 2
    assert any("Mesa model" in line for line in log)


def test_numpy_line_is_left_out_with_a_note_when_the_benchmarks_are_missing(tmp_path):
    out = tmp_path / "figs"
    F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, benchmarks=tmp_path / "nowhere", only=["performance"])
    meta = F.read_figure(out / "performance.png")
    assert not any(r["implementation"].startswith("NumPy") for r in meta["provenance"]["results"])
    (note,) = meta["provenance"]["notes"]
    assert "numpy_step.py not found" in note and note in meta["caption"]
    assert note in (out / "index.md").read_text()


def test_headcount_figure_uses_the_official_figures(built):
    official = F.official_headcount()
    assert list(official["year"]) == list(range(2012, 2021))
    assert official.loc[official["year"] == 2013, "incidence"].item() == 0.085
    assert list(official.loc[official["derived"], "year"]) == [2013, 2015]
    assert "National Bureau of Statistics" in official.attrs["source"]
    out, _, _ = built
    meta = F.read_figure(out / "headcount_vs_official.png")
    assert official.attrs["source"] in meta["caption"]
    assert "2019" in meta["caption"] and "vs 0.6" in meta["caption"]


def test_official_figures_are_a_faithful_copy_of_the_shared_targets():
    shared = REPO.parent / "shared" / "targets" / "china_rural_poverty.toml"
    if not shared.is_file():
        pytest.skip(f"{shared} is not beside this checkout")
    theirs = tomllib.loads(shared.read_text())
    ours = F.official_targets()
    for table in ("national_line", "rural_poor_headcount", "registration_2014"):
        mine = {k: v for k, v in ours[table].items() if k != "derived_years"}
        assert mine == theirs[table], table
    assert "2013 and 2015" in theirs["rural_poor_headcount"]["status"]  # what derived_years writes as data


def test_official_figures_ship_as_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["povsim"]
    assert "data/targets/*.toml" in patterns
    assert (REPO / "povsim" / "data" / "targets" / "china_rural_poverty.toml").is_file()


def test_cost_points_split_identification_from_transfers(built):
    out, _, _ = built
    points = pd.DataFrame(F.read_figure(out / "cost_vs_exclusion.png")["provenance"]["experiments"])
    assert list(points["file"]) == ["experiments/onetime_vs_dynamic.toml", "experiments/channels.toml"]
    exp = povsim.experiments.Experiment.from_file(
        EXPERIMENTS / "onetime_vs_dynamic.toml",
        overrides={"population.households": 300, "simulation.burn_in_years": 1},
    )
    table = F.cost_points({"onetime_vs_dynamic.toml": exp.run()})
    assert list(table["label"]) == ["one-time only", "+ look-back", "+ reviews", "+ channels & hotline"]
    assert (table["identification_cost"] > 0).all()
    assert (table["identification_cost"] < table["total_cost"]).all()
    assert table["exclusion_error"].between(0, 1).all()
    assert not table["hollow"].any()


def test_a_failed_write_leaves_the_old_figure_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        F.save_figure(Figure(figsize=(2, 2)), path, "t", "c", {"povsim_version": "x", "created": "now"})
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["fig.png"]


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="experiments folder not found"):
        F.build_figures(out, scale=TINY, experiments=tmp_path / "missing")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "onetime_vs_dynamic.toml").write_text((EXPERIMENTS / "onetime_vs_dynamic.toml").read_text())
    with pytest.raises(ConfigError, match="channels.toml"):
        F.build_figures(out, scale=TINY, experiments=partial, only=["errors_by_rule", "cost_vs_exclusion"])
    (partial / "channels.toml").write_text('[population]\nhouseholds = "many"\n')
    with pytest.raises(ConfigError, match="population.households"):
        F.build_figures(out, scale=TINY, experiments=partial, only=["errors_by_rule", "cost_vs_exclusion"])
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, only=["nope"])
    assert not out.exists()


def test_scale_households():
    assert F.FULL.households_for(200_000) == 200_000
    assert F.QUICK.households_for(200_000) == 20_000 and F.QUICK.households_for(5_000) == 5_000
    assert TINY.households_for(1_000_000) == 300
    assert max(F.QUICK.engine_sizes) < max(F.FULL.engine_sizes)


def test_cli_figures(tmp_path):
    out = tmp_path / "figs"
    done = run_cli("figures", "--households", "300", "--only", "headcount_vs_official", "--out", str(out), cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["headcount_vs_official.png", "index.md"]
    prov = F.read_figure(out / "headcount_vs_official.png")["provenance"]
    assert prov["command"] == "povsim figures --households 300 --only headcount_vs_official"
    assert prov["experiments"][0]["households"] == 300
    assert str(out / "headcount_vs_official.png") in done.stdout


def test_cli_figures_errors(tmp_path):
    done = run_cli("figures", "--experiments", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 2
    assert "experiments folder not found" in done.stderr and "--experiments" in done.stderr
    assert not (tmp_path / "o").exists()
    done = run_cli("figures", "--only", "nope", cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr
    help_text = run_cli("figures", "--help").stdout
    for option in ("--quick", "--out", "--experiments", "--benchmarks", "--only", "--households"):
        assert option in help_text


def test_committed_figures_are_complete_and_full_scale():
    folder = REPO / "docs" / "figures"
    for spec in F.FIGURES:
        meta = F.read_figure(folder / spec.file)
        prov = meta["provenance"]
        assert prov["scale"] == "full", f"{spec.file} was made at {prov['scale']!r} scale: run `povsim figures`"
        for e in prov["experiments"]:
            data = tomllib.loads((REPO / e["file"]).read_text())
            assert e["households"] == data["population"]["households"], f"{spec.file}: {e['file']} size changed"
            assert e["seed"] == data["seed"]
    assert (folder / "index.md").read_text() == F.index_markdown(folder), "docs/figures/index.md is stale"
    assert json.loads(json.dumps(F.read_figure(folder / "performance.png")["provenance"]["results"]))
