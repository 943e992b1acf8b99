"""The month-end census: every count of the households' state at the end of the month.

The poor and their poverty gap, the registered and the supported, the ill and the
unemployed, the month's shocks and transfers: counted for a village in one
vectorised loop of integer sums (:func:`count`) at the end of its month, from the
state and from what :func:`povsim.components.income.household_month` left in the
village's ``draws``.  The targeting statistics (exclusion and inclusion errors and
their relatives) are derived from these counts, each naming its denominator.
"""

from __future__ import annotations

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .base import FLAG_POOR, FLAG_REGISTERED, Column, Component, Count
from .income import DRAW_INCOME_12M, DRAW_LOST_JOB, DRAW_ONSET, DRAW_SUPPORTED, DRAW_UNEMPLOYED

FX_SCALE = float(2**30)  #: fixed-point scale of gap sums: exact integer addition in any order

#: medical spending over 12 months above this share of the household's 12-month income is
#: "catastrophic" (the SDG 3.8.2 threshold is 10% of household spending; income stands in for it)
CATASTROPHIC_SHARE = 0.10

COMPONENT = Component(
    name="census",
    doc="the month-end counts of the households' state, and the targeting statistics derived from them",
    metrics=(
        Count("households", "households simulated"),
        Count("people", "people in them", unit="people"),
        Count("poor", "households truly poor (12-month per-capita net income below the year's line)"),
        Count("poor_people", "people in poor households", unit="people"),
        Count("registered", "households on the register at the end of the month"),
        Count("registered_people", "people in registered households", unit="people"),
        Count("poor_registered", "households both poor and registered"),
        Count("supported", "households receiving support this month (registered, or exited within the transition period)"),
        Count("gap_fx", "sum over people of the poverty gap ratio, times FX_SCALE", unit="fixed point", column=None),
        Count("severity_fx", "sum over people of the squared gap ratio, times FX_SCALE", unit="fixed point", column=None),
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
    ),
)


@nb.njit(cache=True, _nrt=False, error_model="numpy")
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
    transfer_per_person = p.support.transfer
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
        gap = (line - max(income, 0.0)) / line
        poor_n += poor
        poor_people += members if poor else 0
        gap_fx += members * np.int64(round(gap * FX_SCALE)) if poor else 0
        severity_fx += members * np.int64(round(gap * gap * FX_SCALE)) if poor else 0
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
