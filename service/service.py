"""The BentoML service: ``bentoml serve service.service:GanService`` (port 3000 by default).

A thin shell on purpose: the app is ``service/app.py``'s ``build_app`` (the same one the tests
and bench/ run), mounted with ``@bentoml.asgi_app``; BentoML keeps its own ``/livez``,
``/readyz``, ``/metrics`` and OpenAPI pages (``/docs.json``) beside it, behind the front door
(``service/fast_path.py``).

Fail fast: ``bentoml serve`` imports this module in its parent process before it starts the
worker, and a worker that fails at start-up is restarted forever instead of stopping the
server. So the parent validates the settings and loads every model once on CPU here (a
``SystemExit`` with a message naming the variable or file); the worker then loads for real.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from typing import Any, cast

import bentoml

from service import api, bento_api, bento_internals, built_bento, connections, supervisor
from service.app import api_key_options, build_app, runtime_of
from service.auth import ApiKeyMiddleware, open_paths
from service.bento_internals import BENTO_ROUTES, bento_static_paths
from service.fast_path import install_front_door
from service.metrics import scrape_guard
from service.model_store import ModelStore, ModelStoreError, cuda_offered
from service.settings import Settings, SettingsError, available_cpus

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


# Served from a built Bento: its bentofile's envs and packed models are the defaults.
built_bento.apply_defaults()
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
    # Hung workers replaced, dead ones forgotten, 503 while none serves (supervisor.py).
    supervisor.install(SETTINGS)
else:
    # Bounded request heads, head time and connections, in uvicorn's protocol (connections.py).
    connections.install(SETTINGS)

# The worker loads the models when the app starts (its lifespan), not at import.
app = build_app(SETTINGS, functools.partial(ModelStore.load, SETTINGS), gc_tuning=True)
bento_api.bind(app)
bento_internals.warn_if_unknown_version()

# BentoML runs every request through OpenTelemetry's ASGI middleware. With no exporter
# configured (the default) its spans go nowhere, yet on /generate n=1 they were ~35% of the
# server's CPU per request (bench/, BENCHMARKS.md). Our API routes are left out of it unless
# GAN_TRACE_ROUTES=true; BentoML's own routes (/livez, /metrics, ...) stay traced.
TRACED_OFF = [f"{path}$" for path in sorted(api.ROUTE_PATHS)]
_TRACING: dict[str, Any] = (
    {} if SETTINGS.trace_routes else {"tracing": {"excluded_urls": TRACED_OFF}}
)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="gan_service",
    # `bentoml build` records this in the Bento: not the build machine's CPUs (built_bento.py).
    workers=built_bento.service_workers(SETTINGS.workers),
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML's own limit (504, its own body) stays behind GAN_REQUEST_TIMEOUT_S (ours, JSON).
    traffic={"timeout": max(60, math.ceil(SETTINGS.request_timeout_s) + 10)},
    **_TRACING,
)
class GanService(bento_api.declared_api(SETTINGS)):  # type: ignore[misc]
    """Seeds to images and images to realness scores, for every model under GAN_MODELS_DIR."""

    async def __is_ready__(self) -> bool:
        return runtime_of(app).ready

    async def __is_alive__(self) -> bool:
        # A hung supervisor cannot replace workers: only a restart of the pod can (liveness).
        return supervisor.supervisor_alive(SETTINGS.worker_hang_s)


# Tracing and the access log live in BentoML's middlewares: with either on, the API routes go
# through them again (service/fast_path.py).
FAST_PATH = SETTINGS.fast_path and not (SETTINGS.trace_routes or SETTINGS.access_log)


def _key_guard(bento_app: Any) -> Any:
    return ApiKeyMiddleware(bento_app, **api_key_options(SETTINGS, runtime_of(app)))


FRONT_DOOR = install_front_door(
    GanService,
    app,
    fast=FAST_PATH,
    bento_paths=BENTO_ROUTES | bento_static_paths(),
    guard=_key_guard if SETTINGS.api_keys else None,
    # Scrapes never see a dead worker's metrics twice (metrics.forget_dead_worker).
    metrics_path_app=scrape_guard,
)
if not FRONT_DOOR and SETTINGS.api_keys:
    # Without the front door, the key check goes on the whole BentoML app (its routes too).
    # (bentoml's decorator types the class as itself; at run time it is a bentoml Service.)
    cast(Any, GanService).add_asgi_middleware(
        ApiKeyMiddleware, **api_key_options(SETTINGS, runtime_of(app))
    )
if SETTINGS.api_keys:
    log.info(
        "API key required on every route except %s and the web page's files under /ui/",
        ", ".join(sorted(open_paths(SETTINGS.metrics_public))),
    )
log.debug("front door: %s; fast path: %s", FRONT_DOOR, FAST_PATH and FRONT_DOOR)
