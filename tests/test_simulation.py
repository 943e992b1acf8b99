"""Stepping a :class:`povsim.Simulation` by hand, as a notebook does: the month as a calendar month,
the metrics of the months so far."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from helpers import cfg

import povsim
from povsim.timeline import CalendarMonth


def test_calendar_month_reads_as_its_month_and_counts_as_its_index():
    m = CalendarMonth.parse("2017-03")
    assert m == 2017 * 12 + 2 and isinstance(m, int)
    assert str(m) == f"{m}" == "2017-03" and repr(m) == "CalendarMonth('2017-03')"
    assert f"{m:>8}" == " 2017-03" and f"{m:d}" == str(2017 * 12 + 2)
    assert (m.year, m.month_of_year) == (2017, 3)
    assert str(m + 10) == "2018-01" and str(m - 3) == "2016-12" and str(1 + m) == "2017-04"
    assert isinstance(m + 1, CalendarMonth) and m - CalendarMonth.parse("2016-03") == 12
    assert pickle.loads(pickle.dumps(m)) == m and repr(pickle.loads(pickle.dumps(m))) == repr(m)
    with pytest.raises(ValueError, match="YYYY-MM"):
        CalendarMonth.parse("2017-13")


def test_stepping_shows_the_calendar_month_and_the_metrics_so_far():
    config = cfg(2_000, {"seed": 5})
    sim = povsim.Simulation(config)
    assert isinstance(sim.month, CalendarMonth) and str(sim.month) == "2012-01"  # one burn-in year before 2013
    assert "next month 2012-01 (burn-in)" in repr(sim) and "2,000 households" in repr(sim)
    empty = sim.metrics
    assert len(empty) == 0 and "exclusion_error" in empty.columns
    while str(sim.month) < "2013-04":
        sim.step()
    assert str(sim.month) == "2013-04"
    so_far = sim.metrics
    assert [f"{t:%Y-%m}" for t in so_far["month"]] == ["2013-01", "2013-02", "2013-03"]
    assert "next month 2013-04" in repr(sim)

    result = sim.run()
    assert sim.done and "finished" in repr(sim) and str(sim.month) == "2016-01"
    pd.testing.assert_frame_equal(sim.metrics, result.metrics, check_exact=True)
    pd.testing.assert_frame_equal(so_far, result.metrics.iloc[:3], check_exact=True)
    # stepping by hand simulates exactly what a run does
    pd.testing.assert_frame_equal(result.metrics, povsim.run(config).metrics, check_exact=True)
