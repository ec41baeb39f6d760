"""Mode-collapse metrics for the 2-D toys (the PacGAN / VEEGAN protocol).

    python -m training.evaluate RUN_DIR [--n 2500] [--seed 0]

prints one JSON object. On ``n`` generator samples (2,500 in the papers):

- a sample is *high quality* (HQ) when it lies within 3 standard deviations of its nearest mode
  centre (Euclidean distance ``<= 3 * mode_std``: the modes are isotropic, so this is the papers'
  per-axis-scaled distance);
- a mode is *covered* when it is the nearest mode of at least one HQ sample;
- ``reverse_kl`` is ``KL(p_hat || uniform) = sum_k p_hat_k log(K p_hat_k)``, where ``p_hat`` is the
  histogram of the HQ samples over their nearest modes and K the number of modes (the true mode
  distribution is uniform). It is 0 for a perfectly balanced generator and ``log K`` when every HQ
  sample sits on one mode; it is undefined (``null``) when no sample is HQ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.checkpoint import LATEST, CheckpointError, checkpoint_model_args, load_checkpoint
from training.config import TrainConfig
from training.nets import build_networks
from training.toy import TOY_DATASETS, mode_centers, mode_std

N_SAMPLES = 2500
HQ_STDS = 3.0
# The latent draw is seeded on its own, so every run (and the lab) is scored on the same latents.
LATENT_SEED = 0


def evaluate_samples(samples: np.ndarray, dataset: str, hq_stds: float = HQ_STDS) -> dict[str, Any]:
    """Modes covered, high-quality fraction and reverse KL of ``samples`` ``(n, 2)`` on ``dataset``."""
    centers = mode_centers(dataset)
    x = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    dist = np.linalg.norm(x[:, None, :] - centers[None, :, :], axis=2)
    nearest = dist.argmin(axis=1)
    # NaN/inf samples (a diverged generator) compare False: never high quality.
    hq = dist[np.arange(len(x)), nearest] <= hq_stds * mode_std(dataset)
    counts = np.bincount(nearest[hq], minlength=len(centers))
    return {
        "dataset": dataset,
        "n_samples": len(x),
        "modes": int((counts > 0).sum()),
        "n_modes": len(centers),
        "hq_fraction": float(hq.mean()) if len(x) else 0.0,
        "reverse_kl": reverse_kl_to_uniform(counts),
        "mode_counts": counts.tolist(),
    }


def reverse_kl_to_uniform(counts: np.ndarray) -> float | None:
    """``KL(counts / sum || uniform)``; None when there is nothing to normalise."""
    total = counts.sum()
    if total == 0:
        return None
    p = counts[counts > 0] / total
    # Clamp the -1e-17 that rounding leaves on a perfectly uniform histogram.
    return max(0.0, float(np.sum(p * np.log(p * len(counts)))))


@torch.no_grad()
def generate(G: nn.Module, z_dim: int, n: int = N_SAMPLES, seed: int = LATENT_SEED) -> np.ndarray:
    """``n`` samples from ``G`` on a fixed latent draw (its own RNG: the global one is untouched)."""
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    was_training = G.training
    G.eval()
    try:
        device = next(iter(G.parameters()), torch.empty(0)).device
        return G(z.to(device)).float().cpu().numpy()
    finally:
        G.train(was_training)


def evaluate_generator(
    G: nn.Module, cfg: TrainConfig, n: int = N_SAMPLES, seed: int = LATENT_SEED
) -> dict[str, Any]:
    if cfg.dataset not in TOY_DATASETS:
        raise ValueError(
            f"mode metrics need a 2-D toy dataset ({', '.join(TOY_DATASETS)}), got {cfg.dataset!r}"
        )
    assert cfg.z_dim is not None  # resolved by TrainConfig.__post_init__
    return evaluate_samples(generate(G, cfg.z_dim, n, seed), cfg.dataset)


def load_run_generator(run_dir: Path) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """``(G, cfg, info)`` from a run folder's ``ckpt-latest.pt``; the EMA generator when it was kept."""
    ckpt = load_checkpoint(Path(run_dir) / LATEST)
    cfg = TrainConfig.from_dict(ckpt["config"])
    if cfg.dataset not in TOY_DATASETS:
        # Checked before building G: an image run's nets need its channel count, not ours.
        raise ValueError(
            f"{run_dir} is a {cfg.dataset} run; mode metrics are for {', '.join(TOY_DATASETS)}"
        )
    G, _ = build_networks(checkpoint_model_args(ckpt))
    state = ckpt["trainer"]
    use_ema = state.get("G_ema") is not None
    G.load_state_dict(state["G_ema"] if use_ema else state["G"])
    info = {
        "checkpoint": str(Path(run_dir) / LATEST),
        "step": ckpt["step"],
        "generator": "G_ema" if use_ema else "G",
    }
    return G, cfg, info


def evaluate_run(run_dir: Path, n: int = N_SAMPLES, seed: int = LATENT_SEED) -> dict[str, Any]:
    G, cfg, info = load_run_generator(run_dir)
    return {"run_dir": str(run_dir), **info, "seed": seed, **evaluate_generator(G, cfg, n, seed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--n", type=int, default=N_SAMPLES, help="generator samples (default %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=LATENT_SEED,
        help="seed of the latent draw (default %(default)s, as the lab)",
    )
    args = parser.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.n, args.seed)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # allow_nan=False: the output must stay strict JSON (a missing KL is null, never NaN).
    print(json.dumps(result, indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
