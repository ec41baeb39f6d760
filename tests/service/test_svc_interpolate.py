"""``POST /interpolate``: slerp, the route in-process, its validation and its metrics."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.in_process import serve
from PIL import Image, ImageSequence
from prometheus_client import CollectorRegistry

from contract.latents import latents
from service import api
from service.errors import ApiError
from service.interpolate import (
    MAX_OUTPUT_PIXELS,
    InterpolateParams,
    check_budget,
    parse_interpolate,
    slerp,
    walk_latents,
)
from service.settings import Settings


def _frames(data: bytes) -> list[np.ndarray]:
    image = Image.open(io.BytesIO(data))
    return [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(image)]


# --- slerp -------------------------------------------------------------------------------------


def test_slerp_ends_norm_and_angle() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    t = np.linspace(0, 1, 9)
    path = slerp(a, b, t)
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    # Equal norms stay on the sphere; the angle to a grows linearly with t.
    unit_b = b / np.linalg.norm(b) * np.linalg.norm(a)
    on_sphere = slerp(a, unit_b, t)
    np.testing.assert_allclose(np.linalg.norm(on_sphere, axis=1), np.linalg.norm(a), rtol=1e-12)
    cos = on_sphere @ a / (np.linalg.norm(on_sphere, axis=1) * np.linalg.norm(a))
    angles = np.arccos(np.clip(cos, -1, 1))
    np.testing.assert_allclose(angles, t * angles[-1], atol=1e-9)


def test_slerp_degenerate_cases_fall_back_to_a_line() -> None:
    a = np.array([1.0, 2.0, 3.0])
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(slerp(a, a, t), np.tile(a, (5, 1)))  # same seed: a still image
    np.testing.assert_allclose(slerp(a, 2 * a, t)[2], 1.5 * a)  # parallel
    np.testing.assert_allclose(slerp(np.zeros(3), a, t)[2], 0.5 * a)  # zero vector
    assert np.isfinite(slerp(a, -a, t)).all()  # antiparallel


def test_walk_latents_ends_are_the_seed_latents() -> None:
    for psi in (1.0, 0.6):
        z = walk_latents(5, 99, 7, z_dim=8, truncation=psi)
        assert z.shape == (7, 8) and z.dtype == np.float32
        np.testing.assert_array_equal(z[0], latents(5, 1, 8, psi)[0])
        np.testing.assert_array_equal(z[-1], latents(99, 1, 8, psi)[0])
    # Truncation scales the whole walk (slerp commutes with a common scale).
    np.testing.assert_allclose(
        walk_latents(5, 99, 7, 8, 0.5), 0.5 * walk_latents(5, 99, 7, 8, 1.0), rtol=1e-5, atol=1e-6
    )


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"seed_b": 1}, "seed_a", "seed_a is required"),
        ({"seed_a": 1}, "seed_b", "seed_b is required"),
        ({"seed_a": -1, "seed_b": 1}, "seed_a", "seed_a must be in [0, 4294967295], got -1"),
        ({"seed_a": 1, "seed_b": 2**32}, "seed_b", "seed_b must be in [0, 4294967295]"),
        ({"seed_a": "1", "seed_b": 2}, "seed_a", "must be an integer in [0, 4294967295], got str"),
        ({"seed_a": 1, "seed_b": 2, "steps": 1}, "steps", "steps must be in [2, 64], got 1"),
        ({"seed_a": 1, "seed_b": 2, "steps": 65}, "steps", "steps must be in [2, 64], got 65"),
        ({"seed_a": 1, "seed_b": 2, "steps": 4.0}, "steps", "got float"),
        ({"seed_a": 1, "seed_b": 2, "steps": True}, "steps", "got bool"),
        ({"seed_a": 1, "seed_b": 2, "truncation": 0}, "truncation", "in (0, 1], got 0.0"),
        ({"seed_a": 1, "seed_b": 2, "truncation": "x"}, "truncation", "must be a number"),
        ({"seed_a": 1, "seed_b": 2, "model": 3}, "model", "model must be a string, got int"),
        ({"seed_a": 1, "seed_b": 2, "format": "jpg"}, "format", 'one of png, gif, webp, got "jpg"'),
        ({"seed_a": 1, "seed_b": 2, "format": ["gif"]}, "format", 'got ["gif"]'),
        ({"seed_a": 1, "seed_b": 2, "scale": 9}, "scale", "scale must be in [1, 8], got 9"),
        ({"seed_a": 1, "seed_b": 2, "frame_ms": 5}, "frame_ms", "in [20, 2000], got 5"),
        ({"seed_a": 1, "seed_b": 2, "bounce": 1}, "bounce", "true or false, got int"),
        ({"seed_a": 1, "seed_b": 2, "seed": 3}, "seed", "unknown field 'seed'; accepted: bounce"),
    ],
)
def test_parse_errors_name_the_field(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_interpolate(json.dumps(body).encode(), Settings(n_max=64))
    assert (exc.value.status, exc.value.reason, exc.value.field) == (400, "invalid_field", field)
    assert message in exc.value.message


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b"\xff"])
def test_parse_bad_json(body: bytes) -> None:
    with pytest.raises(ApiError) as exc:
        parse_interpolate(body, Settings(n_max=64))
    assert (exc.value.reason, exc.value.field) == ("bad_json", None)


def test_parse_defaults() -> None:
    params = parse_interpolate(b'{"seed_a": 0, "seed_b": 4294967295}', Settings(n_max=64))
    assert params == InterpolateParams(0, 4294967295, 16, None, 1.0, "png", 80, 1, True)
    assert parse_interpolate(b'{"seed_a": 0, "seed_b": 1}', Settings(n_max=8)).steps == 8


def test_openapi_schema_has_the_parser_bounds() -> None:
    context = api.SchemaContext(("tiny-a",), "tiny-a")
    schema = api.request_schema("interpolate", Settings(n_max=64), context)
    # No served model takes a class: the field is not offered.
    assert set(schema["properties"]) == api.field_names("interpolate") - {"class"}
    with_classes = api.SchemaContext(("tiny-c",), "tiny-c", classes={"tiny-c": ("a", "b")})
    offered = api.request_schema("interpolate", Settings(n_max=64), with_classes)["properties"]
    assert (
        set(offered) == api.field_names("interpolate")
        and "tiny-c: a, b" in offered["class"]["description"]
    )
    assert schema["required"] == ["seed_a", "seed_b"]
    props = schema["properties"]
    assert (props["steps"]["minimum"], props["steps"]["maximum"]) == (2, 64)
    assert props["format"]["enum"] == ["png", "gif", "webp"]
    for name, lo, hi in (("frame_ms", 20, 2000), ("scale", 1, 8), ("seed_a", 0, 2**32 - 1)):
        body = {"seed_a": 0, "seed_b": 0, name: lo}
        assert parse_interpolate(json.dumps(body).encode(), Settings(n_max=64))
        body[name] = hi
        assert parse_interpolate(json.dumps(body).encode(), Settings(n_max=64))
        for bad in (lo - 1, hi + 1):
            body[name] = bad
            with pytest.raises(ApiError):
                parse_interpolate(json.dumps(body).encode(), Settings(n_max=64))


def test_budget_counts_bounce_frames_and_scale() -> None:
    ok = InterpolateParams(1, 2, 64, None, 1.0, "gif", scale=8)
    check_budget(32, 32, ok)  # 126 frames x 256 x 256 = 8.26 Mpx, just under 2**23
    with pytest.raises(ApiError) as exc:
        check_budget(64, 64, ok)
    assert exc.value.field == "scale"
    assert f"over the limit of {MAX_OUTPUT_PIXELS}; use scale <= 4 or fewer steps" in str(exc.value)
    check_budget(64, 64, InterpolateParams(1, 2, 64, None, 1.0, "png", scale=5))  # 64 frames
    with pytest.raises(ApiError):
        check_budget(64, 64, InterpolateParams(1, 2, 64, None, 1.0, "gif", scale=5))  # 126


# --- the route ---------------------------------------------------------------------------------


def test_strip_frames_are_the_generate_images(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        body = {"seed_a": 3, "seed_b": 40, "steps": 6, "truncation": 0.8}
        r = await client.post("/interpolate", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert r.headers["x-model"] == "tiny-a"
        assert r.headers["content-disposition"] == 'inline; filename="strip-3-40-6.png"'
        strip = np.asarray(Image.open(io.BytesIO(r.content)))
        assert strip.shape == (32, 6 * 30 + 2)
        tiles = [strip[2:30, 2 + 30 * i : 30 + 30 * i] for i in range(6)]
        for seed, tile in ((3, tiles[0]), (40, tiles[-1])):
            g = await client.post("/generate", json={"seed": seed, "truncation": 0.8})
            png = base64.b64decode(g.json()["images"][0]["png"])
            expected = np.asarray(Image.open(io.BytesIO(png)))
            assert np.abs(tile.astype(int) - expected.astype(int)).max() <= 1
        assert len({t.tobytes() for t in tiles}) == 6  # the walk moves
        # Through the batcher: counted as generated images, kind "interpolate".
        assert registry.get_sample_value("gan_images_generated_total", {"model": "tiny-a"}) == 8
        assert (
            registry.get_sample_value(
                "gan_batch_size_count", {"model": "tiny-a", "kind": "interpolate"}
            )
            == 1
        )

    serve(tiny_models_dir, scenario)


def test_animations(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        base = {"seed_a": 1, "seed_b": 2, "steps": 5}
        r = await client.post("/interpolate", json={**base, "format": "gif", "frame_ms": 120})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/gif"
        image = Image.open(io.BytesIO(r.content))
        assert (image.size, image.n_frames, image.info["duration"]) == ((28, 28), 8, 120)
        frames = _frames(r.content)
        np.testing.assert_array_equal(frames[1], frames[7])  # A B C D E D C B
        np.testing.assert_array_equal(frames[3], frames[5])

        r = await client.post(
            "/interpolate",
            json={**base, "format": "webp", "bounce": False, "scale": 3, "model": "tiny-b"},
        )
        assert r.status_code == 200, r.text
        assert (r.headers["content-type"], r.headers["x-model"]) == ("image/webp", "tiny-b")
        image = Image.open(io.BytesIO(r.content))
        assert (image.format, image.size, image.n_frames) == ("WEBP", (96, 96), 5)
        first = np.asarray(image.convert("RGB"))
        assert (first[0:3, 0:3] == first[0, 0]).all()  # nearest-neighbour 3x pixels

    serve(tiny_models_dir, scenario)


def test_route_errors_are_json(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post("/interpolate", json={"seed_a": 1, "seed_b": 2, "steps": 9})
        assert r.status_code == 400
        assert r.json() == {
            "error": "steps must be in [2, 8], got 9",
            "reason": "invalid_field",
            "field": "steps",
        }
        r = await client.post("/interpolate", json={"seed_a": 1, "seed_b": 2, "model": "zz"})
        assert (r.status_code, r.json()["reason"], r.json()["field"]) == (
            404,
            "unknown_model",
            "model",
        )
        r = await client.post("/interpolate", content=b"x" * (65 * 1024))
        assert (r.status_code, r.json()["reason"]) == (413, "body_too_large")
        r = await client.get("/interpolate")
        assert (r.status_code, r.json()["reason"]) == (405, "method_not_allowed")
        errors = registry.get_sample_value(
            "gan_request_errors_total", {"endpoint": "interpolate", "reason": "invalid_field"}
        )
        assert errors == 1

    serve(tiny_models_dir, scenario, n_max=8)


def test_ui_files_are_served(tiny_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.get("/ui")
        assert (r.status_code, r.headers["location"]) == (307, "/ui/")
        r = await client.get("/ui/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-cache"
        for asset in ("app.js", "style.css", "theme.js", "favicon.svg"):
            assert f'"{asset}"' in r.text
            assert (await client.get(f"/ui/{asset}")).status_code == 200
        # Nothing from elsewhere: no absolute http(s) URLs in what the page loads.
        for name in ("index.html", "app.js", "style.css", "theme.js"):
            text = (await client.get(f"/ui/{name}")).text
            assert "http://" not in text and "https://" not in text, name
        r = await client.get("/ui/missing.js")
        assert (r.status_code, r.json()["reason"]) == (404, "not_found")

    serve(tiny_models_dir, scenario)


def test_render_stops_when_its_request_is_cancelled() -> None:
    import threading

    from service.interpolate import RenderCancelled, render

    pixels = np.zeros((64, 8, 8, 1), dtype=np.uint8)
    gif = InterpolateParams(1, 2, 64, None, 1.0, "gif")
    cancelled = threading.Event()
    cancelled.set()
    for fmt in ("png", "gif", "webp"):
        with pytest.raises(RenderCancelled):
            render(pixels, InterpolateParams(1, 2, 64, None, 1.0, fmt), cancelled)
    # between GIF frames: set by the event loop while the thread encodes
    frames_seen = []

    class Flag(threading.Event):
        def is_set(self) -> bool:
            frames_seen.append(1)
            return len(frames_seen) > 5

    with pytest.raises(RenderCancelled):
        render(pixels, gif, Flag())
    assert len(frames_seen) == 6
    assert render(pixels, gif).startswith(b"GIF89a")
