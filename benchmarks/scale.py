"""National scale on one machine: the engine from 10^6 to 2 x 10^8 households.

Run from the repository root::

    python benchmarks/scale.py                          # 1e6, 1e7, 1e8, 2e8 households (about 20 minutes, 11 GiB at 2e8)
    python benchmarks/scale.py --max-households 1e7     # a smaller machine: 1e6 and 1e7 only
    python benchmarks/scale.py --sizes 1e6,3e7 --json scale.json

What is measured, in one run
----------------------------
1. **Start-up** (fresh interpreters): ``povsim run experiments/china_2014_2020.toml
   --households 3000 --quiet`` with ``NUMBA_CACHE_DIR`` pointed at an empty folder
   (the first compile of everything the China timeline uses), then the same command
   again with that cache (a second ``povsim run``).  Wall time of the whole command,
   which includes the 3,000-household run itself (a few hundredths of a second).
2. **Memory bandwidth**: a STREAM-style triad ``a = b + s * c`` on three float64
   arrays of 2^25 elements, compiled with Numba, on all Numba threads, best of 5,
   counting 24 bytes per element as STREAM does.
3. **Bytes the engine moves per household-month**: every state array is read once a
   month, and a 64-byte cache line that the month changes is written back once; an
   array the month stores for every household (``ALWAYS_STORED``) is written back
   whole, since a store dirties its cache line even when it leaves the value as it was.
   Measured on 100,000 households in a month with every rule and channel running
   (state compared before and after the month, cache line by cache line).  Bandwidth
   divided by it is the memory-bound ceiling on household-months per second.
4. **Throughput and memory at each size**, each size in a fresh subprocess (so peak
   resident memory is that size's own):

   * *China, 2013-2020*: ``experiments/china_2014_2020.toml`` as it stands (five years
     of burn-in, the 2014 quota registration, the 2015-16 look-back, annual reviews
     from 2017-10, all four channels from 2017-2018): 156 months.  Run at the sizes up
     to ``--full-timeline-max`` (default: every size).
   * *compressed*: the same file with every rule moved into one year, 2019 (quota
     registration in January, look-back March to August, review in October, all four
     channels from February), after one burn-in year: 24 months.  Run at every size;
     it gives the throughput of months with every rule and channel running.  At a
     size where the China timeline was not run, its time is projected from the China
     rate of the largest size where it was (the rate does not depend on the size:
     the engine is bound by computation, not memory).

   Printed per size: build time, wall time, household-months per second (all
   months; burn-in months; months with every channel), peak resident memory of the
   process, bytes of state per household, resident bytes per household (peak minus
   the process's resident memory just before the population was built), and the
   fraction of the memory-bound ceiling reached.

Options: ``--sizes``, ``--max-households`` (skip larger sizes), ``--full-timeline-max``,
``--threads``, ``--no-startup``, ``--json PATH``.  Timings are wall-clock on a possibly
shared machine; the 1-minute load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHINA = ROOT / "experiments" / "china_2014_2020.toml"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import ALL_RULES_2019  # noqa: E402  (benchmarks/engine.py, beside this file)
from engine import environment as bench_environment  # noqa: E402

#: every rule of the China timeline within one year, 2019, after one burn-in year
COMPRESSED = {**ALL_RULES_2019, "simulation.burn_in_years": 1}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> float:
    return os.getloadavg()[0]


def parse_size(text: str) -> int:
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r}: a positive whole number of households, e.g. 1e6")
    return int(value)


# --------------------------------------------------------------------------------------
# 1. Start-up
# --------------------------------------------------------------------------------------


def startup() -> dict:
    """Wall time of `povsim run` on the China file with an empty Numba cache, then with that cache."""
    povsim = shutil.which("povsim") or "povsim"
    command = [povsim, "run", str(CHINA), "--households", "3000", "--quiet"]
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold_s", "warm_s"):
            t0 = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            out[label] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------------------
# 2. STREAM triad
# --------------------------------------------------------------------------------------


def triad_bandwidth(n: int = 1 << 25, repeats: int = 5) -> dict:
    import numba as nb
    import numpy as np

    @nb.njit(parallel=True)
    def triad(a, b, c, s):
        for i in nb.prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    triad(a, b, c, 3.0)  # compile and touch every page
    best = min(_timed(lambda: triad(a, b, c, 3.0)) for _ in range(repeats))
    return {"bytes_per_s": 24 * n / best, "elements": n, "threads": nb.get_num_threads()}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------
# 3. Bytes moved per household-month
# --------------------------------------------------------------------------------------


#: state arrays the month stores for every household, changed or not (income.household_month, poverty.update)
ALWAYS_STORED = ("illness", "unemployed", "persistent", "capacity", "medical_12m", "net_income", "flags")


def bytes_moved(households: int = 100_000) -> dict:
    """State read (all of it) plus dirty 64-byte cache lines written back, per household, in one month."""
    import numpy as np
    import povsim
    from povsim.engine import Simulation
    from povsim.config import parse_month

    cfg = povsim.load_config(CHINA, overrides={"population.households": households, **COMPRESSED})
    sim = Simulation(cfg)
    measured_month = parse_month("2019-05")  # every channel running, inside the look-back window
    while sim.month < measured_month:
        sim.step()
    before = [a.copy() for a in sim.population.households]
    sim.step()
    read = written = 0
    per_array = {}
    for name, old, new in zip(sim.population.households._fields, before, sim.population.households):
        raw_old = np.ascontiguousarray(old).view(np.uint8).ravel()
        raw_new = np.ascontiguousarray(new).view(np.uint8).ravel()
        changed = raw_old != raw_new
        pad = (-changed.size) % 64
        lines = np.concatenate([changed, np.zeros(pad, bool)]).reshape(-1, 64).any(axis=1)
        dirty = old.nbytes if name in ALWAYS_STORED else int(lines.sum()) * 64
        read += old.nbytes
        written += dirty
        per_array[name] = dirty / households
    return {
        "households": households,
        "read_per_household": read / households,
        "written_per_household": written / households,
        "moved_per_household": (read + written) / households,
        "written_by_array": per_array,
    }


# --------------------------------------------------------------------------------------
# 4. One size, in its own process
# --------------------------------------------------------------------------------------


def child(households: int, timeline: str) -> dict:
    """Build and run one population in this (fresh) process; report times and memory."""
    import numba as nb
    import povsim
    from povsim.engine import Simulation

    overrides = {"population.households": households}
    if timeline == "compressed":
        overrides.update(COMPRESSED)
    cfg = povsim.load_config(CHINA, overrides=overrides)
    # warm-up: load every compiled function from the cache (or compile it) on 3,000 households
    warm = Simulation(povsim.load_config(CHINA, overrides={**overrides, "population.households": 3000}))
    while not warm.done:
        warm.step()
    del warm
    rss_before = _current_rss()
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    build = time.perf_counter() - t0
    channels_from = min(sim.timeline.channels.values()) if sim.timeline.channels else sim.timeline.end + 1
    per_month = []
    t0 = time.perf_counter()
    while not sim.done:
        m = sim.month
        t = time.perf_counter()
        sim.step()
        per_month.append((m, time.perf_counter() - t))
    run = time.perf_counter() - t0
    burn = [s for m, s in per_month if m < sim.timeline.start]
    rules = [s for m, s in per_month if m >= channels_from]
    return {
        "households": households,
        "timeline": timeline,
        "threads": nb.get_num_threads(),
        "months": len(per_month),
        "build_s": build,
        "run_s": run,
        "hh_months_per_s": households * len(per_month) / run,
        "burn_in_hh_months_per_s": households * len(burn) / sum(burn) if burn else None,
        "channels_hh_months_per_s": households * len(rules) / sum(rules) if rules else None,
        "peak_rss_bytes": _peak_rss(),
        "rss_before_bytes": rss_before,
        "state_bytes_per_household": sim.population.bytes_per_household(),
    }


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_size(households: int, timeline: str, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["NUMBA_NUM_THREADS"] = str(threads)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(households), "--timeline", timeline],
        env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def environment() -> dict:
    """benchmarks/engine.py's description of the machine and versions, plus its memory."""
    env = bench_environment()
    env["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return env


def _m(x: float | None) -> str:
    return "      -" if x is None else f"{x / 1e6:7.2f}"


def print_report(env: dict, start: dict | None, bandwidth: dict, moved: dict, rows: list[dict], load: tuple) -> None:
    gib = 2.0**30
    print(f"povsim at national scale, {env['date']}")
    print(f"  CPU: {env['cpu']} ({env['logical_cpus']} logical CPUs), memory {env['memory_bytes'] / gib:.1f} GiB")
    print(f"  Python {env['python']}, NumPy {env['numpy']}, Numba {env['numba']}, povsim {env['povsim']}")
    print(f"  1-minute load average: {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    print()
    if start:
        print("Start-up: `povsim run experiments/china_2014_2020.toml --households 3000 --quiet`, whole command:")
        print(f"  empty Numba cache (first compile) {start['cold_s']:6.1f} s;  second run (cached) {start['warm_s']:5.1f} s")
        print()
    bw = bandwidth["bytes_per_s"]
    print(f"Memory bandwidth (STREAM triad, {bandwidth['elements']:,} float64 per array, "
          f"{bandwidth['threads']} threads, best of 5): {bw / 1e9:.1f} GB/s")
    print(f"Engine traffic per household-month ({moved['households']:,} households, a month with every channel):")
    print(f"  read {moved['read_per_household']:.1f} B (all state) + written back {moved['written_per_household']:.1f} B "
          f"(dirty cache lines) = {moved['moved_per_household']:.1f} B")
    top = sorted(moved["written_by_array"].items(), key=lambda kv: -kv[1])[:5]
    print("  written back most: " + ", ".join(f"{k} {v:.1f} B" for k, v in top))
    ceiling = bw / moved["moved_per_household"]
    print(f"  memory-bound ceiling: {ceiling / 1e6:.0f} million household-months per second")
    print()
    print("Throughput (Mhh-mo/s: million household-months per second) and memory, each size in its own process:")
    header = (f"{'households':>11} {'timeline':>10} {'months':>6} {'build s':>8} {'run s':>8} {'all':>7} "
              f"{'burn-in':>7} {'channels':>8} {'peak RSS':>9} {'state':>6} {'RSS':>6} {'of bound':>8} {'2013-20':>8}")
    print(header)
    print(f"{'':>11} {'':>10} {'':>6} {'':>8} {'':>8} {'Mhh-mo/s':>24} {'GiB':>9} {'B/hh':>6} {'B/hh':>6} "
          f"{'':>8} {'min':>8}")
    print("-" * len(header))
    china = {r["households"]: r for r in rows if r["timeline"] == "china"}
    for r in rows:
        n = r["households"]
        rss_per_hh = (r["peak_rss_bytes"] - r["rss_before_bytes"]) / n
        rate = r["channels_hh_months_per_s"] or r["hh_months_per_s"]
        if r["timeline"] == "china":
            whole = f"{r['run_s'] / 60:8.1f}"
        elif n in china:
            whole = f"{'-':>8}"  # measured in the china row of this size
        elif china:
            largest = china[max(china)]
            whole = f"{n * largest['months'] / largest['hh_months_per_s'] / 60:7.1f}p"
        else:
            whole = f"{'-':>8}"
        print(f"{n:11.0e} {r['timeline']:>10} {r['months']:6d} {r['build_s']:8.2f} {r['run_s']:8.1f} "
              f"{_m(r['hh_months_per_s'])} {_m(r['burn_in_hh_months_per_s'])} {_m(r['channels_hh_months_per_s']):>8} "
              f"{r['peak_rss_bytes'] / gib:9.2f} {r['state_bytes_per_household']:6.1f} {rss_per_hh:6.1f} "
              f"{rate / ceiling:8.1%} {whole}")
    print()
    print("all / burn-in / channels: household-months per second over all months, over the burn-in months,")
    print("  and over the months with every channel running.  of bound: the channels rate (or all, without")
    print("  channels) over the memory-bound ceiling.  2013-20: minutes for the China timeline (156 months)")
    print("  at this size: measured (china rows), or, where it was not run, projected (p) from the China rate")
    print("  of the largest size where it was.")
    print("RSS B/hh: (peak resident memory - resident memory just before the build) / households; at small")
    print("  sizes the peak is the start-up's (imports, loading compiled code), not the population's.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e6,1e7,1e8,2e8", help="household counts, comma-separated")
    parser.add_argument("--max-households", type=parse_size, default=None, help="skip sizes above this")
    parser.add_argument("--full-timeline-max", type=parse_size, default=None,
                        help="run the whole 2013-2020 China timeline up to this size (default: every size)")
    parser.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS for the runs")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", type=parse_size, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--timeline", choices=("china", "compressed"), default="compressed", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(child(args.child, args.timeline)))
        return 0

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    if args.max_households is not None:
        sizes = [n for n in sizes if n <= args.max_households]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for n in sizes:
        if n * 64 > memory:
            parser.error(f"--sizes: {n:.0e} households need about {n * 64 / 2**30:.0f} GiB of state; this machine "
                         f"has {memory / 2**30:.0f} GiB (use --max-households)")
    load0 = load_average()
    env = environment()
    start = None
    if not args.no_startup:
        log("start-up: povsim run with an empty Numba cache, then again ...")
        start = startup()
    log("memory bandwidth (STREAM triad) ...")
    bandwidth = triad_bandwidth()
    log("bytes moved per household-month ...")
    moved = bytes_moved()
    rows = []
    for n in sizes:
        full = args.full_timeline_max is None or n <= args.full_timeline_max
        timelines = (["china"] if full else []) + ["compressed"]
        for timeline in timelines:
            log(f"{n:.0e} households, {timeline} timeline ...")
            rows.append(run_size(n, timeline, args.threads))
    print_report(env, start, bandwidth, moved, rows, (load0, load_average()))
    if args.json:
        payload = {"environment": env, "startup": start, "bandwidth": bandwidth, "moved": moved, "sizes": rows}
        from povsim.files import write_text_atomically

        write_text_atomically(args.json, json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
