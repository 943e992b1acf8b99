"""Illness: onset, acute or chronic, recovery; the medical bill, insurance and lost labour.

Illness is the main cause of poverty in the register (42-44 % of registered
households, ``povsim/data/targets/china_rural_poverty.toml``), so it is its own submodel.  A healthy household
falls ill with a monthly probability; an illness is chronic with a given share and
otherwise acute; each kind ends with its own monthly probability.  While ill, a
household loses part of its income and pays a log-normal monthly bill, less what
insurance reimburses.  The month's transitions and bills are computed with the
household's income (:func:`povsim.components.income.household_month`), which calls
:func:`transition` here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import elementary
from ..schema import SRC_ASSUMPTION, SRC_FITTED, Section, param
from .base import Component, State


class IllnessConfig(Section):
    """Illness: onset, duration, medical bills, insurance and lost labour."""

    onset_probability: float = param(
        0.01684,
        "per household per month",
        SRC_FITTED + ": catastrophic health spending among rural households, 18.4% (2012) and 18.3% (2018, CFPS), "
        "and illness among registered households",
        "probability that a healthy household falls ill",
        ge=0.0,
        le=1.0,
    )
    chronic_share: float = param(
        0.25, "probability", SRC_ASSUMPTION, "share of onsets that are chronic", ge=0.0, le=1.0
    )
    acute_duration: float = param(
        2.0, "months", SRC_ASSUMPTION, "mean duration of an acute illness (geometric)", ge=1.0, le=600.0
    )
    chronic_recovery_probability: float = param(
        0.01, "per month", SRC_ASSUMPTION, "monthly probability that a chronic illness ends", ge=0.0, le=1.0
    )
    bill_median: float = param(
        758.6,
        "yuan per month",
        SRC_FITTED + ": catastrophic health spending (CFPS 2012, 2018)",
        "median medical bill of an ill household in a month (log-normal)",
        ge=0.0,
        le=1e7,
    )
    bill_sd: float = param(1.0, "log points", SRC_ASSUMPTION, "SD of the log medical bill", ge=0.0, le=5.0)
    reimbursement: float = param(
        0.50,
        "share of the bill",
        "effective reimbursement of the rural cooperative medical scheme about 50% (2013)",
        "share of the bill paid by insurance",
        ge=0.0,
        le=1.0,
    )
    income_loss: float = param(
        0.30, "share of income", SRC_ASSUMPTION, "share of household income lost while ill", ge=0.0, le=1.0
    )


class Params(NamedTuple):
    """Illness in the kernels' units (per month)."""

    onset_probability: float
    chronic_share: float
    acute_recovery: float  #: 1 / ``acute_duration``
    chronic_recovery_probability: float
    bill_log_median: float  #: log(``bill_median``); -inf for a median of 0
    bill_sd: float
    reimbursement: float
    income_loss: float


def params(cfg) -> Params:
    ill = cfg.illness
    return Params(
        onset_probability=ill.onset_probability,
        chronic_share=ill.chronic_share,
        acute_recovery=1.0 / ill.acute_duration,
        chronic_recovery_probability=ill.chronic_recovery_probability,
        bill_log_median=float(elementary.log(float(ill.bill_median))) if ill.bill_median > 0 else -math.inf,
        bill_sd=ill.bill_sd,
        reimbursement=ill.reimbursement,
        income_loss=ill.income_loss,
    )


COMPONENT = Component(
    name="illness",
    doc="illness: onset, acute or chronic, recovery; the medical bill, insurance and lost labour",
    path="illness",
    section=IllnessConfig,
    params=params,
    state=(
        State("illness", "uint8", "0 healthy, 1 acute illness, 2 chronic illness"),
        State("medical_12m", "float32",
              "out-of-pocket medical spending, last 12 months (exponentially weighted, yuan per household)"),
    ),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def transition(illness, u_illness, p):
    """New illness state (0 healthy, 1 acute, 2 chronic) and whether it began this month.

    ``p`` is the illness parameters.  One uniform decides the transition: a healthy
    household falls ill with probability ``onset_probability``, chronically if
    ``u_illness < onset_probability x chronic_share`` (given an onset, the uniform is
    uniform below ``onset_probability``, so this is an onset's chronic share exactly,
    with no second draw); an ill one recovers with its recovery probability (and
    cannot fall ill again in the same month).  Written as selections, without
    branches, so that a loop of it vectorises.
    """
    healthy = illness == 0
    leave = u_illness < (
        p.onset_probability if healthy else (p.acute_recovery if illness == 1 else p.chronic_recovery_probability)
    )
    fallen_ill = np.int64(2 if u_illness < p.onset_probability * p.chronic_share else 1)
    new = (fallen_ill if healthy else np.int64(0)) if leave else np.int64(illness)
    return new, leave & healthy
