"""The public API declared the BentoML way: typed ``@bentoml.api`` methods, built from ``api.py``.

``GanService`` (service/service.py) inherits ``DeclaredApi``. Each method's input is a pydantic
model made from the same field table (``api.FIELDS``) that our parsers enforce, with the live
limits (``GAN_N_MAX``, ...) as bounds, so ``/schema.json``, ``/docs.json`` and the Swagger page at
``/`` list every route with its real types, and ``bentoml.SyncHTTPClient`` /
``AsyncHTTPClient`` call them as methods (``client.generate(seed=1, n=4)``; the ``class`` field
is a Python keyword: ``client.generate(seed=1, **{"class": "7"})``).

Who answers the HTTP requests: our handlers (``service/http_app.py``), always. The front door
(``service/fast_path.py``) takes BentoML's own endpoints of these methods out of its router, so a
request to ``/generate`` reaches our app straight (fast path) or through BentoML's middlewares
(``GAN_FAST_PATH=false``), never BentoML's pydantic/serde endpoint: one parser, one set of limits,
one JSON error contract, byte-for-byte the same answers either way (tested).

The method bodies are real too: they run the same handlers on a request made from their
arguments. They answer a call in-process (``.local``, a ``bentoml.depends`` caller), and HTTP
requests if the front door could not be installed (another BentoML version: the answers are
the same, except that BentoML's pydantic check refuses ill-typed input with its own 400 first).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import bentoml
import httpx
import pydantic
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from service import api
from service.asgi import ASGIApp, Message
from service.settings import Settings

# The Starlette app whose handlers answer (service.py binds it at import).
_BOUND: dict[str, Any] = {}


def bind(app: ASGIApp) -> None:
    _BOUND["app"] = app


def _field_type(kind: api.Kind, required: bool, settings: Settings) -> Any:
    """The pydantic annotation of one field kind (bounds from the live settings)."""
    optional = not required
    t: Any
    if isinstance(kind, api.Integer):
        t = Annotated[
            int,
            pydantic.Field(ge=api._bound(kind.lo, settings), le=api._bound(kind.hi, settings)),
        ]
    elif isinstance(kind, api.Number):
        t = Annotated[float, pydantic.Field(gt=kind.lo, le=kind.hi)]
    elif isinstance(kind, api.Choice):
        t = Literal[kind.options]
    elif isinstance(kind, api.Boolean):
        t = bool
    elif isinstance(kind, api.ModelName):
        return str | None
    elif isinstance(kind, api.ClassLabel):
        # Text first: BentoML's schema shows only a union's first member, and a digit string
        # is the class of that index (service/conditioning.py).
        return Union[  # noqa: UP007 (pydantic needs the Annotated members as one Union)
            Annotated[str, pydantic.Field(min_length=1, max_length=api.MAX_CLASS_NAME)],
            Annotated[int, pydantic.Field(ge=0)],
            None,
        ]
    elif isinstance(kind, api.Files):
        return Annotated[list[Path], pydantic.Field(min_length=1)]
    else:
        raise TypeError(f"no pydantic type for field kind {type(kind).__name__}")
    return t | None if optional else t


def python_name(field: str) -> str:
    return f"{field}_" if field in {"class"} else field


def input_model(route: str, settings: Settings) -> type[pydantic.BaseModel]:
    """The pydantic model of ``route``'s request, from ``api.FIELDS``."""
    fields: dict[str, Any] = {}
    for f in api.route_fields(route):
        default = f.default_value(settings)
        if f.required:
            default = ...
        elif default is api.NO_DEFAULT:
            default = None
        description = f.description or None
        fields[python_name(f.name)] = (
            _field_type(f.kind, f.required, settings),
            pydantic.Field(default, alias=f.name, description=description),
        )
    config = pydantic.ConfigDict(populate_by_name=True, extra="forbid")
    name = "".join(part.title() for part in route.split("_")) + "Input"
    return pydantic.create_model(name, __config__=config, **fields)


class GeneratedImage(pydantic.BaseModel):
    """One image: its seed and the base64 file of the requested format (one of the three)."""

    seed: int
    png: str | None = pydantic.Field(None, description="base64 of a PNG file (format png)")
    webp: str | None = pydantic.Field(None, description="base64 of a WebP file (format webp)")
    jpeg: str | None = pydantic.Field(None, description="base64 of a JPEG file (format jpeg)")


class GenerateOutput(pydantic.BaseModel):
    model: str
    width: int
    height: int
    images: list[GeneratedImage]


class Score(pydantic.BaseModel):
    filename: str
    realness: float = pydantic.Field(description="in [0, 1]")
    logit: float
    ood: float | None = pydantic.Field(
        None, description="out-of-distribution distance (models with a fitted realness)"
    )


class ScoreOutput(pydantic.BaseModel):
    model: str
    scores: list[Score]


# --- the method bodies: our handlers, on a request made from the arguments ---------------------


def _json_body(route: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for f in api.route_fields(route):
        value = arguments.get(python_name(f.name))
        if value is not None:
            body[f.name] = value
    return body


def _request_bytes(route: str, arguments: Mapping[str, Any]) -> tuple[bytes, str]:
    if api.ROUTES_BY_NAME[route].body != "multipart":
        return json.dumps(_json_body(route, arguments)).encode(), "application/json"
    data, files = {}, []
    for f in api.route_fields(route):
        value = arguments.get(python_name(f.name))
        if value is None:
            continue
        if isinstance(f.kind, api.Files):
            files += [(f.name, (Path(p).name, Path(p).read_bytes())) for p in value]
        else:
            data[f.name] = str(value)
    request = httpx.Request("POST", "http://local/", data=data, files=files)
    return request.read(), request.headers["content-type"]


async def call_handler(route: str, arguments: Mapping[str, Any]) -> Response:
    """Run our handler of ``route`` (with its middlewares: limits, metrics) on a request made
    from ``arguments``; the handler's response, as BentoML passes a ``Response`` through."""
    from service.http_app import HANDLERS

    app = _BOUND.get("app")
    if app is None:
        raise RuntimeError("service.bento_api.bind(app) was not called")
    spec = api.ROUTES_BY_NAME[route]
    body, content_type = (
        _request_bytes(route, arguments) if spec.body else (b"", "application/json")
    )
    sent = False
    never = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # nobody hangs up on an in-process call
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST" if spec.body else spec.method,
        "path": spec.path,
        "raw_path": spec.path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "app": app,
        "state": {},
    }
    return await HANDLERS[route](Request(scope, receive))


def declared_api(settings: Settings) -> type:
    """The mixin of ``@bentoml.api`` methods (one per ``api.ROUTES`` entry), typed for
    ``settings``' limits."""
    specs = {r.name: input_model(r.name, settings) for r in api.ROUTES if r.body is not None}

    class DeclaredApi:
        @bentoml.api(route="/generate", input_spec=specs["generate"], output_spec=GenerateOutput)
        async def generate(self, **arguments: Any) -> Any:
            """n images from seeds seed .. seed + n - 1 (image i: seed + i), as base64 files
            (png, webp, jpeg); format npy answers one .npy file instead, for HTTP clients."""
            return await call_handler("generate", arguments)

        @bentoml.api(route="/generate_grid", input_spec=specs["generate_grid"])
        async def generate_grid(self, **arguments: Any) -> Image.Image:
            """The same images tiled into one PNG."""
            return await call_handler("generate_grid", arguments)  # type: ignore[return-value]

        @bentoml.api(route="/interpolate", input_spec=specs["interpolate"])
        async def interpolate(self, **arguments: Any) -> Path:
            """A latent walk between two seeds: PNG strip, GIF or WebP."""
            return await call_handler("interpolate", arguments)  # type: ignore[return-value]

        @bentoml.api(route="/score", input_spec=specs["score"], output_spec=ScoreOutput)
        async def score(self, **arguments: Any) -> Any:
            """Realness of uploaded images under a model's discriminator."""
            return await call_handler("score", arguments)

        @bentoml.api(route="/models")
        async def models(self) -> dict[str, Any]:
            """Models served, broken models, settings (also GET /models)."""
            return await call_handler("models", {})  # type: ignore[return-value]

    missing = {r.name for r in api.ROUTES} - set(vars(DeclaredApi))
    if missing:
        raise RuntimeError(f"routes without a declared @bentoml.api method: {sorted(missing)}")
    return DeclaredApi
