"""Reading a saved folder back: a single run's result or an experiment's, and a damaged file named with its problem."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from helpers import ONETIME, SHORT

import povsim
from povsim import ExperimentResult, ResultError, load_result
from povsim.experiments import Experiment


@pytest.fixture(scope="module")
def saved_result(small_result, tmp_path_factory):
    """``small_result`` saved once (without its figure, for speed); each test damages a copy."""
    path = tmp_path_factory.mktemp("saved") / "run"
    small_result.save(path, figures=False)
    return path


@pytest.fixture
def copy(saved_result, tmp_path):
    import shutil

    target = tmp_path / "x"
    shutil.copytree(saved_result, target)
    return target


def _experiment() -> Experiment:
    base = povsim.load_config(overrides={**SHORT, **ONETIME, "population.households": 300, "seed": 3}).to_dict()
    return Experiment.from_dict(base, {"low_transfer": {"policy.support.transfer": 100.0}}, replicates=2)


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory):
    """A 2-scenario x 2-replicate experiment of 300 households, run into a folder (the store) and saved apart."""
    root = tmp_path_factory.mktemp("experiment")
    outcome = _experiment().run(out=root / "out")
    outcome.save(root / "saved")
    return outcome, root


def test_resulterror_is_exported_and_a_valueerror():
    assert issubclass(ResultError, ValueError)
    assert povsim.ResultError is ResultError and "ResultError" in povsim.__all__


def test_a_single_result_loads_as_before(copy, small_result):
    loaded = load_result(copy)
    assert isinstance(loaded, povsim.Result)
    pd.testing.assert_frame_equal(loaded.metrics, small_result.metrics, check_exact=True)


def test_missing_manifest_names_it(copy):
    (copy / "manifest.json").unlink()
    with pytest.raises(ResultError, match=r"x/manifest\.json: missing; not a povsim result folder"):
        load_result(copy)


def test_a_folder_that_is_not_there(tmp_path):
    with pytest.raises(ResultError, match="nowhere/manifest.json: missing"):
        load_result(tmp_path / "nowhere")


def test_truncated_metrics_names_the_file(copy):
    path = copy / "metrics.parquet"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ResultError, match=r"x/metrics\.parquet: damaged or changed since povsim wrote it"):
        load_result(copy)


def test_truncated_parquet_without_checksums_names_the_file(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]  # as an older povsim wrote it: nothing to check against
    (copy / "manifest.json").write_text(json.dumps(manifest))
    path = copy / "events.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ResultError, match=r"x/events\.parquet: truncated or not a Parquet file \("):
        load_result(copy)


def test_malformed_config_names_the_line(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "config.json").write_text('{\n  "name": "x",\n  "seed": ,\n}\n')
    with pytest.raises(ResultError, match=r"x/config\.json: invalid JSON at line 3"):
        load_result(copy)


def test_malformed_manifest_names_the_line(copy):
    (copy / "manifest.json").write_text('{\n  "povsim_version": "0.1.0"\n  "seed": 1\n}\n')
    with pytest.raises(ResultError, match=r"x/manifest\.json: invalid JSON at line 3"):
        load_result(copy)


def test_a_changed_file_is_named_by_its_checksum(copy):
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"seed": 11', '"seed": 12'))
    with pytest.raises(ResultError, match=r"x/config\.json: damaged or changed"):
        load_result(copy)


def test_a_listed_file_missing_is_named(copy):
    (copy / "delays.parquet").unlink()
    with pytest.raises(ResultError, match=r"x/delays\.parquet: missing"):
        load_result(copy)


def test_another_povsim_version_warns_once_naming_both(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["povsim_version"] = "0.0.9"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_result(copy)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1, messages
    assert "povsim 0.0.9" in messages[0] and f"povsim {povsim.__version__}" in messages[0]


def test_the_same_version_does_not_warn(copy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_result(copy)


@pytest.mark.parametrize("folder", ["out", "saved"])
def test_an_experiment_folder_loads_back_as_an_experiment_result(experiment_run, folder):
    outcome, root = experiment_run
    for loaded in (load_result(root / folder), ExperimentResult.load(root / folder)):
        assert isinstance(loaded, ExperimentResult)
        assert loaded.experiment.scenarios == outcome.experiment.scenarios
        assert list(loaded.runs) == list(outcome.runs)
        pd.testing.assert_frame_equal(loaded.metrics(), outcome.metrics(), check_exact=True)
        pd.testing.assert_frame_equal(loaded.headlines(), outcome.headlines(), check_exact=True)
        pd.testing.assert_frame_equal(loaded.summary(), outcome.summary(), check_exact=True)
        pd.testing.assert_frame_equal(loaded.compare(), outcome.compare(), check_exact=True)
        pd.testing.assert_frame_equal(loaded.compare("low_transfer"), outcome.compare("low_transfer"),
                                      check_exact=True)
        assert loaded.ok and loaded.experiment.seeds == outcome.experiment.seeds


def test_a_single_run_folder_of_an_experiment_loads_as_a_result(experiment_run):
    _, root = experiment_run
    assert isinstance(load_result(root / "out" / "runs" / "baseline" / "rep-0001"), povsim.Result)


def _copy_experiment(experiment_run, tmp_path, folder="out"):
    import shutil

    target = tmp_path / "exp"
    shutil.copytree(experiment_run[1] / folder, target)
    return target


def test_a_damaged_run_file_of_an_experiment_is_named(experiment_run, tmp_path):
    target = _copy_experiment(experiment_run, tmp_path)
    path = target / "runs" / "low_transfer" / "rep-0001" / "metrics.parquet"
    path.write_bytes(path.read_bytes()[:-50])
    for read in (load_result, ExperimentResult.load):
        with pytest.raises(ResultError, match=r"exp/runs/low_transfer/rep-0001/metrics\.parquet: damaged"):
            read(target)


def test_a_missing_run_of_a_complete_experiment_is_named(experiment_run, tmp_path):
    import shutil

    target = _copy_experiment(experiment_run, tmp_path, "saved")
    shutil.rmtree(target / "runs" / "low_transfer" / "rep-0000")
    with pytest.raises(ResultError, match=r"exp/runs/low_transfer/rep-0000: missing"):
        load_result(target)


def test_a_changed_table_of_an_experiment_is_named(experiment_run, tmp_path):
    target = _copy_experiment(experiment_run, tmp_path)
    (target / "summary.csv").write_text("edited\n")
    with pytest.raises(ResultError, match=r"exp/summary\.csv: damaged or changed"):
        ExperimentResult.load(target)


def test_an_experiment_of_another_version_warns_once(experiment_run, tmp_path):
    target = _copy_experiment(experiment_run, tmp_path)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["povsim_version"] = "0.0.9"
    (target / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_result(target)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "0.0.9" in messages[0] and povsim.__version__ in messages[0]


def test_experimentresult_load_of_a_single_result_says_so(copy):
    with pytest.raises(ResultError, match="a single run's result, not an experiment folder"):
        ExperimentResult.load(copy)


def test_a_sweep_folder_loads_back_with_its_points(tmp_path):
    base = povsim.load_config(overrides={**SHORT, **ONETIME, "population.households": 300}).to_dict()
    exp = Experiment.from_dict(base, sweep={"grid": {"policy.support.transfer": [100.0, 300.0]}})
    outcome = exp.run(out=tmp_path / "sweep")
    loaded = load_result(tmp_path / "sweep")
    assert isinstance(loaded, ExperimentResult) and loaded.experiment.sweep is not None
    assert loaded.experiment.sweep.points == outcome.experiment.sweep.points
    pd.testing.assert_frame_equal(loaded.points(), outcome.points())
    pd.testing.assert_frame_equal(loaded.metrics(), outcome.metrics(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.summary(), outcome.summary(), check_exact=True)
    assert loaded.experiment.point_configs[("baseline", 1)].policy.support.transfer == 300.0
