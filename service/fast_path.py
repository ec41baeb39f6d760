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

How it is hooked: BentoML builds the worker's ASGI app with ``ServiceAppFactory.__call__``
(``Service.to_asgi``); ``install_front_door`` wraps that one method for our service only.
BentoML is pinned (``bentoml==1.4.40``); if the method is not there, the service logs a warning
and runs without the front door (same answers, slower, unknown paths labelled by BentoML).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from service import api
from service.asgi import ASGIApp, Receive, Scope, Send

log = logging.getLogger("gan.fast_path")

# BentoML's routes in a worker of our service (_bentoml_impl/server/app.py, base_app.py).
BENTO_ROUTES = frozenset(
    {"/livez", "/healthz", "/readyz", "/metrics", "/docs.json", "/schema.json", "/"}
)


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
        self.ours = ours
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


# id(service) -> what the wrapped factory method needs to build the front door
_HOOKED: dict[int, dict[str, Any]] = {}


def install_front_door(service: Any, ours: ASGIApp, **options: Any) -> bool:
    """Make ``service.to_asgi()`` return ``FrontDoor(BentoML's app, ours, **options)``.
    True when hooked."""
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
            return FrontDoor(app, hooked["ours"], **hooked["options"])

        __call__._gan_front_door = True  # type: ignore[attr-defined]
        ServiceAppFactory.__call__ = __call__
    _HOOKED[id(service)] = {"ours": ours, "options": options}
    return True
