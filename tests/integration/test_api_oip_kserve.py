"""The Open Inference Protocol against a real ``bentoml serve``, through KServe's Python client
(``kserve.InferenceRESTClient``, protocol v2), run from a venv of its own (kserve_venv.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from kserve_venv import kserve_python
from oip_support import generated
from server_process import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECK = Path(__file__).with_name("kserve_client_check.py")


def test_kserve_client(server: Server, client: httpx.Client) -> None:
    python = kserve_python()
    run = subprocess.run(
        [str(python), str(CHECK), server.url], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["live"], report["ready"]) == (True, True)
    assert (report["model_ready"], report["unknown_ready"]) == (True, False)
    sevens = generated(client, seed=30, n=3, model="tiny-c", **{"class": 2})
    plain = generated(client, seed=30, n=3, model="tiny-b")
    for binary in (False, True):
        got = report[f"tiny-c binary={binary}"]
        assert got["dtype"] == "uint8"
        np.testing.assert_array_equal(np.array(got["images"], np.uint8), sevens)
        np.testing.assert_array_equal(
            np.array(report[f"tiny-b binary={binary}"]["images"], np.uint8), plain
        )
    bad = report["bad"]
    assert bad["status"] == 400
    assert set(bad["body"]) == {"error"}
    assert "need UINT64 or INT64" in bad["message"]
