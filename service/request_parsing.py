"""Untrusted request bodies -> validated parameters, or an ``ApiError`` naming the field.

The rules of every field are ``service/api.py``'s table; this module reads bodies within their
size limits (JSON, multipart uploads) and gives the routes typed parameters.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from service import api
from service.errors import bad_request, invalid_field, too_large
from service.settings import Settings

MAX_JSON_BYTES = api.MAX_JSON_BYTES


@dataclass(frozen=True)
class GenerateParams:
    seed: int
    n: int
    model: str | None
    truncation: float
    columns: int | None = None
    # Every validated field, new ones included (api.FIELDS), for routes that use more.
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class ScoreParams:
    model: str | None
    uploads: list[Upload]
    klass: str | None = None  # the ``class`` text field: an index or a name


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    _check_declared_length(request, limit)
    chunks = [chunk async for chunk in _limited_stream(request, limit)]
    return b"".join(chunks)


def parse_generate(body: bytes, settings: Settings, *, grid: bool = False) -> GenerateParams:
    values = api.parse_json_fields("generate_grid" if grid else "generate", body, settings)
    return GenerateParams(
        seed=values["seed"],
        n=values["n"],
        model=values["model"],
        truncation=values["truncation"],
        columns=values.get("columns"),
        values=values,
    )


async def read_score_form(request: Request, max_bytes: int, max_images: int) -> ScoreParams:
    """Parse the multipart form (field ``images``: files; ``model``, ``class``: text) within the
    limits."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise bad_request(
            "not_multipart",
            "send multipart/form-data with one or more files in the field 'images' "
            "(curl -F images=@picture.png)",
            "images",
        )
    _check_declared_length(request, max_bytes)
    parser = MultiPartParser(
        request.headers,
        _limited_stream(request, max_bytes),
        max_files=max_images,
        max_fields=16,
        max_part_size=4096,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise bad_request(
                "too_many_images", f"at most {max_images} images per request", "images"
            ) from None
        raise bad_request("bad_multipart", f"malformed multipart body ({exc.message})") from None
    accepted = api.route_fields("score")
    try:
        unknown = sorted(set(form.keys()) - api.field_names("score"))
        model = form_text(form.get("model"))
        if model is not None and not isinstance(model, str):
            raise invalid_field("model", "model must be a text field, not a file")
        klass = form_text(form.get("class"))
        if klass is not None and not isinstance(klass, str):
            raise invalid_field("class", "class must be a text field, not a file")
        if klass is not None and len(klass) > api.MAX_CLASS_NAME:
            raise invalid_field(
                "class",
                f"class must be a class index or name of at most {api.MAX_CLASS_NAME} characters",
            )
        uploads: list[Upload] = []
        for index, item in enumerate(form.getlist("images")):
            if not isinstance(item, UploadFile):
                raise invalid_field(
                    "images", "images must be files (curl -F images=@picture.png), not text"
                )
            uploads.append(Upload(item.filename or f"image-{index}", await item.read()))
    finally:
        await form.close()
    if not uploads:
        raise invalid_field("images", "no files in the field 'images'")
    if unknown:  # as strict as the JSON routes: a typo must not be silently ignored
        names = ", ".join(
            f"{f.name} (files)" if isinstance(f.kind, api.Files) else f.name for f in accepted
        )
        raise invalid_field(unknown[0], f"unknown field {unknown[0]!r}; accepted: {names}")
    return ScoreParams(model=model or None, uploads=uploads, klass=klass or None)


def form_text(value: Any) -> Any:
    """A text field of the form as its text. BentoML's clients send every text field
    JSON-encoded (``"mnist-dcgan"`` with its quotes, ``7``, ``null`` for an absent one):
    ``null`` is absent and a JSON string is its content; anything else (``curl -F
    model=mnist-dcgan``, a file) is taken as it is."""
    if not isinstance(value, str):
        return value
    if value == "null":
        return None
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("body_too_large", f"body of {declared} bytes is over the limit of {limit}")


async def _limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large("body_too_large", f"body is over the limit of {limit} bytes")
        if chunk:
            yield chunk
