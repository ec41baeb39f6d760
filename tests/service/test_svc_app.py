"""build_app: the assembled app in-process (metrics, API key, unknown paths, time limit)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.in_process import serve
from prometheus_client import CollectorRegistry

from service.app import RequestMetricsMiddleware, Runtime, endpoint_label
from service.metrics import GanMetrics
from service.settings import Settings

KEY = "app-test-key-0123456789"


def _labels(registry: CollectorRegistry, name: str) -> set[str]:
    return {
        s.labels["endpoint"]
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def test_made_up_paths_get_a_json_404_and_share_one_label(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        for i in range(50):
            r = await client.get(f"/made-up-{i}")
            assert r.status_code == 404
            assert r.json() == {"error": "Not Found", "reason": "not_found", "field": None}
        assert (await client.get("/ui/made-up.js")).status_code == 404
        assert (await client.post("/generate", json={"seed": 1})).status_code == 200
        assert _labels(registry, "gan_http_requests_total") == {"unknown", "ui", "generate"}
        assert _labels(registry, "gan_request_errors_total") == {"unknown"}
        assert (
            registry.get_sample_value(
                "gan_http_requests_total", {"endpoint": "unknown", "code": "404"}
            )
            == 50
        )

    serve(tiny_models_dir, scenario)


def test_the_key_is_checked_before_anything_else_and_401s_share_one_label(
    tiny_models_dir: Path,
) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        for path in ("/generate", "/made-up", "/openapi.json"):
            r = await client.get(path)
            assert r.status_code == 401 and r.json()["reason"] == "unauthorized", path
        assert (await client.get("/ui/")).status_code == 200  # the page's files stay open
        ok = await client.get("/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        errors = registry.get_sample_value(
            "gan_request_errors_total", {"endpoint": "auth", "reason": "unauthorized"}
        )
        assert errors == 3

    serve(tiny_models_dir, scenario, api_keys=(KEY,))


def test_the_time_limit_is_part_of_the_app(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/generate", json={"seed": 1})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        counted = registry.get_sample_value(
            "gan_request_errors_total", {"endpoint": "generate", "reason": "timeout"}
        )
        assert counted == 1

    # a batch nothing fills, held for company longer than the time limit
    serve(
        tiny_models_dir,
        scenario,
        request_timeout_s=0.2,
        max_latency_ms=1000,
        max_batch_size=4096,
    )


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/generate", "generate"),
        ("/openapi.json", "openapi"),
        ("/ui", "ui"),
        ("/ui/app.js", "ui"),
        ("/uix", "unknown"),
        ("/generate/x", "unknown"),
        ("", "unknown"),
    ],
)
def test_endpoint_labels_are_bounded(path: str, label: str) -> None:
    assert endpoint_label(path) == label


def _asgi(status: int | None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if status is None:
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def _call(app: Any, path: str) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(app({"type": "http", "path": path}, receive, send))


def test_request_metrics_count_by_endpoint_and_status_and_a_crash_as_500() -> None:
    registry = CollectorRegistry()
    runtime = Runtime(Settings())
    runtime.metrics = GanMetrics(8, registry)
    for _ in range(3):
        _call(RequestMetricsMiddleware(_asgi(200), runtime), "/generate")
    _call(RequestMetricsMiddleware(_asgi(422), runtime), "/generate")
    with pytest.raises(RuntimeError):
        _call(RequestMetricsMiddleware(_asgi(None), runtime), "/score")
    value = registry.get_sample_value
    assert value("gan_http_requests_total", {"endpoint": "generate", "code": "200"}) == 3
    assert value("gan_http_requests_total", {"endpoint": "generate", "code": "422"}) == 1
    assert value("gan_http_requests_total", {"endpoint": "score", "code": "500"}) == 1
    assert value("gan_http_request_seconds_count", {"endpoint": "generate"}) == 4
    assert value("gan_http_requests_in_progress", {"endpoint": "score"}) == 0


def test_before_the_lifespan_it_answers_without_counting() -> None:
    runtime = Runtime(Settings())
    _call(RequestMetricsMiddleware(_asgi(200), runtime), "/models")  # no metrics yet: no crash
