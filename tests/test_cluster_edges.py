"""Clusters at the edges: a wrong or silent scheduler address, a scheduler lost mid-experiment,
Ctrl-C with several workers, and a script that starts workers without a main guard.

Each test injects the fault and asserts the outcome: one line naming the problem, the exit
status, the finished runs kept, and a bound on the time it takes.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO

import povsim
from povsim import cli
from povsim.cluster import (
    CONNECT_TIMEOUT_S,
    SchedulerAddressError,
    SchedulerLostError,
    SchedulerUnreachableError,
    check_scheduler_address,
    probe_scheduler,
)
from povsim.experiments import Experiment

SMALL = """
name = "{name}"
seed = 5
replicates = {replicates}
[simulation]
threads = 1
burn_in_years = 1
end = "2018-12"
[population]
households = {households}
"""


def _write(folder: Path, name: str = "edge", replicates: int = 3, households: int = 600) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(SMALL.format(name=name, replicates=replicates, households=households), encoding="utf-8")
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- the address ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, problem",
    [
        ("foo", "no host and port"),
        ("http://10.0.0.5:8787", "a web address"),
        ("https://h:8787/status", "a web address"),
        ("tcp://", "no host and port"),
        ("tcp://h:x", "port 'x' is not a number"),
        ("tcp://h:0", "port '0' is not a number"),
        ("tcp://h:8786/status", "a path after the address"),
        ("inproc://h:1", "unknown scheme 'inproc'"),
        ("", "empty"),
    ],
)
def test_a_malformed_scheduler_address_is_refused_before_anything_is_read(address, problem):
    with pytest.raises(SchedulerAddressError, match=problem) as caught:
        check_scheduler_address(address)
    assert isinstance(caught.value, ValueError)
    assert "allowed: tcp://HOST:PORT" in str(caught.value)


@pytest.mark.parametrize(
    "address, read",
    [
        ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
        ("TLS://sched.example.org:8786/", "tls://sched.example.org:8786"),
        ("[::1]:8786", "tcp://[::1]:8786"),
    ],
)
def test_a_well_formed_address_is_read_as_distributed_reads_it(address, read):
    assert check_scheduler_address(address) == read


@pytest.mark.parametrize("address", ["foo", "http://127.0.0.1:8787", "tcp://", "tcp://h:x"])
def test_a_malformed_address_on_the_command_line_is_one_line_and_exit_2(address, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["run", str(tmp_path / "missing.toml"), "--scheduler", address, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert _lines(err) == [err.strip()] and err.startswith("povsim: error: scheduler address")
    assert "Traceback" not in err
    assert not out.exists()  # refused before the experiment file is read, nothing made


def test_the_connect_timeout_option_is_checked(capsys):
    for bad in ("0", "-1", "nan", "soon", "7200"):
        with pytest.raises(SystemExit) as caught:
            cli.main(["run", "x.toml", "--connect-timeout", bad])
        assert caught.value.code == 2
        assert "--connect-timeout" in capsys.readouterr().err
    with pytest.raises(ValueError, match="connect timeout"):
        probe_scheduler("tcp://127.0.0.1:1", timeout=0)


# --- what answers at the address ------------------------------------------------------------------------------


class _Silent:
    """A TCP server that accepts connections and never says a word (a port forwarded to nothing)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # a test's web server keeps quiet
        pass


@pytest.fixture
def silent():
    server = _Silent()
    yield server
    server.close()


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_server_that_never_answers_is_given_up_within_the_timeout(silent, tmp_path, capsys):
    """distributed's own client waits for such a server's handshake without a bound."""
    out = tmp_path / "out"
    t0 = time.perf_counter()
    code = cli.main(["run", str(_write(tmp_path)), "--scheduler", f"tcp://127.0.0.1:{silent.port}",
                     "--connect-timeout", "1", "--out", str(out), "--quiet"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 10, f"gave up after {elapsed:.1f} s, with a timeout of 1 s"
    assert len(_lines(err)) == 1 and "Traceback" not in err
    assert "accepted the connection but did not answer as a Dask scheduler within 1 s" in err
    assert "8786" in err and "8787" in err  # what to check: the scheduler's port, not the dashboard's
    assert silent.accepted, "the server was reached"
    assert not (out / "manifest.json").exists()


def test_a_web_server_is_not_taken_for_a_scheduler(web):
    t0 = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError, match="did not answer as a Dask scheduler") as caught:
        probe_scheduler(f"127.0.0.1:{web.server_address[1]}", timeout=2)
    assert time.perf_counter() - t0 < 10
    assert isinstance(caught.value, ConnectionError)


def test_nothing_listening_is_said_at_once():
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError, match="nothing listens there"):
        probe_scheduler(f"tcp://127.0.0.1:{port}", timeout=CONNECT_TIMEOUT_S)
    assert time.perf_counter() - t0 < 5  # refused: no need to wait for the timeout


def test_a_scheduler_answers_the_probe():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        identity = probe_scheduler(cluster.scheduler_address, timeout=10)
    assert identity["type"] == "Scheduler"


# --- a scheduler lost mid-experiment --------------------------------------------------------------------------


class _Future:
    def __init__(self, status: str, result=None):
        self.status, self._result = status, result

    def result(self):
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def exception(self):  # what distributed gives for a future cancelled by a lost scheduler
        return None

    def traceback(self):
        return None

    def release(self):
        pass

    def cancel(self):
        pass


class _LostClient:
    """A client whose scheduler goes away after ``finished`` runs: the rest come back cancelled."""

    def __init__(self, finished: int, cut_off: bool = False):
        self.finished, self.submitted, self.cut_off = finished, 0, cut_off
        self.status = "running"
        self.scheduler = type("Rpc", (), {"address": "tcp://10.0.0.5:8786"})()

    def submit(self, fn, config, **kwargs):
        self.submitted += 1
        if self.submitted <= self.finished:
            return _Future("finished", povsim.cluster.simulate(config))
        self.status = "connecting"  # trying to reach the lost scheduler again
        if self.cut_off:  # finished on the worker, but the scheduler went while its result was fetched
            return _Future("finished", ConnectionResetError("in <TCP (closed) ConnectionPool.gather>: Stream is closed"))
        return _Future("cancelled")

    def scheduler_info(self, **kwargs):
        return {"workers": {}}


@pytest.fixture
def completed_in_order(monkeypatch):
    """The fake futures complete in the order they were submitted."""
    import povsim.cluster

    monkeypatch.setattr(povsim.cluster, "wait_as_completed", lambda futures: iter(list(futures)))


def test_a_lost_scheduler_is_reported_and_the_finished_runs_kept(tmp_path, completed_in_order):
    experiment = Experiment.from_file(_write(tmp_path, replicates=4))
    out = tmp_path / "out"
    with pytest.raises(SchedulerLostError) as caught:
        experiment.run(_LostClient(finished=2), out=out)
    message = str(caught.value)
    assert "lost the Dask scheduler at tcp://10.0.0.5:8786" in message
    assert f"2 of 4 runs are finished and kept in {out}/" in message and "run the same command again" in message
    kept = sorted(p.parent.name for p in (out / "runs").rglob("manifest.json"))
    assert kept == ["rep-0000", "rep-0001"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"  # nothing looks complete
    resumed = experiment.run(out=out)  # the same experiment again, serially: the two runs are reused
    assert resumed.ok and resumed.info["resumed"] == 2


def test_a_scheduler_lost_while_a_result_is_fetched_is_reported_as_lost(tmp_path, completed_in_order):
    experiment = Experiment.from_file(_write(tmp_path, replicates=3))
    out = tmp_path / "out"
    with pytest.raises(SchedulerLostError, match="lost the Dask scheduler at tcp://10.0.0.5:8786") as caught:
        experiment.run(_LostClient(finished=1, cut_off=True), out=out)
    assert "1 of 3 runs are finished" in str(caught.value)
    assert len(list((out / "runs").rglob("manifest.json"))) == 1


def test_a_lost_scheduler_on_the_command_line_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys,
                                                                     completed_in_order):
    from contextlib import contextmanager

    import povsim.cluster

    @contextmanager
    def lost(workers=None, scheduler=None, *, timeout=CONNECT_TIMEOUT_S):
        yield _LostClient(finished=1)

    monkeypatch.setattr(povsim.cluster, "open_client", lost)
    out = tmp_path / "out"
    code = cli.main(["run", str(_write(tmp_path)), "--scheduler", "tcp://10.0.0.5:8786", "--out", str(out),
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert _lines(err) == [err.strip()] and "Traceback" not in err
    assert err.startswith("povsim: error: lost the Dask scheduler") and "1 of 3 runs are finished" in err


# --- Ctrl-C with several workers, and a script without a main guard -------------------------------------------


def _default_sigint():
    # Ctrl-C as at a terminal: a runner started in the background passes SIGINT on ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _group_gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_ctrl_c_with_two_workers_is_one_line_and_exit_130(tmp_path):
    """SIGINT to the whole process group, as Ctrl-C at a terminal sends it: the workers print nothing,
    povsim says one line, keeps the finished runs, closes its cluster and exits 130, all within a bound."""
    path = _write(tmp_path, "interrupted", replicates=12, households=4000)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "povsim.cli", "run", str(path), "--workers", "2", "--out", str(out), "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 240
        while not any((out / "runs").rglob("manifest.json")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no run finished within 240 s"
            time.sleep(0.1)
        assert proc.poll() is None, "the experiment finished before it could be interrupted"
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert _lines(stderr) == [f"povsim: interrupted; finished runs are kept in {out}/: run the same command "
                              "again to resume"], stderr
    assert elapsed < 30, f"stopped {elapsed:.1f} s after Ctrl-C"
    assert _group_gone(proc.pid, 20), "a worker process outlived the interrupted experiment"
    assert any((out / "runs").rglob("manifest.json"))


UNGUARDED = """
from povsim.experiments import Experiment

experiment = Experiment.from_file({path!r})
experiment.run(workers=2)
print("finished")
"""


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_what_to_do(tmp_path):
    """Worker processes import the main script again; without a guard each would start a cluster of its own."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(UNGUARDED.format(path=str(_write(tmp_path, replicates=2)))), encoding="utf-8")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1
    assert "finished" not in proc.stdout
    last = _lines(proc.stderr)[-1]
    assert last.startswith("povsim.cluster.ClusterStartError: could not start 2 local Dask worker processes")
    assert 'if __name__ == "__main__":' in last
    # the workers say so in one line each, and the script's own traceback is short: not hundreds of lines
    assert len(_lines(proc.stderr)) < 30, proc.stderr
    assert proc.stderr.count("Nanny failed to start") <= 1
    assert time.monotonic() - t0 < 120
