"""The public HTTP API's handlers: plain Starlette routes (``service/app.py`` assembles the app).

Why Starlette routes and not ``@bentoml.api``: measured on the 2-core dev box (service/README.md),
a trivial JSON echo served through ``@bentoml.api`` ran at ~1.1k req/s and 0.72 ms p50 against
~2.0k req/s and 0.40 ms p50 as a mounted Starlette route, both under the same BentoML server and
middlewares (metrics, tracing). The routes also let us answer every bad input with our own JSON
error and enforce body limits while streaming.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Awaitable, Callable

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service import api
from service.api import FORMATS, LOSSY_FORMATS, MAX_JSON_BYTES
from service.encoding import MEDIA_TYPES, NPY, encode_image, encode_npy
from service.engine import Engine, NonFiniteOutput, UploadRejected
from service.errors import (
    INTERNAL_ERROR,
    ApiError,
    error_body,
    error_response,
    json_response,
    unknown_model,
)
from service.imaging import declared_pixels, make_grid
from service.interpolate import check_budget, filename, parse_interpolate, render, walk_latents
from service.limits import GRID_HEAVY_N, SCORE_HEAVY_PIXELS, ClientGone, until_disconnected
from service.model_store import UnknownModelError
from service.request_parsing import parse_generate, read_body, read_score_form

log = logging.getLogger("gan.http")

Handler = Callable[[Request], Awaitable[Response]]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


HANDLERS: dict[str, Handler] = {}


def _endpoint(name: str) -> Callable[[Handler], Handler]:
    """The handler of route ``name`` (api.ROUTES): every failure becomes a JSON error and is
    counted; only real bugs become 500s."""
    if name not in api.ROUTES_BY_NAME:
        raise ValueError(f"no route {name!r} in service/api.py")

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                error = exc
            except UnknownModelError as exc:
                error = unknown_model(exc.name, exc.served)
            except UploadRejected as exc:
                status = 413 if exc.reason == "image_too_large" else 400
                error = ApiError(status, exc.reason, str(exc), "images")
            except NonFiniteOutput as exc:
                log.error("%s: %s", name, exc)
                error = ApiError(500, "non_finite_output", str(exc))
            except (ClientDisconnect, ClientGone):
                # Nobody will read this answer; count it apart from real server errors.
                _engine(request).metrics.request_errors.labels(name, "client_disconnected").inc()
                return Response(status_code=400)
            except Exception:
                log.exception("unexpected error in %s", name)
                _engine(request).metrics.request_errors.labels(name, "internal").inc()
                return error_response(INTERNAL_ERROR)
            _engine(request).metrics.request_errors.labels(name, error.reason).inc()
            return error_response(error)

        HANDLERS[name] = endpoint
        return endpoint

    return wrap


def _grid_file(pixels: np.ndarray, columns: int | None, fmt: str, quality: int | None) -> bytes:
    return encode_image(make_grid(pixels, columns), fmt, quality)


@_endpoint("generate")
async def generate(request: Request) -> Response:
    engine = _engine(request)
    params = parse_generate(await read_body(request, MAX_JSON_BYTES), engine.settings)
    result = await engine.generate(
        params.model, params.seed, params.n, params.truncation, params.values.get("class")
    )
    pixels = result.pixels
    fmt = params.values["format"]
    if fmt == NPY:
        # A header and one copy of the pixels (6 us for 64 28x28 images): never worth a thread.
        return Response(
            encode_npy(pixels),
            media_type=MEDIA_TYPES[NPY],
            headers={
                "X-Model": result.model,
                "X-Seed": str(params.seed),
                "X-Count": str(len(pixels)),
                "Content-Disposition": f'attachment; filename="images-{params.seed}-{params.n}.npy"',
            },
        )
    quality = params.values.get("quality") if fmt in LOSSY_FORMATS else None
    files = await engine.encoder.encode(pixels, fmt, quality)
    return json_response(
        {
            "model": result.model,
            "width": int(pixels.shape[2]),
            "height": int(pixels.shape[1]),
            "images": [
                {"seed": params.seed + i, fmt: base64.b64encode(data).decode("ascii")}
                for i, data in enumerate(files)
            ],
        }
    )


@_endpoint("generate_grid")
async def generate_grid(request: Request) -> Response:
    engine = _engine(request)
    body = await read_body(request, MAX_JSON_BYTES)
    params = parse_generate(body, engine.settings, grid=True)
    fmt = params.values["format"]
    quality = params.values.get("quality") if fmt in LOSSY_FORMATS else None
    heavy = params.n > GRID_HEAVY_N
    with engine.heavy.admit("generate_grid", heavy):

        async def work() -> tuple[str, bytes]:
            result = await engine.generate(
                params.model, params.seed, params.n, params.truncation, params.values.get("class")
            )
            run = engine.run_heavy if heavy else engine.encoder.run
            return result.model, await run(_grid_file, result.pixels, params.columns, fmt, quality)

        model, data = await (until_disconnected(request.receive, work()) if heavy else work())
    return Response(
        data,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "X-Model": model,
            "Content-Disposition": f'inline; filename="grid-{params.seed}-{params.n}.{fmt}"',
        },
    )


@_endpoint("score")
async def score(request: Request) -> Response:
    engine = _engine(request)
    settings = engine.settings
    params = await read_score_form(request, settings.max_upload_bytes, settings.max_score_images)
    files = [u.data for u in params.uploads]
    heavy = sum(declared_pixels(f) for f in files) > SCORE_HEAVY_PIXELS
    with engine.heavy.admit("score", heavy):
        names = [u.filename for u in params.uploads]
        work = engine.score(params.model, files, names, params.klass, heavy=heavy)
        result = await (until_disconnected(request.receive, work) if heavy else work)
    scores = []
    for i, name in enumerate(names):
        entry = {
            "filename": name,
            "realness": float(result.realness[i]),
            "logit": float(result.logits[i]),
        }
        if result.ood is not None:
            entry["ood"] = float(result.ood[i])
        scores.append(entry)
    return json_response({"model": result.model, "scores": scores})


@_endpoint("models")
async def models(request: Request) -> Response:
    engine = _engine(request)
    return json_response({**engine.store.describe(), "settings": engine.settings.describe()})


@_endpoint("interpolate")
async def interpolate(request: Request) -> Response:
    """A slerp walk between two seeds (service/interpolate.py): PNG strip, GIF or WebP."""
    engine = _engine(request)
    params = parse_interpolate(await read_body(request, MAX_JSON_BYTES), engine.settings)
    model = engine.store.get(params.model)
    spec = model.manifest.image
    check_budget(spec.height, spec.width, params)
    with engine.heavy.admit("interpolate"):

        async def work() -> tuple[str, bytes]:
            z = walk_latents(
                params.seed_a, params.seed_b, params.steps, model.manifest.z_dim, params.truncation
            )
            result = await engine.generate_latents(
                model.name, z, params.values.get("class"), params.seed_a
            )
            cancelled = threading.Event()
            try:
                data = await engine.run_heavy(render, result.pixels, params, cancelled)
            except asyncio.CancelledError:
                cancelled.set()  # the thread stops at its next frame
                raise
            return result.model, data

        model_name, data = await until_disconnected(request.receive, work())
    return Response(
        data,
        media_type=FORMATS[params.format],
        headers={
            "X-Model": model_name,
            "Content-Disposition": f'inline; filename="{filename(params)}"',
        },
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (any path our routes do not have), as JSON like the rest."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    reason = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    # Not the raw path: one label value per made-up URL would grow /metrics (and memory)
    # without bound.
    endpoint = api.route_for_path(request.url.path) or "unknown"
    engine = getattr(request.app.state, "engine", None)
    if isinstance(engine, Engine):
        engine.metrics.request_errors.labels(endpoint, reason).inc()
    response = json_response(error_body(detail, reason), status)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)  # the Allow header of a 405
    return response


def api_routes() -> list[BaseRoute]:
    """One Starlette route per ``api.ROUTES`` entry (a route without a handler is a bug)."""
    return [Route(r.path, HANDLERS[r.name], methods=list(r.methods)) for r in api.ROUTES]
