"""Run by KServe's own venv (kserve_venv.py), not by pytest: KServe's ``InferenceRESTClient``
against the server at argv[1]; prints what it got as JSON for test_api_oip_kserve.py to judge.

Imports nothing of this repository's: it is the client side only.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


def _input(name: str, datatype: str, array: np.ndarray, binary: bool) -> InferInput:
    tensor = InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


async def main(url: str) -> dict[str, object]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    report: dict[str, object] = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, "tiny-c"),
        "unknown_ready": await client.is_model_ready(url, "no-such-model"),
    }
    seeds = np.array([30, 31, 32], dtype=np.uint64)
    for binary in (False, True):
        outputs = [RequestedOutput("images", {"binary_data": binary})]
        request = InferRequest(
            "tiny-c",
            [
                _input("seed", "UINT64", seeds, binary),
                _input("class", "INT64", np.array([2], np.int64), binary),
            ],
            request_outputs=outputs,
        )
        result = await client.infer(url, request, model_name="tiny-c")
        images = result.outputs[0].as_numpy()
        report[f"tiny-c binary={binary}"] = {"dtype": str(images.dtype), "images": images.tolist()}
        request = InferRequest("tiny-b", [_input("seed", "UINT64", seeds, binary)])
        images = (await client.infer(url, request, model_name="tiny-b")).outputs[0].as_numpy()
        report[f"tiny-b binary={binary}"] = {"dtype": str(images.dtype), "images": images.tolist()}
    bad = InferRequest("tiny-a", [_input("seed", "FP32", np.array([1.0], np.float32), False)])
    try:
        await client.infer(url, bad, model_name="tiny-a")
        report["bad"] = "accepted"
    except httpx.HTTPStatusError as exc:
        report["bad"] = {
            "status": exc.response.status_code,
            "body": exc.response.json(),
            "message": str(exc),
        }
    await client.close()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
