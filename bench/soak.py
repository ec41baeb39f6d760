"""Soak test: many concurrent clients mixing /generate and /score for minutes; zero failed
requests and bounded memory (the server's RSS after warm-up grows by less than 10%).

    python bench/soak.py --duration 180 --concurrency 64            # the full soak (~3.5 min)
    python bench/soak.py --duration 20 --json soak.json             # a short one
    python bench/soak.py --url http://127.0.0.1:3000 --pid 1234     # an already running server

Without ``--url`` it starts ``bentoml serve service.service:GanService`` itself (own process
group, own BENTOML_HOME, a free port on 127.0.0.1) on ``--models-dir``, or on the two tiny test
models (tests/fixtures) when none is given, and stops it at the end (SIGTERM to that group only).

Load: ``--concurrency`` workers, one httpx client (one connection) each, looping until the
duration is over or ``--max-requests`` were sent. The mix per request (seeded, reproducible):
60% /generate (n=1, or n=16 one time in eight, both models, some truncation), 30% /score (1 to
4 PNG uploads), 5% /generate_grid, 5% deliberately bad requests that must get their 4xx (bad
seed; not an image) so the error paths soak too. A failure is any answer other than the
expected one, or a transport error.

Memory: the RSS of the whole server process tree (``bentoml serve`` + its worker), read from
/proc every second; the baseline is the RSS when the warm-up (``--warmup``, default 20% of the
duration) ends, the growth is (last - baseline) / baseline. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MAX_DURATION_S = 3600.0


@dataclass
class SoakResult:
    duration_s: float
    concurrency: int
    requests: int = 0
    failures: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    failure_samples: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    requests_per_s: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    rss_growth_pct: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    def ok(self, max_growth_pct: float) -> bool:
        return self.failures == 0 and self.requests > 0 and self.rss_growth_pct < max_growth_pct


# --- the server ----------------------------------------------------------------------------


def loopback(url: str) -> str:
    if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing {url}: the soak only sends traffic to 127.0.0.1")
    return url.rstrip("/")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tiny_models(root: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.tiny_models import build_models_dir

    return build_models_dir(root)


def start_server(
    models_dir: Path, home: Path, env: dict[str, str]
) -> tuple[str, subprocess.Popen[bytes], Path]:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / "serve.log"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GAN_", "BENTOML_"))},
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "GAN_MODELS_DIR": str(models_dir),
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("bentoml")),
                "serve",
                "service.service:GanService",
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bentoml serve exited:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return url, process, log_path
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(process)
    raise SystemExit(
        f"bentoml serve not ready after 120 s:\n{log_path.read_text(errors='replace')}"
    )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` and all its descendants (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


# --- the load ------------------------------------------------------------------------------


def _png(seed: int, size: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 20 + seed).save(buffer, format="PNG")
    return buffer.getvalue()


UPLOADS = [_png(i, size) for i, size in enumerate((28, 28, 32, 64, 100))]

Request = Callable[[httpx.AsyncClient, random.Random], Awaitable[tuple[str, int, int]]]


async def _generate(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int, int]:
    body: dict[str, Any] = {"seed": rng.randrange(0, 2**32 - 16)}
    if rng.random() < 0.125:
        body["n"] = 16
    if rng.random() < 0.3:
        body["model"] = "tiny-b" if rng.random() < 0.5 else "tiny-a"
    if rng.random() < 0.2:
        body["truncation"] = round(rng.uniform(0.3, 1.0), 2)
    r = await client.post("/generate", json=body)
    if r.status_code == 200 and len(r.json()["images"]) != body.get("n", 1):
        return "generate", -2, 200
    return "generate", r.status_code, 200


async def _grid(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int, int]:
    r = await client.post("/generate_grid", json={"seed": rng.randrange(0, 10**6), "n": 9})
    ok = r.status_code == 200 and r.content.startswith(b"\x89PNG")
    return "generate_grid", r.status_code if ok or r.status_code != 200 else -2, 200


async def _score(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int, int]:
    files = [("images", (f"{i}.png", rng.choice(UPLOADS))) for i in range(rng.randint(1, 4))]
    r = await client.post("/score", files=files)
    if r.status_code == 200 and len(r.json()["scores"]) != len(files):
        return "score", -2, 200
    return "score", r.status_code, 200


async def _bad(client: httpx.AsyncClient, rng: random.Random) -> tuple[str, int, int]:
    if rng.random() < 0.5:
        r = await client.post("/generate", json={"seed": -1})
        return "bad_generate", r.status_code, 400
    r = await client.post("/score", files=[("images", ("x.png", b"not an image"))])
    return "bad_score", r.status_code, 400


MIX: list[tuple[float, Request]] = [(0.60, _generate), (0.30, _score), (0.05, _grid), (0.05, _bad)]


def _pick(rng: random.Random) -> Request:
    x = rng.random()
    for weight, request in MIX:
        if x < weight:
            return request
        x -= weight
    return MIX[0][1]


async def soak(
    url: str,
    pid: int,
    *,
    duration_s: float,
    concurrency: int,
    warmup_s: float,
    headers: dict[str, str] | None = None,
    max_requests: int = 10**9,
    seed: int = 1,
    log: Callable[[str], None] = print,
) -> SoakResult:
    url = loopback(url)
    duration_s = min(duration_s, MAX_DURATION_S)
    result = SoakResult(duration_s=duration_s, concurrency=concurrency)
    routes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    stop_at = start + duration_s
    sent = 0

    async def worker(index: int) -> None:
        nonlocal sent
        rng = random.Random(seed * 100_003 + index)
        async with httpx.AsyncClient(base_url=url, timeout=60.0, headers=headers) as client:
            while time.monotonic() < stop_at and sent < max_requests:
                sent += 1
                request = _pick(rng)
                t0 = time.perf_counter()
                try:
                    route, status, expected = await request(client, rng)
                except httpx.HTTPError as exc:
                    route, status, expected = request.__name__.strip("_"), -1, 200
                    if len(result.failure_samples) < 10:
                        result.failure_samples.append(f"{route}: {exc!r}")
                latencies.append(time.perf_counter() - t0)
                routes[route] += 1
                statuses[str(status)] += 1
                if status != expected:
                    result.failures += 1
                    if status >= 0 and len(result.failure_samples) < 10:
                        result.failure_samples.append(f"{route}: {status}, expected {expected}")

    async def sampler() -> None:
        next_report = start + 30
        while time.monotonic() < stop_at and sent < max_requests:
            samples.append((time.monotonic() - start, tree_rss_bytes(pid)))
            if time.monotonic() >= next_report:
                log(
                    f"  {time.monotonic() - start:5.0f} s: {sum(routes.values())} requests, "
                    f"{result.failures} failures, RSS {samples[-1][1] / 2**20:.1f} MB"
                )
                next_report += 30
            await asyncio.sleep(1.0)

    load_before = os.getloadavg()
    samples.append((0.0, tree_rss_bytes(pid)))
    await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    elapsed = time.monotonic() - start
    samples.append((elapsed, tree_rss_bytes(pid)))

    result.requests = sum(routes.values())
    result.by_route = dict(sorted(routes.items()))
    result.statuses = dict(sorted(statuses.items()))
    result.requests_per_s = round(result.requests / elapsed, 1)
    if latencies:
        ordered = sorted(latencies)
        result.latency_ms = {
            f"p{q}": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)
            for q in (50, 90, 99)
        } | {"max": round(1000 * ordered[-1], 2)}
    after_warmup = [rss for t, rss in samples if t >= warmup_s] or [samples[-1][1]]
    baseline, last = after_warmup[0], samples[-1][1]
    result.rss_mb = {
        "start": round(samples[0][1] / 2**20, 1),
        "after_warmup": round(baseline / 2**20, 1),
        "end": round(last / 2**20, 1),
        "max_after_warmup": round(max(after_warmup) / 2**20, 1),
    }
    result.rss_growth_pct = round(100.0 * (last - baseline) / baseline, 2) if baseline else 0.0
    result.machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(elapsed, 1),
        "warmup_s": warmup_s,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds of load (max 3600)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--warmup", type=float, help="seconds before the RSS baseline (20%% default)")
    p.add_argument("--max-requests", type=int, default=10**9, help="stop after this many")
    p.add_argument("--max-rss-growth", type=float, default=10.0, help="percent; exit 1 above")
    p.add_argument("--url", help="an already running server (127.0.0.1 only); needs --pid")
    p.add_argument("--pid", type=int, help="the `bentoml serve` pid of --url, for its RSS")
    p.add_argument("--models-dir", type=Path, help="models to serve (default: tiny test models)")
    p.add_argument("--api-key", default=os.environ.get("GAN_API_KEY"), help="sent as Bearer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the result here too")
    args = p.parse_args(argv)
    if args.url and not args.pid:
        p.error("--url needs --pid (the server's RSS is part of the result)")
    warmup = args.warmup if args.warmup is not None else 0.2 * args.duration
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None

    process = None
    with tempfile.TemporaryDirectory(prefix="gan-soak-") as tmp:
        if args.url:
            url, pid = args.url, args.pid
        else:
            models = args.models_dir or tiny_models(Path(tmp) / "models")
            env = {"GAN_API_KEY": args.api_key} if args.api_key else {}
            url, process, _ = start_server(models, Path(tmp) / "home", env)
            pid = process.pid
        try:
            print(
                f"soak: {url}, {args.concurrency} clients, {args.duration:.0f} s "
                f"(warm-up {warmup:.0f} s), load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            result = asyncio.run(
                soak(
                    url,
                    pid,
                    duration_s=args.duration,
                    concurrency=args.concurrency,
                    warmup_s=warmup,
                    headers=headers,
                    max_requests=args.max_requests,
                    seed=args.seed,
                    log=lambda line: print(line, flush=True),
                )
            )
        finally:
            if process is not None:
                stop_server(process)
    text = json.dumps(asdict(result), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = result.ok(args.max_rss_growth)
    print(
        f"soak {'PASSED' if ok else 'FAILED'}: {result.requests} requests, {result.failures} "
        f"failures, RSS {result.rss_mb['after_warmup']} -> {result.rss_mb['end']} MB "
        f"({result.rss_growth_pct:+.2f}%, limit {args.max_rss_growth}%)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
