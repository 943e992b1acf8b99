"""Exits on stable income (China, from 2014) and the annual review's entries (from 2017).

**Exits** (General Office document 2016 No. 16, the exit mechanism; Anhui's 2016 exit
rules): a registered household exits when its annual per-capita net income is
*stably* above the national line and food, clothing, compulsory schooling, basic
medical care and safe housing are assured ("two no worries, three guarantees").
Once a year, from the first exit assessment (``exit_first``, default December 2014:
exits ran from 2014, on the calendar year's income), every registered household's
12-month income is assessed with the office's error (:mod:`.assessment`); each
assessment at or above ``exit_multiple`` lines adds one to its run of stable years
(``stable_years``), any other sets it to zero.  A household exits when its run
reaches ``exit_years`` and the guarantees hold (:func:`guarantees_hold`): no ill
member with catastrophic out-of-pocket spending (basic medical care), and a safe
house (a share of households lives in unsafe housing until its renovation, by
``housing_safe_by``).  An exited household keeps its support for a time
(:mod:`.support`).

**Exit plans** (optional; the Government Work Reports set national targets: at
least 10 million fewer rural poor in 2017 and in 2018, about 10 million in 2019,
shared down to provinces and counties): in a plan year's exit month the national
target, in people, is shared among counties and each county's among its villages in
proportion to their registered people (:func:`plan_targets`, a global step before
the month).  A village whose exits fall short of its target exits further
registered households meeting the guarantees, highest assessed income first, until
the target is met (:func:`plan`): exits pulled forward, some of them wrong.

**Entries** at the annual review (the annual dynamic adjustment from 2017): a share
of the unregistered households is assessed for entry; those assessed below the
line and holding no excluding evidence (:func:`povsim.components.lookback.refuses`)
are registered.  While monitoring runs (:mod:`.monitoring`), an unmonitored household
assessed for entry below the monitoring range, or meeting its spending trigger, is
put into monitoring instead; a monitored household gets the annual check instead
(:func:`povsim.components.monitoring.check`: it leaves monitoring once out of risk).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import field_validator

from .. import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
import numpy as np

from .. import rng
from ..schema import SRC_ASSUMPTION, Month, Section, check_by_year, check_month, param, parse_month
from . import assessment, monitoring
from .base import (
    FLAG_MONITORED, FLAG_POOR, FLAG_REGISTERED, NEVER, NO_MONTH, Component, Count, Draw, Route, State, is_active,
    month_or_never, to_stored,
)
from .census import CATASTROPHIC_SHARE
from .income import DRAW_INCOME_12M, DRAW_MEDICAL
from .lookback import STREAM_REVIEW, refuses
from .registration import basis_of, office_below, register, select_lowest, village_people

ROUTE_CODE = 3  #: this route's code in ``route`` and ``pending_route``
ROUTE = Route(ROUTE_CODE, "review", "Annual review", "#9467bd")

SRC_EXIT = (
    "exit when annual per-capita net income is stably above the national line and the 'two no worries, three "
    "guarantees' hold (General Office document 2016 No. 16; Anhui 2016 exit rules; "
    "povsim/data/targets/china_rural_poverty.toml, exit_standard)"
)


class ReviewConfig(Section):
    """Exits on stable income, and the annual review's entries."""

    enabled: bool = param(True, "flag", "annual dynamic adjustment from 2017 (SCIO 2021)", "run exits and annual reviews")
    first: Month = param("2017-10", "month", "annual dynamic adjustment from 2017",
                         "month of the first review with entries; one every 12 months after")
    exit_first: Month = param(
        "2014-12",
        "month",
        "exits ran from 2014 (2017 county notices re-verify households 'recognised as exited in 2014-2016'), "
        "once a year (Hebei's rules), on the year's per-capita net income (2016 No. 16), known in December; "
        "Hebei assessed in October, on an estimate of the year's income",
        "month of the first exit assessment; one every 12 months after",
    )
    assessment_sd: float = param(0.25, "log points", SRC_ASSUMPTION, "SD of the log error of the review's and the "
                                 "exit assessment's office assessment", ge=0.0, le=5.0)
    exit_multiple: float = param(
        1.0,
        "multiple of the line",
        SRC_EXIT,
        "an exit assessment at or above this multiple of the line counts as a stable year",
        gt=0.0,
        le=6.0,
    )
    exit_years: int = param(
        2,
        "consecutive annual assessments",
        SRC_EXIT + "; 'stably' as two consecutive years is an assumption: exits by year and wrong exits depend on it",
        "consecutive exit assessments at or above the exit multiple before a household exits",
        ge=1,
        le=50,
    )
    guarantees: bool = param(
        True,
        "flag",
        SRC_EXIT,
        "check the guarantees before an exit: basic medical care (no ill member with catastrophic out-of-pocket "
        "spending, above 10% of the household's 12-month income: the SDG 3.8.2 threshold) and safe housing",
    )
    unsafe_housing_share: float = param(
        0.496,
        "share of households",
        "of the 23.4 million registered poor households, 11.8 million had safe homes at the start; the rest were "
        "made safe by renovation, relocation or public rental housing, 1 - 11.8 / 23.4 = 49.6 % (MOHURD, SCIO "
        "press conference 2020-09-23); drawn for every household, it matters for registered ones only (the "
        "exit's guarantee); independent of income, an assumption",
        "share of households living in unsafe housing until it is made safe",
        ge=0.0,
        le=1.0,
    )
    housing_safe_by: Month = param(
        "2020-06",
        "month",
        "every registered poor household had a safe home by the end of June 2020 (MOHURD, SCIO press conference "
        "2020-09-23); each is made safe in a month drawn uniformly from the first exit assessment, an assumption",
        "month by which every unsafe house is made safe (each in a month drawn uniformly from exit_first on)",
    )
    exit_plan: dict[int, float] = param(
        lambda: {2017: 10.0, 2018: 10.0, 2019: 10.0},
        "million people a year, nationally",
        "Government Work Reports 2017, 2018, 2019: at least 10 million fewer rural poor a year "
        "(povsim/data/targets/china_rural_poverty.toml, exit_plans)",
        "national target of people exiting the register in each listed year's exit month (empty: no plan)",
    )
    plan_population_millions: float = param(
        970.0,
        "million people",
        "the NBS rural poverty headcounts' population base, about 970 million (povsim/data/targets/china_rural_poverty.toml, population_base)",
        "the national population an exit plan's millions are out of: a plan is scaled to the simulated people",
        gt=0.0,
        le=1e4,
    )
    entry_coverage: float = param(
        0.10,
        "share of unregistered households",
        SRC_ASSUMPTION + "; reviews re-check households near the line, not every household",
        "share of unregistered households assessed for entry at each review",
        ge=0.0,
        le=1.0,
    )

    _month = field_validator("first", "exit_first", "housing_safe_by")(check_month)

    @field_validator("exit_plan", mode="before")
    @classmethod
    def _plan(cls, value: Any) -> dict[int, float]:
        if isinstance(value, dict) and not value:
            return {}  # no plan
        if not isinstance(value, dict):
            raise ValueError(f"{value!r}: allowed: a table of million people by year ({{2017 = 10.0}}), or none")
        return check_by_year(value, ge=0.0, le=1e4)


class Params(NamedTuple):
    """Exits and the annual review in the kernels' units."""

    exit_first: int  #: month index of the first exit assessment, or NO_MONTH when disabled
    first: int  #: month index of the first review with entries, or NO_MONTH when disabled
    assessment_sd: float
    exit_multiple: float
    exit_years: int
    guarantees: bool
    unsafe_housing_share: float
    housing_span: int  #: months over which the renovations spread, from exit_first
    entry_coverage: float


def params(cfg) -> Params:
    rv = cfg.policy.review
    exit_first = month_or_never(rv.enabled, rv.exit_first)
    return Params(
        exit_first=exit_first,
        first=month_or_never(rv.enabled, rv.first),
        assessment_sd=rv.assessment_sd,
        exit_multiple=rv.exit_multiple,
        exit_years=rv.exit_years,
        guarantees=rv.guarantees,
        unsafe_housing_share=rv.unsafe_housing_share,
        housing_span=max(parse_month(rv.housing_safe_by) - parse_month(rv.exit_first) + 1, 1),
        entry_coverage=rv.entry_coverage,
    )


def _events(section, end):
    from ..schema import format_month

    reviews = list(range(parse_month(section.first), end + 1, 12))
    exits = [m for m in range(parse_month(section.exit_first), end + 1, 12) if m not in reviews]
    # an exit assessment in a review month is part of the review
    return [(f"exits {format_month(m)}", m, m) for m in exits] + [(f"review {format_month(m)}", m, m) for m in reviews]


COMPONENT = Component(
    name="review",
    doc="exits on stable income with the guarantees, from 2014; the annual review's entries, from 2017",
    path="policy.review",
    section=ReviewConfig,
    params=params,
    state=(
        State("exit_month", "int16", "month it last exited (NEVER: never, or removed by the look-back since)",
              fill=NEVER),
        State("stable_years", "uint8", "consecutive exit assessments at or above the exit multiple"),
    ),
    village_state=(State("exit_target", "int64", "the village's exit-plan target in people, set before a plan "
                         "year's exit month"),),
    streams={"review": STREAM_REVIEW},
    draws=(
        Draw(STREAM_REVIEW, 1, "household", 3, "each",
             "the review's or exit assessment's error (words 0-1), whether an unregistered household is assessed "
             "(word 2)"),
    ),
    metrics=(
        Count("exited", "registered households exiting the register", kind="flow"),
        Count("exited_people", "people in the households exiting the register", unit="people", kind="flow"),
        Count("wrong_exit", "households exiting while truly poor", kind="flow"),
        Count("exit_held_guarantees", "registered households with a long enough run of stable years kept on the "
              "register because a guarantee (medical care, housing) does not hold", kind="flow"),
        Count("assessed_exit", "registered households assessed for exit", kind="flow"),
        Count("exited_plan", "of the exits, households exited to meet an exit plan (pulled forward)", kind="flow"),
        Count("assessed_review", "unregistered households assessed for entry at an annual review", kind="flow"),
    ),
    route=ROUTE,
    months=("exit_first", "first"),
    events=_events,
)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def is_due(first, month):
    """Whether an annual event first held in ``first`` (NO_MONTH: never) is held in ``month``."""
    return first != NO_MONTH and month >= first and (month - first) % 12 == 0


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def guarantees_hold(hh, i, income_12m, medical_12m, month, u_housing, rv):
    """The guarantees of an exit: basic medical care and safe housing (``rv``: the review's parameters).

    Medical care fails for a household ill now whose out-of-pocket medical spending
    over 12 months is catastrophic (above CATASTROPHIC_SHARE of its 12-month income);
    housing fails for a household in unsafe housing (``u_housing`` below the share)
    before its renovation month, drawn uniformly over the span (``u_housing /
    share`` is uniform given it is below the share).
    """
    if not rv.guarantees:
        return True
    members = np.float64(hh.size[i])
    if hh.illness[i] != 0 and medical_12m > CATASTROPHIC_SHARE * max(income_12m * members, 0.0):
        return False
    if u_housing < rv.unsafe_housing_share:
        renovated = rv.exit_first + min(int(u_housing / rv.unsafe_housing_share * rv.housing_span), rv.housing_span - 1)
        if month < renovated:
            return False
    return True


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, forceinline=True, error_model="numpy")
def exit_assessment(hh, i, income, month, line, p, k0, k1, gid):
    """The exit assessment of household ``i``: its 12-month income as the office assesses it, and its housing draw."""
    rv = p.review
    u0, u1, _, _ = rng.draw4(k0, k1, STREAM_REVIEW, gid, month, 1)
    z, _ = rng.box_muller(u0, u1)
    persistent, _, u_housing = assessment.household_draws(k0, k1, gid)
    return assessment.assessed(income, rv.assessment_sd, assessment.error(z, persistent, p.assessment)), u_housing


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def exit_register(hh, i, month, p, acc):
    """Household ``i`` leaves the register by exit; count it, and whether it was truly poor."""
    flags = hh.flags[i]
    hh.flags[i] = flags & ~FLAG_REGISTERED
    hh.route[i] = 0
    hh.stable_years[i] = 0
    hh.exit_month[i] = to_stored(month)
    acc[p.slot.exited] += 1
    acc[p.slot.exited_people] += np.int64(hh.size[i])
    if (flags & FLAG_POOR) != 0:
        acc[p.slot.wrong_exit] += 1


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def household(hh, vs, v, i, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3d: in an exit month, registered household ``i`` may exit; in a review month, another may enter."""
    rv = p.review
    exit_due = is_due(rv.exit_first, month)
    entry_due = is_due(rv.first, month)
    if not (exit_due or entry_due):
        return
    j = i - vs.start[v]
    income = s.draws[DRAW_INCOME_12M, j]
    gid = first_id + i
    if (hh.flags[i] & FLAG_REGISTERED) != 0:
        if not exit_due:
            return
        acc[p.slot.assessed_exit] += 1
        assessed, u_housing = exit_assessment(hh, i, income, month, line, p, k0, k1, gid)
        stable = income > 0.0 and assessed >= line * rv.exit_multiple
        run = min(np.int64(hh.stable_years[i]) + 1, 255) if stable else 0
        hh.stable_years[i] = np.uint8(run)
        if run < rv.exit_years:
            return
        if not guarantees_hold(hh, i, income, s.draws[DRAW_MEDICAL, j], month, u_housing, rv):
            acc[p.slot.exit_held_guarantees] += 1
            return
        exit_register(hh, i, month, p, acc)
    elif entry_due:
        if (hh.flags[i] & FLAG_MONITORED) != 0:
            monitoring.check(hh, i, first_id, month, line, income, p, k0, k1, acc)
            return
        u0, u1, u_cover, _ = rng.draw4(k0, k1, STREAM_REVIEW, gid, month, 1)
        if u_cover < rv.entry_coverage:
            acc[p.slot.assessed_review] += 1
            if is_active(p.monitoring.start, month):
                if monitoring.assessed_at_risk(hh, i, income, month, line, rv.assessment_sd, u0, u1, k0, k1, gid, p):
                    monitoring.enter(hh, i, ROUTE_CODE, p, acc)
            elif office_below(income, line, rv.assessment_sd, u0, u1, k0, k1, gid, p.assessment) and not refuses(
                k0, k1, gid, month, p
            ):
                register(hh, i, month, ROUTE_CODE, basis_of(income, line), p, acc)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=True, error_model="numpy")
def plan(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """Phase 3b: in a plan year's exit month, the village meets its exit target (people), if it can.

    After the month's exits, a village whose exited people fall short of
    ``vs.exit_target[v]`` exits its registered households that meet the guarantees,
    highest assessed income first (ties by index), until the target is met
    (:func:`pull_forward`; inlined here is only the test, so that the other months
    cost no call).
    """
    if vs.exit_target[v] > 0 and is_due(p.review.exit_first, month):
        pull_forward(hh, vs, v, first_id, month, line, p, k0, k1, acc, s)


@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, _nrt=False, forceinline=False, error_model="numpy")
def pull_forward(hh, vs, v, first_id, month, line, p, k0, k1, acc, s):
    """The exits of :func:`plan` in a village with a target."""
    target = vs.exit_target[v]
    first = vs.start[v]
    n = vs.start[v + 1] - first
    now = to_stored(month)
    exited = 0
    values, candidate, chosen = s.values, s.candidate, s.chosen
    for j in range(n):
        i = first + j
        candidate[j] = False
        if (hh.flags[i] & FLAG_REGISTERED) == 0:
            if hh.exit_month[i] == now:
                exited += np.int64(hh.size[i])
            continue
        income = s.draws[DRAW_INCOME_12M, j]
        assessed, u_housing = exit_assessment(hh, i, income, month, line, p, k0, k1, first_id + i)
        if guarantees_hold(hh, i, income, s.draws[DRAW_MEDICAL, j], month, u_housing, p.review):
            values[j] = -assessed  # the highest assessed income first
            candidate[j] = True
    if exited >= target:
        return
    chosen_n = select_lowest(values[:n], candidate[:n], n, chosen)
    for c in range(chosen_n):
        if exited >= target:
            break
        i = first + chosen[c]
        exit_register(hh, i, month, p, acc)
        acc[p.slot.exited_plan] += 1
        exited += np.int64(hh.size[i])


# --------------------------------------------------------------------------------------
# Exit plans (once for the whole population, before a plan year's exit month)
# --------------------------------------------------------------------------------------


def plan_month_target(section, month: int) -> float | None:
    """The national plan (million people) of ``month``'s exit, or None when the month has none."""
    if not section.enabled or not section.exit_plan:
        return None
    first = parse_month(section.exit_first)
    if month < first or (month - first) % 12:
        return None
    return section.exit_plan.get(month // 12)


def exit_targets(population, section, month: int) -> np.ndarray | None:
    """Every village's exit target for ``month`` from a whole population, or None when the month has no plan."""
    if plan_month_target(section, month) is None:
        return None
    hh = population.households
    registered = village_people(hh.size, hh.flags, population.village_start, FLAG_REGISTERED)
    return plan_targets(registered, population.village_county, population.n_counties,
                        int(hh.size.sum(dtype=np.int64)), section, month)


def plan_targets(registered_people, village_county, n_counties, national_people, section, month):
    """Every village's exit target (people) for ``month``'s exit under the plan of its config ``section``.

    The national target is the plan's millions over ``plan_population_millions``, times
    the simulated people (``national_people``); it is shared among counties in
    proportion to their registered people, and each county's among its villages in
    the same way (largest remainders, ties by index).  Zeros in a month without a plan.
    """
    from .registration import _largest_remainder

    out = np.zeros(village_county.shape[0], np.int64)
    millions = plan_month_target(section, month)
    if millions is None:
        return out
    national = int(round(millions / section.plan_population_millions * national_people))
    registered_people = np.asarray(registered_people, np.int64)
    by_county = np.bincount(village_county, weights=registered_people, minlength=n_counties).astype(np.float64)
    county_target = np.zeros(n_counties, np.int64)
    _largest_remainder(min(national, int(registered_people.sum())), by_county, county_target)
    v = 0
    n = village_county.shape[0]
    while v < n:  # villages of a county are contiguous
        c = village_county[v]
        end = v
        while end < n and village_county[end] == c:
            end += 1
        _largest_remainder(county_target[c], registered_people[v:end].astype(np.float64), out[v:end])
        v = end
    return out
