"""Untrusted request bodies -> validated parameters, or an ``ApiError`` naming the field.

Hand-written rather than pydantic: the rules are few, the messages are ours, and it keeps the
per-request cost of the hot ``/generate`` path to a ``json.loads`` and a handful of checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from contract.latents import SEED_MAX
from service.errors import bad_request, invalid_field, too_large

# A generate request is ~100 bytes; anything near this is not a generate request.
MAX_JSON_BYTES = 64 * 1024

GENERATE_FIELDS = frozenset({"seed", "n", "model", "truncation"})
GRID_FIELDS = GENERATE_FIELDS | {"columns"}
SCORE_FIELDS = frozenset({"images", "model"})


@dataclass(frozen=True)
class GenerateParams:
    seed: int
    n: int
    model: str | None
    truncation: float
    columns: int | None = None


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class ScoreParams:
    model: str | None
    uploads: list[Upload]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    _check_declared_length(request, limit)
    chunks = [chunk async for chunk in _limited_stream(request, limit)]
    return b"".join(chunks)


def parse_generate(body: bytes, n_max: int, *, grid: bool = False) -> GenerateParams:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request("bad_json", f"body is not valid JSON ({exc})") from None
    except RecursionError:  # [[[[... a few thousand deep: json's C scanner recurses
        raise bad_request("bad_json", "body is nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits (int_max_str_digits)
        raise bad_request("bad_json", f"body holds an unreadable number ({exc})") from None
    if not isinstance(data, dict):
        raise bad_request("bad_json", 'body must be a JSON object like {"seed": 1, "n": 4}')
    allowed = GRID_FIELDS if grid else GENERATE_FIELDS
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise invalid_field(
            unknown[0], f"unknown field {unknown[0]!r}; accepted: {', '.join(sorted(allowed))}"
        )
    if "seed" not in data:
        raise invalid_field("seed", f"seed is required: an integer in [0, {SEED_MAX}]")
    seed = int_field(data, "seed", 0, SEED_MAX, default=0)
    n = int_field(data, "n", 1, n_max, default=1)
    if seed + n - 1 > SEED_MAX:
        raise invalid_field(
            "n", f"seed + n - 1 = {seed + n - 1} is over the largest seed {SEED_MAX}"
        )
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid_field("model", f"model must be a string, got {type_name(model)}")
    truncation = data.get("truncation", 1.0)
    if not _is_number(truncation):
        raise invalid_field(
            "truncation", f"truncation must be a number, got {type_name(truncation)}"
        )
    truncation = float(truncation)
    if not (math.isfinite(truncation) and 0.0 < truncation <= 1.0):
        raise invalid_field("truncation", f"truncation must be in (0, 1], got {truncation}")
    columns = int_field(data, "columns", 1, n_max, default=1) if "columns" in data else None
    return GenerateParams(seed=seed, n=n, model=model, truncation=truncation, columns=columns)


async def read_score_form(request: Request, max_bytes: int, max_images: int) -> ScoreParams:
    """Parse the multipart form (field ``images``: files; ``model``: text) within the limits."""
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
    try:
        unknown = sorted(set(form.keys()) - SCORE_FIELDS)
        model = form.get("model")
        if model is not None and not isinstance(model, str):
            raise invalid_field("model", "model must be a text field, not a file")
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
        raise invalid_field(
            unknown[0], f"unknown field {unknown[0]!r}; accepted: images (files), model"
        )
    return ScoreParams(model=model or None, uploads=uploads)


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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def int_field(data: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_field(
            name, f"{name} must be an integer in [{lo}, {hi}], got {type_name(value)}"
        )
    if not lo <= value <= hi:
        raise invalid_field(name, f"{name} must be in [{lo}, {hi}], got {value}")
    return value
