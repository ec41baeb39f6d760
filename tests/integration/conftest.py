"""Fixtures for the API tests: one ``bentoml serve`` shared by the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_process import Server, launch, wait_ready


@pytest.fixture(scope="session")
def server(
    conditional_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """tiny-a (default), tiny-b and the class-conditional tiny-c."""
    srv = launch(conditional_models_dir, tmp_path_factory.mktemp("bentoml_home"))
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c
