"""Results of a run: the metrics table, the resolved config, the manifest, and their files.

This module owns what a run leaves behind.  A :class:`Result` holds

* ``metrics``: a pandas DataFrame, one row per reported month (columns in
  :data:`povsim.metrics.COLUMNS`);
* ``config``: the validated :class:`~povsim.config.Config`, every default filled in;
* ``manifest``: a dict saying how the run was made (povsim version, seed,
  threads, households, months simulated including burn-in, wall time, bytes
  per household).

:meth:`Result.save` writes ``metrics.parquet``, ``config.json``,
``manifest.json``, ``events.parquet`` (one row per policy event), ``delays.parquet``
(the detection-delay histogram) and ``errors.png`` into a temporary folder beside the target
and renames it into place only when everything is written, so an interrupted
save never leaves a partial result.  :func:`load_result` reads it back.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .config import Config, format_month
from .files import is_temporary, sha256, write_folder_atomically
from .metrics import yearly_summary

__all__ = ["Result", "ResultError", "load_result", "write_atomically", "check_replaceable"]

FILES = ("metrics.parquet", "events.parquet", "delays.parquet", "config.json", "manifest.json", "errors.png")


@dataclass
class Result:
    metrics: pd.DataFrame
    config: Config
    manifest: dict[str, Any] = field(default_factory=dict)
    events: pd.DataFrame | None = None  #: one row per policy event (registration, look-back, reviews)
    delays: pd.DataFrame | None = None  #: detection-delay histogram: routes x months since falling poor

    @classmethod
    def from_run(cls, sim, wall_time: float, threads: int) -> "Result":
        """The result of a finished :class:`~povsim.engine.Simulation`."""
        pop = sim.population
        return cls.from_totals(
            sim.config,
            sim.timeline,
            sim.totals,
            wall_time=wall_time,
            threads=threads,
            structure={
                "households": pop.n_households,
                "villages": pop.n_villages,
                "counties": pop.n_counties,
                "provinces": provinces_present(pop.county_province),
                "bytes_per_household": pop.bytes_per_household(),
            },
        )

    @classmethod
    def from_totals(
        cls, config: Config, timeline, totals: dict[int, Any], wall_time: float, threads: int,
        structure: dict[str, Any], extra: dict[str, Any] | None = None,
    ) -> "Result":
        """The result of a run from its monthly totals (month -> int64 slots, reported months).

        ``structure`` gives households, villages, counties, provinces and
        bytes_per_household for the manifest; ``extra`` adds manifest entries
        (a split run records its blocks and workers).
        """
        import numba
        import numpy

        from . import __version__
        from . import metrics as M
        from .components.poverty import describe as describe_poverty

        tl = timeline
        months = sorted(totals)
        table_totals = numpy.array([totals[m] for m in months], dtype=numpy.int64).reshape(len(months), M.N_SLOTS)
        data_start = tl.channels.get("data")
        running = [data_start is not None and m >= data_start for m in months]
        table = M.derive(table_totals, months, costs=config.policy.cost, data_running=running)
        events = event_table(table_totals, months, tl.events)
        delays = M.delay_histogram(table_totals)
        households = int(structure["households"])
        manifest = {
            "povsim_version": __version__,
            "name": config.name,
            "seed": config.seed,
            "threads": int(threads),
            "households": households,
            "villages": int(structure["villages"]),
            "counties": int(structure["counties"]),
            "provinces": int(structure["provinces"]),
            "months_simulated": tl.n_simulated,
            "months_burn_in": tl.n_burn_in,
            "months_reported": len(table),
            "first_simulated_month": format_month(tl.first),
            "first_reported_month": format_month(tl.start),
            "last_reported_month": format_month(tl.end),
            "poverty_concept": describe_poverty(config.poverty),
            "wall_time_s": round(wall_time, 3),
            "household_months_per_s": round(households * tl.n_simulated / max(wall_time, 1e-9)),
            "bytes_per_household": round(float(structure["bytes_per_household"]), 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "numba": numba.__version__,
            "pandas": pd.__version__,
            **(extra or {}),
        }
        return cls(metrics=table, config=config, manifest=manifest, events=events, delays=delays)

    def detection_delays(self) -> pd.DataFrame:
        """Registrations of truly poor households by route (rows) and months from falling poor (columns)."""
        return self.delays

    def summary(self) -> pd.DataFrame:
        """One row per year: year-end stocks (headcount, register, errors); entries, exits, returns and cost summed."""
        return yearly_summary(self.metrics)

    def plot(self):
        """Exclusion error, inclusion error and headcount over time (a matplotlib Figure)."""
        from .plots import plot_errors, policy_events

        return plot_errors(self.metrics, title=self.config.name, events=policy_events([self.config]))

    def figure_caption(self) -> tuple[str, dict]:
        """The caption of ``errors.png`` and its provenance: the run, households, seed, period, povsim version, date."""
        from . import __version__
        from .figures import _now
        from .plots import policy_events

        cfg = self.config
        created = _now().isoformat()
        events = policy_events([cfg])
        spans = [label for label, first, last in events if last > first]
        lines = [label for label, first, last in events if last <= first]
        marks = "; ".join(p for p in (f"grey span: {', '.join(spans)}" if spans else "",
                                      f"dotted lines: {', '.join(lines)}" if lines else "") if p)
        caption = (
            "Targeting errors and the poverty headcount by month. "
            f"Run {cfg.name}: {cfg.population.households:,} households, seed {cfg.seed}, one replicate (one run: no "
            f"interval); {cfg.simulation.start} to {cfg.simulation.end}."
            + (f" Policy events: {marks}." if marks else "")
            + f" Made by povsim {__version__}, {created[:10]}."
        )
        provenance = {"run": cfg.name, "source": cfg.name, "households": cfg.population.households, "seed": cfg.seed,
                      "replicates": 1, "events": [[e[0], str(e[1].date()), str(e[2].date())] for e in events],
                      "povsim_version": __version__, "created": created}
        return caption, provenance

    def write_files(self, directory: Path, figures: bool = True) -> None:
        """Write the result's files into an existing folder (not atomic; see :meth:`save`)."""
        directory = Path(directory)
        self.metrics.to_parquet(directory / "metrics.parquet", index=False)
        if self.events is not None:
            self.events.to_parquet(directory / "events.parquet", index=False)
        if self.delays is not None:
            self.delays.to_parquet(directory / "delays.parquet")
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        if figures:
            from .figures import png_with_caption

            caption, provenance = self.figure_caption()
            data = png_with_caption(self.plot(), "Targeting errors and the poverty headcount by month", caption,
                                    provenance, dpi=120)
            (directory / "errors.png").write_bytes(data)
        # every file written, with its checksum, so that a reuse can verify it (verify_result)
        names = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name in RESULT_FILES)
        self.manifest["files"] = {name: sha256(directory / name) for name in names}
        (directory / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")

    def save(self, directory: str | Path, figures: bool = True) -> Path:
        """Write the result into ``directory`` (replacing it), atomically; return its path."""
        return write_atomically(Path(directory), lambda tmp: self.write_files(tmp, figures=figures))

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"<povsim.Result {self.config.name!r}: {m.get('households')} households, "
            f"{m.get('first_reported_month')} to {m.get('last_reported_month')}, {len(self.metrics)} months>"
        )


def provinces_present(county_province) -> int:
    """How many provinces hold at least one county (``county_province``: each county's province).

    A population of fewer counties than ``population.provinces`` spreads them over some provinces
    only; the manifest reports those it has.
    """
    import numpy

    return int(numpy.unique(numpy.asarray(county_province)).size)


#: the files of an experiment folder's own that a folder written before manifests listed them may hold
EXPERIMENT_FILES = ("metrics.parquet", "headlines.csv", "summary.csv", "comparison.csv", "points.csv", "report.html",
                    "headcount_rate.png", "exclusion_error.png", "inclusion_error.png", "registered.png",
                    "sweep_exclusion_error_mean.png", "sweep_inclusion_error_mean.png", "sweep_cost_total_yuan.png")
#: the files a single result folder may hold (:meth:`Result.write_files`), beside manifest.json
RESULT_FILES = ("metrics.parquet", "events.parquet", "delays.parquet", "config.json", "errors.png")


#: the lock a writer holds on an experiment folder (:class:`povsim.store.RunStore`): povsim's own
LOCK_NAME = ".povsim.lock"


def povsim_manifest(directory: Path) -> dict[str, Any] | None:
    """The povsim manifest of ``directory`` (a dict with ``povsim_version``), or None if it has none."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "povsim_version" in manifest else None


def written_files(manifest: dict[str, Any], known: tuple[str, ...] = RESULT_FILES) -> set[str]:
    """The names a povsim folder's manifest says povsim wrote there (its ``files``; for a folder written
    before manifests listed them, the names povsim writes, ``known``), manifest.json included."""
    files = manifest.get("files")
    names = set(files) if isinstance(files, (dict, list)) else set(known)
    return names | {"manifest.json"}


def foreign_entries(directory: str | Path) -> list[str]:
    """The entries of a povsim result or experiment folder that povsim did not write there, as paths
    relative to it (every entry, if the folder holds no povsim manifest).

    A result folder may hold the files its manifest lists; an experiment folder (manifest
    ``kind = "experiment"``) those and ``runs/``, whose folders are run results (each with
    its own manifest) or folders of them; povsim's temporaries (``.<name>.<random>.tmp`` /
    ``.old``) are its own anywhere.
    """
    directory = Path(directory)
    manifest = povsim_manifest(directory)
    if manifest is None:
        return sorted(p.name for p in directory.iterdir() if p.name != LOCK_NAME)
    if manifest.get("kind") == "experiment":
        allowed = written_files(manifest, EXPERIMENT_FILES) | {"runs"}
    else:
        allowed = written_files(manifest)
    foreign = [p.name for p in directory.iterdir()
               if p.name not in allowed and not is_temporary(p.name) and p.name != LOCK_NAME]
    if manifest.get("kind") == "experiment" and (directory / "runs").is_dir():
        foreign += [f"runs/{name}" for name in _foreign_in_runs(directory / "runs")]
    return sorted(foreign)


def _foreign_in_runs(folder: Path) -> list[str]:
    out = []
    for entry in sorted(folder.iterdir()):
        if is_temporary(entry.name):
            continue
        if not entry.is_dir():
            out.append(entry.name)
        elif povsim_manifest(entry) is not None:  # a run's folder
            out += [f"{entry.name}/{name}" for name in foreign_entries(entry)]
        else:  # a scenario's or sweep point's folder of runs
            out += [f"{entry.name}/{name}" for name in _foreign_in_runs(entry)]
    return out


def verify_result(directory: str | Path) -> str | None:
    """Why the result in ``directory`` cannot be trusted as povsim wrote it, or None when it can.

    Every file its manifest lists must be there with the checksum recorded when it was
    written; a manifest that lists no files cannot be verified.
    """
    directory = Path(directory)
    manifest = povsim_manifest(directory)
    if manifest is None:
        return "manifest.json is missing or not a povsim manifest"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "its manifest records no checksums (written by an older povsim)"
    for name, digest in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256(path) != digest:
            return f"{name} differs from what povsim wrote (checksum)"
    for name in ("metrics.parquet", "config.json"):
        if name not in files:
            return f"{name} is not among the files its manifest records"
    return None


def check_replaceable(directory: str | Path) -> None:
    """Refuse an output folder that holds anything povsim did not write there.

    A new folder, an empty one, or an earlier povsim result or experiment folder holding
    only what povsim wrote may be used (and its povsim files replaced); a folder of other
    files, or a result folder into which other files were put, is refused before anything
    runs, naming what it found, so that nothing of the user's is ever deleted.
    """
    directory = Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"output path {str(directory)!r} exists and is not a folder; allowed: a new or result folder")
    if not any(directory.iterdir()):
        return
    foreign = foreign_entries(directory)
    if not foreign:
        return
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    if povsim_manifest(directory) is None:
        raise FileExistsError(
            f"output folder {str(directory)!r} exists and is not a povsim result (no manifest.json; it holds {shown}); "
            "allowed: a new folder, an empty one, or an earlier result to replace"
        )
    raise FileExistsError(
        f"output folder {str(directory)!r} holds files povsim did not write: {shown}; povsim replaces only its "
        "own files: move them, or choose another --out"
    )


def write_atomically(directory: Path, write) -> Path:
    """Call ``write(tmp)`` on a fresh temporary folder, then rename it to ``directory``.

    An existing ``directory`` is replaced only after the new one is complete, and only
    if it is empty or an earlier result (:func:`check_replaceable`); if ``write``
    fails, nothing is left behind and ``directory`` is unchanged
    (:func:`povsim.files.write_folder_atomically`).
    """
    directory = Path(directory)
    check_replaceable(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    return write_folder_atomically(directory, write)


class ResultError(ValueError):
    """A saved result or experiment folder that cannot be read back: the message names the file and the problem."""


def _check_version(directory: Path, manifest: dict[str, Any]) -> None:
    """Warn (once) when ``directory`` was written by another povsim version than this one."""
    import warnings

    from . import __version__

    written = manifest.get("povsim_version")
    if written != __version__:
        warnings.warn(
            f"{str(directory)!r} was written by povsim {written}; this is povsim {__version__} (its numbers are "
            f"povsim {written}'s: run it again with povsim {__version__} to compare like with like)",
            UserWarning,
            stacklevel=4,
        )


def read_manifest(directory: Path) -> dict[str, Any]:
    """The povsim manifest of ``directory``, or :class:`ResultError` naming ``manifest.json`` and what is wrong."""
    path = directory / "manifest.json"
    if not directory.is_dir():
        raise ResultError(f"{path}: missing; {str(directory)!r} is not a folder")
    if not path.is_file():
        raise ResultError(f"{path}: missing; not a povsim result folder")
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or "povsim_version" not in manifest:
        raise ResultError(f"{path}: not a povsim manifest (no povsim_version); not a povsim result folder")
    return manifest


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResultError(f"{path}: not a text file (invalid UTF-8)") from None
    except OSError as err:
        raise ResultError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno} ({err.msg})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except OSError as err:
        if not path.is_file():
            raise ResultError(f"{path}: missing") from None
        raise ResultError(f"{path}: truncated or not a Parquet file ({err})") from None
    except Exception as err:  # noqa: BLE001 - pyarrow's own errors (ArrowInvalid, ...) for a damaged file
        raise ResultError(f"{path}: truncated or not a Parquet file ({err})") from None


def check_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists (with its checksum) is there as povsim wrote it, or :class:`ResultError`."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return  # written before manifests recorded checksums: nothing to check against
    for name, digest in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            raise ResultError(f"{path}: missing (manifest.json lists it)")
        if sha256(path) != digest:
            raise ResultError(f"{path}: damaged or changed since povsim wrote it (its checksum differs from the one "
                              "manifest.json records)")


def read_result(directory: Path, warn: bool = True) -> Result:
    """A single run's result in ``directory`` (see :func:`load_result`); ``warn``: about another povsim version."""
    manifest = read_manifest(directory)
    if manifest.get("kind") == "experiment":
        raise ResultError(f"{directory / 'manifest.json'}: an experiment folder, not a single run's result "
                          "(read it with povsim.load_result or ExperimentResult.load)")
    for name in ("metrics.parquet", "config.json"):
        if not (directory / name).is_file():
            raise ResultError(f"{directory / name}: missing; not a complete povsim result")
    if warn:
        _check_version(directory, manifest)
    check_files(directory, manifest)
    metrics = _read_parquet(directory / "metrics.parquet")
    data = _read_json(directory / "config.json")
    try:
        config = Config.model_validate(data)
    except ValueError as err:  # pydantic's ValidationError
        first = str(err).splitlines()
        raise ResultError(f"{directory / 'config.json'}: not a valid povsim config ({'; '.join(first[:3])})") from None
    events = _read_parquet(directory / "events.parquet") if (directory / "events.parquet").is_file() else None
    delays = _read_parquet(directory / "delays.parquet") if (directory / "delays.parquet").is_file() else None
    return Result(metrics=metrics, config=config, manifest=manifest, events=events, delays=delays)


def load_result(directory: str | Path):
    """Read back a folder written by povsim: a single run's :class:`Result` (:meth:`Result.save`,
    ``povsim run`` of one run) or an experiment's
    :class:`~povsim.experiments.ExperimentResult` (``Experiment.run(out=...)``,
    :meth:`~povsim.experiments.ExperimentResult.save`, ``povsim run`` of several runs).

    A missing, truncated, malformed or changed file (its checksum, where the manifest
    records one) raises :class:`ResultError` naming the file and the problem; a folder
    written by another povsim version gives a ``UserWarning`` naming both versions.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("kind") == "experiment":
        from .experiments import ExperimentResult

        return ExperimentResult._load(directory, manifest)
    return read_result(directory)


def event_table(totals, months: list[int], events) -> pd.DataFrame:
    """One row per policy event: households assessed, added, removed, wrongly, and the register around it.

    For monitoring: verifications while it runs, households put into monitoring, those whose risk was
    eliminated (wrongly: while truly poor), and the register around it.
    """
    from . import metrics as M

    index = {m: k for k, m in enumerate(months)}
    code = M.ROUTE_CODE
    rows = []
    for name, first, last in events:
        ks = [index[m] for m in range(first, last + 1) if m in index]
        window = totals[ks].sum(axis=0)
        kind = name.split()[0]
        before = totals[ks[0] - 1, M.REGISTERED] if ks and ks[0] > 0 else 0
        if kind == "monitoring":  # households put into monitoring and out of it (risk eliminated), every route
            rows.append(
                {
                    "event": name,
                    "start": format_month(first),
                    "end": format_month(last),
                    "assessed": int(window[M.IDENTIFICATION_DELAY : M.IDENTIFICATION_DELAY + M.BINS["identification_delay"].bins].sum()),
                    "added": int(window[M.ENTERED_MONITORING : M.ENTERED_MONITORING + M.N_ROUTES].sum()),
                    "removed": int(window[M.RISK_ELIMINATED]),
                    "wrongly_added": 0,
                    "wrongly_removed": int(window[M.WRONG_RISK_ELIMINATED]),
                    "register_before": int(before),
                    "register_after": int(totals[ks[-1], M.REGISTERED]) if ks else 0,
                }
            )
            continue
        route = code.get(kind, 0)  # exits add no one
        if kind == "exits":
            assessed, removed, wrongly_removed = window[M.ASSESSED_EXIT], window[M.EXITED], window[M.WRONG_EXIT]
        elif kind == "registration":
            assessed, removed, wrongly_removed = window[M.ASSESSED_REGISTRATION], 0, 0
        elif kind == "lookback":
            assessed = window[M.ASSESSED_LOOKBACK]
            removed, wrongly_removed = window[M.REMOVED_LOOKBACK], window[M.WRONG_REMOVED_LOOKBACK]
        else:
            assessed = window[M.ASSESSED_REVIEW] + window[M.ASSESSED_EXIT]
            removed, wrongly_removed = window[M.EXITED], window[M.WRONG_EXIT]
        rows.append(
            {
                "event": name,
                "start": format_month(first),
                "end": format_month(last),
                "assessed": int(assessed),
                "added": int(window[M.ENTERED + route]) if route else 0,
                "removed": int(removed),
                "wrongly_added": int(window[M.ENTERED_NONPOOR + route]) if route else 0,
                "wrongly_removed": int(wrongly_removed),
                "register_before": int(before),
                "register_after": int(totals[ks[-1], M.REGISTERED]) if ks else 0,
            }
        )
    return pd.DataFrame(rows)
