"""The training loop: GAN updates, log lines, sample grids and checkpoints, under torchrun too.

``train`` gets a resolved config, a data sampler and (on resume) a checkpoint from the CLI
(training.train) and runs until ``cfg.steps`` or a SIGINT / SIGTERM. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import distributed, toy
from training.checkpoint import LATEST, rng_state, save_checkpoint, set_rng_state
from training.config import TrainConfig
from training.data import ArraySampler, Sampler, derive_seed, num_classes
from training.nets import ModelArgs, build_networks
from training.plots import save_curves, save_image_grid, save_scatter
from training.run_dir import REAL_GRID, read_metrics, write_summary
from training.run_log import TensorBoardLog, open_tensorboard
from training.trainer import GanTrainer

GRID_SEEDS = 64  # sample grids show the images of latent seeds 0..63 at every step
GRID_COLUMNS = 8
CLASS_GRID_COLUMNS = 10  # conditional grids: seeds 0..9 in every class row
SCATTER_POINTS = 2000
BAR_KEYS = ("d_loss", "g_loss", "p_real", "p_fake", "w_distance")


class StatAverager:
    """Means of the per-step stats since the last log line; its state goes into checkpoints.

    Each key has its own count: some stats (gradient norms, learning rates) are measured only
    on the steps that are logged.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.count = 0

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts, self.count = {}, {}, 0
        return means

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.count = dict(state["sums"]), int(state["count"])
        # Checkpoints from before per-key counts: every key was added on every step.
        self.counts = dict(state.get("counts") or dict.fromkeys(self.sums, self.count))


class StopRequest:
    """SIGINT/SIGTERM end the run at the next step boundary, after a checkpoint; a second one kills."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: Any) -> None:
            self.signum = signum
            for s, h in previous.items():
                signal.signal(s, h)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


# --- samples -----------------------------------------------------------------------------------


@torch.no_grad()
def write_samples(
    G: nn.Module, cfg: TrainConfig, out: Path, step: int, device: torch.device, classes: int = 0
) -> Path:
    """The fixed-seed sample grid (images) or scatter plot (toys) of ``G`` at ``step``.

    A conditional G gets one row per class, the same ``CLASS_GRID_COLUMNS`` seeds in every row,
    so a row shows what the class looks like and a column what one latent does across classes.
    """
    from contract.latents import latents

    assert cfg.z_dim is not None
    n = SCATTER_POINTS if cfg.arch == "mlp" else GRID_SEEDS
    nrow = GRID_COLUMNS
    labels = None
    if classes:
        nrow = CLASS_GRID_COLUMNS
        labels = torch.arange(classes, device=device).repeat_interleave(nrow)
        z = torch.from_numpy(latents(0, nrow, cfg.z_dim)).to(device).repeat(classes, 1)
    else:
        z = torch.from_numpy(latents(0, n, cfg.z_dim)).to(device)
    was_training = G.training
    G.eval()  # BatchNorm running statistics, as the exported model will use them
    try:
        fake = (G(z) if labels is None else G(z, labels)).float().cpu()
    finally:
        G.train(was_training)
    path = out / "samples" / f"step_{step:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.arch == "mlp":
        real = toy.sample(cfg.dataset, n, np.random.default_rng(0))
        save_scatter(
            fake.numpy(),
            real,
            toy.mode_centers(cfg.dataset),
            path,
            f"{cfg.dataset}, {cfg.loss}, step {step}",
        )
    else:
        save_image_grid(fake, path, nrow=nrow, scale=_grid_scale(fake.shape[-1]))
    return path


def _grid_scale(side: int) -> int:
    return 2 if side <= 32 else 1


def write_real_grid(sampler: ArraySampler, out: Path, classes: int = 0) -> Path:
    """``samples/real.png``: training images laid out as the sample grids are, to compare against.

    The first images of the dataset (a conditional run: the first of each class, one row per
    class), read without moving the sampler, so a run's batches do not depend on this file.
    """
    if classes and sampler.labels is not None:
        rows = [
            torch.nonzero(sampler.labels == c).flatten()[:CLASS_GRID_COLUMNS]
            for c in range(classes)
        ]
        index, nrow = torch.cat(rows), CLASS_GRID_COLUMNS
    else:
        index, nrow = torch.arange(min(GRID_SEEDS, len(sampler.images))), GRID_COLUMNS
    images = sampler.images[index].float() / 127.5 - 1.0
    path = out / "samples" / REAL_GRID
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, path, nrow=nrow, scale=_grid_scale(images.shape[-1]))
    return path


# --- the loop ----------------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    sampler: Sampler,
    device: torch.device,
    env: distributed.DistEnv,
    ckpt: dict[str, Any] | None,
    keep: int = 2,
    progress: bool = True,
    tensorboard: bool = True,
) -> int:
    from tqdm import tqdm

    out = Path(cfg.out)
    assert cfg.n_critic is not None
    # Identical initial weights on every rank (DDP would broadcast rank 0's anyway).
    torch.manual_seed(cfg.seed)
    model_args = ModelArgs.for_config(cfg, sampler.channels, num_classes(sampler))
    G, D = build_networks(model_args)
    G, D = G.to(device), D.to(device)
    G, D = distributed.wrap(G, device, env), distributed.wrap(D, device, env)
    trainer = GanTrainer(cfg, G, D, device, model_args.num_classes)
    if env.distributed:
        torch.manual_seed(derive_seed(cfg.seed, "latents", env.rank))  # different fakes per rank

    averager = StatAverager()
    step, elapsed_before = 0, 0.0
    if ckpt is not None:
        step = ckpt["step"]
        trainer.load_state_dict(ckpt["trainer"])
        elapsed_before = float(ckpt["extra"].get("elapsed_s", 0.0))
        restore_process_state(ckpt, sampler, averager, env)

    board: TensorBoardLog | None = None
    if env.is_main and tensorboard:
        board = open_tensorboard(out, purge_step=step + 1 if step else None)
    if (
        env.is_main
        and isinstance(sampler, ArraySampler)
        and not (out / "samples" / REAL_GRID).exists()
    ):
        real = write_real_grid(sampler, out, model_args.num_classes)
        if board is not None:
            board.image("real", real, step)

    real_per_step = cfg.n_critic * cfg.batch_size * env.world_size
    n_images = sampler.info.get("n_images")
    records = read_metrics(out / "metrics.jsonl", step) if env.is_main else []
    t_start = t_log = time.perf_counter()
    steps_since_log = 0
    last_epoch = math.floor(sampler.epoch) if sampler.epoch is not None else None
    t_epoch = t_start
    epoch_times: list[float] = []
    title = f"{cfg.dataset} / {cfg.arch} / {cfg.loss}"
    # Everything the run reports goes through the bar's one line (postfix) or the files: a
    # bar.write mid-run breaks the bar over several lines in logs and narrow terminals.
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not (env.is_main and progress),
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        desc=out.name,
        unit="step",
    )
    bar_post: dict[str, str] = {}

    def checkpoint() -> None:
        mine = {"rng": rng_state(), "sampler": sampler.state_dict(), "log": averager.state_dict()}
        everyone = distributed.gather(mine, env)
        if env.is_main:
            save_checkpoint(
                out,
                config=cfg,
                model_args=model_args.to_dict(),
                step=step,
                trainer_state=trainer.state_dict(),
                rng=[m["rng"] for m in everyone],
                sampler=[m["sampler"] for m in everyone],
                extra={
                    "log": [m["log"] for m in everyone],
                    "elapsed_s": elapsed(),
                    "sampler_info": sampler.info,
                },
                keep=keep,
            )

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    stopper = StopRequest()
    try:
        with stopper.installed():
            while step < cfg.steps:
                trainer.set_step(step)
                logs_now = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps
                trainer.measure = logs_now  # gradient norms and lrs, on the logged steps only
                stats = trainer.step(sampler)
                step += 1
                steps_since_log += 1
                averager.add(stats)
                last = step == cfg.steps
                epoch = sampler.epoch
                if epoch is not None and last_epoch is not None and math.floor(epoch) > last_epoch:
                    now = time.perf_counter()
                    epoch_s = now - t_epoch
                    epoch_times.append(epoch_s)
                    # Timings stay out of metrics.jsonl's per-step lines (a resumed run must
                    # reproduce those exactly): the bar, TensorBoard and summary.json show them.
                    bar_post["last_ep"] = f"{epoch_s:.0f}s"
                    if board is not None:
                        board.scalar("speed/epoch_s", epoch_s, step)
                    last_epoch, t_epoch = math.floor(epoch), now
                if logs_now:
                    now = time.perf_counter()
                    means = [m for m in distributed.gather(averager.pop(), env) if m]
                    rec: dict[str, Any] = {
                        "step": step,
                        "epoch": None if epoch is None else round(epoch, 4),
                    }
                    if means:
                        rec |= {k: sum(m[k] for m in means) / len(means) for k in means[0]}
                    rate = steps_since_log * real_per_step / max(now - t_log, 1e-9)
                    rec["img_per_s"] = round(rate, 1)
                    if n_images:
                        rec["s_per_epoch"] = round(n_images / rate, 1)
                    rec["elapsed_s"] = round(elapsed(), 2)
                    t_log, steps_since_log = now, 0
                    if env.is_main:
                        records.append(rec)
                        with open(out / "metrics.jsonl", "a") as f:
                            f.write(json.dumps(rec) + "\n")
                        if board is not None:
                            board.scalars(rec)
                        bar_post |= {k: f"{rec[k]:.3f}" for k in BAR_KEYS if k in rec}
                        if epoch is not None:
                            bar_post["ep"] = f"{epoch:.2f}"
                        bar.set_postfix(bar_post, refresh=False)
                if env.is_main and (step % cfg.sample_every == 0 or last):
                    path = write_samples(
                        trainer.sampling_generator(), cfg, out, step, device, model_args.num_classes
                    )
                    save_curves(records, out / "curves.png", title)
                    if board is not None:
                        board.image("samples", path, step)
                stop = distributed.any_flag(stopper.signum is not None, env)
                if step % cfg.ckpt_every == 0 or last or stop:
                    checkpoint()
                    if board is not None:
                        board.flush()  # what a resume keeps is what the checkpoint covers
                bar.update(1)
                if stop:
                    break
    finally:
        bar.close()
        if board is not None:
            board.close()

    fingerprints = distributed.gather(
        {
            "G": distributed.fingerprint(trainer.generator),
            "D": distributed.fingerprint(_bare(trainer.D)),
        },
        env,
    )
    if env.is_main:
        write_summary(
            cfg, out, step, elapsed(), records, epoch_times, sampler, env, fingerprints, device
        )
        if env.distributed and len({f["G"] for f in fingerprints}) > 1:
            print(
                f"warning: generator weights differ across ranks: {fingerprints}", file=sys.stderr
            )
    if step < cfg.steps:
        if env.is_main:
            print(
                f"stopped at step {step}/{cfg.steps}; checkpoint saved, continue with --resume",
                file=sys.stderr,
            )
        return 128 + (stopper.signum or signal.SIGTERM)
    if env.is_main:
        print(f"done: {step} steps in {elapsed():.1f} s; checkpoint {out / LATEST}")
    return 0


def _bare(m: nn.Module) -> nn.Module:
    inner = getattr(m, "module", m)
    assert isinstance(inner, nn.Module)
    return inner


def restore_process_state(
    ckpt: dict[str, Any], sampler: Sampler, averager: StatAverager, env: distributed.DistEnv
) -> None:
    """This rank's RNG, data position and log accumulator, as they were at the checkpoint."""
    if ckpt["world_size"] == env.world_size:
        set_rng_state(ckpt["rng"][env.rank])
        sampler.load_state_dict(ckpt["sampler"][env.rank])
        averager.load_state_dict(ckpt["extra"]["log"][env.rank])
        return
    # A different number of processes cannot replay the same streams: continue from the same
    # data position (in epochs) with fresh, still seeded, randomness.
    if env.is_main:
        print(
            f"warning: checkpoint was written by {ckpt['world_size']} process(es), resuming with "
            f"{env.world_size}: training continues but will not replay the uninterrupted run exactly",
            file=sys.stderr,
        )
    torch.manual_seed(derive_seed(ckpt["config"]["seed"], "resume", ckpt["step"], env.rank))
    saved = ckpt["sampler"][0]
    if saved.get("kind") == "array" and isinstance(sampler, ArraySampler):
        old_bpe = max(
            1, round(saved["n_images"] / ckpt["world_size"]) // ckpt["config"]["batch_size"]
        )
        frac = saved["batch_in_epoch"] / old_bpe
        sampler.load_state_dict(
            {
                **saved,
                "batch_in_epoch": min(
                    sampler.batches_per_epoch, round(frac * sampler.batches_per_epoch)
                ),
            }
        )
