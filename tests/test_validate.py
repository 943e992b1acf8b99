"""Validation outputs: the county exit assessments follow the official definitions; flows add up; the panel
dynamics, the summaries over seeds and the targets' deviations give known answers."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from helpers import NO_SHOCKS, full_cfg

import povsim
from povsim.calibrate import Target
from povsim.components.base import NO_MONTH
from povsim.components.registration import below_with_error
from povsim.config import ConfigError, parse_month
from povsim.population import FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER, structure
from povsim.validate import (
    DecemberPanel, add_arguments, assessment_summary, assessment_units, assessor_error, check_arguments,
    county_assessment, exits_after, headline, last_review, lookback_shares, mean_range, returns_after_exit,
    target_deviations, target_table, yearly_flows,
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
    """Everyone assessed, by an assessor without error, in December 2018 and at the run's end (2020-12).

    A transfer of 40 yuan a month throughout (not the schedule's large 2019 step), so that some exited
    households are poor in 2020 and the rates compared below are not all zero."""
    sim = povsim.Simulation(full_cfg(6_000, {**SMALL, "policy.support.transfer": 40.0}))
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
    # the guarantees off: with constant incomes, unsafe houses would keep whole units from exiting before 2018;
    # no exit plan: a plan pulls exits forward past the assessment
    cfg = full_cfg(6_000, {**SMALL, **NO_SHOCKS, "simulation.end": "2018-12", "policy.review.guarantees": False,
                           "policy.review.exit_plan": {}})
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
    assert "removed_people" not in lookback_shares(full_result.events)
    shares = lookback_shares(full_result.events, m)
    lb = full_result.events.set_index("event").loc["lookback"]
    assert shares["removed_share"] == lb["removed"] / lb["register_before"]
    assert shares["added_share"] == lb["added"] / lb["register_before"]
    people = shares["register_people_before"]
    window = m[(m["month"] >= pd.Timestamp(f"{lb['start']}-01")) & (m["month"] <= pd.Timestamp(f"{lb['end']}-01"))]
    assert people == m.loc[m["month"] == pd.Timestamp(f"{lb['start']}-01") - pd.DateOffset(months=1),
                           "registered_people"].item() > lb["register_before"]
    assert shares["removed_people"] == window["removed_lookback_people"].sum() > 0
    assert shares["added_people"] == window["added_lookback_people"].sum() > 0
    assert shares["removed_people_share"] == shares["removed_people"] / people
    assert shares["added_people_share"] == shares["added_people"] / people
    assert (flows["people"] == [m.loc[m["month"] == pd.Timestamp(f"{y}-12-01"), "people"].item()
                                for y in flows.index]).all()


# --------------------------------------------------------------------------------------
# The county assessments' summary by cohort
# --------------------------------------------------------------------------------------


def test_assessment_summary_known_answers():
    nan = np.nan
    # month, wrong-exit rate, missed rate (by the assessor); the true rates are the same, halved
    rows = [
        ("2017-12", 0.0, 0.0),  # neither: passing
        ("2017-12", 0.0, 0.01),  # no wrong exit; passing
        ("2017-12", 0.03, 0.0),  # no missed; fails
        ("2017-12", nan, 0.0),  # no exited sample: counts for the missed rate only
        ("2018-12", 0.02, 0.02),  # at most 2 % each: passing
        ("2018-12", 0.05, nan),
        ("2019-12", 0.0, nan),  # no non-registered sample anywhere: those shares are NaN
    ]
    units = pd.DataFrame(rows, columns=["month", "wrong_exit_rate", "missed_rate"])
    units["unit"] = range(len(units))
    units["wrong_exit_rate_true"] = units["wrong_exit_rate"] / 2
    units["missed_rate_true"] = units["missed_rate"] / 2
    got = assessment_summary(units, "assessor")
    assert list(got.index) == ["2017-12", "2018-12", "2019-12"]
    a, b = got.loc["2017-12"], got.loc["2018-12"]
    assert a["units"] == 4 and b["units"] == 2
    assert a["wrong_exit_rate_median"] == 0.0 and a["wrong_exit_rate_max"] == 0.03
    assert a["share_units_wrong_exit_over_2pct"] == pytest.approx(1 / 3)
    assert a["share_units_missed_over_2pct"] == 0.0
    assert a["share_units_zero_wrong_exits"] == pytest.approx(2 / 3)
    assert a["share_units_zero_missed"] == pytest.approx(3 / 4)
    assert a["share_units_zero_both"] == pytest.approx(1 / 3)
    assert a["share_units_passing"] == pytest.approx(2 / 3)
    assert b["share_units_zero_wrong_exits"] == 0.0 and b["share_units_zero_missed"] == 0.0
    assert b["share_units_zero_both"] == 0.0 and b["share_units_passing"] == 1.0
    assert b["share_units_wrong_exit_over_2pct"] == 0.5
    c = got.loc["2019-12"]
    assert c["share_units_zero_wrong_exits"] == 1.0 and math.isnan(c["share_units_zero_missed"])
    assert math.isnan(c["share_units_zero_both"]) and math.isnan(c["share_units_passing"])
    true = assessment_summary(units, "true")  # halved: 0.03 -> 0.015 passes, 0.05 -> 0.025 does not
    assert true.loc["2017-12", "share_units_passing"] == 1.0
    assert true.loc["2017-12", "share_units_zero_both"] == pytest.approx(1 / 3)
    assert true.loc["2018-12", "share_units_wrong_exit_over_2pct"] == 0.5
    with pytest.raises(ValueError, match="judgement='perfect'"):
        assessment_summary(units, "perfect")


# --------------------------------------------------------------------------------------
# Panel-sense dynamics
# --------------------------------------------------------------------------------------

#: four households over five Decembers (years x households): sizes 1, 2, 3, 4
POOR = np.array([
    [1, 1, 1, 0],
    [0, 1, 1, 0],
    [0, 0, 1, 1],
    [1, 0, 0, 1],
    [1, 0, 0, 0],
], bool)
SIZES = np.tile(np.array([1, 2, 3, 4]), (5, 1))


def test_exits_after_known_answers():
    got = exits_after(POOR, SIZES, range(1, 6))
    # k = 1: poor people at t = 0..3: 6, 5, 7, 5 (23); not poor a year later: 1, 2, 3, 4 (10)
    assert got[1] == pytest.approx(10 / 23)
    # k = 2: t = 0..2, poor 6 + 5 + 7 = 18; not poor two years later: (1 - 0? hh0 poor at 2? no) 1 + 2 ...
    #   t=0: hh0 (1) not poor at 2 -> 1, hh1 (2) not poor -> 2, hh2 (3) poor -> 0: 3
    #   t=1: hh1 not poor at 3 -> 2, hh2 not poor -> 3: 5;  t=2: hh2 not poor at 4 -> 3, hh3 not poor -> 4: 7
    assert got[2] == pytest.approx(15 / 18)
    # k = 4: t = 0 only: hh1, hh2 not poor in year 4 (hh0 is): 5 of 6
    assert got[4] == pytest.approx(5 / 6)
    assert math.isnan(got[5])  # no year five years later
    assert list(got.index) == [1, 2, 3, 4, 5]
    # weights are the sizes of year t: a household's size later does not matter
    later = SIZES.copy()
    later[1:] = 100
    assert exits_after(POOR, later, [4])[4] == pytest.approx(5 / 6)


def test_returns_after_exit_known_answers():
    got = returns_after_exit(POOR, SIZES, range(1, 5))
    # exits (poor at t - 1, not at t): t=1 hh0 (1); t=2 hh1 (2); t=3 hh2 (3); t=4 hh3 (4)
    # k = 1: t = 1..3: hh0 poor at 2? no; hh1 poor at 3? no; hh2 poor at 4? no: 0 of 6
    assert got[1] == 0.0
    # k = 2: t = 1..2: hh0 poor at 3: yes (1); hh1 poor at 4: no: 1 of 3
    assert got[2] == pytest.approx(1 / 3)
    # k = 3: t = 1: hh0 poor at 4: 1 of 1
    assert got[3] == 1.0
    assert math.isnan(got[4])
    nobody = np.zeros((3, 2), bool)
    assert exits_after(nobody, np.ones((3, 2)), [1]).isna().all()
    assert returns_after_exit(nobody, np.ones((3, 2)), [1]).isna().all()
    with pytest.raises(ValueError, match="one shape"):
        exits_after(POOR, SIZES[:, :2])


def test_the_december_panel_agrees_with_the_metrics():
    """Recorded as the run is stepped: each December's poor people are the metrics' poor people, the
    households poor one December and not the next are the metrics' exits from poverty, and the pooled
    one-year exit share is the metrics' exits over the poor a year before (sizes do not change)."""
    sim = povsim.Simulation(full_cfg(3_000, SMALL))
    years = range(2013, 2021)
    panel = DecemberPanel(sim, years)
    table = county_assessment(sim, [], after_month=panel.record)
    assert table.empty and sim.done and panel.recorded.all()
    m = sim.run().metrics  # the run is complete: this collects its result
    dec = m[m["month"].dt.month == 12].set_index("year")
    assert (panel.size == sim.population.households.size).all()
    poor_people = (panel.poor * panel.size).sum(axis=1)
    assert poor_people.tolist() == dec.loc[list(years), "poor_people"].tolist()
    assert ((panel.poor[:-1] & ~panel.poor[1:]).sum(axis=1) == dec.loc[2014:2020, "exits_from_poverty_annual"]).all()
    back = (~panel.poor[:-1] & panel.poor[1:]).sum(axis=1)
    assert (back == dec.loc[2014:2020, "newly_poor_annual"]).all()
    pooled = dec.loc[2014:2020, "exits_from_poverty_annual_people"].sum() / dec.loc[2013:2019, "poor_people"].sum()
    assert exits_after(panel.poor, panel.size, [1])[1] == pytest.approx(pooled, rel=1e-12)
    assert 0 < pooled < 1
    h = headline(m, years)
    assert h["headcount_rate"].tolist() == pytest.approx((dec.loc[list(years), "headcount_rate"]).tolist())
    assert h.loc[2013, "registered_people_share"] == 0 < h.loc[2014, "registered_people_share"]


# --------------------------------------------------------------------------------------
# Targets and summaries over seeds
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bounded:
    """A target with an upper bound, as a targets file may give it."""

    name: str
    value: float
    tolerance: float
    source: str = "test"
    bound: str | None = "upper"


def test_target_deviations_and_the_table():
    two_sided = Target("a", "year_end", "headcount_rate", value=3.04, tolerance=0.1, source="s", year=2014)
    upper = _Bounded("b", value=0.006, tolerance=0.002)
    targets = [two_sided, upper]
    assert target_deviations([2.84, 0.010], targets) == pytest.approx([-2.0, 2.0])
    assert target_deviations([3.14, 0.002], targets) == pytest.approx([1.0, 0.0])  # below a ceiling: no deviation
    assert target_deviations([3.14, 0.002], targets, signed=True) == pytest.approx([1.0, -2.0])
    model = np.array([[2.94, 0.002], [3.34, 0.004], [3.04, 0.015]])  # seeds x targets
    assert target_deviations(model, targets).shape == (3, 2)
    table = target_table(targets, model)
    assert table["model mean"].tolist() == pytest.approx([3.10666667, 0.007])
    assert table["lowest"].tolist() == [2.94, 0.002] and table["highest"].tolist() == [3.34, 0.015]
    assert table["deviation of mean (tolerances)"].tolist() == pytest.approx([0.6666667, 0.5])
    assert table["bound"].tolist() == ["two-sided", "upper"]


def test_mean_range_cell_by_cell():
    a = pd.DataFrame({"x": [1.0, np.nan], "y": [4, 5]}, index=[2017, 2018])
    b = pd.DataFrame({"x": [3.0, np.nan], "y": [2, 9]}, index=[2017, 2018])
    c = pd.DataFrame({"x": [5.0, np.nan], "y": [0, 7]}, index=[2017, 2018])
    mean, low, high = mean_range([a, b, c])
    assert mean.loc[2017].tolist() == [3.0, 2.0] and low.loc[2017].tolist() == [1.0, 0.0]
    assert high.loc[2018, "y"] == 9 and math.isnan(mean.loc[2018, "x"])
    with pytest.raises(ValueError):
        mean_range([])


def _args(tmp_path, *extra):
    return add_arguments(argparse.ArgumentParser()).parse_args(["--out", str(tmp_path / "out"), *extra])


@pytest.mark.parametrize("extra, message", [
    (["--households", "0"], "--households 0: allowed an integer >= 1"),
    (["--seeds", "0"], "--seeds 0: allowed an integer >= 1"),
    (["--min-households", "-5"], "--min-households -5: allowed an integer >= 1"),
    (["--assessor-sd", "-0.1"], "--assessor-sd -0.1: allowed a finite number >= 0"),
    (["--office-share", "1.5"], "--office-share 1.5: allowed a number from 0 to 1"),
    (["--experiment", "nope.toml"], "--experiment 'nope.toml': experiment file not found"),
    (["--targets", "nope.toml"], "--targets 'nope.toml'"),
])
def test_bad_options_are_refused_before_anything_runs(tmp_path, extra, message, nothing_runs):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        check_arguments(_args(tmp_path, *extra))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_output_place_under_a_file_is_refused_before_anything_runs(tmp_path, nothing_runs):
    (tmp_path / "docs").write_text("a file")
    with pytest.raises(ConfigError, match=r"--out '.*docs.out'.*is a file, not a folder") as err:
        check_arguments(_args(tmp_path, "--out", str(tmp_path / "docs" / "out")))
    assert "\n" not in str(err.value) and (tmp_path / "docs").read_text() == "a file"


def test_the_defaults_are_checked_and_read(tmp_path):
    cfg, targets = check_arguments(_args(tmp_path))
    assert cfg.population.households == 2_000_000 and len(targets) > 5
    args = _args(tmp_path)
    assert args.seeds == 8 and args.min_households == 20_000
