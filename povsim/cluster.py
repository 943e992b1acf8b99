"""Scale-out on Dask: clusters, runs on workers, and one population split across workers.

This module owns everything povsim does with Dask distributed; nothing here is
imported until a run asks for more than one process.

* :func:`open_client` gives a :class:`distributed.Client`: to an existing cluster
  by its address, or to a ``LocalCluster`` it starts on loopback only
  (``host="127.0.0.1"``: scheduler, workers and their dashboards listen on
  127.0.0.1, on free ports; worker processes of one thread each); with fewer
  than two workers it gives ``None``: run serially, without Dask.
* :func:`simulate` is the task a worker runs for one experiment run: a config
  in, a :class:`~povsim.results.Result` out (the driver writes the files, so
  workers need not share a file system with it).
* :func:`run_split` runs **one** population split into blocks of whole villages,
  one :class:`Block` per worker (a Dask actor: the households stay on their
  worker for the whole run), stepped month by month by the driver.  Every draw
  is keyed by the household's global id, a block's villages keep their global
  counties, and the monthly metrics are integer sums, so the result equals a
  single-process run bit for bit.  The only step that needs every village at
  once, the quota registration, is split in two: each block gives its
  villages' survey counts of poor people and their people, the driver joins
  the counts in village order and computes every quota
  (:func:`povsim.components.registration.quotas_from_counts`, on the global structure), and each
  block receives its villages' quotas with that month's step.  An exit plan's targets are
  shared the same way (:func:`povsim.components.review.plan_targets`, from every
  village's registered people).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["available_cores", "open_client", "simulate", "Block", "village_blocks", "run_split"]


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


#: Seconds to wait for a Dask scheduler to answer before giving up.  An assumption, not a
#: published figure: long enough for a scheduler across a data-centre network (distributed's
#: own connect timeout is 30 s), short enough that a wrong address is reported promptly.
#: ``--connect-timeout`` and ``open_client(timeout=...)`` set it.
CONNECT_TIMEOUT_S = 20.0

#: Seconds to wait for a client or a local cluster to close (an assumption: a cluster of
#: idle workers closes in a second or two; one of hung workers is left to its nannies).
CLOSE_TIMEOUT_S = 10.0

#: The address schemes of distributed's comm backends that can reach a scheduler from another process.
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")

_ADDRESS_ALLOWED = "allowed: tcp://HOST:PORT, the scheduler's address (its port is 8786 unless it was started otherwise)"


class SchedulerAddressError(ValueError):
    """A ``--scheduler`` address that cannot be a Dask scheduler's (found before connecting)."""


class SchedulerUnreachableError(ConnectionError):
    """Nothing at a scheduler's address answered as a Dask scheduler within the connect timeout."""


class SchedulerLostError(RuntimeError):
    """The Dask scheduler went away while runs were on it."""


def check_scheduler_address(address: str) -> str:
    """``address`` as distributed reads it (``HOST:PORT`` becomes ``tcp://HOST:PORT``), or
    :class:`SchedulerAddressError` naming the address and what is allowed.

    A scheduler listens on ``SCHEME://HOST:PORT`` with a scheme of :data:`SCHEDULER_SCHEMES`;
    a web address (``http://``, the dashboard's) is refused with that said.
    """
    if not isinstance(address, str) or not address.strip():
        raise SchedulerAddressError(f"scheduler address {address!r}: empty; {_ADDRESS_ALLOWED}")
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        raise SchedulerAddressError(
            f"scheduler address {address!r}: a web address (the dashboard's, port 8787 by default) is not the "
            f"scheduler's; {_ADDRESS_ALLOWED}"
        )
    if scheme not in SCHEDULER_SCHEMES:
        raise SchedulerAddressError(
            f"scheduler address {address!r}: unknown scheme {scheme!r} (allowed schemes: "
            f"{', '.join(SCHEDULER_SCHEMES)}); {_ADDRESS_ALLOWED}"
        )
    host, colon, port = rest.rstrip("/").rpartition(":")
    if "/" in rest.rstrip("/"):
        raise SchedulerAddressError(f"scheduler address {address!r}: a path after the address; {_ADDRESS_ALLOWED}")
    if not colon or not host or host in ("[]",):
        raise SchedulerAddressError(f"scheduler address {address!r}: no host and port; {_ADDRESS_ALLOWED}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SchedulerAddressError(
            f"scheduler address {address!r}: port {port!r} is not a number from 1 to 65535; {_ADDRESS_ALLOWED}"
        )
    return f"{scheme}://{host}:{int(port)}"


#: The longest connect timeout accepted, in seconds.
CONNECT_TIMEOUT_MAX_S = 3600.0


def check_connect_timeout(timeout: float) -> float:
    """``timeout`` as seconds, or ``ValueError`` unless it is a number above 0, at most :data:`CONNECT_TIMEOUT_MAX_S`."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= CONNECT_TIMEOUT_MAX_S:
        raise ValueError(
            f"connect timeout = {timeout!r}: allowed a number of seconds above 0, at most {CONNECT_TIMEOUT_MAX_S:g}"
        )
    return float(timeout)


def probe_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """Ask whatever listens at ``address`` who it is; return a scheduler's identity.

    Every step (connecting, the comm handshake, the question and its answer) is bounded by
    ``timeout`` seconds in all: distributed's own client waits without a bound for the
    handshake of a server that accepts a connection and never answers (a web server, a
    port forwarded to nothing).  Raises :class:`SchedulerUnreachableError` saying what was
    reached and what to check.  Runs in a thread of its own, so that it works from a
    notebook whose event loop is already running.
    """
    import asyncio

    address = check_scheduler_address(address)
    timeout = check_connect_timeout(timeout)
    outcome: dict[str, Any] = {}

    async def ask() -> dict[str, Any]:
        from distributed.comm import connect

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def left() -> float:
            return max(0.001, deadline - loop.time())

        # first a plain TCP connection: whether anything listens there at all
        scheme, rest = address.split("://", 1)
        host, _, port = rest.rpartition(":")
        if scheme != "ucx":
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), left())
            except (asyncio.TimeoutError, OSError) as err:
                outcome["stage"], outcome["error"] = "connecting", err
                raise
            writer.close()
        stage = "asking who it is"  # something listens: from here on, a failure means it is not a scheduler
        try:
            comm = await asyncio.wait_for(connect(address, timeout=left()), left())
        except BaseException as err:  # noqa: BLE001
            outcome["stage"], outcome["error"] = stage, err
            raise
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), left())
            answer = await asyncio.wait_for(comm.read(), left())
        except BaseException as err:  # noqa: BLE001 - any failure here: not a scheduler that answers
            outcome["stage"], outcome["error"] = stage, err
            raise
        finally:
            comm.abort()
        return answer

    def target() -> None:
        try:
            outcome["answer"] = asyncio.run(ask())
        except BaseException as err:  # noqa: BLE001 - reported below, in the caller's thread
            outcome.setdefault("error", err)
            outcome.setdefault("stage", "connecting")

    thread = threading.Thread(target=target, name="povsim-probe-scheduler", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)  # the steps are bounded; this bounds the thread itself
    answer = outcome.get("answer")
    if isinstance(answer, dict) and answer.get("type") == "Scheduler":
        return answer
    check = "check the address, that the scheduler runs, and that this machine may reach its port"
    err = outcome.get("error")
    if answer is not None:
        what = f"answered, but as {answer.get('type', 'something') if isinstance(answer, dict) else 'something'} " \
               f"other than a Dask scheduler"
    elif outcome.get("stage") == "asking who it is" or (err is None and thread.is_alive()):
        reason = "" if isinstance(err, asyncio.TimeoutError) or err is None else f" ({_short(err)})"
        what = f"accepted the connection but did not answer as a Dask scheduler within {timeout:g} s{reason}"
        check = ("check that this is the scheduler's port (8786 unless it was started otherwise), "
                 "not its dashboard's (8787) or another service's")
    elif isinstance(err, asyncio.TimeoutError):
        what = f"no connection within {timeout:g} s"
    else:
        what = f"no connection ({_short(err)})"
    raise SchedulerUnreachableError(f"Dask scheduler at {address!r}: {what}; {check}")


def _short(err: BaseException | None) -> str:
    text = str(err).split("\n")[0] if err is not None else ""
    if "Connection refused" in text or isinstance(err, ConnectionRefusedError):
        return "connection refused: nothing listens there"
    if "Timed out" in text:
        return "timed out"
    return text[:200] or type(err).__name__


@contextmanager
def open_client(
    workers: int | None = None, scheduler: str | None = None, *, timeout: float = CONNECT_TIMEOUT_S
) -> Iterator[Any]:
    """A Dask client for the duration of the block, or ``None`` for a serial run.

    ``scheduler``: the address of an existing cluster (``tcp://host:port``); it is
    checked (:func:`check_scheduler_address`), asked who it is within ``timeout``
    seconds (:func:`probe_scheduler`), used as it is and left running.  Otherwise
    ``workers`` >= 2 starts a ``LocalCluster`` of that many worker processes, one
    thread each, every socket (dashboards included) on 127.0.0.1 at a free port,
    closed at the end; ``workers`` of 0, 1 or ``None`` gives ``None`` (run in this
    process, without Dask: one worker would only add overhead).
    """
    if scheduler:
        address = check_scheduler_address(scheduler)
        probe_scheduler(address, timeout)
        from distributed import Client

        try:
            client = Client(address, timeout=f"{check_connect_timeout(timeout)}s")
        except (OSError, TimeoutError) as err:
            raise SchedulerUnreachableError(
                f"Dask scheduler at {address!r}: {_short(err)}; check the address and that the scheduler runs"
            ) from None
        try:
            yield client
        finally:
            _close_quietly(client)
        return
    if workers is None or workers < 2:
        yield None
        return
    from distributed import Client, LocalCluster

    _check_main_guard()
    with _starting_workers(workers):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            _close_quietly(client)
    finally:
        _close_quietly(cluster)


#: What a script that starts worker processes must do; said where that goes wrong.
MAIN_GUARD = (
    "in a script, put the code that runs the experiment under `if __name__ == \"__main__\":` "
    "(each local worker process imports the script again; see the Dask section of the experiments page of the docs)"
)


class ClusterStartError(RuntimeError):
    """A local Dask cluster's worker processes did not start."""


def _check_main_guard() -> None:
    """Stop a worker process that is importing the user's script and reached a cluster's start.

    Dask starts worker processes by *spawn*: each imports the main script again (as
    ``__mp_main__``) before it runs anything.  A script without a main guard then starts
    a cluster inside each worker, which fails deep inside multiprocessing with hundreds of
    lines; the worker stops here instead, with one line, and the parent says what to do.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(f"povsim: a worker process reached the start of a cluster: {MAIN_GUARD}")


@contextmanager
def _starting_workers(workers: int) -> Iterator[None]:
    """Start a local cluster's worker processes: they ignore Ctrl-C, and a failure is one clear error.

    SIGINT is ignored while the cluster starts, so that every worker process begins with it
    ignored (an ignored signal stays ignored across ``exec``, and Python then leaves it so).
    Ctrl-C at a terminal reaches every process of the terminal's group; afterwards it
    interrupts this process only, which stops the experiment and closes the cluster, and no
    worker prints a traceback.  While the workers start (a few seconds), Ctrl-C does nothing.
    """
    import signal

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    except Exception as err:
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        hint = f"; {MAIN_GUARD}" if script else ""
        message = str(err).splitlines()[0] if str(err) else "no message"
        raise ClusterStartError(
            f"could not start {workers} local Dask worker processes ({type(err).__name__}: {message}){hint}"
        ) from None
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


#: Set by :func:`catching_interrupts` when Ctrl-C is pressed; the loops that wait on a cluster check it.
_INTERRUPTED = threading.Event()

#: Seconds between two looks at the interrupt flag while waiting for runs on a cluster.
POLL_S = 0.05


@contextmanager
def catching_interrupts() -> Iterator[threading.Event]:
    """Make Ctrl-C stop the block even when it lands where it would be swallowed.

    Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives;
    inside a garbage-collection callback (distributed installs some) the exception is
    printed as "ignored" and lost, and the experiment would go on.  Here the first SIGINT
    sets a flag instead, which the loops that wait on a cluster check and answer with
    ``KeyboardInterrupt``: :func:`wait_as_completed` every :data:`POLL_S` seconds, and
    :func:`run_split` after each month.  A second SIGINT raises at once.  Outside the
    main thread (no signal handler can be set there) the block runs unchanged.
    """
    import signal

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN, None
    ):  # no handler can be set, or SIGINT is ignored on purpose (a job started in the background)
        yield _INTERRUPTED
        return

    def interrupt(signum, frame):
        if _INTERRUPTED.is_set():  # pressed again: at once, wherever it lands
            raise KeyboardInterrupt
        _INTERRUPTED.set()

    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield _INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
        _INTERRUPTED.clear()


def wait_as_completed(futures) -> Iterator[Any]:
    """Each of ``futures`` as it completes, like ``distributed.as_completed``, with Ctrl-C honoured.

    Looks every :data:`POLL_S` seconds at the flag of :func:`catching_interrupts`, and
    raises ``KeyboardInterrupt`` when it is set.
    """
    from distributed import as_completed

    queue = as_completed(futures)
    while not queue.is_empty():
        batch = queue.next_batch(block=False)
        if not batch:
            if _INTERRUPTED.is_set():
                raise KeyboardInterrupt
            time.sleep(POLL_S)
            continue
        yield from batch
        if _INTERRUPTED.is_set():
            raise KeyboardInterrupt


def quiet_distributed_logs(level: int = logging.CRITICAL + 1) -> None:
    """Set every logger of distributed and of the event loops it runs on (tornado, asyncio),
    and those they make later, to ``level``.

    For a command line that reports a lost scheduler, a failed run and an interrupt itself,
    in one line each; distributed sets levels on its own loggers when it is imported, so
    each is set here.  Not called by the library: a script keeps distributed's logging.
    """
    import distributed  # noqa: F401 - its logging is configured on import

    roots = ("distributed", "tornado", "asyncio")
    for name in [*roots, *logging.root.manager.loggerDict]:
        if name.split(".", 1)[0] in roots:
            logging.getLogger(name).setLevel(level)


def _close_quietly(thing: Any) -> None:
    """Close a client or cluster within :data:`CLOSE_TIMEOUT_S`; after a lost scheduler or while an
    error or interrupt is on its way out, a failure to close does not hide it."""
    failing = getattr(thing, "status", "running") != "running" or sys.exc_info()[0] is not None
    try:
        thing.close(timeout=CLOSE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - closing after a loss: nothing more to save
        if not failing:
            raise


def _worker_threads() -> int | None:
    """Threads of the Dask worker running this task, or ``None`` outside a worker.

    A process that has not imported distributed is not a Dask worker, so nothing is imported
    to find out (importing distributed is about half a second of a serial run's start).
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return int(distributed.get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return None


@contextmanager
def _numba_threads(config) -> Iterator[None]:
    """On a Dask worker, the engine uses the worker's threads (not every core) unless the config says."""
    import numba

    threads = _worker_threads()
    previous = numba.get_num_threads()
    if threads and not config.simulation.threads:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def simulate(config: dict[str, Any]):
    """Run one validated config (as a dict) and return its :class:`~povsim.results.Result`.

    The task a Dask worker runs for one experiment run; also called directly for
    serial runs, so both paths run the same code.
    """
    from .config import Config
    from .engine import Simulation

    cfg = Config.model_validate(config)
    with _numba_threads(cfg):
        return Simulation(cfg).run()


# --------------------------------------------------------------------------------------
# One population split into blocks of whole villages
# --------------------------------------------------------------------------------------


class Block:
    """Villages ``v0 .. v1-1`` of a configured population, advanced month by month.

    Created on a worker as a Dask actor (or in this process for a serial split
    run); holds its households for the whole run.
    """

    def __init__(self, config: dict[str, Any], v0: int, v1: int):
        from .config import Config
        from .engine import Simulation
        from .population import build_population

        self.config = Config.model_validate(config)
        with _numba_threads(self.config):
            self.sim = Simulation(self.config, population=build_population(self.config, villages=(v0, v1)))

    def info(self) -> dict[str, int]:
        pop = self.sim.population
        return {"households": pop.n_households, "villages": pop.n_villages, "first_id": pop.first_id,
                "nbytes": pop.nbytes(), "people": int(pop.households.size.sum(dtype=np.int64))}

    def survey_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Poor people per village in the survey month (the survey behind the quotas), and people per village."""
        from .components.registration import village_people

        pop = self.sim.population
        return pop.villages.survey_poor.copy(), village_people(pop.households.size, pop.households.flags,
                                                               pop.village_start, 0)

    def registered_people(self) -> np.ndarray:
        """Registered people per village now (what an exit plan is shared by)."""
        return self.sim.registered_people()

    def step(self, quota: np.ndarray | None = None, exit_target: np.ndarray | None = None) -> np.ndarray:
        """Advance one month (``quota``: this block's village quotas in the quota month; ``exit_target``: its
        villages' exit-plan targets in a plan month); return its totals."""
        with _numba_threads(self.config):
            return self.sim.step(quota, exit_target)


def village_blocks(n_villages: int, blocks: int) -> list[tuple[int, int]]:
    """``blocks`` contiguous ranges of whole villages, as equal as can be (at most one per village)."""
    if blocks < 1:
        raise ValueError(f"blocks = {blocks}: allowed a positive integer")
    blocks = min(blocks, n_villages)
    edges = [n_villages * b // blocks for b in range(blocks + 1)]
    return [(edges[b], edges[b + 1]) for b in range(blocks)]


def run_split(config, blocks: int = 2, client=None, progress: Callable[[int], None] | None = None):
    """Run one config with its population split into ``blocks`` blocks of whole villages.

    With a Dask ``client`` each block is an actor on a worker (blocks are placed
    round-robin over the workers); without one the blocks run in this process,
    one after another.  The result equals ``povsim.run(config)`` bit for bit in
    every metric, event and delay; its manifest adds ``blocks`` and ``workers``.
    """
    from .config import Config
    from .population import structure
    from .results import Result, provinces_present
    from .rng import split_seed
    from .components import make_params
    from .components.registration import METHOD_QUOTA, quotas_from_counts
    from .components.review import plan_month_target, plan_targets
    from .timeline import Timeline

    if not isinstance(config, Config):
        config = Config.model_validate(config)
    t0 = time.perf_counter()
    village_start, village_county, county_province = structure(config)
    ranges = village_blocks(int(village_county.shape[0]), blocks)
    data = config.to_dict()
    if client is None:
        handles = [Block(data, v0, v1) for v0, v1 in ranges]
        workers = 0
        threads = config.simulation.threads or _numba_default()
    else:
        info = client.scheduler_info(n_workers=-1)["workers"]
        addresses = sorted(info)
        if not addresses:
            raise RuntimeError("the Dask cluster has no workers")
        futures = [
            client.submit(Block, data, v0, v1, actor=True, workers=[addresses[k % len(addresses)]],
                          allow_other_workers=False, pure=False)
            for k, (v0, v1) in enumerate(ranges)
        ]
        handles = [f.result() for f in futures]
        workers = len({addresses[k % len(addresses)] for k in range(len(ranges))})
        threads = config.simulation.threads or min(int(w.get("nthreads", 1)) for w in info.values())

    def call(method: str, args_per_block: list[tuple]) -> list[Any]:
        pending = [getattr(h, method)(*args) for h, args in zip(handles, args_per_block)]
        out = [p.result() if hasattr(p, "result") else p for p in pending]
        if _INTERRUPTED.is_set():  # a Ctrl-C that a callback swallowed (see catching_interrupts)
            raise KeyboardInterrupt
        return out

    timeline = Timeline.from_config(config)
    params = make_params(config)
    k0, k1 = split_seed(config.seed)
    reg = config.policy.registration
    n_counties = int(county_province.shape[0])
    totals: dict[int, np.ndarray] = {}
    infos = call("info", [()] * len(handles))
    national_people = sum(i["people"] for i in infos)
    for month in timeline.months:
        quotas: list[np.ndarray | None] = [None] * len(handles)
        if month == params.registration.month and params.registration.method == METHOD_QUOTA:
            parts = call("survey_counts", [()] * len(handles))
            counts = np.concatenate([c for c, _ in parts]).astype(np.int64)
            people = np.concatenate([n for _, n in parts]).astype(np.int64)
            quota = quotas_from_counts(
                counts, people, village_start, village_county, n_counties, 0, reg.quota_scale,
                reg.county_estimate_sd, reg.village_estimate_sd, k0, k1,
            )
            quotas = [quota[v0:v1] for v0, v1 in ranges]
        targets: list[np.ndarray | None] = [None] * len(handles)
        if plan_month_target(config.policy.review, month) is not None:
            registered = np.concatenate(call("registered_people", [()] * len(handles))).astype(np.int64)
            target = plan_targets(registered, village_county, n_counties, national_people, config.policy.review, month)
            targets = [target[v0:v1] for v0, v1 in ranges]
        month_totals = call("step", [(q, t) for q, t in zip(quotas, targets)])
        total = np.sum(np.stack(month_totals), axis=0, dtype=np.int64)
        if month >= timeline.start:
            totals[month] = total
        if progress is not None:
            progress(1)
    wall = time.perf_counter() - t0
    households = sum(i["households"] for i in infos)
    structure_info = {
        "households": households,
        "villages": int(village_county.shape[0]),
        "counties": n_counties,
        "provinces": provinces_present(county_province),
        "bytes_per_household": sum(i["nbytes"] for i in infos) / max(households, 1),
    }
    return Result.from_totals(
        config, timeline, totals, wall_time=wall, threads=threads, structure=structure_info,
        extra={"blocks": len(ranges), "workers": workers},
    )


def _numba_default() -> int:
    import numba

    return numba.get_num_threads()
