"""The register, and the one-time registration of the poor (2014).

This module owns the register itself: :func:`register` puts a household on it by a
route and counts the entry, whether the entrant was truly poor, and its detection
delay (months from falling poor), as a binned count by route.  Every other rule
that registers a household calls it.

The one-time registration looks for the poor of a survey: in the **survey month**
(default December 2013, the NBS count the 2014 registration set out to find) every
village's truly poor people are counted and every household's income of the survey
year is kept as its **registration basis** (``basis``, a multiple of that year's
line, :func:`survey`).  In the registration month it runs by one of two methods:

* **quota** (China 2014, "scale control"): the national quota, in people, is
  ``quota_scale`` registered people per survey poor person; it is shared among
  counties in proportion to noisy county estimates and each county's among its
  villages in proportion to noisy village estimates (:func:`quotas_from_counts`, run
  once for the whole population before the month's pass); each village's community
  then registers its households in the order of their perceived basis, lowest first,
  until its quota of people is filled (:func:`village`);
* **threshold**: each household is registered if its assessed basis is below the
  line (:func:`household`).

Both see the basis with the office's error (:mod:`.assessment`: part of it the
household's persistent component).  Every later registration keeps the income it
was assessed on as the household's basis (:func:`register`), which the look-back
re-checks.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

from pydantic import field_validator

from .. import _jit  # (first: sets Numba's cache folder)

import numba as nb
import numpy as np

from .. import elementary, rng
from ..schema import SRC_ASSUMPTION, SRC_FITTED, SRC_REG_2014, Month, Section, check_month, format_month, param, parse_month
from . import assessment
from .base import (
    FLAG_EVER_REGISTERED, FLAG_POOR, FLAG_REGISTERED, NEVER, NO_MONTH, Bins, Column, Component, Count, Draw, Route,
    State, add_binned, month_or_never, months_since,
)
from .income import DRAW_INCOME_12M

STREAM_ASSESSMENT = 4  #: errors of the one-time registration's assessment or community ranking
STREAM_QUOTA = 9  #: county and village estimates behind the registration quotas (id = county / village)
METHOD_THRESHOLD = 0
METHOD_QUOTA = 1
DELAY_BINS = 49  #: detection-delay histogram: 0..47 months, and 48 or more
ROUTE_CODE = 1  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "registration", "One-time registration", "#7f7f7f")
BASIS_SCALE = 10000.0  #: the basis is stored in 1/10000 of the line (uint16: at most 6.5535 lines)

SRC_SURVEY_2013 = (
    "the registration set out to find the poor of the NBS's end-2013 count ('we spent a year finding the "
    "80-odd million poor of the end-2013 NBS count', SCIO press conference 2015-10-12; "
    "povsim/data/targets/china_rural_poverty.toml, registration_basis)"
)


class RegistrationConfig(Section):
    """The one-time registration of the poor (2014)."""

    enabled: bool = param(True, "flag", SRC_REG_2014, "run the one-time registration")
    month: Month = param("2014-10", "month", SRC_REG_2014, "month in which households are registered")
    survey_month: Month | None = param(
        None,
        "month",
        SRC_SURVEY_2013,
        "month of the survey the registration looks for, before the registration: its poor are counted for "
        "the quotas, and every household's income then is its registration basis; unset: the December before "
        "the registration month (2013-12 for the 2014-10 registration)",
    )
    method: Literal["quota", "threshold"] = param(
        "quota",
        "choice",
        "2014 registration ran under quota-based 'scale control' with community review (SCIO 2021)",
        "'quota': county and village quotas, lowest-ranked by the community registered; "
        "'threshold': registered if the assessed income is below the line",
    )
    assessment_sd: float = param(
        0.35,
        "log points",
        "proxy means tests and community rankings mis-rank widely: Alatas et al. (2012) find 30% total mistargeting",
        "SD of the log-normal error of the assessment (threshold) or of the community's perceived basis (quota)",
        ge=0.0,
        le=5.0,
    )
    quota_scale: float = param(
        1.139,
        "registered people per survey poor person",
        SRC_FITTED + ": the register's share of people in 2014, with the headcounts (the official figure is "
        "1.086: registered 89.62 million people = 1.086 x the NBS's 82.49 million "
        "poor of the end-2013 count, which the registration set out to find; SCIO press conference 2015-10-12; "
        "povsim/data/targets/china_rural_poverty.toml, registration_basis)",
        "national quota: registered people per poor person of the survey (quota method)",
        ge=0.0,
        le=100.0,
    )
    county_estimate_sd: float = param(
        0.20,
        "log points",
        SRC_ASSUMPTION + "; county poverty rates were estimated from a survey of about 160,000 households",
        "SD of the log error of each county's estimated number of poor people (quota method)",
        ge=0.0,
        le=5.0,
    )
    village_estimate_sd: float = param(
        0.30,
        "log points",
        SRC_ASSUMPTION,
        "SD of the log error of each village's estimated number of poor people (quota method)",
        ge=0.0,
        le=5.0,
    )

    _month = field_validator("month")(check_month)

    @field_validator("survey_month")
    @classmethod
    def _survey(cls, value: str | None) -> str | None:
        return None if value is None else check_month(value)


def survey_month(section: RegistrationConfig) -> int:
    """The survey's month index: ``survey_month``, or the December before the registration month."""
    if section.survey_month is not None:
        return parse_month(section.survey_month)
    return (parse_month(section.month) // 12 - 1) * 12 + 11


class Params(NamedTuple):
    """The one-time registration in the kernels' units."""

    month: int  #: its month index, or NO_MONTH when disabled
    survey_month: int  #: the survey's month index, or NO_MONTH when the registration is disabled
    method: int  #: METHOD_QUOTA or METHOD_THRESHOLD
    assessment_sd: float


def params(cfg) -> Params:
    reg = cfg.policy.registration
    return Params(
        month=month_or_never(reg.enabled, reg.month),
        survey_month=survey_month(reg) if reg.enabled else NO_MONTH,
        method=METHOD_QUOTA if reg.method == "quota" else METHOD_THRESHOLD,
        assessment_sd=reg.assessment_sd,
    )


def _check(cfg) -> list[str]:
    """The survey comes before the registration, and needs a year of income history (from the first December)."""
    from ..schema import first_month

    reg = cfg.policy.registration
    if not reg.enabled:
        return []
    record_start = first_month(parse_month(cfg.simulation.start), cfg.simulation.burn_in_years) + 11
    survey = survey_month(reg)
    if survey >= parse_month(reg.month):
        return [f"policy.registration.survey_month = {reg.survey_month!r} is not before policy.registration.month = "
                f"{reg.month!r}; allowed: a survey month before the registration"]
    if survey < record_start:
        return [f"policy.registration.survey_month = {format_month(survey)!r} is before the first month with a year "
                f"of income history ({format_month(record_start)}); allowed: {format_month(record_start)} or later "
                "(set simulation.burn_in_years or simulation.start earlier)"]
    return []


def _events(section, end):
    from ..schema import parse_month

    m = parse_month(section.month)
    return [("registration", m, m)]


def _churn(c):
    """Entries onto the register and removals from it over the year, over the register the December before."""
    entries = c.routes("entered").sum(axis=1)
    removals = c["exited"] + c["removed_lookback"]
    return c.ratio(c.year_total(entries + removals), c.last_december(c["registered"]))


def _detection_delay_mean(c):
    return c.ratio(c.routes("delay_sum").sum(axis=1), c.routes("delay_count").sum(axis=1))


COMPONENT = Component(
    name="registration",
    doc="the register, and the one-time registration by quota (community ranking) or by threshold",
    path="policy.registration",
    section=RegistrationConfig,
    params=params,
    state=(
        State("route", "uint8", "how the household entered the register (a route code)"),
        State("basis", "uint16", "per-capita income its registration was assessed on (for every household, the "
              "survey year's until it is registered later), in 1/10000 of that year's line (at most 6.55 lines)"),
    ),
    village_state=(
        State("survey_poor", "int64", "the village's truly poor people in the survey month"),
        State("quota", "int64", "the village's registration quota in people, set before the registration month"),
    ),
    streams={"assessment": STREAM_ASSESSMENT, "quota": STREAM_QUOTA},
    draws=(
        Draw(STREAM_ASSESSMENT, 0, "household", 2, "each",
             "the registration's assessment error (threshold) or the community's perception (quota): a normal"),
        Draw(STREAM_QUOTA, 0, "county", 2, "0", "the error of the county's estimated number of poor people"),
        Draw(STREAM_QUOTA, 1, "village", 2, "0", "the error of the village's estimated number of poor people"),
    ),
    metrics=(
        Count("entered", "households entering the register this month by {route}", kind="flow", by_route=True,
              column="entered_{route}"),
        Count("entered_people", "people in the households entering the register, by route", unit="people",
              kind="flow", by_route=True, column=None),
        Count("newly_identified", "households registered for the first time this month by {route}", kind="flow",
              by_route=True, column="newly_identified_{route}"),
        Count("newly_identified_people", "people in households registered for the first time by {route}",
              unit="people", kind="flow", by_route=True, column="newly_identified_people_{route}"),
        Count("re_registered", "households registered again by {route} after exiting the register "
              "(returned to poverty, the registry's count)", kind="flow", by_route=True, column="re_registered_{route}"),
        Count("re_registered_people", "people in households registered again by {route} after exiting",
              unit="people", kind="flow", by_route=True, column="re_registered_people_{route}"),
        Column("people_entered", "people in the households entering the register, every route",
               lambda c: c.routes("entered_people").sum(axis=1), "people", "count"),
        Column("newly_identified", "households registered for the first time, every route",
               lambda c: c.routes("newly_identified").sum(axis=1), "households", "count"),
        Column("newly_identified_people", "people in households registered for the first time, every route",
               lambda c: c.routes("newly_identified_people").sum(axis=1), "people", "count"),
        Column("re_registered", "households registered again after exiting, every route",
               lambda c: c.routes("re_registered").sum(axis=1), "households", "count"),
        Column("re_registered_people", "people in households registered again after exiting, every route",
               lambda c: c.routes("re_registered_people").sum(axis=1), "people", "count"),
        Column("churn", "entries plus exits and look-back removals over the year / register the December before "
               "(December)", _churn, label="Churn of the register (entries + removals over the year / register), %"),
        Count("entered_nonpoor", "entries of households not truly poor, by route", kind="flow", by_route=True,
              column=None),
        Count("delay_sum", "months from falling poor to registration, summed, by route", unit="months", kind="flow",
              by_route=True, column=None),
        Count("delay_count", "registrations of truly poor households with an observed onset, by route", kind="flow",
              by_route=True, column=None),
        Count("delay_unknown", "poor entrants poor since before the record (onset unknown), by route", kind="flow",
              by_route=True, column=None),
        Bins("detection_delay", "registrations of truly poor households by months since falling poor, by route",
             DELAY_BINS, tuple(str(b) for b in range(DELAY_BINS - 1)) + (f"{DELAY_BINS - 1}+",), by_route=True),
        Count("assessed_registration", "households assessed by the one-time registration", kind="flow"),
        Column("detection_delay_mean",
               "mean months from falling poor to registration, this month's poor entrants", _detection_delay_mean,
               "months", "months"),
    ),
    route=ROUTE,
    months=("month",),
    events=_events,
    check=_check,
)


# --------------------------------------------------------------------------------------
# The register
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def basis_of(income, line):
    """A per-capita income as a registration basis: a multiple of ``line`` in 1/BASIS_SCALE, clipped to uint16."""
    ratio = math.floor(max(income, 0.0) / line * BASIS_SCALE + 0.5)
    return np.uint16(min(ratio, 65535.0))


@_jit.compile_per_type
@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def register(hh, i, month, route, basis, p, acc):
    """Put household ``i`` on the register by ``route``; count the entry and its detection delay.

    ``basis`` is what its registration was assessed on (:func:`basis_of`), kept for the
    look-back; the run of stable years toward an exit starts again.  An entry is
    counted as a first registration (never registered before) or a re-registration
    after an exit (the registry's "returned to poverty"); a household re-added after a
    look-back removal is neither.
    """
    flags = hh.flags[i]
    slot = p.slot
    members = np.int64(hh.size[i])
    hh.flags[i] = flags | FLAG_REGISTERED | FLAG_EVER_REGISTERED
    hh.route[i] = route
    hh.basis[i] = basis
    hh.stable_years[i] = 0
    hh.pending_route[i] = 0
    hh.pending_month[i] = NEVER
    acc[slot.entered + route] += 1
    acc[slot.entered_people + route] += members
    if not flags & FLAG_EVER_REGISTERED:
        acc[slot.newly_identified + route] += 1
        acc[slot.newly_identified_people + route] += members
    elif hh.exit_month[i] != NEVER:
        acc[slot.re_registered + route] += 1
        acc[slot.re_registered_people + route] += members
    if not flags & FLAG_POOR:
        acc[slot.entered_nonpoor + route] += 1
    elif hh.poor_since[i] == NEVER:
        acc[slot.delay_unknown + route] += 1  # poor since before the record began
    else:
        delay = months_since(hh.poor_since[i], month)
        acc[slot.delay_sum + route] += delay
        acc[slot.delay_count + route] += 1
        add_binned(acc, slot.detection_delay + route * DELAY_BINS, DELAY_BINS, delay)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def below_with_error(income, line, sd, z):
    """Whether ``income x exp(sd x z)`` (a log-normal error of SD ``sd``) falls below ``line``; a non-positive income does."""
    if income <= 0.0:
        return True
    return income * elementary.exp(sd * z) < line


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def assessed_below(income, line, sd, u1, u2):
    """Whether a noisy assessment of ``income`` (log-normal error of SD ``sd``) falls below ``line``."""
    if income <= 0.0:
        return True
    z, _ = rng.box_muller(u1, u2)
    return below_with_error(income, line, sd, z)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def office_below(income, line, sd, u1, u2, k0, k1, household, pa):
    """Whether the office's assessment of ``income`` (error of SD ``sd``, part of it the household's persistent
    component, :mod:`.assessment`) falls below ``line``; a non-positive income does."""
    if income <= 0.0:
        return True
    return below_with_error(income, line, sd, assessment.office_error(k0, k1, household, u1, u2, pa))


@nb.njit(cache=True, no_cfunc_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def keep_lowest(values, j, chosen, taken, count):
    """Offer index ``j`` to the ``taken`` lowest kept so far (``chosen``, sorted, at most ``count``).

    A newcomer goes after every kept value it does not beat, so ties keep the
    lower index first when indices are offered in increasing order.  Returns the
    new number kept.
    """
    value = values[j]
    if taken == count and not value < values[chosen[taken - 1]]:
        return taken
    k = taken if taken < count else count - 1  # the slot freed (or the last one, replaced)
    while k > 0 and value < values[chosen[k - 1]]:
        chosen[k] = chosen[k - 1]
        k -= 1
    chosen[k] = j
    return taken + 1 if taken < count else taken


@nb.njit(cache=True, no_cfunc_wrapper=True, _nrt=False, forceinline=False, error_model="numpy")
def select_lowest(values, candidate, count, chosen):
    """Indices of the ``count`` lowest ``values`` among ``candidate``s, lowest first, ties by index.

    Writes them to ``chosen`` and returns how many were chosen: one pass in index
    order through :func:`keep_lowest`, allocation-free.
    """
    taken = 0
    if count <= 0:
        return 0
    for j in range(values.shape[0]):
        if candidate[j]:
            taken = keep_lowest(values, j, chosen, taken, count)
    return taken


# --------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def survey(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Phase 2a: in the survey month, the village's truly poor people are counted and every basis is kept.

    The basis is the household's income of the survey (its 12-month income, under the
    calendar-year concept in December the calendar year's) over the month's line.
    """
    if month != p.registration.survey_month:
        return
    first = vs.start[v]
    poor_people = 0
    for j in range(vs.start[v + 1] - first):
        i = first + j
        hh.basis[i] = basis_of(s.draws[DRAW_INCOME_12M, j], line)
        if hh.flags[i] & FLAG_POOR:
            poor_people += np.int64(hh.size[i])
    vs.survey_poor[v] = poor_people


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def village(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Phase 2b: in the month of a registration by quota, the community ranks households by perceived basis.

    The village registers its households in the order of their perceived basis,
    lowest first, while that brings the people registered nearer to its quota
    ``vs.quota[v]`` (people): a household is registered if the people registered with
    it exceed the quota by at most what they would fall short without it.
    """
    if not (month == p.registration.month and p.registration.method == METHOD_QUOTA):
        return
    values, candidate, chosen = s.values, s.candidate, s.chosen
    first = vs.start[v]
    n = vs.start[v + 1] - first
    pa = p.assessment
    for j in range(n):
        i = first + j
        basis = np.float64(hh.basis[i]) / BASIS_SCALE
        u0, u1, _, _ = rng.draw4(k0, k1, STREAM_ASSESSMENT, first_id + i, month, 0)
        err = assessment.office_error(k0, k1, first_id + i, u0, u1, pa)
        values[j] = assessment.assessed(basis, p.registration.assessment_sd, err)
        candidate[j] = True
    acc[p.slot.assessed_registration] += n
    quota = vs.quota[v]
    chosen_n = select_lowest(values[:n], candidate[:n], min(quota, n), chosen)
    taken = 0
    for c in range(chosen_n):
        i = first + chosen[c]
        members = np.int64(hh.size[i])
        if 2 * taken + members > 2 * quota:
            break
        register(hh, i, month, ROUTE_CODE, hh.basis[i], p, acc)
        taken += members


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3b: in the month of a registration by threshold, household ``i`` is registered if its assessed basis
    is below the line."""
    if not (month == p.registration.month and p.registration.method == METHOD_THRESHOLD):
        return
    basis = np.float64(hh.basis[i]) / BASIS_SCALE
    acc[p.slot.assessed_registration] += 1
    u0, u1, _, _ = rng.draw4(k0, k1, STREAM_ASSESSMENT, first_id + i, month, 0)
    if (hh.flags[i] & FLAG_REGISTERED) == 0 and office_below(
        basis, 1.0, p.registration.assessment_sd, u0, u1, k0, k1, first_id + i, p.assessment
    ):
        register(hh, i, month, ROUTE_CODE, hh.basis[i], p, acc)


# --------------------------------------------------------------------------------------
# Quotas (once for the whole population, before the registration month's pass)
# --------------------------------------------------------------------------------------


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def _largest_remainder(total, weights, out):
    """Share the integer ``total`` in proportion to ``weights`` (largest-remainder method, ties by index)."""
    n = weights.shape[0]
    w_sum = 0.0
    for j in range(n):
        w_sum += weights[j]
    if n == 0:
        return
    if w_sum <= 0.0 or total <= 0:
        for j in range(n):
            out[j] = 0
        return
    frac = np.empty(n, np.float64)
    given = 0
    for j in range(n):
        share = total * weights[j] / w_sum
        base = math.floor(share)
        out[j] = np.int64(base)
        frac[j] = share - base
        given += out[j]
    order = np.argsort(-frac, kind="mergesort")
    for r in range(total - given):
        out[order[r % n]] += 1


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def village_people(size, flags, village_start, require):
    """People per village in the households whose ``flags`` hold every bit of ``require`` (0: every household)."""
    n_villages = village_start.shape[0] - 1
    out = np.zeros(n_villages, np.int64)
    for v in range(n_villages):
        total = 0
        for i in range(village_start[v], village_start[v + 1]):
            if (flags[i] & require) == require:
                total += np.int64(size[i])
        out[v] = total
    return out


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def quotas_from_counts(poor_counts, people, village_start, village_county, n_counties, first_id, scale, county_sd,
                       village_sd, k0, k1):
    """Village quotas in people from every village's count of poor people in the survey (a global step).

    The national quota is ``scale`` x the number of poor people (the national survey
    measures the total well); it is shared among counties in proportion to county
    estimates with log-normal error, and each county's among its villages in
    proportion to noisy village estimates.  A village's quota is capped at its
    ``people``.  County draws are keyed by the county id and village draws by the
    village's id (the global id of its first household, ``first_id + village_start[v]``),
    so ids must be global: the whole population's structure, not a block's.
    """
    n_villages = village_county.shape[0]
    poor_v = np.zeros(n_villages, np.float64)
    for v in range(n_villages):
        poor_v[v] = poor_counts[v]
    estimate_c = np.zeros(n_counties, np.float64)
    for v in range(n_villages):
        estimate_c[village_county[v]] += poor_v[v]
    # the national survey measures the national total well; county estimates are noisy
    national = np.int64(round(scale * estimate_c.sum()))
    for c in range(n_counties):
        u0, u1, _, _ = rng.draw4(k0, k1, STREAM_QUOTA, c, 0, 0)
        z, _ = rng.box_muller(u0, u1)
        estimate_c[c] *= elementary.exp(county_sd * z)
    county_quota = np.zeros(n_counties, np.int64)
    _largest_remainder(national, estimate_c, county_quota)
    quota = np.zeros(n_villages, np.int64)
    v = 0
    while v < n_villages:  # villages of a county are contiguous
        c = village_county[v]
        v_end = v
        while v_end < n_villages and village_county[v_end] == c:
            v_end += 1
        weights = np.empty(v_end - v, np.float64)
        for j in range(v, v_end):
            u0, u1, _, _ = rng.draw4(k0, k1, STREAM_QUOTA, first_id + village_start[j], 0, 1)
            z, _ = rng.box_muller(u0, u1)
            weights[j - v] = poor_v[j] * elementary.exp(village_sd * z)
        _largest_remainder(county_quota[c], weights, quota[v:v_end])
        for j in range(v, v_end):
            quota[j] = min(quota[j], people[j])
        v = v_end
    return quota


def registration_quotas(survey_poor, size, flags, village_start, village_county, n_counties, first_id, section, k0, k1):
    """Village quotas (people) for the one-time registration of a whole population, from its config ``section``.

    From the survey's poor people per village (``survey_poor``, counted by
    :func:`survey`), :func:`quotas_from_counts` estimates each county's poor, sets the
    national quota and shares it out.  A population split into blocks runs the two
    halves separately: counts per block, quotas once.
    """
    return quotas_from_counts(
        survey_poor, village_people(size, flags, village_start, 0), village_start, village_county, n_counties, first_id,
        section.quota_scale, section.county_estimate_sd, section.village_estimate_sd, k0, k1,
    )
