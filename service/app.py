"""``build_app``: the production ASGI app, assembled in one place.

``bentoml serve`` mounts it (``service.py``), and the tests and ``bench/`` run the very same app
under httpx or plain uvicorn. What it holds, outside in:

- per-route request metrics (``gan_http_requests_total`` / ``_seconds`` / ``_in_progress``), with
  a bounded ``endpoint`` label (an API route's name, ``openapi``, ``ui``, one of
  ``oip.ENDPOINTS`` or ``unknown``);
- the API key (``auth.py``) when ``GAN_API_KEY`` is set;
- the per-request time limit (``limits.py``);
- the routes (``api.py``'s table, handlers in ``http_app.py``), the Open Inference Protocol's
  ``/v2/...`` (``oip.py``), ``/openapi.json``, the web page;
  every error JSON, unknown paths included;
- the lifespan: models loaded (or handed in), metrics, the engine and its batchers, the SIGTERM
  refusal of new connections (``shutdown.py``), the heartbeat the supervisor watches
  (``supervisor.py``, only under ``bentoml serve``).
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from service import api, oip
from service.asgi import ASGIApp, Message, Receive, Scope, Send
from service.auth import ApiKeyMiddleware, open_paths
from service.engine import Engine
from service.http_app import api_routes, http_error
from service.limits import RequestTimeoutMiddleware
from service.metrics import GanMetrics
from service.model_store import ModelStore, ModelStoreError
from service.openapi import openapi_endpoint
from service.settings import Settings
from service.shutdown import with_refusal_on_sigterm
from service.supervisor import start_heartbeat
from service.ui import UI_PATH, public_paths, ui_routes

log = logging.getLogger("gan.app")

OPENAPI_PATH = "/openapi.json"

# Python's cyclic GC, tuned for a server process (BENCHMARKS.md, "Where the time goes"): at c=64
# the worker ran ~1 full (gen 2) collection a second, each walking every object BentoML keeps
# alive (its TimeoutMiddleware holds a 60 s timer per request): up to 200 ms pauses, 13% of the
# time, the p95/p99 tail. Startup objects are frozen (never walked again) and collections made
# rarer; request garbage is mostly freed by reference counting anyway. 20-25% less CPU per
# /generate and no gen-2 collection in 25 s at c=64 (bench/, measured interleaved).
GC_THRESHOLDS = (20_000, 50, 100)


# The GIL's switch interval (Python's default: 5 ms). An expensive request's encoding thread
# holds the GIL in its Python and numpy steps; the event loop then waits up to this long each
# time it needs the GIL back, several times per cheap request.
SWITCH_INTERVAL_S = 0.001


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label of a request: bounded whatever the URL."""
    route = api.route_for_path(path)
    if route is not None:
        return route
    if path == OPENAPI_PATH:
        return "openapi"
    v2 = oip.endpoint_label(path)
    if v2 is not None:
        return v2
    if path == UI_PATH or path.startswith(UI_PATH + "/"):
        return "ui"
    return "unknown"


class Runtime:
    """What the lifespan builds (the engine and its metrics), for the middlewares that exist
    before it runs. ``engine`` is None outside the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.metrics: GanMetrics | None = None

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def count_error(self, endpoint: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.request_errors.labels(endpoint, reason).inc()


class RequestMetricsMiddleware:
    """``gan_http_requests_total`` / ``_seconds`` / ``_in_progress``, label children cached:
    ``.labels()`` takes a lock and builds a key on every call, too dear per request."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self._children: dict[tuple[int, str, str], Any] = {}

    def _child(self, metric: Any, endpoint: str, code: str = "") -> Any:
        key = (id(metric), endpoint, code)
        child = self._children.get(key)
        if child is None:
            labels = {"endpoint": endpoint, **({"code": code} if code else {})}
            child = self._children[key] = metric.labels(**labels)
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.runtime.metrics
        if scope["type"] != "http" or metrics is None:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before it answers
        t0 = time.perf_counter()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        endpoint = endpoint_label(scope.get("path", ""))
        in_progress = self._child(metrics.http_requests_in_progress, endpoint)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_recording)
        finally:
            in_progress.dec()
            self._child(metrics.http_requests, endpoint, str(status)).inc()
            self._child(metrics.http_request_seconds, endpoint).observe(time.perf_counter() - t0)


StoreSource = ModelStore | Callable[[], ModelStore]


def build_app(
    settings: Settings,
    store: StoreSource,
    *,
    registry: CollectorRegistry = REGISTRY,
    gc_tuning: bool = False,
) -> Starlette:
    """The whole service as one Starlette app. ``store`` is loaded models, or a function that
    loads them when the app starts (``bentoml serve``: in the worker, not at import).
    ``gc_tuning`` freezes what start-up allocated (for a server process, not a test)."""
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            loaded = store() if callable(store) else store
        except ModelStoreError as exc:
            log.critical("cannot start: %s", exc)
            raise
        metrics = GanMetrics(settings.max_batch_size, registry)
        metrics.record_models(loaded)
        engine = Engine(settings, loaded, metrics)
        app.state.engine = engine
        runtime.metrics, runtime.engine = metrics, engine
        log.info(
            "serving %s (default %r) on %s; broken: %s; settings: %s",
            ", ".join(sorted(loaded.models)),
            loaded.default_name,
            loaded.provider,
            ", ".join(sorted(loaded.broken)) or "none",
            settings.describe(),
        )
        if gc_tuning:
            tune_gc()  # last: everything loaded so far is long-lived
        # Under `bentoml serve`: tells the supervisor this worker's event loop runs.
        stop_heartbeat = start_heartbeat()
        metrics.worker_starts.inc()
        try:
            yield
        finally:
            if stop_heartbeat is not None:
                stop_heartbeat()
            runtime.engine = None
            await engine.aclose()

    def count_timeout(scope: Scope, reason: str) -> None:
        runtime.count_error(api.route_for_path(str(scope.get("path", ""))) or "other", reason)

    middleware = [Middleware(RequestMetricsMiddleware, runtime=runtime)]
    if settings.api_keys:
        middleware.append(Middleware(ApiKeyMiddleware, **api_key_options(settings, runtime)))
    middleware.append(
        Middleware(
            RequestTimeoutMiddleware, timeout_s=settings.request_timeout_s, on_timeout=count_timeout
        )
    )
    app = Starlette(
        routes=[
            *api_routes(),
            *oip.v2_routes(),
            Route(OPENAPI_PATH, openapi_endpoint, methods=["GET"]),
            *ui_routes(),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        # On SIGTERM, refuse new connections at once while requests in flight finish.
        lifespan=with_refusal_on_sigterm(lifespan),
    )
    app.state.runtime = runtime
    return app


def api_key_options(settings: Settings, runtime: Runtime) -> dict[str, Any]:
    """``ApiKeyMiddleware``'s options: the same check guards our app and BentoML's routes.
    The web page's own static files (no data in them) stay open: the page asks for the key
    and sends it with every API call (service/ui.py)."""
    return {
        "keys": settings.api_keys,
        "open_paths": open_paths(settings.metrics_public) | public_paths(),
        "on_refused": lambda reason: runtime.count_error("auth", "unauthorized"),
    }


def runtime_of(app: Starlette) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime
