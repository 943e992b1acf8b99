"""Validation outputs: the county exit assessments follow the official definitions; flows add up."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import NO_SHOCKS, full_cfg

import povsim
from povsim.components.base import NO_MONTH
from povsim.components.registration import below_with_error
from povsim.config import parse_month
from povsim.population import FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER, structure
from povsim.validate import (
    assessment_units, assessor_error, county_assessment, last_review, lookback_shares, yearly_flows,
)

#: a few thousand households in counties of 600 (2 villages of 300), 10 counties over 2 provinces
SMALL = {"population.villages_per_county": 2, "population.households_per_village": 300, "population.provinces": 2}
EVERYONE = 1e12  #: a people target no stratum reaches: every household is sampled


def _units(sizes, provinces, min_households):
    """:func:`assessment_units` of counties of ``sizes`` households, each county two villages."""
    village_sizes = [part for n in sizes for part in (n // 2, n - n // 2)]
    village_start = np.concatenate([[0], np.cumsum(village_sizes)]).astype(np.int64)
    village_county = np.repeat(np.arange(len(sizes)), 2).astype(np.int32)
    return assessment_units(village_county, village_start, np.asarray(provinces, np.int32), min_households).tolist()


def test_assessment_units_known_answers():
    # pooled in order to 10; the short leftover joins the province's previous unit
    assert _units([5] * 7, [0] * 7, 10) == [0, 0, 1, 1, 2, 2, 2]
    assert _units([5] * 4, [0] * 4, 10) == [0, 0, 1, 1]
    assert _units([4, 4, 4, 4, 4], [0] * 5, 10) == [0] * 5  # 12, then a short 8 joins it
    # a county that alone reaches the minimum is a unit by itself; a pool still short when it comes
    # joins the unit before it, or stays a unit if it is the province's first
    assert _units([25, 5, 5, 5, 25, 5, 5], [0] * 7, 10) == [0, 1, 1, 1, 2, 3, 3]
    assert _units([5, 25, 5, 5], [0] * 4, 10) == [0, 1, 2, 2]
    assert _units([25, 4], [0, 0], 10) == [0, 0]
    # provinces are never mixed: a province's only, short, unit stays short
    assert _units([5, 5, 5, 5, 5], [0, 0, 0, 1, 1], 10) == [0, 0, 0, 1, 1]
    assert _units([5, 5, 3], [0, 0, 1], 10) == [0, 0, 1]
    assert _units([3], [0], 10) == [0]
    assert _units([5, 6, 7], [0, 0, 0], 1) == [0, 1, 2]


def test_assessment_units_of_the_experiments_structure():
    """2,000,000 households in counties of 600 over 31 provinces: units of consecutive counties of one
    province, each of at least 20,000 households and less than 20,000 + a county past it twice over."""
    cfg = povsim.load_config("experiments/china_2014_2020.toml", overrides={"population.households": 2_000_000})
    village_start, village_county, county_province = structure(cfg)
    unit = assessment_units(village_county, village_start, county_province, 20_000)
    households = np.bincount(village_county, weights=np.diff(village_start)).astype(np.int64)
    assert unit[0] == 0 and set(np.diff(unit)) <= {0, 1}  # consecutive, numbered in order
    per_unit = np.bincount(unit, weights=households)
    for u in range(unit.max() + 1):
        assert len(set(county_province[unit == u])) == 1
    assert per_unit.min() >= 20_000
    assert per_unit.max() < 2 * 20_000 + 600
    assert 80 <= unit.max() + 1 <= 100


def test_assessor_error_and_judgement():
    for z_own, z_office in [(0.3, -1.7), (-2.2, 0.4), (1.0, 1e-3)]:
        assert assessor_error(z_own, z_office, 1.0) == z_office
        assert assessor_error(z_own, z_office, 0.0) == z_own
        assert assessor_error(z_own, z_office, 0.6) == pytest.approx(0.8 * z_own + 0.6 * z_office, rel=1e-12)
    assert below_with_error(0.0, 3000.0, 0.2, 5.0) and below_with_error(-10.0, 3000.0, 0.2, -5.0)
    assert below_with_error(2999.0, 3000.0, 0.0, 3.0) and not below_with_error(3000.0, 3000.0, 0.0, -3.0)
    assert below_with_error(3200.0, 3000.0, 0.2, -1.0) == (3200.0 * math.exp(-0.2) < 3000.0)
    assert not below_with_error(2900.0, 3000.0, 0.2, 1.0)
    first = parse_month("2017-10")
    assert last_review(NO_MONTH, parse_month("2019-12")) == NO_MONTH
    assert last_review(first, parse_month("2017-09")) == NO_MONTH
    assert last_review(first, parse_month("2017-12")) == first
    assert last_review(first, parse_month("2019-10")) == first + 24
    assert last_review(first, parse_month("2020-09")) == first + 24


@pytest.mark.parametrize("bad, message", [
    ({"office_share": 1.5}, "office_share=1.5"),
    ({"office_share": -0.1}, "office_share=-0.1"),
    ({"assessor_sd": -0.2}, "assessor_sd=-0.2"),
    ({"people_target": 0}, "people_target=0"),
    ({"min_households": 0}, "min_households=0"),
])
def test_bad_arguments_are_refused_before_the_run(bad, message):
    sim = povsim.Simulation(full_cfg(600, SMALL))
    with pytest.raises(ValueError, match=message):
        county_assessment(sim, [2017 * 12 + 11], **bad)
    assert sim.month == sim.timeline.first


def _strata(sim, month):
    """Per household: its assessment unit, in the exited stratum, in the non-registered stratum, poor, people."""
    pop = sim.population
    hh = pop.households
    registered = (hh.flags & FLAG_REGISTERED) != 0
    exit_month = hh.exit_month.astype(np.int64)
    exited = ~registered & (exit_month != NEVER) & (month - MONTH_ORIGIN - exit_month < 12)
    return exited, ~registered & ~exited, (hh.flags & FLAG_POOR) != 0, hh.size.astype(np.int64)


@pytest.fixture(scope="module")
def census():
    """Everyone assessed, by an assessor without error, in December 2018 and at the run's end (2020-12)."""
    sim = povsim.Simulation(full_cfg(6_000, SMALL))
    table = county_assessment(sim, [2018 * 12 + 11, 2020 * 12 + 11], people_target=EVERYONE, min_households=1_200,
                              assessor_sd=0.0)
    return sim, table


def test_an_exact_assessor_reports_the_true_rates(census):
    _, table = census
    assert len(table) == 2 * 4
    for judged in ("wrong_exit_rate", "missed_rate"):
        a, b = table[judged].to_numpy(), table[judged + "_true"].to_numpy()
        assert ((a == b) | (np.isnan(a) & np.isnan(b))).all(), judged


def test_a_full_sample_gives_the_census_rates_in_people(census):
    sim, table = census
    pop = sim.population
    end = sim.timeline.end
    rows = table[table["month"] == "2020-12"].set_index("unit")
    county_unit = assessment_units(pop.village_county, pop.village_start, pop.county_province, 1_200)
    assert county_unit.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    unit = np.repeat(county_unit[pop.village_county], np.diff(pop.village_start))
    exited, nonregistered, poor, people = _strata(sim, end)
    assert exited.sum() > 0
    for u, row in rows.iterrows():
        mine = unit == u
        assert row["counties"] == (county_unit == u).sum()
        assert row["households"] == mine.sum()
        for name, stratum in (("exited", exited), ("nonregistered", nonregistered)):
            s = mine & stratum
            assert row[f"{name}_sampled"] == s.sum()
            assert row[f"{name}_people"] == row[f"{name}_people_sampled"] == people[s].sum()
        assert row["wrong_exit_rate_true"] == people[mine & exited & poor].sum() / people[mine & exited].sum()
        assert row["missed_rate_true"] == people[mine & nonregistered & poor].sum() / people[mine & nonregistered].sum()
    assert (rows["wrong_exit_rate_true"] > 0).any() and (rows["missed_rate_true"] > 0).any()


def test_an_assessor_repeating_the_office_finds_no_wrong_exits():
    """Constant incomes and one line: an assessor with the office's error (office_share = 1, the review's
    SD) judges each household exactly as the last exit assessment (2017-12, 2018-12) did, and that let exit
    only households it assessed at or above the line; by true status some of them are poor."""
    # the guarantees off: with constant incomes, unsafe houses would keep whole units from exiting before 2018
    cfg = full_cfg(6_000, {**SMALL, **NO_SHOCKS, "simulation.end": "2018-12", "policy.review.guarantees": False})
    assert cfg.policy.review.exit_multiple == 1.0 and cfg.policy.review.first == "2017-10"
    sim = povsim.Simulation(cfg)
    table = county_assessment(sim, [2017 * 12 + 11, 2018 * 12 + 11], people_target=EVERYONE, min_households=1_200,
                              assessor_sd=cfg.policy.review.assessment_sd, office_share=1.0)
    assert len(table) == 2 * 4
    assert (table["exited_sampled"] > 0).all()
    assert (table["wrong_exit_rate"] == 0.0).all()
    for month in ("2017-12", "2018-12"):
        assert (table.loc[table["month"] == month, "wrong_exit_rate_true"] > 0.0).any(), month


def test_sampled_people_are_near_the_target():
    """Each household of a stratum is sampled with p = target / people: the sampled people have mean
    target and variance sum(size^2) p (1 - p) over the stratum."""
    target = 100
    cfg = full_cfg(20_000, {**SMALL, "population.provinces": 1, "simulation.end": "2018-12"})
    sim = povsim.Simulation(cfg)
    table = county_assessment(sim, [2018 * 12 + 11], people_target=target, min_households=9_000)
    pop = sim.population
    county_unit = assessment_units(pop.village_county, pop.village_start, pop.county_province, 9_000)
    unit = np.repeat(county_unit[pop.village_county], np.diff(pop.village_start))
    exited, nonregistered, _, people = _strata(sim, sim.timeline.end)
    assert len(table) == 2
    for u, row in table.set_index("unit").iterrows():
        for name, stratum in (("exited", exited), ("nonregistered", nonregistered)):
            s = (unit == u) & stratum
            assert row[f"{name}_people"] == people[s].sum() >= 5 * target
            p = target / people[s].sum()
            sd = np.sqrt((people[s] ** 2).sum() * p * (1 - p))
            assert abs(row[f"{name}_people_sampled"] - target) < 4.5 * sd, name
            n_sd = np.sqrt(s.sum() * p * (1 - p))
            assert abs(row[f"{name}_sampled"] - s.sum() * p) < 4.5 * n_sd, name
    for rate in ("wrong_exit_rate", "missed_rate", "wrong_exit_rate_true", "missed_rate_true"):
        assert table[rate].between(0, 1).all()


def test_flows_and_lookback_shares_agree_with_the_metrics(full_result):
    m = full_result.metrics
    flows = yearly_flows(m)
    assert list(flows.index) == [2014, 2015, 2016, 2017, 2018, 2019]
    for year, row in flows.iterrows():
        here = m[m["year"] == year]
        assert row["exits"] == here["exited"].sum()
        assert row["exits_people"] == here["exited_people"].sum()
        assert row["re_registered"] == here[[c for c in m.columns if c.startswith("re_registered_")
                                             and "people" not in c]].to_numpy().sum()
        assert row["returns_to_poverty_people"] == here["returns_to_poverty_annual_people"].sum()
    shares = lookback_shares(full_result.events)
    lb = full_result.events.set_index("event").loc["lookback"]
    assert shares["removed_share"] == lb["removed"] / lb["register_before"]
    assert shares["added_share"] == lb["added"] / lb["register_before"]
