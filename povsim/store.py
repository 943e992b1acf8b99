"""The output folder of an experiment: each run written as it finishes, resumed after a stop.

This module owns what an experiment leaves on disk.  An experiment of one run
(one scenario, one replicate, no sweep) is written as a single result folder
(:meth:`povsim.results.Result.save`).  An experiment of several runs writes::

    manifest.json        the experiment: povsim version, engine hash, seeds, scenarios,
                         sweep, runs finished and failed, status ("running", "complete",
                         "incomplete")
    runs/<scenario>/[point-NNNN/]rep-NNNN/
                         one run: metrics.parquet, events.parquet, delays.parquet,
                         config.json (its resolved config, seed included), manifest.json
    metrics.parquet      every run's monthly metrics: scenario, (point,) replicate, month, ...
    headlines.csv        one row per run: its headline numbers
    summary.csv          mean, 95 % interval, SD and n per scenario (and point) and metric
    comparison.csv       paired differences from the baseline (with scenarios)
    points.csv           the sweep's points (with a sweep)
    *.png                scenarios over time with 95 % bands; headline against swept values
    report.html          everything above in one self-contained page (figures embedded)

Every run is written into a temporary folder beside its place and renamed into
place once complete, the moment it finishes, so a stopped experiment loses at
most the runs in flight.  Started again on the same folder, it reuses every run
whose saved config equals the run's config (the thread count aside, which never
changes results) and whose engine hash (:func:`povsim._jit.source_hash`) is
current, and runs the rest; the end result is the same as an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .results import Result, check_replaceable, load_result

if TYPE_CHECKING:  # pragma: no cover
    from .experiments import Experiment, ExperimentResult, RunSpec

__all__ = ["RunStore", "write_experiment", "TIME_FIGURES", "SWEEP_FIGURES"]

RUN_FILES = ("metrics.parquet", "events.parquet", "delays.parquet", "config.json", "manifest.json")
TIME_FIGURES = ("exclusion_error", "inclusion_error", "headcount_rate")
SWEEP_FIGURES = ("exclusion_error_mean", "inclusion_error_mean", "cost_total_yuan")


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config as JSON data, without the thread count (results are the same for any)."""
    data = json.loads(json.dumps(config))
    data.get("simulation", {}).pop("threads", None)
    return data


def _is_experiment_folder(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == "experiment"


def _write_file(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    _write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class RunStore:
    """The output folder of one experiment, written run by run."""

    def __init__(self, directory: Path, experiment: "Experiment"):
        from ._jit import source_hash

        self.directory = Path(directory)
        self.experiment = experiment
        self.single = len(experiment.runs) == 1
        self.engine = source_hash()

    # -- before the runs ---------------------------------------------------------------
    def prepare(self) -> dict["RunSpec", Result]:
        """Check the folder, make it ready, and return the runs already finished in it.

        A folder of other files is refused (``FileExistsError``); an earlier
        povsim result that is not this kind of experiment folder is replaced.
        """
        check_replaceable(self.directory)
        if self.single:
            return {}
        d = self.directory
        if d.exists() and any(d.iterdir()) and not _is_experiment_folder(d):
            old = Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".old", dir=d.parent))
            os.replace(d, old / "previous")
            shutil.rmtree(old, ignore_errors=True)
        (d / "runs").mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()
        done = {}
        for spec in self.experiment.runs:
            result = self._finished(spec)
            if result is not None:
                done[spec] = result
        self._write_manifest({"status": "running", "finished": len(done)})
        return done

    def _remove_temporaries(self) -> None:
        """Folders and files left half-written by a stopped run (``.<name>.<random>.tmp``)."""
        for root, dirs, files in os.walk(self.directory):
            for name in dirs + files:
                if name.startswith(".") and (name.endswith(".tmp") or name.endswith(".old")):
                    path = Path(root) / name
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            dirs[:] = [n for n in dirs if not n.startswith(".")]

    def _finished(self, spec: "RunSpec") -> Result | None:
        """The saved result of ``spec`` if it is complete and made by this run's config and engine."""
        folder = self.directory / "runs" / spec.path
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("engine") != self.engine or manifest.get("run") != spec.to_dict():
            return None
        if _comparable(config) != _comparable(self.experiment.config_for(spec).to_dict()):
            return None
        try:
            return load_result(folder)
        except (OSError, ValueError):
            return None

    # -- as runs finish ----------------------------------------------------------------
    def write_run(self, spec: "RunSpec", result: Result) -> None:
        """Write one finished run to ``runs/<its path>/`` by temporary name and rename."""
        result.manifest.update({"experiment": self.experiment.name, "run": spec.to_dict(), "engine": self.engine})
        if self.single:
            return
        target = self.directory / "runs" / spec.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            result.write_files(tmp, figures=False)
            if target.exists():  # a stale run (other config or engine): replaced
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                os.replace(target, old / "previous")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # -- at the end --------------------------------------------------------------------
    def finish(self, outcome: "ExperimentResult") -> Path:
        """Write the tables, figures, report and final manifest; drop runs that are not this experiment's."""
        if self.single:
            if outcome.runs:
                outcome.save(self.directory)
            return self.directory
        written = write_experiment(self.directory, outcome, runs=False)
        keep = set(written) | {"runs"}
        for entry in self.directory.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self._prune_runs()
        return self.directory

    def _prune_runs(self) -> None:
        wanted = {spec.path for spec in self.experiment.runs}
        runs = self.directory / "runs"
        for manifest in sorted(runs.rglob("manifest.json")):
            folder = manifest.parent
            if folder.relative_to(runs).as_posix() not in wanted:
                shutil.rmtree(folder, ignore_errors=True)
        for root, _, _ in os.walk(runs, topdown=False):  # children before their parents
            if Path(root) != runs and not os.listdir(root):
                os.rmdir(root)

    def _write_manifest(self, extra: dict[str, Any]) -> None:
        from .experiments import ExperimentResult

        manifest = ExperimentResult(self.experiment, {}).manifest()
        manifest.update(extra)
        _write_text(self.directory / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")


def write_experiment(directory: Path, outcome: "ExperimentResult", runs: bool = True) -> list[str]:
    """Write an experiment's outputs into the existing folder ``directory``; return the names written.

    ``runs=True`` also writes every run's folder under ``runs/`` (a result saved in
    one go); each file is written by temporary name and rename.
    """
    from .plots import plot_scenarios
    from .report import render_report

    directory = Path(directory)
    written: list[str] = []
    if runs:
        for spec, result in outcome.runs.items():
            folder = directory / "runs" / spec.path
            folder.mkdir(parents=True)
            result.write_files(folder, figures=False)
        written.append("runs")

    def put(name: str, write: Callable[[Path], None]) -> None:
        _write_file(directory / name, write)
        written.append(name)

    figures: dict[str, bytes] = {}
    if outcome.runs:
        tidy = outcome.metrics()
        put("metrics.parquet", lambda p: tidy.to_parquet(p, index=False))
        put("headlines.csv", lambda p: outcome.headlines().to_csv(p, index=False))
        put("summary.csv", lambda p: outcome.summary().to_csv(p))
        if len(outcome.experiment.configs) > 1:
            put("comparison.csv", lambda p: outcome.compare().to_csv(p))
        if outcome.experiment.sweep is not None:
            put("points.csv", lambda p: outcome.points().to_csv(p))
            for metric in SWEEP_FIGURES:
                figures[f"sweep_{metric}.png"] = _png(outcome.plot_sweep(metric))
        else:
            for metric in TIME_FIGURES:
                figures[f"{metric}.png"] = _png(plot_scenarios(tidy, metric, title=outcome.experiment.name))
        for name, data in figures.items():
            put(name, lambda p, data=data: p.write_bytes(data))
    put("report.html", lambda p: p.write_text(render_report(outcome, figures), encoding="utf-8"))
    manifest = outcome.manifest()
    manifest["status"] = "complete" if outcome.ok and len(outcome.runs) == len(outcome.experiment.runs) else "incomplete"
    put("manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=2, default=str) + "\n"))
    return written


def _png(figure) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
