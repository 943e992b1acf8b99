"""The population: households in villages, villages in counties, counties in provinces.

This module owns the state of every household, stored as a struct of arrays
(:class:`Households`): one preallocated NumPy array per variable, of the
narrowest dtype that holds it, never appended to.  Households of one village
are contiguous, so a village is the range ``village_start[v]:village_start[v+1]``
and no household stores its village.

State per household (bytes):

====================  =========  =====  ==================================================
field                 dtype      bytes  meaning
====================  =========  =====  ==================================================
``size``              uint8      1      members
``workers``           uint8      1      members of working capacity
``level``             float32    4      fixed log income level (county mean + own deviation)
``persistent``        float32    4      persistent AR(1) log-income component
``illness``           uint8      1      0 healthy, 1 acute illness, 2 chronic illness
``unemployed``        uint8      1      1 while a wage earner is out of work
``flags``             uint8      1      registered, poor, connected, covered (``FLAG_*``)
``net_income``        int16[12]  24     per-capita net income of the last 12 months, yuan
``medical_12m``       float32    4      out-of-pocket medical spending, last 12 months
                                        (exponentially weighted, yuan per household)
``capacity``          uint16     2      earning capacity gained from development support,
                                        in 1/10000 log points
``route``             uint8      1      how the household entered the register (``ROUTE_*``)
``pending_route``     uint8      1      channel of a pending verification (0: none)
``support_left``      uint8      1      months of transition support left after an exit
``pending_month``     int16      2      month its pending verification is due
``poor_since``        int16      2      month it last fell poor
``last_visit``        int16      2      month a cadre last visited
``last_rejected``     int16      2      month a verification last rejected it
``exit_month``        int16      2      month it last left the register
====================  =========  =====  ==================================================

Months in int16 fields count from January 1900 (:data:`MONTH_ORIGIN`); :data:`NEVER`
means "never".

The building is compiled and runs in chunks, without a Python loop over
households; every draw comes from :mod:`povsim.rng` with the household's
global id, so a household is the same whichever block of the population it is
built in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from . import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from . import elementary, rng
from .config import Config

__all__ = ["Households", "Population", "build_population", "allocate", "structure"]

FLAG_REGISTERED = 1  #: the household is on the register
FLAG_POOR = 2  #: the household was truly poor at the end of its last month
FLAG_CONNECTED = 4  #: the household is connected to the village cadres
FLAG_COVERED = 8  #: the household's records are in other departments' data

# Routes onto the register (``route`` and ``pending_route``); 0 means none.
ROUTE_REGISTRATION = 1
ROUTE_LOOKBACK = 2
ROUTE_REVIEW = 3
ROUTE_SELF = 4
ROUTE_CADRE = 5
ROUTE_DATA = 6
ROUTE_HOTLINE = 7
N_ROUTES = 8  #: route codes 0..7
ROUTE_NAMES = ("none", "registration", "lookback", "review", "self", "cadre", "data", "hotline")

MONTH_ORIGIN = 1900 * 12  #: month stored as 0 in int16 month fields
NEVER = -32768  #: "never" in int16 month fields
CAPACITY_SCALE = 10000.0  #: capacity is stored in 1/10000 log points
RING_MONTHS = 12  #: months of per-capita net income kept for the 12-month total
MAX_SIZE = 8


class Households(NamedTuple):
    """The state of every household: one array per variable (a struct of arrays)."""

    size: np.ndarray
    workers: np.ndarray
    level: np.ndarray
    persistent: np.ndarray
    illness: np.ndarray
    unemployed: np.ndarray
    flags: np.ndarray
    net_income: np.ndarray  # shape (households, RING_MONTHS)
    medical_12m: np.ndarray
    capacity: np.ndarray
    route: np.ndarray
    pending_route: np.ndarray
    support_left: np.ndarray
    pending_month: np.ndarray
    poor_since: np.ndarray
    last_visit: np.ndarray
    last_rejected: np.ndarray
    exit_month: np.ndarray


def allocate(n: int) -> Households:
    """Preallocated, zeroed state for ``n`` households."""
    return Households(
        size=np.zeros(n, np.uint8),
        workers=np.zeros(n, np.uint8),
        level=np.zeros(n, np.float32),
        persistent=np.zeros(n, np.float32),
        illness=np.zeros(n, np.uint8),
        unemployed=np.zeros(n, np.uint8),
        flags=np.zeros(n, np.uint8),
        net_income=np.zeros((n, RING_MONTHS), np.int16),
        medical_12m=np.zeros(n, np.float32),
        capacity=np.zeros(n, np.uint16),
        route=np.zeros(n, np.uint8),
        pending_route=np.zeros(n, np.uint8),
        support_left=np.zeros(n, np.uint8),
        pending_month=np.full(n, NEVER, np.int16),
        poor_since=np.full(n, NEVER, np.int16),
        last_visit=np.full(n, NEVER, np.int16),
        last_rejected=np.full(n, NEVER, np.int16),
        exit_month=np.full(n, NEVER, np.int16),
    )


@dataclass
class Population:
    """Households plus the village, county and province structure they live in."""

    households: Households
    village_start: np.ndarray  #: int64, (villages + 1,): first household of each village
    village_county: np.ndarray  #: int32, county of each village
    county_province: np.ndarray  #: int32, province of each county (every county of the whole population)
    first_id: int = 0  #: global id of household 0 (non-zero for a block of a larger population)

    @property
    def n_households(self) -> int:
        return int(self.households.size.shape[0])

    @property
    def n_villages(self) -> int:
        return int(self.village_county.shape[0])

    @property
    def n_counties(self) -> int:
        return int(self.county_province.shape[0])

    @property
    def n_provinces(self) -> int:
        return int(self.county_province.max()) + 1 if self.n_counties else 0

    def nbytes(self) -> int:
        """Bytes of state: household arrays plus the village structure."""
        arrays = list(self.households) + [self.village_start, self.village_county, self.county_province]
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


@nb.njit(cache=True, inline="always", error_model="numpy")
def _antithetic_normal(k0, k1, unit, index):
    """A standard normal for county or province ``unit``: units 2k and 2k+1 get z and -z.

    Antithetic pairs keep the average effect at (or, with an odd count, next to) zero
    whatever the number of units, so a small population's income level does not depend
    on a lucky or unlucky handful of county or province draws.
    """
    u0, u1, _, _ = rng.draw4(k0, k1, rng.STREAM_COUNTY, unit // 2, 0, index)
    z, _ = rng.box_muller(u0, u1)
    return z if unit % 2 == 0 else -z


@nb.njit(cache=True, error_model="numpy")
def _county_means(k0, k1, county_province, log_median, province_sd, county_sd):
    n_counties = county_province.shape[0]
    out = np.empty(n_counties, np.float64)
    for c in range(n_counties):
        zp = _antithetic_normal(k0, k1, county_province[c], 1)
        zc = _antithetic_normal(k0, k1, c, 0)
        out[c] = log_median + province_sd * zp + county_sd * zc
    return out


@nb.njit(cache=True, error_model="numpy")
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


@nb.njit(cache=True, parallel=True, error_model="numpy")
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
    return Population(hh, village_start, village_county, county_province, first_id=first_id)
