"""Where the time of a /generate goes, end to end, on this machine.

usage: python bench/where_time_goes.py --models-dir /tmp/bench/models [--out DIR] [--quick] [--no-servers]

1. Stages, in-process, microseconds (best of several runs; service code, not copies):
   JSON parsing (parse_generate), latents, ONNX Runtime at batch 1 and per image at batch 64,
   to_uint8, PNG encoding, base64, the JSON answer; then our whole Starlette app called
   directly as ASGI (no socket, no HTTP parser, no BentoML): one request at a time (latency)
   and 64 at a time (process CPU per request).
2. Servers, CPU per request at c=64 under wrk (interleaved, --rounds): our app under plain
   uvicorn (bench/bare_server.py), under ``bentoml serve`` as shipped, and under ``bentoml
   serve`` with GAN_TRACE_ROUTES=true (BentoML's OpenTelemetry middleware on our routes, as
   before it was switched off), plus BentoML's own /livez as the floor of any BentoML route.
   Differences give the HTTP server's, BentoML's and OpenTelemetry's share per request.
3. With py-spy installed (pip install py-spy), a 8 s sampling profile of the BentoML worker
   under c=64 n=1, summarised by component (bench/profile_summary.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import numpy as np

from contract.latents import latents_for_seeds
from service.app import build_app
from service.errors import json_response
from service.imaging import encode_png
from service.model_store import ModelStore
from service.request_parsing import parse_generate
from service.settings import Settings


def best_us(fn: Callable[[], object], per: int = 1, reps: int = 5, min_s: float = 0.05) -> float:
    """Best (lowest) mean time per call over ``reps`` windows, in microseconds / ``per``."""
    fn()
    best = float("inf")
    for _ in range(reps):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_s and calls >= 3:
                break
        best = min(best, dt / calls)
    return 1e6 * best / per


def stages(store: ModelStore, quick: bool) -> list[dict[str, Any]]:
    model = store.get(None)
    m = model.manifest
    reps = 3 if quick else 7
    out: list[dict[str, Any]] = []

    def add(stage: str, us: float, note: str = "") -> None:
        out.append({"stage": stage, "us": round(us, 1), "note": note})
        print(f"  {stage:48s} {us:9.1f} us  {note}", file=sys.stderr)

    settings = Settings.from_env()
    body1 = b'{"seed": 12345, "n": 1}'
    body16 = b'{"seed": 12345, "n": 16}'
    add(
        "JSON request parsing (parse_generate)",
        best_us(lambda: parse_generate(body1, settings), reps=reps),
    )
    for b in (1, 64):
        seeds = np.arange(b, dtype=np.uint64)
        add(
            f"latents, batch {b}",
            best_us(lambda s=seeds: latents_for_seeds(s, m.z_dim), per=b, reps=reps),
            "per image",
        )
        z = latents_for_seeds(seeds, m.z_dim)
        add(
            f"ONNX Runtime generator, batch {b}",
            best_us(lambda z=z: model.generate(z), per=b, reps=reps),
            "per image",
        )
        y = model.generate(z)
        add(
            f"to_uint8, batch {b}",
            best_us(lambda y=y: m.image.to_uint8(y), per=b, reps=reps),
            "per image",
        )
    px = m.image.to_uint8(
        model.generate(latents_for_seeds(np.arange(64, dtype=np.uint64), m.z_dim))
    )
    add(
        "PNG encoding (encode_png)",
        best_us(lambda: [encode_png(p) for p in px], per=64, reps=reps),
        "per image",
    )
    pngs = [encode_png(p) for p in px]
    add(
        "base64",
        best_us(lambda: [base64.b64encode(p).decode("ascii") for p in pngs], per=64, reps=reps),
        "per image",
    )
    for n in (1, 16):
        images = [
            {"seed": i, "png": base64.b64encode(p).decode("ascii")} for i, p in enumerate(pngs[:n])
        ]
        add(
            f"JSON answer (json_response), n={n}",
            best_us(
                lambda im=images: json_response(
                    {"model": "m", "width": 28, "height": 28, "images": im}
                ),
                reps=reps,
            ),
            "per request",
        )
    for n, body in ((1, body1), (16, body16)):
        seq, conc = asgi_app_costs(store, body, quick)
        add(
            f"our Starlette app via ASGI, n={n}, 1 at a time",
            seq["wall_us"],
            "wall per request (latency)",
        )
        add(
            f"our Starlette app via ASGI, n={n}, 64 at a time",
            conc["cpu_us"],
            "process CPU per request",
        )
    return out


def asgi_app_costs(
    store: ModelStore, body: bytes, quick: bool
) -> tuple[dict[str, float], dict[str, float]]:
    settings = Settings.from_env()
    app = build_app(settings, store, registry=_fresh_registry())
    scope_base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/generate",
        "raw_path": b"/generate",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def call() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        status = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app({**scope_base, "state": {}}, receive, send)
        if status != [200]:
            raise RuntimeError(f"in-process /generate answered {status}")

    async def main() -> tuple[dict[str, float], dict[str, float]]:
        async with app.router.lifespan_context(app):
            n_seq = 200 if quick else 1000
            for _ in range(20):
                await call()
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n_seq):
                await call()
            seq = {
                "wall_us": 1e6 * (time.perf_counter() - w0) / n_seq,
                "cpu_us": 1e6 * (time.process_time() - c0) / n_seq,
            }
            rounds = 10 if quick else 40
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(rounds):
                await asyncio.gather(*(call() for _ in range(64)))
            k = rounds * 64
            conc = {
                "wall_us": 1e6 * (time.perf_counter() - w0) / k,
                "cpu_us": 1e6 * (time.process_time() - c0) / k,
            }
            return seq, conc

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover
        return asyncio.run(main())


def _fresh_registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def servers(
    models_dir: Path, work: Path, rounds: int, seconds: float, n: int
) -> list[dict[str, Any]]:
    systems = [
        ("bare", {}, True),
        ("bentoml", {}, False),
        ("bentoml_traced", {"GAN_TRACE_ROUTES": "true"}, False),
    ]
    started: list[tuple[str, h.Server]] = []
    rows: list[dict[str, Any]] = []
    try:
        for name, env, bare in systems:
            started.append((name, h.start_ours(name, models_dir, env=env, workdir=work, bare=bare)))
        for rnd in range(rounds):
            order = started[rnd % len(started) :] + started[: rnd % len(started)]
            points = [(name, s, s.generate_url, "generate.lua") for name, s in order]
            if n == 1:
                livez = next(s for name, s in started if name == "bentoml")
                points.append(("bentoml_livez", livez, livez.base_url + "/livez", "get"))
            for name, server, url, lua in points:
                if lua == "get":
                    res = _wrk_get(url, seconds, server)
                else:
                    res = h.run_wrk(url, c=64, n=n, seconds=seconds, warmup=1.0, server=server)
                res |= {"system": name, "round": rnd, "n": n}
                rows.append(res)
                print(
                    f"  r{rnd} n={n} {name:15s} req/s={res['req_per_s']:8.0f} "
                    f"server CPU/req={res.get('server_cpu_us_per_req', 0):7.0f} us "
                    f"p50={res['p50_ms']:.2f} ms load={res['load_average'][0]}",
                    file=sys.stderr,
                )
    finally:
        for _, s in started:
            s.stop()
    return rows


def _wrk_get(url: str, seconds: float, server: h.Server) -> dict[str, Any]:
    """wrk GET (no script) on a BentoML route; same bookkeeping as run_wrk."""
    lua = h.WRK_DIR / "get.lua"
    return h.run_wrk(url, c=64, n=1, seconds=seconds, warmup=1.0, lua=lua, server=server)


def pyspy(models_dir: Path, work: Path, out: Path, seconds: float) -> dict[str, Any] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print(
            "  py-spy not installed: skipping the sampling profile (pip install py-spy)",
            file=sys.stderr,
        )
        return None
    server = h.start_ours("profiled", models_dir, workdir=work)
    try:
        pids = server.usage()["pids"]
        worker = max(pids, key=lambda p: (h._stat(p) or (0, 0, 0.0, 0, 0))[3])
        wrk = subprocess.Popen(
            [
                h.need_wrk(),
                "-t2",
                "-c64",
                f"-d{int(seconds) + 3}s",
                "-s",
                str(h.WRK_DIR / "generate.lua"),
                server.generate_url,
            ],
            env={"N": "1", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1.5)
        raw = out / "pyspy-bentoml-c64-n1.txt"
        subprocess.run(
            [
                spy,
                "record",
                "-p",
                str(worker),
                "-d",
                str(int(seconds)),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
                "--full-filenames",
            ],
            check=False,
            capture_output=True,
            timeout=seconds + 60,
        )
        wrk.wait(timeout=seconds + 30)
    finally:
        server.stop()
    if not raw.exists():
        return None
    import profile_summary

    return profile_summary.summarise(profile_summary.parse(raw))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument(
        "--out", type=Path, default=Path(f"bench/results/profile-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-servers", action="store_true", help="only the in-process stages")
    ap.add_argument("--nice", type=int, default=-10, help="priority (see bench/run.py)")
    args = ap.parse_args()
    h.exit_on_sigterm()
    h.take_priority(args.nice)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    import os

    os.environ.setdefault("GAN_MODELS_DIR", str(args.models_dir))
    settings = Settings.from_env()
    store = ModelStore.load(settings)
    result: dict[str, Any] = {"load_average_start": h.load_average(), "model": store.default_name}
    print("stages (in-process):", file=sys.stderr)
    result["stages"] = stages(store, args.quick)
    if not args.no_servers:
        print("servers (c=64, CPU per request):", file=sys.stderr)
        work = args.out / "work"
        work.mkdir(exist_ok=True)
        seconds = 2.0 if args.quick else args.seconds
        rounds = 1 if args.quick else args.rounds
        result["servers"] = servers(args.models_dir, work, rounds, seconds, 1)
        if not args.quick:
            result["servers"] += servers(args.models_dir, work, 1, seconds, 16)
        result["pyspy"] = pyspy(args.models_dir, work, args.out, 3.0 if args.quick else 8.0)
    result["load_average_end"] = h.load_average()
    (args.out / "profile.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = ["| stage | us | |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['us']:.1f} | {s['note']} |" for s in result["stages"]]
    rows = result.get("servers") or []
    if rows:
        import statistics

        lines += [
            "",
            "| server (c=64) | n | req/s | server CPU us/request | p50 ms |",
            "|---|---|---|---|---|",
        ]
        keys = sorted({(r["system"], r["n"]) for r in rows}, key=lambda k: (k[1], k[0]))
        for system, n in keys:
            sel = [r for r in rows if r["system"] == system and r["n"] == n]
            lines.append(
                f"| {system} | {n} | {statistics.median(r['req_per_s'] for r in sel):.0f} | "
                f"{statistics.median(r.get('server_cpu_us_per_req', 0) for r in sel):.0f} | "
                f"{statistics.median(r['p50_ms'] for r in sel):.2f} |"
            )
    spy = result.get("pyspy")
    if spy:
        lines += [
            "",
            "py-spy, BentoML worker at c=64 n=1 (share of samples; self = innermost component):",
            "",
        ]
        lines += ["| component | inclusive | self |", "|---|---|---|"]
        for k, v in spy["inclusive"].items():
            lines.append(f"| {k} | {100 * v:.1f}% | {100 * spy['self'].get(k, 0):.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
