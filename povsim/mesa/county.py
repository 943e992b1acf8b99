"""``CountyModel``: the Mesa model behind the interactive page, built from keyword arguments.

The interactive page re-creates a model by calling its class with keyword arguments
(its controls' values, :func:`povsim.mesa.app.model_params`).  :class:`CountyModel` is :class:`~povsim.mesa.PovertyModel` with
the page's controls as such arguments: it builds the config from the defaults (or
from ``base``) with the matching overrides, validated like any other config, so a
bad value raises :class:`povsim.ConfigError` naming the key.

It is a small population by default (2,000 households in villages of 120: one
county, a grid a person can read), one burn-in year, and by default it simulates the
burn-in while it is built, so the first step is the first reported month.
"""

from __future__ import annotations

from typing import Any

from ..components import TOGGLES
from ..config import Config, load_config
from .model import PovertyModel

__all__ = ["CountyModel", "county_config", "RULES"]

#: the identification rules a county can run, each adding to the one before (as experiments/onetime_vs_dynamic.toml):
#: name -> (label, look-back on, exits and annual reviews on, continuous channels on)
RULES = {
    "onetime": ("One-time registration", False, False, False),
    "lookback": ("With look-back", True, False, False),
    "reviews": ("With annual reviews", True, True, False),
    "channels": ("With channels", True, True, True),
}

DEFAULT_HOUSEHOLDS = 2_000
DEFAULT_HOUSEHOLDS_PER_VILLAGE = 120
HOUSEHOLDS_ENV = "POVSIM_APP_HOUSEHOLDS"  #: how ``povsim app --households N`` tells the page its size
MAX_HOUSEHOLDS = 20_000  #: most households on the page (``povsim app``): more is unreadable, and slow to step


def county_config(
    *,
    households: int = DEFAULT_HOUSEHOLDS,
    households_per_village: int = DEFAULT_HOUSEHOLDS_PER_VILLAGE,
    cadre_visits: int | None = None,
    data_coverage_formal: float | None = None,
    data_coverage_informal: float | None = None,
    verification_error: float | None = None,
    seed: int | None = None,
    burn_in_years: int = 1,
    rule: str | None = None,
    base: Config | None = None,
    **switches: bool,
) -> Config:
    """The config of a :class:`CountyModel`: ``base`` (default: the defaults) with these overrides.

    ``None`` keeps the base's value.  Each discovery channel has an on/off switch, a
    keyword declared by its component (:data:`povsim.components.TOGGLES`: by default
    ``self_declaration``, ``cadres``, ``sector_data`` and ``hotline``, each setting its
    section's ``enabled``; every switch is on unless given).  Each other argument sets
    one config key:

    ========================  ==========================================
    argument                  config key
    ========================  ==========================================
    households                population.households
    households_per_village    population.households_per_village (and
                              population.villages_per_county: all in one county)
    cadre_visits              policy.channels.cadre.visits_per_village
    data_coverage_formal      policy.channels.data.coverage_formal
    data_coverage_informal    policy.channels.data.coverage_informal
    verification_error        policy.verification.assessment_sd
    seed                      seed
    burn_in_years             simulation.burn_in_years
    ========================  ==========================================

    ``rule`` (:data:`RULES`) chooses the identification rule, each adding to the one
    before: ``"onetime"`` (the 2014 registration only: policy.lookback, policy.review and
    every channel off), ``"lookback"`` (+ the 2015-16 look-back), ``"reviews"`` (+ exits
    and annual reviews) or ``"channels"`` (+ the continuous channels, each as its switch
    says); ``None`` (the default) keeps the base's look-back and reviews and the channels' switches.
    """
    if rule is not None and rule not in RULES:
        raise ValueError(f"rule={rule!r} is not a rule; allowed: {', '.join(RULES)}")
    _, lookback, review, channels = RULES[rule] if rule is not None else (None, None, None, True)
    unknown = sorted(set(switches) - set(TOGGLES))
    if unknown:
        raise TypeError(
            f"county_config() got an unexpected keyword argument {unknown[0]!r}; "
            f"the channels' switches are: {', '.join(TOGGLES)}"
        )
    overrides: dict[str, Any] = {
        "population.households": households,
        "population.households_per_village": households_per_village,
        "population.villages_per_county": max(1, -(-households // households_per_village)),  # one county
        **{f"{path}.enabled": channels and bool(switches.get(name, True)) for name, (path, _) in TOGGLES.items()},
        "simulation.burn_in_years": burn_in_years,
    }
    if rule is not None:
        overrides.update({"policy.lookback.enabled": lookback, "policy.review.enabled": review})
    optional = {
        "policy.channels.cadre.visits_per_village": cadre_visits,
        "policy.channels.data.coverage_formal": data_coverage_formal,
        "policy.channels.data.coverage_informal": data_coverage_informal,
        "policy.verification.assessment_sd": verification_error,
        "seed": seed,
    }
    overrides.update({k: v for k, v in optional.items() if v is not None})
    if base is None:
        return load_config(None, overrides=overrides)
    return base.with_overrides(overrides)


class CountyModel(PovertyModel):
    """:class:`~povsim.mesa.PovertyModel` of one county, configured by keyword arguments.

    The arguments are those of :func:`county_config`, plus ``skip_burn_in`` (default
    ``True``): simulate the burn-in months while building, so that ``model.month`` is
    the first reported month.  ``CountyModel(**kw)`` and ``PovertyModel(county_config(**kw))``
    are the same model (with ``skip_burn_in=False``, the same object state too).
    """

    def __init__(self, skip_burn_in: bool = True, **kwargs: Any):
        # ``kwargs`` (the page's controls) go to county_config,
        # which refuses an unknown one with a TypeError naming it
        config = county_config(**kwargs)
        super().__init__(config)
        if skip_burn_in:
            while self.month < self.timeline.start:
                self.step()
