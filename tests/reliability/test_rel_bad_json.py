"""Hostile JSON bodies (beyond tests/integration/test_api_bad_input.py): oversized, deeply
nested, absurd numbers, NaN, unknown fields. Each gets a JSON 4xx naming the problem, the next
good request works, and a made-up URL cannot grow /metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from integration.server_process import Server
from rel_helpers import API_KEY, Target, internal_errors, raw_request

AUTH_LINE = f"Authorization: Bearer {API_KEY}\r\n".encode()

pytestmark = pytest.mark.integration

# (name, route, raw body, status, reason, field)
CASES: list[tuple[str, str, bytes, int, str, str | None]] = [
    ("nested arrays 50k deep", "/generate", b"[" * 50_000, 400, "bad_json", None),
    (
        "nested objects 9k deep in a field",
        "/generate",
        b'{"seed": 1, "x": ' + b'{"a":' * 9_000 + b"1" + b"}" * 9_001,
        400,
        "bad_json",
        None,
    ),
    (
        "nested 20k deep, grid",
        "/generate_grid",
        b"[" * 20_000 + b"]" * 20_000,
        400,
        "bad_json",
        None,
    ),
    (
        "integer of 5000 digits",
        "/generate",
        b'{"seed": 1' + b"0" * 5000 + b"}",
        400,
        "bad_json",
        None,
    ),
    (
        "integer of 60000 digits",
        "/generate_grid",
        b'{"seed": ' + b"9" * 60_000 + b"}",
        400,
        "bad_json",
        None,
    ),
    ("seed 2**64", "/generate", b'{"seed": 18446744073709551616}', 400, "invalid_field", "seed"),
    ("seed 10**100", "/generate", b'{"seed": 1' + b"0" * 100 + b"}", 400, "invalid_field", "seed"),
    ("seed -2**63", "/generate", b'{"seed": -9223372036854775808}', 400, "invalid_field", "seed"),
    ("seed 1e10 (a float)", "/generate", b'{"seed": 1e10}', 400, "invalid_field", "seed"),
    ("seed 1e400 (inf)", "/generate", b'{"seed": 1e400}', 400, "invalid_field", "seed"),
    ("seed true", "/generate", b'{"seed": true}', 400, "invalid_field", "seed"),
    ("seed null", "/generate", b'{"seed": null}', 400, "invalid_field", "seed"),
    ("n -1", "/generate", b'{"seed": 1, "n": -1}', 400, "invalid_field", "n"),
    (
        "n 10**30",
        "/generate",
        b'{"seed": 1, "n": 1000000000000000000000000000000}',
        400,
        "invalid_field",
        "n",
    ),
    ("n 2.0", "/generate", b'{"seed": 1, "n": 2.0}', 400, "invalid_field", "n"),
    ("seed + n overflows", "/generate", b'{"seed": 4294967295, "n": 2}', 400, "invalid_field", "n"),
    (
        "columns 10**9",
        "/generate_grid",
        b'{"seed": 1, "columns": 1000000000}',
        400,
        "invalid_field",
        "columns",
    ),
    (
        "truncation NaN",
        "/generate",
        b'{"seed": 1, "truncation": NaN}',
        400,
        "invalid_field",
        "truncation",
    ),
    (
        "truncation Infinity",
        "/generate",
        b'{"seed": 1, "truncation": Infinity}',
        400,
        "invalid_field",
        "truncation",
    ),
    (
        "truncation -Infinity",
        "/generate_grid",
        b'{"seed": 1, "truncation": -Infinity}',
        400,
        "invalid_field",
        "truncation",
    ),
    (
        "truncation 1e-400 (0.0)",
        "/generate",
        b'{"seed": 1, "truncation": 1e-400}',
        400,
        "invalid_field",
        "truncation",
    ),
    (
        "truncation -0.0",
        "/generate",
        b'{"seed": 1, "truncation": -0.0}',
        400,
        "invalid_field",
        "truncation",
    ),
    (
        "truncation a string",
        "/generate",
        b'{"seed": 1, "truncation": "0.5"}',
        400,
        "invalid_field",
        "truncation",
    ),
    ("unknown field", "/generate", b'{"seed": 1, "size": 1024}', 400, "invalid_field", "size"),
    (
        "unknown field on grid",
        "/generate_grid",
        b'{"seed": 1, "colums": 2}',
        400,
        "invalid_field",
        "colums",
    ),
    (
        "__proto__ field",
        "/generate",
        b'{"seed": 1, "__proto__": {"n": 64}}',
        400,
        "invalid_field",
        "__proto__",
    ),
    (
        "model name of 60 kB",
        "/generate",
        b'{"seed": 1, "model": "' + b"m" * 60_000 + b'"}',
        404,
        "unknown_model",
        "model",
    ),
    (
        "model with NUL and newline",
        "/generate",
        b'{"seed": 1, "model": "a\\u0000b\\nc"}',
        404,
        "unknown_model",
        "model",
    ),
    (
        "lone surrogate in model",
        "/generate",
        b'{"seed": 1, "model": "\\ud800"}',
        404,
        "unknown_model",
        "model",
    ),
    ("not UTF-8", "/generate", b'{"seed": 1, "model": "\xff\xfe"}', 400, "bad_json", None),
    ("empty body", "/generate", b"", 400, "bad_json", None),
    ("a JSON string", "/generate", b'"seed"', 400, "bad_json", None),
    ("a JSON number", "/generate", b"1", 400, "bad_json", None),
    ("JSON null", "/generate_grid", b"null", 400, "bad_json", None),
    ("trailing garbage", "/generate", b'{"seed": 1} {"seed": 2}', 400, "bad_json", None),
    # /interpolate read JSON its own way and answered these with a 500 (issue 14, defect 1)
    ("interpolate: nested 1,200 deep", "/interpolate", b"[" * 1200, 400, "bad_json", None),
    (
        "interpolate: nested objects 1,100 deep in a field",
        "/interpolate",
        b'{"seed_a": 1, "seed_b": 2, "x": ' + b'{"a":' * 1_100 + b"1" + b"}" * 1_101,
        400,
        "bad_json",
        None,
    ),
    (
        "interpolate: integer of 5,001 digits",
        "/interpolate",
        b'{"seed_a": 1, "seed_b": ' + b"9" * 5_001 + b"}",
        400,
        "bad_json",
        None,
    ),
    ("interpolate: a JSON list", "/interpolate", b"[1, 2]", 400, "bad_json", None),
    (
        "interpolate: NaN truncation",
        "/interpolate",
        b'{"seed_a": 1, "seed_b": 2, "truncation": NaN}',
        400,
        "invalid_field",
        "truncation",
    ),
]


@pytest.mark.parametrize(
    ("name", "route", "body", "status", "reason", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_json_gets_a_json_4xx(
    target: Target,
    name: str,
    route: str,
    body: bytes,
    status: int,
    reason: str,
    field: str | None,
) -> None:
    with target.client() as client:
        r = client.post(route, content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text[:300]
        assert r.headers["content-type"].startswith("application/json")
        answer = r.json()
        assert (answer["reason"], answer["field"]) == (reason, field), answer
        assert len(r.content) < 2000, "the error must not echo a huge input back"
        assert client.post("/generate", json={"seed": 3}).status_code == 200


def _endless() -> Iterator[bytes]:
    yield b'{"seed": 1, "pad": "'
    for _ in range(200):  # 12.8 MB if the server kept reading: it must stop at 64 KiB
        yield b"x" * 65_536


@pytest.mark.parametrize(
    "body",
    [b'{"seed": 1, "pad": "' + b"x" * 70_000 + b'"}', b"[" * 70_000],
    ids=["70 kB", "70 kB of brackets"],
)
def test_oversized_json_is_refused_413(rel_client: httpx.Client, body: bytes) -> None:
    r = rel_client.post("/generate", content=body)
    assert r.status_code == 413, r.text[:300]
    assert r.json()["reason"] == "body_too_large"
    assert rel_client.post("/generate", json={"seed": 3}).status_code == 200


def _endless() -> Iterator[bytes]:
    yield b'{"seed": 1, "pad": "'
    for _ in range(200):  # 12.8 MB if the server kept reading: it stops at 64 KiB
        yield b"x" * 65_536


def test_chunked_endless_json_is_cut_off_413(rel_client: httpx.Client) -> None:
    start = time.monotonic()
    try:
        r = rel_client.post("/generate", content=_endless())
    except httpx.TransportError:
        pass  # the server answered 413 and closed while the client was still sending
    else:
        assert r.status_code == 413 and r.json()["reason"] == "body_too_large"
    assert time.monotonic() - start < 20
    assert rel_client.post("/generate", json={"seed": 3}).status_code == 200


def test_a_lying_content_length_is_refused_before_reading(rel_server: Server) -> None:
    """Content-Length: 1 TB with 2 bytes sent: 413 at once, no wait for the rest."""
    head, _ = raw_request(
        rel_server.url,
        b"POST /generate HTTP/1.1\r\nHost: x\r\n"
        + AUTH_LINE
        + b"Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n{}",
    )
    assert head.startswith(b"HTTP/1.1 413"), head


def test_made_up_urls_get_404_and_do_not_grow_our_metrics(rel_client: httpx.Client) -> None:
    """Our error counter must not gain a label value per made-up URL (the whole of /metrics:
    test_rel_metrics_bounded.py)."""
    before = _our_error_series(rel_client)
    for _ in range(20):
        r = rel_client.get(f"/{uuid.uuid4().hex}")
        assert r.status_code == 404 and r.json()["reason"] == "not_found"
        r = rel_client.get(f"/ui/{uuid.uuid4().hex}")
        assert r.status_code == 404 and r.json()["reason"] == "not_found"
    assert _our_error_series(rel_client) - before <= 1
    assert rel_client.post("/generate", json={"seed": 3}).status_code == 200


def _our_error_series(client: httpx.Client) -> int:
    text = client.get("/metrics").text
    return sum(1 for line in text.splitlines() if line.startswith("gan_request_errors_total{"))


def test_no_json_ever_caused_an_internal_error(rel_client: httpx.Client) -> None:
    for body in (b"[" * 50_000, b'{"seed": 1' + b"0" * 5000 + b"}"):
        rel_client.post("/generate", content=body)
    assert internal_errors(rel_client) == 0
