"""The mode-collapse lab: every loss, packing, spectral norm and a tuned configuration on the 2-D toys.

    python -m training.lab --out docs/ [--quick] [--workers 2] [--runs-dir runs/mode-collapse]

trains each configuration on ring8 and grid25 over 3 seeds, scores it with ``training.evaluate``
(modes covered / high-quality fraction / reverse KL on 2,500 samples, the PacGAN protocol) and writes

- ``OUT/mode-collapse.md``: the results table beside the published numbers, and which losses
  collapse (training.lab_report fills docs/mode-collapse.template.md and the text of
  docs/mode-collapse-lab.toml with the numbers);
- ``OUT/mode-collapse.png``: the samples of every configuration (first seed) over the mode centres;
- ``OUT/mode-collapse-results.json``: every run's metrics, learning curve, timings and settings.

Each run is also a normal run folder (``config.json`` + ``ckpt-latest.pt``, written by
``training.checkpoint``) under ``--runs-dir``, so ``python -m training.evaluate RUNS_DIR/grid25/ns/seed0``
re-scores it.

Runs go to ``--workers`` processes with one torch thread each: these MLPs are too small for
intra-op threads to pay, so two processes use two cores far better than one process with two threads.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from training.checkpoint import rng_state, save_checkpoint
from training.config import TrainConfig
from training.data import ToySampler
from training.evaluate import (
    LATENT_SEED,
    N_SAMPLES,
    evaluate_samples,
    generate,
    load_run_generator,
)
from training.lab_report import (
    BEST,
    JSON_NAME,
    MD_NAME,
    PNG_NAME,
    num,
    plot_samples,
    render_markdown,
    report_data,
    summarise,
)
from training.nets import ModelArgs, build_networks
from training.toy import TOY_DATASETS
from training.trainer import GanTrainer

# Every run is scored on the same latent draw as `python -m training.evaluate RUN_DIR` uses.
EVAL_SEED = LATENT_SEED


@dataclass
class Variant:
    """One configuration: a loss plus the TrainConfig fields it changes from ``Budget.common``."""

    name: str
    loss: str
    params: dict[str, Any] = field(default_factory=dict)
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)  # on top of params
    # TrainConfig.lr_decay: both learning rates fall linearly to 0 over this final fraction of the
    # steps (0 keeps them constant, the CLI's default).
    lr_decay: float = 0.0
    kind: str = "loss"  # "loss": published defaults; "regulariser": + packing / SN; "tuned"


@dataclass
class Budget:
    """What every configuration gets: the same networks, init and number of optimiser updates.

    ``steps`` are generator steps of a loss with one D step per G step. Every run makes the same
    number of optimiser updates, ``2 * steps`` (D steps + G steps), so a loss with ``n_critic = 5``
    gets ``steps / 3`` generator steps and ``5 steps / 3`` critic steps: equal work, not equal G steps.
    """

    steps: dict[str, int]
    common: dict[str, Any]
    seeds: tuple[int, ...] = (0, 1, 2)
    # "torch": PyTorch's default nn.Linear init for both MLPs; "dcgan": build_networks' N(0, 0.02),
    # under which a 2-D latent starts as a near point mass and every loss needs thousands of steps
    # more to spread out (measured, see docs/mode-collapse.md).
    init: str = "torch"
    n_eval: int = N_SAMPLES
    eval_points: int = 4  # metrics also recorded at this many evenly spaced steps (learning curves)


FULL = Budget(steps={"ring8": 5000, "grid25": 8000}, common={"width": 32, "batch_size": 256})
QUICK = Budget(
    steps={"ring8": 3, "grid25": 3},
    common={"width": 2, "batch_size": 16},
    seeds=(0, 1),
    eval_points=1,
)

# Why each one behaves as it does is in docs/mode-collapse-lab.toml (the report's text).
VARIANTS: list[Variant] = [
    *(Variant(loss, loss) for loss in ("minimax", "ns", "wgan", "wgan-gp", "lsgan", "hinge")),
    Variant("ns+pac2", "ns", {"pack": 2}, kind="regulariser"),
    Variant("ns+pac4", "ns", {"pack": 4}, kind="regulariser"),
    Variant("ns+sn", "ns", {"spectral_norm": True}, kind="regulariser"),
    Variant(
        BEST,
        "ns",
        {"lr_g": 2e-3, "lr_d": 2e-3},
        # grid25 only: a bigger batch and a light gradient penalty win back modes that a high
        # learning rate loses early on (see "How best was found"); ring8 keeps all 8 without them.
        per_dataset={"grid25": {"batch_size": 512, "gp_weight": 0.1}},
        lr_decay=0.5,
        kind="tuned",
    ),
]
# Not in the default set, to keep the lab inside 30 minutes on 2 cores (`--only hinge+sn` runs it).
EXTRA_VARIANTS: list[Variant] = [
    Variant("hinge+sn", "hinge", {"spectral_norm": True}, kind="regulariser"),
]


# --- one run ---------------------------------------------------------------------------------


def g_steps(steps: int, n_critic: int) -> int:
    """Generator steps that make ``2 * steps`` optimiser updates with ``n_critic`` D steps each."""
    return max(1, round(2 * steps / (n_critic + 1)))


def make_config(
    v: Variant, dataset: str, seed: int, budget: Budget, out: Path | None = None
) -> TrainConfig:
    cfg = TrainConfig(
        dataset=dataset,
        arch="mlp",
        loss=v.loss,
        seed=seed,
        out=str(out) if out else "",
        lr_decay=v.lr_decay,
        extra={"lab_variant": v.name, "init": budget.init},
        **{**budget.common, **v.params, **v.per_dataset.get(dataset, {})},
    )
    assert cfg.n_critic is not None  # resolved by __post_init__ from the loss
    cfg.steps = g_steps(budget.steps[dataset], cfg.n_critic)
    return cfg


def _raw_weight(layer: nn.Linear) -> nn.Parameter:
    """The weight parameter itself: under spectral norm, the one the parametrisation normalises."""
    params = dict(layer.named_parameters())
    w = params.get("parametrizations.weight.original", params.get("weight"))
    assert w is not None
    return w


def torch_init(module: nn.Module) -> None:
    """PyTorch's default ``nn.Linear`` init (also under a spectral-norm parametrisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            w = _raw_weight(m)
            with torch.no_grad():
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))
                if m.bias is not None:
                    bound = 1 / math.sqrt(w.shape[1])
                    nn.init.uniform_(m.bias, -bound, bound)


# Trainer statistics averaged over each learning-curve interval (GanTrainer.step's names).
WINDOW_STATS = ("d_loss", "g_loss", "p_real", "p_fake", "w_distance", "gp", "g_grad_norm")
MEASURE_EVERY = 10


def _finite_mean(xs: Sequence[float]) -> float | None:
    """The mean, or None (JSON null) once training diverged to inf/NaN."""
    m = sum(xs) / len(xs)
    return m if math.isfinite(m) else None


def train_run(
    v: Variant, dataset: str, seed: int, budget: Budget, run_dir: Path | None = None
) -> dict[str, Any]:
    """Train one configuration, score it, optionally save it as a run folder; return its record."""
    cfg = make_config(v, dataset, seed, budget, run_dir)
    assert cfg.z_dim is not None
    # As training.train does: the seed fixes the initial weights and the latents.
    torch.manual_seed(cfg.seed)
    G, D = build_networks(ModelArgs.for_config(cfg, channels=2))
    if budget.init == "torch":
        torch_init(G)
        torch_init(D)
    trainer = GanTrainer(cfg, G, D, torch.device("cpu"))
    sampler = ToySampler(dataset, cfg.batch_size, cfg.seed)
    curve_at = {
        max(1, round(cfg.steps * (i + 1) / budget.eval_points)) for i in range(budget.eval_points)
    }
    curve: list[dict[str, Any]] = []
    window: dict[str, list[float]] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(cfg.steps):
        trainer.set_step(step)
        # The gradient norms cost an extra pass over the gradients: measured on every 10th step.
        trainer.measure = step % MEASURE_EVERY == 0
        stats = trainer.step(sampler)
        for k in WINDOW_STATS:
            if k in stats:
                window.setdefault(k, []).append(stats[k])
        if step + 1 in curve_at:
            m = evaluate_samples(
                generate(trainer.sampling_generator(), cfg.z_dim, budget.n_eval, EVAL_SEED), dataset
            )
            curve.append(
                {
                    "step": step + 1,
                    **{k: m[k] for k in ("modes", "hq_fraction", "reverse_kl")},
                    # Means over the steps since the previous point: why a run fails, not just that.
                    **{k: _finite_mean(xs) for k, xs in window.items()},
                }
            )
            window = {}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    samples = generate(trainer.sampling_generator(), cfg.z_dim, budget.n_eval, EVAL_SEED)
    metrics = evaluate_samples(samples, dataset)
    if run_dir is not None:
        save_run(run_dir, cfg, trainer, sampler, wall)
    return {
        "variant": v.name,
        "dataset": dataset,
        "seed": seed,
        "g_steps": cfg.steps,
        "d_steps": cfg.steps * (cfg.n_critic or 1),
        "train_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        **{k: metrics[k] for k in ("modes", "n_modes", "hq_fraction", "reverse_kl", "mode_counts")},
        "curve": curve,
        "run_dir": str(run_dir) if run_dir else None,
        "samples": samples,  # dropped from the JSON; the figure uses them
    }


def save_run(
    run_dir: Path, cfg: TrainConfig, trainer: GanTrainer, sampler: ToySampler, wall: float
) -> None:
    """The CLI's run-folder layout, so ``training.evaluate`` reads lab runs too."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    save_checkpoint(
        run_dir,
        config=cfg,
        model_args=ModelArgs.for_config(cfg, channels=2).to_dict(),
        step=cfg.steps,
        trainer_state=trainer.state_dict(),
        rng=[rng_state()],
        sampler=[sampler.state_dict()],
        extra={"elapsed_s": wall, "lab": True},
        keep=0,
    )


# --- many runs -------------------------------------------------------------------------------


@dataclass
class Task:
    variant: Variant
    dataset: str
    seed: int
    budget: Budget
    run_dir: Path | None


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run_task(task: Task) -> dict[str, Any]:
    return train_run(task.variant, task.dataset, task.seed, task.budget, task.run_dir)


def relative_cost(task: Task) -> float:
    """Rough CPU time of a run, for scheduling only (factors measured on these MLPs)."""
    cfg = make_config(task.variant, task.dataset, task.seed, task.budget)
    assert cfg.n_critic is not None
    d_pass = 2.0 if cfg.gp_weight else 1.0  # the gradient penalty's double backward
    batch = (cfg.batch_size / 256) ** 0.7  # per-op overheads make time sub-linear in the batch
    return cfg.steps * (1.0 + cfg.n_critic * d_pass) * batch * (1.4 if cfg.spectral_norm else 1.0)


def make_tasks(
    variants: Sequence[Variant], datasets: Sequence[str], budget: Budget, runs_dir: Path | None
) -> list[Task]:
    tasks = [
        Task(v, ds, s, budget, runs_dir / ds / v.name / f"seed{s}" if runs_dir else None)
        for v in variants
        for ds in datasets
        for s in budget.seeds
    ]
    # Longest first: the pool's makespan is then close to (total work) / workers.
    return sorted(tasks, key=relative_cost, reverse=True)


def run_tasks(tasks: list[Task], workers: int, log: TextIO = sys.stderr) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def report(r: dict[str, Any]) -> None:
        results.append(r)
        print(
            f"[{len(results):3d}/{len(tasks)} {time.perf_counter() - t0:6.0f} s] {r['dataset']:6s} "
            f"{r['variant']:9s} seed {r['seed']}: {r['modes']:2d}/{r['n_modes']} modes, "
            f"HQ {100 * r['hq_fraction']:5.1f}%, KL {num(r['reverse_kl'], 3)}, {r['train_s']:.0f} s",
            file=log,
            flush=True,
        )

    if workers <= 1:
        threads = torch.get_num_threads()
        _init_worker()
        try:
            for t in tasks:
                report(_run_task(t))
        finally:
            torch.set_num_threads(threads)
    else:
        # spawn: fresh interpreters, no inherited torch thread pools or locks.
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for r in pool.imap_unordered(_run_task, tasks):
                report(r)
    return results


# --- CLI -------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} × {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"


def _loadavg() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_lab(
    out: Path,
    budget: Budget,
    variants: Sequence[Variant],
    workers: int,
    runs_dir: Path | None,
    quick: bool,
    command: str,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    tasks = make_tasks(variants, TOY_DATASETS, budget, runs_dir)
    started, load0 = time.strftime("%Y-%m-%d %H:%M:%S"), _loadavg()
    t0 = time.perf_counter()
    runs = run_tasks(tasks, workers)
    wall = time.perf_counter() - t0
    runs.sort(
        key=lambda r: (r["dataset"], [v.name for v in variants].index(r["variant"]), r["seed"])
    )
    result = {
        "meta": {
            "command": command,
            "quick": quick,
            "started": started,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": round(wall, 1),
            "cpu_s": round(sum(r["cpu_s"] for r in runs), 1),
            "n_runs": len(runs),
            "workers": workers,
            "machine": machine(),
            "loadavg_start": load0,
            "loadavg_end": _loadavg(),
            "budget": asdict(budget),
            "eval_seed": EVAL_SEED,
        },
        "runs": [{k: v for k, v in r.items() if k != "samples"} for r in runs],
    }
    write_report(out, result, runs, variants, budget)
    return result


def write_report(
    out: Path,
    result: dict[str, Any],
    runs: list[dict[str, Any]],
    variants: Sequence[Variant],
    budget: Budget,
) -> None:
    """JSON, figure and markdown from the run records (``runs`` carry the samples)."""
    result["variants"] = [asdict(v) for v in variants]
    result["published"] = report_data()["published"]
    result["summary"] = summarise(runs, variants)
    (out / JSON_NAME).write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    plot_samples(runs, variants, budget, out / PNG_NAME)
    (out / MD_NAME).write_text(render_markdown(result, variants, EXTRA_VARIANTS))


def rerender(out: Path, variants: Sequence[Variant]) -> dict[str, Any]:
    """Rewrite the report of a finished lab from its JSON and run folders, without training.

    For edits to the text or the verdict rules: the figure's samples are regenerated from each
    run's checkpoint on the same latent draw, and checked against the recorded metrics.
    """
    result = json.loads((out / JSON_NAME).read_text())
    meta = result["meta"]
    budget = Budget(**{**meta["budget"], "seeds": tuple(meta["budget"]["seeds"])})
    names = {v.name for v in variants}
    runs = [r for r in result["runs"] if r["variant"] in names]
    for r in runs:
        if r["seed"] != budget.seeds[0]:
            continue
        if not r["run_dir"]:
            raise ValueError(
                f"{r['variant']} / {r['dataset']} was not saved (--no-runs): rerun the lab"
            )
        G, cfg, _ = load_run_generator(Path(r["run_dir"]))
        assert cfg.z_dim is not None
        r["samples"] = generate(G, cfg.z_dim, budget.n_eval, meta["eval_seed"])
        again = evaluate_samples(r["samples"], r["dataset"])
        if (again["modes"], again["hq_fraction"]) != (r["modes"], r["hq_fraction"]):
            raise ValueError(f"{r['run_dir']} no longer scores as recorded: was it overwritten?")
    result["runs"] = [{k: v for k, v in r.items() if k != "samples"} for r in runs]
    write_report(out, result, runs, variants, budget)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.lab", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=Path("docs"), help="where the report goes (default %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds), for CI")
    parser.add_argument("--workers", type=int, help="processes (default 2; 1 with --quick)")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs/mode-collapse"),
        help="run folders (default %(default)s)",
    )
    parser.add_argument("--no-runs", action="store_true", help="do not save run folders")
    parser.add_argument("--only", help="comma-separated config names (default: all)")
    parser.add_argument(
        "--force", action="store_true", help="let --quick overwrite a full run's report"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite OUT's report from its JSON and run folders, without training",
    )
    args = parser.parse_args(argv)
    variants = VARIANTS
    if args.only:
        names = args.only.split(",")
        every = VARIANTS + EXTRA_VARIANTS
        unknown = set(names) - {v.name for v in every}
        if unknown:
            parser.error(
                f"unknown config(s) {', '.join(sorted(unknown))}; choose from {', '.join(v.name for v in every)}"
            )
        variants = [v for v in every if v.name in names]
    if args.render_only:
        rerender(args.out, variants)
        print(
            f"rewrote {args.out / MD_NAME}, {args.out / PNG_NAME}, {args.out / JSON_NAME}",
            file=sys.stderr,
        )
        return 0
    previous = args.out / JSON_NAME
    if (
        args.quick
        and not args.force
        and previous.is_file()
        and not json.loads(previous.read_text())["meta"]["quick"]
    ):
        parser.error(
            f"{previous} holds a full run: refusing to overwrite it with --quick (use another --out, or --force)"
        )
    workers = args.workers or (1 if args.quick else 2)
    command = "python -m training.lab " + " ".join(sys.argv[1:] if argv is None else argv)
    result = run_lab(
        args.out,
        QUICK if args.quick else FULL,
        variants,
        workers,
        None if args.no_runs else args.runs_dir,
        args.quick,
        command.strip(),
    )
    print(
        f"wrote {args.out / MD_NAME}, {args.out / PNG_NAME}, {args.out / JSON_NAME} in {result['meta']['wall_s'] / 60:.1f} min",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
