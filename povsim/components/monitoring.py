"""Monitoring after 2020: households at risk of returning to poverty are found, supported and watched.

From its start (2021 in China) no household is newly registered as poor; instead
three groups are monitored (central guideline 2021 No. 7; Anhui's rules, People's
Daily 2020-06-30): unstable exited households, near-poor households at risk, and
households in sudden severe hardship.  The existing channels find them: while
monitoring runs, self-declaration, cadre screening and the hotline flag an
unregistered, unmonitored household whose income is (perceived) below
``income_range`` lines or whose rigid spending is high (:func:`spending_trigger`:
out-of-pocket medical spending over 12 months above ``spending_multiple`` times the
household's income of the last 12 months); the sector data already flag jumps in
medical spending.  Verification (:mod:`.verification`) identifies a flagged household
within ``deadline_months`` of the flag reaching the office and puts it into
monitoring (:func:`enter`, the flag bit ``FLAG_MONITORED``) if it is assessed below
the range or meets the spending trigger; the annual review's entry assessment does
the same.  A monitored household is supported (:func:`povsim.components.support.is_supported`).
At each annual review month (``policy.review.first`` + 12 k) on or after the start, a
monitored household assessed at or above the range and not meeting the spending
trigger leaves monitoring: its risk is eliminated (:func:`check`, which the annual
review calls for a monitored household instead of assessing it for entry; with the
review disabled, nobody leaves).  Households
still registered stay registered and exit by the annual review as before.

The month-end stocks (:func:`count`): households and people monitored, monitored
households that had exited the register, and the households that have exited the
register that are truly poor (the returns to poverty among exited households,
registered again or not), and of these those neither registered nor monitored.
With monitoring disabled nothing runs; ``report_exited`` counts the exited stocks
then too, for a comparison.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # (first: sets Numba's cache folder)

import numba as nb
import numpy as np

from .. import rng
from ..schema import Month, Section, check_month, param
from .base import (
    FLAG_MONITORED, FLAG_POOR, FLAG_REGISTERED, NEVER, NO_MONTH, Bins, Column, Component, Count, Draw, is_active,
    month_or_never,
)
from .lookback import STREAM_REVIEW
from .registration import office_below

SRC_2021_NO7 = (
    "central guideline 2021 No. 7 on the mechanism to prevent a return to poverty "
    "(povsim/data/targets/china_rural_poverty.toml, monitoring_after_2020)"
)
DRAW_CHECK = 2  #: index of the annual risk check's draw on the review stream
IDENTIFICATION_BINS = 7  #: months from a flag reaching the office to identification: 0..5, and 6 or more


class MonitoringConfig(Section):
    """Monitoring of households at risk of returning to poverty, in place of new registration."""

    enabled: bool = param(False, "flag", SRC_2021_NO7, "monitoring on (from start, no new registration)")
    start: Month = param("2021-01", "month", SRC_2021_NO7 + "; the transition period from 2021", "first month of monitoring")
    income_range: float = param(
        1.5,
        "multiple of the line",
        "Anhui's example of the monitoring range, 1.5x the line (People's Daily 2020-06-30; "
        "povsim/data/targets/china_rural_poverty.toml, monitoring_after_2020); other provinces set their own",
        "households with per-capita income below this multiple of the line are at risk",
        gt=0.0,
        le=10.0,
    )
    spending_multiple: float = param(
        1.0,
        "multiple of the household's income of the last 12 months",
        "'rigid spending clearly above last year's income' (2021 No. 7); the margin of 1x is an assumption "
        "(monitored households and the risk eliminated depend on it)",
        "a household whose out-of-pocket medical spending over 12 months passes this multiple of its "
        "household income is in sudden severe hardship",
        ge=0.0,
        le=100.0,
    )
    deadline_months: int = param(
        0,
        "months",
        "identification within 15 days of discovery (povsim/data/targets/china_rural_poverty.toml, monitoring_after_2020, "
        "days_to_identify_after_discovery): within the month in monthly steps",
        "most months from a flag reaching the office to identification (the verification delay "
        "while monitoring, if shorter)",
        ge=0,
        le=120,
    )
    report_exited: bool = param(
        False,
        "flag",
        "a reporting switch: it changes no result",
        "count the exited households' stocks (exited, exited and poor) with monitoring off too",
    )
    _month = field_validator("start")(check_month)


class Params(NamedTuple):
    """Monitoring in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled
    income_range: float
    spending_multiple: float
    deadline_months: int
    count_from: int  #: first month its stocks are counted (the first reported month), or NO_MONTH: none


def params(cfg) -> Params:
    from ..schema import parse_month

    mo = cfg.policy.monitoring
    counted = mo.enabled or mo.report_exited
    return Params(
        start=month_or_never(mo.enabled, mo.start),
        income_range=mo.income_range,
        spending_multiple=mo.spending_multiple,
        deadline_months=mo.deadline_months,
        count_from=parse_month(cfg.simulation.start) if counted else NO_MONTH,
    )


def _events(section, end):
    from ..schema import parse_month

    return [("monitoring", parse_month(section.start), end)]


def _identification_labels() -> tuple[str, ...]:
    return tuple(str(b) for b in range(IDENTIFICATION_BINS - 1)) + (f"{IDENTIFICATION_BINS - 1}+",)


COMPONENT = Component(
    name="monitoring",
    doc="monitoring after 2020: households at risk found by the channels, supported until their risk is eliminated",
    path="policy.monitoring",
    section=MonitoringConfig,
    params=params,
    streams={"review": STREAM_REVIEW},
    draws=(
        Draw(STREAM_REVIEW, DRAW_CHECK, "household", 2, "each",
             "the annual check's assessment error of a monitored household: a normal"),
    ),
    metrics=(
        Count("monitored", "households monitored for a return to poverty at the end of the month"),
        Count("monitored_people", "people in monitored households", unit="people"),
        Count("monitored_exited", "monitored households that had exited the register (unstable exited households)"),
        Count("monitored_poor", "monitored households truly poor"),
        Count("poor_unmonitored", "truly poor households neither registered nor monitored (while monitoring runs)"),
        Count("entered_monitoring", "households put into monitoring this month by {route}", kind="flow",
              by_route=True, column="monitoring_entered_{route}"),
        Count("entered_monitoring_people", "people in households put into monitoring, by route", unit="people",
              kind="flow", by_route=True, column=None),
        Count("risk_eliminated", "monitored households leaving monitoring at the annual check (risk eliminated)",
              kind="flow"),
        Count("risk_eliminated_people", "people in the households whose risk was eliminated", unit="people",
              kind="flow"),
        Count("wrong_risk_eliminated", "households leaving monitoring at the annual check while truly poor",
              kind="flow"),
        Bins("identification_delay", "verifications while monitoring by months from the flag reaching the office",
             IDENTIFICATION_BINS, _identification_labels()),
        Count("exited_ever", "households that have exited the register at some time (counted while monitoring is on, "
              "or with report_exited)"),
        Count("exited_poor", "households that have exited the register and are truly poor, registered again or not "
              "(returns to poverty among exited households)"),
        Count("exited_poor_unprotected", "exited households truly poor and neither registered nor monitored"),
        Column("monitoring_entered_total", "households put into monitoring this month, every route",
               lambda c: c.routes("entered_monitoring").sum(axis=1), "households", "count"),
        Column("exited_poor_share", "exited households truly poor / households that have exited the register",
               lambda c: c.ratio(c["exited_poor"], c["exited_ever"]),
               label="Exited households truly poor, %"),
    ),
    months=("start",),
    events=_events,
)


# --------------------------------------------------------------------------------------
# Helpers the channels, verification and the review call
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def range_line(pm, month, line):
    """The income below which a household is at risk: ``income_range`` lines while monitoring runs, else the line."""
    return line * pm.income_range if is_active(pm.start, month) else line


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def spending_trigger(hh, i, income, month, pm):
    """Whether monitoring runs and household ``i``'s medical spending over 12 months passes the trigger.

    ``income`` is its per-capita income of the last 12 months; the trigger is
    ``spending_multiple`` times the household's income (a non-positive income counts as 0).
    """
    if not is_active(pm.start, month):
        return False
    spent = np.float64(hh.medical_12m[i])
    return spent > 0.0 and spent > pm.spending_multiple * max(income, 0.0) * np.float64(hh.size[i])


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def assessed_at_risk(hh, i, income, month, line, sd, u0, u1, k0, k1, household, p):
    """Whether the office's assessment (error of SD ``sd``, its persistent part included, :mod:`.assessment`) puts
    household ``i`` below the range, or it meets the spending trigger."""
    pm = p.monitoring
    return (office_below(income, line * pm.income_range, sd, u0, u1, k0, k1, household, p.assessment)
            or spending_trigger(hh, i, income, month, pm))


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def truly_at_risk(hh, i, income, month, line, pm):
    """Whether monitoring runs and household ``i`` is truly below the range or meets the spending trigger."""
    if not is_active(pm.start, month):
        return False
    return income < line * pm.income_range or spending_trigger(hh, i, income, month, pm)


@_jit.compile_per_type
@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def enter(hh, i, route, p, acc):
    """Put household ``i`` into monitoring by ``route``; count the entry."""
    hh.flags[i] |= FLAG_MONITORED
    hh.pending_route[i] = 0
    hh.pending_month[i] = NEVER
    acc[p.slot.entered_monitoring + route] += 1
    acc[p.slot.entered_monitoring_people + route] += np.int64(hh.size[i])


# --------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def check(hh, i, first_id, month, line, income, p, k0, k1, acc):
    """The annual check of monitored household ``i`` (the review calls it in its month, with the review's
    assessment error): out of risk, it leaves.

    ``income`` is its per-capita income of the last 12 months.  From the start of monitoring only.
    """
    pm = p.monitoring
    if not is_active(pm.start, month):
        return
    u0, u1, _, _ = rng.draw4(k0, k1, STREAM_REVIEW, first_id + i, month, DRAW_CHECK)
    if not assessed_at_risk(hh, i, income, month, line, p.review.assessment_sd, u0, u1, k0, k1, first_id + i, p):
        hh.flags[i] &= ~FLAG_MONITORED
        acc[p.slot.risk_eliminated] += 1
        acc[p.slot.risk_eliminated_people] += np.int64(hh.size[i])
        if (hh.flags[i] & FLAG_POOR) != 0:
            acc[p.slot.wrong_risk_eliminated] += 1


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def count(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Step 4: the monitoring stocks of village ``v`` (only while they are counted)."""
    pm = p.monitoring
    if pm.count_from == NO_MONTH or month < pm.count_from:
        return
    first = vs.start[v]
    end = vs.start[v + 1]
    flags = hh.flags[first:end]
    size = hh.size[first:end]
    exit_month = hh.exit_month[first:end]
    monitored_n = monitored_people = monitored_exited = monitored_poor = poor_unmonitored = 0
    exited_n = exited_poor = exited_unprotected = 0
    for j in range(end - first):
        monitored = (flags[j] & FLAG_MONITORED) != 0
        poor = (flags[j] & FLAG_POOR) != 0
        registered = (flags[j] & FLAG_REGISTERED) != 0
        exited = exit_month[j] != NEVER
        monitored_n += monitored
        monitored_people += np.int64(size[j]) if monitored else 0
        monitored_exited += monitored & exited
        monitored_poor += monitored & poor
        poor_unmonitored += poor & (not registered) & (not monitored)
        exited_n += exited
        exited_poor += exited & poor
        exited_unprotected += exited & poor & (not registered) & (not monitored)
    slot = p.slot
    acc[slot.monitored] += monitored_n
    acc[slot.monitored_people] += monitored_people
    acc[slot.monitored_exited] += monitored_exited
    acc[slot.monitored_poor] += monitored_poor
    if is_active(pm.start, month):
        acc[slot.poor_unmonitored] += poor_unmonitored
    acc[slot.exited_ever] += exited_n
    acc[slot.exited_poor] += exited_poor
    acc[slot.exited_poor_unprotected] += exited_unprotected
