"""The ``povsim`` command line, run as a separate process like an analyst would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from helpers import ONETIME, ONETIME_SET, QUICKSTART, REPO, run_cli

import povsim
from povsim.config import load_config

Q = str(QUICKSTART)

#: case -> (arguments after `povsim run`, texts the error message must contain)
BAD_INPUTS = {
    "missing-file": (["{tmp}/nope.toml"], ["nope.toml", "not found"]),
    "malformed-toml": (["{tmp}/broken.toml"], ["broken.toml", "malformed TOML"]),
    "unknown-key-in-file": (["{tmp}/unknown.toml"], ["population.householdz", "households_per_village"]),
    "wrong-type": ([Q, "--set", 'population.households="many"'], ["population.households", "'many'", "integer"]),
    "out-of-range": (
        [Q, "--set", "illness.onset_probability=1.5"],
        ["illness.onset_probability", "1.5", "less than or equal to 1"],
    ),
    "negative-households": ([Q, "--households", "-3"], ["--households", "-3", "positive"]),
    "zero-threads": ([Q, "--threads", "0"], ["--threads", "0", "positive"]),
    "unknown-set-key": ([Q, "--set", "illness.onset=0.1"], ["illness.onset", "onset_probability"]),
    "set-without-equals": ([Q, "--set", "illness.onset_probability"], ["illness.onset_probability", "key.path=value"]),
    "negative-seed": ([Q, "--seed", "-1"], ["seed", "-1", "greater than or equal to 0"]),
    "registration-outside-period": (
        [Q, *ONETIME_SET, "--set", 'simulation.end="2014-06"'],
        ["policy.registration.month", "2014-10", "2013-01 to 2014-06"],
    ),
    "default-rules-outside-period": (
        [Q, "--set", 'simulation.end="2014-06"'],
        ["policy.registration.month", "policy.lookback.start", "policy.review.first", "policy.channels.data.start",
         "2013-01 to 2014-06"],
    ),
    "channel-start-outside-period": (
        [Q, "--set", 'policy.channels.cadre.start="2021-01"'],
        ["policy.channels.cadre.start", "'2021-01'", "outside the simulated period", "2013-01 to 2020-12"],
    ),
    "lookback-end-before-start": (
        [Q, "--set", 'policy.lookback.end="2015-07"'],
        ["policy.lookback.end", "'2015-07'", "policy.lookback.start", "'2015-08'"],
    ),
    "negative-lag": (
        [Q, "--set", "policy.channels.data.lag=-1"],
        ["policy.channels.data.lag", "-1", "greater than or equal to 0"],
    ),
    "probability-above-1": (
        [Q, "--set", "policy.channels.self.apply_probability=1.5"],
        ["policy.channels.self.apply_probability", "1.5", "less than or equal to 1"],
    ),
    "unknown-method": (
        [Q, "--set", 'policy.registration.method="lottery"'],
        ["policy.registration.method", "'lottery'", "'quota' or 'threshold'"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_and_writes_nothing(case, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "broken.toml").write_text("[population\nhouseholds = 5\n")
    (inputs / "unknown.toml").write_text("[population]\nhouseholdz = 5\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args, expected = BAD_INPUTS[case]
    args = [a.replace("{tmp}", str(inputs)) for a in args]
    out = tmp_path / "out"

    # a small population first, so that a bad input accepted by mistake would still finish quickly;
    # the case's own arguments come after it and take precedence
    proc = run_cli("run", "--set", "population.households=2000", *args, "--out", str(out), cwd=cwd)

    assert proc.returncode == 2, proc.stderr
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["cwd", "in"]  # no temporary folders beside --out
    assert os.listdir(cwd) == []  # nor a default results/ folder


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "out"
    proc = run_cli(
        "run", str(QUICKSTART),
        "--households", "2000",
        "--seed", "11",
        "--threads", "1",
        "--set", "simulation.burn_in_years=1",
        "--set", 'simulation.end="2015-12"',
        *ONETIME_SET,
        "--out", str(out),
        cwd=tmp,
    )
    return proc, out, tmp


def test_onetime_set_arguments_mean_the_onetime_overrides():
    from povsim.config import parse_override

    pairs = [parse_override(ONETIME_SET[k + 1]) for k in range(0, len(ONETIME_SET), 2)]
    assert ONETIME_SET[::2] == ["--set"] * len(ONETIME)
    assert dict(pairs) == ONETIME


def test_good_run_exits_0(good_run):
    proc, out, tmp = good_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == [
        "config.json", "delays.parquet", "errors.png", "events.parquet", "manifest.json", "metrics.parquet",
    ]
    assert sorted(os.listdir(tmp)) == ["out"]


def test_good_run_writes_resolved_config(good_run):
    _, out, _ = good_run
    config = json.loads((out / "config.json").read_text())
    expected = load_config(
        QUICKSTART,
        overrides={
            "population.households": 2000, "seed": 11, "simulation.threads": 1,
            "simulation.burn_in_years": 1, "simulation.end": "2015-12", **ONETIME,
        },
    ).to_dict()
    assert config == expected  # every default filled in
    assert config["population"]["households"] == 2000
    assert config["illness"]["onset_probability"] == povsim.Config().illness.onset_probability
    assert config["name"] == "quickstart"
    assert config["policy"]["registration"]["method"] == "threshold"
    assert config["policy"]["lookback"]["enabled"] is False


def test_good_run_writes_manifest(good_run):
    _, out, _ = good_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["povsim_version"] == povsim.__version__
    assert m["seed"] == 11
    assert m["threads"] == 1
    assert m["households"] == 2000
    assert m["months_simulated"] == 12 + 36
    assert m["wall_time_s"] >= 0
    assert m["bytes_per_household"] <= 64


def test_good_run_writes_metrics_and_figure(good_run):
    _, out, _ = good_run
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert len(metrics) == 36
    assert (metrics["households"] == 2000).all()
    assert metrics["year"].tolist() == [2013] * 12 + [2014] * 12 + [2015] * 12
    assert (out / "errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_good_run_matches_the_library(good_run):
    """The CLI runs exactly what the library runs for the same resolved config."""
    _, out, _ = good_run
    saved = povsim.load_result(out)
    again = povsim.run(saved.config)
    pd.testing.assert_frame_equal(saved.metrics, again.metrics, check_exact=True)
    pd.testing.assert_frame_equal(saved.events, again.events, check_exact=True)
    pd.testing.assert_frame_equal(saved.delays, again.delays, check_exact=True)


def test_good_run_prints_the_yearly_table(good_run):
    from povsim.cli import YEAR_FLOWS, YEAR_STOCKS

    proc, out, _ = good_run
    lines = proc.stdout.splitlines()
    stocks = lines.index(next(line for line in lines if "headcount %" in line))
    flows = lines.index(next(line for line in lines if "first_reg" in line))
    # povsim.cli.format_summary: year-end stocks (rates in percent), then the year's flows and cost (M yuan)
    assert lines[stocks].split() == [
        "households", "poor", "headcount", "%", "registered", "exclusion", "%", "inclusion", "%", "missed", "%",
    ]
    assert lines[flows].split() == [
        "entered", "first_reg", "re_reg", "exited", "wrong_exit", "new_poor", "left_pov", "returned", "cost", "(M",
        "yuan)",
    ]
    saved = povsim.load_result(out)
    summary = saved.summary()
    for year, row in summary.iterrows():
        stock = next(line for line in lines[stocks:flows] if line.startswith(str(year))).split()
        flow = next(line for line in lines[flows:] if line.startswith(str(year))).split()
        assert stock[1:3] == [str(int(row["households"])), str(int(row["poor"]))]
        assert stock[3] == f"{100 * row['headcount_rate']:.1f}"
        assert stock[4] == str(int(row["registered"]))
        assert flow[1:3] == [str(int(row["entered"])), str(int(row["newly_identified"]))]
        assert flow[-1] == f"{row['cost_total'] / 1e6:,.2f}"
    for year in ("2013", "2014", "2015"):
        assert any(line.startswith(year) for line in lines), year
    # every column has its legend line, and nothing is wider than 100 characters
    for _, header, meaning in YEAR_STOCKS + YEAR_FLOWS:
        assert any(line.startswith(f"  {header} ") and line.endswith(meaning) for line in lines), header
    assert "official missed rate" in proc.stdout
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "2,000 households" in proc.stdout
    assert "48 months" in proc.stdout
    assert str(out) in proc.stdout


#: scenarios with replicates (cells "12.3 ± 0.4") and a name too long for a column header
WIDE_EXPERIMENT = """
name = "wide"
seed = 3
replicates = 2
[simulation]
burn_in_years = 1
end = "2018-12"
[population]
households = 2000
[scenarios.no_lookback]
"policy.lookback.enabled" = false
[scenarios.no_reviews_and_no_channels_at_all]
"policy.review.enabled" = false
"policy.channels.self.enabled" = false
"policy.channels.cadre.enabled" = false
"policy.channels.data.enabled" = false
"policy.channels.hotline.enabled" = false
[scenarios.threshold]
"policy.registration.method" = "threshold"
[scenarios.early_cadres]
"policy.channels.cadre.start" = "2015-01"
[scenarios.more_cadre_visits]
"policy.channels.cadre.visits_per_village" = 12
"""


def _printed(tmp_path, text: str, *args: str):
    path = tmp_path / "wide.toml"
    path.write_text(text)
    proc = run_cli("run", str(path), "--workers", "0", "--out", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_scenario_tables_fit_100_columns_with_a_legend_for_each_shortened_header(tmp_path):
    lines = _printed(tmp_path, WIDE_EXPERIMENT)
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    headers = [line.split() for line in lines if line.startswith("scenario ")]
    shown = {name for header in headers for name in header[1:]}
    # every scenario is printed: in the side by side table and among the differences from the baseline
    assert {"baseline", "no_lookback", "threshold", "early_cadres", "more_cadre_visits"} <= shown
    short = [name for name in shown if name.endswith("~")]
    assert short, shown  # the long scenario name is shortened ...
    for name in short:  # ... and its legend line gives it in full
        assert any(line.split()[:2] == [name, "scenario"] and line.endswith("no_reviews_and_no_channels_at_all")
                   for line in lines), name
    assert sum("exclusion error, mean %" in line for line in lines) >= 4  # both tables in more than one block
    assert any("±" in line for line in lines)


def test_sweep_tables_fit_100_columns_with_the_swept_keys_in_the_legend(tmp_path):
    text = WIDE_EXPERIMENT.split("[scenarios.threshold]")[0].replace("replicates = 2", "replicates = 1") + """
[sweep.grid]
"policy.channels.cadre.visits_per_village" = [2, 8]
"policy.verification.delay" = [1]
"""
    lines = _printed(tmp_path, text)
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    headers = [line.split() for line in lines if "visits_per_village" in line and "delay" in line]
    assert headers and all(h[:2] == ["visits_per_village", "delay"] for h in headers), headers
    for key in ("policy.channels.cadre.visits_per_village", "policy.verification.delay"):
        assert any(line.split() == [key.rsplit(".", 1)[1], key] for line in lines), key


def test_quiet_prints_nothing(tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        "run", str(QUICKSTART), "--households", "2000", "--quiet",
        "--set", "simulation.burn_in_years=1", "--set", "simulation.start=2015-01", "--set", "simulation.end=2015-12",
        "--set", "policy.registration.month=2015-06", *ONETIME_SET,
        "--out", str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert len(pd.read_parquet(out / "metrics.parquet")) == 12


def test_help_mentions_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "run" in proc.stdout and "params" in proc.stdout
    assert proc.stdout.startswith("usage: povsim")


def test_run_help_mentions_each_option():
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    for option in ("--households", "--seed", "--set", "--out", "--quiet", "--threads", "experiment"):
        assert option in proc.stdout, option


def test_every_help_text_shows_a_single_percent_sign():
    import argparse

    from povsim.cli import _build_parser

    parser = _build_parser(None)
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "sweep", "calibrate", "app", "validate", "params", "figures"} <= set(verbs)
    texts = {"povsim": parser.format_help(), **{name: sub.format_help() for name, sub in verbs.items()}}
    for name, text in texts.items():
        assert "%%" not in text, name
    assert "95% interval" in texts["run"] and "95% interval" in texts["sweep"]
    assert "95% interval" in run_cli("run", "--help").stdout


def test_no_command_is_an_error():
    proc = run_cli()
    assert proc.returncode == 2


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert povsim.__version__ in proc.stdout


def test_params_lists_every_parameter():
    from povsim.config import parameter_table

    proc = run_cli("params")
    assert proc.returncode == 0
    for row in parameter_table():
        assert f"{row['key']} = " in proc.stdout, row["key"]


def test_console_script_is_installed():
    exe = shutil.which("povsim")
    assert exe is not None, "the `povsim` console script is not on PATH (pip install -e .)"
    proc = subprocess.run([exe, "run", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "--households" in proc.stdout


def test_out_folder_of_other_files_is_refused_before_running(tmp_path):
    folder = tmp_path / "results"
    (folder / "other_experiment").mkdir(parents=True)
    precious = folder / "other_experiment" / "notes.txt"
    precious.write_text("keep me")
    proc = run_cli("run", str(QUICKSTART), "--households", "500", "--quiet", "--out", str(folder))
    assert proc.returncode == 2
    assert "not a povsim result" in proc.stderr
    assert precious.read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["other_experiment"]


#: case -> (arguments after `povsim validate`, texts its one-line error must contain)
VALIDATE_BAD_INPUTS = {
    "missing-experiment": (["--experiment", "{tmp}/nope.toml"], ["--experiment", "nope.toml", "not found"]),
    "missing-targets": (["--targets", "{tmp}/nope.toml"], ["--targets", "nope.toml", "not found"]),
    "zero-households": (["--households", "0"], ["--households 0", "allowed an integer >= 1"]),
    "zero-seeds": (["--seeds", "0"], ["--seeds 0", "allowed an integer >= 1"]),
    "office-share-above-1": (["--office-share", "1.5"], ["--office-share 1.5", "from 0 to 1"]),
}


@pytest.mark.parametrize("case", list(VALIDATE_BAD_INPUTS))
def test_validate_bad_input_exits_2_with_one_line(case, tmp_path):
    args, expected = VALIDATE_BAD_INPUTS[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "out"
    proc = run_cli("validate", "--households", "1000", "--seeds", "1", *args, "--out", str(out), cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("povsim: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)
    assert proc.stdout == "" and not out.exists()


def test_validate_verb_takes_the_modules_options():
    """`povsim validate` and `python -m povsim.validate` declare the same options with the same defaults."""
    import argparse

    from povsim.cli import _build_parser
    from povsim.validate import add_arguments

    def options(parser):
        return {a.dest: (tuple(a.option_strings), a.default, a.type) for a in parser._actions if a.dest != "help"}

    sub = next(a for a in _build_parser(["validate"])._actions if isinstance(a, argparse._SubParsersAction))
    assert options(sub.choices["validate"]) == options(add_arguments(argparse.ArgumentParser()))
    assert {"seeds", "households", "experiment", "targets", "out"} <= set(options(sub.choices["validate"]))


def test_other_commands_do_not_load_the_validation():
    code = ("import sys; from povsim.cli import _build_parser; _build_parser(['params', '--markdown']); "
            "assert 'povsim.validate' not in sys.modules and 'numba' not in sys.modules, sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_serial_run_does_not_load_dask(tmp_path):
    """One run on one process starts no cluster, so it pays nothing for distributed (half a second of a start)."""
    code = ("import sys; from povsim.cli import main; "
            f"sys.argv = ['povsim', 'run', {Q!r}, '--households', '300', '--quiet', '--out', {str(tmp_path / 'o')!r}]; "
            "code = main(); assert code == 0, code; "
            "assert 'distributed' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m or 'distrib' in m)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "o" / "metrics.parquet").is_file()


def test_validate_writes_the_page_and_figure(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("validate", "--households", "2000", "--seeds", "2", "--min-households", "500",
                   "--out", str(out), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    page = (out / "validation.md").read_text()
    assert (out / "figures" / "validation_targets.png").stat().st_size > 10_000
    from povsim.experiments import replicate_seeds

    seeds = replicate_seeds(load_config(REPO / "experiments" / "china_2014_2020.toml").seed, 2)
    assert ", ".join(str(s) for s in seeds) in page
    assert "range over 2 seeds" in page and "nothing in these" in page
    assert "Exits from poverty after k years" in page and "Returns after an exit" in page
    assert proc.stderr.count("seed ") == 2 and "wrote" in proc.stdout
