"""The measurement behind the documentation's speed figure: the engine, a plain NumPy step and the Mesa model.

Run from the repository root::

    python benchmarks/speed_figure.py                    # writes docs/figures/performance.json (about a minute)
    python benchmarks/speed_figure.py --quick --out speed.json
    povsim figures --only performance                    # draws docs/figures/performance.png from it

What is measured
----------------
Four implementations of the same model, each at several population sizes:

* the engine (:class:`povsim.engine.Simulation`) on all its Numba threads, and on one
  (``numba.set_num_threads(1)`` around each step);
* the plain NumPy step of ``benchmarks/numpy_step.py`` (one thread), stepping a
  population built by povsim;
* the Mesa model (:class:`povsim.mesa.PovertyModel`, one agent per household).

The model is the household month step of the one-time model (:data:`PERF_OVERRIDES`:
shocks, income, poverty; no rule active in the timed months), which all of them
implement: the engine and Mesa bit for bit, the NumPy step up to rare last-bit
differences (see ``benchmarks/README.md``).  Each implementation is first run once on
50 households (compilation, or loading Numba's cache, outside the timing); then, at each
size, it builds a population and steps ``--months`` months.

* **Speed**: household-months per second of stepping (the build is timed apart and
  left out).
* **Memory**: the peak traced by :mod:`tracemalloc` (Python objects and NumPy arrays,
  not Numba's internal scratch space) while building and stepping one month, per
  household.

The measurement is written as JSON (``--out``, by temporary name and rename): the
machine it was made on (CPU model, logical CPUs, Numba threads, the 1-minute load
average when measuring began, operating system), the versions of povsim, Python,
NumPy, Numba and Mesa, the command, the date, the config and seed, the sizes, notes on
lines left out, and one row per implementation and size.  ``povsim figures`` draws the
speed figure from that file and names it, the machine and the date in the figure's
caption; it measures nothing itself.

Timings are wall-clock on whatever else the machine is doing; the load average in the
file says how busy it was.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numba

import povsim
from povsim.config import ONE_TIME_THRESHOLD, load_config
from povsim.figures import MEASUREMENT, MEASUREMENT_KIND
from povsim.files import write_text_atomically

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_step  # noqa: E402  (a sibling module, not part of the package)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / MEASUREMENT  #: the measurement the documentation's speed figure is drawn from

#: the model the speed figure times: the household month step of the one-time model, which the engine,
#: the Mesa model and the plain NumPy step (benchmarks/numpy_step.py) all implement
PERF_OVERRIDES = {
    "simulation.burn_in_years": 1,
    "simulation.start": "2013-01",
    "simulation.end": "2013-12",
    "policy.registration.month": "2013-10",
    **ONE_TIME_THRESHOLD,
}

#: sizes (households) and months of a full measurement, the one the documentation's figure is drawn from
FULL = {
    "engine_sizes": (1_000, 10_000, 100_000, 1_000_000),
    "numpy_sizes": (1_000, 10_000, 100_000, 1_000_000),
    "mesa_sizes": (300, 1_000, 3_000, 10_000),
    "months": 12,
}
#: a quicker measurement: up to 100,000 households, 6 months
QUICK = {
    "engine_sizes": (1_000, 10_000, 100_000),
    "numpy_sizes": (1_000, 10_000, 100_000),
    "mesa_sizes": (300, 1_000),
    "months": 6,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def perf_config(households: int) -> povsim.Config:
    """The config every implementation is timed on, at ``households`` households."""
    return load_config(None, overrides={"population.households": int(households), **PERF_OVERRIDES})


def _engine(cfg) -> Callable[[], Any]:
    """Build the engine's population; return its month step."""
    from povsim.engine import Simulation

    return Simulation(cfg).step


def _engine_one_thread(cfg) -> Callable[[], Any]:
    """The engine's month step on one thread: beside the one-thread NumPy step, and unhurt by a busy machine."""
    from povsim.engine import Simulation

    step = Simulation(cfg).step

    def one_thread() -> Any:
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return step()
        finally:
            numba.set_num_threads(previous)

    return one_thread


def _mesa(cfg) -> Callable[[], Any]:
    """Build the Mesa model (one agent per household); return its month step."""
    from povsim.mesa import PovertyModel

    return PovertyModel(cfg).step


def _numpy(cfg) -> Callable[[], Any]:
    """The plain NumPy step of ``benchmarks/numpy_step.py``, on a population built by povsim."""
    from povsim.population import build_population
    from povsim.rng import split_seed
    from povsim.components import make_params
    from povsim.timeline import Timeline

    hh = build_population(cfg).households
    params = make_params(cfg)
    k0, k1 = split_seed(cfg.seed)
    tl = Timeline.from_config(cfg)
    month = [tl.first]

    def step() -> Any:
        m = month[0]
        month[0] += 1
        return numpy_step.month_step(hh, 0, m, tl.line(m), params, k0, k1)

    return step


def timed(make: Callable[[Any], Callable[[], Any]], households: int, months: int) -> dict:
    """Seconds to build and to step ``months`` months, and peak traced bytes for a build and one month."""
    cfg = perf_config(households)
    gc.collect()
    tracemalloc.start()
    try:
        make(cfg)()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    gc.collect()
    t0 = time.perf_counter()
    step = make(cfg)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(months):
        step()
    run = max(time.perf_counter() - t0, 1e-9)
    del step
    gc.collect()
    return {
        "households": households,
        "build_s": build,
        "step_s": run,
        "hh_months_per_s": households * months / run,
        "bytes_per_household": peak / households,
    }


def cpu() -> str:
    """The CPU model (``/proc/cpuinfo``), or what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed: recorded as missing
        return None


def measure(
    engine_sizes=FULL["engine_sizes"],
    numpy_sizes=FULL["numpy_sizes"],
    mesa_sizes=FULL["mesa_sizes"],
    months: int = FULL["months"],
    command: str = "python benchmarks/speed_figure.py",
    say: Callable[[str], None] = lambda s: None,
) -> dict:
    """Time the engine, the plain NumPy step and the Mesa model at these sizes; return the measurement record.

    The record is what :func:`write` saves and ``povsim figures`` draws: ``kind``,
    ``command``, ``created``, the versions, ``machine`` (``cpu``, ``logical_cpus``,
    ``numba_threads``, ``load_average``, ``system``), ``months``, ``config``,
    ``overrides``, ``seed``, ``sizes`` (per implementation), ``notes`` (lines left out,
    and why) and ``results``: one row per implementation and size (``implementation``,
    ``households``, ``build_s``, ``step_s``, ``hh_months_per_s``, ``bytes_per_household``).
    """
    if months < 1:
        raise ValueError(f"months = {months}: must be at least 1")
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # before we add to it
    created = dt.datetime.now().astimezone().replace(microsecond=0).isoformat()
    notes = []
    threads = numba.get_num_threads()
    plans: list[tuple[str, Callable, tuple[int, ...]]] = [("Engine (Numba, 1 thread)", _engine, tuple(engine_sizes))]
    if threads > 1:
        plans = [
            (f"Engine (Numba, {threads} threads)", _engine, tuple(engine_sizes)),
            ("Engine (Numba, 1 thread)", _engine_one_thread, tuple(engine_sizes)),
        ]
    plans.append(("NumPy step (vectorised, 1 thread)", _numpy, tuple(numpy_sizes)))
    try:
        import povsim.mesa  # noqa: F401

        plans.append(("Mesa model (one agent per household)", _mesa, tuple(mesa_sizes)))
    except ImportError as err:
        notes.append(f"Mesa line left out: {err}")
    rows = []
    for label, make, sizes in plans:
        make(perf_config(50))()  # compile or load from cache, outside the timing
        for n in sizes:
            row = timed(make, int(n), months)
            say(f"  {label}: {n:,} households, {row['hh_months_per_s']:,.0f} household-months/s, "
                f"{row['bytes_per_household']:,.0f} bytes/household")
            rows.append({"implementation": label, **row})
    rounding = {"build_s": 4, "step_s": 4, "hh_months_per_s": 0, "bytes_per_household": 1}
    results = [{k: round(v, rounding[k]) if k in rounding else v for k, v in row.items()} for row in rows]
    return {
        "kind": MEASUREMENT_KIND,  # what povsim.figures.read_measurement looks for
        "command": command,
        "created": created,
        "povsim_version": povsim.__version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": numba.__version__,
        "mesa": _version("mesa"),
        "machine": {
            "cpu": cpu(),
            "logical_cpus": os.cpu_count(),
            "numba_threads": numba.get_num_threads(),
            "load_average": load,
            "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        },
        "months": months,
        "config": "one-time model, household month step (PERF_OVERRIDES in benchmarks/speed_figure.py)",
        "overrides": PERF_OVERRIDES,
        "seed": perf_config(1).seed,
        "sizes": {label: list(sizes) for label, _, sizes in plans},
        "notes": notes,
        "results": results,
    }


def write(record: dict, path: str | Path) -> Path:
    """Save a measurement record as JSON at ``path`` (by temporary name and rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, json.dumps(record, indent=2) + "\n")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(float(s)) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed a comma-separated list of sizes, e.g. 1e3,1e4") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed positive sizes, e.g. 1e3,1e4")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help="measurement file (default: docs/figures/performance.json)")
    ap.add_argument("--quick", action="store_true", help="up to 100,000 households and 6 months (seconds)")
    ap.add_argument("--engine-sizes", type=_sizes, metavar="N,N,...", help="engine sizes, households")
    ap.add_argument("--numpy-sizes", type=_sizes, metavar="N,N,...", help="NumPy step sizes, households")
    ap.add_argument("--mesa-sizes", type=_sizes, metavar="N,N,...", help="Mesa model sizes, households")
    ap.add_argument("--months", type=int, help="months stepped at each size")
    args = ap.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    command = ["python benchmarks/speed_figure.py"] + (["--quick"] if args.quick else [])
    for key in ("engine_sizes", "numpy_sizes", "mesa_sizes", "months"):
        value = getattr(args, key)
        if value is not None:
            plan[key] = value
            shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
            command.append(f"--{key.replace('_', '-')} {shown}")
    if args.out != OUT:
        command.append(f"--out {args.out}")
    t0 = time.perf_counter()
    record = measure(**plan, command=" ".join(command), say=log)
    path = write(record, args.out)
    log(f"wrote {path} in {time.perf_counter() - t0:.0f} s; draw it with `povsim figures --only performance`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
