"""Experiments: scenarios, replicates and sweeps, run serially or on Dask, with intervals.

This module owns the experiment-level keys of an experiment file and the runs
they make.  An experiment file is a config (see :mod:`povsim.config`, the
**baseline**) with, optionally::

    replicates = 8                       # runs per scenario, each with its own seed

    [scenarios.no_lookback]              # a scenario: a patch on the baseline
    "policy.lookback.enabled" = false

    [sweep.grid]                         # every combination of these values ...
    "policy.channels.cadre.visits_per_village" = [2, 4, 8]

    [sweep]                              # ... or a sample of a box of parameters
    method = "lhs"                       # "lhs" (Latin hypercube) or "sobol"
    samples = 16
    [sweep.ranges]
    "policy.verification.delay" = [0, 3]

Runs are every scenario x every sweep point x every replicate.  Every run's config
is validated before any run starts: a bad key in the fifth scenario, or a sweep
value out of range, stops the experiment with the key path, the value, the
scenario (and sweep point) and what is allowed, and nothing runs or is written.

**Common random numbers.**  Replicate ``k`` has the seed drawn from
``numpy.random.SeedSequence(seed).spawn(replicates)[k]`` (64 bits; an experiment
without ``replicates`` runs the file's ``seed`` itself), and every scenario and
sweep point uses the same replicate seeds.  With povsim's counter-based streams a
household then meets the same shocks in every scenario, so the **paired**
difference of a scenario from the baseline, replicate by replicate
(:meth:`ExperimentResult.compare`), has far less noise than the difference of
independent runs.

Runs go one after another in this process, or on a Dask cluster
(:mod:`povsim.cluster`): each finished run is written to the output folder at
once (by temporary name and rename, see :mod:`povsim.store`), so a stopped
experiment started again skips the runs it has and ends with the same result.
The tables, figures and report beside the runs are written by
:meth:`ExperimentResult.write_files`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
import traceback
import typing
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from .config import Config, ConfigError, apply_overrides, merge, read_toml, validate
from .config import flatten as _flatten
from .headlines import HEADLINE, headline  # noqa: F401  (re-exported)
from .results import Result

if typing.TYPE_CHECKING:  # pragma: no cover
    from .store import RunStore

__all__ = [
    "Experiment", "ExperimentResult", "RunSpec", "Sweep", "headline", "replicate_seeds", "HEADLINE", "TIME_FIGURES",
    "SWEEP_FIGURES",
]

BASELINE = "baseline"
MAX_REPLICATES = 10_000
MAX_POINTS = 10_000
SWEEP_METHODS = ("grid", "lhs", "sobol")
_SWEEP_KEYS = ("method", "samples", "grid", "ranges")
#: spawn key of the sweep sample's SeedSequence: a branch of the experiment seed no replicate uses
_SWEEP_SPAWN_KEY = 0x5357454550  # "SWEEP"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_ERRORS = 25

#: the figures of an experiment's folder: these metrics over time (without a sweep) ...
TIME_FIGURES = ("exclusion_error", "inclusion_error", "headcount_rate")
#: ... or these headline numbers against the swept values (with a sweep)
SWEEP_FIGURES = ("exclusion_error_mean", "inclusion_error_mean", "cost_total_yuan")


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """The 64-bit seed of each replicate: ``SeedSequence(seed).spawn(replicates)``, two 32-bit words each.

    Replicate ``k``'s seed does not depend on how many replicates there are.
    One replicate runs ``seed`` itself (the file's seed, as a single run would).
    """
    if replicates == 1:
        return [int(seed)]
    seeds = []
    for child in np.random.SeedSequence(int(seed)).spawn(replicates):
        lo, hi = (int(w) for w in child.generate_state(2, np.uint32))
        seeds.append(lo | (hi << 32))
    return seeds


# --------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------


def _parameter_type(path: str) -> Any:
    """The annotation of the config parameter at dotted ``path``; ConfigError if it names none."""
    from pydantic import BaseModel

    model: Any = Config
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if isinstance(model, type) and issubclass(model, BaseModel):
            fields = model.model_fields
            if part not in fields:
                raise ConfigError(
                    f"unknown key {'.'.join(parts[: depth + 1])!r}; allowed keys here: {', '.join(sorted(fields))}"
                )
            model = fields[part].annotation
        elif typing.get_origin(model) is dict:  # a free-form mapping (poverty.lines): its values' type
            model = typing.get_args(model)[1]
        else:
            raise ConfigError(f"{'.'.join(parts[:depth])!r} is not a section")
    if isinstance(model, type) and issubclass(model, BaseModel):
        raise ConfigError(f"{path!r} is a section, not a parameter")
    return model


def _format_point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {_short(v)}" for k, v in point.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


@dataclass(frozen=True)
class Sweep:
    """The points of a ``[sweep]``: each a patch applied to the baseline and every scenario."""

    method: str  #: "grid", "lhs" or "sobol"
    keys: tuple[str, ...]  #: swept parameters (dotted paths), in the file's order
    points: tuple[dict[str, Any], ...]  #: one patch per point
    spec: dict[str, Any] = field(default_factory=dict)  #: the [sweep] table as read (for the manifest)

    @classmethod
    def from_table(cls, table: Any, seed: int) -> "Sweep":
        """Read and check a ``[sweep]`` table; a sample is drawn with seeds from ``seed`` (no global RNG)."""
        if not isinstance(table, dict):
            raise ConfigError(f"sweep = {table!r}: a [sweep] table, with [sweep.grid] or method, samples and [sweep.ranges]")
        unknown = sorted(set(table) - set(_SWEEP_KEYS))
        if unknown:
            raise ConfigError(f"sweep.{unknown[0]}: unknown key; allowed keys here: {', '.join(sorted(_SWEEP_KEYS))}")
        method = table.get("method", "grid" if "grid" in table else None)
        if method not in SWEEP_METHODS:
            shown = "missing" if method is None else f"= {method!r}"
            raise ConfigError(f"sweep.method {shown}; allowed: {', '.join(repr(m) for m in SWEEP_METHODS)}")
        if method == "grid":
            for extra in ("samples", "ranges"):
                if extra in table:
                    raise ConfigError(f"sweep.{extra}: not used by a grid (method = 'grid' takes [sweep.grid] only)")
            return cls._grid(table.get("grid"), table)
        if "grid" in table:
            raise ConfigError(f"sweep.grid: not used by method = {method!r} (a sample takes samples and [sweep.ranges])")
        return cls._sample(method, table, seed)

    @classmethod
    def _grid(cls, grid: Any, table: dict[str, Any]) -> "Sweep":
        if not isinstance(grid, dict) or not grid:
            raise ConfigError(
                'sweep.grid: missing or empty; write e.g. [sweep.grid] "policy.review.assessment_sd" = [0.1, 0.2]'
            )
        flat = _flatten(grid)
        for key, values in flat.items():
            try:
                _parameter_type(key)
            except ConfigError as err:
                raise ConfigError(f'sweep.grid."{key}": {err}') from None
            if not isinstance(values, list) or not values:
                raise ConfigError(f'sweep.grid."{key}" = {values!r}: a grid lists the values to try, e.g. [2, 4, 8]')
        size = math.prod(len(v) for v in flat.values())
        if size > MAX_POINTS:
            raise ConfigError(f"sweep.grid: {size} points; allowed: at most {MAX_POINTS}")
        keys = tuple(flat)
        points = tuple(dict(zip(keys, combo)) for combo in itertools.product(*flat.values()))
        return cls("grid", keys, points, {"method": "grid", "grid": flat})

    @classmethod
    def _sample(cls, method: str, table: dict[str, Any], seed: int) -> "Sweep":
        from scipy.stats import qmc

        samples = table.get("samples")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_POINTS:
            raise ConfigError(f"sweep.samples = {samples!r}: allowed an integer from 1 to {MAX_POINTS}")
        if method == "sobol" and samples & (samples - 1):
            lower = 1 << (samples.bit_length() - 1)
            raise ConfigError(
                f"sweep.samples = {samples}: a Sobol sample needs a power of 2 (e.g. {lower} or {2 * lower}); "
                "or use method = 'lhs'"
            )
        ranges = table.get("ranges")
        if not isinstance(ranges, dict) or not ranges:
            raise ConfigError(
                'sweep.ranges: missing or empty; write e.g. [sweep.ranges] "policy.verification.delay" = [0, 3]'
            )
        flat = _flatten(ranges)
        kinds = {}
        for key, bounds in flat.items():
            try:
                kind = _parameter_type(key)
            except ConfigError as err:
                raise ConfigError(f'sweep.ranges."{key}": {err}') from None
            if kind not in (int, float):
                name = getattr(kind, "__name__", str(kind))
                raise ConfigError(
                    f'sweep.ranges."{key}": a {name} parameter cannot be sampled from a range; '
                    "allowed: integer or float parameters (list other values in [sweep.grid])"
                )
            ok = (
                isinstance(bounds, list) and len(bounds) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                and bounds[0] < bounds[1]
                and (kind is float or all(float(b).is_integer() for b in bounds))
            )
            if not ok:
                what = "whole numbers" if kind is int else "numbers"
                raise ConfigError(f'sweep.ranges."{key}" = {bounds!r}: a range is [low, high], {what}, low < high')
            kinds[key] = kind
        keys = tuple(flat)
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_SWEEP_SPAWN_KEY,)))
        engine = qmc.LatinHypercube(d=len(keys), rng=rng) if method == "lhs" else qmc.Sobol(d=len(keys), rng=rng)
        unit = engine.random(samples)
        points = []
        for row in unit:
            point = {}
            for j, key in enumerate(keys):
                low, high = flat[key]
                if kinds[key] is int:  # every integer in [low, high] equally likely
                    low, high = int(low), int(high)
                    point[key] = min(high, low + int(math.floor(row[j] * (high - low + 1))))
                else:
                    point[key] = float(low + row[j] * (high - low))
            points.append(point)
        spec = {"method": method, "samples": samples, "ranges": flat}
        return cls(method, keys, tuple(points), spec)

    def table(self) -> pd.DataFrame:
        """One row per point: the swept values."""
        return pd.DataFrame(list(self.points), index=pd.RangeIndex(len(self.points), name="point"))


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: a scenario at a sweep point with one replicate's seed."""

    scenario: str
    replicate: int
    seed: int
    point: int | None = None  #: sweep point (None without a sweep)

    @property
    def path(self) -> str:
        """Its folder under the output's ``runs/``."""
        parts = [self.scenario]
        if self.point is not None:
            parts.append(f"point-{self.point:04d}")
        parts.append(f"rep-{self.replicate:04d}")
        return "/".join(parts)

    def describe(self) -> str:
        where = f", sweep point {self.point}" if self.point is not None else ""
        return f"scenario {self.scenario!r}, replicate {self.replicate}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "point": self.point, "replicate": self.replicate, "seed": self.seed}


@dataclass
class Experiment:
    """A baseline, its scenarios, replicates and sweep points: every run's config, validated."""

    name: str
    #: scenario name -> validated config, the baseline first; with a sweep, the file's values of the
    #: swept keys (or the first point's, where the file's alone do not make a valid config)
    configs: dict[str, Config]
    patches: dict[str, dict[str, Any]] = field(default_factory=dict)  #: scenario -> its dotted patches
    path: Path | None = None
    replicates: int = 1
    sweep: Sweep | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    point_configs: dict[tuple[str, int], Config] = field(default_factory=dict)  #: (scenario, point) -> config

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Experiment":
        """Read an experiment file; ``overrides`` apply to the baseline, every scenario and every point.

        ``overrides`` are dotted config keys, plus ``"replicates"``.
        """
        path = Path(path)
        data = read_toml(path, "experiment file")
        scenarios = data.pop("scenarios", {})
        replicates = data.pop("replicates", None)
        sweep = data.pop("sweep", None)
        for section, table in data.items():
            if isinstance(table, dict) and "replicates" in table:
                raise ConfigError(
                    f"{section}.replicates: unknown key; write `replicates = N` at the top of the file, "
                    "before the first [table] (in TOML a key after [table] belongs to that table)"
                )
        if not isinstance(scenarios, dict) or any(not isinstance(v, dict) for v in scenarios.values()):
            raise ConfigError("scenarios: each scenario is a table of patches, e.g. [scenarios.no_lookback]")
        data.setdefault("name", path.stem)
        base = merge(data)
        return cls.from_dict(
            base, {k: _flatten(v) for k, v in scenarios.items()}, overrides, path, replicates=replicates, sweep=sweep
        )

    @classmethod
    def from_dict(
        cls,
        base: dict[str, Any],
        scenarios: dict[str, dict[str, Any]] | None = None,
        overrides: dict[str, Any] | None = None,
        path: Path | None = None,
        replicates: int | None = None,
        sweep: dict[str, Any] | None = None,
    ) -> "Experiment":
        """A baseline (a config dict), scenario patches (dotted paths), replicates and a sweep, all validated first."""
        scenarios = scenarios or {}
        overrides = dict(overrides or {})
        if "replicates" in overrides:
            replicates = overrides.pop("replicates")
        replicates = 1 if replicates is None else replicates
        if isinstance(replicates, bool) or not isinstance(replicates, int) or not 1 <= replicates <= MAX_REPLICATES:
            raise ConfigError(f"replicates = {replicates!r}: allowed an integer from 1 to {MAX_REPLICATES}")
        if BASELINE in scenarios:
            raise ConfigError(f"scenarios.{BASELINE}: the name {BASELINE!r} is reserved for the unpatched config")
        bad_names = [n for n in scenarios if not _NAME_RE.fullmatch(n)]
        if bad_names:
            raise ConfigError(
                f"scenarios.{bad_names[0]}: a scenario name is letters, digits, '_', '.', '-' "
                f"(used as a folder name), got {bad_names[0]!r}"
            )
        names = [BASELINE, *scenarios]
        configs: dict[str, Config] = {}
        errors = []
        for name, patch in [(BASELINE, {})] + list(scenarios.items()):
            try:
                configs[name] = validate(apply_overrides(apply_overrides(base, patch), overrides))
            except ConfigError as err:
                errors.append(f"{_where(name)}: {err}")
        if errors and sweep is None:
            raise ConfigError("\n".join(errors))
        parsed: Sweep | None = None
        point_configs: dict[tuple[str, int], Config] = {}
        if sweep is not None:
            # the runs are the sweep points: a scenario need only be valid with a point's values
            try:
                seed_value = apply_overrides(base, overrides)["seed"]
                seed = validate(apply_overrides(Config().to_dict(), {"seed": seed_value})).seed
            except ConfigError:
                raise ConfigError("\n".join(errors)) from None
            parsed = Sweep.from_table(sweep, seed)
            for key in parsed.keys:
                clashes = [f"scenario {n!r}" for n, patch in scenarios.items() if _overlaps(key, patch)]
                if _overlaps(key, overrides):
                    clashes.append("an override (--set or overrides=)")
                if clashes:
                    raise ConfigError(
                        f"{key!r} is swept in [sweep] and also set by {', '.join(clashes)}; "
                        "allowed: a key is either swept or set"
                    )
            failed: dict[str, list[tuple[int, str]]] = {}
            for p, point in enumerate(parsed.points):
                for name, patch in [(BASELINE, {})] + list(scenarios.items()):
                    try:
                        patched = apply_overrides(apply_overrides(apply_overrides(base, point), patch), overrides)
                        point_configs[(name, p)] = validate(patched)
                    except ConfigError as err:
                        failed.setdefault(name, []).append((p, str(err)))
            errors = []
            for name, bad in failed.items():
                if len(bad) == len(parsed.points) > 1 and len({text for _, text in bad}) == 1:
                    errors.append(f"{_where(name)} (at every sweep point): {bad[0][1]}")  # not the sweep's doing
                    continue
                for p, text in bad:
                    errors.append(f"sweep point {p} ({_format_point(parsed.points[p])}), {_where(name)}: {text}")
            if errors:
                shown = errors[:_MAX_ERRORS]
                if len(errors) > _MAX_ERRORS:
                    shown.append(f"... and {len(errors) - _MAX_ERRORS} more")
                raise ConfigError("\n".join(shown))
            # a scenario invalid without a sweep value stands for itself by its first point
            configs = {name: configs[name] if name in configs else point_configs[(name, 0)] for name in names}
        return cls(
            name=configs[BASELINE].name,
            configs=configs,
            patches={BASELINE: {}, **scenarios},
            path=path,
            replicates=replicates,
            sweep=parsed,
            overrides=overrides,
            point_configs=point_configs,
        )

    @property
    def scenarios(self) -> list[str]:
        return list(self.configs)

    @property
    def seed(self) -> int:
        return self.configs[BASELINE].seed

    @property
    def seeds(self) -> list[int]:
        """Each replicate's seed, the same in every scenario and sweep point (common random numbers)."""
        return replicate_seeds(self.seed, self.replicates)

    @property
    def runs(self) -> list[RunSpec]:
        """Every run, in the order they start: by sweep point, then replicate, then scenario.

        So an experiment stopped part-way has whole replicates of every scenario.
        """
        points: list[int | None] = list(range(len(self.sweep.points))) if self.sweep else [None]
        return [
            RunSpec(scenario, k, seed, point)
            for point in points
            for k, seed in enumerate(self.seeds)
            for scenario in self.configs
        ]

    def config_for(self, run: RunSpec) -> Config:
        """The validated config of one run: its scenario (at its sweep point) with its replicate's seed."""
        base = self.configs[run.scenario] if run.point is None else self.point_configs[(run.scenario, run.point)]
        if base.seed == run.seed:
            return base
        return base.model_copy(update={"seed": run.seed}, deep=True)

    def run(
        self,
        client: Any = None,
        *,
        workers: int | None = None,
        out: str | Path | None = None,
        progress: bool = False,
        split: int = 1,
    ) -> "ExperimentResult":
        """Run every scenario x sweep point x replicate; return the :class:`ExperimentResult`.

        ``client``: a ``dask.distributed.Client`` to run on (any cluster).  Without
        one, ``workers`` >= 2 starts a ``LocalCluster`` of that many processes for
        this call; ``workers`` of ``None``, 0 or 1 runs serially in this process.
        ``out``: write each run to this folder as it finishes and skip runs already
        there (resume); at the end write the tables, figures and ``report.html``
        (see :mod:`povsim.store`).  ``split`` > 1 splits each run's population into
        that many blocks of whole villages across the workers (runs then go one
        after another).  A run that fails does not stop the others: it is listed
        in ``result.failures`` with its error.
        """
        from ._jit import source_hash
        from .cluster import SchedulerLostError, catching_interrupts, open_client
        from .files import check_output_place, writing_into
        from .results import check_replaceable
        from .store import RunStore, mark_run

        if isinstance(split, bool) or not isinstance(split, int) or split < 1:
            raise ValueError(f"split = {split!r}: allowed a positive integer (blocks per run)")
        runs = self.runs
        single = len(runs) == 1
        out = Path(out) if out is not None else None
        # several runs: each written to the folder as it finishes (the store); one run: the folder is its result
        one_result = out is not None and single
        store = RunStore(out, self.name) if out is not None and not single else None
        t0 = time.perf_counter()
        if out is not None:  # before any month is simulated: a file in the way, no permission, no room
            check_output_place(out, runs=len(runs))
        if one_result:
            check_replaceable(out)
            engine = source_hash()
        try:
            done: dict[RunSpec, Result] = self._resume(store) if store is not None else {}
            pending = [r for r in runs if r not in done]
            failures: dict[RunSpec, str] = {}
            # a cluster of its own has its own cache (or not): the notice is for this machine's runs only
            compiled = True if client is not None or not pending else None
            bar = _progress_bar(len(runs), len(done), self.name, compiled) if progress and not single else None
            try:
                # a local cluster only pays off for two runs or more, or for one run split across workers
                local = workers if (len(pending) > 1 or (pending and split > 1)) else 0
                context = nullcontext(client) if client is not None else open_client(local)
                with context as active, catching_interrupts() if active is not None else nullcontext():
                    for spec, outcome in self._execute(pending, active, split, progress=progress and single):
                        if isinstance(outcome, Result):
                            done[spec] = outcome
                            if store is not None:
                                with writing_into(out, kept="; the runs finished before are kept"):
                                    store.write_run(spec.path, spec.to_dict(), outcome)
                            elif one_result:
                                mark_run(outcome, self.name, spec.to_dict(), engine)
                        else:
                            failures[spec] = outcome
                        if bar is not None:
                            bar.update(1)
                            if failures:
                                bar.set_postfix(failed=len(failures))
                    n_workers = _count_workers(active)
            except SchedulerLostError as err:  # the runs finished before it are in the store, to resume
                kept = f"; {len(done)} of {len(runs)} runs are finished"
                if store is not None:
                    kept += f" and kept in {out}/: run the same command again to resume"
                raise SchedulerLostError(f"{err}{kept}") from None
            finally:
                if bar is not None:
                    bar.close()
            result = ExperimentResult(
                self,
                {r: done[r] for r in runs if r in done},
                {r: failures[r] for r in runs if r in failures},
                info={"elapsed_s": round(time.perf_counter() - t0, 3), "workers": n_workers, "split": split,
                      "resumed": len(runs) - len(pending),
                      # saved runs not trusted (a file missing or changed): run again, with the reason
                      "redone": dict(store.redone) if store is not None else {}},
            )
            if store is not None:
                with writing_into(out, kept="; the finished runs are kept"):
                    store.finish(lambda directory: result.write_files(directory, runs=False),
                                 [spec.path for spec in runs])
            elif one_result and result.runs:
                with writing_into(out):
                    result.save(out)
            return result
        finally:
            if store is not None:
                store.release()  # the output folder's lock (taken by prepare), whatever happened

    def _resume(self, store: "RunStore") -> dict[RunSpec, Result]:
        """Make the :class:`~povsim.store.RunStore`'s folder ready; return the runs already finished in it."""
        store.prepare()
        done: dict[RunSpec, Result] = {}
        for spec in self.runs:
            saved = store.finished(spec.path, spec.to_dict(), lambda spec=spec: self.config_for(spec).to_dict())
            if saved is not None:
                done[spec] = saved
        store.write_manifest({**ExperimentResult(self, {}).manifest(), "status": "running", "finished": len(done)})
        return done

    def _execute(
        self, pending: list[RunSpec], client: Any, split: int, progress: bool
    ) -> Iterator[tuple[RunSpec, Result | str]]:
        """Run ``pending``, yielding each (run, Result or error text) as it finishes."""
        from .cluster import run_split, simulate

        if split > 1:
            for spec in pending:
                try:
                    yield spec, run_split(self.config_for(spec), blocks=split, client=client)
                except Exception as err:  # noqa: BLE001 - reported with the run, the others go on
                    if client is not None and getattr(client, "status", "running") != "running":
                        raise _scheduler_lost(client, "stopped") from None
                    yield spec, _error_text(err)
            return
        if client is None:
            for spec in pending:
                try:
                    if progress:
                        import povsim

                        yield spec, povsim.run(self.config_for(spec), progress=True)
                    else:
                        yield spec, simulate(self.config_for(spec).to_dict())
                except Exception as err:  # noqa: BLE001
                    yield spec, _error_text(err)
            return
        from uuid import uuid4

        from .cluster import wait_as_completed

        tag = uuid4().hex[:8]
        futures = {
            client.submit(simulate, self.config_for(spec).to_dict(), pure=False, key=f"povsim-{spec.path}-{tag}"): spec
            for spec in pending
        }
        remaining = set(futures)
        try:
            for future in wait_as_completed(futures):
                spec = futures[future]
                remaining.discard(future)
                if future.status == "finished":
                    try:
                        outcome: Result | str = future.result()
                    except OSError:  # distributed's CommClosedError: the scheduler went while the result came
                        raise _scheduler_lost(client, "cut off while a result was fetched") from None
                elif future.status == "error":
                    outcome = _error_text(future.exception(), future.traceback())
                else:  # cancelled or lost, not by this loop: the scheduler went away
                    raise _scheduler_lost(client, future.status)
                future.release()
                yield spec, outcome
        finally:
            for future in remaining:
                future.cancel()


def _where(name: str) -> str:
    return "baseline" if name == BASELINE else f"scenario {name!r}"


def _overlaps(key: str, patch: dict[str, Any]) -> bool:
    """Whether ``patch`` sets ``key`` or a section containing it, or a key inside it."""
    return any(k == key or key.startswith(k + ".") or k.startswith(key + ".") for k in patch)


def _scheduler_lost(client: Any, status: str) -> Exception:
    from .cluster import SchedulerLostError

    address = getattr(getattr(client, "scheduler", None), "address", None) or "its address"
    return SchedulerLostError(
        f"lost the Dask scheduler at {address} (the runs on it were {status})"
    )


def _error_text(err: BaseException | None, tb=None) -> str:
    if err is None:  # a task that ended without an error to report
        return "the run's task ended without a result or an error"
    text = f"{type(err).__name__}: {err}"
    frames = traceback.extract_tb(tb if tb is not None else err.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


def _count_workers(client: Any) -> int:
    if client is None:
        return 0
    try:
        return len(client.scheduler_info(n_workers=-1)["workers"])
    except Exception:  # noqa: BLE001 - only for the manifest
        return -1


def _progress_bar(total: int, initial: int, name: str, compiled: bool | None = True):
    """The bar of an experiment's runs: no estimate until a first run is done (it compiles the model, the
    first time); ``compiled=None``: ask Numba's cache whether it will (:mod:`povsim.progress`)."""
    from .progress import Progress, engine_is_compiled

    return Progress(total, "run", name, initial=initial, compiled=engine_is_compiled() if compiled is None else compiled)


# --------------------------------------------------------------------------------------
# Headline numbers and intervals
# --------------------------------------------------------------------------------------


def interval(values) -> dict[str, float]:
    """Mean and t-based 95 % interval of the finite ``values``: mean, low, high, sd, n.

    With fewer than two values the interval and SD are NaN.
    """
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": np.nan, "low": np.nan, "high": np.nan, "sd": np.nan, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "low": np.nan, "high": np.nan, "sd": np.nan, "n": n}
    sd = float(x.std(ddof=1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": n}


# --------------------------------------------------------------------------------------
# The result of an experiment
# --------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """Every finished run of an experiment, and the tables made from them."""

    experiment: Experiment
    runs: dict[RunSpec, Result]  #: finished runs, in the experiment's order
    failures: dict[RunSpec, str] = field(default_factory=dict)  #: runs that failed -> their error
    info: dict[str, Any] = field(default_factory=dict)  #: how it ran: elapsed_s, workers, split, resumed

    @property
    def ok(self) -> bool:
        """Whether every run finished."""
        return not self.failures

    def _keys(self) -> list[str]:
        return ["point", "scenario"] if self.experiment.sweep is not None else ["scenario"]

    def _labels(self, spec: RunSpec) -> dict[str, Any]:
        labels: dict[str, Any] = {"scenario": spec.scenario}
        if self.experiment.sweep is not None:
            labels["point"] = spec.point
        labels["replicate"] = spec.replicate
        return labels

    def by_scenario(self, replicate: int = 0, point: int | None = None) -> dict[str, Result]:
        """Each scenario's :class:`~povsim.results.Result` for one replicate (and sweep point)."""
        out = {}
        for spec, result in self.runs.items():
            if spec.replicate == replicate and (point is None or spec.point == point):
                out.setdefault(spec.scenario, result)
        return out

    def metrics(self) -> pd.DataFrame:
        """Every run's monthly metrics in one tidy table: ``scenario``, (``point``,) ``replicate``, ``month``, metrics."""
        from . import metrics as M

        if not self.runs:
            return pd.DataFrame(columns=[*self._keys(), "replicate", *M.COLUMNS])
        frames = [r.metrics.assign(**self._labels(spec)) for spec, r in self.runs.items()]
        out = pd.concat(frames, ignore_index=True)
        keys = ["scenario", "point", "replicate"] if self.experiment.sweep is not None else ["scenario", "replicate"]
        return out[keys + [c for c in out.columns if c not in keys]]

    def headlines(self) -> pd.DataFrame:
        """One row per finished run: its labels, seed and headline numbers (:func:`headline`)."""
        rows = [{**self._labels(spec), "seed": spec.seed, **headline(r)} for spec, r in self.runs.items()]
        columns = [*self._labels(RunSpec(BASELINE, 0, 0, 0)), "seed", *HEADLINE]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> pd.DataFrame:
        """Each scenario's (at each sweep point) headline numbers across replicates.

        Index: (``point``,) ``scenario``, ``metric``; columns ``mean``, ``low``,
        ``high`` (t-based 95 % interval), ``sd``, ``n`` (finite replicates).
        """
        table = self.headlines()
        rows = []
        for key, group in table.groupby(self._keys(), sort=False):
            key = key if isinstance(key, tuple) else (key,)
            for metric in HEADLINE:
                rows.append((*key, metric, *interval(group[metric]).values()))
        return self._frame(rows)

    def compare(self, baseline: str = BASELINE) -> pd.DataFrame:
        """Each other scenario minus ``baseline``, replicate by replicate (paired; at the same sweep point).

        Index: (``point``,) ``scenario``, ``metric``; columns ``mean`` (mean
        difference), ``low``, ``high`` (t-based 95 % interval of the mean
        difference), ``sd`` (of the differences), ``n`` (pairs).
        """
        if baseline not in self.experiment.configs:
            raise ValueError(f"baseline={baseline!r} is not a scenario; allowed: {', '.join(self.experiment.scenarios)}")
        table = self.headlines()
        pair = ["point", "replicate"] if self.experiment.sweep is not None else ["replicate"]
        base = table[table["scenario"] == baseline].set_index(pair)[list(HEADLINE)]
        rows = []
        for key, group in table[table["scenario"] != baseline].groupby(self._keys(), sort=False):
            key = key if isinstance(key, tuple) else (key,)
            g = group.set_index(pair)[list(HEADLINE)]
            common = g.index.intersection(base.index)
            diff = g.loc[common] - base.loc[common]
            for metric in HEADLINE:
                rows.append((*key, metric, *interval(diff[metric]).values()))
        return self._frame(rows)

    def _frame(self, rows: list[tuple]) -> pd.DataFrame:
        keys = [*self._keys(), "metric"]
        frame = pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "sd", "n"])
        return frame.set_index(keys)

    def points(self) -> pd.DataFrame | None:
        """The sweep's points (index ``point``, one column per swept key), or None without a sweep."""
        return self.experiment.sweep.table() if self.experiment.sweep is not None else None

    def manifest(self) -> dict[str, Any]:
        """How the experiment was made: povsim version, seeds, scenarios and their patches, sweep, runs."""
        from . import __version__
        from ._jit import source_hash

        exp = self.experiment
        base = exp.configs[BASELINE]
        return {
            "povsim_version": __version__,
            "kind": "experiment",
            "engine": source_hash(),
            "experiment": exp.name,
            "description": base.description,
            "seed": exp.seed,
            "replicates": exp.replicates,
            "replicate_seeds": exp.seeds,
            "scenarios": {name: exp.patches.get(name, {}) for name in exp.configs},
            "overrides": exp.overrides,
            "sweep": None if exp.sweep is None else {**exp.sweep.spec, "points": list(exp.sweep.points)},
            "households": base.population.households,
            "period": f"{base.simulation.start} to {base.simulation.end}",
            "runs": len(exp.runs),
            "finished": len(self.runs),
            "failed": [{"run": s.path, **s.to_dict(), "error": e} for s, e in self.failures.items()],
            "wall_time_s": round(sum(r.manifest.get("wall_time_s", 0.0) for r in self.runs.values()), 3),
            **{k: v for k, v in self.info.items()},
        }

    def plot(self, metric: str = "exclusion_error", point: int | None = None):
        """``metric`` over time, one line per scenario (mean of replicates) with its 95 % band (a Figure).

        With a sweep, ``point`` chooses the sweep point (see :meth:`plot_sweep` for all of them).
        """
        from .plots import plot_scenarios, policy_events

        tidy = self.metrics()
        title = self.experiment.name
        if self.experiment.sweep is not None:
            if point is None:
                raise ValueError("a sweep has many points: choose one with point=, or use plot_sweep()")
            tidy = tidy[tidy["point"] == point]
            title = f"{title}, point {point} ({_format_point(self.experiment.sweep.points[point])})"
        return plot_scenarios(tidy, metric, title=title, events=policy_events(self.experiment.configs.values()))

    def plot_sweep(self, metric: str = "exclusion_error_mean"):
        """A headline ``metric`` against each swept key, one series per scenario, with 95 % intervals (a Figure)."""
        from .plots import plot_sweep

        if self.experiment.sweep is None:
            raise ValueError("this experiment has no [sweep]")
        return plot_sweep(self.summary(), self.points(), metric, title=self.experiment.name)

    @classmethod
    def load(cls, directory: str | Path) -> ExperimentResult:
        """Read back an experiment folder (``Experiment.run(out=...)``, :meth:`save`, ``povsim run``).

        Its runs are read from ``runs/`` and the experiment (scenarios and their patches,
        seeds, replicates, sweep points) from its manifest, so :meth:`summary`,
        :meth:`metrics`, :meth:`compare` and the rest give what they gave when it was
        saved.  A missing, truncated, malformed or changed file (against the checksums
        the manifests record) raises :class:`~povsim.results.ResultError` naming it; a
        folder written by another povsim version gives a ``UserWarning`` naming both.
        :func:`povsim.load_result` reads any povsim folder, this one included.
        """
        from .results import read_manifest

        directory = Path(directory)
        return cls._load(directory, read_manifest(directory))

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> ExperimentResult:
        from .results import ResultError, _check_version, check_files, read_result

        where = directory / "manifest.json"
        if manifest.get("kind") != "experiment":
            raise ResultError(f"{where}: a single run's result, not an experiment folder (read it with "
                              "povsim.load_result)")
        try:
            name = str(manifest["experiment"])
            seed = int(manifest["seed"])
            replicates = int(manifest["replicates"])
            seeds = [int(v) for v in manifest.get("replicate_seeds") or replicate_seeds(seed, replicates)]
            patches = {str(k): dict(v) for k, v in manifest["scenarios"].items()}
            sweep_spec = manifest.get("sweep")
            failed = {(f["scenario"], f.get("point"), f["replicate"]): str(f.get("error", ""))
                      for f in manifest.get("failed") or []}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ResultError(f"{where}: not a complete experiment manifest ({type(err).__name__}: {err})") from None
        if BASELINE not in patches or len(seeds) != replicates:
            raise ResultError(f"{where}: not a complete experiment manifest (scenarios or replicate_seeds)")
        _check_version(directory, manifest)
        check_files(directory, manifest)  # the tables, figures and report as povsim wrote them
        sweep = None
        if sweep_spec is not None:
            spec = {k: v for k, v in sweep_spec.items() if k != "points"}
            points = tuple(dict(p) for p in sweep_spec.get("points") or [])
            keys = tuple(spec.get("grid") or spec.get("ranges") or (points[0] if points else ()))
            sweep = Sweep(str(spec.get("method", "grid")), keys, points, spec)
        where_points: list[int | None] = list(range(len(sweep.points))) if sweep is not None else [None]
        specs = [RunSpec(scenario, k, s, point) for point in where_points for k, s in enumerate(seeds)
                 for scenario in patches]
        complete = manifest.get("status") == "complete"
        runs: dict[RunSpec, Result] = {}
        failures: dict[RunSpec, str] = {}
        for spec in specs:
            folder = directory / "runs" / spec.path
            if folder.is_dir():
                result = read_result(folder, warn=False)
                labels = result.manifest.get("run")
                if labels is not None and labels != spec.to_dict():
                    raise ResultError(f"{folder / 'manifest.json'}: the run of {labels}, not of {spec.to_dict()}")
                runs[spec] = result
            elif (spec.scenario, spec.point, spec.replicate) in failed:
                failures[spec] = failed[(spec.scenario, spec.point, spec.replicate)]
            elif complete:
                raise ResultError(f"{folder}: missing (the experiment's manifest says it is complete)")
        if not runs:
            raise ResultError(f"{directory / 'runs'}: no finished run to read")

        def config_of(scenario: str, point: int | None) -> Config:
            found = [r for s, r in runs.items() if s.scenario == scenario and (point is None or s.point == point)]
            if found:
                return found[0].config.model_copy(update={"seed": seed}, deep=True)
            base = [r for s, r in runs.items() if s.scenario == BASELINE and (point is None or s.point == point)]
            source = base[0] if base else next(iter(runs.values()))
            data = source.config.to_dict()
            data["seed"] = seed
            return validate(apply_overrides(data, patches[scenario]))

        configs = {scenario: config_of(scenario, None) for scenario in patches}
        point_configs = ({(scenario, p): config_of(scenario, p) for p in range(len(sweep.points)) for scenario in patches}
                         if sweep is not None else {})
        experiment = Experiment(name=name, configs=configs, patches=patches, path=None, replicates=replicates,
                                sweep=sweep, overrides=dict(manifest.get("overrides") or {}),
                                point_configs=point_configs)
        info = {k: manifest[k] for k in ("elapsed_s", "workers", "split", "resumed", "redone") if k in manifest}
        return cls(experiment, runs, failures, info=info)

    def save(self, directory: str | Path) -> Path:
        """Write the experiment into ``directory`` (replacing an earlier result), atomically.

        One run is written as a single result (see :meth:`Result.save`); several as
        ``runs/`` plus the tables, figures and ``report.html`` (:meth:`write_files`).
        """
        from .results import write_atomically

        if len(self.experiment.runs) == 1 and len(self.runs) == 1:
            (result,) = self.runs.values()
            return write_atomically(Path(directory), lambda tmp: result.write_files(tmp))
        return write_atomically(Path(directory), lambda tmp: self.write_files(tmp))

    def figure_caption(self, title: str, events: list | None = None, sweep: bool = False) -> tuple[str, dict]:
        """The caption of a figure of this experiment, and its provenance (as its PNG's metadata carry it).

        The caption names the experiment (and its file), households per run, scenarios,
        replicates (and what the line and band are), the period, the policy events
        marked, and the povsim version and date.
        """
        from . import __version__
        from .figures import _now, _shown

        exp = self.experiment
        base = exp.configs[BASELINE]
        created = _now().isoformat()
        where = f" ({_shown(exp.path)})" if exp.path is not None else ""
        n = len(exp.configs)
        if exp.replicates > 1:
            spread = (f"{exp.replicates} replicates per scenario (seeds from SeedSequence({exp.seed})), the same in every "
                      "scenario; " + ("each point the mean over the replicates, its bar the 95% interval of the mean"
                                      if sweep else "each line the mean over the replicates, the band its 95% interval "
                                      "of the mean (t-based)"))
        else:
            spread = f"one replicate (seed {exp.seed}): each {'point' if sweep else 'line'} is one run, with no interval"
        marks = ""
        if events:
            spans = [label for label, first, last in events if last > first]
            lines = [label for label, first, last in events if last <= first]
            marks = " Policy events: " + "; ".join(
                part for part in (f"grey span: {', '.join(spans)}" if spans else "",
                                  f"dotted lines: {', '.join(lines)}" if lines else "") if part) + "."
        sweep_text = f", {len(exp.sweep.points)} sweep points" if exp.sweep is not None else ""
        caption = (
            f"{title}. Experiment {exp.name}{where}: {base.population.households:,} households per run, {n} "
            f"scenario{'s' if n != 1 else ''}{sweep_text}, {spread}; {base.simulation.start} to {base.simulation.end}."
            f"{marks} Made by povsim {__version__}, {created[:10]}."
        )
        provenance = {
            "experiment": exp.name,
            "source": _shown(exp.path) if exp.path is not None else exp.name,
            "households": base.population.households,
            "scenarios": list(exp.configs),
            "replicates": exp.replicates,
            "events": [[label, str(first.date()), str(last.date())] for label, first, last in events or []],
            "povsim_version": __version__,
            "created": created,
        }
        return caption, provenance

    def _figure_png(self, fig, title: str, events: list | None = None, sweep: bool = False) -> bytes:
        from .figures import png_with_caption

        caption, provenance = self.figure_caption(title, events=events, sweep=sweep)
        return png_with_caption(fig, title, caption, provenance, dpi=FIGURE_DPI)

    def write_files(self, directory: str | Path, runs: bool = True) -> list[str]:
        """Write the experiment's outputs into the existing folder ``directory``; return the names written.

        The tables, figures, ``report.html`` and ``manifest.json`` (see :mod:`povsim.store`
        for the layout), each by temporary name and rename; ``runs=True`` also writes every
        run's folder under ``runs/`` (a result saved in one go).
        """
        from .files import atomic_file, sha256
        from .plots import metric_title, plot_scenarios, policy_events
        from .report import LABELS as HEADLINE_LABELS
        from .report import render_report

        directory = Path(directory)
        written: list[str] = []
        if runs:
            for spec, result in self.runs.items():
                folder = directory / "runs" / spec.path
                folder.mkdir(parents=True)
                result.write_files(folder, figures=False)
            written.append("runs")

        checksums: dict[str, str] = {}

        def put(name: str, write: Callable[[Path], Any]) -> None:
            with atomic_file(directory / name) as tmp:
                write(tmp)
            written.append(name)
            if name != "manifest.json":
                checksums[name] = sha256(directory / name)

        figures: dict[str, bytes] = {}
        if self.runs:
            tidy = self.metrics()
            put("metrics.parquet", lambda p: tidy.to_parquet(p, index=False))
            put("headlines.csv", lambda p: self.headlines().to_csv(p, index=False))
            put("summary.csv", lambda p: self.summary().to_csv(p))
            if len(self.experiment.configs) > 1:
                put("comparison.csv", lambda p: self.compare().to_csv(p))
            if self.experiment.sweep is not None:
                put("points.csv", lambda p: self.points().to_csv(p))
                for metric in SWEEP_FIGURES:
                    figures[f"sweep_{metric}.png"] = self._figure_png(
                        self.plot_sweep(metric), f"{HEADLINE_LABELS.get(metric, metric)} by swept value", sweep=True)
            else:
                events = policy_events(self.experiment.configs.values())
                for metric in TIME_FIGURES:
                    fig = plot_scenarios(tidy, metric, title=self.experiment.name, events=events)
                    figures[f"{metric}.png"] = self._figure_png(fig, metric_title(metric), events=events)
            for name, data in figures.items():
                put(name, lambda p, data=data: p.write_bytes(data))
        put("report.html", lambda p: p.write_text(render_report(self, figures), encoding="utf-8"))
        manifest = self.manifest()
        complete = self.ok and len(self.runs) == len(self.experiment.runs)
        manifest["status"] = "complete" if complete else "incomplete"
        manifest["files"] = checksums  # every file of the experiment's own, with its checksum (runs: their own)
        put("manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=2, default=str) + "\n"))
        return written


#: resolution of the figures in an experiment's folder
FIGURE_DPI = 110
