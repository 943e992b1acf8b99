"""The guides say what the code does: the analysts' options and output files, the API page's cross-references."""

from __future__ import annotations

import argparse
import importlib.util
import re

from helpers import REPO

from povsim.cli import _build_parser


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _verb(name: str) -> argparse.ArgumentParser:
    parser = _build_parser([name])
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.dest != "help"}


def test_the_analysts_option_table_is_the_parsers():
    page = (REPO / "docs" / "guide-analysts.md").read_text()
    running = page.split("## Running an experiment", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(--[a-z-]+)[^`]*` \|", running, flags=re.M))
    assert listed == _options(_verb("run")) == _options(_verb("sweep"))
    assert {"--replicates", "--workers", "--scheduler", "--split", "--metric"} <= listed


def test_the_analysts_output_files_are_the_ones_written():
    from povsim.experiments import SWEEP_FIGURES, TIME_FIGURES
    from povsim.results import EXPERIMENT_FILES, RESULT_FILES
    from povsim.store import RUN_FILES

    page = (REPO / "docs" / "guide-analysts.md").read_text()
    running = page.split("## Running an experiment", 1)[1].split("\n## ", 1)[0]
    for name in (*RESULT_FILES, *RUN_FILES, "manifest.json", "runs/<scenario>/[point-NNNN/]rep-NNNN/",
                 *[f"{m}.png" for m in TIME_FIGURES], *[f"sweep_{m}.png" for m in SWEEP_FIGURES],
                 *[n for n in EXPERIMENT_FILES if n != "registered.png"]):
        assert f"`{name}`" in running, name
    assert "one folder per scenario" not in running


def test_a_shipped_experiment_file_has_a_sweep():
    import tomllib

    from povsim.experiments import Experiment

    swept = [p for p in sorted((REPO / "experiments").glob("*.toml"))
             if "sweep" in tomllib.loads(p.read_text(encoding="utf-8"))]
    assert swept
    for path in swept:
        assert Experiment.from_file(path).sweep.points


ROLES = _tool("mkdocs_roles")


def test_sphinx_roles_become_optional_cross_references():
    resolve = {"step": "povsim.engine.Simulation.step", "Result": "povsim.results.Result"}.get
    text = ("Like :func:`povsim.run`, see :class:`~povsim.results.Result`, :meth:`step`, "
            ":py:mod:`povsim.cluster`, :class:`Result` and :func:`the run <povsim.run>`; ``:param x:`` stays.")
    out = ROLES.convert(text, resolve)
    assert ":func:" not in out and ":class:" not in out and ":meth:" not in out and ":mod:" not in out
    assert '<autoref identifier="povsim.run" optional><code>povsim.run</code></autoref>' in out
    assert '<autoref identifier="povsim.results.Result" optional><code>Result</code></autoref>' in out  # ~
    assert '<autoref identifier="povsim.engine.Simulation.step" optional><code>step</code></autoref>' in out
    assert '<autoref identifier="povsim.cluster" optional><code>povsim.cluster</code></autoref>' in out
    assert out.count('identifier="povsim.results.Result"') == 2  # a short name resolved in its scope
    assert '<autoref identifier="povsim.run" optional><code>the run</code></autoref>' in out
    assert out.endswith("``:param x:`` stays.")
    assert ROLES.convert("no roles: `code` and :param x: here") == "no roles: `code` and :param x: here"


def test_the_api_page_loads_the_roles_extension():
    config = (REPO / "mkdocs.yml").read_text()
    assert "tools/mkdocs_roles.py:SphinxRoles" in config
    assert "docs/design.md" not in config and "design.md" in config


def test_the_researchers_measured_numbers_are_of_the_example_as_written():
    numbers = _tool("researchers_numbers")
    page = (REPO / "docs" / "guide-researchers.md").read_text()
    blocks = {m.group("what").strip(): m.group("body") for m in numbers.BLOCK_RE.finditer(page)}
    assert set(blocks) == {"headcount example", "headcount noise"}
    for body in blocks.values():
        assert "made by `python tools/researchers_numbers.py`" in body
    # the measured example is the page's: the same file and population
    assert f'"population.households": {numbers.EXAMPLE_HOUSEHOLDS:_}' in page
    assert f'"experiments/{numbers.EXPERIMENT.name}"' in page.split("## 5.", 1)[1]
    assert all(f"| {n:,} |" in blocks["headcount noise"] for n in numbers.SIZES)
    assert "headcount_rate  incidence  gap_points" in blocks["headcount example"]
