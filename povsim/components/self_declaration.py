"""Self-declaration: households that perceive themselves poor apply for registration.

Each month an unregistered household without a pending verification applies with
one probability if it perceives itself poor (higher while ill or out of work) and
with a small one otherwise; its view of its own income has a log-normal error.  An
application is a flag for verification (:mod:`.verification`).  While monitoring runs
(:mod:`.monitoring`), an unmonitored household perceives itself at risk below the
monitoring range or when its medical spending meets the spending trigger.

This module also draws the channels stream that the hotline (:mod:`.hotline`) shares.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb

from .. import rng
from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from . import monitoring
from .base import FLAG_MONITORED, FLAG_REGISTERED, Component, Draw, Route, is_active, month_or_never
from .income import DRAW_CHANNELS, DRAW_ILLNESS, DRAW_INCOME_12M, DRAW_UNEMPLOYED
from .registration import assessed_below
from .verification import flag

STREAM_CHANNELS = 5  #: self-declaration, hotline calls, and households' own perception
ROUTE_CODE = 4  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "self", "Self-declaration", "#1f77b4", channel=True)


class SelfDeclarationConfig(Section):
    """Households that perceive themselves poor apply for registration."""

    enabled: bool = param(True, "flag", "self-declaration channel (SCIO 2021)", "channel on")
    start: Month = param("2017-01", "month", "dynamic channels from 2017", "first month the channel runs")
    apply_probability: float = param(
        0.03,
        "per month",
        "Alatas et al. (2016): about 60% of the very poorest apply when they must apply",
        "monthly probability that a household perceiving itself poor applies",
        ge=0.0,
        le=1.0,
    )
    shock_multiplier: float = param(
        3.0, "multiple", SRC_ASSUMPTION, "application probability multiple while ill or out of work (capped at 1)", ge=1.0, le=100.0
    )
    nonpoor_probability: float = param(
        0.001, "per month", SRC_ASSUMPTION, "monthly probability that a household not perceiving itself poor applies", ge=0.0, le=1.0
    )
    perception_sd: float = param(
        0.30, "log points", SRC_ASSUMPTION, "SD of the log error of a household's view of its own income", ge=0.0, le=5.0
    )
    _month = field_validator("start")(check_month)


class Params(NamedTuple):
    """Self-declaration in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled
    apply_probability: float
    shock_multiplier: float
    nonpoor_probability: float
    perception_sd: float


def params(cfg) -> Params:
    ch = cfg.policy.channels.self
    return Params(
        start=month_or_never(ch.enabled, ch.start),
        apply_probability=ch.apply_probability,
        shock_multiplier=ch.shock_multiplier,
        nonpoor_probability=ch.nonpoor_probability,
        perception_sd=ch.perception_sd,
    )


COMPONENT = Component(
    name="self",
    doc="self-declaration: households that perceive themselves poor apply",
    path="policy.channels.self",
    section=SelfDeclarationConfig,
    params=params,
    streams={"channels": STREAM_CHANNELS},
    draws=(
        Draw(STREAM_CHANNELS, 0, "household", 4, "each",
             "whether to apply (word 0); the hotline's call (word 1); the household's view of its income "
             "(words 2-3, a normal)"),
    ),
    route=ROUTE,
    months=("start",),
    start="start",
    toggle=("self_declaration", "self-declaration"),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def draw(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Step 0a: the channels stream's draws of village ``v``, once self-declaration or the hotline runs."""
    if is_active(p.self.start, month) or is_active(p.hotline.start, month):
        first = vs.start[v]
        rng.fill_uniforms(k0, k1, STREAM_CHANNELS, first_id + first, vs.start[v + 1] - first, month, 0, s.draws,
                          DRAW_CHANNELS)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 1: household ``i`` applies, if it is unregistered with no verification pending."""
    ps = p.self
    if (
        not is_active(ps.start, month)
        or (hh.flags[i] & (FLAG_REGISTERED | FLAG_MONITORED)) != 0
        or hh.pending_route[i] != 0
    ):
        return
    draws = s.draws
    j = i - vs.start[v]
    u_self = draws[DRAW_CHANNELS, j]
    shocked = (draws[DRAW_ILLNESS, j] != 0.0) or (draws[DRAW_UNEMPLOYED, j] != 0.0)
    apply_if_poor = min(1.0, ps.apply_probability * ps.shock_multiplier) if shocked else ps.apply_probability
    # The household's view of its own income matters only if u_self could lead to an
    # application; the decision is the same as always computing it, at a fraction of the cost.
    if u_self < max(apply_if_poor, ps.nonpoor_probability):
        income = draws[DRAW_INCOME_12M, j]
        pm = p.monitoring  # while monitoring runs: below the monitoring range, or in severe hardship
        perceived_poor = assessed_below(
            income, monitoring.range_line(pm, month, line), ps.perception_sd, draws[DRAW_CHANNELS + 2, j],
            draws[DRAW_CHANNELS + 3, j],
        ) or monitoring.spending_trigger(hh, i, income, month, pm)
        if u_self < (apply_if_poor if perceived_poor else ps.nonpoor_probability):
            flag(hh, i, month, ROUTE_CODE, 0, p, acc)
