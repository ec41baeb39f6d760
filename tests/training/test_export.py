"""Export: every run the trainer can make becomes a model folder the service loads, with parity.

The runs here train on tiny synthetic datasets (IDX files in the real format, image folders), so
none of these tests needs ../shared/data.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from contract.latents import classes_for_seeds, latents
from contract.manifest import read_manifest
from training import export, realness_fit
from training.onnx_export import DiscriminatorGraph, check_parity
from training.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]


def fake_idx(root: Path, name: str = "mnist", n: int = 240) -> Path:
    """An IDX dataset in the real file format: strokes of random width and place on black, 10 labels."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = np.zeros((n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for i in range(n):
        c = 6 + 2 * labels[i] // 2
        w = int(rng.integers(1, 4))
        imgs[i, 4:24, c : c + w] = rng.integers(150, 256)
    for prefix in ("train", "t10k"):
        with gzip.open(d / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + imgs.tobytes())
        with gzip.open(d / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.tobytes())
    return root


def fake_folder(
    root: Path, classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 40
) -> Path:
    """RGB images in class sub-folders (as torchvision's ImageFolder lays them out)."""
    rng = np.random.default_rng(1)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((36, 40, 3), 40 * k, dtype=np.uint8)
            img[:, :, k % 3] = rng.integers(0, 256, (36, 40), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def train(out: Path, *args: str) -> Path:
    common = ["--width", "4", "--batch-size", "16", "--steps", "2", "--no-progress"]
    assert train_main([*common, *args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_idx(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, data: Path):
    """lsgan + PacGAN (k=2) + EMA: exercises Platt realness and pack scoring."""
    base = tmp_path_factory.mktemp("packed")
    run = train(
        base / "run",
        *("--dataset", "mnist", "--data-root", str(data), "--loss", "lsgan"),
        *("--pack", "2", "--ema", "0.9"),
    )
    out = base / "models" / "tiny-lsgan"
    manifest = export.export_run(run, "tiny-lsgan", out, data_root=str(data), evaluate=False)
    return run, out, manifest


@pytest.fixture(scope="module")
def conditional(tmp_path_factory: pytest.TempPathFactory):
    """A class-conditional hinge + SN run on an RGB image folder with class sub-folders."""
    base = tmp_path_factory.mktemp("cond")
    images = fake_folder(base / "images", ("cats", "dogs", "owls"))
    run = train(
        base / "run",
        *("--dataset", f"folder:{images}", "--arch", "dcgan32", "--conditional"),
        *("--loss", "hinge", "--spectral-norm", "--ema", "0.9"),
    )
    out = base / "models" / "tiny-cond"
    return run, out, export.export_run(run, "tiny-cond", out, evaluate=False)


def test_folder_and_manifest(packed) -> None:
    _, out, manifest = packed
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "discriminator.onnx",
        "generator.onnx",
        "model.json",
        "samples.png",
    ]
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk == manifest
    parsed = read_manifest(out)  # the service's reader accepts what the exporter wrote
    assert parsed.conditioning is None and parsed.realness.ood is not None
    for kind in ("generator", "discriminator"):
        assert on_disk["onnx"][kind]["sha256"] == export.sha256_file(
            out / on_disk["onnx"][kind]["file"]
        )
    assert on_disk["image"] == {**on_disk["image"], "channels": 1, "height": 28, "width": 28}
    assert on_disk["latent"]["algorithm"] == "splitmix64-boxmuller/1"
    assert on_disk["training"]["generator_weights"] == "G_ema"
    assert on_disk["training"]["model_args"]["pack"] == 2
    assert on_disk["discriminator"]["pack"] == 2
    assert on_disk["parity"]["max_abs_diff_generator"] <= export.PARITY_TOL
    assert on_disk["parity"]["max_abs_diff_discriminator"] <= export.PARITY_TOL
    # lsgan's D is not a log-odds: realness must come from a fitted calibration.
    assert on_disk["realness"]["method"] == "platt+ood" and on_disk["realness"]["a"] != 1.0
    assert "python -m training.export" in (out / "README.md").read_text()


def test_the_service_loader_serves_what_torch_computes(packed, monkeypatch) -> None:
    from service.model_store import ModelStore
    from service.settings import Settings

    run, out, _ = packed
    monkeypatch.setenv("GAN_MODELS_DIR", str(out.parent))
    store = ModelStore.load(Settings.from_env(), cpu_only=True)
    model = store.get("tiny-lsgan")
    r = export.load_run(run)
    g, d, _ = export.rebuild_networks(r.args, r.state)
    export.recalibrate_batch_norm(g, r.args.z_dim)
    z = latents(123, 8, r.args.z_dim)
    with torch.no_grad():
        expected = g(torch.from_numpy(z)).numpy()
        # The packed D scores one image as the pack made of that image repeated.
        expected_logits = d(torch.from_numpy(expected).repeat(1, 2, 1, 1)).numpy()
    np.testing.assert_allclose(model.generate(z), expected, atol=1e-4)
    logits, ood = model.split_scores(model.discriminate(expected))
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
    assert ood is not None and ood.shape == (8,) and np.isfinite(ood).all()


def test_conditional_model_folder(conditional) -> None:
    _, out, manifest = conditional
    m = read_manifest(out)
    assert m.conditioning is not None and m.conditioning.classes == ("cats", "dogs", "owls")
    assert manifest["image"]["channels"] == 3 and manifest["image"]["height"] == 32
    g = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in g.get_inputs()] == ["z", "class"]
    z = latents(5, 6, m.z_dim)
    same_z = np.repeat(z[:1], 3, axis=0)
    by_class = g.run(None, {"z": same_z, "class": np.array([0, 1, 2], dtype=np.int64)})[0]
    assert not np.allclose(by_class[0], by_class[1])  # the class steers the image
    d = ort.InferenceSession(str(out / "discriminator.onnx"), providers=["CPUExecutionProvider"])
    logits, ood = d.run(None, {"images": by_class})
    assert logits.shape == (3, 3) and ood.shape == (3,) and np.isfinite(ood).all()
    assert manifest["discriminator"]["without_class"] == "logsumexp_k(logit_k) - log K"


def test_conditional_sample_grid_has_one_row_per_class(conditional) -> None:
    _, out, _ = conditional
    grid = Image.open(out / "samples.png")
    # 10 columns x 3 rows of 32 px tiles, 2 px padding, scaled 2x.
    assert grid.size == (2 * (2 + 10 * 34), 2 * (2 + 3 * 34))
    assert '"class": k' in (out / "README.md").read_text()


def test_gradient_penalty_without_its_loss_exports(tmp_path: Path, data: Path) -> None:
    """Was: ``--loss ns --gp-weight 1`` trained a D without batch norm, and export rebuilt one
    with it (from the loss's default), dying with 'Missing key(s) in state_dict'."""
    run = train(
        tmp_path / "run",
        *("--dataset", "mnist", "--data-root", str(data), "--loss", "ns", "--gp-weight", "1"),
    )
    manifest = export.export_run(
        run, "ns-gp", tmp_path / "m" / "ns-gp", data_root=str(data), evaluate=False
    )
    assert manifest["training"]["model_args"]["batch_norm_in_d"] is False


def test_checkpoints_without_model_args_still_export(tmp_path: Path, data: Path) -> None:
    """Runs trained before checkpoints stored ``model_args`` rebuild as the trainer built them."""
    run = train(
        tmp_path / "run",
        *("--dataset", "mnist", "--data-root", str(data), "--loss", "wgan-gp"),
    )
    ckpt = torch.load(run / "ckpt-latest.pt", weights_only=True)
    ckpt.pop("model_args")
    torch.save(ckpt, run / "ckpt-latest.pt")
    manifest = export.export_run(
        run, "old", tmp_path / "m" / "old", data_root=str(data), evaluate=False
    )
    assert manifest["training"]["model_args"]["batch_norm_in_d"] is False


def test_parity_failure_is_loud(packed) -> None:
    run, out, _ = packed
    r = export.load_run(run)
    g, d, _ = export.rebuild_networks(r.args, r.state)
    graph = DiscriminatorGraph(d, 2, False, (1, 28, 28)).eval()
    with torch.no_grad():
        next(g.parameters()).add_(0.5)  # torch now disagrees with the exported graph
    with pytest.raises(export.ParityError, match="disagree"):
        check_parity(
            g, graph, out / "generator.onnx", out / "discriminator.onnx", r.args.z_dim, 0, None
        )


def test_platt_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=20000) * 3
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    a, b = realness_fit.fit_platt(logits, labels)
    assert abs(a - 0.5) < 0.05 and abs(b + 1.0) < 0.08


def test_ood_term_rejects_what_is_far_from_the_fit(packed) -> None:
    """The Mahalanobis factor: held-out real images pay little, constant frames are driven to 0."""
    _, out, manifest = packed
    m = read_manifest(out)
    d = ort.InferenceSession(str(out / "discriminator.onnx"), providers=["CPUExecutionProvider"])
    constant = np.full((4, 1, 28, 28), 1.0, dtype=np.float32)  # all white
    logits, ood = d.run(None, {"images": constant})
    assert (ood > m.realness.ood.quantiles[-1]).all()  # beyond every held-out real image
    assert (m.realness.realness(logits, ood) < 0.05).all()
    q = manifest["realness"]["ood"]["quantiles"]
    assert q == sorted(q) and len(q) == 201


def test_classes_for_seeds_used_by_parity_inputs() -> None:
    from training.onnx_export import generator_inputs

    inputs = generator_inputs(10, 5, 8, 7)
    np.testing.assert_array_equal(
        inputs["class"], classes_for_seeds(np.arange(10, 15, dtype=np.uint64), 7)
    )


def test_cli_refuses_toy_runs_and_missing_runs(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.export",
            str(tmp_path / "nope"),
            "--name",
            "x",
            "--out",
            str(tmp_path / "m"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no checkpoint" in r.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_export_of_an_rgb_folder_run_evaluates_what_it_can(tmp_path):
    """A 3x32x32 folder run has no classifier: the export must still succeed, with an
    evaluation that names what it could not compute (it used to die on the 1x28x28 check)."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "--dataset", f"folder:{photos}"]
    cmd += ["--arch", "dcgan32", "--loss", "ns", "--width", "8", "--batch-size", "4"]
    cmd += ["--steps", "1", "--ckpt-every", "1", "--sample-every", "1", "--out", str(run)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    out = tmp_path / "models" / "rgb"
    manifest = export.export_run(run, "rgb", out)  # evaluate=True
    ev = json.loads((out / "model.json").read_text())["evaluation"]
    assert ev == manifest["evaluation"] and ev["image"] == "3x32x32"
    reasons = {f: g["reason"] for g in ev["not_computed"] for f in g["figures"]}
    assert "no classifier exists" in reasons["fid"] and "precision" in reasons
    assert len(ev["sets"]["generated"][0]["channel_mean"]) == 3
    card = (out / "README.md").read_text()
    assert "not computed:" in card and "no classifier exists" in card


def test_cifar10_run_exports(tmp_path: Path) -> None:
    """The exporter reads a cifar10 run's real images from the dataset, not as a folder path."""
    from fixtures.fake_data import cifar_archive

    from training import cifar10

    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    cifar_archive(tmp_path / "data" / "cifar10" / cifar10.ARCHIVE, per_batch=20)
    run = train(
        tmp_path / "run",
        *("--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--conditional"),
        *("--loss", "hinge", "--spectral-norm", "--no-download"),
    )
    manifest = export.export_run(
        run, "c10", tmp_path / "m" / "c10", data_root=str(tmp_path / "data"), evaluate=False
    )
    assert manifest["conditioning"]["classes"] == cifar10.CLASS_NAMES
    assert manifest["image"]["channels"] == 3 and manifest["realness"]["real_source"] == (
        "cifar10 training split"
    )


def test_uint8_output_export_gives_the_float_graphs_pixels(conditional, tmp_path: Path) -> None:
    """``--uint8-output``: a torch-exported conditional generator with the contract's rule in
    the graph; its pixels equal the float output + pixels.to_uint8 for many seeds and classes."""
    from contract.latents import latents_for_seeds
    from contract.pixels import to_uint8
    from training.uint8_graph import FINITE_OUTPUT, UINT8_OUTPUT

    run, _, _ = conditional
    out = tmp_path / "tiny-cond-u8"
    manifest = export.export_run(run, "tiny-cond-u8", out, evaluate=False, uint8_output=True)
    assert json.loads((out / "model.json").read_text()) == manifest
    spec = read_manifest(out).generator
    assert (spec.uint8_output, spec.finite_output) == (UINT8_OUTPUT, FINITE_OUTPUT)
    assert spec.sha256 == export.sha256_file(out / "generator.onnx")
    g = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    seeds = np.arange(0, 1024, dtype=np.uint64)
    feeds = {"z": latents_for_seeds(seeds, manifest["z_dim"]), "class": np.arange(1024) % 3}
    floats, u8, finite = g.run(["images", UINT8_OUTPUT, FINITE_OUTPUT], feeds)
    assert u8.dtype == np.uint8 and u8.shape == (1024, 32, 32, 3)
    assert (u8 == to_uint8(floats).transpose(0, 2, 3, 1)).all() and finite.all()
