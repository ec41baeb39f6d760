"""Hostile uploads for ``/score`` (tests/reliability/hostile.py): each gets its documented answer
(a JSON 4xx naming the file, or a 200 for awkward-but-valid images), the next good request
works, and nothing is ever a 500."""

from __future__ import annotations

import httpx
import pytest
from hostile import Hostile, corpus
from integration.server_process import Server
from rel_helpers import internal_errors

pytestmark = pytest.mark.integration

CORPUS = corpus()


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_upload_gets_its_answer_and_the_server_carries_on(
    rel_client: httpx.Client, case: Hostile
) -> None:
    r = rel_client.post("/score", files=[("images", f) for f in case.files])
    assert r.status_code == case.status, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if case.status == 200:
        assert len(body["scores"]) == len(case.files)
        assert all(0.0 <= s["realness"] <= 1.0 for s in body["scores"])
    else:
        assert body["reason"] == case.reason, body
        assert isinstance(body["error"], str) and body["error"]
        if case.reason in ("not_an_image", "corrupt_image", "image_too_large"):
            assert body["field"] == "images" and "images[" in body["error"], body
    # The next good request works.
    good = rel_client.post("/generate", json={"seed": 7})
    assert good.status_code == 200


def test_no_upload_ever_caused_an_internal_error(
    rel_client: httpx.Client, rel_server: Server
) -> None:
    for case in CORPUS[:5]:  # also when this test runs alone
        rel_client.post("/score", files=[("images", f) for f in case.files])
    assert internal_errors(rel_client) == 0
    assert "Traceback" not in rel_server.log()
