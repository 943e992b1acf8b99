"""Experiment files: a baseline and scenarios, all validated before anything runs, run with common random numbers."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, run_cli

import povsim
from povsim import metrics as M
from povsim.config import EXPERIMENT_KEYS, Config, ConfigError
from povsim.experiments import Experiment, ExperimentResult, RunSpec, headline
from povsim.results import FILES
from povsim.store import RUN_FILES

#: experiment files; calibration files (`experiment = ...`) and targets files (`[[targets]]`) are tested
#: in test_calibrate.py
EXPERIMENTS = sorted(
    p for p in (REPO / "experiments").glob("*.toml")
    if not {"experiment", "targets"} & set(tomllib.loads(p.read_text(encoding="utf-8")))
)
HEADLINE = [
    "exclusion_error_mean", "inclusion_error_mean", "exclusion_error_end", "inclusion_error_end",
    "headcount_rate_end", "poor_household_months", "detection_delay_mean", "entered", "exited", "wrong_exit",
    "returns_to_poverty", "re_registered", "cost_total_yuan", "transfers_yuan",
]
COMPARISON_FIGURES = ["exclusion_error.png", "headcount_rate.png", "inclusion_error.png"]
#: what an experiment of several runs writes beside runs/ (see povsim.store)
EXPERIMENT_FILES = ["manifest.json", "metrics.parquet", "headlines.csv", "summary.csv", "comparison.csv",
                    "report.html", "runs"] + COMPARISON_FIGURES

#: a small, quick baseline for experiments written by the tests
SMALL = """
name = "{name}"
seed = 3
[simulation]
burn_in_years = 1
[population]
households = 2000
"""


def _write(tmp_path: Path, text: str, name: str = "exp") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SMALL.format(name=name) + text, encoding="utf-8")
    return path


def _get(config: Config, dotted: str):
    node = config.to_dict()
    for part in dotted.split("."):
        node = node[part]
    return node


# --- the experiment files in experiments/ ---------------------------------------------------------------------


def test_there_are_experiment_files():
    names = {p.stem for p in EXPERIMENTS}
    assert {"quickstart", "china_2014_2020", "channels", "onetime_vs_dynamic", "quota_vs_threshold", "support"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_file_loads_and_validates(path):
    exp = Experiment.from_file(path)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    scenarios = data.get("scenarios", {})
    assert exp.name == data.get("name", path.stem) == path.stem
    assert exp.scenarios == ["baseline", *scenarios]
    assert exp.replicates == data.get("replicates", 1)
    assert len(exp.runs) == len(exp.scenarios) * exp.replicates * (len(exp.sweep.points) if exp.sweep else 1)
    for name, config in exp.configs.items():
        assert isinstance(config, Config)
        assert Config.model_validate(config.to_dict()) == config  # a valid, complete config
        assert config.seed == exp.configs["baseline"].seed  # common random numbers
        for key, value in scenarios.get(name, {}).items():
            assert _get(config, key) == value, (name, key)
    # every value the file sets is in the resolved baseline
    for key, value in _leaves({k: v for k, v in data.items() if k not in EXPERIMENT_KEYS}).items():
        assert _get(exp.configs["baseline"], key) == value, key


def _leaves(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and not (prefix + key).endswith("poverty.lines"):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_scenario_names_match_their_patches():
    """channels.toml: a scenario named after channels switches on exactly those channels."""
    exp = Experiment.from_file(REPO / "experiments" / "channels.toml")
    assert len(exp.scenarios) == 16
    for name, config in exp.configs.items():
        on = {c for c in ("self", "cadre", "data", "hotline") if getattr(config.policy.channels, c).enabled}
        assert on == (set() if name == "baseline" else set(name.split("_"))), name


def test_an_experiment_file_runs_from_the_command_line(tmp_path):
    """onetime_vs_dynamic.toml at a tiny scale: a folder per run, the tables, the figures and the report."""
    path = REPO / "experiments" / "onetime_vs_dynamic.toml"
    replicates = tomllib.loads(path.read_text())["replicates"]
    assert replicates >= 2
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--households", "2000", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    scenarios = ["baseline", "plus_lookback", "plus_reviews", "plus_channels"]
    assert sorted(os.listdir(out)) == sorted(EXPERIMENT_FILES)
    assert sorted(os.listdir(out / "runs")) == sorted(scenarios)
    reps = [f"rep-{k:04d}" for k in range(replicates)]
    results = {}
    for name in scenarios:
        assert sorted(os.listdir(out / "runs" / name)) == reps, name
        for k, rep in enumerate(reps):
            assert sorted(os.listdir(out / "runs" / name / rep)) == sorted(RUN_FILES)
            result = results[name, k] = povsim.load_result(out / "runs" / name / rep)
            assert result.manifest["households"] == 2000
            assert result.config.simulation.burn_in_years == 5  # the file's defaults, only households overridden
    summary = pd.read_csv(out / "summary.csv", index_col=["scenario", "metric"])
    assert list(dict.fromkeys(summary.index.get_level_values("scenario"))) == scenarios
    assert list(dict.fromkeys(summary.index.get_level_values("metric"))) == HEADLINE
    assert (summary.xs("entered", level="metric")["n"] == replicates).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["scenarios"]) == scenarios and manifest["status"] == "complete"
    assert manifest["scenarios"]["plus_lookback"] == {"policy.lookback.enabled": True}
    shape = f"4 scenarios x {replicates} replicates = {4 * replicates} runs"
    assert f"onetime_vs_dynamic: {shape} of 2,000 households" in proc.stdout
    assert "exclusion error, mean %" in proc.stdout and "±" in proc.stdout
    assert "Difference from the baseline, paired" in proc.stdout
    # each rule added moves the outcome; a replicate's seed keeps illness identical across scenarios
    for name in scenarios[1:]:
        for k in range(replicates):
            pd.testing.assert_series_equal(results[name, k].metrics["ill"], results["baseline", k].metrics["ill"])
            assert results[name, k].config.seed == results["baseline", k].config.seed
    assert results["baseline", 0].config.seed != results["baseline", 1].config.seed
    assert sum(results["baseline", k].metrics["removed_lookback"].sum() for k in range(replicates)) == 0
    assert results["plus_lookback", 0].metrics["removed_lookback"].sum() > 0
    assert results["plus_lookback", 0].metrics["exited"].sum() == 0
    assert results["plus_reviews", 0].metrics["exited"].sum() > 0
    assert results["plus_channels", 0].metrics["entered_cadre"].sum() > 0


# --- bad experiments: refused before anything runs ------------------------------------------------------------

FIVE_SCENARIOS = """
[scenarios.a]
"policy.lookback.enabled" = false
[scenarios.b]
"policy.review.enabled" = false
[scenarios.c]
"policy.channels.cadre.visits_per_village" = 2
[scenarios.d]
"policy.registration.method" = "threshold"
[scenarios.e]
{bad}
"""


@pytest.mark.parametrize(
    "bad, expected",
    [
        ('"policy.channels.self.apply_probability" = 1.5',
         ["policy.channels.self.apply_probability", "1.5", "less than or equal to 1"]),
        ('"policy.channels.hotline.rejected_waits" = 3', ["policy.channels.hotline.rejected_waits", "rejected_wait"]),
        ('"policy.channels.data.start" = "2021-03"', ["policy.channels.data.start", "'2021-03'", "outside"]),
        ('"policy.registration.method" = "lottery"', ["policy.registration.method", "'lottery'"]),
        ("[scenarios.e.policy.channels.data]\nlag = -2", ["policy.channels.data.lag", "-2"]),
    ],
    ids=["probability", "unknown-key", "start-outside", "method", "nested-table"],
)
def test_a_bad_fifth_scenario_stops_the_experiment(tmp_path, nothing_runs, bad, expected):
    text = FIVE_SCENARIOS.format(bad=bad) if not bad.startswith("[") else FIVE_SCENARIOS.format(bad="") + bad
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Experiment.from_file(path)
    msg = str(info.value)
    assert "scenario 'e'" in msg
    for text in expected:
        assert text in msg, (text, msg)
    for good in ("'a'", "'b'", "'c'", "'d'", "baseline"):
        assert good not in msg  # only the bad scenario is named


def test_a_bad_fifth_scenario_from_the_command_line_writes_nothing(tmp_path):
    path = _write(tmp_path, FIVE_SCENARIOS.format(bad='"policy.channels.self.apply_probability" = 1.5'))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), cwd=cwd)
    assert proc.returncode == 2
    assert "scenario 'e'" in proc.stderr and "policy.channels.self.apply_probability" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and os.listdir(cwd) == []
    assert sorted(os.listdir(tmp_path)) == ["cwd", "exp.toml"]


def test_every_bad_scenario_is_reported_at_once(tmp_path, nothing_runs):
    path = _write(tmp_path, '[scenarios.x]\n"seed" = -1\n[scenarios.y]\n"illness.onset" = 0.1\n')
    msg = str(pytest.raises(ConfigError, Experiment.from_file, path).value)
    assert "scenario 'x'" in msg and "seed" in msg
    assert "scenario 'y'" in msg and "illness.onset" in msg


def test_baseline_is_a_reserved_scenario_name(tmp_path, nothing_runs):
    path = _write(tmp_path, '[scenarios.baseline]\n"seed" = 4\n')
    with pytest.raises(ConfigError, match="baseline"):
        Experiment.from_file(path)


def test_a_scenario_must_be_a_table(tmp_path, nothing_runs):
    path = _write(tmp_path, "[scenarios]\nfast = 3\n")
    with pytest.raises(ConfigError, match="scenario"):
        Experiment.from_file(path)


# --- a good experiment -------------------------------------------------------------------------------------

TWO_SCENARIOS = """
[scenarios.no_channels]
"policy.channels.self.enabled" = false
"policy.channels.cadre.enabled" = false
"policy.channels.data.enabled" = false
"policy.channels.hotline.enabled" = false
"""


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("exp"), TWO_SCENARIOS, name="two")
    exp = Experiment.from_file(path)
    return exp, exp.run()


def test_good_experiment_runs_every_scenario(two):
    exp, outcome = two
    assert isinstance(outcome, ExperimentResult) and outcome.ok
    assert exp.scenarios == ["baseline", "no_channels"]
    assert exp.replicates == 1 and exp.seeds == [3]  # one replicate runs the file's seed itself
    assert list(outcome.runs) == [RunSpec("baseline", 0, 3), RunSpec("no_channels", 0, 3)]
    results = {spec.scenario: result for spec, result in outcome.runs.items()}
    for name, result in results.items():
        assert result.config == exp.configs[name]
        # a scenario runs exactly what povsim.run runs for its config
        pd.testing.assert_frame_equal(result.metrics, povsim.run(exp.configs[name]).metrics, check_exact=True)
    assert results["no_channels"].metrics[[f"flags_{c}" for c in M.CHANNELS]].to_numpy().sum() == 0
    assert results["baseline"].metrics[[f"flags_{c}" for c in M.CHANNELS]].to_numpy().sum() > 0


def test_good_experiment_summary_has_one_row_per_scenario_and_metric(two):
    exp, outcome = two
    s = outcome.summary()
    assert s.index.names == ["scenario", "metric"]
    assert list(s.columns) == ["mean", "low", "high", "sd", "n"]
    assert list(s.index) == [(name, metric) for name in ("baseline", "no_channels") for metric in HEADLINE]
    assert (s["n"] <= 1).all() and s["low"].isna().all() and s["high"].isna().all()  # one replicate: no interval
    for spec, result in outcome.runs.items():
        name = spec.scenario
        assert s.loc[name, "mean"].to_dict() == pytest.approx(headline(result), nan_ok=True)
        m = result.metrics
        entered = m[[f"entered_{r}" for r in M.ROUTES]].to_numpy().sum()
        assert s.loc[(name, "entered"), "mean"] == entered
        assert s.loc[(name, "exited"), "mean"] == m["exited"].sum()
        assert s.loc[(name, "cost_total_yuan"), "mean"] == pytest.approx(m["cost_total"].sum())
        assert s.loc[(name, "exclusion_error_end"), "mean"] == m["exclusion_error"].iloc[-1]
        assert s.loc[(name, "exclusion_error_mean"), "mean"] == pytest.approx(
            m.loc[m["registered"] > 0, "exclusion_error"].mean())
        # households poor since before the record began (column "unknown") have no observed onset
        d = result.detection_delays().drop(columns="unknown").to_numpy()
        assert s.loc[(name, "detection_delay_mean"), "mean"] == pytest.approx(
            (d * np.arange(d.shape[1])).sum() / d.sum())
    diff = outcome.compare()
    assert list(diff.index) == [("no_channels", metric) for metric in HEADLINE]
    for metric in HEADLINE:
        expected = s.loc[("no_channels", metric), "mean"] - s.loc[("baseline", metric), "mean"]
        assert diff.loc[("no_channels", metric), "mean"] == pytest.approx(expected, nan_ok=True)


def test_good_experiment_tidy_metrics_and_manifest(two):
    exp, outcome = two
    tidy = outcome.metrics()
    assert list(tidy.columns[:2]) == ["scenario", "replicate"] and list(tidy.columns[2:]) == list(M.COLUMNS)
    assert list(tidy["scenario"].unique()) == exp.scenarios
    assert (tidy["replicate"] == 0).all()
    assert len(tidy) == 2 * 96
    manifest = outcome.manifest()
    assert manifest["experiment"] == "two" and manifest["seed"] == 3
    assert manifest["scenarios"] == {"baseline": {}, "no_channels": {
        f"policy.channels.{c}.enabled": False for c in ("self", "cadre", "data", "hotline")}}


def test_good_experiment_saves_a_folder_per_run(two, tmp_path):
    _, outcome = two
    path = outcome.save(tmp_path / "out")
    assert sorted(os.listdir(path)) == sorted(EXPERIMENT_FILES)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    for spec, result in outcome.runs.items():
        assert spec.path == f"{spec.scenario}/rep-0000"
        assert sorted(os.listdir(path / "runs" / spec.path)) == sorted(RUN_FILES)
        saved = povsim.load_result(path / "runs" / spec.path)
        pd.testing.assert_frame_equal(saved.metrics, result.metrics, check_exact=True)
    summary = pd.read_csv(path / "summary.csv", index_col=["scenario", "metric"])
    pd.testing.assert_frame_equal(summary, outcome.summary().astype(float), check_exact=False, rtol=1e-12,
                                  check_dtype=False)
    tidy = pd.read_parquet(path / "metrics.parquet")
    pd.testing.assert_frame_equal(tidy, outcome.metrics(), check_exact=True)


def test_scenario_file_from_the_command_line(tmp_path):
    path = _write(tmp_path, TWO_SCENARIOS, name="two")
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), "--seed", "5", "--workers", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == sorted(EXPERIMENT_FILES)
    for name in ("baseline", "no_channels"):
        assert sorted(os.listdir(out / "runs" / name / "rep-0000")) == sorted(RUN_FILES)
        assert povsim.load_result(out / "runs" / name / "rep-0000").config.seed == 5  # --seed applies to every scenario
    assert json.loads((out / "manifest.json").read_text())["seed"] == 5
    summary = pd.read_csv(out / "summary.csv", index_col=["scenario", "metric"])
    assert list(dict.fromkeys(summary.index.get_level_values("scenario"))) == ["baseline", "no_channels"]
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario "))
    assert header.split() == ["scenario", "baseline", "no_channels"]
    summary = povsim.load_result(out / "runs" / "baseline" / "rep-0000")
    for label in ("exclusion error, mean %", "exclusion error, end %", "inclusion error, end %",
                  "detection delay, months", "entries", "exits", "cost (M yuan)", "transfers (M yuan)"):
        line = next(line for line in lines if line.startswith(label + "  "))
        assert len(line[len(label):].split()) == 2, line  # one value per scenario (one replicate: no interval)
    end = next(line for line in lines if line.startswith("exclusion error, end %"))
    assert end.split()[-2] == f"{100 * summary.metrics['exclusion_error'].iloc[-1]:.1f}"


def test_single_scenario_experiment_is_written_as_one_result(tmp_path):
    path = _write(tmp_path, "", name="single")
    exp = Experiment.from_file(path, overrides={"simulation.start": "2017-01", "policy.registration.enabled": False,
                                                "policy.lookback.enabled": False,
                                                "policy.review.exit_first": "2017-12"})
    assert exp.scenarios == ["baseline"]
    outcome = exp.run()
    out = outcome.save(tmp_path / "out")
    assert sorted(os.listdir(out)) == sorted(FILES)


# --- the store below the experiments: imports flow one way ---------------------------------------------------


def _povsim_imports(path: Path) -> set[str]:
    """The povsim modules a module imports anywhere in it (top level, in functions, under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                found |= {node.module} if node.module else {a.name for a in node.names}
            elif node.level == 0 and (node.module or "").startswith("povsim"):
                rest = node.module.removeprefix("povsim").lstrip(".")
                found |= {rest.split(".")[0]} if rest else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("povsim.")}
    return found


def test_the_store_imports_nothing_from_experiments():
    store = REPO / "povsim" / "store.py"
    assert "experiments" not in _povsim_imports(store)
    assert "store" in _povsim_imports(REPO / "povsim" / "experiments.py"), "experiments are written through the store"
    assert not _povsim_imports(REPO / "povsim" / "files.py"), "povsim.files stands alone"
    tree = ast.parse(store.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              and n.value.isidentifier()}  # annotations written as strings
    assert not names & {"Experiment", "ExperimentResult", "RunSpec"}


def test_the_store_works_without_loading_experiments(tmp_path):
    """In a fresh interpreter the store prepares a folder, writes a manifest and looks for runs with
    povsim.experiments never imported."""
    code = f"""
import json, sys
from pathlib import Path
from povsim.store import RunStore
store = RunStore(Path({str(tmp_path / "out")!r}), "demo")
store.prepare()
store.write_manifest({{"kind": "experiment", "povsim_version": "x", "status": "running"}})
assert store.finished("baseline/rep-0000", {{"scenario": "baseline"}}, dict) is None
assert json.loads((store.directory / "manifest.json").read_text())["status"] == "running"
assert (store.directory / ".povsim.lock").is_file()  # held while the store writes
store.release()
print("povsim.experiments" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "runs"]
