"""Scale-out on Dask: clusters, runs on workers, and one population split across workers.

This module owns everything povsim does with Dask distributed; nothing here is
imported until a run asks for more than one process.

* :func:`open_client` gives a :class:`distributed.Client`: to an existing cluster
  by its address, or to a ``LocalCluster`` it starts on loopback only
  (``host="127.0.0.1"``: scheduler, workers and their dashboards listen on
  127.0.0.1, on free ports; worker processes of one thread each); with fewer
  than two workers it gives ``None``: run serially, without Dask.
* :func:`simulate` is the task a worker runs for one experiment run: a config
  in, a :class:`~povsim.results.Result` out (the driver writes the files, so
  workers need not share a file system with it).
* :func:`run_split` runs **one** population split into blocks of whole villages,
  one :class:`Block` per worker (a Dask actor: the households stay on their
  worker for the whole run), stepped month by month by the driver.  Every draw
  is keyed by the household's global id, a block's villages keep their global
  counties, and the monthly metrics are integer sums, so the result equals a
  single-process run bit for bit.  The only step that needs every village at
  once, the quota registration, is split in two: each block gives its
  villages' survey counts of poor people and their people, the driver joins
  the counts in village order and computes every quota
  (:func:`povsim.components.registration.quotas_from_counts`, on the global structure), and each
  block receives its villages' quotas with that month's step.  An exit plan's targets are
  shared the same way (:func:`povsim.components.review.plan_targets`, from every
  village's registered people).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["available_cores", "open_client", "simulate", "Block", "village_blocks", "run_split"]


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


@contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client for the duration of the block, or ``None`` for a serial run.

    ``scheduler``: the address of an existing cluster (``tcp://host:port``); it
    is used as it is and left running.  Otherwise ``workers`` >= 2 starts a
    ``LocalCluster`` of that many worker processes, one thread each, every socket
    (dashboards included) on 127.0.0.1 at a free port, closed at the end;
    ``workers`` of 0, 1 or ``None`` gives ``None`` (run in this process, without
    Dask: one worker would only add overhead).
    """
    if scheduler:
        from distributed import Client

        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None or workers < 2:
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _worker_threads() -> int | None:
    """Threads of the Dask worker running this task, or ``None`` outside a worker."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


@contextmanager
def _numba_threads(config) -> Iterator[None]:
    """On a Dask worker, the engine uses the worker's threads (not every core) unless the config says."""
    import numba

    threads = _worker_threads()
    previous = numba.get_num_threads()
    if threads and not config.simulation.threads:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def simulate(config: dict[str, Any]):
    """Run one validated config (as a dict) and return its :class:`~povsim.results.Result`.

    The task a Dask worker runs for one experiment run; also called directly for
    serial runs, so both paths run the same code.
    """
    from .config import Config
    from .engine import Simulation

    cfg = Config.model_validate(config)
    with _numba_threads(cfg):
        return Simulation(cfg).run()


# --------------------------------------------------------------------------------------
# One population split into blocks of whole villages
# --------------------------------------------------------------------------------------


class Block:
    """Villages ``v0 .. v1-1`` of a configured population, advanced month by month.

    Created on a worker as a Dask actor (or in this process for a serial split
    run); holds its households for the whole run.
    """

    def __init__(self, config: dict[str, Any], v0: int, v1: int):
        from .config import Config
        from .engine import Simulation
        from .population import build_population

        self.config = Config.model_validate(config)
        with _numba_threads(self.config):
            self.sim = Simulation(self.config, population=build_population(self.config, villages=(v0, v1)))

    def info(self) -> dict[str, int]:
        pop = self.sim.population
        return {"households": pop.n_households, "villages": pop.n_villages, "first_id": pop.first_id,
                "nbytes": pop.nbytes(), "people": int(pop.households.size.sum(dtype=np.int64))}

    def survey_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Poor people per village in the survey month (the survey behind the quotas), and people per village."""
        from .components.registration import village_people

        pop = self.sim.population
        return pop.villages.survey_poor.copy(), village_people(pop.households.size, pop.households.flags,
                                                               pop.village_start, 0)

    def registered_people(self) -> np.ndarray:
        """Registered people per village now (what an exit plan is shared by)."""
        return self.sim.registered_people()

    def step(self, quota: np.ndarray | None = None, exit_target: np.ndarray | None = None) -> np.ndarray:
        """Advance one month (``quota``: this block's village quotas in the quota month; ``exit_target``: its
        villages' exit-plan targets in a plan month); return its totals."""
        with _numba_threads(self.config):
            return self.sim.step(quota, exit_target)


def village_blocks(n_villages: int, blocks: int) -> list[tuple[int, int]]:
    """``blocks`` contiguous ranges of whole villages, as equal as can be (at most one per village)."""
    if blocks < 1:
        raise ValueError(f"blocks = {blocks}: allowed a positive integer")
    blocks = min(blocks, n_villages)
    edges = [n_villages * b // blocks for b in range(blocks + 1)]
    return [(edges[b], edges[b + 1]) for b in range(blocks)]


def run_split(config, blocks: int = 2, client=None, progress: Callable[[int], None] | None = None):
    """Run one config with its population split into ``blocks`` blocks of whole villages.

    With a Dask ``client`` each block is an actor on a worker (blocks are placed
    round-robin over the workers); without one the blocks run in this process,
    one after another.  The result equals ``povsim.run(config)`` bit for bit in
    every metric, event and delay; its manifest adds ``blocks`` and ``workers``.
    """
    from .config import Config
    from .population import structure
    from .results import Result, provinces_present
    from .rng import split_seed
    from .components import make_params
    from .components.registration import METHOD_QUOTA, quotas_from_counts
    from .components.review import plan_month_target, plan_targets
    from .timeline import Timeline

    if not isinstance(config, Config):
        config = Config.model_validate(config)
    t0 = time.perf_counter()
    village_start, village_county, county_province = structure(config)
    ranges = village_blocks(int(village_county.shape[0]), blocks)
    data = config.to_dict()
    if client is None:
        handles = [Block(data, v0, v1) for v0, v1 in ranges]
        workers = 0
        threads = config.simulation.threads or _numba_default()
    else:
        info = client.scheduler_info(n_workers=-1)["workers"]
        addresses = sorted(info)
        if not addresses:
            raise RuntimeError("the Dask cluster has no workers")
        futures = [
            client.submit(Block, data, v0, v1, actor=True, workers=[addresses[k % len(addresses)]],
                          allow_other_workers=False, pure=False)
            for k, (v0, v1) in enumerate(ranges)
        ]
        handles = [f.result() for f in futures]
        workers = len({addresses[k % len(addresses)] for k in range(len(ranges))})
        threads = config.simulation.threads or min(int(w.get("nthreads", 1)) for w in info.values())

    def call(method: str, args_per_block: list[tuple]) -> list[Any]:
        pending = [getattr(h, method)(*args) for h, args in zip(handles, args_per_block)]
        return [p.result() if hasattr(p, "result") else p for p in pending]

    timeline = Timeline.from_config(config)
    params = make_params(config)
    k0, k1 = split_seed(config.seed)
    reg = config.policy.registration
    n_counties = int(county_province.shape[0])
    totals: dict[int, np.ndarray] = {}
    infos = call("info", [()] * len(handles))
    national_people = sum(i["people"] for i in infos)
    for month in timeline.months:
        quotas: list[np.ndarray | None] = [None] * len(handles)
        if month == params.registration.month and params.registration.method == METHOD_QUOTA:
            parts = call("survey_counts", [()] * len(handles))
            counts = np.concatenate([c for c, _ in parts]).astype(np.int64)
            people = np.concatenate([n for _, n in parts]).astype(np.int64)
            quota = quotas_from_counts(
                counts, people, village_start, village_county, n_counties, 0, reg.quota_scale,
                reg.county_estimate_sd, reg.village_estimate_sd, k0, k1,
            )
            quotas = [quota[v0:v1] for v0, v1 in ranges]
        targets: list[np.ndarray | None] = [None] * len(handles)
        if plan_month_target(config.policy.review, month) is not None:
            registered = np.concatenate(call("registered_people", [()] * len(handles))).astype(np.int64)
            target = plan_targets(registered, village_county, n_counties, national_people, config.policy.review, month)
            targets = [target[v0:v1] for v0, v1 in ranges]
        month_totals = call("step", [(q, t) for q, t in zip(quotas, targets)])
        total = np.sum(np.stack(month_totals), axis=0, dtype=np.int64)
        if month >= timeline.start:
            totals[month] = total
        if progress is not None:
            progress(1)
    wall = time.perf_counter() - t0
    households = sum(i["households"] for i in infos)
    structure_info = {
        "households": households,
        "villages": int(village_county.shape[0]),
        "counties": n_counties,
        "provinces": provinces_present(county_province),
        "bytes_per_household": sum(i["nbytes"] for i in infos) / max(households, 1),
    }
    return Result.from_totals(
        config, timeline, totals, wall_time=wall, threads=threads, structure=structure_info,
        extra={"blocks": len(ranges), "workers": workers},
    )


def _numba_default() -> int:
    import numba

    return numba.get_num_threads()
