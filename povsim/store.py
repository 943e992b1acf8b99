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

The store knows a run by three plain facts its caller gives: its folder under
``runs/`` (``path``), the labels its manifest records (``run``, JSON data) and its
resolved config (JSON data).  Which runs an experiment has, the tables, figures and
report made from them (:meth:`povsim.experiments.ExperimentResult.write_files`) and
an experiment of one run are :mod:`povsim.experiments`' own; this module imports
nothing from it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from .files import TEMPORARY_SUFFIXES, remove_folder, write_folder_atomically, write_text_atomically
from .results import (  # noqa: F401  (EXPERIMENT_FILES re-exported)
    EXPERIMENT_FILES,
    LOCK_NAME,
    Result,
    check_replaceable,
    povsim_manifest,
    read_result,
    verify_result,
    written_files,
)

__all__ = ["RunStore", "mark_run", "RUN_FILES", "EXPERIMENT_FILES"]

RUN_FILES = ("metrics.parquet", "events.parquet", "delays.parquet", "config.json", "manifest.json")


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


def _lock_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid: Any) -> bool:
    """Whether a process of this host with this id is running (True when it cannot be told)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_run(result: Result, experiment: str, run: dict[str, Any], engine: str) -> None:
    """Record in ``result``'s manifest the experiment (its name), the run's labels and the engine hash that made it."""
    result.manifest.update({"experiment": experiment, "run": run, "engine": engine})


class RunStore:
    """The output folder of an experiment of several runs, written run by run.

    ``name`` is the experiment's name, recorded in every run's manifest (:func:`mark_run`).
    """

    def __init__(self, directory: Path, name: str):
        from ._jit import source_hash

        self.directory = Path(directory)
        self.name = name
        self.engine = source_hash()
        self.redone: dict[str, str] = {}  #: runs found saved but not trusted, by path: why (they run again)
        self._previous: set[str] = set()  #: the experiment's own files of an earlier write (replaced at the end)

    # -- before the runs ---------------------------------------------------------------
    def prepare(self) -> None:
        """Check the folder and make it ready for runs.

        A folder of other files is refused (``FileExistsError``); an earlier
        povsim result that is not an experiment folder is replaced; an experiment
        folder keeps its runs (see :meth:`finished`), less the temporaries a stopped
        run left.
        """
        d = self.directory
        check_replaceable(d)  # refuses a folder holding anything povsim did not write
        self.acquire()
        if not _is_experiment_folder(d) and povsim_manifest(d) is not None:  # an earlier single result: its files go
            for name in written_files(povsim_manifest(d)):
                path = d / name
                if path.is_dir() and not path.is_symlink():
                    remove_folder(path)
                elif os.path.lexists(path):
                    path.unlink()
        elif _is_experiment_folder(d):
            self._previous = written_files(povsim_manifest(d), EXPERIMENT_FILES) - {"manifest.json"}
        (d / "runs").mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()

    # -- the lock ----------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the output folder's lock (``.povsim.lock``: the process, host and start), or refuse.

        A second writer of the same folder gets ``FileExistsError`` naming the holder.  A
        lock whose process is gone (on this host) is stale: it is removed and taken.  A
        lock from another host cannot be checked and is respected; the message says how to
        remove it.
        """
        import socket
        from datetime import datetime, timezone

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_NAME
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = _lock_holder(path)
                if holder is not None and holder.get("host") == mine["host"] and not _alive(holder.get("pid")):
                    path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                who = (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
                       if holder else "a writer that is starting")
                raise FileExistsError(
                    f"output folder {str(self.directory)!r} is in use by another povsim ({who}); wait for it to "
                    f"finish or choose another --out (if that process is gone, delete {str(path)!r})"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(mine) + "\n")
            self._lock = path
            return
        raise FileExistsError(f"output folder {str(self.directory)!r}: its lock {LOCK_NAME} keeps changing")

    def release(self) -> None:
        """Give the lock back (only the lock this store took)."""
        path = getattr(self, "_lock", None)
        if path is not None:
            holder = _lock_holder(path)
            if holder is not None and holder.get("pid") == os.getpid():
                path.unlink(missing_ok=True)
            self._lock = None

    def _remove_temporaries(self) -> None:
        """Folders and files left half-written by a stopped run (``.<name>.<random>.tmp`` or ``.old``)."""
        for root, dirs, files in os.walk(self.directory):
            for name in dirs + files:
                if name.startswith(".") and name.endswith(TEMPORARY_SUFFIXES):
                    path = Path(root) / name
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            dirs[:] = [n for n in dirs if not n.startswith(".")]

    def finished(self, path: str, run: dict[str, Any], config: Callable[[], dict[str, Any]]) -> Result | None:
        """The saved result in ``runs/<path>/`` if it is complete and made by this run, config and engine.

        ``run`` is the run's labels (as its manifest records them) and ``config()``
        its resolved config as JSON data, called only when a saved run is there.
        """
        folder = self.directory / "runs" / path
        if not folder.exists():
            return None
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            saved = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            manifest = saved = None
        if manifest is not None and (manifest.get("engine") != self.engine or manifest.get("run") != run
                                     or _comparable(saved) != _comparable(config())):
            return None  # another run's, or another engine's: made again, as expected
        reason = verify_result(folder)  # every file as povsim wrote it (its checksum)
        if reason is None:
            try:
                return read_result(folder, warn=False)
            except (OSError, ValueError) as err:
                reason = f"it cannot be read ({err})"
        self.redone[path] = reason
        return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the experiment's ``manifest.json`` (by temporary name and rename)."""
        text = json.dumps(manifest, indent=2, default=str) + "\n"
        write_text_atomically(self.directory / "manifest.json", text)

    # -- as runs finish ----------------------------------------------------------------
    def write_run(self, path: str, run: dict[str, Any], result: Result) -> None:
        """Write one finished run to ``runs/<path>/`` by temporary name and rename (a stale run there is replaced)."""
        mark_run(result, self.name, run, self.engine)
        target = self.directory / "runs" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_folder_atomically(target, lambda tmp: result.write_files(tmp, figures=False))

    # -- at the end --------------------------------------------------------------------
    def finish(self, write: Callable[[Path], Iterable[str]], paths: Iterable[str]) -> Path:
        """Write the experiment's own files and keep only its runs.

        ``write(directory)`` writes the tables, figures, report and final manifest into
        the folder and returns the names it wrote; every other entry beside ``runs/``
        goes, and so does every run folder whose path is not in ``paths``.
        """
        keep = set(write(self.directory)) | {"runs"}
        for entry in self.directory.iterdir():  # only povsim's own earlier files: never another's
            if entry.name not in keep and entry.name in self._previous:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self._prune_runs(set(paths))
        return self.directory

    def _prune_runs(self, wanted: set[str]) -> None:
        runs = self.directory / "runs"
        for manifest in sorted(runs.rglob("manifest.json")):
            folder = manifest.parent
            if povsim_manifest(folder) is not None and folder.relative_to(runs).as_posix() not in wanted:
                shutil.rmtree(folder, ignore_errors=True)
        for root, _, _ in os.walk(runs, topdown=False):  # children before their parents
            if Path(root) != runs and not os.listdir(root):
                os.rmdir(root)
