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


#: how a target's model counterpart is computed from ``result.metrics``
STATISTICS: dict[str, tuple[Callable[[pd.DataFrame, "Target"], float], str]] = {
    "year_end": (_year_end, "the metric in December of `year`"),
    "year_end_share": (_year_end_share, "metric / denominator in December of `year`"),
    "month_share": (_month_share, "metric / denominator in `month` ('YYYY-MM')"),
    "year_sum_share": (_year_sum_share, "the metric summed over `year` / denominator in its December"),
}

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

    def model_value(self, metrics: pd.DataFrame) -> float:
        return STATISTICS[self.statistic][0](metrics, self)


def _target_from(entry: dict[str, Any], where: str) -> Target:
    allowed = {"name", "statistic", "metric", "value", "tolerance", "source", "year", "month", "denominator"}
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
    if statistic.endswith("share") and "denominator" not in entry:
        raise ConfigError(f"{where}.denominator (target {name!r}): statistic {statistic!r} needs a denominator")
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


def objective(values: np.ndarray, targets: list[Target]) -> float:
    """Weighted sum of squared deviations; NaN counts as a very large deviation."""
    dev = (values - np.array([t.value for t in targets])) / np.array([t.tolerance for t in targets])
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

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Calibration":
        from .config import load_config

        path = Path(path)
        data = read_toml(path, "calibration file")
        allowed = {"name", "description", "experiment", "targets", "households", "method", "max_evaluations", "parameters"}
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
            max_evaluations=int(data.get("max_evaluations", 80)),
            path=path,
        )
        calibration.validate()
        return calibration

    def validate(self) -> None:
        if self.method not in ("nelder-mead", "differential-evolution"):
            raise ConfigError(f"method = {self.method!r}: allowed: 'nelder-mead', 'differential-evolution'")
        if not 1 <= self.max_evaluations <= 100_000:
            raise ConfigError(f"max_evaluations = {self.max_evaluations}: allowed: 1 to 100000")
        reported = range(parse_month(self.base["simulation"]["start"]), parse_month(self.base["simulation"]["end"]) + 1)
        for t in self.targets:
            month = t.year * 12 + 11 if t.year is not None else parse_month(t.month)
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
        out = []
        for key in self.keys:
            node: Any = self.base
            for part in key.split("."):
                node = node[part]
            out.append(float(node))
        return np.array(out)

    def run(self, client=None, progress: bool = False) -> "CalibrationResult":
        """Search; evaluations run on ``client`` (a dask.distributed Client) when given."""
        from scipy import optimize

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
        return CalibrationResult(self, fitted, float(best["objective"]), table,
                                 start={t.name: float(first[t.name]) for t in self.targets},
                                 fit={t.name: float(best[t.name]) for t in self.targets})


def _simplex(start: np.ndarray) -> np.ndarray:
    """An initial simplex of steps of 0.15 (of each range) around the start, kept inside the cube."""
    points = [start]
    for j in range(start.shape[0]):
        p = start.copy()
        p[j] = p[j] + 0.15 if p[j] + 0.15 <= 1.0 else p[j] - 0.15
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


@dataclass
class CalibrationResult:
    calibration: Calibration
    fitted: dict[str, float]  #: key path -> fitted value
    objective: float
    history: pd.DataFrame  #: one row per evaluation: parameters, objective, model moments
    start: dict[str, float] = field(default_factory=dict)  #: model moments at the start
    fit: dict[str, float] = field(default_factory=dict)  #: model moments at the fit

    def table(self) -> pd.DataFrame:
        """Each target: observed value, tolerance, model at the start and at the fit, deviation in tolerances."""
        rows = []
        for t in self.calibration.targets:
            rows.append({
                "target": t.name, "observed": t.value, "tolerance": t.tolerance,
                "model_start": self.start[t.name], "model_fit": self.fit[t.name],
                "deviation_sd": (self.fit[t.name] - t.value) / t.tolerance, "source": t.source,
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
              f"households, seed {c.base['seed']} (common random numbers in every evaluation).", "",
              "## Fitted parameters", "", "| parameter | range | fitted |", "|---|---|---|"]
        md += [f"| `{k}` | {c.parameters[k][0]:g} – {c.parameters[k][1]:g} | {v:.6g} |" for k, v in self.fitted.items()]
        md += ["", f"Objective (sum of squared deviations in tolerances): {self.objective:.4g}", "",
               "## Targets", "", "| target | observed | tolerance | model, start | model, fitted | deviation (tol.) | source |",
               "|---|---|---|---|---|---|---|"]
        for name, r in t.iterrows():
            md.append(f"| {name} | {r.observed:.4g} | {r.tolerance:.3g} | {r.model_start:.4g} | {r.model_fit:.4g} | "
                      f"{r.deviation_sd:+.2f} | {r.source} |")
        return "\n".join(md) + "\n"

    def save(self, directory: str | Path) -> Path:
        from .results import write_atomically
        from . import __version__

        def write(tmp: Path) -> None:
            (tmp / "fitted.toml").write_text(self.fitted_toml())
            (tmp / "report.md").write_text(self.report())
            self.history.to_csv(tmp / "history.csv", index=False)
            self.table().to_csv(tmp / "targets.csv")
            self.plot().savefig(tmp / "targets.png", dpi=120)
            (tmp / "manifest.json").write_text(json.dumps({
                "povsim_version": __version__, "calibration": self.calibration.name,
                "evaluations": len(self.history), "objective": self.objective, "fitted": self.fitted,
            }, indent=2) + "\n")

        return write_atomically(Path(directory), write)
