"""A fresh run reproduces the saved baseline exactly (see tests/regenerate_baseline.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import povsim
from povsim import metrics as M

_spec = importlib.util.spec_from_file_location(
    "regenerate_baseline", Path(__file__).with_name("regenerate_baseline.py")
)
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)

HINT = "the model's output changed; if on purpose, run `python tests/regenerate_baseline.py` (see its docstring)"


@pytest.fixture(scope="module")
def fresh_result():
    return baseline.run_baseline_result()


@pytest.fixture(scope="module")
def fresh(fresh_result):
    return fresh_result.metrics


@pytest.fixture(scope="module")
def fresh_csv(fresh, tmp_path_factory):
    """The fresh run through the same CSV write/read path as the baseline."""
    path = tmp_path_factory.mktemp("baseline") / "metrics.csv"
    baseline.write_metrics_csv(fresh, path)
    return path


@pytest.fixture(scope="module")
def saved():
    return baseline.read_metrics_csv(baseline.METRICS_CSV)


def test_baseline_file_is_complete(saved):
    assert list(saved.columns) == list(M.COLUMNS)
    assert len(saved) == 96  # 2013-01 .. 2020-12
    assert saved["month"].iloc[0] == pd.Timestamp("2013-01-01")
    assert saved["month"].iloc[-1] == pd.Timestamp("2020-12-01")
    assert (saved["households"] == 2000).all()
    # the default model: every rule and channel but the (rare, at this size) hotline acted in the baseline run
    acted = [c for c in M.COLUMNS if c.startswith(("entered_", "flags_")) and not c.endswith("hotline")]
    for col in acted + ["exited", "removed_lookback", "cadre_visits", "assessed_review"]:
        assert saved[col].sum() > 0, col


def test_baseline_config_unchanged():
    """The config that produced the baseline is still what the baseline config resolves to."""
    recorded = json.loads(baseline.CONFIG_JSON.read_text())
    assert baseline.baseline_config().to_dict() == json.loads(json.dumps(recorded)), (
        "the defaults changed since the baseline was generated; " + HINT
    )


def test_integer_columns_exact(fresh, saved):
    ints = [c for c in fresh.columns if pd.api.types.is_integer_dtype(fresh[c])]
    assert "poor" in ints and "registered" in ints and "ill" in ints
    for col in ints:
        np.testing.assert_array_equal(fresh[col].to_numpy(), saved[col].to_numpy(), err_msg=f"{col}: {HINT}")


def test_float_columns_exact(fresh, fresh_csv, saved):
    floats = [c for c in fresh.columns if pd.api.types.is_float_dtype(fresh[c])]
    assert "exclusion_error" in floats and "headcount_rate" in floats
    again = baseline.read_metrics_csv(fresh_csv)
    for col in floats:
        # both through the same %.17g write and the same parser: equal bit for bit, NaN where NaN
        np.testing.assert_array_equal(again[col].to_numpy(), saved[col].to_numpy(), err_msg=f"{col}: {HINT}")
        # and %.17g keeps every float64 to within parsing precision
        np.testing.assert_allclose(fresh[col].to_numpy(), saved[col].to_numpy(), rtol=1e-15, atol=0)


def test_whole_table_equal_through_the_same_csv_path(fresh_csv, saved):
    pd.testing.assert_frame_equal(baseline.read_metrics_csv(fresh_csv), saved, check_exact=True)
    assert fresh_csv.read_bytes() == baseline.METRICS_CSV.read_bytes(), HINT


def test_baseline_config_is_the_default_model():
    recorded = json.loads(baseline.CONFIG_JSON.read_text())
    default = povsim.Config().to_dict()
    for key in ("policy", "illness", "job_loss", "income", "poverty"):
        assert recorded[key] == json.loads(json.dumps(default[key])), key
    assert recorded["simulation"] == {**default["simulation"], "burn_in_years": 1}
    assert (recorded["seed"], recorded["population"]["households"]) == (7, 2000)


def test_events_exact(fresh_result, tmp_path):
    path = tmp_path / "events.csv"
    baseline.write_events_csv(fresh_result.events, path)
    assert path.read_bytes() == baseline.EVENTS_CSV.read_bytes(), HINT
    saved = baseline.read_events_csv(baseline.EVENTS_CSV)
    pd.testing.assert_frame_equal(fresh_result.events, saved, check_exact=True, check_dtype=False)
    assert list(saved["event"]) == [
        "registration", "exits 2014-12", "lookback", "exits 2015-12", "exits 2016-12", "review 2017-10",
        "exits 2017-12", "review 2018-10", "exits 2018-12", "review 2019-10", "exits 2019-12", "review 2020-10",
        "exits 2020-12",
    ]


def test_delays_exact(fresh_result, tmp_path):
    path = tmp_path / "delays.csv"
    baseline.write_delays_csv(fresh_result.delays, path)
    assert path.read_bytes() == baseline.DELAYS_CSV.read_bytes(), HINT
    saved = baseline.read_delays_csv(baseline.DELAYS_CSV)
    pd.testing.assert_frame_equal(fresh_result.delays, saved, check_exact=True, check_dtype=False)
