"""How povsim's compiled functions are declared: what keeps a first compile short.

Every Numba function of the package is cached on disk and builds no C-callable wrapper;
the helpers called with constants are compiled once per argument type, not once per
constant (docs/performance.md, "The first compile").
"""

from __future__ import annotations

import importlib

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
