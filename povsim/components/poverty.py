"""True poverty, as the statistics measure it: per-capita income against the year's line.

The household's monthly per-capita income (earnings and transfers, as
:func:`povsim.components.income.household_month` computed it; less out-of-pocket
medical spending only when ``poverty.deduct_medical``) is kept for the last 12
months.  Under the default concept, the NBS's (``poverty.concept =
"calendar_year"``), a household is poor when its per-capita income of the calendar
year is below that year's line: assessed each December, when the record holds
January to December, and held until the next December.  Under ``"rolling_12m"`` the
last 12 months' income is assessed every month.  With ``poverty.consumption_test``
a household is poor if its income is below the line and its consumption below
``consumption_margin`` lines, or its consumption below the line and its income below
``consumption_margin`` lines.

The true status is known to the model and never to the government.  Its changes are
counted twice, each named by its period:

* **monthly crossings** (``newly_poor_monthly``, ``return_to_poverty_monthly``): the
  status turning poor in the month (under the calendar-year concept, in December only);
* **year-to-year flows** (``*_annual``, in households and people), counted in
  December: poor this December and not the last (newly poor); poor the last December
  and not this one (exits from poverty); newly poor and poor at an earlier December
  (returns to poverty).

A household's fall into poverty is recorded (``poor_since``) once 12 months of
history exist, for the detection delays.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import elementary
from ..schema import SRC_ASSUMPTION, SRC_NBS_LINE, Section, param
from .base import (
    FLAG_POOR, FLAG_POOR_DECEMBER, FLAG_POOR_EARLIER, FLAG_REGISTERED, NEVER, Column, Component, Count, State,
    months_since, to_stored,
)
from .income import DRAW_INCOME_12M, DRAW_NET_INCOME, DRAW_SUPPORTED
from .support import CAPACITY_SCALE, year_index

from pydantic import field_validator

RING_MONTHS = 12  #: months of per-capita income kept for the 12-month total
MONTHS_TO_RETURN = 12  #: a fall into poverty within this many months of exiting is a return
GAP_SCALE = 65535  #: the stored poverty gap ratio's fixed-point scale (uint16)

SRC_NBS_CONCEPT = (
    "NBS rural poverty monitoring: a household is poor when its per-capita net income of the calendar year, "
    "from the rural household survey, is below that year's line (the headcounts are year-end figures)"
)


def _default_lines() -> dict[int, float]:
    return {2013: 2736.0, 2014: 2800.0, 2015: 2855.0, 2016: 2952.0, 2017: 2952.0, 2018: 2995.0, 2019: 3218.0, 2020: 4000.0}


class PovertyConfig(Section):
    """The poverty line and the poverty concept: what income, over what period, assessed when."""

    lines: dict[int, float] = param(
        _default_lines,
        "yuan per person per year",
        SRC_NBS_LINE + "; 2017 held at 2016's figure (not in the source); 2018-2020 approximate",
        "poverty line by calendar year; every reported year needs one",
    )
    concept: Literal["calendar_year", "rolling_12m"] = param(
        "calendar_year",
        "choice",
        SRC_NBS_CONCEPT,
        "'calendar_year': the calendar year's per-capita income, assessed each December and held for the "
        "year (the NBS measure); 'rolling_12m': the last 12 months' per-capita income, assessed every month",
    )
    deduct_medical: bool = param(
        False,
        "flag",
        "NBS per-capita net income does not deduct medical spending; income net of out-of-pocket medical "
        "spending measures medical impoverishment (Wagstaff and van Doorslaer 2003), not the NBS headcount",
        "count income net of out-of-pocket medical spending (the medical-impoverishment measure)",
    )
    consumption_test: bool = param(
        False,
        "flag",
        "NBS-style two-criteria test: the NBS rural poverty monitoring measures poverty by income and by "
        "expenditure (Xian Zude, NBS Rural Survey Organization, 'Poverty Monitoring in Rural China'); "
        "consumption is the household's permanent income (the income level, trend, persistent component "
        "and developed capacity, without the transitory shock and the losses of illness and job loss, "
        "plus transfers): a smoothing of income after the permanent-income hypothesis (Friedman 1957), "
        "an assumption",
        "poor if income < line and consumption < margin x line, or consumption < line and income < margin x line",
    )
    consumption_margin: float = param(
        1.2,
        "multiple of the line",
        SRC_ASSUMPTION + ": the NBS publishes no margin; 1.2 lines is povsim's specification of the NBS-style test",
        "the margin of the consumption test",
        ge=1.0,
        le=10.0,
    )

    @field_validator("lines")
    @classmethod
    def _positive(cls, value: dict[int, float]) -> dict[int, float]:
        bad = {y: v for y, v in value.items() if not (0 < v <= 1e7)}
        if bad:
            raise ValueError(f"every line must be in (0, 1e7] yuan, got {bad}")
        return dict(sorted(value.items()))


def describe(section: PovertyConfig) -> str:
    """The poverty concept in use, in words (for tables, captions and manifests)."""
    income = "income net of out-of-pocket medical spending" if section.deduct_medical else "income before medical spending"
    if section.concept == "calendar_year":
        text = f"calendar-year per-capita {income}, assessed each December (NBS)"
    else:
        text = f"per-capita {income} of the last 12 months, assessed every month"
    if section.consumption_test:
        text += f", with the consumption test (margin {section.consumption_margin:g} lines)"
    return text


class Params(NamedTuple):
    """The poverty concept in the kernels' terms."""

    calendar_year: bool  #: assessed in December only
    deduct_medical: bool
    consumption_test: bool
    consumption_margin: float


def params(cfg) -> Params:
    pv = cfg.poverty
    return Params(
        calendar_year=pv.concept == "calendar_year",
        deduct_medical=pv.deduct_medical,
        consumption_test=pv.consumption_test,
        consumption_margin=pv.consumption_margin,
    )


def _annual(name: str, definition: str) -> tuple[Count, Count]:
    return (
        Count(name, definition + " (counted in December)", kind="flow"),
        Count(name + "_people", "people in them", unit="people", kind="flow"),
    )


COMPONENT = Component(
    name="poverty",
    doc="true poverty: per-capita income against the year's line, by calendar year (NBS) or over the last 12 months",
    path="poverty",
    section=PovertyConfig,
    params=params,
    state=(
        State("net_income", "int16",
              "per-capita income of the last 12 months, yuan a month (net of medical spending only with deduct_medical)",
              shape=(RING_MONTHS,)),
        State("poor_since", "int16", "month it last fell poor", fill=NEVER),
        State("gap", "uint16", "poverty gap ratio at the last assessment, (line - max(income, 0)) / line, "
              "in 1/65535 (0 if not poor)"),
    ),
    metrics=(
        Count("newly_poor_monthly", "households whose status turned poor this month (a monthly crossing; "
              "under the calendar-year concept, December only)", kind="flow"),
        Count("return_to_poverty_monthly",
              "of them, households that exited the register in the last 12 months (a monthly crossing)", kind="flow"),
        *_annual("newly_poor_annual", "households poor this December and not the December before"),
        *_annual("exits_from_poverty_annual", "households poor the December before and not this December"),
        *_annual("returns_to_poverty_annual",
                 "households poor this December, not the December before, and poor at an earlier December"),
        Column("headcount_rate", "FGT0: share of people who are poor",
               lambda c: c.ratio(c["poor_people"], c["people"]), label="Headcount rate (poor people / people), %"),
        Column("poverty_gap", "FGT1: mean poverty gap ratio over people",
               lambda c: c.ratio(c["gap_fx"] / GAP_SCALE, c["people"])),
        Column("poverty_severity", "FGT2: mean squared poverty gap ratio over people",
               lambda c: c.ratio(c["severity_fx"] / float(GAP_SCALE) ** 2, c["people"])),
    ),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def record_sum(net_income, i):
    """Household ``i``'s per-capita income over its 12-month record ``net_income``, yuan (exact sum).

    In December the record holds January to December: the calendar year's income.
    """
    total = 0
    for r in range(RING_MONTHS):  # a constant: the sum compiles to a few vector instructions
        total += np.int64(net_income[i, r])
    return np.float64(total)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def income_12m(hh, i):
    """Per-capita income over the last 12 months, yuan (:func:`record_sum` of the household's record)."""
    return record_sum(hh.net_income, i)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def consumption(hh, i, month, supported, p):
    """The consumption of the consumption test: permanent per-capita income, yuan a year.

    The income level, trend, persistent component and developed capacity, without
    this month's transitory shock and the losses of illness and job loss, plus the
    transfer while supported.
    """
    pi = p.income
    log_income = (
        np.float64(hh.level[i])
        + pi.trend_per_month * (month - pi.base_month)
        + np.float64(hh.persistent[i])
        + np.float64(hh.capacity[i]) / CAPACITY_SCALE
    )
    transfer = p.support.transfer[year_index(p.support, month)] if supported else 0.0
    return elementary.exp(log_income) + 12.0 * transfer


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def is_poor(income, spent, line, test, margin):
    """The poverty test: ``income`` below ``line`` (and, with the consumption ``test``, the two-criteria rule)."""
    if not test:
        return income < line
    high = margin * line
    return (income < line and spent < high) or (spent < line and income < high)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def gap_ratio(income, line):
    """The poverty gap ratio ``(line - max(income, 0)) / line`` in 1/GAP_SCALE, 0 at or above the line."""
    gap = (line - max(income, 0.0)) / line
    return np.uint16(round(gap * GAP_SCALE)) if gap > 0.0 else np.uint16(0)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def update(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 1 for household ``i``: the month's income into its record, and its true poverty.

    The status is assessed every month (rolling concept) or in December (calendar-year
    concept), once 12 months of history exist; onsets are recorded after the first
    assessment.  In December the year-to-year flows are counted, from the second
    assessed December on.  The 12-month income is left in row ``DRAW_INCOME_12M`` of
    the household's column for the later steps (the record does not change before them).
    """
    draws = s.draws
    pv = p.poverty
    j = i - vs.start[v]
    flags = hh.flags[i]
    hh.net_income[i, month % 12] = np.int16(draws[DRAW_NET_INCOME, j])
    income = income_12m(hh, i)
    draws[DRAW_INCOME_12M, j] = income
    if month < p.time.record_start:
        return  # fewer than 12 months of history: nothing is assessed
    december = month % 12 == 11
    if pv.calendar_year and not december:
        return
    spent = consumption(hh, i, month, draws[DRAW_SUPPORTED, j] != 0.0, p) if pv.consumption_test else 0.0
    poor = is_poor(income, spent, line, pv.consumption_test, pv.consumption_margin)
    report = month >= p.time.report_start  # the metrics of a burn-in month are not counted
    slot = p.slot
    if month == p.time.record_start:
        hh.poor_since[i] = NEVER  # poor (if at all) since before the record: onset unknown
    elif poor and not (flags & FLAG_POOR):
        hh.poor_since[i] = to_stored(month)
        if report:
            acc[slot.newly_poor_monthly] += 1
            if not (flags & FLAG_REGISTERED) and months_since(hh.exit_month[i], month) <= MONTHS_TO_RETURN:
                acc[slot.return_to_poverty_monthly] += 1
    hh.gap[i] = gap_ratio(income, line) if poor else np.uint16(0)
    flags = (flags | FLAG_POOR) if poor else (flags & ~FLAG_POOR)
    if december:
        was_poor = (flags & FLAG_POOR_DECEMBER) != 0
        if report and month - 12 >= p.time.record_start:  # the December before was assessed
            members = np.int64(hh.size[i])
            if poor and not was_poor:
                acc[slot.newly_poor_annual] += 1
                acc[slot.newly_poor_annual_people] += members
                if flags & FLAG_POOR_EARLIER:
                    acc[slot.returns_to_poverty_annual] += 1
                    acc[slot.returns_to_poverty_annual_people] += members
            elif was_poor and not poor:
                acc[slot.exits_from_poverty_annual] += 1
                acc[slot.exits_from_poverty_annual_people] += members
        if was_poor:
            flags |= FLAG_POOR_EARLIER
        flags = (flags | FLAG_POOR_DECEMBER) if poor else (flags & ~FLAG_POOR_DECEMBER)
    hh.flags[i] = flags
