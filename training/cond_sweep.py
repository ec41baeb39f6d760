"""Choose the bundled class-conditional generators: train candidates side by side under one wall-
clock budget, export them, judge them by the quality targets of ``training.metrics``, ship the best.

    python -m training.cond_sweep --out runs/cond-sweep --dataset mnist,fashion-mnist
        [--device cuda] [--parallel 16] [--threads 1] [--train-seconds 300] [--probe-seconds 40]
        [--eval-n 2000] [--final-n 10000] [--eval-threads 8] [--only NAME,...] [--data-root DIR]

Built for one short call on a GPU machine (bench/gpu_train.sh, docs/training.md): every candidate
of every dataset trains at once, for the same wall time. A candidate's step count is what fits that
time: each run first trains for ``--probe-seconds`` with a step count too large to reach (so the
learning rate is still constant), is stopped by SIGTERM (the trainer checkpoints), and resumes with
``--steps`` set from the rate it measured under the full load, so its learning-rate decay ends on
time (``--steps N`` skips the probe: fixed step counts, for smoke tests on a CPU).

Every run is exported by ``training.export --no-eval`` to ``OUT/models/DATASET/NAME`` and judged
in one process per dataset (the real-data reference is computed once per process) at ``--eval-n``
seeds per seed set, over the two seed sets of ``training.metrics``. Ranking: the number of targets
met (``summary.targets`` of the report, issue 13), then the worst margin, a target's ratio over its
threshold (above 1 is a pass), so the candidate nearest to passing everything comes first. The
winner is exported again, with the metrics at ``--final-n``, to ``OUT/best/<bundled name>``.
Results: ``OUT/sweep.json`` and ``OUT/sweep.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from training.sweep import Candidate, choose, run_parallel

BUNDLED_NAME = {"mnist": "mnist-dcgan", "fashion-mnist": "fashion-dcgan"}
# Far more steps than any budget reaches: with --lr-decay 0.5 the rate stays constant until half
# of them, so the probe trains exactly like the first steps of the calibrated run.
PROBE_STEPS = 10_000_000
# What every candidate shares with the bundled recipe (docs/training.md): SNGAN's hinge loss,
# spectral norm on D, TTUR, a generator EMA and a linear decay over the last half.
BASE = (
    "--conditional", "--loss", "hinge", "--spectral-norm", "--lr-d", "4e-4", "--lr-g", "1e-4",
    "--beta1", "0", "--beta2", "0.9", "--ema", "0.999", "--lr-decay", "0.5",
)  # fmt: skip

CANDIDATES: tuple[Candidate, ...] = (
    Candidate("w64", ("--width", "64"), "the bundled recipe, for scale: what the budget buys it"),
    Candidate("w96", ("--width", "96"), "a wider pair: more capacity for the missing density"),
    Candidate("w128", ("--width", "128"), "twice the bundled width"),
    Candidate(
        "w128-b128", ("--width", "128", "--batch-size", "128"), "wider, and each D step sees more"
    ),
    Candidate(
        "w96-b256",
        ("--width", "96", "--batch-size", "256", "--lr-d", "8e-4", "--lr-g", "2e-4"),
        "a big batch with doubled rates (fewer, better-estimated steps)",
    ),
    Candidate(
        "w128-ema9999",
        ("--width", "128", "--ema", "0.9999"),
        "a longer generator average: precision and density of the averaged G",
    ),
    Candidate(
        "w128-ncritic2",
        ("--width", "128", "--n-critic", "2"),
        "two D steps per G step: a sharper critic pushes G onto the manifold",
    ),
    Candidate(
        "w128-b128-lrg2e-4",
        ("--width", "128", "--batch-size", "128", "--lr-g", "2e-4"),
        "a TTUR of 1:2 instead of 1:4 at batch 128: G moves faster",
    ),
)

_NEEDED = re.compile(r"^ratio\s*(>=|<=|<|>)\s*([0-9.]+)$")


# --------------------------------------------------------------------------------------------
# Judging: margins and the ranking
# --------------------------------------------------------------------------------------------


def margin(target: dict[str, Any]) -> float | None:
    """How far a target of ``training.metrics`` is met: > 1 passes, < 1 fails, by that factor.

    "ratio >= f" gives ratio / f, "ratio < t" and "ratio <= t" give t / ratio, and the
    memorisation target (value <= reference + 2 SE) gives (reference + 2 SE) / value. None where
    the report has no figure. A ``needed`` this does not know is an error, not a silent skip: a
    new target must be ranked on purpose.
    """
    needed = target["needed"]
    if needed == "value <= reference + 2 SE":
        value, ref = target.get("value"), target.get("reference_value")
        if value is None or ref is None:
            return None
        limit = ref + 2 * (target.get("standard_error") or 0.0)
        return math.inf if value <= 0 else limit / value
    m = _NEEDED.match(needed)
    if m is None:
        raise ValueError(f"unknown target threshold {needed!r} ({target.get('target')})")
    ratio, op, bound = target.get("ratio"), m.group(1), float(m.group(2))
    if ratio is None:
        return None
    if op in (">=", ">"):
        return ratio / bound
    return math.inf if ratio <= 0 else bound / ratio


def score(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """Targets met (of those that apply), the worst margin and which target it is."""
    judged = [t for t in targets if t.get("pass") is not None]
    margins = [(margin(t), t["target"]) for t in judged]
    known = [(m, name) for m, name in margins if m is not None]
    worst = min(known, default=(None, None))
    return {
        "passed": sum(1 for t in judged if t["pass"]),
        "judged": len(judged),
        "worst_margin": None if worst[0] is None else round(worst[0], 4),
        "worst_target": worst[1],
        "margins": {
            t["target"]: None if m is None else round(m, 4)
            for (m, _), t in zip(margins, judged, strict=True)
        },
    }


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most targets met first, then the largest worst margin; unjudged candidates last."""

    def key(r: dict[str, Any]) -> tuple[int, float, float]:
        s = r.get("score")
        if not s or s.get("worst_margin") is None:
            return (1, 0.0, 0.0)
        return (0, -s["passed"], -s["worst_margin"])

    return sorted(rows, key=key)


# --------------------------------------------------------------------------------------------
# Training: the probe, the calibrated step count
# --------------------------------------------------------------------------------------------


def read_records(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measured_rate(records: list[dict[str, Any]]) -> float | None:
    """Steps per second over the second half of the logged lines (the first ones include the
    warm-up: cuDNN's choices, the allocator growing); with fewer than 3 lines, the average since
    the loop began; None with none."""
    timed = [r for r in records if "elapsed_s" in r and "step" in r]
    if not timed:
        return None
    if len(timed) < 3:
        last = timed[-1]
        return last["step"] / last["elapsed_s"] if last["elapsed_s"] > 0 else None
    first, last = timed[len(timed) // 2 - 1], timed[-1]
    dt = last["elapsed_s"] - first["elapsed_s"]
    return (last["step"] - first["step"]) / dt if dt > 0 else None


def _stopped_at(run: Path, records: list[dict[str, Any]]) -> int:
    """The checkpoint's step (summary.json, written at the stop), else the last logged one."""
    summary = run / "summary.json"
    if summary.is_file():
        return int(json.loads(summary.read_text())["step"])
    return int(records[-1]["step"]) if records else 0


def calibrated_steps(
    step_now: int, rate: float | None, seconds_left: float, overhead_s: float, lr_decay: float
) -> int | None:
    """The step count whose end falls at the deadline: ``rate`` steps/s over the seconds left
    after the restart's overhead, with 5% spare. None when there is no rate, or when the probe
    already went past the point where the decay would have begun (the run would not be the
    recipe any more)."""
    if rate is None or rate <= 0:
        return None
    steps = step_now + int(0.95 * rate * max(seconds_left - overhead_s, 0.0))
    if step_now > (1.0 - lr_decay) * steps:
        return None
    return steps


def _base_train_cmd(dataset: str, c: Candidate, run: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "training.train", "--dataset", dataset, *BASE, *c.args,
        *shlex.split(args.override), "--out", str(run), "--device", args.device,
        "--num-threads", str(args.threads), "--seed", str(args.seed),
        *(["--data-root", args.data_root] if args.data_root else []),
        # Lines often enough for the probe's rate; samples and checkpoints at the end only.
        "--log-every", "20", "--sample-every", "100000", "--ckpt-every", "100000",
        "--no-progress", "--force",
        "--no-tensorboard", "--no-download",
    ]  # fmt: skip


def _resume_cmd(run: Path, steps: int, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "training.train", "--out", str(run), "--resume",
        "--steps", str(steps), "--device", args.device, "--num-threads", str(args.threads),
        "--no-progress", "--no-tensorboard", "--no-download",
    ]  # fmt: skip


def train_all(
    jobs: list[tuple[str, str, Candidate]], runs: Path, logs: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Train every (key, dataset, candidate); returns per key what happened."""
    t0 = time.monotonic()
    info: dict[str, dict[str, Any]] = {key: {} for key, _, _ in jobs}
    if args.steps is not None:
        cmds = [
            (key, [*_base_train_cmd(ds, c, runs / key, args), "--steps", str(args.steps)],
             logs / f"train-{key.replace('/', '-')}.log")
            for key, ds, c in jobs
        ]  # fmt: skip
        for key, r in run_parallel(cmds, args.parallel, args.train_seconds, args.threads).items():
            info[key].update(train=r)
        return info
    probe = [
        (key, [*_base_train_cmd(ds, c, runs / key, args), "--steps", str(PROBE_STEPS)],
         logs / f"probe-{key.replace('/', '-')}.log")
        for key, ds, c in jobs
    ]  # fmt: skip
    probed = run_parallel(probe, args.parallel, args.probe_seconds, args.threads)
    seconds_left = args.train_seconds - (time.monotonic() - t0)
    resumes = []
    for key, _, _ in jobs:
        records = read_records(runs / key)
        rate = measured_rate(records)
        step_now = _stopped_at(runs / key, records)
        # A restart costs what the probe spent outside its loop: start-up, data, checkpoint.
        overhead = probed[key]["seconds"] - (records[-1]["elapsed_s"] if records else 0.0)
        steps = calibrated_steps(step_now, rate, seconds_left, overhead, 0.5)
        info[key].update(
            probe={**probed[key], "step": step_now, "steps_per_s": rate and round(rate, 2)},
            steps=steps,
        )
        if steps is not None and (runs / key / "ckpt-latest.pt").exists():
            resumes.append(
                (
                    key,
                    _resume_cmd(runs / key, steps, args),
                    logs / f"train-{key.replace('/', '-')}.log",
                )
            )
        else:
            info[key]["error"] = "probe measured no step rate (or its checkpoint is missing)"
    limit = max(seconds_left, 1.0) + args.grace_seconds
    for key, r in run_parallel(resumes, args.parallel, limit, args.threads).items():
        info[key].update(train=r)
    return info


# --------------------------------------------------------------------------------------------
# Export and judge
# --------------------------------------------------------------------------------------------


def _export_cmd(run: Path, name: str, out: Path, args: argparse.Namespace) -> list[str]:
    """The exporter's parity checks and realness fit, no metrics: the judges do those."""
    cmd = [sys.executable, "-m", "training.export", str(run), "--name", name, "--out", str(out)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    return [*cmd, "--no-eval"]


def finite(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every non-finite float replaced by None, and where those were.

    JSON has no inf: a KL(generated || reference) is inf when the reference lacks a class the
    generator makes (tiny data sets; never with 5,000 real digits), and the candidate must still
    get its verdict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path]
    if isinstance(value, dict):
        pairs = [(k, finite(v, f"{path}.{k}")) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, [p for _, (_, ps) in pairs for p in ps]
    if isinstance(value, list):
        items = [finite(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, ps in items for p in ps]
    return value, []


def judge(folders: list[Path], n: int, data_root: str | None, card_run: Path | None) -> int:
    """Evaluate each folder in this process (one real-data reference for all) and store the
    report under ``evaluation`` in its model.json, like ``training.metrics --write``. With
    ``card_run`` (the shipped model) the model card is written again around the new report."""
    from training.metrics import evaluate_model_dir, write_evaluation

    failed = 0
    for folder in folders:
        t = time.monotonic()
        try:
            # The shipped folder's report names where it will live: models/NAME.
            shown = None if card_run is None else f"models/{folder.name}"
            report, replaced = finite(
                evaluate_model_dir(folder, n, data_root=data_root, display_path=shown)
            )
            if replaced:
                report["non_finite_as_null"] = [p.lstrip(".") for p in replaced]
            write_evaluation(folder, report)
            if card_run is not None:
                _rewrite_card(folder, card_run)
            print(f"[judge] {folder}: {time.monotonic() - t:.0f} s", flush=True)
        except Exception as e:  # one broken candidate must not cost the others their verdict
            failed += 1
            print(f"[judge] {folder}: failed: {e!r}", flush=True)
    return 1 if failed else 0


def _rewrite_card(folder: Path, run_dir: Path) -> None:
    from training.export import write_model_card, write_sample_grid

    manifest = json.loads((folder / "model.json").read_text())
    classes = len((manifest.get("conditioning") or {}).get("classes") or [])
    grid = write_sample_grid(
        folder / "samples.png", folder / "generator.onnx", manifest["z_dim"], classes
    )
    write_model_card(folder, manifest, run_dir, grid)


def _verdict(folder: Path) -> dict[str, Any]:
    path = folder / "model.json"
    if not path.is_file():
        return {}
    m = json.loads(path.read_text())
    ev = m.get("evaluation") or {}
    targets = (ev.get("summary") or {}).get("targets")
    if not targets:
        return {"step": m["training"]["step"]}
    return {
        "step": m["training"]["step"],
        "n_per_set": ev["generated"]["n_per_set"],
        "all_pass": ev["summary"]["all_pass"],
        "score": score(targets),
        "targets": [
            {k: t.get(k) for k in ("target", "ratio", "per_set", "needed", "pass")} for t in targets
        ],
        "eval_seconds": ev.get("seconds"),
    }


def render(per_dataset: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# Conditional generator sweep",
        "",
        f"`{meta['command']}` on {meta['machine']}; {meta['wall_s']:.0f} s wall, "
        f"{meta['train_seconds']:.0f} s of training per candidate. Ranked by targets met "
        "(issue 13, `training.metrics` summary.targets), then by the worst margin (ratio over "
        "threshold, > 1 passes).",
    ]
    for dataset, result in per_dataset.items():
        rows = result["ranking"]
        names = [t["target"] for t in next((r["targets"] for r in rows if r.get("targets")), [])]
        short = [_short(n) for n in names]
        out += [
            "",
            f"## {dataset} (judged at n={result['eval_n']} per seed set)",
            "",
            "| rank | candidate | step | steps/s | met | worst | " + " | ".join(short) + " | why |",
            "| --- | --- | --- | --- | --- | --- | "
            + " | ".join("---" for _ in short)
            + " | --- |",
        ]
        for i, r in enumerate(rows, 1):
            s = r.get("score") or {}
            ratios = {t["target"]: t for t in r.get("targets") or []}
            cells = [_cell(ratios.get(n)) for n in names]
            out.append(
                f"| {i} | {r['name']} | {r.get('step', '-')} | {r.get('steps_per_s') or '-'} | "
                f"{s.get('passed', '-')}/{s.get('judged', '-')} | {s.get('worst_margin', '-')} | "
                + " | ".join(cells)
                + f" | {r.get('error') or r['why']} |"
            )
        best = result.get("best")
        if best and not meta["complete"]:
            out += ["", f"Winner {best['candidate']}: its judging at the full n did not finish."]
        elif best:
            bs = best.get("score") or {}
            out += [
                "",
                f"Shipped as `{best['folder']}`: {best['candidate']} at step {best.get('step')}, "
                f"judged again at n={best.get('n_per_set')}: {bs.get('passed')}/{bs.get('judged')} "
                f"targets met, all_pass {best.get('all_pass')}, worst {bs.get('worst_target')} "
                f"(margin {bs.get('worst_margin')}).",
                "",
                "| target | ratio | per seed set | needed | pass |",
                "| --- | --- | --- | --- | --- |",
            ]
            out += [
                f"| {t['target']} | {t['ratio']} | {t['per_set']} | {t['needed']} | {t['pass']} |"
                for t in best.get("targets") or []
            ]
        else:
            out += ["", "No winner exported (see the logs)."]
    return "\n".join(out) + "\n"


def _short(target: str) -> str:
    return (
        target.split(" >=")[0]
        .replace("FID below the blur reference", "FID/blur")
        .replace("FID within 2x of the affine reference", "FID/affine")
        .replace("memorisation (pixel space) no higher than real test images show", "memo")
    )


def _cell(t: dict[str, Any] | None) -> str:
    if t is None or t.get("ratio") is None:
        return "-"
    return f"{t['ratio']}{'' if t['pass'] else ' ✗'}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["judge"]:
        j = argparse.ArgumentParser(prog="python -m training.cond_sweep judge")
        j.add_argument("folders", nargs="+", type=Path)
        j.add_argument("--n", type=int, required=True)
        j.add_argument("--data-root", default=None)
        j.add_argument("--card", type=Path, help="run folder: rewrite the model card too")
        a = j.parse_args(argv[1:])
        return judge(a.folders, a.n, a.data_root, a.card)
    p = argparse.ArgumentParser(
        prog="python -m training.cond_sweep", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dataset", default="mnist,fashion-mnist", help="comma-separated")
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=16, help="processes at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--train-seconds", type=float, default=300.0, help="wall s per candidate")
    p.add_argument("--probe-seconds", type=float, default=40.0)
    p.add_argument("--grace-seconds", type=float, default=30.0, help="past the deadline: SIGTERM")
    p.add_argument("--eval-n", type=int, default=2000, help="seeds per set when judging")
    p.add_argument("--final-n", type=int, default=10_000, help="seeds per set for the winner")
    p.add_argument("--eval-threads", type=int, default=8, help="ONNX Runtime threads per judge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma-separated candidate names")
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, help="fixed steps for every candidate: no probe")
    p.add_argument(
        "--override", default="", help="training flags appended to every candidate (smoke tests)"
    )
    args = p.parse_args(argv)
    datasets = args.dataset.split(",")
    unknown_ds = set(datasets) - set(BUNDLED_NAME)
    if unknown_ds:
        p.error(f"no bundled conditional model for: {', '.join(sorted(unknown_ds))}")
    chosen = choose(CANDIDATES, args.only, p)
    os.environ["GAN_EVAL_THREADS"] = str(args.eval_threads)  # judges and exports inherit it
    t0 = time.monotonic()
    runs, models, best, logs = (args.out / d for d in ("runs", "models", "best", "logs"))
    jobs = [(f"{ds}/{c.name}", ds, c) for ds in datasets for c in chosen]
    trained = train_all(jobs, runs, logs, args)
    train_wall = time.monotonic() - t0
    print(f"[cond_sweep] training done after {train_wall:.0f} s", flush=True)

    ready = [(key, ds, c) for key, ds, c in jobs if (runs / key / "ckpt-latest.pt").exists()]
    run_parallel(
        [(key, _export_cmd(runs / key, BUNDLED_NAME[ds], models / key, args),
          logs / f"export-{key.replace('/', '-')}.log") for key, ds, _ in ready],
        args.parallel, 900, args.threads,
    )  # fmt: skip
    judges = []
    for ds in datasets:
        folders = [str(models / key) for key, d, _ in ready if d == ds and (models / key).is_dir()]
        if folders:
            cmd = [sys.executable, "-m", "training.cond_sweep", "judge", *folders]
            cmd += ["--n", str(args.eval_n)]
            cmd += ["--data-root", args.data_root] if args.data_root else []
            judges.append((ds, cmd, logs / f"judge-{ds}.log"))
    run_parallel(judges, len(judges) or 1, 1800, args.eval_threads)

    per_dataset: dict[str, dict[str, Any]] = {}
    finals = []
    for ds in datasets:
        rows = []
        for c in chosen:
            key = f"{ds}/{c.name}"
            t = trained[key]
            row: dict[str, Any] = {
                "name": c.name,
                "why": c.why,
                "args": [*BASE, *c.args, *shlex.split(args.override)],
                "steps": t.get("steps") or args.steps,
                "steps_per_s": (t.get("probe") or {}).get("steps_per_s"),
                "train": t.get("train"),
                "probe": t.get("probe"),
                **_verdict(models / key),
            }
            if t.get("error"):
                row["error"] = t["error"]
            elif "score" not in row:
                row["error"] = "not judged (see the export and judge logs)"
            rows.append(row)
        rows = rank(rows)
        per_dataset[ds] = {"eval_n": args.eval_n, "ranking": rows}
        if rows and rows[0].get("score"):
            # The judged folder is the export of the winner's checkpoint: copied, judged again
            # at the full n, its card rewritten (a second export would only repeat the first).
            name = BUNDLED_NAME[ds]
            key = f"{ds}/{rows[0]['name']}"
            if (best / name).exists():
                shutil.rmtree(best / name)
            shutil.copytree(models / key, best / name)
            cmd = [sys.executable, "-m", "training.cond_sweep", "judge", str(best / name)]
            cmd += ["--n", str(args.final_n), "--card", str(runs / key)]
            cmd += ["--data-root", args.data_root] if args.data_root else []
            finals.append((ds, cmd, logs / f"final-{ds}.log"))
            per_dataset[ds]["best"] = {"candidate": rows[0]["name"], "folder": f"best/{name}"}
    # Written now and again below: a caller that stops this process during the final judging
    # (bench/gpu_train.sh, at its deadline) still has every candidate's verdict.
    write_results(args, argv, per_dataset, t0, train_wall, final=False)
    run_parallel(finals, len(finals) or 1, 1800, args.eval_threads)
    for result in per_dataset.values():
        if "best" in result:
            result["best"].update(_verdict(args.out / result["best"]["folder"]))
    print(write_results(args, argv, per_dataset, t0, train_wall, final=True))
    shipped = all("step" in (r.get("best") or {}) for r in per_dataset.values())
    return 0 if shipped else 1


def write_results(
    args: argparse.Namespace,
    argv: list[str],
    per_dataset: dict[str, dict[str, Any]],
    t0: float,
    train_wall: float,
    final: bool,
) -> str:
    """OUT/sweep.json and OUT/sweep.md; returns the markdown."""
    meta: dict[str, Any] = {
        "command": "python -m training.cond_sweep " + shlex.join(argv),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, device {args.device})",
        "wall_s": time.monotonic() - t0,
        "train_wall_s": round(train_wall, 1),
        "train_seconds": args.train_seconds,
        "complete": final,
    }
    try:
        import torch

        meta["torch"] = torch.__version__
        if args.device.startswith("cuda") and torch.cuda.is_available():
            meta["machine"] += f", {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "datasets": per_dataset}
    (args.out / "sweep.json").write_text(json.dumps(report, indent=1) + "\n")
    text = render(per_dataset, meta)
    (args.out / "sweep.md").write_text(text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
