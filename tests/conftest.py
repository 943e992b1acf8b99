"""Shared fixtures: the few runs that several tests inspect.

Runs are kept small (2,000-30,000 households) and short (2013-2015 with one
burn-in year) so the whole suite runs in well under a few minutes; the first
run in a fresh checkout also pays Numba's compilation (~20 s, cached after).
"""

from __future__ import annotations

import pytest
from helpers import cfg

import povsim


@pytest.fixture(scope="session")
def default_run():
    """A finished :class:`povsim.Simulation` of the default model (20,000 households, 2013-2015,
    registration in 2014-10) and its :class:`povsim.Result`."""
    sim = povsim.Simulation(cfg(20_000))
    result = sim.run()
    return sim, result


@pytest.fixture(scope="session")
def default_result(default_run):
    return default_run[1]


@pytest.fixture(scope="session")
def small_result():
    """Default model, 2,000 households, 2013-2015: for file round trips and plots."""
    return povsim.run(cfg(2_000, {"seed": 11}))
