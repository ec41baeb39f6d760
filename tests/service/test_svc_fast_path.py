"""The fast path's dispatcher: which app answers, what it counts, and how it hooks BentoML."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.fast_path import HOT_PATHS, FastPath, install_fast_path
from service.metrics import GanMetrics


def _app(name: str, calls: list[tuple[str, str]], status: int = 200) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append((name, scope.get("path", scope["type"])))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"x"})

    return app


def _call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> tuple[GanMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return GanMetrics(8, registry=registry), registry


def test_hot_paths_go_to_our_app_and_the_rest_to_bentoml(metrics: Any) -> None:
    calls: list[tuple[str, str]] = []
    fast = FastPath(_app("bento", calls), _app("ours", calls, 201), metrics=lambda: metrics[0])
    for path in ("/generate", "/score", "/livez", "/metrics", "/generate/", "/ui/"):
        _call(fast, {"type": "http", "path": path, "method": "POST"})
    _call(fast, {"type": "lifespan"})  # start-up must reach BentoML: it starts our app
    assert calls == [
        ("ours", "/generate"),
        ("ours", "/score"),
        ("bento", "/livez"),
        ("bento", "/metrics"),
        ("bento", "/generate/"),
        ("bento", "/ui/"),
        ("bento", "lifespan"),
    ]
    assert {"/generate", "/generate_grid", "/score", "/interpolate", "/models"} == HOT_PATHS


def test_counts_requests_by_endpoint_and_status(metrics: Any) -> None:
    gan, registry = metrics
    calls: list[tuple[str, str]] = []
    ok = FastPath(_app("bento", calls), _app("ours", calls, 200), metrics=lambda: gan)
    bad = FastPath(_app("bento", calls), _app("ours", calls, 422), metrics=lambda: gan)
    for _ in range(3):
        _call(ok, {"type": "http", "path": "/generate"})
    _call(bad, {"type": "http", "path": "/generate"})
    _call(ok, {"type": "http", "path": "/livez"})  # BentoML's: not ours to count
    name = "gan_http_requests_total"
    assert _value(registry, name, endpoint="generate", code="200") == 3
    assert _value(registry, name, endpoint="generate", code="422") == 1
    assert _value(registry, name, endpoint="livez", code="200") is None
    assert _value(registry, "gan_http_request_seconds_count", endpoint="generate") == 4


def test_an_app_that_raises_is_counted_as_500(metrics: Any) -> None:
    gan, registry = metrics

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    fast = FastPath(_app("bento", []), broken, metrics=lambda: gan)
    with pytest.raises(RuntimeError):
        _call(fast, {"type": "http", "path": "/score"})
    assert _value(registry, "gan_http_requests_total", endpoint="score", code="500") == 1


def test_without_metrics_yet_it_still_answers() -> None:
    calls: list[tuple[str, str]] = []
    fast = FastPath(_app("bento", calls), _app("ours", calls), metrics=lambda: None)
    sent = _call(fast, {"type": "http", "path": "/models"})
    assert calls == [("ours", "/models")] and sent[0]["status"] == 200


def test_install_wraps_only_the_hooked_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from _bentoml_impl.server import app as bento_app_module

    class Factory:
        def __init__(self, service: object) -> None:
            self.service = service

        def __call__(self) -> str:
            return f"bento app of {self.service}"

    monkeypatch.setattr(bento_app_module, "ServiceAppFactory", Factory)
    ours = _app("ours", [])
    assert install_fast_path("svc-a", ours, lambda: None)
    assert install_fast_path("svc-a", ours, lambda: None)  # idempotent: wrapped once
    wrapped = Factory("svc-a")()
    assert isinstance(wrapped, FastPath)
    assert wrapped.bento == "bento app of svc-a" and wrapped.ours is ours
    assert Factory("svc-b")() == "bento app of svc-b"
