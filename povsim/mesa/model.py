"""``Household`` (a ``mesa.Agent``) and ``PovertyModel`` (a ``mesa.Model``).

Each agent is a view of one row of the population's struct of arrays
(:class:`povsim.population.Households`): its state lives in those arrays, and its
steps call the compiled rule functions of :mod:`povsim.rules` on its own row.  A
month of the model (:meth:`PovertyModel.step`) runs, village by village, the order
of events of :func:`povsim.rules.village_month`:

0. :func:`povsim.rules.month_draws` for the village: the month's random numbers, one
   column per household (``agent.column``), and :func:`povsim.rules.month_income`:
   every household's shocks, support and income this month, from those draws;
1. ``agent.update()`` for each household of the village (records its month's
   income and its poverty, and runs the household-level channels);
2. the village's events (quota registration, cadre visits);
3. ``agent.events()`` for each household of the village (verification, registration,
   look-back, review);
4. :func:`povsim.rules.village_counts`: the month's counts of the village's households.

Mesa's own random generator is seeded from the config but never used by the model:
every random number comes from povsim's counter-based streams.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mesa
from mesa.agent import AgentSet

from .. import metrics as M
from .. import rules
from ..config import Config
from ..engine import Simulation
from ..population import (
    CAPACITY_SCALE,
    FLAG_CONNECTED,
    FLAG_COVERED,
    FLAG_POOR,
    FLAG_REGISTERED,
    ROUTE_NAMES,
)

__all__ = ["Household", "PovertyModel"]

STATUS = ("poor, registered", "poor, missed", "registered, not poor", "neither")


class Household(mesa.Agent):
    """One household: a view of row ``index`` of the model's household arrays."""

    def __init__(self, model: "PovertyModel", index: int, village: int, column: int):
        super().__init__(model)
        self.index = int(index)
        self.village = int(village)
        self.column = int(column)  #: its column in the village's month draws (its place in the village)

    # -- the two household phases of a month ----------------------------------------------
    def update(self) -> None:
        """Phase 1: record the month's income the village computed; true poverty; household-level channels."""
        m = self.model
        m._household_update(m.households, self.index, m.month, m.line, m.params, m.acc, m.draws, self.column)

    def events(self) -> None:
        """Phase 3: verification, registration, look-back, review."""
        m = self.model
        m._household_events(
            m.households,
            self.index,
            m.first_id + self.index,
            m.month,
            m.line,
            m.params,
            m.key[0],
            m.key[1],
            m.acc,
            m.village_lookback,
            m.draws,
            self.column,
        )

    # -- state, read from the arrays --------------------------------------------------------
    def _get(self, name: str):
        return getattr(self.model.households, name)[self.index]

    @property
    def size(self) -> int:
        return int(self._get("size"))

    @property
    def workers(self) -> int:
        return int(self._get("workers"))

    @property
    def income(self) -> float:
        """Per-capita net income over the last 12 months, yuan."""
        return float(self.model.households.net_income[self.index].sum(dtype=np.int64))

    @property
    def poor(self) -> bool:
        return bool(self._get("flags") & FLAG_POOR)

    @property
    def registered(self) -> bool:
        return bool(self._get("flags") & FLAG_REGISTERED)

    @property
    def connected(self) -> bool:
        return bool(self._get("flags") & FLAG_CONNECTED)

    @property
    def covered(self) -> bool:
        return bool(self._get("flags") & FLAG_COVERED)

    @property
    def route(self) -> str:
        """How the household entered the register ('none' if it is not registered)."""
        return ROUTE_NAMES[int(self._get("route"))]

    @property
    def pending(self) -> str:
        """The channel of a verification under way ('none' if there is none)."""
        return ROUTE_NAMES[int(self._get("pending_route"))]

    @property
    def illness(self) -> str:
        return ("healthy", "acute", "chronic")[int(self._get("illness"))]

    @property
    def unemployed(self) -> bool:
        return bool(self._get("unemployed"))

    @property
    def capacity(self) -> float:
        """Earning capacity gained from development support, log points."""
        return int(self._get("capacity")) / CAPACITY_SCALE

    @property
    def status(self) -> str:
        """One of :data:`STATUS`: poor and registered, poor and missed, registered but not poor, neither."""
        poor, registered = self.poor, self.registered
        if poor:
            return STATUS[0] if registered else STATUS[1]
        return STATUS[2] if registered else STATUS[3]

    def __repr__(self) -> str:
        return (
            f"<Household {self.index} village {self.village}: size {self.size}, income {self.income:,.0f} yuan, "
            f"{self.status}>"
        )


def _compiled(dispatcher, example_args):
    """The compiled entry point of a Numba function for the types of ``example_args``."""
    import numba

    signature = tuple(numba.typeof(a) for a in example_args)
    try:
        return dispatcher.compile(signature)
    except Exception:  # pragma: no cover - an older or newer Numba without this API: use the dispatcher
        return dispatcher


class PovertyModel(mesa.Model):
    """povsim's model on the Mesa API: ``PovertyModel(cfg).run()`` equals ``povsim.run(cfg)``.

    ``model.agents`` holds one :class:`Household` per household; ``model.villages[v]``
    is the ``AgentSet`` of village ``v``; ``model.datacollector`` collects every metric
    column of :mod:`povsim.metrics` in each reported month.
    """

    def __init__(self, config: Config):
        # ``rng=`` (not the deprecated ``seed=``): the keyword Mesa 3.3 and 3.5 share.  Mesa's
        # generators are seeded for reproducibility of anything built on top, but the model
        # never draws from them.
        super().__init__(rng=config.seed % 2**32)
        self.config = config
        # The engine's own set-up: timeline, parameters, key and population arrays.
        self._sim = Simulation(config)
        self.timeline = self._sim.timeline
        self.params = self._sim.params
        self.key = self._sim.key
        self.population = self._sim.population
        self.households = self.population.households
        self.first_id = self.population.first_id
        self.month = self.timeline.first  #: the month the next step simulates
        self.line = self.timeline.line(self.month)
        self.acc = np.zeros(M.N_SLOTS, np.int64)
        self.village_lookback = rules.NO_MONTH
        largest = int(np.diff(self.population.village_start).max()) if self.population.n_villages else 0
        self._values = np.empty(largest, np.float64)
        self._candidate = np.empty(largest, np.bool_)
        self._chosen = np.empty(largest, np.int64)
        #: the month's random numbers of the village being stepped (rules.month_draws), one column per household
        self.draws = np.empty((rules.N_DRAWS, largest), np.float64)
        self._quota = np.zeros(self.population.n_villages, np.int64)
        self.villages: list[AgentSet] = []
        starts = self.population.village_start
        for v in range(self.population.n_villages):
            members = [Household(self, i, v, i - starts[v]) for i in range(starts[v], starts[v + 1])]
            self.villages.append(AgentSet(members, random=self.random))
        self.totals: dict[int, np.ndarray] = {}
        self._row: dict = {}
        # The compiled rule functions, resolved once for these argument types: calling the
        # compiled entry point skips Numba's per-call type dispatch (the same machine code runs).
        example = (self.households, 0, 0, 0, 0.0, self.params, self.key[0], self.key[1], self.acc)
        self._household_update = _compiled(
            rules.household_update, (self.households, 0, 0, 0.0, self.params, self.acc, self.draws, 0)
        )
        self._household_events = _compiled(rules.household_events, example + (0, self.draws, 0))
        self.datacollector = mesa.DataCollector(
            model_reporters={col: (lambda m, c=col: m._row.get(c)) for col in M.COLUMNS}
        )

    @property
    def done(self) -> bool:
        return self.month > self.timeline.end

    def step(self) -> None:
        """Simulate one month, every village in turn (see the module docstring)."""
        if self.done:
            self.running = False
            return
        m = self.month
        p = self.params
        self.line = self.timeline.line(m)
        self.acc[:] = 0
        quota = self._quota
        if m == p.registration_month and p.registration_method == rules.METHOD_QUOTA:
            reg = self.config.policy.registration
            pop = self.population
            quota = rules.registration_quotas(
                pop.households.flags, pop.village_start, pop.village_county, pop.n_counties, pop.first_id, p,
                reg.quota_scale, reg.county_estimate_sd, reg.village_estimate_sd, *self.key,
            )
        starts = self.population.village_start
        lookback_on = p.lookback_start != rules.NO_MONTH and p.lookback_start <= m <= p.lookback_end
        for v, village in enumerate(self.villages):
            first, end = int(starts[v]), int(starts[v + 1])
            rules.month_draws(self.key[0], self.key[1], self.first_id + first, end - first, m, p, self.draws)
            rules.month_income(self.households, first, end - first, m, p, self.draws, self._chosen)
            village.do("update")
            rules.village_events(
                self.households, first, end, self.first_id, m, self.line, p, self.key[0], self.key[1], self.acc,
                quota[v], self._values, self._candidate, self._chosen, self.draws,
            )
            self.village_lookback = rules.lookback_month(p, self.key[0], self.key[1], self.first_id + first) if lookback_on else rules.NO_MONTH
            village.do("events")
            rules.village_counts(self.households, first, end - first, m, self.line, p, self.draws, self.acc)
        if m >= self.timeline.start:
            self.totals[m] = self.acc.copy()
            self._row = self._derive([m]).iloc[0].to_dict()
            self.datacollector.collect(self)
        self.month += 1
        if self.done:
            self.running = False

    def _derive(self, months: list[int]) -> pd.DataFrame:
        totals = np.array([self.totals[m] for m in months], dtype=np.int64).reshape(len(months), M.N_SLOTS)
        data_start = self.timeline.channels.get("data")
        running = [data_start is not None and m >= data_start for m in months]
        return M.derive(totals, months, costs=self.config.policy.cost, data_running=running)

    @property
    def metrics(self) -> pd.DataFrame:
        """The reported months so far, exactly as ``povsim.run(config).metrics`` computes them."""
        return self._derive(sorted(self.totals))

    def run(self) -> pd.DataFrame:
        """Step to the end of the simulated period; return :attr:`metrics`."""
        while self.running and not self.done:
            self.step()
        self.running = False
        return self.metrics
