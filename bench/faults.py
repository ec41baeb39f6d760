"""Faults and hostile clients against a real ``bentoml serve``: the figures of docs/reliability.md.

Each scenario starts the server itself (bench/harness.py: own process group, own BENTOML_HOME,
127.0.0.1 only), from ``--code`` (default this checkout; pass a copy of older code to measure
"before"), on ``--models-dir`` (default the bundled models/), and prints one JSON object.

    python bench/faults.py labels   [--requests 5000] [--api-key KEY]
    python bench/faults.py headers  [--mb 100]
    python bench/faults.py slow     [--idle 2400 --drip 310 --nofile 1024 --fresh 74]
    python bench/faults.py flood    [--flooders 8 --seconds 15]
    python bench/faults.py hangup   [--clients 40]
    python bench/faults.py workers

- labels: N requests to random made-up paths; /metrics size and series, scrape time, worker
  RSS and the Prometheus multiprocess folder before and after.
- headers: one request whose header is ``--mb`` MB; its answer, and the server's CPU seconds.
- slow: ``--drip`` connections sending a header byte per second and ``--idle`` silent ones (the
  server under ``ulimit -n --nofile``), then ``--fresh`` new /generate calls one by one; how many
  failed, how many slow connections the server closed, and whether it logged the shortage.
- flood: /generate c=1 for ``--seconds`` (wrk, req/s and p99) alone, then while ``--flooders``
  clients loop the largest /interpolate (126 WebP frames), honouring Retry-After on a 429.
- hangup: ``--clients`` largest /interpolate requests whose clients hang up right after
  sending; the server's CPU seconds spent on them.
- workers: /readyz with both workers SIGKILLed (time to each answer), respawn under
  BENTOML_CONTAINERIZED=true, and a SIGSTOPped worker (replaced or not).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from harness import ROOT, Server, need_wrk, parse_wrk_output, start_ours

LARGEST_INTERPOLATE = {
    "seed_a": 1,
    "seed_b": 2,
    "steps": 64,
    "format": "webp",
    "scale": 8,
    "bounce": True,
}


@contextlib.contextmanager
def server(
    args: argparse.Namespace,
    env: dict[str, str] | None = None,
    name: str = "faults",
    nofile: int | None = None,
) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="gan-faults-") as tmp:
        full_env = {"GAN_LOG_LEVEL": "INFO", **(env or {})}
        if args.api_key:
            full_env["GAN_API_KEY"] = args.api_key
        srv = start_ours(
            name,
            args.models_dir,
            env=full_env,
            workdir=Path(tmp),
            cwd=args.code.resolve(),
            nofile=nofile,
        )
        try:
            yield srv
        finally:
            srv.stop()


def headers(args: argparse.Namespace) -> dict[str, str]:
    return {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}


def worker_pids(srv: Server) -> list[int]:
    """The `bentoml serve` worker processes (children running _bentoml_impl.worker.service)."""
    found = []
    for pid in srv.usage()["pids"]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"_bentoml_impl.worker.service" in cmdline:
            found.append(pid)
    return sorted(found)


def worker_rss_mb(srv: Server) -> float:
    total = 0
    for pid in worker_pids(srv):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return round(total / 1024, 1)


def prometheus_dir(srv: Server) -> Path | None:
    home = Path(srv.log_path).parent / f"home-{srv.name}"
    found = [p for p in home.rglob("*") if p.is_dir() and "prometheus" in p.name]
    return found[0] if found else None


def dir_mb(path: Path | None) -> float:
    if path is None:
        return 0.0
    return round(sum(f.stat().st_size for f in path.glob("*") if f.is_file()) / 2**20, 2)


def scrape(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = httpx.get(f"{srv.base_url}/metrics", headers=headers(args), timeout=120)
    seconds = time.perf_counter() - t0
    series = sum(1 for line in r.text.splitlines() if line and not line.startswith("#"))
    return {"kb": round(len(r.content) / 1024, 1), "series": series, "scrape_s": round(seconds, 3)}


# --- scenarios ---------------------------------------------------------------------------------


def labels(args: argparse.Namespace) -> dict[str, Any]:
    with server(args) as srv:
        with httpx.Client(base_url=srv.base_url, headers=headers(args), timeout=30) as client:
            client.post("/generate", json={"seed": 1})
            before = {
                **scrape(srv, args),
                "worker_rss_mb": worker_rss_mb(srv),
                "prom_dir_mb": dir_mb(prometheus_dir(srv)),
            }
            statuses: dict[str, int] = {}
            t0 = time.perf_counter()
            # the junk comes without the key: what anyone who can reach the port can send
            with httpx.Client(base_url=srv.base_url, timeout=30) as junk:
                for _ in range(args.requests):
                    code = str(junk.get(f"/{uuid.uuid4().hex}").status_code)
                    statuses[code] = statuses.get(code, 0) + 1
            sent_s = time.perf_counter() - t0
            after = {
                **scrape(srv, args),
                "worker_rss_mb": worker_rss_mb(srv),
                "prom_dir_mb": dir_mb(prometheus_dir(srv)),
            }
        return {
            "requests": args.requests,
            "statuses": statuses,
            "send_s": round(sent_s, 1),
            "before": before,
            "after": after,
        }


def header_bomb(args: argparse.Namespace) -> dict[str, Any]:
    with server(args) as srv:
        host, port = srv.base_url.removeprefix("http://").split(":")
        cpu0 = srv.usage()["cpu_s"]
        t0 = time.perf_counter()
        head = b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Big: "
        body = b'{"seed": 1}'
        chunk = b"a" * 65536
        answer = b""
        with socket.create_connection((host, int(port)), timeout=120) as sock:
            try:
                sock.sendall(head)
                for _ in range(args.mb * 16):
                    sock.sendall(chunk)
                sock.sendall(b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            except OSError as exc:
                answer = f"send stopped: {exc!r} ".encode()
            with contextlib.suppress(OSError):
                sock.settimeout(60)
                answer += sock.recv(65536)
        seconds = time.perf_counter() - t0
        time.sleep(0.5)
        cpu = srv.usage()["cpu_s"] - cpu0
        ok = httpx.post(
            f"{srv.base_url}/generate", json={"seed": 1}, headers=headers(args), timeout=30
        )
        return {
            "header_mb": args.mb,
            "answer": answer[:160].decode(errors="replace"),
            "seconds": round(seconds, 2),
            "server_cpu_s": round(cpu, 2),
            "next_generate": ok.status_code,
        }


def slow(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.idle + args.drip + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    env = {"GAN_HEADER_TIMEOUT_S": str(args.header_timeout)} if args.header_timeout else {}
    # as `ulimit -n` in the server's shell would: soft and hard, from the start
    with server(args, env, nofile=args.nofile) as srv:
        host, port = srv.base_url.removeprefix("http://").split(":")
        drips: list[socket.socket] = []
        idles: list[socket.socket] = []
        for _ in range(args.drip):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /models HTTP/1.1\r\n")
            drips.append(s)
        for _ in range(args.idle):
            with contextlib.suppress(OSError):
                idles.append(socket.create_connection((host, int(port)), timeout=5))
        stop = threading.Event()
        closed = {"drip": 0}

        def drip() -> None:
            while not stop.is_set():
                for s in list(drips):
                    try:
                        s.sendall(b"X")
                    except OSError:
                        drips.remove(s)
                        closed["drip"] += 1
                stop.wait(1.0)

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        time.sleep(args.wait)
        failures: list[str] = []
        with httpx.Client(base_url=srv.base_url, headers=headers(args), timeout=10) as fresh:
            for i in range(args.fresh):
                try:
                    r = fresh.post("/generate", json={"seed": i}, headers={"connection": "close"})
                    if r.status_code != 200:
                        failures.append(str(r.status_code))
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
        idle_closed = 0
        for s in idles:
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    idle_closed += 1
            except BlockingIOError:
                pass
            except OSError:
                idle_closed += 1
        stop.set()
        dripper.join(timeout=5)
        for s in drips + idles:
            s.close()
        log = srv.log_path.read_text(errors="replace")
        return {
            "nofile": args.nofile,
            "idle": len(idles),
            "drip": args.drip,
            "after_s": args.wait,
            "fresh": args.fresh,
            "fresh_failed": len(failures),
            "failures": sorted(set(failures)),
            "drip_closed_by_server": closed["drip"],
            "idle_closed_by_server": idle_closed,
            "logged": [line[-160:] for line in log.splitlines() if "[gan.connections]" in line][:5],
        }


def _wrk_c1(url: str, seconds: int, args: argparse.Namespace) -> dict[str, Any]:
    wrk = need_wrk()
    env = {**os.environ, "N": "1"}
    cmd = [
        wrk,
        "-t1",
        "-c1",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(ROOT / "bench" / "wrk" / "generate.lua"),
    ]
    if args.api_key:
        cmd += ["-H", f"Authorization: Bearer {args.api_key}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, env=env, check=False)
    parsed = parse_wrk_output(out.stdout) or {}
    return {k: parsed.get(k) for k in ("req_per_s", "p50_ms", "p99_ms", "max_ms", "errors")}


def flood(args: argparse.Namespace) -> dict[str, Any]:
    with server(args) as srv:
        url = srv.generate_url
        _wrk_c1(url, 3, args)  # warm-up
        alone = _wrk_c1(url, args.seconds, args)
        stop = threading.Event()
        counts: dict[str, int] = {}

        def flooder() -> None:
            with httpx.Client(base_url=srv.base_url, headers=headers(args), timeout=60) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/interpolate", json=LARGEST_INTERPOLATE)
                        code = str(r.status_code)
                        if r.status_code == 429:
                            stop.wait(float(r.headers.get("retry-after", "1")))
                    except httpx.HTTPError as exc:
                        code = type(exc).__name__
                    counts[code] = counts.get(code, 0) + 1

        threads = [threading.Thread(target=flooder, daemon=True) for _ in range(args.flooders)]
        for t in threads:
            t.start()
        time.sleep(2)
        flooded = _wrk_c1(url, args.seconds, args)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        return {
            "generate_alone": alone,
            "generate_under_flood": flooded,
            "flooders": args.flooders,
            "interpolate_answers": counts,
        }


def hangup(args: argparse.Namespace) -> dict[str, Any]:
    with server(args) as srv:
        host, port = srv.base_url.removeprefix("http://").split(":")
        body = json.dumps(LARGEST_INTERPOLATE).encode()
        auth = f"Authorization: Bearer {args.api_key}\r\n".encode() if args.api_key else b""
        request = (
            b"POST /interpolate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        httpx.post(
            f"{srv.base_url}/interpolate",
            json={**LARGEST_INTERPOLATE, "steps": 2},
            headers=headers(args),
            timeout=60,
        )  # warm-up
        time.sleep(1)
        cpu0 = srv.usage()["cpu_s"]
        for _ in range(args.clients):
            with socket.create_connection((host, int(port))) as s:
                s.sendall(request)
            # closed at once: the client has left
        time.sleep(args.settle)
        cpu = srv.usage()["cpu_s"] - cpu0
        return {
            "clients": args.clients,
            "server_cpu_s_in_next": args.settle,
            "server_cpu_s": round(cpu, 2),
        }


def _readyz_times(srv: Server, seconds: float) -> list[tuple[float, str, float]]:
    """(t, answer, seconds) of /readyz probes (timeout 10 s each) for ``seconds``."""
    out = []
    t_start = time.monotonic()
    while time.monotonic() - t_start < seconds:
        t0 = time.monotonic()
        try:
            answer = str(httpx.get(f"{srv.base_url}/readyz", timeout=10).status_code)
        except httpx.HTTPError as exc:
            answer = type(exc).__name__
        out.append((round(t0 - t_start, 2), answer, round(time.monotonic() - t0, 2)))
        if answer == "200" and t0 - t_start > 1:
            break
        time.sleep(0.2)
    return out


def _wait_workers(srv: Server, count: int, seconds: float, avoid: set[int]) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(srv) if p not in avoid]
        if len(pids) >= count:
            return pids
        time.sleep(0.5)
    return [p for p in worker_pids(srv) if p not in avoid]


def workers(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with server(args, {"GAN_WORKERS": "2"}) as srv:
        pids = _wait_workers(srv, 2, 30, set())
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        probes = _readyz_times(srv, 40)
        out["both_killed_readyz"] = {
            "probes": len(probes),
            "first_probe": {"answer": probes[0][1], "seconds": probes[0][2]},
            "slowest_s": max(p[2] for p in probes),
            "first_200_after_s": next((p[0] + p[2] for p in probes if p[1] == "200"), None),
            "answers": sorted({p[1] for p in probes}),
        }
    with server(args, {"GAN_WORKERS": "2", "BENTOML_CONTAINERIZED": "true"}) as srv:
        pids = _wait_workers(srv, 2, 30, set())
        os.kill(pids[0], signal.SIGKILL)
        new = _wait_workers(srv, 1, 30, set(pids))
        out["containerized_killed_one"] = {"respawned": bool(new), "workers": worker_pids(srv)}
    with server(args, {"GAN_WORKERS": "2"}) as srv:
        pids = _wait_workers(srv, 2, 30, set())
        os.kill(pids[0], signal.SIGSTOP)
        t0 = time.monotonic()
        replaced = _wait_workers(srv, 1, args.hang_wait, set(pids))
        readyz = httpx.get(f"{srv.base_url}/readyz", timeout=10).status_code
        out["sigstopped_one"] = {
            "replaced_after_s": round(time.monotonic() - t0, 1) if replaced else None,
            "waited_s": args.hang_wait,
            "readyz_meanwhile": readyz,
        }
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[0], signal.SIGCONT)
    return out


SCENARIOS = {
    "labels": labels,
    "headers": header_bomb,
    "slow": slow,
    "flood": flood,
    "hangup": hangup,
    "workers": workers,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--code", type=Path, default=ROOT, help="checkout to serve (default: this one)")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--api-key", default=None)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--idle", type=int, default=2400)
    p.add_argument("--drip", type=int, default=310)
    p.add_argument("--nofile", type=int, default=1024)
    p.add_argument("--fresh", type=int, default=74)
    p.add_argument("--wait", type=float, default=15.0, help="slow: seconds before the fresh calls")
    p.add_argument("--header-timeout", type=float, default=0.0)
    p.add_argument("--flooders", type=int, default=8)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--hang-wait", type=float, default=40.0)
    args = p.parse_args(argv)
    args.models_dir = args.models_dir.resolve()
    result = {
        "scenario": args.scenario,
        "code": str(args.code),
        "load": os.getloadavg()[0],
        **SCENARIOS[args.scenario](args),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
