"""Income's transitory terms (mean one, the annual component) and support (schedules by year, after exit).

Each test holds the model against an analytic value or an invariant that a wrong
implementation would break.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import NO_RULES, NO_SHOCKS, cfg

import povsim
from povsim import metrics as M
from povsim.components import make_params
from povsim.components.base import FLAG_MONITORED, FLAG_REGISTERED, MONTH_ORIGIN, NEVER
from povsim.components.income import ANNUAL_Z_SCALE
from povsim.components.support import NOT_KEPT, is_supported, year_index
from povsim.config import ConfigError, parse_month
from povsim.schema import in_year

#: no shocks, no rules, no support: a household's monthly income is its level times the transitory terms
QUIET = {**NO_SHOCKS, **NO_RULES, "simulation.end": "2013-12"}


def _year_income(overrides: dict, households: int = 20_000) -> np.ndarray:
    """Each household's income over the last simulated calendar year (2013), yuan per person."""
    sim = povsim.Simulation(cfg(households, {**QUIET, **overrides}))
    sim.run()
    return sim.population.households.net_income.sum(axis=1, dtype=np.int64).astype(np.float64)


# --- income: the transitory terms are mean-one -------------------------------------------------------------


@pytest.mark.parametrize("transitory, annual", [(0.3, 0.0), (0.0, 0.3), (0.3, 0.3)])
def test_transitory_terms_leave_the_mean_income_unchanged(transitory, annual):
    """E[exp(sd z - sd^2/2)] = 1: switching either term on moves no household's expected income.

    Each household's income with the terms over its income without them (the same level,
    common random numbers) averages 1 within 4 standard errors; without the correction
    it would average exp((transitory^2 + annual^2) / 2), 4.6 % to 9.4 % higher, over 10 SE.
    """
    base = _year_income({"income.transitory_sd": 0.0, "income.annual_sd": 0.0})
    moved = _year_income({"income.transitory_sd": transitory, "income.annual_sd": annual})
    ratio = moved / base
    se = ratio.std() / math.sqrt(ratio.size)
    assert abs(ratio.mean() - 1.0) < 4 * se
    assert math.exp((transitory**2 + annual**2) / 2) - 1.0 > 10 * se  # the test can tell the uncorrected model
    # and the terms do spread incomes: the ratio's spread is the log-normal's
    expected_sd = math.sqrt(math.exp(annual**2 + transitory**2 / 12) - 1.0)  # 12 i.i.d. months average out
    assert ratio.std() == pytest.approx(expected_sd, rel=0.1)


def test_the_kernel_parameters_hold_the_mean_one_correction():
    p = make_params(cfg(100, {"income.transitory_sd": 0.3, "income.annual_sd": 0.2}))
    assert p.income.mean_shift == pytest.approx(-(0.3**2 + 0.2**2) / 2)
    assert p.income.annual_sd_fx * ANNUAL_Z_SCALE == pytest.approx(0.2)


# --- income: the annual component ----------------------------------------------------------------------------


def test_annual_component_is_constant_within_a_year_and_new_each_year():
    """annual_z is drawn each January and held; normals independent across households and years."""
    n = 20_000
    sim = povsim.Simulation(cfg(n, {**QUIET, "simulation.end": "2014-12", "income.annual_sd": 0.3}))
    hh = sim.population.households
    by_month = {}
    while not sim.done:
        month = sim.month
        sim.step()
        by_month[month] = hh.annual_z.copy()
    years = sorted({m // 12 for m in by_month})
    assert len(years) == 3  # 2012 (burn-in), 2013, 2014
    bound = 4.0 / math.sqrt(n)
    per_year = []
    for year in years:
        months = [by_month[year * 12 + k] for k in range(12)]
        for k in range(1, 12):
            np.testing.assert_array_equal(months[k], months[0])
        z = months[0].astype(np.float64) / ANNUAL_Z_SCALE
        assert abs(z.mean()) < bound and abs(z.std() - 1.0) < 0.03  # a standard normal
        assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < bound  # neighbours (one village) uncorrelated
        per_year.append(z)
    for a, b in zip(per_year, per_year[1:]):
        assert np.mean(a == b) < 0.01  # a new draw each year
        assert abs(np.corrcoef(a, b)[0, 1]) < bound  # and independent of the year before
    # without the monthly shock, a household's income is the same in each month of a year
    ring = hh.net_income  # the 12 months of 2014
    assert (ring == ring[:, :1]).all()
    assert not (ring[:, 0] == ring[:, 0].mean()).all()


def test_annual_component_moves_calendar_year_income():
    """The annual SD sets the spread of calendar-year income; the monthly shock averages out over 12 months."""
    base = np.log(_year_income({"income.transitory_sd": 0.0, "income.annual_sd": 0.0}))
    annual = np.log(_year_income({"income.transitory_sd": 0.0, "income.annual_sd": 0.3})) - base
    monthly = np.log(_year_income({"income.transitory_sd": 0.3, "income.annual_sd": 0.0})) - base
    assert annual.std() == pytest.approx(0.3, rel=0.05)
    assert monthly.std() < 0.12  # about 0.3 / sqrt(12)


# --- support: schedules by year ------------------------------------------------------------------------------

SUPPORTING = {"policy.support.development_rate": 0.005, "policy.support.reimbursement": 0.8}


def test_a_number_equals_a_one_entry_schedule_bit_for_bit():
    scalar = povsim.run(cfg(3_000, {**SUPPORTING, "policy.support.transfer": 55.0})).metrics
    table = povsim.run(cfg(3_000, {
        "policy.support.transfer": {2011: 55.0},
        "policy.support.development_rate": {2019: 0.005},
        "policy.support.reimbursement": {"2014": 0.8},  # a TOML table's keys are text
    })).metrics
    assert scalar["transfers_yuan"].sum() > 0
    assert scalar.equals(table)


def test_a_schedule_takes_effect_in_its_year():
    """The transfer per supported person is the listed year's from January of that year on."""
    schedule = {2014: 40.0, 2015: 100.0}
    m = povsim.run(cfg(3_000, {"policy.support.transfer": schedule})).metrics
    supported_people = m["registered_people"].shift(1)  # support is the register at the start of the month
    paid = supported_people > 0
    per_person = m.loc[paid, "transfers_yuan"] / supported_people[paid]
    years = m.loc[paid, "month"].dt.year
    assert set(years) == {2014, 2015}
    np.testing.assert_allclose(per_person[years == 2014], 40.0)
    np.testing.assert_allclose(per_person[years == 2015], 100.0)


def test_schedule_lookup_is_the_latest_listed_year():
    schedule = {2014: 40.0, 2017: 80.0, 2019: 10.0}
    p = make_params(cfg(100, {"policy.support.transfer": schedule,
                              "policy.support.reimbursement": {2016: 0.6, 2018: 0.9},
                              "policy.support.development_rate": 0.005}))
    for year in range(2005, 2030):
        k = year_index(p.support, year * 12 + 5)
        assert p.support.transfer[k] == in_year(schedule, year)
        assert p.support.transfer[k] == (40.0 if year < 2017 else 80.0 if year < 2019 else 10.0), year
        assert p.support.reimbursement[k] == (0.6 if year < 2018 else 0.9), year
        assert p.support.development_rate[k] == 50  # a number: the same every year (capacity units)


@pytest.mark.parametrize("value, words", [
    ({2017: -1.0}, ["policy.support.transfer", "year 2017", "-1.0", ">= 0.0"]),
    ({1800: 1.0}, ["policy.support.transfer", "1800", "1900-2200"]),
    ({}, ["policy.support.transfer", "table"]),
    (True, ["policy.support.transfer", "number"]),
])
def test_a_bad_schedule_is_refused_with_the_key_year_and_value(value, words):
    with pytest.raises(ConfigError) as err:
        cfg(100, {"policy.support.transfer": value})
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_a_reimbursement_schedule_is_checked_against_its_range():
    with pytest.raises(ConfigError, match=r"policy.support.reimbursement.*year 2018: 1.5 is out of range.*<= 1.0"):
        cfg(100, {"policy.support.reimbursement": {2016: 0.8, 2018: 1.5}})


# --- support after exit --------------------------------------------------------------------------------------


def test_is_supported_at_the_edges():
    p = make_params(cfg(100, {"policy.support.kept_until": "2018-12", "policy.support.transition_months": 3})).support
    kept = parse_month("2018-12")
    early, late = parse_month("2017-10"), parse_month("2019-10")
    stored = lambda m: m - MONTH_ORIGIN  # noqa: E731
    for exit_month, last in ((early, kept + 3), (late, late + 3)):
        assert is_supported(0, stored(exit_month), last, p)
        assert not is_supported(0, stored(exit_month), last + 1, p)
    assert not is_supported(0, NEVER, early, p)
    assert is_supported(FLAG_REGISTERED, NEVER, early, p) and is_supported(FLAG_MONITORED, NEVER, early, p)
    off = p._replace(kept_until=NOT_KEPT)
    assert is_supported(0, stored(early), early + 3, off) and not is_supported(0, stored(early), early + 4, off)


REVIEWS = {
    **NO_RULES,
    "policy.registration.enabled": True,
    "policy.registration.method": "threshold",
    "policy.review.enabled": True,
    "policy.review.first": "2017-10",
    "policy.support.transfer": 100.0,
    "simulation.start": "2014-01",
    "simulation.end": "2019-12",
    "simulation.burn_in_years": 1,
    "population.households": 4_000,
}


def _step_supported(overrides: dict):
    """Step a run month by month: per month, the households registered and exited before it, and its totals."""
    sim = povsim.Simulation(povsim.load_config(overrides={**REVIEWS, **overrides}))
    hh = sim.population.households
    size = hh.size.astype(np.int64)
    out = []
    while not sim.done:
        month = sim.month
        registered = (hh.flags & FLAG_REGISTERED) != 0
        exit_month = hh.exit_month.astype(np.int64) + MONTH_ORIGIN
        exited = ~registered & (hh.exit_month != NEVER)
        totals = sim.step()
        out.append((month, registered, exited, exit_month, size, totals))
    return out


def test_no_exited_household_loses_support_before_kept_until():
    """Kept until 2018-12, then 3 months: every exited household is supported to 2019-03; later exits 3 months."""
    kept, transition = parse_month("2018-12"), 3
    seen_exits = 0
    for month, registered, exited, exit_month, size, totals in _step_supported(
        {"policy.support.kept_until": "2018-12", "policy.support.transition_months": transition}
    ):
        expected = registered | (exited & (month <= np.maximum(kept, exit_month) + transition))
        if month <= kept:
            expected_all = registered | exited  # before kept_until: every exited household
            assert (expected == expected_all).all()
        assert totals[M.SUPPORTED] == expected.sum(), month
        assert totals[M.TRANSFERS_FEN] == 100 * 100 * size[expected].sum(), month
        if month == kept:
            seen_exits = int(exited.sum())
        if month == kept + transition + 1:  # the early exits' support has ended, the register's has not
            assert totals[M.SUPPORTED] == registered.sum()
    assert seen_exits > 0


def test_without_keeping_support_ends_transition_months_after_the_exit():
    transition = 4
    ended = 0
    for month, registered, exited, exit_month, size, totals in _step_supported(
        {"policy.support.keep_after_exit": False, "policy.support.transition_months": transition}
    ):
        in_transition = exited & (month - exit_month <= transition)
        assert totals[M.SUPPORTED] == (registered | in_transition).sum(), month
        ended += int((exited & ~in_transition).sum())
    assert ended > 0  # some exited households did lose their support


def test_lookback_removals_get_no_support():
    """A look-back removal is not an exit: the removed get no support, and no exit month."""
    overrides = {
        **NO_RULES,
        "policy.registration.enabled": True,
        "policy.registration.method": "threshold",
        "policy.lookback.enabled": True,
        "simulation.start": "2014-01",
        "simulation.end": "2016-12",
        "simulation.burn_in_years": 1,
        "population.households": 4_000,
    }
    sim = povsim.Simulation(povsim.load_config(overrides=overrides))
    hh = sim.population.households
    removed = 0
    while not sim.done:
        registered = (hh.flags & FLAG_REGISTERED) != 0
        totals = sim.step()
        assert totals[M.SUPPORTED] == registered.sum()
        removed += int(totals[M.REMOVED_LOOKBACK])
    assert removed > 0
    assert (hh.exit_month == NEVER).all()


def test_monitored_households_are_supported():
    sim = povsim.Simulation(cfg(2_000, {"policy.support.transfer": 40.0}))
    hh = sim.population.households
    while sim.month < parse_month("2013-06"):
        sim.step()
    monitored = np.arange(0, 2_000, 7)
    hh.flags[monitored] |= FLAG_MONITORED
    totals = sim.step()
    assert totals[M.SUPPORTED] == monitored.size  # nobody is registered before 2014-10
    assert totals[M.TRANSFERS_FEN] == round(40.0 * 100) * hh.size[monitored].astype(np.int64).sum()
