"""Philox4x32-10 against Random123's known answers, and the uniforms/normals built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from povsim import rng

SEED = 20140401
N = 50_000  # households per call: 4 values each, 200,000 values


# --- Philox4x32-10: Random123 known-answer vectors (kat_vectors, philox4x32_10) -----------------
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT, ids=["zeros", "ones", "pi"])
def test_philox_known_answers(counter, key, expected):
    out = rng.philox4x32_10(counter, key)
    assert out.dtype == np.uint32
    assert [int(w) for w in out] == list(expected)


@pytest.mark.parametrize("counter, key, expected", KAT, ids=["zeros", "ones", "pi"])
def test_philox_known_answers_from_uint32_arrays(counter, key, expected):
    out = rng.philox4x32_10(np.array(counter, np.uint32), np.array(key, np.uint32))
    assert [int(w) for w in out] == list(expected)


def test_uniforms_follow_the_documented_counter_layout():
    """counter = (household, month, stream, index), key = (seed low word, seed high word)."""
    seed = 0x1234_5678_9ABC_DEF0
    stream, month, index = rng.STREAM_SHOCKS, 24177, 1
    u = rng.uniforms(seed, stream, 5, month=month, index=index)
    for hh in range(5):
        words = rng.philox4x32_10((hh, month, stream, index), (seed & 0xFFFFFFFF, seed >> 32))
        expected = (words.astype(np.float64) + 0.5) * 2.0**-32
        np.testing.assert_array_equal(u[hh], expected)


def test_normals_are_box_muller_of_the_uniforms():
    u = rng.uniforms(SEED, rng.STREAM_SHOCKS, 1000, month=5, index=2)
    z = rng.normals(SEED, rng.STREAM_SHOCKS, 1000, month=5, index=2)
    r01 = np.sqrt(-2.0 * np.log(u[:, 0]))
    r23 = np.sqrt(-2.0 * np.log(u[:, 2]))
    np.testing.assert_allclose(z[:, 0], r01 * np.cos(2 * math.pi * u[:, 1]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z[:, 1], r01 * np.sin(2 * math.pi * u[:, 1]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z[:, 2], r23 * np.cos(2 * math.pi * u[:, 3]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z[:, 3], r23 * np.sin(2 * math.pi * u[:, 3]), rtol=1e-12, atol=1e-12)


# --- distributions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def u():
    return rng.uniforms(SEED, rng.STREAM_SHOCKS, N, month=24177, index=0)


@pytest.fixture(scope="module")
def z():
    return rng.normals(SEED, rng.STREAM_SHOCKS, N, month=24177, index=1)


def test_uniforms_shape_dtype_and_open_interval(u):
    assert u.shape == (N, 4)
    assert u.dtype == np.float64
    assert np.all(u > 0.0) and np.all(u < 1.0)


def test_uniform_extremes_stay_inside_open_interval():
    assert 0.0 < rng.uniform(np.uint32(0)) < 1.0
    assert 0.0 < rng.uniform(np.uint32(0xFFFFFFFF)) < 1.0


def test_uniforms_ks_against_u01(u):
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("column", range(4))
def test_each_uniform_word_is_u01(u, column):
    assert stats.kstest(u[:, column], "uniform").pvalue > 1e-3


def test_normals_ks_against_standard_normal(z):
    assert z.shape == (N, 4)
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.var() - 1.0) < 4 * math.sqrt(2 / z.size)


def _assert_uncorrelated(a, b):
    a, b = np.ravel(a), np.ravel(b)
    assert a.shape == b.shape
    corr = np.corrcoef(a, b)[0, 1]
    assert abs(corr) < 4 / math.sqrt(a.size), corr


def test_words_within_one_call_are_uncorrelated(u, z):
    for i in range(4):
        for j in range(i + 1, 4):
            _assert_uncorrelated(u[:, i], u[:, j])
            _assert_uncorrelated(z[:, i], z[:, j])


@pytest.mark.parametrize("draw", [rng.uniforms, rng.normals], ids=["uniforms", "normals"])
def test_streams_months_and_indices_are_uncorrelated(draw):
    base = draw(SEED, rng.STREAM_SHOCKS, N, month=24177, index=0)
    _assert_uncorrelated(base, draw(SEED, rng.STREAM_ASSESSMENT, N, month=24177, index=0))
    _assert_uncorrelated(base, draw(SEED, rng.STREAM_SHOCKS, N, month=24178, index=0))
    _assert_uncorrelated(base, draw(SEED, rng.STREAM_SHOCKS, N, month=24177, index=1))
    _assert_uncorrelated(base, draw(SEED + 1, rng.STREAM_SHOCKS, N, month=24177, index=0))


def test_neighbouring_households_are_uncorrelated(u):
    _assert_uncorrelated(u[:-1], u[1:])


# --- determinism and purity ------------------------------------------------------------------


@pytest.mark.parametrize("draw", [rng.uniforms, rng.normals], ids=["uniforms", "normals"])
def test_same_arguments_same_numbers(draw):
    a = draw(SEED, rng.STREAM_POPULATION, 1000, month=3, index=2)
    b = draw(SEED, rng.STREAM_POPULATION, 1000, month=3, index=2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("draw", [rng.uniforms, rng.normals], ids=["uniforms", "normals"])
def test_every_argument_changes_the_numbers(draw):
    base = draw(SEED, rng.STREAM_SHOCKS, 100, month=3, index=2)
    variants = [
        draw(SEED + 1, rng.STREAM_SHOCKS, 100, month=3, index=2),
        draw(SEED + 2**32, rng.STREAM_SHOCKS, 100, month=3, index=2),  # high key word only
        draw(SEED, rng.STREAM_ASSESSMENT, 100, month=3, index=2),
        draw(SEED, rng.STREAM_SHOCKS, 100, month=4, index=2),
        draw(SEED, rng.STREAM_SHOCKS, 100, month=3, index=3),
    ]
    for other in variants:
        # independent draws: essentially no value is shared
        assert np.mean(base == other) < 0.01


def test_household_draws_do_not_depend_on_how_many_are_drawn():
    big = rng.uniforms(SEED, rng.STREAM_SHOCKS, 1000, month=7, index=1)
    small = rng.uniforms(SEED, rng.STREAM_SHOCKS, 10, month=7, index=1)
    np.testing.assert_array_equal(big[:10], small)
    np.testing.assert_array_equal(
        rng.normals(SEED, rng.STREAM_SHOCKS, 1000, month=7, index=1)[:10],
        rng.normals(SEED, rng.STREAM_SHOCKS, 10, month=7, index=1),
    )


def test_stream_constants_are_distinct_and_fixed():
    # changing a stream number silently moves every saved baseline
    assert (rng.STREAM_POPULATION, rng.STREAM_COUNTY, rng.STREAM_SHOCKS, rng.STREAM_ASSESSMENT) == (1, 2, 3, 4)


@pytest.mark.parametrize("seed, words", [(0, (0, 0)), (2**32 + 5, (5, 1)), (2**64 - 1, (2**32 - 1, 2**32 - 1))])
def test_split_seed(seed, words):
    assert rng.split_seed(seed) == words


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_split_seed_rejects_out_of_range(seed):
    with pytest.raises(ValueError, match="seed"):
        rng.split_seed(seed)
