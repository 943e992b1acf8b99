"""The administrative memory: what the village and the office believe about a household, and the evidence they check.

Every assessment by the office (the registration's community ranking or means test,
the look-back, the annual review, the verification of a flag) sees a household's
income with a log-normal error.  Part of that error is the household's own and
persists from one assessment to the next: what the village and the office believe
about it (remittances they do not see, assets, reputation).  It is drawn once per
household (:func:`household_draws`, month 0), and each assessment's standardised
error is

    ``sqrt(persistent_share) x a + sqrt(1 - persistent_share) x z``,

``a`` the household's persistent normal and ``z`` the assessment's own, so the error
keeps the assessment's SD and two assessments of one household correlate by
``persistent_share``.  With ``persistent_share = 0`` every assessment is independent.

The same draw gives the household's **exclusion evidence**: holding one of the
assets or positions that provincial rules named as excluding a household from
registration (Hebei's criteria: a public-sector salary, a village official's post,
an urban house, a car or large machinery, a registered business).  The 2014
registration did not check it; the look-back removes a registered household with
such evidence, and later registrations refuse it (:mod:`.lookback`).  And it gives
the **housing draw** the exit's housing guarantee reads (:mod:`.review`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb

from .. import elementary, rng
from ..schema import SRC_ASSUMPTION, Section, param
from .base import Component, Draw

STREAM_OFFICE = 13  #: the household's persistent assessment component, exclusion evidence and housing (id = household)

SRC_EXCLUSION = (
    "provincial exclusion criteria (Hebei's dynamic-management rules; China Keywords 2021-01-11, 'Look back'; "
    "povsim/data/targets/china_rural_poverty.toml, lookback_method); the share holding each is "
)


def _exclusion_shares() -> dict[str, float]:
    return {"public_salary": 0.005, "village_official": 0.005, "urban_house": 0.005, "vehicle": 0.010, "business": 0.005}


class AssessmentConfig(Section):
    """What the village and the office believe about a household, and the exclusion evidence they check."""

    persistent_share: float = param(
        0.5,
        "share of the error variance",
        SRC_ASSUMPTION + "; households keep what the village and the office believe about them from one "
        "assessment to the next (Alatas et al. 2012: community rankings weigh reputation and what villagers "
        "observe); the look-back's corrections, wrong exits and re-registrations depend on it",
        "share of each office assessment's log-error variance that is the household's persistent component",
        ge=0.0,
        le=1.0,
    )
    exclusion_shares: dict[str, float] = param(
        _exclusion_shares,
        "share of households",
        SRC_EXCLUSION + "an assumption, drawn independently of income; the look-back's removals depend on it",
        "share of households holding each excluding asset or position (public salary, village official, urban "
        "house, vehicle or large machinery, registered business); a household holds evidence if it holds any",
    )

    @field_validator("exclusion_shares")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        for name, share in value.items():
            if not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0.0 <= share <= 1.0):
                raise ValueError(f"exclusion_shares.{name} = {share!r}; allowed: a share from 0 to 1")
        return dict(value)


def exclusion_probability(shares: dict[str, float]) -> float:
    """The probability that a household holds any of the excluding assets or positions (independent criteria)."""
    none = 1.0
    for share in shares.values():
        none *= 1.0 - share
    return 1.0 - none


class Params(NamedTuple):
    """The administrative memory in the kernels' terms."""

    persistent_weight: float  #: sqrt(persistent_share): the weight of the household's persistent normal
    fresh_weight: float  #: sqrt(1 - persistent_share): the weight of the assessment's own normal
    exclusion_probability: float  #: P(the household holds any excluding asset or position)


def params(cfg) -> Params:
    a = cfg.policy.assessment
    return Params(
        persistent_weight=math.sqrt(a.persistent_share),
        fresh_weight=math.sqrt(1.0 - a.persistent_share),
        exclusion_probability=exclusion_probability(a.exclusion_shares),
    )


COMPONENT = Component(
    name="assessment",
    doc="the administrative memory: a persistent part of every office assessment's error, and exclusion evidence",
    path="policy.assessment",
    section=AssessmentConfig,
    params=params,
    streams={"office": STREAM_OFFICE},
    draws=(
        Draw(STREAM_OFFICE, 0, "household", 4, "0",
             "the household's persistent assessment component (words 0-1, a normal), its exclusion evidence "
             "(word 2), its housing (word 3)"),
    ),
)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def household_draws(k0, k1, household):
    """The household's draws made once: its persistent normal, exclusion uniform and housing uniform."""
    u0, u1, u_exclusion, u_housing = rng.draw4(k0, k1, STREAM_OFFICE, household, 0, 0)
    persistent, _ = rng.box_muller(u0, u1)
    return persistent, u_exclusion, u_housing


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def error(z, persistent, pa):
    """An office assessment's standardised error: the household's ``persistent`` normal and its own ``z``."""
    return pa.persistent_weight * persistent + pa.fresh_weight * z


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def office_error(k0, k1, household, u1, u2, pa):
    """The standardised error of one office assessment of ``household``, from its own two uniforms."""
    z, _ = rng.box_muller(u1, u2)
    persistent, _, _ = household_draws(k0, k1, household)
    return error(z, persistent, pa)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def assessed(value, sd, err):
    """``value x exp(sd x err)``: a value seen with a log-normal error (a non-positive value is seen as it is)."""
    if value <= 0.0:
        return value
    return value * elementary.exp(sd * err)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def has_evidence(k0, k1, household, pa):
    """Whether the household holds an excluding asset or position (drawn once)."""
    _, u_exclusion, _ = household_draws(k0, k1, household)
    return u_exclusion < pa.exclusion_probability
