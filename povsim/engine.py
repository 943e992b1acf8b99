"""The fast engine: every household, every month, in one compiled parallel pass.

This module owns the monthly loop over the whole population.

The order of events in a month is written once, in
:func:`povsim.components.schedule.village_month`.  Here every village runs it,
blocks of villages in parallel.  Before the pass, in the month of a quota
registration, :func:`povsim.components.registration.registration_quotas` computes
every village's quota from the survey (its poor people, counted in the survey month) into the village state;
before the first month, each component's ``setup`` fills its village state.

The villages are grouped in fixed blocks, and each thread advances a contiguous
range of blocks with the compiled :func:`run_blocks`, which releases the GIL (a
parallel loop cannot take the components' nested parameter tuples).  The month's
metrics are integer totals per block, added in block order, so the result is the
same for any number of threads.  Nothing here depends on the
thread count: every draw is keyed by the household's global id and the month.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from . import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .components import COMPONENTS, N_SLOTS, Params, make_params
from .components.base import FLAG_REGISTERED
from .components.registration import METHOD_QUOTA, registration_quotas, village_people
from .components.review import exit_targets, plan_month_target
from .components.schedule import scratch, village_month
from .config import Config
from .population import Population, build_population
from .rng import split_seed
from .timeline import CalendarMonth, Timeline

__all__ = ["Simulation", "run_month", "run_blocks", "compiled_entry"]

MAX_BLOCKS = 2048  #: parallel work items per month; blocks never depend on the thread count


def villages_per_block(n_villages: int) -> int:
    return max(1, -(-n_villages // MAX_BLOCKS))


@nb.njit(cache=True, no_cfunc_wrapper=True, nogil=True, error_model="numpy")
def run_blocks(hh, vs, first_id, month, line, p, k0, k1, block_totals, per_block, first_block, end_block, largest):
    """Advance the villages of blocks ``first_block .. end_block - 1`` one month; fill their rows of ``block_totals``.

    Releases the GIL, so that threads run disjoint ranges of blocks at once.
    """
    n_villages = vs.county.shape[0]
    s = scratch(largest)
    for b in range(first_block, end_block):
        acc = block_totals[b]
        acc[:] = 0
        for v in range(b * per_block, min(n_villages, (b + 1) * per_block)):
            village_month(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)


def compiled_entry(dispatcher, example_args):
    """The compiled entry point of a Numba function for the types of ``example_args``.

    Calling it skips Numba's per-call type dispatch (working out the types of every
    argument: for the components' nested parameter tuples, a few hundred microseconds
    a call); the same machine code runs.
    """
    signature = tuple(nb.typeof(a) for a in example_args)
    try:
        return dispatcher.compile(signature)
    except Exception:  # pragma: no cover - a Numba without this API: the dispatcher itself
        return dispatcher


def run_month(hh, vs, first_id, month, line, p, k0, k1, block_totals, per_block, largest, pool=None, threads=1,
              kernel=run_blocks):
    """Advance every village one month; fill ``block_totals`` (blocks x slots, int64).

    The blocks are shared among ``threads`` threads of ``pool`` in contiguous ranges
    (static scheduling, as a parallel loop would); each block's totals depend only on its
    own villages, so the month's totals are the same for any number of threads.
    """
    n_blocks = block_totals.shape[0]
    threads = max(1, min(threads, n_blocks))
    edges = [n_blocks * t // threads for t in range(threads + 1)]
    args = (hh, vs, first_id, month, line, p, k0, k1, block_totals, per_block)
    if pool is None or threads == 1:
        kernel(*args, 0, n_blocks, largest)
        return
    futures = [pool.submit(kernel, *args, edges[t], edges[t + 1], largest) for t in range(1, threads)]
    kernel(*args, edges[0], edges[1], largest)  # the first range in this thread
    for f in futures:
        f.result()


class Simulation:
    """One run of the model: a population advanced month by month under a config.

    ``Simulation(cfg).run()`` is what :func:`povsim.run` does; stepping by hand
    (``sim.step()``) lets a notebook inspect ``sim.population.households``
    between months: ``sim.month`` is the next month to simulate (it prints as
    ``2017-03``) and ``sim.metrics`` the metrics of the reported months so far.

    ``population`` replaces the configured population, e.g. a block of whole
    villages of a larger one (``build_population(cfg, villages=(v0, v1))``): such
    a block cannot compute the registration quotas alone (they need every
    village's survey count), so its driver passes each month's ``quota`` to
    :meth:`step` (see :mod:`povsim.cluster`).
    """

    def __init__(self, config: Config, population: Population | None = None):
        self.config = config
        self.timeline = Timeline.from_config(config)
        self.params: Params = make_params(config)
        self.key = split_seed(config.seed)
        self.population: Population = build_population(config) if population is None else population
        #: a block of a larger population: its quotas must come from the driver
        self.is_block = population is not None and (
            population.first_id != 0 or population.n_households != config.population.households
        )
        self._per_block = villages_per_block(self.population.n_villages)
        n_blocks = -(-self.population.n_villages // self._per_block)
        self._block_totals = np.zeros((max(n_blocks, 1), N_SLOTS), np.int64)
        starts = self.population.village_start
        self._largest = int(np.diff(starts).max()) if self.population.n_villages else 0
        self._pool: ThreadPoolExecutor | None = None
        self._kernel = None  #: run_blocks' compiled entry point, resolved at the first step
        self._pool_threads = 0
        self.month = self.timeline.first  #: next month to simulate
        self.totals: dict[int, np.ndarray] = {}  #: month -> totals (N_SLOTS,), reported months only
        for component in COMPONENTS:  # the components' village state for this run's rules
            if component.setup is not None:
                component.setup(self)

    @property
    def done(self) -> bool:
        return self.month > self.timeline.end

    # -- for notebooks: the month as a calendar month, the metrics so far ------------------
    @property
    def month(self) -> CalendarMonth:
        """The next month to simulate, as a calendar month (an ``int`` index that prints as ``2017-03``).

        After the last month it is the month after ``simulation.end`` (and :attr:`done` is true).
        """
        return CalendarMonth(self._month)

    @month.setter
    def month(self, value: int) -> None:
        self._month = int(value)

    @property
    def metrics(self) -> "pd.DataFrame":  # noqa: F821
        """The metrics of the reported months simulated so far, one row per month, as in ``Result.metrics``.

        Empty (with every column) during the burn-in; the finished run's ``result.metrics`` equals it.
        """
        from .results import Result

        return Result.from_run(self, wall_time=0.0, threads=nb.get_num_threads()).metrics

    def __repr__(self) -> str:
        tl = self.timeline
        where = "finished" if self.done else f"next month {self.month}" + (
            " (burn-in)" if self.month < tl.start else "")
        return (f"<povsim.Simulation {self.config.name!r}: {self.population.n_households:,} households, "
                f"{tl.label(tl.start)} to {tl.label(tl.end)} after {tl.n_burn_in} burn-in months; {where}>")

    def _threads(self, threads: int) -> ThreadPoolExecutor | None:
        """A pool with ``threads - 1`` workers (the calling thread is the first), made when first needed."""
        if threads <= 1:
            return None
        if self._pool is None or self._pool_threads != threads:
            self.close()
            self._pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="povsim")
            self._pool_threads = threads
        return self._pool

    def close(self) -> None:
        """Let the threads go (a later step starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._pool_threads = 0

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @property
    def quota_month(self) -> bool:
        """Whether the next month is the month of a registration by quota."""
        return self.month == self.params.registration.month and self.params.registration.method == METHOD_QUOTA

    @property
    def plan_month(self) -> bool:
        """Whether the next month is an exit month of a year with an exit plan."""
        return plan_month_target(self.config.policy.review, self.month) is not None

    def registered_people(self) -> np.ndarray:
        """Registered people per village now (what an exit plan is shared by)."""
        pop = self.population
        return village_people(pop.households.size, pop.households.flags, pop.village_start, FLAG_REGISTERED)

    def step(self, quota: np.ndarray | None = None, exit_target: np.ndarray | None = None) -> np.ndarray:
        """Simulate the next month; return its totals (int64, one per metrics slot).

        The totals of a burn-in month are zeros: its metrics are not counted,
        since nothing reports them.

        ``quota`` gives every village's registration quota in a quota month, and
        ``exit_target`` every village's exit-plan target in a plan month (computed here
        from this population when omitted); other months ignore them.
        """
        if self.done:
            raise RuntimeError(f"the run ended at {self.timeline.label(self.timeline.end)}")
        m = self.month
        pop = self.population
        if self.quota_month:
            if quota is not None:
                quota = np.ascontiguousarray(quota, dtype=np.int64)
                if quota.shape != (pop.n_villages,):
                    raise ValueError(f"quota has shape {quota.shape}; allowed: one per village, ({pop.n_villages},)")
            elif self.is_block:
                raise RuntimeError("a block of a split population needs its quotas from the driver in the quota month")
            else:
                quota = registration_quotas(
                    pop.villages.survey_poor, pop.households.size, pop.households.flags, pop.village_start,
                    pop.village_county,
                    pop.n_counties, pop.first_id, self.config.policy.registration, *self.key,
                )
            pop.villages.quota[:] = quota
        if self.plan_month:
            if exit_target is None:
                if self.is_block:
                    raise RuntimeError("a block of a split population needs its exit targets from the driver")
                exit_target = exit_targets(pop, self.config.policy.review, m)
            exit_target = np.ascontiguousarray(exit_target, dtype=np.int64)
            if exit_target.shape != (pop.n_villages,):
                raise ValueError(f"exit_target has shape {exit_target.shape}; allowed: one per village, ({pop.n_villages},)")
            pop.villages.exit_target[:] = exit_target
        elif pop.villages.exit_target.any():  # the plan month is over
            pop.villages.exit_target[:] = 0
        threads = nb.get_num_threads()
        args = (pop.households, pop.villages, pop.first_id, m, self.timeline.line(m), self.params, self.key[0],
                self.key[1], self._block_totals, self._per_block)
        if self._kernel is None:
            self._kernel = compiled_entry(run_blocks, args + (0, 0, self._largest))
        run_month(*args, self._largest, self._threads(threads), threads, kernel=self._kernel)
        totals = self._block_totals.sum(axis=0)
        if m >= self.timeline.start:
            self.totals[m] = totals
        self.month += 1
        return totals

    def run(self, progress: Callable[[int], None] | None = None) -> "Result":  # noqa: F821
        """Simulate every remaining month and return the :class:`~povsim.results.Result`."""
        from .results import Result

        threads = self.config.simulation.threads
        previous = nb.get_num_threads()
        if threads:
            nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
        t0 = time.perf_counter()
        try:
            while not self.done:
                self.step()
                if progress is not None:
                    progress(1)
            used_threads = nb.get_num_threads()
        finally:
            nb.set_num_threads(previous)
            self.close()
        wall = time.perf_counter() - t0
        return Result.from_run(self, wall_time=wall, threads=used_threads)
