"""The population: households in villages, villages in counties, counties in provinces.

This module owns the state of every household, stored as a struct of arrays
(:class:`Households`): one preallocated NumPy array per variable, of the
narrowest dtype that holds it, never appended to.  Households of one village
are contiguous, so a village is the range ``village_start[v]:village_start[v+1]``
and no household stores its village.

Every array of state is declared once, by the component it belongs to (its name,
dtype, starting value and meaning: :data:`povsim.components.HOUSEHOLD_STATE`, printed
in ``docs/model.md``); the size, workers and flags every household has are declared
here.  Villages have state of their own (:class:`Villages`: their structure, and
the components' village arrays).  Months in int16 fields count from January 1900
(:data:`MONTH_ORIGIN`); :data:`NEVER` means "never".

The building is compiled and runs in chunks, without a Python loop over
households; every draw comes from :mod:`povsim.rng` with the household's
global id, so a household is the same whichever block of the population it is
built in.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from . import elementary, rng
from .components import (  # noqa: F401  (re-exported: the state and routes are declared by the components)
    HOUSEHOLD_STATE,
    N_ROUTES,
    ROUTE_NAMES,
    VILLAGE_STATE,
    Households,
    Villages,
    allocate,
    allocate_villages,
)
from .components.base import FLAG_CONNECTED, FLAG_COVERED, FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER  # noqa: F401
from .components.poverty import RING_MONTHS  # noqa: F401
from .components.support import CAPACITY_SCALE  # noqa: F401
from .config import Config
from .sizing import check_memory

__all__ = ["Households", "Villages", "Population", "build_population", "allocate", "poor_area_counties", "structure"]

MAX_SIZE = 8


@dataclass
class Population:
    """Households plus the villages, counties and provinces they live in."""

    households: Households
    villages: Villages  #: the villages' structure (start, county, id) and the components' village state
    county_province: np.ndarray  #: int32, province of each county (every county of the whole population)
    first_id: int = 0  #: global id of household 0 (non-zero for a block of a larger population)

    @property
    def village_start(self) -> np.ndarray:
        """int64, (villages + 1,): first household of each village."""
        return self.villages.start

    @property
    def village_county(self) -> np.ndarray:
        """int32: county of each village."""
        return self.villages.county

    @property
    def n_households(self) -> int:
        return int(self.households.size.shape[0])

    @property
    def n_villages(self) -> int:
        return int(self.villages.county.shape[0])

    @property
    def n_counties(self) -> int:
        return int(self.county_province.shape[0])

    @property
    def n_provinces(self) -> int:
        return int(self.county_province.max()) + 1 if self.n_counties else 0

    def nbytes(self) -> int:
        """Bytes of state: household arrays plus the village structure and state."""
        arrays = list(self.households) + list(self.villages) + [self.county_province]
        return int(sum(a.nbytes for a in arrays))

    def bytes_per_household(self) -> float:
        return self.nbytes() / max(self.n_households, 1)


def structure(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Village starts, village -> county and county -> province for the configured population."""
    pc = cfg.population
    n = pc.households
    n_villages = -(-n // pc.households_per_village)
    village_start = np.minimum(np.arange(n_villages + 1, dtype=np.int64) * pc.households_per_village, n)
    village_county = (np.arange(n_villages, dtype=np.int64) // pc.villages_per_county).astype(np.int32)
    n_counties = int(village_county[-1]) + 1
    # counties spread evenly over the provinces, in order (fewer counties than provinces: one each)
    county_province = (np.arange(n_counties, dtype=np.int64) * pc.provinces // n_counties).astype(np.int32)
    return village_start, village_county, county_province


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def _antithetic_normal(k0, k1, unit, index):
    """A standard normal for county or province ``unit``: units 2k and 2k+1 get z and -z.

    Antithetic pairs keep the average effect at (or, with an odd count, next to) zero
    whatever the number of units, so a small population's income level does not depend
    on a lucky or unlucky handful of county or province draws.
    """
    u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_COUNTY, unit // 2, 0, index)
    z, _ = rng.box_muller(u0, u1)
    return z if unit % 2 == 0 else -z


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def _county_means(k0, k1, county_province, log_median, province_sd, county_sd):
    n_counties = county_province.shape[0]
    out = np.empty(n_counties, np.float64)
    for c in range(n_counties):
        zp = _antithetic_normal(k0, k1, county_province[c], 1)
        zc = _antithetic_normal(k0, k1, c, 0)
        out[c] = log_median + province_sd * zp + county_sd * zc
    return out


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, error_model="numpy")
def _build_household(
    hh, i, gid, county_mean, k0, k1, size_cdf, worker_probability, household_sd, labour_elasticity, persistent_sd,
    connected_share, informal_share, coverage_formal, coverage_informal,
):
    """Draw the fixed traits and initial state of household ``i`` (global id ``gid``)."""
    u_size, z_a, z_b, _ = rng.draw4(k0, k1, rng.STREAM_POPULATION, gid, 0, 0)
    size = 1
    while size < size_cdf.shape[0] and u_size >= size_cdf[size - 1]:
        size += 1
    workers = 0
    for block in range(2):  # up to 8 members, 4 uniforms per call
        w = rng.draw4(k0, k1, rng.STREAM_POPULATION, gid, 0, 1 + block)
        for j in range(4):
            if 4 * block + j < size and w[j] < worker_probability:
                workers += 1
    z_level, z_persistent = rng.box_muller(z_a, z_b)
    share = max(workers, 0.5) / size
    expected = max(worker_probability, 1e-6)
    hh.size[i] = size
    hh.workers[i] = workers
    hh.level[i] = county_mean + household_sd * z_level + labour_elasticity * elementary.log(share / expected)
    hh.persistent[i] = persistent_sd * z_persistent
    u_connected, u_informal, u_covered, _ = rng.draw4(k0, k1, rng.STREAM_POPULATION, gid, 0, 3)
    flags = 0
    if u_connected < connected_share:
        flags |= FLAG_CONNECTED
    coverage = coverage_informal if u_informal < informal_share else coverage_formal
    if u_covered < coverage:
        flags |= FLAG_COVERED
    hh.flags[i] = flags
    hh.illness[i] = 0
    hh.unemployed[i] = 0
    for r in range(hh.net_income.shape[1]):
        hh.net_income[i, r] = 0


@nb.njit(cache=True, no_cfunc_wrapper=True, parallel=True, error_model="numpy")
def _build_households(
    hh, village_start, village_county, county_mean, first_id, k0, k1, size_cdf, worker_probability,
    household_sd, labour_elasticity, persistent_sd, connected_share, informal_share, coverage_formal,
    coverage_informal,
):
    # Writes go through a called function: Numba (0.68) drops stores made to a
    # named tuple's arrays directly inside a prange body.
    for v in nb.prange(village_county.shape[0]):
        mean = county_mean[village_county[v]]
        for i in range(village_start[v], village_start[v + 1]):
            _build_household(
                hh, i, first_id + i, mean, k0, k1, size_cdf, worker_probability, household_sd,
                labour_elasticity, persistent_sd, connected_share, informal_share, coverage_formal,
                coverage_informal,
            )


def poor_area_counties(county_mean, county_households, share) -> np.ndarray:
    """uint8 by county: 1 for the poor areas, the counties of lowest mean log income holding ``share`` of the households.

    Counties are taken from the poorest (ties by county number) while the households
    already taken are fewer than ``share`` of all; the whole population's counties are
    ranked, so every block of a split population marks the same counties.
    """
    order = np.argsort(np.asarray(county_mean), kind="stable")
    households = np.asarray(county_households, np.float64)[order]
    before = np.cumsum(households) - households  #: households in the poorer counties
    poor = np.zeros(order.shape[0], np.uint8)
    poor[order[before < share * households.sum()]] = 1
    return poor


def build_population(cfg: Config, villages: tuple[int, int] | None = None) -> Population:
    """Build the configured population: structure, then every household's fixed traits.

    ``villages=(v0, v1)`` builds only villages ``v0 .. v1-1`` of the configured
    population: a block of whole villages whose households carry their global
    ids (``first_id`` = the global id of the block's first household) and whose
    villages keep their global counties, so every household is drawn exactly as
    in the whole population.  Income history starts empty; the burn-in fills it
    before the first reported month.
    """
    village_start, village_county, county_province = structure(cfg)
    county_households = np.bincount(village_county, weights=np.diff(village_start), minlength=county_province.shape[0])
    first_id = 0
    if villages is not None:
        v0, v1 = (int(v) for v in villages)
        n_villages = village_county.shape[0]
        if not 0 <= v0 < v1 <= n_villages:
            raise ValueError(f"villages={villages!r}: allowed 0 <= v0 < v1 <= {n_villages} (villages in the population)")
        first_id = int(village_start[v0])
        village_start = village_start[v0 : v1 + 1] - first_id
        village_county = village_county[v0:v1].copy()
    n = int(village_start[-1])
    check_memory(n)  # before allocating: a population that cannot fit is refused, not swapped or killed
    hh = allocate(n)
    k0, k1 = rng.split_seed(cfg.seed)
    inc = cfg.income
    county_mean = _county_means(
        k0, k1, county_province, float(elementary.log(float(inc.median))), inc.province_sd, inc.county_sd
    )
    size_cdf = np.cumsum(np.asarray(cfg.population.size_probabilities, np.float64))
    size_cdf[-1] = 1.0
    _build_households(
        hh,
        village_start,
        village_county,
        county_mean,
        first_id,
        k0,
        k1,
        size_cdf,
        cfg.population.worker_probability,
        inc.household_sd,
        inc.labour_elasticity,
        inc.persistent_sd,
        cfg.policy.channels.cadre.connected_share,
        cfg.policy.channels.data.informal_share,
        cfg.policy.channels.data.coverage_formal,
        cfg.policy.channels.data.coverage_informal,
    )
    villages = allocate_villages(village_start, village_county, first_id + village_start[:-1])
    villages.poor_area[:] = poor_area_counties(county_mean, county_households, cfg.population.poor_area_share)[
        village_county
    ]
    return Population(hh, villages, county_province, first_id=first_id)
