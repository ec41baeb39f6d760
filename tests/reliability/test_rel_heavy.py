"""Expensive requests against a real ``bentoml serve`` (one worker, one expensive request at a
time; limits.py): beyond the limit a 429 with Retry-After, cheap requests are not held up, and a
client that hangs up frees its slot at once."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from integration.server_process import Server, launch, wait_ready
from rel_helpers import metric_value

pytestmark = pytest.mark.integration

# The largest walk of tiny-b (32x32 RGB) within the output budget: 126 GIF frames of 256x256
# (seconds of encoding).
LARGEST = {"seed_a": 1, "seed_b": 2, "steps": 64, "format": "gif", "scale": 8, "model": "tiny-b"}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"GAN_WORKERS": "1", "GAN_HEAVY_CONCURRENCY": "1"}
    srv = launch(tiny_models_dir, tmp_path_factory.mktemp("heavy_home"), env)
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


async def _flood(url: str, clients: int) -> tuple[list[httpx.Response], list[float]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        walks = [
            asyncio.create_task(client.post("/interpolate", json=LARGEST)) for _ in range(clients)
        ]
        await asyncio.sleep(0.05)
        cheap = []
        for i in range(5):
            t0 = time.monotonic()
            r = await client.post("/generate", json={"seed": i})
            assert r.status_code == 200
            cheap.append(time.monotonic() - t0)
        return list(await asyncio.gather(*walks)), cheap


def test_beyond_the_limit_expensive_requests_get_429_and_cheap_ones_pass(server: Server) -> None:
    answers, cheap = asyncio.run(_flood(server.url, 4))
    codes = sorted(r.status_code for r in answers)
    assert 200 in codes and 429 in codes, codes
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["reason"] == "busy" and busy.json()["field"] is None
    assert max(cheap) < 2.0, cheap
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        metric_value(text, "gan_request_errors_total", endpoint="interpolate", reason="busy") >= 1
    )


def test_a_client_that_hangs_up_frees_its_slot(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps(LARGEST).encode()
    before = metric_value(
        httpx.get(f"{server.url}/metrics").text,
        "gan_request_errors_total",
        endpoint="interpolate",
        reason="client_disconnected",
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /interpolate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        time.sleep(0.05)  # admitted, working
    # gone: the slot is free again well before the walk would have finished
    deadline = time.monotonic() + 10
    counted = before
    while time.monotonic() < deadline and counted == before:
        counted = metric_value(
            httpx.get(f"{server.url}/metrics").text,
            "gan_request_errors_total",
            endpoint="interpolate",
            reason="client_disconnected",
        )
        time.sleep(0.05)
    assert counted == before + 1
    small = {**LARGEST, "steps": 2, "scale": 1}
    assert httpx.post(f"{server.url}/interpolate", json=small, timeout=30).status_code == 200
