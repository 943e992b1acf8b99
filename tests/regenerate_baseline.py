"""Regenerate the saved baseline in ``tests/baseline/`` — only on purpose.

    python tests/regenerate_baseline.py

``tests/test_baseline.py`` requires a fresh run of a small fixed config
(2,000 households, seed 7, the default model with one burn-in year,
2013-2020) to reproduce ``tests/baseline/metrics.csv`` exactly.  That test
failing means the model's output changed.

Regenerate the baseline **only** when the change is intended: a change to the
model's rules, a parameter's default, the population builder, the metrics, or a
deliberate change to how random numbers are drawn.  Say in the commit message
what changed and why the numbers moved.  Never regenerate it to make a failure
you do not understand go away: an unexplained change (a different result for
the same seed, a dependency upgrade that moves floats, a thread-count
dependence) is a bug to find, not a baseline to refresh.

The CSV is written with full float precision (``%.17g``), so every float64
survives the round trip exactly; ``baseline/config.json`` records the resolved
config that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
BASELINE_DIR = HERE / "baseline"
METRICS_CSV = BASELINE_DIR / "metrics.csv"
CONFIG_JSON = BASELINE_DIR / "config.json"

OVERRIDES = {"seed": 7, "population.households": 2000, "simulation.burn_in_years": 1}


def baseline_config():
    """The config of the baseline run: defaults, 2,000 households, seed 7, one burn-in year, 2013-2020."""
    import povsim

    return povsim.load_config(overrides=OVERRIDES)


def run_baseline() -> pd.DataFrame:
    """A fresh run of the baseline config: its metrics table."""
    import povsim

    return povsim.run(baseline_config()).metrics


def write_metrics_csv(metrics: pd.DataFrame, path: Path) -> None:
    """Metrics as CSV with every float at full precision."""
    metrics.to_csv(path, index=False, float_format="%.17g", date_format="%Y-%m-%d")


def read_metrics_csv(path: Path) -> pd.DataFrame:
    """A metrics CSV written by :func:`write_metrics_csv`."""
    return pd.read_csv(path, parse_dates=["month"])


def main() -> None:
    BASELINE_DIR.mkdir(exist_ok=True)
    metrics = run_baseline()
    write_metrics_csv(metrics, METRICS_CSV)
    CONFIG_JSON.write_text(json.dumps(baseline_config().to_dict(), indent=2) + "\n")
    print(f"wrote {METRICS_CSV} ({len(metrics)} months) and {CONFIG_JSON}")


if __name__ == "__main__":
    main()
