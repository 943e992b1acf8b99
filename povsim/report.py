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

__all__ = ["LABELS", "format_value", "format_cell", "scenario_table", "difference_table", "sweep_table", "patch_words",
           "scenario_patches", "render_report"]


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
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; overflow-wrap: break-word; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
table.text td { text-align: left; } code { font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; } .failed { color: #a00; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
"""

#: most scenario columns in one table: more are split into several tables, so none is wider than the page
COLUMNS_PER_TABLE = 5


def _table_html(table: pd.DataFrame, index: bool = True, header: bool = True, classes: str | None = None) -> str:
    return table.to_html(escape=True, index=index, header=header, border=0, na_rep="-", classes=classes)


def _split_tables(table: pd.DataFrame, fixed: int = 0, index: bool = True) -> str:
    """``table`` as one or more HTML tables of at most :data:`COLUMNS_PER_TABLE` columns besides the first ``fixed``.

    The first ``fixed`` columns (and the index) are repeated in each, so every table reads alone.
    """
    rest = list(table.columns[fixed:])
    if len(rest) <= COLUMNS_PER_TABLE:
        return _table_html(table, index=index)
    parts = []
    for k in range(0, len(rest), COLUMNS_PER_TABLE):
        chunk = rest[k : k + COLUMNS_PER_TABLE]
        parts.append(f'<p class="note">Scenarios {k + 1} to {k + len(chunk)} of {len(rest)}:</p>')
        parts.append(_table_html(table[list(table.columns[:fixed]) + chunk], index=index))
    return "\n".join(parts)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value).replace("'", '"')
    return str(value)


def patch_words(key: str, value: Any) -> str:
    """One patch of a scenario in words, from the config schema: what ``key = value`` changes."""
    from .config import schema_key

    found = schema_key(key)
    field = found.field if found is not None else None
    if field is None:
        return f"sets {key} to {_value_text(value)}"
    description = field.description or key.rsplit(".", 1)[-1].replace("_", " ")
    if key.endswith(".enabled") and isinstance(value, bool):
        section = schema_key(key.rsplit(".", 1)[0])
        doc = (section.section.__doc__ or "").strip().splitlines() if section and section.section else []
        what = doc[0].rstrip(".") if doc else description
        return f"{'switches on' if value else 'switches off'}: {what[:1].lower() + what[1:]}"
    unit = (field.json_schema_extra or {}).get("unit", "") if isinstance(field.json_schema_extra, dict) else ""
    unit = "" if unit in ("", "flag", "share", "choice") else f" {unit}"
    return f"{description}: {_value_text(value)}{unit}"


def scenario_patches(exp: Any) -> pd.DataFrame:
    """One row per scenario: what it changes in words, and its patch (the keys it sets), for the report."""
    rows = []
    for name in exp.configs:
        patch = exp.patches.get(name, {})
        if not patch:
            words = "nothing: the experiment file's own settings, which every other scenario patches"
            keys = "(none)"
        else:
            words = "; ".join(patch_words(k, v) for k, v in patch.items())
            keys = "; ".join(f"{k} = {_value_text(v)}" for k, v in patch.items())
        rows.append({"scenario": name, "what it changes": words, "patch (keys set)": keys})
    return pd.DataFrame(rows).set_index("scenario")


def _png_title(data: bytes) -> str:
    """The ``Title`` in a PNG's metadata (povsim writes one with every figure), or ``""``."""
    from io import BytesIO

    try:
        from PIL import Image

        with Image.open(BytesIO(data)) as image:
            return str(image.text.get("Title", ""))
    except Exception:  # noqa: BLE001 - a figure without metadata is shown under its file name
        return ""


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
        "scenarios": f"{len(exp.scenarios)}: " + ", ".join(exp.scenarios),
        "replicates": f"{exp.replicates} per scenario (seeds from SeedSequence({exp.seed}).spawn({exp.replicates}); the "
        "same in every scenario: common random numbers)" if exp.replicates > 1 else f"1 per scenario (seed {exp.seed})",
        "sweep": "none" if exp.sweep is None else f"{exp.sweep.method}, {len(exp.sweep.points)} points over "
        + ", ".join(exp.sweep.keys),
        "runs": f"{len(outcome.runs)} finished of {len(exp.runs)}"
        + (f", {len(outcome.failures)} failed" if outcome.failures else ""),
        "simulated time": f"{manifest['wall_time_s']:,.1f} s in total",
        "povsim": f"{__version__} (engine {manifest['engine']})",
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    parts.append("<h2>Setup</h2>")
    parts.append(_table_html(pd.DataFrame({"": list(setup.values())}, index=list(setup)), header=False,
                             classes="text"))
    replicate_text = (
        "A <b>replicate</b> is one run of a scenario with its own seed: the same households and rules, another draw "
        "of their shocks and of the government's assessments. Replicate k has the same seed in every scenario, so "
        "the scenarios of one replicate meet the same shocks and their differences are the rules' alone."
    )
    if exp.replicates > 1:
        replicate_text += (
            f" With {exp.replicates} replicates each number below is the mean over them, with the 95 % interval of "
            "that mean (t-based): how far another set of replicates might move it."
        )
    else:
        replicate_text += (
            " This experiment has one replicate: each number below is that one run's, and no interval is shown, so "
            "how much another seed would move it is not known (set replicates = 2 or more in the experiment file "
            "for intervals)."
        )
    parts.append(f'<p class="note">{replicate_text}</p>')
    parts.append("<h2>Scenarios</h2>")
    parts.append(
        '<p class="note">The baseline is the experiment file\'s config; each other scenario is that config with '
        "the keys of its patch set as shown (all other settings as in the baseline).</p>"
    )
    parts.append(_table_html(scenario_patches(exp).reset_index(), index=False, classes="text"))
    if outcome.failures:
        parts.append('<h2 class="failed">Failed runs</h2><ul>')
        for spec, error in outcome.failures.items():
            parts.append(f'<li class="failed">{esc(spec.describe())}: {esc(error)}</li>')
        parts.append("</ul>")
    several = exp.replicates > 1
    interval_note = (
        f"Mean over replicates [95 % interval of the mean, t-based, {exp.replicates} replicates]."
        if several else "One replicate: each number is one run's (no interval)."
    )
    paired = (
        "Each scenario minus the baseline, replicate by replicate (paired: the same seeds, so the same shocks); "
        + ("mean [95 % interval]." if several else "one replicate: one run's difference (no interval).")
    )
    if outcome.runs:
        summary = outcome.summary()
        compare = outcome.compare() if len(exp.configs) > 1 else None
        if exp.sweep is None:
            parts.append("<h2>Headline numbers</h2>")
            parts.append(f'<p class="note">{interval_note} Rates in percent.</p>')
            parts.append(_split_tables(scenario_table(summary, style="range")))
            if compare is not None:
                parts.append("<h2>Difference from the baseline</h2>")
                parts.append(f'<p class="note">{paired} Rates in percentage points.</p>')
                parts.append(_split_tables(difference_table(compare, style="range")))
        else:
            points = outcome.points()
            parts.append("<h2>Sweep</h2>")
            parts.append(f'<p class="note">{interval_note} One row per sweep point.</p>')
            for metric in ("exclusion_error_mean", "inclusion_error_mean", "detection_delay_mean", "cost_total_yuan"):
                parts.append(f"<h3>{esc(LABELS[metric])}</h3>")
                fixed = len(points.columns)
                parts.append(_split_tables(sweep_table(summary, points, metric, style="range"), fixed=fixed))
                if compare is not None:
                    parts.append(f"<p class='note'>Minus the baseline (paired), {esc(LABELS[metric])}:</p>")
                    parts.append(_split_tables(sweep_table(compare, points, metric, style="range", signed=True),
                                               fixed=fixed))
    if figures:
        parts.append("<h2>Figures</h2>")
        for name, data in figures.items():
            encoded = base64.b64encode(data).decode("ascii")
            title = _png_title(data) or name
            parts.append(
                f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{esc(title)} ({esc(name)} beside this page)</figcaption></figure>"
            )
    parts.append("<h2>Definitions</h2><dl>")
    for metric, text in DEFINITIONS.items():
        parts.append(f"<dt>{esc(LABELS[metric])}</dt><dd>{esc(text)}</dd>")
    parts.append("</dl>")
    parts.append('<p class="note">Made by povsim; every run\'s metrics and config are in runs/ beside this page.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
