"""``povsim figures``: every figure builds (at a tiny scale here), carries its provenance, is written atomically.

The speed figure is drawn from a measurement file that ``benchmarks/speed_figure.py`` writes
(made here at tiny sizes); the library itself imports nothing from ``benchmarks/``.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import json
import os
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from figure_checks import assert_lines_run_forward, drawn_lines
from helpers import REPO, run_cli
from matplotlib.figure import Figure

import povsim
from povsim import figures as F
from povsim.config import ConfigError

EXPERIMENTS = REPO / "experiments"
BENCHMARKS = REPO / "benchmarks"
TINY = F.Scale("tiny", households=300)
PNG = b"\x89PNG\r\n\x1a\n"
#: the speed measurement's command line at tiny sizes
TINY_SPEED = ["--engine-sizes", "200,400", "--numpy-sizes", "200,400", "--mesa-sizes", "100", "--months", "2"]


def _seed(file: str) -> int:
    return tomllib.loads((EXPERIMENTS / file).read_text())["seed"]


def _speed_figure():
    """``benchmarks/speed_figure.py`` as a module (it ships with the repository, not the package)."""
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("speed_figure", BENCHMARKS / "speed_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPEED = _speed_figure()


def _same_file(named: str, path) -> bool:
    """Whether a file named in a caption (relative to the working folder, or absolute) is ``path``."""
    return (Path.cwd() / named).resolve() == path.resolve()


@pytest.fixture(scope="module")
def measurement(tmp_path_factory):
    """A speed measurement at tiny sizes, written by the benchmark's command line."""
    path = tmp_path_factory.mktemp("measurement") / "performance.json"
    assert SPEED.main([*TINY_SPEED, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def drawn(tmp_path_factory, measurement):
    """Every figure at the tiny scale, what build_figures logged, and each figure's matplotlib Figure as drawn."""
    out = tmp_path_factory.mktemp("figures") / "docs" / "figures"
    log: list[str] = []
    figures: dict[str, Figure] = {}
    save = F.save_figure

    def keep(fig, path, *args, **kwargs):
        figures[Path(path).stem] = fig
        return save(fig, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "save_figure", keep)
        written = F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=measurement, log=log.append)
    return out, written, log, figures


@pytest.fixture(scope="module")
def built(drawn):
    """Every figure at the tiny scale, and what build_figures logged."""
    return drawn[:3]


def test_every_line_of_every_figure_runs_forward(drawn):
    """No figure joins points out of order: the x data of every line povsim draws is non-decreasing."""
    figures = drawn[3]
    assert sorted(figures) == sorted(f.name for f in F.FIGURES)
    for name, fig in figures.items():
        assert_lines_run_forward(fig, name)
    # the figure drawn from several replicates per scenario: one line per scenario and panel, not one per replicate
    replicates = tomllib.loads((EXPERIMENTS / "onetime_vs_dynamic.toml").read_text())["replicates"]
    assert replicates > 1
    errors = figures["errors_by_rule"]
    for ax in errors.axes:
        long = [line for line in drawn_lines(errors) if line.axes is ax and len(line.get_xdata()) > 2]
        assert len(long) == 4, [line.get_label() for line in long]


def test_every_figure_is_written_with_the_index(built):
    out, written, _ = built
    assert [p.name for p in written] == [f.file for f in F.FIGURES] + ["index.md"]
    # no temporary files left; the manifest records every file written, with its checksum
    assert sorted(os.listdir(out)) == sorted([f.file for f in F.FIGURES] + ["index.md", "manifest.json"])
    record = json.loads((out / "manifest.json").read_text())
    assert record["files"] == {p.name: F.sha256(p) for p in written}
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
        assert meta["source"] == (", ".join(e["file"] for e in prov["experiments"]) or prov["measurement"])


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
    measured = perf["provenance"]["measured"]
    assert "Measured by" in perf["caption"]
    for fact in (measured["cpu"], measured["command"], measured["created"][:10], measured["system"],
                 f"{measured['logical_cpus']} logical CPUs", perf["provenance"]["measurement"]):
        assert fact in perf["caption"], fact


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


def test_the_benchmark_measures_three_implementations(measurement):
    record = json.loads(measurement.read_text())
    assert record["kind"] == F.MEASUREMENT_KIND
    assert record["command"] == "python benchmarks/speed_figure.py " + " ".join(
        f"{a} {b}" for a, b in zip(TINY_SPEED[::2], TINY_SPEED[1::2])) + f" --out {measurement}"
    assert record["povsim_version"] == povsim.__version__ and record["months"] == 2
    created = dt.datetime.fromisoformat(record["created"])
    assert abs((dt.datetime.now().astimezone() - created).total_seconds()) < 3600
    machine = record["machine"]
    assert machine["cpu"] and machine["logical_cpus"] == os.cpu_count() and machine["numba_threads"] >= 1
    results = pd.DataFrame(record["results"])
    assert set(results["implementation"].str.split().str[0]) == {"Engine", "NumPy", "Mesa"}
    assert set(results.loc[results["implementation"].str.startswith("Engine"), "households"]) == {200, 400}
    assert set(results.loc[results["implementation"].str.startswith("NumPy"), "households"]) == {200, 400}
    assert set(results.loc[results["implementation"].str.startswith("Mesa"), "households"]) == {100}
    assert (results["hh_months_per_s"] > 0).all() and (results["bytes_per_household"] > 0).all()
    engine = results[results["implementation"].str.startswith("Engine")]
    threads = machine["numba_threads"]
    expected = {"Engine (Numba, 1 thread)"} | ({f"Engine (Numba, {threads} threads)"} if threads > 1 else set())
    assert set(engine["implementation"]) == expected
    assert (engine["bytes_per_household"] >= 56).all(), "at least the 56 bytes of household state"
    assert record["notes"] == []
    assert record["sizes"] == {label: sorted(set(g)) for label, g in results.groupby("implementation")["households"]}
    cfg = SPEED.perf_config(10)
    assert cfg.seed == record["seed"] and not cfg.policy.lookback.enabled and not cfg.policy.review.enabled
    assert F.read_measurement(measurement) == record


def test_the_speed_figure_is_drawn_from_the_measurement_file(built, measurement, tmp_path):
    out, _, log = built
    record = json.loads(measurement.read_text())
    prov = F.read_figure(out / "performance.png")["provenance"]
    assert prov["results"] == record["results"]
    assert _same_file(prov["measurement"], measurement)
    assert prov["measured"]["cpu"] == record["machine"]["cpu"] and prov["measured"]["command"] == record["command"]
    assert not any("household-months/s" in line for line in log), "povsim figures measures nothing itself"
    # a measurement of other numbers, with a line left out, is drawn as it says
    rows = [{**r, "hh_months_per_s": 1234.0} for r in record["results"] if "Mesa" not in r["implementation"]]
    edited = dict(record, notes=["Mesa line left out: not installed on that machine"], results=rows,
                  machine={**record["machine"], "cpu": "A named test CPU", "system": None})
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(edited))
    folder = tmp_path / "figs"
    F.build_figures(folder, scale=TINY, experiments=EXPERIMENTS, measurement=path, only=["performance"])
    meta = F.read_figure(folder / "performance.png")
    assert meta["provenance"]["results"] == edited["results"]
    assert _same_file(meta["source"], path)
    (note,) = meta["provenance"]["notes"]
    assert note in meta["caption"] and "A named test CPU" in meta["caption"] and "logical CPUs)" in meta["caption"]
    index = (folder / "index.md").read_text()
    assert note in index and f"`{meta['source']}`" in index and "A named test CPU" in index


def test_a_missing_or_broken_measurement_is_refused_before_anything_is_written(tmp_path, measurement):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="speed measurement not found.*benchmarks/speed_figure.py"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=bad, only=["performance"])
    bad.write_text(json.dumps({"results": []}))
    with pytest.raises(ConfigError, match="is not a speed measurement"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=bad, only=["performance"])
    record = json.loads(measurement.read_text())
    del record["machine"]["cpu"], record["created"]
    bad.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="lacks created, machine.cpu"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=bad, only=["performance"])
    record = json.loads(measurement.read_text())
    record["results"] = [{"implementation": "Engine"}]
    bad.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="lacks results"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=bad, only=["performance"])
    assert not out.exists()
    # the other figures do not need it
    F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, measurement=tmp_path / "none.json",
                    only=["headcount_vs_official"])
    assert sorted(os.listdir(out)) == ["headcount_vs_official.png", "index.md", "manifest.json"]


def test_the_library_imports_nothing_from_benchmarks():
    """No module of povsim imports a benchmark, by name or by path."""
    for path in sorted((REPO / "povsim").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not any(n.split(".")[0] in {"benchmarks", "numpy_step", "speed_figure"} for n in names), path
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"spec_from_file_location", "SourceFileLoader"}, f"{path}: loads a file by path"


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
    assert set(ours) == set(theirs)  # every table a parameter's source cites ships with povsim
    for table in theirs:
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


def test_cli_figures(tmp_path):
    out = tmp_path / "figs"
    done = run_cli("figures", "--households", "300", "--only", "headcount_vs_official", "--out", str(out), cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["headcount_vs_official.png", "index.md", "manifest.json"]
    prov = F.read_figure(out / "headcount_vs_official.png")["provenance"]
    assert prov["command"] == "povsim figures --households 300 --only headcount_vs_official"
    assert prov["experiments"][0]["households"] == 300
    assert str(out / "headcount_vs_official.png") in done.stdout


def test_cli_figures_write_to_results_by_default_and_to_docs_only_when_asked(tmp_path):
    committed = tmp_path / "docs" / "figures"  # a checkout's committed figures, beside the experiments
    committed.mkdir(parents=True)
    (committed / "headcount_vs_official.png").write_bytes(b"committed figure")
    (committed / "index.md").write_text("committed index")
    done = run_cli("figures", "--households", "300", "--only", "headcount_vs_official", "--experiments",
                   str(REPO / "experiments"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "results" / "figures")) == ["headcount_vs_official.png", "index.md",
                                                                     "manifest.json"]
    assert sorted(os.listdir(tmp_path)) == ["docs", "results"]
    assert sorted(os.listdir(committed)) == ["headcount_vs_official.png", "index.md"]  # left as they were
    assert (committed / "headcount_vs_official.png").read_bytes() == b"committed figure"
    assert (committed / "index.md").read_text() == "committed index"
    assert "results/figures/headcount_vs_official.png" in done.stdout
    both = run_cli("figures", "--docs", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert "--docs" in run_cli("figures", "--help").stdout


def test_cli_figures_errors(tmp_path):
    done = run_cli("figures", "--experiments", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 2
    assert "experiments folder not found" in done.stderr and "--experiments" in done.stderr
    assert not (tmp_path / "o").exists()
    done = run_cli("figures", "--only", "nope", cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr
    help_text = run_cli("figures", "--help").stdout
    for option in ("--quick", "--out", "--experiments", "--measurement", "--only", "--households"):
        assert option in help_text


def test_committed_figures_are_complete_and_full_scale():
    folder = REPO / "docs" / "figures"
    for spec in F.FIGURES:
        meta = F.read_figure(folder / spec.file)
        prov = meta["provenance"]
        assert prov["scale"] == "full", f"{spec.file} was made at {prov['scale']!r} scale: run `povsim figures --docs`"
        for e in prov["experiments"]:
            data = tomllib.loads((REPO / e["file"]).read_text())
            assert e["households"] == data["population"]["households"], f"{spec.file}: {e['file']} size changed"
            assert e["seed"] == data["seed"]
    assert (folder / "index.md").read_text() == F.index_markdown(folder), "docs/figures/index.md is stale"
    record = F.read_measurement(folder / "performance.json")
    prov = F.read_figure(folder / "performance.png")["provenance"]
    assert prov["measurement"] == "docs/figures/performance.json"
    assert prov["results"] == record["results"], "performance.png is not drawn from performance.json"
    assert prov["measured"]["cpu"] == record["machine"]["cpu"] and prov["measured"]["created"] == record["created"]


def test_errors_by_rule_draws_each_scenario_as_one_line_over_time():
    """Replicates are averaged, not joined: every line runs forward in time, one per scenario and panel."""
    from matplotlib.lines import Line2D

    from povsim.plots import plot_errors_by_rule

    months = pd.date_range("2013-01-01", periods=24, freq="MS")
    frames = []
    for s, scenario in enumerate(["baseline", "plus_lookback"]):
        for r in range(3):
            value = 0.2 + 0.1 * s + 0.01 * r + 0.001 * np.arange(24)
            frames.append(pd.DataFrame({"scenario": scenario, "replicate": r, "month": months,
                                        "exclusion_error": value, "inclusion_error": 1 - value}))
    tidy = pd.concat(frames, ignore_index=True)
    fig = plot_errors_by_rule(tidy)
    for ax in fig.axes:
        lines = [line for line in ax.get_lines() if isinstance(line, Line2D) and len(line.get_xdata()) > 2]
        assert len(lines) == 2
        for line in lines:
            x = np.asarray(line.get_xdata(), dtype="datetime64[ns]")
            assert (np.diff(x.astype(np.int64)) > 0).all() and len(x) == 24
        assert len(ax.collections) == 2  # a 95 % band per scenario
    top = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 2][0]
    np.testing.assert_allclose(top.get_ydata(), 100 * (0.21 + 0.001 * np.arange(24)))  # the mean of 0.20, 0.21, 0.22
    assert "mean of 3 replicates" in fig._suptitle.get_text()
