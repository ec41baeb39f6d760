"""The fast path: our API routes go straight to our Starlette app, around BentoML's middlewares.

Why (BENCHMARKS.md, "Where the time goes"): BentoML 1.4 runs every request through its own
middleware stack (request metrics in Prometheus multiprocess mode, OpenTelemetry's URL check,
``TimeoutMiddleware`` with a task and a 60 s timer per request, a request context) before our
routes see it. For ``/generate`` n=1 that was about half of the server's CPU per request: the same
app under plain uvicorn served ~1.9x the requests per second. Everything those middlewares give
our routes we already do ourselves: the request time limit (``limits.py``), API keys
(``auth.py``), and the per-route request metrics below. So a thin dispatcher sits in front of
BentoML's app: ``HOT_PATHS`` go to our app directly, every other request (``/livez``,
``/readyz``, ``/metrics``, ``/docs.json``, the web page) and the ASGI lifespan (which starts our
app through BentoML's mount) go through BentoML unchanged.

How it is hooked: BentoML builds the worker's ASGI app with ``ServiceAppFactory.__call__``
(``Service.to_asgi``); ``install`` wraps that one method for our service only. BentoML is pinned
(``bentoml==1.4.40``); if the method is not there, the service logs a warning and runs without the
fast path (same answers, slower), and ``GAN_FAST_PATH=false`` turns it off on purpose.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from service.auth import ASGIApp, Message, Receive, Scope, Send
from service.metrics import GanMetrics

log = logging.getLogger("gan.fast_path")

HOT_PATHS = frozenset({"/generate", "/generate_grid", "/score", "/interpolate", "/models"})


class RequestMetrics:
    """``gan_http_requests_total`` / ``_seconds`` / ``_in_progress``, label children cached."""

    def __init__(self, metrics: GanMetrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[int, str, str], Any] = {}

    def _child(self, metric: Any, endpoint: str, code: str = "") -> Any:
        # .labels() takes a lock and builds a key on every call: too dear per request
        key = (id(metric), endpoint, code)
        child = self._children.get(key)
        if child is None:
            labels = {"endpoint": endpoint, **({"code": code} if code else {})}
            child = self._children[key] = metric.labels(**labels)
        return child

    def in_progress(self, endpoint: str) -> Any:
        return self._child(self._metrics.http_requests_in_progress, endpoint)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self._child(self._metrics.http_requests, endpoint, str(status)).inc()
        self._child(self._metrics.http_request_seconds, endpoint).observe(seconds)


class FastPath:
    """ASGI dispatcher: ``paths`` to ``ours`` (timed and counted), the rest to ``bento``."""

    def __init__(
        self,
        bento: ASGIApp,
        ours: ASGIApp,
        paths: frozenset[str] = HOT_PATHS,
        metrics: Callable[[], GanMetrics | None] = lambda: None,
    ) -> None:
        self.bento, self.ours, self.paths = bento, ours, paths
        self._metrics_source = metrics
        self._request_metrics: RequestMetrics | None = None

    def _recorder(self) -> RequestMetrics | None:
        # The metrics object is built in the worker's service __init__, after this app exists.
        if self._request_metrics is None and (m := self._metrics_source()) is not None:
            self._request_metrics = RequestMetrics(m)
        return self._request_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path not in self.paths:
            await self.bento(scope, receive, send)
            return
        recorder = self._recorder()
        if recorder is None:
            await self.ours(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before it answers
        t0 = time.perf_counter()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        endpoint = path[1:]
        in_progress = recorder.in_progress(endpoint)
        in_progress.inc()
        try:
            await self.ours(scope, receive, send_recording)
        finally:
            in_progress.dec()
            recorder.observe(endpoint, status, time.perf_counter() - t0)


# id(service) -> (our app, hot paths, metrics source); read by the wrapped factory method.
_HOOKED: dict[int, tuple[ASGIApp, frozenset[str], Callable[[], GanMetrics | None]]] = {}


def install_fast_path(
    service: Any,
    ours: ASGIApp,
    metrics: Callable[[], GanMetrics | None],
    paths: frozenset[str] = HOT_PATHS,
) -> bool:
    """Make ``service.to_asgi()`` return ``FastPath(BentoML's app, ours)``. True when hooked."""
    try:
        from _bentoml_impl.server.app import ServiceAppFactory
    except ImportError as exc:
        log.warning("fast path off: BentoML's ServiceAppFactory not found (%s)", exc)
        return False
    original = ServiceAppFactory.__call__
    if not getattr(original, "_gan_fast_path", False):

        @functools.wraps(original)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            app = original(self, *args, **kwargs)
            hooked = _HOOKED.get(id(self.service))
            if hooked is None:
                return app
            ours, paths, metrics = hooked
            return FastPath(app, ours, paths, metrics)

        __call__._gan_fast_path = True  # type: ignore[attr-defined]
        ServiceAppFactory.__call__ = __call__
    _HOOKED[id(service)] = (ours, paths, metrics)
    return True
