"""Train a GAN: ``python -m training.train --dataset ... --arch ... --loss ... --steps N --out runs/NAME``.

The run folder gets ``config.json`` (the resolved TrainConfig), ``metrics.jsonl``,
``samples/step_NNNNNN.png``, ``curves.png``, ``ckpt-latest.pt`` (+ a few step-numbered copies),
``command.txt`` and, when it finishes, ``summary.json``. ``--resume`` continues from
``ckpt-latest.pt`` and reproduces the uninterrupted run exactly (same device and thread count).
Under ``torchrun`` every process trains on its own data shard and only rank 0 writes files.
See docs/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np
import torch
from torch import nn

from training import distributed, toy
from training.checkpoint import (
    LATEST,
    RESUMABLE_FIELDS,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    numbered_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.config import ARCHS, TrainConfig
from training.data import (
    DATASET_CHOICES,
    DatasetError,
    Sampler,
    check_dataset_name,
    derive_seed,
    make_sampler,
    num_classes,
)
from training.idx import IDX_DATASETS
from training.losses import LOSSES
from training.nets import ModelArgs, build_networks
from training.plots import save_curves, save_image_grid, save_scatter
from training.trainer import GanTrainer

PROG = "python -m training.train"
CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
GRID_SEEDS = 64  # sample grids show the images of latent seeds 0..63 at every step
CLASS_GRID_COLUMNS = 10  # conditional grids: seeds 0..9 in every class row
SCATTER_POINTS = 2000


class UsageError(Exception):
    """A bad option, option combination, run folder or dataset: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line instead of argparse's multi-line usage dump.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def build_parser() -> argparse.ArgumentParser:
    # Config flags default to SUPPRESS so we know which were given: on --resume the saved
    # config fills the rest, and a given flag that contradicts it is an error, not a silent change.
    p = _Parser(
        prog=PROG,
        description="Train a GAN; see docs/training.md.",
        argument_default=argparse.SUPPRESS,
    )
    g = p.add_argument_group("what to train")
    g.add_argument("--dataset", help=f"{DATASET_CHOICES}")
    g.add_argument(
        "--arch",
        choices=ARCHS,
        help="networks (default: mlp for toys, dcgan28 for IDX, dcgan64 for folders)",
    )
    g.add_argument(
        "--loss", choices=list(LOSSES), help=f"GAN objective (default {_default('loss')})"
    )
    g.add_argument("--steps", type=int, help=f"generator updates (default {_default('steps')})")
    g.add_argument("--out", required=True, help="run folder, e.g. runs/mnist-dcgan")
    g.add_argument("--batch-size", type=int, help=f"per process (default {_default('batch_size')})")
    g.add_argument("--z-dim", type=int, help="latent size (default 2 for mlp, 100 for dcgan*)")
    g.add_argument(
        "--width",
        type=int,
        help=f"conv channels, or hidden units / 4 for mlp (default {_default('width')})",
    )
    o = p.add_argument_group("optimiser (defaults: the loss's published settings)")
    o.add_argument("--lr-g", type=float, help="generator learning rate")
    o.add_argument(
        "--lr-d", type=float, help="discriminator learning rate (TTUR: larger than --lr-g)"
    )
    o.add_argument("--beta1", type=float, help="Adam beta1")
    o.add_argument("--beta2", type=float, help="Adam beta2")
    o.add_argument("--n-critic", type=int, help="D updates per G update")
    o.add_argument("--weight-clip", type=float, help="WGAN weight clip c (0 disables)")
    o.add_argument("--gp-weight", type=float, help="gradient-penalty lambda (0 disables)")
    g.add_argument(
        "--conditional",
        action=argparse.BooleanOptionalAction,
        help="class-conditional G and D on the dataset's labels (IDX labels, or class sub-folders)",
    )
    o.add_argument(
        "--lr-decay",
        type=float,
        help="both learning rates fall linearly to 0 over this final fraction of the steps (default 0)",
    )
    r = p.add_argument_group("regularisers")
    r.add_argument(
        "--spectral-norm",
        action=argparse.BooleanOptionalAction,
        help="spectral norm on every D layer",
    )
    r.add_argument("--pack", type=int, help="PacGAN: D judges K samples at once (default 1)")
    r.add_argument("--ema", type=float, help="generator EMA decay, e.g. 0.999 (default 0: off)")
    b = p.add_argument_group("run")
    b.add_argument("--seed", type=int, help=f"default {_default('seed')}")
    b.add_argument(
        "--data-root", help="folder holding mnist/ and fashion-mnist/ (default ../shared/data)"
    )
    b.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    b.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's choice)")
    b.add_argument(
        "--log-every",
        type=int,
        help=f"steps between metrics.jsonl lines (default {_default('log_every')})",
    )
    b.add_argument(
        "--sample-every",
        type=int,
        help=f"steps between sample PNGs (default {_default('sample_every')})",
    )
    b.add_argument(
        "--ckpt-every",
        type=int,
        help=f"steps between checkpoints (default {_default('ckpt_every')})",
    )
    b.add_argument(
        "--keep-ckpts",
        type=int,
        default=2,
        help="step-numbered checkpoints kept besides ckpt-latest.pt (default 2)",
    )
    b.add_argument(
        "--resume",
        action="store_true",
        default=False,
        help="continue the run in --out from its last checkpoint",
    )
    b.add_argument(
        "--force",
        action="store_true",
        default=False,
        help="delete an existing run in --out and start over",
    )
    b.add_argument("--no-progress", action="store_true", default=False, help="no progress bar")
    return p


# --- config and run folder -------------------------------------------------------------------


def _normalise(given: dict[str, Any]) -> dict[str, Any]:
    ds = given.get("dataset")
    if isinstance(ds, str) and ds.startswith("folder:"):
        # Absolute, so a resume from another working directory finds the same images.
        given["dataset"] = "folder:" + str(Path(ds.removeprefix("folder:")).expanduser().resolve())
    return given


def _config_error(e: ValueError) -> UsageError:
    return UsageError(str(e).replace("invalid training config:\n  ", "").replace("\n  ", "; "))


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """The config this invocation trains, and whether it continues an existing run. Reads only."""
    out = Path(args.out)
    given = _normalise({k: v for k, v in vars(args).items() if k in CONFIG_FIELDS})
    saved_path = out / "config.json"
    if args.resume and args.force:
        raise UsageError("--resume and --force contradict each other")
    if args.resume and saved_path.is_file():
        try:
            saved = TrainConfig.load(saved_path).to_dict()
        except (ValueError, TypeError, OSError) as e:
            raise UsageError(f"--resume: cannot read {saved_path}: {e}") from None
        clashes = [
            f"--{k.replace('_', '-')} {v} (the run has {saved[k]})"
            for k, v in given.items()
            if k not in RESUMABLE_FIELDS and v != saved[k]
        ]
        if clashes:
            raise UsageError(
                f"--resume: {', '.join(clashes)}: a resumed run keeps its config; drop those flags or use a new --out"
            )
        try:
            cfg = TrainConfig.from_dict({**saved, **given, "out": str(out)})
        except ValueError as e:
            raise _config_error(e) from None
        return cfg, True
    if "dataset" not in given:
        hint = f" ({saved_path} not found, nothing to resume)" if args.resume else ""
        raise UsageError(f"--dataset is required{hint}")
    try:
        check_dataset_name(given["dataset"])
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if "arch" not in given:
        ds = given["dataset"]
        given["arch"] = (
            "mlp" if ds in toy.TOY_DATASETS else "dcgan28" if ds in IDX_DATASETS else "dcgan64"
        )
    try:
        cfg = TrainConfig(**given)
    except ValueError as e:
        raise _config_error(e) from None
    if not args.force and out.exists():
        ckpt = out / LATEST
        if ckpt.exists():
            raise UsageError(
                f"{out} already holds a run with a checkpoint: --resume to continue it, --force to start over"
            )
        if saved_path.exists():
            with contextlib.suppress(ValueError, TypeError, OSError):
                if TrainConfig.load(saved_path).to_dict() == cfg.to_dict():
                    return cfg, False
            raise UsageError(
                f"{out} holds a run with a different config: use another --out, or --force to replace it"
            )
    return cfg, False


RUN_FILES = ("config.json", "metrics.jsonl", "curves.png", "summary.json", "command.txt", LATEST)


def clear_run_dir(out: Path) -> None:
    """Remove what an earlier run wrote here (and only that)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for p in numbered_checkpoints(out) if out.is_dir() else []:
        p.unlink()
    samples = out / "samples"
    if samples.is_dir():
        for p in samples.glob("step_*.png"):
            p.unlink()
        with contextlib.suppress(OSError):
            samples.rmdir()


def read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line torn by a kill mid-write
            rec = json.loads(line)
            if rec.get("step", math.inf) <= upto:
                records.append(rec)
    return records


def write_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(path, lambda f: f.write(text.encode()))


# --- logging -----------------------------------------------------------------------------------


class StatAverager:
    """Means of the per-step stats since the last log line; its state goes into checkpoints."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return means

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.count = dict(state["sums"]), int(state["count"])


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

    n = SCATTER_POINTS if cfg.arch == "mlp" else GRID_SEEDS
    nrow = 8
    labels = None
    if classes:
        nrow = CLASS_GRID_COLUMNS
        n = classes * nrow
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
        save_image_grid(fake, path, nrow=nrow, scale=2 if fake.shape[-1] <= 32 else 1)
    return path


# --- main --------------------------------------------------------------------------------------


def _fail(message: str, env: distributed.DistEnv) -> int:
    if env.is_main:
        print(f"{PROG}: error: {message}", file=sys.stderr)
    distributed.shutdown(env)
    return 2


def _threads(cfg: TrainConfig, env: distributed.DistEnv) -> None:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif env.distributed and cfg.device == "cpu":
        # N processes x all cores each would oversubscribe the CPU many times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // env.local_world_size))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    env = distributed.detect()
    distributed.init(env)

    # 1. Rank 0 decides the config (it owns the run folder); everyone gets its answer.
    resolved: tuple[dict[str, Any] | None, bool, str | None] = (None, False, None)
    if env.is_main:
        try:
            cfg0, resuming0 = resolve_config(args)
            resolved = (cfg0.to_dict(), resuming0, None)
        except UsageError as e:
            resolved = (None, False, str(e))
    cfg_dict, resuming, error = distributed.broadcast(resolved, env)
    if error or cfg_dict is None:
        return _fail(error or "no config", env)
    cfg = TrainConfig.from_dict(cfg_dict)
    out = Path(cfg.out)

    # 2. Every rank loads its data shard; a rank without the dataset stops them all.
    sampler: Sampler | None = None
    try:
        device = distributed.resolve_device(cfg.device, env)
        _threads(cfg, env)
        sampler = make_sampler(cfg, env.rank, env.world_size)
        error = None
    except (DatasetError, ValueError) as e:
        error = str(e)
    error = distributed.first_error(error, env)
    if error or sampler is None:
        return _fail(error or "no data", env)

    # 3. Rank 0 reads the checkpoint and prepares the folder (only now: a failed start leaves none).
    prepared: tuple[dict[str, Any] | None, str | None] = (None, None)
    lock = None
    if env.is_main:
        try:
            lock = lock_run_dir(out)
            ckpt = None
            if resuming and (out / LATEST).is_file():
                ckpt = load_checkpoint(out / LATEST, expect_config=cfg)
            prepare_run_dir(cfg, out, ckpt, argv, env)
            prepared = (ckpt, None)
        except (CheckpointError, UsageError, OSError) as e:
            prepared = (None, str(e))
    ckpt, error = distributed.broadcast(prepared, env)
    try:
        if error:
            return _fail(error, env)
        return train(
            cfg, sampler, device, env, ckpt, keep=args.keep_ckpts, progress=not args.no_progress
        )
    finally:
        distributed.shutdown(env)
        if lock is not None:
            lock.close()  # releases the flock


def lock_run_dir(out: Path) -> IO[str] | None:
    """Hold an exclusive lock on ``out/.lock`` while training, so two processes never write one run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return None
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / ".lock", "w")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UsageError(f"another process is training in {out} right now") from None
    return f


def prepare_run_dir(
    cfg: TrainConfig,
    out: Path,
    ckpt: dict[str, Any] | None,
    argv: list[str],
    env: distributed.DistEnv,
) -> None:
    if ckpt is None:
        clear_run_dir(out)  # a fresh start (or --force, or a resume with nothing saved yet)
    out.mkdir(parents=True, exist_ok=True)
    # Temp files of writes a kill interrupted; we hold the lock, so no live writer owns them.
    for stale in [*out.glob(".*.tmp-*"), *out.glob("samples/.*.tmp-*")]:
        stale.unlink(missing_ok=True)
    text = json.dumps(cfg.to_dict(), indent=2) + "\n"  # as TrainConfig.save, but atomic
    atomic_write(out / "config.json", lambda f: f.write(text.encode()))
    start = ckpt["step"] if ckpt else 0
    # Log lines past the checkpoint belong to the killed attempt: the resumed run rewrites them.
    write_records(out / "metrics.jsonl", read_metrics(out / "metrics.jsonl", start))
    launcher = f"torchrun x{env.world_size}" if env.distributed else "python"
    line = f"{datetime.now(UTC).isoformat(timespec='seconds')}  [{launcher}, from step {start}]  {shlex.join([*PROG.split(), *argv])}\n"
    with open(out / "command.txt", "a") as f:
        f.write(line)


def train(
    cfg: TrainConfig,
    sampler: Sampler,
    device: torch.device,
    env: distributed.DistEnv,
    ckpt: dict[str, Any] | None,
    keep: int = 2,
    progress: bool = True,
) -> int:
    from tqdm import tqdm

    out = Path(cfg.out)
    assert cfg.z_dim is not None
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

    real_per_step = cfg.n_critic * cfg.batch_size * env.world_size
    n_images = sampler.info.get("n_images")
    records = read_metrics(out / "metrics.jsonl", step) if env.is_main else []
    t_start = t_log = time.perf_counter()
    steps_since_log = 0
    last_epoch = math.floor(sampler.epoch) if sampler.epoch is not None else None
    t_epoch = t_start
    epoch_times: list[float] = []
    title = f"{cfg.dataset} / {cfg.arch} / {cfg.loss}"
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not (env.is_main and progress),
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        desc=out.name,
        unit="step",
    )

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
    with stopper.installed():
        while step < cfg.steps:
            trainer.set_step(step)
            stats = trainer.step(sampler)
            step += 1
            steps_since_log += 1
            averager.add(stats)
            last = step == cfg.steps
            epoch = sampler.epoch
            if epoch is not None and last_epoch is not None and math.floor(epoch) > last_epoch:
                now = time.perf_counter()
                epoch_times.append(now - t_epoch)
                if env.is_main:
                    bar.write(
                        f"epoch {math.floor(epoch)} done at step {step}: {now - t_epoch:.1f} s"
                    )
                last_epoch, t_epoch = math.floor(epoch), now
            if step % cfg.log_every == 0 or last:
                now = time.perf_counter()
                means = [m for m in distributed.gather(averager.pop(), env) if m]
                rec: dict[str, Any] = {
                    "step": step,
                    "epoch": None if epoch is None else round(epoch, 4),
                }
                rec |= {k: sum(m[k] for m in means) / len(means) for k in means[0]} if means else {}
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
                    shown = {
                        k: rec[k]
                        for k in ("d_loss", "g_loss", "p_real", "p_fake", "w_distance")
                        if k in rec
                    }
                    post = {k: f"{v:.3f}" for k, v in shown.items()}
                    if epoch is not None:
                        post["ep"] = f"{epoch:.2f}"
                    bar.set_postfix(post, refresh=False)
            if env.is_main and (step % cfg.sample_every == 0 or last):
                write_samples(
                    trainer.sampling_generator(), cfg, out, step, device, model_args.num_classes
                )
                save_curves(records, out / "curves.png", title)
            stop = distributed.any_flag(stopper.signum is not None, env)
            if step % cfg.ckpt_every == 0 or last or stop:
                checkpoint()
            bar.update(1)
            if stop:
                break
    bar.close()

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
    return m.module if hasattr(m, "module") else m


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
    if saved.get("kind") == "array" and hasattr(sampler, "batches_per_epoch"):
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


def write_summary(
    cfg: TrainConfig,
    out: Path,
    step: int,
    elapsed_s: float,
    records: list[dict[str, Any]],
    epoch_times: list[float],
    sampler: Sampler,
    env: distributed.DistEnv,
    fingerprints: list[dict[str, str]],
    device: torch.device,
) -> None:
    rates = [r["img_per_s"] for r in records if "img_per_s" in r]
    samples = sorted((out / "samples").glob("step_*.png"))
    summary = {
        "step": step,
        "steps": cfg.steps,
        "elapsed_s": round(elapsed_s, 1),
        "epochs": sampler.epoch,
        "epoch_times_s": [round(t, 1) for t in epoch_times],
        "median_img_per_s": float(np.median(rates)) if rates else None,
        "dataset": sampler.info,
        "checkpoint": LATEST,
        "last_samples": samples[-1].relative_to(out).as_posix() if samples else None,
        "world_size": env.world_size,
        "fingerprints": fingerprints,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "summary.json", lambda f: f.write(text.encode()))


if __name__ == "__main__":
    sys.exit(main())
