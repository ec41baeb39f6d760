"""The declared ``@bentoml.api`` methods (service/bento_api.py): typed from api.py, answered by
our handlers."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pydantic
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from service import api, bento_api
from service.app import build_app
from service.errors import ApiError
from service.model_store import ModelStore
from service.request_parsing import form_text
from service.settings import Settings

SETTINGS = Settings(n_max=32)


def _accepts_both(route: str, body: dict[str, Any]) -> tuple[bool, bool]:
    """(our parser accepts ``body``, the declared pydantic model accepts it)."""
    try:
        api.check_fields(route, body, SETTINGS)
        ours = True
    except ApiError:
        ours = False
    try:
        bento_api.input_model(route, SETTINGS).model_validate(body)
        declared = True
    except pydantic.ValidationError:
        declared = False
    return ours, declared


CASES = [
    ("generate", {"seed": 0}, True),
    ("generate", {"seed": 4294967295}, True),
    ("generate", {"seed": -1}, False),
    ("generate", {"seed": 4294967296}, False),
    ("generate", {"seed": 1, "n": 32}, True),
    ("generate", {"seed": 1, "n": 33}, False),  # the live GAN_N_MAX
    ("generate", {"seed": 1, "n": 0}, False),
    ("generate", {"seed": 1, "truncation": 1.0}, True),
    ("generate", {"seed": 1, "truncation": 0.0}, False),
    ("generate", {"seed": 1, "truncation": 1.5}, False),
    ("generate", {"seed": 1, "class": 3}, True),
    ("generate", {"seed": 1, "class": "Sandal"}, True),
    ("generate", {"seed": 1, "class": -1}, False),
    ("generate", {"seed": 1, "class": ""}, False),
    ("generate", {"seed": 1, "model": "m"}, True),
    ("generate", {"n": 2}, False),  # seed is required
    ("generate", {"seed": 1, "sed": 2}, False),  # unknown fields are refused
    ("generate", {"seed": 1, "format": "npy"}, True),
    ("generate", {"seed": 1, "format": "webp"}, True),
    ("generate", {"seed": 1, "format": "gif"}, False),
    ("generate", {"seed": 1, "format": "jpeg", "quality": 100}, True),
    ("generate", {"seed": 1, "format": "jpeg", "quality": 0}, False),
    ("generate", {"seed": 1, "format": "jpeg", "quality": 101}, False),
    ("generate_grid", {"seed": 1, "format": "jpeg"}, True),
    ("generate_grid", {"seed": 1, "format": "npy"}, False),
    ("generate_grid", {"seed": 1, "columns": 32}, True),
    ("generate_grid", {"seed": 1, "columns": 0}, False),
    ("interpolate", {"seed_a": 1, "seed_b": 2, "steps": 2}, True),
    ("interpolate", {"seed_a": 1, "seed_b": 2, "steps": 1}, False),
    ("interpolate", {"seed_a": 1, "seed_b": 2, "format": "gif"}, True),
    ("interpolate", {"seed_a": 1, "seed_b": 2, "format": "bmp"}, False),
    ("interpolate", {"seed_a": 1, "seed_b": 2, "frame_ms": 19}, False),
    ("interpolate", {"seed_a": 1, "seed_b": 2, "bounce": False}, True),
]


@pytest.mark.parametrize(("route", "body", "valid"), CASES)
def test_declared_types_are_the_parsers_rules(
    route: str, body: dict[str, Any], valid: bool
) -> None:
    assert _accepts_both(route, body) == (valid, valid)


def test_every_route_is_declared_with_its_fields() -> None:
    @bentoml.service(name="declared_probe")
    class Probe(bento_api.declared_api(SETTINGS)):  # type: ignore[misc]
        pass

    assert set(Probe.apis) == {r.name for r in api.ROUTES}
    routes = {r["name"]: r for r in Probe.schema()["routes"]}
    for r in api.ROUTES:
        assert routes[r.name]["route"] == r.path
        if r.body is None:
            continue
        properties = routes[r.name]["input"]["properties"]
        assert set(properties) == api.field_names(r.name), r.name
        required = set(routes[r.name]["input"].get("required", []))
        assert required == {f.name for f in api.route_fields(r.name) if f.required}
    assert routes["generate"]["input"]["properties"]["n"]["maximum"] == 32
    assert routes["score"]["input"]["properties"]["images"]["items"]["type"] == "file"
    assert routes["generate_grid"]["output"]["type"] == "file"


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ('"mnist-dcgan"', "mnist-dcgan"),  # BentoML's clients JSON-encode text fields
        ("mnist-dcgan", "mnist-dcgan"),  # curl -F model=mnist-dcgan
        ("null", None),
        ("7", "7"),
        ('"Sandal"', "Sandal"),
        ('"unterminated', '"unterminated'),
        ('"3"', "3"),
    ],
)
def test_form_text(sent: str, meant: str | None) -> None:
    assert form_text(sent) == meant


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_method_bodies_answer_like_the_http_routes(
    conditional_models_dir: Path, tmp_path: Path
) -> None:
    """``.local`` / in-process calls run the very handlers HTTP requests reach: same bytes."""
    settings = Settings(models_dir=conditional_models_dir, default_model="tiny-a")
    app = build_app(settings, ModelStore.load(settings), registry=CollectorRegistry())
    bento_api.bind(app)
    upload = tmp_path / "up.png"
    upload.write_bytes(_png(Image.new("L", (28, 28), 200)))
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("generate", {"seed": 7, "n": 3}, {"json": {"seed": 7, "n": 3}}),
        (
            "generate",
            {"seed": 7, "model": "tiny-c", "class_": "1"},
            {"json": {"seed": 7, "model": "tiny-c", "class": "1"}},
        ),
        ("generate", {"seed": 7, "n": 99}, {"json": {"seed": 7, "n": 99}}),  # our 400
        ("generate_grid", {"seed": 3, "n": 4}, {"json": {"seed": 3, "n": 4}}),
        (
            "interpolate",
            {"seed_a": 1, "seed_b": 2, "steps": 3, "format": "gif"},
            {"json": {"seed_a": 1, "seed_b": 2, "steps": 3, "format": "gif"}},
        ),
        (
            "score",
            {"images": [upload], "model": "tiny-a"},
            {
                "files": [("images", ("up.png", upload.read_bytes(), "image/png"))],
                "data": {"model": "tiny-a"},
            },
        ),
        ("models", {}, {}),
    ]

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for route, arguments, http in calls:
                    local = await bento_api.call_handler(route, arguments)
                    method = "GET" if route == "models" else "POST"
                    remote = await client.request(method, f"/{route}", **http)
                    assert local.status_code == remote.status_code, (route, arguments)
                    assert local.media_type == remote.headers["content-type"].split(";")[0]
                    if route == "models":
                        assert json.loads(bytes(local.body)) == remote.json()
                    else:
                        assert bytes(local.body) == remote.content, (route, arguments)

    asyncio.run(main())
