"""Comparison of other departments' data: a jump in medical spending, a loss of income or of a job.

Each month the data of households covered by other departments' records (more of
those in formal work) are compared: a household is flagged when its out-of-pocket
medical spending over 12 months passes an amount or a share of its income, when a
job is lost, or when its last 3 months' income fell well below the 9 months before.
The flag reaches the poverty office after a lag and goes to verification
(:mod:`.verification`).  Monitored households (:mod:`.monitoring`) are not compared.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from ..schema import SRC_ASSUMPTION, Month, Section, check_month, param
from .base import FLAG_COVERED, FLAG_MONITORED, FLAG_REGISTERED, Column, Component, Route, is_active, month_or_never
from .income import DRAW_INCOME_12M, DRAW_LOST_JOB, DRAW_MEDICAL
from .verification import flag

ROUTE_CODE = 6  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "data", "Sector data", "#2ca02c", channel=True)


class DataConfig(Section):
    """Comparison of other departments' data: medical spending jumps, income or job losses."""

    enabled: bool = param(True, "flag", "sector data comparison channel (SCIO 2021)", "channel on")
    start: Month = param("2018-01", "month", "sector data screening spread from about 2018", "first month the channel runs")
    coverage_formal: float = param(
        0.90, "share of households", SRC_ASSUMPTION, "share of households with formal records covered by the data", ge=0.0, le=1.0
    )
    coverage_informal: float = param(
        0.40, "share of households", SRC_ASSUMPTION, "share of households in informal work covered by the data", ge=0.0, le=1.0
    )
    informal_share: float = param(
        0.50, "share of households", SRC_ASSUMPTION, "share of households whose work is informal", ge=0.0, le=1.0
    )
    medical_share_threshold: float = param(
        0.40,
        "share of 12-month income",
        "catastrophic health spending is commonly defined at 40% of capacity to pay (WHO)",
        "flag when out-of-pocket medical spending over 12 months passes this share of income",
        ge=0.0,
        le=10.0,
    )
    medical_threshold: float = param(
        20_000.0,
        "yuan per household per 12 months",
        SRC_ASSUMPTION,
        "flag when out-of-pocket medical spending over 12 months passes this amount",
        ge=0.0,
        le=1e9,
    )
    income_drop_threshold: float = param(
        0.40,
        "share",
        SRC_ASSUMPTION,
        "flag when the last 3 months' income is below (1 - threshold) x that of the 9 months before "
        "(1 = never), or a job is lost",
        ge=0.0,
        le=1.0,
    )
    lag: int = param(2, "months", SRC_ASSUMPTION, "months before a flag reaches the poverty office", ge=0, le=120)
    _month = field_validator("start")(check_month)


class Params(NamedTuple):
    """The data comparison in the kernels' units."""

    start: int  #: first month index, or NO_MONTH when disabled
    medical_share_threshold: float
    medical_threshold: float
    income_drop_threshold: float
    lag: int


def params(cfg) -> Params:
    ch = cfg.policy.channels.data
    return Params(
        start=month_or_never(ch.enabled, ch.start),
        medical_share_threshold=ch.medical_share_threshold,
        medical_threshold=ch.medical_threshold,
        income_drop_threshold=ch.income_drop_threshold,
        lag=ch.lag,
    )


def _cost(c):
    running = c.data_running
    return c.route("flags", "data") * c.costs.data_match + np.where(running, c["households"] * c.costs.data_system_per_household, 0.0)


COMPONENT = Component(
    name="data",
    doc="comparison of other departments' data: medical spending jumps, income or job losses",
    path="policy.channels.data",
    section=DataConfig,
    params=params,
    metrics=(Column("cost_data", "data flags followed up plus the data system's running cost, yuan", _cost, "yuan", "cost"),),
    route=ROUTE,
    months=("start",),
    start="start",
    toggle=("sector_data", "sector data comparison"),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def income_drop(hh, i, month, threshold, total):
    """Whether the last 3 months' income is below (1 - threshold) x the 9 months before, per month.

    ``total`` is the 12 months' sum.  A threshold of 1 (a fall of 100%) never flags.
    """
    if threshold >= 1.0:
        return False
    recent = 0
    for back in range(3):
        recent += np.int64(hh.net_income[i, (month - back) % 12])
    earlier = np.int64(total) - recent
    # recent / 3 < (1 - threshold) x earlier / 9, multiplied through by 9: no division on the path to the branch
    return (earlier > 0) & (3.0 * np.float64(recent) < (1.0 - threshold) * np.float64(earlier))


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 1: household ``i``'s records compared, if covered, unregistered, with no verification pending."""
    pd = p.data
    flags = hh.flags[i]
    if not is_active(pd.start, month) or (flags & (FLAG_REGISTERED | FLAG_MONITORED)) != 0 or hh.pending_route[i] != 0:
        return
    if (flags & FLAG_COVERED) == 0:
        return
    draws = s.draws
    j = i - vs.start[v]
    income = draws[DRAW_INCOME_12M, j]
    medical_12m = draws[DRAW_MEDICAL, j]
    household_income = income * np.int64(hh.size[i])
    medical_flag = medical_12m > pd.medical_threshold or (
        household_income > 0.0 and medical_12m > pd.medical_share_threshold * household_income
    )
    if medical_flag or draws[DRAW_LOST_JOB, j] != 0.0 or income_drop(hh, i, month, pd.income_drop_threshold, income):
        flag(hh, i, month, ROUTE_CODE, pd.lag, p, acc)
