"""THE one loader of exported model folders (docs/model-format.md): manifests, sha256, ORT sessions.

Broken models (missing or invalid model.json, missing ONNX file, sha256 mismatch, a graph ONNX
Runtime rejects or whose tensors do not match the manifest):

- if the broken model is the default one (``GAN_DEFAULT_MODEL``; when unset, the name in the
  models folder's ``DEFAULT`` file, so a mounted folder carries its own choice; else the first
  folder name in sorted order) or no model works at all, loading fails with ``ModelStoreError`` naming
  the file, and the server does not start: a server without its default model would answer every
  plain request with an error, which is worse than not starting;
- otherwise the working models are served, the broken one is logged and listed under ``broken``
  in ``GET /models`` with its error, so one bad export cannot take the others down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from contract.files import sha256_bytes
from contract.latents import latents
from contract.manifest import Manifest, ManifestError, OnnxFile, read_manifest
from contract.onnx_runtime import session_options
from service.settings import Settings

log = logging.getLogger("gan.model_store")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


# A one-line file in the models folder naming its default model (overridden by GAN_DEFAULT_MODEL).
DEFAULT_FILE = "DEFAULT"


class ModelStoreError(RuntimeError):
    """The service cannot start with these models or this provider; the message says why."""


class UnknownModelError(KeyError):
    """A request named a model that is not served."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.served = list(served)


class _BrokenModelError(Exception):
    """One model folder is unusable; caught by the store, which applies the policy above."""


@dataclass(frozen=True)
class ModelSource:
    """One model to load: its served name, its folder, and where the folder came from."""

    name: str
    directory: Path
    # "bentoml:NAME:VERSION" for a model of BentoML's store, else the folder's path
    origin: str
    # sha256 of every file, recorded when it was imported into BentoML's store
    digests: Mapping[str, str] | None = None


@dataclass
class LoadedModel:
    name: str
    directory: Path
    manifest: Manifest
    generator: ort.InferenceSession
    discriminator: ort.InferenceSession
    source: str = ""

    @property
    def providers(self) -> list[str]:
        return list(self.generator.get_providers())

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Class names of a class-conditional model (index order), else None."""
        cond = self.manifest.conditioning
        return cond.classes if cond is not None else None

    def _feeds(self, z: np.ndarray, classes: np.ndarray | None) -> dict[str, np.ndarray]:
        feeds = {self.manifest.generator.input: z}
        cond = self.manifest.conditioning
        if cond is not None:
            if classes is None:
                raise ValueError(f"model {self.name!r} is class-conditional: classes needed")
            feeds[cond.input] = np.asarray(classes, dtype=np.int64)
        return feeds

    def generate(self, z: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """``(B, z_dim)`` float32 [+ ``(B,)`` int64 classes] -> ``(B, C, H, W)`` float32 in
        ``image.value_range``. A conditional model needs the classes."""
        out = self.generator.run([self.manifest.generator.output], self._feeds(z, classes))[0]
        return np.asarray(out, dtype=np.float32)

    @property
    def uint8_in_graph(self) -> bool:
        """The generator computes the pixels itself (model.json ``onnx.generator.uint8_output``,
        training/uint8_graph.py)."""
        return self.manifest.generator.uint8_output is not None

    def generate_uint8(
        self, z: np.ndarray, classes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A ``uint8_in_graph`` model's ``(B, H, W, C)`` uint8 pixels (``image.to_uint8`` of
        ``generate``, computed by the graph) and ``(B,)`` bool: which rows were finite."""
        spec = self.manifest.generator
        assert spec.uint8_output is not None and spec.finite_output is not None
        pixels, finite = self.generator.run(
            [spec.uint8_output, spec.finite_output], self._feeds(z, classes)
        )
        return np.asarray(pixels, dtype=np.uint8), np.asarray(finite, dtype=bool)

    def discriminate(self, images: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` float32 -> ``(B, W)`` float32: the logit(s) (1, or one per class),
        then the out-of-distribution distance when the model has one (``split_scores``)."""
        spec = self.manifest.discriminator
        names = [spec.output]
        ood = self.manifest.realness.ood
        if ood is not None:
            names.append(ood.output)
        outs = self.discriminator.run(names, {spec.input: images})
        b = images.shape[0]
        columns = [np.asarray(o, dtype=np.float32).reshape(b, -1) for o in outs]
        return columns[0] if len(columns) == 1 else np.concatenate(columns, axis=1)

    def split_scores(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``discriminate``'s columns -> (logits ``(B,)`` or ``(B, K)``, ood ``(B,)`` or None)."""
        has_ood = self.manifest.realness.ood is not None
        logits = scores[:, :-1] if has_ood else scores
        ood = scores[:, -1] if has_ood else None
        return (logits[:, 0] if logits.shape[1] == 1 else logits), ood


@dataclass(frozen=True)
class BrokenModel:
    name: str
    directory: Path
    error: str


@dataclass
class ModelStore:
    models: dict[str, LoadedModel]
    broken: dict[str, BrokenModel]
    default_name: str
    provider: str
    requested_provider: str
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, settings: Settings, *, cpu_only: bool = False) -> ModelStore:
        """Load every folder under ``settings.models_dir``, or the ``settings.bento_models`` from
        BentoML's model store; ``cpu_only`` is the cheap pre-flight check run by the
        ``bentoml serve`` parent process, which must not grab a GPU."""
        candidates, default_name = _sources(settings)
        providers = _provider_chain(settings.provider, cpu_only=cpu_only)
        options = session_options(settings.ort_threads)
        chain = _with_cuda_options(providers, settings.cuda_conv_algo)

        models: dict[str, LoadedModel] = {}
        broken: dict[str, BrokenModel] = {}
        for source in candidates:
            try:
                models[source.name] = _load_model(source, chain, options)
            except _BrokenModelError as exc:
                if source.name == default_name:
                    raise ModelStoreError(
                        f"default model {default_name!r} is broken: {exc}"
                    ) from None
                log.error("model %r is broken and will not be served: %s", source.name, exc)
                broken[source.name] = BrokenModel(source.name, source.directory, str(exc))

        notes: list[str] = []
        active = models[default_name].providers[0]
        if settings.provider == "cuda" and not cpu_only and active != CUDA:
            raise ModelStoreError(
                f"GAN_PROVIDER=cuda, but ONNX Runtime runs the models on {active} "
                "(CUDA did not initialise: check the driver, CUDA/cuDNN libraries, "
                "onnxruntime-gpu); use GAN_PROVIDER=auto to fall back to CPU"
            )
        if settings.provider == "auto" and CUDA in providers and active != CUDA:
            notes.append(f"CUDA is installed but did not initialise; running on {active}")
        for note in notes:
            log.warning(note)
        return cls(models, broken, default_name, active, settings.provider, notes)

    def get(self, name: str | None) -> LoadedModel:
        model = self.models.get(self.default_name if name is None else name)
        if model is None:
            raise UnknownModelError(str(name), sorted(self.models))
        return model

    def classes(self) -> dict[str, tuple[str, ...]]:
        """The classes of every class-conditional model served."""
        return {n: m.classes for n, m in self.models.items() if m.classes is not None}

    def describe(self) -> dict[str, Any]:
        """The ``GET /models`` body (without settings)."""
        return {
            "default": self.default_name,
            "provider": self.provider,
            "requested_provider": self.requested_provider,
            "notes": self.notes,
            "models": [
                {
                    "name": m.name,
                    "default": m.name == self.default_name,
                    "source": m.source,
                    "z_dim": m.manifest.z_dim,
                    "channels": m.manifest.image.channels,
                    "height": m.manifest.image.height,
                    "width": m.manifest.image.width,
                    "loss": m.manifest.loss,
                    "classes": list(m.classes) if m.classes is not None else None,
                    "providers": m.providers,
                    "manifest": m.manifest.raw,
                }
                for m in sorted(self.models.values(), key=lambda m: m.name)
            ],
            "broken": [
                {"name": b.name, "error": b.error}
                for b in sorted(self.broken.values(), key=lambda b: b.name)
            ],
        }


def _sources(settings: Settings) -> tuple[list[ModelSource], str]:
    """The models to load and the default's name, from BentoML's store or from the folder."""
    if settings.bento_models:
        sources = _bento_sources(settings.bento_models)
        names = [s.name for s in sources]
        default_name = settings.default_model or names[0]
        if default_name not in names:
            raise ModelStoreError(
                f"GAN_DEFAULT_MODEL={default_name!r} is not one of GAN_BENTO_MODELS "
                f"({', '.join(settings.bento_models)})"
            )
        return sources, default_name
    candidates = _candidate_dirs(settings.models_dir)
    default_file = settings.models_dir / DEFAULT_FILE
    from_file = default_file.read_text().strip() if default_file.is_file() else ""
    default_name = settings.default_model or from_file or candidates[0].name
    if default_name not in {d.name for d in candidates}:
        origin = "GAN_DEFAULT_MODEL" if settings.default_model else str(default_file)
        raise ModelStoreError(
            f"{origin}={default_name!r}: no such folder in {settings.models_dir} "
            f"(found: {', '.join(d.name for d in candidates)})"
        )
    return [ModelSource(d.name, d, str(d)) for d in candidates], default_name


def _bento_sources(tags: Sequence[str]) -> list[ModelSource]:
    # bentoml's model store is only needed (and imported) when models come from it.
    from service.bento_models import BentoModelError, locate

    sources = []
    for tag in tags:
        try:
            stored = locate(tag)
        except BentoModelError as exc:
            raise ModelStoreError(str(exc)) from None
        sources.append(
            ModelSource(stored.name, stored.path, f"bentoml:{stored.tag}", stored.digests)
        )
    return sources


def _candidate_dirs(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        raise ModelStoreError(
            f"GAN_MODELS_DIR={str(models_dir)!r} is not a folder "
            f"(resolved to {models_dir.resolve()}); export a model with "
            "`python -m training.export RUN_DIR --name NAME --out models/NAME`"
        )
    candidates = sorted(
        (d for d in models_dir.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))),
        key=lambda d: d.name,
    )
    if not candidates:
        raise ModelStoreError(f"GAN_MODELS_DIR={str(models_dir)!r} holds no model folders")
    return candidates


def _provider_chain(requested: str, *, cpu_only: bool) -> list[str]:
    available = ort.get_available_providers()
    if requested == "cuda" and CUDA not in available:
        raise ModelStoreError(
            f"GAN_PROVIDER=cuda, but this onnxruntime build offers only {', '.join(available)}; "
            "install the gpu extra (onnxruntime-gpu) or use GAN_PROVIDER=auto"
        )
    if cpu_only or not cuda_offered(requested):
        return [CPU]
    _preload_cuda_libraries()
    return [CUDA, CPU]


ProviderChain = list[str | tuple[str, dict[str, str]]]


def _with_cuda_options(providers: list[str], conv_algo: str) -> ProviderChain:
    """CUDA with ``cudnn_conv_algo_search`` set (``GAN_CUDA_CONV_ALGO``).

    ONNX Runtime's default, EXHAUSTIVE, benchmarks every cuDNN algorithm again whenever the input
    shape changes, and a micro-batcher changes the batch size all the time: measured on an H200,
    16 ms per generator call with sizes varying, 1.5 ms with HEURISTIC (bench/gpu_shapes.py).
    """
    return [
        (p, {"cudnn_conv_algo_search": conv_algo.upper()}) if p == CUDA else p for p in providers
    ]


def _preload_cuda_libraries() -> None:
    """Load CUDA / cuDNN from the nvidia-* pip packages (the gpu extra's ``[cuda,cudnn]``).

    onnxruntime-gpu does not look in site-packages by itself: without this, or the libraries on
    LD_LIBRARY_PATH, the CUDA provider fails to load and every session silently runs on CPU
    (``get_providers()`` then says so, and the start-up log and /models report it).
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload(cuda=True, cudnn=True, msvc=False)
    except Exception as exc:  # system-wide CUDA libraries may still be found
        log.warning("onnxruntime.preload_dlls failed (%s); relying on LD_LIBRARY_PATH", exc)


def cuda_offered(requested: str) -> bool:
    """Whether sessions will try CUDA (``get_available_providers`` lists it even without a GPU)."""
    return requested != "cpu" and CUDA in ort.get_available_providers()


def _load_model(
    source: ModelSource, providers: ProviderChain, options: ort.SessionOptions
) -> LoadedModel:
    directory = source.directory
    if source.digests is not None:
        from service.bento_models import BentoModelError, StoredFolder, check_digests

        try:
            check_digests(StoredFolder(source.name, source.origin, directory, source.digests))
        except BentoModelError as exc:
            raise _BrokenModelError(str(exc)) from None
    try:
        manifest = read_manifest(directory)
    except ManifestError as exc:
        raise _BrokenModelError(str(exc)) from None
    cond, ood = manifest.conditioning, manifest.realness.ood
    gen = manifest.generator
    generator = _session(
        directory,
        gen,
        providers,
        options,
        extra_inputs=[cond.input] if cond else [],
        extra_outputs=[o for o in (gen.uint8_output, gen.finite_output) if o is not None],
    )
    discriminator = _session(
        directory,
        manifest.discriminator,
        providers,
        options,
        extra_outputs=[ood.output] if ood else [],
    )
    model = LoadedModel(source.name, directory, manifest, generator, discriminator, source.origin)
    _smoke_test(model)
    if manifest.name != source.name:
        log.info(
            "model %s holds manifest name %r; served as %r",
            source.origin,
            manifest.name,
            source.name,
        )
    return model


def _session(
    directory: Path,
    spec: OnnxFile,
    providers: ProviderChain,
    options: ort.SessionOptions,
    extra_inputs: Sequence[str] = (),
    extra_outputs: Sequence[str] = (),
) -> ort.InferenceSession:
    path = directory / spec.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _BrokenModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    digest = sha256_bytes(data)
    if digest != spec.sha256:
        raise _BrokenModelError(
            f"{path}: sha256 {digest} does not match model.json ({spec.sha256}); "
            "the file was changed or truncated after export"
        )
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises several private exception types for bad graphs
        raise _BrokenModelError(f"{path}: ONNX Runtime cannot load it ({exc})") from None
    inputs = sorted(i.name for i in session.get_inputs())
    outputs = [o.name for o in session.get_outputs()]
    wanted_in = sorted([spec.input, *extra_inputs])
    missing_out = [o for o in [spec.output, *extra_outputs] if o not in outputs]
    if inputs != wanted_in or missing_out:
        raise _BrokenModelError(
            f"{path}: graph inputs {inputs} / outputs {outputs} do not match model.json "
            f"(inputs {wanted_in}, outputs {[spec.output, *extra_outputs]})"
        )
    return session


def _smoke_test(model: LoadedModel) -> None:
    """Two rows through both graphs: proves the batch axis is dynamic, the shapes match and the
    values are numbers (a NaN generator would otherwise serve black images)."""
    m = model.manifest
    expected = (2, m.image.channels, m.image.height, m.image.width)
    classes = np.zeros(2, dtype=np.int64) if m.conditioning is not None else None
    try:
        images = model.generate(latents(0, 2, m.z_dim), classes)
    except Exception as exc:
        raise _BrokenModelError(
            f"{model.directory / m.generator.file}: fails on a (2, {m.z_dim}) latent batch ({exc})"
        ) from None
    if images.shape != expected:
        raise _BrokenModelError(
            f"{model.directory / m.generator.file}: output shape {images.shape}, "
            f"model.json says {expected}"
        )
    if not np.isfinite(images).all():
        raise _BrokenModelError(
            f"{model.directory / m.generator.file}: non-finite output (NaN or infinity) on a "
            f"(2, {m.z_dim}) latent batch"
        )
    if model.uint8_in_graph:
        _check_uint8_outputs(model, images, classes)
    try:
        raw = model.discriminate(images)
    except Exception as exc:
        raise _BrokenModelError(
            f"{model.directory / m.discriminator.file}: fails on a {expected} batch ({exc})"
        ) from None
    per_image = m.conditioning.num_classes if m.conditioning is not None else 1
    if raw.shape[1] != per_image + (m.realness.ood is not None):
        shape = "(2,)" if per_image == 1 else f"(2, {per_image})"
        raise _BrokenModelError(
            f"{model.directory / m.discriminator.file}: logits of {raw.shape[1] - (m.realness.ood is not None)} "
            f"value(s) per image, expected {shape}"
        )
    if not np.isfinite(raw).all():
        raise _BrokenModelError(
            f"{model.directory / m.discriminator.file}: non-finite output (NaN or infinity) on "
            "the generator's smoke batch"
        )


def _check_uint8_outputs(
    model: LoadedModel, images: np.ndarray, classes: np.ndarray | None
) -> None:
    """The graph's own pixels must be the contract's rule applied to its floats: a folder whose
    uint8 output rounds differently would serve images nothing else produces."""
    m = model.manifest
    where = model.directory / m.generator.file
    try:
        pixels, finite = model.generate_uint8(latents(0, 2, m.z_dim), classes)
    except Exception as exc:
        raise _BrokenModelError(f"{where}: its uint8 outputs fail ({exc})") from None
    expected = m.image.to_uint8(images)
    if pixels.shape != expected.shape or finite.shape != (2,):
        raise _BrokenModelError(
            f"{where}: uint8 output {pixels.shape} / finite output {finite.shape}, model.json "
            f"says {expected.shape} / (2,)"
        )
    if not (pixels == expected).all() or not finite.all():
        raise _BrokenModelError(
            f"{where}: its uint8 output differs from image.to_uint8 of its float output "
            "(or calls finite rows non-finite); re-run training.uint8_graph on the float graph"
        )
