"""The fast engine: every household, every month, in one compiled parallel pass.

This module owns the monthly loop over the whole population.

Order of events in one month
----------------------------
For each block of villages (in parallel), for each village, for each household
in it, :func:`povsim.rules.household_month` runs, in this order:

1. shocks (illness, job loss) and recoveries;
2. income: persistent and transitory components, trend, losses, medical bill, transfer;
3. true poverty status from the last 12 months' per-capita net income;
4. policy events of this month (the one-time registration);
5. the household's contribution to the month's metrics.

The month's metrics are integer totals per block, added in block order, so the
result is the same for any number of threads.  Nothing here depends on the
thread count: every draw is keyed by the household's global id and the month.
"""

from __future__ import annotations

import time
from typing import Callable

import numba as nb
import numpy as np

from . import metrics as M
from .config import Config
from .population import Population, build_population
from .rules import Params, household_month, make_params
from .rng import split_seed
from .timeline import Timeline

__all__ = ["Simulation", "run_month", "VILLAGES_PER_BLOCK"]

VILLAGES_PER_BLOCK = 4  #: villages per parallel work item (fixed, so blocks never depend on threads)


@nb.njit(cache=True, parallel=True)
def run_month(hh, village_start, first_id, month, line, p, k0, k1, block_totals):
    """Advance every household one month; fill ``block_totals`` (blocks x slots, int64)."""
    n_villages = village_start.shape[0] - 1
    n_blocks = block_totals.shape[0]
    for b in nb.prange(n_blocks):
        acc = block_totals[b]
        acc[:] = 0
        v_end = min(n_villages, (b + 1) * VILLAGES_PER_BLOCK)
        for v in range(b * VILLAGES_PER_BLOCK, v_end):
            for i in range(village_start[v], village_start[v + 1]):
                household_month(hh, i, first_id + i, month, line, p, k0, k1, acc)


class Simulation:
    """One run of the model: a population advanced month by month under a config.

    ``Simulation(cfg).run()`` is what :func:`povsim.run` does; stepping by hand
    (``sim.step()``) lets a notebook inspect ``sim.population.households``
    between months.
    """

    def __init__(self, config: Config):
        self.config = config
        self.timeline = Timeline.from_config(config)
        self.params: Params = make_params(config)
        self.key = split_seed(config.seed)
        self.population: Population = build_population(config)
        n_blocks = -(-self.population.n_villages // VILLAGES_PER_BLOCK)
        self._block_totals = np.zeros((max(n_blocks, 1), M.N_SLOTS), np.int64)
        self.month = self.timeline.first  #: next month to simulate
        self.totals: dict[int, np.ndarray] = {}  #: month -> totals (N_SLOTS,), reported months only

    @property
    def done(self) -> bool:
        return self.month > self.timeline.end

    def step(self) -> np.ndarray:
        """Simulate the next month; return its totals (int64, one per metrics slot)."""
        if self.done:
            raise RuntimeError(f"the run ended at {self.timeline.label(self.timeline.end)}")
        m = self.month
        pop = self.population
        run_month(
            pop.households,
            pop.village_start,
            pop.first_id,
            m,
            self.timeline.line(m),
            self.params,
            self.key[0],
            self.key[1],
            self._block_totals,
        )
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
        wall = time.perf_counter() - t0
        months = sorted(self.totals)
        table = M.derive(np.array([self.totals[m] for m in months]), months)
        return Result.from_run(self, table, wall_time=wall, threads=used_threads)
