"""The Open Inference Protocol routes in-process (service/oip.py, oip_models.py): metadata,
pixels equal to /generate's, scores equal to /score's, binary tensors, errors, metrics, auth."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.generated_images import generate_pixels
from fixtures.in_process import serve
from PIL import Image
from prometheus_client import CollectorRegistry

from contract.latents import SEED_MAX, latents_for_seeds
from service.oip_tensors import decode_response

INFER = "/v2/models/{}/infer"


def _infer_body(*inputs: tuple[str, str, Any], **extra: Any) -> dict[str, Any]:
    tensors = []
    for name, datatype, data in inputs:
        array = np.asarray(data)
        tensors.append(
            {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.tolist()}
        )
    return {"inputs": tensors, **extra}


async def _infer(
    client: httpx.AsyncClient, model: str, *inputs: tuple[str, str, Any], **extra: Any
) -> dict[str, np.ndarray]:
    r = await client.post(INFER.format(model), json=_infer_body(*inputs, **extra))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["model_name"] == model
    assert body["model_version"] == "1"
    return decode_response(r.content)


async def _generated(client: httpx.AsyncClient, **fields: Any) -> np.ndarray:
    """/generate's images, decoded from its PNGs, as (n, H, W, C) uint8."""
    r = await client.post("/generate", json=fields)
    assert r.status_code == 200, r.text
    return generate_pixels(r.json())


def test_server_and_model_metadata(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.get("/v2")
        assert r.status_code == 200
        assert r.json()["name"] == "gan-service"
        assert "binary_tensor_data" in r.json()["extensions"]
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}

        meta = (await client.get("/v2/models/tiny-a")).json()
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["versions"] == ["1"]
        inputs = {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]}
        assert inputs == {
            "seed": ("UINT64", [-1]),
            "z": ("FP32", [-1, 8]),
            "truncation": ("FP32", [-1]),
        }
        assert meta["outputs"] == [
            {"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}
        ]
        meta = (await client.get("/v2/models/tiny-b/versions/1")).json()
        assert meta["outputs"][0]["shape"] == [-1, 32, 32, 3]
        meta = (await client.get("/v2/models/tiny-c")).json()
        assert {"name": "class", "datatype": "INT64", "shape": [-1]} in meta["inputs"]
        meta = (await client.get("/v2/models/tiny-c-discriminator")).json()
        assert meta["inputs"][0] == {
            "name": "images",
            "datatype": "UINT8",
            "shape": [-1, 16, 16, 1],
        }
        assert [t["name"] for t in meta["outputs"]][:2] == ["logits", "realness"]

        config = (await client.get("/v2/models/tiny-c/config")).json()
        assert config["max_batch_size"] == 64
        optional = {i["name"]: i["optional"] for i in config["input"]}
        assert optional == {"seed": True, "z": True, "truncation": True, "class": True}

        r = await client.get("/v2/models/tiny-c/ready")
        assert (r.status_code, r.json()) == (200, {"name": "tiny-c", "ready": True})
        r = await client.get("/v2/models/nope/ready")
        assert r.status_code == 404
        assert set(r.json()) == {"error"}
        assert "served: tiny-a, tiny-a-discriminator" in r.json()["error"]
        r = await client.get("/v2/models/tiny-a/versions/2")
        assert (r.status_code, set(r.json())) == (404, {"error"})

    serve(conditional_models_dir, scenario)


def test_seeds_give_generates_pixels(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        expected = await _generated(client, seed=10, n=3, model="tiny-b")
        out = await _infer(client, "tiny-b", ("seed", "UINT64", [10, 11, 12]))
        assert out["images"].dtype == np.uint8
        np.testing.assert_array_equal(out["images"], expected)

        # Any seeds in any order, each its own /generate image, INT64 as well as UINT64.
        seeds = [SEED_MAX, 3, 1000]
        expected = np.concatenate(
            [await _generated(client, seed=s, n=1, model="tiny-a") for s in seeds]
        )
        out = await _infer(client, "tiny-a", ("seed", "INT64", seeds))
        np.testing.assert_array_equal(out["images"], expected)

        # An FP32 0.7 is /generate's 0.7.
        expected = await _generated(client, seed=4, n=2, truncation=0.7)
        out = await _infer(
            client, "tiny-a", ("seed", "UINT64", [4, 5]), ("truncation", "FP32", [0.7])
        )
        np.testing.assert_array_equal(out["images"], expected)
        assert not np.array_equal(out["images"], await _generated(client, seed=4, n=2))

    serve(conditional_models_dir, scenario)


def test_conditional_classes_from_seed_given_and_per_row(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        drawn = await _generated(client, seed=20, n=4, model="tiny-c")
        out = await _infer(client, "tiny-c", ("seed", "UINT64", [20, 21, 22, 23]))
        np.testing.assert_array_equal(out["images"], drawn)

        squares = await _generated(client, seed=20, n=4, model="tiny-c", **{"class": 1})
        out = await _infer(
            client, "tiny-c", ("seed", "UINT64", [20, 21, 22, 23]), ("class", "INT64", [1])
        )
        np.testing.assert_array_equal(out["images"], squares)

        sevens = await _generated(client, seed=21, n=1, model="tiny-c", **{"class": "7"})
        out = await _infer(
            client, "tiny-c", ("seed", "UINT64", [20, 21]), ("class", "INT32", [1, 2])
        )
        np.testing.assert_array_equal(out["images"], np.concatenate([squares[:1], sevens]))

    serve(conditional_models_dir, scenario)


def test_v2_and_generate_share_a_batch(tiny_models_dir: Path) -> None:
    """One ONNX Runtime call for a v2 request and a /generate request in flight together: the
    batcher holds the first rows until the batch is full (5 rows), so only sharing fills it."""

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        v2, plain = await asyncio.gather(
            client.post(INFER.format("tiny-a"), json=_infer_body(("seed", "UINT64", [50, 51, 52]))),
            client.post("/generate", json={"seed": 53, "n": 2}),
        )
        assert (v2.status_code, plain.status_code) == (200, 200)
        labels = {"model": "tiny-a", "kind": "generate"}
        assert registry.get_sample_value("gan_batch_size_count", labels) == 1
        assert registry.get_sample_value("gan_batch_size_sum", labels) == 5
        expected = await _generated(client, seed=50, n=3)
        np.testing.assert_array_equal(decode_response(v2.content)["images"], expected)

    serve(tiny_models_dir, scenario, max_batch_size=5, max_latency_ms=1000)


def test_latents_give_the_seeds_images(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        seeds = np.array([7, 8], dtype=np.uint64)
        expected = await _generated(client, seed=7, n=2, model="tiny-b")
        z = latents_for_seeds(seeds, 16)
        out = await _infer(client, "tiny-b", ("z", "FP32", z))
        np.testing.assert_array_equal(out["images"], expected)

        expected = await _generated(client, seed=7, n=2, model="tiny-c", **{"class": 2})
        out = await _infer(
            client, "tiny-c", ("z", "FP32", latents_for_seeds(seeds, 8)), ("class", "INT64", [2])
        )
        np.testing.assert_array_equal(out["images"], expected)

    serve(conditional_models_dir, scenario)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_discriminator_scores_equal_score(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        images = await _generated(client, seed=1, n=3, model="tiny-c")
        files = [("images", (f"{i}.png", _png(p), "image/png")) for i, p in enumerate(images)]
        for klass in (None, 2):
            data = {"model": "tiny-c", **({} if klass is None else {"class": str(klass)})}
            scores = (await client.post("/score", files=files, data=data)).json()["scores"]
            inputs: list[tuple[str, str, Any]] = [("images", "UINT8", images)]
            if klass is not None:
                inputs.append(("class", "INT64", [klass] * 3))
            out = await _infer(client, "tiny-c-discriminator", *inputs)
            assert out["realness"].dtype == np.float32
            np.testing.assert_allclose(
                out["realness"], [s["realness"] for s in scores], rtol=1e-6, atol=1e-7
            )
            np.testing.assert_allclose(out["logits"], [s["logit"] for s in scores], rtol=1e-6)
            if "ood" in scores[0]:
                np.testing.assert_allclose(out["ood"], [s["ood"] for s in scores], rtol=1e-6)

    serve(conditional_models_dir, scenario)


def test_binary_request_and_answer(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        seeds = np.array([3, 4, 5], dtype=np.uint64)
        header = json.dumps(
            {
                "id": "b1",
                "inputs": [
                    {
                        "name": "seed",
                        "datatype": "UINT64",
                        "shape": [3],
                        "parameters": {"binary_data_size": seeds.nbytes},
                    }
                ],
                "outputs": [{"name": "images", "parameters": {"binary_data": True}}],
            }
        ).encode()
        r = await client.post(
            INFER.format("tiny-a"),
            content=header + seeds.tobytes(),
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 200, r.text
        length = int(r.headers["inference-header-content-length"])
        meta = json.loads(r.content[:length])
        assert meta["id"] == "b1"
        assert meta["outputs"][0]["parameters"] == {"binary_data_size": 3 * 28 * 28}
        out = decode_response(r.content, length)
        np.testing.assert_array_equal(out["images"], await _generated(client, seed=3, n=3))

        # binary_data_output: every output binary when none is named.
        images = out["images"]
        body = _infer_body(("images", "UINT8", images), parameters={"binary_data_output": True})
        r = await client.post(INFER.format("tiny-a-discriminator"), json=body)
        length = int(r.headers["inference-header-content-length"])
        names = [o["name"] for o in json.loads(r.content[:length])["outputs"]]
        assert names[:2] == ["logits", "realness"]
        assert decode_response(r.content, length)["realness"].shape == (3,)

    serve(conditional_models_dir, scenario)


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("tiny-a", _infer_body(("seed", "UINT64", list(range(65)))), 400, "1 to 64 (GAN_N_MAX)"),
    ("tiny-a", _infer_body(("seed", "UINT64", [SEED_MAX + 1])), 400, "seeds must be in"),
    ("tiny-a", _infer_body(("seed", "INT64", [-1])), 400, "seeds must be in"),
    ("tiny-a", _infer_body(("seed", "FP32", [1.0])), 400, "need UINT64 or INT64"),
    ("tiny-a", _infer_body(("seed", "UINT64", [[1]])), 400, "need UINT64 or INT64"),
    (
        "tiny-a",
        _infer_body(("seed", "UINT64", [1]), ("class", "INT64", [0])),
        400,
        "not class-conditional",
    ),
    ("tiny-a", _infer_body(("seeds", "UINT64", [1])), 400, "no input 'seeds'"),
    ("tiny-a", _infer_body(("truncation", "FP32", [0.5])), 400, "exactly one of"),
    (
        "tiny-a",
        _infer_body(("seed", "UINT64", [1]), ("z", "FP32", np.zeros((1, 8)))),
        400,
        "exactly one of",
    ),
    (
        "tiny-a",
        _infer_body(("seed", "UINT64", [1, 2]), ("truncation", "FP32", [0.5] * 3)),
        400,
        "need [2] or [1]",
    ),
    (
        "tiny-a",
        _infer_body(("seed", "UINT64", [1]), ("truncation", "FP32", [1.5])),
        400,
        "in (0, 1]",
    ),
    ("tiny-a", _infer_body(("z", "FP32", np.zeros((1, 7)))), 400, "need FP32 [n, 8]"),
    (
        "tiny-a",
        _infer_body(("z", "FP32", np.zeros((1, 8))), ("truncation", "FP32", [1])),
        400,
        "scale 'z' yourself",
    ),
    ("tiny-c", _infer_body(("z", "FP32", np.zeros((1, 8)))), 400, "needs a 'class'"),
    (
        "tiny-c",
        _infer_body(("seed", "UINT64", [1]), ("class", "INT64", [3])),
        400,
        "classes 0 to 2",
    ),
    (
        "tiny-a",
        _infer_body(("seed", "UINT64", [1]), outputs=[{"name": "png"}]),
        400,
        "no output 'png'",
    ),
    (
        "tiny-a-discriminator",
        _infer_body(("images", "UINT8", np.zeros((1, 27, 28, 1), np.uint8))),
        400,
        "need UINT8 [n, 28, 28, 1]",
    ),
    (
        "tiny-a-discriminator",
        _infer_body(("images", "FP32", np.zeros((1, 28, 28, 1)))),
        400,
        "need UINT8",
    ),
    ("tiny-a-discriminator", _infer_body(("seed", "UINT64", [1])), 400, "no input 'seed'"),
    (
        "tiny-a-discriminator",
        _infer_body(("images", "UINT8", np.zeros((0, 28, 28, 1), np.uint8))),
        400,
        "batch of 0",
    ),
    ("nope", _infer_body(("seed", "UINT64", [1])), 404, "unknown model 'nope'"),
]


@pytest.mark.parametrize(("model", "body", "status", "message"), BAD)
def test_bad_inference_requests(
    conditional_models_dir: Path, model: str, body: dict[str, Any], status: int, message: str
) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post(INFER.format(model), json=body)
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error"}
        assert message in r.json()["error"]

    serve(conditional_models_dir, scenario)


def test_bad_bodies_and_bounded_metrics(conditional_models_dir: Path) -> None:
    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        r = await client.post(INFER.format("tiny-a"), content=b"{")
        assert (r.status_code, set(r.json())) == (400, {"error"})
        r = await client.post(INFER.format("tiny-a"), content=b"x" * 5000)
        assert r.status_code == 413
        assert set(r.json()) == {"error"}
        r = await client.post(
            INFER.format("tiny-a"), content=b"{}", headers={"Content-Encoding": "br"}
        )
        assert r.status_code == 415
        for i in range(20):
            await client.post(INFER.format(f"made-up-{i}"), json={})
            await client.get(f"/v2/models/made-up-{i}")
            await client.get(f"/v2/models/made-up-{i}/ready")
            await client.get(f"/v2/made-up-{i}")
        labels = {
            s.labels["endpoint"]
            for m in registry.collect()
            if m.name in ("gan_http_requests", "gan_request_errors")
            for s in m.samples
        }
        assert labels == {"v2_infer", "v2_model", "v2_model_ready", "unknown"}

    serve(conditional_models_dir, scenario, max_upload_bytes=4096)


def test_compressed_request(conditional_models_dir: Path) -> None:
    import gzip
    import zlib

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        body = json.dumps(_infer_body(("seed", "UINT64", [9]))).encode()
        expected = await _generated(client, seed=9, n=1)
        for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            r = await client.post(
                INFER.format("tiny-a"), content=data, headers={"Content-Encoding": encoding}
            )
            assert r.status_code == 200, r.text
            np.testing.assert_array_equal(decode_response(r.content)["images"], expected)
        bomb = gzip.compress(b" " * 100_000)
        r = await client.post(
            INFER.format("tiny-a"), content=bomb, headers={"Content-Encoding": "gzip"}
        )
        assert r.status_code == 413

    serve(conditional_models_dir, scenario, max_upload_bytes=4096)


def test_api_key_guards_all_but_health(conditional_models_dir: Path) -> None:
    key = "k" * 24

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 200
        for path in ("/v2", "/v2/models/tiny-a", "/v2/models/tiny-a/ready"):
            assert (await client.get(path)).status_code == 401
        body = _infer_body(("seed", "UINT64", [1]))
        assert (await client.post(INFER.format("tiny-a"), json=body)).status_code == 401
        r = await client.post(
            INFER.format("tiny-a"), json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200

    serve(conditional_models_dir, scenario, api_keys=(key,))


def test_live_follows_the_supervisor(
    conditional_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import supervisor

    async def scenario(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
        assert (await client.get("/v2/health/live")).status_code == 200
        monkeypatch.setattr(supervisor, "supervisor_alive", lambda hang_s: False)
        r = await client.get("/v2/health/live")
        assert (r.status_code, set(r.json())) == (503, {"error"})

    serve(conditional_models_dir, scenario)
