"""Generate the documentation that must not drift from the code.

Run from the repository root::

    python tools/docs_pages.py          # rewrite the generated pages and blocks
    python tools/docs_pages.py --check  # exit 1, naming each stale page, if any is out of date

It writes

* ``docs/guide-analysts.md``, whole: every key of an experiment file, generated from
  the config schema (:mod:`povsim.config`: type, unit, default, allowed range,
  meaning, source), the experiment files in ``experiments/`` and real error messages;
* the generated blocks of ``docs/model.md`` (between ``<!-- generated: ... -->`` and
  ``<!-- end generated -->``): the household and village state tables, the components, the order of events and
  the table of draws, from the declarations of :mod:`povsim.components`, and each
  submodel's parameter table, from :func:`povsim.config.parameter_table`.

``tests/test_docs.py`` runs the same functions and fails when a committed page
differs from what they generate.  (``docs/parameters.md`` is ``povsim params --markdown``.)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
import types
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: use this checkout's povsim
    sys.path.insert(0, str(REPO))

from pydantic import BaseModel  # noqa: E402

from povsim.config import Config, ConfigError, load_config, parameter_table  # noqa: E402

ANALYST_GUIDE = REPO / "docs" / "guide-analysts.md"
MODEL_PAGE = REPO / "docs" / "model.md"
EXPERIMENTS = REPO / "experiments"

BLOCK_RE = re.compile(r"(<!-- generated: (?P<what>[^>]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


# --------------------------------------------------------------------------------------
# The schema, walked
# --------------------------------------------------------------------------------------


def sections() -> list[tuple[str, type[BaseModel]]]:
    """Every section of the config, depth first: ``("", Config)``, ``("simulation", SimulationConfig)``, ..."""
    from povsim.config import walk

    return [("", Config)] + [(key.path, key.section) for key in walk() if key.section is not None]


def type_name(annotation, unit: str) -> str:
    """How a value of this field is written in TOML."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f'`"{a}"`' for a in typing.get_args(annotation))
    if annotation is bool:
        return "`true` or `false`"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    if annotation is str:
        return '`"YYYY-MM"`' if unit == "month" else "text"
    if origin is list:
        return "list of numbers"
    if origin is dict:
        return "table: year = number"
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args:  # optional: left out of the file when unset
            return " or ".join(type_name(a, unit) for a in args if a is not type(None)) + ", or left out"
        return " or ".join(type_name(a, unit) for a in args)
    return str(annotation)


def toml_value(value) -> str:
    """A default written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int):  # round numbers of households as 1_000_000; others (a seed) as they are
        return f"{value:_}" if abs(value) >= 100_000 and value % 1000 == 0 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _rows_by_key() -> dict[str, dict]:
    return {row["key"]: row for row in parameter_table()}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------
# docs/guide-analysts.md
# --------------------------------------------------------------------------------------


def _experiment_files() -> list[str]:
    lines = [
        "| file | what it asks | households | scenarios | replicates, sweep |",
        "|---|---|---|---|---|",
    ]
    for path in sorted(EXPERIMENTS.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        scenarios = list(data.get("scenarios", {}))
        households = data.get("population", {}).get("households", Config().population.households)
        listed = "baseline" + (", " + ", ".join(f"`{s}`" for s in scenarios) if scenarios else "")
        sweep = data.get("sweep")
        swept = ""
        if isinstance(sweep, dict):
            keys = sweep.get("grid") or sweep.get("ranges") or {}
            swept = f"; sweep ({sweep.get('method', 'grid')}): " + ", ".join(f"`{k}`" for k in keys)
        lines.append(
            f"| `experiments/{path.name}` | {_cell(data.get('description', ''))} | {households:,} | "
            f"{len(scenarios) + 1}: {listed} | {data.get('replicates', 1)}{swept} |"
        )
    return lines


def run_options() -> list[tuple[str, str]]:
    """The options of `povsim run` as the guide lists them: (option with its value, help), from the parser."""
    import argparse

    from povsim.cli import _build_parser

    parser = _build_parser(["run"])
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    out = []
    for action in run._actions:
        if not action.option_strings or action.dest == "help":
            continue
        option = max(action.option_strings, key=len)
        if action.nargs != 0:
            option += f" {action.metavar or action.dest.upper()}"
        text = (action.help or "") % {"default": action.default, "prog": run.prog}
        out.append((option, text))
    return out


def _run_options() -> list[str]:
    lines = ["| option | meaning |", "|---|---|"]
    for option, text in run_options():
        lines.append(f"| `{option}` | {_cell(text)} |")
    return lines


def _error_examples() -> list[str]:
    """Real messages from the validator, for a few typical mistakes in a file."""
    import tempfile

    cases = [
        ("A value out of range", "[illness]\nonset_probability = 1.5\n"),
        ("A number written as text", '[population]\nhouseholds = "5000"\n'),
        ("A misspelt key", "[illness]\nonset = 0.01\n"),
        ("A rule outside the simulated period", '[simulation]\nend = "2014-06"\n'),
    ]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mistake.toml"
        for what, text in cases:
            path.write_text(text, encoding="utf-8")
            try:
                load_config(path)
            except ConfigError as err:
                message = str(err)
            else:  # the guide must not show an example that passes
                raise AssertionError(f"{text!r} was accepted; choose another example")
            out += [f"{what}:", "", "```toml", text.rstrip("\n"), "```", "", "```text", message, "```", ""]
    return out


def analyst_guide() -> str:
    """The text of docs/guide-analysts.md."""
    rows = _rows_by_key()
    lines = [
        "# Guide for policy analysts: experiment files",
        "",
        "<!-- Generated by `python tools/docs_pages.py` from the config schema (povsim/config.py) and the",
        "     files in experiments/; do not edit by hand. tests/test_docs.py fails when it is stale. -->",
        "",
        "An **experiment file** is a TOML file that says what to simulate and under which rules. You run it",
        "with `povsim run`; you never need Python. This page explains every key a file can hold. It is",
        "generated from the same declarations the program validates against, so it is always current.",
        "",
        "## Running an experiment",
        "",
        "```bash",
        "povsim run experiments/onetime_vs_dynamic.toml                  # as written",
        "povsim run experiments/onetime_vs_dynamic.toml --households 20000 --out results/small",
        "povsim run experiments/channels.toml --set policy.channels.cadre.visits_per_village=8",
        "povsim params                                                   # every key, unit, default, range, source",
        "```",
        "",
        "`povsim run` prints a per-year table (or, for a file with scenarios, replicates or a sweep, each",
        "scenario's headline numbers) at most 100 columns wide, and writes to `--out` (default",
        "`results/<name>/`). An experiment of **one run** (no scenarios, one replicate, no sweep) writes:",
        "",
        "| file | what it holds |",
        "|---|---|",
        "| `metrics.parquet` | one row per month; every column is defined in [the model's observation section](model.md#observation) |",
        "| `events.parquet` | one row per policy event (the registration, the look-back, each exit assessment and review) |",
        "| `delays.parquet` | detection delays: months from falling poor to registration, by route |",
        "| `config.json` | the config with every default filled in |",
        "| `manifest.json` | how the run was made: povsim version, seed, households, villages, counties, provinces, "
        "threads, wall time, and each file's checksum |",
        "| `errors.png` | exclusion error, inclusion error and headcount over time |",
        "",
        "An experiment of **several runs** (scenarios x sweep points x replicates) writes each run as it finishes,",
        "so a stopped experiment started again resumes where it stopped, and ends with the tables and the report:",
        "",
        "| file | what it holds |",
        "|---|---|",
        "| `runs/<scenario>/[point-NNNN/]rep-NNNN/` | one run: `metrics.parquet`, `events.parquet`, `delays.parquet`, "
        "`config.json` (its seed included), `manifest.json` |",
        "| `metrics.parquet` | every run's monthly metrics in one table: scenario, (point,) replicate, month, metrics |",
        "| `headlines.csv` | one row per run: its headline numbers |",
        "| `summary.csv` | each scenario's (and sweep point's) headline numbers: mean, 95 % interval, SD, n |",
        "| `comparison.csv` | each scenario minus the baseline, paired replicate by replicate (with scenarios) |",
        "| `points.csv` | the sweep's points (with a sweep) |",
        "| `exclusion_error.png`, `inclusion_error.png`, `headcount_rate.png` | each scenario over time with its "
        "95 % band (without a sweep) |",
        "| `sweep_exclusion_error_mean.png`, `sweep_inclusion_error_mean.png`, `sweep_cost_total_yuan.png` | each "
        "headline number against the swept values (with a sweep) |",
        "| `report.html` | all of the above in one self-contained page |",
        "| `manifest.json` | povsim version, seeds, scenarios and their patches, sweep, runs finished and failed, status |",
        "",
        "povsim replaces only what it wrote: an earlier result in the folder is replaced, an unfinished run of the",
        "same experiment is resumed, and a folder holding other files is refused. `povsim sweep FILE` runs a file",
        "with a `[sweep]` exactly as `povsim run` does and prints one row per sweep point. The options of",
        "`povsim run` and `povsim sweep` (from `povsim run --help`):",
        "",
        *_run_options(),
        "",
        'Before the first month is simulated, `povsim run` checks what could stop it later: the output',
        'folder must be one it can make and write (not under a file, not on a read-only disk) with room for',
        "its runs' files (about 1 MiB a run and 8 MiB more), and the populations that run at once must fit in",
        'the memory this machine has available (about 62 bytes a household and 400 MiB a process; see',
        '[Reliability](reliability.md)). Either failing is one line and exit status 2, with nothing written.',
        'An experiment of more than 10^11 household-months in all (five runs of rural China) is asked about at',
        'a terminal, with its size and an estimate of the time it takes, and refused elsewhere unless `--yes`.',
        'A disk that fills all the same while the results are written stops the command with one line and',
        'exit status 1: the runs finished before are kept, nothing is marked complete, and the same command',
        'resumes once there is room.',
        "",
        "## The experiment files that come with povsim",
        "",
        *_experiment_files(),
        "",
        "## How a file is read",
        "",
        "- Every key is optional: a key you leave out keeps its default (listed below). So a file holds",
        "  only what differs from the defaults, which mirror China's rules of 2014-2020.",
        "- Keys sit in sections: `[policy.channels.cadre]` then `visits_per_village = 8` sets",
        "  `policy.channels.cadre.visits_per_village`. The dotted path is what `--set` and scenarios use.",
        "- Months are written `\"YYYY-MM\"`; money is yuan at current prices; shares and probabilities",
        "  are numbers from 0 to 1 (not percent).",
        "- The whole file is checked before anything runs. An unknown key, a value of the wrong type",
        "  (`5000` is not `\"5000\"`, `true` is not `1`) or a value out of range stops the run with a",
        "  message that names the key, the value and what is allowed, and nothing is written (examples at",
        "  the end of this page).",
        "",
        "## Scenarios",
        "",
        "A file can hold named **scenarios**, each a patch on the file's own settings (the *baseline*).",
        "Each patch is a table of dotted keys:",
        "",
        "```toml",
        "[scenarios.no_lookback]",
        '"policy.lookback.enabled" = false',
        "",
        "[scenarios.early_reviews]",
        '"policy.review.first" = "2015-10"',
        '"policy.review.entry_coverage" = 0.3',
        "```",
        "",
        "`povsim run` runs the baseline and every scenario with the same seed. povsim's random numbers",
        "are keyed by household and month, so every household meets the same illnesses, job losses and",
        "income shocks in every scenario (common random numbers): a difference between two scenarios is",
        "the rules', not chance. Every scenario is checked, with its patch applied, before the first",
        "run starts; the name `baseline` is reserved. `--households`, `--seed` and `--set` apply to the",
        "baseline and to every scenario.",
        "",
        "## Replicates and sweeps",
        "",
        "`replicates = N` at the top of the file (before the first `[table]`) runs every scenario N times,",
        "replicate *k* with the seed `numpy.random.SeedSequence(seed).spawn(N)[k]`, the same in every scenario;",
        "the tables then show each mean with its 95 % interval, and the differences from the baseline are paired",
        "replicate by replicate. A `[sweep]` runs every scenario at each point of a grid, or of a Latin hypercube",
        "or Sobol' sample of parameter ranges:",
        "",
        "```toml",
        "replicates = 2",
        "",
        "[sweep.grid]                      # every combination of these values",
        '"policy.channels.cadre.visits_per_village" = [0, 1, 2, 4, 8, 16]',
        "```",
        "",
        "```toml",
        "[sweep]                           # or a sample of a box of parameters",
        'method = "lhs"                    # "lhs" or "sobol" (a power of 2 samples)',
        "samples = 16",
        "[sweep.ranges]",
        '"policy.verification.delay" = [0, 3]',
        '"policy.review.assessment_sd" = [0.1, 0.4]',
        "```",
        "",
        "`experiments/cadre_visits.toml` is such a file: `povsim sweep experiments/cadre_visits.toml` prints one",
        "row per visit rate. More in [Experiments, replicates and sweeps](experiments.md).",
        "",
        "## Every key",
        "",
        "Each section below lists its keys with the TOML to write them (set to their defaults, so the",
        "snippets together are a complete experiment file) and a table: how the value is written, its",
        "unit, default, allowed range, meaning and the source of the default. The same facts, in one",
        "table, are in [parameters.md](parameters.md); how each parameter acts is in [the model](model.md).",
        "",
    ]
    for prefix, model in sections():
        own = [(n, f) for n, f in model.model_fields.items()
               if not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel))]
        if not own:
            continue
        title = f"`[{prefix}]`" if prefix else "Top level (before any section)"
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        lines += [f"### {title}", "", doc, "", "```toml"]
        if prefix:
            lines.append(f"[{prefix}]")
        snippet = []
        for name, field in own:
            key = f"{prefix}.{name}" if prefix else name
            row = rows[key]
            if row["default"] is None:  # unset by default: shown commented out, with the form it takes
                snippet.append((f'# {name} = "YYYY-MM"', row["description"]))
            else:
                snippet.append((f"{name} = {toml_value(row['default'])}", row["description"]))
        width = max(len(s) for s, _ in snippet)
        for text, comment in snippet:
            lines.append(f"{text.ljust(width)}  # {comment}")
        lines += ["```", "", "| key | written as | unit | default | allowed | meaning | source |",
                  "|---|---|---|---|---|---|---|"]
        for name, field in own:
            key = f"{prefix}.{name}" if prefix else name
            row = rows[key]
            lines.append(
                "| " + " | ".join(
                    _cell(c) for c in (
                        f"`{key}`", type_name(field.annotation, row["unit"]), row["unit"],
                        "unset" if row["default"] is None else f"`{toml_value(row['default'])}`", row["allowed"],
            row["description"], row["source"],
                    )
                ) + " |"
            )
        lines.append("")
    lines += [
        "## What the error messages look like",
        "",
        "These are the program's own messages, generated by running the validator on a file holding each",
        "mistake. Nothing runs and nothing is written until the file is right.",
        "",
        *_error_examples(),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------
# docs/model.md: generated blocks
# --------------------------------------------------------------------------------------


def _matches(key: str, prefixes: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def parameter_block(prefixes: list[str]) -> str:
    """The parameter table of the keys under ``prefixes`` (each a key or a section path)."""
    rows = [r for r in parameter_table() if _matches(r["key"], prefixes)]
    if not rows:
        raise ValueError(f"no parameter under {prefixes}")
    lines = ["| parameter | unit | default | allowed | meaning | source |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            "| " + " | ".join(
                _cell(c) for c in (f"`{r['key']}`", r["unit"], f"`{r['default']!r}`", r["allowed"],
                                   r["description"], r["source"])
            ) + " |"
        )
    return "\n".join(lines) + "\n"


def state_block() -> str:
    """The household and village state tables, as the components declare them (povsim.components)."""
    from povsim import components as C

    lines = ["| variable | type | bytes | declared by | meaning |", "|---|---|---|---|---|"]
    total = 0
    for owner, state in C.HOUSEHOLD_STATE:
        width = state.shape[0] if state.shape else 1
        dtype = f"{state.dtype}[{width}]" if state.shape else state.dtype
        total += state.bytes
        lines.append(f"| `{state.name}` | {dtype} | {state.bytes} | {owner} | {_cell(state.description.replace('``', '`'))} |")
    lines.append(f"| **total** | | **{total}** | | bytes per household |")
    lines += ["", "Each village has, besides its households:", "",
              "| variable | type | declared by | meaning |", "|---|---|---|---|"]
    for owner, state in C.VILLAGE_STATE:
        lines.append(f"| `{state.name}` | {state.dtype} | {owner} | {_cell(state.description.replace('``', '`'))} |")
    return "\n".join(lines) + "\n"


def schedule_block() -> str:
    """The order of events of one month, from povsim.components.schedule.SCHEDULE."""
    from povsim.components import MODULES, schedule as S
    import importlib

    module_of = {importlib.import_module(f"povsim.components.{m}").COMPONENT.name: m for m in MODULES}
    lines = ["| phase | step | once for | what it does |", "|---|---|---|---|"]
    for step in S.SCHEDULE:
        where = "the village" if step.level == "village" else "each household"
        lines.append(f"| {step.phase} | `{module_of[step.component]}.{step.hook}` | {where} | {_cell(step.does)} |")
    return "\n".join(lines) + "\n"


def draws_block() -> str:
    """Every draw of the model, from povsim.components.DRAWS."""
    from povsim import components as C

    name_of = {number: name for name, number in C.STREAMS.items()}
    lines = ["| stream | index | id | month | words | declared by | what it draws |", "|---|---|---|---|---|---|---|"]
    for owner, d in sorted(C.DRAWS, key=lambda x: (x[1].stream, x[1].index)):
        month = "the month's" if d.month == "each" else "0 (once)"
        lines.append(f"| {d.stream} ({name_of[d.stream]}) | {d.index} | {d.space} | {month} | {d.words} | {owner} | "
                     f"{_cell(d.purpose)} |")
    return "\n".join(lines) + "\n"


def components_block() -> str:
    """The components, in registry order, with their config section and route."""
    from povsim import components as C

    lines = ["| module | component | config section | route | what it models |", "|---|---|---|---|---|"]
    for name, c in zip(C.MODULES, C.COMPONENTS):
        route = f"{c.route.code} ({c.route.name})" if c.route else "-"
        section = f"`{c.path}`" if c.path else "-"
        lines.append(f"| `povsim/components/{name}.py` | {c.name} | {section} | {route} | {_cell(c.doc)} |")
    return "\n".join(lines) + "\n"


def render_block(what: str) -> str:
    what = what.strip()
    if what == "household state":
        return state_block()
    if what == "schedule":
        return schedule_block()
    if what == "draws":
        return draws_block()
    if what == "components":
        return components_block()
    if what.startswith("parameters "):
        return parameter_block(what.split()[1:])
    raise ValueError(f"unknown generated block {what!r}")


def update_model_page(text: str) -> str:
    """``docs/model.md`` with every generated block rewritten."""
    return BLOCK_RE.sub(lambda m: m.group(1) + render_block(m.group("what")) + m.group(4), text)


def model_page_parameters(text: str) -> list[str]:
    """Every parameter key that the generated blocks of ``text`` cover (with repeats)."""
    keys = []
    for m in BLOCK_RE.finditer(text):
        what = m.group("what").strip()
        if what.startswith("parameters "):
            keys += [r["key"] for r in parameter_table() if _matches(r["key"], what.split()[1:])]
    return keys


# --------------------------------------------------------------------------------------


def pages() -> dict[Path, str]:
    """Each generated page and the text it should have."""
    return {
        ANALYST_GUIDE: analyst_guide(),
        MODEL_PAGE: update_model_page(MODEL_PAGE.read_text(encoding="utf-8")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in pages().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if args.check and stale:
        print("stale: " + ", ".join(str(p.relative_to(REPO)) for p in stale) + "; run python tools/docs_pages.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
