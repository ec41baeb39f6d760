"""Train a GAN: ``python -m training.train --dataset ... --arch ... --loss ... --steps N --out runs/NAME``.

This module is the command line: options (flags, and ``--config FILE`` under them), the config
they resolve to, the run folder's start (fresh, ``--force`` or ``--resume``) and the handshake
between torchrun processes. The loop itself is training.loop; the run folder's files are
training.run_dir. See docs/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from training import distributed
from training.checkpoint import LATEST, RESUMABLE_FIELDS, CheckpointError, load_checkpoint
from training.config import ARCHS, TrainConfig
from training.config_file import ConfigFileError, config_argv, read_config_file
from training.data import (
    DATASET_CHOICES,
    DatasetError,
    Sampler,
    check_dataset_name,
    default_arch,
    make_sampler,
)
from training.loop import train
from training.losses import LOSSES
from training.run_dir import UsageError, lock_run_dir, prepare_run_dir

__all__ = [
    "PROG",
    "UsageError",
    "build_parser",
    "lock_run_dir",
    "main",
    "parse_args",
    "resolve_config",
]

PROG = "python -m training.train"
CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}


class _Parser(argparse.ArgumentParser):
    error_prefix = ""

    def error(self, message: str) -> NoReturn:
        # One line instead of argparse's multi-line usage dump.
        self.exit(2, f"{self.prog}: error: {self.error_prefix}{message} (see --help)\n")


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def build_parser(error_prefix: str = "") -> argparse.ArgumentParser:
    # Config flags default to SUPPRESS so we know which were given: on --resume the saved
    # config fills the rest, and a given flag that contradicts it is an error, not a silent change.
    p = _Parser(
        prog=PROG,
        description="Train a GAN; see docs/training.md.",
        argument_default=argparse.SUPPRESS,
    )
    p.error_prefix = error_prefix
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TrainConfig fields in a .toml, .yaml/.yml or .json file (a run folder's "
        "config.json works); flags given beside it win",
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
    g.add_argument(
        "--out", help="run folder, e.g. runs/mnist-dcgan (required, here or in --config)"
    )
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
        "--data-root",
        help="folder holding mnist/, fashion-mnist/ and cifar10/ (default ../shared/data)",
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
    b.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TensorBoard logs in OUT/tensorboard (default on, when the package is installed)",
    )
    b.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fetch mnist / fashion-mnist / cifar10 into --data-root when missing (default on; "
        "GAN_DATA_MIRROR replaces the official URLs)",
    )
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The flags, over the ``--config`` file's values when one is given (flags win)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    path = getattr(args, "config", None)
    if path is None:
        return args
    try:
        file_argv, extra = config_argv(read_config_file(Path(path)), f"--config {path}")
    except ConfigFileError as e:
        parser.error(str(e))
    # The file's values go through the same parser as flags, so they get the same checks and
    # the same messages, prefixed with the file's name.
    from_file = build_parser(error_prefix=f"--config {path}: ").parse_args(file_argv)
    merged = {**vars(from_file), **vars(args)}
    if extra is not None:
        merged["extra"] = extra
    return argparse.Namespace(**merged)


# --- config ------------------------------------------------------------------------------------


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
    if getattr(args, "out", None) is None:
        raise UsageError("--out is required (as a flag, or 'out' in the --config file)")
    out = Path(args.out)
    given = _normalise({k: v for k, v in vars(args).items() if k in CONFIG_FIELDS})
    if getattr(args, "extra", None) is not None:
        given["extra"] = args.extra
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
        given["arch"] = default_arch(given["dataset"])
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
    args = parse_args(argv)
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
        sampler = make_sampler(cfg, env.rank, env.world_size, download=args.download)
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
            prepare_run_dir(cfg, out, ckpt, [*PROG.split(), *argv], env)
            prepared = (ckpt, None)
        except (CheckpointError, UsageError, OSError) as e:
            prepared = (None, str(e))
    ckpt, error = distributed.broadcast(prepared, env)
    try:
        if error:
            return _fail(error, env)
        return train(
            cfg,
            sampler,
            device,
            env,
            ckpt,
            keep=args.keep_ckpts,
            progress=not args.no_progress,
            tensorboard=args.tensorboard,
        )
    finally:
        distributed.shutdown(env)
        if lock is not None:
            lock.close()  # releases the flock


if __name__ == "__main__":
    sys.exit(main())
