"""The look-back: a one-time correction of the 2014 registration (China, August 2015 - June 2016).

The look-back "re-compared the 2014 registration data" (China Keywords, 'Look
back'): it corrected the households that should not have been registered and added
those that should have been.  Each village is re-checked in one month of the
look-back window, drawn once per village (:func:`village_month`, kept in the village
state).  In that month, with the office's error (:mod:`.assessment`):

* a registered household is **removed** on clear evidence: it holds an excluding
  asset or position (:func:`povsim.components.assessment.has_evidence`), or its
  registration basis (the income it was registered on, ``basis``) is assessed at or
  above ``remove_multiple`` lines.  Current income, and so support, never enters
  the test;
* a registered household that has risen out of poverty since its registration (its
  basis not well above the line, its current income assessed at or above the exit
  threshold) is not removed: it is left to the exit process (:mod:`.review`) and
  counted as referred to exit;
* a household never registered is **added** if its survey basis is assessed below
  ``add_multiple`` lines, it is still poor (its current income assessed below the
  line) and it holds no excluding evidence.

Households that exited the register are not re-checked: exit was its own decision.
From the look-back's first month on, every later registration (reviews, channels)
refuses a household holding excluding evidence (:func:`refuses`).
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import rng
from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from . import assessment
from .base import (
    FLAG_EVER_REGISTERED, FLAG_POOR, FLAG_REGISTERED, NEVER, NO_MONTH, Column, Component, Count, Draw, Route, State,
    is_active, month_or_never,
)
from .income import DRAW_INCOME_12M
from .registration import BASIS_SCALE, below_with_error, register

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
    remove_multiple: float = param(
        1.5,
        "multiple of the line",
        SRC_ASSUMPTION + "; the look-back removed on clear evidence (China Keywords 2021-01-11, 'Look back'; "
        "Liu Yongfu 2016-03-16: the 2014 registration was 'basically accurate'), so only a basis well above the "
        "line; the look-back's removals depend on it",
        "remove a registered household whose registration basis is assessed at or above this multiple of the line",
        ge=1.0,
        le=6.0,
    )
    add_multiple: float = param(
        0.8,
        "multiple of the line",
        SRC_ASSUMPTION + "; the look-back added 'those that should have been registered' (China Keywords "
        "2021-01-11), the clearly poor; the look-back's additions depend on it",
        "add a household never registered whose survey basis is assessed below this multiple of the line "
        "(and its current income below the line)",
        gt=0.0,
        le=1.0,
    )

    _months = field_validator("start", "end")(check_month)


class Params(NamedTuple):
    """The look-back in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled
    end: int  #: last month index, or NO_MONTH when disabled
    assessment_sd: float
    remove_multiple: float
    add_multiple: float


def params(cfg) -> Params:
    lb = cfg.policy.lookback
    return Params(
        start=month_or_never(lb.enabled, lb.start), end=month_or_never(lb.enabled, lb.end),
        assessment_sd=lb.assessment_sd, remove_multiple=lb.remove_multiple, add_multiple=lb.add_multiple,
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
    doc="the one-time correction of the registration: wrongly registered households removed, missed poor added",
    path="policy.lookback",
    section=LookbackConfig,
    params=params,
    village_state=(State("lookback_month", "int32", "the month the look-back re-checks the village", fill=NO_MONTH),),
    streams={"review": STREAM_REVIEW},
    draws=(
        Draw(STREAM_REVIEW, 0, "household", 4, "each",
             "the look-back's assessment error of the basis (words 0-1) and of current income (words 2-3): normals"),
        Draw(STREAM_REVIEW, 7, "village", 1, "0", "the village's month in the look-back window (uniform)"),
    ),
    metrics=(
        Count("removed_lookback", "households removed from the register by the look-back", kind="flow"),
        Count("removed_lookback_evidence", "of them, removed on excluding evidence (an asset or position)",
              kind="flow"),
        Count("referred_exit_lookback", "registered households the look-back found risen out of poverty since "
              "registration, left to the exit process", kind="flow"),
        Count("removed_lookback_people", "people in the households removed by the look-back", unit="people",
              kind="flow"),
        Column("added_lookback_people", "people in the households the look-back added to the register",
               lambda c: c.route("entered_people", "lookback"), "people", "count"),
        Count("wrong_removed_lookback", "households removed by the look-back while truly poor", kind="flow"),
        Count("assessed_lookback", "households re-assessed by the look-back", kind="flow"),
    ),
    route=ROUTE,
    months=("start", "end"),
    windows=(("start", "end"),),
    events=_events,
    setup=setup,
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, error_model="numpy")
def village_month(p, k0, k1, village_id):
    """The month in which the look-back re-checks a village (uniform over the window); ``p``: the look-back's parameters."""
    if p.start == NO_MONTH:
        return NO_MONTH
    u, _, _, _ = rng.draw4(k0, k1, STREAM_REVIEW, village_id, 0, 7)
    span = p.end - p.start + 1
    return p.start + min(int(u * span), span - 1)


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def village_months(p, k0, k1, village_ids):
    """:func:`village_month` of every village."""
    out = np.empty(village_ids.shape[0], np.int32)
    for v in range(village_ids.shape[0]):
        out[v] = village_month(p, k0, k1, village_ids[v])
    return out


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def refuses(k0, k1, household, month, p):
    """Whether a registration in ``month`` refuses ``household``: it holds excluding evidence, checked from the
    look-back on."""
    return is_active(p.lookback.start, month) and assessment.has_evidence(k0, k1, household, p.assessment)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3c: in its village's look-back month, household ``i``'s registration is re-checked."""
    if month != vs.lookback_month[v]:
        return
    flags = hh.flags[i]
    registered = (flags & FLAG_REGISTERED) != 0
    if not registered and (flags & FLAG_EVER_REGISTERED) != 0:
        return  # exited (or removed): not re-checked
    lb, pa = p.lookback, p.assessment
    gid = first_id + i
    acc[p.slot.assessed_lookback] += 1
    u0, u1, u2, u3 = rng.draw4(k0, k1, STREAM_REVIEW, gid, month, 0)
    persistent, u_exclusion, _ = assessment.household_draws(k0, k1, gid)
    evidence = u_exclusion < pa.exclusion_probability
    z_basis, _ = rng.box_muller(u0, u1)
    basis = np.float64(hh.basis[i]) / BASIS_SCALE
    err = assessment.error(z_basis, persistent, pa)
    income = s.draws[DRAW_INCOME_12M, i - vs.start[v]]
    z_income, _ = rng.box_muller(u2, u3)
    err_income = assessment.error(z_income, persistent, pa)
    if not registered:
        if (not evidence and below_with_error(basis, lb.add_multiple, lb.assessment_sd, err)
                and below_with_error(income, line, lb.assessment_sd, err_income)):
            register(hh, i, month, ROUTE_CODE, hh.basis[i], p, acc)
        return
    if evidence or not below_with_error(basis, lb.remove_multiple, lb.assessment_sd, err):
        hh.flags[i] &= ~FLAG_REGISTERED
        hh.route[i] = 0
        hh.exit_month[i] = NEVER  # a removal is not an exit: no support follows it (nor an earlier exit's)
        acc[p.slot.removed_lookback] += 1
        acc[p.slot.removed_lookback_people] += np.int64(hh.size[i])
        acc[p.slot.removed_lookback_evidence] += evidence
        if (flags & FLAG_POOR) != 0:
            acc[p.slot.wrong_removed_lookback] += 1
        return
    if not below_with_error(income, line * p.review.exit_multiple, lb.assessment_sd, err_income):
        acc[p.slot.referred_exit_lookback] += 1
