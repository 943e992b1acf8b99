"""An experiment's figures and report.html, as a policy analyst reads them.

The figures (``headcount_rate.png`` and the others, a run's ``errors.png``): axes scaled to
the data, titles in words, the policy events marked, a caption naming the experiment,
households, replicates and povsim version, one style per scenario, nothing outside the
figure.  The report: what each scenario changes and what a replicate is, tables that fit
the page with 16 scenarios, no interval promised that is not shown, readable by others;
and, in headless Chromium, every figure loads and no table is wider than the page.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from browser import chrome, keep_screenshot
from figure_checks import assert_inside_figure, assert_lines_run_forward, drawn_lines
from helpers import REPO

import povsim
from povsim import figures as F
from povsim.experiments import FIGURE_DPI, TIME_FIGURES, Experiment
from povsim.plots import plot_sweep, policy_events

CHANNELS = REPO / "experiments" / "channels.toml"  # 16 scenarios
SMALL = {"population.households": 200, "simulation.burn_in_years": 1}


def _experiment(replicates: int) -> Experiment:
    return Experiment.from_file(CHANNELS, overrides={**SMALL, "replicates": replicates})


@pytest.fixture(scope="module")
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory, umask_022):
    """channels.toml (16 scenarios) at 200 households, 2 replicates, saved under umask 022."""
    outcome = _experiment(2).run()
    out = tmp_path_factory.mktemp("report") / "channels"
    outcome.save(out)
    return outcome, out


@pytest.fixture(scope="module")
def single_replicate(tmp_path_factory):
    outcome = _experiment(1).run()
    out = tmp_path_factory.mktemp("report1") / "channels"
    outcome.save(out)
    return outcome, out


def _data_ys(fig) -> np.ndarray:
    """Every y value of the data lines (event lines left out) and bands of ``fig``'s first axes."""
    ax = fig.axes[0]
    ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines() if len(line.get_xdata()) > 2]
    for band in ax.collections:
        for path in band.get_paths():
            ys.append(path.vertices[:, 1])
    values = np.concatenate(ys)
    return values[np.isfinite(values)]


def _event_xs(ax) -> set:
    """The x positions (as dates) of the dotted event lines of ``ax``."""
    import matplotlib.dates as mdates

    out = set()
    for line in ax.get_lines():
        x = line.get_xdata(orig=False)
        if len(x) == 2 and x[0] == x[1] and line.get_linestyle() == ":":
            out.add(pd.Timestamp(mdates.num2date(x[0]).replace(tzinfo=None)).strftime("%Y-%m"))
    return out


# -- the figures ----------------------------------------------------------------------------------
def test_axes_fit_the_data_and_titles_are_words(sixteen):
    outcome, _ = sixteen
    for metric in TIME_FIGURES:
        fig = outcome.plot(metric)
        ax = fig.axes[0]
        values = _data_ys(fig)
        low, high = ax.get_ylim()
        assert low <= values.min() and values.max() <= high, metric
        # the data fill most of the axis: a 1-9 % headcount is not drawn on a 0-100 % axis
        assert values.max() - values.min() >= 0.6 * (high - low), (metric, (low, high), values.min(), values.max())
        title = fig._suptitle.get_text()
        assert metric not in title and "_" not in title.split("(")[0], title
        assert_inside_figure(fig, fig._suptitle, metric)
        assert_inside_figure(fig, fig.legends[0], metric)
        assert_lines_run_forward(fig, metric)
    assert outcome.plot("headcount_rate")._suptitle.get_text().startswith("Poverty headcount")
    assert outcome.plot("exclusion_error")._suptitle.get_text().startswith("Exclusion error: poor households")


def test_policy_events_are_marked(sixteen):
    outcome, _ = sixteen
    base = outcome.experiment.configs["baseline"]
    events = policy_events(outcome.experiment.configs.values())
    labels = [label for label, _, _ in events]
    assert labels[0] == "registration" and {"look-back", "annual reviews", "channels"} <= set(labels)
    registration = dict((label, first) for label, first, _ in events)["registration"]
    assert registration.strftime("%Y-%m") == base.policy.registration.month
    points = {first.strftime("%Y-%m") for _, first, last in events if first == last}
    fig = outcome.plot("exclusion_error")
    ax = fig.axes[0]
    assert _event_xs(ax) == points
    assert len(ax.patches) == 1  # the look-back window, shaded
    assert {t.get_text() for t in ax.texts} >= set(labels)


def test_sixteen_scenarios_have_sixteen_styles(sixteen):
    outcome, _ = sixteen
    fig = outcome.plot("inclusion_error")
    lines = [line for line in drawn_lines(fig) if len(line.get_xdata()) > 2]
    assert len(lines) == 16
    styles = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(styles) == 16
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(outcome.experiment.configs)


def test_each_figure_carries_its_caption(sixteen):
    outcome, out = sixteen
    for metric in TIME_FIGURES:
        meta = F.read_figure(out / f"{metric}.png")
        caption, prov = meta["caption"], meta["provenance"]
        for fact in ("Experiment channels", "channels.toml)", "200 households per run", "16 scenarios", "2 replicates per scenario",
                     "95% interval", "2013-01 to 2020-12", f"povsim {povsim.__version__}", prov["created"][:10],
                     "registration", "look-back"):
            assert fact in caption, (metric, fact, caption)
        assert prov["replicates"] == 2 and prov["households"] == 200 and len(prov["scenarios"]) == 16
        assert meta["software"] == f"povsim {povsim.__version__}"
        assert meta["title"] and metric not in meta["title"]
        # the caption is drawn beneath the figure: the PNG is taller than the figure alone
        width, height = outcome.plot(metric).get_size_inches() * FIGURE_DPI
        assert meta["size"][0] == round(width) and meta["size"][1] > height + 40


def test_a_single_run_figure_gets_the_same_treatment(tmp_path):
    cfg = povsim.load_config(None, overrides={**SMALL, "population.households": 300, "name": "small"})
    result = povsim.run(cfg)
    fig = result.plot()
    values = _data_ys(fig)
    low, high = fig.axes[0].get_ylim()
    assert low <= values.min() and values.max() <= high
    assert values.max() - values.min() >= 0.6 * (high - low)
    assert "registration" in {t.get_text() for t in fig.axes[0].texts}
    assert cfg.policy.registration.month in _event_xs(fig.axes[0])
    assert_lines_run_forward(fig, "errors")
    assert_inside_figure(fig, fig.axes[0].title, "errors")
    assert fig.axes[0].get_title().startswith("Targeting errors and the poverty headcount by month (small)")
    result.save(tmp_path / "run")
    meta = F.read_figure(tmp_path / "run" / "errors.png")
    for fact in ("Run small", "300 households", f"seed {cfg.seed}", "one replicate", "no interval",
                 f"povsim {povsim.__version__}", "registration"):
        assert fact in meta["caption"], fact


def test_the_sweep_figure_title_is_not_clipped():
    rows = []
    for point in range(3):
        for scenario in [f"scenario_{k}" for k in range(16)]:
            rows.append({"point": point, "scenario": scenario, "metric": "exclusion_error_mean",
                         "mean": 0.3 + 0.01 * point, "low": 0.28, "high": 0.33, "sd": 0.01, "n": 2})
    summary = pd.DataFrame(rows).set_index(["point", "scenario", "metric"])
    points = pd.DataFrame({"policy.channels.self.apply_probability": [0.02, 0.1, 0.2]})
    fig = plot_sweep(summary, points, "exclusion_error_mean", title="a long experiment name for one swept key")
    assert_inside_figure(fig, fig._suptitle, "sweep")
    assert_inside_figure(fig, fig.legends[0], "sweep")
    assert "exclusion_error_mean" not in fig._suptitle.get_text()
    points = [line for line in fig.axes[0].get_lines() if line.get_marker() in ("o", "s", "^", "D")]  # not the caps
    assert len(points) == 16
    assert len({(line.get_color(), line.get_marker(), line.get_markerfacecolor()) for line in points}) == 16


# -- the report --------------------------------------------------------------------------------------
class _Tables(HTMLParser):
    """The number of columns of each table's rows, and the page's text."""

    def __init__(self):
        super().__init__()
        self.tables: list[int] = []
        self.text: list[str] = []
        self._cells = 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(0)
        elif tag == "tr":
            self._cells = 0
        elif tag in ("td", "th"):
            self._cells += 1
            self.tables[-1] = max(self.tables[-1], self._cells)

    def handle_data(self, data):
        self.text.append(data)


def _parse(path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_report_says_what_each_scenario_changes_and_what_a_replicate_is(sixteen):
    outcome, out = sixteen
    html = (out / "report.html").read_text(encoding="utf-8")
    text = " ".join(" ".join(_parse(out / "report.html").text).split())
    assert "A replicate is one run of a scenario with its own seed" in text
    for name, patch in outcome.experiment.patches.items():
        for key, value in patch.items():
            assert f"{key} = {str(value).lower()}" in text, (name, key)
    assert "switches on: grassroots cadres visit households" in text
    assert "switches on: missed eligible households call the complaint hotline (12317)" in text
    assert "95 % interval of the mean" in text and "2 replicates" in text
    assert html.count("<img ") == len(TIME_FIGURES)


def test_report_tables_have_few_columns_with_sixteen_scenarios(sixteen):
    _, out = sixteen
    parsed = _parse(out / "report.html")
    assert parsed.tables and max(parsed.tables) <= 6  # the label column and at most five scenarios
    text = " ".join(parsed.text)
    assert "Scenarios 16 to 16 of 16" in text and "Scenarios 11 to 15 of 15" in text  # headlines; differences


def test_report_with_one_replicate_promises_no_interval(single_replicate):
    _, out = single_replicate
    text = " ".join(" ".join(_parse(out / "report.html").text).split())
    assert "This experiment has one replicate" in text and "no interval" in text
    assert "95 %" not in text and "95%" not in text and "interval of the mean" not in text
    assert not re.search(r"\d \[[-+\d.,]+, [-+\d.,]+\]", text), "an interval in a table of one replicate"
    for metric in TIME_FIGURES:
        caption = F.read_figure(out / f"{metric}.png")["caption"]
        assert "one replicate" in caption and "95%" not in caption


def test_report_and_figures_are_readable_by_others(sixteen):
    _, out = sixteen
    for name in ["report.html", "summary.csv", *(f"{m}.png" for m in TIME_FIGURES)]:
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


# -- the report in a browser ------------------------------------------------------------------------
_LAYOUT_JS = """
const page = document.documentElement.clientWidth;
const images = Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,
    right: i.getBoundingClientRect().right}));
const tables = Array.from(document.querySelectorAll('table')).map(t => t.getBoundingClientRect().right);
return {page: page, scroll: document.documentElement.scrollWidth, images: images, tables: tables,
        title: document.title};
"""


@pytest.mark.parametrize("width", [1400, 1000])
def test_report_renders_in_a_browser(sixteen, width):
    from selenium.webdriver.support.ui import WebDriverWait

    _, out = sixteen
    with chrome(width, 1000, page_timeout=60, script_timeout=30, solara=False) as driver:
        driver.get((out / "report.html").as_uri())
        WebDriverWait(driver, 30, poll_frequency=0.2).until(
            lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)")
        )
        layout = driver.execute_script(_LAYOUT_JS)
        keep_screenshot(driver, f"report-{width}")
    assert layout["title"] == "povsim: channels"
    assert len(layout["images"]) == len(TIME_FIGURES)
    for image in layout["images"]:
        assert image["complete"] and image["width"] > 0, image
        assert image["right"] <= layout["page"] + 0.5
    assert layout["tables"]
    for right in layout["tables"]:
        assert right <= layout["page"] + 0.5, f"a table reaches {right} px on a page of {layout['page']} px"
    assert layout["scroll"] <= layout["page"], "the page scrolls sideways"
