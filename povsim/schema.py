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

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "ConfigError", "Section", "Month", "param", "parse_month", "format_month", "check_month", "first_month",
    "SRC_ASSUMPTION", "SRC_FITTED", "SRC_NBS_LINE", "SRC_REG_2014", "YEAR_MIN", "YEAR_MAX", "check_by_year", "in_year",
]

SRC_NBS_LINE = "NBS rural poverty line (povsim/data/targets/china_rural_poverty.toml, national_line)"
SRC_ASSUMPTION = "modelling assumption"
#: the start of the source of every default fitted by the calibration (``povsim params`` marks them)
SRC_FITTED = "fitted, docs/calibration.md"
SRC_REG_2014 = "2014 card registration, April-October 2014 (SCIO press conference 2021-04-06)"

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")

YEAR_MIN, YEAR_MAX = 1900, 2200  #: the calendar years a schedule by year may list

Month = str  #: a month written "YYYY-MM"


class ConfigError(ValueError):
    """A config that cannot be run: the message names each bad key, its value and what is allowed."""


class Section(BaseModel):
    """A section of the config: unknown keys are refused, assignments are validated.

    A parameter declared with ``param(..., by_year=True)`` is checked here, before its
    type: a number, or a table of numbers by calendar year (:func:`check_by_year`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _by_year(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name)
        extra = field.json_schema_extra if field is not None else None
        if isinstance(extra, dict) and "by_year" in extra:
            return check_by_year(value, **extra["by_year"])
        return value


def param(default: Any, unit: str, source: str, description: str, by_year: bool = False, **bounds: Any) -> Any:
    """Declare one parameter: a pydantic Field carrying its unit and source.

    ``default`` may be a zero-argument function for mutable defaults.  ``bounds``
    are pydantic's constraints (``ge``, ``gt``, ``le``, ``lt``, ``min_length``,
    ``max_length``).  ``by_year``: the value is a number or a schedule by calendar year
    (a table ``{2014 = 40.0, 2017 = 80.0}``, see :func:`in_year`), every number within
    ``bounds``; declare its type ``float | dict[int, float]``.
    """
    if by_year:
        text = _bounds_text(bounds)
        schema = {"unit": unit, "source": source, "by_year": dict(bounds),
                  "allowed": f"{text}; or a table year = number, years {YEAR_MIN}-{YEAR_MAX}"}
        if callable(default):
            return Field(default_factory=default, json_schema_extra=schema, description=description)
        return Field(default, json_schema_extra=schema, description=description)
    extra = {"json_schema_extra": {"unit": unit, "source": source}, "description": description}
    if callable(default):
        return Field(default_factory=default, **extra, **bounds)
    if isinstance(default, (bool, int, float)):
        # strict: `true` is not a number and "5000" is not an integer (an int is still a valid float)
        return Field(default, strict=True, **extra, **bounds)
    return Field(default, **extra, **bounds)


_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _bounds_text(bounds: dict[str, Any]) -> str:
    return ", ".join(f"{_SYMBOLS[k]} {v}" for k, v in bounds.items() if k in _SYMBOLS) or "any number"


def _within(value: float, bounds: dict[str, Any]) -> bool:
    return (
        value >= bounds.get("ge", -float("inf")) and value > bounds.get("gt", -float("inf"))
        and value <= bounds.get("le", float("inf")) and value < bounds.get("lt", float("inf"))
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_by_year(value: Any, **bounds: Any) -> float | dict[int, float]:
    """A number, or a schedule by calendar year, checked against ``bounds``; a schedule sorted by year.

    A schedule is a table ``{year: number}`` (TOML's keys are text: ``"2014"`` is the year
    2014) with at least one year, each in ``YEAR_MIN``..``YEAR_MAX``.  A ``ValueError``
    names the year, the value and what is allowed.
    """
    allowed = f"allowed: a number {_bounds_text(bounds)}, or a table of such numbers by year ({{2014 = 40.0, 2017 = 80.0}})"
    if _number(value):
        if not _within(float(value), bounds):
            raise ValueError(f"{value!r} is out of range; {allowed}")
        return float(value)
    if not isinstance(value, dict) or not value:
        raise ValueError(f"not a number or a table by year; {allowed}")
    out: dict[int, float] = {}
    for year, number in value.items():
        text = str(year).strip()
        if isinstance(year, bool) or not text.isdigit() or not YEAR_MIN <= int(text) <= YEAR_MAX:
            raise ValueError(f"year {year!r} is not a calendar year {YEAR_MIN}-{YEAR_MAX}; {allowed}")
        if not _number(number) or not _within(float(number), bounds):
            raise ValueError(f"year {int(text)}: {number!r} is out of range; {allowed}")
        out[int(text)] = float(number)
    return dict(sorted(out.items()))


def in_year(value: float | dict[int, float], year: int) -> float:
    """A number or schedule's value in ``year``: the latest listed year's at or before it (the first's before them)."""
    if not isinstance(value, dict):
        return float(value)
    years = sorted(value)
    chosen = years[0]
    for y in years:
        if y <= year:
            chosen = y
    return float(value[chosen])


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
