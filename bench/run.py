"""The load benchmark: our service, the same service without batching, and the TorchServe and
PyTriton peers, under the same wrk clients, interleaved point by point in one run.

usage: python bench/run.py --models-dir /tmp/bench/models [--out bench/results/NAME] [--quick]

All servers are started once, on 127.0.0.1, and stay up (the idle ones' CPU is recorded beside
every point); for each load point and round the systems run one after the other, in an order
rotated each round, so drift in this shared machine's load hits all of them alike. Every figure
in BENCHMARKS.md is a ratio of two numbers from the same round of the same run.

Systems (``--systems``):
  ours        bentoml serve service.service:GanService, default settings
  nobatch     the same with GAN_MAX_BATCH_SIZE=1 (every ONNX Runtime call is one image)
  ours2w      the same with GAN_WORKERS=2 (two BentoML worker processes)
  ours1w      GAN_WORKERS=1 (one worker; ORT then picks its own thread count)
  slowpath    GAN_FAST_PATH=false: our routes behind BentoML's middlewares (service/fast_path.py)
  nosplit     GAN_SPLIT_THREADS=1: a lone worker never cuts a big batch across the idle cores
              (service/core_share.py)
  ort1        GAN_ORT_THREADS=1 (one ONNX Runtime intra-op thread); ours2w_ort1 both
  bare        the same Starlette app under plain uvicorn, no BentoML (bench/bare_server.py)
  torchserve  TorchServe 0.12, the peer's archive and handler, --ts-config W:DELAY:THREADS
  pytriton    PyTriton 0.7 (Triton 2.51, its dynamic batcher, CPU) through the peer's own run.sh,
              --pt-config INSTANCES:MAX_QUEUE_DELAY_US, Triton's v2 request (same seeds and n);
              it serves --pt-onnx (default: the TorchServe peer's export, TorchServe's network)
  ceiling     in-process ORT batch 64 + PNG + base64 (bench/inproc.py --quick), one process
              (ORT's default threads), only at the points listed in --ceiling-at
  ceiling2    the same in two processes at once, 1 ORT thread each, started together: the sum
              of their images/s (what two 1-thread workers could do at most on 2 cores)

Phases (each optional): ``--loads`` (the main table), ``--score`` (/score, ours only),
``--sweep-n`` and ``--sweep-c`` (the scaling figure). Results: OUT/results.jsonl (one JSON
object per measured point), OUT/meta.json; ``bench/report.py OUT`` makes the tables and plot.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

DEFAULT_LOADS = "1:1 8:1 64:1 256:1 1:16 8:16 64:16 256:16"
DEFAULT_SCORE = "1:1 8:1 64:1 8:16"
DEFAULT_SWEEP_N = "1 2 4 8 16 32 64"
DEFAULT_SWEEP_C = "1 2 4 8 16 32 64 128 256"

PEERS = ("torchserve", "pytriton")

SYSTEM_ENV = {
    "ours": {},
    "nobatch": {"GAN_MAX_BATCH_SIZE": "1"},
    "ours2w": {"GAN_WORKERS": "2"},
    "ours1w": {"GAN_WORKERS": "1"},  # the default before GAN_WORKERS=auto
    "slowpath": {"GAN_FAST_PATH": "false"},
    "cudaexh": {
        "GAN_CUDA_CONV_ALGO": "exhaustive"
    },  # ONNX Runtime's own default on CUDA  # every request through BentoML's middlewares
    "nosplit": {"GAN_SPLIT_THREADS": "1"},
    "ort1": {"GAN_ORT_THREADS": "1"},
    "ours2w_ort1": {"GAN_WORKERS": "2", "GAN_ORT_THREADS": "1"},
    "bare": {},
}


def parse_points(text: str) -> list[tuple[int, int]]:
    points = []
    for item in text.split():
        c, _, n = item.partition(":")
        points.append((int(c), int(n or 1)))
    return points


CEILING_SYSTEMS = {"ceiling": 1, "ceiling2": 2}  # name -> processes


def probe(server: h.Server, n: int = 2) -> tuple[int, int]:
    """One real request before any load, in the server's own protocol: the answer must hold n
    PNG images, and the first must decode. Returns its (width, height)."""
    from PIL import Image

    body = h.post_json(server.generate_url, h.generate_body(server.protocol, 7, n))
    try:
        images = h.answer_images(server.protocol, body)
        with Image.open(io.BytesIO(base64.b64decode(images[0]))) as im:
            if im.format != "PNG":
                raise ValueError(f"not a PNG: {im.format}")
            im.load()
            size = im.size
    except (KeyError, IndexError, ValueError, OSError) as exc:
        raise RuntimeError(
            f"{server.name}: bad answer to a probe ({exc}): {str(body)[:300]}"
        ) from exc
    if len(images) != n:
        raise RuntimeError(f"{server.name}: {len(images)} images for n={n}: {str(body)[:300]}")
    return size


def score_body(server: h.Server, k: int, workdir: Path) -> Path:
    """A multipart body of k PNGs the service generated itself (seeds 0..k-1)."""
    body = h.post_json(server.generate_url, {"seed": 0, "n": k})
    files = [(f"img{i}.png", base64.b64decode(x["png"])) for i, x in enumerate(body["images"])]
    path = workdir / f"score-body-{k}.bin"
    path.write_bytes(h.multipart_body(files))
    return path


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out.resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.out / "work"
        self.work.mkdir(exist_ok=True)
        self.results = self.out / "results.jsonl"
        self.servers: dict[str, h.Server] = {}
        self.providers: dict[str, str | None] = {}
        self.t0 = time.monotonic()

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=sys.stderr, flush=True)

    def record(self, row: dict[str, Any]) -> None:
        with self.results.open("a") as f:
            f.write(json.dumps(row) + "\n")

    # -- servers --------------------------------------------------------------------------------

    def start(self, systems: list[str]) -> None:
        a = self.args
        for name in systems:
            if name in CEILING_SYSTEMS:
                continue
            self.log(f"starting {name}")
            if name == "torchserve":
                w, d, t = (int(x) for x in a.ts_config.split(":"))
                server = h.start_torchserve(
                    self.work, workers=w, delay_ms=d, threads=t, port_base=a.ts_port_base
                )
            elif name == "pytriton":
                server = h.start_pytriton(
                    self.work, onnx=a.pt_onnx, config=a.pt_config, port=a.pt_port
                )
            elif name in SYSTEM_ENV:
                env = {**SYSTEM_ENV[name], "GAN_PROVIDER": a.provider}
                if a.model:
                    env["GAN_DEFAULT_MODEL"] = a.model
                server = h.start_ours(
                    name, a.models_dir, env=env, workdir=self.work, bare=name == "bare"
                )
            else:
                raise SystemExit(f"unknown system {name!r}")
            width, height = probe(server)
            if name not in PEERS:
                self.providers[name] = h.get_json(server.base_url + "/models").get("provider")
            self.servers[name] = server
            self.log(
                f"{name} ready at {server.generate_url} (pids {server.usage()['pids']}; "
                f"probe n=2: 2 PNGs {width}x{height})"
            )

    def stop(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                server.stop()

    # -- one point ------------------------------------------------------------------------------

    def ceiling(self, processes: int = 1) -> dict[str, Any]:
        """bench/inproc.py --quick in ``processes`` processes at once (more than one: 1 ORT
        thread each, timing started at the same wall-clock instant); their images/s summed."""
        cmds, outs = [], []
        start_at = time.time() + self.args.ceiling_start_s if processes > 1 else None
        for i in range(processes):
            out = self.work / f"ceiling-{processes}p-{i}.json"
            out.unlink(missing_ok=True)
            outs.append(out)
            cmd = [
                sys.executable,
                str(h.BENCH / "inproc.py"),
                str(self.args.models_dir / self.model_name()),
                "--quick",
                "--secs",
                str(self.args.ceiling_secs),
                "--provider",
                "cuda" if self.args.provider == "cuda" else "cpu",
                "--json-out",
                str(out),
            ]
            if start_at is not None:
                cmd += ["--threads", "1", "--start-at", f"{start_at:.3f}"]
            cmds.append(cmd)
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for cmd in cmds]
        for proc, cmd in zip(procs, cmds, strict=True):
            if proc.wait(timeout=600) != 0:
                raise subprocess.CalledProcessError(proc.returncode, cmd)
        return ceiling_row([json.loads(out.read_text()) for out in outs]) | {
            "wall_s": round(time.perf_counter() - t0, 2),
            "load_average": h.load_average(),
        }

    def model_name(self) -> str:
        if self.args.model:
            return str(self.args.model)
        return sorted(
            d.name
            for d in self.args.models_dir.iterdir()
            if d.is_dir() and not d.name.startswith((".", "_"))
        )[0]

    def point(
        self,
        phase: str,
        systems: list[str],
        c: int,
        n: int,
        rnd: int,
        seconds: float,
        warmup: float,
        with_ceiling: bool = False,
        score_file: Path | None = None,
    ) -> None:
        order = [s for s in systems if s in self.servers]
        if with_ceiling:
            order += [s for s in systems if s in CEILING_SYSTEMS]
        shift = rnd % len(order)
        order = order[shift:] + order[:shift]
        for name in order:
            row: dict[str, Any] = {"phase": phase, "system": name, "c": c, "n": n, "round": rnd}
            if name in CEILING_SYSTEMS:
                row |= self.ceiling(CEILING_SYSTEMS[name])
            else:
                server = self.servers[name]
                idle = [s for k, s in self.servers.items() if k != name]
                if score_file is not None:
                    url = server.base_url + "/score"
                    lua = h.WRK_DIR / "score.lua"
                    env = {"BODY_FILE": str(score_file)}
                else:
                    url, lua = server.generate_url, h.WRK_DIR / "generate.lua"
                    env = {"BODY": server.protocol}
                row |= h.run_wrk(
                    url,
                    c=c,
                    n=n,
                    seconds=seconds,
                    warmup=warmup,
                    lua=lua,
                    env=env,
                    server=server,
                    idle=idle,
                )
            self.record(row)
            self.log(
                f"{phase:8s} r{rnd} c={c:<3d} n={n:<3d} {name:10s} img/s={row['img_per_s']:8.0f}"
                + (
                    f" p50={row['p50_ms']:7.2f} p99={row['p99_ms']:8.2f} err={row['errors']}"
                    f" srv={row.get('server_cpu_cores', 0):.2f}c cli={row.get('client_cpu_cores', 0):.2f}c"
                    f" rss={row.get('server_rss_mb', 0):.0f}MB"
                    if "p50_ms" in row
                    else ""
                )
                + f" load={row['load_average'][0]}"
            )

    # -- phases ---------------------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        systems = a.systems.split(",")
        meta = {
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "load_average_start": h.load_average(),
            "models_dir": str(a.models_dir),
            "model": self.model_name(),
            "systems": systems,
            "ts_config": a.ts_config,
            "pt_config": a.pt_config if "pytriton" in systems else None,
            "pt_onnx": str(a.pt_onnx) if "pytriton" in systems else None,
            "provider": a.provider,
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "wrk": subprocess.run(
                [h.need_wrk(), "--version"], capture_output=True, text=True, check=False
            ).stdout.splitlines()[:1],
        }
        (self.out / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            self.start(systems)
            with_ceiling = any(s in CEILING_SYSTEMS for s in systems)
            ceiling_at = set(parse_points(a.ceiling_at)) if with_ceiling else set()
            for rnd in range(a.rounds):
                for c, n in parse_points(a.loads):
                    self.point(
                        "load", systems, c, n, rnd, a.duration, a.warmup, (c, n) in ceiling_at
                    )
            if a.score and "ours" in self.servers:
                bodies: dict[int, Path] = {}
                for rnd in range(a.score_rounds):
                    for c, k in parse_points(a.score):
                        if k not in bodies:
                            bodies[k] = score_body(self.servers["ours"], k, self.work)
                        self.point(
                            "score",
                            ["ours"],
                            c,
                            k,
                            rnd,
                            a.duration,
                            a.warmup,
                            score_file=bodies[k],
                        )
            sweep_systems = [s for s in a.sweep_systems.split(",") if s in self.servers]
            for n in [int(x) for x in a.sweep_n.split()]:
                self.point(
                    "sweep_n", sweep_systems, a.sweep_n_c, n, 0, a.sweep_duration, a.sweep_warmup
                )
            for c in [int(x) for x in a.sweep_c.split()]:
                self.point("sweep_c", sweep_systems, c, 1, 0, a.sweep_duration, a.sweep_warmup)
        finally:
            self.stop()
            meta["providers"] = self.providers
            meta["load_average_end"] = h.load_average()
            meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
            meta["seconds"] = round(time.monotonic() - self.t0, 1)
            (self.out / "meta.json").write_text(json.dumps(meta, indent=1))
        self.log(f"done: {self.results}")


def ceiling_row(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One ceiling figure from the JSON of each of its inproc.py processes (ran at once): the
    sum of their images/s, each process's own, and how late the last one began timing."""
    cells = [r["rows"][0] for r in results]
    row: dict[str, Any] = {
        "img_per_s": sum(c["png_b64"] for c in cells),
        "pil_b64_img_per_s": sum(c["pil_b64"] for c in cells),
        "processes": len(cells),
    }
    if len(cells) > 1:
        row["per_process_img_per_s"] = [c["png_b64"] for c in cells]
        row["start_late_s"] = max(r.get("start_late_s", 0.0) for r in results)
    return row


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument("--model", help="GAN_DEFAULT_MODEL (default: first folder)")
    ap.add_argument(
        "--out", type=Path, default=Path(f"bench/results/{time.strftime('%Y%m%d-%H%M%S')}")
    )
    ap.add_argument("--systems", default="ours,ours2w,torchserve,pytriton,nobatch,ceiling")
    ap.add_argument(
        "--provider", choices=("auto", "cpu", "cuda"), default="auto", help="GAN_PROVIDER of ours"
    )
    ap.add_argument("--ts-config", default="2:5:1", help="TorchServe WORKERS:DELAY_MS:THREADS")
    ap.add_argument("--ts-port-base", type=int, default=8280)
    ap.add_argument(
        "--pt-config", default="1:0", help="PyTriton INSTANCES:MAX_QUEUE_DELAY_US (the peer's best)"
    )
    ap.add_argument("--pt-port", type=int, default=8400, help="PyTriton HTTP (gRPC +1, metrics +2)")
    ap.add_argument(
        "--pt-onnx",
        type=Path,
        default=h.TS_BASE / "model" / "generator.onnx",
        help="generator PyTriton serves (default: the TorchServe peer's, from prepare_peer.sh)",
    )
    ap.add_argument("--loads", default=DEFAULT_LOADS, help='"C:N ..." main table points')
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--ceiling-at", default="8:16", help="load points that also run the ceiling")
    ap.add_argument("--ceiling-secs", type=float, default=1.5)
    ap.add_argument(
        "--ceiling-start-s",
        type=float,
        default=4.0,
        help="ceiling2: its processes start timing this long after launch (imports first)",
    )
    ap.add_argument("--score", default=DEFAULT_SCORE, help='"C:K ..." /score points (K images)')
    ap.add_argument("--score-rounds", type=int, default=1)
    ap.add_argument("--sweep-systems", default="ours,ours2w,torchserve")
    ap.add_argument("--sweep-n", default=DEFAULT_SWEEP_N)
    ap.add_argument("--sweep-n-c", type=int, default=8)
    ap.add_argument("--sweep-c", default=DEFAULT_SWEEP_C)
    ap.add_argument("--sweep-duration", type=float, default=5.0)
    ap.add_argument("--sweep-warmup", type=float, default=1.0)
    ap.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="priority of the whole benchmark, servers included (default -10; 0: unchanged)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s points, 1 round, few points (checks the harness, not the numbers)",
    )
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 0.5, 1
        args.loads = "1:1 64:1 8:16"
        args.score = "8:1"
        args.sweep_n, args.sweep_c = "1 16", "1 64"
        args.sweep_duration, args.sweep_warmup, args.ceiling_secs = 2.0, 0.5, 0.6
    h.need_wrk()
    if "torchserve" in args.systems.split(",") and not h.ts_ready():
        raise SystemExit("TorchServe peer not built: run `bash bench/prepare_peer.sh` first")
    if "pytriton" in args.systems.split(","):
        if not h.pt_ready():
            raise SystemExit("PyTriton peer not built: run `bash bench/prepare_peer.sh` first")
        if not args.pt_onnx.is_file():
            raise SystemExit(f"no generator for PyTriton at {args.pt_onnx} (--pt-onnx)")
    h.exit_on_sigterm()
    h.take_priority(args.nice)
    Bench(args).run()


if __name__ == "__main__":
    main()
