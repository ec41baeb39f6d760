"""A real ``bentoml serve`` and a headless Debian chromium driven by Selenium, for the page at /ui.

Needs ``apt-get install -y chromium chromium-driver`` (paths: ``$CHROMIUM_BIN``/``$CHROMEDRIVER``,
else found on the PATH, else /usr/bin/chromium and /usr/bin/chromedriver). Selenium gets the
driver's path, and ``SE_OFFLINE=true``: Selenium Manager never downloads anything.

Without chromium (or selenium) the tests FAIL when ``$CI`` is set (anything but "", 0, false,
no) and are SKIPPED, with the install command as the reason, when it is not.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from fixtures.real_data import in_ci
from fixtures.tiny_models import build_conditional_model
from server_process import Server, launch, wait_ready
from smooth_model import build_smooth_model

INSTALL = "apt-get install -y chromium chromium-driver"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    "--window-size=1280,1000",
)


def browser_missing(reason: str) -> None:
    """Fail in CI, skip elsewhere; never returns."""
    if in_ci():
        pytest.fail(f"{reason}; CI must install it: {INSTALL}", pytrace=False)
    pytest.skip(f"{reason} (install: {INSTALL}; with CI set this is a failure)")


def _find(env: str, name: str) -> str | None:
    """``$env`` when set (and only it), else ``name`` on the PATH, else /usr/bin/name."""
    explicit = os.environ.get(env)
    candidates = [explicit] if explicit else [shutil.which(name), f"/usr/bin/{name}"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="session")
def ui_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """tiny-a (default), tiny-b, tiny-c (class-conditional), blobs (smooth RGB images) and the
    bundled mnist-dcgan (the screenshot's) and cifar10-cgan (colour, class-conditional)."""
    models = tmp_path_factory.mktemp("ui_models")
    for folder in tiny_models_dir.iterdir():
        shutil.copytree(folder, models / folder.name)
    build_conditional_model(models, name="tiny-c")
    build_smooth_model(models)
    bundled = Path(__file__).resolve().parents[2] / "models"
    for name in ("mnist-dcgan", "cifar10-cgan"):
        shutil.copytree(bundled / name, models / name)
    srv = launch(models, tmp_path_factory.mktemp("bentoml_home_ui"))
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        browser_missing("selenium is not installed (it is in the dev extra)")
    chromium = _find("CHROMIUM_BIN", "chromium")
    driver_path = _find("CHROMEDRIVER", "chromedriver")
    if chromium is None or driver_path is None:
        browser_missing(
            f"chromium ({chromium or 'not found'}) or chromedriver "
            f"({driver_path or 'not found'}) is missing"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: no downloads, ever
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(profile / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        log = profile / "chromedriver.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"chromium did not start: {exc.msg}\n{detail}", pytrace=False)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
