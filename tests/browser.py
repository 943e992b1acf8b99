"""Headless Chromium for the tests that look at a page (imported as ``browser``).

Debian's ``chromium`` and ``chromedriver``, driven through Selenium.  Where one of them
(or Selenium, or Solara where the page needs it) is missing, the test is skipped with the
reason; with ``POVSIM_REQUIRE_BROWSER_TEST=1`` (CI, once it has installed them) a missing
piece fails it instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

#: where the browser tests keep their screenshots (not committed)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def skip_or_fail(reason: str):
    if os.environ.get("POVSIM_REQUIRE_BROWSER_TEST") == "1":
        pytest.fail(f"{reason} (POVSIM_REQUIRE_BROWSER_TEST=1)")
    pytest.skip(reason)


def browser_tools(solara: bool = True) -> tuple[str, str]:
    """The paths of chromium and chromedriver; skips (or fails) naming whatever is missing."""
    missing = []
    if solara and importlib.util.find_spec("solara") is None:
        missing.append("solara (pip install 'povsim[app]')")
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install 'povsim[app]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    driver = shutil.which("chromedriver")
    if driver is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if missing:
        skip_or_fail("the browser test needs " + ", ".join(missing))
    return chromium, driver


@contextmanager
def chrome(width: int, height: int, page_timeout: float, script_timeout: float, solara: bool = True):
    """A headless Chromium window of ``width`` x ``height`` pixels (Selenium's driver), always closed."""
    chromium, driver_path = browser_tools(solara=solara)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(page_timeout)
        driver.set_script_timeout(script_timeout)
        yield driver
    finally:
        driver.quit()


def keep_screenshot(driver, name: str) -> Path:
    """Save the window as ``tests/artifacts/<name>.png`` and say where (in the test's output)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path
