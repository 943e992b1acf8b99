"""The calendar of a run: burn-in, reported months, the poverty line of each month, policy events.

This module owns time.  A month is an integer index ``year * 12 + (month - 1)``
(so ``2014-10`` is ``24177``); draws are keyed by this calendar index, so a
household's shocks in a given month do not depend on how long the burn-in is.

Policy events (the one-time registration, the look-back window, each annual
review), as each component declares them, and the months from which each
discovery channel runs are listed here, so results can be labelled by event.

A run simulates ``burn_in_years`` before ``simulation.start``'s year (from January)
without policy and
without reporting, so the income distribution and the illness and job states
reach their steady state and every household has 12 months of income history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import components
from .config import Config, format_month, parse_month
from .schema import first_month

__all__ = ["Timeline", "CalendarMonth"]


class CalendarMonth(int):
    """A month index (``year * 12 + (month - 1)``, an ``int``) that reads as its calendar month.

    ``str()``, ``repr()`` and f-strings show ``2017-03``; it compares, hashes and indexes as
    the integer (so it can be used wherever a month index is).  Adding or subtracting months
    gives a :class:`CalendarMonth`; the difference of two months is a number of months.
    ``CalendarMonth.parse("2017-03")`` reads one.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> "CalendarMonth":
        """The month written ``"YYYY-MM"`` (``ValueError`` otherwise)."""
        return cls(parse_month(text))

    @property
    def year(self) -> int:
        return int(self) // 12

    @property
    def month_of_year(self) -> int:
        """1 (January) to 12 (December)."""
        return int(self) % 12 + 1

    def __str__(self) -> str:
        return format_month(int(self))

    def __repr__(self) -> str:
        return f"CalendarMonth('{self}')"

    def __format__(self, spec: str) -> str:
        try:
            return format(str(self), spec)
        except ValueError:  # an integer format such as "d"
            return format(int(self), spec)

    def __add__(self, months):
        if isinstance(months, int) and not isinstance(months, (bool, CalendarMonth)):
            return CalendarMonth(int(self) + months)
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, CalendarMonth):
            return int(self) - int(other)  # months between
        if isinstance(other, int) and not isinstance(other, bool):
            return CalendarMonth(int(self) - other)
        return NotImplemented

    def __reduce__(self):
        return (CalendarMonth, (int(self),))


@dataclass(frozen=True)
class Timeline:
    first: int  #: first simulated month (start of the burn-in)
    start: int  #: first reported month
    end: int  #: last reported month
    lines: np.ndarray  #: poverty line (yuan per person per year) of each simulated month
    events: tuple[tuple[str, int, int], ...]  #: (name, first month, last month) of each policy event
    channels: dict  #: channel name -> first month it runs (absent if disabled)

    @classmethod
    def from_config(cls, cfg: Config) -> "Timeline":
        start = parse_month(cfg.simulation.start)
        end = parse_month(cfg.simulation.end)
        first = first_month(start, cfg.simulation.burn_in_years)
        table = cfg.poverty.lines
        first_year, last_year = min(table), max(table)
        # burn-in years before the first line use the first year's line (nothing is reported then)
        lines = np.array(
            [table[min(max(m // 12, first_year), last_year)] for m in range(first, end + 1)], dtype=np.float64
        )
        events = components.events(cfg, end)
        channels = components.channel_starts(cfg)
        return cls(first, start, end, lines, tuple(events), channels)

    @property
    def months(self) -> range:
        """Every simulated month, burn-in included."""
        return range(self.first, self.end + 1)

    @property
    def reported(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    @property
    def n_simulated(self) -> int:
        return self.end - self.first + 1

    @property
    def n_burn_in(self) -> int:
        return self.start - self.first

    def line(self, month: int) -> float:
        return float(self.lines[month - self.first])

    def label(self, month: int) -> str:
        return format_month(month)
