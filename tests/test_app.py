"""The interactive page: its model (CountyModel), its figures, ``povsim app``, and the page in a browser.

The browser test starts ``povsim app`` on a free port of 127.0.0.1, opens the page in
headless Chromium (Debian's ``chromium`` and ``chromedriver``, through Selenium), steps
the model with the page's Step button and checks that the text, the grid and the plot
change, then that Reset brings back the first month, and that Ctrl-C (SIGINT) stops
the server.  Where Chromium, chromedriver, Selenium or Solara is missing, it is skipped
with the reason; with ``POVSIM_REQUIRE_BROWSER_TEST=1`` (CI, once it has installed
them) a missing piece fails it instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import chrome, keep_screenshot, skip_or_fail
from helpers import REPO, run_cli

import povsim
from povsim.mesa import STATUS, CountyModel, PovertyModel, county_config
from povsim.mesa.figures import county_grid, draw_county, draw_errors, status_counts, status_line

HOST = "127.0.0.1"
PAGE_HOUSEHOLDS = 1_500
START_TIMEOUT = 120  # s: interpreter, Numba cache, Mesa, Solara and the model's burn-in
PAGE_TIMEOUT = 90  # s: the page's first render in the browser
STEP_TIMEOUT = 30  # s: one Step's round trip


# -- the page's model ----------------------------------------------------------------------
def test_county_model_is_the_poverty_model_of_its_config():
    kw = {"households": 600, "cadres": False, "data_coverage_formal": 0.5, "verification_error": 0.4, "seed": 3}
    model = CountyModel(**kw, skip_burn_in=False)
    cfg = county_config(**kw)
    assert model.config == cfg
    assert cfg.population.households == 600 and cfg.population.households_per_village == 120
    assert not cfg.policy.channels.cadre.enabled and cfg.policy.channels.self.enabled
    assert cfg.policy.channels.data.coverage_formal == 0.5
    assert cfg.policy.channels.data.coverage_informal == povsim.Config().policy.channels.data.coverage_informal
    assert cfg.policy.verification.assessment_sd == 0.4
    assert cfg.simulation.burn_in_years == 1 and cfg.seed == 3
    pd.testing.assert_frame_equal(model.run(), PovertyModel(cfg).run(), check_exact=True)


def test_county_model_skips_the_burn_in():
    model = CountyModel(households=300)
    assert model.month == model.timeline.start
    assert model.steps == model.timeline.n_burn_in and model.metrics.empty
    model.step()
    assert model.metrics["month"].iloc[0] == pd.Timestamp("2013-01")
    reference = PovertyModel(county_config(households=300))
    for _ in range(model.timeline.n_burn_in + 1):
        reference.step()
    pd.testing.assert_frame_equal(model.metrics, reference.metrics, check_exact=True)


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"cadre_visits": -1}, "policy.channels.cadre.visits_per_village"),
        ({"data_coverage_informal": 1.5}, "policy.channels.data.coverage_informal"),
        ({"verification_error": -0.1}, "policy.verification.assessment_sd"),
        ({"households": 0}, "population.households"),
    ],
)
def test_county_model_refuses_bad_values_naming_the_key(kw, key):
    with pytest.raises(povsim.ConfigError, match=key.replace(".", r"\.")):
        CountyModel(**kw)


def test_cadre_visits_control_reaches_the_model():
    few = CountyModel(households=600, cadre_visits=1, self_declaration=False, sector_data=False, hotline=False)
    many = CountyModel(households=600, cadre_visits=20, self_declaration=False, sector_data=False, hotline=False)
    few.run()
    many.run()
    assert 0 < few.metrics["cadre_visits"].sum() < many.metrics["cadre_visits"].sum()


@pytest.mark.parametrize(
    "rule, lookback, review, channels",
    [("onetime", False, False, False), ("lookback", True, False, False), ("reviews", True, True, False),
     ("channels", True, True, True)],
)
def test_the_rule_choice_sets_the_rules(rule, lookback, review, channels):
    cfg = county_config(households=300, rule=rule, cadres=False)
    assert cfg.policy.registration.enabled
    assert cfg.policy.lookback.enabled is lookback and cfg.policy.review.enabled is review
    assert cfg.policy.channels.self.enabled is channels and cfg.policy.channels.hotline.enabled is channels
    assert not cfg.policy.channels.cadre.enabled  # a switch off stays off
    with pytest.raises(ValueError, match="rule='annual' is not a rule; allowed: onetime, lookback, reviews, channels"):
        county_config(rule="annual")


def test_the_rules_change_the_county():
    runs = {rule: CountyModel(households=600, rule=rule).run() for rule in ("onetime", "reviews", "channels")}
    assert runs["onetime"]["removed_lookback"].sum() == 0 and runs["onetime"]["exited"].sum() == 0
    assert runs["reviews"]["exited"].sum() > 0 and runs["reviews"]["entered_cadre"].sum() == 0
    assert runs["channels"]["entered_cadre"].sum() > 0
    pd.testing.assert_series_equal(runs["onetime"]["ill"], runs["channels"]["ill"])  # the same shocks


# -- the figures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stepped():
    """A county model 30 months into the reported period (after the 2014 registration)."""
    model = CountyModel(households=PAGE_HOUSEHOLDS)
    for _ in range(30):
        model.step()
    return model


def test_county_grid_places_every_household_by_status(stepped):
    grid, places = county_grid(stepped)
    assert len(places) == len(stepped.villages) == 13  # 1,500 households in villages of 120
    counts = status_counts(stepped)
    for k, status in enumerate(STATUS):
        assert (grid == k).sum() == counts[status] > 0
    assert (grid >= 0).sum() == PAGE_HOUSEHOLDS
    # a household's cell: its village's block, row by row
    v, top, left = places[3]
    first = int(stepped.population.village_start[v])
    cols = places[1][2] - places[0][2] - 1
    agent = next(a for a in stepped.villages[v] if a.index == first + cols + 2)
    assert grid[top + 1, left + 2] == STATUS.index(agent.status)
    with pytest.raises(ValueError, match="county 5 does not exist"):
        county_grid(stepped, county=5)


def test_status_line_and_figures(stepped):
    m = stepped.metrics.iloc[-1]
    line = status_line(stepped)
    assert line.startswith("end of 2015-06: 1,500 households; ")
    assert f"poor {m['poor']:,} ({m['poor_registered']:,} registered, {m['poor'] - m['poor_registered']:,} missed)" in line
    assert f"exclusion error {100 * m['exclusion_error']:.1f}%" in line
    fig = draw_county(stepped)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[1] == f"poor, missed (exclusion error): {m['poor'] - m['poor_registered']:,}"
    assert "1,500 households in 13 villages, end of 2015-06" in fig.axes[0].get_title()
    errors = draw_errors(stepped)
    top = errors.axes[0]
    exclusion = top.get_lines()[0]
    assert np.allclose(exclusion.get_ydata(), 100 * stepped.metrics["exclusion_error"])
    assert len(exclusion.get_xdata()) == 30
    fresh = CountyModel(households=300)
    assert status_line(fresh).startswith("end of 2012-12 (burn-in): 300 households")
    assert "press Step" in draw_errors(fresh).axes[0].texts[0].get_text()


# -- imports ------------------------------------------------------------------------------------
def test_povsim_imports_neither_mesa_nor_solara():
    code = (
        "import sys, povsim, povsim.cli; assert 'mesa' not in sys.modules and 'solara' not in sys.modules;"
        "import povsim.mesa; assert 'mesa' in sys.modules and 'solara' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# importing Mesa 3.3's visualization makes Solara's hook linter warn about Mesa's own ComponentsView
@pytest.mark.filterwarnings("ignore:.*found despite early return:UserWarning")
def test_page_module(monkeypatch):
    pytest.importorskip("solara", reason="the page needs Solara: pip install 'povsim[app]'")
    import inspect

    import povsim.mesa.app as app

    monkeypatch.setenv("POVSIM_APP_HOUSEHOLDS", "700")
    model = app.make_model()
    assert len(model.agents) == 700 and model.month == model.timeline.start
    assert app.make_model() is not model  # one model per browser session
    params = app.model_params()
    from povsim.components import TOGGLES

    # what CountyModel takes: county_config's arguments, the channels' switches the components declare
    accepted = set(inspect.signature(county_config).parameters) | set(TOGGLES) | {"skip_burn_in"}
    assert set(params) <= accepted
    controls = {k for k, v in params.items() if isinstance(v, dict)}
    assert controls == {
        "rule", "self_declaration", "cadres", "sector_data", "hotline", "cadre_visits", "data_coverage_formal",
        "data_coverage_informal", "verification_error",
    }  # fmt: skip
    assert params["rule"]["values"] == ["onetime", "lookback", "reviews", "channels"]
    for name in ("300", " 20000 "):
        monkeypatch.setenv("POVSIM_APP_HOUSEHOLDS", name)
        assert app.households_from_env() == int(name)
    for bad in ("many", "0", "20001"):
        monkeypatch.setenv("POVSIM_APP_HOUSEHOLDS", bad)
        with pytest.raises(ValueError, match="POVSIM_APP_HOUSEHOLDS"):
            app.households_from_env()


# -- povsim app: arguments ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--households", "0"], "must be a positive integer"),
        (["--households", "20001"], "1 to 20,000 households"),
        (["--port", "70000"], "a port is 1 to 65535"),
        (["--port", "http"], "'http' is not an integer"),
    ],
)
def test_app_command_refuses_bad_arguments(args, message):
    done = run_cli("app", *args, timeout=60)
    assert done.returncode == 2 and message in done.stderr


def test_app_command_refuses_a_busy_port():
    pytest.importorskip("solara", reason="the page needs Solara: pip install 'povsim[app]'")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("app", "--port", str(port), timeout=60)
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is not free" in done.stderr and "--port N" in done.stderr


# -- the page in a browser --------------------------------------------------------------------
def _wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"povsim app exited with status {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"povsim app did not answer at {url} within {timeout} s:\n{log.read_text()}")


def _front_end_missing(url: str) -> list[str]:
    """The page's front-end scripts that the server cannot give (Solara serves them from solara-assets,
    from its cache, or fetches them from a CDN)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        html = response.read().decode("utf-8", "replace")
    missing = []
    for path in sorted(set(re.findall(r'src="(/_solara/cdn/[^"]+\.js)"', html))):
        try:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=60) as response:
                response.read()
        except OSError as err:
            missing.append(f"{path} ({err})")
    return missing


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (povsim app and the Solara server it started)."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:  # the Solara child, if povsim app went first
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``povsim app`` on a free loopback port: (url, process, log file); always stopped at the end."""
    if importlib.util.find_spec("solara") is None:
        skip_or_fail("povsim app needs solara (pip install 'povsim[app]')")
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "povsim.cli", "app", "--port", str(port), "--households", str(PAGE_HOUSEHOLDS)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the finalizer stops the server it starts too
            # Ctrl-C as in a terminal: a runner started in the background (`pytest &` in a script)
            # passes SIGINT on ignored, and an interpreter that starts with it ignored never raises
            # KeyboardInterrupt
            preexec_fn=_default_sigint,
        )
    url = f"http://{HOST}:{port}/"
    try:
        _wait_for_http(url, proc, log, START_TIMEOUT)
        assert f"povsim app: {url} (1,500 households; Ctrl-C stops it)" in log.read_text()
        yield url, proc, log
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser(server):
    with chrome(1600, 1200, page_timeout=PAGE_TIMEOUT, script_timeout=STEP_TIMEOUT) as driver:
        yield driver


_DIGEST_JS = """
const done = arguments[arguments.length - 1];
const img = document.querySelector(arguments[0] + ' img');
if (!img) { done(null); return; }
fetch(img.src).then(r => r.arrayBuffer()).then(b => crypto.subtle.digest('SHA-256', b)).then(
    h => done(Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, '0')).join('')),
    e => done('error: ' + e));
"""


def _snapshot(driver) -> dict:
    """The status text and a digest of the grid's and the plot's rendered images."""
    from selenium.webdriver.common.by import By

    return {
        "text": driver.find_element(By.CSS_SELECTOR, ".povsim-status").text,
        "grid": driver.execute_async_script(_DIGEST_JS, ".povsim-county"),
        "plot": driver.execute_async_script(_DIGEST_JS, ".povsim-errors"),
    }


def _button(driver, label: str):
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.TAG_NAME, "button"):
        if button.text.strip().lower() == label.lower():
            return button
    raise AssertionError(f"no {label!r} button on the page; buttons: {[b.text for b in driver.find_elements(By.TAG_NAME, 'button')]}")


def _wait_text(driver, prefix: str, log: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        found = d.find_elements(By.CSS_SELECTOR, ".povsim-status")
        return bool(found) and found[0].text.startswith(prefix)

    try:
        WebDriverWait(driver, STEP_TIMEOUT, poll_frequency=0.2).until(shown)
    except Exception:
        found = driver.find_elements(By.CSS_SELECTOR, ".povsim-status")
        text = found[0].text if found else "(no status line)"
        pytest.fail(f"the page did not show {prefix!r}; it shows {text!r}\nserver log:\n{log.read_text()[-3000:]}")


def test_page_steps_in_the_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, proc, log = server
    missing = _front_end_missing(url)
    if missing:
        skip_or_fail(
            "Solara's front-end files are neither installed nor reachable: "
            + "; ".join(missing)
            + " (pip install 'povsim[app]' installs solara-assets and the Vue 2 front end it holds)"
        )
    browser.get(url)
    try:
        WebDriverWait(browser, PAGE_TIMEOUT, poll_frequency=0.5).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".povsim-errors img")
        )
    except Exception:
        pytest.fail(f"the page did not render within {PAGE_TIMEOUT} s\nserver log:\n{log.read_text()[-3000:]}")
    assert "povsim: finding the poor in one county" in browser.page_source
    first = _snapshot(browser)
    assert first["text"].startswith("end of 2012-12 (burn-in): 1,500 households; poor ")
    assert first["grid"] and first["plot"] and "error" not in first["grid"] + first["plot"]

    shots = [first]
    for month in ("2013-01", "2013-02", "2013-03"):
        _button(browser, "Step").click()
        _wait_text(browser, f"end of {month}: 1,500 households", log)
        WebDriverWait(browser, STEP_TIMEOUT, poll_frequency=0.2).until(
            lambda d: _snapshot(d)["plot"] != shots[-1]["plot"]
        )
        shots.append(_snapshot(browser))
    for before, after in zip(shots, shots[1:]):
        assert after["grid"] != before["grid"], "the grid did not change with a step"
        assert after["plot"] != before["plot"], "the plot did not change with a step"
        assert after["text"] != before["text"]

    # a new session (a reload, another tab) has its own model, from the first month
    browser.get(url)
    _wait_text(browser, "end of 2012-12 (burn-in)", log)
    WebDriverWait(browser, STEP_TIMEOUT, poll_frequency=0.2).until(lambda d: _snapshot(d) == first)
    # Reset builds a new CountyModel from the controls: the same seed gives back the first month
    _button(browser, "Step").click()
    _wait_text(browser, "end of 2013-01", log)
    _button(browser, "Reset").click()
    _wait_text(browser, "end of 2012-12 (burn-in)", log)
    WebDriverWait(browser, STEP_TIMEOUT, poll_frequency=0.2).until(lambda d: _snapshot(d) == first)
    assert proc.poll() is None


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _text_of(driver, selector: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def _wait_for(driver, what, log: Path, describe: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, STEP_TIMEOUT, poll_frequency=0.2).until(lambda d: what(d))
    except Exception:
        pytest.fail(f"the page did not {describe}; it shows:\n{_page_text(driver)[:3000]}\nserver log:\n"
                    f"{log.read_text()[-2000:]}")


def test_page_explains_itself_and_its_rule_choice_changes_the_model(server, browser):
    """What a student sees: words, the calendar month, values, large error numbers, a choice of rule; no leftovers."""
    from povsim.mesa.app import error_numbers, month_heading, rules_line

    url, proc, log = server
    browser.get(url)
    _wait_for(browser, lambda d: _text_of(d, ".povsim-month"), log, "render")
    fresh = CountyModel(households=PAGE_HOUSEHOLDS)
    text = _page_text(browser)
    assert _text_of(browser, ".povsim-month") == month_heading(fresh) == "December 2012 (burn-in: before the reported months)"
    for words in ("povsim: finding the poor in one county", "What you see.", "Each small square is one rural household",
                  "What to try.", "Identification rule", "Exclusion error", "Inclusion error",
                  f"cadre visits per village per month: {povsim.Config().policy.channels.cadre.visits_per_village}",
                  f"sector data's coverage: formal work: {povsim.Config().policy.channels.data.coverage_formal:.2f}",
                  rules_line(fresh)):
        assert words in text, words
    for leftover in ("page 0", "use threads", "step:", "play interval", "render interval"):
        assert leftover not in text.lower(), leftover
    numbers = error_numbers(fresh)
    assert _text_of(browser, ".povsim-exclusion-value") == numbers["exclusion"] == "100.0 %"
    assert _text_of(browser, ".povsim-inclusion-value") == "-"
    font = browser.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('.povsim-exclusion-value')).fontSize)")
    assert font >= 32, f"the error number is {font} px: not large"
    for selector in (".povsim-county img", ".povsim-errors img"):
        width = browser.execute_script(f"return document.querySelector('{selector}').getBoundingClientRect().width")
        assert width >= 700, f"{selector} is {width} px wide: too small to read"
    labels = [b.text.strip().lower() for b in browser.find_elements("css selector", ".povsim-rule")]
    assert labels == ["one-time registration", "with look-back", "with annual reviews", "with channels"]

    # steps show calendar months, and the large numbers follow the model
    for _ in range(2):
        _button(browser, "Step").click()
    _wait_for(browser, lambda d: _text_of(d, ".povsim-month") == "February 2013", log, "show February 2013")
    fresh.step(), fresh.step()
    assert _text_of(browser, ".povsim-exclusion-value") == error_numbers(fresh)["exclusion"]

    # the rule choice builds a new model with that rule, from the start
    _button(browser, "One-time registration").click()
    onetime = CountyModel(households=PAGE_HOUSEHOLDS, rule="onetime")
    _wait_for(browser, lambda d: _text_of(d, ".povsim-rules") == rules_line(onetime), log, "show the one-time rules")
    assert "look-back off; exits and annual reviews off; channels: none" in rules_line(onetime)
    assert _text_of(browser, ".povsim-month").startswith("December 2012")
    assert "cadre visits per village per month" not in _page_text(browser)  # the channels' settings go with them
    _button(browser, "With annual reviews").click()
    reviews = CountyModel(households=PAGE_HOUSEHOLDS, rule="reviews")
    _wait_for(browser, lambda d: _text_of(d, ".povsim-rules") == rules_line(reviews), log, "show the review rules")
    _button(browser, "With channels").click()
    _wait_for(browser, lambda d: _text_of(d, ".povsim-rules") == rules_line(fresh), log, "show all the rules")
    for _ in range(3):
        _button(browser, "Step").click()
    _wait_for(browser, lambda d: _text_of(d, ".povsim-month") == "March 2013", log, "show March 2013")
    browser.execute_script("window.scrollTo(0, 0)")
    keep_screenshot(browser, "app")
    browser.execute_script("document.querySelector('.povsim-errors').scrollIntoView()")
    keep_screenshot(browser, "app-errors")
    assert proc.poll() is None


def test_ctrl_c_stops_the_server(server):
    url, proc, log = server
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to povsim app
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"povsim app did not stop within 30 s of SIGINT:\n{log.read_text()[-3000:]}")
    assert code == 0
    assert "povsim app: stopped" in log.read_text()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the Solara server is gone too: nothing listens on the port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex((HOST, port)) != 0:
                break
        time.sleep(0.3)
    else:
        pytest.fail(f"something still listens on {HOST}:{port} after povsim app stopped")
