"""``torchrun`` support: process-group setup, DDP wrapping and the few collectives the CLI needs.

Launch with ``torchrun --nproc_per_node N -m training.train ...``; torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. The backend is gloo for CPU tensors and
nccl for CUDA ones. ``--batch-size`` is per process, so the global batch is ``N x batch``.

Two things DDP changes about a GAN, and how they are handled:

- BatchNorm: each process normalises its own local batch (as a per-GPU DCGAN does); running
  statistics are broadcast from rank 0 at every forward (DDP's ``broadcast_buffers``).
  SyncBatchNorm is GPU-only in torch and is not used.
- Gradient penalty: ``autograd.grad(create_graph=True)`` runs through the DDP-wrapped critic and
  the penalty's parameter gradients reach D in the same single ``backward()`` as the loss, which
  is when DDP all-reduces: tests/training/test_distributed.py checks the result equals the
  average of the per-process gradients.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistEnv:
    """The torchrun environment, or a single process when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def init(env: DistEnv) -> None:
    """Join the process group; a no-op for a single process."""
    if not env.distributed or dist.is_initialized():
        return
    # One group, two backends: gloo carries CPU tensors (and the CLI's small object messages),
    # nccl the CUDA gradients when there are GPUs.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        # Before any collective: otherwise every local rank would talk nccl from GPU 0.
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(requested: str, env: DistEnv) -> torch.device:
    """``cuda`` means this process's GPU (LOCAL_RANK) under torchrun."""
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available on this machine")
        if device.index is None:  # set_device needs an index: plain `cuda` is this rank's GPU
            device = torch.device("cuda", env.local_rank if env.distributed else 0)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"--device {requested}: use cpu, cuda or cuda:N")
    return device


def wrap(module: nn.Module, device: torch.device, env: DistEnv) -> nn.Module:
    if not env.distributed:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, output_device=device.index if ids else None)


def broadcast(obj: Any, env: DistEnv, src: int = 0) -> Any:
    """Rank ``src``'s object on every rank (pickled over the CPU backend)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's object, in rank order, on every rank."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def first_error(error: str | None, env: DistEnv) -> str | None:
    """Agree on failure: if any rank failed (e.g. its node lacks the dataset) all ranks stop."""
    errors = [e for e in gather(error, env) if e]
    return errors[0] if errors else None


def any_flag(flag: bool, env: DistEnv) -> bool:
    """True on every rank when it is True on any: a stop request seen by one rank stops all at the same step."""
    if not env.distributed:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def fingerprint(module: nn.Module) -> str:
    """sha256 of the parameters' bytes: equal across ranks iff DDP kept them in sync."""
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BN statistics are per-rank between DDP's broadcasts; they are not weights
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
