"""The service's own Prometheus metrics, exposed on BentoML's ``/metrics`` beside its own.

``bentoml serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (under ``$BENTOML_HOME``, wiped at start) in
the worker's environment before our code is imported, so plain ``prometheus_client`` metrics
land in the files its ``/metrics`` handler aggregates; nothing else needs wiring.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

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
