"""Validation: the calibrated model against its targets, and predictions it was not fitted to.

This module owns docs/validation.md.  ``povsim validate`` (or ``python -m
povsim.validate``) runs the calibrated China experiment at several independent
seeds (:func:`povsim.experiments.replicate_seeds`) and writes:

* the model against each calibration target: its mean over the seeds, its lowest
  and highest seed, and the mean's deviation in tolerances (a table and a figure);
* headline outputs (the December headcount, the register's share of people);
* predictions the model was **not** fitted to, for holding against published
  figures separately, each with its mean and range over the seeds: the
  look-back's removals and additions as shares of the register, in households
  and people; first registrations, re-registrations after an exit and the
  statistics' flows per year, in people; the county exit assessments'
  wrong-exit and missed rates under the official definitions in December 2017,
  2018 and 2019 (two strata, recently exited and non-registered households, of
  about 500 people each, sampled per assessment unit and judged by an assessor,
  as the third-party assessments did), with the shares of units that pass the
  criteria; and panel-sense dynamics from every household's poverty status each
  December: exits from poverty after k years and returns after an exit.

Nothing here feeds back into the calibration.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd

from . import rng
from .calibrate import load_targets, model_moment
from .components import assessment
from .components.base import NO_MONTH
from .components.poverty import record_sum
from .components.registration import below_with_error
from .config import ConfigError, format_month, load_config
from .files import OutputPlaceError, atomic_file, check_output_place, write_text_atomically
from .population import FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER

__all__ = [
    "DecemberPanel", "SeedOutcome", "add_arguments", "assessment_summary", "assessment_units", "assessor_error",
    "check_arguments", "county_assessment", "exits_after", "headline", "last_review", "lookback_shares",
    "mean_range", "returns_after_exit", "run_seed", "target_deviations", "target_table", "validate", "yearly_flows",
    "main",
]

OFFICIAL_MAX_RATE = 0.02  #: county exit criteria: missed-poor and wrong-exit rates at most 2% (China Daily 2017-11-07)


def lookback_shares(events: pd.DataFrame, metrics: pd.DataFrame | None = None) -> dict[str, float]:
    """The look-back's removals and additions as shares of the register before it.

    In households (from ``events``); with ``metrics``, in people too: the people of the
    households removed (``removed_lookback_people``) and added (``added_lookback_people``)
    over the look-back's months, as shares of the people registered the month before it.
    """
    row = events[events["event"] == "lookback"].iloc[0]
    before = row["register_before"]
    out = {
        "register_before": int(before),
        "removed_share": row["removed"] / before,
        "added_share": row["added"] / before,
        "wrongly_removed_share_of_removed": row["wrongly_removed"] / max(row["removed"], 1),
    }
    if metrics is not None:
        month = metrics["month"]
        start, end = pd.Timestamp(f"{row['start']}-01"), pd.Timestamp(f"{row['end']}-01")
        window = metrics[(month >= start) & (month <= end)]
        previous = metrics[month < start]
        people_before = int(previous["registered_people"].iloc[-1]) if len(previous) else 0
        removed = int(window["removed_lookback_people"].sum())
        added = int(window["added_lookback_people"].sum())
        out.update({
            "register_people_before": people_before,
            "removed_people": removed,
            "added_people": added,
            "removed_people_share": removed / people_before if people_before else np.nan,
            "added_people_share": added / people_before if people_before else np.nan,
        })
    return out


def yearly_flows(metrics: pd.DataFrame, years=range(2014, 2020)) -> pd.DataFrame:
    """Per year: the registry's flows and the statistics' year-to-year flows, in households and people.

    The registry's: first registrations (newly identified), re-registrations after an
    exit (the registry's returns to poverty) and exits at reviews; the statistics'
    (December to December): newly poor, exits from poverty and returns to poverty; and the
    people of the population in December (``people``).
    """
    rows = []
    for year in years:
        m = metrics[metrics["year"] == year]
        if m.empty:
            continue
        dec = m.iloc[-1]
        rows.append({
            "year": year,
            "newly_identified": int(m["newly_identified"].sum()),
            "newly_identified_people": int(m["newly_identified_people"].sum()),
            "re_registered": int(m["re_registered"].sum()),
            "re_registered_people": int(m["re_registered_people"].sum()),
            "exits": int(m["exited"].sum()),
            "exits_people": int(m["exited_people"].sum()),
            "newly_poor_people": int(m["newly_poor_annual_people"].sum()),
            "exits_from_poverty_people": int(m["exits_from_poverty_annual_people"].sum()),
            "returns_to_poverty_people": int(m["returns_to_poverty_annual_people"].sum()),
            "newly_poor_share_of_people": m["newly_poor_annual_people"].sum() / dec["people"],
            "people": int(dec["people"]),
            "churn": float(dec["churn"]),
        })
    return pd.DataFrame(rows).set_index("year")


def assessment_units(village_county, village_start, county_province, min_households) -> np.ndarray:
    """The assessment unit of each county: consecutive counties of one province pooled to ``min_households``.

    Counties are taken in order and pooled, never across a change of province, until
    the unit holds at least ``min_households`` households; a county that alone holds
    that many is a unit by itself (a pool still short when one comes is closed there).
    A pool left short (at the province's end, or before such a county) is merged into
    the province's unit before it, or stays a unit by itself if the province has none
    before it.  Counties are numbered in village order (``village_county``, with the
    households of village ``v`` at ``village_start[v]:village_start[v + 1]``);
    ``county_province`` gives each county's province.  Returns int64 unit numbers,
    0, 1, ... in county order.
    """
    county_province = np.asarray(county_province)
    n_counties = county_province.shape[0]
    households = np.bincount(np.asarray(village_county, np.int64), weights=np.diff(np.asarray(village_start)),
                             minlength=n_counties)
    unit = np.empty(n_counties, np.int64)
    last = -1  #: the last unit opened
    c = 0
    while c < n_counties:  # one province's run of consecutive counties at a time
        end = c
        while end < n_counties and county_province[end] == county_province[c]:
            end += 1
        first_unit = last + 1  #: the province's first unit
        pool, pooled = [], 0
        for k in range(c, end + 1):
            alone = k < end and households[k] >= min_households
            if pool and (k == end or alone):  # a pool left short: into the province's previous unit, if any
                if last < first_unit:
                    last += 1
                unit[pool] = last
                pool, pooled = [], 0
            if k == end:
                break
            if alone:
                last += 1
                unit[k] = last
                continue
            pool.append(k)
            pooled += households[k]
            if pooled >= min_households:
                last += 1
                unit[pool] = last
                pool, pooled = [], 0
        c = end
    return unit


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def assessor_error(z_own, z_office, office_share):
    """The assessor's standard-normal error: ``sqrt(1 - share^2) z_own + share z_office``.

    ``office_share`` is the correlation between the assessor's error and the error of
    the office's own assessment (``z_office``); 0 makes them independent, 1 makes the
    assessor repeat the office's error.
    """
    return math.sqrt(1.0 - office_share * office_share) * z_own + office_share * z_office


STRATUM_REGISTERED = 0  #: on the register: in neither stratum
STRATUM_EXITED = 1  #: off the register, having exited it within the last 12 months
STRATUM_NONREGISTERED = 2  #: off the register, and not recently exited


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def _stratum(flags, exit_month, stored):
    if (flags & FLAG_REGISTERED) != 0:
        return STRATUM_REGISTERED
    if exit_month != NEVER and stored - exit_month < 12:
        return STRATUM_EXITED
    return STRATUM_NONREGISTERED


#: columns of :func:`_unit_sample`'s table, per stratum (exited first, then non-registered)
_PEOPLE, _SAMPLED, _SAMPLED_PEOPLE, _JUDGED_POOR_PEOPLE, _POOR_PEOPLE = range(5)


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def _unit_sample(flags, exit_month, size, net_income, village_start, village_county, county_unit, n_units, first_id,
                 month, line, review_month, people_target, assessor_sd, office_share, k0, k1, pa):
    """Per unit and stratum: people in it, households and people sampled, sampled people judged poor, truly poor.

    Returns int64 of shape (units, 2, 5): stratum 0 is the exited, 1 the non-registered;
    the last axis is ``_PEOPLE .. _POOR_PEOPLE``.  Each household of a stratum is
    sampled with probability ``min(1, people_target / people in its unit's stratum)``.
    """
    out = np.zeros((n_units, 2, 5), np.int64)
    stored = month - MONTH_ORIGIN
    for v in range(village_county.shape[0]):
        u = county_unit[village_county[v]]
        for i in range(village_start[v], village_start[v + 1]):
            s = _stratum(flags[i], exit_month[i], stored)
            if s != STRATUM_REGISTERED:
                out[u, s - 1, _PEOPLE] += np.int64(size[i])
    for v in range(village_county.shape[0]):
        u = county_unit[village_county[v]]
        for i in range(village_start[v], village_start[v + 1]):
            s = _stratum(flags[i], exit_month[i], stored)
            if s == STRATUM_REGISTERED:
                continue
            row = out[u, s - 1]
            share = min(1.0, people_target / row[_PEOPLE])
            gid = first_id + i
            u_sample, _, _, _ = rng.draw4(k0, k1, rng.STREAM_SAMPLE, gid, month, 0)
            if u_sample >= share:
                continue
            people = np.int64(size[i])
            row[_SAMPLED] += 1
            row[_SAMPLED_PEOPLE] += people
            if (flags[i] & FLAG_POOR) != 0:
                row[_POOR_PEOPLE] += people
            a0, a1, _, _ = rng.draw4(k0, k1, rng.STREAM_SAMPLE, gid, month, 1)
            z_own, _ = rng.box_muller(a0, a1)
            z_office = 0.0
            if review_month != NO_MONTH:
                r0, r1, _, _ = rng.draw4(k0, k1, rng.STREAM_REVIEW, gid, review_month, 1)
                z_office = assessment.office_error(k0, k1, gid, r0, r1, pa)  # its persistent part included
            z = assessor_error(z_own, z_office, office_share)
            if below_with_error(record_sum(net_income, i), line, assessor_sd, z):
                row[_JUDGED_POOR_PEOPLE] += people
    return out


def last_review(review_first: int, month: int) -> int:
    """The month of the last annual assessment at or before ``month`` (every 12 months from
    ``review_first``, e.g. the first exit assessment), or NO_MONTH when none has run by then or they are off."""
    if review_first == NO_MONTH or month < review_first:
        return NO_MONTH
    return review_first + 12 * ((month - review_first) // 12)


def county_assessment(sim, months: list[int], people_target: float = 500, min_households: int = 20_000,
                      assessor_sd: float = 0.20, office_share: float = 0.0,
                      after_month: Callable[[object, int], None] | None = None) -> pd.DataFrame:
    """Step ``sim`` (a :class:`povsim.Simulation`) to its end, running the county exit assessments in ``months``.

    The assessments as they were run (China 2016-2020, by third-party assessors):
    each county sampled two strata, households that **exited** the register in the
    last 12 months and **non-registered** households, about 500 people each
    (1,000-2,000 households a county in all: about 2,000 in Wanzhou in 2017, 63,000
    households in the 40 counties of 2017's first batch), and an assessor judged each
    sampled household.  The official rates are in people: wrong-exit rate = people of
    sampled exited households judged poor / people of sampled exited households;
    missed rate = the same for the non-registered; the exit criteria allowed at most
    2 % of each (:data:`OFFICIAL_MAX_RATE`).

    * **Units.** A real county holds about 100,000 rural households; the model's
      counties are a sample design and far smaller, so counties are pooled into
      assessment units of at least ``min_households`` households (an assumption;
      :func:`assessment_units`), and each unit is assessed as a county was.
    * **Strata and sample.** In each month of ``months`` (Decembers, after the month
      is simulated): exited = not registered and exited within the last 12 months;
      non-registered = the other households not registered.  Each household of a
      unit's stratum is sampled with probability ``min(1, people_target / people in
      the stratum)`` (a counter-based draw per household and month), so a stratum's
      expected sample is ``people_target`` people (the whole stratum where it holds fewer).
    * **The assessor.** Income is the household's 12-month per-capita net income
      record (:func:`povsim.components.poverty.record_sum`: the calendar year's in December); the assessor
      observes it times ``exp(assessor_sd x z)`` and judges the household poor if
      that is below the month's line (a non-positive income is judged poor).
      ``assessor_sd`` (0.20 log points) is an assumption: a third-party household
      survey's measurement error.  ``z`` (:func:`assessor_error`) mixes the
      assessor's own normal with the error of the office's last exit assessment at or
      before the month (the error it made, its persistent part included, or would
      have made for a household it did not assess), with correlation ``office_share``;
      before the first exit assessment, or without them, the office's error is 0 and
      the assessor's error is its own.

    Returns one row per (month, unit): ``month``, ``unit``, ``counties`` and
    ``households`` in the unit; per stratum the people in it (``exited_people``,
    ``nonregistered_people``) and the households and people sampled
    (``exited_sampled``, ``exited_people_sampled``, ``nonregistered_sampled``,
    ``nonregistered_people_sampled``); the official rates by the assessor's judgement
    (``wrong_exit_rate``, ``missed_rate``) and by true status (``wrong_exit_rate_true``,
    ``missed_rate_true``).  A rate is NaN where its stratum's sample is empty.
    ``sim`` is a whole population (a block of a split one would be pooled alone).

    ``after_month(sim, month)``, if given, is called after each month is simulated
    (e.g. :meth:`DecemberPanel.record`).  The table's ``attrs["assessment_s"]`` is the
    wall time the assessments themselves took (the sampling and judging, not the simulation).
    """
    if not people_target > 0:
        raise ValueError(f"people_target={people_target!r}: allowed people_target > 0 (people sampled per stratum)")
    if not (isinstance(min_households, (int, np.integer)) and min_households >= 1):
        raise ValueError(f"min_households={min_households!r}: allowed an integer >= 1 (households per assessment unit)")
    if not (assessor_sd >= 0 and math.isfinite(assessor_sd)):
        raise ValueError(f"assessor_sd={assessor_sd!r}: allowed a finite assessor_sd >= 0 (log points)")
    if not 0 <= office_share <= 1:
        raise ValueError(f"office_share={office_share!r}: allowed 0 <= office_share <= 1 "
                         "(correlation of the assessor's error with the office's)")
    pop = sim.population
    county_unit = assessment_units(pop.village_county, pop.village_start, pop.county_province, min_households)
    n_units = int(county_unit.max()) + 1 if county_unit.shape[0] else 0
    county_households = np.bincount(pop.village_county, weights=np.diff(pop.village_start), minlength=pop.n_counties)
    unit_counties = np.bincount(county_unit, minlength=n_units)
    unit_households = np.bincount(county_unit, weights=county_households, minlength=n_units).astype(np.int64)
    timeline = sim.timeline
    rows = []
    wanted = set(months)
    assessing = 0.0
    while not sim.done:
        m = sim.month
        sim.step()
        if after_month is not None:
            after_month(sim, m)
        if m not in wanted:
            continue
        t0 = time.perf_counter()
        hh = pop.households
        table = _unit_sample(
            hh.flags, hh.exit_month, hh.size, hh.net_income, pop.village_start, pop.village_county, county_unit,
            n_units, pop.first_id, m, float(timeline.lines[m - timeline.first]),
            last_review(sim.params.review.exit_first, m), float(people_target), float(assessor_sd),
            float(office_share), *sim.key, sim.params.assessment,
        )
        for u in range(n_units):
            exited, nonregistered = table[u]
            rows.append({
                "month": format_month(m), "unit": u, "counties": int(unit_counties[u]),
                "households": int(unit_households[u]),
                "exited_people": int(exited[_PEOPLE]),
                "exited_sampled": int(exited[_SAMPLED]), "exited_people_sampled": int(exited[_SAMPLED_PEOPLE]),
                "nonregistered_people": int(nonregistered[_PEOPLE]),
                "nonregistered_sampled": int(nonregistered[_SAMPLED]),
                "nonregistered_people_sampled": int(nonregistered[_SAMPLED_PEOPLE]),
                "wrong_exit_rate": _rate(exited[_JUDGED_POOR_PEOPLE], exited[_SAMPLED_PEOPLE]),
                "missed_rate": _rate(nonregistered[_JUDGED_POOR_PEOPLE], nonregistered[_SAMPLED_PEOPLE]),
                "wrong_exit_rate_true": _rate(exited[_POOR_PEOPLE], exited[_SAMPLED_PEOPLE]),
                "missed_rate_true": _rate(nonregistered[_POOR_PEOPLE], nonregistered[_SAMPLED_PEOPLE]),
            })
        assessing += time.perf_counter() - t0
    table = pd.DataFrame(rows)
    table.attrs["assessment_s"] = assessing
    return table


def _rate(poor_people, people) -> float:
    return int(poor_people) / int(people) if people else np.nan


def _share_over_official(rates: pd.Series) -> float:
    """Share of units (with a sample) whose rate is above the exit criteria's maximum."""
    rates = rates.dropna()
    return float((rates > OFFICIAL_MAX_RATE).mean()) if len(rates) else np.nan


def assessment_summary(units: pd.DataFrame, judgement: str = "assessor") -> pd.DataFrame:
    """Per month (cohort) of :func:`county_assessment`'s table, by the assessor's ``judgement``
    ("assessor") or by true status ("true"):

    * ``units``; each rate's median over units, maximum, and share of units above 2 %
      (:data:`OFFICIAL_MAX_RATE`);
    * ``share_units_zero_wrong_exits`` and ``share_units_zero_missed``: units whose
      rate is exactly 0, of the units with a sample in that stratum;
    * ``share_units_zero_both``: units with neither a wrong exit nor a missed poor
      household, and ``share_units_passing``: units with both rates at most 2 % (the
      exit criteria), each of the units with a sample in both strata.

    A share is NaN where no unit has the samples it needs.
    """
    if judgement not in ("assessor", "true"):
        raise ValueError(f"judgement={judgement!r}: allowed 'assessor' or 'true'")
    suffix = "_true" if judgement == "true" else ""
    wrong, missed = "wrong_exit_rate" + suffix, "missed_rate" + suffix
    rows = {}
    for month, here in units.groupby("month", sort=True):
        w, m = here[wrong], here[missed]
        both = w.notna() & m.notna()
        rows[month] = {
            "units": len(here),
            "wrong_exit_rate_median": w.median(),
            "wrong_exit_rate_max": w.max(),
            "share_units_wrong_exit_over_2pct": _share_over_official(w),
            "missed_rate_median": m.median(),
            "missed_rate_max": m.max(),
            "share_units_missed_over_2pct": _share_over_official(m),
            "share_units_zero_wrong_exits": _share(w.dropna() == 0),
            "share_units_zero_missed": _share(m.dropna() == 0),
            "share_units_zero_both": _share((w[both] == 0) & (m[both] == 0)),
            "share_units_passing": _share((w[both] <= OFFICIAL_MAX_RATE) & (m[both] <= OFFICIAL_MAX_RATE)),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "month"
    return out


def _share(hits: pd.Series) -> float:
    return float(hits.mean()) if len(hits) else np.nan


# --------------------------------------------------------------------------------------
# Panel-sense dynamics: every household's status each December
# --------------------------------------------------------------------------------------


class DecemberPanel:
    """Every household's poverty status (``FLAG_POOR``) and size in December of each of ``years``.

    Recorded while a simulation is stepped: pass :meth:`record` as
    :func:`county_assessment`'s ``after_month`` (or call it after each ``sim.step()``).
    ``poor`` is bool (years x households), ``size`` the households' sizes (years x
    households); a December not (yet) simulated stays all False and zero, and
    ``recorded[k]`` says whether year ``k``'s December was.
    """

    def __init__(self, sim, years):
        self.years = [int(y) for y in years]
        n = sim.population.n_households
        self.poor = np.zeros((len(self.years), n), np.bool_)
        self.size = np.zeros((len(self.years), n), sim.population.households.size.dtype)
        self.recorded = np.zeros(len(self.years), np.bool_)
        self._row = {y * 12 + 11: k for k, y in enumerate(self.years)}

    def record(self, sim, month: int) -> None:
        """Keep the households' status and size if ``month`` (just simulated) is one of the Decembers."""
        k = self._row.get(month)
        if k is None:
            return
        hh = sim.population.households
        np.not_equal(hh.flags & FLAG_POOR, 0, out=self.poor[k])
        self.size[k] = hh.size
        self.recorded[k] = True


def _panel_arrays(poor, size):
    poor = np.asarray(poor, np.bool_)
    size = np.asarray(size)
    if poor.ndim != 2 or size.shape != poor.shape:
        raise ValueError(f"poor {poor.shape} and size {size.shape}: allowed two arrays of one shape, years x households")
    return poor, size


def _people(size_t, which) -> float:
    """People in the households ``which`` (bool), of sizes ``size_t``."""
    return float(size_t[which].sum(dtype=np.float64))


def exits_after(poor, size, horizons=range(1, 6)) -> pd.Series:
    """Exits from poverty after k years, in people, pooled over the years.

    Of the people poor in December of year t (``poor[t]``), the share not poor in
    December of year t + k, pooled over every t with t + k among the years of
    ``poor`` (years x households, consecutive), each household weighted by its
    ``size`` in year t.  Returns the share for each k of ``horizons`` (NaN where
    no one is poor at a year with a year k later).
    """
    poor, size = _panel_arrays(poor, size)
    years = poor.shape[0]
    out = {}
    for k in horizons:
        base = left = 0.0
        for t in range(years - k):
            base += _people(size[t], poor[t])
            left += _people(size[t], poor[t] & ~poor[t + k])
        out[int(k)] = left / base if base > 0 else np.nan
    return pd.Series(out, name="share_not_poor", dtype=np.float64).rename_axis("k")


def returns_after_exit(poor, size, horizons=range(1, 5)) -> pd.Series:
    """Returns to poverty after an exit, in people, pooled over the years.

    Of the people who exited poverty in year t (poor in December t - 1, not poor in
    December t), the share poor again in December of t + k, pooled over every t with
    t - 1 and t + k among the years of ``poor`` (years x households, consecutive),
    each household weighted by its ``size`` in year t.  Returns the share for each k
    of ``horizons`` (NaN where no one exits at a year with a year k later).
    """
    poor, size = _panel_arrays(poor, size)
    years = poor.shape[0]
    out = {}
    for k in horizons:
        base = back = 0.0
        for t in range(1, years - k):
            exited = poor[t - 1] & ~poor[t]
            base += _people(size[t], exited)
            back += _people(size[t], exited & poor[t + k])
        out[int(k)] = back / base if base > 0 else np.nan
    return pd.Series(out, name="share_poor_again", dtype=np.float64).rename_axis("k")


# --------------------------------------------------------------------------------------
# Targets, headline numbers and summaries over seeds
# --------------------------------------------------------------------------------------


def target_deviations(model, targets, signed: bool = False) -> np.ndarray:
    """Each target's deviation in tolerances: ``(model - value) / tolerance``.

    ``model`` is one value per target (or an array with the targets on its last axis).
    A target with ``bound == "upper"`` (the official figure is a ceiling) counts only
    above its value: ``max(0, model - value) / tolerance``; ``signed=True`` gives the
    plain ``(model - value) / tolerance`` for every target (what the figure plots).
    """
    model = np.asarray(model, np.float64)
    value = np.array([t.value for t in targets], np.float64)
    tolerance = np.array([t.tolerance for t in targets], np.float64)
    dev = (model - value) / tolerance
    if signed:
        return dev
    upper = np.array([getattr(t, "bound", None) == "upper" for t in targets], np.bool_)
    return np.where(upper, np.maximum(dev, 0.0), dev)


def headline(metrics: pd.DataFrame, years=range(2013, 2021)) -> pd.DataFrame:
    """Per year: the December headcount rate (poor people / people) and the register's share of people."""
    rows = {}
    for year in years:
        dec = metrics[metrics["month"] == pd.Timestamp(f"{year:04d}-12-01")]
        if dec.empty:
            continue
        row = dec.iloc[0]
        people = float(row["people"])
        rows[int(year)] = {
            "headcount_rate": row["poor_people"] / people if people else np.nan,
            "registered_people_share": row["registered_people"] / people if people else np.nan,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "year"
    return out


def mean_range(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The mean, lowest and highest over ``frames`` (one per seed, of one index and numeric columns), cell by cell.

    NaN cells are left out (a cell NaN at every seed stays NaN).
    """
    if not frames:
        raise ValueError("no frames: allowed one frame per seed, at least one")
    first = frames[0]
    stack = np.stack([f.reindex(index=first.index, columns=first.columns).to_numpy(np.float64) for f in frames])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell NaN at every seed
        mean, low, high = np.nanmean(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
    return tuple(pd.DataFrame(a, index=first.index, columns=first.columns) for a in (mean, low, high))


DEFAULT_EXPERIMENT = Path("experiments/china_2014_2020.toml")
DEFAULT_TARGETS = Path("experiments/targets_china.toml")
DEFAULT_HOUSEHOLDS = 2_000_000
DEFAULT_SEEDS = 8
ASSESSMENT_YEARS = (2017, 2018, 2019)  #: the county exit assessments' cohorts, each December
EXIT_HORIZONS = range(1, 6)  #: k of :func:`exits_after`
RETURN_HORIZONS = range(1, 5)  #: k of :func:`returns_after_exit`
ONE_YEAR_EXIT_CFPS = 0.372  #: the CFPS one-year exit rate from poverty, a calibration target


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Declare the options of ``povsim validate`` (and ``python -m povsim.validate``) on ``parser``.

    Values are checked by :func:`check_arguments`, after parsing.
    """
    parser.add_argument("--experiment", type=Path, default=DEFAULT_EXPERIMENT, metavar="FILE",
                        help=f"the calibrated experiment file (default {DEFAULT_EXPERIMENT.as_posix()})")
    parser.add_argument("--targets", type=Path, default=DEFAULT_TARGETS, metavar="FILE",
                        help=f"the calibration targets file (default {DEFAULT_TARGETS.as_posix()})")
    parser.add_argument("--households", type=int, default=DEFAULT_HOUSEHOLDS, metavar="N",
                        help=f"households per run (default {DEFAULT_HOUSEHOLDS:,}: some 90 assessment units "
                        "of 20,000 households)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                        help=f"independent runs, seeds replicate_seeds(the file's seed, N) (default {DEFAULT_SEEDS}); "
                        "the report gives the mean and the range over them")
    parser.add_argument("--out", type=Path, default=Path("docs"), metavar="DIR",
                        help="folder of validation.md and figures/validation_targets.png (default docs)")
    parser.add_argument("--assessor-sd", type=float, default=0.20, metavar="SD",
                        help="SD of the log error of the exit assessments' assessor (log points, default 0.20)")
    parser.add_argument("--office-share", type=float, default=0.0, metavar="R",
                        help="correlation of the assessor's error with the office's at the last review, 0-1 "
                        "(default 0)")
    parser.add_argument("--min-households", type=int, default=20_000, metavar="N",
                        help="households an assessment unit (consecutive counties of one province) holds at least "
                        "(default 20,000)")
    return parser


def check_arguments(args: argparse.Namespace):
    """Check the options and read the files; return ``(config, targets)``.

    A bad value raises :class:`~povsim.config.ConfigError` naming the option, the value
    and what is allowed, before anything is simulated or written.
    """
    def integer(option, value, low, what):
        if not (isinstance(value, (int, np.integer)) and value >= low):
            raise ConfigError(f"{option} {value!r}: allowed an integer >= {low:,} ({what})")

    integer("--households", args.households, 1, "households per run")
    integer("--seeds", args.seeds, 1, "independent runs")
    integer("--min-households", args.min_households, 1, "households per assessment unit")
    if not (math.isfinite(args.assessor_sd) and args.assessor_sd >= 0):
        raise ConfigError(f"--assessor-sd {args.assessor_sd!r}: allowed a finite number >= 0 (log points)")
    if not 0 <= args.office_share <= 1:
        raise ConfigError(f"--office-share {args.office_share!r}: allowed a number from 0 to 1 (a correlation)")
    try:  # before anything is simulated: a file in the way, no permission, no room
        check_output_place(args.out)
    except OutputPlaceError as err:
        raise ConfigError(f"--out {str(args.out)!r}: {err}") from None
    try:
        cfg = load_config(args.experiment, overrides={"population.households": args.households})
    except ConfigError as err:
        raise ConfigError(f"--experiment {str(args.experiment)!r}: {err}") from None
    try:
        targets = load_targets(args.targets)
    except ConfigError as err:
        raise ConfigError(f"--targets {str(args.targets)!r}: {err}") from None
    return cfg, targets


@dataclass
class SeedOutcome:
    """What one seed's run gives the report."""

    seed: int
    model: np.ndarray  #: the model's value of each target, in the targets' order
    headline: pd.DataFrame  #: :func:`headline`
    flows: pd.DataFrame  #: :func:`yearly_flows`
    lookback: dict  #: :func:`lookback_shares`, households and people
    units: pd.DataFrame  #: :func:`county_assessment`'s table
    exits: pd.Series  #: :func:`exits_after`
    returns: pd.Series  #: :func:`returns_after_exit`
    wall_s: float  #: the whole run: building, simulating, assessing, recording
    assessment_s: float  #: of it, the county assessments' sampling and judging


def run_seed(cfg, targets, seed: int, min_households: int = 20_000, assessor_sd: float = 0.20,
             office_share: float = 0.0, assessment_years=ASSESSMENT_YEARS) -> SeedOutcome:
    """Run ``cfg`` at ``seed`` once: the county assessments in December of ``assessment_years`` and
    the December panel of every reported year, recorded as it is stepped; then the targets and outputs."""
    from .engine import Simulation

    t0 = time.perf_counter()
    sim = Simulation(cfg.model_copy(update={"seed": int(seed)}, deep=True))
    first_year = max(sim.timeline.start, sim.params.time.record_start) // 12  # a December with a status
    panel = DecemberPanel(sim, range(first_year, sim.timeline.end // 12 + 1))
    units = county_assessment(sim, [y * 12 + 11 for y in assessment_years], min_households=min_households,
                              assessor_sd=assessor_sd, office_share=office_share, after_month=panel.record)
    result = sim.run()  # the run is complete: this collects its result
    done = panel.recorded
    return SeedOutcome(
        seed=int(seed),
        model=model_moment(result.metrics, targets),
        headline=headline(result.metrics, panel.years),
        flows=yearly_flows(result.metrics),
        lookback=lookback_shares(result.events, result.metrics),
        units=units,
        exits=exits_after(panel.poor[done], panel.size[done], EXIT_HORIZONS),
        returns=returns_after_exit(panel.poor[done], panel.size[done], RETURN_HORIZONS),
        wall_s=time.perf_counter() - t0,
        assessment_s=float(units.attrs.get("assessment_s", 0.0)),
    )


def target_table(targets, model: np.ndarray) -> pd.DataFrame:
    """The targets against the model at several seeds (``model``: seeds x targets): the observed value,
    tolerance, bound, the model's mean, lowest and highest over the seeds, and the mean's deviation
    in tolerances (:func:`target_deviations`)."""
    model = np.atleast_2d(np.asarray(model, np.float64))
    with np.errstate(all="ignore"):
        mean = model.mean(axis=0)
    return pd.DataFrame({
        "observed": [t.value for t in targets],
        "tolerance": [t.tolerance for t in targets],
        "bound": ["upper" if getattr(t, "bound", None) == "upper" else "two-sided" for t in targets],
        "model mean": mean,
        "lowest": model.min(axis=0),
        "highest": model.max(axis=0),
        "deviation of mean (tolerances)": target_deviations(mean, targets),
        "source": [t.source for t in targets],
    }, index=pd.Index([t.name for t in targets], name="target"))


def _objective(deviations) -> float:
    """Sum of squared deviations; a NaN counts as a very large deviation (as in the calibration)."""
    deviations = np.asarray(deviations, np.float64)
    return float(np.sum(np.where(np.isfinite(deviations), deviations, 1e3) ** 2))


def _cell(mean: float, low: float, high: float, whole: bool, several: bool) -> str:
    if math.isnan(mean):
        return "-"
    fmt = (lambda v: f"{v:,.0f}") if whole else (lambda v: f"{v:.4g}")
    return f"{fmt(mean)} ({fmt(low)}–{fmt(high)})" if several else fmt(mean)


def _mean_range_table(frames: list[pd.DataFrame], columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Cells "mean (lowest–highest)" over ``frames`` (one per seed); ``columns`` picks and renames them."""
    if columns is not None:
        frames = [f[list(columns)].rename(columns=columns) for f in frames]
    mean, low, high = mean_range(frames)
    whole = {c: pd.api.types.is_integer_dtype(frames[0][c]) for c in frames[0].columns}
    out = pd.DataFrame(
        {c: [_cell(m, lo, hi, whole[c], len(frames) > 1) for m, lo, hi in zip(mean[c], low[c], high[c])]
         for c in mean.columns},
        index=mean.index,
    )
    out.index.name = frames[0].index.name
    return out


def _target_labels(targets) -> list[str]:
    return [t.name + (" (upper bound)" if getattr(t, "bound", None) == "upper" else "") for t in targets]


def validate(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> dict:
    """Run the validation the options ``args`` (of :func:`add_arguments`) describe and write its page.

    Checks the options first (:func:`check_arguments`: ConfigError before anything runs);
    then runs every seed, draws the figure, writes ``validation.md``.  Returns the paths
    written (``page``, ``figure``) and the wall time (``wall_s``, every seed included).
    """
    cfg, targets = check_arguments(args)
    t0 = time.perf_counter()
    import povsim

    from .components.poverty import describe as describe_poverty
    from .experiments import replicate_seeds
    from .plots import plot_target_deviations

    seeds = replicate_seeds(cfg.seed, args.seeds)
    outcomes: list[SeedOutcome] = []
    for k, seed in enumerate(seeds):
        outcomes.append(run_seed(cfg, targets, seed, min_households=args.min_households,
                                 assessor_sd=args.assessor_sd, office_share=args.office_share))
        if log is not None:
            o = outcomes[-1]
            log(f"seed {k + 1}/{len(seeds)} ({seed}): {o.wall_s:.1f} s (county assessments {o.assessment_s:.2f} s)")
    n = len(outcomes)
    several = n > 1
    spread = f"mean over {n} seeds, with the lowest and highest seed in brackets" if several else "one seed"

    model = np.stack([o.model for o in outcomes])  # seeds x targets
    table = target_table(targets, model)
    objective = _objective(table["deviation of mean (tolerances)"])
    signed = pd.DataFrame(target_deviations(model, targets, signed=True).T, index=_target_labels(targets),
                          columns=[f"seed {k}" for k in range(n)])
    upper = [getattr(t, "bound", None) == "upper" for t in targets]

    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    figure = figures / "validation_targets.png"
    title = (f"povsim against its calibration targets\n{args.experiment.name}, {args.households:,} households, "
             + (f"{n} seeds" if several else "one seed") + f", povsim {povsim.__version__}")
    with atomic_file(figure) as tmp:
        plot_target_deviations(signed, title=title, upper=upper).savefig(tmp, format="png", dpi=120)

    heads = _mean_range_table([o.headline for o in outcomes], {
        "headcount_rate": "headcount rate (poor people / people)",
        "registered_people_share": "registered people / people",
    })
    lookback_rows = [pd.DataFrame([o.lookback]).rename(index={0: "look-back"}) for o in outcomes]
    lookback = _mean_range_table(lookback_rows, {
            "register_before": "register before (households)",
            "removed_share": "removed (share of register)",
            "added_share": "added (share of register)",
            "wrongly_removed_share_of_removed": "removed while truly poor (share of removed)",
        })
    lookback_people = _mean_range_table(lookback_rows, {
            "register_people_before": "register before (people)",
            "removed_people": "people removed",
            "added_people": "people added",
            "removed_people_share": "removed (share of registered people)",
            "added_people_share": "added (share of registered people)",
        })
    for f in (lookback, lookback_people):
        f.index.name = ""
    flows_people = _mean_range_table([o.flows for o in outcomes], {
        "newly_identified_people": "registered for the first time",
        "re_registered_people": "registered again after an exit",
        "exits_people": "exited the register",
        "newly_poor_people": "newly poor",
        "exits_from_poverty_people": "out of poverty",
        "returns_to_poverty_people": "back into poverty",
    })
    flows_shares = _mean_range_table([_flows_per_people(o) for o in outcomes])
    samples = _mean_range_table([o.units.groupby("month").agg(
        units=("unit", "count"),
        counties_per_unit=("counties", "mean"),
        households_per_unit=("households", "mean"),
        exited_households_sampled=("exited_sampled", "mean"),
        exited_people_sampled=("exited_people_sampled", "mean"),
        nonregistered_households_sampled=("nonregistered_sampled", "mean"),
        nonregistered_people_sampled=("nonregistered_people_sampled", "mean"),
    ) for o in outcomes])
    rate_columns = {
        "wrong_exit_rate_median": "wrong-exit rate, median", "wrong_exit_rate_max": "wrong-exit rate, max",
        "share_units_wrong_exit_over_2pct": "units over 2 % wrong exits",
        "missed_rate_median": "missed rate, median", "missed_rate_max": "missed rate, max",
        "share_units_missed_over_2pct": "units over 2 % missed",
    }
    unit_columns = {
        "share_units_zero_wrong_exits": "no wrong exit", "share_units_zero_missed": "no missed poor",
        "share_units_zero_both": "neither", "share_units_passing": "both at most 2 % (passing)",
    }
    summaries = {j: [assessment_summary(o.units, j) for o in outcomes] for j in ("assessor", "true")}
    rates = {j: _mean_range_table(summaries[j], rate_columns) for j in summaries}
    passing = {j: _mean_range_table(summaries[j], unit_columns) for j in summaries}
    exits = _mean_range_table([o.exits.rename("share not poor k years later").to_frame() for o in outcomes])
    returns = _mean_range_table([o.returns.rename("share poor again k years later").to_frame() for o in outcomes])
    panel_years = list(outcomes[0].headline.index)
    assessment_s = [o.assessment_s for o in outcomes]
    run_s = [o.wall_s for o in outcomes]
    wall = time.perf_counter() - t0

    text = f"""# Validation

Generated by `povsim validate` (povsim {povsim.__version__}): the calibrated experiment
`{args.experiment.as_posix()}` at {args.households:,} households (each standing for about
{200e6 / args.households:,.0f} of rural China's ~200 million households), run at {n} independent
seed{'s' if several else ''}: `replicate_seeds({cfg.seed}, {n})` = {', '.join(str(s) for s in seeds)}.
Poverty is measured on {describe_poverty(cfg.poverty)}.
{"Every number below is the mean over the seeds, with the lowest and highest seed in brackets (a range over "
 f"{n} seeds, not a confidence interval)." if several else "Every number below is from the one seed."}
Making this page took {wall:,.0f} s of wall time on {nb.get_num_threads()} thread{'s' if nb.get_num_threads() != 1 else ''}
({n} runs of {np.mean(run_s):,.1f} s on average, the fastest {min(run_s):,.1f} s, each with its county assessments and
December panel recorded as it ran; of each run, the assessments' sampling and judging took
{np.mean(assessment_s):.2f} s on average). The first run after the sources change also compiles the engine.

## The model against its calibration targets

povsim's defaults marked "fitted" (`povsim params`; docs/calibration.md) come from
`povsim calibrate experiments/calibration_china.toml` (simulated method of moments,
weights 1/tolerance², common random numbers, at 100,000 households and one seed; here
the model runs at more households and other seeds, so the objective differs from the fit's). Each target's deviation is
(model − observed) / tolerance, of the model's mean over the seeds; a target with an
upper bound (the official figure is a ceiling) counts only above it. Objective here:
{objective:.2f} (sum of squared deviations of the mean, in tolerances, over {len(targets)} targets).

![model against targets: deviation in tolerances](figures/validation_targets.png)

The figure: each target's deviation from the official figure in tolerances; the point is the
mean over the seeds, the bar runs from the lowest to the highest seed; the shaded band is
±1 tolerance (and, for an upper bound, everything below the figure).

{_table(table)}

### Headline numbers, December {panel_years[0]}-{panel_years[-1]}

The December headcount rate (2013-2019 are calibration targets above; 2020 is not) and the
register's share of people; {spread}:

{_table(heads)}

## Predictions the model was not fitted to

These are outputs, not inputs: nothing below was used in the calibration, and nothing in these
predictions was tuned to them (one exception, said where it comes: the one-year exit from
poverty). They are for holding against published figures separately. Each is the {spread}.

### The look-back (2015-08 to 2016-06)

In households:

{_table(lookback)}

In people:

{_table(lookback_people)}

How to read it: the model's look-back corrects the registration, as the 2015-16 look-back
"re-compared the 2014 registration data": it removes a registered household on clear evidence
(an excluding asset or position, or a registration basis assessed well above the line), adds
the clearly poor it missed who are still poor, and leaves households that have risen out of
poverty since registration to the exit process (docs/model.md, section 7.7). Removals and
additions are predictions: the shares holding excluding evidence and the look-back's
thresholds are assumptions, not fitted to the look-back's published counts.

### Flows per year, 2014-2019, in people

The registry's flows (people in households registered for the first time, registered again
after an exit, and exited the register) and the statistics' year-to-year flows (newly poor,
out of poverty and back into poverty, December to December). The official counterparts are
the registry's annual counts of newly identified and returned-to-poverty people and the NBS's
year-end headcounts. People in the model's population:

{_table(flows_people)}

The same per 1,000 people of the population (December), with the register's churn (entries
plus removals over the year / the register the December before):

{_table(flows_shares)}

### County exit assessments, by cohort: December 2017, 2018 and 2019

The county exit assessments (2016-2020, by third-party assessors) sampled two strata
in each county: households that exited the register in the last 12 months, and
non-registered households, about 500 people each (1,000-2,000 households a county in
all; about 2,000 in Wanzhou in 2017, 63,000 households in the 40 counties of 2017's first
batch); an assessor judged each sampled household. Official rates, in people:
wrong-exit rate = people of sampled exited households judged poor / people of sampled
exited households; missed rate = the same for the non-registered. The exit criteria
allowed at most {OFFICIAL_MAX_RATE:.0%} of each (China Daily, 2017-11-07).

The model does the same each December, after the month is simulated, at every seed:

* **Assessment units.** A real county holds about 100,000 rural households; the
  experiment's counties are a sample design and far smaller, so consecutive counties
  of one province are pooled into units of at least {args.min_households:,} households
  (an assumption; a province's short remainder joins its previous unit), and each unit
  is assessed as a county was.
* **Strata and sample.** Exited: off the register, having exited it within the last
  12 months (each December's cohort of exits); non-registered: every other household off
  the register. Each household of a unit's stratum is sampled with probability
  min(1, 500 / people in the stratum), so a stratum's expected sample is 500 people (the
  whole stratum where it holds fewer).
* **The assessor.** The assessor observes the household's per-capita net income of the
  calendar year with a log-normal error of SD {args.assessor_sd:g} log points (an
  assumption: a third-party household survey) and judges it poor below the year's line.
  The error's correlation with the office's own error at the last exit assessment is
  {args.office_share:g}.

Sample per unit (means over units):

{_table(samples)}

Rates by the assessor's judgement (what an assessment reports): median over units,
maximum, and share of units above {OFFICIAL_MAX_RATE:.0%}:

{_table(rates["assessor"])}

The same rates by true status (what a perfect assessor would report):

{_table(rates["true"])}

Shares of units with no wrong exit, with no missed poor household, with neither, and with
both rates at most {OFFICIAL_MAX_RATE:.0%} (passing the exit criteria), of the units with a
sample in the strata concerned; by the assessor's judgement:

{_table(passing["assessor"])}

By true status:

{_table(passing["true"])}

### Poverty dynamics in the panel sense, {panel_years[0]}-{panel_years[-1]}

From every household's poverty status and size each December (recorded as the simulation
runs), in people:

* **Exits from poverty after k years:** of the people poor in December of year t, the share not
  poor in December of t + k, pooled over every t with t + k in {panel_years[0]}-{panel_years[-1]}.
  The one-year exit (k = 1) is also a calibration target (the CFPS one-year exit rate,
  {ONE_YEAR_EXIT_CFPS:.1%}); k = 2 to 5 are predictions.

{_table(exits)}

* **Returns after an exit:** of the people who exited poverty in year t (poor in December t − 1,
  not poor in December t), the share poor again in December of t + k, pooled likewise. All
  predictions.

{_table(returns)}
"""
    page = write_text_atomically(args.out / "validation.md", text)
    return {"page": page, "figure": figure, "wall_s": time.perf_counter() - t0}


def _flows_per_people(o: SeedOutcome) -> pd.DataFrame:
    """A seed's yearly flows per 1,000 people of the population in December, with the register's churn."""
    flows = o.flows
    people = flows["people"]
    return pd.DataFrame({
        "registered for the first time": 1000 * flows["newly_identified_people"] / people,
        "registered again after an exit": 1000 * flows["re_registered_people"] / people,
        "exited the register": 1000 * flows["exits_people"] / people,
        "newly poor": 1000 * flows["newly_poor_people"] / people,
        "out of poverty": 1000 * flows["exits_from_poverty_people"] / people,
        "back into poverty": 1000 * flows["returns_to_poverty_people"] / people,
        "register churn": flows["churn"],
    }, index=flows.index)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m povsim.validate", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        done = validate(args, log=lambda text: print(text, file=sys.stderr, flush=True))
    except ConfigError as err:
        print(f"{ap.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {done['page']} and {done['figure']} in {done['wall_s']:.0f} s")
    return 0


def _table(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (no extra dependency): integers in full, other numbers to 4 digits."""
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    integer = [pd.api.types.is_integer_dtype(df[c]) for c in df.columns]
    for idx, *values in df.itertuples(name=None):
        cells = [str(idx)]
        for v, whole in zip(values, integer):
            if whole:
                cells.append(f"{int(v):,}")
            elif isinstance(v, float):
                cells.append("-" if v != v else f"{v:.4g}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
