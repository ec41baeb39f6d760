"""The README's ``bentoml.SyncHTTPClient`` example, run against the real server."""

from __future__ import annotations

import base64
import io

import bentoml
import pytest
from PIL import Image
from server_process import Server

pytestmark = pytest.mark.integration


def test_readme_python_example(server: Server) -> None:
    with bentoml.SyncHTTPClient(server.url) as client:
        r = client.request("POST", "/generate", json={"seed": 42, "n": 4})
        r.raise_for_status()
        images = [Image.open(io.BytesIO(base64.b64decode(i["png"]))) for i in r.json()["images"]]
        assert [im.size for im in images] == [(28, 28)] * 4

        grid = client.request("POST", "/generate_grid", json={"seed": 42, "n": 16, "columns": 4})
        assert Image.open(io.BytesIO(grid.content)).size == (4 * 30 + 2, 4 * 30 + 2)

        buffer = io.BytesIO()
        images[0].save(buffer, format="PNG")
        files = [("images", ("seed-42.png", buffer.getvalue(), "image/png"))]
        scores = client.request("POST", "/score", files=files, data={"model": "tiny-a"}).json()
        assert 0.0 <= scores["scores"][0]["realness"] <= 1.0

        models = client.request("GET", "/models").json()
        assert models["default"] == "tiny-a"
