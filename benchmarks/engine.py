"""Benchmark of the povsim engine against a plain vectorised NumPy month step.

Run from the repository root::

    python benchmarks/engine.py                      # 1e5, 1e6, 1e7 households, 12 months
    python benchmarks/engine.py --sizes 1e5,1e6 --json results.json

What is measured, in one run
----------------------------
1. **Compile time** (fresh subprocesses).  A subprocess with ``NUMBA_CACHE_DIR``
   pointed at an empty temporary directory imports povsim, builds a
   1,000-household :class:`povsim.engine.Simulation` and steps one month: a true
   cold compile of every kernel the engine uses.  A second subprocess with the
   same cache directory does the same again: the warm-cache start that later
   sessions see.  Both report import, build and first-step time separately.
2. **Correctness of the baseline.**  The NumPy Philox4x32-10 of
   ``benchmarks/numpy_step.py`` is compared word for word with
   :mod:`povsim.rng` (Random123 known answers, a sample of arbitrary counters
   and keys, and the engine's own (household, month, stream, index) layout).
   Then engine and NumPy step run side by side from the same population for 36
   months (12 of burn-in, 24 reported, with the registration in the 18th month
   so that assessments and transfers are exercised, and two reported Decembers
   so that the year-to-year poverty flows and the income bins are); monthly
   totals are compared slot by slot, households whose poor or registered
   status ever differs are counted, and so are households whose state differs
   at the end.
3. **Throughput** at each size.  After a warm-up (one month of a 1,000-household
   Simulation, so nothing below includes compilation), for each size:

   * engine: ``Simulation(cfg)`` is constructed (this builds the population;
     timed and printed as "build"), then ``sim.step()`` is called ``--months``
     times; household-months per second = households x months / stepping time.
     Bytes per household = ``Population.bytes_per_household()`` (household
     state plus village structure).
   * NumPy: the same population is built again (``build_population``) and
     stepped through the same months with :func:`numpy_step.month_step`; its
     monthly totals are checked against the engine's.  Bytes per household are
     the state arrays only (the NumPy step needs no village structure); its
     temporaries are bounded by the chunk size and reported once, as measured
     by ``tracemalloc`` over one chunk-sized month.  A size is skipped when it
     is above ``--max-households`` or when the estimate from the previous
     size exceeds ``--numpy-budget`` seconds.

   The timed months are the first simulated months, i.e. burn-in months: no
   registration happens in them and no transfers are paid (the registration
   month costs one extra Philox call per household, once).  The model is the
   one-time threshold registration with no other rule (``ONETIME``), the one
   the NumPy step implements.

   * engine with every rule: the quota registration, the look-back, an annual
     review and all four discovery channels active within 2019
     (``ALL_RULES_2019``); the 12 reported months are timed after a burn-in year.
4. **Where the time goes**, approximately: the step's Philox call per
   household (a small Numba kernel), then the engine's own draws
   (``income.draw`` for every village: Philox and the Box-Muller normals;
   the exp is in its household step) and, for the NumPy baseline, the same
   random numbers, normals and exp, each timed alone, against a whole month.

Options: ``--sizes 1e5,1e6,1e7``, ``--months 12``, ``--max-households 1e7`` (NumPy
only), ``--numpy-budget SECONDS``, ``--chunk HOUSEHOLDS``, ``--no-compile``,
``--json PATH``.

The engine runs on ``numba.get_num_threads()`` threads; the NumPy step is single
threaded (NumPy's element-wise ufuncs do not thread).  Times are wall-clock
(``time.perf_counter``) on a possibly shared machine, so expect some noise.

No global random state is used anywhere: all randomness is Philox, keyed by
counters, as in :mod:`povsim.rng`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np

import povsim
from povsim import metrics as M
from povsim import rng
from povsim.config import ONE_TIME_THRESHOLD, format_month, parse_month
from povsim.engine import Simulation, villages_per_block
from povsim.population import FLAG_POOR, FLAG_REGISTERED, Households, build_population
from povsim.components import make_params
from povsim.components import income
from povsim.components.income import DRAW_INCOME
from povsim.components.poverty import describe as describe_poverty
from povsim.components.schedule import scratch
from povsim.timeline import Timeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_step  # noqa: E402  (a sibling module, not part of the package)

TINY = 1_000  #: households of the warm-up and compile-time runs
VERIFY_HOUSEHOLDS = 100_000  #: households of the side-by-side correctness run
BURN_IN_YEARS = 1
START = "2013-01"  #: first reported month; the timed months start a year earlier (burn-in)

#: Random123 known-answer vectors for Philox4x32-10: (counter, key, output).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]

#: Run in a subprocess to time a cold (or warm-cache) start of the engine.
_COMPILE_SCRIPT = f"""
import json, time
t0 = time.perf_counter()
import povsim
from povsim.engine import Simulation
t1 = time.perf_counter()
cfg = povsim.load_config(None, overrides={{"population.households": {TINY}}})
sim = Simulation(cfg)
t2 = time.perf_counter()
sim.step()
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": t3 - t2, "total_s": t3 - t0}}))
"""


# --------------------------------------------------------------------------------------
# Configuration and environment
# --------------------------------------------------------------------------------------


#: the one-time threshold registration and no other rule: the model the NumPy step implements
ONETIME = ONE_TIME_THRESHOLD

#: every rule active within one year (2019): quota registration, look-back, review, all four channels
ALL_RULES_2019 = {
    "simulation.start": "2019-01",
    "simulation.end": "2019-12",
    "policy.registration.month": "2019-01",
    "policy.registration.survey_month": "2018-12",
    "policy.lookback.start": "2019-03",
    "policy.lookback.end": "2019-08",
    "policy.review.first": "2019-10",
    "policy.review.exit_first": "2019-12",
    "policy.channels.self.start": "2019-02",
    "policy.channels.cadre.start": "2019-02",
    "policy.channels.data.start": "2019-02",
    "policy.channels.hotline.start": "2019-02",
}


def bench_config(households: int, months: int, registration: str = "2013-10",
                 overrides: dict | None = None) -> povsim.Config:
    """The one-time model with one burn-in year and enough simulated months for ``months`` steps.

    ``overrides`` (dotted keys) are applied last, e.g. ``{"poverty.concept": "rolling_12m"}``.
    """
    first = parse_month(START) - 12 * BURN_IN_YEARS
    end = max(first + months - 1, parse_month("2013-12"))
    return povsim.load_config(
        None,
        overrides={
            "population.households": int(households),
            "simulation.burn_in_years": BURN_IN_YEARS,
            "simulation.start": START,
            "simulation.end": format_month(end),
            "policy.registration.month": registration,
            **ONETIME,
            **(overrides or {}),
        },
    )


def environment() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "povsim": povsim.__version__,
        "load_average_at_start": os.getloadavg()[0],
    }


# --------------------------------------------------------------------------------------
# 1. compile time
# --------------------------------------------------------------------------------------


def _run_subprocess(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    result["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
    return result


def compile_times() -> dict:
    """Cold compile (empty cache) and warm-cache start, each in a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="povsim-numba-cache-") as cache_dir:
        cold = _run_subprocess(cache_dir)
        warm = _run_subprocess(cache_dir)
    return {"cold": cold, "warm": warm}


# --------------------------------------------------------------------------------------
# 2. correctness of the NumPy baseline
# --------------------------------------------------------------------------------------


def check_philox(samples: int = 2048, households: int = 100_000) -> dict:
    """The NumPy Philox against povsim.rng: known answers, arbitrary counters, the engine's layout."""
    mismatches = 0
    for counter, key, expected in KNOWN_ANSWERS:
        ours = tuple(int(w) for w in numpy_step.philox4x32_10(*counter, *key))
        theirs = tuple(int(w) for w in rng.philox4x32_10(np.array(counter, np.uint32), np.array(key, np.uint32)))
        mismatches += (ours != expected) + (theirs != expected)

    # arbitrary counters and keys: words of Philox itself, so no other generator is involved
    words = np.stack(numpy_step.philox4x32_10(np.arange(samples), 0xBE, 0xC4, 0, 0x5EED, 0)).T  # (samples, 4)
    keys = np.stack(numpy_step.philox4x32_10(np.arange(samples), 0xBE, 0xC4, 1, 0x5EED, 0)[:2]).T  # (samples, 2)
    ours = np.empty((samples, 4), np.uint32)
    theirs = np.empty((samples, 4), np.uint32)
    for s in range(samples):
        ours[s] = [int(w) for w in numpy_step.philox4x32_10(*words[s], int(keys[s, 0]), int(keys[s, 1]))]
        theirs[s] = rng.philox4x32_10(words[s], keys[s])
    sample_mismatch = int(np.count_nonzero((ours != theirs).any(axis=1)))

    # the engine's layout: counter (household, month, stream, index), a 64-bit seed, vectorised
    seed = 20140401 + (7 << 40)
    k0, k1 = rng.split_seed(seed)
    layout_mismatch = 0
    for stream, month, index in [(rng.STREAM_SHOCKS, 24150, 0), (rng.STREAM_SHOCKS, 24150, 1),
                                 (rng.STREAM_ASSESSMENT, 24177, 0), (rng.STREAM_POPULATION, 0, 2)]:
        expected = rng.uniforms(seed, stream, households, month, index)
        got = np.stack([numpy_step.uniform(w) for w in
                        numpy_step.philox4x32_10(np.arange(households), month, stream, index, k0, k1)]).T
        layout_mismatch += int(np.count_nonzero((got != expected).any(axis=1)))
    return {
        "known_answer_mismatches": int(mismatches),
        "arbitrary_counters": samples,
        "arbitrary_mismatches": sample_mismatch,
        "layout_counters": 4 * households,
        "layout_mismatches": layout_mismatch,
        "ok": mismatches == 0 and sample_mismatch == 0 and layout_mismatch == 0,
    }


#: the slots whose totals over the run :func:`check_step` reports, to show that the comparison exercised them
#: (binned counts summed over their bins, counts by route over their routes)
EXERCISED = ("newly_poor_monthly", "newly_poor_annual", "exits_from_poverty_annual", "returns_to_poverty_annual",
             "gap_fx", "people_by_income", "registered_people_by_income", "supported_people_by_income",
             "newly_identified", "entered_nonpoor", "delay_count")
_BY_ROUTE = ("newly_identified", "entered_nonpoor", "delay_count")


def check_step(households: int = VERIFY_HOUSEHOLDS, months: int = 36, overrides: dict | None = None) -> dict:
    """Engine and NumPy step side by side for every month of a run that includes the registration.

    The run starts in January 2012 (one burn-in year, so ``record_start`` is December
    2012) and has ``months`` months: the default 36 reach December 2014, the second
    December after ``record_start``, so the year-to-year flows (returns to poverty
    among them) and the December income bins are compared.  ``overrides`` change the
    model (the poverty concept, say) within what the NumPy step implements.
    """
    cfg = bench_config(households, months, registration="2013-06", overrides=overrides)
    sim = Simulation(cfg)
    mine = Households(*(a.copy() for a in sim.population.households))
    poor_area = household_poor_area(sim.population)
    params = make_params(cfg)
    poor_ever = np.zeros(households, bool)
    registered_ever = np.zeros(households, bool)
    slot_cells = 0
    max_diff = {"poor": 0, "registered": 0, "all slots": 0}
    stepped = 0
    run_totals = np.zeros(M.N_SLOTS, np.int64)
    while not sim.done:
        m = sim.month
        theirs = sim.step()
        run_totals += theirs
        ours = numpy_step.month_step(mine, 0, m, sim.timeline.line(m), params, *sim.key, poor_area=poor_area)
        diff = np.abs(theirs - ours)
        slot_cells += int(np.count_nonzero(diff))
        max_diff["poor"] = max(max_diff["poor"], int(diff[M.POOR]))
        max_diff["registered"] = max(max_diff["registered"], int(diff[M.REGISTERED]))
        max_diff["all slots"] = max(max_diff["all slots"], int(diff.max()))
        flags_diff = sim.population.households.flags ^ mine.flags
        poor_ever |= (flags_diff & FLAG_POOR) != 0
        registered_ever |= (flags_diff & FLAG_REGISTERED) != 0
        stepped += 1
    state_diff = np.zeros(households, bool)
    for a, b in zip(sim.population.households, mine):
        state_diff |= (a != b) if a.ndim == 1 else (a != b).any(axis=1)
    exercised = {}
    for name in EXERCISED:
        width = M.BINS[name].bins if name in M.BINS else (M.N_ROUTES if name in _BY_ROUTE else 1)
        exercised[name] = int(run_totals[M.SLOTS[name] : M.SLOTS[name] + width].sum())
    return {
        "households": households,
        "months": stepped,
        "registration_month": cfg.policy.registration.month,
        "poverty": describe_poverty(cfg.poverty),
        "exercised": exercised,
        "registered_at_end": int(theirs[M.REGISTERED]),
        "poor_at_end": int(theirs[M.POOR]),
        "differing_total_cells": slot_cells,
        "total_cells": stepped * M.N_SLOTS,
        "max_abs_diff": max_diff,
        "households_poor_status_ever_differs": int(poor_ever.sum()),
        "households_registered_ever_differs": int(registered_ever.sum()),
        "households_final_state_differs": int(state_diff.sum()),
    }


# --------------------------------------------------------------------------------------
# 3. throughput
# --------------------------------------------------------------------------------------


def warm_up() -> None:
    """Compile (or load) every kernel, and run the NumPy step once, on a tiny population."""
    cfg = bench_config(TINY, 1)
    sim = Simulation(cfg)
    sim.step()
    hh = build_population(cfg).households
    numpy_step.month_step(hh, 0, sim.timeline.first, sim.timeline.line(sim.timeline.first), make_params(cfg), *sim.key)


def bench_engine(households: int, months: int) -> tuple[dict, np.ndarray]:
    cfg = bench_config(households, months)
    gc.collect()
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    build = time.perf_counter() - t0
    totals = np.empty((months, M.N_SLOTS), np.int64)
    per_month = []
    t0 = time.perf_counter()
    for j in range(months):
        t = time.perf_counter()
        totals[j] = sim.step()
        per_month.append(time.perf_counter() - t)
    run = time.perf_counter() - t0
    row = {
        "build_s": build,
        "run_s": run,
        "hh_months_per_s": households * months / run,
        "best_month_hh_per_s": households / min(per_month),
        "per_month_s": per_month,
        "bytes_per_household": sim.population.bytes_per_household(),
    }
    return row, totals


def bench_all_rules(households: int) -> dict:
    """The engine with every rule and channel active: the 12 reported months of 2019 after a burn-in year."""
    cfg = povsim.load_config(
        None, overrides={"population.households": int(households), "simulation.burn_in_years": 1, **ALL_RULES_2019}
    )
    gc.collect()
    sim = Simulation(cfg)
    while sim.month < sim.timeline.start:
        sim.step()
    per_month = []
    t0 = time.perf_counter()
    while not sim.done:
        t = time.perf_counter()
        sim.step()
        per_month.append(time.perf_counter() - t)
    run = time.perf_counter() - t0
    return {
        "run_s": run,
        "hh_months_per_s": households * len(per_month) / run,
        "best_month_hh_per_s": households / min(per_month),
        "per_month_s": per_month,
    }


def household_poor_area(population) -> np.ndarray:
    """Each household's village's ``poor_area`` (the NumPy step's per-household view of the village state)."""
    return np.repeat(population.villages.poor_area, np.diff(population.village_start))


def bench_numpy(households: int, months: int, chunk: int) -> tuple[dict, np.ndarray]:
    cfg = bench_config(households, months)
    params = make_params(cfg)
    k0, k1 = rng.split_seed(cfg.seed)
    timeline = Timeline.from_config(cfg)
    population = build_population(cfg)
    hh = population.households
    poor_area = household_poor_area(population)
    gc.collect()
    totals = np.empty((months, M.N_SLOTS), np.int64)
    per_month = []
    t0 = time.perf_counter()
    for j, m in enumerate(range(timeline.first, timeline.first + months)):
        t = time.perf_counter()
        totals[j] = numpy_step.month_step(hh, 0, m, timeline.line(m), params, k0, k1, chunk=chunk, poor_area=poor_area)
        per_month.append(time.perf_counter() - t)
    run = time.perf_counter() - t0
    row = {
        "run_s": run,
        "hh_months_per_s": households * months / run,
        "best_month_hh_per_s": households / min(per_month),
        "per_month_s": per_month,
        "bytes_per_household": sum(a.nbytes for a in hh) / households,
    }
    return row, totals


def numpy_temporaries(chunk: int) -> dict:
    """Peak bytes NumPy allocates during one month of one full chunk (tracemalloc sees NumPy's buffers)."""
    cfg = bench_config(chunk, 1)
    hh = build_population(cfg).households
    timeline = Timeline.from_config(cfg)
    params = make_params(cfg)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    numpy_step.month_step(hh, 0, timeline.first, timeline.line(timeline.first), params,
                          *rng.split_seed(cfg.seed), chunk=chunk)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"chunk": chunk, "peak_bytes": peak, "bytes_per_chunk_household": peak / chunk}


# --------------------------------------------------------------------------------------
# 4. where the time goes (approximate: each part timed on its own)
# --------------------------------------------------------------------------------------


@numba.njit(parallel=True, error_model="numpy")
def _engine_philox(n, month, k0, k1):
    """The month step's Philox call per household (stream SHOCKS, index 0), nothing else."""
    total = 0.0
    for i in numba.prange(n):
        a, b, c, d = rng.draw4(k0, k1, rng.STREAM_SHOCKS, i, month, 0)
        total += a + b + c + d
    return total


@numba.njit(parallel=True, error_model="numpy")
def _engine_month_draws(hh, vs, per_block, month, k0, k1):
    """The engine's own draws: income.draw for every village (one Philox call per household,
    vectorised, and the Box-Muller income normals), in the engine's blocks of villages.

    (The hook reads no parameters: 0 stands for them; in January it writes the annual normals into ``hh``.)"""
    n_villages = vs.county.shape[0]
    largest = 0
    for v in range(n_villages):
        largest = max(largest, vs.start[v + 1] - vs.start[v])
    total = 0.0
    for b in numba.prange(-(-n_villages // per_block)):
        s = scratch(largest)
        for v in range(b * per_block, min(n_villages, (b + 1) * per_block)):
            income.draw(hh, vs, v, 0, month, 0.0, 0, k0, k1, 0, s)
            total += s.draws[DRAW_INCOME, 0]
    return total


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def breakdown(households: int, chunk: int, repeats: int = 3) -> dict:
    """Nanoseconds per household-month of the random numbers and maths vs the whole step, both versions."""
    cfg = bench_config(households, repeats)
    k0, k1 = rng.split_seed(cfg.seed)
    timeline = Timeline.from_config(cfg)
    month = timeline.first
    _engine_philox(10, month, k0, k1)  # compile
    sim = Simulation(cfg)
    vs = sim.population.villages
    households_state = sim.population.households
    _engine_month_draws(households_state, vs, 1, month, k0, k1)  # compile
    engine = {
        "philox": _best_of(lambda: _engine_philox(households, month, k0, k1), repeats),
        "draws + normals (+ exp)": _best_of(
            lambda: _engine_month_draws(households_state, vs, villages_per_block(vs.county.shape[0]), month, k0, k1), repeats
        ),
        "whole step": _best_of(sim.step, repeats),
    }
    del sim

    n = min(chunk, households)
    params = make_params(cfg)
    hh = build_population(bench_config(n, 1)).households
    gid = np.arange(n).astype(np.uint32)

    def draws_and_maths():
        w0, w1, w2, w3 = numpy_step.philox4x32_10(gid, month, rng.STREAM_SHOCKS, 0, k0, k1)
        u = [numpy_step.uniform(w) for w in (w0, w1, w2, w3)]
        z_persistent, z_transitory = numpy_step._box_muller(u[0], u[1])
        return np.exp(z_persistent + z_transitory) + u[2] + u[3]

    nump = {
        "philox": _best_of(lambda: numpy_step.philox4x32_10(gid, month, rng.STREAM_SHOCKS, 0, k0, k1), repeats),
        "draws + normals (+ exp)": _best_of(draws_and_maths, repeats),
        "whole step": _best_of(lambda: numpy_step.month_step(hh, 0, month, timeline.line(month), params, k0, k1,
                                                             chunk), repeats),
    }
    return {
        "households": {"engine": households, "numpy": n},
        "engine_ns": {k: v / households * 1e9 for k, v in engine.items()},
        "numpy_ns": {k: v / n * 1e9 for k, v in nump.items()},
    }


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def _size_label(n: int) -> str:
    e = int(round(np.log10(n))) if n > 0 else 0
    return f"1e{e}" if 10**e == n else f"{n:,}"


def print_report(res: dict) -> None:
    env, comp, months = res["environment"], res["compile"], res["months"]
    print(f"povsim engine benchmark, {env['date']}")
    print(f"  CPU: {env['cpu']} ({env['logical_cpus']} logical CPUs); Numba threads: {env['numba_threads']}")
    print(f"  Python {env['python']}, NumPy {env['numpy']}, Numba {env['numba']}, povsim {env['povsim']}")
    print()
    print(f"Compile ({TINY:,}-household Simulation + one month, fresh interpreter, NUMBA_CACHE_DIR=<new temp dir>):")
    if comp is None:
        print("  skipped (--no-compile)")
    for name, label in (("cold", "cold compile (empty cache)"), ("warm", "warm cache (same dir, 2nd run)")):
        if comp is None:
            break
        c = comp[name]
        print(f"  {label:32s} import {c['import_s']:5.2f} s   build {c['build_s']:6.2f} s   "
              f"first step {c['first_step_s']:6.2f} s   in-process total {c['total_s']:6.2f} s   "
              f"process {c['process_wall_s']:6.2f} s")
    if comp is not None:
        print(f"  Numba cache files written by the cold run: {comp['cold']['cache_files']}")
    print()
    ph = res["philox_check"]
    print(f"NumPy Philox4x32-10 vs povsim.rng: {'IDENTICAL' if ph['ok'] else 'MISMATCH'} "
          f"({len(KNOWN_ANSWERS)} Random123 known answers, {ph['arbitrary_counters']} arbitrary counters/keys: "
          f"{ph['arbitrary_mismatches']} differ, {ph['layout_counters']:,} engine-layout counters: "
          f"{ph['layout_mismatches']} differ)")
    v = res["step_check"]
    print(f"NumPy step vs engine, {v['households']:,} households x {v['months']} months "
          f"(registration {v['registration_month']}: {v['registered_at_end']:,} registered, "
          f"{v['poor_at_end']:,} poor at the end; poverty: {v['poverty']}):")
    print(f"  monthly totals: {v['differing_total_cells']} of {v['total_cells']} (month, slot) cells differ; "
          f"max |diff| poor {v['max_abs_diff']['poor']}, registered {v['max_abs_diff']['registered']}, "
          f"any slot {v['max_abs_diff']['all slots']}")
    print(f"  households whose poor status ever differs: {v['households_poor_status_ever_differs']}, "
          f"registered status: {v['households_registered_ever_differs']}, "
          f"any state at the end: {v['households_final_state_differs']}")
    print()
    t = res["numpy_temporaries"]
    print(f"Throughput over {months} simulated months, after warm-up (Mhh-mo/s: million household-months per "
          f"second;\nNumPy: 1 thread, chunks of {t['chunk']:,} households, peak temporaries "
          f"{t['peak_bytes'] / 2**20:.0f} MiB = {t['bytes_per_chunk_household']:.0f} B per household of a chunk):")
    eng_cols = f"{'build s':>7} {'run s':>7} {'Mhh-mo/s':>8} {'best mo':>8} {'B/hh':>6}"
    np_cols = f"{'run s':>7} {'Mhh-mo/s':>8} {'best mo':>8} {'B/hh':>6}"
    eng_title = f"engine (Numba, {env['numba_threads']} threads)"
    print(f"{'':>10} | {eng_title:^{len(eng_cols)}} | {'NumPy (1 thread)':^{len(np_cols)}} | "
          f"{'engine':>7} | {'max |d|':>8} | {'every rule':>10}")
    head = (f"{'households':>10} | {eng_cols} | {np_cols} | {'/NumPy':>7} | {'poor/reg':>8} | "
            f"{'Mhh-mo/s':>10}")
    print(head)
    print("-" * len(head))
    for row in res["rows"]:
        e, n = row["engine"], row.get("numpy")
        left = (f"{_size_label(row['households']):>10} | {e['build_s']:7.2f} {e['run_s']:7.2f} "
                f"{e['hh_months_per_s'] / 1e6:8.2f} {e['best_month_hh_per_s'] / 1e6:8.2f} "
                f"{e['bytes_per_household']:6.2f} | ")
        rules = f" | {row['all_rules']['hh_months_per_s'] / 1e6:10.2f}" if "all_rules" in row else ""
        if n is None:
            print(left + f"{'skipped: ' + row.get('numpy_skipped', ''):<{len(np_cols)}} | {'-':>7} | {'-':>8}"
                  + rules)
        else:
            ratio = e["hh_months_per_s"] / n["hh_months_per_s"]
            d = row["totals_max_abs_diff"]
            print(left + f"{n['run_s']:7.2f} {n['hh_months_per_s'] / 1e6:8.2f} "
                  f"{n['best_month_hh_per_s'] / 1e6:8.2f} {n['bytes_per_household']:6.2f} | {ratio:6.1f}x | "
                  f"{str(d['poor']) + '/' + str(d['registered']):>8}" + rules)
    b = res["breakdown"]
    print()
    print(f"Where the time goes: wall ns per household-month, each part timed alone (best of 3); engine at "
          f"{b['households']['engine']:,} households on {env['numba_threads']} threads, NumPy on one chunk of "
          f"{b['households']['numpy']:,}:")
    whole_e, whole_n = b["engine_ns"]["whole step"], b["numpy_ns"]["whole step"]
    for part in b["engine_ns"]:
        e, n = b["engine_ns"][part], b["numpy_ns"][part]
        print(f"  {part:24s} engine {e:7.1f} ns ({100 * e / whole_e:3.0f}%)   NumPy {n:7.1f} ns "
              f"({100 * n / whole_n:3.0f}%)")
    print("  (draws + normals: the engine's own income.draw, Philox and the Box-Muller income normals of every"
          " household;\n   the bill's normal and the exps are in income.household_month, the bill's for ill households only."
          " NumPy: Philox,\n   the normals (the bill's only for ill households) and the exp.)")
    print()
    print("build s: Simulation(cfg), i.e. building the population (compiled, parallel). best mo: the fastest "
          "single month.\nB/hh: engine = Population.bytes_per_household() (state + village structure); NumPy = "
          "state arrays.\nmax |d| poor/reg: largest monthly difference of the poor and registered counts, NumPy "
          "vs engine.\nTimed months are burn-in months of the one-time model (no registration, no transfers), the model"
          " the NumPy step implements.\nevery rule: the engine with quota registration, look-back, review and all four "
          "channels active, the 12 months of 2019 after a burn-in year.")
    print(f"Peak resident memory of this process: {res['peak_rss_bytes'] / 2**30:.2f} GiB; total wall time "
          f"{res['wall_s']:.0f} s; 1-minute load average {env['load_average_at_start']:.2f} at the start, "
          f"{res['load_average_at_end']:.2f} at the end.")


# --------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes like 1e5,1e6,1e7") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_sizes, default=[10**5, 10**6, 10**7], help="households, e.g. 1e5,1e6,1e7")
    ap.add_argument("--months", type=int, default=12, help="simulated months timed at each size (1..108)")
    ap.add_argument("--max-households", type=lambda s: int(float(s)), default=10**7,
                    help="largest size the NumPy version is run at (the engine runs every size); default 1e7")
    ap.add_argument("--numpy-budget", type=float, default=240.0,
                    help="skip a NumPy size whose estimated time (from the previous size) exceeds this, seconds")
    ap.add_argument("--chunk", type=int, default=numpy_step.DEFAULT_CHUNK, help="NumPy chunk, households")
    ap.add_argument("--no-compile", action="store_true", help="skip the cold/warm compile subprocesses")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if not 1 <= args.months <= 108:
        ap.error(f"--months {args.months}: allowed 1..108 (the default poverty lines end in 2020)")
    sizes = sorted(set(args.sizes))

    t_start = time.perf_counter()
    res: dict = {"environment": environment(), "months": args.months, "sizes": sizes}
    res["compile"] = None if args.no_compile else compile_times()
    warm_up()
    res["philox_check"] = check_philox()
    res["step_check"] = check_step()
    res["numpy_temporaries"] = numpy_temporaries(args.chunk)
    res["breakdown"] = breakdown(min(10**6, sizes[-1]), args.chunk)

    rows = []
    numpy_rate = None
    for n in sizes:
        row: dict = {"households": n}
        print(f"[{time.perf_counter() - t_start:6.1f} s] engine, {n:,} households ...", file=sys.stderr, flush=True)
        row["engine"], engine_totals = bench_engine(n, args.months)
        gc.collect()
        print(f"[{time.perf_counter() - t_start:6.1f} s] engine with every rule, {n:,} households ...",
              file=sys.stderr, flush=True)
        row["all_rules"] = bench_all_rules(n)
        gc.collect()
        estimate = n * args.months / numpy_rate if numpy_rate else 0.0
        if n > args.max_households:
            row["numpy_skipped"] = "> --max-households"
        elif estimate > args.numpy_budget:
            row["numpy_skipped"] = f"est. {estimate:.0f} s > budget"
        else:
            print(f"[{time.perf_counter() - t_start:6.1f} s] NumPy,  {n:,} households ...", file=sys.stderr,
                  flush=True)
            row["numpy"], numpy_totals = bench_numpy(n, args.months, args.chunk)
            numpy_rate = row["numpy"]["hh_months_per_s"]
            diff = np.abs(engine_totals - numpy_totals)
            row["totals_max_abs_diff"] = {"poor": int(diff[:, M.POOR].max()),
                                          "registered": int(diff[:, M.REGISTERED].max()),
                                          "all slots": int(diff.max())}
        gc.collect()
        rows.append(row)
    res["rows"] = rows
    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res["wall_s"] = time.perf_counter() - t_start
    res["load_average_at_end"] = os.getloadavg()[0]
    print_report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
