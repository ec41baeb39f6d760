"""BentoML's Swagger page at ``/`` in a real headless chromium: it lists every route of the API
(declared with ``@bentoml.api``, service/bento_api.py) and "Try it out" runs one for real."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_process import Server
from test_ui_browser import _wait

pytestmark = pytest.mark.integration

ROUTES = ("/generate", "/generate_grid", "/interpolate", "/score", "/models")


def test_swagger_lists_and_tries_the_api(browser: Any, ui_server: Server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{ui_server.url}/")

    def listed(driver: Any) -> set[str] | bool:
        paths = {
            e.text.replace("\u200b", "").strip()
            for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        }
        return paths if set(ROUTES) <= paths else False

    _wait(browser, listed, f"Swagger to list {ROUTES}")

    block = next(
        b
        for b in browser.find_elements(By.CSS_SELECTOR, ".opblock")
        if b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text.replace("\u200b", "")
        == "/generate"
    )
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    _wait(
        browser,
        lambda d: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"),
        "the Try it out button",
    )[0].click()
    editor = _wait(
        browser,
        lambda d: block.find_elements(By.CSS_SELECTOR, "textarea.body-param__text"),
        "the request body editor",
    )[0]
    editor.clear()
    editor.send_keys(json.dumps({"seed": 42, "n": 2}))
    block.find_element(By.CSS_SELECTOR, ".execute").click()

    def answered(driver: Any) -> str | bool:
        cells = block.find_elements(
            By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status"
        )
        bodies = block.find_elements(By.CSS_SELECTOR, ".live-responses-table .microlight")
        if cells and bodies and cells[0].text.strip():
            return cells[0].text.strip() + "\n" + bodies[0].text
        return False

    status_and_body = _wait(browser, answered, "the response of /generate")
    status, body = status_and_body.split("\n", 1)
    assert status == "200", status_and_body[:500]
    assert '"seed": 43' in body and '"model": "tiny-a"' in body
