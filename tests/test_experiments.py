"""Experiment files: a baseline and scenarios, all validated before anything runs, run with common random numbers."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, run_cli

import povsim
from povsim import metrics as M
from povsim.config import Config, ConfigError
from povsim.experiments import Experiment, ExperimentResult, headline
from povsim.results import FILES

#: experiment files; calibration files (`experiment = ...`) and targets files (`[[targets]]`) are tested
#: in test_calibrate.py
EXPERIMENTS = sorted(
    p for p in (REPO / "experiments").glob("*.toml")
    if not {"experiment", "targets"} & set(tomllib.loads(p.read_text(encoding="utf-8")))
)
HEADLINE = [
    "exclusion_error_mean", "inclusion_error_mean", "exclusion_error_end", "inclusion_error_end",
    "headcount_rate_end", "poor_household_months", "detection_delay_mean", "entered", "exited", "wrong_exit",
    "return_to_poverty", "cost_total_yuan", "transfers_yuan",
]
COMPARISON_FIGURES = ["exclusion_error.png", "headcount_rate.png", "inclusion_error.png"]

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
    for name, config in exp.configs.items():
        assert isinstance(config, Config)
        assert Config.model_validate(config.to_dict()) == config  # a valid, complete config
        assert config.seed == exp.configs["baseline"].seed  # common random numbers
        for key, value in scenarios.get(name, {}).items():
            assert _get(config, key) == value, (name, key)
    # every value the file sets is in the resolved baseline
    for key, value in _leaves({k: v for k, v in data.items() if k != "scenarios"}).items():
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
    """onetime_vs_dynamic.toml at a tiny scale: one folder per scenario, the summary and the figures."""
    path = REPO / "experiments" / "onetime_vs_dynamic.toml"
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--households", "2000", "--threads", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    scenarios = ["baseline", "plus_lookback", "plus_reviews", "plus_channels"]
    assert sorted(os.listdir(out)) == sorted(scenarios + ["summary.csv", "manifest.json"] + COMPARISON_FIGURES)
    for name in scenarios:
        assert sorted(os.listdir(out / name)) == sorted(FILES), name
        result = povsim.load_result(out / name)
        assert result.manifest["households"] == 2000
        assert result.config.simulation.burn_in_years == 5  # the file's defaults, only households overridden
    summary = pd.read_csv(out / "summary.csv", index_col="scenario")
    assert list(summary.index) == scenarios
    assert list(summary.columns) == HEADLINE
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["scenarios"]) == scenarios
    assert manifest["scenarios"]["plus_lookback"] == {"policy.lookback.enabled": True}
    for name in scenarios:
        assert f"onetime_vs_dynamic / {name}: 2,000 households" in proc.stdout
    assert "exclusion error, mean %" in proc.stdout
    # each rule added moves the outcome; the shared seed keeps illness identical across scenarios
    results = {name: povsim.load_result(out / name) for name in scenarios}
    for name in scenarios[1:]:
        pd.testing.assert_series_equal(results[name].metrics["ill"], results["baseline"].metrics["ill"])
    assert results["baseline"].metrics["removed_lookback"].sum() == 0
    assert results["plus_lookback"].metrics["removed_lookback"].sum() > 0
    assert results["plus_lookback"].metrics["exited"].sum() == 0
    assert results["plus_reviews"].metrics["exited"].sum() > 0
    assert results["plus_channels"].metrics["entered_cadre"].sum() > 0


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


@pytest.fixture
def nothing_runs(monkeypatch):
    """Any attempt to simulate fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a run started")

    import povsim.engine

    monkeypatch.setattr(povsim, "run", refuse)
    monkeypatch.setattr(povsim.engine.Simulation, "__init__", refuse)


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
    assert isinstance(outcome, ExperimentResult)
    assert exp.scenarios == ["baseline", "no_channels"]
    assert list(outcome.results) == exp.scenarios
    for name, result in outcome.results.items():
        assert result.config == exp.configs[name]
        # a scenario runs exactly what povsim.run runs for its config
        pd.testing.assert_frame_equal(result.metrics, povsim.run(exp.configs[name]).metrics, check_exact=True)
    assert outcome.results["no_channels"].metrics[[f"flags_{c}" for c in M.CHANNELS]].to_numpy().sum() == 0
    assert outcome.results["baseline"].metrics[[f"flags_{c}" for c in M.CHANNELS]].to_numpy().sum() > 0


def test_good_experiment_summary_has_one_row_per_scenario(two):
    exp, outcome = two
    s = outcome.summary()
    assert list(s.index) == ["baseline", "no_channels"] and s.index.name == "scenario"
    assert list(s.columns) == HEADLINE
    for name, result in outcome.results.items():
        assert s.loc[name].to_dict() == pytest.approx(headline(result), nan_ok=True)
        m = result.metrics
        entered = m[[f"entered_{r}" for r in M.ROUTES]].to_numpy().sum()
        assert s.loc[name, "entered"] == entered
        assert s.loc[name, "exited"] == m["exited"].sum()
        assert s.loc[name, "cost_total_yuan"] == pytest.approx(m["cost_total"].sum())
        assert s.loc[name, "exclusion_error_end"] == m["exclusion_error"].iloc[-1]
        assert s.loc[name, "exclusion_error_mean"] == pytest.approx(m.loc[m["registered"] > 0, "exclusion_error"].mean())
        # households poor since before the record began (column "unknown") have no observed onset
        d = result.detection_delays().drop(columns="unknown").to_numpy()
        assert s.loc[name, "detection_delay_mean"] == pytest.approx((d * np.arange(d.shape[1])).sum() / d.sum())


def test_good_experiment_tidy_metrics_and_manifest(two):
    exp, outcome = two
    tidy = outcome.metrics()
    assert tidy.columns[0] == "scenario" and list(tidy.columns[1:]) == list(M.COLUMNS)
    assert list(tidy["scenario"].unique()) == exp.scenarios
    assert len(tidy) == 2 * 96
    manifest = outcome.manifest()
    assert manifest["experiment"] == "two" and manifest["seed"] == 3
    assert manifest["scenarios"] == {"baseline": {}, "no_channels": {
        f"policy.channels.{c}.enabled": False for c in ("self", "cadre", "data", "hotline")}}


def test_good_experiment_saves_a_folder_per_scenario(two, tmp_path):
    _, outcome = two
    path = outcome.save(tmp_path / "out")
    assert sorted(os.listdir(path)) == sorted(["baseline", "no_channels", "summary.csv", "manifest.json"]
                                              + COMPARISON_FIGURES)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    for name, result in outcome.results.items():
        assert sorted(os.listdir(path / name)) == sorted(FILES)
        pd.testing.assert_frame_equal(povsim.load_result(path / name).metrics, result.metrics, check_exact=True)
    summary = pd.read_csv(path / "summary.csv", index_col="scenario")
    pd.testing.assert_frame_equal(summary, outcome.summary().astype(float), check_exact=False, rtol=1e-12)


def test_scenario_file_from_the_command_line(tmp_path):
    path = _write(tmp_path, TWO_SCENARIOS, name="two")
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), "--seed", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == sorted(["baseline", "no_channels", "summary.csv", "manifest.json"]
                                             + COMPARISON_FIGURES)
    for name in ("baseline", "no_channels"):
        assert sorted(os.listdir(out / name)) == sorted(FILES)
        assert povsim.load_result(out / name).config.seed == 5  # --seed applies to every scenario
    assert json.loads((out / "manifest.json").read_text())["seed"] == 5
    assert list(pd.read_csv(out / "summary.csv", index_col="scenario").index) == ["baseline", "no_channels"]
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario "))
    assert header.split() == ["scenario", "baseline", "no_channels"]
    summary = povsim.load_result(out / "baseline")
    for label in ("exclusion error, mean %", "exclusion error, end %", "inclusion error, end %",
                  "detection delay, months", "entries", "exits", "cost (M yuan)", "transfers (M yuan)"):
        line = next(line for line in lines if line.startswith(label + "  "))
        assert len(line[len(label):].split()) == 2, line  # one value per scenario
    end = next(line for line in lines if line.startswith("exclusion error, end %"))
    assert end.split()[-2] == f"{100 * summary.metrics['exclusion_error'].iloc[-1]:.1f}"


def test_single_scenario_experiment_is_written_as_one_result(tmp_path):
    path = _write(tmp_path, "", name="single")
    exp = Experiment.from_file(path, overrides={"simulation.start": "2017-01", "policy.registration.enabled": False,
                                                "policy.lookback.enabled": False})
    assert exp.scenarios == ["baseline"]
    outcome = exp.run()
    out = outcome.save(tmp_path / "out")
    assert sorted(os.listdir(out)) == sorted(FILES)
