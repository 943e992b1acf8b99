"""povsim: household poverty dynamics, and how well the rules for finding the poor keep up.

Quick use::

    import povsim
    cfg = povsim.load_config("experiments/quickstart.toml", overrides={"population.households": 10_000})
    result = povsim.run(cfg)
    result.metrics          # one row per month
    result.summary()        # one row per year
    result.plot()           # a matplotlib Figure

    exp = povsim.Experiment.from_file("experiments/onetime_vs_dynamic.toml",
                                      overrides={"population.households": 10_000, "replicates": 4})
    outcome = exp.run()     # or exp.run(client) on a Dask cluster, exp.run(workers=2)
    outcome.summary()       # each scenario: mean and 95% interval across replicates
    outcome.compare()       # paired differences from the baseline

Importing povsim does no work: the compiled engine is loaded, and compiled or
read from Numba's cache, only when a run needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__", "Config", "ConfigError", "load_config", "run", "Simulation", "Result", "ResultError",
    "load_result", "Experiment", "ExperimentResult",
]

_LAZY = {
    "Config": ("povsim.config", "Config"),
    "ConfigError": ("povsim.config", "ConfigError"),
    "load_config": ("povsim.config", "load_config"),
    "Simulation": ("povsim.engine", "Simulation"),
    "Result": ("povsim.results", "Result"),
    "ResultError": ("povsim.results", "ResultError"),
    "load_result": ("povsim.results", "load_result"),
    "Experiment": ("povsim.experiments", "Experiment"),
    "ExperimentResult": ("povsim.experiments", "ExperimentResult"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config, ConfigError, load_config
    from .engine import Simulation
    from .experiments import Experiment, ExperimentResult
    from .results import Result, ResultError, load_result


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'povsim' has no attribute {name!r}")


def run(config: "Config", progress: bool = False) -> "Result":
    """Simulate one config and return its :class:`~povsim.results.Result`.

    ``progress=True`` shows a progress bar on standard error (and says so when the model is being
    compiled, on the first run only: see :mod:`povsim.progress`).
    """
    from .engine import Simulation

    if not progress:
        return Simulation(config).run()
    from .progress import Progress, engine_is_compiled
    from .timeline import Timeline

    # asked before the population is built (which compiles too); no estimate until the first month is done
    compiled = engine_is_compiled()
    with Progress(Timeline.from_config(config).n_simulated, "month", config.name, compiled=compiled) as bar:
        return Simulation(config).run(progress=bar.update)
