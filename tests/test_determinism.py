"""Results are a function of the config alone: not of the thread count, not of the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from helpers import cfg

import povsim
from povsim import metrics as M

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import povsim
    cfg = povsim.load_config(overrides={
        "population.households": 30000, "seed": 99,
        "simulation.start": "2013-01", "simulation.end": "2015-12", "simulation.burn_in_years": 1,
    })
    result = povsim.run(cfg)
    result.metrics.to_parquet(sys.argv[1], index=False)
    print(json.dumps({"threads": result.manifest["threads"]}))
    """
)


def _run_in_subprocess(tmp_path, threads: int):
    out = tmp_path / f"metrics_{threads}.parquet"
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout.strip().splitlines()[-1])["threads"]
    return pd.read_parquet(out), reported


def test_bit_identical_for_one_and_two_threads(tmp_path):
    m1, threads1 = _run_in_subprocess(tmp_path, 1)
    m2, threads2 = _run_in_subprocess(tmp_path, 2)
    assert (threads1, threads2) == (1, 2)  # the runs really used different thread counts
    pd.testing.assert_frame_equal(m1, m2, check_exact=True)


def test_threads_setting_does_not_change_results():
    one = povsim.run(cfg(20_000, {"simulation.threads": 1}))
    two = povsim.run(cfg(20_000, {"simulation.threads": 2}))
    assert one.manifest["threads"] == 1
    pd.testing.assert_frame_equal(one.metrics, two.metrics, check_exact=True)


def test_same_seed_twice_is_identical():
    a = povsim.run(cfg(10_000, {"seed": 5})).metrics
    b = povsim.run(cfg(10_000, {"seed": 5})).metrics
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_different_seed_differs():
    a = povsim.run(cfg(10_000, {"seed": 5})).metrics
    b = povsim.run(cfg(10_000, {"seed": 6})).metrics
    for col in ("people", "poor", "registered", "ill", "illness_onsets", "job_losses"):
        assert not a[col].equals(b[col]), col


def test_high_seed_word_matters():
    """Seeds differing only above bit 32 are different seeds (the Philox key has two words)."""
    a = povsim.run(cfg(5_000, {"seed": 5})).metrics
    b = povsim.run(cfg(5_000, {"seed": 5 + 2**32})).metrics
    assert not a["poor"].equals(b["poor"])
    assert not a["ill"].equals(b["ill"])


@pytest.mark.parametrize("overrides", [{}, {"policy.registration.assessment_sd": 0.0}])
def test_stepping_by_hand_equals_run(overrides):
    c = cfg(5_000, overrides)
    sim = povsim.Simulation(c)
    while not sim.done:
        sim.step()
    months = sorted(sim.totals)
    by_hand = M.derive([sim.totals[m] for m in months], months)
    pd.testing.assert_frame_equal(by_hand, povsim.run(c).metrics, check_exact=True)
