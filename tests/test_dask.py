"""Experiments on Dask: a LocalCluster of two workers gives the serial result; one population split across
workers gives the single-process result bit for bit; common random numbers; resume after a kill; failures;
the command line end to end; a self-contained report.

One LocalCluster of two worker processes is started for the module (about a second, plus each worker's first
load of the compiled engine from Numba's cache).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, run_cli

import povsim
from povsim.cluster import Block, open_client, run_split, village_blocks
from povsim.experiments import Experiment
from povsim.population import structure

pytestmark = pytest.mark.slow

SMALL = """
name = "{name}"
seed = 17
replicates = {replicates}
[simulation]
threads = 1  # many small runs: one engine thread each is fastest on a busy machine (results are the same)
burn_in_years = 1
end = "2018-12"
[population]
households = {households}
"""

NO_CHANNELS = """
[scenarios.no_channels]
"policy.channels.self.enabled" = false
"policy.channels.cadre.enabled" = false
"policy.channels.data.enabled" = false
"policy.channels.hotline.enabled" = false
"""



def _flat(text: str) -> str:
    """The printed text with its line wrapping undone (the CLI wraps prose at 100 columns)."""
    return " ".join(text.split())

def _write(folder: Path, text: str, name: str = "exp", replicates: int = 3, households: int = 1500) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(SMALL.format(name=name, replicates=replicates, households=households) + text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def client():
    with open_client(workers=2) as c:
        yield c


def test_local_cluster_is_two_loopback_workers_of_one_thread(client):
    import psutil

    workers = client.scheduler_info(n_workers=-1)["workers"]
    assert len(workers) == 2
    assert all(w["nthreads"] == 1 for w in workers.values())
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
    # every socket the cluster listens on (scheduler, workers, nannies, dashboards) is on loopback
    me = psutil.Process()
    listening = [
        conn.laddr.ip
        for proc in [me, *me.children(recursive=True)]
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 4
    assert set(listening) == {"127.0.0.1"}, listening


def test_fewer_than_two_workers_means_serial_without_dask():
    for workers in (None, 0, 1):
        with open_client(workers=workers) as c:
            assert c is None


def test_local_cluster_result_equals_serial_result(client, tmp_path):
    exp = Experiment.from_file(_write(tmp_path, NO_CHANNELS))
    serial = exp.run()
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        dask = exp.run(client)
    assert serial.ok and dask.ok and len(dask.runs) == len(exp.runs) == 6
    assert list(dask.runs) == list(serial.runs) == exp.runs  # in the experiment's order, however they finished
    pd.testing.assert_frame_equal(dask.metrics(), serial.metrics(), check_exact=True)
    pd.testing.assert_frame_equal(dask.headlines(), serial.headlines(), check_exact=True)
    pd.testing.assert_frame_equal(dask.summary(), serial.summary(), check_exact=True)
    pd.testing.assert_frame_equal(dask.compare(), serial.compare(), check_exact=True)
    for spec in exp.runs:
        pd.testing.assert_frame_equal(dask.runs[spec].events, serial.runs[spec].events, check_exact=True)
        pd.testing.assert_frame_equal(dask.runs[spec].delays, serial.runs[spec].delays, check_exact=True)
    # the runs were tasks on the workers, both of them
    tasks = [t for t in stream.data if str(t["key"]).startswith("povsim-")]
    assert len(tasks) == 6
    assert {t["worker"] for t in tasks} == set(client.scheduler_info(n_workers=-1)["workers"])
    assert dask.info["workers"] == 2 and serial.info["workers"] == 0


# --- one population split across workers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole():
    """The full default China timeline (default burn-in too), 9,000 households in 30 villages, 8 counties of
    4 villages, 4 provinces: small enough to run in a second, with a quota registration shared across counties."""
    cfg = povsim.load_config(overrides={
        "seed": 2024, "population.households": 9000, "population.villages_per_county": 4,
        "population.provinces": 4,
        "policy.channels.hotline.call_probability": 0.05,  # ten times the default: the hotline registers someone
    })
    return cfg, povsim.run(cfg)


def _assert_same_result(split, single):
    pd.testing.assert_frame_equal(split.metrics, single.metrics, check_exact=True)
    pd.testing.assert_frame_equal(split.events, single.events, check_exact=True)
    pd.testing.assert_frame_equal(split.delays, single.delays, check_exact=True)
    for key in ("households", "villages", "counties", "provinces", "months_simulated", "seed"):
        assert split.manifest[key] == single.manifest[key], key


def test_split_population_on_two_workers_equals_one_process(client, whole):
    cfg, single = whole
    m = single.metrics
    # every rule of the timeline ran: the quota registration, the look-back, reviews and every channel
    assert cfg.policy.registration.method == "quota" and cfg.simulation.burn_in_years == 5
    for column in ("entered_registration", "entered_lookback", "removed_lookback", "exited", "entered_review",
                   "entered_self", "entered_cadre", "entered_data", "entered_hotline"):
        assert m[column].sum() > 0, column
    _, village_county, _ = structure(cfg)
    assert village_county.shape[0] == 30 and village_county.max() + 1 == 8
    for blocks in (2, 3):
        ranges = village_blocks(30, blocks)
        # a block edge falls inside a county, so county estimates need the other block's villages
        assert any(village_county[v0 - 1] == village_county[v0] for v0, _ in ranges[1:])
        split = run_split(cfg, blocks=blocks, client=client)
        assert split.manifest["blocks"] == blocks and split.manifest["workers"] == 2
        _assert_same_result(split, single)


def test_split_population_in_one_process_equals_one_process(whole):
    cfg, single = whole
    _assert_same_result(run_split(cfg, blocks=3), single)


def test_a_block_needs_its_quotas_from_the_driver(whole):
    """A block alone cannot register by quota (it sees only its villages): stepping it without quotas fails."""
    cfg, _ = whole
    block = Block(cfg.to_dict(), 15, 30)
    assert block.info()["first_id"] == 4500 and block.info()["villages"] == 15
    with pytest.raises(RuntimeError, match="quotas from the driver"):
        while True:
            block.step()


def test_split_experiment_on_the_cluster_equals_serial(client, tmp_path):
    exp = Experiment.from_file(_write(tmp_path, NO_CHANNELS, replicates=2, households=2400))
    serial = exp.run()
    split = exp.run(client, split=2)
    assert all(r.manifest["blocks"] == 2 for r in split.runs.values())
    pd.testing.assert_frame_equal(split.metrics(), serial.metrics(), check_exact=True)


# --- common random numbers -------------------------------------------------------------------------------------


def test_common_random_numbers_shrink_the_variance_of_differences(client, tmp_path):
    """Paired differences (same seeds in both scenarios) against differences of independent runs."""
    text = '[scenarios.more_cadre]\n"policy.channels.cadre.visits_per_village" = 8\n'
    crn = Experiment.from_file(_write(tmp_path, text, "crn", replicates=8, households=2000)).run(client)
    other = Experiment.from_file(_write(tmp_path, text, "crn", replicates=8, households=2000),
                                 overrides={"seed": 9017}).run(client)
    h = crn.headlines()
    h_other = other.headlines()
    base = h[h["scenario"] == "baseline"].set_index("replicate")
    paired = h[h["scenario"] == "more_cadre"].set_index("replicate")
    independent = h_other[h_other["scenario"] == "more_cadre"].set_index("replicate")
    assert (paired["seed"] == base["seed"]).all() and not set(independent["seed"]) & set(base["seed"])
    compare = crn.compare()
    for metric in ("exclusion_error_mean", "inclusion_error_mean", "cost_total_yuan"):
        var_paired = np.var(paired[metric] - base[metric], ddof=1)
        var_independent = np.var(independent[metric] - base[metric], ddof=1)
        assert var_paired > 0
        # a ratio of two variances from 8 pairs each: F(7, 7) noise around the true ratio; without
        # common random numbers it would be about 1, and below 0.2 for all three metrics only by a rare chance
        assert var_paired / var_independent < 0.2, (metric, var_paired / var_independent)
        assert compare.loc[("more_cadre", metric), "sd"] == pytest.approx(np.sqrt(var_paired))


# --- nothing runs on bad input ---------------------------------------------------------------------------------


def test_a_bad_fifth_scenario_stops_a_cluster_experiment_before_anything_runs(tmp_path):
    text = "".join(f'[scenarios.s{k}]\n"policy.channels.cadre.visits_per_village" = {k}\n' for k in range(1, 5))
    text += '[scenarios.s5]\n"policy.channels.cadre.visits_per_villages" = 5\n'
    path = _write(tmp_path, text + '[sweep.grid]\n"policy.verification.delay" = [0, 1]\n')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--workers", "2", "--out", str(out), cwd=cwd)
    assert proc.returncode == 2, proc.stderr
    assert "scenario 's5'" in proc.stderr and "policy.channels.cadre.visits_per_villages" in proc.stderr
    assert "visits_per_village" in proc.stderr.split("allowed keys here:")[1]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and os.listdir(cwd) == []


# --- the command line with two workers, and the report -----------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster"):
                self.urls.append((tag, name, value or ""))


def assert_self_contained(report: Path, figures: int) -> None:
    text = report.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(text)
    assert "http://" not in text and "https://" not in text
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    assert "url(" not in text and "@import" not in text  # no resources from style sheets either
    images = [v for tag, name, v in parser.urls if tag == "img"]
    assert len(images) == figures and len(parser.urls) == figures
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_with_two_workers_end_to_end(tmp_path):
    path = _write(tmp_path, NO_CHANNELS, "cli", replicates=2, households=1200)
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--workers", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cli: 2 scenarios x 2 replicates = 4 runs of 1,200 households, 2 Dask workers" in _flat(proc.stdout)
    assert "Difference from the baseline, paired" in proc.stdout and "±" in proc.stdout
    assert sorted(os.listdir(out)) == sorted([
        "manifest.json", "metrics.parquet", "headlines.csv", "summary.csv", "comparison.csv", "report.html", "runs",
        "exclusion_error.png", "inclusion_error.png", "headcount_rate.png",
    ])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["workers"] == 2 and manifest["finished"] == 4
    # the same numbers as a serial run in this process
    serial = Experiment.from_file(path).run()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), serial.metrics(), check_exact=True)
    assert_self_contained(out / "report.html", figures=3)
    report = (out / "report.html").read_text()
    assert "no_channels" in report and "Difference from the baseline" in report


def test_command_line_on_an_existing_cluster(client, tmp_path):
    """--scheduler: the runs go to a running cluster, which is left running."""
    path = _write(tmp_path, NO_CHANNELS, "remote", replicates=2, households=800)
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--scheduler", client.scheduler.address, "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["workers"] == 2
    assert client.submit(sum, [1, 2]).result() == 3  # still running
    serial = Experiment.from_file(path).run()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), serial.metrics(), check_exact=True)


# --- resume after a kill ------------------------------------------------------------------------------------------

SWEEP = '[sweep.grid]\n"policy.channels.cadre.visits_per_village" = [2, 4, 6, 8]\n'


def _finished_runs(out: Path) -> list[Path]:
    runs = out / "runs"
    if not runs.is_dir():
        return []
    for _ in range(100):  # a run's temporary folder may be renamed into place while the tree is walked: walk again
        try:
            return [p.parent for p in runs.rglob("manifest.json") if not any(part.startswith(".") for part in p.parts)]
        except FileNotFoundError:
            continue
    raise RuntimeError(f"{runs} kept changing while it was listed")


def test_a_killed_sweep_resumes_to_the_same_result(tmp_path):
    path = _write(tmp_path, NO_CHANNELS + SWEEP, "resume", replicates=2, households=6000)
    exp = Experiment.from_file(path)
    assert len(exp.runs) == 16
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "povsim.cli", "run", str(path), "--workers", "0", "--quiet", "--out", str(out)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while len(_finished_runs(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the experiment finished before it could be stopped"
    before = {p.relative_to(out).as_posix(): (p / "metrics.parquet").stat().st_mtime_ns for p in _finished_runs(out)}
    assert 3 <= len(before) < 16
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    assert not (out / "report.html").exists()
    # a run caught half-written leaves a temporary folder; resuming clears it
    stale = out / "runs" / "baseline" / "point-0003" / ".rep-0001.x1y2.tmp"
    stale.mkdir(parents=True)
    (stale / "metrics.parquet").write_bytes(b"half")

    again = run_cli("run", str(path), "--workers", "0", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"({len(before)} already done, {16 - len(before)} run, 0 failed)" in _flat(again.stdout)
    after = {p.relative_to(out).as_posix(): (p / "metrics.parquet").stat().st_mtime_ns for p in _finished_runs(out)}
    assert len(after) == 16
    assert all(after[k] == v for k, v in before.items())  # finished runs were not run again
    assert not stale.exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"

    # the same result as an uninterrupted run
    whole = exp.run(out=tmp_path / "whole")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), whole.metrics(), check_exact=True)
    for name in ("summary.csv", "comparison.csv", "headlines.csv", "points.csv"):
        assert (out / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "whole"))


def test_a_run_changed_since_is_run_again(tmp_path):
    """A resumed experiment reuses a saved run only if its config is the run's config."""
    path = _write(tmp_path, NO_CHANNELS, "changed", replicates=2, households=600)
    out = tmp_path / "out"
    Experiment.from_file(path).run(out=out)
    mtimes = {p: (p / "metrics.parquet").stat().st_mtime_ns for p in _finished_runs(out)}
    changed = Experiment.from_file(path, overrides={"policy.support.transfer": 55.0, "simulation.threads": 1})
    outcome = changed.run(out=out)
    assert outcome.info["resumed"] == 0
    assert all((p / "metrics.parquet").stat().st_mtime_ns != t for p, t in mtimes.items())
    again = Experiment.from_file(path, overrides={"policy.support.transfer": 55.0, "simulation.threads": 2}).run(out=out)
    assert again.info["resumed"] == 4  # the thread count never changes results, so it does not matter
    for spec, result in again.runs.items():
        assert result.config.policy.support.transfer == 55.0


def test_a_damaged_saved_run_is_run_again_and_the_user_told_why(tmp_path):
    """One flipped bit in a run's metrics, or a run's delays file missing: those runs are not reused
    (their checksums or files do not match the manifest), they run again, the command says which and
    why, and the experiment's numbers are those of an undamaged run."""
    path = _write(tmp_path, NO_CHANNELS, "damaged", replicates=2, households=600)
    out = tmp_path / "out"
    whole = Experiment.from_file(path).run(out=out)
    flipped = out / "runs" / "baseline" / "rep-0000" / "metrics.parquet"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x04
    flipped.write_bytes(bytes(data))
    (out / "runs" / "baseline" / "rep-0001" / "delays.parquet").unlink()
    again = run_cli("run", str(path), "--workers", "0", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(2 already done, 2 run, 0 failed)" in _flat(again.stdout)
    assert ("saved run runs/baseline/rep-0000 was not reused and ran again: metrics.parquet differs from what "
            "povsim wrote (checksum)") in again.stderr
    assert "runs/baseline/rep-0001 was not reused and ran again: delays.parquet is missing" in again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), whole.metrics(), check_exact=True)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("where", ["notes.txt", "runs/notes.txt", "runs/baseline/rep-0000/mine.csv"])
def test_a_users_file_in_an_experiment_folder_is_kept_and_the_run_refused(tmp_path, where):
    """Even when every run would be reused: refused before anything runs, exit 2, naming the file; the
    folder is left exactly as it was."""
    path = _write(tmp_path, NO_CHANNELS, "owned", replicates=2, households=600)
    out = tmp_path / "out"
    Experiment.from_file(path).run(out=out)
    (out / where).write_text("the user's own")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = run_cli("run", str(path), "--workers", "0", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"did not write: {where}" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# --- a failed run -------------------------------------------------------------------------------------------------


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, monkeypatch, capsys):
    import povsim.cluster
    from povsim import cli

    path = _write(tmp_path, NO_CHANNELS, "fails", replicates=2, households=600)
    exp = Experiment.from_file(path)
    real = povsim.cluster.simulate

    def flaky(config):
        if config["seed"] == exp.seeds[1] and not config["policy"]["channels"]["self"]["enabled"]:
            raise MemoryError("simulated failure of one run")
        return real(config)

    monkeypatch.setattr(povsim.cluster, "simulate", flaky)
    out = tmp_path / "out"
    code = cli.main(["run", str(path), "--workers", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "run failed: scenario 'no_channels', replicate 1: MemoryError: simulated failure of one run" in captured.err
    assert "1 of 4 runs failed" in captured.err
    assert "3 run, 1 failed" in _flat(captured.out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["finished"] == 3
    assert [(f["scenario"], f["replicate"]) for f in manifest["failed"]] == [("no_channels", 1)]
    assert "MemoryError" in manifest["failed"][0]["error"]
    assert sorted(p.relative_to(out / "runs").as_posix() for p in _finished_runs(out)) == [
        "baseline/rep-0000", "baseline/rep-0001", "no_channels/rep-0000"]
    assert "Failed runs" in (out / "report.html").read_text()

    monkeypatch.setattr(povsim.cluster, "simulate", real)
    assert cli.main(["run", str(path), "--workers", "0", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert len(_finished_runs(out)) == 4


def test_a_failed_run_on_the_cluster_is_reported(client, tmp_path):
    """A run that fails on a worker (here: an engine error inside the run) is reported; the others finish."""
    exp = Experiment.from_file(_write(tmp_path, NO_CHANNELS, "failsdask", replicates=2, households=600))
    broken = exp.runs[3]
    cfg = exp.config_for(broken)
    # a config that passes validation here but not on the worker: the run's population is unbuildable there
    bad = cfg.model_copy(update={"population": cfg.population.model_copy(update={"size_probabilities": []})})
    original = exp.config_for

    def config_for(spec):
        return bad if spec == broken else original(spec)

    exp.config_for = config_for  # type: ignore[method-assign]
    outcome = exp.run(client)
    assert list(outcome.failures) == [broken]
    assert "size_probabilities" in outcome.failures[broken] or "ValidationError" in outcome.failures[broken]
    assert len(outcome.runs) == 3 and not outcome.ok


def test_a_second_writer_of_one_folder_is_refused_and_a_stale_lock_recovered(tmp_path):
    """While one experiment holds its output folder, another povsim writing there is refused with one
    line naming the holder, exit 2, nothing changed; a lock whose process is gone is taken over; the lock
    is given back at the end."""
    import socket

    path = _write(tmp_path, NO_CHANNELS, "locked", replicates=2, households=600)
    out = tmp_path / "out"
    Experiment.from_file(path).run(out=out)
    assert not (out / ".povsim.lock").exists()  # given back
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".povsim.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                      "since": "2026-01-01T00:00:00+00:00"}))
        before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        proc = run_cli("run", str(path), "--workers", "0", "--out", str(out), cwd=tmp_path)
        assert proc.returncode == 2
        assert f"in use by another povsim (process {holder.pid} on {socket.gethostname()}" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, and the next run takes it, finishes and gives it back
    again = run_cli("run", str(path), "--workers", "0", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not (out / ".povsim.lock").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
