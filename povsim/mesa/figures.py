"""What the interactive page draws, as plain matplotlib Figures (no Solara needed).

* :func:`county_grid` / :func:`draw_county`: the villages of one county as a grid of
  households, each coloured by its status (poor and registered, poor and missed,
  registered but not poor, neither), with a legend of the counts;
* :func:`status_line`: one line of text: the month and the counts;
* :func:`draw_errors`: exclusion and inclusion error by month, and entries onto the
  register by route, from the model's DataCollector.

The status of each household is read from its agent (:attr:`Household.status`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import metrics as M
from .model import STATUS, PovertyModel

__all__ = ["COLOURS", "LABELS", "county_grid", "draw_county", "draw_errors", "status_counts", "status_line"]

#: colour of each status (colour-blind safe: Dark2)
COLOURS = {
    STATUS[0]: "#1b9e77",  # poor, registered: found
    STATUS[1]: "#d95f02",  # poor, missed: exclusion error
    STATUS[2]: "#7570b3",  # registered, not poor: inclusion error
    STATUS[3]: "#dedede",  # neither
}
#: legend label of each status
LABELS = {
    STATUS[0]: "poor, registered",
    STATUS[1]: "poor, missed (exclusion error)",
    STATUS[2]: "registered, not poor (inclusion error)",
    STATUS[3]: "neither",
}
EMPTY = -1  #: a grid cell with no household
GAP_COLS, GAP_ROWS = 1, 2  #: cells between villages side by side, and above each village (for its label)


def _rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.lstrip("#")
    return tuple(int(colour[k : k + 2], 16) / 255 for k in (0, 2, 4))


def status_counts(model: PovertyModel, county: int | None = None) -> dict[str, int]:
    """How many households have each status (in one county, or in the whole model)."""
    agents = model.agents if county is None else [a for v in _county_villages(model, county) for a in model.villages[v]]
    counts = dict.fromkeys(STATUS, 0)
    for a in agents:
        counts[a.status] += 1
    return counts


def _county_villages(model: PovertyModel, county: int) -> list[int]:
    pop = model.population
    if not 0 <= county < pop.n_counties:
        raise ValueError(f"county {county} does not exist; allowed: 0 to {pop.n_counties - 1}")
    return [int(v) for v in np.flatnonzero(pop.village_county == county)]


def county_grid(model: PovertyModel, county: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The county's households as a grid of status codes (index into :data:`STATUS`; -1: no household).

    Each village is a block of households (row by row, in household order); blocks are
    laid out row by row, one cell apart, with two rows above each block for its label.  Returns the grid and, for each village,
    ``(village, top row, left column)`` of its block.
    """
    villages = _county_villages(model, county)
    starts = model.population.village_start
    largest = max(int(starts[v + 1] - starts[v]) for v in villages)
    # a village block a little wider than tall, with as few empty cells as possible (120: 12 x 10)
    low, high = math.ceil(math.sqrt(largest)), max(1, math.ceil(math.sqrt(2 * largest)))
    cols = min(range(low, high + 1), key=lambda c: (-largest % c, -c))
    rows = math.ceil(largest / cols)
    per_row = max(1, math.ceil(math.sqrt(len(villages) * 1.6 * rows / cols)))  # the whole grid wider than tall
    block_rows = math.ceil(len(villages) / per_row)
    grid = np.full((block_rows * (rows + GAP_ROWS), per_row * (cols + GAP_COLS) - GAP_COLS), EMPTY, np.int8)
    code = {s: k for k, s in enumerate(STATUS)}
    places = []
    for k, v in enumerate(villages):
        top, left = (k // per_row) * (rows + GAP_ROWS) + GAP_ROWS, (k % per_row) * (cols + GAP_COLS)
        places.append((v, top, left))
        first = int(starts[v])
        for agent in model.villages[v]:
            j = agent.index - first
            grid[top + j // cols, left + j % cols] = code[agent.status]
    return grid, places


def _month_label(model: PovertyModel) -> str:
    done = model.month - 1  # the last simulated month
    if done < model.timeline.first:
        return "before the burn-in"
    if done < model.timeline.start:
        return f"end of {model.timeline.label(done)} (burn-in)"
    return f"end of {model.timeline.label(done)}"


def status_line(model: PovertyModel) -> str:
    """The month and the counts, in one line."""
    counts = status_counts(model)
    poor = counts[STATUS[0]] + counts[STATUS[1]]
    registered = counts[STATUS[0]] + counts[STATUS[2]]
    exclusion = f"{100 * counts[STATUS[1]] / poor:.1f}%" if poor else "-"
    inclusion = f"{100 * counts[STATUS[2]] / registered:.1f}%" if registered else "-"
    return (
        f"{_month_label(model)}: {len(model.agents):,} households; poor {poor:,} "
        f"({counts[STATUS[0]]:,} registered, {counts[STATUS[1]]:,} missed); registered {registered:,} "
        f"({counts[STATUS[2]]:,} not poor); exclusion error {exclusion}, inclusion error {inclusion}"
    )


def draw_county(model: PovertyModel, county: int = 0) -> Figure:
    """The county's villages as a grid of households coloured by status, with a legend."""
    grid, places = county_grid(model, county)
    image = np.ones(grid.shape + (3,))
    for k, status in enumerate(STATUS):
        image[grid == k] = _rgb(COLOURS[status])
    counts = status_counts(model, county)
    height = 1.2 + 4.8 * grid.shape[0] / grid.shape[1]
    fig = Figure(figsize=(10, height * 1.2), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="nearest", aspect="equal")
    for v, top, left in places:
        ax.text(left - 0.5, top - 0.7, f"village {v + 1}", fontsize=8, va="bottom", ha="left")
    ax.set_axis_off()
    n_counties = model.population.n_counties
    where = f"county {county + 1} of {n_counties}" if n_counties > 1 else "the county"
    ax.set_title(
        f"{where}: {sum(counts.values()):,} households in {len(places)} villages, {_month_label(model)}", fontsize=13
    )
    handles = [Patch(facecolor=COLOURS[s], edgecolor="none", label=f"{LABELS[s]}: {counts[s]:,}") for s in STATUS]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=12, frameon=False)
    return fig


def draw_errors(model: PovertyModel) -> Figure:
    """Exclusion and inclusion error by month (top) and entries onto the register by route (bottom)."""
    frame = model.datacollector.get_model_vars_dataframe()
    timeline = model.timeline
    fig = Figure(figsize=(9, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    first = pd.Timestamp(timeline.label(timeline.start))
    last = pd.Timestamp(timeline.label(timeline.end)) + pd.offsets.MonthEnd(0)
    if len(frame):
        months = pd.to_datetime(frame["month"])
        top.plot(months, 100 * frame["exclusion_error"], color=COLOURS[STATUS[1]], label="exclusion error (poor, missed / poor)")
        top.plot(
            months, 100 * frame["inclusion_error"], color=COLOURS[STATUS[2]],
            label="inclusion error (registered, not poor / registered)",
        )
        routes = [r for r in M.ROUTES if frame[f"entered_{r}"].sum() > 0]
        for route in routes:
            bottom.plot(months, frame[f"entered_{route}"].cumsum(), label=route, drawstyle="steps-post")
        if routes:
            bottom.legend(fontsize=10, ncols=4, loc="upper left", frameon=False)
        top.legend(fontsize=10, loc="upper right", frameon=False)
    else:
        top.text(0.5, 0.5, "no month reported yet: press Step", transform=top.transAxes, ha="center", color="grey")
    marks: dict[int, list[str]] = {}
    for name, start, _ in timeline.events:
        marks.setdefault(start, []).append(name.split(" ")[0])
    for name, start in timeline.channels.items():
        marks.setdefault(start, []).append(name)
    labelled: set[str] = set()
    for start, names in sorted(marks.items()):
        if timeline.start <= start <= timeline.end:
            x = pd.Timestamp(timeline.label(start))
            for ax in (top, bottom):
                ax.axvline(x, color="grey", lw=0.6, ls=":")
            new = [n for n in names if n not in labelled]  # each kind of event named once, where it first happens
            labelled.update(new)
            if new:
                top.text(x, 106, ", ".join(new), rotation=90, fontsize=9, va="bottom", ha="center", color="grey")
    top.set_ylim(0, 105)  # an error of 100% (before any registration) stays visible
    top.set_xlim(first, last)
    top.set_ylabel("% of households", fontsize=11)
    top.set_title("Targeting errors by month", fontsize=13, pad=100)
    bottom.set_ylabel("entries since 2013", fontsize=11)
    bottom.set_xlabel("month", fontsize=11)
    for ax in (top, bottom):
        ax.tick_params(labelsize=10)
    return fig
