"""Fixtures for the reliability suite: real ``bentoml serve`` processes (tests/integration's
launcher), each with its own BENTOML_HOME and free port on 127.0.0.1.

The shared server runs with an API key, so every test that talks to it also proves that a
client holding the key gets the full API (and the auth tests use it for the 401 side).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from integration.server_process import Server, launch, wait_ready
from rel_helpers import API_KEY, AUTH, Target


@pytest.fixture(scope="session")
def rel_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Test limits (8 images, 2 MB bodies, 4 Mpx), n <= 64, GAN_API_KEY set."""
    srv = launch(tiny_models_dir, tmp_path_factory.mktemp("rel_home"), {"GAN_API_KEY": API_KEY})
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def keyless_server(
    tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The same, without an API key: the fixes must hold with the key on and off."""
    srv = launch(tiny_models_dir, tmp_path_factory.mktemp("rel_keyless_home"))
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["key", "no key"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each test using it runs against the shared server with the API key on, then off."""
    if request.param == "key":
        return Target(request.getfixturevalue("rel_server"), dict(AUTH), True)
    return Target(request.getfixturevalue("keyless_server"), {}, False)


@pytest.fixture
def rel_client(rel_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rel_server.url, timeout=30.0, headers=AUTH) as c:
        yield c
