"""Income and shocks: every household's month - its draws, shocks, support received and income.

Per-capita log income is a fixed level (county mean plus the household's own
deviation, drawn when the population is built), a trend, a persistent AR(1)
component, an annual transitory component (one normal per household and calendar
year, drawn each January and held for the year's 12 months), a monthly transitory
shock, and the earning capacity gained from development support.  Both transitory
terms are mean-one in levels (``sd x z - sd^2 / 2`` in logs), so they spread incomes
without raising their mean.  Illness (:mod:`.illness`) and job loss (:mod:`.job_loss`) cut earnings
while they last; an illness also brings a medical bill, part reimbursed.  Support
(:mod:`.support`) adds a transfer, raises reimbursement and speeds re-employment.

The month of a village is computed in a few loops over its households that LLVM
vectorises (:func:`draw`, :func:`household_month`): they read views of the village's state
indexed from 0 (indexed by ``first + j`` instead, which Numba must check for a
negative index, LLVM cannot see that consecutive households are at consecutive
addresses), and are written with selections rather than branches.  Their results go
to the rows ``DRAW_*`` of the village's ``draws`` scratch (one column per household),
where the later steps of the month read them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import elementary, rng
from ..schema import SRC_ASSUMPTION, SRC_FITTED, Section, param
from . import illness, job_loss, support
from .base import Component, Draw, State, store_yuan

STREAM_SHOCKS = 3  #: monthly income, illness and job-loss draws
ANNUAL_Z_SCALE = 4096.0  #: ``annual_z`` is stored in 1/4096 standard deviations (int16: up to +-8 SD)

# Rows of the village's ``draws`` scratch (rows x households of the village).  The random
# rows hold four uniforms per Philox call; the others hold what the month computed.
DRAW_INCOME = 0  #: rows 0-1, shocks stream index 0, words 0-1: the income normals (persistent, transitory)
DRAW_SHOCKS = 2  #: rows 2-3, shocks stream index 0, words 2-3: illness (onset or recovery), job (loss or re-employment)
DRAW_INCOME_12M = 4  #: row 4, not a draw: the 12-month income the poverty step computes, which later steps reuse
# rows 5-7 are not used
DRAW_CHANNELS = 8  #: rows 8-11, channels stream index 0 (:mod:`.self_declaration`)
DRAW_CADRE = 12  #: rows 12-13, cadre stream index 0 (:mod:`.cadre`)
DRAW_SCRATCH = 14  #: rows 14-15: scratch of :func:`household_month` (the bills of the households ill this month);
#: in January rows 14-17 first hold the annual component's uniforms (:func:`draw`), before the month overwrites them
DRAW_PERSISTENT = 16  #: the new persistent income component, log points
DRAW_EARNINGS = 17  #: per-capita earnings before the losses of illness and job loss, yuan
DRAW_BILL = 18  #: the medical bill of an illness this month, before reimbursement, yuan per household
DRAW_ILLNESS = 19  #: the new illness state
DRAW_UNEMPLOYED = 20  #: the new unemployment flag
DRAW_ONSET = 21  #: 1 if an illness began this month
DRAW_LOST_JOB = 22  #: 1 if a job was lost this month
DRAW_NET_INCOME = 23  #: this month's per-capita income as the poverty record stores it (whole yuan)
DRAW_MEDICAL = 24  #: out-of-pocket medical spending: this month's, then (once recorded) the 12 months', yuan per household
DRAW_SUPPORTED = 25  #: 1 if the household receives support this month
N_DRAWS = 26


class IncomeConfig(Section):
    """Per-capita income: fixed level, trend, persistent AR(1), annual and monthly transitory components."""

    median: float = param(
        8188.0,
        "yuan per person per year",
        SRC_FITTED + ": the NBS headcounts 2013-2019 and the poor areas' income; NBS rural per-capita net income "
        "2013: mean 8,896 yuan",
        "median fixed income level in the base year",
        gt=0.0,
        le=1e7,
    )
    base_year: int = param(2013, "year", "first reported year", "year in which the income level is `median`", ge=1900, le=2200)
    trend: float = param(
        0.09636,
        "log points per year",
        SRC_FITTED + ": the NBS headcounts 2013-2019 and the poor areas' income growth; rural per-capita "
        "disposable income grew about 9% a year (nominal) 2013-2019 (NBS)",
        "growth of every household's income level",
        ge=-0.5,
        le=0.5,
    )
    province_sd: float = param(0.20, "log points", SRC_ASSUMPTION, "SD of the province effect on log income", ge=0.0, le=5.0)
    county_sd: float = param(0.25, "log points", SRC_ASSUMPTION, "SD of the county effect on log income", ge=0.0, le=5.0)
    household_sd: float = param(
        0.45, "log points", SRC_ASSUMPTION, "SD of the household's fixed deviation from its county mean", ge=0.0, le=5.0
    )
    labour_elasticity: float = param(
        0.01891,
        "elasticity",
        SRC_FITTED + ": the registered households' average size (weakly identified)",
        "effect of log(workers per member / expected share) on the income level",
        ge=0.0,
        le=3.0,
    )
    persistent_rho: float = param(
        0.98,
        "per month",
        "annual autocorrelation 0.78 of the persistent component, in the range of rural panel estimates",
        "AR(1) coefficient of the persistent log-income component",
        ge=0.0,
        lt=1.0,
    )
    persistent_sd: float = param(
        0.4967,
        "log points",
        SRC_FITTED + ": the headcounts and the one-year exit rate (weakly identified: traded off against the "
        "median, correlation 0.98); Jalan and Ravallion (1998): about half of squared poverty gap is transient",
        "stationary SD of the persistent component",
        ge=0.0,
        le=5.0,
    )
    transitory_sd: float = param(
        0.30,
        "log points",
        SRC_ASSUMPTION + "; mean-one: the log shock is `transitory_sd z - transitory_sd^2/2`, so it leaves the "
        "mean income unchanged (exp(sd z) alone would raise it by exp(sd^2/2), 4.6% at 0.30)",
        "SD of the monthly i.i.d. transitory log-income shock (mean one in levels)",
        ge=0.0,
        le=5.0,
    )
    annual_sd: float = param(
        0.1651,
        "log points",
        SRC_FITTED + ": the one-year exit rate from poverty (CFPS; weakly identified); mean-one (`annual_sd z - "
        "annual_sd^2/2` in logs); calendar-year incomes, poverty flows and the exit rate depend on it",
        "SD of the annual transitory log-income component: one normal per household and calendar year, the same in "
        "the year's 12 months (mean one in levels)",
        ge=0.0,
        le=5.0,
    )


class Params(NamedTuple):
    """Income in the kernels' units (per month, log points)."""

    base_month: int  #: January of ``base_year``, a month index
    trend_per_month: float  #: ``trend`` / 12
    persistent_rho: float
    persistent_innovation_sd: float  #: ``persistent_sd`` x sqrt(1 - rho^2)
    transitory_sd: float
    annual_sd_fx: float  #: ``annual_sd`` / ANNUAL_Z_SCALE: log points per unit of the stored ``annual_z``
    mean_shift: float  #: ``-(transitory_sd^2 + annual_sd^2) / 2``: the two transitory terms' mean-one correction


def params(cfg) -> Params:
    inc = cfg.income
    return Params(
        base_month=inc.base_year * 12,
        trend_per_month=inc.trend / 12.0,
        persistent_rho=inc.persistent_rho,
        persistent_innovation_sd=inc.persistent_sd * math.sqrt(1.0 - inc.persistent_rho**2),
        transitory_sd=inc.transitory_sd,
        annual_sd_fx=inc.annual_sd / ANNUAL_Z_SCALE,
        mean_shift=-(inc.transitory_sd**2 + inc.annual_sd**2) / 2.0,
    )


COMPONENT = Component(
    name="income",
    doc="per-capita income: fixed level, trend, persistent AR(1), annual and monthly transitory components; the month's "
        "shocks and support",
    path="income",
    section=IncomeConfig,
    params=params,
    state=(
        State("level", "float32", "fixed log income level (county mean + own deviation)"),
        State("persistent", "float32", "persistent AR(1) log-income component"),
        State("annual_z", "int16", "the calendar year's annual income normal, in 1/4096 SD (drawn each January)"),
    ),
    streams={"shocks": STREAM_SHOCKS},
    draws=(
        Draw(STREAM_SHOCKS, 0, "household", 4, "each",
             "income normals: persistent and transitory (words 0-1); illness onset or recovery and an onset's "
             "chronic share (word 2); job loss or re-employment (word 3)"),
        Draw(STREAM_SHOCKS, 1, "household", 2, "each",
             "the medical bill's normal (words 0-1), for the households ill this month only"),
        Draw(STREAM_SHOCKS, 2, "household", 2, "each",
             "the annual income component's normal (words 0-1), in January only (the first simulated month is one)"),
    ),
)


# --------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def draw(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Step 0a: the month's shocks draws and income normals of village ``v`` into ``s.draws``.

    Column ``j`` holds household ``first + j``'s draws: one Philox call of the shocks
    stream every month, its first two words turned into the income normals, its last
    two the illness and job transitions' uniforms (the medical bill's normal is drawn
    by :func:`household_month` for the households ill this month only).  In January a
    third call (draw index 2) gives each household its annual normal for the calendar
    year, stored in ``annual_z``; other months draw nothing for it.  Each loop runs over
    the households with no branch and no library call, so LLVM vectorises it.
    """
    draws = s.draws
    first = vs.start[v]
    n = vs.start[v + 1] - first
    first_gid = first_id + first
    rng.fill_uniforms(k0, k1, STREAM_SHOCKS, first_gid, n, month, 0, draws, DRAW_INCOME)
    for j in range(n):  # the month's income normals, in place of their uniforms (a vectorised loop)
        z_persistent, z_transitory = rng.box_muller(draws[DRAW_INCOME, j], draws[DRAW_INCOME + 1, j])
        draws[DRAW_INCOME, j] = z_persistent
        draws[DRAW_INCOME + 1, j] = z_transitory
    if month % 12 == 0:  # January: the calendar year's annual normals
        rng.fill_uniforms(k0, k1, STREAM_SHOCKS, first_gid, n, month, 2, draws, DRAW_SCRATCH)
        annual_z = hh.annual_z[first : first + n]
        for j in range(n):  # a vectorised loop
            z = rng.box_muller_first(rng.box_muller_radius(draws[DRAW_SCRATCH, j]), draws[DRAW_SCRATCH + 1, j])
            annual_z[j] = to_annual_z(z)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def to_annual_z(z):
    """A standard normal as stored in ``annual_z``: 1/4096 SD, rounded half up, clipped to the int16 range."""
    return np.int16(min(max(math.floor(z * ANNUAL_Z_SCALE + 0.5), -32768.0), 32767.0))


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, error_model="numpy")
def household_month(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Step 0b: the shocks, support and income of village ``v``'s households this month.

    For column ``j`` (household ``first + j``), from :func:`draw`'s draws and the
    state before the month: the support received (the support schedules' values for the
    month are looked up once, before the loops), the illness and job transitions,
    the new persistent component and this month's net income and medical spending, in
    the rows ``DRAW_PERSISTENT`` to ``DRAW_SUPPORTED``.  The last loop records them in
    the state (illness, unemployment, persistent component, capacity, medical
    spending over 12 months); the poverty step records the
    month's income (earnings and transfers; less the medical spending per person
    only under ``poverty.deduct_medical``).  The medical bill (a Box-Muller normal and an exponential) is
    computed for the households ill this month only: their columns are listed in
    ``s.chosen``, their bills' draws (draw index 1) made and the bills computed in one
    vectorised loop into the ``DRAW_SCRATCH`` row, and put back.
    """
    draws = s.draws
    index = s.chosen
    first = vs.start[v]
    end = vs.start[v + 1]
    n = end - first
    pi, pl, pj, ps = p.income, p.illness, p.job_loss, p.support
    deduct_medical = p.poverty.deduct_medical
    size = hh.size[first:end]
    workers = hh.workers[first:end]
    level = hh.level[first:end]
    persistent_state = hh.persistent[first:end]
    illness_state = hh.illness[first:end]
    unemployed_state = hh.unemployed[first:end]
    flags = hh.flags[first:end]
    medical_12m = hh.medical_12m[first:end]
    capacity_state = hh.capacity[first:end]
    exit_month = hh.exit_month[first:end]
    annual_z = hh.annual_z[first:end]
    trend = pi.trend_per_month * (month - pi.base_month)
    year = support.year_index(ps, month)  # the support schedules' values this month, once for the village
    transfer_now = ps.transfer[year]
    reimbursement_now = ps.reimbursement[year]
    development_now = ps.development_rate[year]
    for j in range(n):  # the support received and the income before this month's shocks
        supported = support.is_supported(flags[j], exit_month[j], month, ps)
        draws[DRAW_SUPPORTED, j] = supported
        capacity = support.developed_capacity(np.int64(capacity_state[j]), supported, development_now, ps)
        persistent = pi.persistent_rho * np.float64(persistent_state[j]) + pi.persistent_innovation_sd * draws[DRAW_INCOME, j]
        log_income = (
            np.float64(level[j])
            + trend
            + persistent
            + capacity / support.CAPACITY_SCALE
            + pi.transitory_sd * draws[DRAW_INCOME + 1, j]
            + pi.annual_sd_fx * np.float64(annual_z[j])
            + pi.mean_shift
        )
        draws[DRAW_PERSISTENT, j] = persistent
        draws[DRAW_EARNINGS, j] = elementary.exp(log_income) / 12.0
    for j in range(n):  # the month's shocks
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        ill, onset = illness.transition(illness_state[j], draws[DRAW_SHOCKS, j], pl)
        reemployment = min(1.0, pj.reemployment * (ps.reemployment_multiplier if supported else 1.0))
        unemployed, lost_job = job_loss.transition(
            unemployed_state[j], workers[j], draws[DRAW_SHOCKS + 1, j], pj.probability, reemployment
        )
        draws[DRAW_ILLNESS, j] = ill
        draws[DRAW_UNEMPLOYED, j] = unemployed
        draws[DRAW_ONSET, j] = onset
        draws[DRAW_LOST_JOB, j] = lost_job
    ill_count = 0
    for j in range(n):  # the columns of the households ill this month, in order (no branch)
        index[ill_count] = j
        ill_count += draws[DRAW_ILLNESS, j] != 0.0
    first_gid = first_id + first
    for k in range(ill_count):  # their bills before reimbursement, yuan per household (a vectorised loop)
        u_radius, u_angle, _, _ = rng.draw4(k0, k1, STREAM_SHOCKS, first_gid + index[k], month, 1)
        z_bill = rng.box_muller_first(rng.box_muller_radius(u_radius), u_angle)
        draws[DRAW_SCRATCH, k] = elementary.exp(pl.bill_log_median + pl.bill_sd * z_bill)
    for k in range(ill_count):  # put back in their columns
        draws[DRAW_BILL, index[k]] = draws[DRAW_SCRATCH, k]
    for j in range(n):  # the income after the shocks (per person, this month, yuan)
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        transfer = transfer_now if supported else 0.0
        reimbursement = reimbursement_now if supported else pl.reimbursement
        ill = draws[DRAW_ILLNESS, j] != 0.0
        gross = draws[DRAW_EARNINGS, j]
        if ill:
            gross *= 1.0 - pl.income_loss
        if draws[DRAW_UNEMPLOYED, j] != 0.0:
            gross *= 1.0 - pj.income_loss
        medical = draws[DRAW_BILL, j] * (1.0 - reimbursement) if ill else 0.0  # out-of-pocket, whole household
        draws[DRAW_MEDICAL, j] = medical
        deducted = medical / np.int64(size[j]) if deduct_medical else 0.0  # per person
        draws[DRAW_NET_INCOME, j] = store_yuan(gross + transfer - deducted)
    for j in range(n):  # record the shocks, the support and the medical spending in the state
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        capacity_state[j] = support.developed_capacity(np.int64(capacity_state[j]), supported, development_now, ps)
        illness_state[j] = np.uint8(draws[DRAW_ILLNESS, j])
        unemployed_state[j] = np.uint8(draws[DRAW_UNEMPLOYED, j])
        persistent_state[j] = draws[DRAW_PERSISTENT, j]
        spent = np.float64(medical_12m[j]) * (11.0 / 12.0) + draws[DRAW_MEDICAL, j]
        medical_12m[j] = spent
        draws[DRAW_MEDICAL, j] = spent  # unrounded, for the sector data
