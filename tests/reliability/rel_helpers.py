"""Shared constants and helpers of the reliability tests (imported by name: this folder is on
sys.path under pytest's default import mode, like tests/integration's server_process)."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from integration.server_process import Server

API_KEY = "rel-test-key-0123456789abcdef-XYZ"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class Target:
    """A shared server, with or without the API key (the ``target`` fixture)."""

    server: Server
    headers: dict[str, str]  # what a client holding the key (if any) sends
    key: bool

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=self.headers, timeout=30, **kwargs)


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


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def worker_pids(server_pid: int) -> list[int]:
    """The worker processes of the ``bentoml serve`` with this pid (its circus children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        alive = fields[0] not in ("Z", "X")
        if alive and int(fields[1]) == server_pid and b"_bentoml_impl.worker.service" in cmdline:
            found.append(int(entry.name))
    return sorted(found)
