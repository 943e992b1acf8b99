"""``Household`` (a ``mesa.Agent``) and ``PovertyModel`` (a ``mesa.Model``).

Each agent is a view of one row of the population's struct of arrays
(:class:`povsim.components.Households`): its state lives in those arrays, and its
steps call the compiled hooks of the components (:mod:`povsim.components`) on its
own row.  A month of the model (:meth:`PovertyModel.step`) runs, village by village,
the order of events as data, :data:`povsim.components.schedule.SCHEDULE`: each
village-level step calls its component's compiled hook for the village; the
household-level steps of a phase run for each agent of the village in turn
(``agent.update()`` in phase 1, ``agent.events()`` in phase 3), through the phase's
compiled function, which calls the phase's hooks in the schedule's order (the same
function the engine inlines).  Phases 3 and 4 wait for the first month that is
reported or in which a rule runs, as in the engine.

Mesa's own random generator is seeded from the config but never used by the model:
every random number comes from povsim's counter-based streams.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mesa
from mesa.agent import AgentSet

import importlib

from .. import metrics as M
from ..components import MODULES
from ..components import schedule as S
from ..components.registration import METHOD_QUOTA, registration_quotas
from ..components.review import exit_targets
from ..config import Config
from ..engine import Simulation
from .._jit import python_entry
from ..engine import compiled_entry
from ..population import (
    CAPACITY_SCALE,
    FLAG_CONNECTED,
    FLAG_COVERED,
    FLAG_POOR,
    FLAG_REGISTERED,
    ROUTE_NAMES,
)

__all__ = ["Household", "PovertyModel"]


def _hook(dispatcher, example_args):
    """A hook of the schedule as Python calls it: compiled with a Python entry point, for these argument types."""
    return compiled_entry(python_entry(dispatcher), example_args)

#: the agents' method that runs each household-level phase of the schedule
_PHASE_METHOD = {"1": "update", "3": "events"}

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
        """Phase 1: the month's income into its record; true poverty; household-level channels."""
        m = self.model
        m._phase["1"](m.households, m.village_state, self.village, self.index, m.first_id, m.month, m.line, m.params,
                      m.key[0], m.key[1], m.acc, m.scratch)

    def events(self) -> None:
        """Phase 3: verification, registration by threshold, look-back, review."""
        m = self.model
        m._phase["3"](m.households, m.village_state, self.village, self.index, m.first_id, m.month, m.line, m.params,
                      m.key[0], m.key[1], m.acc, m.scratch)

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
        """Per-capita income over the last 12 months, yuan (in December, the calendar year's)."""
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
        self.village_state = self.population.villages  #: the villages' state (povsim.components.Villages)
        largest = int(np.diff(self.population.village_start).max()) if self.population.n_villages else 0
        #: the scratch of the village being stepped: its month's draws (one column per household) and rankings
        self.scratch = S.scratch(largest)
        self.villages: list[AgentSet] = []  #: the agents of each village, an ``AgentSet`` per village
        starts = self.population.village_start
        for v in range(self.population.n_villages):
            members = [Household(self, i, v, i - starts[v]) for i in range(starts[v], starts[v + 1])]
            self.villages.append(AgentSet(members, random=self.random))
        self.totals: dict[int, np.ndarray] = {}
        self._row: dict = {}
        # The compiled hooks, with a Python entry point (the engine's have none: only its compiled
        # month calls them), resolved once for these argument types: calling the compiled entry
        # point skips Numba's per-call type dispatch.
        village_args = (self.households, self.village_state, 0, self.first_id, 0, 0.0, self.params, self.key[0],
                        self.key[1], self.acc, self.scratch)
        household_args = village_args[:3] + (0,) + village_args[3:]
        modules = {m.COMPONENT.name: m for m in (importlib.import_module(f"povsim.components.{name}") for name in MODULES)}
        #: each step of the schedule with its compiled village hook (None for a household step)
        self._steps = [
            (step, _hook(getattr(modules[step.component], step.hook), village_args) if step.level == "village" else None)
            for step in S.SCHEDULE
        ]
        self._phase = {
            "1": _hook(S.household_update, household_args),
            "3": _hook(S.household_events, household_args),
        }
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
        if m == p.registration.month and p.registration.method == METHOD_QUOTA:
            pop = self.population
            self.village_state.quota[:] = registration_quotas(
                self.village_state.survey_poor, pop.households.size, pop.households.flags, pop.village_start,
                pop.village_county,
                pop.n_counties, pop.first_id, self.config.policy.registration, *self.key,
            )
        targets = exit_targets(self.population, self.config.policy.review, m)
        if targets is not None:
            self.village_state.exit_target[:] = targets
        elif self.village_state.exit_target.any():
            self.village_state.exit_target[:] = 0
        quiet = m < p.time.quiet_until
        for v, village in enumerate(self.villages):
            done_phases = set()
            for step, hook in self._steps:
                if quiet and step.phase in S.QUIET_PHASES:
                    break
                if hook is not None:
                    hook(self.households, self.village_state, v, self.first_id, m, self.line, p, self.key[0],
                         self.key[1], self.acc, self.scratch)
                elif step.phase not in done_phases:  # the phase's household steps, agent by agent
                    village.do(_PHASE_METHOD[step.phase])
                    done_phases.add(step.phase)
        if m >= self.timeline.start:
            self.totals[m] = self.acc.copy()
            # a December's yearly columns (churn) read the year's months and the December before
            recent = [k for k in sorted(self.totals) if k > m - 24]
            self._row = self._derive(recent).iloc[-1].to_dict()
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
