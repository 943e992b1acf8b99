"""The order of events in one month, written once as code and once as data.

:func:`village_month` advances one village through one month by calling the
components' hooks in order; :data:`SCHEDULE` lists the same calls as data, from
which the Mesa model runs its month and ``docs/model.md`` prints the order of events
(``tests/test_components.py`` checks that the two agree).

Every hook has one of two signatures:

* a village hook: ``hook(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)``;
* a household hook: ``hook(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)``,

with ``hh`` the households' state and ``vs`` the villages' (struct-of-arrays named
tuples), ``v`` the village, ``i`` the household (its column in the village's scratch
is ``i - vs.start[v]``, its global id ``first_id + i``), ``line`` the month's poverty
line, ``p`` the kernel parameters, ``(k0, k1)`` the Philox key, ``acc`` the month's
integer totals and ``s`` the village's :class:`Scratch`.

How it is compiled: the household hooks are inlined into the phase functions and
these into :func:`village_month`, and so are the village hooks that are cheap or
usually do nothing (a call copies the flattened arguments, about 2.5 KB, and six calls
a village-month cost the engine 8 % of its speed); the big loops over the village
(``income.household_month``, ``cadre.village``, ``census.count``) are called, which
measured faster in the months every channel runs than inlining them.  Inlining is
LLVM's (``forceinline=True``, the ``alwaysinline`` attribute): each hook is compiled
once and its machine code merged into the caller.  Numba's own inlining
(``inline="always"``) copies and re-types the callee's IR at every call site, with the
callees it inlined in turn; for the rules of 2013-2020 that was three quarters of a
first compile (``docs/performance.md``), for the same results.  Numba passes
``forceinline`` on to the functions an inlined one calls, so a function meant to stay a
call (``review.pull_forward``, ``registration.select_lowest``) says ``forceinline=False``.
No hook has a Python entry point (``no_cpython_wrapper=True``: building one for
the full argument list took about a second of a first compile each): only
:func:`village_month` calls them.  The Mesa model, which calls the village hooks and
the two phase functions from Python, compiles its own copies with one
(:func:`povsim._jit.python_entry`), only when it is used.  No function has Numba's C-callable wrapper
(``no_cfunc_wrapper=True``: built by default for ``ctypes`` and for functions passed as
values, neither of which povsim uses; a fifth of a first compile), and the small helpers
called with constants are compiled once per argument type, not per constant
(:func:`povsim._jit.compile_per_type`).  All are compiled
without Numba's reference counting (``_nrt=False``: they never allocate, and counting
references to shared arrays from every thread cost a fifth of a month) and with
NumPy's error model (no Python ``ZeroDivisionError`` branch, so loops vectorise).  The
arithmetic every household needs every month is in the vectorised village loops of
steps 0 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from . import (
    cadre, census, data, hotline, income, lookback, monitoring, poverty, registration, review, self_declaration,
    verification,
)

__all__ = ["Scratch", "Step", "SCHEDULE", "village_month", "household_update", "household_events", "scratch"]


class Scratch(NamedTuple):
    """Scratch arrays of one village's month, at least as long as the largest village."""

    draws: np.ndarray  #: (income.N_DRAWS, households): the month's draws and results, one column per household
    values: np.ndarray  #: float64: rankings (quota registration, cadre visits)
    candidate: np.ndarray  #: bool: candidates of a ranking
    chosen: np.ndarray  #: int64: the chosen of a ranking; the ill households' columns


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def scratch(largest):
    """Scratch for villages of at most ``largest`` households."""
    return Scratch(
        np.empty((income.N_DRAWS, largest), np.float64), np.empty(largest, np.float64), np.empty(largest, np.bool_),
        np.empty(largest, np.int64),
    )


@dataclass(frozen=True)
class Step:
    """One call of the order of events."""

    phase: str  #: "0a", "0b", "1", "2", "3", "3b", "4"
    component: str  #: the component's name
    hook: str  #: the hook's name in the component's module
    level: str  #: "village" (once for the village) or "household" (for each household, in order)
    does: str  #: what it does, in words


#: The order of events in one month of one village (the calls of :func:`village_month`).
SCHEDULE: tuple[Step, ...] = (
    Step("0a", "income", "draw", "village", "the month's shocks draws and income normals of every household"),
    Step("0a", "self", "draw", "village", "the channels' draws (self-declaration, hotline), once either runs"),
    Step("0b", "income", "household_month", "village",
         "every household's shocks (illness and job transitions, recoveries first), the support it receives "
         "(registered, monitored, or exited and still keeping its policies), and its income and medical spending"),
    Step("1", "poverty", "update", "household", "the month's income into the 12-month record; true poverty"),
    Step("1", "self", "household", "household", "self-declaration: an unregistered household may apply"),
    Step("1", "data", "household", "household", "sector data: a covered household's records are compared"),
    Step("1", "hotline", "household", "household", "hotline: a missed poor household may call"),
    Step("2", "registration", "survey", "village",
         "in the survey month: the village's poor people counted, every household's registration basis kept"),
    Step("2", "registration", "village", "village", "the one-time registration by quota (community ranking), in its month"),
    Step("2", "cadre", "village", "village", "cadre visits, worst-off first as the cadres perceive them"),
    Step("3", "verification", "household", "household", "verification of a flag that is due; registration if eligible"),
    Step("3", "registration", "household", "household", "the one-time registration by threshold, in its month"),
    Step("3", "lookback", "household", "household",
         "the look-back, in the village's look-back month: removals on clear evidence, the missed poor added"),
    Step("3", "review", "household", "household",
         "exits on stable income with the guarantees (annually from the first exit month); the annual review's "
         "check of monitored households and entries of others"),
    Step("3b", "review", "plan", "village", "an exit plan's target met, exits pulled forward, in a plan year's exit month"),
    Step("4", "census", "count", "village", "the month's counts of the village's households"),
    Step("4", "monitoring", "count", "village", "the monitoring stocks of the village's households, while counted"),
)

#: Phases 3, 3b and 4 run only from ``p.time.quiet_until`` (the first month that is reported or in
#: which a rule runs): before it they would do nothing.
QUIET_PHASES = ("3", "3b", "4")


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household_update(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 1 for household ``i``: its income record and poverty, then the household-level channels in priority order."""
    poverty.update(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    self_declaration.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    data.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    hotline.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household_events(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3 for household ``i``: verification, registration by threshold, look-back, review."""
    verification.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    registration.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    lookback.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    review.household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, error_model="numpy")
def village_month(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Advance village ``v`` through ``month``: the hooks of :data:`SCHEDULE`, in order."""
    income.draw(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    self_declaration.draw(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    income.household_month(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    for i in range(vs.start[v], vs.start[v + 1]):
        household_update(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    registration.survey(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    registration.village(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    cadre.village(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    if month < p.time.quiet_until:
        return  # no rule has run and the month is not reported: phases 3 and 4 would do nothing
    for i in range(vs.start[v], vs.start[v + 1]):
        household_events(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s)
    review.plan(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    census.count(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
    monitoring.count(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)
