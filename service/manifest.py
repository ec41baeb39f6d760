"""The ``model.json`` manifest (format ``gan-model/1``, docs/model-format.md) and its arithmetic.

numpy only, so that ``training/`` can import it and both sides agree on pixels and realness.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.latents import ALGORITHM

FORMAT = "gan-model/1"
MANIFEST_FILE = "model.json"


class ManifestError(ValueError):
    """model.json is missing, unreadable, or breaks the contract; the message names the field."""


@dataclass(frozen=True)
class ImageSpec:
    channels: int
    height: int
    width: int
    value_range: tuple[float, float]

    def to_uint8(self, images: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` floats in ``value_range`` -> ``(B, H, W, C)`` uint8, the contract's formula."""
        lo, hi = self.value_range
        scaled = np.rint((images - lo) * (255.0 / (hi - lo)))
        return np.clip(scaled, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)

    def from_uint8(self, pixels: np.ndarray) -> np.ndarray:
        """``(B, H, W, C)`` uint8 -> ``(B, C, H, W)`` float32 in ``value_range`` (uploads)."""
        lo, hi = self.value_range
        x = pixels.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class OnnxFile:
    file: str
    sha256: str
    input: str
    output: str


@dataclass(frozen=True)
class RealnessSpec:
    method: str
    a: float
    b: float

    def realness(self, logits: np.ndarray) -> np.ndarray:
        """``1 / (1 + exp(-(a * logit + b)))`` in float64, without overflow warnings."""
        t = self.a * logits.astype(np.float64) + self.b
        out = np.empty_like(t)
        pos = t >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-t[pos]))
        e = np.exp(t[~pos])
        out[~pos] = e / (1.0 + e)
        return out


@dataclass(frozen=True)
class Manifest:
    name: str
    loss: str
    z_dim: int
    image: ImageSpec
    generator: OnnxFile
    discriminator: OnnxFile
    realness: RealnessSpec
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, data: object, where: str = MANIFEST_FILE) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: top level must be a JSON object")
        fmt = _field(data, "format", str, where)
        if fmt != FORMAT:
            raise ManifestError(f"{where}: format is {fmt!r}, this service reads {FORMAT!r}")
        z_dim = _field(data, "z_dim", int, where)
        if z_dim < 1:
            raise ManifestError(f"{where}: z_dim must be >= 1, got {z_dim}")

        image = _field(data, "image", dict, where)
        channels = _field(image, "channels", int, where, "image.")
        height = _field(image, "height", int, where, "image.")
        width = _field(image, "width", int, where, "image.")
        if channels not in (1, 3):
            raise ManifestError(f"{where}: image.channels must be 1 or 3, got {channels}")
        if height < 1 or width < 1:
            raise ManifestError(f"{where}: image.height and image.width must be >= 1")
        value_range = _field(image, "value_range", list, where, "image.")
        if (
            len(value_range) != 2
            or not all(_is_number(v) for v in value_range)
            or not value_range[0] < value_range[1]
        ):
            raise ManifestError(f"{where}: image.value_range must be [lo, hi] with lo < hi")

        latent = _field(data, "latent", dict, where)
        algorithm = _field(latent, "algorithm", str, where, "latent.")
        if algorithm != ALGORITHM:
            raise ManifestError(
                f"{where}: latent.algorithm is {algorithm!r}, this service computes {ALGORITHM!r}"
            )

        onnx = _field(data, "onnx", dict, where)
        generator = _onnx_file(onnx, "generator", where)
        discriminator = _onnx_file(onnx, "discriminator", where)

        realness = _field(data, "realness", dict, where)
        method = _field(realness, "method", str, where, "realness.")
        a = _field(realness, "a", float, where, "realness.")
        b = _field(realness, "b", float, where, "realness.")
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ManifestError(f"{where}: realness.a and realness.b must be finite")

        return cls(
            name=_field(data, "name", str, where),
            loss=_field(data, "loss", str, where),
            z_dim=z_dim,
            image=ImageSpec(
                channels, height, width, (float(value_range[0]), float(value_range[1]))
            ),
            generator=generator,
            discriminator=discriminator,
            realness=RealnessSpec(method, float(a), float(b)),
            raw=data,
        )


def read_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable ({exc})") from None
    return Manifest.from_dict(data, where=str(path))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field(data: dict[str, Any], key: str, kind: type, where: str, prefix: str = "") -> Any:
    if key not in data:
        raise ManifestError(f"{where}: {prefix}{key} is missing")
    value = data[key]
    ok = (
        _is_number(value)
        if kind is float
        else isinstance(value, kind) and not isinstance(value, bool)
    )
    if not ok:
        raise ManifestError(
            f"{where}: {prefix}{key} must be of type {kind.__name__}, got {value!r}"
        )
    return value


def _onnx_file(onnx: dict[str, Any], key: str, where: str) -> OnnxFile:
    entry = _field(onnx, key, dict, where, "onnx.")
    prefix = f"onnx.{key}."
    file = _field(entry, "file", str, where, prefix)
    if Path(file).name != file:
        raise ManifestError(f"{where}: {prefix}file must be a file name in the model folder")
    sha = _field(entry, "sha256", str, where, prefix).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{where}: {prefix}sha256 must be 64 hex digits")
    return OnnxFile(
        file=file,
        sha256=sha,
        input=_field(entry, "input", str, where, prefix),
        output=_field(entry, "output", str, where, prefix),
    )
