"""The Open Inference Protocol (KServe v2, Triton's HTTP API) as routes of our Starlette app.

``service/app.py`` mounts ``v2_routes()`` beside the API routes, so they are served by the front
door's direct path (``fast_path.py`` sends every path that is not BentoML's own to our app) and
behind the same metrics, API key (except the two health paths: ``auth.HEALTH_PATHS``) and time
limit. Inference goes through the engine's batchers, so v2 and ``/generate`` requests share
batches. What the tensors mean: ``oip_models.py``; their wire formats: ``oip_tensors.py``.

Every refusal is ``{"error": message}`` (the v2 error format) with 400 for a bad request, 404 for
an unknown model or version, 413 for a body over ``GAN_MAX_UPLOAD_BYTES``, 503 for a broken
model; only bugs are 500s. The ``endpoint`` label of metrics is one of ``ENDPOINTS``, whatever
the URL.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
import zlib
from collections.abc import Awaitable, Callable
from importlib import metadata as package_metadata

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service import supervisor
from service.engine import Engine, NonFiniteOutput
from service.errors import ApiError, json_response
from service.limits import ClientGone
from service.oip_models import VERSION, Catalog, V2Error, V2Model, config, infer, metadata
from service.oip_tensors import (
    HEADER_LENGTH,
    TensorError,
    decode_request,
    encode_response,
    parse_header_length,
)
from service.request_parsing import read_body

log = logging.getLogger("gan.oip")

PREFIX = "/v2"
SERVER_NAME = "gan-service"
EXTENSIONS = ("binary_tensor_data", "model_configuration")

# The ``endpoint`` label of every /v2 request (bounded: never a model name or a raw path).
SERVER = "v2_server"
HEALTH = "v2_health"
MODEL = "v2_model"
READY = "v2_model_ready"
INFER = "v2_infer"
ENDPOINTS = (SERVER, HEALTH, MODEL, READY, INFER)

# Above this many bytes (or output elements) JSON work leaves the event loop for a thread.
INLINE_JSON_BYTES = 256 * 1024
INLINE_ELEMENTS = 64 * 1024


def endpoint_label(path: str) -> str | None:
    """The label of a /v2 path, None for others (``service/app.py`` asks only when the path is
    none of the API's routes, so /generate pays nothing for it)."""
    if path == PREFIX:
        return SERVER
    if not path.startswith(PREFIX + "/"):
        return None
    if path.startswith(PREFIX + "/health/"):
        return HEALTH
    if path.startswith(PREFIX + "/models/"):
        if path.endswith("/infer"):
            return INFER
        if path.endswith("/ready"):
            return READY
        return MODEL
    return "unknown"


def _version() -> str:
    try:
        return package_metadata.version(SERVER_NAME)
    except package_metadata.PackageNotFoundError:
        return "0"


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


_catalogs: weakref.WeakKeyDictionary[Engine, Catalog] = weakref.WeakKeyDictionary()


def _engine(request: Request) -> Engine | None:
    engine = getattr(request.app.state, "engine", None)
    return engine if isinstance(engine, Engine) else None


def _catalog(engine: Engine) -> Catalog:
    catalog = _catalogs.get(engine)
    if catalog is None:
        catalog = _catalogs[engine] = Catalog(engine.store)
    return catalog


def _model(request: Request, engine: Engine) -> V2Model:
    params = request.path_params
    return _catalog(engine).lookup(params["name"], params.get("version"))


Handler = Callable[[Request, Engine], Awaitable[Response]]


def _endpoint(label: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        engine = _engine(request)
        if engine is None:
            if handler is live:
                return json_response({"live": True})
            return error(503, "the server is starting or stopping; its models are not loaded")
        reason: str
        try:
            return await handler(request, engine)
        except V2Error as exc:
            reason, response = exc.reason, error(exc.status, exc.message)
        except TensorError as exc:
            reason, response = "invalid_input", error(400, str(exc))
        except ApiError as exc:  # the body reader's 413
            reason, response = exc.reason, error(exc.status, exc.message)
        except NonFiniteOutput as exc:
            log.error("%s: %s", label, exc)
            reason, response = "non_finite_output", error(500, str(exc))
        except (ClientDisconnect, ClientGone):
            reason, response = "client_disconnected", Response(status_code=400)
        except Exception:
            log.exception("unexpected error in %s", label)
            reason, response = "internal", error(500, "internal error; the server log has details")
        engine.metrics.request_errors.labels(label, reason).inc()
        return response

    return endpoint


async def server_metadata(request: Request, engine: Engine) -> Response:
    return json_response({"name": SERVER_NAME, "version": _version(), "extensions": EXTENSIONS})


async def live(request: Request, engine: Engine) -> Response:
    # /livez's rule (GanService.__is_alive__): a worker answering is not enough, the supervisor
    # that replaces hung workers must be alive too, or only a restart of the pod helps.
    if not supervisor.supervisor_alive(engine.settings.worker_hang_s):
        return error(503, "the worker supervisor is not running; restart the server")
    return json_response({"live": True})


async def ready(request: Request, engine: Engine) -> Response:
    # Reached only once the engine exists (``_endpoint`` answers 503 before): the models are
    # loaded and their batchers run.
    return json_response({"ready": True})


async def model_metadata(request: Request, engine: Engine) -> Response:
    return json_response(metadata(_model(request, engine)))


async def model_config(request: Request, engine: Engine) -> Response:
    return json_response(config(_model(request, engine), engine.settings))


async def model_ready(request: Request, engine: Engine) -> Response:
    v2 = _model(request, engine)
    return json_response({"name": v2.name, "ready": True})


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate request body (tritonclient's ``request_compression_algorithm``),
    inflated no further than ``limit`` bytes."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise V2Error(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding[:20]!r} is not supported; use gzip, deflate or none",
        )
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise TensorError(f"the {encoding} body does not inflate ({exc})") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise V2Error(
            413, "body_too_large", f"the inflated body is over the limit of {limit} bytes"
        )
    return data


async def model_infer(request: Request, engine: Engine) -> Response:
    v2 = _model(request, engine)
    limit = engine.settings.max_upload_bytes
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        body = _decompress(body, encoding, limit)
    header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
    if len(body) > INLINE_JSON_BYTES:
        parsed = await asyncio.to_thread(decode_request, body, header_length)
    else:
        parsed = decode_request(body, header_length)
    outputs = await infer(engine, v2, parsed)
    elements = sum(o.array.size for o in outputs if not o.binary)
    encode = (v2.name, VERSION, outputs, parsed.request_id)
    if elements > INLINE_ELEMENTS:
        data, json_length = await asyncio.to_thread(encode_response, *encode)
    else:
        data, json_length = encode_response(*encode)
    if json_length is None:
        return Response(data, media_type="application/json")
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )


def v2_routes() -> list[BaseRoute]:
    models = PREFIX + "/models/{name}"
    versioned = models + "/versions/{version}"
    table: list[tuple[str, str, str, Handler]] = [
        (PREFIX, "GET", SERVER, server_metadata),
        (PREFIX + "/health/live", "GET", HEALTH, live),
        (PREFIX + "/health/ready", "GET", HEALTH, ready),
    ]
    for base in (models, versioned):
        table += [
            (base, "GET", MODEL, model_metadata),
            (base + "/config", "GET", MODEL, model_config),
            (base + "/ready", "GET", READY, model_ready),
            (base + "/infer", "POST", INFER, model_infer),
        ]
    return [
        Route(path, _endpoint(label, handler), methods=[method])
        for path, method, label, handler in table
    ]
