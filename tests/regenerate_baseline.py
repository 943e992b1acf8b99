"""Regenerate the saved baseline in ``tests/baseline/`` — only on purpose.

    python tests/regenerate_baseline.py

``tests/test_baseline.py`` requires a fresh run of a small fixed config to
reproduce ``tests/baseline/metrics.csv``, ``events.csv`` and ``delays.csv``
exactly.  The config is the **default model** — China's rules 2014-2020: quota
registration in 2014-10 on the survey of 2013-12, exits on stable income from
2014-12, the look-back 2015-08 to 2016-06, annual reviews from 2017-10, the
self-declaration, cadre and hotline channels from 2017-01 and the sector-data
channel from 2018-01 — with 2,000 households, seed 7, one burn-in year and the
full default period 2013-2020.  That test failing means the
model's output changed.

Regenerate the baseline **only** when the change is intended: a change to the
model's rules, a parameter's default, the population builder, the metrics, or a
deliberate change to how random numbers are drawn.  Say in the commit message
what changed and why the numbers moved.  Never regenerate it to make a failure
you do not understand go away: an unexplained change (a different result for
the same seed, a dependency upgrade that moves floats, a thread-count
dependence) is a bug to find, not a baseline to refresh.

History: first generated for povsim 0.1 (one-time threshold registration only);
regenerated when the model gained the identification rules (quota registration,
look-back, annual reviews, discovery channels, verification, support, cost) and
they became the defaults; rewritten with the metrics' columns in the order the
components declare them (every cell unchanged, checked cell by cell), when the
model was assembled from components; regenerated when poverty came to be measured
as the NBS measures it (calendar-year per-capita income before medical spending,
assessed each December; year-to-year flows; people; the registry's first
registrations and re-registrations; CGH, coverage and churn) and the quota took the
NBS end-2013 count as its basis (``quota_scale`` 1.086); regenerated when the rules
became the rules as China ran them: the registration on the survey's count and each
household's registration basis, an administrative memory (a persistent part of every
office assessment's error) and exclusion evidence, the look-back as a correction of
the registration, exits on stable income with the guarantees from 2014, support
kept after exit, mean-one transitory income shocks and an annual income component,
cadre visits that skip only households recently rejected (and the monitoring
regime's columns, zero by default); regenerated when the exit's housing guarantee took the
official figures (49.6 % of registered households without safe housing at the start, all safe by
2020-06, MOHURD 2020-09-23) in place of assumed ones; regenerated when the defaults became the
values fitted to the NBS and survey figures (docs/calibration.md: income level, growth and variances,
labour elasticity, illness, the quota, the cash-transfer schedule), the national exit plans of
2017-2019 became the default, the sample design (two villages a county) the default population, and
the census gained the poor areas' counts; regenerated when a household's month came to need one
Philox call of the shocks stream instead of two (the income normals and the illness and job
uniforms from one call; an onset's chronic share from the illness uniform, exactly so in
distribution; the medical bill's normal drawn for the households ill that month only) and the
sector data's income-drop test lost its divisions (the same test but for rounding at exact ties).

The CSVs are written with full float precision (``%.17g``), so every float64
survives the round trip exactly; ``baseline/config.json`` records the resolved
config that produced them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
BASELINE_DIR = HERE / "baseline"
METRICS_CSV = BASELINE_DIR / "metrics.csv"
EVENTS_CSV = BASELINE_DIR / "events.csv"
DELAYS_CSV = BASELINE_DIR / "delays.csv"
CONFIG_JSON = BASELINE_DIR / "config.json"

#: the default model (every rule and channel, 2013-2020), small and with a short burn-in
OVERRIDES = {"seed": 7, "population.households": 2000, "simulation.burn_in_years": 1}


def baseline_config():
    """The config of the baseline run: defaults, 2,000 households, seed 7, one burn-in year, 2013-2020."""
    import povsim

    return povsim.load_config(overrides=OVERRIDES)


def run_baseline_result():
    """A fresh run of the baseline config: its :class:`povsim.Result`."""
    import povsim

    return povsim.run(baseline_config())


def run_baseline() -> pd.DataFrame:
    """A fresh run of the baseline config: its metrics table."""
    return run_baseline_result().metrics


def write_metrics_csv(metrics: pd.DataFrame, path: Path) -> None:
    """Metrics as CSV with every float at full precision."""
    metrics.to_csv(path, index=False, float_format="%.17g", date_format="%Y-%m-%d")


def read_metrics_csv(path: Path) -> pd.DataFrame:
    """A metrics CSV written by :func:`write_metrics_csv`."""
    return pd.read_csv(path, parse_dates=["month"])


def write_events_csv(events: pd.DataFrame, path: Path) -> None:
    """The event table (integers and month labels) as CSV."""
    events.to_csv(path, index=False)


def read_events_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"start": str, "end": str})


def write_delays_csv(delays: pd.DataFrame, path: Path) -> None:
    """The detection-delay histogram (routes x months) as CSV, the route as the first column."""
    delays.to_csv(path)


def read_delays_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col="route")


def main() -> None:
    BASELINE_DIR.mkdir(exist_ok=True)
    result = run_baseline_result()
    write_metrics_csv(result.metrics, METRICS_CSV)
    write_events_csv(result.events, EVENTS_CSV)
    write_delays_csv(result.delays, DELAYS_CSV)
    CONFIG_JSON.write_text(json.dumps(baseline_config().to_dict(), indent=2) + "\n")
    print(f"wrote {METRICS_CSV} ({len(result.metrics)} months), {EVENTS_CSV}, {DELAYS_CSV} and {CONFIG_JSON}")


if __name__ == "__main__":
    main()
