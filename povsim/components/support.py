"""Support: what a registered household receives, and for how long after it exits.

A supported household (registered; monitored for a return to poverty; or exited and
still within its policies' time, "exit without losing policies") receives a cash
transfer per member ("blood transfusion"), a higher share of its medical bill
reimbursed, faster re-employment, and development support that raises its own
earning capacity ("hematopoiesis"), kept after support ends.  The transfer, the
development rate and the reimbursement may each be a schedule by calendar year.  The
month's support is computed with the household's income
(:func:`povsim.components.income.household_month`), which looks the year's values up
once for the village (:func:`year_index`) and calls :func:`is_supported` and
:func:`developed_capacity`; the transfers paid are counted by the month-end census
(:mod:`.census`).

Support after exit follows from the review's ``exit_month``: a household that exited
(and is not registered again) keeps its support while the month is at most
``max(kept_until, exit month) + transition_months``.  A household removed by the
look-back has not exited: no support follows its removal.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from ..schema import SRC_ASSUMPTION, SRC_FITTED, Month, Section, check_month, in_year, param, parse_month
from .base import FLAG_MONITORED, FLAG_REGISTERED, MONTH_ORIGIN, NEVER, Column, Component, State

CAPACITY_SCALE = 10000.0  #: capacity is stored in 1/10000 log points
NOT_KEPT = -(1 << 30)  #: ``kept_until`` in the kernels when policies are not kept after exit (before any month)

SRC_KEPT = ("'exit without losing policies' / 'the four not-removes' during the campaign (2017-2019 central "
            "documents; povsim/data/targets/china_rural_poverty.toml, support_after_exit)")
SRC_TRANSITION = ("five-year transition period 2021-2025 after 2020, keeping the main support policies (2021 No. 1 "
                  "central document; povsim/data/targets/china_rural_poverty.toml, support_after_exit)")


class SupportConfig(Section):
    """What a registered household receives, and for how long after it exits."""

    transfer: float | dict[int, float] = param(
        lambda: {2014: 18.92, 2017: 29.29, 2019: 217.1},
        "yuan per person per month",
        SRC_FITTED + ": the headcounts 2014-2019 and the poor areas' income growth, bounded by their transfer share; "
        "steps in 2017 (central special poverty funds scaled up from 2016) and 2019 (the social-assistance backstop "
        "for the remaining poor: dibao linked to poverty alleviation, General Office of the State Council 2016 "
        "No. 70); the years of the steps are an assumption; rural dibao averaged about 200 yuan/person/month in "
        "2014 but reached few",
        "monthly cash transfer to each member of a supported household ('blood transfusion'); a number, or a "
        "schedule by calendar year (the latest listed year's value at or before the year; the first's before)",
        by_year=True,
        ge=0.0,
        le=1e6,
    )
    keep_after_exit: bool = param(
        True,
        "flag",
        SRC_KEPT,
        "an exited household keeps its support until `kept_until` (then `transition_months` more); "
        "false: for `transition_months` after its exit only",
    )
    kept_until: Month = param(
        "2020-12",
        "month",
        SRC_KEPT,
        "last month in which every exited household keeps its support, however early it exited",
    )
    transition_months: int = param(
        60,
        "months",
        SRC_TRANSITION,
        "months of support after `kept_until` (or after the exit, if later or not kept)",
        ge=0,
        le=255,
    )
    development_rate: float | dict[int, float] = param(
        0.005,
        "log points per month",
        SRC_ASSUMPTION + "; industry and employment projects ('hematopoiesis')",
        "monthly gain in the household's own earning capacity while supported; kept after support ends; a "
        "number or a schedule by calendar year",
        by_year=True,
        ge=0.0,
        le=1.0,
    )
    development_max: float = param(
        0.20, "log points", SRC_ASSUMPTION, "largest total gain from development support", ge=0.0, le=6.0
    )
    reimbursement: float | dict[int, float] = param(
        0.80,
        "share of the bill",
        "medical reimbursement for registered households raised to about 80-90% (SCIO 2021)",
        "insurance share of the medical bill for supported households; a number or a schedule by calendar year",
        by_year=True,
        ge=0.0,
        le=1.0,
    )
    reemployment_multiplier: float = param(
        1.5, "multiple", SRC_ASSUMPTION, "re-employment probability multiple for supported households", ge=1.0, le=100.0
    )

    _month = field_validator("kept_until")(check_month)


#: the keys that may be schedules by calendar year
BY_YEAR = ("transfer", "development_rate", "reimbursement")


class Params(NamedTuple):
    """Support in the kernels' units (yuan per person per month, capacity units, stored months).

    The schedules are arrays by year, entry ``k`` for year ``first_year + k``, one span for
    all three: :func:`year_index` finds a month's entry.
    """

    first_year: int  #: the year of the schedules' entry 0
    transfer: np.ndarray  #: float64 by year
    development_rate: np.ndarray  #: int64 by year: capacity units (1/10000 log points) per month
    reimbursement: np.ndarray  #: float64 by year
    development_max: int  #: capacity units
    reemployment_multiplier: float
    kept_until: int  #: stored month (months since MONTH_ORIGIN) until which exits keep support; NOT_KEPT if off
    transition_months: int


def schedule_span(section) -> tuple[int, int]:
    """The first and last year the section's schedules list (one year, 0, if every value is a number)."""
    years = [y for key in BY_YEAR if isinstance(getattr(section, key), dict) for y in getattr(section, key)]
    return (min(years), max(years)) if years else (0, 0)


def params(cfg) -> Params:
    sup = cfg.policy.support
    first, last = schedule_span(sup)
    years = range(first, last + 1)
    return Params(
        first_year=first,
        transfer=np.array([in_year(sup.transfer, y) for y in years], np.float64),
        development_rate=np.array([int(round(in_year(sup.development_rate, y) * CAPACITY_SCALE)) for y in years],
                                  np.int64),
        reimbursement=np.array([in_year(sup.reimbursement, y) for y in years], np.float64),
        development_max=min(int(round(sup.development_max * CAPACITY_SCALE)), 65535),
        reemployment_multiplier=sup.reemployment_multiplier,
        kept_until=parse_month(sup.kept_until) - MONTH_ORIGIN if sup.keep_after_exit else NOT_KEPT,
        transition_months=sup.transition_months,
    )


COMPONENT = Component(
    name="support",
    doc="support of registered households: transfer, medical reimbursement, re-employment, development; kept after exit",
    path="policy.support",
    section=SupportConfig,
    params=params,
    state=(
        State("capacity", "uint16", "earning capacity gained from development support, in 1/10000 log points"),
    ),
    metrics=(
        Column("cost_transfers", "cash transfers paid, yuan", lambda c: c["transfers_fen"] / 100.0, "yuan", "cost"),
        Column("transfers_yuan", "cash transfers paid this month, yuan (equal to cost_transfers)",
               lambda c: c["transfers_fen"] / 100.0, "yuan", "yuan"),
    ),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def year_index(p, month):
    """The entry of the support schedules for ``month`` (a month index); ``p``: the support parameters."""
    return min(max(month // 12 - p.first_year, 0), p.transfer.shape[0] - 1)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def is_supported(flags, exit_month, month, p):
    """Whether a household receives support this month.

    Registered, monitored for a return to poverty, or exited (``exit_month``, stored)
    with ``month`` at most ``max(kept_until, exit month) + transition_months``.  No
    branch: the income loop vectorises.
    """
    exited = np.int64(exit_month)
    kept = (exited != NEVER) & (month - MONTH_ORIGIN <= max(p.kept_until, exited) + p.transition_months)
    return ((flags & (FLAG_REGISTERED | FLAG_MONITORED)) != 0) | kept


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def developed_capacity(capacity, supported, rate, p):
    """Earning capacity after this month's development support at ``rate`` (capacity units); ``p``: the support parameters."""
    grown = min(capacity + rate, p.development_max)
    return grown if supported and capacity < p.development_max else capacity
