"""docs/extending.md's worked examples, applied to a copy of the package and run.

The page's blocks are the examples: a block starting ``# file: PATH`` is a new file, one
starting ``# edit: PATH, after: TEXT`` is inserted after the first line of PATH holding
TEXT.  The copy (with all three examples) is compiled and run in a fresh interpreter; the
checks are that each example does what the page says, that with the new channel and shock
switched off every result is bit for bit the unchanged model's, and how many files each
example touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

import povsim

PAGE = REPO / "docs" / "extending.md"
BLOCK_RE = re.compile(r"```python\n(# (file|edit): [^\n]*)\n(.*?)```", re.S)


def _blocks(text: str) -> list[tuple[str, str, str | None, str]]:
    """(section, path, anchor or None, code) for every example block, in page order."""
    out = []
    section = ""
    position = 0
    for m in BLOCK_RE.finditer(text):
        heading = [h for h in re.findall(r"^## (.*)$", text[position : m.start()], re.M)]
        if heading:
            section = heading[-1]
        position = m.start()
        header, kind, code = m.group(1), m.group(2), m.group(3)
        if kind == "file":
            out.append((section, header[len("# file: "):].strip(), None, code))
        else:
            path, anchor = header[len("# edit: "):].split(", after: ", 1)
            out.append((section, path.strip(), anchor, code))
    return out


def apply_examples(root: Path) -> dict[str, set[str]]:
    """Apply every block of the page to the package under ``root``; the files each example touched."""
    touched: dict[str, set[str]] = {}
    for section, path, anchor, code in _blocks(PAGE.read_text()):
        target = root / path
        touched.setdefault(section, set()).add(path)
        if anchor is None:
            assert not target.exists(), f"{path} exists already"
            target.write_text(code)
            continue
        lines = target.read_text().splitlines(keepends=True)
        at = next((k for k, line in enumerate(lines) if anchor in line), None)
        assert at is not None, f"{path}: no line holds {anchor!r}"
        lines[at + 1 : at + 1] = [code]
        target.write_text("".join(lines))
    return touched


CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import povsim
    from povsim import components as C

    base = {"population.households": 4000, "population.households_per_village": 200, "simulation.end": "2019-12"}
    def run(over):
        return povsim.run(povsim.load_config("experiments/quickstart.toml", overrides={**base, **over})).metrics
    off = run({})
    on = run({"policy.channels.doctor.enabled": True, "flood.enabled": True, "flood.probability": 0.02})
    out = {
        "routes": list(C.ROUTE_NAMES), "streams": C.STREAMS,
        "columns": list(off.columns),
        "off": {c: off[c].tolist() for c in off.columns if c != "month"},
        "entered_doctor": int(on["entered_doctor"].sum()), "flags_doctor": int(on["flags_doctor"].sum()),
        "flooded": int(on["flooded"].sum()), "flooded_off": int(off["flooded"].sum()),
        "headcount_on": float(on["headcount_rate"].mean()), "headcount_off": float(off["headcount_rate"].mean()),
        "chronic": off["registered_chronic"].tolist(), "registered": off["registered"].tolist(),
        "share": off["registered_chronic_share"].tolist(),
    }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    root = tmp_path_factory.mktemp("extended")
    shutil.copytree(REPO / "povsim", root / "povsim", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "experiments", root / "experiments")
    touched = apply_examples(root)
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(root / ".numba"))
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=root, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return touched, json.loads(done.stdout.strip().splitlines()[-1])


def test_each_example_touches_what_the_page_says(extended):
    touched, _ = extended
    assert {k: len(v) for k, v in touched.items()} == {
        "A channel: village doctors refer ill households": 3,
        "A shock: floods hit whole villages": 3,
        "A metric: chronic illness on the register": 1,
    }
    table = PAGE.read_text().split("## What the examples touched", 1)[1]
    assert "| a channel | 3 |" in table and "| a shock | 3 |" in table and "| a metric | 1 |" in table


def test_the_new_channel_finds_households(extended):
    _, out = extended
    assert out["routes"][-1] == "doctor" and out["streams"]["doctor"] == 11 and out["streams"]["flood"] == 12
    for column in ("entered_doctor", "flags_doctor", "verified_doctor", "precision_doctor"):
        assert column in out["columns"]
    assert out["flags_doctor"] > 0 and 0 < out["entered_doctor"] <= out["flags_doctor"]


def test_the_flood_hits_villages_and_raises_poverty(extended):
    _, out = extended
    assert out["flooded_off"] == 0
    assert out["flooded"] > 0 and out["flooded"] % 200 == 0  # whole villages of 200
    assert out["headcount_on"] > out["headcount_off"]


def test_the_new_metric_counts_chronic_illness_on_the_register(extended):
    _, out = extended
    chronic, registered = np.array(out["chronic"]), np.array(out["registered"])
    assert (chronic <= registered).all() and chronic.sum() > 0
    share = np.array(out["share"], dtype=float)
    np.testing.assert_array_equal(share[registered > 0], chronic[registered > 0] / registered[registered > 0])


def test_switched_off_the_extended_model_is_the_model(extended):
    """With the channel and the shock off, every column the model had is bit for bit the same."""
    _, out = extended
    cfg = povsim.load_config(
        REPO / "experiments" / "quickstart.toml",
        overrides={"population.households": 4000, "population.households_per_village": 200, "simulation.end": "2019-12"},
    )
    m = povsim.run(cfg).metrics
    for column in m.columns:
        if column == "month":
            continue
        mine = m[column].to_numpy()
        theirs = np.array(out["off"][column], dtype=mine.dtype)
        np.testing.assert_array_equal(mine, theirs, err_msg=column)
