"""Every metric's label set is bounded, whatever the traffic (API key on and off): requests to
made-up paths, with or without a key, add no series to /metrics and nothing to the Prometheus
multiprocess folder (BentoML's own request metrics label every URL path; the front door,
service/fast_path.py, keeps made-up paths away from them)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from rel_helpers import Target

pytestmark = pytest.mark.integration

JUNK = 1000


def _series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def _folder_bytes(target: Target) -> int:
    folder = Path(target.server.log_path).parent / "prometheus_multiproc_dir"
    return sum(f.stat().st_size for f in folder.glob("*.db"))


def _junk_paths(count: int) -> list[str]:
    prefixes = ("/", "/ui/", "/static_content/", "/generate/", "/metrics/", "/readyz/", "//")
    return [f"{prefixes[i % len(prefixes)]}{uuid.uuid4().hex}" for i in range(count)]


def test_made_up_paths_add_no_series(target: Target) -> None:
    with target.client() as client:
        client.post("/generate", json={"seed": 1})
        url = target.server.url  # absolute URLs: httpx would fold "//x" into "/"
        for path in _junk_paths(50):  # every kind of answer once, before counting
            httpx.get(url + path)
            client.get(url + path)
        before = client.get("/metrics").text
        folder_before = _folder_bytes(target)
        statuses: set[int] = set()
        # without the key (anyone who can reach the port), and with it when there is one
        with httpx.Client(base_url=target.server.url, timeout=30) as anyone:
            for path in _junk_paths(JUNK):
                statuses.add(anyone.get(url + path).status_code)
        if target.key:
            for path in _junk_paths(200):
                statuses.add(client.get(url + path).status_code)
        r = client.get(f"/{uuid.uuid4().hex}")
        assert r.status_code == 404 and r.json()["reason"] == "not_found"
        after = client.get("/metrics").text
    assert statuses == ({401, 404} if target.key else {404})
    grown = _series(after) - _series(before)
    assert grown <= 5, f"{grown} new series for {JUNK} made-up paths"
    assert len(after) < 2 * len(before)
    assert _folder_bytes(target) <= folder_before + 256 * 1024
