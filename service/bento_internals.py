"""Every contact with BentoML's private code, in one place, for the one version it was written for.

The service uses BentoML's public API (``@bentoml.service``, ``@bentoml.api``,
``@bentoml.asgi_app``, ``bentoml.server_context``) everywhere else. What only private code gives:

- the front door (``service/fast_path.py``): ``ServiceAppFactory.__call__`` builds a worker's ASGI
  app; we wrap it to put our dispatcher in front, and take the routes of our declared
  ``@bentoml.api`` methods out of BentoML's router, so that those paths reach our own handlers
  (through BentoML's middlewares when the fast path is off) and never BentoML's pydantic/serde
  endpoint (its errors are not our JSON contract; it reads a whole body before any limit; its
  multipart reader downloads any URL sent as a file field);
- the front door's list of BentoML's own paths (its index page's static files);
- ``bentoml_service_request_*`` for the fast path: BentoML's ``RunnerTrafficMetricsMiddleware``
  writes them; the fast path skips that middleware, so ``ServiceRequestMetrics`` writes the same
  series (same names, labels and values) itself;
- the worker supervisor (``service/supervisor.py``) hooks the circus ``Arbiter`` BentoML starts,
  and needs the names BentoML gives its socket and watcher.

``WRITTEN_FOR`` is the version all of this was read from (pyproject pins it).
tests/service/test_svc_bento_internals.py fails on any other version, and on this one if a hook
point moved; at run time a different version logs a warning, and each hook that is missing turns
itself off (the service then answers the same, slower, and BentoML labels the paths).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from service.asgi import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("gan.bento_internals")

WRITTEN_FOR = "1.4.40"

# The names of BentoML's API-server socket and of the workers' watcher in its circus arbiter
# (_bentoml_impl/server/serving.py: API_SERVER_NAME, and the watcher it creates).
API_SOCKET = "_bento_api_server"
SERVICE_WATCHER = "service"

# BentoML's routes in a worker of our service (_bentoml_impl/server/app.py, base_app.py).
BENTO_ROUTES = frozenset(
    {"/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json", "/"}
)


def bentoml_version() -> str:
    import bentoml

    return str(bentoml.__version__)


def warn_if_unknown_version() -> bool:
    """True when the installed BentoML is the one this module was written for."""
    found = bentoml_version()
    if found != WRITTEN_FOR:
        log.warning(
            "BentoML %s is installed; service/bento_internals.py was written for %s: the front "
            "door, the fast path's BentoML metrics and the worker supervisor may turn themselves "
            "off (see the README's BentoML features table)",
            found,
            WRITTEN_FOR,
        )
        return False
    return True


def bento_static_paths() -> frozenset[str]:
    """The files BentoML's index page loads (``/static_content/...``, ``/assets/...``): exact
    paths, so a made-up one under those prefixes is ours (a JSON 404), not a new label."""
    found: set[str] = set()
    try:
        import _bentoml_impl.server as impl
        import bentoml._internal.server as internal
    except ImportError:
        return frozenset()
    for prefix, folder in (
        ("/assets", Path(impl.__file__).parent / "assets"),
        ("/static_content", Path(internal.__file__).parent / "static_content"),
    ):
        if folder.is_dir():
            found.update(
                f"{prefix}/{p.relative_to(folder).as_posix()}"
                for p in folder.rglob("*")
                if p.is_file()
            )
    return frozenset(found)


# --- the front door's hook ---------------------------------------------------------------------

# id(service) -> (build the front door from BentoML's app, the declared API names to unroute)
_HOOKED: dict[int, tuple[Callable[[ASGIApp], ASGIApp], frozenset[str]]] = {}


def unroute_declared_apis(app: Any, names: Iterable[str]) -> list[str]:
    """Take BentoML's own endpoints of the declared APIs ``names`` out of its router: requests
    to those paths then fall through to our app, mounted at ``/``. Returns the paths taken."""
    from starlette.routing import Route

    wanted = frozenset(names)
    router = getattr(app, "router", None)
    if router is None:
        return []
    kept, taken = [], []
    for route in router.routes:
        if isinstance(route, Route) and route.name in wanted:
            taken.append(route.path)
        else:
            kept.append(route)
    router.routes[:] = kept
    return taken


def hook_worker_app(
    service: Any, build: Callable[[ASGIApp], ASGIApp], declared: Iterable[str] = ()
) -> bool:
    """Make ``service.to_asgi()`` return ``build(BentoML's app)``, with BentoML's endpoints of
    the ``declared`` API names removed first. True when hooked."""
    try:
        from _bentoml_impl.server.app import ServiceAppFactory
    except ImportError as exc:
        log.warning("front door off: BentoML's ServiceAppFactory not found (%s)", exc)
        return False
    original = ServiceAppFactory.__call__
    if not getattr(original, "_gan_front_door", False):

        @functools.wraps(original)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            app = original(self, *args, **kwargs)
            hooked = _HOOKED.get(id(self.service))
            if hooked is None:
                return app
            builder, names = hooked
            taken = unroute_declared_apis(app, names)
            if len(taken) != len(names):
                log.warning("declared APIs not found in BentoML's router: %s", sorted(names))
            return builder(app)

        __call__._gan_front_door = True  # type: ignore[attr-defined]
        ServiceAppFactory.__call__ = __call__
    _HOOKED[id(service)] = (build, frozenset(declared))
    return True


# --- the supervisor's hook ---------------------------------------------------------------------


def hook_arbiter_start(on_start: Callable[[Any], None]) -> bool:
    """Call ``on_start(arbiter)`` when ``bentoml serve`` starts its circus arbiter, before it
    spawns anything. Call in the ``bentoml serve`` parent, at import. True when hooked."""
    try:
        from bentoml._internal.utils.circus import Arbiter
    except ImportError as exc:
        log.warning("no worker supervision: BentoML's Arbiter not found (%s)", exc)
        return False
    original = Arbiter.start
    if getattr(original, "_gan_supervised", False):
        return True

    @functools.wraps(original)
    def start(self: Any, cb: Any = None) -> Any:
        on_start(self)
        return original(self, cb)

    start._gan_supervised = True  # type: ignore[attr-defined]
    Arbiter.start = start  # type: ignore[method-assign]
    return True


# --- bentoml_service_request_* on the fast path ------------------------------------------------

# What RunnerTrafficMetricsMiddleware registers (bentoml/_internal/server/http/instruments.py),
# namespace ``bentoml_service`` (its default configuration's api_server.metrics.namespace).
REQUEST_METRICS_NAMESPACE = "bentoml_service"
REQUEST_TOTAL_DOC = "Total number of runner RPC"
REQUEST_DURATION_DOC = "runner RPC duration in seconds"
REQUEST_IN_PROGRESS_DOC = "Total number of runner RPC in progress now"
REQUEST_LABELS = (
    "endpoint",
    "service_name",
    "service_version",
    "http_response_code",
    "runner_name",
)
IN_PROGRESS_LABELS = ("endpoint", "service_name", "service_version", "runner_name")


def _multiprocess_metrics() -> bool:
    # Under `bentoml serve` every process writes its samples to files in this folder and
    # /metrics merges them by name and labels: a second metric object with BentoML's name and
    # labels adds to BentoML's series without being registered anywhere.
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


# How often the fast path's counts reach BentoML's series. Each write to a multiprocess metric
# takes a lock and writes to a memory-mapped file (3-6 us; ~22 us a request for the counter,
# the histogram and the in-progress gauge, measured): the requests add up in plain dicts and
# are written in one go at most this often, far below any scrape interval.
FLUSH_S = 0.5


class _Pending:
    """Counts of one (endpoint, status) since the last flush."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self, n_buckets: int) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * n_buckets


class ServiceRequestMetrics:
    """ASGI wrapper that counts requests in ``bentoml_service_request_total`` /
    ``_duration_seconds`` / ``_in_progress`` as BentoML's middleware does for its own routes
    (same names, help, labels, buckets), written every ``FLUSH_S`` seconds rather than per
    request. ``endpoint_of(path)`` gives the (bounded) endpoint label, or None: not counted."""

    def __init__(
        self, app: ASGIApp, endpoint_of: Callable[[str], str | None], flush_s: float = FLUSH_S
    ) -> None:
        self.app = app
        self.endpoint_of = endpoint_of
        self.flush_s = flush_s
        self.enabled = _multiprocess_metrics()
        self._metrics: tuple[Any, Any, Any] | None = None
        self._ident: tuple[str, str, str] = ("", "", "")
        self._bounds: list[float] = []
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._in_progress: dict[str, int] = {}
        self._written_in_progress: dict[str, int] = {}
        self._flush_at: asyncio.TimerHandle | None = None

    def _setup(self) -> tuple[Any, Any, Any]:
        from bentoml._internal.configuration.containers import BentoMLContainer
        from bentoml._internal.context import server_context
        from prometheus_client import Counter, Gauge, Histogram

        try:  # what the running server configured (api_server.metrics.namespace)
            ns = str(BentoMLContainer.api_server_config.metrics.namespace.get())
        except Exception:  # a default is better than no metrics
            ns = REQUEST_METRICS_NAMESPACE
        buckets = tuple(BentoMLContainer.duration_buckets.get())
        metrics = (
            Counter(
                "request_total", REQUEST_TOTAL_DOC, REQUEST_LABELS, namespace=ns, registry=None
            ),
            Histogram(
                "request_duration_seconds",
                REQUEST_DURATION_DOC,
                REQUEST_LABELS,
                namespace=ns,
                registry=None,
                buckets=buckets,
            ),
            Gauge(
                "request_in_progress",
                REQUEST_IN_PROGRESS_DOC,
                IN_PROGRESS_LABELS,
                namespace=ns,
                registry=None,
                multiprocess_mode="livesum",
            ),
        )
        self._bounds = [float(b) for b in metrics[1]._upper_bounds]
        self._ident = (
            str(server_context.bento_name),
            str(server_context.bento_version),
            str(server_context.service_name),
        )
        self._metrics = metrics
        return metrics

    def flush(self) -> None:
        """Write what was counted since the last flush into BentoML's series."""
        self._flush_at = None
        metrics = self._metrics or self._setup()
        total, duration, in_progress = metrics
        name, version, runner = self._ident
        pending, self._pending = self._pending, {}
        for (endpoint, status), p in pending.items():
            labels = (endpoint, name, version, str(status), runner)
            total.labels(*labels).inc(p.count)
            child = duration.labels(*labels)
            # prometheus_client's Histogram child keeps per-bucket counts and a sum, and
            # cumulates them when scraped: the same state observe() would have left.
            child._sum.inc(p.total)
            for i, n in enumerate(p.buckets):
                if n:
                    child._buckets[i].inc(n)
        for endpoint, now in self._in_progress.items():
            if self._written_in_progress.get(endpoint) != now:
                in_progress.labels(endpoint, name, version, runner).set(now)
                self._written_in_progress[endpoint] = now

    def _dirty(self) -> None:
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(self.flush_s, self.flush)

    def _record(self, endpoint: str, status: int, elapsed: float) -> None:
        key = (endpoint, status)
        p = self._pending.get(key)
        if p is None:
            if self._metrics is None:
                self._setup()
            p = self._pending[key] = _Pending(len(self._bounds))
        p.count += 1
        p.total += elapsed
        p.buckets[bisect.bisect_left(self._bounds, elapsed)] += 1  # first bound >= elapsed
        self._dirty()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoint_of(scope.get("path", "")) if self.enabled else None
        if endpoint is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                self._record(endpoint, status, time.perf_counter() - t0)

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                count()  # as BentoML does: at the last body chunk
            await send(message)

        self._in_progress[endpoint] = self._in_progress.get(endpoint, 0) + 1
        self._dirty()
        try:
            await self.app(scope, receive, send_counting)
        finally:
            self._in_progress[endpoint] -= 1
            count()
