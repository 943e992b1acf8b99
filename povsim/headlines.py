"""The headline numbers a run is compared on: each declared once, with its label, definition and kind.

A headline number sums up one run over the reported period (error rates averaged over
the months with a register, stocks at the end, flows and costs summed).  Experiments
compare scenarios on them (:mod:`povsim.experiments`); reports and figures label them
(:mod:`povsim.report`, :mod:`povsim.plots`) from the same declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .results import Result

__all__ = ["Headline", "HEADLINES", "HEADLINE", "LABELS", "DEFINITIONS", "KINDS", "headline"]


@dataclass(frozen=True)
class Headline:
    """One headline number: ``kind`` is ``"rate"`` (shown in percent), ``"money"`` (million yuan), ``"months"`` or ``"count"``."""

    name: str
    label: str  #: a table row's label, with its unit
    definition: str
    kind: str
    compute: Callable[["Result"], float]


def _active(result: "Result"):
    m = result.metrics
    return m[m["registered"] > 0]


def _mean_over_register(column: str) -> Callable[["Result"], float]:
    def compute(result: "Result") -> float:
        active = _active(result)
        return float(active[column].mean()) if len(active) else np.nan

    return compute


def _end(column: str) -> Callable[["Result"], float]:
    return lambda result: float(result.metrics.iloc[-1][column])


def _total(column: str) -> Callable[["Result"], float]:
    return lambda result: float(result.metrics[column].sum())


def _entered(result: "Result") -> float:
    m = result.metrics
    return float(sum(m[c].sum() for c in m.columns if c.startswith("entered_")))


def _weighted_delay(result: "Result") -> float:
    d = result.detection_delays()
    if d is None:
        return np.nan
    d = d.drop(columns="unknown", errors="ignore")
    months = np.arange(d.shape[1], dtype=float)  # the last bin (48+) counts as 48
    total = d.to_numpy().sum()
    return float((d.to_numpy() * months).sum() / total) if total else np.nan


#: every headline number, in the order of every table
HEADLINES: tuple[Headline, ...] = (
    Headline("exclusion_error_mean", "exclusion error, mean %",
             "poor not registered / poor, averaged over the months with a register", "rate",
             _mean_over_register("exclusion_error")),
    Headline("inclusion_error_mean", "inclusion error, mean %",
             "non-poor registered / registered, averaged over the months with a register", "rate",
             _mean_over_register("inclusion_error")),
    Headline("exclusion_error_end", "exclusion error, end %", "exclusion error in the last reported month", "rate",
             _end("exclusion_error")),
    Headline("inclusion_error_end", "inclusion error, end %", "inclusion error in the last reported month", "rate",
             _end("inclusion_error")),
    Headline("headcount_rate_end", "headcount, end %", "poor people / people in the last reported month", "rate",
             _end("headcount_rate")),
    Headline("poor_household_months", "poor household-months", "households truly poor, summed over the reported months",
             "count", _total("poor")),
    Headline("detection_delay_mean", "detection delay, months",
             "mean months from falling poor to registration (poor entrants with an observed onset)", "months",
             _weighted_delay),
    Headline("entered", "entries", "entries onto the register by every route", "count", _entered),
    Headline("exited", "exits", "exits at annual reviews", "count", _total("exited")),
    Headline("wrong_exit", "wrong exits", "exits of households still truly poor", "count", _total("wrong_exit")),
    Headline("returns_to_poverty", "returns to poverty",
             "households poor in December, not the December before but at an earlier one, summed over the years",
             "count", _total("returns_to_poverty_annual")),
    Headline("re_registered", "re-registrations",
             "households registered again after exiting the register (the registry's returns), every route",
             "count", _total("re_registered")),
    Headline("cost_total_yuan", "cost (M yuan)",
             "every activity's cost and the transfers, summed over the reported months", "money", _total("cost_total")),
    Headline("transfers_yuan", "transfers (M yuan)", "cash transfers paid", "money", _total("cost_transfers")),
)

HEADLINE: tuple[str, ...] = tuple(h.name for h in HEADLINES)
LABELS: dict[str, str] = {h.name: h.label for h in HEADLINES}
DEFINITIONS: dict[str, str] = {h.name: h.definition for h in HEADLINES}
KINDS: dict[str, str] = {h.name: h.kind for h in HEADLINES}


def headline(result: "Result") -> dict[str, float]:
    """The run's headline numbers, by name (see :data:`HEADLINES`)."""
    return {h.name: h.compute(result) for h in HEADLINES}
