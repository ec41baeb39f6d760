"""``python -m service.client`` and ``POST /interpolate`` against the real ``bentoml serve``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image
from server_process import REPO, Server

pytestmark = pytest.mark.integration


def _client(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GAN_URL", "GAN_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "service.client", "--url", server.url, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_generate_score_interpolate(server: Server, tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    run = _client(server, "generate", "--seed", "42", "-n", "16", "-o", str(grid))
    assert run.returncode == 0, run.stderr
    assert Image.open(grid).size == (4 * 30 + 2, 4 * 30 + 2)

    run = _client(server, "generate", "--seed", "42", "-n", "2", "--each", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    run = _client(server, "score", str(tmp_path / "seed-42.png"), str(tmp_path / "seed-43.png"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].startswith("seed-42.png  realness 0.")

    walk = tmp_path / "walk.gif"
    run = _client(
        server,
        "interpolate",
        "--seed-a",
        "1",
        "--seed-b",
        "2",
        "--steps",
        "8",
        "--scale",
        "2",
        "-o",
        str(walk),
    )
    assert run.returncode == 0, run.stderr
    image = Image.open(walk)
    assert (image.format, image.size, image.n_frames) == ("GIF", (56, 56), 14)

    run = _client(server, "generate", "--seed", "1", "--truncation", "2", "-o", str(grid))  # n=1
    assert run.returncode == 1
    assert run.stderr == (
        f"error: POST {server.url}/generate: the server answered 400: "
        '{"error":"truncation must be in (0, 1], got 2.0","reason":"invalid_field",'
        '"field":"truncation"}\n'
    )


def test_interpolate_and_ui_through_bentoml(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post(
            "/interpolate", json={"seed_a": 5, "seed_b": 6, "steps": 4, "format": "webp"}
        )
        assert (r.status_code, r.headers["content-type"]) == (200, "image/webp")
        assert Image.open(io.BytesIO(r.content)).n_frames == 6
        r = client.post("/interpolate", json={"seed_a": 5})
        assert (r.status_code, r.json()["field"]) == (400, "seed_b")
        r = client.get("/ui/")
        assert r.status_code == 200 and "<title>GAN service</title>" in r.text
        # BentoML's own pages still answer beside the mounted app.
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        assert 'gan_batch_size_count{kind="interpolate",model="tiny-a"}' in metrics
