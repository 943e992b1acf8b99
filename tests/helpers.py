"""Helpers shared by the tests: small configs and a CLI runner (imported as ``helpers``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import povsim

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.toml"

#: a short period: 2013-2015 reported, one burn-in year (48 simulated months)
SHORT = {"simulation.start": "2013-01", "simulation.end": "2015-12", "simulation.burn_in_years": 1}

#: every shock and every source of income change switched off, one poverty line for every year
NO_SHOCKS = {
    "illness.onset_probability": 0.0,
    "job_loss.probability": 0.0,
    "income.persistent_sd": 0.0,
    "income.transitory_sd": 0.0,
    "income.trend": 0.0,
    "policy.support.transfer": 0.0,
    **{f"poverty.lines.{year}": 2800.0 for year in range(2013, 2021)},
}


def cfg(households: int = 20_000, overrides: dict | None = None):
    """The default config over the short period, with ``households`` and dotted-key overrides."""
    return povsim.load_config(overrides={**SHORT, "population.households": households, **(overrides or {})})


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """``python -m povsim.cli ARGS``; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "povsim.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
