"""The rules as China ran them, against analytic results: the registration's survey and basis, the
administrative memory, the look-back as error correction, exits on stable income, exit plans, cadres.

Each test switches on what it studies (:data:`helpers.NO_RULES` switches every rule off first).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
import pytest
from helpers import NO_RULES

import povsim
from povsim import metrics as M
from povsim.components import assessment
from povsim.components.registration import BASIS_SCALE
from povsim.config import parse_month
from povsim.population import FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER

NO_EVIDENCE = {f"policy.assessment.exclusion_shares.{k}": 0.0 for k in
               ("public_salary", "village_official", "urban_house", "vehicle", "business")}


def _cfg(households: int, overrides: dict, period=("2013-01", "2016-12")):
    return povsim.load_config(overrides={
        **NO_RULES, "simulation.start": period[0], "simulation.end": period[1], "simulation.burn_in_years": 1,
        "population.households": households, **overrides,
    })


def _step_to(sim, month: str) -> None:
    target = parse_month(month)
    while sim.month < target:
        sim.step()


def _row(metrics: pd.DataFrame, month: str) -> pd.Series:
    return metrics[metrics["month"] == pd.Timestamp(month + "-01")].iloc[0]


# --- the registration's survey and basis ------------------------------------------------------------


def test_the_survey_counts_the_poor_people_and_keeps_every_basis():
    """In the survey month each village's poor people are counted and every household's basis is its
    12-month income over the line (rounded to 1/10000 of the line); the quota registration then puts about
    quota_scale registered people per survey poor person on the register."""
    config = _cfg(20_000, {"policy.registration.enabled": True})
    sim = povsim.Simulation(config)
    _step_to(sim, "2014-01")  # the survey month, 2013-12, has run
    pop, hh = sim.population, sim.population.households
    poor = (hh.flags & FLAG_POOR) != 0
    people = np.where(poor, hh.size.astype(np.int64), 0)
    np.testing.assert_array_equal(pop.villages.survey_poor, np.add.reduceat(people, pop.village_start[:-1]))
    line = config.poverty.lines[2013]
    income = hh.net_income.astype(np.int64).sum(axis=1)
    expected = np.clip(np.floor(np.maximum(income, 0) / line * BASIS_SCALE + 0.5), 0, 65535)
    np.testing.assert_array_equal(hh.basis, expected.astype(np.uint16))
    survey_people = int(pop.villages.survey_poor.sum())
    _step_to(sim, "2014-11")
    registered = (hh.flags & FLAG_REGISTERED) != 0
    registered_people = int(hh.size[registered].astype(np.int64).sum())
    scale = config.policy.registration.quota_scale
    assert abs(registered_people / (scale * survey_people) - 1.0) < 0.02


def test_the_survey_month_is_checked():
    with pytest.raises(Exception, match="survey_month"):
        _cfg(100, {"policy.registration.enabled": True, "policy.registration.survey_month": "2014-10"})
    with pytest.raises(Exception, match="year of income history"):
        _cfg(100, {"policy.registration.enabled": True, "policy.registration.survey_month": "2012-06"})


# --- the administrative memory ------------------------------------------------------------------------


@nb.njit(cache=False)
def _office_errors(k0, k1, n, month, pa):
    out = np.empty(n)
    persistent = np.empty(n)
    for h in range(n):
        u = povsim.rng.draw4(k0, k1, 8, h, month, 1)
        out[h] = assessment.office_error(k0, k1, h, u[0], u[1], pa)
        persistent[h] = assessment.household_draws(k0, k1, h)[0]
    return out, persistent


@pytest.mark.parametrize("share", [0.0, 0.5, 0.8])
def test_the_persistent_component_is_the_households_own(share):
    """The persistent normal is the same in every assessment of a household and independent across
    households; two assessments of one household correlate by persistent_share; each error is standard."""
    config = _cfg(100, {"policy.assessment.persistent_share": share})
    pa = povsim.components.make_params(config).assessment
    k0, k1 = povsim.rng.split_seed(config.seed)
    n = 40_000
    a, persistent_a = _office_errors(k0, k1, n, 24_000, pa)
    b, persistent_b = _office_errors(k0, k1, n, 24_013, pa)
    np.testing.assert_array_equal(persistent_a, persistent_b)
    bound = 4.0 / np.sqrt(n)
    assert abs(np.corrcoef(a, b)[0, 1] - share) < bound
    assert abs(np.corrcoef(persistent_a[0::2], persistent_a[1::2])[0, 1]) < 2 * bound
    assert abs(np.corrcoef(a[0::2], a[1::2])[0, 1]) < 2 * bound
    assert abs(a.std() - 1.0) < 0.02 and abs(a.mean()) < bound


def test_exclusion_evidence_has_its_declared_share():
    config = _cfg(100, {})
    shares = config.policy.assessment.exclusion_shares
    p = assessment.exclusion_probability(shares)
    assert p == pytest.approx(1.0 - np.prod([1.0 - s for s in shares.values()]))
    pa = povsim.components.make_params(config).assessment
    k0, k1 = povsim.rng.split_seed(config.seed)
    n = 200_000
    held = np.array([assessment.household_draws(k0, k1, h)[1] < pa.exclusion_probability for h in range(0, n, 10)])
    assert abs(held.mean() - p) < 4 * np.sqrt(p * (1 - p) / held.size)


# --- the look-back --------------------------------------------------------------------------------------

LOOKBACK = {
    "policy.registration.enabled": True,
    "policy.registration.method": "threshold",
    "policy.registration.assessment_sd": 0.0,
    "policy.lookback.enabled": True,
    "policy.lookback.assessment_sd": 0.0,
    "policy.review.enabled": True,  # exits from 2014: exited households are not re-checked
    "policy.review.first": "2016-10",
}


def test_an_exact_lookback_without_evidence_removes_and_adds_no_one():
    """With an exact registration and look-back and no exclusion evidence, the registration was right on
    its basis: the look-back removes no one and adds no one, though incomes moved since."""
    m = povsim.run(_cfg(20_000, {**LOOKBACK, **NO_EVIDENCE})).metrics
    window = (m["month"] >= pd.Timestamp("2015-08-01")) & (m["month"] <= pd.Timestamp("2016-06-01"))
    assert m.loc[window, "assessed_lookback"].sum() > 15_000
    assert m["removed_lookback"].sum() == 0 and m["entered_lookback"].sum() == 0
    # households that rose out of poverty since registration were found, and left to exit
    assert m["referred_exit_lookback"].sum() > 0


def test_an_exact_lookback_removes_exactly_the_registered_with_evidence():
    """With evidence held, the exact look-back removes the registered holding it, and only them."""
    config = _cfg(20_000, {**LOOKBACK, "policy.review.enabled": False,
                           "policy.assessment.exclusion_shares.vehicle": 0.05})
    sim = povsim.Simulation(config)
    _step_to(sim, "2015-08")
    hh = sim.population.households
    k0, k1 = sim.key
    pa = sim.params.assessment
    evidence = np.array([assessment.household_draws(k0, k1, h)[1] < pa.exclusion_probability
                         for h in range(hh.size.shape[0])])
    registered_before = (hh.flags & FLAG_REGISTERED) != 0
    _step_to(sim, "2016-07")
    m = pd.DataFrame([sim.totals[k] for k in sorted(sim.totals)], columns=None)
    removed = int(m[M.REMOVED_LOOKBACK].sum())
    by_evidence = int(m[M.REMOVED_LOOKBACK_EVIDENCE].sum())
    assert removed == by_evidence == int((registered_before & evidence).sum()) > 0
    assert not ((hh.flags & FLAG_REGISTERED) != 0)[evidence].any()


# --- exits on stable income --------------------------------------------------------------------------


@pytest.mark.parametrize("years", [1, 3])
def test_no_household_exits_before_k_consecutive_years_above_the_threshold(years):
    """With an exact exit assessment, a household exits only after ``years`` consecutive December
    assessments at or above the exit multiple of the line: none within years - 1 years of a fall below it."""
    multiple = 1.2
    config = _cfg(20_000, {
        "policy.registration.enabled": True, "policy.review.enabled": True, "policy.review.assessment_sd": 0.0,
        "policy.review.exit_years": years, "policy.review.exit_multiple": multiple,
        "policy.review.guarantees": False, "policy.review.first": "2020-10",
    }, period=("2013-01", "2020-12"))
    sim = povsim.Simulation(config)
    hh = sim.population.households
    history = []  # (registered at the assessment, income at or above the threshold) per exit month
    exits = 0
    for year in range(2014, 2021):
        _step_to(sim, f"{year}-12")
        registered = (hh.flags & FLAG_REGISTERED) != 0
        sim.step()
        income = hh.net_income.astype(np.int64).sum(axis=1)
        above = income >= multiple * config.poverty.lines[year]
        history.append((registered, above))
        exited = registered & (hh.exit_month == parse_month(f"{year}-12") - MONTH_ORIGIN)
        exits += int(exited.sum())
        recent = history[-years:]
        if exited.any():
            assert len(recent) == years
            for was_registered, was_above in recent:
                assert was_registered[exited].all() and was_above[exited].all()
        # and every registered household with that run did exit (guarantees off, assessment exact)
        if len(history) >= years:
            run = np.logical_and.reduce([r & a for r, a in history[-years:]])
            np.testing.assert_array_equal(exited, run & registered)
    assert exits > 0


def test_no_household_exits_from_an_unsafe_house():
    """Every house unsafe until its renovation, spread evenly to 2030: a household exits only once its house
    is renovated (its renovation month from its housing draw), and the guarantee held others back."""
    config = _cfg(20_000, {
        "policy.registration.enabled": True, "policy.review.enabled": True, "policy.review.exit_years": 1,
        "policy.review.unsafe_housing_share": 1.0, "policy.review.housing_safe_by": "2030-12",
        "policy.review.first": "2016-10",
    })
    sim = povsim.Simulation(config)
    result = sim.run()
    hh = sim.population.households
    rv = sim.params.review
    k0, k1 = sim.key
    u = np.array([assessment.household_draws(k0, k1, h)[2] for h in range(hh.size.shape[0])])
    renovated = rv.exit_first + np.minimum((u * rv.housing_span).astype(np.int64), rv.housing_span - 1)
    exited = hh.exit_month != NEVER
    exit_month = hh.exit_month.astype(np.int64) + MONTH_ORIGIN
    assert exited.sum() > 0
    assert (renovated[exited] <= exit_month[exited]).all()
    assert result.metrics["exit_held_guarantees"].sum() > 0


# --- exit plans --------------------------------------------------------------------------------------


def test_an_exit_plan_is_met_exactly_when_enough_households_are_eligible():
    """No natural exits (a run of 50 years is needed), an exact assessment, no guarantees: in the plan's
    month each village exits its registered households highest income first until its target of people
    is met, and no further; the targets add up to the plan scaled to the simulated people."""
    plan = 30.0  # million people of 970 million: about 3 % of people, fewer than are registered
    config = _cfg(20_000, {
        "policy.registration.enabled": True, "policy.review.enabled": True, "policy.review.exit_years": 50,
        "policy.review.assessment_sd": 0.0, "policy.review.guarantees": False, "policy.review.first": "2016-10",
        "policy.review.exit_plan": {2015: plan},
    })
    sim = povsim.Simulation(config)
    _step_to(sim, "2015-12")
    pop, hh = sim.population, sim.population.households
    registered = (hh.flags & FLAG_REGISTERED) != 0
    people = int(hh.size.astype(np.int64).sum())
    totals = sim.step()
    target = pop.villages.exit_target.copy()
    assert target.sum() == round(plan / 970.0 * people) < hh.size[registered].astype(np.int64).sum()
    income = hh.net_income.astype(np.int64).sum(axis=1)
    exited = hh.exit_month == parse_month("2015-12") - MONTH_ORIGIN
    assert totals[M.EXITED] == totals[M.EXITED_PLAN] == exited.sum() > 0
    for v in range(pop.n_villages):
        lo, hi = pop.village_start[v], pop.village_start[v + 1]
        idx = np.flatnonzero(registered[lo:hi])
        order = idx[np.lexsort((idx, -income[lo:hi][idx]))]  # highest income first, ties by index
        cumulative = np.cumsum(hh.size[lo:hi][order].astype(np.int64))
        take = int(np.searchsorted(cumulative, target[v])) + 1 if target[v] > 0 else 0
        take = min(take, order.size)
        expected = np.zeros(hi - lo, bool)
        expected[order[:take]] = True
        np.testing.assert_array_equal(exited[lo:hi], expected, err_msg=f"village {v}")
    # the next year has no plan: no exits at all
    _step_to(sim, "2016-12")
    assert sim.step()[M.EXITED] == 0


def test_exit_plans_are_the_same_on_blocks():
    from povsim.cluster import run_split

    config = _cfg(6_000, {
        "policy.registration.enabled": True, "policy.review.enabled": True,
        "policy.review.exit_plan": {2015: 30.0, 2016: 30.0}, "policy.review.first": "2016-10",
    })
    whole = povsim.run(config).metrics
    split = run_split(config, blocks=3).metrics
    assert whole["exited_plan"].sum() > 0
    pd.testing.assert_frame_equal(whole, split)


# --- cadres --------------------------------------------------------------------------------------------

CADRES = {
    "policy.channels.cadre.enabled": True,
    "policy.channels.cadre.start": "2017-01",
    "policy.verification.assessment_sd": 0.0,
}


def test_more_cadre_visits_visit_and_flag_a_superset():
    """From the same state (the channel's first month), the households cadres visit and flag with more
    visits include those visited and flagged with fewer."""
    code = M.ROUTE_CODE["cadre"]
    visited, flagged = {}, {}
    for visits in (4, 8, 100):
        sim = povsim.Simulation(_cfg(10_000, {**CADRES, "policy.channels.cadre.visits_per_village": visits},
                                     period=("2016-07", "2017-12")))
        _step_to(sim, "2017-01")
        sim.step()
        hh = sim.population.households
        visited[visits] = hh.last_visit == parse_month("2017-01") - MONTH_ORIGIN
        flagged[visits] = hh.pending_route == code
    for fewer, more in ((4, 8), (8, 100)):
        assert visited[fewer].sum() < visited[more].sum() and (visited[more] >= visited[fewer]).all()
        assert flagged[fewer].sum() < flagged[more].sum() and (flagged[more] >= flagged[fewer]).all()


@pytest.mark.parametrize("seed", [1, 2])
def test_more_effort_from_the_same_cadres_does_not_find_fewer_poor(seed):
    """More visits, and visiting every household, never leave more of the poor unregistered."""
    missed = {}
    for visits in (4, 8, 1000):
        m = povsim.run(_cfg(10_000, {**CADRES, "policy.channels.cadre.visits_per_village": visits, "seed": seed},
                            period=("2016-07", "2018-12"))).metrics
        late = m[m["month"] >= pd.Timestamp("2017-07-01")]
        missed[visits] = float((late["poor"] - late["poor_registered"]).sum() / late["poor"].sum())
    assert missed[8] <= missed[4] + 0.005
    assert missed[1000] <= missed[8] + 0.005
    assert missed[1000] < missed[4]
