"""Monitoring after 2020 (:mod:`povsim.components.monitoring`): identification within the deadline,
support of monitored households, risk eliminated only at annual checks and only above the range,
nothing changed when disabled, Mesa equal to the engine, and fewer returns to poverty left
unprotected among exited households.

Runs: the default China timeline extended to 2025 (lines after 2020 at 2 % a year), one burn-in
year, 2,000 to 20,000 households.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import full_cfg
from test_mesa import Lockstep

import povsim
from povsim.components import make_params
from povsim import metrics as M
from povsim.components import support
from povsim.components.base import FLAG_MONITORED, FLAG_POOR, FLAG_REGISTERED, NEVER
from povsim.schema import parse_month

HOUSEHOLDS = 2_000
TO_2025 = {
    "simulation.end": "2025-12",
    **{f"poverty.lines.{year}": round(4000.0 * 1.02 ** (year - 2020)) for year in range(2021, 2026)},
}
ON = {**TO_2025, "policy.monitoring.enabled": True}
START = parse_month("2021-01")
MONITORING_COLUMNS = [name for name, info in M.COLUMN_INFO.items() if info.component == "monitoring"]


def _cfg(households=HOUSEHOLDS, overrides=None):
    return full_cfg(households, {**ON, **(overrides or {})})


def _run(cfg):
    sim = povsim.Simulation(cfg)
    result = sim.run()
    totals = np.array([sim.totals[m] for m in sorted(sim.totals)])
    return sim, result, totals


@pytest.fixture(scope="module")
def on_run():
    return _run(_cfg())


def test_monitoring_acts_and_no_one_is_newly_registered(on_run):
    _, result, _ = on_run
    m = result.metrics
    after = m[m["month"] >= pd.Timestamp("2021-01-01")]
    assert after["monitored"].max() > 50
    assert after["monitoring_entered_total"].sum() > 0 and after["risk_eliminated"].sum() > 0
    for route in M.ROUTES:  # after 2020 no new registered poor, by any route
        assert after[f"entered_{route}"].sum() == 0, route
    assert (after["registered"].diff().dropna() <= 0).all()  # the register only shrinks
    assert (m.loc[m["month"] < pd.Timestamp("2021-01-01"), MONITORING_COLUMNS[:5]] == 0).all().all()
    # the three groups: exited households among the monitored, and entries by every channel
    assert after["monitored_exited"].max() > 0
    for channel in ("self", "cadre", "data"):
        assert after[f"monitoring_entered_{channel}"].sum() > 0, channel
    assert "monitoring" in list(result.events["event"])


@pytest.mark.parametrize("deadline, delay, expected", [(0, 1, 0), (1, 1, 1), (1, 3, 1), (4, 2, 2)])
def test_identification_never_exceeds_the_deadline(deadline, delay, expected):
    """Every verification while monitoring runs comes min(delay, deadline) months after the flag reached the office."""
    _, _, totals = _run(_cfg(overrides={"policy.monitoring.deadline_months": deadline,
                                        "policy.verification.delay": delay}))
    hist = M.binned(totals, "identification_delay").to_numpy()[0]
    assert hist.sum() > 20
    assert hist[deadline + 1:].sum() == 0  # nothing beyond the deadline
    assert hist[expected] == hist.sum()  # and each at the verification's wait


def test_monitored_households_are_supported():
    no_exit = np.int16(NEVER)
    ps = make_params(_cfg()).support
    month = parse_month("2022-01")
    assert support.is_supported(np.uint8(FLAG_MONITORED), no_exit, month, ps)
    assert support.is_supported(np.uint8(FLAG_REGISTERED), no_exit, month, ps)
    assert not support.is_supported(np.uint8(0), no_exit, month, ps)
    # With no support after exit, the households supported in a month are exactly those registered or
    # monitored at the end of the month before (the two never overlap).
    _, result, _ = _run(_cfg(overrides={"policy.support.keep_after_exit": False,
                                        "policy.support.transition_months": 0}))
    m = result.metrics.reset_index(drop=True)
    rows = m.index[m["month"] >= pd.Timestamp("2021-02-01")]
    assert m.loc[rows - 1, "monitored"].sum() > 100
    np.testing.assert_array_equal(
        m.loc[rows, "supported"].to_numpy(), (m.loc[rows - 1, "registered"] + m.loc[rows - 1, "monitored"]).to_numpy()
    )


def test_risk_is_eliminated_only_at_annual_checks_and_only_above_the_range():
    """With an exact check (SD 0): a household leaves monitoring only in a review month on or after the start,
    with its 12-month income at or above the range and its medical spending below the trigger; every monitored
    household checked then that is still at risk stays."""
    cfg = _cfg(overrides={"policy.review.assessment_sd": 0.0})
    sim = povsim.Simulation(cfg)
    pm = cfg.policy.monitoring
    first_review = parse_month(cfg.policy.review.first)
    left_total = checked_months = 0
    while not sim.done:
        month = sim.month
        hh = sim.population.households
        before = (hh.flags & FLAG_MONITORED) != 0
        sim.step()
        after = (hh.flags & FLAG_MONITORED) != 0
        left = before & ~after
        check = month >= START and (month - first_review) % 12 == 0
        if not check:
            assert not left.any(), sim.timeline.label(month)
            continue
        checked_months += 1
        line = sim.timeline.line(month)
        income = hh.net_income.sum(axis=1, dtype=np.int64).astype(np.float64)  # what the check saw
        trigger = (hh.medical_12m > 0) & (hh.medical_12m > pm.spending_multiple * np.maximum(income, 0) * hh.size)
        at_risk = (income < pm.income_range * line) | trigger
        assert not (left & at_risk).any()
        assert not (before & after & ~at_risk).any()  # checked out of risk means leaving
        left_total += int(left.sum())
    assert checked_months == 5 and left_total > 20


def test_disabled_monitoring_changes_nothing():
    """Disabled, whatever its other keys, monitoring leaves every result as a run without its keys; its
    counts stay zero, and counting the exited stocks (report_exited) changes nothing else."""
    plain = povsim.run(full_cfg(HOUSEHOLDS, TO_2025))
    keys = {"policy.monitoring.income_range": 1.2, "policy.monitoring.deadline_months": 3,
            "policy.monitoring.spending_multiple": 0.2, "policy.monitoring.start": "2022-01"}
    disabled = povsim.run(full_cfg(HOUSEHOLDS, {**TO_2025, **keys}))
    pd.testing.assert_frame_equal(disabled.metrics, plain.metrics, check_exact=True)
    pd.testing.assert_frame_equal(disabled.events, plain.events, check_exact=True)
    assert (plain.metrics[[c for c in MONITORING_COLUMNS if c != "exited_poor_share"]] == 0).all().all()
    reported = povsim.run(full_cfg(HOUSEHOLDS, {**TO_2025, "policy.monitoring.report_exited": True}))
    others = [c for c in M.COLUMNS if c not in MONITORING_COLUMNS]
    pd.testing.assert_frame_equal(reported.metrics[others], plain.metrics[others], check_exact=True)
    assert reported.metrics["exited_ever"].iloc[-1] > 0 and reported.metrics["monitored"].sum() == 0
    # the monitoring run is a different run (the comparison above is not between constants)
    on = povsim.run(_cfg())
    assert not on.metrics["registered"].equals(plain.metrics["registered"])


def test_engine_equals_mesa_with_monitoring_on():
    pair = Lockstep(_cfg(overrides={"policy.channels.hotline.call_probability": 0.05}))
    pair.assert_identical_results()
    m = pair.result.metrics
    assert m["monitoring_entered_total"].sum() > 0 and m["risk_eliminated"].sum() > 0
    assert m["monitoring_entered_hotline"].sum() > 0


def test_monitoring_protects_exited_households_that_return_to_poverty():
    """Same seed, monitoring on against off (exited stocks counted): over 2021-2025 no more exited households
    are truly poor, far fewer of those are left neither registered nor monitored, and fewer people are poor."""
    # a transfer of 40 yuan a month throughout: the schedule's 2019 step, kept to 2025 by the transition
    # period, would leave almost no exited household poor for monitoring to protect
    low = {"policy.support.transfer": 40.0}
    on = povsim.run(_cfg(20_000, low)).metrics
    off = povsim.run(full_cfg(20_000, {**TO_2025, **low, "policy.monitoring.report_exited": True})).metrics
    window = on["month"] >= pd.Timestamp("2021-12-01")
    assert off.loc[window, "exited_poor"].mean() > 10
    # exited households keep their support through the transition period either way (policy.support), so
    # monitoring protects them (registered or monitored) rather than lifting them: no more of them poor
    assert on.loc[window, "exited_poor"].mean() <= off.loc[window, "exited_poor"].mean()
    assert on.loc[window, "exited_poor_unprotected"].mean() < 0.5 * off.loc[window, "exited_poor_unprotected"].mean()
    assert on.loc[window, "poor"].mean() < off.loc[window, "poor"].mean()


def test_exited_stocks_match_the_households_state(on_run):
    sim, result, _ = on_run
    hh = sim.population.households
    last = result.metrics.iloc[-1]
    exited = hh.exit_month != NEVER
    monitored = (hh.flags & FLAG_MONITORED) != 0
    poor = (hh.flags & FLAG_POOR) != 0
    assert last["monitored"] == monitored.sum() and last["monitored_people"] == hh.size[monitored].sum()
    assert last["exited_ever"] == exited.sum() and last["exited_poor"] == (exited & poor).sum()
    assert last["monitored_exited"] == (monitored & exited).sum()
