"""Numba settings shared by every compiled module: where compiled code is cached, how wide its vectors are.

Numba re-validates a cached function only against its own source file, but the
engine's ``run_month`` (engine.py) embeds the components' kernels compiled from
``povsim/components/``, rng.py and elementary.py: after an edit to one component
alone, a cache beside the sources would silently run the old kernels.  So povsim keeps its compiled code in a folder
named after a hash of all its compiled sources (and the Numba version):
``$XDG_CACHE_HOME/povsim/numba-<hash>`` (``~/.cache`` by default, the system's
temporary folder if that is not writable).  A cache can never be stale; a change
of sources simply compiles into a new folder.  A ``NUMBA_CACHE_DIR`` set by the
user is respected.

Every compiled module imports this one before defining a Numba function, which is
when Numba reads the cache folder.  The hash reads, once, every module of the
package that compiles anything (:func:`compiled_sources`: found by the package's own
layout, so a new compiled module can never be served stale code), and the registry
of components, which decides the kernels' state, slots and parameters.

Vector width: on a CPU with AVX-512, LLVM's tuning for Intel server cores prefers
256-bit vectors (``prefer-256-bit``; on older cores 512-bit instructions lowered
the clock).  povsim's vectorised loops (Philox, Box-Muller, the month's incomes)
run about 1.4 times faster with 512-bit vectors on the machines measured in
``docs/performance.md``, so povsim asks Numba for the host CPU with that
preference removed.  Results do not change: the loops are element by element (no
reordered sums), so every lane computes the bits a scalar would.  A
``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` set by the user, or
``POVSIM_VECTOR_WIDTH=default``, leaves Numba's choice alone.  The setting takes
effect if povsim is imported before Numba compiles anything; the CPU and its
features are part of the key of Numba's cache, so no code compiled for another
setting is ever reused.

Literal arguments: Numba types an integer constant that compiled code passes to a
compiled function (``draw4(k0, k1, STREAM_SHOCKS, i, month, 0)``) as a literal,
``Literal[int](0)``, and compiles the callee again for every distinct literal.
:func:`compile_per_type` marks the small helpers many kernels call with
constants (the Philox draws, a registration, a verification flag) to be compiled
once per argument type instead.  They are inlined by LLVM (``forceinline``), where
the constants reach them anyway, so the machine code is the same; a first compile
is some ten seconds shorter.

Python entry points: Numba builds one for every function by default, about a second of
a first compile for a hook's full argument list.  Only the engine's compiled month
calls the model's hooks, so they are compiled without one (``no_cpython_wrapper=True``);
the Mesa model, which calls the village hooks and the two household phases from
Python, asks :func:`python_entry` for a second compilation that has one, so that it
is built only by a run that uses the Mesa model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

_HERE = Path(__file__).resolve().parent


def compiled_sources() -> tuple[str, ...]:
    """Every module of the package that compiles with Numba or decides what is compiled, relative to the package.

    A module counts if it uses ``njit``, and so does every module of
    ``povsim/components/`` (its declarations shape the state, slots and parameters the
    kernels are compiled for) and this one.
    """
    found = []
    for path in sorted(_HERE.rglob("*.py")):
        rel = path.relative_to(_HERE).as_posix()
        if rel == "_jit.py" or rel.startswith("components/") or "njit" in path.read_text(encoding="utf-8"):
            found.append(rel)
    return tuple(found)


_HASH: str | None = None


def source_hash() -> str:
    """A short hash of the compiled sources and the Numba version (computed once)."""
    global _HASH
    if _HASH is None:
        digest = hashlib.sha256(numba.__version__.encode())
        for rel in compiled_sources():
            digest.update(rel.encode())
            digest.update((_HERE / rel).read_bytes())
        _HASH = digest.hexdigest()[:16]
    return _HASH


def compile_per_type(dispatcher):
    """Compile ``dispatcher`` once for each tuple of argument types, whatever literal values callers pass.

    Calls from compiled code are resolved with every ``Literal[...]`` argument type
    replaced by its plain type (``Literal[int](3)`` by ``int64``), so the constants
    at thirty call sites share one specialisation.  Only for functions whose
    body does not need its arguments' values at compile time (a tuple index, a
    ``literally``); a function that did would fail to compile, never compute
    differently.  Calls from Python are unaffected (their arguments are never literal).
    """
    from numba.core import types

    resolve = dispatcher.get_call_template

    def get_call_template(args, kws):
        return resolve(tuple(types.unliteral(a) for a in args), {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


_PYTHON_ENTRIES: dict = {}


def python_entry(dispatcher):
    """``dispatcher``'s function compiled with a Python entry point, to be called from Python.

    A function declared with ``no_cpython_wrapper=True`` cannot be called from Python.
    This returns a second dispatcher of the same Python function with the same options
    and an entry point (the function itself if it has one already), made once per
    process.  Its compiled code is cached under its own name, ``<name>__python``: Numba
    keys a cache entry by the function's name and argument types, not its options, so
    under the same name each would load the other's machine code.  The two compile the
    same source with the same options, so they compute the same bits.
    """
    import types

    if not dispatcher.targetoptions.get("no_cpython_wrapper", False):
        return dispatcher
    entry = _PYTHON_ENTRIES.get(dispatcher)
    if entry is None:
        f = dispatcher.py_func
        clone = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        clone.__qualname__ = f.__qualname__ + "__python"
        clone.__doc__ = f.__doc__
        clone.__kwdefaults__ = f.__kwdefaults__
        from numba.core.caching import NullCache

        options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("no_cpython_wrapper", "nopython")}
        cache = not isinstance(dispatcher._cache, NullCache)
        entry = _PYTHON_ENTRIES[dispatcher] = numba.njit(cache=cache, **options)(clone)
    return entry


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


def _prefer_widest_vectors() -> None:
    """Compile for the host CPU without LLVM's preference for 256-bit vectors (AVX-512 CPUs only)."""
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    if os.environ.get("POVSIM_VECTOR_WIDTH", "widest") == "default":
        return
    from llvmlite import binding

    features = binding.get_host_cpu_features().flatten()
    if "+avx512f" not in features.split(","):
        return
    numba.config.CPU_NAME = binding.get_host_cpu_name()
    numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _cache_dir()
_prefer_widest_vectors()
