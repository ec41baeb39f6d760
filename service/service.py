"""The BentoML service: ``bentoml serve service.service:GanService`` (port 3000 by default).

Thin on purpose: settings, model loading and metrics are built here; the routes live in
``http_app`` and the work in ``engine``. BentoML keeps its own ``/livez``, ``/readyz``,
``/metrics`` and OpenAPI pages (``/docs.json``) beside the mounted routes.

Fail fast: ``bentoml serve`` imports this module in its parent process before it starts the
worker, and a worker that fails in ``__init__`` is restarted forever instead of stopping the
server. So the parent validates the settings and loads every model once on CPU here (a
``SystemExit`` with a message naming the variable or file); the worker then loads for real.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
from collections.abc import MutableMapping
from typing import Any, cast

import bentoml

from service.auth import ApiKeyMiddleware, open_paths
from service.engine import Engine
from service.fast_path import HOT_PATHS, install_fast_path
from service.http_app import create_app
from service.limits import RequestTimeoutMiddleware
from service.metrics import GanMetrics
from service.model_store import ModelStore, ModelStoreError, cuda_offered
from service.openapi import openapi_endpoint
from service.settings import Settings, SettingsError, available_cpus
from service.shutdown import with_refusal_on_sigterm
from service.ui import public_paths

log = logging.getLogger("gan.service")


def _settings_or_exit() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"gan service: bad setting: {exc}") from None
    return settings.resolved(cuda=cuda_offered(settings.provider), cpus=available_cpus())


def _configure_logging(settings: Settings) -> None:
    logger = logging.getLogger("gan")
    logger.setLevel(settings.log_level_number)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(levelname)s] [%(name)s] %(message)s")
        )
        logger.addHandler(handler)
        logger.propagate = False


# Python's cyclic GC, tuned for a server process (BENCHMARKS.md, "Where the time goes"): at c=64
# the worker ran ~1 full (gen 2) collection a second, each walking every object BentoML keeps
# alive (its TimeoutMiddleware holds a 60 s timer per request): up to 200 ms pauses, 13% of the
# time, the p95/p99 tail. Startup objects are frozen (never walked again) and collections made
# rarer; request garbage is mostly freed by reference counting anyway. 20-25% less CPU per
# /generate and no gen-2 collection in 25 s at c=64 (bench/, measured interleaved).
GC_THRESHOLDS = (20_000, 50, 100)


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


SETTINGS = _settings_or_exit()
_configure_logging(SETTINGS)

if bentoml.server_context.worker_index is None:  # the `bentoml serve` parent, not a worker
    try:
        _preflight = ModelStore.load(SETTINGS, cpu_only=True)
    except ModelStoreError as exc:
        raise SystemExit(f"gan service: cannot start: {exc}") from None
    if SETTINGS.require_all_models and _preflight.broken:
        raise SystemExit(
            "gan service: cannot start: GAN_REQUIRE_ALL_MODELS=true and "
            + "; ".join(
                f"model {b.name!r} is broken: {b.error}" for b in _preflight.broken.values()
            )
        )
    del _preflight


def _engine_from_current_service() -> Engine:
    service = bentoml.get_current_service()
    if service is None:
        raise RuntimeError("the routes only run inside `bentoml serve service.service:GanService`")
    return Engine(service.settings, service.store, service.metrics)


def _metrics() -> GanMetrics | None:
    metrics = getattr(bentoml.get_current_service(), "metrics", None)
    return metrics if isinstance(metrics, GanMetrics) else None


_ROUTES = frozenset({"generate", "generate_grid", "score", "models", "interpolate"})


def _count_timeout(scope: MutableMapping[str, Any], reason: str) -> None:
    if (metrics := _metrics()) is not None:
        endpoint = str(scope.get("path", "")).strip("/")
        metrics.request_errors.labels(endpoint if endpoint in _ROUTES else "other", reason).inc()


def _count_refusal(reason: str) -> None:
    if (metrics := _metrics()) is not None:
        metrics.request_errors.labels("auth", "unauthorized").inc()


app = create_app(_engine_from_current_service)
# Reliability and security (docs/reliability.md): the OpenAPI document of our routes, and the
# per-request time limit around all of them.
app.add_route("/openapi.json", openapi_endpoint, methods=["GET"])
app.add_middleware(
    RequestTimeoutMiddleware, timeout_s=SETTINGS.request_timeout_s, on_timeout=_count_timeout
)
# On SIGTERM, refuse new connections at once while requests in flight finish (service/shutdown.py).
app.router.lifespan_context = with_refusal_on_sigterm(app.router.lifespan_context)


# BentoML runs every request through OpenTelemetry's ASGI middleware. With no exporter
# configured (the default) its spans go nowhere, yet on /generate n=1 they were ~35% of the
# server's CPU per request (bench/, BENCHMARKS.md). Our API routes are left out of it unless
# GAN_TRACE_ROUTES=true; BentoML's own routes (/livez, /metrics, ...) stay traced.
TRACED_OFF = [
    f"/{route}$" for route in ("generate", "generate_grid", "score", "models", "interpolate")
]
_TRACING: dict[str, Any] = (
    {} if SETTINGS.trace_routes else {"tracing": {"excluded_urls": TRACED_OFF}}
)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="gan_service",
    workers=SETTINGS.workers,
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML's own limit (504, its own body) stays behind GAN_REQUEST_TIMEOUT_S (ours, JSON).
    traffic={"timeout": max(60, math.ceil(SETTINGS.request_timeout_s) + 10)},
    **_TRACING,
)
class GanService:
    """Seeds to images and images to realness scores, for every model under GAN_MODELS_DIR."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        try:
            self.store = ModelStore.load(SETTINGS)
        except ModelStoreError as exc:
            log.critical("cannot start: %s", exc)
            raise
        self.metrics = GanMetrics(SETTINGS.max_batch_size)
        self.metrics.models_broken.set(len(self.store.broken))
        log.info(
            "serving %s (default %r) on %s; broken: %s; fast path: %s; settings: %s",
            ", ".join(sorted(self.store.models)),
            self.store.default_name,
            self.store.provider,
            ", ".join(sorted(self.store.broken)) or "none",
            "on" if FAST_PATH else "off",
            SETTINGS.describe(),
        )
        _tune_gc()  # last: everything loaded so far is long-lived


# The same API-key check guards BentoML's app and the fast path's (service/auth.py).
_API_KEY_OPTIONS: dict[str, Any] = {
    "keys": SETTINGS.api_keys,
    "open_paths": open_paths(SETTINGS.metrics_public) | public_paths(),
    "on_refused": _count_refusal,
}


def _fast_path_app() -> Any:
    """Our app as the fast path serves it: behind the API-key check when keys are set."""
    return ApiKeyMiddleware(app, **_API_KEY_OPTIONS) if SETTINGS.api_keys else app


if SETTINGS.fast_path and not (SETTINGS.trace_routes or SETTINGS.access_log):
    FAST_PATH = install_fast_path(GanService, _fast_path_app(), _metrics, HOT_PATHS)
else:
    FAST_PATH = False

if SETTINGS.api_keys:
    # On the whole BentoML app, so /metrics, /docs.json and / are covered too (service/auth.py).
    # (bentoml's decorator types the class as itself; at run time it is a bentoml Service.)
    # The web page's own static files (no data in them) stay open too: the page asks for the
    # key and sends it with every API call (service/ui.py).
    cast(Any, GanService).add_asgi_middleware(ApiKeyMiddleware, **_API_KEY_OPTIONS)
    log.info(
        "API key required on every route except %s and the web page's files under /ui/",
        ", ".join(sorted(open_paths(SETTINGS.metrics_public))),
    )
