"""What training.metrics knows of each dataset: its frozen classifier (file, input shape, class
names), its labelled real images, the realness battery's "other dataset", and the words every
figure must use for its pixels.

numpy only (no torch), like training.metrics. The classifier's input shape comes from the JSON
sidecar training.classifier writes next to the ONNX file, so a dataset gains the feature-space
figures by committing a classifier, not by editing a shape constant here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import cifar10, real_images
from training.idx import CLASS_NAMES, IDX_DATASETS, data_root

CLASSIFIER_DIR = Path(__file__).resolve().parent / "classifiers"
CIFAR10 = "cifar10"
# Datasets whose labelled train and test splits training.real_images reads at their native shape.
LABELLED_DATASETS = (*IDX_DATASETS, CIFAR10)
DATASET_CLASS_NAMES: dict[str, list[str]] = {**CLASS_NAMES, CIFAR10: list(cifar10.CLASS_NAMES)}
# The IDX pair judge each other: same shape, same kind of images, different content.
_IDX_OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
# CIFAR-10 has no local RGB sibling; MNIST digits are real images nobody would call a photo.
CIFAR_OTHER_NAME = "mnist digits (grey copied to R, G and B; 28x28 zero-padded to 32x32)"


@dataclass(frozen=True)
class ClassifierSpec:
    """A committed classifier: ``images`` (B, *shape) in [-1, 1] -> ``logits``, ``features``."""

    dataset: str
    path: Path
    shape: tuple[int, int, int]
    class_names: list[str]


def classifier_spec(dataset: str, folder: Path = CLASSIFIER_DIR) -> ClassifierSpec | None:
    """The dataset's classifier, or None when none is committed (no ``.onnx`` or no ``.json``)."""
    onnx_file, sidecar = folder / f"{dataset}.onnx", folder / f"{dataset}.json"
    if not (onnx_file.is_file() and sidecar.is_file()):
        return None
    meta = json.loads(sidecar.read_text())
    _, c, h, w = meta["onnx"]["input"]["shape"]
    names = meta.get("class_names") or DATASET_CLASS_NAMES.get(dataset)
    if not names:
        return None
    return ClassifierSpec(dataset, onnx_file, (int(c), int(h), int(w)), [str(n) for n in names])


def available_classifiers(folder: Path = CLASSIFIER_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.onnx") if classifier_spec(p.stem, folder))


def labelled_split(dataset: str, split: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, C, H, W)`` images and int64 labels (training.real_images: one reader)."""
    images, labels, _ = real_images.labelled_split(dataset, split, root)
    return images, labels


def missing_real_data(dataset: str, root: str | None) -> str | None:
    """Why the labelled real images of ``dataset`` cannot be read here, or None.

    Only cifar10 is checked up front (its copy may simply be absent); a missing IDX file stays
    the loud DatasetNotFound it always was.
    """
    if dataset == CIFAR10 and not cifar10.local_copies(data_root(root)):
        return f"no CIFAR-10 copy under {data_root(root) / 'cifar10'}"
    return None


def pixels_label(dataset: str, root: str | None) -> str | None:
    """What the real pixels are, for datasets whose copy here is not the original; else None.

    Every figure against the JPEG copies is a figure of the JPEG copies (JPEG's 8x8 blocks and
    chroma loss are in the reference too), and must say so.
    """
    if dataset != CIFAR10:
        return None
    copies = cifar10.local_copies(data_root(root))
    if copies and copies[0].name == cifar10.JPEG_ZIP:
        return f"CIFAR-10 {cifar10.JPEG_PIXELS}"
    return "CIFAR-10 (original pixels)"


def other_dataset(
    dataset: str, n: int, root: str | None, seed: int
) -> tuple[str, np.ndarray] | str:
    """``(name, uint8 (n, C, H, W))``: real images of another dataset at this dataset's shape,
    which a realness score must rank below this dataset's; or why there are none."""

    def subset(images: np.ndarray) -> np.ndarray:
        if n >= len(images):
            return images
        return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]

    if dataset in _IDX_OTHER:
        other = _IDX_OTHER[dataset]
        return other, subset(labelled_split(other, "test", root)[0])
    if dataset == CIFAR10:
        try:
            digits = labelled_split("mnist", "test", root)[0]
        except (OSError, ValueError) as e:  # DatasetNotFound is a FileNotFoundError
            return f"no other dataset: the MNIST test split is not readable here ({e})"
        return CIFAR_OTHER_NAME, mnist_as_rgb32(subset(digits))
    return f"no other dataset is defined for {dataset!r}"


def mnist_as_rgb32(digits: np.ndarray) -> np.ndarray:
    """(N, 1, 28, 28) -> (N, 3, 32, 32): the digit unscaled (no interpolation) in the middle of
    a black border of 2 px, which is MNIST's own background, and grey copied to all channels."""
    padded = np.pad(digits, ((0, 0), (0, 0), (2, 2), (2, 2)))
    return np.repeat(padded, 3, axis=1)
