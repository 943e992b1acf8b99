"""Two povsim source trees side by side, alternating: the same results, and how fast.

Run from the repository root::

    python benchmarks/ab.py OLD_TREE                 # OLD_TREE against this checkout
    python benchmarks/ab.py OLD_TREE NEW_TREE --households 1e6 --rounds 3

Each round runs the China timeline (``experiments/china_2014_2020.toml``, burn-in
included) once with each tree, in a fresh interpreter whose ``sys.path`` starts with
that tree, alternating old and new so that both meet the same load on a shared
machine.  Each run prints its wall time for the whole timeline after a warm-up
(compilation excluded), household-months per second, and a SHA-256 of the run's metrics
(every reported month, every column, taken by name) and its detection-delay table:
identical checksums mean every number the run reports is identical.
The report gives each tree's best and median rate, and new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import hashlib, json, sys, time
import numpy as np
import povsim
from povsim.engine import Simulation
cfg = povsim.load_config(sys.argv[1], overrides={"population.households": int(sys.argv[2])})
Simulation(povsim.load_config(sys.argv[1], overrides={"population.households": 2000})).run()  # compile / load the cache
sim = Simulation(cfg)
t0 = time.perf_counter()
result = sim.run()
wall = time.perf_counter() - t0
digest = hashlib.sha256()
tables = {"metrics": result.metrics, "delays": result.delays.reset_index()}
for table_name, table in tables.items():
    for column in sorted(table.columns, key=str):  # by name: independent of the order of columns
        values = table[column].to_numpy()
        digest.update(f"{table_name}.{column}".encode())
        digest.update(values.astype(str).tobytes() if values.dtype == object else np.ascontiguousarray(values).tobytes())
hm = cfg.population.households * sim.timeline.n_simulated
print(json.dumps({"source": povsim.__file__, "wall": wall, "rate": hm / wall, "checksum": digest.hexdigest()}))
"""


def run_tree(tree: Path, experiment: Path, households: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(experiment), str(households)],
        env=env, cwd=tree, capture_output=True, text=True, timeout=1800, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="the other source tree (a git worktree of the commit to compare)")
    ap.add_argument("new", type=Path, nargs="?", default=Path(__file__).resolve().parents[1], help="default: this checkout")
    ap.add_argument("--households", type=lambda s: int(float(s)), default=10**6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--experiment", default="experiments/china_2014_2020.toml")
    args = ap.parse_args(argv)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"machine: {cpu}, {os.cpu_count()} cores; {args.households:,} households, China timeline, {args.rounds} rounds")
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            res = run_tree(trees[name], trees[name] / args.experiment, args.households)
            runs[name].append(res)
            print(f"round {r + 1} {name}: {res['wall']:.2f} s, {res['rate']:.3e} household-months/s, "
                  f"checksum {res['checksum'][:16]}", flush=True)
    for name in runs:
        rates = [x["rate"] for x in runs[name]]
        print(f"{name}: best {max(rates):.3e}, median {statistics.median(rates):.3e} household-months/s ({trees[name]})")
    ratio_best = max(x["rate"] for x in runs["new"]) / max(x["rate"] for x in runs["old"])
    ratio_median = statistics.median(x["rate"] for x in runs["new"]) / statistics.median(x["rate"] for x in runs["old"])
    sums = {x["checksum"] for name in runs for x in runs[name]}
    print(f"new / old: {ratio_best:.3f} (best), {ratio_median:.3f} (median)")
    print("checksums: " + ("identical" if len(sums) == 1 else f"DIFFER: {sorted(sums)}"))
    return 0 if len(sums) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
