"""Service settings, read once from ``GAN_*`` environment variables and validated at start-up.

A bad value stops the server before it binds its port, with a message that names the variable,
instead of surfacing later as a confusing request error.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

CONV_ALGOS = ("heuristic", "exhaustive", "default")
PROVIDERS = ("auto", "cpu", "cuda")
MAX_REQUEST_TIMEOUT_S = 3600.0
MAX_AUTO_WORKERS = 8
# An API key shorter than this is guessable; `python -c "import secrets;
# print(secrets.token_urlsafe(32))"` makes a good one.
MIN_API_KEY_CHARS = 16
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# BentoML's rule for a tag's name and its version (bentoml._internal.tag): checked here so that a
# typo stops start-up with the variable's name, before bentoml is asked.
_TAG_PART = re.compile(r"[a-z0-9]([-._a-z0-9]*[a-z0-9])?")
_TAG_PART_MAX = 63

T = TypeVar("T")


class SettingsError(ValueError):
    """A ``GAN_*`` environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; ``Settings.from_env()`` is the only constructor used in serving."""

    models_dir: Path = Path("models")
    # BentoML model tags (``name`` or ``name:version``) to serve from BentoML's model store instead
    # of the folders under models_dir (service/bento_models.py); served under their names.
    bento_models: tuple[str, ...] = ()
    # None: the only model, else the first listed in bento_models, else the first folder name in
    # sorted order.
    default_model: str | None = None
    n_max: int = 64
    max_score_images: int = 64
    max_upload_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_batch_size: int = 128
    max_latency_ms: float = 0.0
    provider: str = "auto"
    log_level: str = "INFO"
    access_log: bool = False
    # Security and fault limits (docs/reliability.md). API keys are secrets: never in repr,
    # logs or /models (``describe()`` redacts them).
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    metrics_public: bool = False
    request_timeout_s: float = 30.0
    # True: any broken model folder stops start-up (default: serve the others, list it in /models).
    require_all_models: bool = False
    # Performance (BENCHMARKS.md): BentoML worker processes (each loads every model and has its
    # own batchers), and whether BentoML's OpenTelemetry middleware traces our API routes: with
    # no exporter configured its spans go nowhere, yet they cost ~35% of a /generate's CPU.
    # None = auto (``resolved``): one worker per available CPU on CPU, one on a GPU.
    workers: int | None = None
    trace_routes: bool = False
    # Our API routes skip BentoML's middlewares (service/fast_path.py); off when tracing or the
    # access log is asked for, since those live in the middlewares.
    fast_path: bool = True
    # ONNX Runtime intra-op threads per session; 0 = its own choice (one per physical core),
    # None = auto (``resolved``): the CPUs shared out between the workers
    ort_threads: int | None = None
    # cuDNN convolution algorithm search on CUDA (model_store._with_cuda_options)
    cuda_conv_algo: str = "heuristic"
    # Connections (service/connections.py, docs/reliability.md): a request's headers must fit in
    # max_header_bytes (431) and max_headers lines (431), and arrive within header_timeout_s of
    # its first byte or of the connection (408, or a silent close for a connection that sent
    # nothing). max_connections per worker (None = auto: the file-descriptor limit less a reserve)
    # closes the oldest idle connection to make room for a new one.
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    max_connections: int | None = None
    # Expensive requests (limits.HeavyGate): at most this many at once per worker, 429 beyond
    # (None = auto: the CPUs per worker, halved, at least 1).
    heavy_concurrency: int | None = None
    # Threads that encode a batch's images (service/encoding.py; zlib and Pillow release the
    # GIL). None = auto (``resolved``): the CPUs of a worker. 1: one thread, as before the pool.
    encode_threads: int | None = None
    # Threads one worker may cut a big batch across while the other workers are idle
    # (service/core_share.py): a lone client's 16-image request on all the cores. None = auto
    # (``resolved``): the cores the workers' ORT threads leave idle when only this one works.
    split_threads: int | None = None
    # A worker whose event loop has not beaten for this long is killed and replaced
    # (service/supervisor.py); also how stale the supervisor may be before /livez fails.
    worker_hang_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            return parse(name, raw.strip())

        settings = cls(
            models_dir=get("GAN_MODELS_DIR", _path, defaults.models_dir),
            bento_models=get("GAN_BENTO_MODELS", parse_bento_tags, defaults.bento_models),
            default_model=get("GAN_DEFAULT_MODEL", _text, defaults.default_model),
            n_max=get("GAN_N_MAX", _int_at_least(1), defaults.n_max),
            max_score_images=get(
                "GAN_MAX_SCORE_IMAGES", _int_at_least(1), defaults.max_score_images
            ),
            max_upload_bytes=get(
                "GAN_MAX_UPLOAD_BYTES", _int_at_least(1024), defaults.max_upload_bytes
            ),
            max_image_pixels=get(
                "GAN_MAX_IMAGE_PIXELS", _int_at_least(1), defaults.max_image_pixels
            ),
            max_batch_size=get("GAN_MAX_BATCH_SIZE", _int_at_least(1), defaults.max_batch_size),
            max_latency_ms=get("GAN_MAX_LATENCY_MS", _non_negative_float, defaults.max_latency_ms),
            provider=get("GAN_PROVIDER", _choice(PROVIDERS, str.lower), defaults.provider),
            log_level=get("GAN_LOG_LEVEL", _choice(LOG_LEVELS, str.upper), defaults.log_level),
            access_log=get("GAN_ACCESS_LOG", _bool, defaults.access_log),
            api_keys=_api_keys(env),
            metrics_public=get("GAN_METRICS_PUBLIC", _bool, defaults.metrics_public),
            request_timeout_s=get(
                "GAN_REQUEST_TIMEOUT_S", _non_negative_float, defaults.request_timeout_s
            ),
            require_all_models=get("GAN_REQUIRE_ALL_MODELS", _bool, defaults.require_all_models),
            workers=get("GAN_WORKERS", _auto_or(_int_at_least(1)), defaults.workers),
            trace_routes=get("GAN_TRACE_ROUTES", _bool, defaults.trace_routes),
            fast_path=get("GAN_FAST_PATH", _bool, defaults.fast_path),
            ort_threads=get("GAN_ORT_THREADS", _auto_or(_int_at_least(0)), defaults.ort_threads),
            cuda_conv_algo=get(
                "GAN_CUDA_CONV_ALGO", _choice(CONV_ALGOS, str.lower), defaults.cuda_conv_algo
            ),
            max_header_bytes=get(
                "GAN_MAX_HEADER_BYTES", _int_at_least(1024), defaults.max_header_bytes
            ),
            max_headers=get("GAN_MAX_HEADERS", _int_at_least(8), defaults.max_headers),
            header_timeout_s=get(
                "GAN_HEADER_TIMEOUT_S", _non_negative_float, defaults.header_timeout_s
            ),
            max_connections=get(
                "GAN_MAX_CONNECTIONS", _auto_or(_int_at_least(16)), defaults.max_connections
            ),
            heavy_concurrency=get(
                "GAN_HEAVY_CONCURRENCY", _auto_or(_int_at_least(1)), defaults.heavy_concurrency
            ),
            encode_threads=get(
                "GAN_ENCODE_THREADS", _auto_or(_int_at_least(1)), defaults.encode_threads
            ),
            worker_hang_s=get("GAN_WORKER_HANG_S", _non_negative_float, defaults.worker_hang_s),
            split_threads=get(
                "GAN_SPLIT_THREADS", _auto_or(_int_at_least(1)), defaults.split_threads
            ),
        )
        if settings.bento_models and env.get("GAN_MODELS_DIR", "").strip():
            raise SettingsError(
                "GAN_BENTO_MODELS and GAN_MODELS_DIR are both set: the service loads its models "
                "from one place, BentoML's model store or a folder; unset one"
            )
        if not 0.0 < settings.request_timeout_s <= MAX_REQUEST_TIMEOUT_S:
            raise SettingsError(
                f"GAN_REQUEST_TIMEOUT_S={settings.request_timeout_s:g} must be in "
                f"(0, {MAX_REQUEST_TIMEOUT_S:g}] seconds"
            )
        for name, value, lo in (
            ("GAN_HEADER_TIMEOUT_S", settings.header_timeout_s, 0.1),
            ("GAN_WORKER_HANG_S", settings.worker_hang_s, 2.0),
        ):
            if not lo <= value <= MAX_REQUEST_TIMEOUT_S:
                raise SettingsError(
                    f"{name}={value:g} must be in [{lo:g}, {MAX_REQUEST_TIMEOUT_S:g}] seconds"
                )
        if settings.max_latency_ms > 1000:
            raise SettingsError(
                f"GAN_MAX_LATENCY_MS={settings.max_latency_ms:g} is over 1000 ms: every request "
                "could wait that long for company; use a few milliseconds at most"
            )
        return settings

    def resolved(self, cuda: bool, cpus: int) -> Settings:
        """``auto`` workers and ORT threads made concrete for this machine.

        On CPU, one BentoML worker per available CPU (at most 8) with one ONNX Runtime thread each:
        one worker's event loop saturates a core before ORT does, and two workers with one ORT
        thread each served 2.2-2.4x TorchServe's images/s at c=64 on 2 cores where one worker
        did 1.9x (BENCHMARKS.md); TorchServe's own default is also one worker per core. On a GPU,
        one worker: several would each hold a CUDA context and contend for one device.
        """
        workers = self.workers or (1 if cuda else max(1, min(cpus, MAX_AUTO_WORKERS)))
        threads = self.ort_threads
        if threads is None:
            threads = 0 if workers == 1 else max(1, cpus // workers)
        # Half the CPUs a worker has for heavy requests, so the rest keep the cheap ones fast.
        heavy = self.heavy_concurrency or max(1, cpus // workers // 2)
        # Every core of the machine for one worker (a GPU server's PNG path); with a worker per
        # core each already has its own, and more threads would only contend for it.
        encode = self.encode_threads or max(1, cpus // workers)
        # A worker alone may use every core its ORT threads leave over; on a GPU, or with ORT
        # already on every core (0), there is nothing to split onto.
        split = self.split_threads or (1 if cuda or threads == 0 else max(1, cpus // threads))
        return replace(
            self,
            workers=workers,
            ort_threads=threads,
            heavy_concurrency=heavy,
            encode_threads=encode,
            split_threads=split,
        )

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))

    def describe(self) -> dict[str, object]:
        """JSON-ready view for ``/models`` and the start-up log."""
        described = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        described["api_keys"] = f"{len(self.api_keys)} set (redacted)" if self.api_keys else "none"
        return described


def _jsonable(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _text(name: str, raw: str) -> str | None:
    return raw


def parse_bento_tags(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated BentoML tags, ``name`` (= ``name:latest``) or ``name:version``."""
    tags = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tags:
        raise SettingsError(f"{name}={raw!r} lists no model tag")
    seen: set[str] = set()
    for tag in tags:
        model, colon, version = tag.partition(":")
        for part, what in ((model, "name"), (version if colon else "latest", "version")):
            if len(part) > _TAG_PART_MAX or not _TAG_PART.fullmatch(part):
                raise SettingsError(
                    f"{name}: {tag!r} is not a BentoML model tag: its {what} {part!r} must be "
                    f"1 to {_TAG_PART_MAX} lowercase letters, digits, '-', '_' or '.', starting and "
                    "ending with a letter or digit (e.g. mnist-dcgan:latest)"
                )
        if model in seen:
            raise SettingsError(
                f"{name}: model {model!r} is listed twice; each is served under its name, once"
            )
        seen.add(model)
    return tags


def _int_at_least(minimum: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if value < minimum:
            raise SettingsError(f"{name}={value} must be >= {minimum}")
        return value

    return parse


def _auto_or(parse: Callable[[str, str], int]) -> Callable[[str, str], int | None]:
    def parse_auto(name: str, raw: str) -> int | None:
        return None if raw.lower() == "auto" else parse(name, raw)

    return parse_auto


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _non_negative_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value >= 0.0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} must be a finite number >= 0")
    return value


def _choice(allowed: tuple[str, ...], normalise: Callable[[str], str]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = normalise(raw)
        if value not in allowed:
            raise SettingsError(f"{name}={raw!r} must be one of {', '.join(allowed)}")
        return value

    return parse


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be a boolean (1/0, true/false, yes/no, on/off)")


def _api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """``GAN_API_KEY`` (or the file named by ``GAN_API_KEY_FILE``): one key, or several separated
    by commas or newlines so that a key can be rotated without downtime. Messages never quote a
    key: they end up in logs."""
    raw = env.get("GAN_API_KEY", "")
    path = env.get("GAN_API_KEY_FILE", "").strip()
    if raw.strip() and path:
        raise SettingsError("GAN_API_KEY and GAN_API_KEY_FILE are both set: use one")
    source = "GAN_API_KEY"
    if path:
        source = f"GAN_API_KEY_FILE={path!r}"
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{source}: cannot read it ({type(exc).__name__})") from None
        if not raw.strip():
            raise SettingsError(f"{source}: the file is empty")
    keys = tuple(k.strip() for k in raw.replace("\n", ",").split(",") if k.strip())
    if raw.strip() and not keys:
        raise SettingsError(f"{source} holds no key (only separators)")
    for index, key in enumerate(keys):
        if len(key) < MIN_API_KEY_CHARS:
            raise SettingsError(
                f"{source}: key #{index + 1} has {len(key)} characters, fewer than "
                f'{MIN_API_KEY_CHARS}; generate one with `python -c "import secrets; '
                f'print(secrets.token_urlsafe(32))"`'
            )
        if not all(33 <= ord(c) <= 126 for c in key):
            raise SettingsError(
                f"{source}: key #{index + 1} has characters other than printable ASCII "
                "without spaces (it travels in an HTTP header)"
            )
    return keys
