"""Job loss of a household's wage earner, and re-employment.

A household with workers loses a wage job with a monthly probability and finds work
again with the inverse of the mean duration out of work (faster with support, see
:mod:`.support`); while out of work it loses a share of its income.  The month's
transitions are computed with the household's income
(:func:`povsim.components.income.household_month`), which calls :func:`transition`.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from ..schema import SRC_ASSUMPTION, Section, param
from .base import Component, State


class JobLossConfig(Section):
    """Job loss of a household's wage earner, and re-employment."""

    probability: float = param(
        0.004,
        "per household with workers per month",
        "about 5% of working households lose a wage job in a normal year (15% in the 2008-09 crisis)",
        "probability of losing a job",
        ge=0.0,
        le=1.0,
    )
    duration: float = param(4.0, "months", SRC_ASSUMPTION, "mean months until re-employment (geometric)", ge=1.0, le=600.0)
    income_loss: float = param(
        0.40,
        "share of income",
        "wage income about 40% of rural per-capita income (NBS 2014)",
        "share of household income lost while unemployed",
        ge=0.0,
        le=1.0,
    )


class Params(NamedTuple):
    """Job loss in the kernels' units (per month)."""

    probability: float
    reemployment: float  #: 1 / ``duration``
    income_loss: float


def params(cfg) -> Params:
    job = cfg.job_loss
    return Params(probability=job.probability, reemployment=1.0 / job.duration, income_loss=job.income_loss)


COMPONENT = Component(
    name="job_loss",
    doc="job loss of a wage earner and re-employment",
    path="job_loss",
    section=JobLossConfig,
    params=params,
    state=(State("unemployed", "uint8", "1 while a wage earner is out of work"),),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def transition(unemployed, workers, u_job, job_loss, reemployment):
    """New unemployment flag and whether a job was lost this month (households with workers only).

    Written as selections, without branches, so that a loop of it vectorises.
    """
    out_of_work = unemployed != 0
    leave = (workers != 0) & (u_job < (reemployment if out_of_work else job_loss))
    new = np.int64(out_of_work != leave) if workers != 0 else np.int64(0)
    return new, leave & (not out_of_work)
