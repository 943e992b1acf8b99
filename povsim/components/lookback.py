"""The look-back: a one-time re-check of the whole register (China, August 2015 - June 2016).

Each village is re-checked in one month of the look-back window, drawn once per
village (:func:`village_month`, kept in the village state).  In that month every
household is assessed again: a registered household assessed above the line is
removed from the register, an unregistered one assessed below it is added.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import rng
from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from .base import FLAG_POOR, FLAG_REGISTERED, NEVER, NO_MONTH, Column, Component, Count, Draw, Route, State, month_or_never
from .income import DRAW_INCOME_12M
from .registration import assessed_below, register

STREAM_REVIEW = 8  #: look-back and annual review assessments; look-back month of a village
ROUTE_CODE = 2  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "lookback", "Look-back", "#8c564b")


class LookbackConfig(Section):
    """The one-time re-check of the whole register (the 2015-16 'look back')."""

    enabled: bool = param(True, "flag", "2015-16 look-back (SCIO 2021)", "run the look-back")
    start: Month = param("2015-08", "month", "look-back ran August 2015 to June 2016", "first month of the look-back")
    end: Month = param("2016-06", "month", "look-back ran August 2015 to June 2016", "last month of the look-back")
    assessment_sd: float = param(
        0.20,
        "log points",
        SRC_ASSUMPTION + "; a household-by-household re-check, more accurate than the 2014 registration",
        "SD of the log error of the look-back's assessment",
        ge=0.0,
        le=5.0,
    )

    _months = field_validator("start", "end")(check_month)


class Params(NamedTuple):
    """The look-back in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled
    end: int  #: last month index, or NO_MONTH when disabled
    assessment_sd: float


def params(cfg) -> Params:
    lb = cfg.policy.lookback
    return Params(
        start=month_or_never(lb.enabled, lb.start), end=month_or_never(lb.enabled, lb.end), assessment_sd=lb.assessment_sd
    )


def _events(section, end):
    from ..schema import parse_month

    return [("lookback", parse_month(section.start), parse_month(section.end))]


def setup(sim) -> None:
    """Each village's look-back month, from the village's own draw."""
    vs = sim.population.villages
    vs.lookback_month[:] = village_months(sim.params.lookback, sim.key[0], sim.key[1], vs.id)


COMPONENT = Component(
    name="lookback",
    doc="the one-time re-check of the register: wrongly registered households removed, missed poor added",
    path="policy.lookback",
    section=LookbackConfig,
    params=params,
    village_state=(State("lookback_month", "int32", "the month the look-back re-checks the village", fill=NO_MONTH),),
    streams={"review": STREAM_REVIEW},
    draws=(
        Draw(STREAM_REVIEW, 0, "household", 2, "each", "the look-back's assessment error: a normal"),
        Draw(STREAM_REVIEW, 7, "village", 1, "0", "the village's month in the look-back window (uniform)"),
    ),
    metrics=(
        Count("removed_lookback", "households removed from the register by the look-back", kind="flow"),
        Count("removed_lookback_people", "people in the households removed by the look-back", unit="people",
              kind="flow"),
        Column("added_lookback_people", "people in the households the look-back added to the register",
               lambda c: c.route("entered_people", "lookback"), "people", "count"),
        Count("wrong_removed_lookback", "households removed by the look-back while truly poor", kind="flow"),
        Count("assessed_lookback", "households re-assessed by the look-back", kind="flow"),
    ),
    route=ROUTE,
    months=("start", "end"),
    events=_events,
    setup=setup,
)


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def village_month(p, k0, k1, village_id):
    """The month in which the look-back re-checks a village (uniform over the window); ``p``: the look-back's parameters."""
    if p.start == NO_MONTH:
        return NO_MONTH
    u, _, _, _ = rng.draw4(k0, k1, STREAM_REVIEW, village_id, 0, 7)
    span = p.end - p.start + 1
    return p.start + min(int(u * span), span - 1)


@nb.njit(cache=True, error_model="numpy")
def village_months(p, k0, k1, village_ids):
    """:func:`village_month` of every village."""
    out = np.empty(village_ids.shape[0], np.int32)
    for v in range(village_ids.shape[0]):
        out[v] = village_month(p, k0, k1, village_ids[v])
    return out


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3c: in its village's look-back month, household ``i`` is re-assessed."""
    if month != vs.lookback_month[v]:
        return
    income = s.draws[DRAW_INCOME_12M, i - vs.start[v]]
    flags = hh.flags[i]
    registered = (flags & FLAG_REGISTERED) != 0
    acc[p.slot.assessed_lookback] += 1
    u0, u1, _, _ = rng.draw4(k0, k1, STREAM_REVIEW, first_id + i, month, 0)
    eligible = assessed_below(income, line, p.lookback.assessment_sd, u0, u1)
    if eligible and not registered:
        register(hh, i, month, ROUTE_CODE, p, acc)
    elif registered and not eligible:
        hh.flags[i] &= ~FLAG_REGISTERED
        hh.route[i] = 0
        hh.exit_month[i] = NEVER  # a removal is not an exit: no support follows it (nor an earlier exit's)
        acc[p.slot.removed_lookback] += 1
        acc[p.slot.removed_lookback_people] += np.int64(hh.size[i])
        if (flags & FLAG_POOR) != 0:
            acc[p.slot.wrong_removed_lookback] += 1
