"""Poverty as the statistics measure it: the concept, the flows by period, people, the registry, CGH.

Each test holds a measured count against a count made by hand from the households'
state, or against an analytic value.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import NO_RULES, NO_SHOCKS, cfg, full_cfg

import povsim
from povsim import metrics as M
from povsim import rng
from povsim.components.base import FLAG_POOR, FLAG_REGISTERED
from povsim.components.census import cgh_index, coverage_by_decile, quantile_sums
from povsim.components.poverty import describe

ANNUAL = ["newly_poor_annual", "exits_from_poverty_annual", "returns_to_poverty_annual"]

#: support that changes nothing of a household's income: registering a household moves no income
NEUTRAL_SUPPORT = {
    "policy.support.transfer": 0.0,
    "policy.support.development_rate": 0.0,
    "policy.support.reimbursement": 0.5,  # = illness.reimbursement
    "policy.support.reemployment_multiplier": 1.0,
}


def _decembers(metrics):
    return metrics[metrics["month"].dt.month == 12]


def test_no_shocks_and_no_policy_no_flow():
    result = povsim.run(cfg(3_000, {**NO_SHOCKS, **NO_RULES}))
    m = result.metrics
    assert (m["poor"] > 0).all()  # not vacuous: there are poor households, and they stay poor
    for name in ANNUAL + ["newly_poor_monthly", "return_to_poverty_monthly"]:
        assert (m[name] == 0).all(), name
    for name in ANNUAL:
        assert (m[name + "_people"] == 0).all(), name


def test_without_illness_deducting_medical_spending_changes_nothing():
    base = {"illness.onset_probability": 0.0}
    a = povsim.run(full_cfg(3_000, base)).metrics
    b = povsim.run(full_cfg(3_000, {**base, "poverty.deduct_medical": True})).metrics
    assert (a["ill"] == 0).all()
    assert a.equals(b)


def test_deducting_medical_spending_raises_the_headcount():
    a = povsim.run(cfg(3_000)).metrics
    b = povsim.run(cfg(3_000, {"poverty.deduct_medical": True})).metrics
    assert (_decembers(b)["poor"].to_numpy() > _decembers(a)["poor"].to_numpy()).all()


def _run_by_hand(config):
    """Step a run month by month; keep every December's poverty flags and the month's totals."""
    sim = povsim.Simulation(config)
    flags, totals = {}, {}
    while not sim.done:
        month = sim.month
        totals[month] = sim.step()
        if month % 12 == 11 and month >= sim.params.time.record_start:
            flags[month] = (sim.population.households.flags & FLAG_POOR) != 0
    return sim, flags, totals


@pytest.fixture(scope="module")
def by_hand():
    return _run_by_hand(full_cfg(4_000, {"simulation.burn_in_years": 2}))


def test_year_to_year_flows_equal_hand_counts_of_december_statuses(by_hand):
    sim, flags, totals = by_hand
    size = sim.population.households.size.astype(np.int64)
    decembers = sorted(flags)
    assert len(decembers) == 8 + 2  # two burn-in Decembers, then 2013-2020
    checked = 0
    for k, month in enumerate(decembers):
        if month < sim.timeline.start or k == 0:
            continue
        now, before = flags[month], flags[decembers[k - 1]]
        earlier = np.zeros_like(now)
        for d in decembers[: k - 1]:
            earlier |= flags[d]
        new = now & ~before
        left = before & ~now
        back = new & earlier
        t = totals[month]
        assert t[M.NEWLY_POOR_ANNUAL] == new.sum() > 0
        assert t[M.EXITS_FROM_POVERTY_ANNUAL] == left.sum() > 0
        assert t[M.RETURNS_TO_POVERTY_ANNUAL] == back.sum()
        assert t[M.NEWLY_POOR_ANNUAL_PEOPLE] == size[new].sum()
        assert t[M.EXITS_FROM_POVERTY_ANNUAL_PEOPLE] == size[left].sum()
        assert t[M.RETURNS_TO_POVERTY_ANNUAL_PEOPLE] == size[back].sum()
        # under the calendar-year concept the status changes in December only
        assert t[M.NEWLY_POOR_MONTHLY] == t[M.NEWLY_POOR_ANNUAL]
        checked += 1
    assert checked == 8
    for month, t in totals.items():
        if month % 12 != 11:
            assert t[M.NEWLY_POOR_ANNUAL] == t[M.NEWLY_POOR_MONTHLY] == 0


def test_calendar_year_status_is_the_year_income_against_the_year_line():
    sim = povsim.Simulation(cfg(2_000))
    hh = sim.population.households
    seen = 0
    while not sim.done:
        month = sim.month
        before = hh.flags.copy()
        sim.step()
        poor = (hh.flags & FLAG_POOR) != 0
        if month % 12 == 11 and month >= sim.params.time.record_start:
            income = hh.net_income.sum(axis=1, dtype=np.int64)  # January to December of the year
            line = sim.timeline.line(month)
            assert np.array_equal(poor, income < line)
            seen += 1
        else:
            assert np.array_equal(poor, (before & FLAG_POOR) != 0)  # held until the next December
    assert seen == 4


def test_rolling_concept_assesses_every_month_and_agrees_in_december():
    calendar = povsim.run(cfg(2_000)).metrics
    rolling = povsim.run(cfg(2_000, {"poverty.concept": "rolling_12m"})).metrics
    assert rolling["poor"].nunique() > calendar["poor"].nunique()
    # the December statuses are the same; so are the year-to-year flows (but not the register built on them)
    dec_c, dec_r = _decembers(calendar), _decembers(rolling)
    assert dec_c["poor"].iloc[0] == dec_r["poor"].iloc[0]
    assert describe(povsim.load_config(overrides={"poverty.concept": "rolling_12m"}).poverty).startswith("per-capita")


def test_people_counts_are_household_counts_times_the_size():
    three = {"population.size_probabilities": [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]}
    m = povsim.run(full_cfg(3_000, three)).metrics
    pairs = [("poor", "poor_people"), ("registered", "registered_people"), ("exited", "exited_people"),
             ("removed_lookback", "removed_lookback_people"), ("entered_lookback", "added_lookback_people"),
             ("newly_identified", "newly_identified_people"), ("re_registered", "re_registered_people")]
    pairs += [(name, name + "_people") for name in ANNUAL]
    pairs += [(f"newly_identified_{r}", f"newly_identified_people_{r}") for r in M.ROUTES]
    for households, people in pairs:
        assert (m[people] == 3 * m[households]).all(), people
        assert m[households].sum() > 0 or households.startswith(("re_registered", "newly_identified_")), households
    entries = m[[f"entered_{r}" for r in M.ROUTES]].sum(axis=1)
    assert (m["people_entered"] == 3 * entries).all()


def test_registry_flows_split_entries_into_first_registrations_and_returns(full_result):
    m = full_result.metrics
    for route in M.ROUTES:
        first, again = m[f"newly_identified_{route}"], m[f"re_registered_{route}"]
        assert (first + again <= m[f"entered_{route}"]).all()
    assert m["newly_identified"].sum() > 0 and m["re_registered"].sum() > 0
    # the one-time registration registers households for the first time only
    assert m["newly_identified_registration"].sum() == m["entered_registration"].sum()
    table = M.registry_flows(m)
    assert table["re_registered"].sum() == m["re_registered"].sum()
    assert table.loc[(2014, "registration"), "newly_identified"] == m.loc[m["year"] == 2014, "entered_registration"].sum()


# --------------------------------------------------------------------------------------
# CGH and coverage
# --------------------------------------------------------------------------------------


def test_quantile_sums_known_answers():
    people = np.array([[10.0, 10.0, 20.0, 60.0]])
    values = np.array([[10.0, 0.0, 20.0, 30.0]])
    # the poorest 30 % of 100 people: bins 0 and 1 whole and half of bin 2; the poorest 40 %: bins 0-2
    assert quantile_sums(people, values, [0.3])[0, 0] == pytest.approx(10.0 + 0.0 + 10.0)
    assert quantile_sums(people, values, [0.4, 1.0])[0] == pytest.approx([30.0, 60.0])
    assert np.isnan(quantile_sums(np.zeros((1, 4)), values, [0.4])[0, 0])
    assert cgh_index(people, people)[0] == pytest.approx(1.0)  # everyone supported
    assert cgh_index(people, np.array([[10.0, 10.0, 10.0, 0.0]]))[0] == pytest.approx(2.5)  # all among the poorest
    # 40 supported, 20 of them among the poorest 40 %: (20 / 40) / 0.4
    assert cgh_index(people, np.array([[0.0, 0.0, 20.0, 20.0]]))[0] == pytest.approx(1.25)
    exact = np.array([[10.0, 10.0, 20.0, 60.0, 0.0]])
    poorest = np.array([[10.0, 10.0, 20.0, 0.0, 0.0]])
    assert cgh_index(exact, poorest)[0] == pytest.approx(2.5)
    cover = coverage_by_decile(exact, poorest)[0]
    assert cover[:4] == pytest.approx(1.0) and cover[4:] == pytest.approx(0.0)


def _december_with_register(chosen_of):
    """Step a policy-free run to 2014-12 twice from the same state: once to see the incomes, once with a register."""
    config = cfg(20_000, {**NO_RULES, **NEUTRAL_SUPPORT, "simulation.end": "2014-12"})
    sim = povsim.Simulation(config)
    december = 2014 * 12 + 11
    while sim.month < december:
        sim.step()
    hh = sim.population.households
    saved = [a.copy() for a in hh]
    sim.step()
    income = hh.net_income.sum(axis=1, dtype=np.int64).astype(np.float64)  # per-capita income of the year
    for a, b in zip(hh, saved):
        a[...] = b
    sim.month = december
    chosen = chosen_of(income, hh.size.astype(np.int64))
    hh.flags[chosen] |= np.uint8(FLAG_REGISTERED)
    totals = sim.step()
    assert np.array_equal(hh.net_income.sum(axis=1, dtype=np.int64), income)  # registering moved no income
    row = M.derive(totals[None, :], [december])
    return row.iloc[0], chosen


def test_cgh_of_a_random_register_is_one():
    def random_half(income, size):
        return rng.uniforms(7, rng.STREAM_SAMPLE, income.shape[0], 0, 5)[:, 0] < 0.5

    row, chosen = _december_with_register(random_half)
    n = chosen.sum()
    sd = np.sqrt(0.4 * 0.6 / n) / 0.4 * 1.3  # the binomial SD of the share, widened for unequal sizes
    assert abs(row["cgh"] - 1.0) < 4 * sd
    assert np.nanmax(np.abs(row[[f"coverage_decile_{d}" for d in range(1, 11)]].to_numpy(float) - 0.5)) < 0.05


def test_cgh_of_a_register_of_exactly_the_poorest_40_percent_is_2_5():
    def poorest_40(income, size):
        order = np.argsort(income, kind="stable")
        people = np.cumsum(size[order])
        chosen = np.zeros(income.shape[0], bool)
        chosen[order[people <= 0.4 * people[-1]]] = True
        return chosen

    row, _ = _december_with_register(poorest_40)
    assert row["cgh"] == pytest.approx(2.5, abs=0.03)  # 2.7 %-wide bins: the quantile's bin split linearly
    cover = row[[f"coverage_decile_{d}" for d in range(1, 11)]].to_numpy(float)
    assert cover[:3] == pytest.approx(1.0, abs=0.03) and cover[5:] == pytest.approx(0.0, abs=0.03)


def test_poor_area_counties_known_answers():
    from povsim.population import poor_area_counties

    means = [3.0, 1.0, 2.0, 4.0]
    households = [10, 10, 10, 10]
    assert poor_area_counties(means, households, 0.25).tolist() == [0, 1, 0, 0]
    assert poor_area_counties(means, households, 0.26).tolist() == [0, 1, 1, 0]  # the county that crosses the share
    assert poor_area_counties(means, households, 0.0).tolist() == [0, 0, 0, 0]
    assert poor_area_counties(means, households, 1.0).tolist() == [1, 1, 1, 1]
    assert poor_area_counties([1.0, 1.0, 2.0], [5, 5, 10], 0.5).tolist() == [1, 1, 0]  # ties by county number


def test_poor_areas_are_the_poorest_counties_and_their_counts_add_up():
    """The poor areas hold about their share of households, are the counties of lowest income, and their
    people, income and transfers are those of their villages' households."""
    cfg = full_cfg(6_000, {"population.households_per_village": 100, "population.poor_area_share": 0.3})
    sim = povsim.Simulation(cfg)
    pop = sim.population
    area = pop.villages.poor_area.astype(bool)
    county = pop.village_county
    poor_counties = set(county[area].tolist())
    households = np.diff(pop.village_start)
    assert 0.3 <= households[area].sum() / households.sum() < 0.3 + households.max() * 2 / households.sum()
    level = np.array([pop.households.level[pop.village_start[v]:pop.village_start[v + 1]].mean()
                      for v in range(pop.n_villages)])
    by_county = {c: level[county == c].mean() for c in set(county.tolist())}
    richest_poor = max(by_county[c] for c in poor_counties)
    others = [by_county[c] for c in by_county if c not in poor_counties]
    assert np.mean([x > richest_poor for x in others]) > 0.8  # ranked by the county mean, not the sample
    size = pop.households.size.astype(np.int64)
    in_area = np.repeat(area, households)
    m = sim.run().metrics
    assert (m["poor_area_people"] == size[in_area].sum()).all()
    assert (m["poor_area_transfers_yuan"] <= m["transfers_yuan"] + 1e-9).all()
    assert m["poor_area_transfers_yuan"].sum() > 0
    december = _decembers(m)
    per_capita = december["poor_area_income"] / december["poor_area_people"]
    assert (per_capita > 1000).all() and (np.diff(per_capita.to_numpy()) > 0).mean() >= 0.8
    assert (m.loc[m["month"].dt.month != 12, "poor_area_income"] == 0).all()
