"""Open Inference Protocol (KServe v2) tensors on the wire: JSON, and Triton's binary extension.

No HTTP and no models here (``service/oip.py`` has the routes, ``oip_models.py`` the meaning of
each tensor), so the codecs are tested byte for byte on their own.

- JSON: ``{"name", "datatype", "shape", "data"}``, ``data`` row-major, flat or nested, checked
  against the shape and the datatype's range: a float in an integer tensor, a value out of range
  or NaN is a 400, never silently rounded, wrapped or passed on.
- Binary (``binary_tensor_data``): the body is the JSON header (its length in the
  ``Inference-Header-Content-Length`` header) followed by the raw little-endian bytes of each
  input whose ``parameters`` say ``binary_data_size``, in input order; every byte must be used.
  The answer is built the same way for the outputs asked in binary (an output's
  ``parameters.binary_data``, else the request's ``parameters.binary_data_output``).
- BYTES: only as an output (encoded images, ``oip_models.py``'s ``format`` parameter), no
  input of ours takes strings. In binary, each element is its 4-byte little-endian length and
  its bytes (Triton's layout, what ``tritonclient`` reads); in JSON, each element is the
  base64 of its bytes (JSON strings cannot hold arbitrary bytes).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEADER_LENGTH = "inference-header-content-length"

# Little-endian on the wire whatever the host (Triton's binary tensor data is).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
# Encoded images (outputs only: not in DATATYPES, so no request may send one).
BYTES = "BYTES"
MAX_DIMS = 8
MAX_INPUTS = 16


class TensorError(ValueError):
    """The request's tensors are malformed: a 400 whose message names the tensor."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray  # shaped as declared, in the datatype's native numpy dtype


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: the request's default (binary_data_output)


@dataclass(frozen=True)
class InferRequest:
    inputs: dict[str, Tensor]
    outputs: tuple[RequestedOutput, ...] | None  # None: every output
    request_id: str | None = None
    binary_outputs: bool = False  # parameters.binary_data_output
    parameters: Mapping[str, Any] = field(default_factory=dict)


def _reject_constant(token: str) -> float:
    raise TensorError(f"{token} is not a JSON number (send finite numbers)")


def _loads(data: bytes | str) -> Any:
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except TensorError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise TensorError(f"the request is not valid JSON ({exc})") from None
    except RecursionError:
        raise TensorError("the request's JSON is nested too deeply") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TensorError(f"{what} must be a JSON object")
    return value


def _parameters(value: Any, what: str) -> dict[str, Any]:
    return {} if value is None else _object(value, f"{what} parameters")


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
    ):
        raise TensorError(
            f"input {name!r}: shape must be a list of at most {MAX_DIMS} non-negative integers"
        )
    return tuple(value)


def _from_json_data(data: Any, name: str, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = DATATYPES[datatype]
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):
        raise TensorError(f"input {name!r}: data is ragged or not numbers") from None
    count = math.prod(shape)
    if raw.size != count:
        raise TensorError(
            f"input {name!r}: shape {list(shape)} needs {count} values, data has {raw.size}"
        )
    if raw.size == 0:
        return np.zeros(shape, dtype=dtype.newbyteorder("="))
    kind = raw.dtype.kind
    if dtype.kind == "b":
        if kind != "b":
            raise TensorError(f"input {name!r}: BOOL data must be true or false")
    elif dtype.kind in "iu":
        if kind not in "iu":
            raise TensorError(f"input {name!r}: {datatype} data must be integers")
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise TensorError(
                f"input {name!r}: {datatype} values must be in [{info.min}, {info.max}]"
            )
    elif kind not in "iuf":
        raise TensorError(f"input {name!r}: {datatype} data must be numbers")
    with np.errstate(over="ignore"):  # overflow to infinity is refused just below
        array = raw.astype(dtype.newbyteorder("="))
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError(f"input {name!r}: values out of {datatype} range")
    return array.reshape(shape)


def _header(body: bytes, header_length: int | None) -> tuple[Any, bytes]:
    if header_length is None:
        return _loads(body), b""
    if not 0 < header_length <= len(body):
        raise TensorError(
            f"Inference-Header-Content-Length {header_length} does not fit a body of "
            f"{len(body)} bytes"
        )
    return _loads(body[:header_length]), body[header_length:]


def parse_header_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise TensorError("Inference-Header-Content-Length must be a byte count")
    return int(value)


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """An inference request body -> its tensors; raises ``TensorError``."""
    header, binary = _header(body, header_length)
    request = _object(header, "the request")
    parameters = _parameters(request.get("parameters"), "request")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError("id must be a string")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise TensorError("inputs must be a non-empty list of tensors")
    if len(raw_inputs) > MAX_INPUTS:
        raise TensorError(f"at most {MAX_INPUTS} inputs")
    inputs: dict[str, Tensor] = {}
    offset = 0
    for position, raw in enumerate(raw_inputs):
        item = _object(raw, f"inputs[{position}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise TensorError(f"inputs[{position}]: name must be a non-empty string")
        if name in inputs:
            raise TensorError(f"input {name!r} is given twice")
        datatype = item.get("datatype")
        if datatype not in DATATYPES:
            shown = json.dumps(datatype)[:40]
            raise TensorError(
                f"input {name!r}: datatype {shown} is not supported; use one of "
                + ", ".join(DATATYPES)
            )
        shape = _shape(item.get("shape"), name)
        size = _parameters(item.get("parameters"), f"input {name!r}").get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise TensorError(f"input {name!r}: both data and binary_data_size given")
            array, offset = _from_binary(binary, offset, size, name, datatype, shape)
        elif "data" in item:
            array = _from_json_data(item["data"], name, datatype, shape)
        else:
            raise TensorError(f"input {name!r}: no data (nor binary_data_size)")
        inputs[name] = Tensor(name, datatype, array)
    if offset != len(binary):
        raise TensorError(
            f"{len(binary) - offset} bytes of binary data after the header are not claimed "
            "by any input's binary_data_size"
        )
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise TensorError("parameters.binary_data_output must be true or false")
    return InferRequest(
        inputs, _requested_outputs(request.get("outputs")), request_id, binary_default, parameters
    )


def _from_binary(
    binary: bytes, offset: int, size: Any, name: str, datatype: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, int]:
    dtype = DATATYPES[datatype]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TensorError(f"input {name!r}: binary_data_size must be a non-negative integer")
    wanted = math.prod(shape) * dtype.itemsize
    if size != wanted:
        raise TensorError(
            f"input {name!r}: shape {list(shape)} of {datatype} is {wanted} bytes, "
            f"binary_data_size says {size}"
        )
    end = offset + size
    if end > len(binary):
        raise TensorError(
            f"input {name!r}: binary data ends after {len(binary)} bytes, "
            f"{end} needed up to this input"
        )
    array = np.frombuffer(binary, dtype=dtype, count=math.prod(shape), offset=offset)
    array = array.astype(dtype.newbyteorder("="), copy=False).reshape(shape)
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError(f"input {name!r}: non-finite values (NaN or infinity)")
    if dtype.kind == "b" and array.view(np.uint8).max(initial=0) > 1:
        raise TensorError(f"input {name!r}: BOOL bytes must be 0 or 1")
    return array, end


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise TensorError("outputs must be a list")
    wanted: list[RequestedOutput] = []
    for position, raw in enumerate(value):
        item = _object(raw, f"outputs[{position}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise TensorError(f"outputs[{position}]: name must be a non-empty string")
        parameters = _parameters(item.get("parameters"), f"output {name!r}")
        if parameters.get("classification"):
            raise TensorError(f"output {name!r}: the classification extension is not supported")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise TensorError(f"output {name!r}: binary_data must be true or false")
        wanted.append(RequestedOutput(name, binary))
    return tuple(wanted)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray
    binary: bool


def encode_response(
    model_name: str,
    model_version: str,
    outputs: Sequence[OutputTensor],
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """The answer's body, and the JSON header's length when binary data follows it."""
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        header["id"] = request_id
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        if out.datatype == BYTES:
            entry, blob = _bytes_tensor(out)
            tensors.append(entry)
            if blob is not None:
                blobs.append(blob)
            continue
        array = np.ascontiguousarray(out.array, dtype=DATATYPES[out.datatype])
        tensor: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(array.shape),
        }
        if out.binary:
            blob = array.tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    header["outputs"] = tensors
    encoded = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return encoded, None
    return b"".join([encoded, *blobs]), len(encoded)


def _bytes_tensor(out: OutputTensor) -> tuple[dict[str, Any], bytes | None]:
    """A BYTES output (an object array of ``bytes``): its header entry, and its binary blob
    when asked in binary."""
    items = [bytes(item) for item in out.array.ravel()]
    tensor: dict[str, Any] = {"name": out.name, "datatype": BYTES, "shape": list(out.array.shape)}
    if not out.binary:
        tensor["data"] = [base64.b64encode(item).decode("ascii") for item in items]
        return tensor, None
    blob = b"".join(struct.pack("<I", len(item)) + item for item in items)
    tensor["parameters"] = {"binary_data_size": len(blob)}
    return tensor, blob


def _split_bytes(blob: bytes, count: int) -> list[bytes]:
    items, offset = [], 0
    for _ in range(count):
        (length,) = struct.unpack_from("<I", blob, offset)
        items.append(blob[offset + 4 : offset + 4 + length])
        offset += 4 + length
    if offset != len(blob):
        raise ValueError(f"BYTES data of {len(blob)} bytes holds more than {count} elements")
    return items


def decode_response(body: bytes, header_length: int | None = None) -> dict[str, np.ndarray]:
    """An answer's outputs by name (the inverse of ``encode_response``; for tests and clients)."""
    header, binary = _header(body, header_length)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for out in header["outputs"]:
        shape = tuple(out["shape"])
        size = (out.get("parameters") or {}).get("binary_data_size")
        if out["datatype"] == BYTES:
            count = math.prod(shape)
            if size is None:
                items = [base64.b64decode(item) for item in out["data"]]
            else:
                items = _split_bytes(binary[offset : offset + size], count)
                offset += size
            array = np.empty(count, dtype=object)
            array[:] = items
            arrays[out["name"]] = array.reshape(shape)
            continue
        dtype = DATATYPES[out["datatype"]]
        if size is None:
            arrays[out["name"]] = np.asarray(out["data"], dtype=dtype).reshape(shape)
            continue
        arrays[out["name"]] = np.frombuffer(binary, dtype, math.prod(shape), offset).reshape(shape)
        offset += size
    return arrays
