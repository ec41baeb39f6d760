"""The page at /ui in a real headless chromium against a real ``bentoml serve``.

``UPDATE_SCREENSHOT=1`` also saves docs/ui-screenshot.png (off by default, so a test run never
dirties the tree).
"""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from prometheus_client import CollectorRegistry
from server_process import Server

from service.app import build_app
from service.model_store import ModelStore
from service.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "ui-screenshot.png"
WAIT_S = 30.0


def _wait(driver: Any, condition: Any, what: str, timeout: float = WAIT_S) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        console = "\n".join(str(e) for e in driver.get_log("browser"))
        pytest.fail(f"timed out after {timeout} s waiting for {what}; console:\n{console}")


def _open(driver: Any, server: Server) -> None:
    driver.get(f"{server.url}/ui")
    _wait(
        driver,
        lambda d: d.execute_script("return document.body.dataset.ready"),
        "the page to load the models",
    )
    assert driver.execute_script("return document.body.dataset.ready") == "true", (
        driver.find_element("id", "banner").text
    )


def _set(driver: Any, element_id: str, value: str) -> None:
    element = driver.find_element("id", element_id)
    element.clear()
    element.send_keys(value)


def _loaded_images(driver: Any, selector: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(i => ({"
        "src: i.src, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))",
        selector,
    )
    return result


def test_page_is_served_locally_and_lists_models(browser: Any, ui_server: Server) -> None:
    _open(browser, ui_server)
    assert browser.current_url == f"{ui_server.url}/ui/"
    assert browser.title == "GAN service"
    options = [
        o.get_attribute("value") for o in browser.find_elements("css selector", "#model option")
    ]
    assert options == ["blobs", "cifar10-cgan", "mnist-dcgan", "tiny-a", "tiny-b", "tiny-c"]
    assert browser.find_element("id", "model").get_attribute("value") == "tiny-a"
    assert "28×28 grey" in browser.find_element("id", "model-info").text
    # No CDN: every resource the page loaded came from the server itself.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources, "the page loaded no resources at all?"
    foreign = [r for r in resources if not r.startswith((ui_server.url, "data:", "blob:"))]
    assert foreign == []
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_class_picker_of_a_conditional_model(browser: Any, ui_server: Server) -> None:
    """The picker appears for a class-conditional model only; the images are the API's for the
    picked class, and "any" gives each seed its own class, as the API without a class does."""
    from selenium.webdriver.support.ui import Select

    _open(browser, ui_server)
    assert not browser.find_element("id", "class-field").is_displayed()  # tiny-a: no classes
    Select(browser.find_element("id", "model")).select_by_value("tiny-c")
    assert browser.find_element("id", "class-field").is_displayed()
    picker = Select(browser.find_element("id", "class"))
    assert [o.text for o in picker.options] == [
        "any (from the seed)",
        "0 · circle",
        "1 · square",
        "2 · 7",
    ]
    assert "3 classes" in browser.find_element("id", "model-info").text
    for value, klass in (("1", {"class": 1}), ("", {})):
        picker.select_by_value(value)
        _set(browser, "seed", "5")
        _set(browser, "n", "4")
        browser.find_element("id", "generate-btn").click()
        body = {"seed": 5, "n": 4, "model": "tiny-c", **klass}
        api = httpx.post(f"{ui_server.url}/generate", json=body, timeout=30).json()
        expected = [f"data:image/png;base64,{i['png']}" for i in api["images"]]
        _wait(
            browser,
            lambda d, want=expected: [i["src"] for i in _loaded_images(d, "#grid img")] == want,
            f"the images of class {value or 'any'}",
        )
    Select(browser.find_element("id", "model")).select_by_value("tiny-a")
    assert not browser.find_element("id", "class-field").is_displayed()


def test_the_colour_model_is_shown_in_colour(browser: Any, ui_server: Server) -> None:
    """cifar10-cgan's horses as chromium draws them: the API's PNGs, and colour on the canvas
    (R and B differ), not grey copied to three channels."""
    from selenium.webdriver.support.ui import Select

    _open(browser, ui_server)
    Select(browser.find_element("id", "model")).select_by_value("cifar10-cgan")
    assert "32×32 RGB" in browser.find_element("id", "model-info").text
    picker = Select(browser.find_element("id", "class"))
    assert "7 · horse" in [o.text for o in picker.options]
    picker.select_by_visible_text("7 · horse")
    _set(browser, "seed", "5")
    _set(browser, "n", "4")
    browser.find_element("id", "generate-btn").click()
    body = {"seed": 5, "n": 4, "model": "cifar10-cgan", "class": "horse"}
    api = httpx.post(f"{ui_server.url}/generate", json=body, timeout=30).json()
    expected = [f"data:image/png;base64,{i['png']}" for i in api["images"]]
    _wait(
        browser,
        lambda d: (
            [i["src"] for i in _loaded_images(d, "#grid img")] == expected
            and all(i["complete"] and i["w"] == 32 for i in _loaded_images(d, "#grid img"))
        ),
        "the four horses",
    )
    spread = browser.execute_script(
        "const img = document.querySelector('#grid img');"
        "const c = document.createElement('canvas'); c.width = 32; c.height = 32;"
        "const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        "const p = g.getImageData(0, 0, 32, 32).data; let s = 0;"
        "for (let i = 0; i < p.length; i += 4) s += Math.abs(p[i] - p[i + 2]);"
        "return s / (p.length / 4);"
    )
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(api["images"][0]["png"]))))
    want = np.abs(first[..., 0].astype(int) - first[..., 2]).mean()
    assert want > 5 and abs(spread - want) < 0.5, (spread, want)
    Select(browser.find_element("id", "model")).select_by_value("tiny-a")  # the page keeps it


def test_generate_walk_and_score(browser: Any, ui_server: Server, tmp_path: Path) -> None:
    _open(browser, ui_server)

    # Generate: 9 images of seeds 42..50, exactly the API's PNGs.
    _set(browser, "seed", "42")
    _set(browser, "n", "9")
    browser.find_element("id", "generate-btn").click()
    _wait(
        browser,
        lambda d: (
            len(images := _loaded_images(d, "#grid img")) == 9
            and all(i["complete"] and i["w"] > 0 for i in images)
        ),
        "9 generated images",
    )
    images = _loaded_images(browser, "#grid img")
    assert {(i["w"], i["h"]) for i in images} == {(28, 28)}
    captions = [e.text for e in browser.find_elements("css selector", "#grid figcaption")]
    assert captions == [str(s) for s in range(42, 51)]
    api = httpx.post(f"{ui_server.url}/generate", json={"seed": 42, "n": 9}, timeout=30).json()
    assert [i["src"] for i in images] == [
        f"data:image/png;base64,{i['png']}" for i in api["images"]
    ]

    # Latent walk: clicking tiles picks its ends; a 4x GIF appears.
    browser.find_elements("css selector", "#grid .tile")[1].click()
    assert browser.find_element("id", "seed-a").get_attribute("value") == "43"
    _set(browser, "seed-b", "7")
    _set(browser, "steps", "8")
    browser.find_element("id", "walk-btn").click()
    _wait(
        browser,
        lambda d: any(i["complete"] and i["w"] > 0 for i in _loaded_images(d, "#walk-result img")),
        "the latent walk",
    )
    (walk,) = _loaded_images(browser, "#walk-result img")
    assert (walk["w"], walk["h"]) == (28 * 4, 28 * 4)
    assert walk["src"].startswith("blob:")
    link = browser.find_element("css selector", "#walk-result a[download]")
    assert link.get_attribute("download") == "walk-43-7-8.gif"

    # Score a file through the file input (what a drop does): the number and its bar appear.
    png = base64.b64decode(api["images"][0]["png"])
    path = tmp_path / "seed-42.png"
    path.write_bytes(png)
    browser.find_element("id", "files").send_keys(str(path))
    value = _wait(
        browser,
        lambda d: (
            re.fullmatch(
                r"\d\.\d{3}", d.find_element("css selector", "#scores .realness-value").text
            )
            and d.find_element("css selector", "#scores .realness-value").text
        ),
        "a realness number",
    )
    expected = httpx.post(
        f"{ui_server.url}/score", files=[("images", ("seed-42.png", png, "image/png"))], timeout=30
    ).json()["scores"][0]["realness"]
    assert float(value) == pytest.approx(expected, abs=5e-4)
    assert browser.find_element("css selector", "#scores .name").text == "seed-42.png · tiny-a"
    bar = browser.find_element("css selector", "#scores .bar")
    assert float(bar.get_attribute("aria-valuenow")) == pytest.approx(expected, abs=1e-6)
    _wait(
        browser,
        lambda d: (
            d.execute_script(
                "return document.querySelector('#scores .bar span').getBoundingClientRect().width"
            )
            > 0
        ),
        "the realness bar to fill",
    )

    # The docs' picture: the RGB model, a strip and a few more scores (see _screenshot).
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        _screenshot(browser, tmp_path)


def test_api_errors_are_shown(browser: Any, ui_server: Server, tmp_path: Path) -> None:
    _open(browser, ui_server)
    _set(browser, "n", "1000")
    browser.find_element("id", "generate-btn").click()
    error = _wait(
        browser,
        lambda d: (e := d.find_element("id", "generate-error")).is_displayed() and e,
        "the generate error",
    )
    assert "n must be in [1, 64], got 1000" in error.text
    assert "400 invalid_field" in error.text
    assert browser.find_element("id", "n").get_attribute("aria-invalid") == "true"

    # Fixing the field clears the error on the next try.
    _set(browser, "n", "2")
    browser.find_element("id", "generate-btn").click()
    _wait(browser, lambda d: len(_loaded_images(d, "#grid img")) == 2, "2 images")
    assert not browser.find_element("id", "generate-error").is_displayed()
    assert browser.find_element("id", "n").get_attribute("aria-invalid") is None

    # A file that is not an image: the API's message names it.
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    browser.find_element("id", "files").send_keys(str(bad))
    error = _wait(
        browser,
        lambda d: (e := d.find_element("id", "score-error")).is_displayed() and e,
        "the score error",
    )
    assert "images[0] (notes.png)" in error.text
    assert "not_an_image" in error.text


KEY = "test-key-0123456789abcdef"


@pytest.fixture
def keyed_url(tiny_models_dir: Path) -> Iterator[str]:
    # The service's own API-key check (GAN_API_KEY): everything but the page's files needs it.
    settings = Settings(models_dir=tiny_models_dir, default_model="tiny-a", api_keys=(KEY,))
    store = ModelStore.load(settings)
    app = build_app(settings, store, registry=CollectorRegistry())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_api_key_prompt(browser: Any, keyed_url: str) -> None:
    browser.get(f"{keyed_url}/ui/")
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"), "the page")
    assert browser.execute_script("return document.body.dataset.ready") == "error"
    form = browser.find_element("id", "auth")
    assert form.is_displayed()
    assert "missing API key" in form.text
    _set(browser, "api-key", KEY)
    browser.find_element("css selector", "#auth button[type=submit]").click()
    _wait(browser, lambda d: len(d.find_elements("css selector", "#model option")) == 2, "models")
    assert not browser.find_element("id", "auth").is_displayed()
    assert not browser.find_element("id", "banner").is_displayed()
    _set(browser, "n", "3")
    browser.find_element("id", "generate-btn").click()
    _wait(browser, lambda d: len(_loaded_images(d, "#grid img")) == 3, "3 images with the key")
    # Kept for the next visit (localStorage, this origin only).
    browser.get(f"{keyed_url}/ui/")
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"), "the page")
    assert browser.execute_script("return document.body.dataset.ready") == "true"
    browser.execute_script("localStorage.clear()")


def _screenshot(driver: Any, tmp_path: Path) -> None:
    """docs/ui-screenshot.png: the bundled MNIST model's grid of one class (its picker shown), a
    walk strip and the grid's scores."""
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "model")).select_by_value("mnist-dcgan")
    Select(driver.find_element("id", "class")).select_by_value("7")
    _set(driver, "seed", "2024")
    _set(driver, "n", "16")
    driver.find_element("id", "generate-btn").click()
    _wait(
        driver,
        lambda d: [i["w"] for i in _loaded_images(d, "#grid img") if i["complete"]] == [28] * 16,
        "16 mnist-dcgan images",
    )
    _set(driver, "seed-a", "2024")
    _set(driver, "seed-b", "2031")
    _set(driver, "steps", "9")
    Select(driver.find_element("id", "walk-format")).select_by_value("png")
    Select(driver.find_element("id", "walk-scale")).select_by_value("2")
    driver.find_element("id", "walk-btn").click()
    _wait(
        driver,
        lambda d: (
            [i["w"] for i in _loaded_images(d, "#walk-result img") if i["complete"]] == [9 * 58 + 2]
        ),
        "the walk strip",
    )
    driver.find_element("id", "score-grid").click()  # 16 files: two requests of 8 here
    _wait(
        driver,
        lambda d: len(d.find_elements("css selector", "#scores .score:not(.pending)")) == 17,
        "the grid's 16 scores",
    )
    # An exact 1280x1000 viewport (a window size would include the browser's own frame).
    metrics = {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        driver.execute_script("window.scrollTo(0, 0)")
        driver.execute_script("return new Promise(r => setTimeout(r, 600))")  # bars' transition
        png = driver.get_screenshot_as_png()
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(png)).convert("RGB").save(SCREENSHOT, optimize=True)
