"""The ``povsim`` command line: run experiment files and sweeps, calibrate, validate, list parameters, remake
the documentation's figures, start the interactive page.

This module owns argument parsing and what is printed; it calls the library
and holds no model logic.  Every input is validated before anything is
simulated or written: a bad file, key or value exits with status 2 and one
message naming the key path, the value and what is allowed, and no output
folder is created.

Exit status: 0 when every run finished; 1 when some run failed (the others
finish and are written; the failures are listed with their scenario, replicate
and error); 2 for bad input; 130 when interrupted (finished runs are kept, and
the same command resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
APP_HOST = "127.0.0.1"  #: the page is served on the loopback interface only
DEFAULT_APP_PORT = 8765


def _integer_in(low: int, high: int | None, allowed: str):
    """An argparse type: an integer in [low, high], else an error naming the value and ``allowed``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not allowed: {allowed}")
        return value

    return parse


_positive_int = _integer_in(1, None, "must be a positive integer")
_port = _integer_in(1, 65535, "a port is 1 to 65535")
_count = _integer_in(0, None, "must be 0 or a positive integer")


def _connect_timeout(text: str) -> float:
    """An argparse type: a connect timeout in seconds (:func:`povsim.cluster.check_connect_timeout`)."""
    from .cluster import check_connect_timeout

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        return check_connect_timeout(value)  # nan is refused there
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: {str(err).split('allowed ', 1)[-1]}") from None


def _page_households(text: str) -> int:
    from .mesa.county import MAX_HOUSEHOLDS

    value = _positive_int(text)
    return _integer_in(1, MAX_HOUSEHOLDS, f"the page takes 1 to {MAX_HOUSEHOLDS:,} households")(str(value))


def _add_run_options(run: argparse.ArgumentParser) -> None:
    from .cluster import CONNECT_TIMEOUT_S
    run.add_argument("experiment", type=Path, help="experiment file (TOML), e.g. experiments/quickstart.toml")
    run.add_argument(
        "--households", type=_positive_int, metavar="N", help="households to simulate (population.households)"
    )
    run.add_argument("--seed", type=int, metavar="S", help="seed of every random stream (seed), 0 <= S < 2**64")
    run.add_argument(
        "--replicates", type=_positive_int, metavar="N",
        help="runs of each scenario (and sweep point), seeds from SeedSequence(seed).spawn(N) (the file's replicates)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set illness.onset_probability=0.02 (repeatable; "
        "values are read as TOML: 0.2, true, \"2015-01\")",
    )
    run.add_argument("--threads", type=_positive_int, metavar="N", help="threads for the engine (simulation.threads)")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=_count, metavar="N",
        help="Dask worker processes of a local cluster (127.0.0.1 only, one thread each); 0 or 1: run serially "
        "in this process, without Dask (default: one per core, at most one per run)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786",
    )
    run.add_argument(
        "--connect-timeout", type=_connect_timeout, metavar="SECONDS", default=CONNECT_TIMEOUT_S,
        help="seconds to wait for the --scheduler to answer before giving up (default %(default)g)",
    )
    run.add_argument(
        "--split", type=_positive_int, metavar="K", default=1,
        help="split each run's population into K blocks of whole villages across the workers "
        "(for very large populations; same metrics bit for bit)",
    )
    run.add_argument(
        "--metric", dest="metrics", action="append", metavar="NAME",
        help="headline number for the sweep tables (repeatable; default exclusion_error_mean, "
        "inclusion_error_mean, cost_total_yuan)",
    )
    run.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: results/<experiment name>/); an earlier result there is replaced, "
        "an unfinished run of the same experiment is resumed, a folder of other files is refused",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    run.add_argument(
        "--yes", action="store_true",
        help="start without asking when the experiment is very large (over 1e11 household-months in all); "
        "a population that does not fit in this machine's memory is refused all the same",
    )


def _build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser.  The options of ``validate`` are declared by :mod:`povsim.validate`,
    which is imported (with Numba and pandas) only when ``argv`` holds that command, or is None."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="povsim",
        description="Simulate household poverty dynamics and how well rules for identifying the poor keep up.",
    )
    parser.add_argument("--version", action="version", version=f"povsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run an experiment file: every scenario x sweep point x replicate",
        description="Run an experiment file (TOML). One run prints a per-year summary and writes "
        "metrics.parquet, events.parquet, delays.parquet, config.json, manifest.json and errors.png to --out. "
        "Several runs (scenarios, replicates, a sweep) print each scenario's headline numbers with 95% intervals "
        "and the paired differences from the baseline, and write runs/ (each run as it finishes), metrics.parquet, "
        "summary.csv, comparison.csv, figures and report.html; started again, an unfinished experiment resumes.",
    )
    _add_run_options(run)
    sweep = sub.add_parser(
        "sweep",
        help="run an experiment file with a [sweep] and print one row per sweep point",
        description="Run an experiment file that has a [sweep] (a grid, or an LHS or Sobol sample of parameter "
        "ranges), exactly as `povsim run` does, and print a table per headline number: one row per sweep point, "
        "the swept values, each scenario's mean with its 95% interval, and the paired differences from the baseline.",
    )
    _add_run_options(sweep)

    cal = sub.add_parser(
        "calibrate",
        help="fit parameters to targets (simulated method of moments)",
        description="Fit the parameters of a calibration file to its targets; write fitted.toml, report.md, "
        "targets.csv, targets.png and history.csv to --out.",
    )
    cal.add_argument("calibration", type=Path, help="calibration file (TOML), e.g. experiments/calibration_china.toml")
    cal.add_argument("--households", type=_positive_int, metavar="N", help="households per evaluation")
    cal.add_argument("--max-evaluations", type=_positive_int, metavar="N", help="largest number of model runs")
    cal.add_argument(
        "--workers", type=_positive_int, metavar="N",
        help="Dask workers on this machine for differential evolution (default: evaluate in this process)",
    )
    cal.add_argument(
        "--seeds", type=_count, metavar="N",
        help="refit at N other seeds, and standard errors from the SMM Jacobian (default: the file's seeds)",
    )
    cal.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: results/<calibration name>/)")
    cal.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    app = sub.add_parser(
        "app",
        help="start the interactive page: the Mesa model of one county in the browser",
        description="Start the interactive page (the Mesa model, drawn with Solara) on this computer only (127.0.0.1) "
        "and print its address: the villages of one county as a grid of households coloured by status, the exclusion "
        "and inclusion error month by month, Step/Play/Reset, a choice of rule and controls for the channels. Needs "
        "the app extra: "
        "pip install 'povsim[app]'. Ctrl-C stops it.",
    )
    app.add_argument("--port", type=_port, default=DEFAULT_APP_PORT, metavar="N", help=f"port (default {DEFAULT_APP_PORT})")
    app.add_argument(
        "--households",
        type=_page_households,
        default=2_000,
        metavar="N",
        help="households of the page's model (default 2,000, in villages of 120)",
    )

    validate = sub.add_parser(
        "validate",
        help="the calibrated model against its targets, and predictions it was not fitted to (docs/validation.md)",
        description="Run the calibrated China experiment at several independent seeds and write validation.md and "
        "figures/validation_targets.png to --out: each calibration target's observed value against the model's "
        "mean and range over the seeds, and predictions the model was not fitted to (the look-back, yearly flows, "
        "the county exit assessments by cohort, exits from poverty and returns in the panel sense). "
        "The same as python -m povsim.validate.",
    )
    if argv is None or "validate" in argv:
        from .validate import add_arguments as add_validate_arguments

        add_validate_arguments(validate)

    params = sub.add_parser("params", help="list every parameter with its unit, default, allowed range and source")
    params.add_argument("--markdown", action="store_true", help="print a Markdown table (as in docs/parameters.md)")

    from .figures import FIGURE_NAMES, QUICK

    figures = sub.add_parser(
        "figures",
        help="draw every figure of the documentation from the experiment files (into results/figures/)",
        description="Run the experiment files in experiments/ and draw every figure of the documentation into "
        "results/figures/ (another folder with --out; the documentation's own docs/figures/ with --docs) "
        "(PNG, written atomically), each with its provenance (experiment file, seed, households, povsim "
        "version, date) in its caption and its PNG metadata, then rewrite index.md there. The speed figure is "
        "drawn from a saved measurement (--measurement, made by python benchmarks/speed_figure.py). Run from the "
        "repository root. Figures: " + ", ".join(FIGURE_NAMES) + ".",
    )
    figures.add_argument(
        "--quick",
        action="store_true",
        help=f"reduced scale: at most {QUICK.households:,} households per experiment (about a minute on 2 cores); "
        "default: each file's own scale",
    )
    where = figures.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: results/figures)")
    where.add_argument(
        "--docs", action="store_true",
        help="regenerate the documentation's figures in docs/figures/ (replacing the committed ones)",
    )
    figures.add_argument(
        "--experiments",
        type=Path,
        default=Path("experiments"),
        metavar="DIR",
        help="folder of experiment files (default: experiments)",
    )
    figures.add_argument(
        "--measurement",
        type=Path,
        metavar="FILE",
        help="speed measurement the performance figure is drawn from (default: docs/figures/performance.json "
        "beside the experiments folder; made by python benchmarks/speed_figure.py)",
    )
    figures.add_argument(
        "--only",
        action="append",
        choices=FIGURE_NAMES,
        metavar="NAME",
        help="make only this figure (repeatable): " + ", ".join(FIGURE_NAMES),
    )
    figures.add_argument(
        "--households",
        type=_positive_int,
        metavar="N",
        help="households in every experiment, instead of the files' (or --quick's) numbers",
    )
    figures.add_argument("--quiet", action="store_true", help="print only errors")
    return parser


def _load(args: argparse.Namespace):
    from .config import parse_override
    from .experiments import Experiment

    overrides: dict = {}
    for text in args.overrides:
        key, value = parse_override(text)
        overrides[key] = value
    if args.households is not None:  # the dedicated options win over --set of the same key
        overrides["population.households"] = args.households
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.threads is not None:
        overrides["simulation.threads"] = args.threads
    if args.replicates is not None:
        overrides["replicates"] = args.replicates
    return Experiment.from_file(args.experiment, overrides=overrides)


#: the widest line `povsim run` prints; wider tables are split into blocks of columns (every number is
#: also in the output folder: metrics.parquet, summary.csv, comparison.csv, report.html)
WIDTH = 100

#: the per-year tables of one run: (column of Result.summary(), header as printed, legend)
YEAR_STOCKS = (
    ("households", "households", "households simulated"),
    ("poor", "poor", "households truly poor (their income of the year is below the line)"),
    ("headcount_rate", "headcount %", "poor people / people, as the NBS counts"),
    ("registered", "registered", "households on the register"),
    ("exclusion_error", "exclusion %", "poor households not registered / poor households"),
    ("inclusion_error", "inclusion %", "non-poor households registered / registered households"),
    ("missed_rate", "missed %", "poor not registered / not registered (official missed rate)"),
)
YEAR_FLOWS = (
    ("entered", "entered", "entries onto the register, every route"),
    ("newly_identified", "first_reg", "households registered for the first time"),
    ("re_registered", "re_reg", "households registered again after an exit from the register"),
    ("exited", "exited", "exits at the annual reviews"),
    ("wrong_exit", "wrong_exit", "exits of households still truly poor"),
    ("newly_poor_annual", "new_poor", "households poor this December, not the December before"),
    ("exits_from_poverty_annual", "left_pov", "households poor the December before, not this December"),
    ("returns_to_poverty_annual", "returned", "newly poor households that were poor at an earlier December"),
    ("cost_total", "cost (M yuan)", "every activity's cost and the transfers, million yuan"),
)
_RATES = ("headcount_rate", "exclusion_error", "inclusion_error", "missed_rate")


def _wrap(text: str, indent: str = "") -> str:
    """Prose as printed: lines of at most :data:`WIDTH` characters."""
    import textwrap

    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def legend(entries) -> str:
    """``(header, meaning)`` pairs as the legend printed under a table: one line each, at most WIDTH wide."""
    entries = list(entries)
    width = max(len(h) for h, _ in entries)
    return "\n".join(_wrap(f"  {h.ljust(width)}  {meaning}", " " * (width + 4)) for h, meaning in entries)


def fit_columns(table, keep: Sequence[str] = (), width: int = WIDTH) -> list:
    """``table`` (a DataFrame) as blocks of its columns whose printed lines are at most ``width`` wide.

    The index and the ``keep`` columns are repeated in every block; each block takes as many of
    the other columns, in order, as fit (at least one).
    """
    keep = [c for c in keep if c in table.columns]
    rest = [c for c in table.columns if c not in keep]
    if not rest:
        return [table]
    blocks, current = [], []
    for column in rest:
        trial = table[keep + current + [column]]
        if current and max(len(line) for line in trial.to_string().splitlines()) > width:
            blocks.append(table[keep + current])
            current = []
        current.append(column)
    blocks.append(table[keep + current])
    return blocks


def _blocks_text(table, keep: Sequence[str] = ()) -> str:
    return "\n\n".join(block.to_string() for block in fit_columns(table, keep))


def _year_table(summary, columns) -> "object":
    table = summary[[c for c, _, _ in columns]].copy()
    for col in table.columns:
        if col in _RATES:
            table[col] = (100 * table[col]).map(lambda v: "-" if v != v else f"{v:.1f}")
        elif col == "cost_total":
            table[col] = (table[col] / 1e6).map(lambda v: f"{v:,.2f}")
    return table.rename(columns={c: header for c, header, _ in columns})


def format_summary(summary) -> str:
    """The per-year tables as printed, each with its legend: year-end stocks (rates in percent), then the
    year's flows and cost (million yuan); each at most :data:`WIDTH` characters wide.

    ``first_reg`` and ``re_reg`` are the registry's first registrations and re-registrations
    after an exit; ``new_poor``, ``left_pov`` and ``returned`` the year-to-year
    (December to December) flows into, out of and back into poverty.
    """
    parts = []
    for title, columns in (
        ("Year-end stocks (headcount over people; errors over households):", YEAR_STOCKS),
        ("Flows in the year (households) and cost:", YEAR_FLOWS),
    ):
        parts += [title, _blocks_text(_year_table(summary, columns)), legend((h, m) for _, h, m in columns)]
    return "\n".join(parts)


def _short_headers(names: Sequence[str], limit: int = 24) -> dict[str, str]:
    """Printed headers for long column names: a dotted key by its last part(s), other names cut at ``limit``."""
    short = {}
    for name in names:
        text = str(name)
        if "." in text:
            parts = text.split(".")
            depth = 1
            while depth < len(parts) and sum(
                ".".join(str(n).split(".")[-depth:]) == ".".join(parts[-depth:]) for n in names
            ) > 1:
                depth += 1
            text = ".".join(parts[-depth:])
        if len(text) > limit:
            text = text[: limit - 1] + "~"
        if text != str(name):
            short[name] = text
    return short


def _scenario_blocks(table) -> str:
    """A table with one column per scenario, in blocks that fit; long scenario names shortened, with a legend."""
    short = _short_headers(list(table.columns))
    text = _blocks_text(table.rename(columns=short))
    if short:
        text += "\n" + legend((s, f"scenario {n}") for n, s in short.items())
    return text


def format_comparison(summary) -> str:
    """The side-by-side scenario table as printed: mean ± 95 % half-width (rates in percent, money in M yuan)."""
    from .report import scenario_table

    return _scenario_blocks(scenario_table(summary))


def format_differences(compare) -> str:
    """Paired differences from the baseline as printed (rates in percentage points)."""
    from .report import difference_table

    return _scenario_blocks(difference_table(compare))


def format_sweep(table, swept: Sequence[str]) -> str:
    """A sweep table as printed: the swept keys by short names (with a legend), scenarios in blocks that fit."""
    short = _short_headers(list(table.columns))
    renamed = table.rename(columns=short)
    text = _blocks_text(renamed, keep=[short.get(k, k) for k in swept])
    if short:
        text += "\n" + legend((s, n if n in swept else f"scenario {n}") for n, s in short.items())
    return text


SWEEP_METRICS = ("exclusion_error_mean", "inclusion_error_mean", "cost_total_yuan")


def _print_single(experiment, outcome) -> None:
    (result,) = outcome.runs.values()
    m = result.manifest
    print(_wrap(
        f"{experiment.name}: {m['households']:,} households, {m['months_simulated']} months "
        f"({m['months_burn_in']} burn-in), {m['wall_time_s']:.1f} s, "
        f"{m['household_months_per_s']:.3g} household-months/s, "
        f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}"
        + (f", {m['blocks']} blocks on {m['workers']} workers" if "blocks" in m else "")
    ))
    print(format_summary(result.summary()))


def _print_experiment(experiment, outcome, metrics: list[str] | None) -> None:
    from .report import LABELS, sweep_table

    info = outcome.info
    n_runs = len(experiment.runs)
    base = experiment.configs["baseline"]
    shape = f"{len(experiment.configs)} scenario{'s' if len(experiment.configs) != 1 else ''}"
    if experiment.sweep is not None:
        shape += f" x {len(experiment.sweep.points)} sweep points"
    shape += f" x {experiment.replicates} replicate{'s' if experiment.replicates != 1 else ''}"
    if info["resumed"] == n_runs:
        where = "all found finished in the output folder"
    else:
        where = f"{info['workers']} Dask workers" if info.get("workers") else "serially"
    print(_wrap(
        f"{experiment.name}: {shape} = {n_runs} runs of {base.population.households:,} households, {where}, "
        f"{info['elapsed_s']:.1f} s ({info['resumed']} already done, "
        f"{len(outcome.runs) - info['resumed']} run, {len(outcome.failures)} failed)"
    ))
    if not outcome.runs:
        return
    summary = outcome.summary()
    compare = outcome.compare() if len(experiment.configs) > 1 else None
    note = (
        f"mean over {experiment.replicates} replicates ± half-width of its 95% interval (t)"
        if experiment.replicates > 1 else "one replicate"
    )
    if experiment.sweep is None:
        print(_wrap(f"Scenarios side by side ({note}; errors: mean over months with a register, and at the end):"))
        print(format_comparison(summary))
        if compare is not None:
            print(_wrap("Difference from the baseline, paired replicate by replicate (same seeds; rates in points):"))
            print(format_differences(compare))
        return
    points = outcome.points()
    swept = list(points.columns)
    for metric in metrics or SWEEP_METRICS:
        print(_wrap(f"{LABELS.get(metric, metric)} by sweep point ({note}):"))
        print(format_sweep(sweep_table(summary, points, metric), swept))
        if compare is not None:
            print(_wrap(f"{LABELS.get(metric, metric)}, minus the baseline (paired):"))
            print(format_sweep(sweep_table(compare, points, metric, signed=True), swept))


def _confirm_size(experiment, workers: int | None, args: argparse.Namespace) -> bool:
    """Whether to start ``experiment``: its memory checked against this machine's, a very large one confirmed.

    Memory is checked for the processes that run at once on this machine (not on a cluster
    of ``--scheduler``, whose memory is its own): :class:`~povsim.sizing.SizeError` when
    they do not fit.  An experiment over :data:`~povsim.sizing.LARGE_HOUSEHOLD_MONTHS` is
    asked about at a terminal and refused elsewhere, unless ``--yes``.
    """
    from . import sizing
    from .cluster import available_cores

    configs = [experiment.config_for(spec) for spec in experiment.runs]
    largest = max(c.population.households for c in configs)
    if args.scheduler is None:
        processes = max(1, workers or 1)
        if args.split > 1:  # one population split over the workers: each holds its share
            sizing.check_memory(-(-largest // processes), processes)
        else:
            sizing.check_memory(largest, min(processes, len(configs)))
    total = sizing.household_months(configs)
    if args.yes or total <= sizing.LARGE_HOUSEHOLD_MONTHS:
        return True
    cores = available_cores() if args.scheduler is None else 1
    what = f"{len(configs):,} run(s) of up to {largest:,} households: {sizing.describe(total, cores)}"
    if not sys.stdin.isatty():
        raise sizing.SizeError(
            f"{str(args.experiment)!r} is very large ({what}); allowed: at most "
            f"{sizing.LARGE_HOUSEHOLD_MONTHS:.0e} household-months without --yes (add --yes to start it)"
        )
    print(_wrap(f"povsim: {str(args.experiment)!r} is very large: {what}."), file=sys.stderr)
    try:
        answer = input("Start it? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("povsim: not started", file=sys.stderr)
    return False


def _cmd_run(args: argparse.Namespace, sweep_view: bool = False) -> int:
    from .cluster import available_cores, check_scheduler_address, open_client, quiet_distributed_logs
    from .config import ConfigError
    from .experiments import HEADLINE
    from .files import check_output_place
    from .results import check_replaceable

    if args.scheduler is not None:  # a malformed address is refused before anything is read or written
        check_scheduler_address(args.scheduler)
    experiment = _load(args)
    if sweep_view and experiment.sweep is None:
        raise ConfigError(
            f"{str(args.experiment)!r} has no [sweep] table; allowed: a file with [sweep.grid] or "
            "[sweep] method/samples/[sweep.ranges] (use `povsim run` for scenarios and replicates)"
        )
    for metric in args.metrics or []:
        if metric not in HEADLINE:
            raise ConfigError(f"--metric {metric!r}: unknown headline number; allowed: {', '.join(HEADLINE)}")
    out = args.out if args.out is not None else Path("results") / experiment.name
    check_output_place(out, runs=len(experiment.runs))
    check_replaceable(out)
    n_runs = len(experiment.runs)
    workers = args.workers
    if workers is None and args.scheduler is None:  # one per core, no more than there is work for
        workers = min(available_cores(), args.split if args.split > 1 else n_runs)
    if not _confirm_size(experiment, workers, args):
        return EXIT_BAD_INPUT
    if args.scheduler or (workers or 0) >= 2:
        # povsim reports a lost scheduler, a failed run and an interrupt in one line each: distributed's
        # own log of the same events (tracebacks of closed connections) is not shown on the terminal
        quiet_distributed_logs()
    try:
        if args.scheduler:
            with open_client(scheduler=args.scheduler, timeout=args.connect_timeout) as client:
                outcome = experiment.run(client, out=out, progress=not args.quiet, split=args.split)
        else:  # a local cluster is started only if there is work for it (a resumed experiment may have none)
            outcome = experiment.run(workers=workers, out=out, progress=not args.quiet, split=args.split)
    except KeyboardInterrupt:
        if n_runs > 1 and (out / "runs").is_dir():
            print(f"povsim: interrupted; finished runs are kept in {out}/: run the same command again to resume",
                  file=sys.stderr)
            return 130
        raise
    for path, reason in outcome.info.get("redone", {}).items():
        print(f"povsim: saved run runs/{path} was not reused and ran again: {reason}", file=sys.stderr)
    for spec, error in outcome.failures.items():
        print(f"povsim: run failed: {spec.describe()}: {error}", file=sys.stderr)
    if not args.quiet and outcome.runs:
        if n_runs == 1:
            _print_single(experiment, outcome)
        else:
            _print_experiment(experiment, outcome, args.metrics)
        print(_wrap(f"written to {out}/" + (" (every number also in summary.csv and report.html)" if n_runs > 1 else "")))
    if outcome.failures:
        print(f"povsim: {len(outcome.failures)} of {n_runs} runs failed", file=sys.stderr)
        return EXIT_RUN_FAILED
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import Calibration
    from .files import check_output_place, writing_into
    from .results import check_replaceable

    overrides = {"population.households": args.households} if args.households else None
    calibration = Calibration.from_file(args.calibration, overrides=overrides)
    if args.max_evaluations:
        calibration.max_evaluations = args.max_evaluations
    if args.seeds is not None:
        calibration.seeds = args.seeds
    calibration.validate()
    out = args.out if args.out is not None else Path("results") / calibration.name
    check_output_place(out)
    check_replaceable(out)
    client = cluster = None
    if args.workers and args.workers > 1 and (calibration.method == "differential-evolution" or calibration.seeds):
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        result = calibration.run(client=client, progress=not args.quiet)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    with writing_into(out):
        path = result.save(out)
    if not args.quiet:
        print(result.report())
        print(f"written to {path}/")
    return 0


def parameters_markdown() -> str:
    """Every parameter as a Markdown table; docs/parameters.md is this text."""
    from .config import parameter_table

    lines = [
        "# Parameters",
        "",
        "Generated from the config schema by `povsim params --markdown`; do not edit by hand.",
        "Every key can be set in an experiment file or with `--set key=value`.",
        "",
        "Defaults marked **fitted** come from the calibration to rural China (docs/calibration.md).",
        "",
        "| key | unit | default | allowed | description | source |",
        "|---|---|---|---|---|---|",
    ]
    for row in parameter_table():
        default = "unset" if row["default"] is None else f"`{row['default']!r}`"
        default += " **fitted**" if row["fitted"] else ""
        cells = [f"`{row['key']}`", row["unit"], default, row["allowed"], row["description"], row["source"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cmd_params(markdown: bool) -> int:
    from .config import parameter_table

    if markdown:
        print(parameters_markdown(), end="")
        return 0
    for row in parameter_table():
        default = "(unset)" if row["default"] is None else repr(row["default"])
        fitted = "  (fitted)" if row["fitted"] else ""
        print(f"{row['key']} = {default}{fitted}  [{row['unit']}; allowed {row['allowed']}]")
        print(f"    {row['description']}. Source: {row['source']}")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from .figures import FULL, QUICK, build_figures
    from .files import check_output_place

    scale = QUICK if args.quick else FULL
    command = ["povsim figures"] + (["--docs"] if args.docs else []) + (["--quick"] if args.quick else [])
    out = Path("docs") / "figures" if args.docs else (args.out if args.out is not None else Path("results") / "figures")
    if args.households is not None:
        name = f"{args.households:,} households per experiment"
        scale = dataclasses.replace(scale, name=name, households=args.households, cap=False)
        command.append(f"--households {args.households}")
    command += [f"--only {name}" for name in args.only or []]

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    check_output_place(out)
    t0 = time.perf_counter()
    written = build_figures(
        out, scale=scale, experiments=args.experiments, measurement=args.measurement, only=args.only, log=log,
        command=" ".join(command),
    )
    if not args.quiet:
        for path in written:
            print(path)
        seconds = time.perf_counter() - t0
        print(f"{len(written) - 1} figure(s) and {written[-1].name} in {seconds:.0f} s", file=sys.stderr)
def app_command(port: int) -> list[str]:
    """The command that serves the page: Solara in production mode (no reloading), no browser opened."""
    return [
        sys.executable, "-m", "solara", "run", "povsim.mesa.app",
        "--host", APP_HOST, "--port", str(port),
        "--production", "--no-open", "--no-check-version", "--log-level", "warning",
    ]  # fmt: skip


def _cmd_app(args: argparse.Namespace) -> int:
    import importlib.util
    import os
    import signal
    import socket
    import subprocess

    if importlib.util.find_spec("solara") is None:
        print("povsim: error: the page needs Solara (Mesa's visualization): pip install 'povsim[app]'", file=sys.stderr)
        return EXIT_BAD_INPUT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((APP_HOST, args.port))
        except OSError as err:
            print(f"povsim: error: port {args.port} on {APP_HOST} is not free ({err.strerror}); "
                  "choose another with --port N", file=sys.stderr)  # fmt: skip
            return EXIT_BAD_INPUT
    from .mesa.county import HOUSEHOLDS_ENV

    env = {**os.environ, HOUSEHOLDS_ENV: str(args.households)}
    env.setdefault("SOLARA_CHECK_HOOKS", "off")  # Solara's hook linter warns about Mesa's own components
    # a warning on every page load: plain http on the loopback interface is what is meant here
    quiet = "ignore:Cookies with samesite=none require https:UserWarning"
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), quiet) if w)
    proc = subprocess.Popen(app_command(args.port), env=env)
    print(f"povsim app: http://{APP_HOST}:{args.port}/ ({args.households:,} households; Ctrl-C stops it)", flush=True)

    def forward(signum, frame):  # `kill` of this process stops the server too
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches the server too; a SIGINT sent to this process alone is
            # forwarded (after a moment, so that a server already stopping gets no second one)
            for action, wait in ((None, 3), (signal.SIGINT, 15), ("kill", 15)):
                if action == "kill":
                    proc.kill()
                elif action is not None:
                    forward(action, None)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            print("povsim app: stopped", flush=True)
            return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        print(f"povsim: error: the page's server stopped with status {code}", file=sys.stderr)
        return 1
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validate import validate

    done = validate(args, log=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"wrote {done['page']} and {done['figure']} in {done['wall_s']:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    from .cluster import ClusterStartError, SchedulerAddressError, SchedulerLostError
    from .config import ConfigError
    from .files import OutputPlaceError, OutputWriteError
    from .sizing import SizeError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "sweep":
            return _cmd_run(args, sweep_view=True)
        if args.command == "calibrate":
            return _cmd_calibrate(args)
        if args.command == "params":
            return _cmd_params(args.markdown)
        if args.command == "figures":
            return _cmd_figures(args)
        if args.command == "app":
            return _cmd_app(args)
        if args.command == "validate":
            return _cmd_validate(args)
    except BrokenPipeError:  # e.g. `povsim params | head` (before ConnectionError, its base class)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's last flush has somewhere to go
        return 0
    except (ConfigError, FileExistsError, ConnectionError, OutputPlaceError, SizeError, SchedulerAddressError) as err:
        print(f"povsim: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OutputWriteError, SchedulerLostError, ClusterStartError) as err:
        # the disk filled, the scheduler went, the workers did not start: the runs finished before are kept
        print(f"povsim: error: {err}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("povsim: interrupted; nothing was written", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
