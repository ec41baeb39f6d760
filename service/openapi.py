"""``GET /openapi.json``: an OpenAPI 3.0 document for the service's own routes.

BentoML's ``/docs.json`` only lists ``@bentoml.api`` methods, not the mounted Starlette routes,
so this document is written by hand from the same rules ``request_parsing`` enforces, with the
live limits (``GAN_N_MAX``, ``GAN_MAX_SCORE_IMAGES``, ...) and the served model names filled in.
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
from service.interpolate import FORMATS, openapi_request_schema
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
        408: "the request body did not arrive within GAN_REQUEST_TIMEOUT_S",
        413: "body, or an uploaded image, over the limits",
        503: "not answered within GAN_REQUEST_TIMEOUT_S (server busy): retry later",
    }
    wanted = [*statuses, 408, 503, *([401] if auth else [])]
    return {str(s): _error(known[s]) for s in sorted(set(wanted))}


def openapi_document(settings: Settings, models: list[str], default: str) -> dict[str, Any]:
    auth = bool(settings.api_keys)
    names: list[Any] = sorted(models)
    model_field = {
        "type": "string",
        "nullable": True,
        "enum": [*names, None],
        "description": f"a served model (GET /models); null or absent: {default!r}",
    }
    # A multipart text field cannot be null; an empty one (an HTML form's default) means default.
    form_model_field = {
        "type": "string",
        "enum": [*names, ""],
        "description": f"a served model (GET /models); empty or absent: {default!r}",
    }
    generate_properties: dict[str, Any] = {
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": SEED_MAX,
            "description": f"image i is the image of seed + i; seed + n - 1 <= {SEED_MAX}",
        },
        "n": {"type": "integer", "minimum": 1, "maximum": settings.n_max, "default": 1},
        "model": model_field,
        "truncation": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 1,
            "default": 1.0,
            "description": "the latent is scaled by it (truncation trick)",
        },
    }
    generate_request = {
        "type": "object",
        "required": ["seed"],
        "additionalProperties": False,
        "properties": generate_properties,
    }
    grid_request = {
        **generate_request,
        "properties": {
            **generate_properties,
            "columns": {
                "type": "integer",
                "minimum": 1,
                "maximum": settings.n_max,
                "description": "default ceil(sqrt(n)), capped at n",
            },
        },
    }
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
                    "required": ["seed", "png"],
                    "properties": {
                        "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
                        "png": {"type": "string", "format": "byte"},
                    },
                },
            },
        },
    }
    score_request = {
        "type": "object",
        "required": ["images"],
        "additionalProperties": False,
        "properties": {
            "images": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_score_images,
                "items": {"type": "string", "format": "binary"},
                "description": (
                    "image files (PNG, JPEG, WebP, BMP, GIF, TIFF, PPM, ICO), at most "
                    f"{settings.max_image_pixels} pixels each, {settings.max_upload_bytes} "
                    "bytes in all"
                ),
            },
            "model": form_model_field,
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

    def json_body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {JSON: {"schema": schema}}}

    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "gan-service",
            "version": "1",
            "description": "Seeds to images and images to realness scores (service/README.md).",
        },
        "paths": {
            "/generate": {
                "post": {
                    "operationId": "generate",
                    "summary": "n images from seeds seed .. seed + n - 1, as base64 PNGs",
                    "requestBody": json_body(generate_request),
                    "responses": {
                        "200": {
                            "description": "the images",
                            "content": {JSON: {"schema": generate_response}},
                        },
                        **_errors(400, 404, 413, auth=auth),
                    },
                }
            },
            "/generate_grid": {
                "post": {
                    "operationId": "generate_grid",
                    "summary": "the same images tiled into one PNG",
                    "requestBody": json_body(grid_request),
                    "responses": {
                        "200": {
                            "description": "one PNG grid",
                            "content": {
                                "image/png": {"schema": {"type": "string", "format": "binary"}}
                            },
                        },
                        **_errors(400, 404, 413, auth=auth),
                    },
                }
            },
            "/score": {
                "post": {
                    "operationId": "score",
                    "summary": "realness of uploaded images under a model's discriminator",
                    "requestBody": {
                        "required": True,
                        "content": {"multipart/form-data": {"schema": score_request}},
                    },
                    "responses": {
                        "200": {
                            "description": "one score per upload, in order",
                            "content": {JSON: {"schema": score_response}},
                        },
                        **_errors(400, 404, 413, auth=auth),
                    },
                }
            },
            "/interpolate": {
                "post": {
                    "operationId": "interpolate",
                    "summary": "a latent walk between two seeds: PNG strip, GIF or WebP",
                    "requestBody": json_body(openapi_request_schema(settings.n_max, model_field)),
                    "responses": {
                        "200": {
                            "description": "the frames, in the requested format",
                            "content": {
                                media: {"schema": {"type": "string", "format": "binary"}}
                                for media in FORMATS.values()
                            },
                        },
                        **_errors(400, 404, 413, auth=auth),
                    },
                }
            },
            "/models": {
                "get": {
                    "operationId": "models",
                    "summary": "models served, broken models, settings",
                    "responses": {
                        "200": {
                            "description": "the listing",
                            "content": {JSON: {"schema": models_response}},
                        },
                        **_errors(auth=auth),
                    },
                }
            },
        },
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
            engine.settings, sorted(engine.store.models), engine.store.default_name
        )
        cached = json.dumps(document, separators=(",", ":")).encode()
        state.openapi_json = cached
    return Response(cached, media_type=JSON)
