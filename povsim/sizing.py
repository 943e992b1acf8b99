"""How big a run is before it starts: the memory its population needs and the household-months it simulates.

A population is allocated whole (a struct of arrays, :mod:`povsim.population`), so a run
whose population does not fit in memory fails only after the machine has begun to swap,
or is killed by the operating system without a word.  This module estimates, from the
declared household state, what a run will hold, and checks it against the memory the
machine has available *before* anything is allocated:

* :func:`run_bytes` -- peak resident bytes of one process running one population:
  the household state (:func:`state_bytes_per_household`, the sum of the declared
  arrays' widths: 62 B) times the households, plus :data:`PROCESS_BYTES` for the
  interpreter, NumPy, Numba and the compiled model.  Measured on a 2-core AMD EPYC
  (Zen 3) with 23.5 GiB: peak resident 396.7 MB at 2 x 10^6 households and 885.6 MB at
  10^7 households through 2013-2020, i.e. 61 B a household above 275 MB; the state
  alone is 62 B a household, and the building's temporaries are chunked, so they do
  not grow with the population.
* :func:`available_memory` -- the machine's available memory (``MemAvailable`` of
  ``/proc/meminfo``, which counts reclaimable caches; elsewhere the free pages).
* :func:`check_memory` -- raises :class:`SizeError` when a run (or several at once)
  would need more than that.
* :func:`household_months` and :data:`LARGE_HOUSEHOLD_MONTHS` -- the total an experiment
  simulates, which ``povsim run`` asks the user to confirm above the threshold.
"""

from __future__ import annotations

import os

__all__ = [
    "LARGE_HOUSEHOLD_MONTHS",
    "PROCESS_BYTES",
    "RATE_PER_CORE",
    "SizeError",
    "available_memory",
    "check_memory",
    "household_months",
    "run_bytes",
    "state_bytes_per_household",
]

#: resident bytes of a povsim process before its population: the interpreter, NumPy, Numba and the compiled
#: model (275 MB measured on a 2-core AMD EPYC, Python 3.11, Numba 0.68; rounded up for other platforms)
PROCESS_BYTES = 400 * 2**20

#: household-months above which ``povsim run`` asks before it starts (``--yes`` answers): 10^11 is five
#: runs of rural China (2 x 10^8 households, 2013-2020 with 5 years' burn-in), over an hour at the
#: rate below on a 2-core machine
LARGE_HOUSEHOLD_MONTHS = 10**11

#: household-months per second per core used for the time estimate: the China timeline at 10^7 households ran
#: at 2.0 x 10^7 household-months per second on 2 cores (AMD EPYC Zen 3; docs/performance.md); an estimate only
RATE_PER_CORE = 1.0e7


class SizeError(ValueError):
    """A run or an experiment is too large for this machine: its estimate against what the machine has."""


def state_bytes_per_household() -> float:
    """Bytes of declared state a household holds (every array of :data:`povsim.components.HOUSEHOLD_STATE`)."""
    import numpy as np

    from .components import HOUSEHOLD_STATE

    return float(sum(np.dtype(s.dtype).itemsize * int(np.prod(s.shape, dtype=np.int64)) for _, s in HOUSEHOLD_STATE))


def run_bytes(households: int) -> int:
    """Peak resident bytes of one process running a population of ``households`` (see the module's note)."""
    return int(PROCESS_BYTES + households * state_bytes_per_household())


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now, or ``None`` where it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover (no sysconf)
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_memory(households: int, processes: int = 1, available: int | None = None) -> int:
    """Refuse (:class:`SizeError`) ``processes`` runs of ``households`` each at once that would not fit in memory.

    ``available`` defaults to :func:`available_memory`; where it cannot be told, nothing is
    refused.  Returns the estimate, in bytes.
    """
    need = processes * run_bytes(households)
    available = available_memory() if available is None else available
    if available is not None and need > available:
        per = state_bytes_per_household()
        fits = max(0, int((available / max(processes, 1) - PROCESS_BYTES) / per))
        runs = f"{processes} runs at once of " if processes > 1 else ""
        raise SizeError(
            f"population.households = {households:,}: {runs}{households:,} households need about {_gb(need)} of "
            f"memory ({per:.0f} B a household and {PROCESS_BYTES / 2**20:.0f} MiB a process) and this machine has "
            f"{_gb(available)} available; allowed: at most about {fits:,} households"
            + (" per run, or fewer workers" if processes > 1 else "")
            + " on this machine, or a Dask cluster with more memory"
        )
    return need


def household_months(configs) -> int:
    """Household-months the runs of ``configs`` simulate in all, burn-in included (one per run)."""
    from .timeline import Timeline

    return int(sum(c.population.households * Timeline.from_config(c).n_simulated for c in configs))


def describe(total: int, cores: int) -> str:
    """``total`` household-months in words, with the time they take at :data:`RATE_PER_CORE` on ``cores``."""
    hours = total / (RATE_PER_CORE * max(cores, 1)) / 3600
    span = f"{hours:,.1f} hours" if hours >= 1 else f"{hours * 60:,.0f} minutes"
    return f"{total:.2e} household-months, about {span} on {cores} core(s) at {RATE_PER_CORE:.0e} per core per second"
