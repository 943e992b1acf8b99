"""How a parameter is declared: its unit, default, source and range, once.

This module owns the building blocks of the experiment file's schema.  Every
component (:mod:`povsim.components`) declares its config section with
:class:`Section` and :func:`param`; :mod:`povsim.config` assembles the sections
into the whole :class:`~povsim.config.Config`, validates files against it and
walks it for documentation.  Nothing here imports Numba or NumPy.

Months are written ``"YYYY-MM"`` and held as the index ``year * 12 + (month - 1)``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ConfigError", "Section", "Month", "param", "parse_month", "format_month", "check_month", "first_month",
    "SRC_ASSUMPTION", "SRC_NBS_LINE", "SRC_REG_2014",
]

SRC_NBS_LINE = "NBS rural poverty line (../shared/targets/china_rural_poverty.toml, national_line)"
SRC_ASSUMPTION = "modelling assumption, to be calibrated"
SRC_REG_2014 = "2014 card registration, April-October 2014 (SCIO press conference 2021-04-06)"

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")

Month = str  #: a month written "YYYY-MM"


class ConfigError(ValueError):
    """A config that cannot be run: the message names each bad key, its value and what is allowed."""


class Section(BaseModel):
    """A section of the config: unknown keys are refused, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def param(default: Any, unit: str, source: str, description: str, **bounds: Any) -> Any:
    """Declare one parameter: a pydantic Field carrying its unit and source.

    ``default`` may be a zero-argument function for mutable defaults.  ``bounds``
    are pydantic's constraints (``ge``, ``gt``, ``le``, ``lt``, ``min_length``,
    ``max_length``).
    """
    extra = {"json_schema_extra": {"unit": unit, "source": source}, "description": description}
    if callable(default):
        return Field(default_factory=default, **extra, **bounds)
    if isinstance(default, (bool, int, float)):
        # strict: `true` is not a number and "5000" is not an integer (an int is still a valid float)
        return Field(default, strict=True, **extra, **bounds)
    return Field(default, **extra, **bounds)


def parse_month(text: str) -> int:
    """``"YYYY-MM"`` as a month index ``year * 12 + (month - 1)``."""
    m = _MONTH_RE.match(str(text))
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"a month is written 'YYYY-MM' (e.g. '2014-10'), got {text!r}")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def format_month(index: int) -> str:
    """A month index as ``"YYYY-MM"``."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def first_month(start: int, burn_in_years: int) -> int:
    """The first simulated month: January of the year ``burn_in_years`` before ``start``'s year.

    Starting in January makes every December of the run close a complete calendar year
    of income, which the calendar-year poverty concept assesses.
    """
    return (start // 12 - burn_in_years) * 12


def check_month(value: str) -> str:
    """A pydantic validator: ``value`` is a month written ``"YYYY-MM"``."""
    parse_month(value)
    return value
