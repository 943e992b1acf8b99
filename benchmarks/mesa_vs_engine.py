"""The Mesa model beside the engine: same config, same results, different speed.

Run from the repository root::

    python benchmarks/mesa_vs_engine.py              # 1e3 and 1e4 households
    python benchmarks/mesa_vs_engine.py --sizes 1e3,1e4,3e4 --months 24

For each size, both run the default model (every rule and channel active in the
timed months: 2019, after the rules have run since 2014) for ``--months`` months
after an untimed lead-in, and the script prints household-months per second of
each, their ratio, and checks that the monthly totals are identical.  It then
profiles one Mesa month (``cProfile``) and reports where the time goes: inside the
compiled rule functions, in Mesa's ``AgentSet.do`` and agent method calls, in the
village-level functions, and in collecting metrics.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy as np

import povsim
from povsim.engine import Simulation
from povsim.mesa import PovertyModel

LEAD_IN = {"simulation.burn_in_years": 1, "simulation.end": "2019-12"}


def _sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def _config(households: int):
    return povsim.load_config(None, overrides={"population.households": households, **LEAD_IN})


def _advance(model, step, months_left: int) -> None:
    while months_left() > 0:
        step()


def bench(households: int, months: int) -> dict:
    cfg = _config(households)
    end = povsim.config.parse_month(cfg.simulation.end)
    first_timed = end - months + 1
    out = {}
    for name, make in (("engine", Simulation), ("mesa", PovertyModel)):
        model = make(cfg)
        while model.month < first_timed:
            model.step()
        t0 = time.perf_counter()
        while model.month <= end:
            model.step()
        run = time.perf_counter() - t0
        totals = np.array([model.totals[m] for m in range(first_timed, end + 1)])
        out[name] = {"run_s": run, "rate": households * months / run, "totals": totals}
    out["identical"] = bool(np.array_equal(out["engine"]["totals"], out["mesa"]["totals"]))
    return out


def profile_month(households: int) -> list[tuple[str, float]]:
    """Share of one Mesa month's time by where it is spent (inclusive times, without double counting)."""
    cfg = _config(households)
    model = PovertyModel(cfg)
    while model.month < povsim.config.parse_month(cfg.simulation.end):
        model.step()
    prof = cProfile.Profile()
    prof.enable()
    model.step()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt

    def matching(test) -> list[tuple]:
        return [(key, value) for key, value in stats.stats.items() if test(*key)]

    def tottime(test) -> float:
        return sum(v[2] for _, v in matching(test))

    def cumtime(test) -> float:
        return sum(v[3] for _, v in matching(test))

    def in_model(filename, func, names):
        return filename.endswith(os.path.join("povsim", "mesa", "model.py")) and func in names

    compiled = tottime(lambda f, l, func: "household_update" in func or "household_events" in func)
    methods = cumtime(lambda f, l, func: in_model(f, func, ("update", "events")))
    agentset = cumtime(
        lambda f, l, func: func == "do" and f.endswith((os.path.join("mesa", "agent.py"), os.path.join("mesa", "agentset.py")))
    )
    village = tottime(lambda f, l, func: any(n in func for n in (  # the village hooks of the schedule
        "draw", "household_month", "village", "count", "registration_quotas")) and "mesa" not in f)
    collect = cumtime(lambda f, l, func: in_model(f, func, ("_derive",)))
    collect += cumtime(lambda f, l, func: func == "collect" and f.endswith("datacollection.py"))
    rows = [
        ("compiled household rules (household_update, household_events)", compiled),
        ("Household.update / .events (the Python method around each call)", methods - compiled),
        ("AgentSet.do (Mesa's loop over a village's agents)", agentset - methods),
        ("compiled village hooks (draws, incomes, quota registration, cadre visits, counts; quotas)", village),
        ("metrics of the month (pandas) and DataCollector.collect", collect),
    ]
    rows.append(("everything else (PovertyModel.step's own loop, bookkeeping)", total - sum(v for _, v in rows)))
    return [(name, value / total) for name, value in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_sizes, default=[10**3, 10**4], help="households, e.g. 1e3,1e4")
    ap.add_argument("--months", type=int, default=12, help="months timed, ending 2019-12 (1..60)")
    args = ap.parse_args(argv)
    if not 1 <= args.months <= 60:
        ap.error("--months: allowed 1..60")
    print(f"povsim {povsim.__version__}: Mesa model vs engine, default rules, {args.months} months timed "
          f"(to 2019-12); load average {os.getloadavg()[0]:.2f}")
    # compile (or load from cache) everything first, on a tiny population
    bench(50, 1)
    print(f"{'households':>10} | {'engine hh-mo/s':>14} | {'Mesa hh-mo/s':>12} | {'engine / Mesa':>13} | identical")
    for n in args.sizes:
        r = bench(n, args.months)
        e, m = r["engine"]["rate"], r["mesa"]["rate"]
        print(f"{n:>10,} | {e:14.3g} | {m:12.3g} | {e / m:12.0f}x | {r['identical']}")
    print(f"\nWhere one Mesa month goes ({args.sizes[-1]:,} households, cProfile; profiling slows Python calls):")
    for name, share in profile_month(args.sizes[-1]):
        print(f"  {100 * share:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
