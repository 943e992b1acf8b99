"""Household rules: what happens to one household in one month, written once.

This module owns the behaviour of a household and of the government towards
it, as plain scalar functions compiled by Numba, free of Python objects and
allocation.  The fast engine (:mod:`povsim.engine`) applies
:func:`household_month` to every household of a village in a parallel loop;
the Mesa model applies the very same function to each agent.  Both therefore
give identical trajectories for the same seed.

Parameters arrive as one :class:`Params` named tuple built from the validated
config by :func:`make_params` (units converted to what the month step uses).

Draws per household-month (stream ``rng.STREAM_SHOCKS``):

* index 0: ``u_illness`` (onset or recovery), ``u_chronic``, ``u_job`` (loss or
  re-employment), one spare;
* index 1: two Box-Muller pairs: persistent innovation, transitory shock,
  medical bill, one spare.

The registration assessment draws from ``rng.STREAM_ASSESSMENT``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

from . import metrics as M
from . import rng
from .config import Config, parse_month
from .population import FLAG_POOR, FLAG_REGISTERED

__all__ = ["Params", "make_params", "household_month", "NO_MONTH"]

NO_MONTH = -1  #: a month index meaning "never"


class Params(NamedTuple):
    """Everything the month step needs, in the units it uses (per month, log points, yuan)."""

    # income
    base_month: int  # month index at which the level is the configured median
    trend_per_month: float  # log points per month
    persistent_rho: float
    persistent_innovation_sd: float  # sd * sqrt(1 - rho^2)
    transitory_sd: float
    # illness
    illness_onset: float
    chronic_share: float
    acute_recovery: float  # 1 / mean acute duration
    chronic_recovery: float
    bill_log_median: float
    bill_sd: float
    reimbursement: float
    illness_income_loss: float
    # job loss
    job_loss: float
    reemployment: float  # 1 / mean months out of work
    job_income_loss: float
    # policy
    registration_month: int  # NO_MONTH when disabled
    assessment_sd: float
    transfer: float  # yuan per person per month


def make_params(cfg: Config) -> Params:
    """The month step's parameters from a validated config."""
    inc, ill, job, pol = cfg.income, cfg.illness, cfg.job_loss, cfg.policy
    reg = pol.registration
    return Params(
        base_month=inc.base_year * 12,
        trend_per_month=inc.trend / 12.0,
        persistent_rho=inc.persistent_rho,
        persistent_innovation_sd=inc.persistent_sd * math.sqrt(1.0 - inc.persistent_rho**2),
        transitory_sd=inc.transitory_sd,
        illness_onset=ill.onset_probability,
        chronic_share=ill.chronic_share,
        acute_recovery=1.0 / ill.acute_duration,
        chronic_recovery=ill.chronic_recovery_probability,
        bill_log_median=math.log(ill.bill_median) if ill.bill_median > 0 else -math.inf,
        bill_sd=ill.bill_sd,
        reimbursement=ill.reimbursement,
        illness_income_loss=ill.income_loss,
        job_loss=job.probability,
        reemployment=1.0 / job.duration,
        job_income_loss=job.income_loss,
        registration_month=parse_month(reg.month) if reg.enabled else NO_MONTH,
        assessment_sd=reg.assessment_sd,
        transfer=pol.support.transfer,
    )


# --------------------------------------------------------------------------------------
# Sub-steps, in the order household_month calls them
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def illness_transition(illness, u_illness, u_chronic, p):
    """New illness state (0 healthy, 1 acute, 2 chronic) and whether it began this month.

    One uniform decides the transition: a healthy household falls ill with
    probability ``illness_onset``; an ill one recovers with its recovery
    probability (and cannot fall ill again in the same month).
    """
    if illness == 0:
        if u_illness < p.illness_onset:
            return (2 if u_chronic < p.chronic_share else 1), True
        return 0, False
    if illness == 1:
        return (0 if u_illness < p.acute_recovery else 1), False
    return (0 if u_illness < p.chronic_recovery else 2), False


@nb.njit(cache=True, inline="always")
def job_transition(unemployed, workers, u_job, p):
    """New unemployment flag and whether a job was lost this month (households with workers only)."""
    if workers == 0:
        return 0, False
    if unemployed:
        return (0 if u_job < p.reemployment else 1), False
    if u_job < p.job_loss:
        return 1, True
    return 0, False


@nb.njit(cache=True, inline="always")
def store_yuan(value):
    """A per-capita monthly amount as int16 yuan: rounded half up, clipped to the int16 range."""
    r = math.floor(value + 0.5)
    if r > 32767.0:
        return np.int16(32767)
    if r < -32768.0:
        return np.int16(-32768)
    return np.int16(r)


@nb.njit(cache=True, inline="always")
def income_12m(hh, i):
    """Per-capita net income over the last 12 months, yuan (exact sum of the stored months)."""
    total = 0
    for r in range(hh.net_income.shape[1]):
        total += np.int64(hh.net_income[i, r])
    return np.float64(total)


@nb.njit(cache=True, inline="always")
def assessed_below(income, line, sd, u1, u2):
    """Whether a noisy assessment of ``income`` (log-normal error of SD ``sd``) falls below ``line``."""
    if income <= 0.0:
        return True
    z, _ = rng.box_muller(u1, u2)
    return income * math.exp(sd * z) < line


# --------------------------------------------------------------------------------------
# One household, one month
# --------------------------------------------------------------------------------------


@nb.njit(cache=True)
def household_month(hh, i, gid, month, line, p, k0, k1, acc):
    """Advance household ``i`` (global id ``gid``) through calendar month ``month``.

    Order of events:

    1. shocks: illness and job transitions;
    2. income: persistent AR(1) update, transitory shock, trend, losses from
       illness and unemployment, out-of-pocket medical bill, transfer if registered;
    3. true poverty: the 12-month per-capita net income against ``line`` (yuan/year);
    4. policy: the one-time registration, in its month, by a noisy assessment;
    5. metrics: the household's contribution added to ``acc`` (int64 slots of
       :mod:`povsim.metrics`).
    """
    size = np.int64(hh.size[i])
    workers = hh.workers[i]
    registered = (hh.flags[i] & FLAG_REGISTERED) != 0

    # 1. shocks
    u_illness, u_chronic, u_job, _ = rng.draw4(k0, k1, rng.STREAM_SHOCKS, gid, month, 0)
    v0, v1, v2, v3 = rng.draw4(k0, k1, rng.STREAM_SHOCKS, gid, month, 1)
    z_persistent, z_transitory = rng.box_muller(v0, v1)
    z_bill, _ = rng.box_muller(v2, v3)
    illness, onset = illness_transition(hh.illness[i], u_illness, u_chronic, p)
    unemployed, lost_job = job_transition(hh.unemployed[i], workers, u_job, p)

    # 2. income (per person, this month, yuan)
    persistent = p.persistent_rho * np.float64(hh.persistent[i]) + p.persistent_innovation_sd * z_persistent
    log_income = (
        np.float64(hh.level[i])
        + p.trend_per_month * (month - p.base_month)
        + persistent
        + p.transitory_sd * z_transitory
    )
    gross = math.exp(log_income) / 12.0
    if illness != 0:
        gross *= 1.0 - p.illness_income_loss
    if unemployed != 0:
        gross *= 1.0 - p.job_income_loss
    out_of_pocket = 0.0
    if illness != 0:
        out_of_pocket = math.exp(p.bill_log_median + p.bill_sd * z_bill) * (1.0 - p.reimbursement) / size
    transfer = p.transfer if registered else 0.0
    net = gross + transfer - out_of_pocket
    hh.net_income[i, month % 12] = store_yuan(net)

    # 3. true poverty
    income = income_12m(hh, i)
    poor = income < line

    # 4. policy: one-time registration
    if month == p.registration_month:
        a0, a1, _, _ = rng.draw4(k0, k1, rng.STREAM_ASSESSMENT, gid, month, 0)
        registered = assessed_below(income, line, p.assessment_sd, a0, a1)

    # write back
    hh.illness[i] = illness
    hh.unemployed[i] = unemployed
    hh.persistent[i] = persistent
    flags = 0
    if registered:
        flags |= FLAG_REGISTERED
    if poor:
        flags |= FLAG_POOR
    hh.flags[i] = flags

    # 5. metrics
    acc[M.HOUSEHOLDS] += 1
    acc[M.PEOPLE] += size
    if poor:
        gap = (line - max(income, 0.0)) / line
        acc[M.POOR] += 1
        acc[M.POOR_PEOPLE] += size
        acc[M.GAP_FX] += size * np.int64(round(gap * M.FX_SCALE))
        acc[M.SEVERITY_FX] += size * np.int64(round(gap * gap * M.FX_SCALE))
    if registered:
        acc[M.REGISTERED] += 1
        if poor:
            acc[M.POOR_REGISTERED] += 1
    if illness != 0:
        acc[M.ILL] += 1
    if unemployed != 0:
        acc[M.UNEMPLOYED] += 1
    if onset:
        acc[M.ILLNESS_ONSETS] += 1
    if lost_job:
        acc[M.JOB_LOSSES] += 1
    if transfer > 0.0:
        acc[M.TRANSFERS_FEN] += np.int64(round(transfer * size * 100.0))
