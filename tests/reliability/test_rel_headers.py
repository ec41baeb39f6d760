"""Hostile request heads and slow or idle connections against a real ``bentoml serve`` (2
workers, ``ulimit -n 256``, API key on and off; service/connections.py): oversized or endless
headers get a 431 before any key check, slow heads a 408, silent connections are closed, and
idle connections beyond the descriptors a worker has make room for fresh requests."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.in_process import exchange
from integration.server_process import Server, launch, wait_ready
from rel_helpers import AUTH

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 2.0
NOFILE = 256


@pytest.fixture(scope="module", params=["key", "no key"])
def server(
    request: pytest.FixtureRequest, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    key = request.param == "key"
    env = {"GAN_WORKERS": "2", "GAN_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    if key:
        env["GAN_API_KEY"] = AUTH["Authorization"].removeprefix("Bearer ")
    srv = launch(tiny_models_dir, tmp_path_factory.mktemp("headers_home"), env, nofile=NOFILE)
    try:
        wait_ready(srv)
        yield srv, (dict(AUTH) if key else {})
    finally:
        srv.stop()


def _address(srv: Server) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").split(":")
    return host, int(port)


def _exchange(srv: Server, data: bytes, timeout: float = 15.0) -> tuple[bytes, float]:
    t0 = time.monotonic()
    answer = exchange(_address(srv), data, timeout)
    return answer, time.monotonic() - t0


def _body(answer: bytes) -> dict[str, object]:
    body: dict[str, object] = json.loads(answer.partition(b"\r\n\r\n")[2])
    return body


def _still_serves(srv: Server, headers: dict[str, str]) -> None:
    r = httpx.post(f"{srv.url}/generate", json={"seed": 1}, headers=headers, timeout=30)
    assert r.status_code == 200


@pytest.mark.parametrize("megabytes", [2, 20])
def test_a_huge_header_is_refused_431_before_the_key_check(
    server: tuple[Server, dict[str, str]], megabytes: int
) -> None:
    srv, headers = server
    head = b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Big: "
    data = head + b"a" * (megabytes * 2**20) + b'\r\nContent-Length: 11\r\n\r\n{"seed": 1}'
    answer, seconds = _exchange(srv, data)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert _body(answer)["reason"] == "headers_too_large"
    assert seconds < 5
    _still_serves(srv, headers)


def test_too_many_header_lines_are_refused_431(server: tuple[Server, dict[str, str]]) -> None:
    srv, headers = server
    lines = b"".join(b"X-Line-%d: 1\r\n" % i for i in range(150))
    answer, _ = _exchange(srv, b"GET /models HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    _still_serves(srv, headers)


def test_a_head_that_never_ends_gets_408_and_a_silent_connection_is_closed(
    server: tuple[Server, dict[str, str]],
) -> None:
    srv, _ = server
    answer, seconds = _exchange(srv, b"GET /models HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert _body(answer)["reason"] == "request_timeout"
    assert HEADER_TIMEOUT_S - 0.5 < seconds < HEADER_TIMEOUT_S + 5
    silent, seconds = _exchange(srv, b"")
    assert silent == b"" and seconds < HEADER_TIMEOUT_S + 5


def test_idle_connections_beyond_the_descriptors_make_room_for_fresh_requests(
    server: tuple[Server, dict[str, str]],
) -> None:
    """600 silent connections on two workers that have 256 descriptors each: the oldest idle
    ones are closed (and it is logged), so that fresh requests still get through."""
    srv, headers = server
    idle = []
    try:
        for _ in range(600):
            idle.append(socket.create_connection(_address(srv), timeout=10))
        failed = []
        for i in range(20):
            try:
                r = httpx.post(
                    f"{srv.url}/generate",
                    json={"seed": i},
                    headers={**headers, "Connection": "close"},
                    timeout=10,
                )
                if r.status_code != 200:
                    failed.append(r.status_code)
            except httpx.HTTPError as exc:
                failed.append(type(exc).__name__)
        assert failed == []
    finally:
        for sock in idle:
            sock.close()
    assert "connections at" in srv.log() and "closing the oldest idle connections" in srv.log()
