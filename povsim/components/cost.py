"""Costs: what each activity costs the government.

The unit costs are one config section; each component that incurs a cost declares
its cost column from its own counts (cadre visits, verifications, data flags,
transfers), and ``cost_total`` adds them.  This module declares the cost of the
assessments at registration, look-back and reviews, which those three share.
"""

from __future__ import annotations

from ..schema import SRC_ASSUMPTION, Section, param
from .base import Column, Component


class CostConfig(Section):
    """What each activity costs the government."""

    cadre_visit: float = param(50.0, "yuan per visit", SRC_ASSUMPTION, "cost of one cadre visit", ge=0.0, le=1e9)
    verification: float = param(300.0, "yuan per household", SRC_ASSUMPTION, "cost of one verification", ge=0.0, le=1e9)
    data_match: float = param(5.0, "yuan per flag", SRC_ASSUMPTION, "cost of following up one data flag", ge=0.0, le=1e9)
    data_system_per_household: float = param(
        0.02, "yuan per household per month", SRC_ASSUMPTION, "running cost of the data system while it runs", ge=0.0, le=1e6
    )
    assessment: float = param(
        100.0, "yuan per household", SRC_ASSUMPTION, "cost of one assessment at registration, look-back or review", ge=0.0, le=1e9
    )


def _assessment(c):
    return (c["assessed_registration"] + c["assessed_lookback"] + c["assessed_review"]) * c.costs.assessment


COMPONENT = Component(
    name="cost",
    doc="the unit cost of each activity; the cost of assessments",
    path="policy.cost",
    section=CostConfig,
    metrics=(Column("cost_assessment", "assessments at registration, look-back and reviews, yuan", _assessment, "yuan", "cost"),),
)
