"""Measure the numbers the researchers' guide quotes, and write them into docs/guide-researchers.md.

Run from the repository root (about a minute on 2 cores)::

    NUMBA_NUM_THREADS=1 python tools/researchers_numbers.py

It rewrites two blocks of the guide, between ``<!-- measured: NAME -->`` and
``<!-- end measured -->``:

* ``headcount example``: what the worked example (section 5) prints, the model's December
  headcount against the NBS's, at the example's population (:data:`EXAMPLE_HOUSEHOLDS`, the
  experiment file's own five-year burn-in);
* ``headcount noise``: the December headcount at 10^4, 10^5 and 10^6 households, each at
  :data:`SEEDS` seeds (``SeedSequence`` of the file's seed), with its spread over the seeds:
  how small a population is too small.

These are measurements of the model as it stands, not checked by the tests: rerun this
script whenever the model changes.  Each block says the povsim version and date it was made.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: use this checkout's povsim
    sys.path.insert(0, str(REPO))

import povsim  # noqa: E402
from povsim.experiments import replicate_seeds  # noqa: E402
from povsim.figures import official_headcount  # noqa: E402

GUIDE = REPO / "docs" / "guide-researchers.md"
EXPERIMENT = REPO / "experiments" / "china_2014_2020.toml"
EXAMPLE_HOUSEHOLDS = 100_000  #: the worked example's population (as in the guide's code)
SIZES = (10_000, 100_000, 1_000_000)
SEEDS = 3
YEARS = (2013, 2016, 2019)
BLOCK_RE = re.compile(r"(<!-- measured: (?P<what>[^>]*?) -->\n)(?P<body>.*?)(<!-- end measured -->)", re.S)


def december(metrics):
    """The year-end headcount of each year, as the worked example takes it."""
    return metrics[metrics["month"].dt.month == 12][["year", "headcount_rate"]]


def example_block() -> str:
    """The worked example's printed table, as the guide's code prints it."""
    cfg = povsim.load_config(EXPERIMENT, overrides={"population.households": EXAMPLE_HOUSEHOLDS})
    comparison = december(povsim.run(cfg).metrics).merge(official_headcount(), on="year")
    comparison["gap_points"] = 100 * (comparison["headcount_rate"] - comparison["incidence"])
    table = comparison[["year", "headcount_rate", "incidence", "gap_points"]].round(3).to_string()
    return "```text\n" + table + "\n```\n"


def noise_block() -> str:
    """The December headcount by population size and seed, and its spread over the seeds."""
    official = official_headcount().set_index("year")["incidence"]
    base = povsim.load_config(EXPERIMENT)
    seeds = replicate_seeds(base.seed, SEEDS)
    head = " | ".join(f"{y} %" for y in YEARS)
    lines = [f"| households | {head} | spread over seeds, points | gap to NBS, points | s per run |",
             "|---" * (len(YEARS) + 4) + "|"]
    for households in SIZES:
        rows, seconds = [], []
        for seed in seeds:
            cfg = base.with_overrides({"population.households": households, "seed": seed})
            t0 = time.perf_counter()
            dec = december(povsim.run(cfg).metrics).set_index("year")["headcount_rate"]
            seconds.append(time.perf_counter() - t0)
            rows.append([100 * dec[y] for y in YEARS])
        cells = []
        for j in range(len(YEARS)):
            values = [r[j] for r in rows]
            cells.append(" / ".join(f"{v:.2f}" for v in values))
        spread = max(max(r[j] for r in rows) - min(r[j] for r in rows) for j in range(len(YEARS)))
        gap = sum(abs(r[j] - 100 * official[y]) for r in rows for j, y in enumerate(YEARS)) / (len(rows) * len(YEARS))
        lines.append(f"| {households:,} | " + " | ".join(cells) + f" | {spread:.2f} | {gap:.2f} | "
                     f"{min(seconds):.1f} |")
    nbs = " | ".join(f"{100 * official[y]:.1f}" for y in YEARS)
    lines.append(f"| NBS | {nbs} | | | |")
    return "\n".join(lines) + "\n"


def stamp() -> str:
    return (f"<!-- made by `python tools/researchers_numbers.py`, povsim {povsim.__version__}, "
            f"{datetime.date.today().isoformat()} -->\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    text = GUIDE.read_text(encoding="utf-8")
    makers = {"headcount example": example_block, "headcount noise": noise_block}
    found = {m.group("what").strip() for m in BLOCK_RE.finditer(text)}
    missing = sorted(set(makers) - found)
    if missing:
        print(f"{GUIDE}: no block <!-- measured: {missing[0]} -->; nothing written", file=sys.stderr)
        return 2
    blocks = {name: stamp() + make() for name, make in makers.items()}
    text = BLOCK_RE.sub(lambda m: m.group(1) + blocks[m.group("what").strip()] + m.group(4), text)
    GUIDE.write_text(text, encoding="utf-8")
    print(f"wrote {GUIDE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
