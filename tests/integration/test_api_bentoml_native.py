"""The API the BentoML way, against a real ``bentoml serve``: BentoML's own clients call every
route as a method, its schema and Swagger document list them, ``bentoml_service_request_*``
counts them, and the fast path answers byte for byte what the declared path answers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest
from bentoml.exceptions import BentoMLException
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from server_process import Server, launch, wait_ready

pytestmark = pytest.mark.integration

ROUTES = {"generate", "generate_grid", "interpolate", "score", "models"}


@pytest.fixture(scope="module")
def slow_server(
    conditional_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The same models with GAN_FAST_PATH=false: API routes through BentoML's middlewares."""
    srv = launch(
        conditional_models_dir,
        tmp_path_factory.mktemp("bentoml_home_slow"),
        {"GAN_FAST_PATH": "false"},
    )
    try:
        wait_ready(srv)
        yield srv
    finally:
        srv.stop()


def _png(color: int = 120, size: int = 28) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _raw_images(url: str, body: dict[str, Any]) -> list[bytes]:
    r = httpx.post(f"{url}/generate", json=body, timeout=30)
    r.raise_for_status()
    return [base64.b64decode(i["png"]) for i in r.json()["images"]]


def test_sync_client_calls_every_route_as_a_method(server: Server, tmp_path: Path) -> None:
    upload = tmp_path / "digit.png"
    upload.write_bytes(_png())
    with bentoml.SyncHTTPClient(server.url) as client:
        assert set(client.endpoints) >= ROUTES
        got = client.generate(seed=5, n=3)
        assert [i["seed"] for i in got["images"]] == [5, 6, 7]
        assert [base64.b64decode(i["png"]) for i in got["images"]] == _raw_images(
            server.url, {"seed": 5, "n": 3}
        )
        conditional = client.generate(seed=5, n=2, model="tiny-c", **{"class": "1"})
        assert [base64.b64decode(i["png"]) for i in conditional["images"]] == _raw_images(
            server.url, {"seed": 5, "n": 2, "model": "tiny-c", "class": 1}
        )

        grid = client.generate_grid(seed=1, n=4, columns=2)
        raw_grid = httpx.post(
            f"{server.url}/generate_grid", json={"seed": 1, "n": 4, "columns": 2}
        ).content
        assert isinstance(grid, Image.Image)
        assert grid.tobytes() == Image.open(io.BytesIO(raw_grid)).tobytes()

        walk = client.interpolate(seed_a=1, seed_b=2, steps=3, format="gif")
        raw_walk = httpx.post(
            f"{server.url}/interpolate",
            json={"seed_a": 1, "seed_b": 2, "steps": 3, "format": "gif"},
        ).content
        assert Path(walk).read_bytes() == raw_walk

        scores = client.score(images=[upload], model="tiny-c", **{"class": 1})
        raw_scores = httpx.post(
            f"{server.url}/score",
            files=[("images", ("digit.png", upload.read_bytes(), "image/png"))],
            data={"model": "tiny-c", "class": "1"},
        ).json()
        assert scores == raw_scores

        models = client.models()
        assert models == httpx.get(f"{server.url}/models").json()
        assert models["default"] == "tiny-a"

        with pytest.raises(BentoMLException) as refused:
            client.generate(seed=1, n=10_000)
        # our JSON error contract, whatever the client
        assert json.loads(str(refused.value))["reason"] == "invalid_field"


def test_async_client(server: Server, tmp_path: Path) -> None:
    upload = tmp_path / "dark.png"
    upload.write_bytes(_png(3))

    async def main() -> None:
        async with bentoml.AsyncHTTPClient(server.url) as client:
            got = await client.generate(seed=9, n=2)
            assert [base64.b64decode(i["png"]) for i in got["images"]] == _raw_images(
                server.url, {"seed": 9, "n": 2}
            )
            scores = await client.score(images=[upload])
            assert scores["model"] == "tiny-a" and len(scores["scores"]) == 1

    asyncio.run(main())


def test_schema_and_swagger_document_list_the_api(server: Server) -> None:
    schema = httpx.get(f"{server.url}/schema.json").json()
    assert {r["name"] for r in schema["routes"]} == ROUTES
    docs = httpx.get(f"{server.url}/docs.json").json()
    for name in ROUTES:
        operation = docs["paths"][f"/{name}"]["post"]
        if name != "models":
            assert "requestBody" in operation, name
    generate = next(r for r in schema["routes"] if r["name"] == "generate")
    assert generate["input"]["properties"]["seed"]["maximum"] == 4294967295
    assert generate["input"]["required"] == ["seed"]


def _requests_total(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics").text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "bentoml_service_request":
            continue
        for sample in family.samples:
            if sample.name == "bentoml_service_request_total":
                key = (sample.labels["endpoint"], sample.labels["http_response_code"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


@pytest.mark.parametrize("which", ["fast", "slow"])
def test_bentoml_request_metrics_count_the_api(
    which: str, server: Server, slow_server: Server
) -> None:
    url = (server if which == "fast" else slow_server).url
    before = _requests_total(url)
    for seed in range(4):
        assert httpx.post(f"{url}/generate", json={"seed": seed}).status_code == 200
    assert httpx.post(f"{url}/generate", json={"seed": -1}).status_code == 400
    assert httpx.get(f"{url}/models").status_code == 200
    infer = {"inputs": [{"name": "seed", "datatype": "UINT64", "shape": [2], "data": [1, 2]}]}
    assert httpx.post(f"{url}/v2/models/tiny-a/infer", json=infer).status_code == 200
    assert httpx.post(f"{url}/v2/models/made-up-{which}/infer", json=infer).status_code == 404
    for n in range(5):  # made-up paths: never a label of their own
        assert httpx.get(f"{url}/made-up-{which}-{n}").status_code == 404

    # the fast path writes its counts every 0.5 s (bento_internals.FLUSH_S)
    def delta(after: dict[tuple[str, str], float], endpoint: str, code: str) -> float:
        return after.get((endpoint, code), 0.0) - before.get((endpoint, code), 0.0)

    deadline = time.monotonic() + 5
    after = _requests_total(url)
    expected = {
        ("/generate", "200"): 4,
        ("/generate", "400"): 1,
        ("/models", "200"): 1,
        ("/v2/models/{name}/infer", "200"): 1,
        ("/v2/models/{name}/infer", "404"): 1,
    }

    def reached(after: dict[tuple[str, str], float]) -> bool:
        return all(delta(after, *key) >= n for key, n in expected.items())

    while not reached(after) and time.monotonic() < deadline:
        time.sleep(0.1)
        after = _requests_total(url)
    assert delta(after, "/generate", "200") == 4
    assert delta(after, "/generate", "400") == 1
    assert delta(after, "/models", "200") == 1
    # /v2: one templated label, never a model name (a made-up one included)
    assert delta(after, "/v2/models/{name}/infer", "200") == 1
    assert delta(after, "/v2/models/{name}/infer", "404") == 1
    assert not any("made-up" in endpoint for endpoint, _ in after)


def _exchange(url: str, method: str, path: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    r = httpx.request(method, f"{url}{path}", timeout=30, **kwargs)
    content_type = r.headers.get("content-type", "")
    if path == "/models" and r.status_code == 200:
        body = r.json()
        body["settings"].pop("fast_path")  # the one thing that differs, by design
        return r.status_code, content_type, body
    return r.status_code, content_type, r.content


SAME_ANSWERS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/generate", {"json": {"seed": 3, "n": 2}}),
    ("POST", "/generate", {"json": {"seed": 3, "model": "tiny-c", "class": 1}}),
    ("POST", "/generate", {"json": {"seed": 3, "model": "tiny-c", "class": "nope"}}),
    ("POST", "/generate", {"json": {"seed": -1}}),
    ("POST", "/generate", {"json": {"seed": 1, "sed": 2}}),
    ("POST", "/generate", {"json": {"seed": 1, "model": "absent"}}),
    ("POST", "/generate", {"content": b"{", "headers": {"content-type": "application/json"}}),
    ("POST", "/generate", {"content": b"[1]", "headers": {"content-type": "application/json"}}),
    ("POST", "/generate", {"json": {"seed": 1, "pad": "x" * 70_000}}),
    ("GET", "/generate", {}),
    ("POST", "/generate_grid", {"json": {"seed": 1, "n": 5, "columns": 2}}),
    ("POST", "/interpolate", {"json": {"seed_a": 1, "seed_b": 9, "steps": 4, "format": "webp"}}),
    ("POST", "/interpolate", {"json": {"seed_a": 1, "seed_b": 9, "format": "bmp"}}),
    (
        "POST",
        "/score",
        {"files": [("images", ("a.png", _png(40), "image/png"))], "data": {"model": "tiny-a"}},
    ),
    ("POST", "/score", {"files": [("images", ("a.txt", b"not an image", "text/plain"))]}),
    ("POST", "/score", {"json": {"images": []}}),
    ("GET", "/models", {}),
    ("POST", "/models", {"json": {}}),
    ("GET", "/no-such-path", {}),
]


def test_fast_path_answers_exactly_the_declared_path(server: Server, slow_server: Server) -> None:
    for method, path, kwargs in SAME_ANSWERS:
        fast = _exchange(server.url, method, path, kwargs)
        slow = _exchange(slow_server.url, method, path, kwargs)
        assert fast == slow, (method, path, kwargs, fast[:2], slow[:2])
