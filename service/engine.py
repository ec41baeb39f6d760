"""What the endpoints do, without HTTP: seeds -> pixels and uploads -> realness, batched.

One ``MicroBatcher`` per (model, kind). Batchers need a running event loop, so an ``Engine`` is
built inside the ASGI app's lifespan and closed there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

import numpy as np

from contract.latents import latents_for_seeds
from contract.realness import class_logits
from service.batcher import MicroBatcher
from service.conditioning import FROM_SEED, class_index, row_classes
from service.imaging import ImageRejected, uploads_to_pixels
from service.metrics import GanMetrics
from service.model_store import LoadedModel, ModelStore
from service.settings import Settings

GENERATE = "generate"
SCORE = "score"
INTERPOLATE = "interpolate"  # latent walks (service/interpolate.py): rows are latents


@dataclass(frozen=True)
class Generated:
    model: str
    pixels: np.ndarray  # (n, H, W, C) uint8; row i is seed + i


@dataclass(frozen=True)
class Scored:
    model: str
    logits: np.ndarray  # (k,) float64: the logit the realness used
    realness: np.ndarray  # (k,) float64 in [0, 1]
    ood: np.ndarray | None = None  # (k,) out-of-distribution distances, when the model has them


class UploadRejected(ValueError):
    """One upload of a score request is unusable; the message names it by index and file name."""

    def __init__(self, index: int, filename: str, error: ImageRejected) -> None:
        super().__init__(f"images[{index}] ({filename}): {error}")
        self.reason = error.reason


def generate_rows(model: LoadedModel, rows: np.ndarray) -> np.ndarray:
    """``(B, 3)`` float64 rows of (seed, truncation, class) -> ``(B, H, W, C)`` uint8 pixels.

    Latents are computed here, once per batch in the batcher's thread, rather than per request
    on the event loop: ``latents()`` costs ~65 us per call whatever its size. Rows are grouped
    by truncation so each row gets exactly ``latents(seed, 1, z_dim, truncation)``. The class
    column is ``FROM_SEED`` where a request named none (service/conditioning.py).
    """
    seeds = rows[:, 0].astype(np.uint64)
    psi = rows[:, 1]
    z_dim = model.manifest.z_dim
    first = float(psi[0])
    if (psi == first).all():
        z = latents_for_seeds(seeds, z_dim, first)
    else:
        z = np.empty((rows.shape[0], z_dim), dtype=np.float32)
        for value in np.unique(psi):
            mask = psi == value
            z[mask] = latents_for_seeds(seeds[mask], z_dim, float(value))
    classes = row_classes(model, seeds, rows[:, 2])
    return model.manifest.image.to_uint8(model.generate(z, classes))


def generate_latent_rows(model: LoadedModel, rows: np.ndarray) -> np.ndarray:
    """``(B, z_dim + 1)`` float32 rows of (latent, class) -> ``(B, H, W, C)`` uint8 pixels
    (``/interpolate``; the class column is ignored by unconditional models)."""
    z = np.ascontiguousarray(rows[:, :-1])
    classes = rows[:, -1].astype(np.int64) if model.manifest.conditional else None
    return model.manifest.image.to_uint8(model.generate(z, classes))


class Engine:
    def __init__(self, settings: Settings, store: ModelStore, metrics: GanMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        latency = settings.max_latency_ms / 1000.0
        for name, model in store.models.items():
            self._batchers[name, GENERATE] = MicroBatcher(
                f"{name}-{GENERATE}",
                partial(generate_rows, model),
                max_batch_size=settings.max_batch_size,
                max_latency_s=latency,
                on_batch=metrics.batch_observer(name, GENERATE),
            )
            self._batchers[name, SCORE] = MicroBatcher(
                f"{name}-{SCORE}",
                model.discriminate,
                max_batch_size=settings.max_batch_size,
                max_latency_s=latency,
                on_batch=metrics.batch_observer(name, SCORE),
            )
            self._batchers[name, INTERPOLATE] = MicroBatcher(
                f"{name}-{INTERPOLATE}",
                partial(generate_latent_rows, model),
                max_batch_size=settings.max_batch_size,
                max_latency_s=latency,
                on_batch=metrics.batch_observer(name, INTERPOLATE),
            )
        self._generated = {n: metrics.images_generated.labels(model=n) for n in store.models}
        self._scored = {n: metrics.images_scored.labels(model=n) for n in store.models}
        self._realness = {n: metrics.realness.labels(model=n) for n in store.models}

    async def generate(
        self,
        model_name: str | None,
        seed: int,
        n: int,
        truncation: float = 1.0,
        klass: int | str | None = None,
    ) -> Generated:
        """Raises ``UnknownModelError``, or ``ApiError`` for a class the model lacks;
        seed/n/truncation are validated by the caller."""
        model = self.store.get(model_name)
        index = class_index(model, klass)
        rows = np.empty((n, 3), dtype=np.float64)  # seeds < 2**53 are exact in float64
        rows[:, 0] = np.arange(seed, seed + n, dtype=np.float64)
        rows[:, 1] = truncation
        rows[:, 2] = FROM_SEED if index is None else index
        pixels = await self._batchers[model.name, GENERATE].submit(rows)
        self._generated[model.name].inc(n)
        return Generated(model.name, pixels)

    async def generate_latents(
        self, model_name: str | None, z: np.ndarray, klass: int | str | None = None, seed: int = 0
    ) -> Generated:
        """Pixels of explicit ``(n, z_dim)`` float32 latents, all of one class (the requested
        one, else the class ``seed`` draws); raises ``UnknownModelError``."""
        model = self.store.get(model_name)
        if z.ndim != 2 or z.shape[1] != model.manifest.z_dim:
            raise ValueError(f"need (n, {model.manifest.z_dim}) latents, got {z.shape}")
        index = class_index(model, klass)
        if index is None:
            drawn = row_classes(model, np.array([seed], np.uint64), np.array([FROM_SEED]))
            index = int(drawn[0]) if drawn is not None else 0
        rows = np.empty((len(z), z.shape[1] + 1), dtype=np.float32)
        rows[:, :-1] = z
        rows[:, -1] = index
        pixels = await self._batchers[model.name, INTERPOLATE].submit(rows)
        self._generated[model.name].inc(len(z))
        return Generated(model.name, pixels)

    async def score(
        self,
        model_name: str | None,
        files: list[bytes],
        filenames: list[str],
        klass: int | str | None = None,
    ) -> Scored:
        """Raises ``UnknownModelError``, ``UploadRejected`` (naming the first bad file), or
        ``ApiError`` for a class the model lacks."""
        model = self.store.get(model_name)
        class_of_all = class_index(model, klass)
        spec = model.manifest.image
        # Decoding and resizing full-size uploads is real CPU work: keep it off the event loop.
        converted = await asyncio.to_thread(
            uploads_to_pixels,
            files,
            spec.channels,
            spec.height,
            spec.width,
            self.settings.max_image_pixels,
        )
        for index, item in enumerate(converted):
            if isinstance(item, ImageRejected):
                raise UploadRejected(index, filenames[index], item)
        pixels = np.stack([p for p in converted if isinstance(p, np.ndarray)])
        scores = await self._batchers[model.name, SCORE].submit(spec.from_uint8(pixels))
        logits, ood = model.split_scores(scores)
        classes = None if class_of_all is None else np.full(len(pixels), class_of_all, np.int64)
        realness = model.manifest.realness.realness(logits, ood, classes)
        # The logit the realness used: the requested class's, or the class-free one.
        logits = class_logits(logits, classes)
        self._scored[model.name].inc(len(files))
        histogram = self._realness[model.name]
        for value in realness:
            histogram.observe(float(value))
        return Scored(model.name, logits, realness, ood)

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self._batchers.values()))
