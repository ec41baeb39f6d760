"""Smoke tests of the benchmark scripts (bench/): seconds, no TorchServe, no BentoML server.

They check that the scripts still run against the service code they import, and that the parts
that turn tool output into figures (wrk's JSON line, the multipart body, py-spy stacks, the
report's ratios and target checks) do what BENCHMARKS.md relies on. The wrk round trip runs
only where wrk is installed (apt-get install wrk), against a stdlib server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contract.manifest import read_manifest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import formats  # noqa: E402
import harness  # noqa: E402
import inproc  # noqa: E402
import profile_summary  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402


def test_formats_bench_runs_on_a_tiny_model(tiny_models_dir: Path) -> None:
    folder = tiny_models_dir / "tiny-a"
    generate = formats.generate_cells(folder, [1, 9], reps=2, threads=1)
    assert set(generate) == {"1", "9"}
    assert all(set(cell) == {"numpy_rule", "graph_rule"} for cell in generate.values())
    assert all(v > 0 for cell in generate.values() for v in cell.values())
    assert read_manifest(folder).generator.uint8_output is None  # converted a copy only
    encode = formats.encode_cells(folder, [1, 2], reps=2, threads=1)
    assert set(encode) == {"png", "webp", "jpeg", "npy"}
    assert set(encode["png"]) == {"1_threads", "2_threads"}


def test_inproc_ceiling_runs_on_a_tiny_model(tiny_models_dir: Path) -> None:
    result = inproc.run(
        tiny_models_dir / "tiny-a",
        batches=(8,),
        secs=0.2,
        stages=("ort", "png_b64"),
        log=lambda _: None,
    )
    rows = result["rows"]
    assert isinstance(rows, list)
    gen = [r for r in rows if r["graph"] == "generator"]
    disc = [r for r in rows if r["graph"] == "discriminator"]
    assert gen[0]["batch"] == 8 and gen[0]["ort"] > 0 and gen[0]["png_b64"] > 0
    assert disc[0]["ort"] > 0 and disc[0]["decode"] > 0
    assert inproc.ceiling(result, batch=8) == gen[0]["png_b64"]
    assert inproc.ceiling(result, batch=64) is None


WRK_STDOUT = """Running 2s test @ http://127.0.0.1:3000/generate
  2 threads and 8 connections
  4000 requests in 2.00s, 4.8MB read
Requests/sec:   2000.00
{"req_per_s": 2000.00, "img_per_s": 32000.00, "p50_ms": 3.100, "p95_ms": 5.000, "p99_ms": 7.250, "mean_ms": 3.400, "max_ms": 9.000, "errors": 0, "non2xx": 0, "socket_errors": 0, "requests": 4000, "ok": 4000, "seconds": 2.000, "n": 16, "bytes": 5000000}
"""


def test_wrk_output_parsing() -> None:
    parsed = harness.parse_wrk_output(WRK_STDOUT)
    assert parsed is not None
    assert parsed["img_per_s"] == 32000.0 and parsed["p99_ms"] == 7.25 and parsed["n"] == 16
    assert harness.parse_wrk_output("wrk: connection refused\n") is None


def test_loopback_only() -> None:
    assert harness.loopback("http://127.0.0.1:3000/generate")
    with pytest.raises(SystemExit):
        harness.loopback("http://example.com/generate")


def test_multipart_body_is_what_the_service_parses() -> None:
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartParser

    body = harness.multipart_body([("a.png", b"\x89PNG one"), ("b.png", b"\x89PNG two")])
    headers = Headers({"content-type": "multipart/form-data; boundary=benchBOUNDARY7f3a"})

    async def stream() -> object:
        yield body

    async def parse() -> list[tuple[str | None, bytes]]:
        form = await MultiPartParser(headers, stream()).parse()
        files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
        return [(f.filename, await f.read()) for f in files]

    assert asyncio.run(parse()) == [("a.png", b"\x89PNG one"), ("b.png", b"\x89PNG two")]


def test_wrk_lua_scripts_are_valid_lua_for_wrk() -> None:
    for name in ("generate.lua", "score.lua", "get.lua"):
        text = (harness.WRK_DIR / name).read_text()
        assert "function done(" in text and '"p99_ms"' in text and '"img_per_s"' in text


def _png_b64() -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (28, 28), 7).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


PNG_B64 = _png_b64()


class _Handler(BaseHTTPRequestHandler):
    """/generate, or a KServe v2 infer endpoint (Triton's answer shape) when the body has
    ``inputs``; records each request's seed and n."""

    seeds: list[dict[str, int]] = []  # noqa: RUF012
    short_by = 0  # answer this many images fewer than asked

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "inputs" in body:
            values = {x["name"]: x["data"][0] for x in body["inputs"]}
            assert all(x["datatype"] == "INT64" and x["shape"] == [1, 1] for x in body["inputs"])
            _Handler.seeds.append({"seed": values["seed"], "n": values["n"], "v2": 1})
            k = values["n"] - _Handler.short_by
            answer = {
                "model_name": "gan",
                "outputs": [
                    {"name": "png", "datatype": "BYTES", "shape": [1, k], "data": [PNG_B64] * k}
                ],
            }
        else:
            _Handler.seeds.append(body)
            k = body["n"] - _Handler.short_by
            answer = {"images": [{"seed": body["seed"], "png": PNG_B64}] * k}
        out = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    _Handler.short_by = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/generate"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_wrk_round_trip_with_generate_lua(echo_server: str) -> None:
    _Handler.seeds.clear()
    result = harness.run_wrk(echo_server, c=2, n=4, seconds=1, warmup=0)
    assert result["errors"] == 0 and result["requests"] > 0
    assert result["img_per_s"] == pytest.approx(4 * result["req_per_s"], rel=0.01)
    assert result["p50_ms"] <= result["p99_ms"]
    assert "client_cpu_cores" in result and result["concurrency"] == 2
    seeds = [b["seed"] for b in _Handler.seeds]
    assert len(set(seeds)) == len(seeds), "every request has its own seeds"
    assert all(b["n"] == 4 for b in _Handler.seeds)


def test_profile_summary_attributes_components(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (x.py:1);run (uvicorn/server.py:1);__call__ (opentelemetry/asgi/__init__.py:9) 30\n"
        "main (x.py:1);_worker (concurrent/futures/thread.py:1);run (onnxruntime/capi/s.py:4) 60\n"
        "main (x.py:1);generate (/w/service/http_app.py:3);encode_png (/w/service/imaging.py:5) 10\n"
    )
    summary = profile_summary.summarise(profile_summary.parse(raw))
    assert summary["samples"] == 100
    assert summary["self"]["onnxruntime run"] == 0.6
    assert summary["self"]["opentelemetry"] == 0.3
    assert summary["inclusive"]["service: http_app"] == 0.1


def _row(phase: str, system: str, c: int, n: int, rnd: int, ips: float, p99: float) -> str:
    return json.dumps(
        {
            "phase": phase, "system": system, "c": c, "n": n, "round": rnd,
            "img_per_s": ips, "req_per_s": ips / n, "p50_ms": p99 / 3, "p95_ms": p99 / 2,
            "p99_ms": p99, "errors": 0, "server_cpu_cores": 1.0, "server_rss_mb": 200.0,
            "client_cpu_cores": 0.1, "load_average": [1.0, 1.0, 1.0],
        }
    )  # fmt: skip


def test_report_ratios_are_per_round_and_targets_are_checked(tmp_path: Path) -> None:
    lines = [
        _row("load", "ours", 64, 1, 0, 4000, 20),
        _row("load", "torchserve", 64, 1, 0, 1700, 50),
        _row("load", "nobatch", 64, 1, 0, 1000, 90),
        _row("load", "ours", 64, 1, 1, 3000, 25),
        _row("load", "torchserve", 64, 1, 1, 1000, 60),
        _row("load", "nobatch", 64, 1, 1, 1500, 80),
        _row("load", "ours", 8, 16, 0, 3500, 40),
        _row("load", "torchserve", 8, 16, 0, 2000, 100),
        json.dumps(
            {"phase": "load", "system": "ceiling", "c": 8, "n": 16, "round": 0}
            | {"img_per_s": 5000.0, "load_average": [1.0, 1.0, 1.0]}
        ),
        _row("load", "ours", 1, 1, 0, 500, 4),
        _row("sweep_c", "ours", 1, 1, 0, 500, 4),
        _row("sweep_c", "torchserve", 1, 1, 0, 90, 15),
    ]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "meta.json").write_text(json.dumps({"cpus": 2, "model": "m"}))
    text = report.report(tmp_path, tmp_path / "plot.png")
    targets = json.loads((tmp_path / "targets.json").read_text())
    # per-round ratios 4000/1700 = 2.35 and 3000/1000 = 3.0: median 2.68
    assert targets["c64_n1_vs_ts"]["img_ratio"] == pytest.approx((4000 / 1700 + 3.0) / 2)
    assert targets["c64_n1_vs_ts"]["met"] is True
    assert targets["c8_n16_vs_ceiling"]["ratio"] == pytest.approx(0.7)
    assert targets["c8_n16_vs_ts"]["met"] is True
    assert targets["c1_n1_p50_ms"] == {"ours": pytest.approx(4 / 3), "met": True}
    assert targets["batching_c64_n1"]["img_ratio"] == pytest.approx((4.0 + 2.0) / 2)
    assert "| c=64, n=1" in text
    assert (tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_wrk_triton_v2_body_has_the_same_seeds_and_n(echo_server: str) -> None:
    _Handler.seeds.clear()
    result = harness.run_wrk(echo_server, c=2, n=16, seconds=1, warmup=0, env={"BODY": "triton-v2"})
    assert result["errors"] == 0 and result["requests"] > 0
    sent = list(_Handler.seeds)
    assert sent and all(b.get("v2") == 1 and b["n"] == 16 for b in sent)
    seeds = [b["seed"] for b in sent]
    assert len(set(seeds)) == len(seeds)
    assert {s // 10**9 for s in seeds} == {0, 1}  # thread t's seeds t * 1e9 + k * n
    # one connection: the same seed sequence as the plain body, request after request
    by_body = {}
    for body in ("triton-v2", "generate"):
        _Handler.seeds.clear()
        harness.run_wrk(echo_server, c=1, n=16, seconds=1, warmup=0, env={"BODY": body})
        # A request of the previous run can land after clear(): keep only this body's requests.
        is_v2 = body == "triton-v2"
        by_body[body] = [b["seed"] for b in _Handler.seeds if bool(b.get("v2")) == is_v2]
    k = min(len(x) for x in by_body.values())
    assert k > 2 and by_body["triton-v2"][:k] == by_body["generate"][:k]
    assert all(b - a == 16 for a, b in itertools.pairwise(by_body["generate"]))


def test_request_bodies_and_answers_of_both_protocols() -> None:
    v2 = harness.generate_body("triton-v2", 42, 16)
    assert {x["name"]: x["data"] for x in v2["inputs"]} == {"seed": [42], "n": [16]}
    assert harness.generate_body("generate", 42, 16) == {"seed": 42, "n": 16}
    answer = {
        "outputs": [{"name": "png", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}]
    }
    assert harness.answer_images("triton-v2", answer) == ["a", "b"]
    assert harness.answer_images("generate", {"images": [{"png": "a"}, "b"]}) == ["a", "b"]
    with pytest.raises(KeyError):
        harness.answer_images("triton-v2", {"outputs": [{"name": "other", "data": []}]})
    with pytest.raises(ValueError):
        harness.generate_body("grpc", 1, 1)


@pytest.mark.parametrize("protocol", ["generate", "triton-v2"])
def test_probe_decodes_the_answer_and_counts_images(echo_server: str, protocol: str) -> None:
    from types import SimpleNamespace

    server = SimpleNamespace(name="x", generate_url=echo_server, protocol=protocol)
    assert run.probe(server, n=3) == (28, 28)  # type: ignore[arg-type]
    _Handler.short_by = 1
    with pytest.raises(RuntimeError, match="2 images for n=3"):
        run.probe(server, n=3)  # type: ignore[arg-type]


RUN_SH_START_STDOUT = """SID=19718
URL=http://127.0.0.1:8400/v2/models/gan/infer
BODY=triton-v2
PROTO=triton-v2
CONFIG=1:0
"""


def test_parse_peer_start_reads_the_session_id() -> None:
    info = harness.parse_peer_start("noise = not a key\n" + RUN_SH_START_STDOUT)
    assert info["SID"] == "19718" and info["BODY"] == "triton-v2" and info["CONFIG"] == "1:0"
    assert info["URL"].endswith("/v2/models/gan/infer") and "noise " not in info
    with pytest.raises(RuntimeError):
        harness.parse_peer_start("URL=http://127.0.0.1:8400/\n")
    with pytest.raises(RuntimeError):
        harness.parse_peer_start("SID=\n")


def test_two_process_ceiling_sums_its_processes() -> None:
    one = {"rows": [{"png_b64": 3000.0, "pil_b64": 2000.0}], "start_late_s": 0.01}
    two = {"rows": [{"png_b64": 2500.0, "pil_b64": 1500.0}], "start_late_s": 0.2}
    row = run.ceiling_row([one, two])
    assert row["img_per_s"] == 5500.0 and row["pil_b64_img_per_s"] == 3500.0
    assert row["processes"] == 2 and row["per_process_img_per_s"] == [3000.0, 2500.0]
    assert row["start_late_s"] == 0.2
    assert run.ceiling_row([one]) == {
        "img_per_s": 3000.0,
        "pil_b64_img_per_s": 2000.0,
        "processes": 1,
    }


def test_inproc_start_at_holds_the_timing(tiny_models_dir: Path) -> None:
    import time

    t0 = time.time()
    result = inproc.run(
        tiny_models_dir / "tiny-a",
        batches=(8,),
        secs=0.1,
        stages=("png_b64",),
        discriminator=False,
        log=lambda _: None,
        start_at=t0 + 0.5,
    )
    assert time.time() - t0 >= 0.5
    assert 0 <= float(result["start_late_s"]) < 0.5  # type: ignore[arg-type]
    assert inproc.wait_until(time.time() - 1) >= 1


def _ceiling(system: str, c: int, n: int, rnd: int, ips: float) -> str:
    return json.dumps(
        {"phase": "load", "system": system, "c": c, "n": n, "round": rnd}
        | {"img_per_s": ips, "load_average": [1.0, 1.0, 1.0]}
    )


def test_report_checks_the_best_peer_and_the_two_process_ceiling(tmp_path: Path) -> None:
    lines = []
    for rnd in (0, 1):
        lines += [
            # c=64 n=1: PyTriton is the best peer; ours 2.5x it in both rounds, lower p99
            _row("load", "ours", 64, 1, rnd, 5000, 20),
            _row("load", "torchserve", 64, 1, rnd, 1500, 60),
            _row("load", "pytriton", 64, 1, rnd, 2000, 80),
            # c=1 n=16: TorchServe is the best peer; ours 3x its images/s but a higher p99
            _row("load", "ours", 1, 16, rnd, 3000, 30),
            _row("load", "torchserve", 1, 16, rnd, 1000, 20),
            _row("load", "pytriton", 1, 16, rnd, 900, 25),
            _ceiling("ceiling2", 1, 16, rnd, 4000 if rnd == 0 else 3000),
            # c=64 n=16: 1.8x the best peer: not met; 90% of the ceiling
            _row("load", "ours", 64, 16, rnd, 3600, 100),
            _row("load", "torchserve", 64, 16, rnd, 1000, 300),
            _row("load", "pytriton", 64, 16, rnd, 2000, 200),
            _ceiling("ceiling2", 64, 16, rnd, 4000),
            # c=1 n=1: no peer answered within the window (wrk: 0 requests, p99 0)
            _row("load", "ours", 1, 1, rnd, 500, 4),
            json.dumps(json.loads(_row("load", "pytriton", 1, 1, rnd, 0, 0)) | {"ok": 0}),
        ]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    text = report.report(tmp_path)
    t = json.loads((tmp_path / "targets.json").read_text())
    assert t["c64_n1_vs_best_peer"] == {
        "peer": "pytriton", "img_ratio": 2.5, "p99_ratio": 0.25, "met": True
    }  # fmt: skip
    assert t["c1_n16_vs_best_peer"]["peer"] == "torchserve"
    assert t["c1_n16_vs_best_peer"]["img_ratio"] == 3.0
    assert t["c1_n16_vs_best_peer"]["met"] is False  # p99 30 vs 20 ms
    assert t["c64_n16_vs_best_peer"]["met"] is False  # 1.8x
    # per round 3000/4000 and 3000/3000: median 0.875
    assert t["c1_n16_vs_ceiling2"] == {"ratio": pytest.approx(0.875), "met": True}
    assert t["c64_n16_vs_ceiling2"] == {"ratio": pytest.approx(0.9), "met": True}
    assert t["c1_n1_vs_best_peer"] == {"peer": None, "met": None}
    assert "not measured: no peer answered" in text
    assert "| 64 | 1 | PyTriton 0.7 (Triton 2.51) | 2000 |" in text
    assert "in-process ceiling, two processes (batch 64 + PNG + base64) | 3500 |" in text
    # ours' row: vs TorchServe 3.33x, vs PyTriton 2.50x
    assert "| 3.33x (3.33-3.33) | 2.50x (2.50-2.50) |" in text
