"""Support: what a registered household receives, and for how long after it exits.

A supported household (registered, or exited within its transition period, "exit
without losing policies") receives a cash transfer per member ("blood transfusion"),
a higher share of its medical bill reimbursed, faster re-employment, and development
support that raises its own earning capacity ("hematopoiesis"), kept after support
ends.  The month's support is computed with the household's income
(:func:`povsim.components.income.household_month`), which calls :func:`is_supported`
and :func:`developed_capacity`; the transfers paid are counted by the month-end
census (:mod:`.census`).
"""

from __future__ import annotations

from typing import NamedTuple

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb

from ..schema import SRC_ASSUMPTION, Section, param
from .base import FLAG_MONITORED, FLAG_REGISTERED, Column, Component, State

CAPACITY_SCALE = 10000.0  #: capacity is stored in 1/10000 log points


class SupportConfig(Section):
    """What a registered household receives, and for how long after it exits."""

    transfer: float = param(
        40.0,
        "yuan per person per month",
        SRC_ASSUMPTION + "; rural dibao averaged about 200 yuan/person/month in 2014 but reached few",
        "monthly cash transfer to each member of a supported household ('blood transfusion')",
        ge=0.0,
        le=1e6,
    )
    transition_months: int = param(
        12,
        "months",
        "'exit without losing policies' during a transition period (SCIO 2021)",
        "months an exited household keeps its support",
        ge=0,
        le=255,
    )
    development_rate: float = param(
        0.005,
        "log points per month",
        SRC_ASSUMPTION + "; industry and employment projects ('hematopoiesis')",
        "monthly gain in the household's own earning capacity while supported; kept after support ends",
        ge=0.0,
        le=1.0,
    )
    development_max: float = param(
        0.20, "log points", SRC_ASSUMPTION, "largest total gain from development support", ge=0.0, le=6.0
    )
    reimbursement: float = param(
        0.80,
        "share of the bill",
        "medical reimbursement for registered households raised to about 80-90% (SCIO 2021)",
        "insurance share of the medical bill for supported households",
        ge=0.0,
        le=1.0,
    )
    reemployment_multiplier: float = param(
        1.5, "multiple", SRC_ASSUMPTION, "re-employment probability multiple for supported households", ge=1.0, le=100.0
    )


class Params(NamedTuple):
    """Support in the kernels' units (yuan per person per month, capacity units)."""

    transfer: float
    transition_months: int
    development_rate: int  #: capacity units (1/10000 log points) per month
    development_max: int  #: capacity units
    reimbursement: float
    reemployment_multiplier: float


def params(cfg) -> Params:
    sup = cfg.policy.support
    return Params(
        transfer=sup.transfer,
        transition_months=sup.transition_months,
        development_rate=int(round(sup.development_rate * CAPACITY_SCALE)),
        development_max=min(int(round(sup.development_max * CAPACITY_SCALE)), 65535),
        reimbursement=sup.reimbursement,
        reemployment_multiplier=sup.reemployment_multiplier,
    )


COMPONENT = Component(
    name="support",
    doc="support of registered households: transfer, medical reimbursement, re-employment, development; kept after exit",
    path="policy.support",
    section=SupportConfig,
    params=params,
    state=(
        State("capacity", "uint16", "earning capacity gained from development support, in 1/10000 log points"),
        State("support_left", "uint8", "months of transition support left after an exit"),
    ),
    metrics=(
        Column("cost_transfers", "cash transfers paid, yuan", lambda c: c["transfers_fen"] / 100.0, "yuan", "cost"),
        Column("transfers_yuan", "cash transfers paid this month, yuan (equal to cost_transfers)",
               lambda c: c["transfers_fen"] / 100.0, "yuan", "yuan"),
    ),
)


@nb.njit(cache=True, inline="always", error_model="numpy")
def is_supported(flags, support_left):
    """Whether a household receives support this month: registered or monitored, or exited within its transition period."""
    return ((flags & (FLAG_REGISTERED | FLAG_MONITORED)) != 0) | (support_left > 0)  # no branch: the income loop vectorises


@nb.njit(cache=True, inline="always", error_model="numpy")
def developed_capacity(capacity, supported, p):
    """Earning capacity after this month's development support (capacity units); ``p``: the support parameters."""
    grown = min(capacity + p.development_rate, p.development_max)
    return grown if supported and capacity < p.development_max else capacity
