"""Household and village rules: what happens in one month, written once.

This module owns the behaviour of households and of the government towards
them, as plain scalar functions compiled by Numba, free of Python objects and
allocation.  The fast engine (:mod:`povsim.engine`) applies
:func:`village_month` to every village in a parallel loop; the Mesa model
applies the same steps to its villages and agents.  Both give identical
trajectories for the same seed.

Order of events in one month (:func:`village_month`, for one village)
--------------------------------------------------------------------
0. The village's draws and incomes, each step a few loops over the village's
   households that LLVM vectorises.  They live in a ``draws`` scratch array,
   one column per household of the village (rows ``DRAW_*``).

   a. :func:`month_draws`: the month's random numbers of every household
      (shocks, income normals, and the self-declaration and hotline draws once
      those channels run).  Each number is still the pure function of (seed,
      stream, household, month, index) of :mod:`povsim.rng`; drawing them
      together only makes them cheaper.
   b. :func:`month_income`: from those draws and the state before the month,
      every household's shocks (illness and job transitions, recoveries
      first), the support it receives (registered, or exited within the
      transition period: transfer, higher medical reimbursement, faster
      re-employment, development support raising earning capacity) and its
      income (persistent AR(1) and transitory components, trend, capacity,
      losses while ill or out of work, out-of-pocket medical bill), recorded
      in its state, except the month's income, which phase 1 records.

1. :func:`household_update`, for each household of the village:

   a-c. this month's income (step 0b) into its 12-month record;
   d. true poverty: 12-month per-capita net income against the year's line;
   e. household-level discovery channels for unregistered households without a
      pending verification, in this priority: self-declaration, sector data
      (arriving after its lag), hotline.

2. :func:`village_events`, once for the village:

   a. the one-time registration by quota (community ranking), in its month;
   b. cadre visits, worst-off first as the cadres perceive them.

3. :func:`household_events`, for each household of the village:

   a. verification of a flag that is due; registration if assessed eligible;
   b. the one-time registration by threshold, in its month;
   c. the look-back, in the village's look-back month;
   d. the annual review: exits of registered households, entries of others.

4. :func:`village_counts`: the month's counts of the village's households (the
   poor, the registered, the ill...), one vectorised loop of integer sums.  A
   burn-in month counts nothing, and skips step 3 until the first rule runs
   (it would do nothing else).

Parameters arrive as one :class:`Params` named tuple built from the validated
config by :func:`make_params`, in the units the month step uses.

How it is compiled
------------------
The functions called for every household are inlined into :func:`village_month`
(``inline="always"``: a call would copy the flattened arguments, about 2.5 KB),
are compiled without Numba's reference counting (``_nrt=False``: they never
allocate, and counting references to shared arrays from every thread cost a
fifth of a month) and with NumPy's error model (no Python ``ZeroDivisionError``
branch, so loops vectorise).  Logarithms and exponentials come from
:mod:`povsim.elementary`.  The arithmetic that every household needs every
month is in the vectorised loops of steps 0 and 4: they index views of the
village's state from 0 (so LLVM sees consecutive addresses rather than
gathering), and are written with selections rather than branches.  The
scalar steps 1 and 3 keep what is rare or writes the state.  See
``docs/performance.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from . import metrics as M
from . import elementary, rng
from .config import Config, parse_month
from .population import (
    CAPACITY_SCALE,
    Households,
    FLAG_CONNECTED,
    FLAG_COVERED,
    FLAG_POOR,
    FLAG_REGISTERED,
    MONTH_ORIGIN,
    NEVER,
    RING_MONTHS,
    ROUTE_CADRE,
    ROUTE_DATA,
    ROUTE_HOTLINE,
    ROUTE_LOOKBACK,
    ROUTE_REGISTRATION,
    ROUTE_REVIEW,
    ROUTE_SELF,
)

__all__ = [
    "Params",
    "make_params",
    "N_DRAWS",
    "month_draws",
    "household_update",
    "village_events",
    "household_events",
    "village_month",
    "lookback_month",
    "registration_quotas",
    "village_poor_counts",
    "quotas_from_counts",
    "NO_MONTH",
    "METHOD_THRESHOLD",
    "METHOD_QUOTA",
]

NO_MONTH = -1  #: a month index meaning "never" (a rule that is disabled)

# Rows of the ``draws`` scratch (N_DRAWS x households of a village): four uniforms per Philox call
DRAW_SHOCKS = 0  #: rows 0-2, STREAM_SHOCKS index 0: illness, chronic, job (its fourth word is unused)
DRAW_INCOME_12M = 3  #: row 3, not a draw: the 12-month income phase 1 computes, which phases 2 and 3 reuse
DRAW_INCOME = 4  #: rows 4-7, STREAM_SHOCKS index 1: normals (persistent, transitory), the bill's two uniforms
DRAW_CHANNELS = 8  #: rows 8-11, STREAM_CHANNELS index 0: self-declaration, hotline, own perception
DRAW_CADRE = 12  #: rows 12-13, STREAM_CADRE index 0: the cadres' perception
DRAW_SCRATCH = 14  #: rows 14-15: month_income's scratch (the bills of the households ill this month)
# Rows 16-22 are not draws: month_income's results, which phase 1 (household_update) records
DRAW_PERSISTENT = 16  #: the new persistent income component, log points
DRAW_EARNINGS = 17  #: per-capita earnings before the losses of illness and job loss, yuan
DRAW_BILL = 18  #: the medical bill of an illness this month, before reimbursement, yuan per household
DRAW_ILLNESS = 19  #: the new illness state
DRAW_UNEMPLOYED = 20  #: the new unemployment flag
DRAW_ONSET = 21  #: 1 if an illness began this month
DRAW_LOST_JOB = 22  #: 1 if a job was lost this month
DRAW_NET_INCOME = 23  #: this month's per-capita net income as it will be stored (whole yuan)
DRAW_MEDICAL = 24  #: out-of-pocket medical spending: this month's, then (once recorded) the 12 months', yuan per household
DRAW_SUPPORTED = 25  #: 1 if the household receives support this month
N_DRAWS = 26
METHOD_THRESHOLD = 0
METHOD_QUOTA = 1
_MONTHS_TO_RETURN = 12  #: a fall into poverty within this many months of exiting is a return


class Params(NamedTuple):
    """Everything the month step needs, in the units it uses (per month, log points, yuan)."""

    # time
    record_start: int  # first month with 12 months of income history; poverty onsets are recorded after it
    report_start: int  # first reported month: the metrics of earlier (burn-in) months are not counted
    quiet_until: int  # first month that is reported or in which a rule runs: phase 3 has nothing to do before it
    # income
    base_month: int
    trend_per_month: float
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
    # one-time registration
    registration_month: int
    registration_method: int
    registration_sd: float
    # look-back
    lookback_start: int
    lookback_end: int
    lookback_sd: float
    # annual review
    review_first: int
    review_sd: float
    review_exit_multiple: float
    review_entry_coverage: float
    # self-declaration
    self_start: int
    self_apply: float
    self_shock_multiplier: float
    self_nonpoor: float
    self_sd: float
    # cadres
    cadre_start: int
    cadre_visits: int
    cadre_sd: float
    cadre_favouritism: float
    cadre_revisit: int
    # sector data
    data_start: int
    data_medical_share: float
    data_medical_yuan: float
    data_income_drop: float
    data_lag: int
    # hotline
    hotline_start: int
    hotline_call: float
    hotline_wait: int
    # verification
    verify_sd: float
    verify_delay: int
    verify_multiple: float
    # support
    transfer: float  # yuan per person per month
    transition_months: int
    development_rate: int  # capacity units per month
    development_max: int  # capacity units
    supported_reimbursement: float
    reemployment_multiplier: float


def _month_or_never(enabled: bool, text: str) -> int:
    return parse_month(text) if enabled else NO_MONTH


def make_params(cfg: Config) -> Params:
    """The month step's parameters from a validated config."""
    inc, ill, job, pol = cfg.income, cfg.illness, cfg.job_loss, cfg.policy
    reg, lb, rv, ch = pol.registration, pol.lookback, pol.review, pol.channels
    sup, ver = pol.support, pol.verification
    report_start = parse_month(cfg.simulation.start)
    first = report_start - 12 * cfg.simulation.burn_in_years
    p = Params(
        record_start=first + 11,
        report_start=report_start,
        quiet_until=report_start,  # set below, from the rules' first months
        base_month=inc.base_year * 12,
        trend_per_month=inc.trend / 12.0,
        persistent_rho=inc.persistent_rho,
        persistent_innovation_sd=inc.persistent_sd * math.sqrt(1.0 - inc.persistent_rho**2),
        transitory_sd=inc.transitory_sd,
        illness_onset=ill.onset_probability,
        chronic_share=ill.chronic_share,
        acute_recovery=1.0 / ill.acute_duration,
        chronic_recovery=ill.chronic_recovery_probability,
        bill_log_median=float(elementary.log(float(ill.bill_median))) if ill.bill_median > 0 else -math.inf,
        bill_sd=ill.bill_sd,
        reimbursement=ill.reimbursement,
        illness_income_loss=ill.income_loss,
        job_loss=job.probability,
        reemployment=1.0 / job.duration,
        job_income_loss=job.income_loss,
        registration_month=_month_or_never(reg.enabled, reg.month),
        registration_method=METHOD_QUOTA if reg.method == "quota" else METHOD_THRESHOLD,
        registration_sd=reg.assessment_sd,
        lookback_start=_month_or_never(lb.enabled, lb.start),
        lookback_end=_month_or_never(lb.enabled, lb.end),
        lookback_sd=lb.assessment_sd,
        review_first=_month_or_never(rv.enabled, rv.first),
        review_sd=rv.assessment_sd,
        review_exit_multiple=rv.exit_multiple,
        review_entry_coverage=rv.entry_coverage,
        self_start=_month_or_never(ch.self.enabled, ch.self.start),
        self_apply=ch.self.apply_probability,
        self_shock_multiplier=ch.self.shock_multiplier,
        self_nonpoor=ch.self.nonpoor_probability,
        self_sd=ch.self.perception_sd,
        cadre_start=_month_or_never(ch.cadre.enabled and ch.cadre.visits_per_village > 0, ch.cadre.start),
        cadre_visits=ch.cadre.visits_per_village,
        cadre_sd=ch.cadre.perception_sd,
        cadre_favouritism=ch.cadre.favouritism,
        cadre_revisit=ch.cadre.revisit_months,
        data_start=_month_or_never(ch.data.enabled, ch.data.start),
        data_medical_share=ch.data.medical_share_threshold,
        data_medical_yuan=ch.data.medical_threshold,
        data_income_drop=ch.data.income_drop_threshold,
        data_lag=ch.data.lag,
        hotline_start=_month_or_never(ch.hotline.enabled, ch.hotline.start),
        hotline_call=ch.hotline.call_probability,
        hotline_wait=ch.hotline.rejected_wait,
        verify_sd=ver.assessment_sd,
        verify_delay=ver.delay,
        verify_multiple=ver.monitoring_multiple,
        transfer=sup.transfer,
        transition_months=sup.transition_months,
        development_rate=int(round(sup.development_rate * CAPACITY_SCALE)),
        development_max=min(int(round(sup.development_max * CAPACITY_SCALE)), 65535),
        supported_reimbursement=sup.reimbursement,
        reemployment_multiplier=sup.reemployment_multiplier,
    )
    rule_months = (p.registration_month, p.lookback_start, p.review_first, p.self_start, p.cadre_start,
                   p.data_start, p.hotline_start)
    return p._replace(quiet_until=min([report_start] + [m for m in rule_months if m != NO_MONTH]))


# --------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always", error_model="numpy")
def is_active(start, month):
    """Whether a rule that starts in ``start`` (NO_MONTH if disabled) runs in ``month``."""
    return start != NO_MONTH and month >= start


@nb.njit(cache=True, inline="always", error_model="numpy")
def to_stored(month):
    """A month index as stored in int16 month fields."""
    return np.int16(month - MONTH_ORIGIN)


@nb.njit(cache=True, inline="always", error_model="numpy")
def months_since(stored, month):
    """Months from a stored month to ``month``; a very large number if ``stored`` is NEVER."""
    if stored == NEVER:
        return 1 << 30
    return month - MONTH_ORIGIN - np.int64(stored)


@nb.njit(cache=True, inline="always", error_model="numpy")
def illness_transition(illness, u_illness, u_chronic, p):
    """New illness state (0 healthy, 1 acute, 2 chronic) and whether it began this month.

    One uniform decides the transition: a healthy household falls ill with
    probability ``illness_onset`` (chronically if ``u_chronic < chronic_share``);
    an ill one recovers with its recovery probability (and cannot fall ill again
    in the same month).  Written as selections, without branches, so that a loop
    of it vectorises.
    """
    healthy = illness == 0
    leave = u_illness < (p.illness_onset if healthy else (p.acute_recovery if illness == 1 else p.chronic_recovery))
    fallen_ill = np.int64(2 if u_chronic < p.chronic_share else 1)
    new = (fallen_ill if healthy else np.int64(0)) if leave else np.int64(illness)
    return new, leave & healthy


@nb.njit(cache=True, inline="always", error_model="numpy")
def job_transition(unemployed, workers, u_job, job_loss, reemployment):
    """New unemployment flag and whether a job was lost this month (households with workers only).

    Written as selections, without branches, so that a loop of it vectorises.
    """
    out_of_work = unemployed != 0
    leave = (workers != 0) & (u_job < (reemployment if out_of_work else job_loss))
    new = np.int64(out_of_work != leave) if workers != 0 else np.int64(0)
    return new, leave & (not out_of_work)


@nb.njit(cache=True, inline="always", error_model="numpy")
def store_yuan(value):
    """A per-capita monthly amount as int16 yuan: rounded half up, clipped to the int16 range."""
    r = math.floor(value + 0.5)
    if r > 32767.0:
        return np.int16(32767)
    if r < -32768.0:
        return np.int16(-32768)
    return np.int16(r)


@nb.njit(cache=True, inline="always", error_model="numpy")
def income_12m(hh, i):
    """Per-capita net income over the last 12 months, yuan (exact sum of the stored months)."""
    total = 0
    for r in range(RING_MONTHS):  # a constant: the sum compiles to a few vector instructions
        total += np.int64(hh.net_income[i, r])
    return np.float64(total)


@nb.njit(cache=True, inline="always", error_model="numpy")
def income_drop(hh, i, month, threshold, total):
    """Whether the last 3 months' income is below (1 - threshold) x the 9 months before, per month.

    ``total`` is the 12 months' sum (:func:`income_12m`).  A threshold of 1 (a
    fall of 100%) never flags.
    """
    if threshold >= 1.0:
        return False
    recent = 0
    for back in range(3):
        recent += np.int64(hh.net_income[i, (month - back) % 12])
    earlier = np.int64(total) - recent
    return (earlier > 0) & (recent / 3.0 < (1.0 - threshold) * earlier / 9.0)


@nb.njit(cache=True, inline="always", error_model="numpy")
def assessed_below(income, line, sd, u1, u2):
    """Whether a noisy assessment of ``income`` (log-normal error of SD ``sd``) falls below ``line``."""
    if income <= 0.0:
        return True
    z, _ = rng.box_muller(u1, u2)
    return income * elementary.exp(sd * z) < line


@nb.njit(cache=True, inline="always", error_model="numpy")
def delay_bin(delay):
    return min(max(delay, 0), M.DELAY_BINS - 1)


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def register(hh, i, month, route, acc):
    """Put household ``i`` on the register by ``route``; count the entry and its detection delay."""
    flags = hh.flags[i]
    hh.flags[i] = flags | FLAG_REGISTERED
    hh.route[i] = route
    hh.pending_route[i] = 0
    hh.pending_month[i] = NEVER
    hh.support_left[i] = 0
    acc[M.ENTERED + route] += 1
    if not flags & FLAG_POOR:
        acc[M.ENTERED_NONPOOR + route] += 1
    elif hh.poor_since[i] == NEVER:
        acc[M.DELAY_UNKNOWN + route] += 1  # poor since before the record began
    else:
        delay = months_since(hh.poor_since[i], month)
        acc[M.DELAY_SUM + route] += delay
        acc[M.DELAY_COUNT + route] += 1
        acc[M.DELAY_HIST + route * M.DELAY_BINS + delay_bin(delay)] += 1


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def flag(hh, i, month, route, lag, p, acc):
    """Send household ``i`` to verification, due after ``lag`` plus the verification delay."""
    hh.pending_route[i] = route
    hh.pending_month[i] = to_stored(month + lag + p.verify_delay)
    acc[M.FLAGGED + route] += 1


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def lookback_month(p, k0, k1, village_key):
    """The month in which the look-back re-checks a village (uniform over the look-back window)."""
    if p.lookback_start == NO_MONTH:
        return NO_MONTH
    u, _, _, _ = rng.draw4(k0, k1, rng.STREAM_REVIEW, village_key, 0, 7)
    span = p.lookback_end - p.lookback_start + 1
    return p.lookback_start + min(int(u * span), span - 1)


# --------------------------------------------------------------------------------------
# Phase 1: one household's shocks, income, poverty and household-level channels
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def village_view(hh, first, end):
    """The state of households ``first .. end-1`` as views: household ``first + j`` at index ``j``.

    The village-level loops index these by their loop counter from 0.  Indexed by
    ``first + j`` instead, which Numba must check for a negative index, LLVM
    cannot see that consecutive households are at consecutive addresses, and
    loads them one by one instead of as vectors.  (Views left unused cost
    nothing: the compiler drops them.)
    """
    return Households(
        hh.size[first:end], hh.workers[first:end], hh.level[first:end], hh.persistent[first:end],
        hh.illness[first:end], hh.unemployed[first:end], hh.flags[first:end], hh.net_income[first:end],
        hh.medical_12m[first:end], hh.capacity[first:end], hh.route[first:end], hh.pending_route[first:end],
        hh.support_left[first:end], hh.pending_month[first:end], hh.poor_since[first:end],
        hh.last_visit[first:end], hh.last_rejected[first:end], hh.exit_month[first:end],
    )


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def month_draws(k0, k1, first_gid, n, month, p, draws):
    """Step 0: the month's draws of households ``first_gid .. first_gid + n - 1`` into ``draws[:, :n]``.

    Column ``j`` holds household ``first_gid + j``'s draws, in the rows
    ``DRAW_*``: two Philox calls of the shocks stream every month (the second's
    first two words turned into the income normals; its last two, the bill's,
    are turned into a normal by :func:`month_income` for the households ill
    this month only), one of the channels
    stream once self-declaration or the hotline runs.  (The cadres' perception,
    rows ``DRAW_CADRE``, is drawn by :func:`village_events`, the step that uses
    it.)  Each loop runs over the households with no branch and no library
    call, so LLVM vectorises it.
    """
    rng.fill_uniforms(k0, k1, rng.STREAM_SHOCKS, first_gid, n, month, 0, draws, DRAW_SHOCKS)
    rng.fill_uniforms(k0, k1, rng.STREAM_SHOCKS, first_gid, n, month, 1, draws, DRAW_INCOME)
    for j in range(n):  # the month's income normals, in place of their uniforms (a vectorised loop)
        z_persistent, z_transitory = rng.box_muller(draws[DRAW_INCOME, j], draws[DRAW_INCOME + 1, j])
        draws[DRAW_INCOME, j] = z_persistent
        draws[DRAW_INCOME + 1, j] = z_transitory
    if is_active(p.self_start, month) or is_active(p.hotline_start, month):
        rng.fill_uniforms(k0, k1, rng.STREAM_CHANNELS, first_gid, n, month, 0, draws, DRAW_CHANNELS)


@nb.njit(cache=True, inline="always", error_model="numpy")
def is_supported(flags, support_left):
    """Whether a household receives support this month: registered, or exited within its transition period."""
    return ((flags & FLAG_REGISTERED) != 0) | (support_left > 0)  # no branch: month_income vectorises


@nb.njit(cache=True, inline="always", error_model="numpy")
def developed_capacity(capacity, supported, p):
    """Earning capacity after this month's development support (capacity units)."""
    grown = min(capacity + p.development_rate, p.development_max)
    return grown if supported and capacity < p.development_max else capacity


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def month_income(hh, first, n, month, p, draws, index):
    """Step 0b: the shocks, support and income of households ``first .. first + n - 1`` this month.

    For column ``j`` (household ``first + j``), from :func:`month_draws`' draws
    and the state before the month: the illness and job transitions, the support
    received, the new persistent component and this month's net income and
    medical spending, in the rows ``DRAW_PERSISTENT`` to ``DRAW_SUPPORTED``.
    The last loop records them in the state (illness, unemployment, persistent
    component, capacity, transition months left, medical spending over 12
    months); phase 1 (:func:`household_update`) records the month's income.
    The loops have no branch LLVM cannot turn into a selection and no library
    call, so they vectorise, exponentials included.  The medical bill (a
    Box-Muller normal and an exponential) is computed for the households ill
    this month only: their columns are listed in ``index`` (scratch, at least
    ``n`` long), their draws gathered into ``DRAW_SCRATCH`` rows, and the bills
    put back.
    """
    v = village_view(hh, first, first + n)
    trend = p.trend_per_month * (month - p.base_month)
    for j in range(n):  # b-c. the support received and the income before this month's shocks
        supported = is_supported(v.flags[j], v.support_left[j])
        draws[DRAW_SUPPORTED, j] = supported
        capacity = developed_capacity(np.int64(v.capacity[j]), supported, p)
        persistent = p.persistent_rho * np.float64(v.persistent[j]) + p.persistent_innovation_sd * draws[DRAW_INCOME, j]
        log_income = (
            np.float64(v.level[j])
            + trend
            + persistent
            + capacity / CAPACITY_SCALE
            + p.transitory_sd * draws[DRAW_INCOME + 1, j]
        )
        draws[DRAW_PERSISTENT, j] = persistent
        draws[DRAW_EARNINGS, j] = elementary.exp(log_income) / 12.0
    for j in range(n):  # a. the month's shocks
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        illness, onset = illness_transition(v.illness[j], draws[DRAW_SHOCKS, j], draws[DRAW_SHOCKS + 1, j], p)
        reemployment = min(1.0, p.reemployment * (p.reemployment_multiplier if supported else 1.0))
        unemployed, lost_job = job_transition(
            v.unemployed[j], v.workers[j], draws[DRAW_SHOCKS + 2, j], p.job_loss, reemployment
        )
        draws[DRAW_ILLNESS, j] = illness
        draws[DRAW_UNEMPLOYED, j] = unemployed
        draws[DRAW_ONSET, j] = onset
        draws[DRAW_LOST_JOB, j] = lost_job
    ill_count = 0
    for j in range(n):  # the columns of the households ill this month, in order (no branch)
        index[ill_count] = j
        ill_count += draws[DRAW_ILLNESS, j] != 0.0
    for k in range(ill_count):  # their bill's uniforms, gathered
        draws[DRAW_SCRATCH, k] = draws[DRAW_INCOME + 2, index[k]]
        draws[DRAW_SCRATCH + 1, k] = draws[DRAW_INCOME + 3, index[k]]
    for k in range(ill_count):  # their bills before reimbursement, yuan per household (a vectorised loop)
        z_bill = rng.box_muller_first(rng.box_muller_radius(draws[DRAW_SCRATCH, k]), draws[DRAW_SCRATCH + 1, k])
        draws[DRAW_SCRATCH, k] = elementary.exp(p.bill_log_median + p.bill_sd * z_bill)
    for k in range(ill_count):  # put back in their columns
        draws[DRAW_BILL, index[k]] = draws[DRAW_SCRATCH, k]
    for j in range(n):  # c. the income after the shocks (per person, this month, yuan)
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        transfer = p.transfer if supported else 0.0
        reimbursement = p.supported_reimbursement if supported else p.reimbursement
        ill = draws[DRAW_ILLNESS, j] != 0.0
        gross = draws[DRAW_EARNINGS, j]
        if ill:
            gross *= 1.0 - p.illness_income_loss
        if draws[DRAW_UNEMPLOYED, j] != 0.0:
            gross *= 1.0 - p.job_income_loss
        medical = draws[DRAW_BILL, j] * (1.0 - reimbursement) if ill else 0.0  # out-of-pocket, whole household
        draws[DRAW_MEDICAL, j] = medical
        draws[DRAW_NET_INCOME, j] = store_yuan(gross + transfer - medical / np.int64(v.size[j]))
    for j in range(n):  # record the shocks, the support and the medical spending in the state
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        v.capacity[j] = developed_capacity(np.int64(v.capacity[j]), supported, p)  # the same if not supported
        v.support_left[j] -= np.uint8(supported & ((v.flags[j] & FLAG_REGISTERED) == 0))  # one transition month used
        v.illness[j] = np.uint8(draws[DRAW_ILLNESS, j])
        v.unemployed[j] = np.uint8(draws[DRAW_UNEMPLOYED, j])
        v.persistent[j] = draws[DRAW_PERSISTENT, j]
        spent = np.float64(v.medical_12m[j]) * (11.0 / 12.0) + draws[DRAW_MEDICAL, j]
        v.medical_12m[j] = spent
        draws[DRAW_MEDICAL, j] = spent  # unrounded, for the sector data


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def household_update(hh, i, month, line, p, acc, draws, j):
    """Phase 1 for household ``i`` in calendar month ``month``; column ``j`` of ``draws`` is its own.

    :func:`month_income` computed and recorded the month's shocks, support and
    income (steps a-c of the order of events) for the village; this records the
    month's income in the household's 12-month record, the poverty it leaves
    (d), and runs the household-level channels (e).
    """
    size = np.int64(hh.size[i])
    flags = hh.flags[i]
    registered = (flags & FLAG_REGISTERED) != 0

    # a-c. shocks, support and income, as month_income computed and recorded them
    illness = draws[DRAW_ILLNESS, j] != 0.0
    unemployed = draws[DRAW_UNEMPLOYED, j] != 0.0
    lost_job = draws[DRAW_LOST_JOB, j] != 0.0
    medical_12m = draws[DRAW_MEDICAL, j]
    hh.net_income[i, month % 12] = np.int16(draws[DRAW_NET_INCOME, j])

    # d. true poverty; onsets are recorded once 12 months of history exist
    income = income_12m(hh, i)
    draws[DRAW_INCOME_12M, j] = income  # kept for phases 2 and 3 (the ring does not change before them)
    poor = income < line
    report = month >= p.report_start  # the metrics of a burn-in month are not counted
    if month <= p.record_start:
        hh.poor_since[i] = NEVER  # poor (if at all) since before the record: onset unknown
    elif poor and not (flags & FLAG_POOR):
        hh.poor_since[i] = to_stored(month)
        if report:
            acc[M.NEWLY_POOR] += 1
            if not registered and months_since(hh.exit_month[i], month) <= _MONTHS_TO_RETURN:
                acc[M.RETURNS] += 1
    flags = (flags | FLAG_POOR) if poor else (flags & ~FLAG_POOR)
    hh.flags[i] = flags

    # e. household-level channels
    if not registered and hh.pending_route[i] == 0:
        self_on = is_active(p.self_start, month)
        hotline_on = is_active(p.hotline_start, month)
        if self_on or hotline_on:
            u_self = draws[DRAW_CHANNELS, j]
            u_hotline = draws[DRAW_CHANNELS + 1, j]
            w0 = draws[DRAW_CHANNELS + 2, j]
            w1 = draws[DRAW_CHANNELS + 3, j]
        else:
            u_self = u_hotline = w0 = w1 = 0.5
        # The household's view of its own income matters only if u_self could lead to an
        # application; the decision is the same as always computing it, at a fraction of the cost.
        shocked = illness or unemployed
        apply_if_poor = min(1.0, p.self_apply * p.self_shock_multiplier) if shocked else p.self_apply
        if self_on and u_self < max(apply_if_poor, p.self_nonpoor):
            perceived_poor = assessed_below(income, line, p.self_sd, w0, w1)
            if u_self < (apply_if_poor if perceived_poor else p.self_nonpoor):
                flag(hh, i, month, ROUTE_SELF, 0, p, acc)
        if hh.pending_route[i] == 0 and is_active(p.data_start, month) and (flags & FLAG_COVERED):
            household_income = income * size
            medical_flag = medical_12m > p.data_medical_yuan or (
                household_income > 0.0 and medical_12m > p.data_medical_share * household_income
            )
            if medical_flag or lost_job or income_drop(hh, i, month, p.data_income_drop, income):
                flag(hh, i, month, ROUTE_DATA, p.data_lag, p, acc)
        if (
            hh.pending_route[i] == 0
            and hotline_on
            and poor
            and months_since(hh.last_rejected[i], month) >= p.hotline_wait
            and u_hotline < p.hotline_call
        ):
            flag(hh, i, month, ROUTE_HOTLINE, 0, p, acc)
    # (this month's counts of the household's state: village_counts, at the end of the month)


# --------------------------------------------------------------------------------------
# Phase 2: village-level events (quota registration, cadre visits)
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def _keep_lowest(values, j, chosen, taken, count):
    """Offer index ``j`` to the ``taken`` lowest kept so far (``chosen``, sorted, at most ``count``).

    A newcomer goes after every kept value it does not beat, so ties keep the
    lower index first when indices are offered in increasing order.  Returns the
    new number kept.
    """
    value = values[j]
    if taken == count and not value < values[chosen[taken - 1]]:
        return taken
    k = taken if taken < count else count - 1  # the slot freed (or the last one, replaced)
    while k > 0 and value < values[chosen[k - 1]]:
        chosen[k] = chosen[k - 1]
        k -= 1
    chosen[k] = j
    return taken + 1 if taken < count else taken


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def _select_lowest(values, candidate, count, chosen):
    """Indices of the ``count`` lowest ``values`` among ``candidate``s, lowest first, ties by index.

    Writes them to ``chosen`` and returns how many were chosen: one pass in index
    order through :func:`_keep_lowest`, allocation-free.
    """
    taken = 0
    if count <= 0:
        return 0
    for j in range(values.shape[0]):
        if candidate[j]:
            taken = _keep_lowest(values, j, chosen, taken, count)
    return taken


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def village_events(hh, first, end, first_id, month, line, p, k0, k1, acc, quota, values, candidate, chosen, draws):
    """Phase 2 for the village of households ``first .. end-1``.

    ``quota`` is the village's registration quota (used in the quota
    registration month); ``values``, ``candidate``, ``chosen`` and ``draws``
    (N_DRAWS rows) are scratch arrays at least as long as the village.
    """
    n = end - first
    # a. one-time registration by quota: the community ranks households by perceived income
    if month == p.registration_month and p.registration_method == METHOD_QUOTA:
        for j in range(n):
            i = first + j
            income = draws[DRAW_INCOME_12M, j]
            u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_ASSESSMENT, first_id + i, month, 0)
            z, _ = rng.box_muller(u0, u1)
            values[j] = income * elementary.exp(p.registration_sd * z) if income > 0.0 else income
            candidate[j] = True
        acc[M.ASSESSED_REGISTRATION] += n
        chosen_n = _select_lowest(values[:n], candidate[:n], min(quota, n), chosen)
        for c in range(chosen_n):
            register(hh, first + chosen[c], month, ROUTE_REGISTRATION, acc)

    # b. cadre visits, worst-off first as perceived; connected households look poorer
    if is_active(p.cadre_start, month):
        log_line = elementary.log(line)
        rng.fill_uniforms(k0, k1, rng.STREAM_CADRE, first_id + first, n, month, 0, draws, DRAW_CADRE)
        # The cadres visit the cadre_visits lowest perceived log incomes among the eligible
        # (ties by index).  Every household's perception is computed in a vectorised loop
        # (+inf if it is not eligible); a scan then keeps the lowest, comparing each with the
        # highest kept once that many are kept.
        v = village_view(hh, first, end)
        for j in range(n):
            log_income = elementary.log(max(draws[DRAW_INCOME_12M, j], 1.0))
            z = rng.box_muller_first(rng.box_muller_radius(draws[DRAW_CADRE, j]), draws[DRAW_CADRE + 1, j])
            perceived = log_income + p.cadre_sd * z
            if (v.flags[j] & FLAG_CONNECTED) != 0:
                perceived -= p.cadre_favouritism
            eligible = (
                ((v.flags[j] & FLAG_REGISTERED) == 0)
                & (v.pending_route[j] == 0)
                & (months_since(v.last_visit[j], month) >= p.cadre_revisit)
            )
            values[j] = perceived if eligible else math.inf
        visits = p.cadre_visits
        visited = 0
        highest_kept = math.inf  # +inf until `visits` are kept: every eligible household enters
        for j in range(n if visits > 0 else 0):
            if values[j] < highest_kept:
                visited = _keep_lowest(values, j, chosen, visited, visits)
                if visited == visits:
                    highest_kept = values[chosen[visits - 1]]
        for c in range(visited):
            j = chosen[c]
            i = first + j
            hh.last_visit[i] = to_stored(month)
            acc[M.CADRE_VISITS] += 1
            if values[j] < log_line:
                flag(hh, i, month, ROUTE_CADRE, 0, p, acc)


# --------------------------------------------------------------------------------------
# Phase 3: one household's verification and registration events
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def household_events(hh, i, gid, month, line, p, k0, k1, acc, village_lookback, draws, j):
    """Phase 3 for household ``i``; ``village_lookback`` is its village's look-back month.

    Column ``j`` of ``draws`` holds what phase 1 left for it (its 12-month income).
    """
    income = draws[DRAW_INCOME_12M, j]
    flags = hh.flags[i]
    poor = (flags & FLAG_POOR) != 0
    registered = (flags & FLAG_REGISTERED) != 0

    # a. verification of a due flag
    route = hh.pending_route[i]
    if route != 0 and months_since(hh.pending_month[i], month) >= 0:
        acc[M.VERIFIED + route] += 1
        if poor:
            acc[M.VERIFIED_POOR + route] += 1
        hh.pending_route[i] = 0
        hh.pending_month[i] = NEVER
        if not registered:
            u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_VERIFY, gid, month, 0)
            if assessed_below(income, line * p.verify_multiple, p.verify_sd, u0, u1):
                register(hh, i, month, route, acc)
                registered = True
            else:
                hh.last_rejected[i] = to_stored(month)

    # b. one-time registration by threshold
    if month == p.registration_month and p.registration_method == METHOD_THRESHOLD:
        acc[M.ASSESSED_REGISTRATION] += 1
        u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_ASSESSMENT, gid, month, 0)
        if not registered and assessed_below(income, line, p.registration_sd, u0, u1):
            register(hh, i, month, ROUTE_REGISTRATION, acc)
            registered = True

    # c. look-back: wrongly registered households removed, missed poor added
    if month == village_lookback:
        acc[M.ASSESSED_LOOKBACK] += 1
        u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_REVIEW, gid, month, 0)
        eligible = assessed_below(income, line, p.lookback_sd, u0, u1)
        if eligible and not registered:
            register(hh, i, month, ROUTE_LOOKBACK, acc)
            registered = True
        elif registered and not eligible:
            hh.flags[i] &= ~FLAG_REGISTERED
            hh.route[i] = 0
            registered = False
            acc[M.REMOVED_LOOKBACK] += 1
            if poor:
                acc[M.WRONG_REMOVED_LOOKBACK] += 1

    # d. annual review: exits (with transition support) and entries
    if p.review_first != NO_MONTH and month >= p.review_first and (month - p.review_first) % 12 == 0:
        u0, u1, u_cover, _ = rng.draw4(k0, k1, rng.STREAM_REVIEW, gid, month, 1)
        if registered:
            acc[M.ASSESSED_REVIEW] += 1
            if not assessed_below(income, line * p.review_exit_multiple, p.review_sd, u0, u1):
                hh.flags[i] &= ~FLAG_REGISTERED
                hh.route[i] = 0
                hh.support_left[i] = min(p.transition_months, 255)
                hh.exit_month[i] = to_stored(month)
                registered = False
                acc[M.EXITED] += 1
                if poor:
                    acc[M.WRONG_EXIT] += 1
        elif u_cover < p.review_entry_coverage:
            acc[M.ASSESSED_REVIEW] += 1
            if assessed_below(income, line, p.review_sd, u0, u1):
                register(hh, i, month, ROUTE_REVIEW, acc)
                registered = True


# --------------------------------------------------------------------------------------
# Step 4: the month's counts of the village's households
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def village_counts(hh, first, n, month, line, p, draws, acc):
    """Step 4: add the month's counts of households ``first .. first + n - 1`` to ``acc``.

    The counts of the households' state at the end of the month (the poor and
    their poverty gap, the supported, the ill, the registered...) and of the
    month's shocks, from the state and from what :func:`month_income` left in
    ``draws``.  One loop of integer sums with no branch, which LLVM vectorises.
    A burn-in month counts nothing (nothing reports it).
    """
    if month < p.report_start:
        return
    v = village_view(hh, first, first + n)
    people = poor_n = poor_people = gap_fx = severity_fx = supported_n = ill_n = unemployed_n = 0
    onsets = job_losses = transfers_fen = catastrophic_n = registered_n = registered_people = 0
    poor_registered = registered_illness = 0
    for j in range(n):
        members = np.int64(v.size[j])
        income = draws[DRAW_INCOME_12M, j]
        poor = (v.flags[j] & FLAG_POOR) != 0
        registered = (v.flags[j] & FLAG_REGISTERED) != 0
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        ill = v.illness[j] != 0
        people += members
        gap = (line - max(income, 0.0)) / line
        poor_n += poor
        poor_people += members if poor else 0
        gap_fx += members * np.int64(round(gap * M.FX_SCALE)) if poor else 0
        severity_fx += members * np.int64(round(gap * gap * M.FX_SCALE)) if poor else 0
        supported_n += supported
        ill_n += ill
        unemployed_n += draws[DRAW_UNEMPLOYED, j] != 0.0
        onsets += draws[DRAW_ONSET, j] != 0.0
        job_losses += draws[DRAW_LOST_JOB, j] != 0.0
        transfer = p.transfer if supported else 0.0
        transfers_fen += np.int64(round(transfer * members * 100.0))
        catastrophic = np.float64(v.medical_12m[j]) > M.CATASTROPHIC_SHARE * max(income * members, 0.0)
        catastrophic_n += catastrophic
        registered_n += registered
        registered_people += members if registered else 0
        poor_registered += registered & poor
        registered_illness += registered & (catastrophic | ill)
    acc[M.HOUSEHOLDS] += n
    acc[M.PEOPLE] += people
    acc[M.POOR] += poor_n
    acc[M.POOR_PEOPLE] += poor_people
    acc[M.GAP_FX] += gap_fx
    acc[M.SEVERITY_FX] += severity_fx
    acc[M.SUPPORTED] += supported_n
    acc[M.ILL] += ill_n
    acc[M.UNEMPLOYED] += unemployed_n
    acc[M.ILLNESS_ONSETS] += onsets
    acc[M.JOB_LOSSES] += job_losses
    acc[M.TRANSFERS_FEN] += transfers_fen
    acc[M.CATASTROPHIC] += catastrophic_n
    acc[M.REGISTERED] += registered_n
    acc[M.REGISTERED_PEOPLE] += registered_people
    acc[M.POOR_REGISTERED] += poor_registered
    acc[M.REGISTERED_ILLNESS] += registered_illness


# --------------------------------------------------------------------------------------
# One village, one month: the order of events
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def village_month(hh, first, end, first_id, month, line, p, k0, k1, acc, quota, values, candidate, chosen, draws):
    """Advance the village of households ``first .. end-1`` through ``month`` (see the module docstring)."""
    month_draws(k0, k1, first_id + first, end - first, month, p, draws)
    month_income(hh, first, end - first, month, p, draws, chosen)
    for i in range(first, end):
        household_update(hh, i, month, line, p, acc, draws, i - first)
    village_events(hh, first, end, first_id, month, line, p, k0, k1, acc, quota, values, candidate, chosen, draws)
    if p.lookback_start != NO_MONTH and p.lookback_start <= month <= p.lookback_end:
        village_lookback = lookback_month(p, k0, k1, first_id + first)
    else:
        village_lookback = NO_MONTH
    if month < p.quiet_until:
        return  # no rule has run and the month is not reported: phase 3 would do nothing
    for i in range(first, end):
        household_events(hh, i, first_id + i, month, line, p, k0, k1, acc, village_lookback, draws, i - first)
    village_counts(hh, first, end - first, month, line, p, draws, acc)


# --------------------------------------------------------------------------------------
# Quotas for the one-time registration
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, error_model="numpy")
def _largest_remainder(total, weights, out):
    """Share the integer ``total`` in proportion to ``weights`` (largest-remainder method, ties by index)."""
    n = weights.shape[0]
    w_sum = 0.0
    for j in range(n):
        w_sum += weights[j]
    if n == 0:
        return
    if w_sum <= 0.0 or total <= 0:
        for j in range(n):
            out[j] = 0
        return
    frac = np.empty(n, np.float64)
    given = 0
    for j in range(n):
        share = total * weights[j] / w_sum
        base = math.floor(share)
        out[j] = np.int64(base)
        frac[j] = share - base
        given += out[j]
    order = np.argsort(-frac, kind="mergesort")
    for r in range(total - given):
        out[order[r % n]] += 1


@nb.njit(cache=True, error_model="numpy")
def village_poor_counts(flags, village_start):
    """Households truly poor at the end of last month (``FLAG_POOR``), per village: the survey behind the quotas.

    A block of a split population counts its own villages; the driver joins the
    blocks' counts in village order and calls :func:`quotas_from_counts` once.
    """
    n_villages = village_start.shape[0] - 1
    poor_v = np.zeros(n_villages, np.int64)
    for v in range(n_villages):
        count = 0
        for i in range(village_start[v], village_start[v + 1]):
            if flags[i] & FLAG_POOR:
                count += 1
        poor_v[v] = count
    return poor_v


@nb.njit(cache=True, error_model="numpy")
def quotas_from_counts(poor_counts, village_start, village_county, n_counties, first_id, scale, county_sd, village_sd, k0, k1):
    """Village quotas from every village's count of poor households (a global step).

    The national quota is ``scale`` x the number of poor households (the national
    survey measures the total well); it is shared among counties in proportion to
    county estimates with log-normal error, and each county's among its villages in
    proportion to noisy village estimates.  A village's quota is capped at its
    size.  County draws are keyed by the county id and village draws by the
    global id of the village's first household (``first_id + village_start[v]``),
    so ids must be global: the whole population's structure, not a block's.
    """
    n_villages = village_county.shape[0]
    poor_v = np.zeros(n_villages, np.float64)
    for v in range(n_villages):
        poor_v[v] = poor_counts[v]
    estimate_c = np.zeros(n_counties, np.float64)
    for v in range(n_villages):
        estimate_c[village_county[v]] += poor_v[v]
    # the national survey measures the national total well; county estimates are noisy
    national = np.int64(round(scale * estimate_c.sum()))
    for c in range(n_counties):
        u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_QUOTA, c, 0, 0)
        z, _ = rng.box_muller(u0, u1)
        estimate_c[c] *= elementary.exp(county_sd * z)
    county_quota = np.zeros(n_counties, np.int64)
    _largest_remainder(national, estimate_c, county_quota)
    quota = np.zeros(n_villages, np.int64)
    v = 0
    while v < n_villages:  # villages of a county are contiguous
        c = village_county[v]
        v_end = v
        while v_end < n_villages and village_county[v_end] == c:
            v_end += 1
        weights = np.empty(v_end - v, np.float64)
        for j in range(v, v_end):
            u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_QUOTA, first_id + village_start[j], 0, 1)
            z, _ = rng.box_muller(u0, u1)
            weights[j - v] = poor_v[j] * elementary.exp(village_sd * z)
        _largest_remainder(county_quota[c], weights, quota[v:v_end])
        for j in range(v, v_end):
            quota[j] = min(quota[j], village_start[j + 1] - village_start[j])
        v = v_end
    return quota


@nb.njit(cache=True, error_model="numpy")
def registration_quotas(flags, village_start, village_county, n_counties, first_id, p, scale, county_sd, village_sd, k0, k1):
    """Village quotas for the one-time registration of a whole population.

    From the survey (last month's true poverty, ``FLAG_POOR``) counted per village
    (:func:`village_poor_counts`), :func:`quotas_from_counts` estimates each
    county's poor, sets the national quota and shares it out.  A population split
    into blocks runs the two halves separately: counts per block, quotas once.
    """
    poor_counts = village_poor_counts(flags, village_start)
    return quotas_from_counts(
        poor_counts, village_start, village_county, n_counties, first_id, scale, county_sd, village_sd, k0, k1
    )
