"""The v2 tensor codecs (service/oip_tensors.py): JSON and binary requests and answers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from service.oip_tensors import (
    OutputTensor,
    TensorError,
    decode_request,
    decode_response,
    encode_response,
    parse_header_length,
)


def _json(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary(tensors: list[tuple[str, str, np.ndarray]], **extra: Any) -> tuple[bytes, int]:
    """A binary request the way tritonclient builds one: header JSON, then raw bytes."""
    inputs = [
        {
            "name": name,
            "datatype": datatype,
            "shape": list(array.shape),
            "parameters": {"binary_data_size": array.nbytes},
        }
        for name, datatype, array in tensors
    ]
    header = json.dumps({"inputs": inputs, **extra}).encode()
    return header + b"".join(a.tobytes() for _, _, a in tensors), len(header)


def test_json_inputs_flat_and_nested() -> None:
    body = _json(
        [
            {"name": "seed", "datatype": "UINT64", "shape": [3], "data": [0, 7, 2**32 - 1]},
            {"name": "z", "datatype": "FP32", "shape": [2, 2], "data": [[0.5, -1], [2, 3.25]]},
        ],
        id="req-1",
        outputs=[{"name": "images", "parameters": {"binary_data": True}}],
    )
    request = decode_request(body)
    seed = request.inputs["seed"]
    assert seed.array.dtype == np.uint64
    assert seed.array.tolist() == [0, 7, 2**32 - 1]
    z = request.inputs["z"].array
    assert z.dtype == np.float32
    assert z.shape == (2, 2)
    assert z.tolist() == [[0.5, -1.0], [2.0, 3.25]]
    assert request.request_id == "req-1"
    assert request.outputs is not None
    assert [(o.name, o.binary) for o in request.outputs] == [("images", True)]
    assert request.binary_outputs is False


def test_binary_inputs_round_trip_every_byte() -> None:
    seeds = np.array([5, 6, 2**40], dtype=np.uint64)
    images = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    trunc = np.array([0.5], dtype=np.float32)
    body, length = _binary(
        [("seed", "UINT64", seeds), ("images", "UINT8", images), ("truncation", "FP32", trunc)],
        parameters={"binary_data_output": True},
    )
    request = decode_request(body, length)
    np.testing.assert_array_equal(request.inputs["seed"].array, seeds)
    np.testing.assert_array_equal(request.inputs["images"].array, images)
    np.testing.assert_array_equal(request.inputs["truncation"].array, trunc)
    assert request.binary_outputs is True
    assert request.outputs is None


def test_big_endian_bytes_are_not_what_the_wire_means() -> None:
    # The wire is little-endian: 1 as big-endian bytes is 2**56 here.
    value = np.array([1], dtype=">u8")
    body, length = _binary([("seed", "UINT64", value)])
    assert decode_request(body, length).inputs["seed"].array.tolist() == [2**56]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "s", "datatype": "UINT8", "shape": [1], "data": [256]}, "in [0, 255]"),
        ({"name": "s", "datatype": "UINT64", "shape": [1], "data": [-1]}, "in [0,"),
        ({"name": "s", "datatype": "INT64", "shape": [1], "data": [1.5]}, "must be integers"),
        ({"name": "s", "datatype": "INT64", "shape": [1], "data": ["1"]}, "must be integers"),
        ({"name": "s", "datatype": "FP32", "shape": [1], "data": ["x"]}, "must be numbers"),
        ({"name": "s", "datatype": "FP32", "shape": [1], "data": [1e39]}, "out of FP32 range"),
        ({"name": "s", "datatype": "BOOL", "shape": [1], "data": [1]}, "true or false"),
        ({"name": "s", "datatype": "INT64", "shape": [3], "data": [1, 2]}, "needs 3 values"),
        ({"name": "s", "datatype": "INT64", "shape": [2], "data": [[1], [2, 3]]}, "ragged"),
        ({"name": "s", "datatype": "BYTES", "shape": [1], "data": ["a"]}, "not supported"),
        ({"name": "s", "datatype": "INT64", "shape": [-1], "data": [1]}, "non-negative"),
        ({"name": "s", "datatype": "INT64", "shape": "1", "data": [1]}, "shape must be"),
        ({"name": "s", "datatype": "INT64", "shape": [1]}, "no data"),
        ({"datatype": "INT64", "shape": [1], "data": [1]}, "name must be"),
    ],
)
def test_bad_json_tensors_are_refused(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(TensorError, match=message.replace("[", r"\[").replace("(", r"\(")):
        decode_request(_json([tensor]))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"inputs": [{"name": "s", "datatype": "FP32", "shape": [1], "data": [NaN]}]}', "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]},'
            b' {"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}]}',
            "given twice",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}], "id": 5}',
            "id must be a string",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}],'
            b' "outputs": [{"name": "o", "parameters": {"classification": 2}}]}',
            "classification",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}],'
            b' "parameters": {"binary_data_output": "yes"}}',
            "binary_data_output",
        ),
    ],
)
def test_bad_requests_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(TensorError, match=message):
        decode_request(body)


def test_binary_sizes_must_add_up() -> None:
    seeds = np.array([1, 2], dtype=np.uint64)
    body, length = _binary([("seed", "UINT64", seeds)])
    with pytest.raises(TensorError, match="not claimed"):
        decode_request(body + b"\0", length)
    with pytest.raises(TensorError, match="binary data ends"):
        decode_request(body[:-1], length)
    with pytest.raises(TensorError, match="does not fit"):
        decode_request(body, len(body) + 1)
    header = json.loads(body[:length])
    header["inputs"][0]["parameters"]["binary_data_size"] = 15
    wrong = json.dumps(header).encode()
    with pytest.raises(TensorError, match="is 16 bytes, binary_data_size says 15"):
        decode_request(wrong + seeds.tobytes()[:15], len(wrong))
    nan = np.array([np.nan], dtype=np.float32)
    body, length = _binary([("z", "FP32", nan)])
    with pytest.raises(TensorError, match="non-finite"):
        decode_request(body, length)


def test_header_length_header() -> None:
    assert parse_header_length(None) is None
    assert parse_header_length(" 42 ") == 42
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(TensorError):
            parse_header_length(bad)


def test_answers_json_and_binary_round_trip() -> None:
    images = np.arange(2 * 3 * 3 * 1, dtype=np.uint8).reshape(2, 3, 3, 1)
    realness = np.array([0.25, 0.75], dtype=np.float64)  # given float64, sent as FP32
    outputs = [
        OutputTensor("images", "UINT8", images, binary=True),
        OutputTensor("realness", "FP32", realness, binary=False),
    ]
    body, length = encode_response("tiny-a", "1", outputs, request_id="x")
    assert length is not None
    header = json.loads(body[:length])
    assert header["model_name"] == "tiny-a"
    assert header["id"] == "x"
    assert header["outputs"][0] == {
        "name": "images",
        "datatype": "UINT8",
        "shape": [2, 3, 3, 1],
        "parameters": {"binary_data_size": images.nbytes},
    }
    assert header["outputs"][1]["data"] == [0.25, 0.75]
    assert body[length:] == images.tobytes()
    decoded = decode_response(body, length)
    np.testing.assert_array_equal(decoded["images"], images)
    np.testing.assert_array_equal(decoded["realness"], realness.astype(np.float32))
    body, length = encode_response("m", "1", [outputs[1]])
    assert length is None
    assert "id" not in json.loads(body)
