"""Real images of any dataset training knows, as uint8 (N, C, H, W), for pixel-space figures.

numpy + Pillow only (no torch): training.metrics reads them for the sliced Wasserstein distance
(training/swd.py). Only a model's native shape is served (a resize here would not be the one
training did), except for ``folder:`` datasets, which training itself reads at any square size
through training.image_files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training import cifar10, stacked_mnist
from training.idx import IDX_DATASETS, DatasetNotFound, data_root, load_split
from training.image_files import list_images, load_image

NATIVE_SHAPES = {
    **{name: (1, 28, 28) for name in IDX_DATASETS},
    stacked_mnist.NAME: (3, 28, 28),
    "cifar10": (3, 32, 32),
}


def _subset(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def labelled_split(
    dataset: str, split: str, root: str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images uint8 (N, C, H, W), labels int64 (N,), pixels)`` of a split of an IDX dataset,
    stacked-mnist or cifar10; ``pixels`` says what the pixels are ("original" or which copy).

    Raises DatasetNotFound / FileNotFoundError when the files are not here.
    """
    if dataset in IDX_DATASETS:
        images, labels = load_split(dataset, split, root)
        return images[:, None], labels.astype(np.int64), "original"
    if dataset == stacked_mnist.NAME:
        images, modes = stacked_mnist.load_stacked(split, root)
        return images, modes, "original"
    if dataset != "cifar10":
        raise ValueError(f"no real images known for dataset {dataset!r}")
    copies = cifar10.local_copies(data_root(root))
    if not copies:
        raise FileNotFoundError(f"no CIFAR-10 copy under {data_root(root) / 'cifar10'}")
    images, labels, info = cifar10.load(copies[0], split)
    return images, labels, str(info["pixels"])


def _split(dataset: str, split: str, root: str | None) -> np.ndarray:
    return labelled_split(dataset, split, root)[0]


def reference_and_held_out(
    dataset: str, shape: tuple[int, int, int], n: int, root: str | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(reference, held_out, what)``: up to ``n`` random training images and as many real
    images the model never trained on (the test split; for a folder, the folder's other half).

    Raises ValueError (with the reason) when this dataset's real images cannot be read here.
    """
    if dataset.startswith("folder:"):
        c, h, w = shape
        if c != 3 or h != w:
            raise ValueError(f"folder datasets are read as 3xSxS and this model makes {c}x{h}x{w}")
        paths = list_images(Path(dataset.removeprefix("folder:")).expanduser())
        if len(paths) < 4:
            raise ValueError(f"{dataset}: {len(paths)} images; the SWD needs at least 4")
        m = min(n, len(paths) // 2)
        pick = np.random.default_rng(seed).permutation(len(paths))[: 2 * m]
        images = np.stack([load_image(paths[i], h) for i in pick])
        return images[:m], images[m:], f"{m} random images of the folder vs {m} others of it"
    native = NATIVE_SHAPES.get(dataset)
    if native is None:
        raise ValueError(f"no real images known for dataset {dataset!r}")
    if tuple(shape) != native:
        raise ValueError(
            f"{dataset} images are {'x'.join(map(str, native))}, the model's are "
            f"{'x'.join(map(str, shape))}"
        )
    try:
        train, test = _split(dataset, "train", root), _split(dataset, "test", root)
    except (DatasetNotFound, FileNotFoundError, OSError) as e:
        raise ValueError(f"{dataset}: {e}") from None
    m = min(n, len(train), len(test))
    return (
        train[_subset(len(train), m, seed)],
        test[_subset(len(test), m, seed + 1)],
        f"{m} random training images vs {m} random test images",
    )
