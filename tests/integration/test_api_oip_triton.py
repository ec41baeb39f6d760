"""The Open Inference Protocol against a real ``bentoml serve``, through Triton's own HTTP client
(``tritonclient.http``), JSON and binary tensors: pixels equal /generate's for the same seeds."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from oip_support import generated
from PIL import Image
from server_process import Server, launch, wait_ready
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration


@pytest.fixture
def tc(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.url.removeprefix("http://"), concurrency=4)
    try:
        yield c
    finally:
        c.close()


def _input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_health_and_metadata(tc: triton.InferenceServerClient) -> None:
    assert tc.is_server_live()
    assert tc.is_server_ready()
    assert tc.is_model_ready("tiny-c")
    assert tc.is_model_ready("tiny-c-discriminator")
    assert not tc.is_model_ready("no-such-model")
    assert "binary_tensor_data" in tc.get_server_metadata()["extensions"]
    meta = tc.get_model_metadata("tiny-c")
    assert meta["platform"] == "onnxruntime_onnx"
    assert {i["name"] for i in meta["inputs"]} == {"seed", "z", "truncation", "class"}
    assert meta["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 16, 16, 1]}]
    config = tc.get_model_config("tiny-b-discriminator")
    assert config["input"][0]["dims"] == [32, 32, 3]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        tc.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_pixels_equal_generate(
    tc: triton.InferenceServerClient, client: httpx.Client, binary: bool
) -> None:
    seeds = np.array([40, 41, 42, 43], dtype=np.uint64)
    # Unconditional RGB, every output named.
    result = tc.infer(
        "tiny-b",
        [_input("seed", seeds, "UINT64", binary)],
        outputs=[triton.InferRequestedOutput("images", binary_data=binary)],
    )
    images = result.as_numpy("images")
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, generated(client, seed=40, n=4, model="tiny-b"))
    # Conditional, classes drawn from the seeds; no outputs named (tritonclient then asks for
    # binary ones).
    result = tc.infer("tiny-c", [_input("seed", seeds.astype(np.int64), "INT64", binary)])
    np.testing.assert_array_equal(
        result.as_numpy("images"), generated(client, seed=40, n=4, model="tiny-c")
    )
    # One class for all, and a truncation.
    result = tc.infer(
        "tiny-c",
        [
            _input("seed", seeds, "UINT64", binary),
            _input("class", np.array([1], np.int64), "INT64", binary),
            _input("truncation", np.array([0.6], np.float32), "FP32", binary),
        ],
        outputs=[triton.InferRequestedOutput("images", binary_data=binary)],
    )
    expected = generated(client, seed=40, n=4, model="tiny-c", truncation=0.6, **{"class": 1})
    np.testing.assert_array_equal(result.as_numpy("images"), expected)


def test_png_files_through_tritonclient(
    tc: triton.InferenceServerClient, client: httpx.Client
) -> None:
    """``parameters={"format": "png"}``: a BYTES output that tritonclient reads as an object
    array of files, each decoding to /generate's pixels."""
    seeds = np.array([40, 41, 42], dtype=np.uint64)
    result = tc.infer(
        "tiny-b",
        [_input("seed", seeds, "UINT64", True)],
        outputs=[triton.InferRequestedOutput("images", binary_data=True)],
        parameters={"format": "png"},
    )
    files = result.as_numpy("images")
    assert files.dtype == np.object_ and files.shape == (3,)
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files])
    np.testing.assert_array_equal(decoded, generated(client, seed=40, n=3, model="tiny-b"))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_discriminator_equals_score(
    tc: triton.InferenceServerClient, client: httpx.Client, binary: bool
) -> None:
    images = generated(client, seed=5, n=2, model="tiny-c")
    result = tc.infer(
        "tiny-c-discriminator",
        [
            _input("images", images, "UINT8", binary),
            _input("class", np.array([0, 2], np.int64), "INT64", binary),
        ],
        outputs=[
            triton.InferRequestedOutput("realness", binary_data=binary),
            triton.InferRequestedOutput("logits", binary_data=binary),
        ],
    )
    for i, klass in enumerate((0, 2)):
        v2_image = triton.InferInput("images", [1, 16, 16, 1], "UINT8")
        v2_image.set_data_from_numpy(images[i : i + 1])
        one = tc.infer(
            "tiny-c-discriminator",
            [v2_image, _input("class", np.array([klass], np.int64), "INT64", binary)],
        )
        assert one.as_numpy("realness")[0] == pytest.approx(result.as_numpy("realness")[i])
    realness = result.as_numpy("realness")
    assert realness.dtype == np.float32
    assert realness.shape == (2,)
    assert ((realness >= 0) & (realness <= 1)).all()
    assert result.as_numpy("logits").shape == (2,)


def test_errors_reach_the_client(tc: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="need UINT64 or INT64") as info:
        tc.infer("tiny-a", [_input("seed", np.array([1.0], np.float32), "FP32", True)])
    assert info.value.status() == "400"
    with pytest.raises(InferenceServerException, match="1 to 64") as info:
        tc.infer("tiny-a", [_input("seed", np.arange(65, dtype=np.uint64), "UINT64", False)])
    with pytest.raises(InferenceServerException, match="unknown model") as info:
        tc.infer("nope", [_input("seed", np.array([1], np.uint64), "UINT64", True)])
    assert info.value.status() == "404"


def test_concurrent_v2_and_generate(
    tc: triton.InferenceServerClient, client: httpx.Client, server: Server
) -> None:
    """v2 requests in flight together (tritonclient's async_infer: gevent greenlets) while
    /generate requests run from threads: every answer is still its own seeds' images."""
    expected = generated(client, seed=100, n=16)

    def plain(i: int) -> np.ndarray:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            return generated(c, seed=100 + i, n=1)[0]

    with ThreadPoolExecutor(4) as pool:
        plain_images = pool.map(plain, range(16))
        pending = [
            tc.async_infer(
                "tiny-a",
                [_input("seed", np.array([100 + i], np.uint64), "UINT64", i % 2 == 0)],
            )
            for i in range(16)
        ]
        v2_images = [p.get_result(timeout=60).as_numpy("images")[0] for p in pending]
        np.testing.assert_array_equal(np.stack(list(plain_images)), expected)
    np.testing.assert_array_equal(np.stack(v2_images), expected)


def test_served_with_the_fast_path_off(
    conditional_models_dir: Path, tmp_path: Path, client: httpx.Client
) -> None:
    """GAN_FAST_PATH=false sends the API routes through BentoML's stack; /v2 is still ours."""
    srv = launch(conditional_models_dir, tmp_path / "home", {"GAN_FAST_PATH": "false"})
    try:
        wait_ready(srv)
        c = triton.InferenceServerClient(srv.url.removeprefix("http://"))
        try:
            assert c.is_server_live()
            assert c.is_server_ready()
            result = c.infer(
                "tiny-a", [_input("seed", np.array([8, 9], np.uint64), "UINT64", True)]
            )
            np.testing.assert_array_equal(result.as_numpy("images"), generated(client, seed=8, n=2))
        finally:
            c.close()
    finally:
        srv.stop()
