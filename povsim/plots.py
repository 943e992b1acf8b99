"""Figures a policy analyst can paste into a report: labelled axes, units, sources.

This module owns every figure povsim draws.  Functions take tables (pandas
DataFrames from :mod:`povsim.metrics`) and return matplotlib Figures; they
never show or save on their own.  Figures are made with matplotlib's
object-oriented API (``matplotlib.figure.Figure``), so no GUI backend or
global pyplot state is touched: they save headless and display in notebooks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import components as _components

__all__ = [
    "plot_errors",
    "plot_scenarios",
    "policy_events",
    "scenario_styles",
    "metric_title",
    "plot_errors_by_rule",
    "plot_channels",
    "plot_headcount_vs_official",
    "plot_cost_vs_exclusion",
    "plot_performance",
    "plot_sweep",
    "plot_targets",
    "plot_target_deviations",
    "ROUTE_LABELS",
]

#: how each route onto the register is named in figures, and its colour (as each component declares them)
ROUTE_LABELS = dict(_components.ROUTE_LABELS)
ROUTE_COLOURS = dict(_components.ROUTE_COLOURS)

#: the figure label of every ratio column, with its unit (as each component declares it)
LABELS = {name: info.label for name, info in _components.COLUMNS.items() if info.kind == "ratio" and info.label != name}


#: what each metric of the experiment figures is, in words (a figure's title), and its axis label
TITLES = {
    "exclusion_error": ("Exclusion error: poor households not on the register",
                        "Exclusion error, % of poor households\n(poor not registered / poor)"),
    "inclusion_error": ("Inclusion error: registered households not poor",
                        "Inclusion error, % of registered households\n(non-poor registered / registered)"),
    "headcount_rate": ("Poverty headcount: share of rural people living in poor households",
                       "Headcount rate, % of people\n(poor people / people)"),
    "registered": ("Households on the register", "Households on the register at the end of the month"),
}

#: the line styles that, with the ten colours of matplotlib's default cycle, tell up to 40 scenarios apart
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")


def metric_title(metric: str) -> str:
    """``metric`` in words, as a figure's title names it."""
    if metric in TITLES:
        return TITLES[metric][0]
    info = _components.COLUMNS.get(metric)
    if info is None:
        return metric.replace("_", " ").capitalize()
    text = info.label.removesuffix(", %") if info.label != metric else info.definition
    return text[:1].upper() + text[1:]


def metric_axis_label(metric: str) -> str:
    """The y axis label of ``metric``: what it counts, with its unit."""
    if metric in TITLES:
        return TITLES[metric][1]
    return LABELS.get(metric, metric_title(metric))


def scenario_styles(n: int) -> list[dict]:
    """``n`` distinct line styles: colour (matplotlib's ten) by line style and marker, the first ten solid."""
    return [
        {"color": f"C{k % 10}", "linestyle": LINE_STYLES[(k // 10) % len(LINE_STYLES)],
         "marker": MARKERS[(k // 10) % len(MARKERS)]}
        for k in range(n)
    ]


def policy_events(configs) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """The policy events of ``configs`` (an iterable of :class:`~povsim.config.Config`), as figures mark them.

    Registration, look-back (its first and last month), first exits, first annual review,
    the start of monitoring and the first month of the continuous channels, over every config, as
    ``(label, first month, last month)`` timestamps in time order (a month event has
    first == last).
    """
    from .config import format_month
    from .timeline import Timeline

    def ts(month: int) -> pd.Timestamp:
        return pd.Timestamp(format_month(month) + "-01")

    found: dict[str, tuple[int, int]] = {}
    for cfg in configs:
        tl = Timeline.from_config(cfg)
        for name, first, last in tl.events:
            kind = name.split()[0]
            if kind in ("review", "exits", "monitoring"):
                label = {"review": "annual reviews", "exits": "first exits", "monitoring": "monitoring"}[kind]
                first = last = min(first, found.get(label, (first, first))[0])
                found[label] = (first, last)
            elif kind in ("registration", "lookback"):
                found[{"registration": "registration", "lookback": "look-back"}[kind]] = (first, last)
        if tl.channels:
            start = min(tl.channels.values())
            found["channels"] = (min(start, found.get("channels", (start, start))[0]),) * 2
    return [(label, ts(a), ts(b)) for label, (a, b) in sorted(found.items(), key=lambda kv: kv[1])]


def _draw_events(axes, events, label_ax=None) -> None:
    """Mark ``events`` (see :func:`policy_events`) in each of ``axes``: a span or a dotted line, labelled in ``label_ax``."""
    for ax in axes:
        for _label, first, last in events or []:
            if last > first:
                ax.axvspan(first, last, color="grey", alpha=0.15, linewidth=0)
            else:
                ax.axvline(first, color="grey", linestyle=":", linewidth=1)
    if label_ax is not None:
        for label, first, _last in events or []:
            label_ax.annotate(label, xy=(first, 0.0), xycoords=("data", "axes fraction"), xytext=(2, 3),
                              textcoords="offset points", fontsize=7, color="dimgrey", va="bottom", rotation=90)


def _fit_limits(ax, values, percent: bool) -> None:
    """Scale ``ax``'s y axis to ``values`` (all drawn data, bands included), with a margin; percent within 0-100."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        if percent:
            ax.set_ylim(0, 100)
        return
    low, high = float(values.min()), float(values.max())
    pad = 0.08 * (high - low) or max(0.05 * abs(high), 0.5 if percent else 1.0)
    low, high = low - pad, high + pad
    if percent:
        low, high = max(low, 0.0), min(high, 100.0)
    elif values.min() >= 0:
        low = max(low, 0.0)
    ax.set_ylim(low, high)


def _wrapped(text: str, fig, fontsize: float) -> str:
    """``text`` wrapped to the width of ``fig`` at ``fontsize`` points."""
    import textwrap

    chars = max(30, int(fig.get_size_inches()[0] * 72 / (fontsize * 0.6)))
    return "\n".join(textwrap.wrap(text, chars))


def _legend_below(fig, handles, names, n: int) -> None:
    ncol = 1 if n <= 1 else min(4, max(2, -(-n // 5)))
    fig.legend(handles, names, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def plot_errors(metrics: pd.DataFrame, title: str = "", events: list | None = None):
    """Exclusion error, inclusion error and headcount rate over time, in percent, the axis scaled to them.

    ``events`` (see :func:`policy_events`) are marked as dotted lines and spans.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.2), layout="constrained")
    ax = fig.subplots()
    x = metrics["month"]
    drawn = []
    for column, label, style in (
        ("exclusion_error", "Exclusion error (poor not registered / poor)", {"color": "C0"}),
        ("inclusion_error", "Inclusion error (non-poor registered / registered)", {"color": "C1"}),
        ("headcount_rate", "Headcount rate (poor people / people)", {"color": "black", "linestyle": "--"}),
    ):
        ax.plot(x, 100 * metrics[column], label=label, **style)
        drawn.append(100 * metrics[column].to_numpy(dtype=float))
    ax.set_xlabel("Month")
    ax.set_ylabel("Percent")
    _fit_limits(ax, np.concatenate(drawn) if drawn else [], percent=True)
    _month_axis(ax)
    _draw_events([ax], events, label_ax=ax)
    handles, names = ax.get_legend_handles_labels()
    _legend_below(fig, handles, names, 2)
    heading = "Targeting errors and the poverty headcount by month"
    ax.set_title(_wrapped(f"{heading} ({title})" if title else heading, fig, 11), fontsize=11)
    return fig


def _t_band(group: pd.DataFrame, metric: str):
    """Per month: mean over replicates, and the t-based 95 % interval of the mean (NaN with one replicate)."""
    import numpy as np
    from scipy.stats import t

    by_month = group.groupby("month", sort=True)[metric]
    mean = by_month.mean()
    n = by_month.count()
    sd = by_month.std(ddof=1)
    q = pd.Series(np.where(n > 1, t.ppf(0.975, np.maximum(n - 1, 1)), np.nan), index=n.index)
    half = q * sd / np.sqrt(n)
    return mean, mean - half, mean + half, int(n.max()) if len(n) else 0


def plot_scenarios(tidy: pd.DataFrame, metric: str, title: str = "", events: list | None = None,
                   labels: dict | None = None):
    """``metric`` over time, one line per scenario (``tidy`` has ``scenario``, ``month`` and the metric).

    With several replicates per scenario (a ``replicate`` column) the line is their
    mean and a shaded band its 95 % interval (t-based), month by month.  Each scenario
    has its own colour and line style (:func:`scenario_styles`), the legend beneath the
    plot; the y axis is scaled to the lines and bands drawn; ``events`` (see
    :func:`policy_events`) are marked; ``labels`` maps scenario names to legend labels.
    """
    from matplotlib.figure import Figure

    if metric not in tidy.columns:
        raise KeyError(f"unknown metric {metric!r}; allowed: {', '.join(c for c in tidy.columns if c != 'scenario')}")
    labels = labels or {}
    percent = metric in LABELS
    scale = 100 if percent else 1
    groups = list(tidy.groupby("scenario", sort=False))
    styles = scenario_styles(len(groups))
    legend_rows = -(-len(groups) // min(4, max(2, -(-len(groups) // 5)))) if len(groups) > 1 else 1
    fig = Figure(figsize=(9, 4.8 + 0.2 * legend_rows), layout="constrained")
    ax = fig.subplots()
    replicates = 1
    drawn = []
    for (name, group), style in zip(groups, styles):
        mean, low, high, n = _t_band(group, metric)
        replicates = max(replicates, n)
        every = max(1, len(mean) // 8)
        ax.plot(mean.index, scale * mean, label=labels.get(name, str(name)), color=style["color"],
                linestyle=style["linestyle"], linewidth=1.5, marker=style["marker"] if len(groups) > 10 else None,
                markevery=every, markersize=4)
        drawn.append(scale * mean.to_numpy(dtype=float))
        if n > 1:
            if percent:  # a share lies within 0-100 %, whatever a t interval of few replicates says
                low, high = low.clip(lower=0.0), high.clip(upper=1.0)
            ax.fill_between(mean.index, scale * low, scale * high, color=style["color"], alpha=0.15, linewidth=0)
            drawn += [scale * low.to_numpy(dtype=float), scale * high.to_numpy(dtype=float)]
    ax.set_xlabel("Month")
    ax.set_ylabel(metric_axis_label(metric))
    _fit_limits(ax, np.concatenate(drawn) if drawn else [], percent=percent)
    _month_axis(ax)
    _draw_events([ax], events, label_ax=ax)
    handles, names = ax.get_legend_handles_labels()
    _legend_below(fig, handles, names, len(groups))
    notes = [title] if title else []
    if replicates > 1:
        notes.append(f"mean of {replicates} replicates, 95% interval shaded")
    heading = metric_title(metric) + (f" ({', '.join(notes)})" if notes else "")
    fig.suptitle(_wrapped(heading, fig, 11), fontsize=11)
    return fig


def plot_sweep(summary: pd.DataFrame, points: pd.DataFrame, metric: str, title: str = ""):
    """A headline ``metric`` against each swept parameter: one panel per parameter, one series per scenario.

    ``summary`` is :meth:`ExperimentResult.summary` of a sweep (index point,
    scenario, metric); points carry 95 % interval bars when there are replicates.
    Each scenario has its own colour and marker; the title is wrapped to the figure.
    """
    from matplotlib.figure import Figure

    from .report import LABELS as HEADLINE_LABELS

    metrics = list(dict.fromkeys(summary.index.get_level_values("metric")))
    if metric not in metrics:
        raise KeyError(f"unknown headline {metric!r}; allowed: {', '.join(metrics)}")
    sub = summary.xs(metric, level="metric")
    keys = list(points.columns)
    numeric = [k for k in keys if pd.api.types.is_numeric_dtype(points[k]) and not pd.api.types.is_bool_dtype(points[k])]
    keys = numeric or keys
    scale = 100 if ("error" in metric or "rate" in metric) else (1e-6 if metric.endswith("_yuan") else 1)
    scenarios = list(dict.fromkeys(sub.index.get_level_values("scenario")))
    styles = scenario_styles(len(scenarios))
    fig = Figure(figsize=(max(6.5, min(4.5 * len(keys), 13)), 4.4 + 0.2 * -(-len(scenarios) // 4)),
                 layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    intervals = False
    for ax, key in zip(axes, keys):
        for k, scenario in enumerate(scenarios):
            rows = sub.xs(scenario, level="scenario").join(points, how="inner")
            x = rows[key]
            if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
                spread = (x.max() - x.min()) or 1.0
                x = x + (k - (len(scenarios) - 1) / 2) * 0.01 * spread  # scenarios side by side
            else:
                x = x.astype(str)
            err = [scale * (rows["mean"] - rows["low"]), scale * (rows["high"] - rows["mean"])]
            intervals = intervals or bool(np.isfinite(rows["low"]).any())
            ax.errorbar(x, scale * rows["mean"], yerr=err, fmt=styles[k]["marker"], color=styles[k]["color"],
                        markersize=4, capsize=2, label=str(scenario), alpha=0.8,
                        markerfacecolor="white" if k >= 10 else styles[k]["color"])
        ax.set_xlabel(key, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(HEADLINE_LABELS.get(metric, metric))
    handles, names = axes[0].get_legend_handles_labels()
    if len(scenarios) > 1:
        fig.legend(handles, names, loc="outside lower center", ncol=min(4, len(scenarios)), fontsize=8, frameon=False)
    words = HEADLINE_LABELS.get(metric, metric)
    notes = ([title] if title else []) + (["95% intervals"] if intervals else [])
    heading = f"{words[:1].upper() + words[1:]} by swept value" + (f" ({', '.join(notes)})" if notes else "")
    fig.suptitle(_wrapped(heading, fig, 10), fontsize=10)
    return fig


def _month_axis(ax) -> None:
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.YearLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.grid(alpha=0.3)


def plot_errors_by_rule(tidy: pd.DataFrame, labels: dict | None = None, events: list | None = None, title: str = ""):
    """Exclusion and inclusion error over time, one line per identification rule (scenario).

    ``tidy`` is :meth:`povsim.experiments.ExperimentResult.metrics` (a ``scenario`` column,
    ``month`` and the metric columns, and a ``replicate`` column when there are several):
    each scenario's line is the mean over its replicates month by month, with the t-based
    95 % interval of the mean shaded when there is more than one; ``labels`` maps scenario names to legend labels;
    ``events`` is a list of ``(label, first month, last month)`` (timestamps) drawn as
    shaded spans or dotted lines in both panels.  Earlier scenarios are drawn wider, so
    a line hidden under a later one that coincides with it still shows at its edges.
    """
    from matplotlib.figure import Figure

    labels = labels or {}
    fig = Figure(figsize=(9, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    panels = (
        (top, "exclusion_error", "Exclusion error, % of poor households\n(poor not registered / poor)"),
        (bottom, "inclusion_error", "Inclusion error, % of registered\n(non-poor registered / registered)"),
    )
    groups = list(tidy.groupby("scenario", sort=False))
    replicates = 1
    for ax, metric, ylabel in panels:
        for k, (name, group) in enumerate(groups):
            mean, low, high, n = _t_band(group, metric)
            replicates = max(replicates, n)
            width = 1.3 + 0.9 * (len(groups) - 1 - k)
            ax.plot(mean.index, 100 * mean, label=labels.get(name, str(name)), linewidth=width, color=f"C{k}")
            if n > 1:
                ax.fill_between(mean.index, 100 * low, 100 * high, color=f"C{k}", alpha=0.2, linewidth=0)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 100)
        _month_axis(ax)
        _draw_events([ax], events)
    _draw_events([], events, label_ax=bottom)
    bottom.set_xlabel("Month")
    handles, names = top.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    heading = title or "Targeting errors under each identification rule"
    if replicates > 1:
        heading += f" (mean of {replicates} replicates, 95% interval shaded)"
    fig.suptitle(heading)
    return fig


def _cdf_from_histogram(row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    counts = row.to_numpy(dtype=float)
    total = counts.sum()
    return np.arange(len(counts)), (np.cumsum(counts) / total if total else np.full(len(counts), np.nan))


def plot_channels(entries: pd.DataFrame, delays: pd.DataFrame, title: str = "", min_count: int = 5):
    """How each route onto the register contributes, and how fast each finds the newly poor.

    ``entries`` has one row per route (index: route) with columns ``entered`` (all
    entries) and ``poor`` (entries of truly poor households); ``delays`` is
    :meth:`povsim.results.Result.detection_delays` (routes x months since falling poor,
    ``48+`` and ``unknown`` columns).  The right panel draws, for each route with at
    least ``min_count`` poor entrants of known onset, the share found within x months.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.25))
    routes = [r for r in entries.index if entries.loc[r, "entered"] > 0]
    y = np.arange(len(routes))[::-1]
    total = entries.loc[routes, "entered"].to_numpy(dtype=float)
    poor = entries.loc[routes, "poor"].to_numpy(dtype=float)
    colours = [ROUTE_COLOURS.get(r, "grey") for r in routes]
    left.barh(y, total, color=colours, alpha=0.35, label="all entries")
    left.barh(y, poor, color=colours, label="of them, truly poor at entry")
    for yi, t, p in zip(y, total, poor):
        left.annotate(f"{t:,.0f} ({100 * p / t:.0f}% poor)", xy=(t, yi), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=7)
    left.set_yticks(y, [ROUTE_LABELS.get(r, r) for r in routes])
    left.set_xscale("log")
    left.set_xlim(right=max(total.max(), 1) * 30 if len(total) else 10)
    left.set_xlabel("Households entering the register (log scale)")
    left.set_title("Entries onto the register by route", fontsize=10)
    left.legend(loc="lower right", fontsize=7, frameon=False)
    left.grid(axis="x", alpha=0.3)

    hist = delays.drop(columns="unknown", errors="ignore")
    drawn = 0
    for route in hist.index:
        row = hist.loc[route]
        n = int(row.sum())
        if n < min_count:
            continue
        x, cdf = _cdf_from_histogram(row)
        median = int(np.searchsorted(cdf, 0.5))
        median_text = f"{median}" if median < len(x) - 1 else f"{len(x) - 1}+"
        right.step(x, 100 * cdf, where="post", color=ROUTE_COLOURS.get(route, "grey"), linewidth=1.6,
                   label=f"{ROUTE_LABELS.get(route, route)}: median {median_text} months, n = {n:,}")
        drawn += 1
    right.set_xlim(0, hist.shape[1] - 0.5)  # the last bin (48+) shows as the step at 48
    right.set_ylim(0, 100)
    right.set_xlabel(f"Months from falling poor to registration ({hist.shape[1] - 1} = {hist.columns[-1]} months)")
    right.set_ylabel("Poor entrants found within x months, %")
    right.set_title("Detection delay by route (poor entrants of known onset)", fontsize=10)
    right.grid(alpha=0.3)
    if drawn:
        right.legend(loc="lower right", fontsize=7, frameon=True, framealpha=0.9)
    else:
        right.text(0.5, 0.5, f"no route registered {min_count} or more poor households of known onset",
                   transform=right.transAxes, ha="center", fontsize=8)
    fig.suptitle(title or "Contribution of each channel and its detection delay")
    return fig


def plot_headcount_vs_official(metrics: pd.DataFrame, official: pd.DataFrame, title: str = ""):
    """Model headcount rate against the official poverty incidence at each year end.

    ``metrics`` is a run's monthly table; ``official`` has columns ``year``,
    ``incidence`` (a share) and ``derived`` (True where the official figure is derived
    from adjacent years, drawn hollow).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    months = metrics["month"]
    ax.plot(months, 100 * metrics["headcount_rate"], color="tab:blue", alpha=0.35, linewidth=1,
            label="Model, monthly")
    december = metrics[metrics["month"].dt.month == 12]
    ax.plot(december["month"], 100 * december["headcount_rate"], "o-", color="tab:blue",
            label="Model, December (year end)")
    end = pd.to_datetime([f"{int(y)}-12-01" for y in official["year"]])
    derived = official["derived"].to_numpy(bool)
    values = 100 * official["incidence"].to_numpy(float)
    ax.plot(end, values, "-", color="black", linewidth=1)
    ax.plot(end[~derived], values[~derived], "s", color="black", label="Official (NBS), year end")
    if derived.any():
        ax.plot(end[derived], values[derived], "s", markerfacecolor="white", color="black",
                label="Official, derived from adjacent years")
    ax.set_ylabel("Headcount rate, % of rural people below the line")
    ax.set_xlabel("Year")
    ax.set_ylim(bottom=0)
    _month_axis(ax)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "Model against the official poverty headcount")
    return fig


def _place_labels(ax, xs, ys, texts, fontsize: float = 6.0) -> None:
    """Label points without overlaps where possible: each label takes the first free spot around its point."""
    fig = ax.figure
    fig.canvas.draw()  # settle the layout so data -> pixel positions are final
    to_px = ax.transData.transform
    scale = fig.dpi / 72.0
    char_w, height = 0.55 * fontsize * scale, 1.2 * fontsize * scale
    points = [tuple(to_px((x, y))) for x, y in zip(xs, ys)]
    taken = [(px - 3 * scale, py - 3 * scale, px + 3 * scale, py + 3 * scale) for px, py in points]
    offsets = [(4, 1), (4, -9), (-4, 1), (-4, -9), (4, 8), (4, -16), (-4, 8), (-4, -16), (4, 15), (4, -23)]
    for (px, py), text in zip(points, texts):
        width = char_w * len(text)
        best = None
        for dx, dy in offsets:
            x0 = px + dx * scale if dx > 0 else px + dx * scale - width
            box = (x0, py + dy * scale, x0 + width, py + dy * scale + height)
            clash = any(not (box[2] < t[0] or box[0] > t[2] or box[3] < t[1] or box[1] > t[3]) for t in taken)
            if not clash:
                best = (dx, dy, box)
                break
        if best is None:
            dx, dy = offsets[0]
            x0 = px + dx * scale
            best = (dx, dy, (x0, py + dy * scale, x0 + width, py + dy * scale + height))
        dx, dy, box = best
        taken.append(box)
        ax.annotate(text, xy=ax.transData.inverted().transform((px, py)), xytext=(dx, dy), textcoords="offset points",
                    fontsize=fontsize, ha="left" if dx > 0 else "right", va="bottom", color="#222222")


def plot_cost_vs_exclusion(points: pd.DataFrame, title: str = ""):
    """Cost against exclusion error, one point per scenario, labelled.

    ``points`` has columns ``group`` (the experiment: one colour and marker per group),
    ``label``, ``identification_cost`` and ``total_cost`` (yuan per household per year),
    ``exclusion_error`` (a share) and optionally ``hollow`` (drawn as an open marker and
    not labelled: a variant lying beside its labelled twin, such as the same channels
    with the hotline added) and ``hollow_meaning`` (the legend's words for open markers).
    Left: the cost of finding households (assessments, cadre visits, verifications,
    data); right: that plus the transfers paid.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = points.copy()
    if "hollow" not in points:
        points["hollow"] = False
    fig = Figure(figsize=(12, 6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    markers = ["o", "s", "^", "D", "v"]
    handles = []
    for ax, column, xlabel in (
        (axes[0], "identification_cost", "Identification cost, yuan per household per year"),
        (axes[1], "total_cost", "Total cost incl. transfers, yuan per household per year"),
    ):
        handles = []
        for k, (group, rows) in enumerate(points.groupby("group", sort=False)):
            colour, marker = f"C{k}", markers[k % len(markers)]
            filled = rows[~rows["hollow"]]
            hollow = rows[rows["hollow"]]
            # open markers larger and beneath, so a variant that coincides with its twin shows as a ring
            ax.scatter(hollow[column], 100 * hollow["exclusion_error"], marker=marker, s=80, facecolors="white",
                       edgecolors=colour, zorder=3)
            ax.scatter(filled[column], 100 * filled["exclusion_error"], marker=marker, s=30, color=colour, zorder=4)
            handles.append(Line2D([], [], linestyle="", marker=marker, color=colour, label=str(group)))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    if points["hollow"].any():
        meaning = points.get("hollow_meaning", pd.Series(["variant"])).dropna()
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="white", color="black",
                              label=f"open marker: {meaning.iloc[0] if len(meaning) else 'variant'}"))
    axes[0].set_ylabel("Exclusion error, % of poor households\n(mean over months with a register)")
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title or "Cost against exclusion error, by rule and channel setting")
    labelled = points[~points["hollow"]]
    for ax, column in ((axes[0], "identification_cost"), (axes[1], "total_cost")):
        _place_labels(ax, labelled[column].to_numpy(), 100 * labelled["exclusion_error"].to_numpy(),
                      list(labelled["label"]))
    return fig


def plot_performance(bench: pd.DataFrame, title: str = "", note: str = ""):
    """Speed and memory against population size, one line per implementation.

    ``bench`` has columns ``implementation``, ``households``, ``hh_months_per_s`` and
    ``bytes_per_household``.  ``note`` is printed in the speed panel (e.g. why a line
    is missing).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    speed, memory = fig.subplots(1, 2)
    styles = {"engine": ("tab:blue", "o"), "numpy": ("tab:green", "s"), "mesa": ("tab:red", "^")}
    for name, rows in bench.groupby("implementation", sort=False):
        rows = rows.sort_values("households")
        colour, marker = styles.get(str(name).split()[0].lower(), ("grey", "x"))
        single = str(name).lower().startswith("engine") and "1 thread" in str(name)
        style = {"linestyle": "--", "markerfacecolor": "white"} if single else {}
        speed.plot(rows["households"], rows["hh_months_per_s"], marker=marker, color=colour, label=str(name), **style)
        memory.plot(rows["households"], rows["bytes_per_household"], marker=marker, color=colour, label=str(name),
                    **style)
    for ax in (speed, memory):
        ax.set_xscale("log")
        ax.set_xlabel("Households simulated (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, frameon=False)
    speed.set_yscale("log")
    speed.set_ylabel("Speed, household-months per second (log scale)")
    speed.set_title("Speed", fontsize=10)
    memory.set_ylim(bottom=0)
    memory.set_ylabel("Peak memory, bytes per household")
    memory.set_title("Memory while building and stepping one month", fontsize=10)
    if note:
        speed.text(0.02, 0.02, note, transform=speed.transAxes, fontsize=7, va="bottom", wrap=True)
    fig.suptitle(title or "Engine speed and memory against population size")
    return fig


def plot_targets(table: pd.DataFrame, models: dict[str, str], title: str, target_label: str = "target ± tolerance"):
    """Observed moments (``observed`` ± ``tolerance``) against model columns, one row per target.

    ``models`` maps a column of ``table`` to its legend label; the first is drawn grey
    crosses when there are two (e.g. the model before a fit), the last blue squares.
    """
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 0.45 * len(table) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(table))
    ax.errorbar(table["observed"], y, xerr=table["tolerance"], fmt="o", color="black", label=target_label)
    styles = [("x", "tab:gray"), ("s", "tab:blue")][-len(models):]
    for (column, label), (marker, colour) in zip(models.items(), styles):
        ax.plot(table[column], y, marker, color=colour, linestyle="none", label=label)
    ax.set_yticks(y, table.index)
    ax.invert_yaxis()
    ax.set_xlabel("Value of the moment (a share of households or people)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title)
    return fig


def plot_target_deviations(deviations: pd.DataFrame, title: str, upper=None):
    """Each target's deviation from its observed value in tolerances, over several seeds.

    ``deviations`` has one row per target (its index: the names on the y axis) and one
    column per seed, each ``(model - observed) / tolerance``.  A point marks the mean
    over the seeds, a horizontal bar the lowest to the highest seed; the shaded band is
    ±1 tolerance.  ``upper`` (one bool per target) marks targets whose observed value is
    an upper bound: their band runs from the left edge to +1 (anything below counts as
    no deviation).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    values = deviations.to_numpy(np.float64)
    n_targets, n_seeds = values.shape
    upper = np.zeros(n_targets, bool) if upper is None else np.asarray(upper, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a target NaN at every seed
        mean, low, high = np.nanmean(values, 1), np.nanmin(values, 1), np.nanmax(values, 1)
    fig = Figure(figsize=(9, 0.42 * n_targets + 1.9), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n_targets)
    finite = np.concatenate([v[np.isfinite(v)] for v in (low, high)] + [np.array([-1.5, 1.5])])
    span = max(abs(finite.min()), abs(finite.max())) * 1.1
    ax.set_xlim(-span, span)
    band = {"color": "tab:green", "alpha": 0.15, "linewidth": 0}
    ax.axvspan(-1, 1, **band)
    for k in np.flatnonzero(upper):  # an upper bound: below the value is within it too
        ax.fill_betweenx([k - 0.5, k + 0.5], -span, -1, **band)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.hlines(y, low, high, color="tab:blue", linewidth=2.5, alpha=0.6)
    ax.plot(mean, y, "o", color="tab:blue")
    ax.set_yticks(y, deviations.index)
    ax.set_ylim(n_targets - 0.5, -0.5)
    ax.set_xlabel("Deviation from the official figure, in tolerances: (model − official) / tolerance")
    ax.grid(axis="x", alpha=0.3)
    several = n_seeds > 1
    handles = [
        ax.lines[-1],
        Patch(**band, label="within ±1 tolerance (upper bound: at most +1)" if upper.any() else "within ±1 tolerance"),
    ]
    handles[0].set_label(f"mean over {n_seeds} seeds" if several else "one seed")
    if several:
        handles.insert(1, ax.collections[-1])
        handles[1].set_label(f"lowest to highest of {n_seeds} seeds")
    fig.legend(handles=handles, fontsize=8, frameon=False, loc="outside lower center", ncols=len(handles))
    ax.set_title(title, fontsize=10)
    return fig
