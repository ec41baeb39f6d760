"""torchrun / DDP: two CPU processes on gloo.

The gradient-penalty check matters because DDP documents no support for ``autograd.grad`` with
``create_graph=True``; it shows the all-reduced gradient of ``d_loss + lambda * gp`` through a
DDP-wrapped critic equals the mean of the per-process gradients computed without DDP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from training.distributed import DistEnv, resolve_device
from training.losses import get_loss, gradient_penalty
from training.nets import ModelArgs, build_networks

ROOT = Path(__file__).resolve().parents[2]


def _gp_worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        _, critic = build_networks(
            ModelArgs("dcgan28", 8, width=4, channels=1, batch_norm_in_d=False)
        )
        local = build_networks(ModelArgs("dcgan28", 8, width=4, channels=1, batch_norm_in_d=False))[
            1
        ]
        local.load_state_dict(critic.state_dict())
        ddp = DDP(critic)
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
        real, fake = torch.randn(6, 1, 28, 28, generator=g), torch.randn(6, 1, 28, 28, generator=g)
        loss = get_loss("wgan-gp")

        def objective(model: torch.nn.Module) -> torch.Tensor:
            torch.manual_seed(7 + rank)  # the same interpolation weights in both passes
            return loss.d_loss(model(real), model(fake)) + 10.0 * gradient_penalty(
                model, real, fake
            )

        objective(ddp).backward()
        objective(local).backward()
        grads_ddp = torch.cat([p.grad.flatten() for p in critic.parameters()])
        grads_local = torch.cat([p.grad.flatten() for p in local.parameters()])
        dist.all_reduce(grads_local)
        grads_local /= world
        torch.save({"ddp": grads_ddp, "mean_local": grads_local}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_gradient_penalty_under_ddp_equals_mean_of_local_gradients(tmp_path: Path) -> None:
    out = str(tmp_path / "grads")
    mp.spawn(_gp_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    for rank in range(2):
        g = torch.load(f"{out}.{rank}")
        assert g["ddp"].abs().max() > 0
        torch.testing.assert_close(g["ddp"], g["mean_local"], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.train", "--dataset", "ring8", "--arch", "mlp", "--steps", "20", "--width", "8",
        "--batch-size", "32", "--log-every", "5", "--sample-every", "10", "--ckpt-every", "10",
        "--no-progress", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # Only rank 0 wrote: one "done" line, one command line, one log line per interval.
    assert proc.stdout.count("done: 20 steps") == 1
    assert len((out / "command.txt").read_text().splitlines()) == 1
    assert [
        json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ] == [5, 10, 15, 20]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_000010.png",
        "step_000020.png",
    ]
    assert (out / "curves.png").stat().st_size > 0 and (out / "ckpt-latest.pt").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 20
    fps = summary["fingerprints"]
    assert len(fps) == 2 and fps[0] == fps[1], fps  # DDP kept G and D identical on both ranks
    ckpt = torch.load(out / "ckpt-latest.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    # The ranks drew different data: their sampler RNGs ended in different states.
    assert ckpt["sampler"][0]["bit_generator"] != ckpt["sampler"][1]["bit_generator"]


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        ("cuda", DistEnv(), "cuda:0"),  # torch.cuda.set_device refuses a bare "cuda"
        ("cuda", DistEnv(rank=3, world_size=4, local_rank=1, local_world_size=2), "cuda:1"),
        ("cuda:2", DistEnv(), "cuda:2"),
        ("cpu", DistEnv(), "cpu"),
    ],
)
def test_resolve_device_always_names_a_gpu_index(
    monkeypatch: pytest.MonkeyPatch, requested: str, env: DistEnv, expected: str
) -> None:
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    device = resolve_device(requested, env)
    assert str(device) == expected
    assert [str(d) for d in chosen] == ([expected] if expected != "cpu" else [])
