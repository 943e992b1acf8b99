"""Validation outputs: county samples follow the official definitions; flows add up."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import full_cfg

import povsim
from povsim.population import FLAG_POOR, FLAG_REGISTERED
from povsim.validate import county_assessment, lookback_shares, yearly_flows


@pytest.fixture(scope="module")
def assessed():
    cfg = full_cfg(6_000, {"population.villages_per_county": 5, "population.households_per_village": 300})
    sim = povsim.Simulation(cfg)
    table = county_assessment(sim, [2020 * 12 + 11], sample=10**9)  # everyone, in the last month
    return sim, table


def test_full_sample_equals_the_census(assessed):
    sim, table = assessed
    pop = sim.population
    flags = pop.households.flags
    county = np.repeat(pop.village_county, np.diff(pop.village_start))
    assert len(table) == pop.n_counties == 4
    for c, row in table.set_index("county").iterrows():
        mine = county == c
        unregistered = mine & ((flags & FLAG_REGISTERED) == 0)
        missed = unregistered & ((flags & FLAG_POOR) != 0)
        assert row["sampled"] == mine.sum()
        assert row["missed_rate"] == missed.sum() / unregistered.sum()


def test_sample_size_is_binomial():
    cfg = full_cfg(20_000, {"population.villages_per_county": 50, "population.households_per_village": 200})
    sim = povsim.Simulation(cfg)
    table = county_assessment(sim, [2018 * 12 + 11], sample=1000)
    # 10,000 households per county, each sampled with probability 0.1
    sd = np.sqrt(10_000 * 0.1 * 0.9)
    assert (np.abs(table["sampled"] - 1000) < 4.5 * sd).all()
    assert table["missed_rate"].between(0, 1).all()


def test_flows_and_lookback_shares_agree_with_the_metrics(full_result):
    m = full_result.metrics
    flows = yearly_flows(m)
    assert list(flows.index) == [2016, 2017, 2018, 2019]
    for year, row in flows.iterrows():
        assert row["exits"] == m.loc[m["year"] == year, "exited"].sum()
        assert row["returns_to_poverty"] == m.loc[m["year"] == year, "return_to_poverty"].sum()
    shares = lookback_shares(full_result.events)
    lb = full_result.events.set_index("event").loc["lookback"]
    assert shares["removed_share"] == lb["removed"] / lb["register_before"]
    assert shares["added_share"] == lb["added"] / lb["register_before"]
