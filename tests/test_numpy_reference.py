"""The plain NumPy step of the benchmarks stays the same model as the engine (so its speed is comparable)."""

from __future__ import annotations

import importlib.util
import sys

from helpers import REPO


def _benchmark_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "benchmarks" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_step_equals_the_engine_household_by_household():
    check = _benchmark_module().check_step(households=3000)
    assert check["registered_at_end"] > 0 and check["poor_at_end"] > 0
    assert check["differing_total_cells"] == 0
    assert check["households_poor_status_ever_differs"] == 0
    assert check["households_registered_ever_differs"] == 0
    assert check["households_final_state_differs"] == 0
