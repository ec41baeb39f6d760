"""Choose the bundled MNIST generator: train candidate recipes side by side, export and rank them.

    python -m training.sweep --out runs/mnist-sweep [--device cuda] [--parallel 6]
        [--time-limit 300] [--only NAME,...] [--data-root DIR]

Every candidate is a plain ``training.train`` run (own folder, config, self-describing checkpoints)
exported by ``training.export`` to ``OUT/models/NAME`` (parity checks, then the metrics of
``training.metrics`` on 10,000 seeds). A run still going at ``--time-limit`` gets SIGTERM, which makes
the trainer checkpoint and stop: the export then says which step it reached. The ranking puts the
candidates that meet the class-balance target (KL(generated || real) <= 0.05 nats) first, then orders
by FID_c. Results: ``OUT/sweep.json`` and ``OUT/sweep.md``.

The candidates are the mode-collapse remedies of ``docs/training.md`` applied to the DCGAN: a wider
pair, a bigger batch, PacGAN packing, SNGAN's hinge + spectral norm + TTUR, LSGAN and WGAN-GP.
The first one is also trained for 200 steps as the deliberately weak model whose FID_c is the
ceiling every export reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KL_TARGET = 0.05
WEAK = "early"
WEAK_STEPS = 200


@dataclass(frozen=True)
class Candidate:
    name: str
    args: tuple[str, ...]
    why: str


CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        "w64-ns",
        ("--width", "64", "--loss", "ns", "--ema", "0.999", "--steps", "12000"),
        "the bundled width-32 recipe at twice the channels (the TorchServe peer's generator)",
    ),
    Candidate(
        "w64-ns-b256",
        (
            "--width", "64", "--loss", "ns", "--ema", "0.999", "--batch-size", "256",
            "--steps", "8000",
        ),
        "a bigger batch: every D step sees more of every class",
    ),
    Candidate(
        "w64-pac2",
        ("--width", "64", "--loss", "ns", "--pack", "2", "--ema", "0.999", "--steps", "12000"),
        "PacGAN: D judges two samples at once, so a batch short of a class is easier to spot",
    ),
    Candidate(
        "w64-hinge-sn-ttur",
        (
            "--width", "64", "--loss", "hinge", "--spectral-norm", "--lr-d", "4e-4",
            "--lr-g", "1e-4", "--beta1", "0.0", "--beta2", "0.9", "--ema", "0.999",
            "--steps", "12000",
        ),
        "SNGAN's recipe: hinge loss, spectral norm on D, TTUR",
    ),
    Candidate(
        "w64-lsgan",
        ("--width", "64", "--loss", "lsgan", "--ema", "0.999", "--steps", "12000"),
        "least squares: no saturation, gradients for fakes far from the boundary",
    ),
    Candidate(
        "w64-wgan-gp",
        ("--width", "64", "--loss", "wgan-gp", "--ema", "0.999", "--steps", "4000"),
        "Earth-Mover critic with gradient penalty (5 critic steps per G step)",
    ),
    Candidate(
        "w32-pac2",
        ("--width", "32", "--loss", "ns", "--pack", "2", "--ema", "0.999", "--steps", "12000"),
        "packing on the lighter width-32 pair that ships today",
    ),
)  # fmt: skip


def choose(
    candidates: tuple[Candidate, ...], only: str | None, parser: argparse.ArgumentParser
) -> list[Candidate]:
    """The candidates ``--only`` names (comma-separated), in table order; all without it."""
    if not only:
        return list(candidates)
    names = only.split(",")
    unknown = set(names) - {c.name for c in candidates}
    if unknown:
        parser.error(f"unknown candidate(s): {', '.join(sorted(unknown))}")
    return [c for c in candidates if c.name in names]


def _train_cmd(c: Candidate, out: Path, args: argparse.Namespace, steps: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "training.train", "--dataset", "mnist", *c.args]
    if steps is not None:
        cmd += ["--steps", str(steps)]  # argparse keeps the last --steps
    cmd += [
        "--out", str(out), "--device", args.device, "--num-threads", str(args.threads),
        "--seed", str(args.seed), "--sample-every", "2000", "--ckpt-every", "2000",
        "--no-progress", "--force",
    ]  # fmt: skip
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return cmd


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def run_parallel(
    jobs: list[tuple[str, list[str], Path]], parallel: int, limit: float, threads: int
) -> dict[str, dict[str, Any]]:
    """Run ``(name, cmd, log)`` jobs, at most ``parallel`` at once; SIGTERM any past ``limit`` s."""
    pending = list(jobs)
    # name -> (process, start time, its log file, SIGTERM sent)
    running: dict[str, tuple[subprocess.Popen[bytes], float, IO[str], bool]] = {}
    done: dict[str, dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            f: IO[str] = log.open("w")
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(threads))
            running[name] = (p, time.monotonic(), f, False)
            print(f"[sweep] start {name}: {' '.join(cmd[1:])}", flush=True)
        for name, (p, t0, f, termed) in list(running.items()):
            elapsed = time.monotonic() - t0
            if p.poll() is None:
                if elapsed > limit and not termed:
                    p.send_signal(signal.SIGTERM)  # the trainer checkpoints, then exits
                    running[name] = (p, t0, f, True)
                elif elapsed > limit + 60:
                    p.kill()
                continue
            f.close()
            done[name] = {"rc": p.returncode, "seconds": round(elapsed, 1), "stopped_early": termed}
            print(f"[sweep] end {name}: rc {p.returncode} after {elapsed:.0f} s", flush=True)
            del running[name]
        time.sleep(0.5)
    return done


def _evaluation(model_dir: Path) -> dict[str, Any]:
    m = json.loads((model_dir / "model.json").read_text())
    ev = m.get("evaluation") or {}
    feats, classes = ev.get("features", {}), ev.get("classes", {})
    return {
        "step": m["training"]["step"],
        "kl": classes.get("kl_generated_real_nats"),
        "histogram": classes.get("generated_histogram"),
        "fid_c": feats.get("fid_c"),
        "kid_c": feats.get("kid_c"),
        "top1_confidence": classes.get("mean_top1_confidence"),
        "auc_real_vs_generated": (ev.get("realness") or {}).get("auc_real_vs_generated"),
    }


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates meeting the KL target first, then by FID_c; failed ones last."""

    def key(r: dict[str, Any]) -> tuple[int, float]:
        if r.get("kl") is None or r.get("fid_c") is None:
            return (2, float("inf"))
        return (0 if r["kl"] <= KL_TARGET else 1, float(r["fid_c"]))

    return sorted(rows, key=key)


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# MNIST generator sweep",
        "",
        f"`{meta['command']}` on {meta['machine']}; {meta['wall_s']:.0f} s wall. Ranked: KL(gen‖real) "
        f"≤ {KL_TARGET} first, then FID_c (10,000 seeds, `training.metrics`).",
        "",
        "| rank | candidate | step | KL gen‖real | FID_c | KID_c | top-1 conf | AUC real vs gen | train s | why |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(rows, 1):
        out.append(
            f"| {i} | {r['name']} | {r.get('step', '-')} | {r.get('kl', '-')} | {r.get('fid_c', '-')} | "
            f"{r.get('kid_c', '-')} | {r.get('top1_confidence', '-')} | {r.get('auc_real_vs_generated', '-')} | "
            f"{r.get('train_s', '-')} | {r['why']} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.sweep", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=len(CANDIDATES) + 1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per process")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per training run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma-separated candidate names")
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, help="override every candidate's steps (smoke tests)")
    p.add_argument("--weak-steps", type=int, default=WEAK_STEPS)
    args = p.parse_args(argv)
    chosen = choose(CANDIDATES, args.only, p)
    t0 = time.monotonic()
    runs, models, logs = args.out / "runs", args.out / "models", args.out / "logs"
    jobs = [
        (
            WEAK,
            _train_cmd(chosen[0], runs / WEAK, args, args.weak_steps),
            logs / f"train-{WEAK}.log",
        )
    ]
    jobs += [
        (c.name, _train_cmd(c, runs / c.name, args, args.steps), logs / f"train-{c.name}.log")
        for c in chosen
    ]
    trained = run_parallel(jobs, args.parallel, args.time_limit, args.threads)

    def export_cmd(name: str, evaluate: bool) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "training.export",
            str(runs / name),
            "--name",
            "mnist-dcgan",
            "--out",
            str(models / name),
        ]
        if args.data_root:
            cmd += ["--data-root", args.data_root]
        if not evaluate:
            cmd.append("--no-eval")
        elif (models / WEAK / "model.json").exists():
            cmd += ["--compare-weak", str(models / WEAK)]
        return cmd

    run_parallel(
        [(WEAK, export_cmd(WEAK, False), logs / f"export-{WEAK}.log")], 1, 600, args.threads
    )
    ok = [c for c in chosen if (runs / c.name / "ckpt-latest.pt").exists()]
    exported = run_parallel(
        [(c.name, export_cmd(c.name, True), logs / f"export-{c.name}.log") for c in ok],
        args.parallel, 900, args.threads,
    )  # fmt: skip
    rows = []
    for c in chosen:
        row: dict[str, Any] = {"name": c.name, "why": c.why, "args": list(c.args)}
        row["train_s"] = trained.get(c.name, {}).get("seconds")
        row["stopped_early"] = trained.get(c.name, {}).get("stopped_early")
        if exported.get(c.name, {}).get("rc") == 0:
            row.update(_evaluation(models / c.name))
        rows.append(row)
    rows = rank(rows)
    meta = {
        "command": "python -m training.sweep "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, device {args.device})",
        "wall_s": time.monotonic() - t0,
        "time_limit_s": args.time_limit,
    }
    try:
        import torch

        if args.device.startswith("cuda") and torch.cuda.is_available():
            meta["machine"] += f", {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(
        json.dumps({"meta": meta, "ranking": rows}, indent=1) + "\n"
    )
    (args.out / "sweep.md").write_text(render(rows, meta))
    print(render(rows, meta))
    return 0 if rows and rows[0].get("kl") is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
