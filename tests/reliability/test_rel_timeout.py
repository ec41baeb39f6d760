"""The per-request time limit (GAN_REQUEST_TIMEOUT_S, service/limits.py): 503 + Retry-After when
the server is the slow party, 408 when the client's body is; in-process and on a real server."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.server_process import Server, launch, wait_ready
from PIL import Image
from rel_helpers import metric_value, raw_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.limits import RequestTimeoutMiddleware

# --- in-process ------------------------------------------------------------------------------


async def _slow(request: Request) -> JSONResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0")))
    return JSONResponse({"ok": True})


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


def _app() -> tuple[RequestTimeoutMiddleware, list[str]]:
    seen: list[str] = []
    inner = Starlette(routes=[Route("/slow", _slow), Route("/echo", _echo, methods=["POST"])])
    return (
        RequestTimeoutMiddleware(inner, 0.3, on_timeout=lambda scope, reason: seen.append(reason)),
        seen,
    )


async def _call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)


async def _trickle() -> AsyncIterator[bytes]:
    for _ in range(10):
        await asyncio.sleep(0.1)
        yield b"x"


def test_fast_requests_pass_untouched() -> None:
    app, seen = _app()
    r = asyncio.run(_call(app, "GET", "/slow?s=0"))
    assert r.status_code == 200 and r.json() == {"ok": True} and seen == []


def test_slow_work_gets_503_with_retry_after() -> None:
    app, seen = _app()
    start = time.monotonic()
    r = asyncio.run(_call(app, "GET", "/slow?s=5"))
    assert time.monotonic() - start < 2
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json() == {
        "error": "not answered within 0.3 s (server busy); retry later",
        "reason": "timeout",
        "field": None,
    }
    assert seen == ["timeout"]


def test_slow_upload_gets_408() -> None:
    app, seen = _app()
    r = asyncio.run(_call(app, "POST", "/echo", content=_trickle()))
    assert r.status_code == 408 and r.json()["reason"] == "request_timeout"
    assert seen == ["request_timeout"]


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        RequestTimeoutMiddleware(Starlette(), 0)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 9).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_server(
    tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Every generate or score request waits 1 s for batch company (a batch size nothing
    fills), against a time limit of 0.5 s."""
    srv = launch(
        tiny_models_dir,
        tmp_path_factory.mktemp("slow_home"),
        {
            "GAN_REQUEST_TIMEOUT_S": "0.5",
            "GAN_MAX_LATENCY_MS": "1000",
            "GAN_MAX_BATCH_SIZE": "4096",
        },
    )
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


@pytest.mark.integration
def test_server_answers_503_json_when_the_work_takes_too_long(slow_server: Server) -> None:
    with httpx.Client(base_url=slow_server.url, timeout=30) as client:
        start = time.monotonic()
        r = client.post("/generate", json={"seed": 1, "n": 2})
        assert time.monotonic() - start < 5
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["reason"] == "timeout"
        # Cheap routes are unaffected, the server carries on, and the timeouts are counted.
        assert client.get("/models").status_code == 200
        files = [("images", ("a.png", _png()))]
        assert client.post("/score", files=files).status_code == 503
        text = client.get("/metrics").text
        for endpoint in ("generate", "score"):
            found = metric_value(
                text, "gan_request_errors_total", endpoint=endpoint, reason="timeout"
            )
            assert found == 1, endpoint
        assert metric_value(text, "gan_request_errors_total", reason="internal") == 0


@pytest.mark.integration
def test_server_answers_408_to_a_stalled_upload(slow_server: Server) -> None:
    """Headers and half a body, then silence: 408 after the time limit, not a hang. (A raw
    socket, because a client still blocked sending its body may never read an early answer.)"""
    start = time.monotonic()
    head, body = raw_request(
        slow_server.url,
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 40\r\n\r\n{"seed": 1, ',
    )
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"request_timeout" in body
    assert time.monotonic() - start < 5
