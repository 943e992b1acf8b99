"""Figures a policy analyst can paste into a report: labelled axes, units, sources.

This module owns every figure povsim draws.  Functions take tables (pandas
DataFrames from :mod:`povsim.metrics`) and return matplotlib Figures; they
never show or save on their own.  Figures are made with matplotlib's
object-oriented API (``matplotlib.figure.Figure``), so no GUI backend or
global pyplot state is touched: they save headless and display in notebooks.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["plot_errors", "plot_scenarios"]

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


def plot_scenarios(tidy: pd.DataFrame, metric: str, title: str = ""):
    """``metric`` over time, one line per scenario (``tidy`` has ``scenario``, ``month`` and the metric)."""
    from matplotlib.figure import Figure

    if metric not in tidy.columns:
        raise KeyError(f"unknown metric {metric!r}; allowed: {', '.join(c for c in tidy.columns if c != 'scenario')}")
    percent = metric in LABELS
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, group in tidy.groupby("scenario", sort=False):
        ax.plot(group["month"], (100 if percent else 1) * group[metric], label=str(name))
    ax.set_xlabel("Month")
    ax.set_ylabel(LABELS.get(metric, metric))
    if percent:
        ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, ncol=2)
    ax.set_title(f"{title}: {metric}" if title else metric)
    return fig
