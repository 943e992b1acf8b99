"""An output place that cannot be used is refused before any month is simulated; a write that fails later
(a full disk) is one line, exit 1, with nothing that looks complete and every finished run kept.  An
experiment too large for the machine is refused (memory) or asked about (household-months) before it starts."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from helpers import ONETIME, SHORT

import povsim
import povsim.files
import povsim.sizing
from povsim.cli import main
from povsim.experiments import Experiment
from povsim.files import OutputPlaceError, check_output_place
from povsim.sizing import SizeError

SMALL = {**SHORT, **ONETIME, "population.households": 300}


def _experiment_file(tmp_path: Path, replicates: int = 2) -> Path:
    lines = [f"name = \"place\"\nreplicates = {replicates}\n"]
    lines += [f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items()]
    path = tmp_path / "exp.toml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("povsim: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


# -- refused before the first month --------------------------------------------------------------------


def test_a_file_where_the_folder_must_be_is_refused_before_simulating(tmp_path, nothing_runs, capsys):
    (tmp_path / "report.pdf").write_text("mine")
    exp = _experiment_file(tmp_path)
    code = main(["run", str(exp), "--out", str(tmp_path / "report.pdf" / "out"), "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "report.pdf" in line and "is a file, not a folder" in line and "allowed:" in line
    assert sorted(os.listdir(tmp_path)) == ["exp.toml", "report.pdf"]
    assert (tmp_path / "report.pdf").read_text() == "mine"


def test_the_library_refuses_the_same_place_before_simulating(tmp_path, nothing_runs):
    (tmp_path / "f").write_text("")
    experiment = Experiment.from_dict(povsim.load_config(overrides=SMALL).to_dict())
    with pytest.raises(OutputPlaceError, match="is a file, not a folder"):
        experiment.run(out=tmp_path / "f" / "out")


def test_a_place_no_one_may_write_is_refused_and_nothing_is_left(tmp_path, nothing_runs, capsys):
    """``/sys`` refuses new files even to root, as a read-only mount does."""
    target = Path("/sys/povsim-output")
    if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and _can_create(Path("/sys")):
        pytest.skip("no read-only place on this machine")
    code = main(["run", str(_experiment_file(tmp_path)), "--out", str(target), "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "cannot write in '/sys'" in line
    assert not target.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes whatever the permissions")
def test_a_folder_without_write_permission_is_refused(tmp_path, nothing_runs):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPlaceError, match="cannot write in"):
            check_output_place(locked / "out")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


def _can_create(folder: Path) -> bool:
    try:
        (folder / ".povsim-can-create").touch()
    except OSError:
        return False
    (folder / ".povsim-can-create").unlink()
    return True


def test_a_disk_without_room_is_refused_before_simulating(tmp_path, nothing_runs, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(povsim.files.shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 3 << 20))
    code = main(["run", str(_experiment_file(tmp_path, replicates=4)), "--out", str(tmp_path / "out"), "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "3.0 MiB free" in line and "4 run(s) need about 12 MiB" in line
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the probe file is gone


def test_the_room_needed_grows_with_the_runs(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    free = povsim.files.OUTPUT_BYTES_FIXED + 10 * povsim.files.OUTPUT_BYTES_PER_RUN
    monkeypatch.setattr(povsim.files.shutil, "disk_usage", lambda path: usage(free, 0, free))
    check_output_place(tmp_path / "a" / "b", runs=10)
    with pytest.raises(OutputPlaceError, match="11 run"):
        check_output_place(tmp_path / "a" / "b", runs=11)
    assert os.listdir(tmp_path) == []


# -- a disk that fills while writing ---------------------------------------------------------------------


def _fill_disk_on(monkeypatch, calls: list, fail_at: int) -> None:
    """``Result.write_files`` raises ENOSPC on its ``fail_at``-th call (counting from 1), having written part."""
    original = povsim.results.Result.write_files

    def write_files(self, directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) == fail_at:
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / "metrics.parquet").write_bytes(b"PAR1")  # part written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(directory) / "events.parquet"))
        return original(self, directory, *args, **kwargs)

    monkeypatch.setattr(povsim.results.Result, "write_files", write_files)


def test_a_full_disk_while_an_experiment_writes_keeps_the_finished_runs_and_marks_nothing_complete(
    tmp_path, monkeypatch, capsys
):
    exp, out = _experiment_file(tmp_path, replicates=3), tmp_path / "out"
    calls: list = []
    _fill_disk_on(monkeypatch, calls, fail_at=2)
    code = main(["run", str(exp), "--out", str(out), "--quiet", "--workers", "1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1
    assert "No space left on device" in line and "nothing there is marked complete" in line
    assert "the runs finished before are kept" in line and "run the same command again" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] != "complete"
    finished = sorted(p.parent.relative_to(out).as_posix() for p in (out / "runs").rglob("manifest.json"))
    assert finished == ["runs/baseline/rep-0000"]
    assert not [p for p in _tree(out) if p.endswith((".tmp", ".old"))]  # the half-written run is gone
    kept = (out / "runs" / "baseline" / "rep-0000" / "metrics.parquet").stat().st_ino

    monkeypatch.undo()  # room again: the same command resumes, reusing the finished run
    code = main(["run", str(exp), "--out", str(out), "--quiet", "--workers", "1"])
    assert code == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert (out / "runs" / "baseline" / "rep-0000" / "metrics.parquet").stat().st_ino == kept  # reused, not redone
    assert len(list((out / "runs").rglob("manifest.json"))) == 3


def test_a_full_disk_while_the_experiment_tables_are_written_leaves_it_incomplete(tmp_path, monkeypatch, capsys):
    import povsim.experiments

    exp, out = _experiment_file(tmp_path, replicates=2), tmp_path / "out"
    original = povsim.files.atomic_file

    def atomic_file(path, *args, **kwargs):
        if Path(path).name == "summary.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(povsim.files, "atomic_file", atomic_file)  # imported where the tables are written
    code = main(["run", str(exp), "--out", str(out), "--quiet", "--workers", "1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "summary.csv" in line and "the finished runs are kept" in line
    assert json.loads((out / "manifest.json").read_text())["status"] != "complete"
    assert not (out / "report.html").exists()
    assert len(list((out / "runs").rglob("manifest.json"))) == 2


def test_a_full_disk_while_a_single_result_is_saved_is_one_line(tmp_path, monkeypatch, capsys):
    exp, out = _experiment_file(tmp_path, replicates=1), tmp_path / "out"
    _fill_disk_on(monkeypatch, [], fail_at=1)
    code = main(["run", str(exp), "--out", str(out), "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "No space left on device" in line
    assert not out.exists() or povsim.results.povsim_manifest(out) is None  # nothing that reads as a result


# -- too large for the machine -------------------------------------------------------------------------


def test_the_memory_estimate_is_the_declared_state_and_the_process(monkeypatch):
    per = povsim.sizing.state_bytes_per_household()
    assert 40 < per < 100  # the struct of arrays: a few dozen bytes a household
    assert povsim.sizing.run_bytes(10**6) == int(povsim.sizing.PROCESS_BYTES + 10**6 * per)
    need = povsim.sizing.check_memory(10**6, processes=3, available=10**12)
    assert need == 3 * povsim.sizing.run_bytes(10**6)


def test_a_population_that_does_not_fit_is_refused_before_it_is_allocated(monkeypatch):
    monkeypatch.setattr(povsim.sizing, "available_memory", lambda: 500 * 2**20)

    def refuse(n):
        raise AssertionError("allocated")

    monkeypatch.setattr(povsim.population, "allocate", refuse)
    cfg = povsim.load_config(overrides={**SMALL, "population.households": 5_000_000})
    with pytest.raises(SizeError) as info:
        povsim.run(cfg)
    msg = str(info.value)
    assert "population.households = 5,000,000" in msg and "0.5 GB available" in msg
    fits = int(msg.split("at most about ")[1].split(" ")[0].replace(",", ""))
    assert povsim.sizing.run_bytes(fits) <= 500 * 2**20 < povsim.sizing.run_bytes(fits + 1)


def test_the_command_line_refuses_workers_whose_populations_do_not_fit_together(
    tmp_path, nothing_runs, monkeypatch, capsys
):
    one = povsim.sizing.run_bytes(300)
    monkeypatch.setattr(povsim.sizing, "available_memory", lambda: int(1.5 * one))
    exp = _experiment_file(tmp_path, replicates=2)
    code = main(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet", "--workers", "2"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "2 runs at once" in line and "fewer workers" in line
    assert not (tmp_path / "out").exists()


def test_a_very_large_experiment_is_refused_without_a_terminal_and_started_with_yes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(povsim.sizing, "LARGE_HOUSEHOLD_MONTHS", 1000)
    exp, out = _experiment_file(tmp_path, replicates=2), tmp_path / "out"
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code = main(["run", str(exp), "--out", str(out), "--quiet", "--workers", "1"])
    line = _one_error_line(capsys.readouterr().err)
    months = 2 * 300 * 48
    assert code == 2 and f"{months:.2e} household-months" in line and "--yes" in line
    assert not out.exists()
    assert main(["run", str(exp), "--out", str(out), "--quiet", "--workers", "1", "--yes"]) == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("answer, code", [("", 2), ("n", 2), ("y", 0)])
def test_a_very_large_experiment_is_asked_about_at_a_terminal(tmp_path, monkeypatch, capsys, answer, code):
    monkeypatch.setattr(povsim.sizing, "LARGE_HOUSEHOLD_MONTHS", 1000)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked: list = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)
    out = tmp_path / "out"
    assert main(["run", str(_experiment_file(tmp_path)), "--out", str(out), "--quiet", "--workers", "1"]) == code
    assert asked == ["Start it? [y/N] "]
    err = capsys.readouterr().err
    assert "household-months" in err and "Traceback" not in err
    assert out.exists() == (code == 0)
    if code:
        assert "not started" in err


def test_an_ordinary_experiment_is_not_asked_about(tmp_path, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked"))
    assert main(["run", str(_experiment_file(tmp_path)), "--out", str(tmp_path / "o"), "--quiet", "--workers", "1"]) == 0
    shutil.rmtree(tmp_path / "o")
