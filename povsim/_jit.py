"""Numba settings shared by every compiled module: where compiled code is cached.

Numba re-validates a cached function only against its own source file, but the
engine's ``run_month`` (engine.py) embeds the rules compiled from rules.py, rng.py
and population.py: after an edit to rules.py alone, a cache beside the sources
would silently run the old rules.  So povsim keeps its compiled code in a folder
named after a hash of all its compiled sources (and the Numba version):
``$XDG_CACHE_HOME/povsim/numba-<hash>`` (``~/.cache`` by default, the system's
temporary folder if that is not writable).  A cache can never be stale; a change
of sources simply compiles into a new folder.  A ``NUMBA_CACHE_DIR`` set by the
user is respected.

Every compiled module imports this one before defining a Numba function, which is
when Numba reads the cache folder.  The hash reads the small files of
``COMPILED_SOURCES``, once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

#: the modules whose compiled code ends up in the engine
COMPILED_SOURCES = ("_jit.py", "elementary.py", "rng.py", "population.py", "metrics.py", "rules.py", "engine.py")


def source_hash() -> str:
    """A short hash of the compiled sources and the Numba version."""
    digest = hashlib.sha256(numba.__version__.encode())
    here = Path(__file__).resolve().parent
    for name in COMPILED_SOURCES:
        digest.update(name.encode())
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def _cache_dir() -> str:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "povsim"
    folder = base / f"numba-{source_hash()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return str(folder)
    except OSError:
        pass
    folder = Path(tempfile.gettempdir()) / f"povsim-numba-{source_hash()}"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _cache_dir()
