"""The interactive page: the Mesa model of one county in a browser, with Mesa's SolaraViz.

Start it with ``povsim app`` (``--port N``, ``--households N``), or directly with
``solara run povsim.mesa.app --host 127.0.0.1 --production``.  The page shows

* one line of text: the month and the counts of households by status;
* the villages of the county as a grid of households coloured by status (poor and
  registered, poor and missed, registered but not poor, neither), with a legend;
* exclusion and inclusion error by month, and entries onto the register by route;

and, in the sidebar, Mesa's controls (Step, Play, Reset) and the rule parameters:
each channel on or off, cadre visits per village per month, the sector data's coverage
and the verification's error.  A changed parameter takes effect on **Reset**, which
builds a new :class:`~povsim.mesa.CountyModel` with it (population and burn-in
included: the same seed gives the same households and shocks under every setting).

Each browser session (tab) has its own model.  The population size comes from the
environment variable ``POVSIM_APP_HOUSEHOLDS`` (set by ``povsim app --households N``;
default 2,000).  Importing this module imports Solara and Mesa's visualization; nothing in
:mod:`povsim` imports it.
"""

from __future__ import annotations

import os

import solara
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from povsim.components import TOGGLES
from povsim.config import Config
from povsim.mesa.county import (
    DEFAULT_HOUSEHOLDS,
    DEFAULT_HOUSEHOLDS_PER_VILLAGE,
    HOUSEHOLDS_ENV,
    MAX_HOUSEHOLDS,
    CountyModel,
)
from povsim.mesa.figures import draw_county, draw_errors, status_line

__all__ = ["Page", "households_from_env", "make_model", "model_params"]


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
    """SolaraViz's ``model_params``: the controls (dicts with a ``type``) and the fixed values."""
    defaults = Config().policy
    return {
        "households": households if households is not None else households_from_env(),
        "households_per_village": DEFAULT_HOUSEHOLDS_PER_VILLAGE,
        **{name: {"type": "Checkbox", "value": True, "label": label} for name, (_, label) in TOGGLES.items()},
        "cadre_visits": {
            "type": "SliderInt",
            "value": defaults.channels.cadre.visits_per_village,
            "min": 0,
            "max": 30,
            "step": 1,
            "label": "cadre visits / village / month",
        },
        "data_coverage_formal": {
            "type": "SliderFloat",
            "value": defaults.channels.data.coverage_formal,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "label": "data coverage: formal work",
        },
        "data_coverage_informal": {
            "type": "SliderFloat",
            "value": defaults.channels.data.coverage_informal,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "label": "data coverage: informal work",
        },
        "verification_error": {
            "type": "SliderFloat",
            "value": defaults.verification.assessment_sd,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "label": "verification error (SD)",
        },
    }


def _initial_values(params: dict) -> dict:
    return {k: (v["value"] if isinstance(v, dict) else v) for k, v in params.items()}


# -- the components: each takes the model and re-renders on every step (update_counter) -----
@solara.component
def CountyView(model):
    """The status line and the grid of households."""
    update_counter.get()
    with solara.Column(classes=["povsim-county"]):
        solara.Text(status_line(model), classes=["povsim-status"], style={"font-size": "0.9rem"})
        solara.FigureMatplotlib(draw_county(model), format="png", dpi=110)


@solara.component
def ErrorsView(model):
    """Exclusion and inclusion error by month, and entries by route."""
    update_counter.get()
    with solara.Column(classes=["povsim-errors"]):
        solara.FigureMatplotlib(draw_errors(model), format="png", dpi=100)


TITLE = "povsim: finding the poor in one county"


def make_model() -> CountyModel:
    """A new model with the controls' first values: the model a browser session starts with."""
    return CountyModel(**_initial_values(model_params()))


@solara.component
def Page():
    """The page. Each browser session (tab) builds and steps its own model."""
    model = solara.use_memo(make_model, [])
    return SolaraViz(
        model,
        components=[(CountyView, 0), (ErrorsView, 0)],
        model_params=model_params(),
        name=TITLE,
    )
