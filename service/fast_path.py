"""The front door: every request meets our dispatcher before any of BentoML's middlewares.

BentoML's own paths (``/livez``, ``/healthz``, ``/readyz``, ``/metrics``, ``/docs.json``, its index
and static files) go to BentoML's app (behind the API key when one is set); everything else goes
straight to ours (``service/app.py``), which answers its routes and a JSON 404 for any other path.
Two reasons:

- Bounded metrics (docs/reliability.md): BentoML's request metrics label every URL path, so
  requests to made-up paths grew ``/metrics`` (and each worker's memory) without bound, before
  any API key check. Only the fixed set of BentoML's own paths reaches them now.
- Speed (BENCHMARKS.md, "Where the time goes"): BentoML 1.4 runs every request through its own
  stack (Prometheus request metrics, OpenTelemetry's URL check, ``TimeoutMiddleware`` with a task
  and a 60 s timer per request, a request context). For ``/generate`` n=1 that was about half of
  the server's CPU per request. Our app does what those give our routes itself (time limit, API
  key, per-route metrics). With ``fast=False`` (``GAN_FAST_PATH=false``, or tracing or the
  access log on, which live in that stack) the API routes go through BentoML again.

The ASGI lifespan goes to BentoML unchanged (it starts our app through BentoML's mount).

How it is hooked: ``service/bento_internals.py`` (every contact with BentoML's private code) wraps
the method that builds a worker's ASGI app, for our service only, and takes BentoML's own
endpoints of the declared ``@bentoml.api`` methods (``service/bento_api.py``) out of its router.
With the fast path on, ``bentoml_service_request_*`` still counts the API routes
(``ServiceRequestMetrics``), with the same labels BentoML gives them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from service import api, bento_internals, oip
from service.asgi import ASGIApp, Receive, Scope, Send
from service.bento_internals import BENTO_ROUTES, ServiceRequestMetrics

log = logging.getLogger("gan.fast_path")


class FrontDoor:
    """ASGI dispatcher: BentoML's paths to ``bento``, the rest to ``ours``."""

    def __init__(
        self,
        bento: ASGIApp,
        ours: ASGIApp,
        *,
        fast: bool = True,
        bento_paths: Iterable[str] = BENTO_ROUTES,
        guard: Callable[[ASGIApp], ASGIApp] | None = None,
        metrics_path_app: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        self.lifespan_app = bento
        guarded = guard(bento) if guard is not None else bento
        self.bento = guarded
        self.metrics_app = metrics_path_app(guarded) if metrics_path_app is not None else guarded
        # BentoML's request metrics never see what comes straight to us: the API routes on the
        # fast path, /v2 always (off the fast path BentoML's middleware counts the API routes).
        self.ours = ServiceRequestMetrics(ours, api_endpoint_label if fast else v2_endpoint_label)
        self.to_bento = frozenset(bento_paths) | (frozenset() if fast else api.ROUTE_PATHS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan_app(scope, receive, send)
            return
        path = scope.get("path", "")
        if kind != "http" or path in self.to_bento:
            await (self.metrics_app if path == "/metrics" else self.bento)(scope, receive, send)
            return
        await self.ours(scope, receive, send)


# The Open Inference Protocol's routes, by their (bounded) label in service/oip.py: one
# templated path each, never the model name or a made-up URL.
V2_ENDPOINTS = {
    oip.SERVER: "/v2",
    oip.HEALTH: "/v2/health/{live,ready}",
    oip.MODEL: "/v2/models/{name}",
    oip.READY: "/v2/models/{name}/ready",
    oip.INFER: "/v2/models/{name}/infer",
}


def api_endpoint_label(path: str) -> str | None:
    """``bentoml_service_request_*``'s ``endpoint`` label: the path, as BentoML labels its own
    routes, for the API's routes; a templated path for /v2 ones; None for anything else, which
    is not counted there."""
    if api.route_for_path(path) is not None:
        return path
    return v2_endpoint_label(path)


def v2_endpoint_label(path: str) -> str | None:
    v2 = oip.endpoint_label(path)
    return None if v2 is None else V2_ENDPOINTS.get(v2)


def install_front_door(service: Any, ours: ASGIApp, **options: Any) -> bool:
    """Make ``service.to_asgi()`` return ``FrontDoor(BentoML's app, ours, **options)``, with
    BentoML's endpoints of the declared APIs removed. True when hooked."""
    declared = [r.name for r in api.ROUTES]
    return bento_internals.hook_worker_app(
        service, lambda bento: FrontDoor(bento, ours, **options), declared
    )
