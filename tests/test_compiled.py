"""How povsim's compiled functions are declared: what keeps a first compile short.

Every Numba function of the package is cached on disk and builds no C-callable wrapper;
the helpers called with constants are compiled once per argument type, not once per
constant; the hooks only compiled code calls build no Python entry point, and the Mesa
model's own compilation of them is cached apart (docs/performance.md, "The first compile").
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numba as nb
import numpy as np
import pytest
from numba.core import caching, types
from numba.core.registry import CPUDispatcher

from povsim import _jit, rng
from povsim.components import monitoring, registration, verification


def _dispatchers():
    found = {}
    for rel in _jit.compiled_sources():
        name = "povsim." + rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                found[f"{name}.{attr}"] = obj
    return found


def test_every_compiled_function_is_cached_and_has_no_cfunc_wrapper():
    found = _dispatchers()
    assert len(found) > 80  # the model's kernels, hooks and helpers were all found
    uncached = [n for n, d in found.items() if isinstance(d._cache, caching.NullCache)]
    wrapped = [n for n, d in found.items() if not d.targetoptions.get("no_cfunc_wrapper")]
    assert uncached == [] and wrapped == []


@nb.njit(cache=False)
def _plain(x, y):
    return x + y


@nb.njit(cache=False)
def _caller(k0, k1, out):
    a, _, _, _ = rng.draw4(k0, k1, rng.STREAM_SHOCKS, 7, 0, 1)
    b, _, _, _ = rng.draw4(k0, k1, rng.STREAM_REVIEW, 7, 3, 2)
    rng.fill_uniforms(k0, k1, rng.STREAM_CADRE, 0, out.shape[1], 5, 0, out, 0)
    return a + b + _plain(1, 2) + _plain(1, 3)


def _literal(signatures):
    return [s for s in signatures if any(isinstance(t, types.Literal) for t in s)]


def test_helpers_called_with_constants_compile_once_per_type():
    out = np.empty((4, 3))
    _caller(np.int64(1), np.int64(2), out)
    assert len(_literal(_plain.signatures)) == 2  # what Numba does by default: one compile per constant
    for helper in (rng.draw4, rng.fill_uniforms):
        assert helper.signatures and _literal(helper.signatures) == []
    # the same numbers as the calls from Python
    u = rng.uniforms((2 << 32) | 1, rng.STREAM_CADRE, 3, month=5, index=0)
    np.testing.assert_array_equal(out, u.T)


@pytest.mark.parametrize("helper", [rng._philox_words, rng.draw4, rng.fill_uniforms, registration.register,
                                    verification.flag, monitoring.enter])
def test_the_helpers_called_with_constants_are_marked(helper):
    assert helper.get_call_template.__qualname__ == "compile_per_type.<locals>.get_call_template"


def test_the_schedules_hooks_build_no_python_entry_point():
    """Only the engine's compiled month calls them: a run without the Mesa model builds no entry point for them."""
    from povsim.components import schedule as S

    hooks = [getattr(importlib.import_module(f"povsim.components.{_module(step.component)}"), step.hook)
             for step in S.SCHEDULE] + [S.household_update, S.household_events, S.village_month]
    assert [h.py_func.__qualname__ for h in hooks if not h.targetoptions.get("no_cpython_wrapper")] == []


def _module(component):
    from povsim import components as C

    return next(m for m in C.MODULES if importlib.import_module(f"povsim.components.{m}").COMPONENT.name == component)


MODULE = '''
import numba as nb

@nb.njit(cache=True, no_cfunc_wrapper=True, no_cpython_wrapper=True, error_model="numpy")
def hook(x):
    return 2 * x + 1

@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def month(x):
    return hook(x) + 10
'''

CALLER = '''
import sys
sys.path.insert(0, sys.argv[1])
from povsim._jit import python_entry
import hooks
entry = python_entry(hooks.hook)
print(hooks.month(3), entry(3), entry is python_entry(hooks.hook), python_entry(hooks.month) is hooks.month,
      entry.targetoptions.get("no_cpython_wrapper", False), entry.targetoptions["error_model"])
'''


def test_python_entry_is_the_same_function_callable_from_python_and_cached_apart(tmp_path):
    """Compiled in one process and loaded from the cache in the next, the engine's version (no entry point) and
    Python's each find their own machine code: under one cache name each would load the other's."""
    (tmp_path / "hooks.py").write_text(MODULE)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    for _ in range(2):  # compile and cache; then load both from the cache
        out = subprocess.run([sys.executable, "-c", CALLER, str(tmp_path)], env=env, capture_output=True, text=True,
                             timeout=300, check=True)
        assert out.stdout.split() == ["17", "7", "True", "True", "False", "numpy"]
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.nbi"))
    assert names == ["hooks.hook", "hooks.hook__python", "hooks.month"]
