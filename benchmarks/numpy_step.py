"""A plain vectorised NumPy version of povsim's month step: the benchmark's baseline.

This module re-implements, with whole-array NumPy operations and no Numba,

* Philox4x32-10 (:func:`philox4x32_10`), on uint32 arrays with uint64 products,
  keyed exactly as :func:`povsim.rng.draw4`: counter = (household id, month,
  stream, draw index), key = :func:`povsim.rng.split_seed` of the seed;
* one month of povsim's rules (:func:`povsim.components.schedule.village_month`) for a whole
  population under a **one-time threshold registration** and no other rule
  (:func:`month_step`): illness and job transitions, support (of registered or
  monitored households, and of exited ones while ``max(kept_until, exit month) +
  transition_months`` lasts) with the transfer, reimbursement and development rate of
  the month's calendar year (schedules by year), faster re-employment, development
  capacity, AR(1) persistent income, the annual transitory component (its normal
  drawn each January into ``annual_z``) and the monthly transitory shock, both
  mean-one (``sd z - sd^2/2`` in logs), trend, losses, medical bill,
  the int16 12-month ring of per-capita income (before medical spending, or net of
  it under ``poverty.deduct_medical``), the 12-month medical spending;
* true poverty under either concept (``poverty.concept``: assessed each December and
  held for the year, or every month over the last 12 months; nothing assessed
  before ``record_start``), with or without ``poverty.consumption_test``: the
  poverty flag, the date a household fell poor (never set at ``record_start``), the
  uint16 poverty gap ratio at the last assessment, the December flags and the
  year-to-year flows counted in December, the monthly crossings;
* the survey (every household's registration basis, its income over the line in the
  survey month) and the registration on it, by the office's assessment with the
  household's persistent component (:mod:`povsim.components.assessment`): entries,
  people, first registrations and re-registrations after an exit, entrants not poor,
  detection delays; catastrophic health spending, and
  every metric count (the int64 slots of :mod:`povsim.metrics`), among them the gap
  sums from the stored gap and, in December, people, registered and supported people
  by income bin (:func:`income_bin`).

:func:`check_params` refuses parameters with any other rule switched on.

It works on the engine's own state (a :class:`povsim.population.Households`)
and parameters (:func:`povsim.components.make_params`), in place, so the two can be
run side by side from the same population and compared.  The population is
processed in chunks of ``chunk`` households, so temporaries stay bounded
whatever the population size: at peak about 200 bytes per household of a chunk in
a burn-in month and up to about 300 in the registration month or a reported
December (some 50 to 75 MiB for the default 2**18).

Arithmetic follows the Numba code operation by operation (same order, float64
throughout, half-to-even rounding as Numba's ``round``), so results are the same
up to the last bit of NumPy's exp/log/sin/cos against :mod:`povsim.elementary`;
such one-ulp differences can, rarely, move a stored yuan amount and with it a
household's poverty status (or, under the consumption test, its consumption across
the line or the margin).  The income bins are the same kind of case: NumPy's log
differs from :func:`povsim.elementary.log` by one ulp for about 1% of arguments, so
a quotient within an ulp of a bin edge could fall on either side of it.  For the
incomes that occur (the 12-month income is a whole number of yuan) and the default
lines no such case exists: every whole-yuan income the int16 record can sum to
falls in the same bin under every default line (checked exhaustively by the test
suite); under another line a one-ulp difference could, in principle, move a
household into the neighbouring bin.  One known divergence: a non-finite net
income (impossible with sane parameters) is stored as 0 by Numba for NaN, while
here it gives NumPy's undefined NaN-to-int16 cast.

There is no random state anywhere: every draw is a pure function of the counter
and key, as in :mod:`povsim.rng`.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from povsim import metrics as M
from povsim.components import Households, Params, component, rule_starts
from povsim.components.base import (
    FLAG_EVER_REGISTERED, FLAG_MONITORED, FLAG_POOR, FLAG_POOR_DECEMBER, FLAG_POOR_EARLIER, FLAG_REGISTERED,
    MONTH_ORIGIN, NEVER, NO_MONTH,
)
from povsim.components.census import INCOME_BINS, LOG_STEP, RATIO_LOW
from povsim.components.income import ANNUAL_Z_SCALE, STREAM_SHOCKS
from povsim.components.poverty import MONTHS_TO_RETURN
from povsim.components.assessment import STREAM_OFFICE
from povsim.components.registration import BASIS_SCALE, METHOD_THRESHOLD, STREAM_ASSESSMENT
from povsim.components.registration import ROUTE_CODE as ROUTE_REGISTRATION
from povsim.components.support import CAPACITY_SCALE


def check_params(p: Params) -> None:
    """The NumPy step implements the one-time threshold registration only: refuse anything else.

    Every rule the components declare (:func:`povsim.components.rule_starts`) must be off,
    but the registration, which must be by threshold.
    """
    on = [
        component(name).path
        for name, start in rule_starts(p).items()
        if start != NO_MONTH and name != "registration"
    ]
    if p.registration.month != NO_MONTH and p.registration.method != METHOD_THRESHOLD:
        on.insert(0, "policy.registration.method")
    if on:
        raise ValueError(f"the NumPy step runs the one-time threshold registration only; switch off: {', '.join(on)}")

__all__ = ["philox4x32_10", "uniform", "income_bin", "month_step", "check_params", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 2**18  #: households per chunk

# --- Philox4x32-10 constants (Random123), as in povsim.rng -----------------------------
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = 0xFFFFFFFF
_SHIFT32 = np.uint64(32)
_TWO_POW_M32 = 2.0**-32

#: draw indices 0 and 1 as a column, so one Philox call broadcasts to shape (2, households)


_LITTLE_ENDIAN = sys.byteorder == "little"


def _mulhilo(c: np.ndarray, m: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32-bit words of the 64-bit product ``m * c`` (``c`` uint32).

    On a little-endian machine the words are strided uint32 views of the
    product (low word first), which saves a shift and two casts per round and
    about halves the cost of Philox; otherwise they are computed by shift and cast.
    """
    p = np.multiply(c, m, dtype=np.uint64)
    if _LITTLE_ENDIAN and p.ndim > 0:
        words = p.view(np.uint32)
        return words[..., 1::2], words[..., 0::2]
    return (p >> _SHIFT32).astype(np.uint32), p.astype(np.uint32)


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32-10 of counter words ``(c0, c1, c2, c3)`` and key ``(k0, k1)``, element-wise.

    The counter words are uint32 scalars or arrays and broadcast against each
    other (a scalar word stays a scalar through the first round, which saves
    work); the key words are Python ints.  Returns the four output words as
    uint32 arrays of the broadcast shape.  ``philox4x32_10(0, 0, 0, 0, 0, 0)``
    gives ``(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)``.
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in (c0, c1, c2, c3))
    k0 = int(k0) & _MASK32
    k1 = int(k1) & _MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint32(k0), lo1, hi0 ^ c3 ^ np.uint32(k1), lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    return c0, c1, c2, c3


def uniform(word: np.ndarray) -> np.ndarray:
    """uint32 words as float64 uniforms on (0, 1), as :func:`povsim.rng.uniform`."""
    u = word.astype(np.float64)
    u += 0.5
    u *= _TWO_POW_M32
    return u


def _box_muller_cos(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """The first normal of :func:`povsim.rng.box_muller`: ``sqrt(-2 log u1) cos(2 pi u2)``."""
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def _box_muller(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both normals of :func:`povsim.rng.box_muller`."""
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * math.pi * u2
    return r * np.cos(theta), r * np.sin(theta)


def income_bin(income: np.ndarray, line: float) -> np.ndarray:
    """The bin of each per-capita income relative to the line, as :func:`povsim.components.census.income_bin`.

    NumPy's log stands for :func:`povsim.elementary.log` (see the module docstring
    on where the two may differ).
    """
    ratio = income / line
    b = np.zeros(ratio.shape, np.int64)
    above = ratio >= RATIO_LOW
    steps = np.log(ratio[above] / RATIO_LOW) / LOG_STEP
    b[above] = np.minimum(1 + steps.astype(np.int64), INCOME_BINS - 1)
    return b


def _year_index(p: Params, month: int) -> int:
    """The entry of the support schedules for ``month``, as :func:`povsim.components.support.year_index`."""
    return min(max(month // 12 - p.support.first_year, 0), p.support.transfer.shape[0] - 1)


def _supported(hh: Households, month: int, p: Params) -> np.ndarray:
    """:func:`povsim.components.support.is_supported` element-wise, from the state before the month."""
    exited = hh.exit_month.astype(np.int64)
    kept = (exited != NEVER) & (month - MONTH_ORIGIN <= np.maximum(p.support.kept_until, exited) + p.support.transition_months)
    return ((hh.flags & (FLAG_REGISTERED | FLAG_MONITORED)) != 0) | kept


def _assess(hh: Households, income: np.ndarray, month: int, line: float, supported: np.ndarray,
            p: Params) -> np.ndarray:
    """The poverty test of :func:`povsim.components.poverty.is_poor`, element-wise.

    With the consumption test, consumption is the permanent income of
    :func:`povsim.components.poverty.consumption`, from the state as the month
    has already updated it (persistent component and capacity).
    """
    if not p.poverty.consumption_test:
        return income < line
    log_income = hh.level.astype(np.float64)
    log_income += p.income.trend_per_month * (month - p.income.base_month)
    log_income += hh.persistent.astype(np.float64)
    log_income += hh.capacity.astype(np.float64) / CAPACITY_SCALE
    with np.errstate(over="ignore"):
        spent = np.exp(log_income)
    spent += np.where(supported, 12.0 * p.support.transfer[_year_index(p, month)], 0.0)
    high = p.poverty.consumption_margin * line
    return ((income < line) & (spent < high)) | ((spent < line) & (income < high))


def _chunk_month(hh: Households, gid: np.ndarray, month: int, line: float, p: Params, k0: int, k1: int,
                 acc: np.ndarray, poor_area: np.ndarray | None = None) -> None:
    """One month for the households in ``hh`` (views of one chunk), global ids ``gid``; adds to ``acc``.

    ``poor_area``: 1 for each household of a poor-area village (the census's ``poor_area`` village
    state, one entry per household); None counts no poor-area statistics."""
    size_f = hh.size.astype(np.float64)
    size = hh.size.astype(np.int64)
    flags_old = hh.flags.copy()
    flags = flags_old.copy()  # the flags as the month's phases change them, written back at the end
    ill_old = hh.illness
    registered_old = (flags_old & FLAG_REGISTERED) != 0
    supported = _supported(hh, month, p)
    year = _year_index(p, month)  # the support schedules' values this month
    transfer_now = p.support.transfer[year]
    reimbursement_now = p.support.reimbursement[year]
    development_now = p.support.development_rate[year]
    report = month >= p.time.report_start  # the metrics of a burn-in month are not counted
    december = month % 12 == 11

    # a. shocks: draw index 0, the income normals (words 0-1), illness and job (words 2-3)
    w0, w1, w2, w3 = philox4x32_10(gid, month, STREAM_SHOCKS, 0, k0, k1)
    z_persistent, z_transitory = _box_muller(uniform(w0), uniform(w1))
    u_illness, u_job = uniform(w2), uniform(w3)
    if month % 12 == 0:  # January: the calendar year's annual normals (draw index 2), in 1/4096 SD
        a0, a1, _, _ = philox4x32_10(gid, month, STREAM_SHOCKS, 2, k0, k1)
        z_annual = np.floor(_box_muller_cos(uniform(a0), uniform(a1)) * ANNUAL_Z_SCALE + 0.5)
        hh.annual_z[:] = np.clip(z_annual, -32768.0, 32767.0).astype(np.int16)

    healthy = ill_old == 0
    acute = ill_old == 1
    onset = healthy & (u_illness < p.illness.onset_probability)
    stays_ill = u_illness >= np.where(acute, p.illness.acute_recovery, p.illness.chronic_recovery_probability)
    illness = np.where(
        healthy,
        np.where(onset, np.where(u_illness < p.illness.onset_probability * p.illness.chronic_share, 2, 1), 0),
        np.where(stays_ill, np.where(acute, 1, 2), 0),
    ).astype(np.uint8)
    ill = illness != 0

    has_workers = hh.workers != 0
    was_unemployed = hh.unemployed != 0
    reemployment = np.where(supported, min(1.0, p.job_loss.reemployment * p.support.reemployment_multiplier), min(1.0, p.job_loss.reemployment))
    lost_job = has_workers & ~was_unemployed & (u_job < p.job_loss.probability)
    unemployed = lost_job | (has_workers & was_unemployed & (u_job >= reemployment))

    # b. support: development capacity, transfer, reimbursement
    capacity = hh.capacity.astype(np.int64)
    grow = supported & (capacity < p.support.development_max)
    capacity[grow] = np.minimum(capacity[grow] + development_now, p.support.development_max)
    hh.capacity[:] = capacity

    # c. income (per person, this month, yuan), in the Numba code's order of operations
    persistent = p.income.persistent_rho * hh.persistent.astype(np.float64) + p.income.persistent_innovation_sd * z_persistent
    log_income = hh.level.astype(np.float64)
    log_income += p.income.trend_per_month * (month - p.income.base_month)
    log_income += persistent
    log_income += capacity / CAPACITY_SCALE
    log_income += p.income.transitory_sd * z_transitory
    log_income += p.income.annual_sd_fx * hh.annual_z.astype(np.float64)
    log_income += p.income.mean_shift
    with np.errstate(over="ignore"):
        gross = np.exp(log_income)
    gross /= 12.0
    np.multiply(gross, 1.0 - p.illness.income_loss, out=gross, where=ill)
    np.multiply(gross, 1.0 - p.job_loss.income_loss, out=gross, where=unemployed)
    medical = np.zeros(gross.shape[0])
    sick = np.flatnonzero(ill)
    if sick.size:
        b0, b1, _, _ = philox4x32_10(gid[sick], month, STREAM_SHOCKS, 1, k0, k1)  # draw index 1, the ill only
        z_bill = _box_muller_cos(uniform(b0), uniform(b1))
        with np.errstate(over="ignore"):
            bill = np.exp(p.illness.bill_log_median + p.illness.bill_sd * z_bill)
        medical[sick] = bill * (1.0 - np.where(supported[sick], reimbursement_now, p.illness.reimbursement))
    # the record's income = (gross + transfer) - medical / size, the Numba order; the medical
    # spending is deducted only under poverty.deduct_medical (x - 0.0 is x, so the others need nothing)
    net = gross + np.where(supported, transfer_now, 0.0)
    if sick.size and p.poverty.deduct_medical:
        net[sick] -= medical[sick] / size_f[sick]
    stored = np.floor(net + 0.5)
    np.clip(stored, -32768.0, 32767.0, out=stored)
    ring = hh.net_income
    ring[:, month % ring.shape[1]] = stored.astype(np.int16)
    hh.medical_12m[:] = hh.medical_12m.astype(np.float64) * (11.0 / 12.0) + medical
    hh.illness[:] = illness
    hh.unemployed[:] = unemployed
    hh.persistent[:] = persistent  # rounded to float32, as the Numba store (the consumption test reads it)

    # d. true poverty: exact integer sum of the 12 stored months, assessed from record_start on,
    #    in December (calendar year) or every month (rolling 12 months); the status is held between
    income = ring.sum(axis=1, dtype=np.int64).astype(np.float64)
    if month >= p.time.record_start and (december or not p.poverty.calendar_year):
        poor_now = _assess(hh, income, month, line, supported, p)
        if month == p.time.record_start:
            hh.poor_since[:] = NEVER  # poor (if at all) since before the record: onset unknown
        else:
            newly_poor = poor_now & ((flags_old & FLAG_POOR) == 0)
            hh.poor_since[newly_poor] = month - MONTH_ORIGIN
            if report:
                exit_month = hh.exit_month.astype(np.int64)
                exited_recently = (exit_month != NEVER) & (month - MONTH_ORIGIN - exit_month <= MONTHS_TO_RETURN)
                acc[M.NEWLY_POOR_MONTHLY] += np.count_nonzero(newly_poor)
                acc[M.RETURN_TO_POVERTY_MONTHLY] += np.count_nonzero(newly_poor & ~registered_old & exited_recently)
        gap = (line - np.maximum(income, 0.0)) / line
        hh.gap[:] = np.where(poor_now & (gap > 0.0), np.rint(gap * M.GAP_SCALE), 0.0).astype(np.uint16)
        flags = np.where(poor_now, flags | np.uint8(FLAG_POOR), flags & np.uint8(0xFF ^ FLAG_POOR))
        if december:
            was_poor = (flags & FLAG_POOR_DECEMBER) != 0
            if report and month - 12 >= p.time.record_start:  # the December before was assessed
                entered = poor_now & ~was_poor
                returned = entered & ((flags & FLAG_POOR_EARLIER) != 0)
                left = was_poor & ~poor_now
                for slot, people, which in ((M.NEWLY_POOR_ANNUAL, M.NEWLY_POOR_ANNUAL_PEOPLE, entered),
                                            (M.RETURNS_TO_POVERTY_ANNUAL, M.RETURNS_TO_POVERTY_ANNUAL_PEOPLE, returned),
                                            (M.EXITS_FROM_POVERTY_ANNUAL, M.EXITS_FROM_POVERTY_ANNUAL_PEOPLE, left)):
                    acc[slot] += np.count_nonzero(which)
                    acc[people] += size[which].sum()
            flags = flags | np.where(was_poor, np.uint8(FLAG_POOR_EARLIER), np.uint8(0))
            flags = np.where(poor_now, flags | np.uint8(FLAG_POOR_DECEMBER), flags & np.uint8(0xFF ^ FLAG_POOR_DECEMBER))
    poor = (flags & FLAG_POOR) != 0  # the status held (as assessed this month, or at the last assessment)

    # e. the survey: every household's basis, its income over the line (village phase 2a in the engine)
    if month == p.registration.survey_month:
        ratio = np.floor(np.maximum(income, 0.0) / line * BASIS_SCALE + 0.5)
        hh.basis[:] = np.minimum(ratio, 65535.0).astype(np.uint16)

    # f. the one-time registration by the office's noisy assessment of the basis (household phase 3b)
    if month == p.registration.month:
        a0, a1, _, _ = philox4x32_10(gid, month, STREAM_ASSESSMENT, 0, k0, k1)
        z = _box_muller_cos(uniform(a0), uniform(a1))
        o0, o1, _, _ = philox4x32_10(gid, 0, STREAM_OFFICE, 0, k0, k1)
        persistent = _box_muller_cos(uniform(o0), uniform(o1))  # the household's own, drawn once
        err = p.assessment.persistent_weight * persistent + p.assessment.fresh_weight * z
        basis = hh.basis.astype(np.float64) / BASIS_SCALE
        with np.errstate(over="ignore"):
            entering = ~registered_old & ((basis <= 0.0) | (basis * np.exp(p.registration.assessment_sd * err) < 1.0))
        ever = (flags & FLAG_EVER_REGISTERED) != 0
        first_time = entering & ~ever
        again = entering & ever & (hh.exit_month != NEVER)  # after an exit (a look-back removal is neither)
        flags = flags | np.where(entering, np.uint8(FLAG_REGISTERED | FLAG_EVER_REGISTERED), np.uint8(0))
        hh.route[entering] = ROUTE_REGISTRATION
        hh.pending_route[entering] = 0
        hh.pending_month[entering] = NEVER
        hh.stable_years[entering] = 0
        r = ROUTE_REGISTRATION
        acc[M.ASSESSED_REGISTRATION] += gid.shape[0]
        acc[M.ENTERED + r] += np.count_nonzero(entering)
        acc[M.ENTERED_PEOPLE + r] += size[entering].sum()
        acc[M.NEWLY_IDENTIFIED + r] += np.count_nonzero(first_time)
        acc[M.NEWLY_IDENTIFIED_PEOPLE + r] += size[first_time].sum()
        acc[M.RE_REGISTERED + r] += np.count_nonzero(again)
        acc[M.RE_REGISTERED_PEOPLE + r] += size[again].sum()
        acc[M.ENTERED_NONPOOR + r] += np.count_nonzero(entering & ~poor)
        found = entering & poor
        since = hh.poor_since[found].astype(np.int64)
        acc[M.DELAY_UNKNOWN + r] += np.count_nonzero(since == NEVER)  # poor since before the record
        delay = month - MONTH_ORIGIN - since[since != NEVER]
        acc[M.DELAY_SUM + r] += delay.sum()
        acc[M.DELAY_COUNT + r] += delay.shape[0]
        bins = np.bincount(np.clip(delay, 0, M.DELAY_BINS - 1), minlength=M.DELAY_BINS)
        acc[M.DELAY_HIST + r * M.DELAY_BINS : M.DELAY_HIST + (r + 1) * M.DELAY_BINS] += bins
    registered = (flags & FLAG_REGISTERED) != 0
    hh.flags[:] = flags

    # g. metrics (int64 slots, as the census adds them); a burn-in month counts none, as in the engine
    if not report:
        return
    size_poor = size[poor]
    gap = hh.gap.astype(np.int64)  # 0 unless poor
    acc[M.HOUSEHOLDS] += size.shape[0]
    acc[M.PEOPLE] += size.sum()
    acc[M.POOR] += size_poor.shape[0]
    acc[M.POOR_PEOPLE] += size_poor.sum()
    acc[M.GAP_FX] += (size * gap).sum()
    acc[M.SEVERITY_FX] += (size * gap * gap).sum()
    acc[M.SUPPORTED] += np.count_nonzero(supported)
    acc[M.REGISTERED] += np.count_nonzero(registered)
    acc[M.REGISTERED_PEOPLE] += size[registered].sum()
    acc[M.POOR_REGISTERED] += np.count_nonzero(registered & poor)
    # health metrics, from the stored (float32) 12-month medical spending, as the engine reads it
    catastrophic = hh.medical_12m.astype(np.float64) > M.CATASTROPHIC_SHARE * np.maximum(income * size, 0.0)
    acc[M.CATASTROPHIC] += np.count_nonzero(catastrophic)
    acc[M.REGISTERED_ILLNESS] += np.count_nonzero(registered & (catastrophic | ill))
    acc[M.ILL] += sick.size
    acc[M.UNEMPLOYED] += np.count_nonzero(unemployed)
    acc[M.ILLNESS_ONSETS] += np.count_nonzero(onset)
    acc[M.JOB_LOSSES] += np.count_nonzero(lost_job)
    if transfer_now > 0.0:
        paid = size_f[supported]
        acc[M.TRANSFERS_FEN] += np.rint(transfer_now * paid * 100.0).astype(np.int64).sum()
    if poor_area is not None:  # the poor areas' people, transfers and (December) the year's income
        area = poor_area != 0
        acc[M.POOR_AREA_PEOPLE] += size[area].sum()
        if transfer_now > 0.0:
            acc[M.POOR_AREA_TRANSFERS_FEN] += np.rint(transfer_now * size_f[supported & area] * 100.0).astype(
                np.int64).sum()
        if december:
            acc[M.POOR_AREA_INCOME] += np.rint(income[area] * size_f[area]).astype(np.int64).sum()
    if december:  # people, registered people and supported people by the year's income over the line
        b = income_bin(income, line)
        everyone = np.ones(b.shape, bool)
        for base, who in ((M.PEOPLE_BY_INCOME, everyone), (M.REGISTERED_PEOPLE_BY_INCOME, registered),
                          (M.SUPPORTED_PEOPLE_BY_INCOME, supported)):
            # people per bin: a weighted bincount, whose float64 sums of whole numbers are exact below 2**53
            people = np.bincount(b[who], weights=size_f[who], minlength=INCOME_BINS)
            acc[base : base + INCOME_BINS] += people.astype(np.int64)


def month_step(hh: Households, first_id: int, month: int, line: float, p: Params, k0: int, k1: int,
               chunk: int = DEFAULT_CHUNK, poor_area: np.ndarray | None = None) -> np.ndarray:
    """Advance every household of ``hh`` through ``month``, in place; return the month's totals.

    Same arguments and meaning as :func:`povsim.engine.run_month` (``first_id``
    is the global id of household 0, ``line`` the poverty line in yuan per
    person per year, ``p`` from :func:`povsim.components.make_params`, ``(k0, k1)``
    from :func:`povsim.rng.split_seed`); the totals are int64, one per slot of
    :mod:`povsim.metrics`, and equal the sum of the engine's block totals.  ``poor_area`` (one
    entry per household: its village's ``poor_area``) adds the poor-area statistics; without it
    they stay 0.
    """
    check_params(p)
    n = hh.size.shape[0]
    acc = np.zeros(M.N_SLOTS, np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        view = Households(*(a[start:stop] for a in hh))
        gid = np.arange(first_id + start, first_id + stop, dtype=np.int64).astype(np.uint32)
        _chunk_month(view, gid, month, line, p, k0, k1, acc,
                     None if poor_area is None else poor_area[start:stop])
    return acc
