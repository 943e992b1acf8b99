"""The fast engine: every household, every month, in one compiled parallel pass.

This module owns the monthly loop over the whole population.

The order of events in a month is written once, in
:func:`povsim.rules.village_month` (see :mod:`povsim.rules`).  Here every
village runs it, blocks of villages in parallel.  Before the pass, in the
month of a quota registration, :func:`povsim.rules.registration_quotas`
computes every village's quota from the survey (last month's poverty).

The month's metrics are integer totals per block, added in block order, so the
result is the same for any number of threads.  Nothing here depends on the
thread count: every draw is keyed by the household's global id and the month.
"""

from __future__ import annotations

import time
from typing import Callable

from . import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from . import metrics as M
from .config import Config
from .population import Population, build_population
from .rules import METHOD_QUOTA, N_DRAWS, Params, make_params, registration_quotas, village_month
from .rng import split_seed
from .timeline import Timeline

__all__ = ["Simulation", "run_month"]

MAX_BLOCKS = 2048  #: parallel work items per month; blocks never depend on the thread count


def villages_per_block(n_villages: int) -> int:
    return max(1, -(-n_villages // MAX_BLOCKS))


@nb.njit(cache=True, parallel=True, error_model="numpy")
def run_month(hh, village_start, first_id, month, line, p, k0, k1, block_totals, per_block, quota):
    """Advance every village one month; fill ``block_totals`` (blocks x slots, int64)."""
    n_villages = village_start.shape[0] - 1
    n_blocks = block_totals.shape[0]
    largest = 0
    for v in range(n_villages):
        largest = max(largest, village_start[v + 1] - village_start[v])
    for b in nb.prange(n_blocks):
        acc = block_totals[b]
        acc[:] = 0
        values = np.empty(largest, np.float64)
        candidate = np.empty(largest, np.bool_)
        chosen = np.empty(largest, np.int64)
        draws = np.empty((N_DRAWS, largest), np.float64)
        v_end = min(n_villages, (b + 1) * per_block)
        for v in range(b * per_block, v_end):
            village_month(
                hh, village_start[v], village_start[v + 1], first_id, month, line, p, k0, k1, acc, quota[v],
                values, candidate, chosen, draws,
            )


class Simulation:
    """One run of the model: a population advanced month by month under a config.

    ``Simulation(cfg).run()`` is what :func:`povsim.run` does; stepping by hand
    (``sim.step()``) lets a notebook inspect ``sim.population.households``
    between months.

    ``population`` replaces the configured population, e.g. a block of whole
    villages of a larger one (``build_population(cfg, villages=(v0, v1))``): such
    a block cannot compute the registration quotas alone (they need every
    village's poor count), so its driver passes each month's ``quota`` to
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
        self._block_totals = np.zeros((max(n_blocks, 1), M.N_SLOTS), np.int64)
        self._no_quota = np.zeros(self.population.n_villages, np.int64)
        self.month = self.timeline.first  #: next month to simulate
        self.totals: dict[int, np.ndarray] = {}  #: month -> totals (N_SLOTS,), reported months only

    @property
    def done(self) -> bool:
        return self.month > self.timeline.end

    @property
    def quota_month(self) -> bool:
        """Whether the next month is the month of a registration by quota."""
        return self.month == self.params.registration_month and self.params.registration_method == METHOD_QUOTA

    def step(self, quota: np.ndarray | None = None) -> np.ndarray:
        """Simulate the next month; return its totals (int64, one per metrics slot).

        The totals of a burn-in month are zeros: its metrics are not counted,
        since nothing reports them.

        ``quota`` gives every village's registration quota in a quota month
        (computed here from this population when omitted); other months ignore it.
        """
        if self.done:
            raise RuntimeError(f"the run ended at {self.timeline.label(self.timeline.end)}")
        m = self.month
        pop = self.population
        if not self.quota_month:
            quota = self._no_quota
        elif quota is not None:
            quota = np.ascontiguousarray(quota, dtype=np.int64)
            if quota.shape != (pop.n_villages,):
                raise ValueError(f"quota has shape {quota.shape}; allowed: one per village, ({pop.n_villages},)")
        elif self.is_block:
            raise RuntimeError("a block of a split population needs its quotas from the driver in the quota month")
        else:
            reg = self.config.policy.registration
            quota = registration_quotas(
                pop.households.flags, pop.village_start, pop.village_county, pop.n_counties, pop.first_id,
                self.params, reg.quota_scale, reg.county_estimate_sd, reg.village_estimate_sd, *self.key,
            )
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
            self._per_block,
            quota,
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
        return Result.from_run(self, wall_time=wall, threads=used_threads)
