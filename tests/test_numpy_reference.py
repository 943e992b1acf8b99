"""The plain NumPy step of the benchmarks stays the same model as the engine (so its speed is comparable)."""

from __future__ import annotations

import importlib.util
import sys

import numba as nb
import numpy as np
import pytest

from helpers import REPO, cfg

from povsim.components.census import income_bin


def _benchmark_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "benchmarks" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the poverty concepts, and the income record net of medical spending with the consumption test
POVERTY = {
    "calendar_year": {},
    "rolling_12m": {"poverty.concept": "rolling_12m"},
    "calendar_year_medical_consumption": {"poverty.deduct_medical": True, "poverty.consumption_test": True},
    "rolling_12m_medical_consumption": {
        "poverty.concept": "rolling_12m", "poverty.deduct_medical": True, "poverty.consumption_test": True,
    },
    # support by calendar year (its values change in 2014), with the consumption test reading the year's transfer
    "calendar_year_support_by_year": {
        "poverty.consumption_test": True,
        "policy.support.transfer": {2013: 40.0, 2014: 90.0},
        "policy.support.reimbursement": {2012: 0.6, 2014: 0.9},
        "policy.support.development_rate": {2013: 0.004, 2014: 0.01},
    },
}


@pytest.mark.parametrize("poverty", list(POVERTY))
def test_numpy_step_equals_the_engine_household_by_household(poverty):
    # 2012-01 to 2014-12: record_start December 2012, two reported Decembers after it
    check = _benchmark_module().check_step(households=3000, months=36, overrides=POVERTY[poverty])
    assert check["months"] == 36
    assert check["registered_at_end"] > 0 and check["poor_at_end"] > 0
    exercised = check["exercised"]
    for name in ("newly_poor_monthly", "newly_poor_annual", "exits_from_poverty_annual",
                 "returns_to_poverty_annual", "gap_fx", "people_by_income", "registered_people_by_income",
                 "supported_people_by_income", "newly_identified", "entered_nonpoor"):
        assert exercised[name] > 0, name
    if poverty.startswith("rolling"):  # onsets after record_start are seen by the registration in 2013-06
        assert exercised["delay_count"] > 0
    assert check["differing_total_cells"] == 0
    assert check["households_poor_status_ever_differs"] == 0
    assert check["households_registered_ever_differs"] == 0
    assert check["households_final_state_differs"] == 0


@nb.njit(cache=False)
def _engine_bins(incomes, line):
    out = np.empty(incomes.shape[0], np.int64)
    for k in range(incomes.shape[0]):
        out[k] = income_bin(incomes[k], line)
    return out


def test_numpy_income_bins_equal_the_engine_for_every_whole_yuan_income():
    """NumPy's log against povsim.elementary.log at the bin edges: every 12-month income the record can
    sum to (whole yuan), under every default line, falls in the same bin."""
    numpy_step = _benchmark_module().numpy_step
    incomes = np.arange(-32768 * 12, 32767 * 12 + 1).astype(np.float64)
    for line in cfg(100).poverty.lines.values():
        engine = _engine_bins(incomes, line)
        assert np.array_equal(numpy_step.income_bin(incomes, line), engine), line
        assert engine.min() == 0 and engine.max() == 199  # every bin's range, the open ones included
