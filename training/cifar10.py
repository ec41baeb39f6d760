"""CIFAR-10 as uint8 ``(N, 3, 32, 32)`` images and int64 labels, from whichever copy is at hand.

Under ``<data root>/cifar10/``, in this order:

1. ``cifar-10-python.tar.gz``: the official archive (what ``--download`` fetches). Its pickled
   batches are read straight from the archive, no extraction, through an unpickler that
   builds numpy arrays and nothing else.
2. ``cifar10-jpeg.zip``: the team's offline copy in ../shared/data, every image a JPEG
   (quality 75) in ``cifar10/{train,test}/<class>/NNNN.jpg``. Fine to train on; not the
   original pixels (../shared/data/README.md measures how far off), which ``info`` says.

Decoding the 60,000 JPEGs takes ~12 s of one core, paid by every metrics run and classifier
training, so :func:`load` keeps the decoded arrays as ``.npy`` files under the cache folder
(``$GAN_CACHE_DIR``, default ``~/.cache/gan-service``), keyed by the zip's name, size and
modification time: a changed zip is decoded afresh, never served stale.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ARCHIVE = "cifar-10-python.tar.gz"
JPEG_ZIP = "cifar10-jpeg.zip"
JPEG_PIXELS = "JPEG copies (quality 75), not the original"
# The label order of the official batches.meta, which is also the sorted folder names.
CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
_BATCHES = {
    "train": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
    "test": ["cifar-10-batches-py/test_batch"],
}
# All a pickled ndarray needs (numpy 1 names its module numpy.core, numpy 2 numpy._core).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def local_copies(root: Path) -> list[Path]:
    """The copies under ``root/cifar10`` that exist, best first."""
    folder = Path(root) / "cifar10"
    return [p for p in (folder / ARCHIVE, folder / JPEG_ZIP) if p.is_file()]


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _NUMPY_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        return found


def read_archive(path: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` of the official python archive."""
    images, labels = [], []
    with tarfile.open(path, "r:gz") as tar:
        for member in _BATCHES[split]:
            f = tar.extractfile(member)
            if f is None:
                raise ValueError(f"{path}: {member} is not a file")
            # The batches were pickled by Python 2: byte-string keys.
            batch = _ArraysOnly(f, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_jpeg_zip(path: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The same arrays from the JPEG copies: images in name order, labels from the folders."""
    from PIL import Image

    prefix = f"cifar10/{split}/"
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(".jpg"))
        if not names:
            raise ValueError(f"{path}: no {prefix}<class>/*.jpg members")
        images = np.empty((len(names), 3, 32, 32), np.uint8)
        labels = np.empty(len(names), np.int64)
        index = {name: i for i, name in enumerate(CLASS_NAMES)}
        for i, name in enumerate(names):
            cls = name[len(prefix) :].split("/", 1)[0]
            if cls not in index:
                raise ValueError(f"{path}: {name} is in no CIFAR-10 class folder")
            with Image.open(io.BytesIO(z.read(name))) as im:
                images[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
            labels[i] = index[cls]
    return images, labels


def cache_dir() -> Path:
    return Path(os.environ.get("GAN_CACHE_DIR") or Path.home() / ".cache" / "gan-service")


def _cached_jpeg_zip(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_jpeg_zip` through the decoded-array cache; a cache that cannot be written
    (read-only home, full disk) only costs the decode again next time."""
    stat = path.stat()
    stem = cache_dir() / "cifar10" / f"{path.name}-{stat.st_size}-{stat.st_mtime_ns}-{split}"
    images_file, labels_file = (
        stem.with_name(stem.name + "-images.npy"),
        stem.with_name(stem.name + "-labels.npy"),
    )
    try:
        images, labels = np.load(images_file), np.load(labels_file)
        if images.shape == (len(labels), 3, 32, 32) and images.dtype == np.uint8:
            return images, labels
    except (OSError, ValueError):
        pass
    images, labels = read_jpeg_zip(path, split)
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        for target, array in ((labels_file, labels), (images_file, images)):
            # Written aside, then renamed: a killed run never leaves a truncated cache entry.
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            with open(partial, "wb") as f:
                np.save(f, array)
            partial.replace(target)
    except OSError:
        pass
    return images, labels


def load(path: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Images, labels and where they came from, for the copy at ``path``."""
    if path.name == ARCHIVE:
        images, labels = read_archive(path, split)
        info = {"source": str(path), "pixels": "original"}
    else:
        images, labels = _cached_jpeg_zip(path, split)
        info = {"source": str(path), "pixels": JPEG_PIXELS}
    return images, labels, info
