"""``POST /interpolate``: a latent walk between two seeds, as a PNG strip or an animated GIF/WebP.

The walk is a spherical interpolation (slerp) between ``latents(seed_a)`` and ``latents(seed_b)``
of ``contract/latents.py`` (the seed -> latent mapping is not touched): for Gaussian latents,
slerp keeps the intermediate vectors at a typical norm, where a straight line would pass through
the low-density middle and give washed-out images. Frame 0 is exactly the image of ``seed_a``
and the last frame exactly the image of ``seed_b`` (as ``/generate`` gives them, truncation
included). The frames go through the engine's micro-batcher and ONNX Runtime like ``/generate``
(metrics kind ``interpolate``).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from contract.latents import SEED_MAX, latents_for_seeds
from service.errors import bad_request, invalid_field
from service.imaging import encode_png, make_grid
from service.request_parsing import int_field, type_name

FORMATS = {"png": "image/png", "gif": "image/gif", "webp": "image/webp"}
FIELDS = frozenset(
    {"seed_a", "seed_b", "steps", "model", "truncation", "format", "frame_ms", "scale", "bounce"}
)
STEPS_MIN = 2
STEPS_DEFAULT = 16
FRAME_MS_RANGE = (20, 2000)
FRAME_MS_DEFAULT = 80
SCALE_MAX = 8
# All frames of one answer, scaled, stay within this many pixels: 64 steps of a 32x32 RGB model
# at scale 8 as a bouncing GIF (126 frames, ~8.3 Mpx) encode in ~2-3 s on the 2-core dev box.
MAX_OUTPUT_PIXELS = 2**23


@dataclass(frozen=True)
class InterpolateParams:
    seed_a: int
    seed_b: int
    steps: int
    model: str | None
    truncation: float
    format: str = "png"
    frame_ms: int = FRAME_MS_DEFAULT
    scale: int = 1
    bounce: bool = True


def openapi_request_schema(steps_max: int, model_field: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /interpolate`` as an OpenAPI 3.0 schema, with the same bounds as
    ``parse_interpolate`` (for service/openapi.py). Not expressible in the schema: the output
    budget (``check_budget``), which depends on the model's image size."""
    steps_max = max(STEPS_MIN, steps_max)
    seed = {"type": "integer", "minimum": 0, "maximum": SEED_MAX}
    return {
        "type": "object",
        "required": ["seed_a", "seed_b"],
        "additionalProperties": False,
        "properties": {
            "seed_a": {**seed, "description": "the first frame is this seed's image"},
            "seed_b": {**seed, "description": "the last frame is this seed's image"},
            "steps": {
                "type": "integer",
                "minimum": STEPS_MIN,
                "maximum": steps_max,
                "default": min(STEPS_DEFAULT, steps_max),
            },
            "model": model_field,
            "truncation": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
                "default": 1.0,
            },
            "format": {"type": "string", "enum": list(FORMATS), "default": "png"},
            "frame_ms": {
                "type": "integer",
                "minimum": FRAME_MS_RANGE[0],
                "maximum": FRAME_MS_RANGE[1],
                "default": FRAME_MS_DEFAULT,
            },
            "scale": {"type": "integer", "minimum": 1, "maximum": SCALE_MAX, "default": 1},
            "bounce": {"type": "boolean", "default": True},
        },
        "description": (
            f"At most {MAX_OUTPUT_PIXELS} pixels per answer (frames x scaled width x scaled "
            "height; bouncing animations have 2 * steps - 2 frames): more is a 400 naming scale."
        ),
    }


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of two ``(D,)`` vectors at the ``(T,)`` fractions ``t`` -> ``(T, D)``.

    ``sin((1-t) w) / sin(w) * a + sin(t w) / sin(w) * b`` with ``w`` the angle between ``a`` and
    ``b``, computed in float64. When the vectors are (anti)parallel or zero, where the formula is
    undefined or unstable, it falls back to the straight line ``(1-t) a + t b``.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    t64 = np.asarray(t, dtype=np.float64)[:, None]
    norms = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    if norms == 0.0:
        return (1.0 - t64) * a64 + t64 * b64
    omega = math.acos(max(-1.0, min(1.0, float(a64 @ b64) / norms)))
    sin_omega = math.sin(omega)
    if sin_omega < 1e-6:
        return (1.0 - t64) * a64 + t64 * b64
    return (np.sin((1.0 - t64) * omega) * a64 + np.sin(t64 * omega) * b64) / sin_omega


def walk_latents(
    seed_a: int, seed_b: int, steps: int, z_dim: int, truncation: float = 1.0
) -> np.ndarray:
    """``(steps, z_dim)`` float32: slerp from the latent of ``seed_a`` to that of ``seed_b``.

    Both ends are truncated as ``/generate`` truncates them; slerp commutes with that common
    scale, so every frame is the truncated walk. The ends are copied exactly, not recomputed.
    """
    ends = latents_for_seeds(np.array([seed_a, seed_b], dtype=np.uint64), z_dim, truncation)
    z = slerp(ends[0], ends[1], np.linspace(0.0, 1.0, steps)).astype(np.float32)
    z[0], z[-1] = ends[0], ends[1]
    return z


def parse_interpolate(body: bytes, steps_max: int) -> InterpolateParams:
    """Validate a JSON body; ``steps`` is in ``[2, steps_max]`` (the service passes GAN_N_MAX)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request("bad_json", f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad_request(
            "bad_json", 'body must be a JSON object like {"seed_a": 1, "seed_b": 2, "steps": 16}'
        )
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise invalid_field(
            unknown[0], f"unknown field {unknown[0]!r}; accepted: {', '.join(sorted(FIELDS))}"
        )
    for name in ("seed_a", "seed_b"):
        if name not in data:
            raise invalid_field(name, f"{name} is required: an integer in [0, {SEED_MAX}]")
    steps_max = max(STEPS_MIN, steps_max)
    seed_a = int_field(data, "seed_a", 0, SEED_MAX, 0)
    seed_b = int_field(data, "seed_b", 0, SEED_MAX, 0)
    steps = int_field(data, "steps", STEPS_MIN, steps_max, min(STEPS_DEFAULT, steps_max))
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid_field("model", f"model must be a string, got {type_name(model)}")
    truncation = data.get("truncation", 1.0)
    if not isinstance(truncation, int | float) or isinstance(truncation, bool):
        raise invalid_field(
            "truncation", f"truncation must be a number, got {type_name(truncation)}"
        )
    truncation = float(truncation)
    if not (math.isfinite(truncation) and 0.0 < truncation <= 1.0):
        raise invalid_field("truncation", f"truncation must be in (0, 1], got {truncation}")
    fmt = data.get("format", "png")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise invalid_field(
            "format", f"format must be one of {', '.join(FORMATS)}, got {json.dumps(fmt)}"
        )
    frame_ms = int_field(data, "frame_ms", *FRAME_MS_RANGE, FRAME_MS_DEFAULT)
    scale = int_field(data, "scale", 1, SCALE_MAX, 1)
    bounce = data.get("bounce", True)
    if not isinstance(bounce, bool):
        raise invalid_field("bounce", f"bounce must be true or false, got {type_name(bounce)}")
    return InterpolateParams(seed_a, seed_b, steps, model, truncation, fmt, frame_ms, scale, bounce)


def frame_count(params: InterpolateParams) -> int:
    """Frames in the answer: ``steps``, or ``2 * steps - 2`` for a bouncing animation."""
    if params.format != "png" and params.bounce and params.steps > 2:
        return 2 * params.steps - 2
    return params.steps


def check_budget(height: int, width: int, params: InterpolateParams) -> None:
    """Refuse (400, field ``scale``) an answer over ``MAX_OUTPUT_PIXELS`` for this model's size:
    encoding time grows with frames x scaled pixels (a few seconds at the limit on 2 cores)."""
    frames = frame_count(params)
    total = frames * height * width * params.scale**2
    if total > MAX_OUTPUT_PIXELS:
        largest = math.isqrt(MAX_OUTPUT_PIXELS // (frames * height * width))
        hint = f"use scale <= {largest} or fewer steps" if largest >= 1 else "use fewer steps"
        raise invalid_field(
            "scale",
            f"{frames} frames of {width * params.scale}x{height * params.scale} pixels "
            f"= {total} pixels, over the limit of {MAX_OUTPUT_PIXELS}; {hint}",
        )


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """``(N, H, W, C)`` -> ``(N, H*scale, W*scale, C)``, nearest neighbour (sharp pixels)."""
    if scale == 1:
        return pixels
    return np.repeat(np.repeat(pixels, scale, axis=1), scale, axis=2)


def render(pixels: np.ndarray, params: InterpolateParams) -> bytes:
    """The walk's ``(steps, H, W, C)`` uint8 frames -> the bytes of the requested format."""
    frames = upscale(pixels, params.scale)
    if params.format == "png":
        return encode_png(make_grid(frames, columns=len(frames)))
    if params.bounce and len(frames) > 2:  # A..B..A, without repeating either end
        frames = np.concatenate([frames, frames[-2:0:-1]])
    images = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    buffer = io.BytesIO()
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": images[1:],
        "duration": params.frame_ms,
        "loop": 0,
    }
    if params.format == "gif":
        # Pillow merges identical neighbouring frames (seed_a == seed_b), adding their durations.
        images[0].save(buffer, format="GIF", optimize=False, disposal=1, **options)
    else:
        # Lossless at effort 1: 3-10x faster than the default effort 4 here, same size or close.
        images[0].save(buffer, format="WEBP", lossless=True, method=1, **options)
    return buffer.getvalue()


def filename(params: InterpolateParams) -> str:
    kind = "strip" if params.format == "png" else "walk"
    return f"{kind}-{params.seed_a}-{params.seed_b}-{params.steps}.{params.format}"
