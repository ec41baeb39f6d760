"""A small CNN classifier per dataset: the fixed feature extractor behind the quality metrics.

Why our own classifier instead of Inception: FID with ImageNet Inception features says little about
28x28 grey digits or clothes (the images must be upscaled and coloured, and the features were never
trained on anything like them). A classifier trained on the dataset itself gives class histograms,
confidences and a 128-d penultimate feature space in which a Fréchet distance ("FID_c") tracks the
things that matter here. It is frozen and committed as ONNX so every model is judged by the same
bytes, and `training.metrics` needs only onnxruntime to use it.

    python -m training.classifier --dataset mnist|fashion-mnist|cifar10 [--epochs N] [--data-root DIR]

writes ``training/classifiers/<dataset>.onnx`` (input ``images`` (B,C,H,W) float32 in [-1, 1],
i.e. ``u8 / 127.5 - 1``, the GANs' pixel range: (B,1,28,28) for the IDX datasets, (B,3,32,32)
for cifar10; outputs ``logits`` (B,10) and ``features`` (B,128)) and
``training/classifiers/<dataset>.json`` (test accuracy, command, time, parity, input shape).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contract.files import sha256_file
from contract.pixels import from_uint8
from training import cifar10, real_images
from training.idx import load_split

CLASSIFIER_DIR = Path(__file__).resolve().parent / "classifiers"
FEATURE_DIM = 128
NUM_CLASSES = 10
CIFAR10 = "cifar10"
IDX_SHAPE = (1, 28, 28)
# Each dataset's classifier input (C, H, W): the dataset's native images, never resized.
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": IDX_SHAPE,
    "fashion-mnist": IDX_SHAPE,
    CIFAR10: (3, 32, 32),
}
DATASETS = tuple(INPUT_SHAPES)
DEFAULT_EPOCHS = {"mnist": 4, "fashion-mnist": 6, CIFAR10: 8}


def to_model_range(images_u8: np.ndarray, shape: tuple[int, int, int] = IDX_SHAPE) -> np.ndarray:
    """uint8 (N,H,W) or (N,C,H,W) -> float32 (N,*shape) in [-1, 1], the GANs' pixel range."""
    x = from_uint8(images_u8)
    return x.reshape(len(x), *shape)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """5x5 valid conv, BN, ReLU, 2x2 max-pool: BN lets a few epochs of Adam reach the targets."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 5, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
    )


class SmallCNN(nn.Module):
    """LeNet-style: two conv blocks (28->24->12->8->4), a 128-unit dense layer, 10 logits.

    Small on purpose: ~4M multiply-adds per image, so an epoch of 60k images takes about half a
    minute on 2 CPU cores, and ~185k parameters (~0.75 MB of float32), small enough to commit.
    The 128-unit ReLU layer is the feature space of FID_c / KID: it is the last representation
    before the class decision, so it encodes what the class looks like, not only which class.
    """

    def __init__(self, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(1, 32),
            _conv_block(32, 64),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, feature_dim),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, features)``; features are the penultimate (dense ReLU) activations."""
        features = self.body(images)
        return self.head(self.dropout(features)), features


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the input (a strided 1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class CifarResNet(nn.Module):
    """ResNet-8-style for 3x32x32: a 3x3 stem, three residual stages, global average pool.

    Stages of ``widths`` channels at 16x16, 8x8 and 4x4: the stem pools 32 -> 16 right away,
    because a full-resolution stage would cost ~4x the multiply-adds of the whole rest of the
    net, and the training budget is ~20 minutes of one CPU core. Then a 128-unit ReLU layer
    (the feature space, as in :class:`SmallCNN`) and 10 logits. ~0.3M parameters.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (32, 64, 128),
        feature_dim: int = FEATURE_DIM,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.body = nn.Sequential(
            nn.Conv2d(3, w1, 3, 1, 1, bias=False),
            nn.BatchNorm2d(w1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            _ResidualBlock(w1, w1, 1),
            _ResidualBlock(w1, w2, 2),
            _ResidualBlock(w2, w3, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(w3, feature_dim),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, features)``; features are the penultimate (dense ReLU) activations."""
        features = self.body(images)
        return self.head(self.dropout(features)), features


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """The standard CIFAR augmentation: a random crop of the ``pad``-padded image, then a
    horizontal flip of half the batch.

    Reflect padding rather than zeros: a black frame (-1) would be a border real images never
    have, and the features should not learn to expect one.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    cols_base = torch.arange(w)[None, :].expand(n, w)
    cols_base = torch.where(flip[:, None], cols_base.flip(1), cols_base)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + cols_base)[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channel = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (background -1 fills the gap).

    Cheap augmentation that buys MNIST its last few tenths of a percent, and makes the features
    less sensitive to the small misplacements generators make.
    """
    n = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(28)[None, :])[:, :, None]
    cols = (dx[:, None] + torch.arange(28)[None, :])[:, None, :]
    batch = torch.arange(n)[:, None, None]
    return padded[:, 0][batch, rows, cols].unsqueeze(1)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on tensors ``x``, ``y``."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits, _ = model(x[i : i + batch])
            correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def make_net(dataset: str) -> nn.Module:
    """The architecture of ``dataset``'s classifier, untrained."""
    return CifarResNet() if dataset == CIFAR10 else SmallCNN()


def _augment(dataset: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if dataset == CIFAR10:
        return random_crop_flip(x, 4, generator)
    return random_shift(x, 2, generator)


def _labelled(
    dataset: str, split: str, data_root: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    if dataset == CIFAR10:
        return real_images.labelled_split(dataset, split, data_root)
    images, labels = load_split(dataset, split, data_root)
    return images, labels, "original"


def train(
    dataset: str,
    epochs: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    data_root: str | None = None,
) -> tuple[nn.Module, dict]:
    """Train on the train split with AdamW + one-cycle LR; return the model and a summary.

    One-cycle lets a handful of epochs reach the accuracy targets, which keeps the whole run at a
    few minutes on a 2-core CPU. CIFAR-10's ResNet gets a real weight decay (AdamW's is
    decoupled, so 5e-2 is the usual scale) and channels-last memory, ~30% faster convs on CPU.
    """
    shape = INPUT_SHAPES[dataset]
    cifar = dataset == CIFAR10
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_u8, train_y, pixels = _labelled(dataset, "train", data_root)
    test_u8, test_y, _ = _labelled(dataset, "test", data_root)
    x = torch.from_numpy(to_model_range(train_u8, shape))
    y = torch.from_numpy(train_y.astype(np.int64))
    x_test = torch.from_numpy(to_model_range(test_u8, shape))
    y_test = torch.from_numpy(test_y.astype(np.int64))
    memory = torch.channels_last if cifar else torch.contiguous_format
    if cifar:
        x_test = x_test.contiguous(memory_format=memory)

    model = make_net(dataset).to(memory_format=memory)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-2 if cifar else 1e-4)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb = _augment(dataset, x[idx], gen).contiguous(memory_format=memory)
            logits, _ = model(xb)
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = evaluate(model, x_test, y_test)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, test acc {acc:.4f}, "
            f"{time.perf_counter() - start:.0f}s",
            flush=True,
        )
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    model = model.to(memory_format=torch.contiguous_format)
    summary = {
        "dataset": dataset,
        "test_accuracy": evaluate(model, x_test.contiguous(), y_test),
        "test_images": len(x_test),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        # Wall time depends on who else shares the machine; CPU time (all threads) much less so.
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    if cifar:
        summary |= {
            "pixels": f"CIFAR-10 {pixels}: trained and tested on these, so its accuracy and "
            "features are those of the JPEG copies",
            "class_names": list(cifar10.CLASS_NAMES),
            "augmentation": "random 32x32 crop of the 4-px reflect-padded image, horizontal flip",
            "weight_decay": 5e-2,
        }
    return model, summary


class _Exported(nn.Module):
    """Eval-mode wrapper so the ONNX graph has exactly the contract's two named outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(images)


def export_onnx(model: nn.Module, path: Path, shape: tuple[int, int, int] = IDX_SHAPE) -> None:
    """Export with a dynamic batch axis and weights inline (one self-contained file for git)."""
    wrapper = _Exported(model)
    example = torch.zeros(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    onnx_program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits", "features"],
        dynamic_shapes={"images": {0: batch}},
        opset_version=18,
        external_data=False,
    )
    assert onnx_program is not None  # dynamo=True always returns the program
    onnx_program.optimize()
    onnx_program.save(str(path), external_data=False)


def check_parity(model: nn.Module, path: Path, images: np.ndarray) -> float:
    """Max |ORT - torch| over logits and features: the committed file must be the trained model."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, features = sess.run(["logits", "features"], {"images": images})
    model.eval()
    with torch.no_grad():
        t_logits, t_features = model(torch.from_numpy(images))
    return float(
        max(
            np.abs(logits - t_logits.numpy()).max(),
            np.abs(features - t_features.numpy()).max(),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: 4 mnist, 6 fashion, 8 cifar10"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out-dir", type=Path, default=CLASSIFIER_DIR)
    args = parser.parse_args(argv)
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    shape = INPUT_SHAPES[args.dataset]
    torch.set_num_threads(args.threads)

    model, summary = train(args.dataset, epochs, seed=args.seed, data_root=args.data_root)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / f"{args.dataset}.onnx"
    export_onnx(model, onnx_path, shape)
    test_u8, _, _ = _labelled(args.dataset, "test", args.data_root)
    parity = check_parity(model, onnx_path, to_model_range(test_u8[:512], shape))
    if parity > 1e-3:
        raise RuntimeError(f"ORT vs torch max abs diff {parity:.2e} > 1e-3: export is wrong")
    summary |= {
        "onnx": {
            "file": onnx_path.name,
            "sha256": sha256_file(onnx_path),
            "bytes": onnx_path.stat().st_size,
            "opset": 18,
            "input": {"name": "images", "shape": ["B", *shape], "range": "u8 / 127.5 - 1"},
            "outputs": {"logits": ["B", NUM_CLASSES], "features": ["B", FEATURE_DIM]},
            "parity_max_abs_diff": parity,
        },
        "command": "python -m training.classifier "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), {args.threads} torch threads",
        "torch": torch.__version__,
    }
    json_path = args.out_dir / f"{args.dataset}.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
