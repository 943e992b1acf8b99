"""The annual review (China, from 2017): exits of registered households, entries of others.

Once a year, from the first review's month, every registered household is assessed:
one assessed at or above a multiple of the line exits, and keeps its support for the
transition period (:mod:`.support`).  A share of the unregistered households is
assessed for entry; those assessed below the line are registered.  While
monitoring runs (:mod:`.monitoring`), an unmonitored household assessed for entry
below the monitoring range, or meeting its spending trigger, is put into monitoring
instead; a monitored household gets the annual check instead
(:func:`povsim.components.monitoring.check`: it leaves monitoring once out of risk).
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import rng
from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from . import monitoring
from .base import (
    FLAG_MONITORED, FLAG_POOR, FLAG_REGISTERED, NEVER, NO_MONTH, Component, Count, Draw, Route, State, is_active,
    month_or_never, to_stored,
)
from .income import DRAW_INCOME_12M
from .lookback import STREAM_REVIEW
from .registration import assessed_below, register

ROUTE_CODE = 3  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "review", "Annual review", "#9467bd")


class ReviewConfig(Section):
    """The annual dynamic adjustment of the register: exits and entries."""

    enabled: bool = param(True, "flag", "annual dynamic adjustment from 2017 (SCIO 2021)", "run annual reviews")
    first: Month = param("2017-10", "month", "annual dynamic adjustment from 2017", "month of the first review; one every 12 months after")
    assessment_sd: float = param(0.25, "log points", SRC_ASSUMPTION, "SD of the log error of the review's assessment", ge=0.0, le=5.0)
    exit_multiple: float = param(
        1.0,
        "multiple of the line",
        "exit when income is stably above the line (the 'two assurances, three guarantees' standard)",
        "a registered household assessed at or above this multiple of the line exits",
        gt=0.0,
        le=10.0,
    )
    entry_coverage: float = param(
        0.10,
        "share of unregistered households",
        SRC_ASSUMPTION + "; reviews re-check households near the line, not every household",
        "share of unregistered households assessed for entry at each review",
        ge=0.0,
        le=1.0,
    )

    _month = field_validator("first")(check_month)


class Params(NamedTuple):
    """The annual review in the kernels' units."""

    first: int  #: month index of the first review, or NO_MONTH when disabled
    assessment_sd: float
    exit_multiple: float
    entry_coverage: float


def params(cfg) -> Params:
    rv = cfg.policy.review
    return Params(
        first=month_or_never(rv.enabled, rv.first),
        assessment_sd=rv.assessment_sd,
        exit_multiple=rv.exit_multiple,
        entry_coverage=rv.entry_coverage,
    )


def _events(section, end):
    from ..schema import format_month, parse_month

    return [(f"review {format_month(m)}", m, m) for m in range(parse_month(section.first), end + 1, 12)]


COMPONENT = Component(
    name="review",
    doc="the annual review: exits of registered households assessed above the line, entries of others",
    path="policy.review",
    section=ReviewConfig,
    params=params,
    state=(State("exit_month", "int16", "month it last left the register", fill=NEVER),),
    streams={"review": STREAM_REVIEW},
    draws=(
        Draw(STREAM_REVIEW, 1, "household", 3, "each",
             "the review's assessment error (words 0-1), whether an unregistered household is assessed (word 2)"),
    ),
    metrics=(
        Count("exited", "registered households exiting at an annual review", kind="flow"),
        Count("exited_people", "people in the households exiting at an annual review", unit="people", kind="flow"),
        Count("wrong_exit", "households exiting while truly poor", kind="flow"),
        Count("assessed_review", "households assessed at an annual review", kind="flow"),
    ),
    route=ROUTE,
    months=("first",),
    events=_events,
)


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3d: in a review month, household ``i`` exits (with transition support) or enters."""
    rv = p.review
    if not (rv.first != NO_MONTH and month >= rv.first and (month - rv.first) % 12 == 0):
        return
    income = s.draws[DRAW_INCOME_12M, i - vs.start[v]]
    flags = hh.flags[i]
    u0, u1, u_cover, _ = rng.draw4(k0, k1, STREAM_REVIEW, first_id + i, month, 1)
    if (flags & FLAG_REGISTERED) != 0:
        acc[p.slot.assessed_review] += 1
        if not assessed_below(income, line * rv.exit_multiple, rv.assessment_sd, u0, u1):
            hh.flags[i] &= ~FLAG_REGISTERED
            hh.route[i] = 0
            hh.support_left[i] = min(p.support.transition_months, 255)
            hh.exit_month[i] = to_stored(month)
            acc[p.slot.exited] += 1
            acc[p.slot.exited_people] += np.int64(hh.size[i])
            if (flags & FLAG_POOR) != 0:
                acc[p.slot.wrong_exit] += 1
    elif (flags & FLAG_MONITORED) != 0:
        monitoring.check(hh, i, first_id, month, line, income, p, k0, k1, acc)
    elif u_cover < rv.entry_coverage:
        acc[p.slot.assessed_review] += 1
        if is_active(p.monitoring.start, month):
            if monitoring.assessed_at_risk(hh, i, income, month, line, rv.assessment_sd, u0, u1, p.monitoring):
                monitoring.enter(hh, i, ROUTE_CODE, p, acc)
        elif assessed_below(income, line, rv.assessment_sd, u0, u1):
            register(hh, i, month, ROUTE_CODE, p, acc)
