"""Replicates and sweeps in experiment files: seeds from SeedSequence, grids and samples, validation before any
run, intervals and paired differences, the `povsim sweep` command."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, run_cli
from scipy import stats

import povsim
from povsim.config import Config, ConfigError, load_config
from povsim.experiments import HEADLINE, Experiment, RunSpec, Sweep, interval, replicate_seeds

BASE = """
name = "{name}"
seed = 29
{top}
[simulation]
threads = 1  # many small runs: one engine thread each is fastest on a busy machine (results are the same)
burn_in_years = 1
start = "2014-01"
end = "2018-12"
[population]
households = 900
"""


def _write(tmp_path, text: str, name: str = "exp"):
    """An experiment file: the small baseline, then ``text``; a leading ``replicates = N`` line stays top-level."""
    top = ""
    if text.startswith("replicates"):
        top, text = text.split("\n", 1)
    path = tmp_path / f"{name}.toml"
    path.write_text(BASE.format(name=name, top=top) + text, encoding="utf-8")
    return path


# --- replicate seeds ------------------------------------------------------------------------------------------------


def test_replicate_seeds_come_from_seedsequence_spawn():
    seeds = replicate_seeds(20140401, 5)
    expected = []
    for child in np.random.SeedSequence(20140401).spawn(5):
        words = child.generate_state(2, np.uint32)
        expected.append(int(words[0]) + (int(words[1]) << 32))
    assert seeds == expected
    assert len(set(seeds)) == 5 and all(0 <= s < 2**64 for s in seeds)
    assert max(seeds) >= 2**32  # 64-bit seeds, both words used
    assert not {20140401 + k for k in range(5)} & set(seeds)  # never seed + i
    assert replicate_seeds(20140401, 8)[:5] == seeds  # replicate k's seed does not depend on how many there are
    assert replicate_seeds(20140402, 5) != seeds
    assert replicate_seeds(20140401, 1) == [20140401]  # one replicate: the file's seed, as a single run


def test_every_scenario_and_point_uses_the_same_replicate_seeds(tmp_path):
    path = _write(tmp_path, 'replicates = 3\n[scenarios.a]\n"policy.review.enabled" = false\n'
                            '[sweep.grid]\n"policy.verification.delay" = [0, 2]\n')
    exp = Experiment.from_file(path)
    assert exp.replicates == 3 and len(exp.runs) == 2 * 2 * 3
    seeds = replicate_seeds(29, 3)
    for spec in exp.runs:
        assert spec.seed == seeds[spec.replicate]
        cfg = exp.config_for(spec)
        assert cfg.seed == spec.seed
        assert cfg.policy.verification.delay == [0, 2][spec.point]
        assert cfg.policy.review.enabled is (spec.scenario == "baseline")
    # points first, then replicates, then scenarios: a stopped experiment has whole sets of scenarios
    assert [(r.point, r.replicate, r.scenario) for r in exp.runs[:4]] == [
        (0, 0, "baseline"), (0, 0, "a"), (0, 1, "baseline"), (0, 1, "a")]
    assert exp.runs[0].path == "baseline/point-0000/rep-0000"


def test_replicates_from_file_and_overrides(tmp_path):
    path = _write(tmp_path, "replicates = 3\n")
    assert Experiment.from_file(path).replicates == 3
    exp = Experiment.from_file(path, overrides={"replicates": 5, "population.households": 700})
    assert exp.replicates == 5 and exp.overrides == {"population.households": 700}
    assert all(exp.config_for(r).population.households == 700 for r in exp.runs)


@pytest.mark.parametrize("value", [0, -2, 10_001, 2.5, True, '"4"'])
def test_bad_replicates_are_refused(tmp_path, nothing_runs, value):
    text = f"replicates = {str(value).lower() if isinstance(value, bool) else value}\n"
    with pytest.raises(ConfigError, match=r"replicates = .*allowed an integer from 1 to 10000"):
        Experiment.from_file(_write(tmp_path, text))
    with pytest.raises(ConfigError, match="replicates"):
        Experiment.from_file(_write(tmp_path, ""), overrides={"replicates": value})


def test_experiment_keys_are_not_config_keys(tmp_path):
    path = _write(tmp_path, 'replicates = 4\n[sweep.grid]\n"policy.verification.delay" = [0, 2]\n'
                            '[scenarios.x]\n"seed" = 3\n')
    cfg = load_config(path)  # the file's baseline; experiment keys are read by povsim.experiments
    assert cfg.population.households == 900 and cfg.seed == 29
    assert "replicates" not in cfg.to_dict() and "sweep" not in cfg.to_dict()
    for key, value in (("replicates", 2), ("sweep.method", "lhs")):
        with pytest.raises(ConfigError, match=f"unknown key '{key.split('.')[0]}'"):
            load_config(overrides={key: value})
    with pytest.raises(ValueError, match="replicates"):
        Config.model_validate({"replicates": 2})


# --- sweeps -----------------------------------------------------------------------------------------------------


def test_a_grid_is_every_combination_in_file_order(tmp_path):
    path = _write(tmp_path, '[sweep.grid]\n"policy.channels.cadre.visits_per_village" = [2, 4, 8]\n'
                            '"policy.review.assessment_sd" = [0.1, 0.3]\n')
    exp = Experiment.from_file(path)
    assert exp.sweep.method == "grid"
    assert exp.sweep.keys == ("policy.channels.cadre.visits_per_village", "policy.review.assessment_sd")
    assert [tuple(p.values()) for p in exp.sweep.points] == [
        (2, 0.1), (2, 0.3), (4, 0.1), (4, 0.3), (8, 0.1), (8, 0.3)]
    assert len(exp.runs) == 6
    for spec in exp.runs:
        cfg = exp.config_for(spec)
        point = exp.sweep.points[spec.point]
        assert cfg.policy.channels.cadre.visits_per_village == point["policy.channels.cadre.visits_per_village"]
        assert cfg.policy.review.assessment_sd == point["policy.review.assessment_sd"]
    # the same grid written as nested tables
    nested = _write(tmp_path, "[sweep.grid.policy.channels.cadre]\nvisits_per_village = [2, 4, 8]\n"
                              "[sweep.grid.policy.review]\nassessment_sd = [0.1, 0.3]\n", name="nested")
    assert Experiment.from_file(nested).sweep.points == exp.sweep.points


def _sample(tmp_path, method: str, samples: int, seed: int = 29):
    text = (f'[sweep]\nmethod = "{method}"\nsamples = {samples}\n[sweep.ranges]\n'
            '"policy.channels.self.apply_probability" = [0.01, 0.2]\n"policy.verification.delay" = [0, 3]\n')
    return Experiment.from_file(_write(tmp_path, text), overrides={"seed": seed}).sweep


@pytest.mark.parametrize("method", ["lhs", "sobol"])
def test_a_sample_is_stratified_in_its_ranges_and_seeded_by_povsim(tmp_path, method):
    n = 16
    np.random.seed(1)
    sweep = _sample(tmp_path, method, n)
    np.random.seed(2)  # the global RNG plays no part
    assert _sample(tmp_path, method, n).points == sweep.points
    assert _sample(tmp_path, method, n, seed=30).points != sweep.points  # seeded from the experiment's seed
    prob = np.array([p["policy.channels.self.apply_probability"] for p in sweep.points])
    delay = [p["policy.verification.delay"] for p in sweep.points]
    assert ((prob >= 0.01) & (prob <= 0.2)).all()
    # one point in each of n equal strata of the range (Latin hypercube; a scrambled Sobol' net of 2^4 points)
    strata = np.floor((prob - 0.01) / (0.2 - 0.01) * n).astype(int)
    assert sorted(strata) == list(range(n))
    # an integer parameter gets integers, every value in [low, high] equally often
    assert all(type(d) is int for d in delay) and sorted(set(delay)) == [0, 1, 2, 3]
    assert all(delay.count(v) == n // 4 for v in range(4))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[sweep]\nmethod = \"random\"\n", ["sweep.method = 'random'", "'grid', 'lhs', 'sobol'"]),
        ("[sweep]\nsamples = 4\n", ["sweep.method missing"]),
        ("[sweep]\nmethod = \"lhs\"\nsample = 4\n", ["sweep.sample", "unknown key", "samples"]),
        ("[sweep]\nmethod = \"lhs\"\nsamples = 0\n[sweep.ranges]\n\"policy.verification.delay\" = [0, 3]\n",
         ["sweep.samples = 0", "from 1 to"]),
        ("[sweep]\nmethod = \"sobol\"\nsamples = 10\n[sweep.ranges]\n\"policy.verification.delay\" = [0, 3]\n",
         ["sweep.samples = 10", "power of 2", "8 or 16"]),
        ("[sweep]\nmethod = \"lhs\"\nsamples = 4\n", ["sweep.ranges", "missing"]),
        ("[sweep]\nmethod = \"lhs\"\nsamples = 4\n[sweep.ranges]\n\"policy.verification.delay\" = [3, 1]\n",
         ["sweep.ranges.\"policy.verification.delay\" = [3, 1]", "low < high"]),
        ("[sweep]\nmethod = \"lhs\"\nsamples = 4\n[sweep.ranges]\n\"policy.verification.delay\" = [0, 2.5]\n",
         ["policy.verification.delay", "whole numbers"]),
        ("[sweep]\nmethod = \"lhs\"\nsamples = 4\n[sweep.ranges]\n\"policy.registration.method\" = [0, 1]\n",
         ["policy.registration.method", "cannot be sampled from a range"]),
        ("[sweep]\nmethod = \"lhs\"\nsamples = 4\n[sweep.ranges]\n\"policy.cadre.visits\" = [0, 1]\n",
         ["sweep.ranges.\"policy.cadre.visits\"", "unknown key 'policy.cadre'", "channels"]),
        ("[sweep.grid]\n\"policy.channels.cadre.visits\" = [1, 2]\n",
         ["sweep.grid.\"policy.channels.cadre.visits\"", "visits_per_village"]),
        ("[sweep.grid]\n\"policy.channels.cadre.visits_per_village\" = 4\n", ["a grid lists the values", "= 4"]),
        ("[sweep]\nmethod = \"grid\"\nsamples = 3\n[sweep.grid]\n\"seed\" = [1, 2]\n", ["sweep.samples", "not used"]),
        ("[sweep.grid]\n\"policy.channels.cadre.visits_per_village\" = [2, -1]\n",
         ["sweep point 1 (policy.channels.cadre.visits_per_village = -1), baseline",
          "policy.channels.cadre.visits_per_village = -1", "greater than or equal to 0"]),
        ("[scenarios.few]\n\"policy.channels.cadre.visits_per_village\" = 1\n"
         "[sweep.grid]\n\"policy.channels.cadre.visits_per_village\" = [2, 4]\n",
         ["'policy.channels.cadre.visits_per_village' is swept", "scenario 'few'", "either swept or set"]),
    ],
    ids=["method", "no-method", "unknown-key", "zero-samples", "sobol-not-power-of-2", "no-ranges", "range-order",
         "int-range", "not-numeric", "unknown-range-key", "unknown-grid-key", "grid-not-list", "grid-with-samples",
         "bad-point-value", "swept-and-patched"],
)
def test_a_bad_sweep_stops_the_experiment_before_anything_runs(tmp_path, nothing_runs, text, expected):
    with pytest.raises(ConfigError) as info:
        Experiment.from_file(_write(tmp_path, text))
    for fragment in expected:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_a_bad_point_in_the_fifth_scenario_names_point_scenario_and_key(tmp_path, nothing_runs):
    """Each scenario and each point is valid alone; scenario s5 at point 1 is not."""
    text = "".join(f'[scenarios.s{k}]\n"policy.review.enabled" = false\n' for k in range(1, 5))
    text += '[scenarios.s5]\n"simulation.end" = "2019-12"\n'
    text += '[sweep.grid]\n"policy.channels.data.start" = ["2018-01", "2020-06"]\n'
    path = _write(tmp_path, text)
    path.write_text(path.read_text().replace('end = "2018-12"', 'end = "2020-12"'))
    msg = str(pytest.raises(ConfigError, Experiment.from_file, path).value)
    assert msg.startswith("sweep point 1 (policy.channels.data.start = '2020-06'), scenario 's5': invalid config")
    assert "policy.channels.data.start = '2020-06' is outside the simulated period" in msg
    assert "2014-01 to 2019-12" in msg
    assert len(msg.splitlines()) == 2  # one bad run config: where it is, then the key, value and what is allowed
    assert "'s1'" not in msg and "point 0" not in msg and "baseline" not in msg


def test_a_sweep_cannot_also_be_overridden(tmp_path, nothing_runs):
    path = _write(tmp_path, '[sweep.grid]\n"policy.verification.delay" = [0, 2]\n')
    with pytest.raises(ConfigError, match="swept in \\[sweep\\] and also set by an override"):
        Experiment.from_file(path, overrides={"policy.verification.delay": 1})


# --- intervals and paired differences -----------------------------------------------------------------------------


def test_interval_is_the_t_interval_of_the_mean():
    values = [1.0, 2.0, 4.0, 7.0, float("nan")]
    got = interval(values)
    x = np.array(values[:4])
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / math.sqrt(4)
    assert got == pytest.approx({"mean": x.mean(), "low": x.mean() - half, "high": x.mean() + half,
                                 "sd": x.std(ddof=1), "n": 4})
    one = interval([3.0])
    assert one["mean"] == 3.0 and one["n"] == 1 and math.isnan(one["low"]) and math.isnan(one["sd"])
    assert interval([])["n"] == 0


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    path = _write(tmp, 'replicates = 3\n[scenarios.no_cadre]\n"policy.channels.cadre.enabled" = false\n'
                       '[sweep.grid]\n"policy.channels.self.apply_probability" = [0.02, 0.2]\n', name="swept")
    exp = Experiment.from_file(path)
    return path, exp, exp.run()


def test_sweep_summary_and_paired_differences_by_point(swept):
    _, exp, outcome = swept
    h = outcome.headlines()
    assert list(h.columns[:4]) == ["scenario", "point", "replicate", "seed"] and list(h.columns[4:]) == list(HEADLINE)
    assert len(h) == 12
    summary = outcome.summary()
    assert summary.index.names == ["point", "scenario", "metric"]
    assert len(summary) == 2 * 2 * len(HEADLINE)
    compare = outcome.compare()
    assert compare.index.names == ["point", "scenario", "metric"]
    assert set(compare.index.get_level_values("scenario")) == {"no_cadre"}
    for point in (0, 1):
        for metric in ("exclusion_error_mean", "entered", "cost_total_yuan"):
            sel = h[h["point"] == point]
            base = sel[sel["scenario"] == "baseline"].set_index("replicate")[metric]
            other = sel[sel["scenario"] == "no_cadre"].set_index("replicate")[metric]
            assert summary.loc[(point, "baseline", metric)].to_dict() == pytest.approx(interval(base), nan_ok=True)
            assert compare.loc[(point, "no_cadre", metric)].to_dict() == pytest.approx(interval(other - base),
                                                                                      nan_ok=True)
    # the swept value changed the outcome: more self-declarations at the higher probability
    tidy = outcome.metrics()
    assert list(tidy.columns[:3]) == ["scenario", "point", "replicate"]
    flags = tidy.groupby("point")["flags_self"].sum()
    assert flags[1] > 2 * flags[0]
    points = outcome.points()
    assert list(points.index) == [0, 1] and list(points["policy.channels.self.apply_probability"]) == [0.02, 0.2]
    with pytest.raises(ValueError, match="point="):
        outcome.plot()
    assert outcome.plot(point=1).axes and outcome.plot_sweep("entered").axes


def test_compare_refuses_an_unknown_baseline(swept):
    with pytest.raises(ValueError, match="allowed: baseline, no_cadre"):
        swept[2].compare(baseline="nope")


def test_sweep_command_prints_one_row_per_point(swept, tmp_path):
    path, exp, outcome = swept
    out = tmp_path / "out"
    proc = run_cli("sweep", str(path), "--workers", "0", "--metric", "entered", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("swept: 2 scenarios x 2 sweep points x 3 replicates = 12 runs")
    start = lines.index("entries by sweep point (mean over 3 replicates ± half-width of its 95% interval (t)):")
    header = lines[start + 1].split()
    assert header == ["apply_probability", "baseline", "no_cadre"]  # the swept key shortened, with a legend line
    assert "policy.channels.self.apply_probability" in proc.stdout
    summary = outcome.summary()
    for point, line in enumerate(lines[start + 3: start + 5]):
        cells = line.split()
        assert cells[0] == str(point) and cells[1] == ["0.02", "0.2"][point]
        row = summary.loc[(point, "baseline", "entered")]
        assert cells[2:5] == [f"{row['mean']:,.0f}", "±", f"{(row['high'] - row['low']) / 2:,.0f}"]
    assert "entries, minus the baseline (paired):" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "manifest.json", "metrics.parquet", "headlines.csv", "summary.csv", "comparison.csv", "points.csv",
        "report.html", "runs", "sweep_exclusion_error_mean.png", "sweep_inclusion_error_mean.png",
        "sweep_cost_total_yuan.png"])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), outcome.metrics(), check_exact=True)
    assert json.loads((out / "manifest.json").read_text())["sweep"]["points"] == [
        {"policy.channels.self.apply_probability": 0.02}, {"policy.channels.self.apply_probability": 0.2}]


def test_sweep_command_needs_a_sweep(tmp_path):
    path = _write(tmp_path, "replicates = 2\n")
    out = tmp_path / "out"
    proc = run_cli("sweep", str(path), "--out", str(out))
    assert proc.returncode == 2 and "has no [sweep] table" in proc.stderr and not out.exists()
    proc = run_cli("run", str(path), "--metric", "nope", "--out", str(out))
    assert proc.returncode == 2 and "--metric 'nope'" in proc.stderr and not out.exists()


def test_experiment_is_exposed_lazily():
    code = (
        "import sys, povsim\n"
        "assert not [m for m in ('povsim.experiments', 'povsim.engine', 'numba', 'dask', 'distributed', 'pandas')"
        " if m in sys.modules], sorted(sys.modules)\n"
        "from povsim import Experiment\n"
        "assert Experiment.__module__ == 'povsim.experiments' and 'distributed' not in sys.modules\n"
        "assert 'Experiment' in povsim.__all__ and povsim.ExperimentResult\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_run_spec_paths():
    assert RunSpec("baseline", 3, 1).path == "baseline/rep-0003"
    assert RunSpec("x", 0, 1, point=12).path == "x/point-0012/rep-0000"
    assert RunSpec("x", 2, 1, point=1).describe() == "scenario 'x', replicate 2, sweep point 1"


def test_a_scenario_name_must_be_a_folder_name(tmp_path, nothing_runs):
    with pytest.raises(ConfigError, match="scenario name"):
        Experiment.from_file(_write(tmp_path, '[scenarios."a/b"]\n"seed" = 3\n'))


def test_sweep_from_table_directly():
    sweep = Sweep.from_table({"grid": {"seed": [1, 2, 3]}}, seed=0)
    assert sweep.points == ({"seed": 1}, {"seed": 2}, {"seed": 3}) and sweep.spec["method"] == "grid"
    assert povsim.Experiment is Experiment


def test_a_scenario_need_only_be_valid_at_the_sweep_points(tmp_path, nothing_runs):
    """Without the swept value the scenario is invalid (its channel starts after the file's end); every point is valid."""
    path = _write(tmp_path, '[scenarios.late_data]\n"policy.channels.data.start" = "2019-06"\n'
                            '[sweep.grid]\n"simulation.end" = ["2019-12", "2020-12"]\n')
    exp = Experiment.from_file(path)
    assert len(exp.runs) == 4
    assert exp.configs["late_data"] == exp.point_configs[("late_data", 0)]
    assert exp.configs["baseline"].simulation.end == "2018-12"  # the file's own value where that is valid
    assert {exp.config_for(r).simulation.end for r in exp.runs} == {"2019-12", "2020-12"}
    # with the sweep removed, the same scenario is refused
    path.write_text(path.read_text().split("[sweep.grid]")[0])
    with pytest.raises(ConfigError, match="scenario 'late_data'.*\n.*policy.channels.data.start = '2019-06'"):
        Experiment.from_file(path)


def test_a_bad_key_at_every_sweep_point_is_reported_once(tmp_path, nothing_runs):
    text = "".join(f'[scenarios.s{k}]\n"policy.review.enabled" = false\n' for k in range(1, 5))
    text += '[scenarios.s5]\n"policy.review.enabld" = false\n[sweep.grid]\n"policy.verification.delay" = [0, 1, 2]\n'
    msg = str(pytest.raises(ConfigError, Experiment.from_file, _write(tmp_path, text)).value)
    assert msg.startswith("scenario 's5' (at every sweep point): invalid override 'policy.review.enabld'")
    assert len(msg.splitlines()) == 1 and "allowed keys here: assessment_sd, enabled" in msg


def test_replicates_after_a_table_is_explained(tmp_path, nothing_runs):
    path = tmp_path / "late.toml"
    path.write_text('name = "late"\n[population]\nhouseholds = 500\nreplicates = 3\n')
    with pytest.raises(ConfigError, match=r"population.replicates: .*at the top of the file, before the first \[table\]"):
        Experiment.from_file(path)
