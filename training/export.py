"""Export a training run to the model folder the service loads (see docs/model-format.md).

    python -m training.export RUN_DIR --name NAME --out models/NAME

Writes generator.onnx and discriminator.onnx (self-contained, float32, dynamic batch), model.json
(through contract.manifest, so what it writes is what the service reads) and a model card with a
sample grid. It refuses to write a model whose ONNX outputs differ from torch's by more than
``PARITY_TOL`` on 64 seeds: the service would otherwise serve images nobody evaluated.

Every model the trainer can produce exports: image models of any arch, conditional or not, from
IDX files or image folders. The quality metrics need a classifier of the dataset, which exists
for MNIST and Fashion-MNIST only; for other datasets the evaluation says so and the export goes on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.files import sha256_file
from contract.manifest import (
    FORMAT,
    conditioning_section,
    image_section,
    latent_section,
    write_manifest,
)
from contract.pixels import from_uint8
from training import realness_fit
from training.config import TrainConfig
from training.nets import ModelArgs, build_networks, image_shape
from training.onnx_export import (
    OPSET,
    PARITY_TOL,
    DiscriminatorGraph,
    ParityError,
    check_parity,
    export_discriminator,
    export_generator,
    generator_inputs,
)
from training.uint8_graph import convert_folder

__all__ = ["PARITY_TOL", "ParityError", "export_run", "load_run", "main", "sha256_file"]


@dataclass(frozen=True)
class Run:
    """What the exporter needs of a run folder's latest checkpoint."""

    cfg: TrainConfig
    args: ModelArgs
    step: int
    state: dict[str, Any]
    class_names: list[str]


# A folder dataset smaller than this cannot give both a feature Gaussian and a held-out threshold:
# its realness keeps the logit factor alone (said in model.json).
MIN_REAL_IMAGES = 64


def load_run(run_dir: Path) -> Run:
    from training.checkpoint import checkpoint_model_args, latest_checkpoint, load_checkpoint

    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint found (is it a training run folder?)")
    ckpt = load_checkpoint(path)
    args = checkpoint_model_args(ckpt)
    info = (ckpt.get("extra") or {}).get("sampler_info") or {}
    names = list(info.get("class_names") or [])
    if args.conditional and len(names) != args.num_classes:
        names = [str(i) for i in range(args.num_classes)]
    cfg = TrainConfig.from_dict(ckpt["config"])
    return Run(cfg, args, int(ckpt["step"]), ckpt["trainer"], names)


@torch.no_grad()
def recalibrate_batch_norm(
    generator: nn.Module, z_dim: int, num_classes: int = 0, batches: int = 50, batch_size: int = 256
) -> None:
    """Recompute G's batch-norm statistics from fresh latents (and uniform classes).

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
        z = torch.randn(batch_size, z_dim, generator=gen)
        if num_classes:
            generator(z, torch.randint(0, num_classes, (batch_size,), generator=gen))
        else:
            generator(z)
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    generator.eval()


def rebuild_networks(args: ModelArgs, state: dict[str, Any]) -> tuple[nn.Module, nn.Module, str]:
    """Generator to serve (EMA when the run kept one) and discriminator, in eval mode."""
    g, d = build_networks(args)
    which = "G_ema" if state.get("G_ema") is not None else "G"
    g.load_state_dict(state[which])
    d.load_state_dict(state["D"])
    return g.eval(), d.eval(), which


@dataclass(frozen=True)
class RealImages:
    """Real training images in the model's value range, split so no image serves two fits."""

    fit: np.ndarray  # the OOD Gaussian
    held_out: np.ndarray  # the quantiles of real distances: the OOD p-value
    calibration: np.ndarray  # Platt scaling and the parity check
    source: str


def real_images(run: Run, data_root: str | None) -> RealImages:
    """The run's own training images (never its test split: the metrics judge on that)."""
    from training.data import (
        CIFAR10,
        STACKED_MNIST,
        DatasetError,
        image_size,
        load_cifar10_dataset,
        load_folder_dataset,
        load_idx_dataset,
        load_stacked_mnist_dataset,
    )
    from training.idx import IDX_DATASETS

    cfg, size = run.cfg, image_size(run.cfg.arch)
    try:
        if cfg.dataset in IDX_DATASETS:
            images, _ = load_idx_dataset(cfg.dataset, size, data_root or cfg.data_root)
            source = f"{cfg.dataset} training split"
        elif cfg.dataset == STACKED_MNIST:
            images, _ = load_stacked_mnist_dataset(size, data_root or cfg.data_root)
            source = "stacked-mnist training triples"
        elif cfg.dataset == CIFAR10:
            images, _, _ = load_cifar10_dataset(size, data_root or cfg.data_root)
            source = "cifar10 training split"
        else:
            folder = cfg.dataset.removeprefix("folder:")
            images, _, _ = load_folder_dataset(folder, size)
            source = f"{folder} (the training images; a folder has no test split)"
    except DatasetError as e:
        raise ValueError(f"realness calibration needs the run's real images: {e}") from None
    u8 = images.numpy()
    if len(u8) < MIN_REAL_IMAGES:
        # Too few for a Gaussian of D's features: no OOD term, the logit calibrated on them all.
        x = from_uint8(u8)
        return RealImages(x[:0], x[:0], x, source)
    order = np.random.default_rng(0).permutation(len(u8))
    n_held = min(realness_fit.HELD_OUT_IMAGES, len(u8) // 4)
    n_cal = min(2000, len(u8) // 4)
    n_fit = min(realness_fit.FIT_IMAGES, len(u8) - n_held - n_cal)
    x = from_uint8(u8[order[: n_fit + n_held + n_cal]])
    return RealImages(x[:n_fit], x[n_fit : n_fit + n_held], x[n_fit + n_held :], source)


def ood_spread(ood: dict[str, Any] | None) -> float:
    """The spread of held-out real distances (99th minus 50th percentile): the unit the
    parity check compares the OOD distance in."""
    if ood is None:
        return 1.0
    q = np.asarray(ood["quantiles"])
    probs = np.linspace(0.0, 1.0, len(q))
    return max(float(np.interp(0.99, probs, q) - np.interp(0.5, probs, q)), 1e-6)


def build_manifest(
    name: str,
    run: Run,
    which_g: str,
    out: Path,
    parity: dict[str, Any],
    realness: dict[str, Any],
) -> dict[str, Any]:
    cfg, args = run.cfg, run.args
    c, h, w = image_shape(args.arch, args.channels)
    generator = {
        "file": "generator.onnx",
        "sha256": sha256_file(out / "generator.onnx"),
        "input": "z",
        "output": "images",
    }
    return {
        "format": FORMAT,
        "name": name,
        "architecture": args.arch,
        "loss": cfg.loss,
        "z_dim": args.z_dim,
        "image": image_section(c, h, w),
        "latent": latent_section(),
        "conditioning": conditioning_section(run.class_names) if args.conditional else None,
        "onnx": {
            "opset": OPSET,
            "generator": generator,
            "discriminator": {
                "file": "discriminator.onnx",
                "sha256": sha256_file(out / "discriminator.onnx"),
                "input": "images",
                "output": "logits",
            },
        },
        "discriminator": {
            "pack": args.pack,
            "pack_scoring": "replicate",
            "logits": "(B, K): column k is the logit of (image, class k)"
            if args.conditional
            else "(B,)",
            "without_class": "logsumexp_k(logit_k) - log K" if args.conditional else None,
        },
        "realness": realness,
        "training": {
            "config": cfg.to_dict(),
            "model_args": args.to_dict(),
            "step": run.step,
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


SAMPLE_COLUMNS = 10


def write_sample_grid(path: Path, generator: Path, z_dim: int, num_classes: int) -> str:
    """The card's grid, as the service returns it; returns the request that reproduces it.

    Unconditional: seeds 0..63. Conditional: one row per class, seeds 0..9 in every row (the same
    latents across rows), i.e. ``/generate_grid {"seed": 0, "n": 10, "class": k}`` for row k.
    """
    from contract.onnx_runtime import cpu_session
    from training.plots import save_image_grid

    session = cpu_session(generator)
    if not num_classes:
        images = session.run(None, generator_inputs(0, 64, z_dim, 0))[0]
        save_image_grid(images, path, nrow=8, scale=2)
        return 'POST /generate_grid {"seed": 0, "n": 64}'
    z = generator_inputs(0, SAMPLE_COLUMNS, z_dim, 0)["z"]
    rows = [
        session.run(None, {"z": z, "class": np.full(SAMPLE_COLUMNS, k, dtype=np.int64)})[0]
        for k in range(num_classes)
    ]
    save_image_grid(np.concatenate(rows), path, nrow=SAMPLE_COLUMNS, scale=2)
    return f'POST /generate_grid {{"seed": 0, "n": {SAMPLE_COLUMNS}, "class": k}} for row k'


def write_model_card(
    folder: Path, manifest: dict[str, Any], run_dir: Path, grid_request: str
) -> None:
    commands, wall = _training_facts(run_dir)
    cfg = manifest["training"]["config"]
    ev = manifest.get("evaluation") or {}
    cond = manifest.get("conditioning")
    rel = manifest["realness"]
    kind = f"class-conditional ({len(cond['classes'])} classes) " if cond else ""
    parity = manifest["parity"]
    lines = [
        f"# {manifest['name']}",
        "",
        f"A {kind}`{manifest['architecture']}` GAN ({manifest['loss']} loss) trained on `{cfg['dataset']}`: "
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
        f"lr G/D {cfg['lr_g']}/{cfg['lr_d']}, lr decay over the last {cfg.get('lr_decay', 0):.0%} of the steps",
        f"- ONNX parity over {parity['seeds']} seeds: generator max |diff| "
        f"{parity['max_abs_diff_generator']:.2e}, discriminator {parity['max_abs_diff_discriminator']:.2e}",
        f"- realness: `{rel['formula']}` with a={rel['a']:.4g}, b={rel['b']:.4g}"
        + (
            f", ood p-value from {rel['ood']['held_out']} held-out real images (median distance "
            f"{rel['ood']['quantiles'][len(rel['ood']['quantiles']) // 2]:.4g})"
            if rel.get("ood")
            else ""
        ),
    ]
    if cond:
        lines.append("- classes: " + ", ".join(f"{i} `{c}`" for i, c in enumerate(cond["classes"])))
    lines += [
        "",
        "![samples](samples.png)",
        "",
        f"As the service returns them (`{grid_request}`).",
        "",
        "## Evaluation",
        "",
    ]
    from training.metrics_text import model_card_evaluation

    lines += model_card_evaluation(ev, manifest["name"])
    (folder / "README.md").write_text("\n".join(lines) + "\n")


def evaluation(folder: Path, data_root: str | None, weak: Path | None, out: Path) -> dict[str, Any]:
    """The quality report. For a dataset without a classifier (any image folder) it says which
    figures it cannot compute and why, and the export goes on (training/metrics.py)."""
    from training.metrics import evaluate_model_dir

    return evaluate_model_dir(folder, data_root=data_root, weak=weak, display_path=str(out))


def export_run(
    run_dir: Path,
    name: str,
    out: Path,
    data_root: str | None = None,
    evaluate: bool = True,
    weak: Path | None = None,
    uint8_output: bool = False,
) -> dict[str, Any]:
    run = load_run(run_dir)
    args = run.args
    if args.arch == "mlp":
        raise ValueError(
            "only image models are served; mlp (2-D toy) runs are evaluated with training.evaluate"
        )
    torch.manual_seed(0)
    g, d, which_g = rebuild_networks(args, run.state)
    recalibrate_batch_norm(g, args.z_dim, args.num_classes)
    shape = image_shape(args.arch, args.channels)
    graph = DiscriminatorGraph(d, args.pack, args.conditional, shape).eval()
    real = real_images(run, data_root)
    ood = realness_fit.fit_ood(graph, real.fit, real.held_out) if len(real.fit) else None
    realness = realness_fit.fit_logit(
        run.cfg.loss, g, graph, real.calibration, args.z_dim, args.num_classes
    )
    realness["ood"] = ood
    if ood is None:
        realness["method"] = realness["method"].removesuffix("+ood")
        realness["formula"] = "realness = sigmoid(a * logit + b)"
        realness["ood_not_fitted"] = (
            f"only {len(real.calibration)} real images; the out-of-distribution term needs "
            f"{MIN_REAL_IMAGES}: this model's realness is D's verdict alone"
        )
    realness["real_source"] = real.source

    # Build in a temp folder next to the target, then swap it in: a failed export leaves no half model.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        export_generator(g, args.z_dim, tmp / "generator.onnx", args.conditional)
        export_discriminator(graph, tmp / "discriminator.onnx")
        parity = check_parity(
            g,
            graph,
            tmp / "generator.onnx",
            tmp / "discriminator.onnx",
            args.z_dim,
            args.num_classes,
            real.calibration,
            ood_scale=ood_spread(ood),
        )
        manifest = build_manifest(name, run, which_g, tmp, parity, realness)
        write_manifest(tmp, manifest)
        if uint8_output:
            manifest = convert_folder(tmp)
        if evaluate:
            manifest["evaluation"] = evaluation(tmp, data_root, weak, out)
            write_manifest(tmp, manifest)
        grid_request = write_sample_grid(
            tmp / "samples.png", tmp / "generator.onnx", args.z_dim, args.num_classes
        )
        write_model_card(tmp, manifest, run_dir, grid_request)
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
    p.add_argument(
        "--uint8-output",
        action="store_true",
        help="generator.onnx also outputs the (B, H, W, C) uint8 pixels (training/uint8_graph.py)",
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
            uint8_output=args.uint8_output,
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
