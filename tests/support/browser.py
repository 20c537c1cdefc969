"""Debian's Chromium driven by selenium: the system browser and driver, never a download.

Missing Chromium skips the browser tests, except under CI=true, where it fails them (`.ci/run`
installs `chromium` and `chromium-driver`).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LAPTOP = (1366, 900)
PHONE = (390, 844)


def missing(what: str):
    message = f"{what}; install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- under CI=true the browser tests must run")
    pytest.skip(message)


def chromium():
    """A headless Chromium with a fresh profile; quit it when done."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("the selenium package is not installed")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            missing(f"{path} is not there")
    # Selenium Manager looks for browsers and drivers to download unless both paths are given;
    # these make sure it neither fetches nor reports anything.
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    profile = tempfile.mkdtemp(prefix="dheera_ai-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
                     "--force-device-scale-factor=1", f"--user-data-dir={profile}",
                     f"--window-size={LAPTOP[0]},{LAPTOP[1]}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    original_quit = driver.quit

    def quit_and_clean():
        try:
            original_quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)
    driver.quit = quit_and_clean
    return driver
