"""The Mesa model (:mod:`povsim.mesa`) equals the engine, bit for bit, and speaks Mesa 3.

Each comparison steps a :class:`povsim.Simulation` and a :class:`povsim.mesa.PovertyModel`
of the same config in lockstep, each with its own population arrays, and after every
month compares the month's metric totals and every household state array bit for bit;
at the end it compares the monthly metrics (``model.metrics`` and the DataCollector's
frame) with the engine's :class:`povsim.Result`.  2,000 households, 2013-2020 with one
burn-in year: about 2 s per comparison.
"""

from __future__ import annotations

from random import Random

import numpy as np
import pandas as pd
import pytest
from helpers import full_cfg

import mesa
from mesa.agent import AgentSet

import povsim
from povsim import metrics as M
from povsim.population import (
    CAPACITY_SCALE,
    FLAG_CONNECTED,
    FLAG_COVERED,
    FLAG_POOR,
    FLAG_REGISTERED,
    ROUTE_NAMES,
    Households,
)
from povsim.mesa import Household, PovertyModel
from povsim.mesa.model import STATUS

HOUSEHOLDS = 2_000
CHANNELS = ("self", "cadre", "data", "hotline")


def _bits(a: np.ndarray) -> np.ndarray:
    """The raw bytes of an array, so float fields compare bit for bit (NaN, -0.0 included)."""
    return np.ascontiguousarray(a).view(np.uint8).reshape(a.shape[0], -1)


def _assert_same_state(engine: Households, model: Households, label: str) -> None:
    for name in Households._fields:
        a, b = _bits(getattr(engine, name)), _bits(getattr(model, name))
        differs = np.flatnonzero((a != b).any(axis=1))
        if differs.size:
            i = int(differs[0])
            raise AssertionError(
                f"{label}: field {name!r} differs for {differs.size} household(s); first: household {i}, "
                f"engine {getattr(engine, name)[i]!r}, Mesa {getattr(model, name)[i]!r}"
            )


class Lockstep:
    """A finished engine run and Mesa run of one config, compared every month on the way."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.sim = povsim.Simulation(cfg)
        self.model = PovertyModel(cfg)
        eh, mh = self.sim.population.households, self.model.households
        for name in Households._fields:  # two separate populations, or the comparison proves nothing
            assert not np.shares_memory(getattr(eh, name), getattr(mh, name)), name
        _assert_same_state(eh, mh, "after building the population")
        registered, routes = [], []
        timeline = self.sim.timeline
        while not self.sim.done:
            month = self.sim.month
            assert self.model.month == month
            label = timeline.label(month)
            totals = self.sim.step()
            self.model.step()
            if not np.array_equal(self.model.acc, totals):
                slots = np.flatnonzero(self.model.acc != totals)
                raise AssertionError(f"{label}: month totals differ in slots {slots.tolist()}")
            _assert_same_state(eh, mh, label)
            registered.append((mh.flags & FLAG_REGISTERED).astype(bool))
            routes.append(mh.route.copy())
        assert self.model.done and not self.model.running
        self.result = self.sim.run()  # nothing left to simulate: the engine's Result of these months
        #: months x households: on the register at the end of each month, and by which route
        self.registered = np.array(registered)
        self.routes = np.array(routes)

    def assert_identical_results(self) -> None:
        engine = self.result.metrics
        assert sorted(self.model.totals) == sorted(self.sim.totals)
        for m, totals in self.sim.totals.items():
            assert np.array_equal(self.model.totals[m], totals), self.sim.timeline.label(m)
        pd.testing.assert_frame_equal(self.model.metrics, engine, check_exact=True)
        frame = self.model.datacollector.get_model_vars_dataframe()
        assert list(frame.columns) == list(M.COLUMNS)
        pd.testing.assert_frame_equal(frame, engine, check_exact=True)


@pytest.fixture(scope="module")
def default_pair():
    """The full default China timeline (every rule and channel), 2,000 households, 2013-2020.

    The hotline's calls are made ten times as likely, so that in so small a population it
    registers someone and its route is compared too.
    """
    return Lockstep(full_cfg(HOUSEHOLDS, {"policy.channels.hotline.call_probability": 0.05}))


def test_default_timeline_identical_to_engine(default_pair):
    pair = default_pair
    pair.assert_identical_results()
    metrics = pair.result.metrics
    assert len(metrics) == 96  # 2013-01 .. 2020-12
    # every rule and channel did something, so each of them was compared, not skipped
    for route in M.ROUTES:
        assert metrics[f"entered_{route}"].sum() > 0, route
    assert metrics["exited"].sum() > 0 and metrics["removed_lookback"].sum() > 0
    # the registration histories are real histories: households join and leave month by month
    changes = (pair.registered[1:] != pair.registered[:-1]).sum()
    assert changes > 100
    assert set(np.unique(pair.routes)) == set(range(len(ROUTE_NAMES)))


def test_second_seed_identical_to_engine(default_pair):
    pair = Lockstep(full_cfg(HOUSEHOLDS, {"seed": 7}))
    pair.assert_identical_results()
    # a different seed is a different run (the comparison is not between constants)
    assert not np.array_equal(pair.registered, default_pair.registered)
    assert not pair.result.metrics["poor"].equals(default_pair.result.metrics["poor"])


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_alone_identical_to_engine(channel):
    others = {f"policy.channels.{c}.enabled": False for c in CHANNELS if c != channel}
    pair = Lockstep(full_cfg(HOUSEHOLDS, others))
    pair.assert_identical_results()
    metrics = pair.result.metrics
    assert metrics[f"entered_{channel}"].sum() > 0
    assert metrics[f"flags_{channel}"].sum() > 0
    for other in CHANNELS:
        if other != channel:
            assert metrics[f"entered_{other}"].sum() == 0 and metrics[f"flags_{other}"].sum() == 0, other
            assert not (pair.routes == M.ROUTE_CODE[other]).any(), other


def test_agents_expose_the_engine_state(default_pair):
    """Each agent's properties read its row; checked against the engine's own arrays."""
    model, eh = default_pair.model, default_pair.sim.population.households
    n = HOUSEHOLDS
    agents = sorted(model.agents, key=lambda a: a.index)
    assert [a.index for a in agents] == list(range(n))
    income = eh.net_income.sum(axis=1, dtype=np.int64)
    for a in agents:
        i = a.index
        flags = int(eh.flags[i])
        assert a.income == float(income[i])
        assert a.poor == bool(flags & FLAG_POOR) == (a.income < model.line)
        assert a.registered == bool(flags & FLAG_REGISTERED)
        assert a.connected == bool(flags & FLAG_CONNECTED)
        assert a.covered == bool(flags & FLAG_COVERED)
        assert a.route == ROUTE_NAMES[eh.route[i]]
        assert (a.route != "none") == a.registered
        assert a.pending == ROUTE_NAMES[eh.pending_route[i]]
        assert a.illness == ("healthy", "acute", "chronic")[eh.illness[i]]
        assert a.unemployed == bool(eh.unemployed[i])
        assert a.capacity == int(eh.capacity[i]) / CAPACITY_SCALE
        assert (a.size, a.workers) == (int(eh.size[i]), int(eh.workers[i]))
        assert a.status == STATUS[(0 if a.registered else 1) if a.poor else (2 if a.registered else 3)]
        assert f"<Household {i} village {a.village}" in repr(a)
    # the agents' statuses add up to the last month's metrics
    last = default_pair.result.metrics.iloc[-1]
    statuses = model.agents.get("status")
    assert statuses.count(STATUS[0]) == last["poor_registered"]
    assert statuses.count(STATUS[1]) == last["poor"] - last["poor_registered"]
    assert statuses.count(STATUS[2]) == last["registered"] - last["poor_registered"]
    assert statuses.count(STATUS[3]) == n - last["poor"] - last["registered"] + last["poor_registered"]
    # the model reached every kind of state, so the checks above saw each value
    assert {a.illness for a in agents} == {"healthy", "acute", "chronic"}
    assert set(statuses) == set(STATUS)
    assert any(a.unemployed for a in agents) and any(a.capacity > 0 for a in agents)


def test_mesa_3_api(default_pair):
    model, pop = default_pair.model, default_pair.sim.population
    assert isinstance(model, mesa.Model)
    assert isinstance(model.datacollector, mesa.DataCollector)
    # one agent per household, all Household agents, in model.agents (Mesa 3's registry)
    assert len(model.agents) == HOUSEHOLDS
    assert all(isinstance(a, Household) and isinstance(a, mesa.Agent) for a in model.agents)
    assert len(model.agents_by_type[Household]) == HOUSEHOLDS
    assert len({a.unique_id for a in model.agents}) == HOUSEHOLDS
    assert all(a.model is model for a in model.agents)
    # AgentSet operations work on them: select, get, groupby
    poor = model.agents.select(lambda a: a.poor)
    assert len(poor) == default_pair.result.metrics["poor"].iloc[-1]
    sizes = model.agents.groupby("village").count()
    assert sizes == {v: int(pop.village_start[v + 1] - pop.village_start[v]) for v in range(pop.n_villages)}
    # model.villages: one AgentSet per village, holding exactly that village's households
    assert len(model.villages) == pop.n_villages
    for v, village in enumerate(model.villages):
        assert isinstance(village, AgentSet)
        indices = sorted(a.index for a in village)
        assert indices == list(range(pop.village_start[v], pop.village_start[v + 1]))
        assert all(a.village == v for a in village)
    # Mesa counted one step per simulated month, burn-in included
    assert model.steps == default_pair.sim.timeline.n_simulated


def test_mesa_random_generators_are_never_drawn():
    """Every draw comes from povsim's counter-based streams; Mesa's generators stay untouched."""
    cfg = full_cfg(300)
    model = PovertyModel(cfg)
    seeded = Random(cfg.seed % 2**32)
    assert model.random.getstate() == seeded.getstate()
    rng_state = model.rng.bit_generator.state
    random_state = model.random.getstate()
    model.run()
    assert model.rng.bit_generator.state == rng_state
    assert model.random.getstate() == random_state
    pd.testing.assert_frame_equal(model.metrics, povsim.run(cfg).metrics, check_exact=True)


def test_stepping_by_hand_and_after_the_end():
    cfg = full_cfg(300)
    model = PovertyModel(cfg)
    assert model.metrics.empty and model.running
    burn_in = model.timeline.start - model.timeline.first
    for _ in range(burn_in):
        model.step()
    assert model.metrics.empty  # burn-in months are not reported, nor collected
    assert model.datacollector.get_model_vars_dataframe().empty
    model.step()
    assert len(model.metrics) == 1 and model.metrics["month"].iloc[0] == pd.Timestamp(cfg.simulation.start)
    assert len(model.datacollector.get_model_vars_dataframe()) == 1
    final = model.run()
    assert not model.running and model.done
    model.step()  # after the end: nothing happens (Mesa's controls stop at running = False)
    pd.testing.assert_frame_equal(model.metrics, final)
    assert len(model.datacollector.get_model_vars_dataframe()) == len(final)
