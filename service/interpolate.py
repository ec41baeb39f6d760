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
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from contract.latents import latents_for_seeds
from service import api
from service.errors import invalid_field
from service.imaging import encode_png, make_grid
from service.settings import Settings

# All frames of one answer, scaled, stay within this many pixels: 64 steps of a 32x32 RGB model
# at scale 8 as a bouncing GIF (126 frames, ~8.3 Mpx) encode in ~2-3 s on the 2-core dev box.
MAX_OUTPUT_PIXELS = 2**23
# What the request schema cannot say (service/openapi.py adds it to the document).
BUDGET_NOTE = (
    f"At most {MAX_OUTPUT_PIXELS} pixels per answer (frames x scaled width x scaled "
    "height; bouncing animations have 2 * steps - 2 frames): more is a 400 naming scale."
)


@dataclass(frozen=True)
class InterpolateParams:
    seed_a: int
    seed_b: int
    steps: int
    model: str | None
    truncation: float
    format: str = "png"
    frame_ms: int = api.FRAME_MS_DEFAULT
    scale: int = 1
    bounce: bool = True
    # Every validated field, new ones included (api.FIELDS).
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


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


def parse_interpolate(body: bytes, settings: Settings) -> InterpolateParams:
    """Validate a JSON body; ``steps`` is in ``[2, max(2, GAN_N_MAX)]``."""
    v = api.parse_json_fields("interpolate", body, settings)
    return InterpolateParams(
        v["seed_a"],
        v["seed_b"],
        v["steps"],
        v["model"],
        v["truncation"],
        v["format"],
        v["frame_ms"],
        v["scale"],
        v["bounce"],
        values=v,
    )


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


class RenderCancelled(Exception):
    """The request was cancelled (its client left) while its frames were being encoded."""


class _Frames(list[Image.Image]):
    """Frames for Pillow's ``append_images`` that stop the encoding once ``cancelled`` is set
    (Pillow's GIF writer takes them one by one; its WebP writer copies the list first, so a
    WebP stops only before it starts)."""

    def __init__(self, images: list[Image.Image], cancelled: threading.Event) -> None:
        super().__init__(images)
        self.cancelled = cancelled

    def __iter__(self) -> Iterator[Image.Image]:
        for image in super().__iter__():
            if self.cancelled.is_set():
                raise RenderCancelled()
            yield image


def render(
    pixels: np.ndarray, params: InterpolateParams, cancelled: threading.Event | None = None
) -> bytes:
    """The walk's ``(steps, H, W, C)`` uint8 frames -> the bytes of the requested format;
    ``cancelled`` set (from the event loop) stops it early with ``RenderCancelled``."""
    cancelled = cancelled or threading.Event()
    if cancelled.is_set():
        raise RenderCancelled()
    frames = upscale(pixels, params.scale)
    if params.format == "png":
        return encode_png(make_grid(frames, columns=len(frames)))
    if params.bounce and len(frames) > 2:  # A..B..A, without repeating either end
        frames = np.concatenate([frames, frames[-2:0:-1]])
    images = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    buffer = io.BytesIO()
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": _Frames(images[1:], cancelled),
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
