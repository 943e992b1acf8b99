"""Sweep benchmark: many runs of one experiment on 1 and 2 Dask workers, against the serial run time.

    python benchmarks/sweep.py                      # 64 runs of 100,000 households (a few minutes on 2 cores)
    python benchmarks/sweep.py --runs 16 --households 20000 --json sweep.json

The experiment is a grid sweep of the quota scale (8 values) x replicates, on the
default rules with a shortened calendar so the benchmark stays within minutes:
one burn-in year, 2014-01 to 2016-12 reported (48 simulated months), with the
look-back, the first annual review (2016-10) and every channel (from 2016-01)
inside that window.  Every run is a separate job of ``households`` households.

It prints, each measured after the workers have loaded the compiled engine:

* **serial**: ``--serial-runs`` of the runs in this process, one engine thread
  (a worker's share), without Dask: the work per run;
* for each worker count: the wall time of all the runs on a fresh
  ``LocalCluster`` (one thread per worker process), the cluster's start-up and
  warm-up time (reported apart), the speed-up over serial, the **scaling
  efficiency** ``T(1 worker) / (n x T(n workers))``, the **overhead per run**
  against the serial run time, ``T(n workers) x n / runs - serial time per run``,
  and its two parts: the time a run's task computed on its worker (from Dask's
  task stream) minus the serial time per run -- the same work done slower, i.e.
  contention for the cores -- and the time each worker spent not computing a
  run, ``(n x T(n workers) - total task time) / runs`` -- Dask's own cost
  (scheduling, moving the result back, the driver's bookkeeping) plus the idle
  tail when the last runs finish unevenly;
* a check that the runs on Dask give the same metrics as serial runs, bit for bit.

Timings are wall-clock on whatever else the machine is doing (the load average is
printed); rerun when they look noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

QUOTA_SCALES = [0.9, 1.0, 1.1, 1.2, 1.28, 1.4, 1.5, 1.6]


def experiment(runs: int, households: int):
    from povsim.config import merge
    from povsim.experiments import Experiment

    points = min(len(QUOTA_SCALES), runs)
    if runs % points:
        raise SystemExit(f"--runs {runs}: use a multiple of {points} (sweep points)")
    base = merge({
        "name": "sweep_benchmark",
        "seed": 20140401,
        "simulation": {"start": "2014-01", "end": "2016-12", "burn_in_years": 1},
        "population": {"households": households},
        "policy": {
            "lookback": {"start": "2015-08", "end": "2016-06"},
            "review": {"first": "2016-10"},
            "channels": {name: {"start": "2016-01"} for name in ("self", "cadre", "data", "hotline")},
        },
    })
    return Experiment.from_dict(base, {}, {"replicates": runs // points},
                                sweep={"grid": {"policy.registration.quota_scale": QUOTA_SCALES[:points]}})


def warm(households: int = 1000):
    """Load the compiled engine (Numba's cache) in this process: one tiny run."""
    import povsim

    cfg = povsim.load_config(overrides={"population.households": households, "simulation.burn_in_years": 1,
                                        "simulation.end": "2014-12", "policy.lookback.enabled": False,
                                        "policy.review.enabled": False,
                                        **{f"policy.channels.{c}.enabled": False
                                           for c in ("self", "cadre", "data", "hotline")}})
    povsim.run(cfg)
    return os.getpid()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=64, help="runs in the sweep (a multiple of 8)")
    parser.add_argument("--households", type=float, default=1e5, help="households per run")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    parser.add_argument("--serial-runs", type=int, default=16, help="runs timed serially (the per-run reference)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    import numba
    import pandas as pd

    import povsim
    from povsim.cluster import available_cores, open_client

    households = int(args.households)
    exp = experiment(args.runs, households)
    months = exp.configs["baseline"].simulation
    print(f"sweep benchmark: {len(exp.runs)} runs ({len(exp.sweep.points)} sweep points x {exp.replicates} "
          f"replicates) of {households:,} households, 48 simulated months "
          f"({months.start} to {months.end} reported, 1 burn-in year)")
    print(f"machine: {platform.processor() or platform.machine()}, {available_cores()} cores, "
          f"load average {load_average()}; povsim {povsim.__version__}, numba {numba.__version__}, "
          f"python {platform.python_version()}")

    # serial reference: one engine thread, in this process, no Dask
    warm()
    numba.set_num_threads(1)
    serial_specs = exp.runs[: args.serial_runs]
    from povsim.cluster import simulate

    t0 = time.perf_counter()
    serial = {spec: simulate(exp.config_for(spec).to_dict()) for spec in serial_specs}
    serial_total = time.perf_counter() - t0
    per_run = serial_total / len(serial_specs)
    engine = sum(r.manifest["wall_time_s"] for r in serial.values()) / len(serial)
    print(f"serial: {len(serial_specs)} runs in {serial_total:.1f} s = {per_run:.2f} s per run "
          f"({engine:.2f} s in the engine); {len(exp.runs)} runs would take {per_run * len(exp.runs):.1f} s")

    rows = []
    for n in [int(w) for w in args.workers.split(",")]:
        t_start = time.perf_counter()
        from distributed import Client, LocalCluster

        if n == 1:  # open_client runs serially below two workers; a one-worker cluster measures Dask's overhead
            import logging

            cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            context = Client(cluster)
        else:
            cluster = None
            context = open_client(workers=n)
        with context as client:
            startup = time.perf_counter() - t_start
            t_warm = time.perf_counter()
            client.run(warm)
            warmup = time.perf_counter() - t_warm
            from distributed import get_task_stream

            with get_task_stream(client) as stream:
                t0 = time.perf_counter()
                outcome = exp.run(client)
                wall = time.perf_counter() - t0
            compute = sum(
                ss["stop"] - ss["start"]
                for task in stream.data if str(task.get("key", "")).startswith("povsim-")
                for ss in task["startstops"] if ss["action"] == "compute"
            )
        if cluster is not None:
            cluster.close()
        assert outcome.ok, outcome.failures
        for spec, result in serial.items():
            pd.testing.assert_frame_equal(outcome.runs[spec].metrics, result.metrics, check_exact=True)
        rows.append({"workers": n, "wall_s": wall, "startup_s": startup, "warmup_s": warmup, "task_s": compute})
        print(f"{n} worker{'s' if n > 1 else ''}: {len(exp.runs)} runs in {wall:.1f} s "
              f"(cluster start {startup:.1f} s, engine load on workers {warmup:.1f} s, not included); "
              f"metrics identical to the serial runs")

    runs = len(exp.runs)
    print()
    print(f"{'workers':>7} {'wall s':>8} {'s/run':>7} {'speed-up':>9} {'efficiency':>10} {'overhead/run':>13}"
          f" {'= slower task':>14} {'+ not in a task':>16}")
    base = next((r["wall_s"] for r in rows if r["workers"] == 1), None)
    serial_all = per_run * runs
    print(f"{'serial':>7} {serial_all:8.1f} {per_run:7.2f} {1.0:9.2f} {'-':>10} {'-':>13} {'-':>14} {'-':>16}"
          f"   (from {len(serial_specs)} runs)")
    for r in rows:
        n = r["workers"]
        r["speedup"] = serial_all / r["wall_s"]
        r["efficiency"] = base / (n * r["wall_s"]) if base else None
        r["overhead_per_run_s"] = r["wall_s"] * n / runs - per_run
        r["task_slowdown_per_run_s"] = r["task_s"] / runs - per_run
        r["outside_tasks_per_run_s"] = (r["wall_s"] * n - r["task_s"]) / runs
        eff = f"{r['efficiency']:.0%}" if r["efficiency"] is not None else "-"
        print(f"{n:>7} {r['wall_s']:8.1f} {r['wall_s'] / runs:7.2f} {r['speedup']:9.2f} {eff:>10} "
              f"{r['overhead_per_run_s']:12.3f}s {r['task_slowdown_per_run_s']:13.3f}s "
              f"{r['outside_tasks_per_run_s']:15.3f}s")
    print(f"\nefficiency = T(1 worker) / (n x T(n workers)); overhead per run = T(n) x n / runs - serial s/run "
          f"= (task time per run - serial s/run) + (n x T(n) - task time) / runs; load average now {load_average()}")
    if args.json:
        args.json.write_text(json.dumps({
            "runs": len(exp.runs), "households": households, "serial_s_per_run": per_run,
            "serial_runs_timed": len(serial_specs), "rows": rows, "load_average": load_average(),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
