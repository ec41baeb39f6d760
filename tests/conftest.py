"""Shared fixtures: a models folder holding two tiny exported models (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.tiny_models import build_models_dir


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ with tiny-a (1x28x28, z_dim 8, sigmoid) and tiny-b (3x32x32, z_dim 16, platt).

    Session-scoped and shared: tests that need to break a model copy it first."""
    return build_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def conditional_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-a, tiny-b and tiny-c, a class-conditional model of format gan-model/2."""
    return build_models_dir(tmp_path_factory.mktemp("models-conditional"), conditional=True)
