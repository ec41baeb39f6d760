"""What the endpoints do, without HTTP: seeds -> pixels and uploads -> realness, batched.

One ``MicroBatcher`` per (model, kind). Batchers need a running event loop, so an ``Engine`` is
built inside the ASGI app's lifespan and closed there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from contract.latents import latents_for_seeds
from contract.realness import class_logits
from service.batcher import MicroBatcher, RowsFailed
from service.conditioning import FROM_SEED, class_index, row_classes
from service.core_share import BatchSplitter, BusyBoard
from service.encoding import Encoder
from service.imaging import ImageRejected, uploads_to_pixels
from service.limits import HeavyGate, heavy_executor
from service.metrics import GanMetrics
from service.model_store import LoadedModel, ModelStore
from service.settings import Settings, available_cpus

GENERATE = "generate"
SCORE = "score"
INTERPOLATE = "interpolate"  # latent walks (service/interpolate.py): rows are latents
# Caller-given latents (the Open Inference Protocol's ``z`` input, service/oip_models.py): the
# same rows as INTERPOLATE, at normal priority since a request is one cheap batch like /generate.
LATENTS = "latents"


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


class NonFiniteOutput(RuntimeError):
    """A graph gave NaN or infinity: never a black image, an invalid JSON number, or a value
    in the realness histogram. The request gets a 500 ``non_finite_output``."""

    def __init__(self, model: str, graph: str, rows: int) -> None:
        super().__init__(
            f"model {model!r}: the {graph} gave non-finite values (NaN or infinity) for "
            f"{rows} row(s) of this batch; the model is faulty for these inputs"
        )
        self.model = model
        self.graph = graph


OnBad = Callable[[int], None]
T = TypeVar("T")


def _finite_or_fail(
    model: LoadedModel, graph: str, out: np.ndarray, on_bad: OnBad | None
) -> np.ndarray:
    """``out`` when every row is finite; else raise ``RowsFailed`` naming the bad rows (their
    values zeroed, so that what the good rows' requests get is untouched by them)."""
    finite = np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1)
    if finite.all():
        return out
    bad = ~finite
    if on_bad is not None:
        on_bad(int(bad.sum()))
    cleaned = np.where(np.isfinite(out), out, 0).astype(out.dtype)
    raise RowsFailed(cleaned, bad, NonFiniteOutput(model.name, graph, int(bad.sum())))


def _pixels(
    model: LoadedModel, z: np.ndarray, classes: np.ndarray | None, on_bad: OnBad | None
) -> np.ndarray:
    if model.uint8_in_graph:
        pixels, finite = model.generate_uint8(z, classes)
        if not finite.all():
            bad = ~finite
            if on_bad is not None:
                on_bad(int(bad.sum()))
            error = NonFiniteOutput(model.name, "generator", int(bad.sum()))
            raise RowsFailed(pixels, bad, error)
        return pixels
    image = model.manifest.image
    try:
        out = model.generate(z, classes)
        return image.to_uint8(_finite_or_fail(model, "generator", out, on_bad))
    except RowsFailed as partial:
        raise RowsFailed(image.to_uint8(partial.output), partial.failed, partial.error) from None


def generate_rows(model: LoadedModel, rows: np.ndarray, on_bad: OnBad | None = None) -> np.ndarray:
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
    return _pixels(model, z, row_classes(model, seeds, rows[:, 2]), on_bad)


def generate_latent_rows(
    model: LoadedModel, rows: np.ndarray, on_bad: OnBad | None = None
) -> np.ndarray:
    """``(B, z_dim + 1)`` float32 rows of (latent, class) -> ``(B, H, W, C)`` uint8 pixels
    (``/interpolate``; the class column is ignored by unconditional models)."""
    z = np.ascontiguousarray(rows[:, :-1])
    classes = rows[:, -1].astype(np.int64) if model.manifest.conditional else None
    return _pixels(model, z, classes, on_bad)


def score_rows(model: LoadedModel, images: np.ndarray, on_bad: OnBad | None = None) -> np.ndarray:
    """``(B, C, H, W)`` float32 -> ``(B, W)`` finite float32 scores (``LoadedModel.discriminate``:
    the logit(s), then the OOD distance when the model has one)."""
    return _finite_or_fail(model, "discriminator", model.discriminate(images), on_bad)


RUNS: dict[str, Callable[..., np.ndarray]] = {
    GENERATE: generate_rows,
    SCORE: score_rows,
    INTERPOLATE: generate_latent_rows,
    LATENTS: generate_latent_rows,
}


class Engine:
    def __init__(self, settings: Settings, store: ModelStore, metrics: GanMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        latency = settings.max_latency_ms / 1000.0
        # One per worker, shared by its batchers (service/core_share.py).
        self.splitter = BatchSplitter(
            settings.split_threads or 1, BusyBoard.for_this_worker(settings.workers or 1)
        )
        for name, model in store.models.items():
            for kind, run in RUNS.items():
                counter: Any = metrics.non_finite_rows.labels(model=name, kind=kind)
                self._batchers[name, kind] = MicroBatcher(
                    f"{name}-{kind}",
                    partial(run, model, on_bad=counter.inc),
                    max_batch_size=settings.max_batch_size,
                    max_latency_s=latency,
                    on_batch=metrics.batch_observer(name, kind),
                    # latent walks are the expensive requests' (limits.py)
                    low_priority=kind == INTERPOLATE,
                    splitter=None if kind == INTERPOLATE else self.splitter,
                )
        self._generated = {n: metrics.images_generated.labels(model=n) for n in store.models}
        self._scored = {n: metrics.images_scored.labels(model=n) for n in store.models}
        self._realness = {n: metrics.realness.labels(model=n) for n in store.models}
        # Expensive requests (limits.py): admitted a few at a time, their CPU work at a lower
        # priority than the event loop.
        heavy = settings.heavy_concurrency or 1
        self.heavy = HeavyGate(
            heavy, on_refused=lambda route: metrics.request_errors.labels(route, "busy").inc()
        )
        self._heavy_pool = heavy_executor(heavy)
        # The images of /generate's answers (service/encoding.py).
        self.encoder = Encoder(settings.encode_threads or available_cpus())

    async def run_heavy(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the low-priority threads; cancelled with its request if not begun."""
        return await asyncio.get_running_loop().run_in_executor(self._heavy_pool, fn, *args)

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

    async def generate_seeds(
        self,
        model_name: str | None,
        seeds: np.ndarray,
        truncation: np.ndarray,
        classes: np.ndarray,
    ) -> Generated:
        """Row i is the image of ``seeds[i]`` at ``truncation[i]`` with class ``classes[i]``
        (``FROM_SEED``: the seed's own draw), exactly as ``generate`` makes it: same rows, same
        batcher, so these requests batch with /generate's. All ``(n,)``, validated by the
        caller (seeds in [0, SEED_MAX]); raises ``UnknownModelError``."""
        model = self.store.get(model_name)
        rows = np.empty((len(seeds), 3), dtype=np.float64)  # seeds < 2**53 are exact in float64
        rows[:, 0] = seeds
        rows[:, 1] = truncation
        rows[:, 2] = classes
        pixels = await self._batchers[model.name, GENERATE].submit(rows)
        self._generated[model.name].inc(len(seeds))
        return Generated(model.name, pixels)

    async def generate_latent_batch(
        self, model_name: str | None, z: np.ndarray, classes: np.ndarray | None
    ) -> Generated:
        """Pixels of explicit ``(n, z_dim)`` float32 latents, row i of class ``classes[i]``
        (required by a conditional model, ignored otherwise; validated by the caller)."""
        model = self.store.get(model_name)
        if z.ndim != 2 or z.shape[1] != model.manifest.z_dim:
            raise ValueError(f"need (n, {model.manifest.z_dim}) latents, got {z.shape}")
        rows = np.zeros((len(z), z.shape[1] + 1), dtype=np.float32)
        rows[:, :-1] = z
        if classes is not None:
            rows[:, -1] = classes
        pixels = await self._batchers[model.name, LATENTS].submit(rows)
        self._generated[model.name].inc(len(z))
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
        *,
        heavy: bool = False,
    ) -> Scored:
        """Raises ``UnknownModelError``, ``UploadRejected`` (naming the first bad file), or
        ``ApiError`` for a class the model lacks."""
        model = self.store.get(model_name)
        class_of_all = class_index(model, klass)
        spec = model.manifest.image
        # Decoding and resizing full-size uploads is real CPU work: keep it off the event loop.
        run = self.run_heavy if heavy else asyncio.to_thread
        converted = await run(
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
        classes = None if class_of_all is None else np.full(len(pixels), class_of_all, np.int64)
        return await self._score_pixels(model, pixels, classes)

    async def score_pixels(
        self, model_name: str | None, pixels: np.ndarray, classes: np.ndarray | None = None
    ) -> Scored:
        """Realness of ``(k, H, W, C)`` uint8 images already at the model's size, each against
        its own class (``(k,)`` int64 indices the caller validated) or none; raises
        ``UnknownModelError``."""
        return await self._score_pixels(self.store.get(model_name), pixels, classes)

    async def _score_pixels(
        self, model: LoadedModel, pixels: np.ndarray, classes: np.ndarray | None
    ) -> Scored:
        spec = model.manifest.image
        scores = await self._batchers[model.name, SCORE].submit(spec.from_uint8(pixels))
        logits, ood = model.split_scores(scores)
        realness = model.manifest.realness.realness(logits, ood, classes)
        # The logit the realness used: the requested class's, or the class-free one.
        logits = class_logits(logits, classes)
        self._scored[model.name].inc(len(pixels))
        histogram = self._realness[model.name]
        for value in realness:
            histogram.observe(float(value))
        return Scored(model.name, logits, realness, ood)

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self._batchers.values()))
        self._heavy_pool.shutdown(wait=False, cancel_futures=True)
        self.encoder.close()
        self.splitter.close()
