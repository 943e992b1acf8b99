"""What povsim writes: folders and files with the user's umask, and figures that never overwrite a file of the user's."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from helpers import ONETIME, QUICKSTART, REPO, SHORT, run_cli, set_args

import povsim
from povsim import figures as F
from povsim.experiments import Experiment

EXPERIMENTS = REPO / "experiments"
TINY = F.Scale("tiny", households=300)


def _modes(folder: Path) -> dict[str, int]:
    """Every folder and file under ``folder`` (itself included) -> its permission bits."""
    out = {".": stat.S_IMODE(folder.stat().st_mode)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            out[path.relative_to(folder).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return out


def _assert_umask_modes(folder: Path, umask: int) -> None:
    modes = _modes(folder)
    assert len(modes) > 1
    for name, mode in modes.items():
        wanted = (0o777 if (folder / name).is_dir() else 0o666) & ~umask
        assert mode == wanted, f"{name}: mode {mode:o}, wanted {wanted:o} (umask {umask:03o})"


class _Umask:
    def __init__(self, mask: int):
        self.mask = mask

    def __enter__(self):
        self.previous = os.umask(self.mask)

    def __exit__(self, *exc):
        os.umask(self.previous)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_result_follows_the_umask(small_result, tmp_path, umask):
    with _Umask(umask):
        small_result.save(tmp_path / "run")
    _assert_umask_modes(tmp_path / "run", umask)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == {0o022: 0o755, 0o077: 0o700}[umask]
    assert stat.S_IMODE((tmp_path / "run" / "metrics.parquet").stat().st_mode) == {0o022: 0o644, 0o077: 0o600}[umask]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_an_experiment_folder_follows_the_umask(tmp_path, umask):
    base = povsim.load_config(overrides={**SHORT, **ONETIME, "population.households": 300}).to_dict()
    exp = Experiment.from_dict(base, {"low_transfer": {"policy.support.transfer": 100.0}})
    with _Umask(umask):
        outcome = exp.run(out=tmp_path / "exp")
        outcome.save(tmp_path / "saved")
    for folder in ("exp", "saved"):
        _assert_umask_modes(tmp_path / folder, umask)
        assert (tmp_path / folder / "runs" / "low_transfer" / "rep-0000" / "metrics.parquet").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_povsim_run_follows_the_umask(tmp_path, umask):
    overrides = {**SHORT, **ONETIME, "population.households": 300}
    with _Umask(umask):
        done = run_cli("run", str(QUICKSTART), *set_args(overrides), "--quiet", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()
    _assert_umask_modes(tmp_path / "out", umask)


# --------------------------------------------------------------------------------------
# povsim figures: only its own files are replaced
# --------------------------------------------------------------------------------------


def test_figures_refuse_a_file_of_the_same_name_before_any_work(tmp_path, nothing_runs):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "headcount_vs_official.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"figs/headcount_vs_official\.png: exists and povsim figures did not "
                                              r"write it \(no manifest\.json"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, only=["headcount_vs_official"])
    assert (out / "headcount_vs_official.png").read_bytes() == b"mine"
    assert os.listdir(out) == ["headcount_vs_official.png"]


def test_figures_refuse_an_index_of_the_users(tmp_path, nothing_runs):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "index.md").write_text("my notes")
    with pytest.raises(FileExistsError, match=r"figs/index\.md: exists and povsim figures did not write it"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, only=["headcount_vs_official"])
    assert (out / "index.md").read_text() == "my notes"


def test_figures_refuse_a_manifest_that_is_not_theirs(tmp_path, nothing_runs):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "manifest.json").write_text('{"mine": 1}')
    with pytest.raises(FileExistsError, match=r"figs/manifest\.json: exists and is not the record"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, only=["headcount_vs_official"])
    assert (out / "manifest.json").read_text() == '{"mine": 1}'


def test_figures_refuse_a_file_the_manifest_does_not_list(tmp_path, nothing_runs):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"kind": "povsim figures", "povsim_version": "0.1.0",
                                                   "files": {"channels.png": "0" * 64}}))
    (out / "headcount_vs_official.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"headcount_vs_official\.png: exists and povsim figures did not write "
                                              r"it \(not in .*manifest\.json\)"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, only=["headcount_vs_official"])


def test_the_committed_figures_are_recorded_as_povsim_wrote_them():
    """``povsim figures --docs`` may replace the documentation's figures: its record lists them as they are."""
    folder = REPO / "docs" / "figures"
    F.check_overwritable(folder, [f.file for f in F.FIGURES] + ["index.md"])
    record = F.figures_manifest(folder)
    assert sorted(record["files"]) == sorted([f.file for f in F.FIGURES] + ["index.md"])


def test_figures_from_another_experiments_folder_run_no_python_file_and_keep_the_users_edits(tmp_path):
    """``--experiments DIR`` reads the TOML files there only: no Python file beside or inside it is executed.

    Then a second build replaces povsim's own files; one the user edited since is refused, exit 2, one line.
    """
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    shutil.copy(EXPERIMENTS / "china_2014_2020.toml", experiments)
    marker = tmp_path / "executed"
    payload = f"open({str(marker)!r}, 'a').write(__file__ + '\\n')\nraise SystemExit('executed')\n"
    for path in (tmp_path / "benchmarks" / "numpy_step.py", tmp_path / "benchmarks" / "speed_figure.py",
                 experiments / "numpy_step.py", experiments / "__init__.py", experiments / "conftest.py"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(payload)
    out = tmp_path / "figs"
    args = ("figures", "--households", "300", "--only", "headcount_vs_official", "--quiet", "--experiments",
            str(experiments), "--out", str(out))
    with _Umask(0o022):
        done = run_cli(*args, cwd=tmp_path / "benchmarks")
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), marker.read_text()
    assert sorted(os.listdir(out)) == ["headcount_vs_official.png", "index.md", "manifest.json"]
    assert _modes(out) == {".": 0o755, "headcount_vs_official.png": 0o644, "index.md": 0o644, "manifest.json": 0o644}
    record = json.loads((out / "manifest.json").read_text())
    assert record["files"] == {name: F.sha256(out / name) for name in ("headcount_vs_official.png", "index.md")}

    (out / "index.md").write_text((out / "index.md").read_text() + "\nmy note\n")
    edited = (out / "index.md").read_bytes()
    png = (out / "headcount_vs_official.png").read_bytes()
    refused = run_cli(*args, cwd=tmp_path)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "index.md: changed since povsim figures wrote it" in lines[0], refused.stderr
    assert (out / "index.md").read_bytes() == edited and (out / "headcount_vs_official.png").read_bytes() == png
    assert not marker.exists()

    (out / "index.md").unlink()  # the user's edit taken away: povsim's own files may be replaced
    with _Umask(0o077):
        again = run_cli(*args, cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(out)) == ["headcount_vs_official.png", "index.md", "manifest.json"]
    # replaced files are new files: they take the umask of the run that wrote them
    assert _modes(out)["index.md"] == 0o600 and _modes(out)["headcount_vs_official.png"] == 0o600
    assert not marker.exists()


def test_an_edited_figure_is_refused_by_name(tmp_path, nothing_runs):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "headcount_vs_official.png").write_bytes(b"povsim's")
    digest = F.sha256(out / "headcount_vs_official.png")
    (out / "manifest.json").write_text(json.dumps({"kind": "povsim figures", "povsim_version": "0.1.0",
                                                   "files": {"headcount_vs_official.png": digest}}))
    F.check_overwritable(out, ["headcount_vs_official.png", "index.md"])  # as written: may be replaced
    (out / "headcount_vs_official.png").write_bytes(b"edited")
    with pytest.raises(FileExistsError, match=r"headcount_vs_official\.png: changed since povsim figures wrote it"):
        F.build_figures(out, scale=TINY, experiments=EXPERIMENTS, only=["headcount_vs_official"])
    assert (out / "headcount_vs_official.png").read_bytes() == b"edited"

