"""Experiments: a baseline config plus named scenarios, each a patch on the baseline.

This module owns the experiment file's ``[scenarios]`` tables and the comparison of
scenarios.  An experiment file is a config (see :mod:`povsim.config`) with, optionally::

    [scenarios.no_lookback]
    "policy.lookback.enabled" = false

    [scenarios.annual_reviews_from_2015]
    "policy.review.first" = "2015-10"

Every scenario is validated, with its patches applied, before any run starts: a bad
key in the fifth scenario stops the experiment with the scenario's name and the
key path, and nothing runs or is written.  All scenarios share the baseline's seed,
so with povsim's counter-based streams every household draws the same random
numbers in every scenario (common random numbers): the same illnesses, job losses
and income shocks, except where policy itself changes an outcome (support speeds
re-employment), so a difference between scenarios is the policy's, not noise.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Config, ConfigError, _apply_overrides, _merge, _validate
from .results import Result, write_atomically

__all__ = ["Experiment", "ExperimentResult", "headline"]

BASELINE = "baseline"


def _flatten(patch: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted paths: {"policy": {"lookback": {"enabled": False}}} -> {"policy.lookback.enabled": False}."""
    flat: dict[str, Any] = {}
    for key, value in patch.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not path.endswith("poverty.lines"):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


@dataclass
class Experiment:
    """A baseline and its scenarios, validated."""

    name: str
    configs: dict[str, Config]  #: scenario name -> validated config; the baseline first
    patches: dict[str, dict[str, Any]] = field(default_factory=dict)  #: scenario -> its dotted patches
    path: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Experiment":
        """Read an experiment file; ``overrides`` apply to the baseline and every scenario."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"experiment file not found: {str(path)!r}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"malformed TOML in {str(path)!r}: {err}") from None
        scenarios = data.pop("scenarios", {})
        if not isinstance(scenarios, dict) or any(not isinstance(v, dict) for v in scenarios.values()):
            raise ConfigError("scenarios: each scenario is a table of patches, e.g. [scenarios.no_lookback]")
        data.setdefault("name", path.stem)
        base = _merge(Config, Config().to_dict(), data)
        return cls.from_dict(base, {k: _flatten(v) for k, v in scenarios.items()}, overrides, path)

    @classmethod
    def from_dict(
        cls,
        base: dict[str, Any],
        scenarios: dict[str, dict[str, Any]] | None = None,
        overrides: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> "Experiment":
        """A baseline (a config dict) plus scenario patches (dotted paths), all validated first."""
        scenarios = scenarios or {}
        if BASELINE in scenarios:
            raise ConfigError(f"scenarios.{BASELINE}: the name {BASELINE!r} is reserved for the unpatched config")
        configs: dict[str, Config] = {}
        errors = []
        for name, patch in [(BASELINE, {})] + list(scenarios.items()):
            try:
                configs[name] = _validate(_apply_overrides(_apply_overrides(base, patch), overrides))
            except ConfigError as err:
                where = "baseline" if name == BASELINE else f"scenario {name!r}"
                errors.append(f"{where}: {err}")
        if errors:
            raise ConfigError("\n".join(errors))
        return cls(name=configs[BASELINE].name, configs=configs, patches={BASELINE: {}, **scenarios}, path=path)

    @property
    def scenarios(self) -> list[str]:
        return list(self.configs)

    def run(self, progress: bool = False) -> "ExperimentResult":
        """Run every scenario in turn (the baseline first)."""
        import povsim

        results = {name: povsim.run(cfg, progress=progress) for name, cfg in self.configs.items()}
        return ExperimentResult(self, results)


def headline(result: Result) -> dict[str, float]:
    """The numbers a scenario is compared on, over the reported period.

    Error rates are averaged over the months after the first policy event (when a
    register exists); stocks are the last month's; flows and costs are totals.
    """
    m = result.metrics
    active = m[m["registered"] > 0]
    last = m.iloc[-1]
    entrants = sum(m[c].sum() for c in m.columns if c.startswith("entered_"))
    poor_months = m["poor"].sum()
    return {
        "exclusion_error_mean": float(active["exclusion_error"].mean()) if len(active) else np.nan,
        "inclusion_error_mean": float(active["inclusion_error"].mean()) if len(active) else np.nan,
        "exclusion_error_end": float(last["exclusion_error"]),
        "inclusion_error_end": float(last["inclusion_error"]),
        "headcount_rate_end": float(last["headcount_rate"]),
        "poor_household_months": float(poor_months),
        "detection_delay_mean": _weighted_delay(result),
        "entered": float(entrants),
        "exited": float(m["exited"].sum()),
        "wrong_exit": float(m["wrong_exit"].sum()),
        "return_to_poverty": float(m["return_to_poverty"].sum()),
        "cost_total_yuan": float(m["cost_total"].sum()),
        "transfers_yuan": float(m["cost_transfers"].sum()),
    }


def _weighted_delay(result: Result) -> float:
    d = result.detection_delays()
    if d is None:
        return np.nan
    d = d.drop(columns="unknown", errors="ignore")
    months = np.arange(d.shape[1], dtype=float)  # the last bin (48+) counts as 48
    total = d.to_numpy().sum()
    return float((d.to_numpy() * months).sum() / total) if total else np.nan


@dataclass
class ExperimentResult:
    experiment: Experiment
    results: dict[str, Result]

    def manifest(self) -> dict[str, Any]:
        """How the experiment was made: povsim version, scenarios and their patches."""
        from . import __version__

        return {
            "povsim_version": __version__,
            "experiment": self.experiment.name,
            "scenarios": {name: self.experiment.patches.get(name, {}) for name in self.results},
            "seed": self.experiment.configs[BASELINE].seed,
            "wall_time_s": round(sum(r.manifest.get("wall_time_s", 0.0) for r in self.results.values()), 3),
        }

    def summary(self) -> pd.DataFrame:
        """One row per scenario: its headline numbers (see :func:`headline`)."""
        table = pd.DataFrame({name: headline(r) for name, r in self.results.items()}).T
        table.index.name = "scenario"
        return table

    def metrics(self) -> pd.DataFrame:
        """Every scenario's monthly metrics in one tidy table with a ``scenario`` column."""
        frames = [r.metrics.assign(scenario=name) for name, r in self.results.items()]
        out = pd.concat(frames, ignore_index=True)
        return out[["scenario"] + [c for c in out.columns if c != "scenario"]]

    def plot(self, metric: str = "exclusion_error"):
        """One line per scenario over time for ``metric`` (a matplotlib Figure)."""
        from .plots import plot_scenarios

        return plot_scenarios(self.metrics(), metric, title=self.experiment.name)

    def save(self, directory: str | Path) -> Path:
        """Each scenario's result under ``directory/<scenario>/``, plus ``summary.csv`` and figures.

        A single-scenario experiment is written straight into ``directory``.
        Written atomically: nothing is left if writing fails.
        """
        from .plots import plot_scenarios

        def write(tmp: Path) -> None:
            if len(self.results) == 1:
                (result,) = self.results.values()
                result.write_files(tmp)
                return
            for name, result in self.results.items():
                (tmp / name).mkdir()
                result.write_files(tmp / name)
            self.summary().to_csv(tmp / "summary.csv")
            (tmp / "manifest.json").write_text(json.dumps(self.manifest(), indent=2) + "\n")
            tidy = self.metrics()
            for metric in ("exclusion_error", "inclusion_error", "headcount_rate"):
                plot_scenarios(tidy, metric, title=self.experiment.name).savefig(tmp / f"{metric}.png", dpi=120)

        return write_atomically(Path(directory), write)
