"""Tables of an experiment as people read them, and its self-contained HTML report.

This module owns how headline numbers are shown: rates in percent (differences
in percentage points), money in million yuan, counts with thousands separators,
each with its 95 % interval when there are replicates.  The command line prints
these tables; :func:`render_report` puts them, with the figures embedded as
base64 PNG, into one HTML page that needs nothing else to open (no scripts, no
style sheets, fonts or images from elsewhere).
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from .headlines import DEFINITIONS, KINDS, LABELS  # noqa: F401  (declared once, with each headline number)

if TYPE_CHECKING:  # pragma: no cover
    from .experiments import ExperimentResult

__all__ = ["LABELS", "format_value", "format_cell", "scenario_table", "difference_table", "sweep_table", "render_report"]


def _kind(metric: str) -> str:
    return KINDS.get(metric, "count")


def format_value(metric: str, value: float, signed: bool = False) -> str:
    """One number as shown: percent (1 decimal), million yuan (2), months (1) or a count."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    sign = "+" if signed else ""
    kind = _kind(metric)
    if kind == "rate":
        return f"{100 * value:{sign},.1f}"
    if kind == "money":
        return f"{value / 1e6:{sign},.2f}"
    if kind == "months":
        return f"{value:{sign},.1f}"
    return f"{value:{sign},.0f}"


def format_cell(metric: str, row: Any, signed: bool = False, style: str = "pm") -> str:
    """A mean with its 95 % interval: ``12.3 ± 0.4`` (``style="pm"``) or ``12.3 [11.9, 12.7]`` (``"range"``).

    Without an interval (one replicate) just the mean.
    """
    mean = format_value(metric, row["mean"], signed)
    low, high = row["low"], row["high"]
    if mean == "-" or not (math.isfinite(low) and math.isfinite(high)):
        return mean
    if style == "range":
        return f"{mean} [{format_value(metric, low, signed)}, {format_value(metric, high, signed)}]"
    return f"{mean} ± {format_value(metric, (high - low) / 2)}"


def scenario_table(summary: pd.DataFrame, style: str = "pm", signed: bool = False) -> pd.DataFrame:
    """Rows: headline labels; columns: scenarios (``summary`` or ``compare`` of one point)."""
    scenarios = list(dict.fromkeys(summary.index.get_level_values("scenario")))
    metrics = list(dict.fromkeys(summary.index.get_level_values("metric")))
    table = pd.DataFrame(index=[LABELS.get(m, m) for m in metrics], columns=pd.Index(scenarios, name="scenario"))
    for (scenario, metric), row in summary.iterrows():
        table.loc[LABELS.get(metric, metric), scenario] = format_cell(metric, row, signed=signed, style=style)
    return table


def difference_table(compare: pd.DataFrame, style: str = "pm") -> pd.DataFrame:
    """Paired differences from the baseline: rows headline labels, columns scenarios."""
    table = scenario_table(compare, style=style, signed=True)
    table.columns.name = "minus baseline"
    return table


def sweep_table(table: pd.DataFrame, points: pd.DataFrame, metric: str, style: str = "pm",
                signed: bool = False) -> pd.DataFrame:
    """One row per sweep point: the swept values, then ``metric`` per scenario (``summary`` or ``compare``)."""
    sub = table.xs(metric, level="metric")
    scenarios = list(dict.fromkeys(sub.index.get_level_values("scenario")))
    out = points.copy()
    for key in out.columns:
        out[key] = out[key].map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    for scenario in scenarios:
        rows = sub.xs(scenario, level="scenario")
        out[scenario] = [
            format_cell(metric, rows.loc[p], signed=signed, style=style) if p in rows.index else "-"
            for p in out.index
        ]
    return out


# --------------------------------------------------------------------------------------
# The HTML report
# --------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; } .failed { color: #a00; }
figure { margin: 1em 0; } img { max-width: 100%; }
"""


def _table_html(table: pd.DataFrame, index: bool = True, header: bool = True) -> str:
    return table.to_html(escape=True, index=index, header=header, border=0, na_rep="-")


def render_report(outcome: "ExperimentResult", figures: dict[str, bytes] | None = None) -> str:
    """The experiment as one self-contained HTML page; ``figures``: file name -> PNG bytes, embedded."""
    from . import __version__

    exp = outcome.experiment
    base = exp.configs["baseline"]
    manifest = outcome.manifest()
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>povsim: {esc(exp.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{esc(exp.name)}</h1>",
    ]
    if base.description:
        parts.append(f"<p>{esc(base.description)}</p>")
    setup = {
        "households per run": f"{base.population.households:,}",
        "period reported": f"{base.simulation.start} to {base.simulation.end} (after {base.simulation.burn_in_years} "
        f"burn-in year{'s' if base.simulation.burn_in_years != 1 else ''})",
        "scenarios": ", ".join(exp.scenarios),
        "replicates": f"{exp.replicates} (seeds from SeedSequence({exp.seed}).spawn({exp.replicates}); the same in "
        "every scenario: common random numbers)" if exp.replicates > 1 else f"1 (seed {exp.seed})",
        "sweep": "none" if exp.sweep is None else f"{exp.sweep.method}, {len(exp.sweep.points)} points over "
        + ", ".join(exp.sweep.keys),
        "runs": f"{len(outcome.runs)} finished of {len(exp.runs)}"
        + (f", {len(outcome.failures)} failed" if outcome.failures else ""),
        "simulated time": f"{manifest['wall_time_s']:,.1f} s in total",
        "povsim": f"{__version__} (engine {manifest['engine']})",
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    parts.append("<h2>Setup</h2>")
    parts.append(_table_html(pd.DataFrame({"": list(setup.values())}, index=list(setup)), header=False))
    if outcome.failures:
        parts.append('<h2 class="failed">Failed runs</h2><ul>')
        for spec, error in outcome.failures.items():
            parts.append(f'<li class="failed">{esc(spec.describe())}: {esc(error)}</li>')
        parts.append("</ul>")
    interval_note = (
        f"Mean over replicates [95 % interval of the mean, t-based, {exp.replicates} replicates]."
        if exp.replicates > 1 else "One replicate: no interval."
    )
    if outcome.runs:
        summary = outcome.summary()
        compare = outcome.compare() if len(exp.configs) > 1 else None
        if exp.sweep is None:
            parts.append("<h2>Headline numbers</h2>")
            parts.append(f'<p class="note">{interval_note} Rates in percent.</p>')
            parts.append(_table_html(scenario_table(summary, style="range")))
            if compare is not None:
                parts.append("<h2>Difference from the baseline</h2>")
                parts.append(
                    '<p class="note">Each scenario minus the baseline, replicate by replicate (paired: the same seeds, '
                    "so the same shocks); mean [95 % interval]. Rates in percentage points.</p>"
                )
                parts.append(_table_html(difference_table(compare, style="range")))
        else:
            points = outcome.points()
            parts.append("<h2>Sweep</h2>")
            parts.append(f'<p class="note">{interval_note} One row per sweep point.</p>')
            for metric in ("exclusion_error_mean", "inclusion_error_mean", "detection_delay_mean", "cost_total_yuan"):
                parts.append(f"<h3>{esc(LABELS[metric])}</h3>")
                parts.append(_table_html(sweep_table(summary, points, metric, style="range")))
                if compare is not None:
                    parts.append(f"<p class='note'>Minus the baseline (paired), {esc(LABELS[metric])}:</p>")
                    parts.append(_table_html(sweep_table(compare, points, metric, style="range", signed=True)))
    if figures:
        parts.append("<h2>Figures</h2>")
        for name, data in figures.items():
            encoded = base64.b64encode(data).decode("ascii")
            parts.append(
                f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{esc(name)}</figcaption></figure>"
            )
    parts.append("<h2>Definitions</h2><dl>")
    for metric, text in DEFINITIONS.items():
        parts.append(f"<dt>{esc(LABELS[metric])}</dt><dd>{esc(text)}</dd>")
    parts.append("</dl>")
    parts.append('<p class="note">Made by povsim; every run\'s metrics and config are in runs/ beside this page.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
