"""Where a month's time goes: the order of events timed phase by phase, on one thread.

Run from the repository root::

    python benchmarks/profile_month.py                     # 20,000 households, 2010-06 and 2019-03
    python benchmarks/profile_month.py --households 1e6    # out of the CPU's caches
    PYTHONPATH=/path/to/other/tree python benchmarks/profile_month.py   # another commit, the same way

What is measured
----------------
The model is the compressed timeline of ``benchmarks/scale.py`` (every rule and
channel of the China timeline within 2019, after a year of burn-in from 2018-01; the
burn-in month is run with the China file's own burn-in, 2010-06).  The population is
advanced to the month measured; its state is then saved.

The month of a village is :data:`povsim.components.schedule.SCHEDULE`, read as data:
for each phase (``0a`` draws, ``0b`` incomes, ``1`` the household updates and
household channels, ``2`` the village events, ``3`` and ``3b`` the household events,
``4`` the counts), a compiled function runs every village's month **up to and
including that phase** (generated from the schedule's rows, so the script follows
the model as it is).  Each is timed on the saved state, restored before every
repetition, on one thread (best of ``--repeat``, in the thread's CPU time, so that
other work on a shared machine counts less); the difference between successive
prefixes is the phase's time, printed in nanoseconds per household-month.  The
prefixes share the kernels of the engine (the same hooks, the same inlining), so
their sum is within a few per cent of a whole month, which is printed beside it
(:func:`povsim.engine.run_blocks`, one thread).

Last, the month's arithmetic primitives are timed alone, in the engine's vectorised
loops: a Philox call, a Box-Muller pair, an exponential, a logarithm per household.

Compiling the prefixes takes a minute or two (they are not cached).  The machine,
the date and the load average are printed first; quote the figures with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import environment  # noqa: E402  (benchmarks/engine.py)
from scale import COMPRESSED, CHINA  # noqa: E402

import povsim  # noqa: E402
from povsim.components import schedule as sched  # noqa: E402
from povsim.components.schedule import SCHEDULE, QUIET_PHASES  # noqa: E402
from povsim.engine import Simulation, compiled_entry, run_blocks  # noqa: E402

PHASES = ("0a", "0b", "1", "2", "3", "3b", "4")
WHAT = {
    "0a": "draws (Philox, the income normals)",
    "0b": "shocks, support, incomes",
    "1": "income record, poverty, household channels",
    "2": "survey, quota registration, cadres",
    "3": "verification, registration, look-back, review",
    "3b": "exit plan",
    "4": "counts",
}


def prefix_source(upto: str) -> str:
    """The source of a compiled function running every village's month through phase ``upto``."""
    lines = [
        "def prefix(hh, vs, first_id, month, line, p, k0, k1, acc, largest):",
        "    s = sched.scratch(largest)",
        "    for v in range(vs.county.shape[0]):",
    ]
    quiet_done = False
    steps = [st for st in SCHEDULE if PHASES.index(st.phase) <= PHASES.index(upto)]
    k = 0
    while k < len(steps):
        st = steps[k]
        if st.phase in QUIET_PHASES and not quiet_done:
            lines.append("        if month < p.time.quiet_until:")
            lines.append("            continue")
            quiet_done = True
        if st.level == "village":
            lines.append(f"        M_{st.component}.{st.hook}(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)")
            k += 1
            continue
        lines.append("        for i in range(vs.start[v], vs.start[v + 1]):")
        while k < len(steps) and steps[k].level == "household" and steps[k].phase == st.phase:
            h = steps[k]
            lines.append(f"            M_{h.component}.{h.hook}(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)")
            k += 1
    return "\n".join(lines) + "\n"


def module_of(component: str):
    import importlib

    name = {"self": "self_declaration"}.get(component, component)
    return importlib.import_module(f"povsim.components.{name}")


_COMPILED: dict = {}


def compile_prefix(upto: str, args):
    """The compiled prefix through phase ``upto`` (compiled once per process)."""
    key = (upto, tuple(nb.typeof(a) for a in args))
    if key in _COMPILED:
        return _COMPILED[key]
    namespace = {"sched": sched, "nb": nb}
    for st in SCHEDULE:
        namespace[f"M_{st.component}"] = module_of(st.component)
    exec(prefix_source(upto), namespace)  # the benchmark's own generated source, from the schedule
    fn = nb.njit(_nrt=False, error_model="numpy")(namespace["prefix"])
    _COMPILED[key] = compiled_entry(fn, args)
    return _COMPILED[key]


def snapshot(pop):
    return [a.copy() for a in pop.households] + [a.copy() for a in pop.villages]


def restore(pop, saved):
    for a, b in zip(list(pop.households) + list(pop.villages), saved):
        a[...] = b


def measure(households: int, month_label: str, repeat: int, timeline: dict) -> dict:
    cfg = povsim.load_config(CHINA, overrides={"population.households": households, **timeline})
    sim = Simulation(cfg)
    target = povsim.config.parse_month(month_label)
    while sim.month < target:
        sim.step()
    pop = sim.population
    acc = np.zeros(sim._block_totals.shape[1], np.int64)
    args = (pop.households, pop.villages, pop.first_id, sim.month, sim.timeline.line(sim.month), sim.params,
            sim.key[0], sim.key[1], acc, sim._largest)
    saved = snapshot(pop)
    times = {}
    for phase in PHASES:
        print(f"  {month_label}: phase {phase} ...", file=sys.stderr, flush=True)
        fn = compile_prefix(phase, args)
        best = float("inf")
        for _ in range(repeat):
            restore(pop, saved)
            t0 = time.thread_time()
            fn(*args)
            best = min(best, time.thread_time() - t0)
        times[phase] = best
    totals = np.zeros_like(sim._block_totals)
    whole_args = (pop.households, pop.villages, pop.first_id, sim.month, sim.timeline.line(sim.month), sim.params,
                  sim.key[0], sim.key[1], totals, sim._per_block)
    kernel = compiled_entry(run_blocks, whole_args + (0, 0, sim._largest))
    whole = float("inf")
    for _ in range(repeat):
        restore(pop, saved)
        t0 = time.thread_time()
        kernel(*whole_args, 0, totals.shape[0], sim._largest)
        whole = min(whole, time.thread_time() - t0)
    ns = 1e9 / households
    steps, before = {}, 0.0
    for phase in PHASES:
        steps[phase] = max(0.0, times[phase] - before) * ns
        before = max(before, times[phase])
    return {"month": month_label, "steps": steps, "sum": times[PHASES[-1]] * ns, "whole": whole * ns}


@nb.njit(error_model="numpy")
def _primitive(kind, out, reps):
    """``reps`` passes over 256 households of one primitive, in the engine's vectorised form."""
    n = out.shape[1]
    for r in range(reps):
        if kind == 0:
            povsim.rng.fill_uniforms(1, 2, 3, 0, n, r, 0, out, 0)
        elif kind == 1:
            for j in range(n):
                a, b = povsim.rng.box_muller(out[0, j], out[1, j])
                out[2, j] = a
                out[3, j] = b
        elif kind == 2:
            for j in range(n):
                out[2, j] = povsim.elementary.exp(out[0, j])
        else:
            for j in range(n):
                out[2, j] = povsim.elementary.log(out[0, j])


PRIMITIVES = ("one Philox4x32-10 call (4 uniforms)", "Box-Muller (two normals)", "exp", "log")


def primitives(reps: int = 4000) -> dict:
    """Nanoseconds of CPU time per household of the month's arithmetic primitives (best of 5)."""
    out = np.full((4, 256), 0.5)
    povsim.rng.fill_uniforms(1, 2, 3, 0, 256, 0, 0, out, 0)
    found = {}
    for kind, name in enumerate(PRIMITIVES):
        _primitive(kind, out, 1)
        best = float("inf")
        for _ in range(5):
            t0 = time.thread_time()
            _primitive(kind, out, reps)
            best = min(best, time.thread_time() - t0)
        found[name] = best / reps / out.shape[1] * 1e9
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--households", type=lambda s: int(float(s)), default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    nb.set_num_threads(1)
    env = environment()
    print(f"povsim {povsim.__version__} from {Path(povsim.__file__).parent}, {env.get('date', '')}")
    print(f"  CPU: {env.get('cpu', '?')}; one thread; 1-minute load average {os.getloadavg()[0]:.2f}")
    rows = [
        measure(args.households, "2010-06", args.repeat, {}),
        measure(args.households, "2019-03", args.repeat, COMPRESSED),
    ]
    print(f"\n{args.households:,} households; nanoseconds of CPU time per household-month, best of {args.repeat}")
    print(f"{'phase':<6}{'what':<48}" + "".join(f"{r['month']:>10}" for r in rows))
    for phase in PHASES:
        print(f"{phase:<6}{WHAT[phase]:<48}" + "".join(f"{r['steps'][phase]:>10.1f}" for r in rows))
    print(f"{'':<6}{'sum of the phases':<48}" + "".join(f"{r['sum']:>10.1f}" for r in rows))
    print(f"{'':<6}{'whole month (run_blocks)':<48}" + "".join(f"{r['whole']:>10.1f}" for r in rows))
    print("\nthe month's arithmetic primitives, nanoseconds of CPU time per household (vectorised loops of 256):")
    for name, ns in primitives().items():
        print(f"  {name:<44}{ns:>8.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
