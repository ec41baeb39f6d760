"""API fuzzing with schemathesis, from the server's own OpenAPI document (``GET /openapi.json``).

Runs the ``st`` CLI against the real server (API key on) with a fixed seed and ~50 examples per
operation: examples, coverage (boundary values of every field) and fuzzing phases, positive and
negative data. Checks: no 5xx, every status, content type, header and body as documented,
schema-invalid requests refused (4xx), schema-valid ones accepted, other methods 405 with
``Allow``, and requests without the key refused (``ignored_auth``). The hooks in st_hooks.py
give /score real images and keep ``seed + n - 1`` in range.

Longer runs: ``GAN_FUZZ_MAX_EXAMPLES=500``, or by hand with ``st run ... --max-time 600`` (which
keeps fuzzing until the time is spent; docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from integration.server_process import Server
from rel_helpers import AUTH, internal_errors, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ST = Path(sys.executable).with_name("st")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)
MAX_EXAMPLES = int(os.environ.get("GAN_FUZZ_MAX_EXAMPLES", "50"))


def _requests_served(client: httpx.Client) -> float:
    # our API routes are counted by the service itself (they skip BentoML's middlewares)
    return metric_value(client.get("/metrics").text, "gan_http_requests_total")


def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    rel_server: Server, rel_client: httpx.Client, tmp_path: Path
) -> None:
    before = _requests_served(rel_client)
    report = tmp_path / "schemathesis.json"
    command = [
        str(ST),
        "run",
        f"{rel_server.url}/openapi.json",
        "--header",
        f"Authorization: {AUTH['Authorization']}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261126",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--output-sanitize",
        "true",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "st_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    result = json.loads(report.read_text())
    cases = result["test_cases"]
    assert result["operations"]["tested"] == result["operations"]["total"] >= 4, result
    assert cases["with_failures"] == 0 and cases["errored"] == 0, cases
    assert cases["generated"] >= 200, cases  # it really fuzzed

    sent = _requests_served(rel_client) - before
    print(
        f"\nschemathesis: {cases['generated']} cases over {result['operations']['tested']} "
        f"operations, {sent:.0f} requests served, 0 failures, {result['running_time']:.1f} s"
    )
    assert internal_errors(rel_client) == 0
    assert rel_client.post("/generate", json={"seed": 1}).status_code == 200
