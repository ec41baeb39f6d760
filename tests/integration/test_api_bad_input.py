"""Every kind of bad input gets a 4xx JSON error naming the field: never a 500."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.integration


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = _png(Image.new("L", (28, 28), 128))
TRUNCATED = _png(Image.effect_noise((64, 64), 40).convert("L"))[:600]
# 3000 x 3000 = 9 Mpx against GAN_MAX_IMAGE_PIXELS=4000000, in a few kB of PNG.
BOMB = _png(Image.new("1", (3000, 3000)))


def _chunks() -> Iterator[bytes]:
    """A chunked upload (no Content-Length) that only reveals its size while streaming."""
    yield b'--xyz\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
    for _ in range(40):
        yield b"0" * 65536


CASES: list[tuple[str, str, dict[str, Any], int, str, str | None]] = [
    ("POST", "/generate", {"content": b'{"seed": '}, 400, "bad_json", None),
    ("POST", "/generate", {"content": b"[1, 2]"}, 400, "bad_json", None),
    ("POST", "/generate", {"json": {}}, 400, "invalid_field", "seed"),
    ("POST", "/generate", {"json": {"seed": "12"}}, 400, "invalid_field", "seed"),
    ("POST", "/generate", {"json": {"seed": 1.5}}, 400, "invalid_field", "seed"),
    ("POST", "/generate", {"json": {"seed": -1}}, 400, "invalid_field", "seed"),
    ("POST", "/generate", {"json": {"seed": 2**32}}, 400, "invalid_field", "seed"),
    ("POST", "/generate", {"json": {"seed": 1, "n": 0}}, 400, "invalid_field", "n"),
    ("POST", "/generate", {"json": {"seed": 1, "n": 65}}, 400, "invalid_field", "n"),
    ("POST", "/generate", {"json": {"seed": 1, "n": "2"}}, 400, "invalid_field", "n"),
    (
        "POST",
        "/generate",
        {"json": {"seed": 1, "truncation": 0}},
        400,
        "invalid_field",
        "truncation",
    ),
    (
        "POST",
        "/generate",
        {"json": {"seed": 1, "truncation": 2}},
        400,
        "invalid_field",
        "truncation",
    ),
    ("POST", "/generate", {"json": {"seed": 1, "model": ["a"]}}, 400, "invalid_field", "model"),
    ("POST", "/generate", {"json": {"seed": 1, "colour": 1}}, 400, "invalid_field", "colour"),
    ("POST", "/generate", {"json": {"seed": 1, "model": "nope"}}, 404, "unknown_model", "model"),
    ("POST", "/generate", {"content": b" " * 70_000}, 413, "body_too_large", None),
    ("GET", "/generate", {}, 405, "method_not_allowed", None),
    (
        "POST",
        "/generate_grid",
        {"json": {"seed": 1, "columns": 0}},
        400,
        "invalid_field",
        "columns",
    ),
    (
        "POST",
        "/generate_grid",
        {"json": {"seed": 1, "model": "nope"}},
        404,
        "unknown_model",
        "model",
    ),
    ("POST", "/generate_grid", {"content": b"nope"}, 400, "bad_json", None),
    ("POST", "/score", {"json": {"images": []}}, 400, "not_multipart", "images"),
    (
        "POST",
        "/score",
        {"data": {"model": "tiny-a"}, "files": [("x", ("x", b"x"))]},
        400,
        "invalid_field",
        "images",
    ),
    (
        "POST",
        "/score",
        {"files": [("images", ("a.png", GOOD))], "data": {"model": "nope"}},
        404,
        "unknown_model",
        "model",
    ),
    (
        "POST",
        "/score",
        {"files": [("images", ("notes.txt", b"not an image at all"))]},
        400,
        "not_an_image",
        "images",
    ),
    ("POST", "/score", {"files": [("images", ("empty.png", b""))]}, 400, "not_an_image", "images"),
    (
        "POST",
        "/score",
        {"files": [("images", ("cut.png", TRUNCATED))]},
        400,
        "corrupt_image",
        "images",
    ),
    (
        "POST",
        "/score",
        {"files": [("images", ("bomb.png", BOMB))]},
        413,
        "image_too_large",
        "images",
    ),
    (
        "POST",
        "/score",
        {"files": [("images", (f"{i}.png", GOOD)) for i in range(9)]},
        400,
        "too_many_images",
        "images",
    ),
    (
        "POST",
        "/score",
        {"files": [("images", ("big.png", b"\0" * 2_100_000))]},
        413,
        "body_too_large",
        None,
    ),
    (
        "POST",
        "/score",
        {"content": _chunks(), "headers": {"content-type": "multipart/form-data; boundary=xyz"}},
        413,
        "body_too_large",
        None,
    ),
    ("PUT", "/models", {}, 405, "method_not_allowed", None),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "reason", "field"),
    CASES,
    ids=[f"{c[1]}-{c[4]}-{i}" for i, c in enumerate(CASES)],
)
def test_bad_input_gets_a_json_4xx(
    client: httpx.Client,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    reason: str,
    field: str | None,
) -> None:
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["reason"] == reason
    assert body["field"] == field
    assert isinstance(body["error"], str) and body["error"]


def test_upload_error_names_the_file(client: httpx.Client) -> None:
    files = [("images", ("ok.png", GOOD)), ("images", ("broken.png", TRUNCATED))]
    body = client.post("/score", files=files).json()
    assert "images[1] (broken.png)" in body["error"]


def test_errors_are_counted(client: httpx.Client) -> None:
    client.post("/generate", json={"seed": -5})
    metrics = client.get("/metrics").text
    assert 'gan_request_errors_total{endpoint="generate",reason="invalid_field"}' in metrics


def test_server_still_healthy_after_abuse(client: httpx.Client) -> None:
    assert client.post("/generate", json={"seed": 1}).status_code == 200
