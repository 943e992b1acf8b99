"""Validation: the calibrated model against its targets, and predictions it was not fitted to.

This module owns docs/validation.md.  ``python -m povsim.validate`` runs the
calibrated China experiment once and writes:

* the model against each calibration target (a table and a figure);
* predictions the model was **not** fitted to, for holding against published
  figures separately: the look-back's removals and additions as shares of the
  register; new entries and returns to poverty per year 2016-2019; and the
  county exit assessments' wrong-exit and missed rates under the official
  definitions, in December 2017, 2018 and 2019: two strata (recently exited and
  non-registered households) of about 500 people each, sampled per assessment
  unit and judged by an assessor, as the third-party assessments did.

Nothing here feeds back into the calibration.
"""

from __future__ import annotations

import argparse
import math
import sys
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
from .config import format_month, load_config
from .files import atomic_file, write_text_atomically
from .population import FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER

__all__ = [
    "assessment_summary", "assessment_units", "assessor_error", "county_assessment", "last_review",
    "lookback_shares", "yearly_flows", "main",
]

OFFICIAL_MAX_RATE = 0.02  #: county exit criteria: missed-poor and wrong-exit rates at most 2% (China Daily 2017-11-07)


def lookback_shares(events: pd.DataFrame) -> dict[str, float]:
    """The look-back's removals and additions as shares of the register before it."""
    row = events[events["event"] == "lookback"].iloc[0]
    before = row["register_before"]
    return {
        "register_before": int(before),
        "removed_share": row["removed"] / before,
        "added_share": row["added"] / before,
        "wrongly_removed_share_of_removed": row["wrongly_removed"] / max(row["removed"], 1),
    }


def yearly_flows(metrics: pd.DataFrame, years=range(2014, 2020)) -> pd.DataFrame:
    """Per year: the registry's flows and the statistics' year-to-year flows, in households and people.

    The registry's: first registrations (newly identified), re-registrations after an
    exit (the registry's returns to poverty) and exits at reviews; the statistics'
    (December to December): newly poor, exits from poverty and returns to poverty.
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


@nb.njit(cache=True, inline="always", error_model="numpy")
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


@nb.njit(cache=True, inline="always", error_model="numpy")
def _stratum(flags, exit_month, stored):
    if (flags & FLAG_REGISTERED) != 0:
        return STRATUM_REGISTERED
    if exit_month != NEVER and stored - exit_month < 12:
        return STRATUM_EXITED
    return STRATUM_NONREGISTERED


#: columns of :func:`_unit_sample`'s table, per stratum (exited first, then non-registered)
_PEOPLE, _SAMPLED, _SAMPLED_PEOPLE, _JUDGED_POOR_PEOPLE, _POOR_PEOPLE = range(5)


@nb.njit(cache=True, error_model="numpy")
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
                      assessor_sd: float = 0.20, office_share: float = 0.0) -> pd.DataFrame:
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
    while not sim.done:
        m = sim.month
        sim.step()
        if m not in wanted:
            continue
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
    return pd.DataFrame(rows)


def _rate(poor_people, people) -> float:
    return int(poor_people) / int(people) if people else np.nan


def _share_over_official(rates: pd.Series) -> float:
    """Share of units (with a sample) whose rate is above the exit criteria's maximum."""
    rates = rates.dropna()
    return float((rates > OFFICIAL_MAX_RATE).mean()) if len(rates) else np.nan


def assessment_summary(units: pd.DataFrame, judgement: str = "assessor") -> pd.DataFrame:
    """Per month of :func:`county_assessment`'s table: both rates' median over units, maximum, and share
    of units above 2 %, by the assessor's ``judgement`` ("assessor") or by true status ("true")."""
    if judgement not in ("assessor", "true"):
        raise ValueError(f"judgement={judgement!r}: allowed 'assessor' or 'true'")
    suffix = "_true" if judgement == "true" else ""
    wrong, missed = "wrong_exit_rate" + suffix, "missed_rate" + suffix
    return units.groupby("month").agg(
        units=("unit", "count"),
        wrong_exit_rate_median=(wrong, "median"),
        wrong_exit_rate_max=(wrong, "max"),
        share_units_wrong_exit_over_2pct=(wrong, _share_over_official),
        missed_rate_median=(missed, "median"),
        missed_rate_max=(missed, "max"),
        share_units_missed_over_2pct=(missed, _share_over_official),
    )


def _targets_figure(table: pd.DataFrame):
    from .plots import plot_targets

    return plot_targets(table, {"model": "model (calibrated)"}, title="povsim against its calibration targets",
                        target_label="official ± tolerance")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m povsim.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", type=Path, default=Path("experiments/china_2014_2020.toml"))
    ap.add_argument("--targets", type=Path, default=Path("experiments/targets_china.toml"))
    ap.add_argument("--households", type=int, default=2_000_000,
                    help="enough for some 90 assessment units of 20,000 households")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--assessor-sd", type=float, default=0.20,
                    help="SD of the log error of the exit assessments' assessor (log points)")
    ap.add_argument("--office-share", type=float, default=0.0,
                    help="correlation of the assessor's error with the office's at the last review, 0-1")
    ap.add_argument("--min-households", type=int, default=20_000,
                    help="households an assessment unit (consecutive counties of one province) holds at least")
    args = ap.parse_args(argv)

    import povsim

    from .components.poverty import describe as describe_poverty
    from .engine import Simulation

    cfg = load_config(args.experiment, overrides={"population.households": args.households})
    sim = Simulation(cfg)
    units = county_assessment(sim, [y * 12 + 11 for y in (2017, 2018, 2019)], min_households=args.min_households,
                              assessor_sd=args.assessor_sd, office_share=args.office_share)
    result = sim.run()  # the run is complete: this collects its result
    targets = load_targets(args.targets)
    model = model_moment(result.metrics, targets)
    table = pd.DataFrame({
        "observed": [t.value for t in targets], "tolerance": [t.tolerance for t in targets], "model": model,
        "deviation (tolerances)": (model - np.array([t.value for t in targets])) / np.array([t.tolerance for t in targets]),
        "source": [t.source for t in targets],
    }, index=pd.Index([t.name for t in targets], name="target"))
    lookback = lookback_shares(result.events)
    flows = yearly_flows(result.metrics)
    judged = assessment_summary(units, "assessor")
    true = assessment_summary(units, "true")
    samples = units.groupby("month").agg(
        units=("unit", "count"),
        counties_per_unit=("counties", "mean"),
        households_per_unit=("households", "mean"),
        exited_households_sampled=("exited_sampled", "mean"),
        exited_people_sampled=("exited_people_sampled", "mean"),
        nonregistered_households_sampled=("nonregistered_sampled", "mean"),
        nonregistered_people_sampled=("nonregistered_people_sampled", "mean"),
    )

    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    with atomic_file(figures / "validation_targets.png") as tmp:
        _targets_figure(table).savefig(tmp, format="png", dpi=120)

    objective = float(np.sum(np.where(np.isfinite(table["deviation (tolerances)"]), table["deviation (tolerances)"], 1e3) ** 2))
    text = f"""# Validation

Generated by `python -m povsim.validate` (povsim {povsim.__version__}): the calibrated experiment
`{args.experiment.as_posix()}` at {args.households:,} households (each standing for about
{200e6 / args.households:,.0f} of rural China's ~200 million households), seed {cfg.seed}.
Poverty is measured on {describe_poverty(cfg.poverty)}.

## The model against its calibration targets

The parameters in `experiments/china_2014_2020.toml` marked "fitted" come from
`povsim calibrate experiments/calibration_china.toml` (simulated method of moments,
weights 1/tolerance², common random numbers). Objective here: {objective:.2f}
(sum of squared deviations in tolerances over {len(targets)} targets).

![model against targets](figures/validation_targets.png)

{_table(table)}

## Predictions the model was not fitted to

These are outputs, not inputs: nothing below was used in the calibration, and nothing
was tuned to them. They are for holding against published figures separately.

### The look-back (2015-08 to 2016-06)

| register before | removed (share of register) | added (share of register) | removed while truly poor (share of removed) |
|---|---|---|---|
| {lookback['register_before']:,} | {lookback['removed_share']:.3f} | {lookback['added_share']:.3f} | {lookback['wrongly_removed_share_of_removed']:.3f} |

How to read it: the model's look-back corrects the registration, as the 2015-16 look-back
"re-compared the 2014 registration data": it removes a registered household on clear evidence
(an excluding asset or position, or a registration basis assessed well above the line), adds
the clearly poor it missed who are still poor, and leaves households that have risen out of
poverty since registration to the exit process (docs/model.md, section 7.7). Removals and
additions are predictions: the shares holding excluding evidence and the look-back's
thresholds are assumptions, not fitted to the look-back's published counts.

### Flows per year, 2014-2019

The registry's flows (households registered for the first time, registered again after an
exit, and exited the register) and the statistics' year-to-year flows in people (newly poor,
out of poverty and back into poverty, December to December), with the register's churn
(entries plus removals over the year / the register the December before). The official
counterparts are the registry's annual counts of newly identified and returned-to-poverty
people and the NBS's year-end headcounts.

{_table(flows)}

### County exit assessments, December 2017-2019

The county exit assessments (2016-2020, by third-party assessors) sampled two strata
in each county: households that exited the register in the last 12 months, and
non-registered households, about 500 people each (1,000-2,000 households a county in
all; about 2,000 in Wanzhou in 2017, 63,000 households in the 40 counties of 2017's first
batch); an assessor judged each sampled household. Official rates, in people:
wrong-exit rate = people of sampled exited households judged poor / people of sampled
exited households; missed rate = the same for the non-registered. The exit criteria
allowed at most {OFFICIAL_MAX_RATE:.0%} of each (China Daily, 2017-11-07).

The model does the same each December, after the month is simulated:

* **Assessment units.** A real county holds about 100,000 rural households; the
  experiment's counties are a sample design and far smaller, so consecutive counties
  of one province are pooled into units of at least {args.min_households:,} households
  (an assumption; a province's short remainder joins its previous unit), and each unit
  is assessed as a county was.
* **Strata and sample.** Exited: off the register, having exited it within the last
  12 months; non-registered: every other household off the register. Each household
  of a unit's stratum is sampled with probability min(1, 500 / people in the stratum),
  so a stratum's expected sample is 500 people (the whole stratum where it holds fewer).
* **The assessor.** The assessor observes the household's per-capita net income of the
  calendar year with a log-normal error of SD {args.assessor_sd:g} log points (an
  assumption: a third-party household survey) and judges it poor below the year's line.
  The error's correlation with the office's own error at the last exit assessment is
  {args.office_share:g}.

Sample per unit (means over units):

{_table(samples)}

Rates by the assessor's judgement (what an assessment reports): median over units,
maximum, and share of units above {OFFICIAL_MAX_RATE:.0%}:

{_table(judged)}

The same rates by true status (what a perfect assessor would report):

{_table(true)}
"""
    write_text_atomically(args.out / "validation.md", text)
    print(f"wrote {args.out / 'validation.md'} and {figures / 'validation_targets.png'}")
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
