"""The connection guard (service/connections.py) under a real uvicorn in this process: head size
and line count (431), head time (408 / silent close), connections per worker."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fixtures.in_process import exchange

from service import connections
from service.connections import ConnectionLimits, GuardedHttpToolsProtocol

LIMITS = ConnectionLimits(
    max_header_bytes=4096, max_headers=20, header_timeout_s=0.5, max_connections=16
)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        import asyncio

        await asyncio.sleep(3)
    body = json.dumps({"ok": True}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def port() -> Iterator[int]:
    connections.use_limits(LIMITS)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, http=GuardedHttpToolsProtocol, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        connections.use_limits(ConnectionLimits.from_settings(connections.Settings()))


def _exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    return exchange(("127.0.0.1", port), data, timeout)


def test_a_normal_request_passes(port: int) -> None:
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_an_oversized_header_is_refused_as_it_arrives(port: int) -> None:
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n"
    t0 = time.monotonic()
    answer = _exchange(port, big)
    assert time.monotonic() - t0 < 3
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["reason"] == "headers_too_large" and body["field"] is None


def test_a_head_over_the_limit_in_one_piece_is_refused(port: int) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    assert _exchange(port, head).startswith(b"HTTP/1.1 431")


def test_too_many_header_lines_are_refused(port: int) -> None:
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_slow_head_gets_408_and_a_silent_connection_is_closed(port: int) -> None:
    t0 = time.monotonic()
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == "request_timeout"
    assert _exchange(port, b"") == b""  # nothing sent, nothing answered: closed
    assert time.monotonic() - t0 < 4


def test_over_the_connection_limit_the_oldest_idle_ones_make_room(port: int) -> None:
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.1)
        answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b""  # the oldest idle one was closed
    finally:
        for s in idle:
            s.close()


def test_when_every_connection_is_busy_a_new_one_gets_503(port: int) -> None:
    busy = []
    try:
        for _ in range(LIMITS.max_connections):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            busy.append(s)
        time.sleep(0.3)
        answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"too_many_connections" in answer and b"retry-after: 1" in answer
    finally:
        for s in busy:
            s.close()


def test_auto_limit_follows_the_descriptor_limit() -> None:
    assert 16 <= connections.auto_max_connections() <= connections.MAX_AUTO_CONNECTIONS
