"""Start-up with missing, truncated or mismatched model files (docs/reliability.md, "Broken
models"). The policy, tested here on the real server:

- the default model broken (or no model working): the server does not start; it exits non-zero
  within seconds with a message naming the file;
- another model broken: the others are served; the broken one is listed under ``broken`` in
  ``GET /models`` (with the file and the reason), counted by the ``gan_models_broken`` gauge and
  logged; ``/readyz`` stays 200 (the pod can serve), requests naming it get 404;
- ``GAN_REQUIRE_ALL_MODELS=true``: any broken model stops start-up, naming every one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from integration.server_process import Server, launch, wait_ready
from rel_helpers import metric_value

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _missing(folder: Path, file: str) -> None:
    (folder / file).unlink()


def _truncated(folder: Path, file: str) -> None:
    data = (folder / file).read_bytes()
    (folder / file).write_bytes(data[: len(data) // 3])


def _sha_mismatch(folder: Path, file: str) -> None:
    manifest = json.loads((folder / "model.json").read_text())
    key = "generator" if file.startswith("generator") else "discriminator"
    manifest["onnx"][key]["sha256"] = "0" * 64
    (folder / "model.json").write_text(json.dumps(manifest))


def _manifest_cut(folder: Path, file: str) -> None:
    text = (folder / "model.json").read_text()
    (folder / "model.json").write_text(text[: len(text) // 2])


Breaker = Callable[[Path, str], None]
# (how, file broken, what the message must say)
BREAKS: list[tuple[Breaker, str, str]] = [
    (_missing, "generator.onnx", "generator.onnx: cannot read"),
    (_truncated, "discriminator.onnx", "discriminator.onnx: sha256"),
    (_sha_mismatch, "generator.onnx", "generator.onnx: sha256"),
]


def _exit(server: Server, timeout: float = 90.0) -> tuple[int, float, str]:
    start = time.monotonic()
    try:
        code = server.process.wait(timeout=timeout)
    finally:
        server.stop()
    return code, time.monotonic() - start, server.log()


@pytest.mark.parametrize(
    ("break_it", "file", "message"), BREAKS, ids=[f"{b[0].__name__[1:]}-{b[1]}" for b in BREAKS]
)
def test_broken_default_model_fails_fast_naming_the_file(
    tiny_models_dir: Path, tmp_path: Path, break_it: Breaker, file: str, message: str
) -> None:
    models = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    break_it(models / "tiny-a", file)
    code, seconds, log = _exit(launch(models, tmp_path / "home"))
    assert code != 0
    assert seconds < 60
    assert "cannot start: default model 'tiny-a' is broken" in log
    assert f"{models / 'tiny-a' / file.split(':')[0]}" in log
    assert message in log


@pytest.fixture
def half_broken_models(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """tiny-a and tiny-b fine; four copies of tiny-b broken four ways."""
    models = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    for name, (break_it, file) in {
        "tiny-c": (_missing, "discriminator.onnx"),
        "tiny-d": (_truncated, "generator.onnx"),
        "tiny-e": (_sha_mismatch, "discriminator.onnx"),
        "tiny-f": (_manifest_cut, "model.json"),
    }.items():
        shutil.copytree(models / "tiny-b", models / name)
        break_it(models / name, file)
    return models


def test_broken_other_models_are_reported_and_the_rest_served(
    half_broken_models: Path, tmp_path: Path
) -> None:
    server = launch(half_broken_models, tmp_path / "home")
    try:
        wait_ready(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            listing = client.get("/models").json()
            assert [m["name"] for m in listing["models"]] == ["tiny-a", "tiny-b"]
            broken = {b["name"]: b["error"] for b in listing["broken"]}
            assert sorted(broken) == ["tiny-c", "tiny-d", "tiny-e", "tiny-f"]
            assert "tiny-c/discriminator.onnx: cannot read" in broken["tiny-c"]
            assert "tiny-d/generator.onnx: sha256" in broken["tiny-d"]
            assert "tiny-e/discriminator.onnx: sha256" in broken["tiny-e"]
            assert "tiny-f/model.json: unreadable" in broken["tiny-f"]
            metrics = client.get("/metrics").text
            assert metric_value(metrics, "gan_models_broken") == 4
            for name in ("tiny-a", "tiny-b"):
                assert client.post("/generate", json={"seed": 1, "model": name}).status_code == 200
            r = client.post("/generate", json={"seed": 1, "model": "tiny-d"})
            assert r.status_code == 404 and r.json()["reason"] == "unknown_model"
        log = server.log()
        for name in ("tiny-c", "tiny-d", "tiny-e", "tiny-f"):
            assert f"model '{name}' is broken and will not be served" in log
    finally:
        server.stop()


def test_require_all_models_stops_start_up_naming_each(
    half_broken_models: Path, tmp_path: Path
) -> None:
    code, seconds, log = _exit(
        launch(half_broken_models, tmp_path / "home", {"GAN_REQUIRE_ALL_MODELS": "true"})
    )
    assert code != 0 and seconds < 60
    assert "cannot start: GAN_REQUIRE_ALL_MODELS=true" in log
    for name in ("tiny-c", "tiny-d", "tiny-e", "tiny-f"):
        assert f"model '{name}' is broken" in log
