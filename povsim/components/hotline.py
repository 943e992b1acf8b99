"""The complaint hotline (12317): missed eligible households call.

Each month a truly poor household that is not registered, has no verification
pending and was not rejected recently calls with a small probability (its draw is
word 1 of the channels stream, :mod:`.self_declaration`).  A call is a flag for
verification (:mod:`.verification`).  While monitoring runs (:mod:`.monitoring`), an
unmonitored household truly below the monitoring range or meeting its spending
trigger calls too.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb

from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from . import monitoring
from .base import FLAG_MONITORED, FLAG_POOR, FLAG_REGISTERED, Component, Route, is_active, month_or_never, months_since
from .income import DRAW_CHANNELS, DRAW_INCOME_12M
from .verification import flag

ROUTE_CODE = 7  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "hotline", "12317 hotline", "#d62728", channel=True)


class HotlineConfig(Section):
    """Missed eligible households call the complaint hotline (12317)."""

    enabled: bool = param(True, "flag", "12317 hotline (SCIO 2021)", "channel on")
    start: Month = param("2017-01", "month", "12317 hotline", "first month the channel runs")
    call_probability: float = param(
        0.005, "per month", SRC_ASSUMPTION, "monthly probability that a missed poor household calls", ge=0.0, le=1.0
    )
    rejected_wait: int = param(
        12, "months", SRC_ASSUMPTION, "months after a rejection during which a household does not call", ge=0, le=600
    )
    _month = field_validator("start")(check_month)


class Params(NamedTuple):
    """The hotline in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled
    call_probability: float
    rejected_wait: int


def params(cfg) -> Params:
    ch = cfg.policy.channels.hotline
    return Params(
        start=month_or_never(ch.enabled, ch.start), call_probability=ch.call_probability, rejected_wait=ch.rejected_wait
    )


COMPONENT = Component(
    name="hotline",
    doc="the complaint hotline: missed poor households call",
    path="policy.channels.hotline",
    section=HotlineConfig,
    params=params,
    route=ROUTE,
    months=("start",),
    start="start",
    toggle=("hotline", "12317 hotline"),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 1: household ``i`` calls, if it is poor, missed, with no verification pending and not rejected lately."""
    ph = p.hotline
    flags = hh.flags[i]
    if (
        is_active(ph.start, month)
        and (flags & (FLAG_REGISTERED | FLAG_MONITORED)) == 0
        and hh.pending_route[i] == 0
        and (
            (flags & FLAG_POOR) != 0
            or monitoring.truly_at_risk(hh, i, s.draws[DRAW_INCOME_12M, i - vs.start[v]], month, line, p.monitoring)
        )
        and months_since(hh.last_rejected[i], month) >= ph.rejected_wait
        and s.draws[DRAW_CHANNELS + 1, i - vs.start[v]] < ph.call_probability
    ):
        flag(hh, i, month, ROUTE_CODE, 0, p, acc)
