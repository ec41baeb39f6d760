"""The front door: which app answers each path, and how it hooks BentoML."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.bento_internals import BENTO_ROUTES, ServiceRequestMetrics, bento_static_paths
from service.fast_path import FrontDoor, install_front_door


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


PATHS = ("/generate", "/score", "/livez", "/metrics", "/generate/", "/ui/", "/x/../metrics", "/")


def test_bentoml_paths_go_to_bentoml_and_every_other_path_to_our_app() -> None:
    calls: list[tuple[str, str]] = []
    door = FrontDoor(_app("bento", calls), _app("ours", calls, 201))
    for path in PATHS:
        _call(door, {"type": "http", "path": path, "method": "POST"})
    _call(door, {"type": "lifespan"})  # start-up must reach BentoML: it starts our app
    assert calls == [
        ("ours", "/generate"),
        ("ours", "/score"),
        ("bento", "/livez"),
        ("bento", "/metrics"),
        ("ours", "/generate/"),  # a made-up path: our JSON 404, never a BentoML label
        ("ours", "/ui/"),
        ("ours", "/x/../metrics"),
        ("bento", "/"),
        ("bento", "lifespan"),
    ]


def test_without_the_fast_path_api_routes_go_through_bentoml_but_unknown_paths_do_not() -> None:
    calls: list[tuple[str, str]] = []
    door = FrontDoor(_app("bento", calls), _app("ours", calls), fast=False)
    for path in ("/generate", "/models", "/made-up", "/readyz"):
        _call(door, {"type": "http", "path": path})
    assert calls == [
        ("bento", "/generate"),
        ("bento", "/models"),
        ("ours", "/made-up"),
        ("bento", "/readyz"),
    ]


def test_bentoml_paths_get_the_guard_but_the_lifespan_does_not() -> None:
    calls: list[tuple[str, str]] = []

    def guard(app: Any) -> Any:
        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            calls.append(("guard", scope.get("path", scope["type"])))
            await app(scope, receive, send)

        return guarded

    door = FrontDoor(_app("bento", calls), _app("ours", calls), guard=guard)
    _call(door, {"type": "http", "path": "/metrics"})
    _call(door, {"type": "lifespan"})
    assert calls == [("guard", "/metrics"), ("bento", "/metrics"), ("bento", "lifespan")]


def test_the_static_files_of_bentomls_index_are_exact_paths() -> None:
    static = bento_static_paths()
    assert static and all(p.startswith(("/static_content/", "/assets/")) for p in static)
    assert "/static_content/made-up.js" not in static
    assert {"/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/"} <= BENTO_ROUTES


def test_install_wraps_only_the_hooked_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from _bentoml_impl.server import app as bento_app_module

    class Factory:
        def __init__(self, service: object) -> None:
            self.service = service

        def __call__(self) -> Any:
            return _app(f"bento of {self.service}", [])

    monkeypatch.setattr(bento_app_module, "ServiceAppFactory", Factory)
    ours = _app("ours", [])
    assert install_front_door("svc-a", ours, fast=True)
    assert install_front_door("svc-a", ours, fast=True)  # idempotent: wrapped once
    wrapped = Factory("svc-a")()
    assert isinstance(wrapped, FrontDoor)
    # the fast path counts the API routes in bentoml_service_request_* around our app
    assert isinstance(wrapped.ours, ServiceRequestMetrics) and wrapped.ours.app is ours
    assert not isinstance(Factory("svc-b")(), FrontDoor)
