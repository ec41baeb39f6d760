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

import logging
import sys

import bentoml

from service.engine import Engine
from service.http_app import create_app
from service.metrics import GanMetrics
from service.model_store import ModelStore, ModelStoreError
from service.settings import Settings, SettingsError

log = logging.getLogger("gan.service")


def _settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"gan service: bad setting: {exc}") from None


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


SETTINGS = _settings_or_exit()
_configure_logging(SETTINGS)

if bentoml.server_context.worker_index is None:  # the `bentoml serve` parent, not a worker
    try:
        ModelStore.load(SETTINGS, cpu_only=True)
    except ModelStoreError as exc:
        raise SystemExit(f"gan service: cannot start: {exc}") from None


def _engine_from_current_service() -> Engine:
    service = bentoml.get_current_service()
    if service is None:
        raise RuntimeError("the routes only run inside `bentoml serve service.service:GanService`")
    return Engine(service.settings, service.store, service.metrics)


app = create_app(_engine_from_current_service)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="gan_service",
    workers=1,
    logging={"access": {"enabled": SETTINGS.access_log}},
    traffic={"timeout": 60},
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
        log.info(
            "serving %s (default %r) on %s; broken: %s; settings: %s",
            ", ".join(sorted(self.store.models)),
            self.store.default_name,
            self.store.provider,
            ", ".join(sorted(self.store.broken)) or "none",
            SETTINGS.describe(),
        )
