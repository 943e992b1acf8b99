"""The Mesa model: povsim's households as ``mesa.Agent`` objects.

``PovertyModel(config)`` is the same model as :class:`povsim.Simulation` — built from
the same config, the same population arrays and the same compiled hooks of the
components (:mod:`povsim.components`), called in the order of events of
:data:`povsim.components.schedule.SCHEDULE` — so for the same config and seed its
metrics and every household's history equal the engine's, bit for bit.  It is slower
(one Python call per household and month) and meant for reading, stepping, inspecting
and extending the model with Mesa's tools, on thousands of households, not millions.

``CountyModel(**keywords)`` is the same model configured by keyword arguments (a small
county, the channels' main parameters): the model of the interactive page
(:mod:`povsim.mesa.app`, started by ``povsim app``).

Importing this package imports Mesa; ``import povsim`` alone does not.  Only the page
(:mod:`povsim.mesa.app`) imports Solara.
"""

from .county import CountyModel, county_config
from .model import STATUS, Household, PovertyModel

__all__ = ["CountyModel", "Household", "PovertyModel", "STATUS", "county_config"]
