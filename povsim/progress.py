"""What a run shows while it goes: a progress bar, and a word while the model is compiled.

The first run after installing povsim (or after a change to its compiled sources)
compiles the engine with Numba: half a minute or more before the first month is
simulated, paid once (the compiled code is cached, see :mod:`povsim._jit`).  Two
things follow for a progress bar:

* whether the engine will be compiled is known before the run starts, from Numba's
  own cache index (:func:`engine_is_compiled`), and then said on standard error;
* the first step (month or run) of a bar may take far longer than the others, so a
  bar (:class:`Progress`) shows no rate and no remaining time until its first step is
  done, and estimates from the steps after it only.

Nothing here is imported by the engine; the command line and :func:`povsim.run` use it.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

__all__ = ["COMPILE_NOTICE", "Progress", "engine_is_compiled", "is_cached"]

COMPILE_NOTICE = "povsim: compiling the model once (about 30 s, longer on a busy machine); later runs start at once"

#: without a cache to ask, the notice is shown when the first step takes longer than this (seconds)
NOTICE_AFTER_S = 10.0

#: the bar's format before its first step: elapsed time only, no rate or remaining time
_FIRST_STEP_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def is_cached(dispatcher: Any) -> bool | None:
    """Whether Numba's cache holds compiled code of ``dispatcher`` (a function compiled with ``cache=True``)
    for this source, this Numba and this CPU: ``True``, ``False``, or ``None`` when it cannot tell
    (caching off, or a Numba whose cache is laid out otherwise).

    It reads the function's cache index as Numba does before loading from it: an index
    written for another version of the source file, another Numba or another CPU does not count.
    """
    try:
        cache = dispatcher._cache
        index_file = cache._cache_file
        codegen = dispatcher.targetctx.codegen()
        wanted = cache._index_key(None, codegen)[1:]  # (CPU and options, hash of the function's bytecode)
        overloads = index_file._load_index()
        return any(
            tuple(key[1:]) == tuple(wanted) and os.path.exists(index_file._data_path(name))
            for key, name in overloads.items()
        )
    except Exception:  # noqa: BLE001 - no cache to ask: the caller falls back on timing
        return None


def engine_is_compiled() -> bool | None:
    """Whether the engine's monthly pass (:func:`povsim.engine.run_blocks`) is in Numba's cache (see
    :func:`is_cached`); it is most of what a first run compiles."""
    from .engine import run_blocks

    return is_cached(run_blocks)


class Progress:
    """A tqdm bar of ``total`` steps (``unit``: month or run) that estimates only from compiled steps.

    Until its first step is done it shows the count and the elapsed time (no rate, no
    remaining time); then it starts again from that count, so its rate and remaining
    time come from the steps after the first.  ``compiled`` says whether the model is
    compiled already (:func:`engine_is_compiled`): ``False`` prints :data:`COMPILE_NOTICE`
    at once, ``None`` (unknown) prints it if the first step takes longer than
    :data:`NOTICE_AFTER_S` seconds, ``True`` never.  Other keywords go to tqdm.
    """

    def __init__(self, total: int, unit: str, desc: str, initial: int = 0, compiled: bool | None = True,
                 **tqdm_options: Any):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._options = {"total": total, "unit": unit, "desc": desc, "leave": False, "dynamic_ncols": True,
                         **tqdm_options}
        self._file = tqdm_options.get("file")
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._first = True
        self.noticed = False
        self.bar = tqdm(initial=initial, bar_format=_FIRST_STEP_FORMAT, **self._options)
        if compiled is False:
            self._notice()
        elif compiled is None:
            self._timer = threading.Timer(NOTICE_AFTER_S, self._notice)
            self._timer.daemon = True
            self._timer.start()

    def _notice(self) -> None:
        with self._lock:
            if self._first and not self.noticed:
                self.noticed = True
                self._tqdm.write(COMPILE_NOTICE, file=self._file if self._file is not None else sys.stderr)

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""
        with self._lock:
            if not self._first:
                self.bar.update(n)
                return
            self._first = False
            if self._timer is not None:
                self._timer.cancel()
            done, postfix = self.bar.n + n, self.bar.postfix
            self.bar.close()  # the estimate starts again here, with the first (compiling) step behind it
            self.bar = self._tqdm(initial=done, postfix=postfix, **self._options)

    def set_postfix(self, **values: Any) -> None:
        self.bar.set_postfix(**values)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
