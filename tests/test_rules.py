"""The identification rules against analytic results, and invariants of a run with every rule.

Most checks use the shock-free set-up (:data:`helpers.NO_SHOCKS`): every household's
monthly income is constant, so the set of poor households is fixed and each rule's
effect can be computed exactly.  Each rule is switched on alone (:data:`helpers.NO_RULES`
switches everything off first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import NO_RULES, NO_SHOCKS, full_cfg
from scipy import stats

import povsim
from povsim import metrics as M
from povsim import rng
from povsim.config import format_month, parse_month
from povsim.population import FLAG_CONNECTED, FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, ROUTE_NAMES
from povsim.components.base import NEVER
from povsim.components.registration import registration_quotas

LEVEL = 0.999  # two-sided coverage of every statistical interval below
CHANNELS = ("self", "cadre", "data", "hotline")


def rules_cfg(households: int, overrides: dict, period=("2016-07", "2017-12")):
    """No rules (each test switches on what it studies), one burn-in year, a short period."""
    return povsim.load_config(
        overrides={
            **NO_RULES,
            "simulation.start": period[0],
            "simulation.end": period[1],
            "simulation.burn_in_years": 1,
            "population.households": households,
            **overrides,
        }
    )


def _row(metrics: pd.DataFrame, month: str) -> pd.Series:
    rows = metrics[metrics["month"] == pd.Timestamp(month + "-01")]
    assert len(rows) == 1
    return rows.iloc[0]


def _months(metrics: pd.DataFrame) -> list[int]:
    return [parse_month(f"{d.year:04d}-{d.month:02d}") for d in metrics["month"]]


def _per_village(mask: np.ndarray, village_start: np.ndarray) -> np.ndarray:
    """Count of ``mask`` in each village."""
    counts = np.add.reduceat(mask.astype(np.int64), village_start[:-1])
    counts[village_start[:-1] == village_start[1:]] = 0  # empty villages (none here, but reduceat repeats)
    return counts


def _step_to(sim, month: str) -> None:
    """Step ``sim`` until ``month`` is the next month to simulate."""
    target = parse_month(month)
    while sim.month < target:
        sim.step()
    assert sim.month == target


def _registered(sim) -> np.ndarray:
    return (sim.population.households.flags & FLAG_REGISTERED) != 0


def _poor(sim) -> np.ndarray:
    return (sim.population.households.flags & FLAG_POOR) != 0


# --- 1. self-declaration -----------------------------------------------------------------------------

SELF_P = 0.1
SELF_ONLY = {
    **NO_SHOCKS,
    "policy.channels.self.enabled": True,
    "policy.channels.self.start": "2017-01",
    "policy.channels.self.perception_sd": 0.0,
    "policy.channels.self.nonpoor_probability": 0.0,
    "policy.channels.self.apply_probability": SELF_P,
    "policy.verification.assessment_sd": 0.0,
    "policy.verification.delay": 0,
}


@pytest.fixture(scope="module")
def self_only():
    # large enough to tell p = 0.1 from 0.11 (the 12-month count differs by > 4 SD)
    return povsim.run(rules_cfg(100_000, SELF_ONLY)).metrics


def test_self_declaration_cumulative_registrations_are_binomial(self_only):
    """Each unregistered poor household applies with probability p a month and is registered at once:
    registered by month t of the channel ~ Binomial(P, 1 - (1 - p)^t)."""
    m = self_only
    assert m["poor"].nunique() == 1  # no shocks: a fixed set of poor households
    poor = int(m["poor"].iloc[0])
    assert poor > 2000
    before = m["month"] < pd.Timestamp("2017-01-01")
    assert (m.loc[before, "registered"] == 0).all() and (m.loc[before, "flags_self"] == 0).all()
    after = m[~before].reset_index(drop=True)
    assert len(after) == 12
    a = (1 - LEVEL) / 2
    for t, reg in enumerate(after["registered"], start=1):
        q = 1 - (1 - SELF_P) ** t
        lo, hi = stats.binom.ppf(a, poor, q), stats.binom.ppf(1 - a, poor, q)
        assert lo <= reg <= hi, (t, reg, poor * q, lo, hi)
    # jointly: each month's entries ~ Binomial(poor not yet registered, p), independent given the past
    at_risk = poor - np.concatenate([[0], after["registered"].to_numpy()[:-1]])
    entries = after["entered_self"].to_numpy()
    z2 = (entries - at_risk * SELF_P) ** 2 / (at_risk * SELF_P * (1 - SELF_P))
    assert stats.chi2.sf(z2.sum(), len(z2)) > 1 - LEVEL, z2.sum()
    # the register changes only by these entries
    np.testing.assert_array_equal(np.diff(np.concatenate([[0], after["registered"]])), entries)


def test_self_declaration_registers_no_non_poor(self_only):
    m = self_only[self_only["month"] >= pd.Timestamp("2017-01-01")]
    assert (m["poor_registered"] == m["registered"]).all()
    assert (m["inclusion_error"] == 0).all()
    # every application is from a poor household, verified and registered in the month it is made
    assert (m["flags_self"] == m["verified_self"]).all()
    assert (m["verified_self"] == m["entered_self"]).all()
    assert (m["precision_self"] == 1.0).all()
    for c in ("cadre", "data", "hotline"):
        assert (m[f"flags_{c}"] == 0).all() and (m[f"entered_{c}"] == 0).all()


def test_self_declaration_of_the_non_poor_is_rejected():
    """Only households that do not perceive themselves poor apply (apply 0, nonpoor q): each month
    ~ Binomial(non-poor, q) apply, the exact verification rejects them all, and they may apply again."""
    q = 0.02
    m = povsim.run(
        rules_cfg(20_000, {**SELF_ONLY, "policy.channels.self.apply_probability": 0.0,
                           "policy.channels.self.nonpoor_probability": q})
    ).metrics
    after = m[m["month"] >= pd.Timestamp("2017-01-01")]
    nonpoor = int((after["households"] - after["poor"]).iloc[0])
    a = (1 - LEVEL) / 2
    lo, hi = stats.binom.ppf(a, nonpoor * len(after), q), stats.binom.ppf(1 - a, nonpoor * len(after), q)
    assert lo <= after["flags_self"].sum() <= hi
    assert (after["flags_self"] > 0).all()
    assert (after["verified_self"] == after["flags_self"]).all()
    assert (after["precision_self"] == 0.0).all()
    assert (m["registered"] == 0).all()


HOTLINE_ONLY = {
    **NO_SHOCKS,
    "policy.channels.hotline.enabled": True,
    "policy.channels.hotline.start": "2017-01",
    "policy.verification.assessment_sd": 0.0,
    "policy.verification.delay": 0,
}


def test_hotline_calls_are_binomial():
    """A missed poor household calls with probability p a month: registered by month t ~ Binomial(P, 1 - (1-p)^t)."""
    p = 0.1
    m = povsim.run(rules_cfg(100_000, {**HOTLINE_ONLY, "policy.channels.hotline.call_probability": p})).metrics
    poor = int(m["poor"].iloc[0])
    after = m[m["month"] >= pd.Timestamp("2017-01-01")].reset_index(drop=True)
    a = (1 - LEVEL) / 2
    for t, reg in enumerate(after["registered"], start=1):
        q = 1 - (1 - p) ** t
        assert stats.binom.ppf(a, poor, q) <= reg <= stats.binom.ppf(1 - a, poor, q), t
    assert (after["precision_hotline"] == 1.0).all()  # only the truly poor call
    assert (after["entered_hotline"] == after["flags_hotline"]).all()
    assert (m["registered"] == m["poor_registered"]).all()


def test_hotline_rejected_households_wait_before_calling_again():
    """Every missed poor household calls at once (p = 1); the means test registers only those below half
    the line; the rejected call again exactly rejected_wait months later, and again, and again."""
    wait = 4
    over = {**HOTLINE_ONLY, "policy.channels.hotline.call_probability": 1.0,
            "policy.channels.hotline.rejected_wait": wait, "policy.verification.monitoring_multiple": 0.5}
    m = povsim.run(rules_cfg(20_000, over)).metrics
    after = m[m["month"] >= pd.Timestamp("2017-01-01")].reset_index(drop=True)
    poor = int(after["poor"].iloc[0])
    admitted = int(after["entered_hotline"].iloc[0])
    rejected = poor - admitted
    assert 0 < admitted < poor
    expected = [poor] + [rejected if k % wait == 0 else 0 for k in range(1, len(after))]
    assert after["flags_hotline"].tolist() == expected
    assert (after["registered"] == admitted).all()
    assert (after["entered_hotline"].iloc[1:] == 0).all()


# --- 2. cadres -------------------------------------------------------------------------------------

CADRE_K = 3
CADRE_ONLY = {
    **NO_SHOCKS,
    "population.households_per_village": 100,
    "population.villages_per_county": 10,  # 20 counties: poverty differs between villages
    "policy.channels.cadre.enabled": True,
    "policy.channels.cadre.start": "2017-01",
    "policy.channels.cadre.perception_sd": 0.0,
    "policy.channels.cadre.favouritism": 0.0,
    "policy.channels.cadre.visits_per_village": CADRE_K,
    "policy.verification.assessment_sd": 0.0,
    "policy.verification.delay": 0,
}


def test_cadres_register_k_poorest_per_village_each_month():
    """Exact perception: each month each village's cadres visit its k poorest unvisited households, so
    after t months a village with P poor households has min(k t, P) registered: its poorest ones."""
    sim = povsim.Simulation(rules_cfg(20_000, CADRE_ONLY))
    pop = sim.population
    hh = pop.households
    _step_to(sim, "2017-01")
    assert not _registered(sim).any()
    poor = _poor(sim)
    poor_v = _per_village(poor, pop.village_start)
    n_villages = pop.n_villages
    assert n_villages == 200
    income = hh.net_income.astype(np.int64).sum(axis=1)
    binding = {"quota": False, "poor": False}
    for t in range(1, 13):
        totals = sim.step()
        registered = _registered(sim)
        expected = np.minimum(CADRE_K * t, poor_v)
        np.testing.assert_array_equal(_per_village(registered, pop.village_start), expected, err_msg=f"month {t}")
        assert not (registered & ~poor).any()
        binding["quota"] |= bool((CADRE_K * t < poor_v).any())
        binding["poor"] |= bool((CADRE_K * t > poor_v).any())
        # the registered households of each village are its poorest (ties by position)
        for v in range(0, n_villages, 17):
            lo, hi = pop.village_start[v], pop.village_start[v + 1]
            order = np.lexsort((np.arange(hi - lo), income[lo:hi]))
            np.testing.assert_array_equal(np.sort(order[: expected[v]]), np.flatnonzero(registered[lo:hi]))
        # every village has k visits; only poor households are flagged, and at once registered
        assert totals[M.CADRE_VISITS] == CADRE_K * n_villages
        new = int(np.minimum(CADRE_K, np.maximum(poor_v - CADRE_K * (t - 1), 0)).sum())
        code = M.ROUTE_CODE["cadre"]
        assert totals[M.FLAGGED + code] == totals[M.VERIFIED + code] == totals[M.ENTERED + code] == new
        assert totals[M.VERIFIED_POOR + code] == new and totals[M.ENTERED_NONPOOR + code] == 0
    assert binding["quota"] and binding["poor"]  # both sides of the min() were exercised
    assert (hh.route[_registered(sim)] == M.ROUTE_CODE["cadre"]).all()


def test_cadre_favouritism_puts_connected_households_first():
    """Connected households look 5 log points poorer: cadres visit them first and flag every one
    (perceived far below the line); the exact verification registers only the poor among them."""
    over = {**CADRE_ONLY, "policy.channels.cadre.favouritism": 5.0, "policy.channels.cadre.connected_share": 0.2}
    sim = povsim.Simulation(rules_cfg(20_000, over))
    pop = sim.population
    hh = pop.households
    _step_to(sim, "2017-01")
    connected = (hh.flags & FLAG_CONNECTED) != 0
    connected_v = _per_village(connected, pop.village_start)
    assert (connected_v >= CADRE_K).all()  # so that the first month's visits are all to connected households
    poor = _poor(sim)
    totals = sim.step()
    visited = hh.last_visit == parse_month("2017-01") - MONTH_ORIGIN
    assert visited.sum() == CADRE_K * pop.n_villages
    assert (visited <= connected).all()
    code = M.ROUTE_CODE["cadre"]
    assert totals[M.FLAGGED + code] == totals[M.VERIFIED + code] == visited.sum()  # every one flagged
    assert totals[M.VERIFIED_POOR + code] == (visited & poor).sum() < visited.sum()
    np.testing.assert_array_equal(_registered(sim), visited & poor)
    assert totals[M.ENTERED_NONPOOR + code] == 0


def test_quota_is_capped_at_the_village_size():
    """A quota 100 x the estimated poor exceeds every village with a poor household: all its households
    are registered; a village without poor households gets no quota."""
    over = {**NO_SHOCKS, "policy.registration.enabled": True, "policy.registration.method": "quota",
            "policy.registration.quota_scale": 100.0, "population.households_per_village": 10,
            "population.villages_per_county": 20}
    sim = povsim.Simulation(rules_cfg(5_000, over, period=("2014-01", "2014-12")))
    pop = sim.population
    _step_to(sim, "2014-10")
    poor_v = _per_village(_poor(sim), pop.village_start)
    size_v = np.diff(pop.village_start)
    assert (poor_v == 0).any() and (poor_v > 0).any()
    sim.step()
    expected = np.where(poor_v > 0, size_v, 0)
    np.testing.assert_array_equal(_per_village(_registered(sim), pop.village_start), expected)


# --- 3. sector data ---------------------------------------------------------------------------------


def _data_cfg(overrides: dict, households: int = 20_000):
    return full_cfg(households, {**NO_RULES, "policy.channels.data.enabled": True, **overrides})


NEVER_MEDICAL = {
    "policy.channels.data.medical_threshold": 1e9,
    "policy.channels.data.medical_share_threshold": 10.0,
}
NEVER_DATA = {
    **NEVER_MEDICAL,
    "job_loss.probability": 0.0,
    "policy.channels.data.income_drop_threshold": 1.0,
    "policy.channels.data.coverage_formal": 1.0,
    "policy.channels.data.coverage_informal": 1.0,
}


def test_data_flags_nobody_when_no_trigger_can_fire():
    """Medical thresholds above every bill, no job losses, income-drop threshold 1 (never): no flags,
    while illness (and its bills) run as usual."""
    m = povsim.run(_data_cfg(NEVER_DATA)).metrics
    assert m["ill"].sum() > 0 and m["illness_onsets"].sum() > 0
    assert (m["flags_data"] == 0).all()


def test_data_no_coverage_flags_nobody():
    m = povsim.run(
        _data_cfg({"policy.channels.data.coverage_formal": 0.0, "policy.channels.data.coverage_informal": 0.0})
    ).metrics
    assert m["job_losses"].sum() > 0 and m["illness_onsets"].sum() > 0
    assert (m["flags_data"] == 0).all() and (m["verified_data"] == 0).all()
    assert m["precision_data"].isna().all()


@pytest.fixture(scope="module")
def data_full_coverage():
    overrides = {
        "policy.channels.data.coverage_formal": 1.0,
        "policy.channels.data.coverage_informal": 1.0,
        "policy.channels.data.lag": 3,
        "policy.verification.delay": 2,
    }
    return povsim.run(_data_cfg(overrides)).metrics


def test_data_full_coverage_flags(data_full_coverage):
    m = data_full_coverage
    start = m["month"] >= pd.Timestamp("2018-01-01")
    assert (m.loc[start, "flags_data"] > 0).all()
    assert (m.loc[~start, "flags_data"] == 0).all()
    assert (m["entered_data"] <= m["verified_data"]).all()
    assert m["entered_data"].sum() > 0


def test_data_flags_reach_verification_after_lag_plus_delay(data_full_coverage):
    """Nothing else clears a pending flag here: verified_data[t] = flags_data[t - lag - delay] exactly."""
    m = data_full_coverage
    wait = 3 + 2
    flags = m["flags_data"].to_numpy()
    verified = m["verified_data"].to_numpy()
    first_flag = int(np.flatnonzero(flags)[0])
    first_verified = int(np.flatnonzero(verified)[0])
    assert format_month(_months(m)[first_flag]) == "2018-01"
    assert first_verified - first_flag == wait
    np.testing.assert_array_equal(verified[wait:], flags[:-wait])
    assert (verified[:wait] == 0).all()


def test_data_with_no_lag_and_no_delay_is_verified_the_same_month():
    m = povsim.run(
        _data_cfg({"policy.channels.data.lag": 0, "policy.verification.delay": 0}, households=10_000)
    ).metrics
    assert m["flags_data"].sum() > 0
    np.testing.assert_array_equal(m["verified_data"], m["flags_data"])


def test_data_job_loss_trigger_alone():
    """With the medical and income triggers off, each data flag is a job lost this month."""
    m = povsim.run(
        _data_cfg({**NEVER_DATA, "job_loss.probability": 0.004, "illness.onset_probability": 0.0})
    ).metrics
    start = m["month"] >= pd.Timestamp("2018-01-01")
    assert (m["flags_data"] <= m["job_losses"]).all()
    assert m.loc[start, "flags_data"].sum() >= 0.9 * m.loc[start, "job_losses"].sum() > 0


# --- 4. quota registration ------------------------------------------------------------------------


def _quotas(sim) -> np.ndarray:
    pop, reg = sim.population, sim.config.policy.registration
    return registration_quotas(
        pop.villages.survey_poor, pop.households.size, pop.households.flags, pop.village_start, pop.village_county,
        pop.n_counties, pop.first_id, reg, sim.key[0], sim.key[1],
    )


def _people_per_village(mask: np.ndarray, sim) -> np.ndarray:
    size = sim.population.households.size.astype(np.int64)
    return _per_village(np.where(mask, size, 0), sim.population.village_start)


def test_quota_registration_fills_each_village_quota_of_people():
    """Each village registers its lowest-ranked households while that brings its registered people nearer
    its quota (people): it ends within half a household (at most 4 people) of it."""
    sim = povsim.Simulation(
        full_cfg(20_000, {"population.households_per_village": 100, "population.villages_per_county": 20})
    )
    pop = sim.population
    _step_to(sim, "2014-10")
    assert not _registered(sim).any()
    quota = _quotas(sim)
    poor_v = pop.villages.survey_poor.copy()
    totals = sim.step()
    registered_people = _people_per_village(_registered(sim), sim)
    assert (np.abs(registered_people - quota) <= 4).all()
    assert abs(registered_people.sum() / quota.sum() - 1.0) < 0.02
    assert totals[M.ENTERED + M.ROUTE_CODE["registration"]] == _registered(sim).sum()
    assert totals[M.ASSESSED_REGISTRATION] == pop.n_households
    # the noise really moved quotas away from the survey's counts, and quota_scale x the survey's poor people
    assert (quota != poor_v).any()
    reg = sim.config.policy.registration
    assert abs(quota.sum() / poor_v.sum() - reg.quota_scale) < 0.01
    # the quota is a function of the config and the survey: a fresh simulation gives the same numbers
    again = povsim.Simulation(sim.config)
    _step_to(again, "2014-10")
    np.testing.assert_array_equal(_quotas(again), quota)


def test_quota_without_noise_registers_exactly_the_poor():
    overrides = {
        **NO_SHOCKS,
        "policy.registration.enabled": True,
        "policy.registration.method": "quota",
        "policy.registration.quota_scale": 1.0,
        "policy.registration.county_estimate_sd": 0.0,
        "policy.registration.village_estimate_sd": 0.0,
        "policy.registration.assessment_sd": 0.0,
        "population.villages_per_county": 20,
    }
    sim = povsim.Simulation(rules_cfg(20_000, overrides, period=("2014-01", "2014-12")))
    _step_to(sim, "2014-10")
    poor = _poor(sim)
    np.testing.assert_array_equal(_quotas(sim), _people_per_village(poor, sim))
    sim.step()
    np.testing.assert_array_equal(_registered(sim), poor)
    sim.run()
    m = povsim.run(sim.config).metrics
    row = _row(m, "2014-10")
    assert row["registered"] == row["poor"] == row["poor_registered"] > 0
    assert row["exclusion_error"] == 0.0 and row["inclusion_error"] == 0.0


# --- 5. look-back ------------------------------------------------------------------------------------


#: no household holds excluding evidence
NO_EVIDENCE = {f"policy.assessment.exclusion_shares.{k}": 0.0 for k in
               ("public_salary", "village_official", "urban_house", "vehicle", "business")}


@pytest.mark.parametrize("method", ["threshold", "quota"])
def test_exact_lookback_corrects_every_error(method):
    """Without shocks the basis is current income: an exact look-back removing at the line and adding below
    it corrects every error of a noisy registration."""
    overrides = {
        **NO_SHOCKS,
        "policy.registration.enabled": True,
        "policy.registration.method": method,
        "policy.registration.assessment_sd": 0.5,
        "policy.lookback.enabled": True,
        "policy.lookback.start": "2015-08",
        "policy.lookback.end": "2015-08",
        "policy.lookback.assessment_sd": 0.0,
        "policy.lookback.remove_multiple": 1.0,
        "policy.lookback.add_multiple": 1.0,
        **NO_EVIDENCE,
    }
    result = povsim.run(rules_cfg(20_000, overrides, period=("2014-01", "2016-06")))
    m = result.metrics
    before, at = _row(m, "2015-07"), _row(m, "2015-08")
    # the noisy registration made both errors
    assert before["exclusion_error"] > 0 and before["inclusion_error"] > 0
    assert at["exclusion_error"] == 0.0 and at["inclusion_error"] == 0.0
    assert at["removed_lookback"] == before["registered"] - before["poor_registered"]
    assert at["entered_lookback"] == before["poor"] - before["poor_registered"]
    assert at["wrong_removed_lookback"] == 0
    assert at["assessed_lookback"] == at["households"]
    after = m[m["month"] >= pd.Timestamp("2015-08-01")]
    assert (after["exclusion_error"] == 0).all() and (after["inclusion_error"] == 0).all()
    (lookback,) = result.events[result.events["event"] == "lookback"].to_dict("records")
    assert lookback["added"] == at["entered_lookback"] and lookback["removed"] == at["removed_lookback"]
    assert lookback["wrongly_added"] == 0 and lookback["wrongly_removed"] == 0
    assert lookback["register_after"] - lookback["register_before"] == lookback["added"] - lookback["removed"]


def test_lookback_months_are_spread_over_the_window():
    """Each village is re-checked once, in a month of the window; every household that has not exited
    before its village's month is assessed once."""
    m = povsim.run(full_cfg(20_000, {"population.households_per_village": 50})).metrics
    window = (m["month"] >= pd.Timestamp("2015-08-01")) & (m["month"] <= pd.Timestamp("2016-06-01"))
    exited = m.loc[m["month"] <= pd.Timestamp("2016-06-01"), "exited"].sum()
    assert exited > 0
    assert 20_000 - exited <= m.loc[window, "assessed_lookback"].sum() < 20_000
    assert (m.loc[~window, "assessed_lookback"] == 0).all()
    assert (m.loc[window, "assessed_lookback"] > 0).sum() >= 9  # 400 villages over 11 months
    assert (m.loc[~window, "removed_lookback"] == 0).all() and (m.loc[~window, "entered_lookback"] == 0).all()


# --- 6. annual review and the transition period ---------------------------------------------------------

TRANSITION = 5
REVIEW_ONLY = {
    "policy.registration.enabled": True,
    "policy.registration.method": "threshold",
    "policy.registration.assessment_sd": 0.5,
    "policy.review.enabled": True,
    "policy.review.first": "2017-10",
    "policy.review.exit_first": "2017-10",
    "policy.review.exit_years": 1,
    "policy.review.guarantees": False,
    "policy.review.exit_multiple": 1.0,
    "policy.review.assessment_sd": 0.0,
    "policy.support.keep_after_exit": False,  # support for TRANSITION months after the exit only
    "policy.support.transition_months": TRANSITION,
    "policy.support.transfer": 0.0,
}
REVIEW_CASES = {"no-shocks": {**NO_SHOCKS, **REVIEW_ONLY}, "shocks": REVIEW_ONLY}


@pytest.fixture(scope="module", params=list(REVIEW_CASES), ids=list(REVIEW_CASES))
def review_only(request):
    return povsim.run(rules_cfg(20_000, REVIEW_CASES[request.param], period=("2014-01", "2019-06")))


def test_exited_households_keep_support_for_the_transition_months(review_only):
    m = review_only.metrics.reset_index(drop=True)
    gap = (m["supported"] - m["registered"]).to_numpy()
    months = [format_month(x) for x in _months(m)]
    reg = months.index("2014-10")
    entered = m[[f"entered_{r}" for r in M.ROUTES]].sum(axis=1).to_numpy()
    for review in ("2017-10", "2018-10"):
        r = months.index(review)
        exited = int(m.loc[r, "exited"])
        assert exited > 0 or review == "2018-10"  # without shocks the first exact review leaves no one to exit
        # in the review month support is counted before the review: exits are still supported, entrants not yet
        assert gap[r] == exited - entered[r]
        # then exactly TRANSITION months of support after the exit, and none after
        assert (gap[r + 1 : r + 1 + TRANSITION] == exited).all(), gap[r : r + 13]
        assert (gap[r + 1 + TRANSITION : r + 12] == 0).all(), gap[r : r + 13]
    # between the registration and the first review, support is the register
    first = months.index("2017-10")
    assert gap[reg] == -entered[reg]
    assert (gap[reg + 1 : first] == 0).all()
    assert (m["supported"] >= 0).all()


def test_review_exits_are_the_non_poor_when_exact(review_only):
    m = review_only.metrics
    for review in ("2017-10", "2018-10"):
        before = _row(m, format_month(parse_month(review) - 1))
        at = _row(m, review)
        assert at["assessed_exit"] == before["registered"]
        if review_only.config.income.transitory_sd == 0:  # no shocks: poverty is the same both months
            assert at["exited"] == before["registered"] - before["poor_registered"]
            assert at["wrong_exit"] == 0
            assert at["inclusion_error"] == 0.0
        else:
            assert at["wrong_exit"] <= at["exited"]
    # only reviews move the register after the registration
    change = m["registered"].diff().fillna(m["registered"].iloc[0]).to_numpy()
    events = m["month"].isin(pd.to_datetime(["2014-10-01", "2017-10-01", "2018-10-01"])).to_numpy()
    assert (change[~events] == 0).all()


def test_review_event_rows_balance(review_only):
    """Only the review acts in its month here: register after - before = added - removed."""
    ev = review_only.events
    assert list(ev["event"]) == ["registration", "review 2017-10", "review 2018-10"]
    m = review_only.metrics
    for row in ev.to_dict("records"):
        assert row["register_after"] - row["register_before"] == row["added"] - row["removed"], row
        at = _row(m, row["start"])
        route = row["event"].split()[0]
        assert row["added"] == at[f"entered_{route}"]
        if route == "review":
            assert row["removed"] == at["exited"] and row["wrongly_removed"] == at["wrong_exit"]
            assert row["assessed"] == at["assessed_review"] + at["assessed_exit"]


def test_transfers_follow_support_through_the_transition():
    """transfers_yuan = transfer x members of households supported at the start of the month:
    registered, or exited at most TRANSITION months before."""
    transfer = 100.0
    sim = povsim.Simulation(
        rules_cfg(10_000, {**REVIEW_ONLY, "policy.support.transfer": transfer}, period=("2014-01", "2018-12"))
    )
    hh = sim.population.households
    size = hh.size.astype(np.int64)
    review = parse_month("2017-10")
    in_transition_counts = {}
    while not sim.done:
        m = sim.month
        since_exit = m - MONTH_ORIGIN - hh.exit_month.astype(np.int64)
        in_transition = ~_registered(sim) & (hh.exit_month != NEVER) & (since_exit <= TRANSITION)
        supported = _registered(sim) | in_transition
        in_transition_counts[m] = int(in_transition.sum())
        totals = sim.step()
        assert totals[M.TRANSFERS_FEN] == round(transfer * 100) * size[supported].sum(), format_month(m)
        assert totals[M.SUPPORTED] == supported.sum()
        if m == review:
            exited = int(totals[M.EXITED])
            exited_people = size[hh.exit_month == review - MONTH_ORIGIN].sum()
            assert exited > 0 and exited_people >= exited
    for k in range(1, 13):
        expected = exited if k <= TRANSITION else 0
        assert in_transition_counts[review + k] == expected, k
    result = povsim.run(sim.config)
    np.testing.assert_array_equal(result.metrics["transfers_yuan"], result.metrics["cost_transfers"])
    assert result.metrics["transfers_yuan"].iloc[-1] > 0


# --- 7. invariants of a run with every rule and channel ----------------------------------------------------


def test_register_changes_only_by_entries_exits_and_removals(full_result):
    m = full_result.metrics
    entered = m[[f"entered_{r}" for r in M.ROUTES]].sum(axis=1)
    change = entered - m["exited"] - m["removed_lookback"]
    np.testing.assert_array_equal(m["registered"].to_numpy(), np.cumsum(change.to_numpy()))
    for r in M.ROUTES:
        assert m[f"entered_{r}"].sum() > 0, r
    assert (m["exited"].sum(), m["removed_lookback"].sum()) > (0, 0)


def test_every_registered_household_has_one_route(full_run):
    sim, result = full_run
    hh = sim.population.households
    registered = _registered(sim)
    assert registered.sum() == result.metrics["registered"].iloc[-1] > 0
    assert ((hh.route >= 1) & (hh.route <= 7))[registered].all()
    assert (hh.route[~registered] == 0).all()
    counts = np.bincount(hh.route, minlength=8)
    assert counts[1:].sum() == registered.sum()
    m = result.metrics
    for code in range(1, 8):
        # still on the register by this route <= ever entered by it
        assert counts[code] <= m[f"entered_{ROUTE_NAMES[code]}"].sum(), ROUTE_NAMES[code]
    # no pending verification for a registered household
    assert (hh.pending_route[registered] == 0).all()


def test_costs_are_non_negative_and_add_up(full_result):
    m = full_result.metrics
    cost = full_result.config.policy.cost
    parts = ["cost_assessment", "cost_cadre", "cost_verification", "cost_data", "cost_transfers"]
    for c in parts + ["cost_total"]:
        assert (m[c] >= 0).all(), c
        assert m[c].sum() > 0, c
    total = m[parts[0]] + m[parts[1]] + m[parts[2]] + m[parts[3]] + m[parts[4]]
    np.testing.assert_array_equal(m["cost_total"], total)
    np.testing.assert_allclose(m["cost_total"], m[parts].sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(m["cost_transfers"], m["transfers_yuan"])
    assessed = m["assessed_registration"] + m["assessed_lookback"] + m["assessed_review"]
    np.testing.assert_allclose(m["cost_assessment"], assessed * cost.assessment, rtol=1e-12)
    np.testing.assert_allclose(m["cost_cadre"], m["cadre_visits"] * cost.cadre_visit, rtol=1e-12)
    verified = m[[f"verified_{c}" for c in CHANNELS]].sum(axis=1)
    np.testing.assert_allclose(m["cost_verification"], verified * cost.verification, rtol=1e-12)
    running = m["month"] >= pd.Timestamp(full_result.config.policy.channels.data.start + "-01")
    data = m["flags_data"] * cost.data_match + np.where(running, m["households"] * cost.data_system_per_household, 0)
    np.testing.assert_allclose(m["cost_data"], data, rtol=1e-12)
    assert (m.loc[~running, "cost_data"] == 0).all()


def test_flags_verifications_and_precision_are_consistent(full_run):
    sim, result = full_run
    m = result.metrics
    pol = result.config.policy
    months = _months(m)
    reviews = [parse_month(pol.review.first) + 12 * k for k in range(4)]
    for c in CHANNELS:
        flags, verified = m[f"flags_{c}"].to_numpy(), m[f"verified_{c}"].to_numpy()
        p = m[f"precision_{c}"]
        assert ((p >= 0) & (p <= 1) | p.isna()).all(), c
        np.testing.assert_array_equal(p.isna().to_numpy(), verified == 0, err_msg=c)
        assert (m[f"entered_{c}"] <= m[f"verified_{c}"]).all(), c
        start = parse_month(getattr(pol.channels, c).start)
        assert (flags[np.array(months) < start] == 0).all(), c
        # a flag of month t is verified in month t + wait, unless a review registers it first
        wait = pol.verification.delay + (pol.channels.data.lag if c == "data" else 0)
        for k in range(wait, len(months)):
            assert verified[k] <= flags[k - wait], (c, format_month(months[k]))
            if not any(months[k - wait] <= r < months[k] for r in reviews):
                assert verified[k] == flags[k - wait], (c, format_month(months[k]))
        assert flags.sum() > 0 and verified.sum() > 0, c
    # precision counted from the totals: verified poor / verified
    totals = np.array([sim.totals[x] for x in months])
    for c in CHANNELS:
        code = M.ROUTE_CODE[c]
        vp, v = totals[:, M.VERIFIED_POOR + code], totals[:, M.VERIFIED + code]
        assert (vp <= v).all()
        ok = v > 0
        np.testing.assert_allclose(m[f"precision_{c}"].to_numpy()[ok], vp[ok] / v[ok], rtol=1e-15)


def test_wrong_decisions_are_a_subset(full_result):
    m = full_result.metrics
    assert (m["wrong_exit"] <= m["exited"]).all()
    assert (m["wrong_removed_lookback"] <= m["removed_lookback"]).all()
    assert m["wrong_exit"].sum() > 0 and m["wrong_removed_lookback"].sum() > 0
    assert (m["poor_registered"] <= np.minimum(m["poor"], m["registered"])).all()
    assert (m["supported"] >= 0).all()
    assert (m["newly_poor_monthly"] <= m["poor"]).all()
    assert (m["returns_to_poverty_annual"] <= m["newly_poor_annual"]).all()
    assert (m["return_to_poverty_monthly"] <= m["newly_poor_monthly"]).all()


def test_event_rows(full_result):
    ev = full_result.events
    m = full_result.metrics
    assert list(ev["event"]) == [
        "registration", "exits 2014-12", "lookback", "exits 2015-12", "exits 2016-12", "review 2017-10",
        "exits 2017-12", "review 2018-10", "exits 2018-12", "review 2019-10", "exits 2019-12", "review 2020-10",
        "exits 2020-12",
    ]
    entered = m[[f"entered_{r}" for r in M.ROUTES]].sum(axis=1)
    n = full_result.config.population.households
    for row in ev.to_dict("records"):
        window = (m["month"] >= pd.Timestamp(row["start"] + "-01")) & (m["month"] <= pd.Timestamp(row["end"] + "-01"))
        w = m[window]
        route = row["event"].split()[0]
        first = int(np.flatnonzero(window)[0])
        assert row["register_before"] == (m["registered"].iloc[first - 1] if first else 0)
        assert row["register_after"] == w["registered"].iloc[-1]
        assert row["added"] == (w[f"entered_{route}"].sum() if route != "exits" else 0)
        if route == "exits":
            assert row["removed"] == w["exited"].sum() and row["assessed"] == w["assessed_exit"].sum()
        assert 0 <= row["wrongly_added"] <= row["added"] and 0 <= row["wrongly_removed"] <= row["removed"]
        # in general the register also moves by what else happened in the window
        others = entered[window].sum() - row["added"]
        other_removals = (w["exited"].sum() + w["removed_lookback"].sum()) - row["removed"]
        assert row["register_after"] - row["register_before"] == row["added"] - row["removed"] + others - other_removals
        if others == 0 and other_removals == 0:
            assert row["register_after"] - row["register_before"] == row["added"] - row["removed"]
    reg, lb = ev.iloc[0], ev.iloc[2]
    # registration and look-back run before any channel: only they, and the exits of December 2015, act
    assert reg["register_after"] - reg["register_before"] == reg["added"] - reg["removed"]
    exits_2015 = int(_row(m, "2015-12")["exited"])
    assert lb["register_after"] - lb["register_before"] == lb["added"] - lb["removed"] - exits_2015
    assert reg["assessed"] == n and n - exits_2015 <= lb["assessed"] <= n  # everyone not exited assessed once
    assert reg["removed"] == 0 and reg["register_before"] == 0


def test_detection_delays_count_the_poor_entrants(full_run):
    sim, result = full_run
    months = sorted(sim.totals)
    totals = np.array([sim.totals[x] for x in months])
    d = result.detection_delays()
    assert list(d.index) == list(M.ROUTES)
    assert (d.to_numpy() >= 0).all()
    for r in M.ROUTES:
        code = M.ROUTE_CODE[r]
        entrants = totals[:, M.ENTERED + code].sum()
        nonpoor = totals[:, M.ENTERED_NONPOOR + code].sum()
        assert d.loc[r].drop("unknown").sum() == totals[:, M.DELAY_COUNT + code].sum(), r
        assert d.loc[r, "unknown"] == totals[:, M.DELAY_UNKNOWN + code].sum(), r
        assert d.loc[r].sum() == entrants - nonpoor, r
        assert entrants == result.metrics[f"entered_{r}"].sum()
    entrants = result.metrics[[f"entered_{r}" for r in M.ROUTES]].to_numpy().sum()
    nonpoor = totals[:, M.ENTERED_NONPOOR : M.ENTERED_NONPOOR + M.N_ROUTES].sum()
    assert d.to_numpy().sum() == entrants - nonpoor
    # the per-event wrongly-added counts agree with the histogram
    ev = result.events
    for route in ("registration", "lookback", "review"):
        rows = ev[ev["event"].str.split().str[0] == route]
        assert d.loc[route].sum() == rows["added"].sum() - rows["wrongly_added"].sum(), route
    # the monthly mean delay is the histogram's months over its counts, month by month
    dsum = totals[:, M.DELAY_SUM : M.DELAY_SUM + M.N_ROUTES].sum(axis=1)
    dcount = totals[:, M.DELAY_COUNT : M.DELAY_COUNT + M.N_ROUTES].sum(axis=1)
    mean = result.metrics["detection_delay_mean"].to_numpy()
    np.testing.assert_array_equal(np.isnan(mean), dcount == 0)
    np.testing.assert_allclose(mean[dcount > 0], dsum[dcount > 0] / dcount[dcount > 0], rtol=1e-15)


BURN_IN_CASE = {**NO_SHOCKS, "policy.registration.enabled": True, "policy.registration.method": "threshold",
                "policy.registration.assessment_sd": 0.0}


@pytest.fixture(scope="module")
def burn_in_pair():
    """The same shock-free run after one and after two burn-in years."""
    a = povsim.run(rules_cfg(5_000, BURN_IN_CASE, period=("2014-01", "2014-12")))
    b = povsim.run(rules_cfg(5_000, {**BURN_IN_CASE, "simulation.burn_in_years": 2}, period=("2014-01", "2014-12")))
    return a, b


def test_burn_in_length_does_not_change_a_shock_free_run(burn_in_pair):
    a, b = burn_in_pair
    cols = [c for c in M.COLUMNS if c != "detection_delay_mean"]
    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols], check_exact=True)
    row = _row(a.metrics, "2014-10")
    assert row["registered"] == row["poor"] == row["poor_registered"] > 0
    # every poor entrant is in the histogram, in each run
    for r in (a, b):
        assert r.detection_delays().loc["registration"].sum() == row["poor"]
        assert r.detection_delays().drop(index="registration").to_numpy().sum() == 0


def test_detection_delay_does_not_depend_on_the_burn_in(burn_in_pair):
    a, b = burn_in_pair
    np.testing.assert_array_equal(a.metrics["detection_delay_mean"], b.metrics["detection_delay_mean"])
    pd.testing.assert_frame_equal(a.detection_delays(), b.detection_delays())


# --- 8. common random numbers ---------------------------------------------------------------------------

NO_CHANNELS = {f"policy.channels.{c}.enabled": False for c in CHANNELS}


def test_shocks_are_common_to_scenarios_with_and_without_channels(full_result):
    other = povsim.run(full_cfg(20_000, NO_CHANNELS)).metrics
    m = full_result.metrics
    for col in ("ill", "illness_onsets", "households", "people"):
        pd.testing.assert_series_equal(m[col], other[col])
    # identical until the first channel starts
    before = m["month"] < pd.Timestamp("2017-01-01")
    pd.testing.assert_frame_equal(m[before], other[before], check_exact=True)
    assert not m["registered"].equals(other["registered"])
    # supported households find work faster (reemployment_multiplier), so unemployment is a policy outcome
    assert not m["unemployed"].equals(other["unemployed"])


def test_job_shocks_are_common_without_a_reemployment_effect():
    same = {"policy.support.reemployment_multiplier": 1.0}
    a = povsim.run(full_cfg(20_000, same)).metrics
    b = povsim.run(full_cfg(20_000, {**same, **NO_CHANNELS})).metrics
    for col in ("ill", "unemployed", "illness_onsets", "job_losses"):
        pd.testing.assert_series_equal(a[col], b[col])
    assert not a["registered"].equals(b["registered"])


def _select_lowest_by_repeated_minimum(values, candidate, count):
    """The selection written the obvious way: take the lowest remaining candidate, ties by index."""
    candidate = candidate.copy()
    chosen = []
    while len(chosen) < count:
        best = -1
        for j in range(len(values)):
            if candidate[j] and (best < 0 or values[j] < values[best]):
                best = j
        if best < 0:
            break
        chosen.append(best)
        candidate[best] = False
    return chosen


def test_select_lowest_equals_repeated_minimum_with_ties():
    from povsim.components.registration import select_lowest as _select_lowest

    seed = 20261129
    u = rng.uniforms(seed, rng.STREAM_SAMPLE, 600)  # (600, 4): sizes, values, candidates, counts
    for t in range(600):
        n = int(u[t, 0] * 40)
        draws = rng.uniforms(seed, rng.STREAM_SAMPLE, n, month=t + 1)
        # half the cases with many ties (values 0..5), half with distinct values
        values = np.floor(draws[:, 0] * 6) if t % 2 else draws[:, 0]
        candidate = draws[:, 1] < 0.7
        count = int(u[t, 3] * 12)
        chosen = np.full(max(n, 1), -1, np.int64)
        taken = _select_lowest(values, candidate.copy(), count, chosen)
        assert list(chosen[:taken]) == _select_lowest_by_repeated_minimum(values, candidate, count)
