"""Metrics: what is counted in the engine's pass, and the ratios derived from the counts.

This module owns the monthly accumulators and the definition of every reported
metric, with its denominator.  Inside the engine each block of villages adds
its households' contributions to integer accumulators (counts, fixed-point
sums, money in fen), so the totals are exact and the same for any thread count
or split of the population.  Ratios are computed afterwards from the totals by
:func:`derive`; an undefined ratio (0/0) is NaN.

Definitions (households unless stated):

* ``headcount_rate`` (FGT0), ``poverty_gap`` (FGT1), ``poverty_severity`` (FGT2): over
  **people**, as the NBS counts them; the gap of a poor household is
  ``(line - max(income, 0)) / line``.
* ``exclusion_error`` = poor not registered / poor.
* ``inclusion_error`` (leakage) = non-poor registered / registered.
* ``missed_rate`` = poor not registered / not registered (the official definition
  used in county exit assessments).
* ``e_mistake`` = non-poor registered / non-poor.
* ``targeting_differential`` = P(registered | poor) - P(registered | non-poor).
* ``precision_<channel>`` = verified flags truly poor / verified flags of that channel.
* ``detection_delay_mean`` = mean months from falling poor to registration, over the
  month's registrations of truly poor households (all routes) whose fall into poverty
  was observed (households poor since before the record began are left out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .components import BINS, CHANNELS as _CHANNELS, COLUMNS as COLUMN_INFO, N_ROUTES, N_SLOTS, ROUTE_NAMES, SLOTS
from .components.census import CATASTROPHIC_SHARE, cgh_index, coverage_by_decile  # noqa: F401  (re-exported)
from .components.poverty import GAP_SCALE  # noqa: F401  (re-exported)
from .components.registration import DELAY_BINS  # noqa: F401  (re-exported)

# --- accumulator slots, as the components' counts laid them out (povsim.components.SLOTS) --
for _name, _slot in SLOTS.items():
    globals()[_name.upper()] = _slot
FLAGGED = SLOTS["flags"]  #: + route: households sent to verification by a channel
DELAY_HIST = SLOTS["detection_delay"]  #: + route * DELAY_BINS + bin

CHANNELS = _CHANNELS
ROUTES = ROUTE_NAMES[1:]
ROUTE_CODE = {name: code for code, name in enumerate(ROUTE_NAMES)}

#: the columns that are counts, with their slot
COUNT_COLUMNS = {
    name: SLOTS[info.count] + (ROUTE_CODE[info.route] if info.route else 0)
    for name, info in COLUMN_INFO.items()
    if info.kind == "count" and info.count is not None
}

#: Every metric column with its definition, in the order of ``result.metrics``.
COLUMNS: dict[str, str] = {name: info.definition for name, info in COLUMN_INFO.items()}


def _ratio(num, den) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


class _NoCosts:
    """Unit costs of zero: a run's metrics without a cost section."""

    def __getattr__(self, name: str) -> float:
        return 0.0


class Counts:
    """Monthly totals by count name: what a derived column's ``compute`` reads.

    ``c["poor"]`` is the count's column (int64, one row per month); ``c.route("flags",
    "data")`` one route's; ``c.routes("verified")`` every route's (months x routes);
    ``c.ratio(num, den)`` a ratio that is NaN where ``den`` is 0; ``c.bins("people_by_income")``
    a binned count (months x bins); ``c.year_total(x)`` and ``c.last_december(x)`` a
    column's sum over the calendar year and its value the December before, in December
    rows (NaN elsewhere); ``c.costs`` the unit costs (``policy.cost``);
    ``c.data_running`` whether the data system runs each month.
    """

    def __init__(self, totals: np.ndarray, costs=None, data_running=None, months=None):
        self.totals = totals
        self.costs = _NoCosts() if costs is None else costs
        n = totals.shape[0]
        self.months = np.arange(n, dtype=np.int64) if months is None else np.asarray(months, np.int64)
        self.data_running = np.zeros(n, bool) if data_running is None else np.asarray(data_running, bool)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.totals[:, SLOTS[name]]

    def route(self, name: str, route: str) -> np.ndarray:
        return self.totals[:, SLOTS[name] + ROUTE_CODE[route]]

    def routes(self, name: str) -> np.ndarray:
        return self.totals[:, SLOTS[name] : SLOTS[name] + N_ROUTES]

    def bins(self, name: str) -> np.ndarray:
        return self.totals[:, SLOTS[name] : SLOTS[name] + BINS[name].bins]

    def year_total(self, values) -> np.ndarray:
        """In each December row, ``values`` summed over that year's rows; NaN in other months."""
        values = np.asarray(values, np.float64)
        years = self.months // 12
        out = np.full(values.shape, np.nan)
        for r in np.flatnonzero(self.months % 12 == 11):
            out[r] = values[years == years[r]].sum()
        return out

    def last_december(self, values) -> np.ndarray:
        """In each December row, ``values`` in the December before (NaN if not reported, and in other months)."""
        values = np.asarray(values, np.float64)
        row = {m: r for r, m in enumerate(self.months)}
        out = np.full(values.shape, np.nan)
        for r in np.flatnonzero(self.months % 12 == 11):
            before = row.get(self.months[r] - 12)
            if before is not None:
                out[r] = values[before]
        return out

    ratio = staticmethod(_ratio)


def derive(totals: np.ndarray, months: list[int], costs=None, data_running=None) -> pd.DataFrame:
    """The metrics table from monthly totals (shape ``(months, N_SLOTS)``, int64).

    Every column of :data:`COLUMNS`, as its component declares it.  ``costs`` is the
    config's ``policy.cost`` section (costs are zero without it); ``data_running``
    says, per month, whether the data system runs.
    """
    t = np.asarray(totals, dtype=np.int64).reshape(len(months), N_SLOTS)
    c = Counts(t, costs, data_running, months)
    data: dict[str, object] = {
        "month": pd.to_datetime([f"{m // 12:04d}-{m % 12 + 1:02d}-01" for m in months]),
        "year": np.asarray([m // 12 for m in months], np.int64),
    }
    cost_total = None
    for name, info in COLUMN_INFO.items():
        if info.kind == "time":
            continue
        if info.count is not None:
            data[name] = t[:, COUNT_COLUMNS[name]]
        elif info.compute == "cost_total":
            data[name] = cost_total if cost_total is not None else np.zeros(len(months))
        else:
            values = info.compute(c, info.route) if info.route is not None else info.compute(c)
            data[name] = values
            if info.kind == "cost":  # in registry order
                cost_total = values if cost_total is None else cost_total + values
    return pd.DataFrame(data)[list(COLUMNS)]


def binned(totals: np.ndarray, name: str) -> pd.DataFrame:
    """A binned count (:data:`povsim.components.BINS`) summed over months: rows are routes (if by route)."""
    spec = BINS[name]
    t = np.asarray(totals, dtype=np.int64)
    if t.ndim == 2:
        t = t.sum(axis=0)
    rows = N_ROUTES if spec.by_route else 1
    hist = t[SLOTS[name] : SLOTS[name] + rows * spec.bins].reshape(rows, spec.bins)
    if not spec.by_route:
        return pd.DataFrame(hist, index=pd.Index([name]), columns=list(spec.labels))
    codes = [ROUTE_CODE[r] for r in ROUTES]
    return pd.DataFrame(hist[codes], index=pd.Index(ROUTES, name="route"), columns=list(spec.labels))


def delay_histogram(totals: np.ndarray) -> pd.DataFrame:
    """Registrations of truly poor households by route and months since falling poor.

    ``totals`` are monthly totals (months x N_SLOTS) or their sum.  Rows are
    routes; columns ``0 .. 47`` and ``48+`` months (the binned count
    ``detection_delay``), and ``unknown``: households poor since before the record
    began (the first 12 simulated months, when income history is incomplete), whose
    onset is not observed.
    """
    t = np.asarray(totals, dtype=np.int64)
    if t.ndim == 2:
        t = t.sum(axis=0)
    out = binned(t, "detection_delay")
    codes = [ROUTE_CODE[r] for r in ROUTES]
    out["unknown"] = t[DELAY_UNKNOWN : DELAY_UNKNOWN + N_ROUTES][codes]  # noqa: F821  (a slot constant, above)
    return out


def yearly_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per year: year-end (last simulated month's) stocks; flows and costs summed over the year.

    The year-to-year poverty flows (``*_annual``) are December-to-December counts; the
    registry's flows (``newly_identified``, ``re_registered``) are entries in the year.
    """
    stocks = ["households", "poor", "headcount_rate", "registered", "exclusion_error", "inclusion_error", "missed_rate"]
    flows = ["newly_identified", "re_registered", "exited", "wrong_exit", "newly_poor_annual",
             "exits_from_poverty_annual", "returns_to_poverty_annual"]
    last = metrics.groupby("year", sort=True).tail(1).set_index("year")
    out = last[stocks].copy()
    by_year = metrics.groupby("year", sort=True)
    entries = [f"entered_{r}" for r in ROUTES]
    out["entered"] = by_year[entries].sum().sum(axis=1)
    for c in flows:
        out[c] = by_year[c].sum()
    out["cost_total"] = by_year["cost_total"].sum()
    return out


REGISTRY_FLOWS = ("newly_identified", "newly_identified_people", "re_registered", "re_registered_people")


def registry_flows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The registry's flows per year and route: first registrations and re-registrations after exit.

    Rows ``(year, route)``; columns households and people registered for the first
    time (``newly_identified``) and registered again after exiting the register
    (``re_registered``: the registry's "returned to poverty").
    """
    by_year = metrics.groupby("year", sort=True)
    parts = []
    for route in ROUTES:
        part = by_year[[f"{name}_{route}" for name in REGISTRY_FLOWS]].sum()
        part.columns = list(REGISTRY_FLOWS)
        part["route"] = route
        parts.append(part.reset_index())
    return pd.concat(parts).set_index(["year", "route"]).sort_index(level=0, sort_remaining=False)
