"""Self-describing, atomically written checkpoints.

A checkpoint holds everything a killed run needs to continue bit-for-bit: the config, the step,
G / D / EMA / optimiser state, and per-process RNG and data-sampler state. It is written to a
temporary file in the run folder, fsync'ed, then ``os.replace``d over ``ckpt-latest.pt``: a crash
at any moment leaves either the old or the new checkpoint, never a torn one.

Everything stored is a tensor or plain Python data, so ``torch.load(..., weights_only=True)``
reads it: loading a checkpoint never unpickles arbitrary objects.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from training.config import TrainConfig
from training.nets import ModelArgs

FORMAT = "gan-ckpt/1"
LATEST = "ckpt-latest.pt"
_NUMBERED = re.compile(r"^ckpt-(\d+)\.pt$")
REQUIRED_KEYS = ("format", "config", "step", "trainer", "rng", "sampler", "world_size")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not one of ours."""


# --- RNG state -------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """This process's torch / CUDA / numpy / Python RNG states, as weights_only-loadable data."""
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple)  # legacy=True: the MT19937 tuple, never the dict form
    kind, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- atomic files ----------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a same-directory temp file + fsync + ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable (POSIX); not possible on every platform/filesystem.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- save / load -----------------------------------------------------------------------------


def numbered_checkpoints(run_dir: Path) -> list[Path]:
    """``ckpt-NNNNNN.pt`` files, oldest step first."""
    found = [
        (int(m.group(1)), p) for p in Path(run_dir).iterdir() if (m := _NUMBERED.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / LATEST
    return path if path.is_file() else None


def save_checkpoint(
    run_dir: Path,
    *,
    config: TrainConfig,
    step: int,
    trainer_state: dict[str, Any],
    model_args: dict[str, Any] | None = None,
    rng: list[dict[str, Any]],
    sampler: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``run_dir/ckpt-latest.pt`` atomically; keep the ``keep`` newest step-numbered copies.

    ``rng`` and ``sampler`` are per-rank lists (one entry in a single-process run).
    """
    run_dir = Path(run_dir)
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        # The networks' constructor arguments (training.nets.ModelArgs), as nanoGPT stores
        # model_args: whoever rebuilds G and D reads these instead of re-deriving them from flags.
        "model_args": model_args,
        "step": int(step),
        "trainer": trainer_state,
        "rng": rng,
        "sampler": sampler,
        "world_size": len(rng),
        "extra": extra or {},
        "torch_version": str(torch.__version__),
        "saved_at": time.time(),
    }
    latest = run_dir / LATEST
    atomic_write(latest, lambda f: torch.save(state, f))
    if keep > 0:
        _keep_numbered(latest, run_dir / f"ckpt-{step:06d}.pt", keep)
    return latest


def _keep_numbered(latest: Path, numbered: Path, keep: int) -> None:
    # A hard link costs no space until ckpt-latest.pt is replaced by the next save.
    tmp = numbered.with_name(f".{numbered.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(latest, tmp)
    except OSError:
        shutil.copyfile(latest, tmp)
    os.replace(tmp, numbered)
    for old in numbered_checkpoints(latest.parent)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Path, expect_config: TrainConfig | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint file (or the latest one in a run folder).

    With ``expect_config``, every field except the ones a resume may change must match.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LATEST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which, not a pickle traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {first})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (format {found!r})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise CheckpointError(f"{path}: bad step {state['step']!r}")
    if len(state["rng"]) != state["world_size"] or len(state["sampler"]) != state["world_size"]:
        raise CheckpointError(
            f"{path}: per-rank state does not match world_size {state['world_size']}"
        )
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config: {e}") from e
    if expect_config is not None:
        diff = config_differences(saved, expect_config)
        if diff:
            raise CheckpointError(
                f"{path}: checkpoint was made with a different config: {'; '.join(diff)}"
            )
    return state


def checkpoint_model_args(state: dict[str, Any]) -> ModelArgs:
    """The networks a checkpoint's weights belong to.

    Checkpoints from before ``model_args`` was stored get the arguments the trainer used then:
    batch norm in D unless the *resolved* config has a gradient penalty or spectral norm, and the
    channel count of the dataset's kind (1 for IDX files, 3 for image folders).
    """
    if state.get("model_args"):
        try:
            return ModelArgs.from_dict(dict(state["model_args"]))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint has invalid model_args: {e}") from None
    cfg = TrainConfig.from_dict(state["config"])
    dataset = cfg.dataset
    channels = 1 if dataset in ("mnist", "fashion-mnist") else 2 if cfg.arch == "mlp" else 3
    return ModelArgs.for_config(cfg, channels)


# Fields a resumed run may change without changing what is being trained.
RESUMABLE_FIELDS = frozenset(
    {
        "steps",
        "log_every",
        "sample_every",
        "ckpt_every",
        "device",
        "num_threads",
        "data_root",
        "out",
    }
)


def config_differences(
    a: TrainConfig, b: TrainConfig, ignore: frozenset[str] = RESUMABLE_FIELDS
) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} != {db[k]!r}" for k in da if k not in ignore and da[k] != db.get(k)]
