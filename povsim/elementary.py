"""Elementary functions (log, exp, sine and cosine) written out in arithmetic.

This module owns the logarithms, exponentials and trigonometric functions of
the compiled model.  They follow fdlibm (Sun Microsystems, 1993; the algorithms
of glibc's and musl's ``log``, ``exp``, ``__kernel_sin`` and ``__kernel_cos``),
with the same polynomial coefficients, and are accurate to about one unit in
the last place.  Written here, rather than called from the C library, they

* give the same bits on every machine, whatever its C library (``math.exp``
  may differ in the last bit between glibc versions, which would make a
  simulation's trajectory differ between machines);
* are plain arithmetic on float64 and int64, with no branches on the value, so
  LLVM vectorises a loop that calls them (a library call stops vectorisation);
* inline into the month step, so a call does not spill its registers.

Domains are those the model needs, stated per function; outside them the
result is unspecified (no function here raises).  Every function is checked
against Python's ``math`` module in ``tests/test_elementary.py``.
"""

from __future__ import annotations

import math

from . import _jit  # noqa: F401  (sets Numba's cache folder first)

import numba as nb
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["log", "exp", "sincos_2pi"]


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE 754 bits of a float64, as an int64."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx, bits):
    """The float64 whose IEEE 754 bits are the int64 ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


# fdlibm e_log.c
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def log(x):
    """Natural logarithm of a positive, finite, normal float64 (x >= 2.2e-308)."""
    bits = _float_bits(x)
    high = bits >> 32
    k = (high >> 20) - 1023
    mantissa_high = high & 0xFFFFF
    # scale the mantissa m into [sqrt(2)/2, sqrt(2)): x = 2^k * m
    i = (mantissa_high + 0x95F64) & 0x100000
    k += i >> 20
    m = _bits_float(((mantissa_high | (i ^ 0x3FF00000)) << 32) | (bits & 0xFFFFFFFF))
    f = m - 1.0
    s = f / (2.0 + f)
    dk = float(k)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)


# fdlibm e_exp.c
_INV_LN2 = 1.44269504088896338700e00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_EXP_LOWEST = -708.0  #: below this exp gives 0 (true value under 3.3e-308)
_EXP_HIGHEST = 709.782712893384  #: above this exp gives inf (float64 overflow)


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def exp(x):
    """e to the power ``x``, a float64: 0 below -708 (and for -inf), inf above 709.78, NaN for NaN."""
    xc = min(max(x, _EXP_LOWEST), _EXP_HIGHEST)
    kf = math.floor(xc * _INV_LN2 + 0.5)
    hi = xc - kf * _LN2_HI
    lo = kf * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    # y * 2^k as (2y) * 2^(k-1): exact, and 2^(k-1) stays a normal number for every k here
    scale = _bits_float((int(kf) - 1 + 1023) << 52)
    result = (2.0 * y) * scale
    if x < _EXP_LOWEST:
        result = 0.0
    elif x > _EXP_HIGHEST:
        result = math.inf
    elif x != x:
        result = x  # NaN stays NaN
    return result


# fdlibm k_sin.c and k_cos.c
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_TWO_PI = 2.0 * math.pi


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def sincos_2pi(u):
    """``(cos(2 pi u), sin(2 pi u))`` for ``u`` in [0, 1].

    The turn is reduced exactly in ``u`` (to the nearest quarter turn, a
    remainder within 1/8 of a turn), so only that remainder's product with
    2 pi is rounded, and the fdlibm kernels evaluate it on [-pi/4, pi/4].
    """
    q = math.floor(4.0 * u + 0.5)
    x = (u - 0.25 * q) * _TWO_PI
    z = x * x
    sin_r = _S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))
    sin_x = x + (z * x) * (_S1 + z * sin_r)
    cos_r = z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    hz = 0.5 * z
    w = 1.0 - hz
    cos_x = w + (((1.0 - w) - hz) + z * cos_r)
    quadrant = int(q) & 3
    # quarter turns: (cos, sin) -> (-sin, cos); written as selections and signs (exact), no branches
    odd = (quadrant & 1) != 0
    cos_part = sin_x if odd else cos_x
    sin_part = cos_x if odd else sin_x
    return cos_part * (1.0 - float((quadrant + 1) & 2)), sin_part * (1.0 - float(quadrant & 2))
