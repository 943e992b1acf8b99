"""What a component declares, and the small compiled helpers every component's kernels share.

A component (one module of :mod:`povsim.components`) is one submodel: the income
process, an illness, a rule of the government, a discovery channel.  It declares
once, in a :class:`Component`:

* its config **section** (a :class:`povsim.schema.Section`, each parameter with its
  unit, default, source and range) and where it sits in the config tree;
* its **kernel parameters**: a named tuple built from the validated section, with the
  section's own names (``p.cadre.visits_per_village``), in the units the kernels use;
* its **state**: arrays per household (:class:`State`) and per village;
* its **draws** (:class:`Draw`): which stream, index and id space, how many words;
* its **counts** (:class:`Count`, integer totals the kernels add up), **binned counts**
  (:class:`Bins`) and derived **columns** (:class:`Column`) of the metrics table, each
  with its definition, unit and kind;
* its **route** onto the register (:class:`Route`: code, name, label, colour), if any;
* the **months** of its section that must lie in the simulated period, and its policy
  **events**;
* its **hooks**: hand-written Numba kernels, called by the order of events
  (:mod:`povsim.components.schedule`).

:mod:`povsim.components` (the registry) derives everything that would otherwise be a
hand-kept list from these declarations.  Kernels see only named tuples and arrays:
nothing of the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from ..schema import parse_month

__all__ = [
    "Component", "State", "Draw", "Count", "Bins", "Column", "Route", "NO_MONTH", "FLAG_REGISTERED",
    "FLAG_POOR", "FLAG_CONNECTED", "FLAG_COVERED", "FLAG_POOR_DECEMBER", "FLAG_POOR_EARLIER", "FLAG_EVER_REGISTERED",
    "FLAG_MONITORED", "MONTH_ORIGIN", "NEVER",
    "is_active", "to_stored", "months_since", "store_yuan", "add_binned",
]

NO_MONTH = -1  #: a month index meaning "never" (a rule that is disabled)

# Bits of a household's ``flags`` byte
FLAG_REGISTERED = 1  #: the household is on the register
FLAG_POOR = 2  #: the household was truly poor at the end of its last month
FLAG_CONNECTED = 4  #: the household is connected to the village cadres
FLAG_COVERED = 8  #: the household's records are in other departments' data
FLAG_POOR_DECEMBER = 16  #: the household was poor at the last December assessment
FLAG_POOR_EARLIER = 32  #: the household was poor at a December assessment before the last one
FLAG_EVER_REGISTERED = 64  #: the household has been on the register at some time
FLAG_MONITORED = 128  #: the household is monitored for a return to poverty (from 2021)
MONTH_ORIGIN = 1900 * 12  #: month stored as 0 in int16 month fields
NEVER = -32768  #: "never" in int16 month fields

ID_SPACES = ("household", "village", "county", "province")


@dataclass(frozen=True)
class State:
    """One array of state, per household or per village.

    ``shape`` adds trailing dimensions (the 12-month income record); ``fill`` is the
    value a new population starts with.
    """

    name: str
    dtype: str
    description: str
    fill: int | float = 0
    shape: tuple[int, ...] = ()

    @property
    def bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * math.prod(self.shape))


@dataclass(frozen=True)
class Draw:
    """One Philox call: ``(seed, stream, id, month, index)`` -> four uniform words.

    ``space`` says what ``id`` numbers (a household's global id, a village's id, a
    county or province index); ``month`` says which months it is drawn in (``"each"``:
    the calendar month of the draw; ``"0"``: month index 0, a draw made once);
    ``words`` how many of its four words are used.
    """

    stream: int
    index: int
    space: str
    words: int
    month: str
    purpose: str

    def __post_init__(self) -> None:
        if self.space not in ID_SPACES:
            raise ValueError(f"Draw.space = {self.space!r}; allowed: {', '.join(ID_SPACES)}")
        if not 1 <= self.words <= 4:
            raise ValueError(f"Draw.words = {self.words}; allowed: 1 to 4")


@dataclass(frozen=True)
class Count:
    """An integer total the kernels add up each month (``acc[p.slot.<name>]``).

    ``by_route``: one slot per route code (``acc[p.slot.<name> + route]``).  ``column``:
    how the count appears in the metrics table: ``"same"`` (a column of the same name),
    ``None`` (used by derived columns only), or for a count by route a pattern such as
    ``"entered_{route}"`` with ``routes`` naming which routes get a column (``"all"`` or
    ``"channels"``).
    """

    name: str
    definition: str
    unit: str = "households"
    kind: str = "stock"  #: "stock" (a state at the end of the month) or "flow" (events in the month)
    by_route: bool = False
    column: str | None = "same"
    routes: str = "all"


@dataclass(frozen=True)
class Bins:
    """A distributional statistic: counts in ``bins`` fixed bins, accumulated like any count.

    The kernels add one to bin ``min(max(value, 0), bins - 1)`` (:func:`add_binned`) of
    ``acc[p.slot.<name> + (route * bins if by_route else 0)]``; the totals are exact
    integers, so the histogram is the same for any thread count.  ``labels`` names the
    bins (the last is open-ended).
    """

    name: str
    definition: str
    bins: int
    labels: tuple[str, ...]
    unit: str = "households"
    by_route: bool = False


@dataclass(frozen=True)
class Column:
    """A metrics column derived from the counts after the run.

    ``compute(c)`` gets a :class:`povsim.metrics.Counts` (every count by name, months as
    rows) and returns the column's values.  ``kind`` is ``"ratio"`` (a share, shown in
    percent), ``"index"`` (a number such as the CGH index), ``"count"``, ``"months"`` or
    ``"cost"`` (yuan; every cost column adds to ``cost_total``).  ``label`` is how figures name it (with its unit).
    """

    name: str
    definition: str
    compute: Callable[[Any], Any]
    unit: str = "share"
    kind: str = "ratio"
    label: str | None = None


@dataclass(frozen=True)
class Route:
    """A way onto the register: its code (stored in ``route`` and ``pending_route``), name, label, colour."""

    code: int
    name: str
    label: str
    colour: str
    channel: bool = False  #: a continuous discovery channel (flags households for verification)


@dataclass(frozen=True)
class Component:
    """One submodel, declared once (see the module docstring)."""

    name: str  #: the field of the kernel parameters (``p.<name>``) and the component's name
    doc: str  #: what it models, one sentence
    path: str | None = None  #: the config path of its section, e.g. ``"policy.channels.cadre"``
    section: type | None = None  #: its config section (a :class:`povsim.schema.Section`)
    params: Callable[[Any], tuple] | None = None  #: the kernel parameters from the whole validated config
    state: tuple[State, ...] = ()
    village_state: tuple[State, ...] = ()
    draws: tuple[Draw, ...] = ()
    streams: dict[str, int] = field(default_factory=dict)  #: the streams it owns: name -> number
    metrics: tuple[Count | Bins | Column, ...] = ()
    route: Route | None = None
    months: tuple[str, ...] = ()  #: keys of its section that are months inside the simulated period when enabled
    windows: tuple[tuple[str, str], ...] = ()  #: (first, last) pairs of its month keys: last is not before first
    start: str | None = None  #: the key of its first month (a channel's ``start``): the timeline lists it
    events: Callable[[Any, int], list[tuple[str, int, int]]] | None = None  #: (name, first, last) of its policy events
    setup: Callable[[Any], None] | None = None  #: per run, before the first month: fills its village state
    check: Callable[[Any], list[str]] | None = None  #: the whole config's problems with this component, one line each
    toggle: tuple[str, str] | None = None  #: (keyword, label) of its on/off switch on the interactive page

    def section_of(self, cfg) -> Any:
        """This component's section of a whole config."""
        node = cfg
        for part in (self.path or "").split("."):
            node = getattr(node, part)
        return node


# --------------------------------------------------------------------------------------
# Compiled helpers shared by the components' kernels
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def is_active(start, month):
    """Whether a rule that starts in ``start`` (NO_MONTH if disabled) runs in ``month``."""
    return start != NO_MONTH and month >= start


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def to_stored(month):
    """A month index as stored in int16 month fields."""
    return np.int16(month - MONTH_ORIGIN)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def months_since(stored, month):
    """Months from a stored month to ``month``; a very large number if ``stored`` is NEVER."""
    if stored == NEVER:
        return 1 << 30
    return month - MONTH_ORIGIN - np.int64(stored)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def store_yuan(value):
    """A per-capita monthly amount as int16 yuan: rounded half up, clipped to the int16 range."""
    r = math.floor(value + 0.5)
    if r > 32767.0:
        return np.int16(32767)
    if r < -32768.0:
        return np.int16(-32768)
    return np.int16(r)


@nb.njit(cache=True, no_cfunc_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def add_binned(acc, base, bins, value):
    """Add one to bin ``min(max(value, 0), bins - 1)`` of the binned count starting at ``acc[base]``."""
    acc[base + min(max(value, 0), bins - 1)] += 1


def month_or_never(enabled: bool, text: str) -> int:
    """A config month as a month index, or NO_MONTH when its rule is disabled."""
    return parse_month(text) if enabled else NO_MONTH
