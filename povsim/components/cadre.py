"""Grassroots cadres: each village's cadres visit households, worst-off first as they perceive them.

Each month the cadres of a village visit a fixed number of its households: the
lowest perceived incomes among those not registered, with no verification pending,
and not rejected by a verification within ``rejected_wait`` months.  A visit that
finds nothing does not keep the cadres from the household next month (their view of
it is fresh each month), so more visits by the same cadres visit, and flag, a
superset of the households fewer visits would.  A cadre's view of a household's income has a log-normal
error, and a household connected to the cadres looks poorer than it is
(favouritism).  A visited household perceived below the line is flagged for
verification (:mod:`.verification`).  While monitoring runs (:mod:`.monitoring`), a
visited household perceived below the monitoring range or meeting its spending trigger
is flagged, and monitored households are not visited.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb

from .. import elementary, rng
from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from . import monitoring
from .base import (
    FLAG_CONNECTED, FLAG_MONITORED, FLAG_REGISTERED, NEVER, Column, Component, Count, Draw, Route, State, is_active, month_or_never,
    months_since, to_stored,
)
from .income import DRAW_CADRE, DRAW_INCOME_12M
from .registration import keep_lowest
from .verification import flag

STREAM_CADRE = 6  #: cadres' perception of households' incomes
ROUTE_CODE = 5  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "cadre", "Grassroots cadres", "#ff7f0e", channel=True)


class CadreConfig(Section):
    """Grassroots cadres visit households worst-off first, as they perceive them."""

    enabled: bool = param(True, "flag", "grassroots cadre channel (SCIO 2021)", "channel on")
    start: Month = param("2017-01", "month", "dynamic channels from 2017", "first month the channel runs")
    visits_per_village: int = param(
        4, "households per village per month", SRC_ASSUMPTION, "households each village's cadres visit a month", ge=0, le=100_000
    )
    perception_sd: float = param(
        0.40, "log points", SRC_ASSUMPTION, "SD of the log error of a cadre's view of a household's income", ge=0.0, le=5.0
    )
    connected_share: float = param(
        0.10, "share of households", SRC_ASSUMPTION, "share of households connected to village cadres", ge=0.0, le=1.0
    )
    favouritism: float = param(
        0.30,
        "log points",
        "Alatas et al. (2012): elite capture in community targeting is small but present",
        "how much poorer a connected household looks to a cadre",
        ge=0.0,
        le=5.0,
    )
    rejected_wait: int = param(
        6, "months", SRC_ASSUMPTION + "; a household just found not poor is not put forward again at once",
        "months after a verification rejected a household before the cadres visit it again", ge=0, le=600)
    _month = field_validator("start")(check_month)


class Params(NamedTuple):
    """The cadres in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled (or no visits)
    visits_per_village: int
    perception_sd: float
    favouritism: float
    rejected_wait: int


def params(cfg) -> Params:
    ch = cfg.policy.channels.cadre
    return Params(
        start=month_or_never(ch.enabled and ch.visits_per_village > 0, ch.start),
        visits_per_village=ch.visits_per_village,
        perception_sd=ch.perception_sd,
        favouritism=ch.favouritism,
        rejected_wait=ch.rejected_wait,
    )


COMPONENT = Component(
    name="cadre",
    doc="grassroots cadres visit households, worst-off first as they perceive them",
    path="policy.channels.cadre",
    section=CadreConfig,
    params=params,
    state=(State("last_visit", "int16", "month a cadre last visited", fill=NEVER),),
    streams={"cadre": STREAM_CADRE},
    draws=(Draw(STREAM_CADRE, 0, "household", 2, "each", "the cadres' perception error of the household's income: a normal"),),
    metrics=(
        Count("cadre_visits", "cadre visits to households", unit="visits", kind="flow"),
        Column("cost_cadre", "cadre visits, yuan", lambda c: c["cadre_visits"] * c.costs.cadre_visit, "yuan", "cost"),
    ),
    route=ROUTE,
    months=("start",),
    start="start",
    toggle=("cadres", "cadre visits"),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, error_model="numpy")
def village(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Phase 2b: the village's cadre visits, worst-off first as perceived; connected households look poorer.

    The cadres visit the ``visits_per_village`` lowest perceived log incomes among the
    eligible (ties by index).  Every household's perception is computed in a
    vectorised loop (+inf if it is not eligible); a scan then keeps the lowest,
    comparing each with the highest kept once that many are kept.
    """
    pc = p.cadre
    if not is_active(pc.start, month):
        return
    draws, values, chosen = s.draws, s.values, s.chosen
    first = vs.start[v]
    end = vs.start[v + 1]
    n = end - first
    log_line = elementary.log(monitoring.range_line(p.monitoring, month, line))  # the range while monitoring
    rng.fill_uniforms(k0, k1, STREAM_CADRE, first_id + first, n, month, 0, draws, DRAW_CADRE)
    flags = hh.flags[first:end]
    pending_route = hh.pending_route[first:end]
    last_rejected = hh.last_rejected[first:end]
    for j in range(n):
        log_income = elementary.log(max(draws[DRAW_INCOME_12M, j], 1.0))
        z = rng.box_muller_first(rng.box_muller_radius(draws[DRAW_CADRE, j]), draws[DRAW_CADRE + 1, j])
        perceived = log_income + pc.perception_sd * z
        if (flags[j] & FLAG_CONNECTED) != 0:
            perceived -= pc.favouritism
        eligible = (
            ((flags[j] & (FLAG_REGISTERED | FLAG_MONITORED)) == 0)
            & (pending_route[j] == 0)
            & (months_since(last_rejected[j], month) >= pc.rejected_wait)
        )
        values[j] = perceived if eligible else math.inf
    visits = pc.visits_per_village
    visited = 0
    highest_kept = math.inf  # +inf until `visits` are kept: every eligible household enters
    for j in range(n if visits > 0 else 0):
        if values[j] < highest_kept:
            visited = keep_lowest(values, j, chosen, visited, visits)
            if visited == visits:
                highest_kept = values[chosen[visits - 1]]
    for c in range(visited):
        j = chosen[c]
        i = first + j
        hh.last_visit[i] = to_stored(month)
        acc[p.slot.cadre_visits] += 1
        if values[j] < log_line or monitoring.spending_trigger(hh, i, draws[DRAW_INCOME_12M, j], month, p.monitoring):
            flag(hh, i, month, ROUTE_CODE, 0, p, acc)
