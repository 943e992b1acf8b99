"""Figures a policy analyst can paste into a report: labelled axes, units, sources.

This module owns every figure povsim draws.  Functions take tables (pandas
DataFrames from :mod:`povsim.metrics`) and return matplotlib Figures; they
never show or save on their own.  Figures are made with matplotlib's
object-oriented API (``matplotlib.figure.Figure``), so no GUI backend or
global pyplot state is touched: they save headless and display in notebooks.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["plot_errors", "plot_scenarios", "plot_sweep"]

LABELS = {
    "exclusion_error": "Exclusion error (poor not registered / poor), %",
    "inclusion_error": "Inclusion error (non-poor registered / registered), %",
    "headcount_rate": "Headcount rate (poor people / people), %",
    "missed_rate": "Missed rate (poor not registered / not registered), %",
}


def plot_errors(metrics: pd.DataFrame, title: str = ""):
    """Exclusion error, inclusion error and headcount rate over time, in percent."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    x = metrics["month"]
    ax.plot(x, 100 * metrics["exclusion_error"], label="Exclusion error (poor not registered / poor)")
    ax.plot(x, 100 * metrics["inclusion_error"], label="Inclusion error (non-poor registered / registered)")
    ax.plot(x, 100 * metrics["headcount_rate"], color="black", linestyle="--", label="Headcount rate (people)")
    ax.set_xlabel("Month")
    ax.set_ylabel("Percent")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_title(f"Targeting errors and poverty — {title}" if title else "Targeting errors and poverty")
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


def plot_scenarios(tidy: pd.DataFrame, metric: str, title: str = ""):
    """``metric`` over time, one line per scenario (``tidy`` has ``scenario``, ``month`` and the metric).

    With several replicates per scenario (a ``replicate`` column) the line is their
    mean and a shaded band its 95 % interval (t-based), month by month.
    """
    from matplotlib.figure import Figure

    if metric not in tidy.columns:
        raise KeyError(f"unknown metric {metric!r}; allowed: {', '.join(c for c in tidy.columns if c != 'scenario')}")
    percent = metric in LABELS
    scale = 100 if percent else 1
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    replicates = 1
    for name, group in tidy.groupby("scenario", sort=False):
        mean, low, high, n = _t_band(group, metric)
        replicates = max(replicates, n)
        (line,) = ax.plot(mean.index, scale * mean, label=str(name))
        if n > 1:
            ax.fill_between(mean.index, scale * low, scale * high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("Month")
    ax.set_ylabel(LABELS.get(metric, metric))
    if percent:
        ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, ncol=2)
    name = f"{title}: {metric}" if title else metric
    if replicates > 1:
        name += f" (mean of {replicates} replicates, 95% interval shaded)"
    ax.set_title(name, fontsize=10)
    return fig


def plot_sweep(summary: pd.DataFrame, points: pd.DataFrame, metric: str, title: str = ""):
    """A headline ``metric`` against each swept parameter: one panel per parameter, one series per scenario.

    ``summary`` is :meth:`ExperimentResult.summary` of a sweep (index point,
    scenario, metric); points carry 95 % interval bars when there are replicates.
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
    fig = Figure(figsize=(min(4.5 * len(keys), 13), 4), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    scenarios = list(dict.fromkeys(sub.index.get_level_values("scenario")))
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
            ax.errorbar(x, scale * rows["mean"], yerr=err, fmt="o", markersize=3, capsize=2, label=str(scenario),
                        alpha=0.8)
        ax.set_xlabel(key, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(HEADLINE_LABELS.get(metric, metric))
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(f"{title}: {metric} by swept value (95% intervals)" if title else metric, fontsize=10)
    return fig
