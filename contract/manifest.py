"""The ``model.json`` manifest (docs/model-format.md): read, validated and written here only.

Formats: ``gan-model/2`` (written now) adds class conditioning and the out-of-distribution term
of the realness to ``gan-model/1``, which is still read unchanged. numpy only, so that
``training/`` writes through the same code the service and the metrics read through.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract import pixels, realness
from contract.files import atomic_write_text
from contract.latents import ALGORITHM, CLASS_ALGORITHM

FORMAT = "gan-model/2"
READABLE_FORMATS = ("gan-model/1", FORMAT)
MANIFEST_FILE = "model.json"
MAX_CLASSES = 10_000


class ManifestError(ValueError):
    """model.json is missing, unreadable, or breaks the contract; the message names the field."""


@dataclass(frozen=True)
class ImageSpec:
    channels: int
    height: int
    width: int
    value_range: tuple[float, float]

    def to_uint8(self, images: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` floats in ``value_range`` -> ``(B, H, W, C)`` uint8 (``pixels.to_uint8``)."""
        return pixels.to_uint8(images, self.value_range).transpose(0, 2, 3, 1)

    def from_uint8(self, u8: np.ndarray) -> np.ndarray:
        """``(B, H, W, C)`` uint8 -> ``(B, C, H, W)`` float32 in ``value_range`` (uploads)."""
        return np.ascontiguousarray(pixels.from_uint8(u8, self.value_range).transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class OnnxFile:
    file: str
    sha256: str
    input: str
    output: str
    # Generators only, optional (training/uint8_graph.py): the ``(B, H, W, C)`` uint8 output of
    # ``image.to_uint8`` computed in the graph, and the ``(B,)`` bool output saying which rows
    # were finite before the cast. Both or neither.
    uint8_output: str | None = None
    finite_output: str | None = None


@dataclass(frozen=True)
class OodSpec:
    """The out-of-distribution factor of the realness (contract/realness.py)."""

    output: str  # the discriminator graph's output holding the distance, shape (B,)
    quantiles: tuple[float, ...]  # of held-out real images' distances, probabilities 0..1
    held_out: int  # how many held-out images the quantiles summarise
    full_credit: float  # a p-value at least this costs nothing


@dataclass(frozen=True)
class RealnessSpec:
    method: str
    a: float
    b: float
    ood: OodSpec | None = None

    def log_realness(
        self,
        logits: np.ndarray,
        ood: np.ndarray | None = None,
        classes: np.ndarray | None = None,
    ) -> np.ndarray:
        """The ranking score: log of ``realness`` (float64; see contract/realness.py)."""
        logit = realness.class_logits(logits, classes)
        if self.ood is None:
            return realness.log_realness(logit, self.a, self.b)
        if ood is None:
            raise ValueError("this model's realness needs the discriminator's ood output")
        return realness.log_realness(
            logit,
            self.a,
            self.b,
            ood,
            np.asarray(self.ood.quantiles),
            self.ood.held_out,
            self.ood.full_credit,
        )

    def realness(
        self,
        logits: np.ndarray,
        ood: np.ndarray | None = None,
        classes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Realness in [0, 1], float64: ``exp(log_realness)``."""
        return np.exp(self.log_realness(logits, ood, classes))


@dataclass(frozen=True)
class Conditioning:
    """A class-conditional model: G takes a class index, D scores (image, class)."""

    classes: tuple[str, ...]  # index -> name
    input: str  # the generator graph's int64 (B,) class input

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, value: int | str) -> int:
        """A class given as its index or its name -> the index; ``KeyError`` when unknown."""
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < len(self.classes):
                return value
            raise KeyError(value)
        try:
            return self.classes.index(value)
        except ValueError:
            raise KeyError(value) from None


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
    conditioning: Conditioning | None = None

    @property
    def conditional(self) -> bool:
        return self.conditioning is not None

    @classmethod
    def from_dict(cls, data: object, where: str = MANIFEST_FILE) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: top level must be a JSON object")
        fmt = _field(data, "format", str, where)
        if fmt not in READABLE_FORMATS:
            raise ManifestError(
                f"{where}: format is {fmt!r}, this version reads {' and '.join(READABLE_FORMATS)}"
            )
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
        ood = _ood(realness, where) if fmt != "gan-model/1" else None
        conditioning = _conditioning(data, where) if fmt != "gan-model/1" else None

        return cls(
            name=_field(data, "name", str, where),
            loss=_field(data, "loss", str, where),
            z_dim=z_dim,
            image=ImageSpec(
                channels, height, width, (float(value_range[0]), float(value_range[1]))
            ),
            generator=generator,
            discriminator=discriminator,
            realness=RealnessSpec(method, float(a), float(b), ood),
            raw=data,
            conditioning=conditioning,
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


def write_manifest(model_dir: Path, data: dict[str, Any]) -> Manifest:
    """Validate ``data`` as a manifest and write it atomically to ``model_dir/model.json``.

    The exporter writes through here, so a model folder it makes is one the service reads.
    """
    manifest = Manifest.from_dict(data, where=str(model_dir / MANIFEST_FILE))
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_text(model_dir / MANIFEST_FILE, text)
    return manifest


def latent_section() -> dict[str, Any]:
    """The ``latent`` block every manifest carries: how the service turns seeds into inputs."""
    from contract.latents import SEED_MAX

    return {
        "algorithm": ALGORITHM,
        "seed_range": [0, SEED_MAX],
        "row_i": "latent of seed + i",
        "truncation": "z * psi, psi in (0, 1]",
        "implementation": "contract/latents.py",
    }


def conditioning_section(classes: list[str], input_name: str = "class") -> dict[str, Any]:
    """The ``conditioning`` block of a class-conditional model."""
    return {
        "classes": list(classes),
        "input": input_name,
        "dtype": "int64",
        "without_class": CLASS_ALGORITHM,
        "without_class_rule": "w = splitmix64(splitmix64(seed) ^ 0x636C617373); class = ((w >> 32) * K) >> 32",
        "implementation": "contract/latents.py",
    }


def image_section(channels: int, height: int, width: int) -> dict[str, Any]:
    return {
        "channels": channels,
        "height": height,
        "width": width,
        "value_range": list(pixels.VALUE_RANGE),
        "to_uint8": pixels.TO_UINT8,
        "from_uint8": pixels.FROM_UINT8,
    }


def _conditioning(data: dict[str, Any], where: str) -> Conditioning | None:
    block = data.get("conditioning")
    if block is None:
        return None
    if not isinstance(block, dict):
        raise ManifestError(f"{where}: conditioning must be an object or null")
    classes = _field(block, "classes", list, where, "conditioning.")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise ManifestError(f"{where}: conditioning.classes must list 2 to {MAX_CLASSES} names")
    if not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ManifestError(f"{where}: conditioning.classes must be distinct non-empty strings")
    algorithm = block.get("without_class", CLASS_ALGORITHM)
    if algorithm != CLASS_ALGORITHM:
        raise ManifestError(
            f"{where}: conditioning.without_class is {algorithm!r}, this version computes {CLASS_ALGORITHM!r}"
        )
    return Conditioning(tuple(classes), _field(block, "input", str, where, "conditioning."))


def _ood(block: dict[str, Any], where: str) -> OodSpec | None:
    ood = block.get("ood")
    if ood is None:
        return None
    if not isinstance(ood, dict):
        raise ManifestError(f"{where}: realness.ood must be an object or null")
    output = _field(ood, "output", str, where, "realness.ood.")
    quantiles = _field(ood, "quantiles", list, where, "realness.ood.")
    if (
        len(quantiles) < 2
        or not all(_is_number(q) and math.isfinite(q) for q in quantiles)
        or any(b < a for a, b in itertools.pairwise(quantiles))
    ):
        raise ManifestError(
            f"{where}: realness.ood.quantiles must be 2 or more finite numbers in increasing order"
        )
    held_out = _field(ood, "held_out", int, where, "realness.ood.")
    full_credit = float(_field(ood, "full_credit", float, where, "realness.ood."))
    if held_out < 1 or not 0.0 < full_credit <= 1.0:
        raise ManifestError(
            f"{where}: realness.ood.held_out must be >= 1 and full_credit in (0, 1]"
        )
    return OodSpec(output, tuple(float(q) for q in quantiles), held_out, full_credit)


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
    uint8, finite = entry.get("uint8_output"), entry.get("finite_output")
    if (uint8 is None) != (finite is None) or not all(
        v is None or (isinstance(v, str) and v) for v in (uint8, finite)
    ):
        raise ManifestError(
            f"{where}: {prefix}uint8_output and {prefix}finite_output must be output names, "
            "both or neither"
        )
    if uint8 is not None and key != "generator":
        raise ManifestError(f"{where}: {prefix}uint8_output is for the generator only")
    return OnnxFile(
        file=file,
        sha256=sha,
        input=_field(entry, "input", str, where, prefix),
        output=_field(entry, "output", str, where, prefix),
        uint8_output=uint8,
        finite_output=finite,
    )
