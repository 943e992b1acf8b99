"""What the command line shows while it runs: the word about compiling, and a bar without a bogus estimate."""

from __future__ import annotations

import importlib.util
import io
import time

import numba
import pytest

from povsim import progress as P

CACHED_MODULE = '''
import numba

@numba.njit(cache=True)
def add_one(x):
    return x + 1
'''


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_is_cached_reads_numbas_own_cache_index(tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "kernel_for_cache_test.py"
    source.write_text(CACHED_MODULE)
    first = _load(source, "kernel_for_cache_test")
    assert P.is_cached(first.add_one) is False  # nothing compiled yet: a run would compile
    assert first.add_one(1) == 2
    assert P.is_cached(first.add_one) is True
    again = _load(source, "kernel_for_cache_test_again")  # a new process would find it
    assert P.is_cached(again.add_one) is True
    source.write_text(CACHED_MODULE.replace("x + 1", "x + 2"))  # another version of the source
    changed = _load(source, "kernel_for_cache_test_changed")
    assert P.is_cached(changed.add_one) is False


def test_is_cached_cannot_tell_without_a_cache():
    assert P.is_cached(numba.njit(lambda x: x)) is None  # no cache=True: a notice by timing instead
    assert P.engine_is_compiled() in (True, False)  # the engine's pass is cached: the index can be read


def _renders(buffer: io.StringIO) -> list[str]:
    return [r for r in buffer.getvalue().replace("\n", "\r").split("\r") if r.strip()]


def test_no_rate_or_remaining_time_until_the_first_step_is_done():
    buffer = io.StringIO()
    bar = P.Progress(10, "month", "demo", file=buffer, mininterval=0, miniters=1, dynamic_ncols=False, ncols=100)
    before = _renders(buffer)
    assert before and all("<" not in r and "/s" not in r and "s/month" not in r for r in before), before
    time.sleep(1.2)  # the first month compiles
    bar.update()
    for _ in range(2):
        time.sleep(0.01)
        bar.update()
    bar.close()
    last = [r for r in _renders(buffer) if "3/10" in r][-1]
    # the estimate comes from the two compiled months, not from the slow first one
    assert "[00:00<00:00" in last, last
    assert P.COMPILE_NOTICE not in buffer.getvalue()


@pytest.mark.parametrize("compiled, first_step_s, noticed", [
    (False, 0.0, True), (True, 0.3, False), (None, 0.3, True), (None, 0.0, False),
])
def test_the_compile_notice(compiled, first_step_s, noticed, monkeypatch):
    monkeypatch.setattr(P, "NOTICE_AFTER_S", 0.1)
    buffer = io.StringIO()
    with P.Progress(3, "month", "demo", compiled=compiled, file=buffer) as bar:
        time.sleep(first_step_s)
        bar.update()
        time.sleep(0.2)  # a timer that should have been cancelled would fire here
    assert (P.COMPILE_NOTICE in buffer.getvalue()) is noticed
    assert bar.noticed is noticed
    assert "compiling the model once" in P.COMPILE_NOTICE and "later runs start at once" in P.COMPILE_NOTICE
