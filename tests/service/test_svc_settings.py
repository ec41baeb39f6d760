from __future__ import annotations

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
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
