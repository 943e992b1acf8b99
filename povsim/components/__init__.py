"""The model's components, one module per submodel, and everything derived from their declarations.

:data:`MODULES` is the registry: the component modules in order.  Each declares one
:class:`~povsim.components.base.Component` (its config section, kernel parameters,
state, draws, counts, columns, route, months and events) around hand-written Numba
kernels; the order of events that calls those kernels is in
:mod:`povsim.components.schedule`.  From the declarations this module derives what
would otherwise be kept by hand in many places:

* :data:`COMPONENTS`, and the config sections with their paths (:data:`SECTIONS`),
  from which :mod:`povsim.config` assembles the config tree;
* the households' and villages' state (:class:`Households`, :class:`Villages`,
  :func:`allocate`, :func:`allocate_villages`, :data:`HOUSEHOLD_STATE`);
* the routes onto the register (:data:`ROUTES`, :data:`ROUTE_NAMES`,
  :data:`N_ROUTES`, :data:`CHANNELS`), with their labels and colours;
* the layout of the month's integer totals (:data:`SLOTS`, :data:`N_SLOTS`, the
  named tuple :data:`SLOT` the kernels index with) and the metrics columns with their
  definitions, units and kinds (:data:`COLUMNS`);
* the table of every draw (:data:`DRAWS`) and the streams (:data:`STREAMS`);
* the kernel parameters (:class:`Params`, :func:`make_params`) and the policy
  events (:func:`events`, :func:`channel_starts`).

A component is added by writing its module, adding its name to :data:`MODULES`, and
calling its hooks from :func:`povsim.components.schedule.village_month` (and listing
them in :data:`~povsim.components.schedule.SCHEDULE`): see ``docs/extending.md``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .base import NO_MONTH, Bins, Column, Component, Count, Draw, Route, State

__all__ = [
    "MODULES", "COMPONENTS", "SECTIONS", "HOUSEHOLD_STATE", "VILLAGE_STATE", "Households", "Villages", "allocate",
    "allocate_villages", "ROUTES", "ROUTE_NAMES", "N_ROUTES", "CHANNELS", "TOGGLES", "SLOTS", "N_SLOTS", "SLOT", "COLUMNS",
    "ColumnInfo", "BINS", "DRAWS", "STREAMS", "Params", "TimeParams", "make_params", "rule_starts", "events",
    "channel_starts",
    "component",
]

#: The registry: the component modules, in the order their columns appear in the metrics
#: table and their costs add up.  (The order of events is not this order: it is the schedule.)
MODULES = (
    "income", "illness", "job_loss", "poverty", "census", "assessment", "registration", "lookback", "review", "cost",
    "self_declaration", "cadre", "verification", "data", "hotline", "support",
    "monitoring",
)

_modules = [importlib.import_module(f"{__name__}.{name}") for name in MODULES]
COMPONENTS: tuple[Component, ...] = tuple(m.COMPONENT for m in _modules)
_BY_NAME = {c.name: c for c in COMPONENTS}


def component(name: str) -> Component:
    """The component called ``name`` (its field of the kernel parameters, e.g. ``"cadre"``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no component {name!r}; allowed: {', '.join(_BY_NAME)}") from None


#: config path -> section class, for every component with a section, in registry order
SECTIONS: dict[str, type] = {c.path: c.section for c in COMPONENTS if c.section is not None}

# --------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------

#: the state every household has whatever the components (drawn when the population is built)
CORE_STATE = (
    State("size", "uint8", "members"),
    State("workers", "uint8", "members of working capacity"),
    State("flags", "uint8", "registered, poor, connected, covered (``FLAG_*`` bits)"),
)

#: every array of household state, with the component that declares it
HOUSEHOLD_STATE: tuple[tuple[str, State], ...] = tuple(("population", s) for s in CORE_STATE) + tuple(
    (c.name, s) for c in COMPONENTS for s in c.state
)

#: the villages' structure, whatever the components
CORE_VILLAGE_STATE = (
    State("start", "int64", "first household of each village (one more entry: the end of the last)"),
    State("county", "int32", "county of each village"),
    State("id", "int64", "the village's id in draws: the global id of its first household (unique, the same in every "
          "block of a split population)"),
)

#: every array of village state, with the component that declares it
VILLAGE_STATE: tuple[tuple[str, State], ...] = tuple(("population", s) for s in CORE_VILLAGE_STATE) + tuple(
    (c.name, s) for c in COMPONENTS for s in c.village_state
)


def _unique(kind: str, names) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two components declare the {kind} {name!r}")
        seen.add(name)


_unique("household state", (s.name for _, s in HOUSEHOLD_STATE))
_unique("village state", (s.name for _, s in VILLAGE_STATE))

#: The state of every household: one array per variable (a struct of arrays).
Households = NamedTuple("Households", [(s.name, np.ndarray) for _, s in HOUSEHOLD_STATE])
#: The state of every village: one array per variable.
Villages = NamedTuple("Villages", [(s.name, np.ndarray) for _, s in VILLAGE_STATE])


def allocate(n: int) -> Households:
    """Preallocated state for ``n`` households, each array at its declared fill value."""
    return Households(*(np.full((n, *s.shape), s.fill, s.dtype) for _, s in HOUSEHOLD_STATE))


def allocate_villages(start: np.ndarray, county: np.ndarray, ids: np.ndarray) -> Villages:
    """Village state for villages with these starts, counties and ids; the components' arrays at their fill."""
    n = county.shape[0]
    rest = [np.full(n, s.fill, s.dtype) for _, s in VILLAGE_STATE[len(CORE_VILLAGE_STATE):]]
    return Villages(
        np.ascontiguousarray(start, np.int64), np.ascontiguousarray(county, np.int32), np.ascontiguousarray(ids, np.int64),
        *rest,
    )


# --------------------------------------------------------------------------------------
# Routes onto the register
# --------------------------------------------------------------------------------------

_routes = sorted((c.route for c in COMPONENTS if c.route is not None), key=lambda r: r.code)
if [r.code for r in _routes] != list(range(1, len(_routes) + 1)):
    raise ValueError(f"route codes must be 1, 2, ... without gaps; declared: {[(r.code, r.name) for r in _routes]}")
#: every route, in code order (code 0 means none)
ROUTES: tuple[Route, ...] = tuple(_routes)
ROUTE_NAMES: tuple[str, ...] = ("none",) + tuple(r.name for r in ROUTES)
N_ROUTES = len(ROUTE_NAMES)
#: the continuous discovery channels, in code order
CHANNELS: tuple[str, ...] = tuple(r.name for r in ROUTES if r.channel)
ROUTE_CODE = {name: code for code, name in enumerate(ROUTE_NAMES)}
ROUTE_LABELS = {r.name: r.label for r in ROUTES}
ROUTE_COLOURS = {r.name: r.colour for r in ROUTES}

#: the interactive page's on/off switches: keyword -> (config path of the section, label)
TOGGLES: dict[str, tuple[str, str]] = {c.toggle[0]: (c.path, c.toggle[1]) for c in COMPONENTS if c.toggle}

# --------------------------------------------------------------------------------------
# Counts, binned counts and columns
# --------------------------------------------------------------------------------------


def _slots_of(item) -> int:
    if isinstance(item, Bins):
        return item.bins * (N_ROUTES if item.by_route else 1)
    return N_ROUTES if item.by_route else 1


#: count name -> its first slot in the month's totals (a count by route: + route code)
SLOTS: dict[str, int] = {}
#: binned counts by name
BINS: dict[str, Bins] = {}
_COUNTS: dict[str, Count] = {}
_next = 0
for _c in COMPONENTS:
    for _item in _c.metrics:
        if isinstance(_item, (Count, Bins)):
            if _item.name in SLOTS:
                raise ValueError(f"two components declare the count {_item.name!r}")
            SLOTS[_item.name] = _next
            _next += _slots_of(_item)
            if isinstance(_item, Bins):
                BINS[_item.name] = _item
            else:
                _COUNTS[_item.name] = _item
N_SLOTS = _next

#: The slots as a named tuple: the kernels add to ``acc[p.slot.<count>]``.
Slots = NamedTuple("Slots", [(name, int) for name in SLOTS])
SLOT = Slots(**SLOTS)


@dataclass(frozen=True)
class ColumnInfo:
    """What a metrics column is: its definition, unit, kind and figure label, and who declares it."""

    name: str
    definition: str
    unit: str
    kind: str  #: "count", "ratio", "index", "months", "cost", "yuan" or "time"
    label: str
    component: str
    count: str | None = None  #: the count it reads (count columns)
    route: str | None = None  #: the route it is about (columns by route)
    compute: Any = None  #: derived columns: compute(counts) or compute(counts, route)


def _route_names(which: str) -> tuple[str, ...]:
    return CHANNELS if which == "channels" else tuple(r.name for r in ROUTES)


def _columns() -> dict[str, ColumnInfo]:
    cols = {
        "month": ColumnInfo("month", "first day of the month", "date", "time", "Month", "timeline"),
        "year": ColumnInfo("year", "calendar year", "year", "time", "Year", "timeline"),
    }

    def add(info: ColumnInfo) -> None:
        if info.name in cols:
            raise ValueError(f"two components declare the column {info.name!r}")
        cols[info.name] = info

    for c in COMPONENTS:
        for item in c.metrics:
            if isinstance(item, Count) and item.column is not None:
                if item.by_route:
                    for route in _route_names(item.routes):
                        name = item.column.format(route=route)
                        add(ColumnInfo(name, item.definition.format(route=route), item.unit, "count", name, c.name,
                                       count=item.name, route=route))
                else:
                    name = item.name if item.column == "same" else item.column
                    add(ColumnInfo(name, item.definition, item.unit, "count", name, c.name, count=item.name))
            elif isinstance(item, Column):
                if "{route}" in item.name:
                    for route in CHANNELS:
                        name = item.name.format(route=route)
                        add(ColumnInfo(name, item.definition.format(route=route), item.unit, item.kind,
                                       item.label or name, c.name, route=route, compute=item.compute))
                else:
                    add(ColumnInfo(item.name, item.definition, item.unit, item.kind, item.label or item.name, c.name,
                                   compute=item.compute))
    add(ColumnInfo("cost_total", "sum of the cost columns, yuan", "yuan", "yuan", "Total cost, yuan", "cost",
                   compute="cost_total"))
    return cols


#: Every metrics column, in the order of ``result.metrics``, with what it is.
COLUMNS: dict[str, ColumnInfo] = _columns()

# --------------------------------------------------------------------------------------
# Draws
# --------------------------------------------------------------------------------------

#: streams that no component owns: drawn when the population is built, and by validation surveys
CORE_STREAMS = {"population": 1, "county": 2, "sample": 10}
CORE_DRAWS = (
    Draw(1, 0, "household", 3, "0", "household size (word 0); the income level's and persistent component's normals (words 1-2)"),
    Draw(1, 1, "household", 4, "0", "whether members 1-4 are of working capacity"),
    Draw(1, 2, "household", 4, "0", "whether members 5-8 are of working capacity"),
    Draw(1, 3, "household", 3, "0", "connected to the cadres (word 0), informal work (word 1), covered by the data (word 2)"),
    Draw(2, 0, "county", 2, "0", "the county's income effect (a normal; counties 2k and 2k+1 share a draw, antithetic)"),
    Draw(2, 1, "province", 2, "0", "the province's income effect (a normal; provinces 2k and 2k+1 share a draw, antithetic)"),
)


def _streams() -> dict[str, int]:
    streams = dict(CORE_STREAMS)
    for c in COMPONENTS:
        for name, number in c.streams.items():
            if streams.get(name, number) != number:
                raise ValueError(f"stream {name!r} is declared as {streams[name]} and as {number}")
            streams[name] = number
    numbers = sorted(streams.values())
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two streams share a number: {streams}")
    return streams


#: stream name -> number (numbers never change meaning: a new kind of draw gets a new number)
STREAMS: dict[str, int] = _streams()

#: every draw of the model: (component, Draw)
DRAWS: tuple[tuple[str, Draw], ...] = tuple(("population", d) for d in CORE_DRAWS) + tuple(
    (c.name, d) for c in COMPONENTS for d in c.draws
)

# --------------------------------------------------------------------------------------
# Kernel parameters
# --------------------------------------------------------------------------------------


class TimeParams(NamedTuple):
    """The calendar of a run, as month indices."""

    record_start: int  #: first month with 12 months of income history (a December): the first poverty assessment
    report_start: int  #: first reported month: the metrics of earlier (burn-in) months are not counted
    quiet_until: int  #: first month that is reported or in which a rule runs: phases 3 and 4 wait for it


_WITH_PARAMS = tuple(c for c in COMPONENTS if c.params is not None)
#: Everything the kernels need: ``p.time``, ``p.slot`` and one named tuple per component (``p.cadre``).
Params = NamedTuple(
    "Params",
    [("time", TimeParams), ("slot", Slots)] + [(c.name, Any) for c in _WITH_PARAMS],
)


def make_params(cfg) -> Params:
    """The kernel parameters from a validated config."""
    from ..schema import first_month, parse_month

    report_start = parse_month(cfg.simulation.start)
    first = first_month(report_start, cfg.simulation.burn_in_years)
    parts = {c.name: c.params(cfg) for c in _WITH_PARAMS}
    starts = [m for m in _rule_months(parts) if m != NO_MONTH]
    time = TimeParams(record_start=first + 11, report_start=report_start, quiet_until=min([report_start] + starts))
    return Params(time=time, slot=SLOT, **parts)


def _rule_months(parts: dict[str, tuple]) -> list[int]:
    """Every month a rule starts in (the month fields of the components' parameters named in ``months``)."""
    out = []
    for c in _WITH_PARAMS:
        for key in c.months:
            if key in parts[c.name]._fields:
                out.append(getattr(parts[c.name], key))
    return out


def rule_starts(p: Params) -> dict[str, int]:
    """Each rule's first month in the kernel parameters ``p`` (NO_MONTH: the rule is off), by component name."""
    return {c.name: getattr(getattr(p, c.name), c.months[0]) for c in _WITH_PARAMS if c.months}


def events(cfg, end: int) -> list[tuple[str, int, int]]:
    """Every enabled component's policy events: (name, first month, last month), in time order."""
    out = []
    for c in COMPONENTS:
        if c.events is None:
            continue
        section = c.section_of(cfg)
        if getattr(section, "enabled", True):
            out.extend(c.events(section, end))
    out.sort(key=lambda e: (e[1], e[0]))
    return out


def channel_starts(cfg) -> dict[str, int]:
    """Each enabled discovery channel's first month."""
    from ..schema import parse_month

    out = {}
    for c in COMPONENTS:
        if c.start is not None:
            section = c.section_of(cfg)
            if section.enabled:
                out[c.route.name if c.route else c.name] = parse_month(getattr(section, c.start))
    return out
