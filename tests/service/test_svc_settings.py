from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.settings import Settings, SettingsError


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.models_dir == Path("models")
    assert s.n_max == 64
    assert s.provider == "auto"
    assert s.default_model is None


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "GAN_MODELS_DIR": "/srv/models",
            "GAN_DEFAULT_MODEL": "mnist",
            "GAN_N_MAX": "16",
            "GAN_MAX_SCORE_IMAGES": "8",
            "GAN_MAX_UPLOAD_BYTES": "1_048_576",
            "GAN_MAX_IMAGE_PIXELS": "1000000",
            "GAN_MAX_BATCH_SIZE": "32",
            "GAN_MAX_LATENCY_MS": "2.5",
            "GAN_PROVIDER": "CPU",
            "GAN_LOG_LEVEL": "debug",
            "GAN_ACCESS_LOG": "yes",
        }
    )
    assert s.models_dir == Path("/srv/models")
    assert s.default_model == "mnist"
    assert (s.n_max, s.max_score_images, s.max_upload_bytes) == (16, 8, 1_048_576)
    assert (s.max_image_pixels, s.max_batch_size, s.max_latency_ms) == (1_000_000, 32, 2.5)
    assert (s.provider, s.log_level, s.access_log) == ("cpu", "DEBUG", True)
    assert s.describe()["models_dir"] == "/srv/models"


def test_blank_values_mean_default() -> None:
    assert Settings.from_env({"GAN_N_MAX": "  ", "GAN_DEFAULT_MODEL": ""}) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GAN_N_MAX", "abc"),
        ("GAN_N_MAX", "0"),
        ("GAN_MAX_BATCH_SIZE", "-3"),
        ("GAN_MAX_UPLOAD_BYTES", "10"),
        ("GAN_MAX_LATENCY_MS", "fast"),
        ("GAN_MAX_LATENCY_MS", "-1"),
        ("GAN_MAX_LATENCY_MS", "nan"),
        ("GAN_MAX_LATENCY_MS", "5000"),
        ("GAN_PROVIDER", "tpu"),
        ("GAN_LOG_LEVEL", "loud"),
        ("GAN_ACCESS_LOG", "maybe"),
        ("GAN_WORKERS", "0"),
        ("GAN_WORKERS", "many"),
        ("GAN_ORT_THREADS", "-1"),
        ("GAN_CUDA_CONV_ALGO", "fastest"),
        ("GAN_FAST_PATH", "sometimes"),
        ("GAN_MAX_HEADER_BYTES", "100"),
        ("GAN_MAX_HEADERS", "2"),
        ("GAN_HEADER_TIMEOUT_S", "0"),
        ("GAN_HEADER_TIMEOUT_S", "soon"),
        ("GAN_MAX_CONNECTIONS", "3"),
        ("GAN_HEAVY_CONCURRENCY", "0"),
        ("GAN_ENCODE_THREADS", "0"),
        ("GAN_ENCODE_THREADS", "all"),
        ("GAN_WORKER_HANG_S", "0.5"),
        ("GAN_WORKER_HANG_S", "99999"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_workers_and_ort_threads_default_to_auto() -> None:
    s = Settings.from_env({"GAN_WORKERS": "auto", "GAN_ORT_THREADS": "AUTO"})
    assert (
        (s.workers, s.ort_threads) == (None, None) == (Settings().workers, Settings().ort_threads)
    )
    explicit = Settings.from_env({"GAN_WORKERS": "3", "GAN_ORT_THREADS": "0"})
    assert (explicit.workers, explicit.ort_threads) == (3, 0)


@pytest.mark.parametrize(
    ("env", "cuda", "cpus", "expected"),
    [
        ({}, False, 2, (2, 1)),  # a worker per CPU, one ORT thread each
        ({}, False, 1, (1, 0)),  # one worker: ORT's own thread choice
        ({}, False, 64, (8, 8)),  # capped at 8 workers; the CPUs shared out
        ({}, True, 16, (1, 0)),  # a GPU: one worker, one CUDA context
        ({"GAN_WORKERS": "1"}, False, 2, (1, 0)),
        ({"GAN_WORKERS": "2", "GAN_ORT_THREADS": "0"}, False, 4, (2, 0)),
        ({"GAN_ORT_THREADS": "3"}, False, 2, (2, 3)),
    ],
)
def test_auto_resolves_for_the_machine(
    env: dict[str, str], cuda: bool, cpus: int, expected: tuple[int, int]
) -> None:
    r = Settings.from_env(env).resolved(cuda=cuda, cpus=cpus)
    assert (r.workers, r.ort_threads) == expected


def test_connection_and_worker_limits_are_read() -> None:
    s = Settings.from_env(
        {
            "GAN_MAX_HEADER_BYTES": "8192",
            "GAN_MAX_HEADERS": "50",
            "GAN_HEADER_TIMEOUT_S": "2.5",
            "GAN_MAX_CONNECTIONS": "500",
            "GAN_HEAVY_CONCURRENCY": "3",
            "GAN_WORKER_HANG_S": "20",
        }
    )
    assert (s.max_header_bytes, s.max_headers, s.header_timeout_s) == (8192, 50, 2.5)
    assert (s.max_connections, s.heavy_concurrency, s.worker_hang_s) == (500, 3, 20.0)
    assert Settings.from_env({"GAN_MAX_CONNECTIONS": "auto"}).max_connections is None


@pytest.mark.parametrize(("cpus", "workers", "heavy"), [(2, 2, 1), (16, 1, 8), (8, 2, 2)])
def test_heavy_concurrency_auto(cpus: int, workers: int, heavy: int) -> None:
    env = {"GAN_WORKERS": str(workers)}
    assert Settings.from_env(env).resolved(cuda=False, cpus=cpus).heavy_concurrency == heavy


@pytest.mark.parametrize(
    ("env", "cpus", "threads"),
    [
        ({}, 2, 1),  # a worker per core: one thread each, the behaviour before the pool
        ({"GAN_WORKERS": "1"}, 16, 16),  # one worker (a GPU server): every core
        ({"GAN_WORKERS": "2"}, 8, 4),
        ({"GAN_ENCODE_THREADS": "auto", "GAN_WORKERS": "1"}, 4, 4),
        ({"GAN_ENCODE_THREADS": "3"}, 2, 3),
    ],
)
def test_encode_threads(env: dict[str, str], cpus: int, threads: int) -> None:
    settings = Settings.from_env(env)
    assert settings.resolved(cuda=False, cpus=cpus).encode_threads == threads
    # On a GPU auto is one worker: every core encodes.
    assert Settings().resolved(cuda=True, cpus=16).encode_threads == 16


def test_available_cpus_is_positive() -> None:
    from service.settings import available_cpus

    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_bento_models_are_tags_in_order() -> None:
    s = Settings.from_env({"GAN_BENTO_MODELS": " mnist-dcgan:latest , fashion-dcgan:118ff9d1 ,x"})
    assert s.bento_models == ("mnist-dcgan:latest", "fashion-dcgan:118ff9d1", "x")
    assert s.describe()["bento_models"] == ("mnist-dcgan:latest", "fashion-dcgan:118ff9d1", "x")
    assert Settings.from_env({}).bento_models == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Mnist:latest", "its name 'Mnist'"),
        ("mnist:", "its version ''"),
        ("mnist:v 1", "its version 'v 1'"),
        ("-mnist", "its name '-mnist'"),
        ("a" * 64, "its name 'aaaa"),
        (" , ", "lists no model tag"),
        ("mnist:a,mnist:b", "model 'mnist' is listed twice"),
    ],
)
def test_bad_bento_models_name_the_variable(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match="GAN_BENTO_MODELS") as info:
        Settings.from_env({"GAN_BENTO_MODELS": value})
    assert message in str(info.value)


def test_bento_models_and_a_models_folder_are_exclusive() -> None:
    with pytest.raises(SettingsError, match="GAN_BENTO_MODELS and GAN_MODELS_DIR are both set"):
        Settings.from_env({"GAN_BENTO_MODELS": "mnist-dcgan", "GAN_MODELS_DIR": "/srv/models"})
