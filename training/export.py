"""Export a training run to the model folder the service loads (see docs/model-format.md).

    python -m training.export RUN_DIR --name NAME --out models/NAME

Writes generator.onnx and discriminator.onnx (self-contained, float32, dynamic batch), model.json
and a model card. It refuses to write a model whose ONNX outputs differ from torch's by more than
``PARITY_TOL`` on 64 seeds: the service would otherwise serve images nobody evaluated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from service.latents import ALGORITHM, SEED_MAX, latents
from training.config import TrainConfig
from training.losses import get_loss
from training.nets import build_networks, image_shape

OPSET = 18
PARITY_TOL = 1e-4
PARITY_SEEDS = 64
# Calibration/evaluation latents come from seeds far away from the ones users usually try.
CALIBRATION_SEED = 1_000_000_000
VALUE_RANGE = (-1.0, 1.0)


class ParityError(RuntimeError):
    pass


class SingleImageScorer(nn.Module):
    """Lets a PacGAN discriminator (trained on packs of k images) score one image.

    Each image is repeated k times on the channel axis: the packed D's verdict on a pack made only
    of that image. With pack = 1 this is the identity wrapper.
    """

    def __init__(self, discriminator: nn.Module, pack: int):
        super().__init__()
        self.discriminator = discriminator
        self.pack = pack

    def forward(self, images: Tensor) -> Tensor:
        if self.pack > 1:
            images = images.repeat(1, self.pack, 1, 1)
        return self.discriminator(images)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_run(run_dir: Path) -> tuple[TrainConfig, int, dict[str, Any]]:
    """``(config, step, trainer state)`` of the run's latest checkpoint."""
    from training.checkpoint import latest_checkpoint, load_checkpoint

    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint found (is it a training run folder?)")
    ckpt = load_checkpoint(path)
    return TrainConfig.from_dict(ckpt["config"]), int(ckpt["step"]), ckpt["trainer"]


def dataset_channels(cfg: TrainConfig) -> int:
    return 1 if cfg.dataset in ("mnist", "fashion-mnist") else image_shape(cfg.arch)[0]


@torch.no_grad()
def recalibrate_batch_norm(
    generator: nn.Module, z_dim: int, batches: int = 50, batch_size: int = 256
) -> None:
    """Recompute G's batch-norm statistics from fresh latents.

    The service runs G in eval mode (an image must not depend on its batch-mates), so the running
    statistics are what every image sees. For an EMA generator they were copied from the raw G and do
    not match the averaged weights; a cumulative average over fresh batches fixes that.
    """
    bns = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    generator.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(batches):
        generator(torch.randn(batch_size, z_dim, generator=gen))
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    generator.eval()


def rebuild_networks(cfg: TrainConfig, state: dict[str, Any]) -> tuple[nn.Module, nn.Module, str]:
    """Generator to serve (EMA when the run kept one) and discriminator, in eval mode."""
    loss = get_loss(cfg.loss)
    g, d = build_networks(
        cfg.arch,
        cfg.z_dim,
        cfg.width,
        channels=dataset_channels(cfg),
        pack=cfg.pack,
        spectral_norm=cfg.spectral_norm,
        batch_norm_in_d=not loss.gp_weight,
    )
    which = "G_ema" if state.get("G_ema") is not None else "G"
    g.load_state_dict(state[which])
    d.load_state_dict(state["D"])
    return g.eval(), d.eval(), which


def export_onnx(
    module: nn.Module, example: Tensor, path: Path, input_name: str, output_name: str
) -> None:
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_shapes={input_name: {0: torch.export.Dim("batch", min=1, max=4096)}},
        opset_version=OPSET,
        external_data=False,
        dynamo=True,
        verbose=False,
    )


def _ort_session(path: Path):
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def real_images(cfg: TrainConfig, n: int, data_root: str | None) -> np.ndarray | None:
    """Held-out real images in the model's value range, ``(n, C, H, W)`` float32, or None."""
    if cfg.dataset in ("mnist", "fashion-mnist"):
        from training.idx import load_split

        x, _ = load_split(cfg.dataset, "test", data_root or cfg.data_root)
        x = x[:n].astype(np.float32) / 127.5 - 1.0
        return x[:, None]
    return None


def check_parity(
    g: nn.Module, scorer: nn.Module, g_path: Path, d_path: Path, z_dim: int, real: np.ndarray | None
) -> dict[str, float]:
    z = latents(0, PARITY_SEEDS, z_dim)
    with torch.no_grad():
        g_torch = g(torch.from_numpy(z)).numpy()
    g_ort = _ort_session(g_path).run(None, {"z": z})[0]
    images = g_torch if real is None else np.concatenate([g_torch, real[:PARITY_SEEDS]])
    with torch.no_grad():
        d_torch = scorer(torch.from_numpy(images)).numpy()
    d_ort = _ort_session(d_path).run(None, {"images": images})[0]
    report = {
        "seeds": PARITY_SEEDS,
        "max_abs_diff_generator": float(np.abs(g_ort - g_torch).max()),
        "max_abs_diff_discriminator": float(np.abs(d_ort - d_torch).max()),
        "tolerance": PARITY_TOL,
    }
    if g_ort.shape != g_torch.shape or d_ort.shape != d_torch.shape:
        raise ParityError(
            f"shape mismatch torch vs ONNX Runtime: {g_torch.shape}/{g_ort.shape}, {d_torch.shape}/{d_ort.shape}"
        )
    if max(report["max_abs_diff_generator"], report["max_abs_diff_discriminator"]) > PARITY_TOL:
        raise ParityError(f"ONNX Runtime and torch disagree beyond {PARITY_TOL}: {report}")
    return report


def fit_platt(logits: np.ndarray, labels: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Logistic regression ``P(real | logit) = sigmoid(a * logit + b)`` by Newton's method."""
    x = np.stack([logits.astype(np.float64), np.ones_like(logits, dtype=np.float64)], axis=1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - labels)
        hess = x.T @ (x * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def calibrate_realness(
    cfg: TrainConfig, g_path: Path, d_path: Path, real: np.ndarray | None, n: int = 2000
) -> dict[str, Any]:
    """How the service turns a D output into a realness in [0, 1] (stored in model.json)."""
    formula = "realness = 1 / (1 + exp(-(a * logit + b)))"
    if get_loss(cfg.loss).outputs_logit:
        return {
            "method": "sigmoid",
            "a": 1.0,
            "b": 0.0,
            "formula": formula,
            "why": f"{cfg.loss} trains D as a logistic classifier, so sigmoid(logit) is its P(real)",
        }
    if real is None:
        raise ValueError(
            f"loss {cfg.loss!r} needs held-out real images to calibrate realness; none for dataset {cfg.dataset!r}"
        )
    # Held-out: the second half of the test split (parity used the first 64), generated images from far-away seeds.
    real = real[len(real) // 2 :][:n]
    fake = _ort_session(g_path).run(None, {"z": latents(CALIBRATION_SEED, len(real), cfg.z_dim)})[0]
    scorer = _ort_session(d_path)
    logits = np.concatenate(
        [scorer.run(None, {"images": real})[0], scorer.run(None, {"images": fake})[0]]
    )
    labels = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
    a, b = fit_platt(logits, labels)
    return {
        "method": "platt",
        "a": a,
        "b": b,
        "formula": formula,
        "fitted_on": {
            "real": len(real),
            "generated": len(fake),
            "real_source": f"{cfg.dataset} test split, second half",
            "generated_seeds_from": CALIBRATION_SEED,
        },
        "why": f"a {cfg.loss} critic's output is an unbounded score, not a log-odds",
    }


def build_manifest(
    name: str, cfg: TrainConfig, step: int, which_g: str, out: Path, parity: dict, realness: dict
) -> dict[str, Any]:
    c, h, w = dataset_channels(cfg), *image_shape(cfg.arch)[1:]
    return {
        "format": "gan-model/1",
        "name": name,
        "architecture": cfg.arch,
        "loss": cfg.loss,
        "z_dim": cfg.z_dim,
        "image": {
            "channels": c,
            "height": h,
            "width": w,
            "value_range": list(VALUE_RANGE),
            "to_uint8": "clip(round((x - lo) * 255 / (hi - lo)), 0, 255)",
        },
        "latent": {
            "algorithm": ALGORITHM,
            "seed_range": [0, SEED_MAX],
            "row_i": "latent of seed + i",
            "truncation": "z * psi, psi in (0, 1]",
            "implementation": "service/latents.py",
        },
        "onnx": {
            "opset": OPSET,
            "generator": {
                "file": "generator.onnx",
                "sha256": sha256_file(out / "generator.onnx"),
                "input": "z",
                "output": "images",
            },
            "discriminator": {
                "file": "discriminator.onnx",
                "sha256": sha256_file(out / "discriminator.onnx"),
                "input": "images",
                "output": "logits",
            },
        },
        "discriminator": {"pack": cfg.pack, "pack_scoring": "replicate"},
        "realness": realness,
        "training": {
            "config": cfg.to_dict(),
            "step": step,
            "generator_weights": which_g,
            "batch_norm": "statistics recomputed at export from 50 x 256 fresh latents",
        },
        "evaluation": {},
        "parity": parity,
    }


def _where(summary: dict[str, Any]) -> str:
    """The hardware a run trained on, as its summary.json recorded it."""
    machine = summary.get("machine") or {}
    cores = f"{machine['cores']} CPU cores" if machine.get("cores") else "CPU"
    device = str(summary.get("device", "cpu"))
    torch_version = f", torch {machine['torch']}" if machine.get("torch") else ""
    if device.startswith("cuda"):
        gpu = machine.get("gpu") or "a GPU"
        return f"{gpu} ({device}), {cores}{torch_version}"
    return f"{cores}, no GPU{torch_version}"


def _training_facts(run_dir: Path) -> tuple[list[str], str]:
    """Every command that trained the run (resumes included) and its wall time, from the run folder."""
    commands = ["(unknown)"]
    if (run_dir / "command.txt").is_file():
        lines = [ln for ln in (run_dir / "command.txt").read_text().splitlines() if ln.strip()]
        commands = [ln.split("]  ", 1)[-1] for ln in lines] or commands
    seconds = "(unknown)"
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
        if "elapsed_s" in summary:
            seconds = f"{float(summary['elapsed_s']) / 60:.1f} min on {_where(summary)}"
    return commands, seconds


def write_sample_grid(path: Path, generator: Path, z_dim: int) -> None:
    from training.plots import save_image_grid

    images = _ort_session(generator).run(None, {"z": latents(0, 64, z_dim)})[0]
    save_image_grid(images, path, nrow=8, scale=2)


def write_model_card(folder: Path, manifest: dict[str, Any], run_dir: Path) -> None:
    commands, wall = _training_facts(run_dir)
    cfg = manifest["training"]["config"]
    ev = manifest.get("evaluation") or {}
    lines = [
        f"# {manifest['name']}",
        "",
        f"A `{manifest['architecture']}` GAN ({manifest['loss']} loss) trained on `{cfg['dataset']}`: "
        f"{manifest['image']['channels']}x{manifest['image']['height']}x{manifest['image']['width']} images "
        f"from a {manifest['z_dim']}-d latent. Generated by `python -m training.export`; do not edit by hand.",
        "",
        "## How it was trained",
        "",
        "```bash",
        *commands,
        f"python -m training.export {run_dir} --name {manifest['name']} --out models/{manifest['name']}",
        "```",
        "",
        f"- steps: {manifest['training']['step']} generator updates, batch {cfg['batch_size']}; "
        f"weights served: `{manifest['training']['generator_weights']}`",
        f"- training wall time: {wall}",
        f"- regularisers: EMA {cfg['ema']}, pack {cfg['pack']}, spectral norm {cfg['spectral_norm']}, "
        f"lr G/D {cfg['lr_g']}/{cfg['lr_d']}",
        f"- ONNX parity over {manifest['parity']['seeds']} seeds: generator max |diff| "
        f"{manifest['parity']['max_abs_diff_generator']:.2e}, discriminator {manifest['parity']['max_abs_diff_discriminator']:.2e}",
        f"- realness: {manifest['realness']['method']} (a={manifest['realness']['a']:.4g}, b={manifest['realness']['b']:.4g})",
        "",
        "![seeds 0..63](samples.png)",
        "",
        'Seeds 0..63, as the service returns them (`POST /generate_grid {"seed": 0, "n": 64}`).',
        "",
        "## Evaluation",
        "",
    ]
    if ev:
        from training.metrics_text import render_report

        lines += [
            "```text",
            render_report(ev, f"models/{manifest['name']}"),
            "```",
            "",
            "Every figure, per seed set, is under `evaluation` in model.json. "
            f"Rerun: `python -m training.metrics models/{manifest['name']} --write` (EVALUATION.md explains each figure).",
        ]
    else:
        lines.append(
            f"Not evaluated at export (`--no-eval`); run `python -m training.metrics models/{manifest['name']} --write`."
        )
    (folder / "README.md").write_text("\n".join(lines) + "\n")


def export_run(
    run_dir: Path,
    name: str,
    out: Path,
    data_root: str | None = None,
    evaluate: bool = True,
    weak: Path | None = None,
) -> dict[str, Any]:
    cfg, step, state = load_run(run_dir)
    if cfg.arch == "mlp":
        raise ValueError(
            "only image models are served; mlp (2-D toy) runs are evaluated with training.evaluate"
        )
    torch.manual_seed(0)
    g, d, which_g = rebuild_networks(cfg, state)
    recalibrate_batch_norm(g, cfg.z_dim)
    scorer = SingleImageScorer(d, cfg.pack).eval()
    real = real_images(cfg, 4000, data_root)

    # Build in a temp folder next to the target, then swap it in: a failed export leaves no half model.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        c, h, w = dataset_channels(cfg), *image_shape(cfg.arch)[1:]
        export_onnx(
            g, torch.from_numpy(latents(0, 2, cfg.z_dim)), tmp / "generator.onnx", "z", "images"
        )
        export_onnx(scorer, torch.zeros(2, c, h, w), tmp / "discriminator.onnx", "images", "logits")
        parity = check_parity(
            g, scorer, tmp / "generator.onnx", tmp / "discriminator.onnx", cfg.z_dim, real
        )
        realness = calibrate_realness(cfg, tmp / "generator.onnx", tmp / "discriminator.onnx", real)
        manifest = build_manifest(name, cfg, step, which_g, tmp, parity, realness)
        (tmp / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if evaluate:
            from training.metrics import evaluate_model_dir

            manifest["evaluation"] = evaluate_model_dir(
                tmp, data_root=data_root, weak=weak, display_path=str(out)
            )
            (tmp / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
        write_sample_grid(tmp / "samples.png", tmp / "generator.onnx", cfg.z_dim)
        write_model_card(tmp, manifest, run_dir)
        if out.exists():
            shutil.rmtree(out)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a model folder is meant to be shared
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.export", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--name", required=True, help="model name the service will serve it under")
    p.add_argument("--out", type=Path, help="model folder to write (default models/NAME)")
    p.add_argument(
        "--data-root", help="folder holding mnist/ and fashion-mnist/ (default ../shared/data)"
    )
    p.add_argument(
        "--no-eval",
        action="store_true",
        help="skip the quality metrics (faster; model.json.evaluation stays empty)",
    )
    p.add_argument(
        "--compare-weak",
        type=Path,
        help="a deliberately weak model folder: its FID_c is reported as the ceiling",
    )
    args = p.parse_args(argv)
    out = args.out or Path("models") / args.name
    t0 = time.time()
    try:
        m = export_run(
            args.run_dir,
            args.name,
            out,
            args.data_root,
            evaluate=not args.no_eval,
            weak=args.compare_weak,
        )
    except (FileNotFoundError, ValueError, ParityError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": str(out),
                "parity": m["parity"],
                "realness": m["realness"],
                "seconds": round(time.time() - t0, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
