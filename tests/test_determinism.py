"""Results are a function of the config alone: not of the thread count, not of the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from helpers import ONETIME, SHORT, cfg, full_cfg

import povsim
from povsim import metrics as M

#: the thread check: the full default model (every rule and channel, 2013-2020), a short one-time run, and
#: the full model with monitoring to 2025
THREAD_CASES = {
    "full": {"population.households": 30000, "seed": 99, "simulation.burn_in_years": 1},
    "onetime": {"population.households": 30000, "seed": 99, **SHORT, **ONETIME},
    "monitoring": {"population.households": 30000, "seed": 99, "simulation.burn_in_years": 1,
                   "simulation.end": "2025-12", "policy.monitoring.enabled": True,
                   **{f"poverty.lines.{year}": 4000.0 * 1.02 ** (year - 2020) for year in range(2021, 2026)}},
}

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import povsim
    out = Path(sys.argv[1])
    threads = {}
    for name, overrides in json.loads(sys.argv[2]).items():
        result = povsim.run(povsim.load_config(overrides=overrides))
        result.metrics.to_parquet(out / f"{name}_metrics.parquet", index=False)
        result.events.to_parquet(out / f"{name}_events.parquet", index=False)
        result.delays.to_parquet(out / f"{name}_delays.parquet")
        threads[name] = result.manifest["threads"]
    print(json.dumps(threads))
    """
)


def _run_in_subprocess(tmp_path, threads: int, cases=THREAD_CASES, env=None, name=None):
    out = tmp_path / (name or f"threads_{threads}")
    out.mkdir()
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), json.dumps(cases)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, reported


def test_bit_identical_for_one_and_two_threads(tmp_path):
    out1, threads1 = _run_in_subprocess(tmp_path, 1)
    out2, threads2 = _run_in_subprocess(tmp_path, 2)
    for name in THREAD_CASES:
        assert (threads1[name], threads2[name]) == (1, 2)  # the runs really used different thread counts
        for table in ("metrics", "events", "delays"):
            a = pd.read_parquet(out1 / f"{name}_{table}.parquet")
            b = pd.read_parquet(out2 / f"{name}_{table}.parquet")
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{name} {table}")
    # the full run exercised every rule and channel, so the check covers them all
    full = pd.read_parquet(out1 / "full_metrics.parquet")
    for col in [c for c in full.columns if c.startswith(("entered_", "flags_"))] + ["exited", "removed_lookback"]:
        assert full[col].sum() > 0, col


def test_bit_identical_with_llvm_default_vector_width(tmp_path):
    """povsim asks Numba for the host CPU's widest vectors (povsim._jit); with LLVM's default
    (256-bit on AVX-512 CPUs) every result is the same, bit for bit: the vectorised loops work
    element by element and reorder no sum."""
    cases = {"full": THREAD_CASES["full"]}
    widest, _ = _run_in_subprocess(tmp_path, 2, cases, name="widest")
    default, _ = _run_in_subprocess(tmp_path, 2, cases, env={"POVSIM_VECTOR_WIDTH": "default"}, name="default")
    for table in ("metrics", "events", "delays"):
        a = pd.read_parquet(widest / f"full_{table}.parquet")
        b = pd.read_parquet(default / f"full_{table}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)


def _numba_cpu_setting(env: dict) -> list[str]:
    code = "import povsim.engine, numba; print(numba.config.CPU_NAME); print(numba.config.CPU_FEATURES)"
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "POVSIM_VECTOR_WIDTH")}
    proc = subprocess.run([sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_vector_width_setting_and_its_opt_outs():
    from llvmlite import binding

    host_features = binding.get_host_cpu_features().flatten()
    name, features = _numba_cpu_setting({})
    if "+avx512f" in host_features.split(","):
        assert name == binding.get_host_cpu_name()
        assert features == host_features + ",-prefer-256-bit"
    else:
        assert (name, features) == ("None", "None")
    assert _numba_cpu_setting({"POVSIM_VECTOR_WIDTH": "default"}) == ["None", "None"]
    assert _numba_cpu_setting({"NUMBA_CPU_NAME": "generic"})[0] == "generic"  # the user's choice stands


@pytest.mark.parametrize("make", [cfg, full_cfg], ids=["onetime", "full"])
def test_threads_setting_does_not_change_results(make):
    one = povsim.run(make(20_000, {"simulation.threads": 1}))
    two = povsim.run(make(20_000, {"simulation.threads": 2}))
    assert one.manifest["threads"] == 1
    pd.testing.assert_frame_equal(one.metrics, two.metrics, check_exact=True)
    pd.testing.assert_frame_equal(one.events, two.events, check_exact=True)
    pd.testing.assert_frame_equal(one.delays, two.delays, check_exact=True)


def test_same_seed_twice_is_identical():
    a = povsim.run(cfg(10_000, {"seed": 5})).metrics
    b = povsim.run(cfg(10_000, {"seed": 5})).metrics
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_same_seed_twice_is_identical_full_model():
    a = povsim.run(full_cfg(10_000, {"seed": 5}))
    b = povsim.run(full_cfg(10_000, {"seed": 5}))
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
    pd.testing.assert_frame_equal(a.events, b.events, check_exact=True)
    pd.testing.assert_frame_equal(a.delays, b.delays, check_exact=True)


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


@pytest.mark.parametrize(
    "make, overrides",
    [(cfg, {}), (cfg, {"policy.registration.assessment_sd": 0.0}), (full_cfg, {})],
    ids=["onetime", "onetime-exact", "full"],
)
def test_stepping_by_hand_equals_run(make, overrides):
    c = make(5_000, overrides)
    sim = povsim.Simulation(c)
    while not sim.done:
        sim.step()
    months = sorted(sim.totals)
    data_start = sim.timeline.channels.get("data")
    running = [data_start is not None and m >= data_start for m in months]
    by_hand = M.derive(np.array([sim.totals[m] for m in months]), months, costs=c.policy.cost, data_running=running)
    pd.testing.assert_frame_equal(by_hand, povsim.run(c).metrics, check_exact=True)
