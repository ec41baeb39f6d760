"""Shared pieces of the benchmark: start/stop the servers compared, run wrk, read /proc.

Everything here talks to 127.0.0.1 only, and every load run is bounded by wrk's ``-d``.
Servers are started in their own process group (``start_new_session``) and stopped by that
group id only: nothing that this module did not start is ever signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WRK_DIR = BENCH / "wrk"
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

PEER_DIR = Path(os.environ.get("TS_PEER_SRC", "/work/shared/peers/torchserve"))
TS_BASE = Path(os.environ.get("TS_PEER_DIR", "/tmp/ts-peer"))
PT_PEER_DIR = Path(os.environ.get("PT_PEER_SRC", "/work/shared/peers/pytriton"))
PT_BASE = Path(os.environ.get("PYTRITON_PEER_DIR", "/tmp/pytriton-peer"))

WRK_MISSING = (
    "wrk is not installed: it is the load client of every HTTP figure (a Python client eats "
    "~0.9 core at c=64 and caps every server alike).\n"
    "  Debian/Ubuntu: apt-get update && apt-get install -y wrk"
)


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(WRK_MISSING)
    return path


def loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing {url}: the benchmark only sends traffic to 127.0.0.1")
    return url


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_NICE = 0


def take_priority(nice: int) -> None:
    """Run this process and every server it starts at priority ``nice`` (negative needs root).

    On a machine shared with other jobs the kernel (autogroup scheduling, on here) shares the CPU
    fairly between sessions, not processes: a plain ``nice`` only ranks threads inside one
    session. So this sets both this process's nice value and its session's autogroup nice
    (/proc/self/autogroup), and ``start_*`` does the same for each server's own session
    (``boost``). Measured here: a busy loop got 0.3-0.4 of a core at load ~9 with either nice 0
    or nice -10, and 0.97 with autogroup nice -10. Every compared system gets the same value."""
    global _NICE
    _NICE = nice
    if not nice:
        return
    try:
        os.nice(nice)
    except PermissionError:
        print(f"cannot renice to {nice} (not root): normal priority", file=sys.stderr)
        _NICE = 0
        return
    boost([os.getpid()])


def boost(pids: list[int]) -> None:
    """Give the sessions (autogroups) of ``pids`` the priority set by ``take_priority``."""
    if not _NICE:
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(_NICE))
            os.setpriority(os.PRIO_PROCESS, pid, _NICE)


def exit_on_sigterm() -> None:
    """SIGTERM (and SIGINT, even when inherited as ignored) -> SystemExit, so that ``finally``
    blocks stop the servers this process started."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- /proc -------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, float, int, int] | None:
    """(ppid, pgid, cpu seconds, rss bytes, start time) of a live process; None if gone/zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    # after "(comm)": state ppid pgrp ... utime(11) stime(12) ... starttime(19) vsize rss(21)
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return int(rest[1]), int(rest[2]), cpu, int(rest[21]) * PAGE, int(rest[19])


def tree_pids(root: int) -> dict[int, tuple[int, int, float, int, int]]:
    """The live processes of ``root``'s process group and all their descendants (BentoML's
    circus arbiter starts its workers in new sessions; TorchServe's launcher exits, leaving Java
    in the group)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                table[int(entry)] = st
    members = {pid for pid, st in table.items() if st[1] == root or pid == root}
    frontier = list(members)
    while frontier:
        parent = frontier.pop()
        for pid, st in table.items():
            if st[0] == parent and pid not in members:
                members.add(pid)
                frontier.append(pid)
    return {pid: table[pid] for pid in members}


# ---- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    """A server this harness started, in its own process group (pgid == the Popen pid, or
    ``root_pid`` for one a peer's script started in a session of its own)."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    generate_path: str = "/generate"
    # the body /generate's clients send: "generate" ({"seed", "n"}) or "triton-v2" (KServe v2)
    protocol: str = "generate"
    # the process group to watch and stop when it is not the Popen's (a server a script started)
    root_pid: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    stop_command: list[str] | None = None
    stop_cwd: Path | None = None
    stop_env: Mapping[str, str] | None = None
    # every (pid, start time) ever seen in this server's tree: only these are ever signalled
    seen: dict[int, int] = field(default_factory=dict)

    @property
    def pgid(self) -> int:
        return self.root_pid if self.root_pid is not None else self.process.pid

    @property
    def generate_url(self) -> str:
        return self.base_url + self.generate_path

    def _live(self) -> dict[int, tuple[int, int, float, int, int]]:
        self.process.poll()  # reap our direct child if it exited
        procs = tree_pids(self.pgid)
        for pid, st in procs.items():
            self.seen.setdefault(pid, st[4])
        for pid, start in self.seen.items():  # orphans re-parented to init
            if pid not in procs:
                st = _stat(pid)
                if st is not None and st[4] == start:
                    procs[pid] = st
        return procs

    def usage(self) -> dict[str, Any]:
        procs = self._live()
        return {
            "cpu_s": sum(st[2] for st in procs.values()),
            "rss_bytes": sum(st[3] for st in procs.values()),
            "largest_rss_bytes": max((st[3] for st in procs.values()), default=0),
            "pids": sorted(procs),
        }

    def alive(self) -> bool:
        return bool(self._live())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.stop_command is not None and self.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    self.stop_command,
                    cwd=self.stop_cwd,
                    env=dict(self.stop_env) if self.stop_env is not None else None,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=60,
                    check=False,
                )
        for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            procs = self._live()
            if not procs:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
            for pid in procs:  # workers in their own session (circus), by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.1)
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)


def _limit_files(nofile: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


def _wait_http(server: Server, path: str, timeout: float, ok: Any = None) -> None:
    deadline = time.monotonic() + timeout
    url = server.base_url + path
    while time.monotonic() < deadline:
        if server.process.poll() is not None and not server.alive():
            raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = r.read()
                if r.status == 200 and (ok is None or ok(body)):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")


def start_ours(
    name: str,
    models_dir: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    workdir: Path,
    bare: bool = False,
    cwd: Path | None = None,
    nofile: int | None = None,
) -> Server:
    """``bentoml serve service.service:GanService`` (or, ``bare``, the same Starlette app under
    plain uvicorn: bench/bare_server.py) with its own BENTOML_HOME, on 127.0.0.1; ``nofile``:
    under that file-descriptor limit, soft and hard (as ``ulimit -n`` would)."""
    port = port or free_port()
    workdir = workdir.resolve()
    home = workdir / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GAN_", "BENTOML_"))},
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "GAN_MODELS_DIR": str(models_dir),
        "GAN_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    if bare:
        cmd = [sys.executable, str(BENCH / "bare_server.py"), "--port", str(port)]
    else:
        # python -m bentoml where the console script is elsewhere (pip install --target on a
        # GPU box without network: bench/gpu.sh)
        launcher = (
            [str(VENV_BIN / "bentoml")]
            if (VENV_BIN / "bentoml").exists()
            else [sys.executable, "-m", "bentoml"]
        )
        cmd = [
            *launcher,
            "serve",
            "service.service:GanService",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            cwd=cwd or ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if nofile is None else lambda: _limit_files(nofile),
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path, meta={"env": env or {}})
    boost([process.pid])
    _wait_http(server, "/readyz" if not bare else "/models", 180.0)
    boost(server.usage()["pids"])  # the worker processes, in sessions of their own
    return server


TS_CONFIG = """\
inference_address=http://127.0.0.1:{p_inf}
management_address=http://127.0.0.1:{p_mgmt}
metrics_address=http://127.0.0.1:{p_met}
grpc_inference_address=127.0.0.1
grpc_management_address=127.0.0.1
grpc_inference_port={p_grpc}
grpc_management_port={p_grpcm}
disable_token_authorization=true
enable_model_api=false
install_py_dep_per_model=false
model_store={store}
load_models=gan.mar
models={{"gan": {{"1.0": {{"defaultVersion": true, "marName": "gan.mar", "minWorkers": {w}, "maxWorkers": {w}, "batchSize": {batch}, "maxBatchDelay": {d}, "responseTimeout": 120}}}}}}
"""


def ts_ready() -> bool:
    return (TS_BASE / "venv" / "bin" / "torchserve").exists() and (
        TS_BASE / "store" / "gan.mar"
    ).exists()


def start_torchserve(
    workdir: Path,
    *,
    workers: int = 2,
    delay_ms: int = 5,
    threads: int = 1,
    batch: int = 64,
    port_base: int = 8280,
) -> Server:
    """TorchServe 0.12 with the peer's archive, configured exactly as the peer's run.sh does
    (config.properties, env knobs); started and stopped the same way (own group, --stop
    --foreground, wait for the group to be empty)."""
    if not ts_ready():
        raise SystemExit(
            f"TorchServe peer not built under {TS_BASE}: run `bash bench/prepare_peer.sh` first"
        )
    ports = [port_base + i for i in range(5)]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise SystemExit(f"ports {busy} are taken: set --ts-port-base")
    pidfile = Path(tempfile.gettempdir()) / ".model_server.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
            raise SystemExit(f"another TorchServe is running ({pidfile}); not touching it")
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    cur = workdir.resolve() / f"ts-w{workers}_d{delay_ms}_t{threads}"
    (cur / "logs").mkdir(parents=True, exist_ok=True)
    conf = cur / "config.properties"
    conf.write_text(
        TS_CONFIG.format(
            p_inf=ports[0],
            p_mgmt=ports[1],
            p_met=ports[2],
            p_grpc=ports[3],
            p_grpcm=ports[4],
            store=TS_BASE / "store",
            w=workers,
            batch=batch,
            d=delay_ms,
        )
    )
    venv_bin = TS_BASE / "venv" / "bin"
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "LOG_LOCATION": str(cur / "logs"),
        "METRICS_LOCATION": str(cur / "logs"),
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("TS_PEER_TORCH_THREADS", None)
    if threads:
        env["TS_PEER_TORCH_THREADS"] = str(threads)
    log_path = cur / "ts.out"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(venv_bin / "torchserve"), "--start", "--ncs", "--ts-config", str(conf)],
            cwd=cur,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(
        f"torchserve-w{workers}-d{delay_ms}-t{threads}",
        f"http://127.0.0.1:{ports[0]}",
        process,
        log_path,
        generate_path="/predictions/gan",
        meta={"workers": workers, "delay_ms": delay_ms, "threads": threads, "batch": batch},
        stop_command=[str(venv_bin / "torchserve"), "--stop", "--foreground"],
        stop_cwd=cur,
        stop_env=env,
    )
    boost([process.pid])
    mgmt = Server("ts-mgmt", f"http://127.0.0.1:{ports[1]}", process, log_path)
    _wait_http(mgmt, "/models/gan", 240.0, ok=lambda b: b.count(b'"READY"') >= workers)
    boost(server.usage()["pids"])
    return server


def pt_ready() -> bool:
    """The PyTriton peer is built: its venv, and the marker bench/prepare_peer.sh leaves once
    the peer's own check passed (importing pytriton here would cost seconds to minutes of CPU
    on a loaded box)."""
    return (PT_BASE / "venv" / "bin" / "python").exists() and (PT_BASE / ".checked").exists()


def parse_peer_start(text: str) -> dict[str, str]:
    """The KEY=VALUE lines a peer's ``run.sh start`` prints (SID=, URL=, BODY=, PROTO=,
    CONFIG=); RuntimeError without a numeric SID."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.isupper() and key.isidentifier():
            out[key] = value
    if not out.get("SID", "").isdigit():
        raise RuntimeError(f"no SID=<pid> in the peer's start output: {text[-500:]!r}")
    return out


def start_pytriton(
    workdir: Path,
    *,
    onnx: Path,
    config: str = "1:0",
    port: int = 8400,
    ort_threads: int = 1,
    max_batch: int = 64,
) -> Server:
    """The PyTriton peer (Triton 2.51 in nvidia-pytriton 0.7, CPU, Triton's dynamic batcher)
    started and stopped by the peer's own ``run.sh start CONFIG`` / ``run.sh stop SID``, so its
    launch (the LD_LIBRARY_PATH fix for the Python-backend stub, the ready check on
    /v2/models/gan/ready, SIGTERM -> clean shutdown) is exactly the peer's. It serves ``onnx``
    (an unconditional z -> image generator) on 127.0.0.1 ports ``port``..``port``+2.
    Never SIGSTOP it: Triton crashed in 2 of 3 freezes (the peer's RESULTS.md)."""
    if not pt_ready():
        raise SystemExit(
            f"PyTriton peer not built under {PT_BASE}: run `bash bench/prepare_peer.sh pytriton`"
        )
    run_sh = PT_PEER_DIR / "run.sh"
    busy = [p for p in (port, port + 1, port + 2) if not port_free(p)]
    if busy:
        raise SystemExit(f"ports {busy} are taken: set --pt-port")
    env = {
        **os.environ,
        "PYTRITON_PEER_DIR": str(PT_BASE),
        "PORT": str(port),
        "GAN_ONNX": str(onnx.resolve()),
        "ORT_THREADS": str(ort_threads),
        "MAX_BATCH": str(max_batch),
    }
    env.pop("VIRTUAL_ENV", None)
    cur = workdir.resolve() / f"pytriton-{config.replace(':', '_')}"
    cur.mkdir(parents=True, exist_ok=True)
    log_path = cur / "start.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(run_sh), "start", config], env=env, stdout=subprocess.PIPE, stderr=log
        )
        out, _ = process.communicate(timeout=300)
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(
            f"PyTriton did not start (rc {process.returncode}):\n{text}\n"
            + log_path.read_text(errors="replace")[-3000:]
        )
    info = parse_peer_start(text)
    # the server's own log is the one run.sh names on stderr ("... log /tmp/.../server-*.log")
    logs = sorted((PT_BASE / "logs").glob("server-*.log"), key=lambda p: p.stat().st_mtime)
    server = Server(
        f"pytriton-{config}",
        f"http://127.0.0.1:{port}",
        process,
        logs[-1] if logs else log_path,
        generate_path=urlparse(info.get("URL", "")).path or "/v2/models/gan/infer",
        protocol=info.get("BODY") or "triton-v2",
        root_pid=int(info["SID"]),
        meta={
            "config": config,
            "onnx": str(onnx),
            "ort_threads": ort_threads,
            "max_batch": max_batch,
        },
        stop_command=["bash", str(run_sh), "stop", info["SID"]],
        stop_env=env,
    )
    boost(server.usage()["pids"])
    return server


# ---- wrk ---------------------------------------------------------------------------------------


def _wrk_cmd(wrk: str, c: int, seconds: float, lua: Path, url: str) -> list[str]:
    threads = max(1, min(2, c))
    return [
        wrk,
        f"-t{threads}",
        f"-c{c}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(lua),
        url,
    ]


def run_wrk(
    url: str,
    *,
    c: int,
    n: int = 1,
    seconds: float = 10.0,
    warmup: float = 2.0,
    lua: Path = WRK_DIR / "generate.lua",
    env: Mapping[str, str] | None = None,
    server: Server | None = None,
    idle: list[Server] | None = None,
) -> dict[str, Any]:
    """One closed-loop point: a ``warmup`` wrk run (discarded), then the measured one.

    Adds the client's own CPU (wrk's rusage / wall: cores), the server process group's CPU
    (cores) and RSS, and the CPU the other (idle) servers used meanwhile."""
    wrk = need_wrk()
    loopback(url)
    full_env = {**os.environ, "N": str(n), **(env or {})}
    if warmup > 0:
        subprocess.run(
            _wrk_cmd(wrk, c, warmup, lua, url),
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=warmup + 60,
            check=False,
        )
    s0 = server.usage() if server else None
    i0 = [s.usage()["cpu_s"] for s in idle or []]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        _wrk_cmd(wrk, c, seconds, lua, url),
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # pragma: no cover
        status, rusage = 0, None
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    s1 = server.usage() if server else None
    i1 = [s.usage()["cpu_s"] for s in idle or []]
    result = parse_wrk_output(out)
    if result is None:
        raise RuntimeError(
            f"wrk gave no result (rc {proc.returncode}): {out[-2000:]} {err[-2000:]}"
        )
    result["concurrency"] = c
    result["wall_s"] = round(wall, 3)
    if rusage is not None:
        result["client_cpu_cores"] = round((rusage.ru_utime + rusage.ru_stime) / wall, 3)
    if s0 is not None and s1 is not None:
        cpu = s1["cpu_s"] - s0["cpu_s"]
        result["server_cpu_cores"] = round(cpu / wall, 3)
        result["server_rss_mb"] = round(s1["rss_bytes"] / 2**20, 1)
        result["server_largest_rss_mb"] = round(s1["largest_rss_bytes"] / 2**20, 1)
        result["server_processes"] = len(s1["pids"])
        if result.get("requests"):
            result["server_cpu_us_per_req"] = round(1e6 * cpu / result["requests"], 1)
    if idle:
        result["idle_servers_cpu_cores"] = round(
            sum(b - a for a, b in zip(i0, i1, strict=False)) / wall, 3
        )
    result["load_average"] = load_average()
    return result


def parse_wrk_output(text: str) -> dict[str, Any] | None:
    """The JSON object on the last line that has one (our lua scripts print it in ``done``)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                parsed: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            return parsed
    return None


def multipart_body(files: list[tuple[str, bytes]], boundary: str = "benchBOUNDARY7f3a") -> bytes:
    """A multipart/form-data body with each file in the field ``images``."""
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def generate_body(protocol: str, seed: int, n: int) -> dict[str, Any]:
    """The request for n images from ``seed`` in a server's protocol (what generate.lua sends)."""
    if protocol == "generate":
        return {"seed": seed, "n": n}
    if protocol == "triton-v2":
        return {
            "inputs": [
                {"name": "seed", "datatype": "INT64", "shape": [1, 1], "data": [seed]},
                {"name": "n", "datatype": "INT64", "shape": [1, 1], "data": [n]},
            ]
        }
    raise ValueError(f"unknown protocol {protocol!r}")


def answer_images(protocol: str, body: dict[str, Any]) -> list[str]:
    """The base64 PNGs of an answer: /generate's ``images`` (dicts with "png", or strings), or
    the ``png`` BYTES output of a KServe v2 answer."""
    if protocol == "generate":
        return [x["png"] if isinstance(x, dict) else x for x in body["images"]]
    if protocol == "triton-v2":
        for out in body.get("outputs", []):
            if out.get("name") == "png":
                return [str(x) for x in out["data"]]
        raise KeyError(f"no 'png' output in {str(body)[:300]}")
    raise ValueError(f"unknown protocol {protocol!r}")


def post_json(url: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    loopback(url)
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        parsed: dict[str, Any] = json.loads(r.read())
        return parsed


def get_json(url: str, timeout: float = 10.0) -> dict[str, Any]:
    loopback(url)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        parsed: dict[str, Any] = json.loads(r.read())
        return parsed
