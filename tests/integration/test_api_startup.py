"""Start-up: bad settings and a broken default model stop the server with a clear message;
a broken non-default model is reported in /models while the others are served."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from server_process import Server, launch, wait_ready

pytestmark = pytest.mark.integration


def _exit_output(server: Server, timeout: float = 90.0) -> tuple[int, str]:
    try:
        code = server.process.wait(timeout=timeout)
    finally:
        server.stop()
    return code, server.log()


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bad_setting_stops_start_up_naming_the_variable(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    code, log = _exit_output(launch(tiny_models_dir, tmp_path / "home", {"GAN_N_MAX": "lots"}))
    assert code != 0
    assert "GAN_N_MAX='lots' is not an integer" in log


def test_broken_default_model_stops_start_up_naming_the_file(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    models = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    _tamper(models / "tiny-a" / "discriminator.onnx")
    code, log = _exit_output(launch(models, tmp_path / "home"))
    assert code != 0
    assert "default model 'tiny-a' is broken" in log
    assert "discriminator.onnx: sha256" in log


def test_broken_other_model_is_reported_and_the_rest_served(
    tiny_models_dir: Path, tmp_path: Path, client: httpx.Client
) -> None:
    models = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    (models / "tiny-b" / "generator.onnx").unlink()
    server = launch(models, tmp_path / "home")
    try:
        wait_ready(server)
        with httpx.Client(base_url=server.url, timeout=30) as other:
            listing = other.get("/models").json()
            assert [m["name"] for m in listing["models"]] == ["tiny-a"]
            assert listing["broken"][0]["name"] == "tiny-b"
            assert "generator.onnx" in listing["broken"][0]["error"]
            r = other.post("/generate", json={"seed": 1, "model": "tiny-b"})
            assert r.status_code == 404 and r.json()["field"] == "model"
            # Same seed, another server process: same PNG as the session's server.
            mine = other.post("/generate", json={"seed": 31337, "n": 3}).json()
            theirs = client.post("/generate", json={"seed": 31337, "n": 3}).json()
            assert mine["images"] == theirs["images"]
    finally:
        server.stop()
