"""The interactive page: the Mesa model of one county in a browser, drawn with Solara.

Start it with ``povsim app`` (``--port N``, ``--households N``), or directly with
``solara run povsim.mesa.app --host 127.0.0.1 --production``.  The page is meant to be
read without the code:

* the month, as a calendar month, and a short text: what the grid shows and what to try;
* the villages of the county as a grid of households coloured by status (poor and
  registered, poor and missed, registered but not poor, neither), with a legend of counts;
* the exclusion and the inclusion error as large numbers, beside their plot by month (with
  the policy events marked) and the entries onto the register by route;
* in the sidebar: **Step** (one month), **Play**/**Pause**, **Reset**; the identification
  rule (one-time registration, with look-back, with annual reviews, with channels); and,
  with channels, each channel on or off, cadre visits per village per month, the sector
  data's coverage and the verification's error, each showing its value.

The page is built from Solara's own components on the model (a :class:`mesa.Model`), not
from Mesa's SolaraViz, whose controls (play interval, threads, page tabs, step counter) a
student does not need.  A changed rule or setting starts the county again: it builds a new
:class:`~povsim.mesa.CountyModel` with it (population and burn-in included: the same seed
gives the same households and shocks under every setting, so a difference is the rule's).

Each browser session (tab) has its own model.  The population size comes from the
environment variable ``POVSIM_APP_HOUSEHOLDS`` (set by ``povsim app --households N``;
default 2,000).  Importing this module imports Solara; nothing in :mod:`povsim` imports it.
"""

from __future__ import annotations

import calendar
import os
import time

import solara

from povsim.components import TOGGLES
from povsim.config import Config
from povsim.mesa.county import (
    DEFAULT_HOUSEHOLDS,
    DEFAULT_HOUSEHOLDS_PER_VILLAGE,
    HOUSEHOLDS_ENV,
    MAX_HOUSEHOLDS,
    RULES,
    CountyModel,
)
from povsim.mesa.figures import draw_county, draw_errors, status_counts, status_line
from povsim.mesa.model import STATUS

__all__ = ["Page", "households_from_env", "make_model", "model_params", "month_heading", "rules_line", "error_numbers"]

TITLE = "povsim: finding the poor in one county"
PLAY_PAUSE_S = 0.4  #: the pause between two months while playing

INTRO = """
<p><b>What you see.</b> Each small square is one rural household of a county of {villages} villages
(one block of squares per village). <b>Orange</b>: poor and <i>not</i> on the register: the government
missed it (the <i>exclusion error</i>). <b>Green</b>: poor and registered. <b>Purple</b>: registered
but not poor (the <i>inclusion error</i>). <b>Grey</b>: neither. Households fall into poverty through
illness or job loss and climb out again; the government sees them only through noisy assessments.</p>
<p><b>What to try.</b> Press <b>Step</b> to move one month (or <b>Play</b>). Watch the register appear
in {registration} and the orange squares turn green. Then choose another <b>rule</b> on the left: with
a one-time registration only, households that fall poor later are never found; the look-back, the
annual reviews and the channels (self-declaration, cadre visits, sector data, the hotline) each find
more of them. The same households meet the same shocks under every rule, so what changes is the
rule's doing.</p>
"""

_STYLE = """
.povsim-page { font-size: 1.05rem; }
.povsim-month { font-size: 1.9rem; font-weight: 600; margin: 0.2em 0; }
.povsim-status { font-size: 0.95rem; color: #444; }
.povsim-figure img { width: 100%; height: auto; }
.povsim-number { font-size: 3rem; font-weight: 700; line-height: 1.1; }
.povsim-number-label { font-size: 1.05rem; font-weight: 600; }
.povsim-number-note { font-size: 0.9rem; color: #555; }
.povsim-exclusion .povsim-number { color: #d95f02; }
.povsim-inclusion .povsim-number { color: #7570b3; }
.povsim-rules { font-size: 0.95rem; }
"""


def households_from_env() -> int:
    """Households of the page's model: ``$POVSIM_APP_HOUSEHOLDS``, or 2,000."""
    text = os.environ.get(HOUSEHOLDS_ENV, "").strip()
    if not text:
        return DEFAULT_HOUSEHOLDS
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{HOUSEHOLDS_ENV}={text!r} is not an integer; allowed: 1 to {MAX_HOUSEHOLDS:,}") from None
    if not 1 <= value <= MAX_HOUSEHOLDS:
        raise ValueError(f"{HOUSEHOLDS_ENV}={value} is not allowed; allowed: 1 to {MAX_HOUSEHOLDS:,}")
    return value


def model_params(households: int | None = None) -> dict:
    """The page's controls (dicts with a ``type``, a first ``value`` and a ``label``) and the fixed values.

    Each key is a keyword of :class:`~povsim.mesa.CountyModel`.
    """
    defaults = Config().policy
    return {
        "households": households if households is not None else households_from_env(),
        "households_per_village": DEFAULT_HOUSEHOLDS_PER_VILLAGE,
        "rule": {
            "type": "Select",
            "value": "channels",
            "values": list(RULES),
            "labels": {name: label for name, (label, *_rest) in RULES.items()},
            "label": "identification rule",
        },
        **{name: {"type": "Checkbox", "value": True, "label": label} for name, (_, label) in TOGGLES.items()},
        "cadre_visits": {
            "type": "SliderInt",
            "value": defaults.channels.cadre.visits_per_village,
            "min": 0,
            "max": 30,
            "step": 1,
            "label": "cadre visits per village per month",
        },
        "data_coverage_formal": {
            "type": "SliderFloat",
            "value": defaults.channels.data.coverage_formal,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "label": "sector data's coverage: formal work",
        },
        "data_coverage_informal": {
            "type": "SliderFloat",
            "value": defaults.channels.data.coverage_informal,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "label": "sector data's coverage: informal work",
        },
        "verification_error": {
            "type": "SliderFloat",
            "value": defaults.verification.assessment_sd,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "label": "verification error (SD of its log assessment)",
        },
    }


def _initial_values(params: dict) -> dict:
    return {k: (v["value"] if isinstance(v, dict) else v) for k, v in params.items()}


def make_model(values: dict | None = None) -> CountyModel:
    """A new model with ``values`` (default: the controls' first values): the model a browser session starts with."""
    return CountyModel(**(values if values is not None else _initial_values(model_params())))


# -- what the page says, from the model alone (testable without a browser) ----------------------
def _calendar(label: str) -> str:
    year, month = label.split("-")
    return f"{calendar.month_name[int(month)]} {year}"


def month_heading(model: CountyModel) -> str:
    """The month just simulated, as a calendar month: ``January 2013``; a month of the burn-in says so."""
    done = model.month - 1
    timeline = model.timeline
    if done < timeline.start:
        return f"{_calendar(timeline.label(done))} (burn-in: before the reported months)"
    text = _calendar(timeline.label(min(done, timeline.end)))
    return f"{text} (the last month)" if done >= timeline.end else text


def rules_line(model: CountyModel) -> str:
    """The rules the model runs, read from its config: registration, look-back, reviews, each channel."""
    policy = model.config.policy

    def when(flag: bool, text: str) -> str:
        return text if flag else "off"

    registration = when(policy.registration.enabled, _calendar(policy.registration.month))
    lookback = when(policy.lookback.enabled, f"{_calendar(policy.lookback.start)} to {_calendar(policy.lookback.end)}")
    channels = [label for name, (path, label) in TOGGLES.items() if _section(model.config, path).enabled]
    return (
        f"Rules in force: registration {registration}; look-back {lookback}; exits and annual reviews "
        f"{'on' if policy.review.enabled else 'off'}; channels: {', '.join(channels) if channels else 'none'}."
    )


def _section(config: Config, path: str):
    node = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def error_numbers(model: CountyModel) -> dict[str, str]:
    """The exclusion and inclusion error now, as the page shows them (``-`` when undefined)."""
    counts = status_counts(model)
    poor = counts[STATUS[0]] + counts[STATUS[1]]
    registered = counts[STATUS[0]] + counts[STATUS[2]]
    return {
        "exclusion": f"{100 * counts[STATUS[1]] / poor:.1f} %" if poor else "-",
        "inclusion": f"{100 * counts[STATUS[2]] / registered:.1f} %" if registered else "-",
        "exclusion_note": f"{counts[STATUS[1]]:,} of {poor:,} poor households not registered",
        "inclusion_note": (f"{counts[STATUS[2]]:,} of {registered:,} registered households not poor" if registered
                           else "no household registered yet"),
    }


# -- the components ---------------------------------------------------------------------------------
@solara.component
def Number(label: str, value: str, note: str, kind: str):
    with solara.Column(classes=[f"povsim-{kind}"], style={"min-width": "14rem"}):
        solara.Text(label, classes=["povsim-number-label"])
        solara.Text(value, classes=["povsim-number", f"povsim-{kind}-value"])
        solara.Text(note, classes=["povsim-number-note"])


@solara.component
def Slider(name: str, spec: dict, value, on_value):
    shown = f"{value:.2f}" if spec["type"] == "SliderFloat" else f"{value}"
    with solara.Column(classes=["povsim-slider", f"povsim-slider-{name}"], gap="0px"):
        solara.Text(f"{spec['label']}: {shown}", style={"font-size": "0.95rem"})
        widget = solara.SliderFloat if spec["type"] == "SliderFloat" else solara.SliderInt
        widget("", value=value, on_value=on_value, min=spec["min"], max=spec["max"], step=spec["step"],
               thumb_label=False)


@solara.component
def Page():
    """The page. Each browser session (tab) builds and steps its own model."""
    params = solara.use_memo(model_params, [])
    values = solara.use_reactive(_initial_values(params))
    model = solara.use_reactive(solara.use_memo(lambda: make_model(values.value), []))
    months = solara.use_reactive(0)  # bumped after every step: redraws what depends on the model
    playing = solara.use_reactive(False)

    def step():
        if not model.value.done:
            model.value.step()
        months.set(months.value + 1)
        if model.value.done:
            playing.set(False)

    def rebuild(changes: dict | None = None):
        playing.set(False)
        new = {**values.value, **(changes or {})}
        values.set(new)
        model.set(make_model(new))
        months.set(0)

    def play(cancel):
        while playing.value and not cancel.is_set():
            step()
            time.sleep(PLAY_PAUSE_S)

    solara.use_thread(play, dependencies=[playing.value, model.value])

    current = model.value
    months.value  # noqa: B018 - read, so that a step redraws the page
    numbers = error_numbers(current)
    solara.Title(TITLE)
    solara.Style(_STYLE)
    with solara.AppBar():
        solara.AppBarTitle(TITLE)
    with solara.Sidebar():
        with solara.Card("Move in time"):
            with solara.Row():
                solara.Button("Step", color="primary", on_click=step, disabled=playing.value or current.done)
                solara.Button("Pause" if playing.value else "Play", color="primary",
                              on_click=lambda: playing.set(not playing.value), disabled=current.done)
                solara.Button("Reset", color="primary", on_click=lambda: rebuild())
        with solara.Card("Identification rule"):
            rule = values.value["rule"]
            with solara.Column(gap="4px"):
                for name, (label, *_rest) in RULES.items():
                    solara.Button(label, outlined=name != rule, color="primary",
                                  classes=["povsim-rule", f"povsim-rule-{name}"],
                                  on_click=lambda name=name: rebuild({"rule": name}))
            solara.Text("Each rule adds to the one above it. Changing a rule or a setting starts the county again "
                        "from January 2013.", style={"font-size": "0.85rem", "color": "#555"})
        if values.value["rule"] == "channels":
            with solara.Card("Channels"):
                for name in TOGGLES:
                    spec = params[name]
                    solara.Checkbox(label=spec["label"], value=values.value[name],
                                    on_value=lambda v, name=name: rebuild({name: v}))
                for name in ("cadre_visits", "data_coverage_formal", "data_coverage_informal", "verification_error"):
                    Slider(name, params[name], values.value[name], lambda v, name=name: rebuild({name: v}))
    with solara.Column(classes=["povsim-page"]):
        solara.Text(month_heading(current), classes=["povsim-month"])
        solara.Text(status_line(current), classes=["povsim-status"])
        solara.Text(rules_line(current), classes=["povsim-rules"])
        solara.HTML(tag="div", unsafe_innerHTML=INTRO.format(
            villages=len(current.villages), registration=_calendar(current.config.policy.registration.month)),
            classes=["povsim-intro"], style={"max-width": "70rem"})
        with solara.Column(classes=["povsim-county", "povsim-figure"], style={"max-width": "70rem"}):
            solara.FigureMatplotlib(draw_county(current), dependencies=[current, months.value], format="png", dpi=110)
        with solara.Row(style={"align-items": "center", "max-width": "90rem"}):
            with solara.Column(classes=["povsim-errors", "povsim-figure"], style={"flex": "3 1 0", "min-width": "0"}):
                solara.FigureMatplotlib(draw_errors(current), dependencies=[current, months.value], format="png",
                                        dpi=110)
            with solara.Column(style={"flex": "1 1 0"}):
                Number("Exclusion error", numbers["exclusion"], numbers["exclusion_note"], "exclusion")
                Number("Inclusion error", numbers["inclusion"], numbers["inclusion_note"], "inclusion")
