"""True poverty: a household's 12-month per-capita net income against the year's line.

The household's monthly per-capita net income (earnings, transfers, less
out-of-pocket medical spending, as :func:`povsim.components.income.household_month`
computed it) is kept for the last 12 months; the household is truly poor while their
sum is below the poverty line of the month's calendar year.  The true status is known
to the model and never to the government.  A household's fall into poverty is
recorded (``poor_since``) once 12 months of history exist, for the detection delays.
"""

from __future__ import annotations


from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from ..schema import SRC_NBS_LINE, Section, param
from .base import FLAG_POOR, FLAG_REGISTERED, NEVER, Column, Component, Count, State, months_since, to_stored
from .income import DRAW_INCOME_12M, DRAW_NET_INCOME

from pydantic import field_validator

RING_MONTHS = 12  #: months of per-capita net income kept for the 12-month total
MONTHS_TO_RETURN = 12  #: a fall into poverty within this many months of exiting is a return


def _default_lines() -> dict[int, float]:
    return {2013: 2736.0, 2014: 2800.0, 2015: 2855.0, 2016: 2952.0, 2017: 2952.0, 2018: 2995.0, 2019: 3218.0, 2020: 4000.0}


class PovertyConfig(Section):
    """The poverty line: true status is 12-month per-capita net income below the line of the year."""

    lines: dict[int, float] = param(
        _default_lines,
        "yuan per person per year",
        SRC_NBS_LINE + "; 2017 held at 2016's figure (not in the source); 2018-2020 approximate",
        "poverty line by calendar year; every reported year needs one",
    )

    @field_validator("lines")
    @classmethod
    def _positive(cls, value: dict[int, float]) -> dict[int, float]:
        bad = {y: v for y, v in value.items() if not (0 < v <= 1e7)}
        if bad:
            raise ValueError(f"every line must be in (0, 1e7] yuan, got {bad}")
        return dict(sorted(value.items()))


COMPONENT = Component(
    name="poverty",
    doc="true poverty: 12-month per-capita net income below the line of the year",
    path="poverty",
    section=PovertyConfig,
    state=(
        State("net_income", "int16", "per-capita net income of the last 12 months, yuan", shape=(RING_MONTHS,)),
        State("poor_since", "int16", "month it last fell poor", fill=NEVER),
    ),
    metrics=(
        Count("newly_poor", "households falling poor this month", kind="flow"),
        Count("return_to_poverty", "households falling poor again within 12 months of exiting", kind="flow"),
        Column("headcount_rate", "FGT0: share of people who are poor",
               lambda c: c.ratio(c["poor_people"], c["people"]), label="Headcount rate (poor people / people), %"),
        Column("poverty_gap", "FGT1: mean poverty gap ratio over people",
               lambda c: c.ratio(c["gap_fx"] / c.fx_scale, c["people"])),
        Column("poverty_severity", "FGT2: mean squared poverty gap ratio over people",
               lambda c: c.ratio(c["severity_fx"] / c.fx_scale, c["people"])),
    ),
)


@nb.njit(cache=True, inline="always", error_model="numpy")
def income_12m(hh, i):
    """Per-capita net income over the last 12 months, yuan (exact sum of the stored months)."""
    total = 0
    for r in range(RING_MONTHS):  # a constant: the sum compiles to a few vector instructions
        total += np.int64(hh.net_income[i, r])
    return np.float64(total)


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def update(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 1 for household ``i``: the month's income into its record, and its true poverty.

    Onsets are recorded once 12 months of history exist; the 12-month income is left
    in row ``DRAW_INCOME_12M`` of the household's column for the later steps (the
    record does not change before them).
    """
    draws = s.draws
    j = i - vs.start[v]
    flags = hh.flags[i]
    registered = (flags & FLAG_REGISTERED) != 0
    hh.net_income[i, month % 12] = np.int16(draws[DRAW_NET_INCOME, j])
    income = income_12m(hh, i)
    draws[DRAW_INCOME_12M, j] = income
    poor = income < line
    report = month >= p.time.report_start  # the metrics of a burn-in month are not counted
    if month <= p.time.record_start:
        hh.poor_since[i] = NEVER  # poor (if at all) since before the record: onset unknown
    elif poor and not (flags & FLAG_POOR):
        hh.poor_since[i] = to_stored(month)
        if report:
            acc[p.slot.newly_poor] += 1
            if not registered and months_since(hh.exit_month[i], month) <= MONTHS_TO_RETURN:
                acc[p.slot.return_to_poverty] += 1
    hh.flags[i] = (flags | FLAG_POOR) if poor else (flags & ~FLAG_POOR)
