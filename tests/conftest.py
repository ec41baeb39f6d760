"""Shared fixtures: a models folder holding two tiny exported models (no torch needed).

The suite never downloads a dataset: a test that wants a download turns it back on and points
``GAN_DATA_MIRROR`` at a local server (tests/training/test_download.py). Set here, at import,
so the training subprocesses the tests start inherit it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures.tiny_models import build_models_dir

os.environ["GAN_DATA_DOWNLOAD"] = "0"


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ with tiny-a (1x28x28, z_dim 8, sigmoid) and tiny-b (3x32x32, z_dim 16, platt).

    Session-scoped and shared: tests that need to break a model copy it first."""
    return build_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def conditional_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-a, tiny-b and tiny-c, a class-conditional model of format gan-model/2."""
    return build_models_dir(tmp_path_factory.mktemp("models-conditional"), conditional=True)
