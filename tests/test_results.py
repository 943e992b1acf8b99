"""What a run leaves behind: files written atomically, read back exactly, summarised and plotted."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import povsim
from povsim import metrics as M
from povsim.results import FILES, Result, load_result


def _entries(folder):
    return sorted(os.listdir(folder))


def test_save_writes_every_file(small_result, tmp_path):
    path = small_result.save(tmp_path / "run")
    assert path == tmp_path / "run"
    assert _entries(path) == sorted(FILES)
    assert _entries(tmp_path) == ["run"]  # no temporary folders left beside it
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest == small_result.manifest
    config = json.loads((path / "config.json").read_text())
    assert config == small_result.config.to_dict()
    assert (path / "errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert FILES == ("metrics.parquet", "events.parquet", "delays.parquet", "config.json", "manifest.json", "errors.png")
    pd.testing.assert_frame_equal(pd.read_parquet(path / "events.parquet"), small_result.events, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(path / "delays.parquet"), small_result.delays, check_exact=True)


def test_save_without_figures(small_result, tmp_path):
    path = small_result.save(tmp_path / "run", figures=False)
    assert "errors.png" not in _entries(path)
    assert "metrics.parquet" in _entries(path)


def test_round_trip(small_result, tmp_path):
    path = small_result.save(tmp_path / "nested" / "run")
    loaded = load_result(path)
    assert povsim.load_result is load_result
    pd.testing.assert_frame_equal(loaded.metrics, small_result.metrics, check_exact=True)
    assert loaded.config == small_result.config
    assert loaded.config.poverty.lines == small_result.config.poverty.lines  # int keys survive JSON
    assert loaded.manifest == small_result.manifest
    pd.testing.assert_frame_equal(loaded.events, small_result.events, check_exact=True)
    pd.testing.assert_frame_equal(loaded.delays, small_result.delays, check_exact=True)


def test_round_trip_of_the_full_model(full_result, tmp_path):
    """Every table of a run with every rule survives the files: events (one row per event) and delays."""
    path = full_result.save(tmp_path / "run", figures=False)
    assert _entries(path) == sorted(f for f in FILES if f != "errors.png")
    loaded = load_result(path)
    pd.testing.assert_frame_equal(loaded.metrics, full_result.metrics, check_exact=True)
    pd.testing.assert_frame_equal(loaded.events, full_result.events, check_exact=True)
    pd.testing.assert_frame_equal(loaded.delays, full_result.delays, check_exact=True)
    pd.testing.assert_frame_equal(loaded.detection_delays(), full_result.detection_delays(), check_exact=True)
    assert loaded.config == full_result.config
    assert list(loaded.events["event"]) == [
        "registration", "exits 2014-12", "lookback", "exits 2015-12", "exits 2016-12", "review 2017-10",
        "exits 2017-12", "review 2018-10", "exits 2018-12", "review 2019-10", "exits 2019-12", "review 2020-10",
        "exits 2020-12",
    ]
    assert list(loaded.delays.index) == list(M.ROUTES) and loaded.delays.index.name == "route"
    assert list(loaded.delays.columns) == [str(b) for b in range(48)] + ["48+", "unknown"]


def test_load_result_of_a_folder_that_is_not_a_result(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(povsim.ResultError, match="manifest.json: missing; not a povsim result folder"):
        load_result(tmp_path)


def _failing_plot(self):
    raise RuntimeError("disk full (simulated)")


def test_failed_save_leaves_nothing(small_result, tmp_path, monkeypatch):
    monkeypatch.setattr(Result, "plot", _failing_plot)
    with pytest.raises(RuntimeError, match="simulated"):
        small_result.save(tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert _entries(tmp_path) == []


def test_failed_save_keeps_the_previous_result(small_result, default_result, tmp_path, monkeypatch):
    small_result.save(tmp_path / "run")
    monkeypatch.setattr(Result, "plot", _failing_plot)
    with pytest.raises(RuntimeError):
        default_result.save(tmp_path / "run")
    assert _entries(tmp_path) == ["run"]
    pd.testing.assert_frame_equal(load_result(tmp_path / "run").metrics, small_result.metrics)


def test_save_over_an_existing_result_replaces_it(small_result, default_result, tmp_path):
    target = tmp_path / "run"
    small_result.save(target)
    default_result.save(target)
    assert _entries(target) == sorted(FILES)
    assert _entries(tmp_path) == ["run"]
    loaded = load_result(target)
    assert loaded.manifest["households"] == default_result.manifest["households"] != small_result.manifest["households"]
    pd.testing.assert_frame_equal(loaded.metrics, default_result.metrics, check_exact=True)


def test_a_users_file_in_a_result_folder_is_never_deleted(small_result, tmp_path):
    """A file put into a result folder: the next save is refused before it writes, naming the file, and
    the folder is left as it was."""
    target = tmp_path / "run"
    small_result.save(target)
    (target / "notes.txt").write_text("mine")
    (target / "analysis").mkdir()
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    with pytest.raises(FileExistsError, match=r"did not write: analysis, notes.txt"):
        small_result.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert (target / "analysis").is_dir()


def test_every_file_is_recorded_with_its_checksum_and_verified(small_result, tmp_path):
    from povsim.files import sha256
    from povsim.results import verify_result

    target = small_result.save(tmp_path / "run")
    files = load_result(target).manifest["files"]
    assert sorted(files) == sorted(n for n in FILES if n != "manifest.json")
    assert all(files[n] == sha256(target / n) for n in files)
    assert verify_result(target) is None
    data = bytearray((target / "metrics.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped
    (target / "metrics.parquet").write_bytes(bytes(data))
    assert verify_result(target) == "metrics.parquet differs from what povsim wrote (checksum)"
    (target / "events.parquet").unlink()
    assert verify_result(target) == "events.parquet is missing"


# --- summary ---------------------------------------------------------------------------------------


SUMMARY_STOCKS = ["households", "poor", "headcount_rate", "registered", "exclusion_error", "inclusion_error",
                  "missed_rate"]
SUMMARY_FLOWS = ["entered", "newly_identified", "re_registered", "exited", "wrong_exit", "newly_poor_annual",
                 "exits_from_poverty_annual", "returns_to_poverty_annual", "cost_total"]


def _check_summary(result):
    m = result.metrics
    s = result.summary()
    assert list(s.columns) == SUMMARY_STOCKS + SUMMARY_FLOWS
    assert list(s.index) == sorted(m["year"].unique())
    december = m[m["month"].dt.month == 12].set_index("year")
    for col in SUMMARY_STOCKS:
        pd.testing.assert_series_equal(s[col], december[col], check_names=False)
    by_year = m.groupby("year")
    entries = m[[f"entered_{r}" for r in M.ROUTES]].sum(axis=1).groupby(m["year"]).sum()
    pd.testing.assert_series_equal(s["entered"], entries, check_names=False)
    for col in SUMMARY_FLOWS[1:]:  # flows and costs are summed over the year, not year-end values
        pd.testing.assert_series_equal(s[col], by_year[col].sum(), check_names=False)
    return m, s


def test_summary_one_row_per_year_with_december_values(default_result):
    m, s = _check_summary(default_result)
    assert list(s.index) == [2013, 2014, 2015]
    # one-time model: the 2014 registration is the only entry and the only assessment
    assert s.loc[2014, "entered"] == s.loc[2014, "registered"] > 0
    assert s.loc[2013, "entered"] == s.loc[2015, "entered"] == 0
    assert (s[["exited", "wrong_exit", "re_registered"]] == 0).all().all()
    assert s.loc[2014, "newly_identified"] == s.loc[2014, "entered"]
    # 2015's cost is twelve equal months of transfers (nothing else costs after the registration)
    assert s.loc[2015, "cost_total"] == pytest.approx(12 * m["transfers_yuan"].iloc[-1])
    cost = default_result.config.policy.cost
    assert s.loc[2014, "cost_total"] == pytest.approx(
        m.loc[m["year"] == 2014, "transfers_yuan"].sum() + cost.assessment * m["households"].iloc[0]
    )


def test_summary_of_the_full_model(full_result):
    m, s = _check_summary(full_result)
    assert list(s.index) == list(range(2013, 2021))
    # exits from 2014's assessment on, after two stable years: the first in December 2015
    assert (s.loc[2015:, "exited"] > 0).all() and (s.loc[:2014, "exited"] == 0).all()
    assert (s["entered"].loc[2014:] > 0).all()


def test_summary_registered_only_after_registration(default_result):
    s = default_result.summary()
    assert s.loc[2013, "registered"] == 0
    assert np.isnan(s.loc[2013, "inclusion_error"])
    assert s.loc[2014, "registered"] > 0


# --- manifest -------------------------------------------------------------------------------------------


def test_manifest(default_result):
    m = default_result.manifest
    cfg = default_result.config
    assert m["povsim_version"] == povsim.__version__
    assert m["seed"] == cfg.seed
    assert m["households"] == cfg.population.households == 20_000
    assert m["months_simulated"] == 48 and m["months_burn_in"] == 12 and m["months_reported"] == 36
    assert (m["first_simulated_month"], m["first_reported_month"], m["last_reported_month"]) == (
        "2012-01", "2013-01", "2015-12",
    )
    assert m["villages"] == 20_000 // cfg.population.households_per_village + 1
    assert m["threads"] >= 1
    assert m["wall_time_s"] >= 0
    assert 0 < m["bytes_per_household"] <= 64
    json.dumps(m)  # JSON-ready


def test_manifest_reports_the_provinces_the_population_has(default_result, small_result):
    # counties are spread evenly over the 31 provinces: fewer counties than provinces occupy one province each
    for result in (default_result, small_result):
        m = result.manifest
        assert m["provinces"] == min(m["counties"], result.config.population.provinces), m
    assert small_result.manifest["counties"] < 31 == default_result.manifest["provinces"]


# --- plot ------------------------------------------------------------------------------------------------


def test_plot_returns_a_labelled_figure(small_result):
    fig = small_result.plot()
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_title()
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]  # not the policy events' lines
    assert len(lines) == 3
    labels = [line.get_label() for line in lines]
    assert any("Exclusion" in label for label in labels) and any("Inclusion" in label for label in labels)
    # plotted in percent
    y = lines[0].get_ydata()
    np.testing.assert_allclose(np.asarray(y, float), 100 * small_result.metrics["exclusion_error"].to_numpy())


def test_metrics_columns_are_documented(small_result):
    assert list(small_result.metrics.columns) == list(M.COLUMNS)
    assert len(small_result.metrics) == 36


def test_save_never_deletes_files_that_are_not_part_of_a_result(small_result, tmp_path):
    folder = tmp_path / "results"
    (folder / "other_experiment").mkdir(parents=True)
    precious = folder / "other_experiment" / "metrics.parquet"
    precious.write_bytes(b"someone else's result")
    try:
        small_result.save(folder)
    except Exception:
        pass  # refusing is fine; deleting is not
    assert precious.read_bytes() == b"someone else's result"
