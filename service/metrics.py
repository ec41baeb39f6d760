"""The service's own Prometheus metrics, exposed on BentoML's ``/metrics`` beside its own.

``bentoml serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (under ``$BENTOML_HOME``, wiped at start) in
the worker's environment before our code is imported, so plain ``prometheus_client`` metrics
land in the files its ``/metrics`` handler aggregates; nothing else needs wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from service.asgi import ASGIApp, Receive, Scope, Send
from service.model_info import LABELS, model_info_labels
from service.model_store import ModelStore

INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
REQUEST_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
REALNESS_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def batch_size_buckets(max_batch_size: int) -> tuple[float, ...]:
    """1, 2, 4, ... up to ``max_batch_size`` (included), so 'batches > 1' is bucket le=1 vs +Inf."""
    buckets: list[float] = []
    size = 1
    while size < max_batch_size:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(max_batch_size))
    return tuple(buckets)


class GanMetrics:
    def __init__(self, max_batch_size: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.images_generated = Counter(
            "gan_images_generated_total",
            "Images generated, by model.",
            ["model"],
            registry=registry,
        )
        self.images_scored = Counter(
            "gan_images_scored_total",
            "Uploaded images scored, by model.",
            ["model"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "gan_batch_size",
            "Rows per ONNX Runtime call; kind is generate or score.",
            ["model", "kind"],
            buckets=batch_size_buckets(max_batch_size),
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "gan_inference_seconds",
            "Seconds per ONNX Runtime call, including conversion to/from pixels.",
            ["model", "kind"],
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.realness = Histogram(
            "gan_realness",
            "Realness of scored uploads: a drift signal when real traffic moves away from 1.",
            ["model"],
            buckets=REALNESS_BUCKETS,
            registry=registry,
        )
        self.non_finite_rows = Counter(
            "gan_non_finite_outputs_total",
            "Rows a graph answered with NaN or infinity (refused with a 500), by model and kind.",
            ["model", "kind"],
            registry=registry,
        )
        self.request_errors = Counter(
            "gan_request_errors_total",
            "Requests answered with an error, by endpoint and reason.",
            ["endpoint", "reason"],
            registry=registry,
        )
        # BentoML's own request metrics do not see the fast path's routes (fast_path.py).
        self.http_requests = Counter(
            "gan_http_requests_total",
            "Requests to the API routes, by endpoint and HTTP status code.",
            ["endpoint", "code"],
            registry=registry,
        )
        self.http_request_seconds = Histogram(
            "gan_http_request_seconds",
            "Seconds from the request's arrival to the end of its answer, by endpoint.",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.http_requests_in_progress = Gauge(
            "gan_http_requests_in_progress",
            "Requests to the API routes being worked on (body upload included), by endpoint.",
            ["endpoint"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.models_broken = Gauge(
            "gan_models_broken",
            "Model folders that could not be loaded and are not served (GET /models says why).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Every worker sets the same series to 1: "livemax" merges them into one (the default
        # mode, "all", would add a pid label: one series per worker, new ones at each respawn).
        self.model_info = Gauge(
            "gan_model_info",
            "1 per model folder: its version, sha256 and state (loaded or broken); model_info.py.",
            list(LABELS),
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Counted by the worker itself as it starts, so the count survives its death (counters
        # are folded into the archive, forget_dead_worker): increase() is the restarts.
        self.worker_starts = Counter(
            "gan_worker_starts_total",
            "Workers that loaded their models and started serving (each respawn adds one).",
            registry=registry,
        )

    def record_models(self, store: ModelStore) -> None:
        self.models_broken.set(len(store.broken))
        for labels in model_info_labels(store):
            self.model_info.labels(**labels).set(1)

    def batch_observer(self, model: str, kind: str) -> BatchObserver:
        return BatchObserver(self, model, kind)


class BatchObserver:
    """Bound to one (model, kind): the batcher's callback, without label lookups per call."""

    def __init__(self, metrics: GanMetrics, model: str, kind: str) -> None:
        self._size = metrics.batch_size.labels(model=model, kind=kind)
        self._seconds = metrics.inference_seconds.labels(model=model, kind=kind)

    def __call__(self, rows: int, seconds: float) -> None:
        self._size.observe(rows)
        self._seconds.observe(seconds)


# --- Prometheus multiprocess files of dead workers ---------------------------------------------
#
# In multiprocess mode every worker writes its own files (counter_PID.db, gauge_livesum_PID.db,
# ...) in PROMETHEUS_MULTIPROC_DIR, and /metrics merges them all. Nobody removes a dead worker's
# files: its gauges kept their last values forever (gan_http_requests_in_progress stayed at the
# number in flight when it was killed), and each respawn added files that every scrape reads.
# The supervisor (service/supervisor.py) calls ``forget_dead_worker`` when a worker is gone: its
# gauges vanish (whatever their mode), its counters, histograms and summaries are folded into
# one ``TYPE_dead.db`` per type, so totals never go backwards and the folder stays bounded.

LOCK_FILE = ".gan-scrape.lock"
ARCHIVED_TYPES = ("counter", "histogram", "summary")


def multiprocess_dir() -> Path | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path and Path(path).is_dir() else None


@contextlib.contextmanager
def _locked(directory: Path, mode: int) -> Iterator[None]:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def forget_dead_worker(directory: Path, pid: int) -> None:
    """Drop ``pid``'s gauges; fold its other metrics into the archive files. Scrapes hold the
    same lock shared (``scrape_guard``), so none sees a value twice or not at all."""
    with _locked(directory, fcntl.LOCK_EX):
        for gauge in directory.glob(f"gauge_*_{pid}.db"):
            gauge.unlink(missing_ok=True)
        for kind in ARCHIVED_TYPES:
            dead = directory / f"{kind}_{pid}.db"
            if not dead.is_file():
                continue
            archive = directory / f"{kind}_dead.db"
            sources = [str(p) for p in (archive, dead) if p.is_file()]
            merged = MultiProcessCollector.merge(sources, accumulate=False)
            tmp = directory / f"{kind}_dead.db.tmp"  # not *.db: scrapes never read it
            tmp.unlink(missing_ok=True)
            out = MmapedDict(str(tmp))
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = mmap_key(
                            metric.name,
                            sample.name,
                            list(sample.labels),
                            list(sample.labels.values()),
                            metric.documentation,
                        )
                        out.write_value(key, sample.value, sample.timestamp or 0.0)
            finally:
                out.close()
            os.replace(tmp, archive)
            dead.unlink()


def scrape_guard(app: ASGIApp) -> ASGIApp:
    """``app`` (BentoML's /metrics) run under the shared lock of ``forget_dead_worker``."""
    directory = multiprocess_dir()
    if directory is None:
        return app

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_SH)
            await app(scope, receive, send)
        finally:
            os.close(fd)

    return guarded
