"""Shared constants and helpers of the reliability tests (imported by name: this folder is on
sys.path under pytest's default import mode, like tests/integration's server_process)."""

from __future__ import annotations

import re
import socket
import time

import httpx

API_KEY = "rel-test-key-0123456789abcdef-XYZ"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def internal_errors(client: httpx.Client) -> float:
    """``gan_request_errors_total{reason="internal"}``: the service's count of its own 500s."""
    return metric_value(client.get("/metrics").text, "gan_request_errors_total", reason="internal")


def raw_request(url: str, data: bytes, timeout: float = 15.0) -> tuple[bytes, bytes]:
    """Send raw bytes to the server of ``url`` (127.0.0.1 only) and read the answer (headers, then
    Content-Length bytes of body, or until it closes) or until ``timeout``; returns (head, body).

    The body can arrive in a later segment than the headers, so stopping at the blank line
    would make the caller's body checks flaky."""
    host, port = url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout

        def complete() -> bool:
            head, sep, body = received.partition(b"\r\n\r\n")
            if not sep:
                return False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    return len(body) >= int(value.strip())
            return False  # no length: read until the server closes

        while time.monotonic() < deadline and not complete():
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body
