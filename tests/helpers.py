"""Helpers shared by the tests: small configs and a CLI runner (imported as ``helpers``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import povsim
from povsim.config import ONE_TIME_THRESHOLD

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.toml"

#: a short period: 2013-2015 reported, one burn-in year (48 simulated months)
SHORT = {"simulation.start": "2013-01", "simulation.end": "2015-12", "simulation.burn_in_years": 1}

#: the povsim 0.1 model: one-time registration by threshold in 2014-10, no look-back, no reviews,
#: no discovery channels, and support that is the cash transfer only (no development support,
#: no higher reimbursement, no faster re-employment)
ONETIME = {
    **ONE_TIME_THRESHOLD,
    "policy.support.development_rate": 0.0,
    "policy.support.reimbursement": 0.5,  # = illness.reimbursement: no extra medical cover
    "policy.support.reemployment_multiplier": 1.0,
}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def set_args(overrides: dict) -> list[str]:
    """Dotted-key overrides as ``--set key=value`` command-line arguments (values written as TOML)."""
    out: list[str] = []
    for key, value in overrides.items():
        out += ["--set", f"{key}={_toml_value(value)}"]
    return out


#: :data:`ONETIME` as ``--set`` arguments for the command line
ONETIME_SET = set_args(ONETIME)

#: every shock and every source of income change switched off, one poverty line for every year
NO_SHOCKS = {
    "illness.onset_probability": 0.0,
    "job_loss.probability": 0.0,
    "income.persistent_sd": 0.0,
    "income.transitory_sd": 0.0,
    "income.annual_sd": 0.0,
    "income.trend": 0.0,
    "policy.support.transfer": 0.0,
    "policy.support.development_rate": 0.0,
    **{f"poverty.lines.{year}": 2800.0 for year in range(2013, 2021)},
}

#: every identification rule and channel switched off (each test switches on what it studies), and no
#: exit plan (a review switched on exits on stable income alone)
NO_RULES = {
    **{k: v for k, v in ONE_TIME_THRESHOLD.items() if k != "policy.registration.method"},
    "policy.registration.enabled": False,
    "policy.review.exit_plan": {},
}


def cfg(households: int = 20_000, overrides: dict | None = None):
    """The 0.1 (one-time registration) model over the short period, with ``households`` and overrides."""
    return povsim.load_config(
        overrides={**SHORT, **ONETIME, "population.households": households, **(overrides or {})}
    )


def full_cfg(households: int = 20_000, overrides: dict | None = None):
    """The default model (every rule and channel), 2013-2020 with one burn-in year."""
    return povsim.load_config(
        overrides={"simulation.burn_in_years": 1, "population.households": households, **(overrides or {})}
    )


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
