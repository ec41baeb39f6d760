"""``GET /openapi.json``: an OpenAPI 3.0 document for the service's own routes.

BentoML's ``/docs.json`` only lists ``@bentoml.api`` methods, not the mounted Starlette routes,
so this document is built from ``service/api.py``: its routes, and request schemas from the same
field rules the parsers enforce, with the live limits (``GAN_N_MAX``, ``GAN_MAX_SCORE_IMAGES``, ...) and the served model names filled in.
It is what the API fuzz test (tests/reliability/test_rel_fuzz.py, schemathesis) generates
requests from, so the bounds must be exact: a request the schema calls valid must be one the
parser accepts, and one it calls invalid must be refused with a documented 4xx.

One rule JSON Schema cannot state: ``seed + n - 1 <= 4294967295`` (a 400 names it).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from contract.latents import SEED_MAX
from service import api
from service.api import FORMATS
from service.interpolate import BUDGET_NOTE
from service.settings import Settings

JSON = "application/json"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "reason", "field"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong, for people"},
        "reason": {"type": "string", "description": "a short stable tag, for programs"},
        "field": {"type": "string", "nullable": True, "description": "the offending field"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _errors(*statuses: int, auth: bool) -> dict[str, Any]:
    known = {
        400: "bad input: invalid JSON, a wrong field, an unreadable upload",
        401: "missing or invalid API key",
        404: "unknown model (or path)",
        405: "method not allowed",
        408: "the request (headers or body) did not arrive in time",
        413: "body, or an uploaded image, over the limits",
        429: "too many expensive requests at once (GAN_HEAVY_CONCURRENCY): retry after Retry-After",
        431: "request headers over GAN_MAX_HEADER_BYTES or GAN_MAX_HEADERS",
        500: "the model gave non-finite values (NaN or infinity) for this input",
        503: "server busy, or no worker ready (GAN_REQUEST_TIMEOUT_S, restarts): retry later",
    }
    wanted = [*statuses, 408, 431, 503, *([401] if auth else [])]
    return {str(s): _error(known[s]) for s in sorted(set(wanted))}


def _responses(settings: Settings) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per route: the 200 answer's description and content (the request side is api.py's)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    generate_response = {
        "type": "object",
        "required": ["model", "width", "height", "images"],
        "properties": {
            "model": {"type": "string"},
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "images": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.n_max,
                "items": {
                    "type": "object",
                    "description": (
                        "seed, and one base64 file under the name of the requested format"
                    ),
                    "required": ["seed"],
                    "minProperties": 2,
                    "maxProperties": 2,
                    "properties": {
                        "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
                        **{
                            fmt: {"type": "string", "format": "byte"}
                            for fmt in api.GENERATE_FORMATS
                            if fmt != "npy"
                        },
                    },
                },
            },
        },
    }
    score_response = {
        "type": "object",
        "required": ["model", "scores"],
        "properties": {
            "model": {"type": "string"},
            "scores": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["filename", "realness", "logit"],
                    "properties": {
                        "filename": {"type": "string"},
                        "realness": {"type": "number", "minimum": 0, "maximum": 1},
                        "logit": {"type": "number"},
                    },
                },
            },
        },
    }
    models_response = {
        "type": "object",
        "required": ["default", "provider", "models", "broken", "settings"],
        "properties": {
            "default": {"type": "string"},
            "provider": {"type": "string"},
            "requested_provider": {"type": "string"},
            "notes": {"type": "array", "items": {"type": "string"}},
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "default", "z_dim", "channels", "height", "width"],
                    "properties": {
                        "name": {"type": "string"},
                        "default": {"type": "boolean"},
                        # "bentoml:NAME:VERSION" (GAN_BENTO_MODELS) or the folder's path
                        "source": {"type": "string"},
                        "z_dim": {"type": "integer"},
                        "channels": {"type": "integer", "enum": [1, 3]},
                        "height": {"type": "integer"},
                        "width": {"type": "integer"},
                        "manifest": {"type": "object"},
                    },
                },
            },
            "broken": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "error"],
                    "properties": {"name": {"type": "string"}, "error": {"type": "string"}},
                },
            },
            "settings": {"type": "object"},
        },
    }
    return {
        "generate": (
            "the images: JSON of base64 files (png, webp, jpeg), or one .npy file of the "
            "(n, H, W, C) uint8 batch (format npy; X-Seed: the first seed, X-Count: n)",
            {JSON: {"schema": generate_response}, "application/x-npy": binary},
        ),
        "generate_grid": (
            "one grid image, in the requested format",
            {media: binary for media in ("image/png", "image/webp", "image/jpeg")},
        ),
        "score": ("one score per upload, in order", {JSON: {"schema": score_response}}),
        "interpolate": (
            "the frames, in the requested format",
            {media: binary for media in FORMATS.values()},
        ),
        "models": ("the listing", {JSON: {"schema": models_response}}),
    }


# What the request schema cannot state, per route.
NOTES = {"interpolate": BUDGET_NOTE}
# Routes whose requests may be expensive (a 429 beyond GAN_HEAVY_CONCURRENCY; limits.py).
EXPENSIVE = frozenset({"generate_grid", "score", "interpolate"})


def openapi_document(
    settings: Settings,
    models: list[str],
    default: str,
    classes: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    auth = bool(settings.api_keys)
    responses = _responses(settings)
    paths: dict[str, Any] = {}
    for route in api.ROUTES:
        description, content = responses[route.name]
        operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
        if route.body is not None:
            form = route.body == "multipart"
            context = api.SchemaContext(tuple(models), default, form=form, classes=classes or {})
            schema = api.request_schema(route.name, settings, context)
            if route.name in NOTES:
                schema["description"] = NOTES[route.name]
            media = "multipart/form-data" if form else JSON
            operation["requestBody"] = {"required": True, "content": {media: {"schema": schema}}}
        refusals: tuple[int, ...] = (400, 404, 413) if route.body is not None else ()
        if route.body is not None:
            refusals += (500,)  # a model that gives NaN or infinity for this input
        if route.name in EXPENSIVE:
            refusals += (429,)
        operation["responses"] = {
            "200": {"description": description, "content": content},
            **_errors(*refusals, auth=auth),
        }
        paths[route.path] = {route.method.lower(): operation}
        for other in route.methods[1:]:  # POST /models: how BentoML's clients call it
            paths[route.path][other.lower()] = {
                **operation,
                "operationId": f"{route.name}_{other.lower()}",
                "summary": f"{route.summary} (as {route.method})",
            }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "gan-service",
            "version": "1",
            "description": "Seeds to images and images to realness scores (service/README.md).",
        },
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


async def openapi_endpoint(request: Request) -> Response:
    """The document for the running server (computed once: models and settings are fixed)."""
    state = request.app.state
    cached: bytes | None = getattr(state, "openapi_json", None)
    if cached is None:
        engine = state.engine
        document = openapi_document(
            engine.settings,
            sorted(engine.store.models),
            engine.store.default_name,
            engine.store.classes(),
        )
        cached = json.dumps(document, separators=(",", ":")).encode()
        state.openapi_json = cached
    return Response(cached, media_type=JSON)
