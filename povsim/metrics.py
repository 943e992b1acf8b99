"""Metrics: what is counted in the engine's pass, and the ratios derived from the counts.

This module owns the list of monthly accumulators and the definitions of every
reported metric, with its denominator.  Inside the engine each block of
villages adds its households' contributions to integer accumulators (counts,
fixed-point sums, money in fen), so the totals are exact and the same for any
thread count or split of the population.  Ratios are computed afterwards from
the totals by :func:`derive`; an undefined ratio (0/0) is NaN.

Definitions (households unless stated):

* ``headcount_rate`` (FGT0), ``poverty_gap`` (FGT1), ``poverty_severity`` (FGT2): over
  **people**, as the NBS counts them; the gap of a poor household is
  ``(line - max(income, 0)) / line``.
* ``exclusion_error`` = poor not registered / poor.
* ``inclusion_error`` (leakage) = non-poor registered / registered.
* ``missed_rate`` = poor not registered / not registered (the official definition
  used in county exit assessments).
* ``e_mistake`` = non-poor registered / non-poor.
* ``targeting_differential`` = P(registered | poor) - P(registered | non-poor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# --- accumulator slots (compile-time constants inside Numba code) -----------------------
HOUSEHOLDS = 0
PEOPLE = 1
POOR = 2
POOR_PEOPLE = 3
REGISTERED = 4
POOR_REGISTERED = 5
GAP_FX = 6  #: sum over people of the poverty gap ratio, times FX_SCALE
SEVERITY_FX = 7  #: sum over people of the squared gap ratio, times FX_SCALE
ILL = 8
UNEMPLOYED = 9
ILLNESS_ONSETS = 10
JOB_LOSSES = 11
TRANSFERS_FEN = 12  #: transfers paid this month, in fen (1/100 yuan)
N_SLOTS = 13

FX_SCALE = float(2**30)  #: fixed-point scale of gap sums: exact integer addition in any order

COUNT_COLUMNS = {
    "households": HOUSEHOLDS,
    "people": PEOPLE,
    "poor": POOR,
    "poor_people": POOR_PEOPLE,
    "registered": REGISTERED,
    "poor_registered": POOR_REGISTERED,
    "ill": ILL,
    "unemployed": UNEMPLOYED,
    "illness_onsets": ILLNESS_ONSETS,
    "job_losses": JOB_LOSSES,
}

#: Every metric column with its unit and definition, in the order of ``result.metrics``.
COLUMNS: dict[str, str] = {
    "month": "first day of the month",
    "year": "calendar year",
    "households": "households simulated",
    "people": "people in them",
    "poor": "households truly poor (12-month per-capita net income below the year's line)",
    "poor_people": "people in poor households",
    "registered": "households on the register",
    "poor_registered": "households both poor and registered",
    "headcount_rate": "FGT0: share of people who are poor",
    "poverty_gap": "FGT1: mean poverty gap ratio over people",
    "poverty_severity": "FGT2: mean squared poverty gap ratio over people",
    "exclusion_error": "poor not registered / poor",
    "inclusion_error": "non-poor registered / registered",
    "missed_rate": "poor not registered / not registered (official definition)",
    "e_mistake": "non-poor registered / non-poor",
    "targeting_differential": "P(registered | poor) - P(registered | non-poor)",
    "ill": "households with an ill member",
    "unemployed": "households with a wage earner out of work",
    "illness_onsets": "households falling ill this month",
    "job_losses": "households losing a job this month",
    "transfers_yuan": "cash transfers paid this month, yuan",
}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def derive(totals: np.ndarray, months: list[int]) -> pd.DataFrame:
    """The metrics table from monthly totals (shape ``(months, N_SLOTS)``, int64)."""
    t = np.asarray(totals, dtype=np.int64)
    df = pd.DataFrame(
        {
            "month": pd.to_datetime([f"{m // 12:04d}-{m % 12 + 1:02d}-01" for m in months]),
            "year": np.asarray([m // 12 for m in months], np.int64),
        }
    )
    for name, slot in COUNT_COLUMNS.items():
        df[name] = t[:, slot]
    hh = t[:, HOUSEHOLDS]
    poor = t[:, POOR]
    reg = t[:, REGISTERED]
    poor_reg = t[:, POOR_REGISTERED]
    nonpoor = hh - poor
    nonpoor_reg = reg - poor_reg
    poor_unreg = poor - poor_reg
    unreg = hh - reg
    df["headcount_rate"] = _ratio(t[:, POOR_PEOPLE], t[:, PEOPLE])
    df["poverty_gap"] = _ratio(t[:, GAP_FX] / FX_SCALE, t[:, PEOPLE])
    df["poverty_severity"] = _ratio(t[:, SEVERITY_FX] / FX_SCALE, t[:, PEOPLE])
    df["exclusion_error"] = _ratio(poor_unreg, poor)
    df["inclusion_error"] = _ratio(nonpoor_reg, reg)
    df["missed_rate"] = _ratio(poor_unreg, unreg)
    df["e_mistake"] = _ratio(nonpoor_reg, nonpoor)
    df["targeting_differential"] = _ratio(poor_reg, poor) - _ratio(nonpoor_reg, nonpoor)
    df["transfers_yuan"] = t[:, TRANSFERS_FEN] / 100.0
    return df[list(COLUMNS)]


def yearly_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per year: the year-end (last simulated month's) values of the headline metrics."""
    cols = ["households", "poor", "headcount_rate", "registered", "exclusion_error", "inclusion_error", "missed_rate"]
    last = metrics.groupby("year", sort=True).tail(1).set_index("year")
    out = last[cols].copy()
    out["transfers_yuan"] = metrics.groupby("year", sort=True)["transfers_yuan"].sum()
    return out
