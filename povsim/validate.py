"""Validation: the calibrated model against its targets, and predictions it was not fitted to.

This module owns docs/validation.md.  ``python -m povsim.validate`` runs the
calibrated China experiment once and writes:

* the model against each calibration target (a table and a figure);
* predictions the model was **not** fitted to, for holding against published
  figures separately: the look-back's removals and additions as shares of the
  register; new entries and returns to poverty per year 2016-2019; and each
  county's missed-poor rate and wrong-exit rate under the official definitions,
  from a sample of about 1,000 households per county in December 2017, 2018
  and 2019, as the exit assessments did.

Nothing here feeds back into the calibration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd

from . import rng
from .calibrate import load_targets, model_moment
from .config import format_month, load_config
from .files import atomic_file, write_text_atomically
from .population import FLAG_POOR, FLAG_REGISTERED, MONTH_ORIGIN, NEVER

__all__ = ["county_assessment", "lookback_shares", "yearly_flows", "main"]

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


def yearly_flows(metrics: pd.DataFrame, years=range(2016, 2020)) -> pd.DataFrame:
    """Per year: entries onto the register, exits, returns to poverty, as counts and shares."""
    rows = []
    for year in years:
        m = metrics[metrics["year"] == year]
        dec = m.iloc[-1]
        entries = m[[c for c in m.columns if c.startswith("entered_")]].to_numpy().sum()
        rows.append({
            "year": year,
            "entries": int(entries),
            "entries_share_of_register": entries / max(dec["registered"], 1),
            "exits": int(m["exited"].sum()),
            "returns_to_poverty": int(m["return_to_poverty"].sum()),
            "returns_share_of_exits": m["return_to_poverty"].sum() / max(m["exited"].sum(), 1),
            "newly_poor_share_of_households": m["newly_poor"].sum() / dec["households"],
        })
    return pd.DataFrame(rows).set_index("year")


@nb.njit(cache=True)
def _county_sample(flags, exit_month, village_start, village_county, n_counties, month, sample, k0, k1):
    """Per county: sampled, unregistered, poor unregistered, recently exited, poor recently exited."""
    out = np.zeros((n_counties, 5), np.int64)
    counts = np.zeros(n_counties, np.int64)
    for v in range(village_county.shape[0]):
        counts[village_county[v]] += village_start[v + 1] - village_start[v]
    stored = month - MONTH_ORIGIN
    for v in range(village_county.shape[0]):
        c = village_county[v]
        share = min(1.0, sample / max(counts[c], 1))
        for i in range(village_start[v], village_start[v + 1]):
            u, _, _, _ = rng.draw4(k0, k1, rng.STREAM_SAMPLE, i, month, 0)
            if u >= share:
                continue
            registered = (flags[i] & FLAG_REGISTERED) != 0
            poor = (flags[i] & FLAG_POOR) != 0
            out[c, 0] += 1
            if not registered:
                out[c, 1] += 1
                if poor:
                    out[c, 2] += 1
            exited = exit_month[i] != NEVER and stored - exit_month[i] < 12 and not registered
            if exited:
                out[c, 3] += 1
                if poor:
                    out[c, 4] += 1
    return out


def county_assessment(sim, months: list[int], sample: int = 1000) -> pd.DataFrame:
    """Step ``sim`` (a :class:`povsim.Simulation`) to its end, sampling each county in ``months``.

    About ``sample`` households per county are drawn (a counter-based random sample).
    Official definitions: missed rate = poor not registered / not registered in the
    sample; wrong-exit rate = still poor / exited in the last 12 months in the sample.
    """
    pop = sim.population
    rows = []
    wanted = set(months)
    while not sim.done:
        m = sim.month
        sim.step()
        if m in wanted:
            hh = pop.households
            table = _county_sample(hh.flags, hh.exit_month, pop.village_start, pop.village_county, pop.n_counties,
                                   m, sample, *sim.key)
            for c in range(pop.n_counties):
                n, unreg, missed, exited, wrong = table[c]
                rows.append({
                    "month": format_month(m), "county": c, "sampled": int(n),
                    "missed_rate": missed / unreg if unreg else np.nan,
                    "wrong_exit_rate": wrong / exited if exited else np.nan,
                    "exited_sampled": int(exited),
                })
    return pd.DataFrame(rows)


def _targets_figure(table: pd.DataFrame):
    from .plots import plot_targets

    return plot_targets(table, {"model": "model (calibrated)"}, title="povsim against its calibration targets",
                        target_label="official ± tolerance")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m povsim.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", type=Path, default=Path("experiments/china_2014_2020.toml"))
    ap.add_argument("--targets", type=Path, default=Path("experiments/targets_china.toml"))
    ap.add_argument("--households", type=int, default=2_000_000, help="enough for some 27 counties of 75,000")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args(argv)

    import povsim

    from .engine import Simulation

    cfg = load_config(args.experiment, overrides={"population.households": args.households})
    sim = Simulation(cfg)
    counties = county_assessment(sim, [y * 12 + 11 for y in (2017, 2018, 2019)])
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
    per_year = counties.groupby("month").agg(
        counties=("county", "count"),
        missed_rate_median=("missed_rate", "median"),
        missed_rate_max=("missed_rate", "max"),
        share_counties_missed_over_2pct=("missed_rate", lambda s: float((s > OFFICIAL_MAX_RATE).mean())),
        wrong_exit_rate_median=("wrong_exit_rate", "median"),
        wrong_exit_rate_max=("wrong_exit_rate", "max"),
        share_counties_wrong_exit_over_2pct=("wrong_exit_rate", lambda s: float((s > OFFICIAL_MAX_RATE).mean())),
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

How to read it: the model's look-back re-assesses each registered household's *current*
income and removes every household assessed at or above the line. By 2015-16 many households
registered in 2014 had risen above the line with two years of income growth, so the model
removes them here; a re-check that only corrected errors made at registration, moving
households that had since risen out of poverty to "exited" through the annual process instead,
would remove fewer.

### Entries and returns to poverty, 2016-2019

{_table(flows)}

### County exit assessments, December 2017-2019

About 1,000 households sampled per county (a counter-based random sample), as the
county exit assessments did. Official definitions: missed-poor rate = poor not registered
/ not registered in the sample; wrong-exit rate = still poor / exited in the last 12
months in the sample. The exit criteria allowed at most {OFFICIAL_MAX_RATE:.0%} of each.

{_table(per_year)}
"""
    write_text_atomically(args.out / "validation.md", text)
    print(f"wrote {args.out / 'validation.md'} and {figures / 'validation_targets.png'}")
    return 0


def _table(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (no extra dependency)."""
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        cells = [str(idx)]
        for v in row:
            if isinstance(v, float):
                cells.append("-" if v != v else f"{v:.4g}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
