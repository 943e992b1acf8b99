"""Calibration by the simulated method of moments (SMM).

This module owns targets files, the model counterpart of each target, and the
search for parameters that bring the model close to its targets.

A **targets file** (TOML) lists observed moments with their sources::

    [[targets]]
    name = "headcount_2013"
    statistic = "year_end"          # how the model's counterpart is computed (see STATISTICS)
    metric = "headcount_rate"        # a column of result.metrics
    year = 2013
    value = 0.085
    tolerance = 0.005                # weight = 1 / tolerance**2
    source = "NBS, Xinhua 2015-10-16"

    [[targets]]
    name = "catastrophic_2018"
    statistic = "year_end_share"     # numerator / denominator, both metric columns
    metric = "catastrophic"
    denominator = "households"
    year = 2018
    ...

A **calibration file** names the experiment to start from, the targets, the
parameters to fit with their search ranges, and the search::

    name = "calibration_china"
    experiment = "china_2014_2020.toml"   # relative to this file
    targets = "targets_china.toml"
    households = 50_000
    method = "nelder-mead"                # or "differential-evolution" (parallel on Dask)
    max_evaluations = 80
    [parameters]
    "income.median" = [5000.0, 12000.0]

The objective is the weighted sum of squared deviations ``sum(((model - value) /
tolerance)**2)``.  Every evaluation uses the same seed, so the model's random
numbers are the same in every evaluation (common random numbers) and the
objective is a deterministic function of the parameters.  Searches run in the
unit cube mapped onto the ranges, with scipy.optimize; differential evolution
evaluates each generation in parallel on Dask (``client=``).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import Config, ConfigError, format_month, parse_month, read_toml
from .metrics import COLUMNS

__all__ = ["Target", "load_targets", "Calibration", "CalibrationResult", "model_moment", "STATISTICS"]


# --------------------------------------------------------------------------------------
# Targets and their model counterparts
# --------------------------------------------------------------------------------------


def _row(metrics: pd.DataFrame, month: int) -> pd.Series:
    stamp = pd.Timestamp(f"{month // 12:04d}-{month % 12 + 1:02d}-01")
    rows = metrics[metrics["month"] == stamp]
    if rows.empty:
        raise ValueError(f"month {format_month(month)} is not in the reported period")
    return rows.iloc[0]


def _year_end(metrics: pd.DataFrame, t: "Target") -> float:
    return float(_row(metrics, t.year * 12 + 11)[t.metric])


def _year_end_share(metrics: pd.DataFrame, t: "Target") -> float:
    row = _row(metrics, t.year * 12 + 11)
    den = float(row[t.denominator])
    return float(row[t.metric]) / den if den > 0 else math.nan


def _month_share(metrics: pd.DataFrame, t: "Target") -> float:
    row = _row(metrics, parse_month(t.month))
    den = float(row[t.denominator])
    return float(row[t.metric]) / den if den > 0 else math.nan


def _year_sum_share(metrics: pd.DataFrame, t: "Target") -> float:
    year = metrics[metrics["year"] == t.year]
    den = float(_row(metrics, t.year * 12 + 11)[t.denominator])
    return float(year[t.metric].sum()) / den if den > 0 else math.nan


def _ratio_in(metrics: pd.DataFrame, t: "Target", year: int) -> float:
    row = _row(metrics, year * 12 + 11)
    den = float(row[t.denominator])
    return float(row[t.metric]) / den if den > 0 else math.nan


def _growth(metrics: pd.DataFrame, t: "Target") -> float:
    start, end = _ratio_in(metrics, t, t.from_year), _ratio_in(metrics, t, t.year)
    if not (start > 0 and end > 0):
        return math.nan
    return (end / start) ** (1.0 / (t.year - t.from_year)) - 1.0


def _year_over_previous(metrics: pd.DataFrame, t: "Target") -> float:
    ratios = []
    for year in range(t.from_year if t.from_year is not None else t.year, t.year + 1):
        den = float(_row(metrics, (year - 1) * 12 + 11)[t.denominator])
        ratios.append(float(_row(metrics, year * 12 + 11)[t.metric]) / den if den > 0 else math.nan)
    return float(np.mean(ratios))


#: how a target's model counterpart is computed from ``result.metrics``
STATISTICS: dict[str, tuple[Callable[[pd.DataFrame, "Target"], float], str]] = {
    "year_end": (_year_end, "the metric in December of `year`"),
    "year_end_share": (_year_end_share, "metric / denominator in December of `year`"),
    "month_share": (_month_share, "metric / denominator in `month` ('YYYY-MM')"),
    "year_sum_share": (_year_sum_share, "the metric summed over `year` / denominator in its December"),
    "growth": (_growth, "annual growth of metric / denominator from December of `from_year` to December of `year`"),
    "year_over_previous": (_year_over_previous, "the metric in December of `year` / denominator in the December "
                           "before; the mean over `from_year` .. `year` when `from_year` is given"),
}

#: the statistics that need a denominator, and those that need ``from_year``
_SHARES = ("year_end_share", "month_share", "year_sum_share", "growth", "year_over_previous")
_SPANS = ("growth",)

_COUNTABLE = [c for c in COLUMNS if c not in ("month", "year")]


@dataclass(frozen=True)
class Target:
    """One observed moment and how the model's counterpart is computed."""

    name: str
    statistic: str
    metric: str
    value: float
    tolerance: float
    source: str
    year: int | None = None
    month: str | None = None
    denominator: str | None = None
    from_year: int | None = None
    bound: str | None = None  #: "upper": the figure bounds the model's value from above (only an excess counts)

    def model_value(self, metrics: pd.DataFrame) -> float:
        return STATISTICS[self.statistic][0](metrics, self)

    def months(self) -> list[int]:
        """The months (indices) whose metrics the model's counterpart reads."""
        if self.year is None:
            return [parse_month(self.month)]
        first = self.from_year if self.from_year is not None else self.year
        if self.statistic == "year_over_previous":
            first -= 1
        return [first * 12 + 11, self.year * 12 + 11] if first != self.year else [self.year * 12 + 11]

    def deviation(self, model: float) -> float:
        """The model's deviation from the figure, in tolerances (for an upper bound, only what is above it)."""
        dev = (model - self.value) / self.tolerance
        return max(dev, 0.0) if self.bound == "upper" else dev


def _target_from(entry: dict[str, Any], where: str) -> Target:
    allowed = {"name", "statistic", "metric", "value", "tolerance", "source", "year", "month", "denominator",
               "from_year", "bound"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
    for key in ("name", "statistic", "metric", "value", "tolerance", "source"):
        if key not in entry:
            raise ConfigError(f"{where}: missing key {key!r}")
    name = entry["name"]
    if entry["statistic"] not in STATISTICS:
        raise ConfigError(
            f"{where}.statistic = {entry['statistic']!r} (target {name!r}): unknown statistic; "
            f"allowed: {', '.join(STATISTICS)}"
        )
    for key in ("metric", "denominator"):
        if key in entry and entry[key] not in _COUNTABLE:
            raise ConfigError(
                f"{where}.{key} = {entry[key]!r} (target {name!r}): unknown metric; allowed: {', '.join(_COUNTABLE)}"
            )
    statistic = entry["statistic"]
    if statistic in ("year_end", "year_end_share", "year_sum_share") and not isinstance(entry.get("year"), int):
        raise ConfigError(f"{where}.year (target {name!r}): statistic {statistic!r} needs an integer year")
    if statistic == "month_share":
        try:
            parse_month(entry.get("month", ""))
        except ValueError as err:
            raise ConfigError(f"{where}.month (target {name!r}): {err}") from None
    if statistic in _SHARES and "denominator" not in entry:
        raise ConfigError(f"{where}.denominator (target {name!r}): statistic {statistic!r} needs a denominator")
    if statistic in ("year_over_previous", "growth") and not isinstance(entry.get("year"), int):
        raise ConfigError(f"{where}.year (target {name!r}): statistic {statistic!r} needs an integer year")
    if "from_year" in entry or statistic in _SPANS:
        from_year = entry.get("from_year")
        if not (isinstance(from_year, int) and not isinstance(from_year, bool) and isinstance(entry.get("year"), int)
                and from_year < entry["year"]):
            raise ConfigError(f"{where}.from_year = {from_year!r} (target {name!r}): allowed: an integer year before "
                              f"`year` ({entry.get('year')!r})")
        if statistic not in ("year_over_previous", "growth"):
            raise ConfigError(f"{where}.from_year (target {name!r}): only the statistics growth and "
                              f"year_over_previous take a from_year")
    if entry.get("bound", "upper") != "upper":
        raise ConfigError(f"{where}.bound = {entry['bound']!r} (target {name!r}): allowed: 'upper'")
    tolerance = entry["tolerance"]
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance > 0:
        raise ConfigError(f"{where}.tolerance = {tolerance!r} (target {name!r}): allowed: a number > 0")
    value = entry["value"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{where}.value = {value!r} (target {name!r}): allowed: a finite number")
    return Target(
        name=str(name),
        statistic=statistic,
        metric=entry["metric"],
        value=float(value),
        tolerance=float(tolerance),
        source=str(entry["source"]),
        year=entry.get("year"),
        month=entry.get("month"),
        denominator=entry.get("denominator"),
        from_year=entry.get("from_year"),
        bound=entry.get("bound"),
    )


def load_targets(path: str | Path) -> list[Target]:
    """Read and validate a targets file; an unknown metric or statistic is refused."""
    path = Path(path)
    data = read_toml(path, "targets file")
    unknown = sorted(set(data) - {"targets", "description"})
    if unknown:
        raise ConfigError(f"{path.name}: unknown key(s) {unknown}; allowed: targets, description")
    entries = data.get("targets")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path.name}: no [[targets]] entries")
    targets = [_target_from(e, f"targets[{k}]") for k, e in enumerate(entries)]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path.name}: target names must be unique, got {names}")
    return targets


def model_moment(metrics: pd.DataFrame, targets: list[Target]) -> np.ndarray:
    """The model's counterpart of every target, in order."""
    return np.array([t.model_value(metrics) for t in targets], dtype=np.float64)


def deviations(values, targets: list[Target]) -> np.ndarray:
    """Each model value's deviation from its target, in tolerances (NaN where the model's value is NaN)."""
    return np.array([t.deviation(v) if math.isfinite(v) else math.nan for v, t in zip(values, targets)])


def objective(values: np.ndarray, targets: list[Target]) -> float:
    """Weighted sum of squared deviations; NaN counts as a very large deviation."""
    dev = deviations(values, targets)
    dev = np.where(np.isfinite(dev), dev, 1e3)
    return float(np.sum(dev**2))


# --------------------------------------------------------------------------------------
# Evaluations (module-level, so Dask can ship them to workers)
# --------------------------------------------------------------------------------------


def _config_at(base: dict[str, Any], keys: tuple[str, ...], values) -> Config:
    from .config import apply_overrides, validate

    return validate(apply_overrides(base, {k: float(v) for k, v in zip(keys, values)}))


def _evaluate(base: dict[str, Any], keys: tuple[str, ...], targets: tuple[Target, ...], values) -> tuple[float, list]:
    import povsim

    result = povsim.run(_config_at(base, keys, values))
    moments = model_moment(result.metrics, list(targets))
    return objective(moments, list(targets)), moments.tolist()


def _refit(base: dict[str, Any], keys: tuple[str, ...], bounds: tuple[tuple[float, float], ...],
           targets: tuple[Target, ...], start, seed: int, max_evaluations: int) -> dict[str, Any]:
    """A Nelder-Mead search from ``start`` with the model's random numbers of ``seed`` (common within the search).

    Returns the best point's parameters, objective and moments, and the evaluations used.
    """
    from scipy import optimize

    base = {**base, "seed": int(seed)}
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    best: dict[str, Any] = {"objective": math.inf}
    count = 0

    def f(unit):
        nonlocal best, count
        values = lo + np.clip(unit, 0.0, 1.0) * (hi - lo)
        obj, moments = _evaluate(base, keys, targets, values)
        count += 1
        if obj < best["objective"]:
            best = {"objective": obj, "values": values.tolist(), "moments": moments}
        return obj

    unit = np.clip((np.asarray(start, float) - lo) / (hi - lo), 0.0, 1.0)
    optimize.minimize(f, unit, method="Nelder-Mead", bounds=[(0.0, 1.0)] * len(keys),
                      options={"maxfev": max_evaluations, "xatol": 1e-3, "fatol": 1e-3,
                               "initial_simplex": _simplex(unit, 0.05)})
    return {"seed": int(seed), "evaluations": count, **best}


def jacobian_points(values, bounds, step: float) -> list[np.ndarray]:
    """The points of a central-difference Jacobian: each parameter moved by ``step`` of its range
    down and up (one-sided where the range ends), in parameter order."""
    points = []
    for j, (lo, hi) in enumerate(bounds):
        h = step * (hi - lo)
        for sign in (-1.0, 1.0):
            p = np.array(values, float)
            p[j] = min(max(p[j] + sign * h, lo), hi)
            points.append(p)
    return points


def jacobian(points: list[np.ndarray], moments: list[np.ndarray]) -> np.ndarray:
    """d moment / d parameter (moments x parameters) from :func:`jacobian_points` and the moments there."""
    k = len(points) // 2
    out = np.empty((len(moments[0]), k))
    for j in range(k):
        lo, hi = points[2 * j], points[2 * j + 1]
        out[:, j] = (np.asarray(moments[2 * j + 1]) - np.asarray(moments[2 * j])) / (hi[j] - lo[j])
    return out


def smm_covariance(jac: np.ndarray, targets: list[Target], fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The parameters' covariance ``(G' W G)^-1`` of the simulated method of moments, and the targets used.

    ``G`` is the Jacobian of the model's moments at the fit, ``W = diag(1 / tolerance^2)``:
    each tolerance read as the standard error of its observed figure, so that ``W`` is the
    inverse of the figures' covariance (independent figures) and the estimator is efficient
    for that weighting.  An upper bound the fit does not reach carries no information
    about the parameters there and is left out, as is a target whose derivatives are not
    finite.  The random numbers' own contribution is measured separately, by refitting at
    other seeds.  Returns ``(covariance, used)``, ``used`` a boolean mask over the targets;
    the covariance is a pseudo-inverse where ``G' W G`` is singular (a parameter no used
    target moves): its variance is then infinite and is returned as ``inf``.
    """
    used = np.array([
        np.all(np.isfinite(jac[i])) and not (t.bound == "upper" and fit[i] <= t.value)
        for i, t in enumerate(targets)
    ])
    g = jac[used]
    w = np.array([1.0 / t.tolerance**2 for t, u in zip(targets, used) if u])
    info = g.T @ (w[:, None] * g)
    cov = np.linalg.pinv(info)
    unmoved = np.all(g == 0.0, axis=0)
    cov[unmoved, :] = np.inf
    cov[:, unmoved] = np.inf
    return cov, used


# --------------------------------------------------------------------------------------
# The calibration
# --------------------------------------------------------------------------------------


def _calibration_name(value: Any, path: Path) -> str:
    """A calibration's name, which becomes a folder name: checked like every other name."""
    from .config import check_name

    try:
        return check_name(str(value))
    except ValueError as err:
        raise ConfigError(f"{path.name}: {err}") from None


@dataclass
class Calibration:
    """A base config, targets, and parameters with search ranges."""

    name: str
    base: dict[str, Any]  #: the resolved base config (a dict)
    targets: list[Target]
    parameters: dict[str, tuple[float, float]]  #: key path -> (low, high)
    method: str = "nelder-mead"
    max_evaluations: int = 80
    path: Path | None = None
    seeds: int = 0  #: other seeds to refit at, for the fit's dependence on the random numbers (0: none)
    seed_evaluations: int = 60  #: evaluations of each seed's refit (Nelder-Mead from the fit)
    jacobian_step: float = 0.02  #: the Jacobian's central-difference step, a share of each range

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Calibration":
        from .config import load_config

        path = Path(path)
        data = read_toml(path, "calibration file")
        allowed = {"name", "description", "experiment", "targets", "households", "method", "max_evaluations",
                   "parameters", "seeds", "seed_evaluations", "jacobian_step"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"{path.name}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        for key in ("experiment", "targets", "parameters"):
            if key not in data:
                raise ConfigError(f"{path.name}: missing key {key!r}")
        name = _calibration_name(data.get("name", path.stem), path)
        overrides = dict(overrides or {})
        if "households" in data:
            overrides.setdefault("population.households", data["households"])
        base = load_config(path.parent / data["experiment"], overrides=overrides)
        targets = load_targets(path.parent / data["targets"])
        calibration = cls(
            name=name,
            base=base.to_dict(),
            targets=targets,
            parameters=_check_parameters(base, data["parameters"]),
            method=str(data.get("method", "nelder-mead")),
            max_evaluations=_integer(data, "max_evaluations", 80, path),
            path=path,
            seeds=_integer(data, "seeds", 0, path),
            seed_evaluations=_integer(data, "seed_evaluations", 60, path),
            jacobian_step=_number(data, "jacobian_step", 0.02, path),
        )
        calibration.validate()
        return calibration

    def validate(self) -> None:
        if self.method not in ("nelder-mead", "differential-evolution"):
            raise ConfigError(f"method = {self.method!r}: allowed: 'nelder-mead', 'differential-evolution'")
        if not 1 <= self.max_evaluations <= 100_000:
            raise ConfigError(f"max_evaluations = {self.max_evaluations}: allowed: 1 to 100000")
        if not 0 <= self.seeds <= 1000:
            raise ConfigError(f"seeds = {self.seeds}: allowed: 0 (no refits) to 1000")
        if not 1 <= self.seed_evaluations <= 100_000:
            raise ConfigError(f"seed_evaluations = {self.seed_evaluations}: allowed: 1 to 100000")
        if not 0 < self.jacobian_step <= 0.25:
            raise ConfigError(f"jacobian_step = {self.jacobian_step}: allowed: a share of each range, > 0 and <= 0.25")
        reported = range(parse_month(self.base["simulation"]["start"]), parse_month(self.base["simulation"]["end"]) + 1)
        for t in self.targets:
            for month in t.months():
                if month not in reported:
                    raise ConfigError(f"target {t.name!r}: {format_month(month)} is outside the simulated period")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.parameters)

    def _to_values(self, unit) -> np.ndarray:
        lo = np.array([b[0] for b in self.parameters.values()])
        hi = np.array([b[1] for b in self.parameters.values()])
        return lo + np.clip(np.asarray(unit, float), 0.0, 1.0) * (hi - lo)

    def _to_unit(self, values) -> np.ndarray:
        lo = np.array([b[0] for b in self.parameters.values()])
        hi = np.array([b[1] for b in self.parameters.values()])
        return np.clip((np.asarray(values, float) - lo) / (hi - lo), 0.0, 1.0)

    def start_values(self) -> np.ndarray:
        """The base config's values of the fitted parameters."""
        return np.array([_value_at(self.base, key) for key in self.keys])

    def run(self, client=None, progress: bool = False) -> "CalibrationResult":
        """Search; evaluations run on ``client`` (a dask.distributed Client) when given."""
        import time

        from scipy import optimize

        started = time.perf_counter()
        evaluate = functools.partial(_evaluate, self.base, self.keys, tuple(self.targets))
        history: list[dict[str, Any]] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_evaluations, unit="run", desc=self.name, leave=False)

        def record(values, outcome) -> float:
            obj, moments = outcome
            history.append({**dict(zip(self.keys, map(float, values))), "objective": obj,
                            **{t.name: m for t, m in zip(self.targets, moments)}})
            if bar is not None:
                bar.update(1)
            return obj

        def f(unit):
            values = self._to_values(unit)
            return record(values, evaluate(values))

        start = self._to_unit(self.start_values())
        if self.method == "nelder-mead":
            optimize.minimize(
                f, start, method="Nelder-Mead", bounds=[(0.0, 1.0)] * len(self.keys),
                options={"maxfev": self.max_evaluations, "xatol": 1e-3, "fatol": 1e-3, "initial_simplex": _simplex(start)},
            )
        else:
            def mapper(func, points):
                points = [self._to_values(u) for u in points]
                if client is not None:
                    outcomes = client.gather(client.map(evaluate, points, pure=False))
                else:
                    outcomes = [evaluate(v) for v in points]
                return [record(v, o) for v, o in zip(points, outcomes)]

            dim = len(self.keys)
            popsize = 5
            generations = max(1, self.max_evaluations // (popsize * dim) - 1)
            seed = int(np.random.SeedSequence(int(self.base["seed"])).generate_state(1)[0])
            optimize.differential_evolution(
                f, [(0.0, 1.0)] * dim, workers=mapper, updating="deferred", maxiter=generations, popsize=popsize,
                polish=False, seed=seed, x0=start, tol=1e-3,
            )
        if bar is not None:
            bar.close()
        table = pd.DataFrame(history)
        best = table.loc[table["objective"].idxmin()]
        fitted = {k: float(best[k]) for k in self.keys}
        first = table.iloc[0]
        result = CalibrationResult(self, fitted, float(best["objective"]), table,
                                   start={t.name: float(first[t.name]) for t in self.targets},
                                   fit={t.name: float(best[t.name]) for t in self.targets})
        if self.seeds:
            result.uncertainty = self.uncertainty(result, client=client, progress=progress)
        result.wall_seconds = time.perf_counter() - started
        return result

    def _map(self, client, func, items: list) -> list:
        if client is not None:
            return client.gather(client.map(func, items, pure=False))
        return [func(item) for item in items]

    def uncertainty(self, result: "CalibrationResult", client=None, progress: bool = False) -> "Uncertainty":
        """Standard errors from the SMM Jacobian at the fit, and refits at :attr:`seeds` other seeds.

        The Jacobian is by central differences of :attr:`jacobian_step` of each range,
        with the fit's random numbers (common random numbers), so the differences are the
        model's response, not noise.  Each refit is a Nelder-Mead search of
        :attr:`seed_evaluations` evaluations from the fit, with the random numbers of one of
        ``SeedSequence(seed).spawn(seeds)`` (common within the refit); the spread of the
        refits' values is how much the fit moves with the random numbers.
        """
        from .experiments import replicate_seeds

        values = np.array([result.fitted[k] for k in self.keys])
        bounds = tuple(self.parameters[k] for k in self.keys)
        targets = tuple(self.targets)
        evaluate = functools.partial(_evaluate, self.base, self.keys, targets)
        points = jacobian_points(values, bounds, self.jacobian_step)
        moments = [np.asarray(m) for _, m in self._map(client, evaluate, points)]
        jac = jacobian(points, moments)
        fit = np.array([result.fit[t.name] for t in self.targets])
        cov, used = smm_covariance(jac, self.targets, fit)
        seeds = replicate_seeds(int(self.base["seed"]), self.seeds)
        refit = functools.partial(_refit, self.base, self.keys, bounds, targets, values,
                                  max_evaluations=self.seed_evaluations)
        refits = self._map(client, refit, seeds)
        rows = [{"seed": r["seed"], "evaluations": r["evaluations"], "objective": r["objective"],
                 **dict(zip(self.keys, r["values"])), **{t.name: m for t, m in zip(self.targets, r["moments"])}}
                for r in refits]
        return Uncertainty(self, values, jac, cov, used, pd.DataFrame(rows))


def _value_at(data: dict[str, Any], key: str) -> float:
    """The number at a dotted key path of config data (a schedule's year may be an int or a str key)."""
    node: Any = data
    for part in key.split("."):
        if isinstance(node, dict) and part not in node and part.isdigit() and int(part) in node:
            part = int(part)
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"parameters.{key}: the experiment has no value there to start from "
                              "(a schedule's year must be listed in the experiment's table)")
        node = node[part]
    return float(node)


def _simplex(start: np.ndarray, step: float = 0.15) -> np.ndarray:
    """An initial simplex of steps of ``step`` (of each range) around the start, kept inside the cube."""
    points = [start]
    for j in range(start.shape[0]):
        p = start.copy()
        p[j] = p[j] + step if p[j] + step <= 1.0 else p[j] - step
        points.append(p)
    return np.array(points)


def _check_parameters(base: Config, parameters: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError("parameters: a table of \"key.path\" = [low, high]")
    out = {}
    for key, bounds in parameters.items():
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            or not bounds[0] < bounds[1]
        ):
            raise ConfigError(f"parameters.{key} = {bounds!r}: allowed: [low, high] with low < high")
        for b in bounds:  # both ends must be valid values of the key
            try:
                base.with_overrides({key: float(b)})
            except ConfigError as err:
                raise ConfigError(f"parameters.{key} = {bounds!r}: {err}") from None
        out[key] = (float(bounds[0]), float(bounds[1]))
    return out


def _integer(data: dict[str, Any], key: str, default: int, path: Path) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{path.name}: {key} = {value!r}: allowed: an integer")
    return value


def _number(data: dict[str, Any], key: str, default: float, path: Path) -> float:
    value = data.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{path.name}: {key} = {value!r}: allowed: a number")
    return float(value)


WEAK_SHARE = 0.25  #: a parameter is weakly identified when its standard error passes this share of its range


@dataclass
class Uncertainty:
    """How well the targets pin the parameters down, and how much the fit moves with the random numbers."""

    calibration: "Calibration"
    fitted: np.ndarray  #: the fit's values, in parameter order
    jacobian: np.ndarray  #: d moment / d parameter at the fit (targets x parameters)
    covariance: np.ndarray  #: SMM covariance of the parameters, (G' W G)^-1
    used: np.ndarray  #: the targets the covariance uses (bool, in target order)
    refits: pd.DataFrame  #: one row per seed: seed, evaluations, objective, fitted values, moments

    def table(self) -> pd.DataFrame:
        """Per parameter: range, fit, SMM standard error, the refits' mean, SD, lowest and highest, and
        whether it is weakly identified (standard error or the refits' SD above a quarter of its range)."""
        c = self.calibration
        rows = []
        for j, key in enumerate(c.keys):
            lo, hi = c.parameters[key]
            se = float(np.sqrt(self.covariance[j, j])) if np.isfinite(self.covariance[j, j]) else math.inf
            values = self.refits[key] if len(self.refits) else pd.Series([math.nan])
            sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            rows.append({
                "parameter": key, "low": lo, "high": hi, "fitted": float(self.fitted[j]), "standard_error": se,
                "seeds_mean": float(values.mean()), "seeds_sd": sd, "seeds_min": float(values.min()),
                "seeds_max": float(values.max()),
                "weakly_identified": bool(se > WEAK_SHARE * (hi - lo) or (sd == sd and sd > WEAK_SHARE * (hi - lo))),
            })
        return pd.DataFrame(rows).set_index("parameter")

    def correlations(self) -> pd.DataFrame:
        """The parameters' correlation matrix from the SMM covariance (NaN for an unidentified parameter)."""
        sd = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = self.covariance / np.outer(sd, sd)
        corr[~np.isfinite(corr)] = np.nan
        return pd.DataFrame(corr, index=list(self.calibration.keys), columns=list(self.calibration.keys))

    def traded_off(self, threshold: float = 0.9) -> list[tuple[str, str, float]]:
        """Pairs of parameters whose estimates correlate beyond ``threshold`` (the targets move them together)."""
        corr = self.correlations()
        keys = list(corr.index)
        return [(a, b, float(corr.loc[a, b])) for i, a in enumerate(keys) for b in keys[i + 1:]
                if abs(corr.loc[a, b]) > threshold]

    def moments(self) -> pd.DataFrame:
        """Per target: the refits' model values (mean, lowest, highest) beside the observed figure."""
        rows = []
        for t in self.calibration.targets:
            v = self.refits[t.name]
            rows.append({"target": t.name, "observed": t.value, "seeds_mean": float(v.mean()),
                         "seeds_min": float(v.min()), "seeds_max": float(v.max())})
        return pd.DataFrame(rows).set_index("target")


@dataclass
class CalibrationResult:
    calibration: Calibration
    fitted: dict[str, float]  #: key path -> fitted value
    objective: float
    history: pd.DataFrame  #: one row per evaluation: parameters, objective, model moments
    start: dict[str, float] = field(default_factory=dict)  #: model moments at the start
    fit: dict[str, float] = field(default_factory=dict)  #: model moments at the fit
    uncertainty: Uncertainty | None = None  #: standard errors and refits at other seeds, when asked for
    wall_seconds: float = math.nan  #: the search's wall time (and the uncertainty's, when asked for)

    def table(self) -> pd.DataFrame:
        """Each target: observed value, tolerance, model at the start and at the fit, deviation in tolerances."""
        rows = []
        for t in self.calibration.targets:
            rows.append({
                "target": t.name, "observed": t.value, "tolerance": t.tolerance,
                "model_start": self.start[t.name], "model_fit": self.fit[t.name],
                "deviation_sd": t.deviation(self.fit[t.name]), "source": t.source,
            })
        return pd.DataFrame(rows).set_index("target")

    def plot(self):
        """Observed targets against the model at the start and at the fit (a matplotlib Figure)."""
        from .plots import plot_targets

        return plot_targets(
            self.table(), {"model_start": "model, start", "model_fit": "model, fitted"},
            title=f"Calibration {self.calibration.name}: objective {self.objective:.2f}",
        )

    def fitted_toml(self) -> str:
        lines = [f"# Fitted by `povsim calibrate` ({self.calibration.name}), objective {self.objective:.4g}, "
                 f"{len(self.history)} evaluations"]
        lines += [f'"{k}" = {v!r}' for k, v in self.fitted.items()]
        return "\n".join(lines) + "\n"

    def report(self) -> str:
        c = self.calibration
        t = self.table()
        md = [f"# Calibration: {c.name}", "",
              f"Method {c.method}, {len(self.history)} evaluations of {c.base['population']['households']:,} "
              f"households, seed {c.base['seed']} (common random numbers in every evaluation); wall time "
              f"{self.wall_seconds / 60:.1f} minutes.", "",
              "## Fitted parameters", "", "| parameter | range | fitted |", "|---|---|---|"]
        md += [f"| `{k}` | {c.parameters[k][0]:g} – {c.parameters[k][1]:g} | {v:.6g} |" for k, v in self.fitted.items()]
        md += ["", f"Objective (sum of squared deviations in tolerances): {self.objective:.4g}", "",
               "## Targets", "", "| target | observed | tolerance | model, start | model, fitted | deviation (tol.) | source |",
               "|---|---|---|---|---|---|---|"]
        for name, r in t.iterrows():
            md.append(f"| {name} | {r.observed:.4g} | {r.tolerance:.3g} | {r.model_start:.4g} | {r.model_fit:.4g} | "
                      f"{r.deviation_sd:+.2f} | {r.source} |")
        if self.uncertainty is not None:
            md += ["", *self.uncertainty_markdown()]
        return "\n".join(md) + "\n"

    def uncertainty_markdown(self) -> list[str]:
        """The uncertainty section of the report: standard errors, refits at other seeds, identification."""
        u = self.uncertainty
        c = self.calibration
        t = u.table()
        n = len(u.refits)
        md = ["## Uncertainty", "",
              f"Standard errors from the SMM Jacobian at the fit (central differences of {c.jacobian_step:g} of "
              f"each range, common random numbers; {int(u.used.sum())} of {len(c.targets)} targets used, "
              "tolerances read as the figures' standard errors), and refits at "
              f"{n} other seeds (Nelder-Mead from the fit, {c.seed_evaluations} evaluations each).", "",
              "| parameter | fitted | standard error | refits: mean | SD | lowest | highest | weakly identified |",
              "|---|---|---|---|---|---|---|---|"]
        for key, r in t.iterrows():
            md.append(f"| `{key}` | {r.fitted:.4g} | {r.standard_error:.3g} | {r.seeds_mean:.4g} | {r.seeds_sd:.3g} | "
                      f"{r.seeds_min:.4g} | {r.seeds_max:.4g} | {'yes' if r.weakly_identified else 'no'} |")
        weak = [k for k, r in t.iterrows() if r.weakly_identified]
        pairs = u.traded_off()
        md += ["", "Weakly identified (standard error or refits' SD above a quarter of the range): "
               + (", ".join(f"`{k}`" for k in weak) if weak else "none") + ".",
               "Pairs the targets move together (estimates correlated beyond 0.9): "
               + (", ".join(f"`{a}` and `{b}` ({r:+.2f})" for a, b, r in pairs) if pairs else "none") + ".",
               "", f"The refits' objectives: {u.refits['objective'].min():.3g} to {u.refits['objective'].max():.3g}.",
               "", "| target | observed | refits: mean | lowest | highest |", "|---|---|---|---|---|"]
        for name, r in u.moments().iterrows():
            md.append(f"| {name} | {r.observed:.4g} | {r.seeds_mean:.4g} | {r.seeds_min:.4g} | {r.seeds_max:.4g} |")
        return md

    def save(self, directory: str | Path) -> Path:
        from . import __version__
        from .files import sha256
        from .results import write_atomically

        def write(tmp: Path) -> None:
            (tmp / "fitted.toml").write_text(self.fitted_toml())
            (tmp / "report.md").write_text(self.report())
            self.history.to_csv(tmp / "history.csv", index=False)
            self.table().to_csv(tmp / "targets.csv")
            if self.uncertainty is not None:
                self.uncertainty.table().to_csv(tmp / "uncertainty.csv")
                self.uncertainty.refits.to_csv(tmp / "refits.csv", index=False)
                pd.DataFrame(self.uncertainty.jacobian, index=[t.name for t in self.calibration.targets],
                             columns=list(self.calibration.keys)).to_csv(tmp / "jacobian.csv")
            self.plot().savefig(tmp / "targets.png", dpi=120)
            files = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}  # povsim's own, checked on reuse
            (tmp / "manifest.json").write_text(json.dumps({
                "povsim_version": __version__, "calibration": self.calibration.name, "files": files,
                "evaluations": len(self.history), "objective": self.objective, "fitted": self.fitted,
                "wall_seconds": self.wall_seconds,
                "standard_errors": (None if self.uncertainty is None else
                                    {k: float(v) for k, v in self.uncertainty.table()["standard_error"].items()}),
            }, indent=2) + "\n")

        return write_atomically(Path(directory), write)
