"""povsim.elementary against Python's math module, and the month's draws computed together against one at a time."""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import pytest

from povsim import elementary, rng
from povsim._jit import python_entry
from povsim.components import allocate, allocate_villages
from povsim.components import income as I
from povsim.components import self_declaration
from povsim.components.schedule import scratch
from povsim.config import load_config, parse_month
from povsim.components import make_params
from povsim.components.support import year_index

SEED = 20261129


@nb.njit(error_model="numpy")
def _elementwise(x, exponential):
    """elementary.exp (``exponential``) or elementary.log of every element, as the engine calls them."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = elementary.exp(x[i]) if exponential else elementary.log(x[i])
    return out


def _log_all(x):
    return _elementwise(x, False)


def _exp_all(x):
    return _elementwise(x, True)


@nb.njit(error_model="numpy")
def _sincos_all(u):
    c = np.empty_like(u)
    s = np.empty_like(u)
    for i in range(u.shape[0]):
        c[i], s[i] = elementary.sincos_2pi(u[i])
    return c, s


def _uniforms(n, index=0):
    return rng.uniforms(SEED, rng.STREAM_SAMPLE, n, index=index).ravel()


def _ulps(got, expected):
    return np.abs(got - expected) / np.spacing(np.abs(expected))


def test_log_within_one_ulp_of_math_log():
    u = _uniforms(50_000)
    x = np.concatenate([
        u,  # the Box-Muller radius's arguments
        np.exp((u - 0.5) * 1400.0),  # 1e-304 .. 1e304
        1.0 + (u - 0.5) * 1e-6,  # next to 1, where log is smallest
        np.array([1.0, 2.0, 0.5, 2.0**-33, np.nextafter(1.0, 0.0), 1e308, 2.3e-308]),
    ])
    expected = np.array([math.log(v) for v in x])
    got = _log_all(x)
    ulps = _ulps(got[expected != 0.0], expected[expected != 0.0])
    assert ulps.max() <= 1.0
    assert _log_all(np.array([1.0]))[0] == 0.0


def test_exp_within_one_ulp_of_math_exp_and_its_limits():
    u = _uniforms(50_000)
    x = np.concatenate([(u - 0.5) * 1400.0, (u - 0.5) * 40.0, (u - 0.5) * 1e-8, np.array([0.0, 1.0, -1.0, 709.0])])
    x = x[(x >= -708.0) & (x <= 709.7)]
    expected = np.array([math.exp(v) for v in x])
    assert _ulps(_exp_all(x), expected).max() <= 1.0
    limits = _exp_all(np.array([-np.inf, -800.0, -708.5, 709.8, 1000.0, np.inf]))
    assert list(limits) == [0.0, 0.0, 0.0, np.inf, np.inf, np.inf]
    assert np.isnan(_exp_all(np.array([np.nan]))[0])


def test_sincos_of_a_turn_against_math_and_its_identities():
    u = np.concatenate([_uniforms(50_000), np.array([0.0, 0.125, 0.25, 0.5, 0.75, 1.0])])
    c, s = _sincos_all(u)
    theta = 2.0 * math.pi * u
    # math's argument 2 pi u is itself rounded (about 1e-16 x 2 pi): compare in absolute terms
    assert np.abs(c - np.array([math.cos(t) for t in theta])).max() < 1e-15
    assert np.abs(s - np.array([math.sin(t) for t in theta])).max() < 1e-15
    assert np.abs(c * c + s * s - 1.0).max() < 4e-16
    # whole quarter turns are exact: u = 0, 1/4, 1/2, 3/4, 1
    assert [c[-6], c[-4], c[-3], c[-2], c[-1]] == [1.0, 0.0, -1.0, 0.0, 1.0]
    assert [s[-6], s[-4], s[-3], s[-2], s[-1]] == [0.0, 1.0, 0.0, -1.0, 0.0]


@pytest.mark.parametrize("label", ["2012-06", "2015-03", "2016-01"])
def test_month_draws_equal_draws_made_one_household_at_a_time(label):
    """The vectorised loops of the month's draws (income.draw, self_declaration.draw) give the very bits
    of draw4 and box_muller per household.

    Before self-declaration starts (2013-01 here) the channels' rows are not drawn at all.  In January
    the annual normal is drawn (draw index 2) and stored in ``annual_z``; in other months it is kept.
    """
    p = make_params(load_config(None, overrides={"policy.channels.self.start": "2013-01"}))
    month = parse_month(label)
    k0, k1 = rng.split_seed(SEED)
    n, first = 257, 1_000_003
    vs, s = _one_village(n, first)
    s.draws[:] = np.nan
    hh = allocate(n)
    hh.annual_z[:] = 7
    python_entry(I.draw)(hh, vs, 0, first, month, 0.0, p, k0, k1, 0, s)
    python_entry(self_declaration.draw)(hh, vs, 0, first, month, 0.0, p, k0, k1, 0, s)
    if month % 12 == 0:
        annual = [I.to_annual_z(rng.box_muller(*rng.draw4(k0, k1, rng.STREAM_SHOCKS, first + j, month, 2)[:2])[0])
                  for j in range(n)]
        assert np.array_equal(hh.annual_z, np.array(annual, np.int16))
        assert np.abs(hh.annual_z).max() > 4096  # in 1/4096 SD
    else:
        assert (hh.annual_z == 7).all()
    draws = s.draws
    one = _one_at_a_time(k0, k1, first, n, month)
    rows = [I.DRAW_INCOME, I.DRAW_INCOME + 1, I.DRAW_SHOCKS, I.DRAW_SHOCKS + 1,
            I.DRAW_CHANNELS, I.DRAW_CHANNELS + 1, I.DRAW_CHANNELS + 2, I.DRAW_CHANNELS + 3]
    channels_on = month >= parse_month("2013-01")
    assert np.array_equal(draws[rows[:4]], one[:4])
    if channels_on:
        assert np.array_equal(draws[rows[4:]], one[4:])
    else:
        assert np.isnan(draws[rows[4:]]).all()


def _one_village(n, first_id):
    """One village of ``n`` households whose first household has the global id ``first_id``, and its scratch."""
    return allocate_villages(np.array([0, n]), np.array([0]), np.array([first_id])), scratch(n)


@nb.njit(error_model="numpy")
def _one_at_a_time(k0, k1, first, n, month):
    out = np.empty((8, n))
    for j in range(n):
        a, b, c, d = rng.draw4(k0, k1, rng.STREAM_SHOCKS, first + j, month, 0)
        z0, z1 = rng.box_muller(a, b)  # (the bill's normal is household_month's, for the ill only)
        w0, w1, w2, w3 = rng.draw4(k0, k1, rng.STREAM_CHANNELS, first + j, month, 0)
        for row, value in enumerate((z0, z1, c, d, w0, w1, w2, w3)):
            out[row, j] = value
    return out


def test_month_income_bills_only_the_ill_and_equals_the_formula_household_by_household():
    """income.household_month makes the medical bill's normal for the households ill this month only (gathered,
    computed in a vectorised loop, put back): each ill household's bill is, bit for bit, the formula
    applied to its own two uniforms, and the others' medical spending is exactly 0."""
    from povsim.population import build_population

    cfg = load_config(None, overrides={"population.households": 600, "seed": SEED})
    p = make_params(cfg)
    hh = build_population(cfg).households
    hh.illness[::3] = 2  # a third chronically ill before the month (a new population has nobody ill)
    k0, k1 = rng.split_seed(SEED)
    n, month = 600, parse_month("2014-03")
    vs, s = _one_village(n, 0)
    draws = s.draws
    draws[:] = np.nan
    acc = np.zeros(1, np.int64)
    python_entry(I.draw)(hh, vs, 0, 0, month, 0.0, p, k0, k1, acc, s)
    u_bill = np.array([rng.draw4(k0, k1, rng.STREAM_SHOCKS, j, month, 1)[:2] for j in range(n)]).T  # draw index 1
    medical_before = hh.medical_12m.astype(np.float64) * (11.0 / 12.0)
    python_entry(I.household_month)(hh, vs, 0, 0, month, 0.0, p, k0, k1, acc, s)
    ill = draws[I.DRAW_ILLNESS] != 0
    assert 20 < ill.sum() < n - 20  # both kinds present
    reimbursement = np.where(draws[I.DRAW_SUPPORTED] != 0, p.support.reimbursement[year_index(p.support, month)],
                             p.illness.reimbursement)
    for j in range(n):  # (DRAW_MEDICAL now holds the 12 months' spending: last months' decayed plus this month's)
        if ill[j]:
            z, _ = rng.box_muller(u_bill[0, j], u_bill[1, j])
            bill = elementary.exp(p.illness.bill_log_median + p.illness.bill_sd * z)
            assert draws[I.DRAW_BILL, j] == bill
            assert draws[I.DRAW_MEDICAL, j] == medical_before[j] + bill * (1.0 - reimbursement[j])
        else:
            assert draws[I.DRAW_MEDICAL, j] == medical_before[j]
