"""Shared fixtures: the few runs that several tests inspect.

Runs are kept small (2,000-30,000 households) and short (one burn-in year; the
0.1 tests report 2013-2015 only) so the whole suite runs in a few minutes; the
first run in a fresh checkout also pays Numba's compilation (~20 s, cached after).
"""

from __future__ import annotations

import pytest
from helpers import cfg, full_cfg

import povsim


@pytest.fixture(scope="session")
def default_run():
    """A finished :class:`povsim.Simulation` of the one-time (0.1) model (20,000 households,
    2013-2015, threshold registration in 2014-10) and its :class:`povsim.Result`."""
    sim = povsim.Simulation(cfg(20_000))
    result = sim.run()
    return sim, result


@pytest.fixture(scope="session")
def default_result(default_run):
    return default_run[1]


@pytest.fixture(scope="session")
def small_result():
    """One-time model, 2,000 households, 2013-2015: for file round trips and plots."""
    return povsim.run(cfg(2_000, {"seed": 11}))


@pytest.fixture(scope="session")
def full_run():
    """A finished :class:`povsim.Simulation` of the default model (every rule and channel,
    20,000 households, 2013-2020, one burn-in year) and its :class:`povsim.Result`."""
    sim = povsim.Simulation(full_cfg(20_000))
    result = sim.run()
    return sim, result


@pytest.fixture(scope="session")
def full_result(full_run):
    return full_run[1]


@pytest.fixture
def nothing_runs(monkeypatch):
    """Any attempt to simulate (serially, on a cluster, or a block of a split population) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a run started")

    import povsim.cluster
    import povsim.engine

    monkeypatch.setattr(povsim, "run", refuse)
    monkeypatch.setattr(povsim.engine.Simulation, "__init__", refuse)
    monkeypatch.setattr(povsim.cluster, "simulate", refuse)
