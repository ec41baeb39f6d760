"""Real-sample streams for training: the 2-D toys, MNIST-style IDX files, CIFAR-10, image folders.

A sampler is an endless, callable stream of batches whose position is part of its state: a
checkpoint stores ``state_dict()`` and a resumed run draws exactly the batches an uninterrupted
run would have drawn. Image samplers walk shuffled epochs; under DDP every rank walks the same
permutation but takes its own interleaved slice of it, so ranks see disjoint shards.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training import cifar10, download, stacked_mnist, toy
from training.config import TrainConfig
from training.idx import (
    CLASS_NAMES,
    IDX_DATASETS,
    MISSING_HINT,
    DatasetNotFound,
    data_root,
    load_split,
)
from training.image_files import IMAGE_SUFFIXES, list_images, load_image

DATASET_CHOICES = "ring8 | grid25 | mnist | fashion-mnist | stacked-mnist | cifar10 | folder:PATH"
CIFAR10 = "cifar10"
STACKED_MNIST = stacked_mnist.NAME
T = TypeVar("T")


class DatasetError(ValueError):
    """Unknown dataset, missing or unreadable files: the CLI reports it in one line (exit 2)."""


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts; stable across processes (Python's ``hash`` is salted)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_dataset_name(name: str) -> None:
    if name in toy.TOY_DATASETS or name in IDX_DATASETS or name in (CIFAR10, STACKED_MNIST):
        return
    if name.startswith("folder:") and len(name) > len("folder:"):
        return
    raise DatasetError(f"--dataset {name!r}: choose one of {DATASET_CHOICES}")


def default_arch(dataset: str) -> str:
    """The architecture made for the dataset's native image size."""
    if dataset in toy.TOY_DATASETS:
        return "mlp"
    if dataset in IDX_DATASETS or dataset == STACKED_MNIST:
        return "dcgan28"
    return "dcgan32" if dataset == CIFAR10 else "dcgan64"


class Sampler(Protocol):
    """``__call__`` gives a batch of images, or ``(images, labels)`` when built with labels."""

    channels: int
    info: dict[str, Any]

    def __call__(self) -> Any: ...

    @property
    def epoch(self) -> float | None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ToySampler:
    """Fresh draws from a 2-D mixture on every call; 'epochs' do not exist for a density."""

    channels = 2

    def __init__(
        self,
        name: str,
        batch_size: int,
        seed: int,
        rank: int = 0,
        device: str | torch.device = "cpu",
    ):
        toy.mode_centers(name)  # validates the name
        self.name, self.batch_size, self.device = name, batch_size, torch.device(device)
        self.rng = np.random.default_rng(derive_seed(seed, "data", name, rank))
        self.drawn = 0
        self.info = {"dataset": name, "kind": "toy", "n_images": None, "shape": [2]}

    def __call__(self) -> Tensor:
        self.drawn += self.batch_size
        return torch.from_numpy(toy.sample(self.name, self.batch_size, self.rng)).to(self.device)

    @property
    def epoch(self) -> float | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "toy",
            "name": self.name,
            "bit_generator": self.rng.bit_generator.state,
            "drawn": self.drawn,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "toy" or state.get("name") != self.name:
            raise ValueError(
                f"sampler state is for {state.get('kind')}:{state.get('name')}, not toy:{self.name}"
            )
        self.rng.bit_generator.state = state["bit_generator"]
        self.drawn = int(state["drawn"])


class ArraySampler:
    """Shuffled epochs over in-memory ``uint8`` images ``(N, C, H, W)``, served in ``[-1, 1]``.

    The last partial batch of each epoch is dropped, so every batch has ``batch_size`` images
    (BatchNorm and PacGAN packing both want a fixed batch) and all ranks stay in lockstep.
    """

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
        info: dict[str, Any] | None = None,
        labels: Tensor | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {tuple(labels.shape)}")
        # With labels every call returns (images, labels): the batch's own classes, which a
        # class-conditional D needs next to each real image.
        self.labels = None if labels is None else labels.long()
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.channels = images.shape[1]
        self.shard_size = len(images) // world_size
        self.batches_per_epoch = self.shard_size // batch_size
        if self.batches_per_epoch < 1:
            raise DatasetError(
                f"{len(images)} images cannot fill one batch of {batch_size} per process "
                f"({world_size} processes): lower --batch-size or add images"
            )
        self.epoch_index = 0
        self.batch_in_epoch = 0
        self._order: Tensor | None = None
        self.info = dict(info or {}, n_images=len(images), shape=list(images.shape[1:]))

    def _epoch_order(self, epoch: int) -> Tensor:
        # The permutation depends on (seed, epoch) only, not on the rank: slicing it [rank::world]
        # gives disjoint shards, like torch's DistributedSampler.
        g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
        perm = torch.randperm(len(self.images), generator=g)
        return perm[: self.shard_size * self.world_size][self.rank :: self.world_size]

    def __call__(self) -> Tensor | tuple[Tensor, Tensor]:
        if self.batch_in_epoch == self.batches_per_epoch:
            self.epoch_index += 1
            self.batch_in_epoch = 0
            self._order = None
        if self._order is None:
            self._order = self._epoch_order(self.epoch_index)
        start = self.batch_in_epoch * self.batch_size
        idx = self._order[start : start + self.batch_size]
        self.batch_in_epoch += 1
        # contract.pixels.from_uint8 for the [-1, 1] range, done in torch on the device.
        batch = self.images[idx].to(self.device, non_blocking=True).float() / 127.5 - 1.0
        if self.labels is None:
            return batch
        return batch, self.labels[idx].to(self.device, non_blocking=True)

    @property
    def epoch(self) -> float:
        """Epochs completed (fractional): each epoch is one pass over the whole dataset, all ranks together."""
        return self.epoch_index + self.batch_in_epoch / self.batches_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "array",
            "n_images": len(self.images),
            "epoch_index": self.epoch_index,
            "batch_in_epoch": self.batch_in_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "array" or state.get("n_images") != len(self.images):
            raise ValueError(
                f"sampler state is for {state.get('kind')} with {state.get('n_images')} images, "
                f"this dataset has {len(self.images)}"
            )
        self.epoch_index = int(state["epoch_index"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._order = None


def resize_u8(images: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """Antialiased bilinear resize of uint8 ``(N, C, H, W)`` (e.g. MNIST for a 32/64 arch)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for part in images.split(chunk):
        x = F.interpolate(
            part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def load_idx_images(name: str, size: int, root: str | Path | None = None) -> Tensor:
    """The training split of ``mnist``/``fashion-mnist`` as uint8 ``(N, 1, size, size)``."""
    return load_idx_dataset(name, size, root)[0]


def _fetching_if_missing(
    dataset: str, root: str | Path | None, fetch: bool, read: Callable[[], T]
) -> T:
    """``read()``; when its files are missing, download the dataset's official files, read again."""
    try:
        return read()
    except DatasetNotFound as e:
        if not (fetch and download.downloads_enabled()):
            raise DatasetError(str(e)) from None
        source = download.SOURCES[dataset]
        folder = data_root(root) / source.folder
        names = [f.name for f in source.files if not (folder / f.name).is_file()]
        try:
            download.fetch(dataset, names, data_root(root))
        except download.DownloadError as d:
            raise DatasetError(f"{e} {d}") from None
    try:
        return read()
    except DatasetNotFound as e:
        raise DatasetError(str(e)) from None


def load_idx_dataset(
    name: str, size: int, root: str | Path | None = None, fetch: bool = False
) -> tuple[Tensor, Tensor]:
    """The training split as uint8 ``(N, 1, size, size)`` images and int64 ``(N,)`` labels.

    With ``fetch``, missing files are downloaded first (training.download).
    """
    images, labels = _fetching_if_missing(
        name, root, fetch, lambda: load_split(name, "train", root)
    )
    images_t = resize_u8(torch.from_numpy(images.copy()).unsqueeze(1), size)
    return images_t, torch.from_numpy(labels.astype(np.int64))


def load_stacked_mnist_dataset(
    size: int, root: str | Path | None = None, fetch: bool = False
) -> tuple[Tensor, Tensor]:
    """Stacked MNIST's fixed training triples as uint8 ``(N, 3, size, size)`` and their modes."""
    images, modes = _fetching_if_missing(
        "mnist", root, fetch, lambda: stacked_mnist.load_stacked("train", root)
    )
    return resize_u8(torch.from_numpy(images), size), torch.from_numpy(modes)


def load_cifar10_dataset(
    size: int, root: str | Path | None = None, fetch: bool = False, split: str = "train"
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """CIFAR-10 as uint8 ``(N, 3, size, size)`` images, int64 labels, and which copy was read."""

    def read() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        copies = cifar10.local_copies(data_root(root))
        if not copies:
            folder = data_root(root) / "cifar10"
            raise DatasetNotFound(
                f"dataset 'cifar10' ({split}) not found: neither {folder / cifar10.ARCHIVE} nor "
                f"{folder / cifar10.JPEG_ZIP}. " + MISSING_HINT,
                [folder / cifar10.ARCHIVE],
            )
        try:
            return cifar10.load(copies[0], split)
        except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as e:
            raise DatasetError(f"dataset 'cifar10': cannot read {copies[0]}: {e}") from None

    images, labels, info = _fetching_if_missing(CIFAR10, root, fetch, read)
    return resize_u8(torch.from_numpy(images), size), torch.from_numpy(labels), info


def load_folder_images(folder: str | Path, size: int) -> Tensor:
    """Every image under ``folder`` (recursively) as uint8 ``(N, 3, size, size)``."""
    return load_folder_dataset(folder, size)[0]


def load_folder_dataset(
    folder: str | Path, size: int, with_labels: bool = False
) -> tuple[Tensor, Tensor | None, list[str]]:
    """``(images, labels, class names)`` of an image folder.

    With labels, the classes are the folder's sub-folders (sorted names; images anywhere below a
    sub-folder belong to it), as torchvision's ImageFolder lays them out.
    """
    from PIL import UnidentifiedImageError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"--dataset folder:{folder}: {root} is not a directory")
    paths = list_images(root)
    if not paths:
        raise DatasetError(
            f"--dataset folder:{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}"
        )
    names: list[str] = []
    if with_labels:
        loose = [p for p in paths if p.parent == root]
        if loose:
            raise DatasetError(
                f"--dataset folder:{folder} with --conditional: classes are the sub-folders of "
                f"{root}, but {len(loose)} image(s) lie directly in it, e.g. {loose[0].name}"
            )
        names = sorted({p.relative_to(root).parts[0] for p in paths})
        if len(names) < 2:
            raise DatasetError(
                f"--dataset folder:{folder} with --conditional: needs at least 2 class "
                f"sub-folders, found {names}"
            )
    index = {name: i for i, name in enumerate(names)}
    arrays, labels, bad = [], [], []
    for p in paths:
        try:
            arrays.append(load_image(p, size))
        except (OSError, UnidentifiedImageError, ValueError):
            bad.append(p)
            continue
        if with_labels:
            labels.append(index[p.relative_to(root).parts[0]])
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[0]}", stacklevel=2)
    if not arrays:
        raise DatasetError(
            f"--dataset folder:{folder}: none of the {len(paths)} image files could be read"
        )
    label_tensor = torch.tensor(labels, dtype=torch.long) if with_labels else None
    return torch.from_numpy(np.stack(arrays)), label_tensor, names


def image_size(arch: str) -> int:
    return {"dcgan28": 28, "dcgan32": 32, "dcgan64": 64}[arch]


def make_sampler(
    cfg: TrainConfig, rank: int = 0, world_size: int = 1, download: bool = True
) -> Sampler:
    """The real-sample stream of ``cfg.dataset`` for one process; ``.channels`` sizes the networks.

    ``download``: fetch a missing mnist / fashion-mnist / cifar10 into the data root (also off
    with ``GAN_DATA_DOWNLOAD=0``). Every process loads (and may fetch) its own copy: nodes need
    not share a file system, and the atomic rename makes two fetches into one folder harmless.
    """
    check_dataset_name(cfg.dataset)
    if cfg.dataset in toy.TOY_DATASETS:
        # Fresh draws: seeding by rank is all it takes for ranks to see different samples.
        return ToySampler(cfg.dataset, cfg.batch_size, cfg.seed, rank, cfg.device)
    size = image_size(cfg.arch)
    labels: Tensor | None
    if cfg.dataset in IDX_DATASETS:
        images, labels = load_idx_dataset(cfg.dataset, size, cfg.data_root, fetch=download)
        names = CLASS_NAMES[cfg.dataset]
        info: dict[str, Any] = {"dataset": cfg.dataset, "kind": "idx"}
    elif cfg.dataset == STACKED_MNIST:
        if cfg.conditional:
            raise DatasetError(
                "--dataset stacked-mnist is the unconditional mode-collapse benchmark: "
                "drop --conditional"
            )
        images, labels = load_stacked_mnist_dataset(size, cfg.data_root, fetch=download)
        names = []
        info = {"dataset": cfg.dataset, "kind": "stacked-mnist", "modes": stacked_mnist.NUM_MODES}
    elif cfg.dataset == CIFAR10:
        images, labels, source = load_cifar10_dataset(size, cfg.data_root, fetch=download)
        names = cifar10.CLASS_NAMES
        info = {"dataset": cfg.dataset, "kind": "cifar10", **source}
    else:
        folder = cfg.dataset.removeprefix("folder:")
        images, labels, names = load_folder_dataset(folder, size, with_labels=cfg.conditional)
        info = {
            "dataset": cfg.dataset,
            "kind": "folder",
            "path": str(Path(folder).expanduser().resolve()),
        }
    if cfg.conditional:
        info["class_names"] = list(names)
    else:
        labels = None
    return ArraySampler(
        images, cfg.batch_size, cfg.seed, rank, world_size, cfg.device, info, labels
    )


def num_classes(sampler: Sampler) -> int:
    """How many classes a sampler's labels have (0 for an unlabelled stream)."""
    return len(sampler.info.get("class_names") or [])
