"""Verification: the means test a household flagged by a channel goes through before it is registered.

A channel flags a household (:func:`flag`): the flag reaches the office after the
channel's lag, and the household is verified after the verification delay.  In the
month it is due (:func:`household`), the household is registered if the office's
assessment of its income (:mod:`.assessment`) is below a multiple of the line and it
holds no excluding evidence (:func:`povsim.components.lookback.refuses`), and
otherwise rejected (the hotline then waits before it calls again).  While monitoring runs (:mod:`.monitoring`), a
household is identified within the monitoring deadline of its flag reaching the
office, and one assessed below the monitoring range, or meeting its spending
trigger, is put into monitoring instead of onto the register.  Counts by route:
flags, verifications, verifications of truly poor households (the channel's
precision); while monitoring, the months from a flag reaching the office to its
verification (``identification_delay``).
"""

from __future__ import annotations

from typing import NamedTuple

from .. import _jit  # (first: sets Numba's cache folder)

import numba as nb
import numpy as np

from .. import rng
from ..schema import SRC_ASSUMPTION, Section, param
from . import monitoring
from .base import (
    FLAG_MONITORED, FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER, NO_MONTH, Column, Component, Count, Draw, State,
    add_binned, is_active, months_since, to_stored,
)
from .income import DRAW_INCOME_12M
from .lookback import refuses
from .registration import basis_of, office_below, register

STREAM_VERIFY = 7  #: errors of the verification means test


class VerificationConfig(Section):
    """The means test a flagged household goes through before it is registered."""

    assessment_sd: float = param(0.20, "log points", SRC_ASSUMPTION, "SD of the log error of the verification", ge=0.0, le=5.0)
    delay: int = param(
        1,
        "months",
        "identification within 15 days of discovery in the 2021 monitoring mechanism",
        "months from a flag reaching the office to the verification",
        ge=0,
        le=120,
    )
    monitoring_multiple: float = param(
        1.0,
        "multiple of the line",
        "1.5x the line in Anhui's monitoring range after 2020 (povsim/data/targets/china_rural_poverty.toml, monitoring_after_2020)",
        "register a verified household assessed below this multiple of the line",
        gt=0.0,
        le=10.0,
    )


class Params(NamedTuple):
    """Verification in the kernels' units."""

    assessment_sd: float
    delay: int
    monitoring_multiple: float


def params(cfg) -> Params:
    ver = cfg.policy.verification
    return Params(assessment_sd=ver.assessment_sd, delay=ver.delay, monitoring_multiple=ver.monitoring_multiple)


COMPONENT = Component(
    name="verification",
    doc="the means test of a flagged household before registration",
    path="policy.verification",
    section=VerificationConfig,
    params=params,
    state=(
        State("pending_route", "uint8", "channel of a pending verification (0: none)"),
        State("pending_month", "int16", "month its pending verification is due (with monitoring enabled: the month "
              "its flag reaches the office)", fill=NEVER),
        State("last_rejected", "int16", "month a verification last rejected it", fill=NEVER),
    ),
    streams={"verify": STREAM_VERIFY},
    draws=(Draw(STREAM_VERIFY, 0, "household", 2, "each", "the verification's assessment error: a normal"),),
    metrics=(
        Count("flags", "households sent to verification by the {route} channel", kind="flow", by_route=True,
              column="flags_{route}", routes="channels"),
        Count("verified", "verifications completed of {route} flags", kind="flow", by_route=True,
              column="verified_{route}", routes="channels"),
        Count("verified_poor", "verifications of truly poor households, by route", kind="flow", by_route=True,
              column=None),
        Column("precision_{route}", "share of verified {route} flags that were truly poor",
               lambda c, route: c.ratio(c.route("verified_poor", route), c.route("verified", route))),
        Column("cost_verification", "verifications, yuan",
               lambda c: c.routes("verified").sum(axis=1) * c.costs.verification, "yuan", "cost"),
    ),
)


@_jit.compile_per_type
@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def flag(hh, i, month, route, lag, p, acc):
    """Send household ``i`` to verification: its flag reaches the office after ``lag``, then waits (:func:`wait`).

    With monitoring disabled the month stored is the month the verification is due;
    with it enabled, the month the flag reaches the office (the wait depends on it).
    """
    hh.pending_route[i] = route
    office = month + lag
    hh.pending_month[i] = to_stored(office + p.verification.delay if p.monitoring.start == NO_MONTH else office)
    acc[p.slot.flags + route] += 1


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def wait(office, p):
    """Months from a flag reaching the office in month ``office`` to its verification (monitoring enabled)."""
    pm = p.monitoring
    if is_active(pm.start, office):
        return min(p.verification.delay, pm.deadline_months)
    return p.verification.delay


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3a: verification of household ``i``'s flag, if it is due; registration if assessed eligible."""
    route = hh.pending_route[i]
    if route == 0:
        return
    pm = p.monitoring
    waited = months_since(hh.pending_month[i], month)
    if pm.start == NO_MONTH:
        if waited < 0:
            return
    else:
        office = MONTH_ORIGIN + np.int64(hh.pending_month[i])
        if waited < wait(office, p):
            return
        if is_active(pm.start, office):
            add_binned(acc, p.slot.identification_delay, monitoring.IDENTIFICATION_BINS, waited)
    flags = hh.flags[i]
    acc[p.slot.verified + route] += 1
    if (flags & FLAG_POOR) != 0:
        acc[p.slot.verified_poor + route] += 1
    hh.pending_route[i] = 0
    hh.pending_month[i] = NEVER
    if (flags & (FLAG_REGISTERED | FLAG_MONITORED)) == 0:
        income = s.draws[DRAW_INCOME_12M, i - vs.start[v]]
        ver = p.verification
        u0, u1, _, _ = rng.draw4(k0, k1, STREAM_VERIFY, first_id + i, month, 0)
        if is_active(pm.start, month):
            if monitoring.assessed_at_risk(hh, i, income, month, line, ver.assessment_sd, u0, u1, k0, k1,
                                           first_id + i, p):
                monitoring.enter(hh, i, route, p, acc)
            else:
                hh.last_rejected[i] = to_stored(month)
        elif office_below(income, line * ver.monitoring_multiple, ver.assessment_sd, u0, u1, k0, k1, first_id + i,
                          p.assessment) and not refuses(k0, k1, first_id + i, month, p):
            register(hh, i, month, route, basis_of(income, line), p, acc)
        else:
            hh.last_rejected[i] = to_stored(month)
