"""Our models as Open Inference Protocol (KServe v2) models: names, metadata, what tensors mean.

Each served model ``NAME`` is two v2 models, version ``1``, platform ``onnxruntime_onnx``:

- ``NAME``, the generator. Inputs: ``seed`` (any integer type, UINT64 or INT64 usually, ``[n]``)
  with image i the image of ``seed[i]`` exactly as ``/generate`` makes it, or ``z`` (FP32
  ``[n, z_dim]``) for latents of the caller's own; ``class`` (integer, ``[n]`` or ``[1]`` for
  all; class-conditional models only: absent, a seed draws its own class as on ``/generate``, and
  ``z`` needs it); ``truncation`` (FP32 or FP64, ``[n]`` or ``[1]``, with ``seed`` only). Output:
  ``images`` UINT8 ``[n, H, W, C]``, or, with the request parameter ``format`` (``png``,
  ``webp`` or ``jpeg``, as ``/generate``'s; ``quality`` too), BYTES ``[n]``: file i is image i
  encoded, for a client that wants files rather than pixels.
- ``NAME-discriminator``. Inputs: ``images`` UINT8 ``[n, H, W, C]`` at the model's own size, and
  ``class`` as above (absent: judged against the class it fits best on average, as ``/score``).
  Outputs: ``logits`` and ``realness`` FP32 ``[n]`` (``/score``'s ``logit`` and ``realness``),
  and ``ood`` FP32 ``[n]`` when the model has an out-of-distribution distance.

An FP32 ``truncation`` is read as the shortest decimal that rounds to it (0.7f is 0.7, not
0.699999988), so the same request gives ``/generate``'s pixels; FP64 is taken as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.latents import SEED_MAX
from service.conditioning import FROM_SEED
from service.engine import Engine
from service.model_store import LoadedModel, ModelStore
from service.oip_tensors import BYTES, InferRequest, OutputTensor, Tensor
from service.settings import Settings

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
DISCRIMINATOR_SUFFIX = "-discriminator"
VERSION = "1"
PLATFORM = "onnxruntime_onnx"
INTEGER_TYPES = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
)
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


class V2Error(Exception):
    """A refusal in the v2 error format (``{"error": message}``) with its HTTP status and the
    ``reason`` label it is counted under."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def bad_input(message: str) -> V2Error:
    return V2Error(400, "invalid_input", message)


@dataclass(frozen=True)
class V2Model:
    name: str  # the v2 name
    model: LoadedModel
    role: str  # GENERATOR or DISCRIMINATOR


class Catalog:
    """The v2 names of a store's models. A folder literally named ``X-discriminator`` keeps its
    generator name; the discriminator of ``X`` is then not reachable by name (never silently
    swapped)."""

    def __init__(self, store: ModelStore) -> None:
        self.models: dict[str, V2Model] = {}
        for name, model in sorted(store.models.items()):
            self.models[name] = V2Model(name, model, GENERATOR)
        for name, model in sorted(store.models.items()):
            self.models.setdefault(
                name + DISCRIMINATOR_SUFFIX,
                V2Model(name + DISCRIMINATOR_SUFFIX, model, DISCRIMINATOR),
            )
        self.broken: dict[str, str] = {}
        for name, broken in store.broken.items():
            for v2 in (name, name + DISCRIMINATOR_SUFFIX):
                if v2 not in self.models:
                    self.broken[v2] = broken.error

    def lookup(self, name: str, version: str | None = None) -> V2Model:
        found = self.models.get(name)
        if found is None:
            if name in self.broken:
                raise V2Error(
                    503, "model_unavailable", f"model {name!r} is not ready: {self.broken[name]}"
                )
            shown = repr(name) if len(name) <= 100 else f"{name[:100]!r}..."
            raise V2Error(
                404,
                "unknown_model",
                f"unknown model {shown}; served: {', '.join(sorted(self.models))}",
            )
        if version is not None and version != VERSION:
            raise V2Error(
                404,
                "unknown_version",
                f"model {name!r} has no version {version[:20]!r}; its versions: {VERSION}",
            )
        return found


def _tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def input_specs(v2: V2Model) -> list[tuple[dict[str, Any], bool]]:
    """(metadata tensor, optional) of each input."""
    m = v2.model.manifest
    conditional = m.conditioning is not None
    if v2.role == GENERATOR:
        specs = [
            (_tensor("seed", "UINT64", [-1]), True),
            (_tensor("z", "FP32", [-1, m.z_dim]), True),
            (_tensor("truncation", "FP32", [-1]), True),
        ]
    else:
        image = m.image
        specs = [
            (_tensor("images", "UINT8", [-1, image.height, image.width, image.channels]), False)
        ]
    if conditional:
        specs.append((_tensor("class", "INT64", [-1]), True))
    return specs


def output_specs(v2: V2Model) -> list[dict[str, Any]]:
    m = v2.model.manifest
    if v2.role == GENERATOR:
        image = m.image
        return [_tensor("images", "UINT8", [-1, image.height, image.width, image.channels])]
    outs = [_tensor("logits", "FP32", [-1]), _tensor("realness", "FP32", [-1])]
    if m.realness.ood is not None:
        outs.append(_tensor("ood", "FP32", [-1]))
    return outs


def metadata(v2: V2Model) -> dict[str, Any]:
    """``GET /v2/models/{name}``: -1 is the batch dimension."""
    return {
        "name": v2.name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [spec for spec, _ in input_specs(v2)],
        "outputs": output_specs(v2),
    }


def config(v2: V2Model, settings: Settings) -> dict[str, Any]:
    """``GET /v2/models/{name}/config``, in Triton's model-configuration JSON (what
    ``tritonclient``'s ``get_model_config`` reads): dims without the batch dimension, and
    which inputs are optional."""
    limit = settings.n_max if v2.role == GENERATOR else settings.max_score_images

    def dims(spec: dict[str, Any]) -> list[int]:
        return list(spec["shape"][1:]) or [1]

    return {
        "name": v2.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [int(VERSION)]}},
        "max_batch_size": limit,
        "input": [
            {
                "name": spec["name"],
                "data_type": "TYPE_" + spec["datatype"],
                "dims": dims(spec),
                "optional": optional,
            }
            for spec, optional in input_specs(v2)
        ],
        "output": [
            {"name": spec["name"], "data_type": "TYPE_" + spec["datatype"], "dims": dims(spec)}
            for spec in output_specs(v2)
        ],
    }


# --- inference -------------------------------------------------------------------------------


def _accepted(v2: V2Model, request: InferRequest) -> None:
    names = [spec["name"] for spec, _ in input_specs(v2)]
    for name in request.inputs:
        if name not in names:
            if name == "class":
                raise bad_input(
                    f"model {v2.name!r} is not class-conditional: it takes no class input"
                )
            raise bad_input(
                f"model {v2.name!r} has no input {name[:100]!r}; its inputs: {', '.join(names)}"
            )


def _batch(tensor: Tensor, limit: int, setting: str) -> int:
    n = tensor.array.shape[0] if tensor.array.ndim else 0
    if not 1 <= n <= limit:
        raise bad_input(
            f"input {tensor.name!r}: batch of {n}; this server takes 1 to {limit} ({setting})"
        )
    return n


def _per_row(tensor: Tensor, n: int) -> np.ndarray:
    """A ``[n]`` or ``[1]`` (broadcast) input as ``(n,)``."""
    if tensor.array.ndim != 1 or tensor.array.shape[0] not in (1, n):
        raise bad_input(
            f"input {tensor.name!r}: shape {list(tensor.array.shape)}; need [{n}] or [1]"
        )
    return np.broadcast_to(tensor.array, (n,))


def _classes(v2: V2Model, request: InferRequest, n: int) -> np.ndarray | None:
    tensor = request.inputs.get("class")
    if tensor is None:
        return None
    if tensor.datatype not in INTEGER_TYPES:
        raise bad_input(f"input 'class': datatype {tensor.datatype}; need an integer type (INT64)")
    cond = v2.model.manifest.conditioning
    assert cond is not None  # _accepted refused a class for unconditional models
    values = _per_row(tensor, n)
    if values.min() < 0 or values.max() >= cond.num_classes:
        listed = ", ".join(f"{i} {name!r}" for i, name in enumerate(cond.classes))
        raise bad_input(
            f"input 'class': model {v2.name!r} has classes 0 to {cond.num_classes - 1} ({listed})"
        )
    return values.astype(np.int64)


def _truncation(tensor: Tensor | None, n: int) -> np.ndarray:
    if tensor is None:
        return np.ones(n, dtype=np.float64)
    if tensor.datatype not in FLOAT_TYPES:
        raise bad_input(f"input 'truncation': datatype {tensor.datatype}; need FP32 or FP64")
    values = _per_row(tensor, n)
    if tensor.datatype != "FP64":
        # The decimal the client meant: 0.7 sent as FP32 is 0.699999988, and /generate's 0.7
        # would give other latents.
        values = np.array(
            [float(np.format_float_positional(v, unique=True)) for v in values], np.float64
        )
    values = values.astype(np.float64)
    if not ((values > 0) & (values <= 1)).all():
        raise bad_input("input 'truncation': values must be in (0, 1]")
    return values


async def _generate(engine: Engine, v2: V2Model, request: InferRequest) -> dict[str, np.ndarray]:
    inputs = request.inputs
    if ("seed" in inputs) == ("z" in inputs):
        raise bad_input("give exactly one of the inputs 'seed' ([n] integers) or 'z' ([n, z_dim])")
    n_max = engine.settings.n_max
    if "seed" in inputs:
        seed = inputs["seed"]
        if seed.datatype not in INTEGER_TYPES or seed.array.ndim != 1:
            raise bad_input(
                f"input 'seed': {seed.datatype} {list(seed.array.shape)}; need UINT64 or INT64 [n]"
            )
        n = _batch(seed, n_max, "GAN_N_MAX")
        if seed.array.min() < 0 or seed.array.max() > SEED_MAX:
            raise bad_input(f"input 'seed': seeds must be in [0, {SEED_MAX}]")
        classes = _classes(v2, request, n)
        column = np.full(n, FROM_SEED, np.float64) if classes is None else classes
        result = await engine.generate_seeds(
            v2.model.name,
            seed.array.astype(np.uint64),
            _truncation(inputs.get("truncation"), n),
            column,
        )
        return {"images": result.pixels}
    z = inputs["z"]
    z_dim = v2.model.manifest.z_dim
    if z.datatype not in FLOAT_TYPES or z.array.ndim != 2 or z.array.shape[1] != z_dim:
        raise bad_input(f"input 'z': {z.datatype} {list(z.array.shape)}; need FP32 [n, {z_dim}]")
    n = _batch(z, n_max, "GAN_N_MAX")
    if "truncation" in inputs:
        raise bad_input("input 'truncation' goes with 'seed'; scale 'z' yourself")
    classes = _classes(v2, request, n)
    if classes is None and v2.model.manifest.conditioning is not None:
        raise bad_input(f"model {v2.name!r} is class-conditional: 'z' needs a 'class' input")
    result = await engine.generate_latent_batch(
        v2.model.name, np.ascontiguousarray(z.array, dtype=np.float32), classes
    )
    return {"images": result.pixels}


async def _discriminate(
    engine: Engine, v2: V2Model, request: InferRequest
) -> dict[str, np.ndarray]:
    images = request.inputs.get("images")
    spec = v2.model.manifest.image
    wanted = [spec.height, spec.width, spec.channels]
    if images is None:
        raise bad_input(f"model {v2.name!r} needs the input 'images' (UINT8 [n, {wanted}])")
    if images.datatype != "UINT8" or list(images.array.shape[1:]) != wanted:
        raise bad_input(
            f"input 'images': {images.datatype} {list(images.array.shape)}; need UINT8 "
            f"[n, {', '.join(map(str, wanted))}] (this model's height, width, channels)"
        )
    n = _batch(images, engine.settings.max_score_images, "GAN_MAX_SCORE_IMAGES")
    scored = await engine.score_pixels(v2.model.name, images.array, _classes(v2, request, n))
    outputs = {"logits": scored.logits, "realness": scored.realness}
    if scored.ood is not None:
        outputs["ood"] = scored.ood
    return outputs


# The request parameters that turn the generator's ``images`` into encoded files (BYTES).
IMAGE_FORMATS = ("png", "webp", "jpeg")
LOSSY = ("webp", "jpeg")


def _image_format(v2: V2Model, request: InferRequest) -> tuple[str, int | None] | None:
    """``parameters.format`` (and ``quality``): how to encode ``images``; None: UINT8 pixels."""
    parameters = request.parameters
    fmt, quality = parameters.get("format"), parameters.get("quality")
    if fmt is None:
        if quality is not None:
            raise bad_input("parameters.quality goes with parameters.format webp or jpeg")
        return None
    if v2.role != GENERATOR:
        raise bad_input(f"model {v2.name!r} gives no images: parameters.format is for generators")
    if fmt not in IMAGE_FORMATS:
        shown = repr(fmt)[:40]
        raise bad_input(f"parameters.format must be one of {', '.join(IMAGE_FORMATS)}, got {shown}")
    if quality is not None and (
        not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100
    ):
        raise bad_input("parameters.quality must be an integer in [1, 100]")
    # As on /generate, png has no quality and ignores one.
    return fmt, quality if fmt in LOSSY else None


async def infer(engine: Engine, v2: V2Model, request: InferRequest) -> list[OutputTensor]:
    """The request's outputs (all, or those it asks for, in its order), computed by the engine's
    batchers; raises ``V2Error``."""
    _accepted(v2, request)
    encoded = _image_format(v2, request)
    datatypes = {spec["name"]: spec["datatype"] for spec in output_specs(v2)}
    wanted = request.outputs
    for out in wanted or ():
        if out.name not in datatypes:
            raise bad_input(
                f"model {v2.name!r} has no output {out.name[:100]!r}; its outputs: "
                + ", ".join(datatypes)
            )
    run = _generate if v2.role == GENERATOR else _discriminate
    arrays = await run(engine, v2, request)
    if encoded is not None:
        files = await engine.encoder.encode(arrays["images"], *encoded)
        array = np.empty(len(files), dtype=object)
        array[:] = files
        arrays["images"], datatypes["images"] = array, BYTES
    if wanted is None:
        chosen = [(name, request.binary_outputs) for name in arrays]
    else:
        chosen = [
            (o.name, request.binary_outputs if o.binary is None else o.binary) for o in wanted
        ]
    return [OutputTensor(name, datatypes[name], arrays[name], binary) for name, binary in chosen]
