"""The ``povsim`` command line: run experiment files, calibrate, list parameters, remake the
documentation's figures, start the interactive page.

This module owns argument parsing and what is printed; it calls the library
and holds no model logic.  Every input is validated before anything is
simulated or written: a bad file, key or value exits with status 2 and one
message naming the key path, the value and what is allowed, and no output
folder is created.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

EXIT_BAD_INPUT = 2
APP_HOST = "127.0.0.1"  #: the page is served on the loopback interface only
DEFAULT_APP_PORT = 8765


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: must be a positive integer")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: a port is 1 to 65535")
    return value


def _page_households(text: str) -> int:
    from .mesa.county import MAX_HOUSEHOLDS

    value = _positive_int(text)
    if value > MAX_HOUSEHOLDS:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: the page takes 1 to {MAX_HOUSEHOLDS:,} households")
    return value


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="povsim",
        description="Simulate household poverty dynamics and how well rules for identifying the poor keep up.",
    )
    parser.add_argument("--version", action="version", version=f"povsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run an experiment file",
        description="Run an experiment file (TOML): print a per-year summary (or, for a file with "
        "[scenarios], a side-by-side table of every scenario) and write metrics.parquet, events.parquet, "
        "delays.parquet, config.json, manifest.json and errors.png to --out (one folder per scenario).",
    )
    run.add_argument("experiment", type=Path, help="experiment file (TOML), e.g. experiments/quickstart.toml")
    run.add_argument(
        "--households", type=_positive_int, metavar="N", help="households to simulate (population.households)"
    )
    run.add_argument("--seed", type=int, metavar="S", help="seed of every random stream (seed), 0 <= S < 2**64")
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
    run.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: results/<experiment name>/); an earlier result there is replaced, "
        "a folder of other files is refused",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")

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
    cal.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: results/<calibration name>/)")
    cal.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    app = sub.add_parser(
        "app",
        help="start the interactive page: the Mesa model of one county in the browser",
        description="Start the interactive page (Mesa's SolaraViz) on this computer only (127.0.0.1) and print "
        "its address: the villages of one county as a grid of households coloured by status, the exclusion and "
        "inclusion error month by month, Step/Play/Reset, and controls for the channels. Needs the app extra: "
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

    params = sub.add_parser("params", help="list every parameter with its unit, default, allowed range and source")
    params.add_argument("--markdown", action="store_true", help="print a Markdown table (as in docs/parameters.md)")

    from .figures import FIGURE_NAMES, QUICK

    figures = sub.add_parser(
        "figures",
        help="regenerate every figure in docs/figures/ from the experiment files",
        description="Run the experiment files in experiments/ and draw every figure of the documentation into "
        "--out (PNG, written atomically), each with its provenance (experiment file, seed, households, povsim "
        "version, date) in its caption and its PNG metadata, then rewrite index.md there. Run from the "
        "repository root. Figures: " + ", ".join(FIGURE_NAMES) + ".",
    )
    figures.add_argument(
        "--quick",
        action="store_true",
        help=f"reduced scale: at most {QUICK.households:,} households per experiment and speed measured up to "
        f"{max(QUICK.engine_sizes):,} households (about a minute on 2 cores); default: each file's own scale",
    )
    figures.add_argument(
        "--out", type=Path, default=Path("docs/figures"), metavar="DIR", help="output folder (default: docs/figures)"
    )
    figures.add_argument(
        "--experiments",
        type=Path,
        default=Path("experiments"),
        metavar="DIR",
        help="folder of experiment files (default: experiments)",
    )
    figures.add_argument(
        "--benchmarks",
        type=Path,
        metavar="DIR",
        help="folder holding numpy_step.py for the speed figure (default: benchmarks/ beside the experiments "
        "folder; without it the NumPy line is left out, with a note)",
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
    return Experiment.from_file(args.experiment, overrides=overrides)


def format_summary(summary) -> str:
    """The per-year table as printed: counts, and rates in percent."""
    table = summary.copy()
    for col in ("headcount_rate", "exclusion_error", "inclusion_error", "missed_rate"):
        table[col] = (100 * table[col]).map(lambda v: "-" if v != v else f"{v:.1f}")
    table["cost_total"] = (table["cost_total"] / 1e6).map(lambda v: f"{v:,.2f}")
    table = table.rename(
        columns={
            "headcount_rate": "headcount %",
            "exclusion_error": "exclusion %",
            "inclusion_error": "inclusion %",
            "missed_rate": "missed %",
            "cost_total": "cost (M yuan)",
        }
    )
    return table.to_string()


def format_comparison(table) -> str:
    """The side-by-side scenario table as printed: rates in percent, money in million yuan."""
    out = table.copy()
    for col in [c for c in out.columns if "error" in c or "rate" in c]:
        out[col] = (100 * out[col]).map(lambda v: "-" if v != v else f"{v:.1f}")
    for col in ("cost_total_yuan", "transfers_yuan"):
        out[col] = (out[col] / 1e6).map(lambda v: f"{v:,.2f}")
    for col in ("detection_delay_mean",):
        out[col] = out[col].map(lambda v: "-" if v != v else f"{v:.1f}")
    for col in ("poor_household_months", "entered", "exited", "wrong_exit", "return_to_poverty"):
        out[col] = out[col].map(lambda v: f"{v:,.0f}")
    labels = {
        "exclusion_error_mean": "exclusion error, mean %",
        "inclusion_error_mean": "inclusion error, mean %",
        "exclusion_error_end": "exclusion error, end %",
        "inclusion_error_end": "inclusion error, end %",
        "headcount_rate_end": "headcount, end %",
        "poor_household_months": "poor household-months",
        "detection_delay_mean": "detection delay, months",
        "entered": "entries",
        "exited": "exits",
        "wrong_exit": "wrong exits",
        "return_to_poverty": "returns to poverty",
        "cost_total_yuan": "cost (M yuan)",
        "transfers_yuan": "transfers (M yuan)",
    }
    return out.rename(columns=labels).T.to_string()


def _cmd_run(args: argparse.Namespace) -> int:
    from .results import check_replaceable

    experiment = _load(args)
    out = args.out if args.out is not None else Path("results") / experiment.name
    check_replaceable(out)
    outcome = experiment.run(progress=not args.quiet)
    path = outcome.save(out)
    if not args.quiet:
        for name, result in outcome.results.items():
            m = result.manifest
            label = experiment.name if len(outcome.results) == 1 else f"{experiment.name} / {name}"
            print(
                f"{label}: {m['households']:,} households, {m['months_simulated']} months "
                f"({m['months_burn_in']} burn-in), {m['wall_time_s']:.1f} s, "
                f"{m['household_months_per_s']:.3g} household-months/s, "
                f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}"
            )
        if len(outcome.results) == 1:
            print("Year-end stocks (headcount over people; errors over households); flows and cost summed over the year:")
            print(format_summary(result.summary()))
        else:
            print("Scenarios side by side (errors: mean over months with a register, and at the end):")
            print(format_comparison(outcome.summary()))
        print(f"written to {path}/")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import Calibration
    from .results import check_replaceable

    overrides = {"population.households": args.households} if args.households else None
    calibration = Calibration.from_file(args.calibration, overrides=overrides)
    if args.max_evaluations:
        calibration.max_evaluations = args.max_evaluations
    out = args.out if args.out is not None else Path("results") / calibration.name
    check_replaceable(out)
    client = cluster = None
    if args.workers and args.workers > 1 and calibration.method == "differential-evolution":
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        result = calibration.run(client=client, progress=not args.quiet)
    finally:
        if client is not None:
            client.close()
            cluster.close()
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
        "| key | unit | default | allowed | description | source |",
        "|---|---|---|---|---|---|",
    ]
    for row in parameter_table():
        cells = [f"`{row['key']}`", row["unit"], f"`{row['default']!r}`", row["allowed"], row["description"], row["source"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cmd_params(markdown: bool) -> int:
    from .config import parameter_table

    if markdown:
        print(parameters_markdown(), end="")
        return 0
    for row in parameter_table():
        print(f"{row['key']} = {row['default']!r}  [{row['unit']}; allowed {row['allowed']}]")
        print(f"    {row['description']}. Source: {row['source']}")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from .figures import FULL, QUICK, build_figures

    scale = QUICK if args.quick else FULL
    command = ["povsim figures"] + (["--quick"] if args.quick else [])
    if args.households is not None:
        name = f"{args.households:,} households per experiment"
        scale = dataclasses.replace(scale, name=name, households=args.households, cap=False)
        command.append(f"--households {args.households}")
    command += [f"--only {name}" for name in args.only or []]

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    written = build_figures(
        args.out, scale=scale, experiments=args.experiments, benchmarks=args.benchmarks, only=args.only, log=log,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    from .config import ConfigError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "calibrate":
            return _cmd_calibrate(args)
        if args.command == "params":
            return _cmd_params(args.markdown)
        if args.command == "figures":
            return _cmd_figures(args)
        if args.command == "app":
            return _cmd_app(args)
    except (ConfigError, FileExistsError) as err:
        print(f"povsim: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `povsim params | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("povsim: interrupted; nothing was written", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
