"""The model against analytic results, and invariants that hold in every month of every run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import NO_SHOCKS, cfg
from scipy import stats

import povsim
from povsim import metrics as M
from povsim.population import FLAG_POOR, FLAG_REGISTERED

N = 30_000
LEVEL = 0.999  # two-sided coverage of every statistical interval below


def _binomial_interval(n: int, p: float) -> tuple[float, float]:
    a = (1 - LEVEL) / 2
    return stats.binom.ppf(a, n, p), stats.binom.ppf(1 - a, n, p)


def _chi2_interval(dof: int) -> tuple[float, float]:
    a = (1 - LEVEL) / 2
    return stats.chi2.ppf(a, dof), stats.chi2.ppf(1 - a, dof)


def _month_row(metrics: pd.DataFrame, month: str) -> pd.Series:
    rows = metrics[metrics["month"] == pd.Timestamp(month + "-01")]
    assert len(rows) == 1
    return rows.iloc[0]


# --- shock rates --------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.012, 0.2])
def test_illness_onset_rate(p):
    """Acute illness lasting exactly one month: ill[t] are all new onsets among N - ill[t-1] at risk."""
    result = povsim.run(
        cfg(N, {"illness.onset_probability": p, "illness.acute_duration": 1.0, "illness.chronic_share": 0.0})
    )
    m = result.metrics
    assert (m["illness_onsets"] == m["ill"]).all()
    at_risk = int((m["households"] - m["ill"].shift(1)).iloc[1:].sum())
    onsets = int(m["ill"].iloc[1:].sum())
    lo, hi = _binomial_interval(at_risk, p)
    assert lo <= onsets <= hi, (onsets, at_risk * p, lo, hi)


def test_chronic_illness_lasts():
    """Chronic share 1 and no recovery: the ill count only grows, by exactly the onsets."""
    m = povsim.run(
        cfg(N, {"illness.chronic_share": 1.0, "illness.chronic_recovery_probability": 0.0})
    ).metrics
    np.testing.assert_array_equal(np.diff(m["ill"].to_numpy()), m["illness_onsets"].to_numpy()[1:])
    assert m["illness_onsets"].iloc[1:].sum() > 0


@pytest.mark.parametrize("p", [0.004, 0.1])
def test_job_loss_rate(p):
    """Every household has workers and re-employment comes the next month: unemployed[t] ~ Bin(N - u[t-1], p)."""
    result = povsim.run(
        cfg(N, {"job_loss.probability": p, "job_loss.duration": 1.0, "population.worker_probability": 1.0})
    )
    m = result.metrics
    assert (m["job_losses"] == m["unemployed"]).all()
    at_risk = int((m["households"] - m["unemployed"].shift(1)).iloc[1:].sum())
    losses = int(m["unemployed"].iloc[1:].sum())
    lo, hi = _binomial_interval(at_risk, p)
    assert lo <= losses <= hi, (losses, at_risk * p, lo, hi)


def test_households_without_workers_never_lose_a_job(default_run):
    sim, result = default_run
    hh = sim.population.households
    assert (hh.workers == 0).any()
    assert not hh.unemployed[hh.workers == 0].any()
    assert result.metrics["job_losses"].sum() > 0


def test_no_shocks_when_probabilities_are_zero():
    m = povsim.run(cfg(5_000, {"illness.onset_probability": 0.0, "job_loss.probability": 0.0})).metrics
    for col in ("ill", "unemployed", "illness_onsets", "job_losses"):
        assert (m[col] == 0).all(), col


# --- the persistent AR(1) income component ---------------------------------------------------------

AR1_CASES = {
    "default": {},
    "shocks-off": {"illness.onset_probability": 0.0, "job_loss.probability": 0.0, "income.transitory_sd": 0.0},
    "sd0.5-rho0.9": {"income.persistent_sd": 0.5, "income.persistent_rho": 0.9},
}


@pytest.fixture(scope="module", params=list(AR1_CASES), ids=list(AR1_CASES))
def ar1_sim(request):
    sim = povsim.Simulation(cfg(N, AR1_CASES[request.param]))
    while not sim.done:
        sim.step()
    return sim


def test_persistent_component_has_stationary_variance(ar1_sim):
    inc = ar1_sim.config.income
    x = ar1_sim.population.households.persistent
    assert x.dtype == np.float32 and x.shape == (N,)
    stat = float(np.sum(x.astype(np.float64) ** 2)) / inc.persistent_sd**2  # ~ chi2(N): mean 0, var sd^2
    lo, hi = _chi2_interval(N)
    assert lo <= stat <= hi, (stat / N, lo / N, hi / N)


def test_persistent_component_lag1_autocorrelation_is_rho():
    inc_over = {"income.persistent_sd": 0.5, "income.persistent_rho": 0.9}
    for overrides in ({}, inc_over):
        sim = povsim.Simulation(cfg(N, overrides))
        for _ in range(20):
            sim.step()
        rho, sd = sim.config.income.persistent_rho, sim.config.income.persistent_sd
        x0 = sim.population.households.persistent.astype(np.float64)  # a copy
        sim.step()
        x1 = sim.population.households.persistent.astype(np.float64)
        se = (1 - rho**2) / math.sqrt(N)
        corr = np.corrcoef(x0, x1)[0, 1]
        assert abs(corr - rho) < 5 * se, (corr, rho, se)
        # the innovation: mean 0, variance sd^2 (1 - rho^2), independent of the past
        resid = x1 - rho * x0
        stat = float(np.sum(resid**2)) / (sd**2 * (1 - rho**2))
        lo, hi = _chi2_interval(N)
        assert lo <= stat <= hi, stat / N
        assert abs(np.corrcoef(resid, x0)[0, 1]) < 4 / math.sqrt(N)


# --- targeting with an exact assessment --------------------------------------------------------------


def test_zero_assessment_error_registers_exactly_the_poor():
    # the assessment reads the survey's basis, December 2013's calendar-year income: the poor of that
    # December, whose status holds until the next December
    m = povsim.run(cfg(20_000, {"policy.registration.assessment_sd": 0.0})).metrics
    row = _month_row(m, "2014-10")
    assert row["registered"] == row["poor"] == row["poor_registered"] > 0
    assert row["exclusion_error"] == 0.0
    assert row["inclusion_error"] == 0.0
    # shocks move households across the line afterwards, so errors appear again
    last = m.iloc[-1]
    assert last["exclusion_error"] > 0 and last["inclusion_error"] > 0


def test_default_assessment_error_makes_both_errors():
    m = povsim.run(cfg(20_000)).metrics
    row = _month_row(m, "2014-10")
    assert 0 < row["exclusion_error"] < 1 and 0 < row["inclusion_error"] < 1


def test_zero_assessment_error_and_no_shocks_stay_exact():
    m = povsim.run(cfg(20_000, {**NO_SHOCKS, "policy.registration.assessment_sd": 0.0})).metrics
    after = m[m["month"] >= pd.Timestamp("2014-10-01")]
    assert len(after) == 15
    assert (after["poor"] > 0).all()
    assert (after["exclusion_error"] == 0.0).all()
    assert (after["inclusion_error"] == 0.0).all()
    assert (after["registered"] == after["poor"]).all()
    assert (m["transfers_yuan"] == 0).all()


def test_no_shocks_means_nothing_changes():
    """With every income change off, each household's monthly income is constant: all counts are."""
    m = povsim.run(cfg(20_000, NO_SHOCKS)).metrics
    for col in ("poor", "poor_people", "ill", "unemployed"):
        assert m[col].nunique() == 1, col
    after = m[m["month"] >= pd.Timestamp("2014-10-01")]
    for col in ("registered", "poor_registered", "exclusion_error", "inclusion_error"):
        assert after[col].nunique() == 1, col
    assert after["exclusion_error"].iloc[0] > 0  # the assessment is noisy by default


def test_transfer_lifts_registered_households():
    """A large transfer to the exactly-registered poor lifts most of them out within a year."""
    base = {**NO_SHOCKS, "policy.registration.assessment_sd": 0.0}
    m0 = povsim.run(cfg(20_000, base)).metrics
    m1 = povsim.run(cfg(20_000, {**base, "policy.support.transfer": 300.0})).metrics
    before = _month_row(m1, "2014-10")
    after = m1.iloc[-1]
    assert _month_row(m0, "2014-10")["poor"] == before["poor"]
    assert after["poor"] < 0.05 * before["poor"]
    assert after["registered"] == before["registered"]
    # transfers paid = 300 yuan x people in registered households, every month after registration
    paid = m1.loc[m1["month"] > pd.Timestamp("2014-10-01"), "transfers_yuan"]
    assert paid.nunique() == 1 and paid.iloc[0] > 0
    assert paid.iloc[0] % 300 == 0
    assert (m1.loc[m1["month"] <= pd.Timestamp("2014-10-01"), "transfers_yuan"] == 0).all()


# --- invariants ----------------------------------------------------------------------------------------

INVARIANT_CASES = {
    "default": {},
    "high-shocks": {"illness.onset_probability": 0.1, "job_loss.probability": 0.05, "income.transitory_sd": 0.8},
    "no-registration": {"policy.registration.enabled": False},
    "registration-2013-01": {"policy.registration.month": "2013-01", "policy.registration.survey_month": "2012-12",
                             "policy.registration.assessment_sd": 1.0},
}


@pytest.fixture(scope="module", params=list(INVARIANT_CASES), ids=list(INVARIANT_CASES))
def case_result(request):
    return povsim.run(cfg(10_000, INVARIANT_CASES[request.param]))


def test_invariants_every_month(case_result):
    m = case_result.metrics
    c = case_result.config
    n = c.population.households
    assert list(m.columns) == list(M.COLUMNS)
    assert len(m) == 36
    assert m["month"].is_monotonic_increasing and m["month"].is_unique
    assert (m["households"] == n).all()
    assert (m["people"] >= m["households"]).all()
    assert (m["people"] <= 8 * m["households"]).all()
    assert m["people"].nunique() == 1
    for col in M.COUNT_COLUMNS:
        if col in ("people", "poor_people", "poor_area_people", "poor_area_income"):
            continue  # counts of people and yuan, checked below
        assert (m[col] >= 0).all() and (m[col] <= n).all(), col
    assert (m["poor_area_people"] <= m["people"]).all() and (m["poor_area_income"] >= 0).all()
    assert (m["poor_people"] <= m["people"]).all()
    assert (m["poor_people"] >= m["poor"]).all()
    assert (m["poor_registered"] <= np.minimum(m["poor"], m["registered"])).all()
    assert (m["illness_onsets"] <= m["ill"]).all()
    assert (m["job_losses"] <= m["unemployed"]).all()
    for col in ("headcount_rate", "poverty_gap", "poverty_severity", "exclusion_error", "inclusion_error",
                "missed_rate", "e_mistake"):
        v = m[col].dropna()
        assert ((v >= 0) & (v <= 1)).all(), col
    assert (m["poverty_severity"] <= m["poverty_gap"]).all()
    assert (m["poverty_gap"] <= m["headcount_rate"]).all()
    td = m["targeting_differential"].dropna()
    assert ((td >= -1) & (td <= 1)).all()
    assert (m["transfers_yuan"] >= 0).all()

    # NaN exactly where the denominator is zero
    pd.testing.assert_series_equal(m["exclusion_error"].isna(), m["poor"] == 0, check_names=False)
    pd.testing.assert_series_equal(m["inclusion_error"].isna(), m["registered"] == 0, check_names=False)

    # the register exists only from the registration month on
    reg = c.policy.registration
    if reg.enabled:
        start = pd.Timestamp(reg.month + "-01")
        assert (m.loc[m["month"] < start, "registered"] == 0).all()
        assert (m.loc[m["month"] < start, "transfers_yuan"] == 0).all()
        assert (m.loc[m["month"] >= start, "registered"] > 0).all()
        # one-time registration: nobody joins or leaves afterwards
        assert m.loc[m["month"] >= start, "registered"].nunique() == 1
    else:
        assert (m["registered"] == 0).all()
        assert m["inclusion_error"].isna().all()
        assert (m["exclusion_error"] == 1.0).all()


def test_ratio_definitions(default_result):
    m = default_result.metrics
    poor, reg, both, n = m["poor"], m["registered"], m["poor_registered"], m["households"]
    after = m["registered"] > 0
    np.testing.assert_allclose(m["exclusion_error"][after], ((poor - both) / poor)[after], rtol=1e-15)
    np.testing.assert_allclose(m["inclusion_error"][after], ((reg - both) / reg)[after], rtol=1e-15)
    np.testing.assert_allclose(m["missed_rate"], (poor - both) / (n - reg), rtol=1e-15)
    np.testing.assert_allclose(m["e_mistake"], (reg - both) / (n - poor), rtol=1e-15)
    np.testing.assert_allclose(m["targeting_differential"], both / poor - (reg - both) / (n - poor), atol=1e-15)
    np.testing.assert_allclose(m["headcount_rate"], m["poor_people"] / m["people"], rtol=1e-15)


# --- poverty definition and state -----------------------------------------------------------------------


def test_poor_flag_is_the_year_income_below_the_year_line(default_run):
    sim, result = default_run
    hh = sim.population.households
    assert hh.net_income.dtype == np.int16 and hh.net_income.shape == (20_000, 12)
    last_year = int(result.metrics["year"].iloc[-1])
    line = sim.config.poverty.lines[last_year]
    income = hh.net_income.astype(np.int64).sum(axis=1)
    poor = income < line
    flagged = (hh.flags & FLAG_POOR) != 0
    assert 0 < poor.sum() < len(poor)
    np.testing.assert_array_equal(flagged, poor)
    last = result.metrics.iloc[-1]
    assert last["poor"] == poor.sum()
    assert last["poor_people"] == hh.size[poor].astype(np.int64).sum()
    # the FGT1 gap recomputed from the stored incomes (the gap ratio is kept in 1/65535)
    gap = np.round((line - np.maximum(income[poor], 0)) / line * 65535) / 65535
    fgt1 = (hh.size[poor] * gap).sum() / hh.size.astype(np.int64).sum()
    assert last["poverty_gap"] == pytest.approx(fgt1, rel=1e-12)
    assert np.array_equal(hh.gap[poor], np.round(gap * 65535).astype(np.uint16)) and (hh.gap[~poor] == 0).all()


def test_final_state_matches_last_month_counts(default_run):
    sim, result = default_run
    hh = sim.population.households
    last = result.metrics.iloc[-1]
    registered = (hh.flags & FLAG_REGISTERED) != 0
    poor = (hh.flags & FLAG_POOR) != 0
    assert last["registered"] == registered.sum() > 0
    assert last["poor_registered"] == (registered & poor).sum()
    assert last["ill"] == (hh.illness != 0).sum()
    assert last["unemployed"] == (hh.unemployed != 0).sum()
    assert last["people"] == hh.size.astype(np.int64).sum()
    assert set(np.unique(hh.illness)) <= {0, 1, 2}
    assert hh.size.min() >= 1 and hh.size.max() <= 8
    assert (hh.workers <= hh.size).all()
    from povsim.schema import in_year

    transfer = in_year(sim.config.policy.support.transfer, int(last["year"]))  # the schedule's value that year
    # paid in whole fen per household: within half a fen of the exact amount for each household
    assert last["transfers_yuan"] == pytest.approx(transfer * hh.size[registered].astype(np.int64).sum(),
                                                   abs=0.005 * registered.sum())


def test_household_size_distribution(default_run):
    sim, _ = default_run
    sizes = sim.population.households.size
    probs = np.asarray(sim.config.population.size_probabilities)
    counts = np.bincount(sizes, minlength=9)[1:]
    assert stats.chisquare(counts, probs * len(sizes)).pvalue > 1e-3


def test_bytes_per_household(default_run):
    sim, result = default_run
    pop = sim.population
    assert pop.bytes_per_household() <= 64
    assert result.manifest["bytes_per_household"] <= 64
    assert pop.nbytes() >= sum(a.nbytes for a in pop.households)
    # the narrowest dtype for every field, as documented in povsim/population.py
    expected = {
        "size": np.uint8, "workers": np.uint8, "level": np.float32, "persistent": np.float32,
        "illness": np.uint8, "unemployed": np.uint8, "flags": np.uint8, "net_income": np.int16,
        "medical_12m": np.float32, "capacity": np.uint16, "route": np.uint8, "pending_route": np.uint8,
        "annual_z": np.int16, "pending_month": np.int16, "poor_since": np.int16, "last_visit": np.int16,
        "last_rejected": np.int16, "exit_month": np.int16, "gap": np.uint16, "basis": np.uint16,
        "stable_years": np.uint8,
    }
    assert set(pop.households._fields) == set(expected)
    for name, array in zip(pop.households._fields, pop.households):
        assert array.dtype == np.dtype(expected[name]), name
    n = pop.n_households
    # docs/model.md: 62 bytes per household (the int16 annual income normal, the uint16 registration basis and
    # the uint8 run of stable years added; the uint8 count of transition months left gone: support after exit
    # follows from exit_month)
    assert sum(a.nbytes for a in pop.households) == 62 * n


# --- common random numbers and purity ----------------------------------------------------------------------


POLICY_PAIRS = {
    "transfer": ({"policy.support.transfer": 0.0}, {"policy.support.transfer": 200.0}),
    "assessment": ({"policy.registration.assessment_sd": 0.0}, {"policy.registration.assessment_sd": 1.5}),
    "registration": ({"policy.registration.enabled": False}, {"policy.support.transfer": 100.0}),
}


@pytest.mark.parametrize("pair", list(POLICY_PAIRS))
def test_shocks_do_not_depend_on_policy(pair):
    """Common random numbers: a household meets the same shocks under every policy."""
    over_a, over_b = POLICY_PAIRS[pair]
    a = povsim.run(cfg(20_000, over_a)).metrics
    b = povsim.run(cfg(20_000, over_b)).metrics
    for col in ("ill", "unemployed", "illness_onsets", "job_losses"):
        pd.testing.assert_series_equal(a[col], b[col])
    before = a["month"] < pd.Timestamp("2014-10-01")
    pd.testing.assert_frame_equal(a[before], b[before], check_exact=True)
    # the policies themselves do differ in what they do
    assert not a["registered"].equals(b["registered"]) or not a["poor"].equals(b["poor"])


def test_transfer_reduces_poverty():
    a = povsim.run(cfg(20_000, {"policy.support.transfer": 0.0})).metrics
    b = povsim.run(cfg(20_000, {"policy.support.transfer": 200.0})).metrics
    assert (a["poor"].iloc[-12:] > b["poor"].iloc[-12:]).all()


def test_household_does_not_depend_on_population_size():
    """Draws are keyed by the household's global id: household i is the same in a larger population.

    Both populations in one county (the sample design spreads counties over the provinces by their
    number, so with two villages a county the larger one would place household i's county elsewhere)."""
    one_county = {"population.villages_per_county": 250}
    small = povsim.Simulation(cfg(2_000, one_county))
    small.run()
    big = povsim.Simulation(cfg(7_000, one_county))
    big.run()
    for name, a, b in zip(small.population.households._fields, small.population.households, big.population.households):
        np.testing.assert_array_equal(a, b[: len(a)], err_msg=name)


def test_simulation_steps_and_stops():
    sim = povsim.Simulation(cfg(2_000))
    tl = sim.timeline
    assert tl.n_simulated == 48 and tl.n_burn_in == 12
    steps = 0
    while not sim.done:
        reported = sim.month >= tl.start
        totals = sim.step()
        assert totals.shape == (M.N_SLOTS,) and totals.dtype == np.int64
        if reported:
            assert totals[M.HOUSEHOLDS] == 2_000
        else:  # a burn-in month's metrics are not counted (nothing reports them)
            assert not totals.any()
        steps += 1
    assert steps == 48
    assert sorted(sim.totals) == tl.reported
    with pytest.raises(RuntimeError):
        sim.step()
