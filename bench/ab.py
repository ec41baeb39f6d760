"""Interleaved A/B of code trees (and model folders) on /generate: ``bentoml serve`` from each,
wrk n=1 c=64 after a warm-up, the systems alternating in every round.

    python bench/ab.py --system before=/tmp/old:/tmp/old/models --system after=.:models \\
        --rounds 3 --out bench/results/ab.jsonl

Each ``--system NAME=CODE:MODELS`` serves the models folder MODELS with the code in CODE (a
checkout; relative paths are from the current directory). One JSON line per (round, system).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import parse_wrk_output, start_ours

LUA = Path(__file__).resolve().parent / "wrk" / "generate.lua"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", action="append", required=True, help="NAME=CODE:MODELS")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    systems = []
    for spec in args.system:
        name, _, rest = spec.partition("=")
        code, _, models = rest.partition(":")
        systems.append((name, Path(code).resolve(), Path(models).resolve()))
    out = args.out.open("a") if args.out else None
    # wrk refuses more threads than connections
    wrk = ["wrk", f"-t{min(2, args.connections)}", f"-c{args.connections}", "-s", str(LUA)]
    for r in range(args.rounds):
        for name, code, models in systems:
            with tempfile.TemporaryDirectory() as tmp:
                srv = start_ours(name, models, workdir=Path(tmp), cwd=code)
                try:
                    env = {**os.environ, "N": "1"}
                    url = srv.generate_url
                    subprocess.run([*wrk, f"-d{args.warmup:g}s", url], capture_output=True, env=env)
                    text = subprocess.run(
                        [*wrk, f"-d{args.duration:g}s", "--latency", url],
                        capture_output=True,
                        text=True,
                        env=env,
                    ).stdout
                    res = parse_wrk_output(text)
                finally:
                    srv.stop()
            row = {
                "round": r,
                "system": name,
                "load": round(os.getloadavg()[0], 2),
                **{k: res[k] for k in ("req_per_s", "p50_ms", "p99_ms", "errors")},
            }
            print(json.dumps(row), flush=True)
            if out:
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
