"""CIFAR-10 (training.cifar10): the official archive's layout, the JPEG zip, the sampler."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures.fake_data import cifar_archive
from fixtures.real_data import require_real_data
from PIL import Image

from training import cifar10
from training.config import TrainConfig
from training.data import DatasetError, load_cifar10_dataset, make_sampler
from training.idx import DEFAULT_DATA_ROOT
from training.train import parse_args, resolve_config


def test_archive_batches_are_read_in_order(tmp_path: Path) -> None:
    images, labels = cifar_archive(tmp_path / cifar10.ARCHIVE, per_batch=3)
    train = cifar10.read_archive(tmp_path / cifar10.ARCHIVE, "train")
    test = cifar10.read_archive(tmp_path / cifar10.ARCHIVE, "test")
    assert np.array_equal(train[0], images[:15]) and np.array_equal(train[1], labels[:15])
    assert np.array_equal(test[0], images[15:]) and test[1].dtype == np.int64


def test_a_batch_with_anything_but_arrays_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cifar10").mkdir()
    data = pickle.dumps({b"data": os.getcwd, b"labels": []}, protocol=4)
    with tarfile.open(tmp_path / "cifar10" / cifar10.ARCHIVE, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match=r"unexpected object posix\.getcwd"):
        load_cifar10_dataset(32, tmp_path)


def test_jpeg_zip_labels_come_from_the_class_folders(tmp_path: Path) -> None:
    path = tmp_path / "cifar10" / cifar10.JPEG_ZIP
    path.parent.mkdir()
    colours = {"cat": (200, 30, 30), "truck": (20, 40, 220)}
    with zipfile.ZipFile(path, "w") as z:
        for cls, rgb in colours.items():
            for i in range(2):
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), rgb).save(buf, "JPEG", quality=95)
                z.writestr(f"cifar10/train/{cls}/{i:04d}.jpg", buf.getvalue())
        z.writestr("cifar10/test/cat/0000.jpg", buf.getvalue())
    images, labels, info = load_cifar10_dataset(32, tmp_path)
    assert images.shape == (4, 3, 32, 32)
    assert labels.tolist() == [3, 3, 9, 9]  # cat, cat, truck, truck in CIFAR-10's label order
    assert np.abs(images[0, :, 5, 5].numpy().astype(int) - colours["cat"]).max() <= 3
    assert "JPEG" in info["pixels"]
    assert load_cifar10_dataset(64, tmp_path)[0].shape == (4, 3, 64, 64)


def test_the_official_archive_wins_over_the_jpeg_copies(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / cifar10.JPEG_ZIP).write_bytes(b"")
    assert cifar10.local_copies(tmp_path) == [folder / cifar10.JPEG_ZIP]
    cifar_archive(folder / cifar10.ARCHIVE)
    assert cifar10.local_copies(tmp_path)[0] == folder / cifar10.ARCHIVE


def test_missing_cifar10_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset 'cifar10' \(train\) not found: neither .*"):
        load_cifar10_dataset(32, tmp_path)


def test_cifar10_is_a_32px_rgb_dataset_by_default(tmp_path: Path) -> None:
    cfg, _ = resolve_config(parse_args(["--dataset", "cifar10", "--out", str(tmp_path / "r")]))
    assert cfg.arch == "dcgan32"


@pytest.mark.slow  # decodes 50,000 JPEGs: ~10 s
def test_real_cifar10_trains_as_ten_labelled_classes() -> None:
    require_real_data("cifar10")
    cfg = TrainConfig(dataset="cifar10", arch="dcgan32", conditional=True, batch_size=64)
    s = make_sampler(cfg, download=False)
    assert s.info["n_images"] == 50_000 and s.info["shape"] == [3, 32, 32]
    assert s.info["class_names"] == cifar10.CLASS_NAMES and s.channels == 3
    assert s.labels is not None and np.bincount(s.labels.numpy()).tolist() == [5000] * 10
    # ../shared/data/README.md: the decoded JPEG copies' channel means (the originals: 125.31,
    # 122.96, 113.86, within the same tolerance).
    means = s.images.float().mean(dim=(0, 2, 3)).tolist()
    assert means == pytest.approx([125.27, 122.93, 113.86], abs=0.1)
    images, labels = s()
    assert images.shape == (64, 3, 32, 32) and labels.shape == (64,)
    assert str(DEFAULT_DATA_ROOT.resolve()) in s.info["source"]
