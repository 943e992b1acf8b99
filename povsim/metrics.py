"""Metrics: what is counted in the engine's pass, and the ratios derived from the counts.

This module owns the monthly accumulators and the definition of every reported
metric, with its denominator.  Inside the engine each block of villages adds
its households' contributions to integer accumulators (counts, fixed-point
sums, money in fen), so the totals are exact and the same for any thread count
or split of the population.  Ratios are computed afterwards from the totals by
:func:`derive`; an undefined ratio (0/0) is NaN.

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
* ``precision_<channel>`` = verified flags truly poor / verified flags of that channel.
* ``detection_delay_mean`` = mean months from falling poor to registration, over the
  month's registrations of truly poor households (all routes) whose fall into poverty
  was observed (households poor since before the record began are left out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .population import N_ROUTES, ROUTE_NAMES

# --- accumulator slots (compile-time constants inside Numba code) -----------------------
HOUSEHOLDS = 0
PEOPLE = 1
POOR = 2
POOR_PEOPLE = 3
REGISTERED = 4
POOR_REGISTERED = 5
SUPPORTED = 6  #: households receiving support this month (registered or in transition)
GAP_FX = 7  #: sum over people of the poverty gap ratio, times FX_SCALE
SEVERITY_FX = 8  #: sum over people of the squared gap ratio, times FX_SCALE
ILL = 9
UNEMPLOYED = 10
ILLNESS_ONSETS = 11
JOB_LOSSES = 12
TRANSFERS_FEN = 13  #: transfers paid this month, in fen (1/100 yuan)
EXITED = 14
WRONG_EXIT = 15  #: exited while truly poor
REMOVED_LOOKBACK = 16
WRONG_REMOVED_LOOKBACK = 17  #: removed by the look-back while truly poor
RETURNS = 18  #: fell poor again within 12 months of exiting
NEWLY_POOR = 19
CADRE_VISITS = 20
ASSESSED_REGISTRATION = 21
ASSESSED_LOOKBACK = 22
ASSESSED_REVIEW = 23
REGISTERED_PEOPLE = 24  #: people in registered households
CATASTROPHIC = 25  #: households whose medical spending over 12 months passes CATASTROPHIC_SHARE of income
REGISTERED_ILLNESS = 26  #: registered households ill now or with catastrophic medical spending
ENTERED = 27  #: + route: entries onto the register by route
ENTERED_NONPOOR = ENTERED + N_ROUTES  #: + route: entries of households not truly poor
FLAGGED = ENTERED_NONPOOR + N_ROUTES  #: + route: households sent to verification by a channel
VERIFIED = FLAGGED + N_ROUTES  #: + route: verifications completed
VERIFIED_POOR = VERIFIED + N_ROUTES  #: + route: verifications of truly poor households
DELAY_SUM = VERIFIED_POOR + N_ROUTES  #: + route: months from falling poor to registration, summed
DELAY_COUNT = DELAY_SUM + N_ROUTES  #: + route: registrations of truly poor households
DELAY_UNKNOWN = DELAY_COUNT + N_ROUTES  #: + route: poor entrants poor since before the record (onset unknown)
DELAY_BINS = 49  #: detection-delay histogram: 0..47 months, and 48 or more
DELAY_HIST = DELAY_UNKNOWN + N_ROUTES  #: + route * DELAY_BINS + bin
N_SLOTS = DELAY_HIST + N_ROUTES * DELAY_BINS

#: medical spending over 12 months above this share of the household's 12-month income is
#: "catastrophic" (the SDG 3.8.2 threshold is 10% of household spending; income stands in for it)
CATASTROPHIC_SHARE = 0.10

FX_SCALE = float(2**30)  #: fixed-point scale of gap sums: exact integer addition in any order

CHANNELS = ("self", "cadre", "data", "hotline")
ROUTES = ("registration", "lookback", "review") + CHANNELS
ROUTE_CODE = {name: code for code, name in enumerate(ROUTE_NAMES)}

COUNT_COLUMNS = {
    "households": HOUSEHOLDS,
    "people": PEOPLE,
    "poor": POOR,
    "poor_people": POOR_PEOPLE,
    "registered": REGISTERED,
    "registered_people": REGISTERED_PEOPLE,
    "poor_registered": POOR_REGISTERED,
    "supported": SUPPORTED,
    "ill": ILL,
    "catastrophic": CATASTROPHIC,
    "registered_illness": REGISTERED_ILLNESS,
    "unemployed": UNEMPLOYED,
    "illness_onsets": ILLNESS_ONSETS,
    "job_losses": JOB_LOSSES,
    "newly_poor": NEWLY_POOR,
    "exited": EXITED,
    "wrong_exit": WRONG_EXIT,
    "removed_lookback": REMOVED_LOOKBACK,
    "wrong_removed_lookback": WRONG_REMOVED_LOOKBACK,
    "return_to_poverty": RETURNS,
    "cadre_visits": CADRE_VISITS,
    "assessed_registration": ASSESSED_REGISTRATION,
    "assessed_lookback": ASSESSED_LOOKBACK,
    "assessed_review": ASSESSED_REVIEW,
}

#: Every metric column with its definition, in the order of ``result.metrics``.
COLUMNS: dict[str, str] = {
    "month": "first day of the month",
    "year": "calendar year",
    "households": "households simulated",
    "people": "people in them",
    "poor": "households truly poor (12-month per-capita net income below the year's line)",
    "poor_people": "people in poor households",
    "registered": "households on the register at the end of the month",
    "registered_people": "people in registered households",
    "poor_registered": "households both poor and registered",
    "supported": "households receiving support this month (registered, or exited within the transition period)",
    "headcount_rate": "FGT0: share of people who are poor",
    "poverty_gap": "FGT1: mean poverty gap ratio over people",
    "poverty_severity": "FGT2: mean squared poverty gap ratio over people",
    "exclusion_error": "poor not registered / poor",
    "inclusion_error": "non-poor registered / registered",
    "missed_rate": "poor not registered / not registered (official definition)",
    "e_mistake": "non-poor registered / non-poor",
    "targeting_differential": "P(registered | poor) - P(registered | non-poor)",
    "ill": "households with an ill member",
    "catastrophic": "households whose out-of-pocket medical spending over 12 months passes 10% of their income",
    "registered_illness": "registered households ill now or with catastrophic medical spending (poverty due to illness)",
    "unemployed": "households with a wage earner out of work",
    "illness_onsets": "households falling ill this month",
    "job_losses": "households losing a job this month",
    "newly_poor": "households falling poor this month",
    **{f"entered_{r}": f"households entering the register this month by {r}" for r in ROUTES},
    "exited": "registered households exiting at an annual review",
    "wrong_exit": "households exiting while truly poor",
    "removed_lookback": "households removed from the register by the look-back",
    "wrong_removed_lookback": "households removed by the look-back while truly poor",
    "return_to_poverty": "households falling poor again within 12 months of exiting",
    **{f"flags_{c}": f"households sent to verification by the {c} channel" for c in CHANNELS},
    **{f"verified_{c}": f"verifications completed of {c} flags" for c in CHANNELS},
    **{f"precision_{c}": f"share of verified {c} flags that were truly poor" for c in CHANNELS},
    "detection_delay_mean": "mean months from falling poor to registration, this month's poor entrants",
    "cadre_visits": "cadre visits to households",
    "assessed_registration": "households assessed by the one-time registration",
    "assessed_lookback": "households re-assessed by the look-back",
    "assessed_review": "households assessed at an annual review",
    "cost_assessment": "assessments at registration, look-back and reviews, yuan",
    "cost_cadre": "cadre visits, yuan",
    "cost_verification": "verifications, yuan",
    "cost_data": "data flags followed up plus the data system's running cost, yuan",
    "cost_transfers": "cash transfers paid, yuan",
    "cost_total": "sum of the cost columns, yuan",
    "transfers_yuan": "cash transfers paid this month, yuan (equal to cost_transfers)",
}


def _ratio(num, den) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def derive(totals: np.ndarray, months: list[int], costs=None, data_running=None) -> pd.DataFrame:
    """The metrics table from monthly totals (shape ``(months, N_SLOTS)``, int64).

    ``costs`` is the config's ``policy.cost`` section (costs are zero without it);
    ``data_running`` says, per month, whether the data system runs.
    """
    t = np.asarray(totals, dtype=np.int64).reshape(len(months), N_SLOTS)
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
    df["headcount_rate"] = _ratio(t[:, POOR_PEOPLE], t[:, PEOPLE])
    df["poverty_gap"] = _ratio(t[:, GAP_FX] / FX_SCALE, t[:, PEOPLE])
    df["poverty_severity"] = _ratio(t[:, SEVERITY_FX] / FX_SCALE, t[:, PEOPLE])
    df["exclusion_error"] = _ratio(poor_unreg, poor)
    df["inclusion_error"] = _ratio(nonpoor_reg, reg)
    df["missed_rate"] = _ratio(poor_unreg, hh - reg)
    df["e_mistake"] = _ratio(nonpoor_reg, nonpoor)
    df["targeting_differential"] = _ratio(poor_reg, poor) - _ratio(nonpoor_reg, nonpoor)
    for r in ROUTES:
        df[f"entered_{r}"] = t[:, ENTERED + ROUTE_CODE[r]]
    for c in CHANNELS:
        code = ROUTE_CODE[c]
        df[f"flags_{c}"] = t[:, FLAGGED + code]
        df[f"verified_{c}"] = t[:, VERIFIED + code]
        df[f"precision_{c}"] = _ratio(t[:, VERIFIED_POOR + code], t[:, VERIFIED + code])
    df["detection_delay_mean"] = _ratio(
        t[:, DELAY_SUM : DELAY_SUM + N_ROUTES].sum(axis=1), t[:, DELAY_COUNT : DELAY_COUNT + N_ROUTES].sum(axis=1)
    )
    transfers = t[:, TRANSFERS_FEN] / 100.0
    assessed = t[:, ASSESSED_REGISTRATION] + t[:, ASSESSED_LOOKBACK] + t[:, ASSESSED_REVIEW]
    verified = t[:, VERIFIED : VERIFIED + N_ROUTES].sum(axis=1)
    running = np.zeros(len(months), bool) if data_running is None else np.asarray(data_running, bool)
    if costs is None:
        zero = np.zeros(len(months))
        df["cost_assessment"] = df["cost_cadre"] = df["cost_verification"] = df["cost_data"] = zero
    else:
        df["cost_assessment"] = assessed * costs.assessment
        df["cost_cadre"] = t[:, CADRE_VISITS] * costs.cadre_visit
        df["cost_verification"] = verified * costs.verification
        df["cost_data"] = t[:, FLAGGED + ROUTE_CODE["data"]] * costs.data_match + np.where(
            running, hh * costs.data_system_per_household, 0.0
        )
    df["cost_transfers"] = transfers
    df["cost_total"] = (
        df["cost_assessment"] + df["cost_cadre"] + df["cost_verification"] + df["cost_data"] + df["cost_transfers"]
    )
    df["transfers_yuan"] = transfers
    return df[list(COLUMNS)]


def delay_histogram(totals: np.ndarray) -> pd.DataFrame:
    """Registrations of truly poor households by route and months since falling poor.

    ``totals`` are monthly totals (months x N_SLOTS) or their sum.  Rows are
    routes; columns ``0 .. 47`` and ``48+`` months, and ``unknown``: households
    poor since before the record began (the first 12 simulated months, when
    income history is incomplete), whose onset is not observed.
    """
    t = np.asarray(totals, dtype=np.int64)
    if t.ndim == 2:
        t = t.sum(axis=0)
    hist = t[DELAY_HIST : DELAY_HIST + N_ROUTES * DELAY_BINS].reshape(N_ROUTES, DELAY_BINS)
    labels = [str(b) for b in range(DELAY_BINS - 1)] + [f"{DELAY_BINS - 1}+"]
    codes = [ROUTE_CODE[r] for r in ROUTES]
    out = pd.DataFrame(hist[codes], index=pd.Index(ROUTES, name="route"), columns=labels)
    out["unknown"] = t[DELAY_UNKNOWN : DELAY_UNKNOWN + N_ROUTES][codes]
    return out


def yearly_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per year: year-end (last simulated month's) stocks; flows and costs summed over the year."""
    stocks = ["households", "poor", "headcount_rate", "registered", "exclusion_error", "inclusion_error", "missed_rate"]
    flows = ["newly_poor", "exited", "wrong_exit", "return_to_poverty"]
    last = metrics.groupby("year", sort=True).tail(1).set_index("year")
    out = last[stocks].copy()
    by_year = metrics.groupby("year", sort=True)
    entries = [c for c in metrics.columns if c.startswith("entered_")]
    out["entered"] = by_year[entries].sum().sum(axis=1)
    for c in flows:
        out[c] = by_year[c].sum()
    out["cost_total"] = by_year["cost_total"].sum()
    return out
