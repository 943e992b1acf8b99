"""Counter-based random numbers: Philox4x32-10, uniforms and normals.

This module owns every random number povsim draws.  There is no generator
state and no global seed: each number is a pure function of

    (seed, stream, household id, month, draw index)

so a household meets the same shocks whatever the number of threads, the way
the population is split across workers, or the policy scenario being run
(common random numbers).

Layout of one Philox call
-------------------------
* key     = (seed & 0xffffffff, seed >> 32)                 -- a 64-bit seed
* counter = (household id, month index, stream, draw index)  -- four 32-bit words

Each call returns four 32-bit words; :func:`uniform` turns one word into a
float in (0, 1) and :func:`box_muller` turns two uniforms into two standard
normals.  The implementation follows Salmon et al. (2011), "Parallel random
numbers: as easy as 1, 2, 3" (SC'11), and is checked against Random123's
known-answer vectors in ``tests/test_rng.py``.

Streams are fixed integer constants (never Python's ``hash()``).  Each is declared
by the component that owns it (:data:`povsim.components.STREAMS`, with the table of
every draw, :data:`povsim.components.DRAWS`); the constants below repeat the model's
numbers for scripts and tests, and a test checks that they agree.  A new kind of
random quantity gets a new stream number; existing numbers never change meaning,
or every saved baseline would move.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _jit  # (first: sets Numba's cache folder before any function is compiled)
from . import elementary

__all__ = [
    "STREAM_POPULATION",
    "STREAM_COUNTY",
    "STREAM_SHOCKS",
    "STREAM_ASSESSMENT",
    "STREAM_CHANNELS",
    "STREAM_CADRE",
    "STREAM_VERIFY",
    "STREAM_REVIEW",
    "STREAM_QUOTA",
    "STREAM_SAMPLE",
    "STREAM_OFFICE",
    "philox4x32_10",
    "uniform",
    "box_muller",
    "draw4",
    "fill_uniforms",
    "uniforms",
    "normals",
    "split_seed",
]

# --- the model's streams (declared by its components; see povsim.components.STREAMS) ---
STREAM_POPULATION = 1  #: household size, labour, income deviation, initial state
STREAM_COUNTY = 2  #: county and province income effects (id = county index)
STREAM_SHOCKS = 3  #: monthly income, illness and job-loss draws
STREAM_ASSESSMENT = 4  #: errors of the one-time registration's assessment or community ranking
STREAM_CHANNELS = 5  #: self-declaration, hotline calls, and households' own perception
STREAM_CADRE = 6  #: cadres' perception of households' incomes
STREAM_VERIFY = 7  #: errors of the verification means test
STREAM_REVIEW = 8  #: look-back and annual review assessments; look-back month of a village
STREAM_QUOTA = 9  #: county and village estimates behind the registration quotas (id = county / village)
STREAM_SAMPLE = 10  #: household samples of validation surveys (povsim.validate)
STREAM_OFFICE = 13  #: the household's persistent assessment component, exclusion evidence and housing (drawn once)

# --- Philox4x32-10 constants (Random123) ----------------------------------------------
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_TWO_POW_M32 = 2.0**-32


@_jit.compile_per_type
@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True)
def _philox_words(c0, c1, c2, c3, k0, k1):
    """Ten rounds of Philox4x32 on four uint32 counter words and two key words."""
    c0 = np.uint32(c0)
    c1 = np.uint32(c1)
    c2 = np.uint32(c2)
    c3 = np.uint32(c3)
    k0 = np.uint32(k0)
    k1 = np.uint32(k1)
    for _ in range(10):
        p0 = _M0 * np.uint64(c0)
        p1 = _M1 * np.uint64(c2)
        hi0 = np.uint32(p0 >> _SHIFT32)
        lo0 = np.uint32(p0 & _MASK32)
        hi1 = np.uint32(p1 >> _SHIFT32)
        lo1 = np.uint32(p1 & _MASK32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = np.uint32(k0 + _W0)
        k1 = np.uint32(k1 + _W1)
    return c0, c1, c2, c3


@nb.njit(cache=True, no_cfunc_wrapper=True)
def philox4x32_10(counter, key):
    """Philox4x32-10 of a 4-word counter and a 2-word key; returns 4 uint32 words.

    ``counter`` and ``key`` are sequences (tuples or arrays) of unsigned 32-bit
    integers.  ``philox4x32_10((0, 0, 0, 0), (0, 0))`` gives
    ``(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)``.
    """
    r0, r1, r2, r3 = _philox_words(counter[0], counter[1], counter[2], counter[3], key[0], key[1])
    out = np.empty(4, dtype=np.uint32)
    out[0] = r0
    out[1] = r1
    out[2] = r2
    out[3] = r3
    return out


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True)
def uniform(word):
    """A uint32 word as a float64 uniform on the open interval (0, 1)."""
    return (np.float64(word) + 0.5) * _TWO_POW_M32


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def box_muller_radius(u1):
    """The radius of :func:`box_muller`: both its normals are at most this in absolute value."""
    return math.sqrt(-2.0 * elementary.log(u1))


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def box_muller(u1, u2):
    """Two uniforms on (0, 1) as two independent standard normals.

    ``sqrt(-2 log u1) x (cos 2 pi u2, sin 2 pi u2)``, with the logarithm and the
    turn's cosine and sine of :mod:`povsim.elementary` (the same bits on every
    machine; a loop of them vectorises).
    """
    r = box_muller_radius(u1)
    c, s = elementary.sincos_2pi(u2)
    return r * c, r * s


@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def box_muller_first(r, u2):
    """The first normal of :func:`box_muller` from its radius ``r`` (bit for bit the same)."""
    c, _ = elementary.sincos_2pi(u2)
    return r * c


@_jit.compile_per_type
@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True)
def draw4(k0, k1, stream, household, month, index):
    """Four uniforms on (0, 1) for one (seed, stream, household, month, draw index)."""
    w0, w1, w2, w3 = _philox_words(household, month, stream, index, k0, k1)
    return uniform(w0), uniform(w1), uniform(w2), uniform(w3)


@_jit.compile_per_type
@nb.njit(cache=True, no_cfunc_wrapper=True, forceinline=True, error_model="numpy")
def fill_uniforms(k0, k1, stream, first_household, n, month, index, out, row):
    """:func:`draw4` for households ``first_household .. first_household + n - 1`` at once.

    The four uniforms of household ``first_household + j`` go to
    ``out[row:row + 4, j]``.  The same numbers as ``n`` calls of :func:`draw4`,
    but computed in one plain loop over households, which LLVM vectorises
    (several households' Philox rounds per instruction): the engine draws a
    village's month this way.
    """
    for j in range(n):
        w0, w1, w2, w3 = _philox_words(first_household + j, month, stream, index, k0, k1)
        out[row, j] = uniform(w0)
        out[row + 1, j] = uniform(w1)
        out[row + 2, j] = uniform(w2)
        out[row + 3, j] = uniform(w3)


def split_seed(seed: int) -> tuple[int, int]:
    """A seed in [0, 2**64) as the two 32-bit Philox key words."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    return seed & 0xFFFFFFFF, seed >> 32


@nb.njit(cache=True, no_cfunc_wrapper=True, error_model="numpy")
def _draws_kernel(k0, k1, stream, n, month, index, as_normal):
    out = np.empty((n, 4), dtype=np.float64)
    for i in range(n):
        a, b, c, d = draw4(k0, k1, stream, i, month, index)
        if as_normal:
            a, b = box_muller(a, b)
            c, d = box_muller(c, d)
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = c
        out[i, 3] = d
    return out


def uniforms(seed: int, stream: int, households: int, month: int = 0, index: int = 0) -> np.ndarray:
    """Uniforms on (0, 1) for households ``0..households-1``: an array of shape (households, 4).

    A convenience for tests and notebooks; the engine draws inside its compiled loop.
    """
    k0, k1 = split_seed(seed)
    return _draws_kernel(k0, k1, stream, int(households), month, index, False)


def normals(seed: int, stream: int, households: int, month: int = 0, index: int = 0) -> np.ndarray:
    """Standard normals, :func:`box_muller` on :func:`uniforms`: an array of shape (households, 4)."""
    k0, k1 = split_seed(seed)
    return _draws_kernel(k0, k1, stream, int(households), month, index, True)
