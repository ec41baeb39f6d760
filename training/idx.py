"""MNIST-style IDX files (gzip'd), read with numpy (no torchvision); training.download fetches them."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

# Relative to the repository root, where the team keeps the official bytes (see its README).
DEFAULT_DATA_ROOT = Path(
    os.environ.get("GAN_DATA_ROOT", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)

IDX_DATASETS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}
# Label index -> name, as the datasets' documentation gives them.
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetNotFound(FileNotFoundError):
    """The files of a dataset are not under the data root; ``missing`` lists those absent."""

    def __init__(self, message: str, missing: list[Path] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])


MISSING_HINT = (
    "Pass --data-root (or set GAN_DATA_ROOT) to the folder holding mnist/, fashion-mnist/ "
    "and cifar10/."
)


def data_root(root: Path | str | None = None) -> Path:
    return Path(root or DEFAULT_DATA_ROOT).resolve()


def load_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def split_paths(name: str, split: str = "train", root: Path | str | None = None) -> list[Path]:
    """The (images, labels) files of one split, whether or not they exist."""
    if name not in IDX_DATASETS:
        raise ValueError(f"unknown IDX dataset {name!r}; choose one of {sorted(IDX_DATASETS)}")
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    folder = data_root(root) / IDX_DATASETS[name]
    return [folder / f for f in _FILES[split]]


def load_split(
    name: str, split: str = "train", root: Path | str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images (N, 28, 28) uint8, labels (N,) uint8)`` of ``mnist`` or ``fashion-mnist``."""
    paths = split_paths(name, split, root)
    folder = paths[0].parent
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFound(
            f"dataset {name!r} ({split}) not found: missing {', '.join(map(str, missing))}. "
            + MISSING_HINT,
            missing,
        )
    images, labels = (load_idx(p) for p in paths)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return images, labels
