"""The month-end census: every count of the households' state at the end of the month.

The poor and their poverty gap, the registered and the supported, the ill and the
unemployed, the month's shocks and transfers: counted for a village in one
vectorised loop of integer sums (:func:`count`) at the end of its month, from the
state and from what :func:`povsim.components.income.household_month` left in the
village's ``draws``.  The targeting statistics (exclusion and inclusion errors and
their relatives) are derived from these counts, each naming its denominator.

At each December assessment the census also counts people, registered people and
supported people by per-capita income of the year relative to the line, in
:data:`INCOME_BINS` fixed bins (binned counts: exact integers in any order).  From
these come the **coverage curve** (the share of people registered in each decile of
people by income) and the **CGH index** (Coady, Grosh and Hoddinott 2004: the share of
the supported people who are among the poorest 40 % of people, divided by 0.4; 1 for a
register drawn at random, 2.5 for one of exactly the poorest 40 %), each interpolated
linearly within the bin where a quantile falls (:func:`quantile_sums`).
"""

from __future__ import annotations

import math

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import elementary
from .base import FLAG_POOR, FLAG_REGISTERED, Bins, Column, Component, Count, State
from .support import year_index
from .income import DRAW_INCOME_12M, DRAW_LOST_JOB, DRAW_ONSET, DRAW_SUPPORTED, DRAW_UNEMPLOYED

#: medical spending over 12 months above this share of the household's 12-month income is
#: "catastrophic" (the SDG 3.8.2 threshold is 10% of household spending; income stands in for it)
CATASTROPHIC_SHARE = 0.10

INCOME_BINS = 200  #: bins of per-capita income over the line: below RATIO_LOW, 198 log-spaced, RATIO_HIGH and above
RATIO_LOW = 0.1  #: lower edge of the first log-spaced bin, multiple of the line
RATIO_HIGH = 20.0  #: lower edge of the last (open) bin, multiple of the line
LOG_STEP = math.log(RATIO_HIGH / RATIO_LOW) / (INCOME_BINS - 2)  #: width of a log-spaced bin, log points
CGH_SHARE = 0.4  #: the CGH index's poorest share of people
DECILES = 10


def _income_labels() -> tuple[str, ...]:
    edges = [RATIO_LOW * math.exp(LOG_STEP * b) for b in range(INCOME_BINS - 1)]
    return (f"<{RATIO_LOW:g}",) + tuple(f"{e:.4g}" for e in edges[:-1]) + (f">={RATIO_HIGH:g}",)


def quantile_sums(people: np.ndarray, values: np.ndarray, shares) -> np.ndarray:
    """``values`` summed over the poorest ``shares`` of people, from counts by income bin.

    ``people`` and ``values`` are (months, bins), bins in increasing income; the
    quantile's bin is split linearly (its people and values taken as spread evenly
    within it).  Returns (months, len(shares)); NaN where a month counts no people.
    """
    people = np.asarray(people, np.float64)
    values = np.asarray(values, np.float64)
    cum_people = np.cumsum(people, axis=1)
    cum_values = np.cumsum(values, axis=1)
    total = cum_people[:, -1]
    out = np.full((people.shape[0], len(shares)), np.nan)
    rows = np.flatnonzero(total > 0)
    for col, share in enumerate(shares):
        for r in rows:
            target = share * total[r]
            k = int(np.searchsorted(cum_people[r], target, side="left"))
            k = min(k, people.shape[1] - 1)
            before_people = cum_people[r, k - 1] if k else 0.0
            before_values = cum_values[r, k - 1] if k else 0.0
            fraction = (target - before_people) / people[r, k] if people[r, k] > 0 else 0.0
            out[r, col] = before_values + fraction * values[r, k]
    return out


def cgh_index(people: np.ndarray, supported: np.ndarray, share: float = CGH_SHARE) -> np.ndarray:
    """The CGH index per month: supported people among the poorest ``share`` of people / all supported / ``share``."""
    below = quantile_sums(people, supported, [share])[:, 0]
    total = np.asarray(supported, np.float64).sum(axis=1)
    out = np.full(below.shape, np.nan)
    np.divide(below, total * share, out=out, where=total > 0)
    return out


def coverage_by_decile(people: np.ndarray, registered: np.ndarray) -> np.ndarray:
    """The share of people registered in each decile of people by income, (months, 10); NaN without people."""
    cuts = quantile_sums(people, registered, [d / DECILES for d in range(DECILES + 1)])
    total = np.asarray(people, np.float64).sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diff(cuts, axis=1) / (total / DECILES)


def _decile(d: int):
    return lambda c: coverage_by_decile(c.bins("people_by_income"), c.bins("registered_people_by_income"))[:, d]


COMPONENT = Component(
    name="census",
    doc="the month-end counts of the households' state, and the targeting statistics derived from them",
    village_state=(State("poor_area", "uint8", "1 if the village's county is in the poor areas (the counties ranked "
                         "poorest by income level, holding population.poor_area_share of the households; set when "
                         "the population is built)"),),
    metrics=(
        Count("households", "households simulated"),
        Count("people", "people in them", unit="people"),
        Count("poor", "households truly poor (under the poverty concept in use: docs/model.md)"),
        Count("poor_people", "people in poor households", unit="people"),
        Count("registered", "households on the register at the end of the month"),
        Count("registered_people", "people in registered households", unit="people"),
        Count("poor_registered", "households both poor and registered"),
        Count("supported", "households receiving support this month (registered, monitored, or exited and still keeping their policies)"),
        Count("gap_fx", "sum over people of the poverty gap ratio, in 1/GAP_SCALE", unit="fixed point", column=None),
        Count("severity_fx", "sum over people of the squared gap ratio, in 1/GAP_SCALE^2", unit="fixed point",
              column=None),
        Count("transfers_fen", "transfers paid this month, in fen (1/100 yuan)", unit="fen", kind="flow", column=None),
        Column("exclusion_error", "poor not registered / poor",
               lambda c: c.ratio(c["poor"] - c["poor_registered"], c["poor"]),
               label="Exclusion error (poor not registered / poor), %"),
        Column("inclusion_error", "non-poor registered / registered",
               lambda c: c.ratio(c["registered"] - c["poor_registered"], c["registered"]),
               label="Inclusion error (non-poor registered / registered), %"),
        Column("missed_rate", "poor not registered / not registered (official definition)",
               lambda c: c.ratio(c["poor"] - c["poor_registered"], c["households"] - c["registered"]),
               label="Missed rate (poor not registered / not registered), %"),
        Column("e_mistake", "non-poor registered / non-poor",
               lambda c: c.ratio(c["registered"] - c["poor_registered"], c["households"] - c["poor"])),
        Column("targeting_differential", "P(registered | poor) - P(registered | non-poor)",
               lambda c: c.ratio(c["poor_registered"], c["poor"])
               - c.ratio(c["registered"] - c["poor_registered"], c["households"] - c["poor"])),
        Count("ill", "households with an ill member"),
        Count("catastrophic",
              "households whose out-of-pocket medical spending over 12 months passes 10% of their income"),
        Count("registered_illness",
              "registered households ill now or with catastrophic medical spending (poverty due to illness)"),
        Count("unemployed", "households with a wage earner out of work"),
        Count("illness_onsets", "households falling ill this month", kind="flow"),
        Count("job_losses", "households losing a job this month", kind="flow"),
        Count("poor_area_people", "people in the poor areas (the counties ranked poorest by income level: "
              "population.poor_area_share)", unit="people"),
        Count("poor_area_income", "the calendar year's income of the poor areas' people, yuan (the sum over their "
              "households of per-capita income of the year x members; December)", unit="yuan"),
        Count("poor_area_transfers_fen", "transfers paid this month in the poor areas, in fen", unit="fen",
              kind="flow", column=None),
        Column("poor_area_transfers_yuan", "cash transfers paid this month in the poor areas, yuan",
               lambda c: c["poor_area_transfers_fen"] / 100.0, unit="yuan", kind="yuan"),
        Bins("people_by_income", "people by per-capita income of the year over the line, at the December assessment",
             INCOME_BINS, _income_labels(), unit="people"),
        Bins("registered_people_by_income", "registered people by the same bins", INCOME_BINS, _income_labels(),
             unit="people"),
        Bins("supported_people_by_income", "supported people by the same bins", INCOME_BINS, _income_labels(),
             unit="people"),
        Column("cgh", "CGH index: share of supported people among the poorest 40% of people by income, / 0.4 "
               "(December)", lambda c: cgh_index(c.bins("people_by_income"), c.bins("supported_people_by_income")),
               unit="index", kind="index", label="CGH index (1 = random, 2.5 = poorest 40% only)"),
        *(Column(f"coverage_decile_{d + 1}",
                 f"share of people registered, income decile {d + 1} of people (December)", _decile(d),
                 label=f"Registered in income decile {d + 1}, %")
          for d in range(DECILES)),
    ),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, error_model="numpy")
def count(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Step 4: add the month's counts of village ``v``'s households to ``acc``.

    One loop of integer sums with no branch, which LLVM vectorises.  A burn-in month
    counts nothing (nothing reports it).
    """
    if month < p.time.report_start:
        return
    draws = s.draws
    first = vs.start[v]
    end = vs.start[v + 1]
    n = end - first
    size = hh.size[first:end]
    flags = hh.flags[first:end]
    illness = hh.illness[first:end]
    medical_12m = hh.medical_12m[first:end]
    transfer_per_person = p.support.transfer[year_index(p.support, month)]  # this month's transfer
    gap_state = hh.gap[first:end]
    people = poor_n = poor_people = gap_fx = severity_fx = supported_n = ill_n = unemployed_n = 0
    onsets = job_losses = transfers_fen = catastrophic_n = registered_n = registered_people = 0
    poor_registered = registered_illness = 0
    for j in range(n):
        members = np.int64(size[j])
        income = draws[DRAW_INCOME_12M, j]
        poor = (flags[j] & FLAG_POOR) != 0
        registered = (flags[j] & FLAG_REGISTERED) != 0
        supported = draws[DRAW_SUPPORTED, j] != 0.0
        ill = illness[j] != 0
        people += members
        gap = np.int64(gap_state[j])  # 0 unless poor
        poor_n += poor
        poor_people += members if poor else 0
        gap_fx += members * gap
        severity_fx += members * gap * gap
        supported_n += supported
        ill_n += ill
        unemployed_n += draws[DRAW_UNEMPLOYED, j] != 0.0
        onsets += draws[DRAW_ONSET, j] != 0.0
        job_losses += draws[DRAW_LOST_JOB, j] != 0.0
        transfer = transfer_per_person if supported else 0.0
        transfers_fen += np.int64(round(transfer * members * 100.0))
        catastrophic = np.float64(medical_12m[j]) > CATASTROPHIC_SHARE * max(income * members, 0.0)
        catastrophic_n += catastrophic
        registered_n += registered
        registered_people += members if registered else 0
        poor_registered += registered & poor
        registered_illness += registered & (catastrophic | ill)
    slot = p.slot
    if vs.poor_area[v]:
        acc[slot.poor_area_people] += people
        acc[slot.poor_area_transfers_fen] += transfers_fen
    acc[slot.households] += n
    acc[slot.people] += people
    acc[slot.poor] += poor_n
    acc[slot.poor_people] += poor_people
    acc[slot.gap_fx] += gap_fx
    acc[slot.severity_fx] += severity_fx
    acc[slot.supported] += supported_n
    acc[slot.ill] += ill_n
    acc[slot.unemployed] += unemployed_n
    acc[slot.illness_onsets] += onsets
    acc[slot.job_losses] += job_losses
    acc[slot.transfers_fen] += transfers_fen
    acc[slot.catastrophic] += catastrophic_n
    acc[slot.registered] += registered_n
    acc[slot.registered_people] += registered_people
    acc[slot.poor_registered] += poor_registered
    acc[slot.registered_illness] += registered_illness
    if month % 12 == 11:
        income_bins(hh, first, n, line, draws, acc, slot)
        if vs.poor_area[v]:
            acc[slot.poor_area_income] += area_income(size, draws, n)


@nb.njit(cache=True, no_cfunc_wrapper=True, _nrt=False, error_model="numpy")
def area_income(size, draws, n):
    """December: the calendar year's income of a village's people, whole yuan (per-capita income x members)."""
    total = 0
    for j in range(n):
        total += np.int64(round(draws[DRAW_INCOME_12M, j] * np.float64(size[j])))
    return total


@nb.njit(cache=True, no_cfunc_wrapper=True, _nrt=False, error_model="numpy")
def income_bin(income, line):
    """The bin of a per-capita income relative to the line (see :data:`INCOME_BINS`)."""
    ratio = income / line
    if ratio < RATIO_LOW:
        return 0
    return min(1 + np.int64(elementary.log(ratio / RATIO_LOW) / LOG_STEP), INCOME_BINS - 1)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, error_model="numpy")
def income_bins(hh, first, n, line, draws, acc, slot):
    """December: people, registered people and supported people of a village by income bin."""
    for j in range(n):
        members = np.int64(hh.size[first + j])
        b = income_bin(draws[DRAW_INCOME_12M, j], line)
        acc[slot.people_by_income + b] += members
        if hh.flags[first + j] & FLAG_REGISTERED:
            acc[slot.registered_people_by_income + b] += members
        if draws[DRAW_SUPPORTED, j] != 0.0:
            acc[slot.supported_people_by_income + b] += members
