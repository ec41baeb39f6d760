"""Real-sample streams: toy mixtures, IDX files, folders of images; epochs, shards, state."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.fake_data import write_idx
from fixtures.real_data import require_real_data

from training import toy
from training.config import TrainConfig
from training.data import (
    ArraySampler,
    DatasetError,
    ToySampler,
    load_folder_images,
    load_idx_images,
    make_sampler,
)


def numbered_images(n: int) -> np.ndarray:
    """Image i has pixel (0, 0) = i, so a batch says which images it holds."""
    imgs = np.zeros((n, 28, 28), np.uint8)
    imgs[:, 0, 0] = np.arange(n)
    imgs[:, 5, 5] = 255
    return imgs


# --- toys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "n_modes", "std"), [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_toy_sampler_mode_statistics(name: str, n_modes: int, std: float) -> None:
    s = ToySampler(name, batch_size=20_000, seed=0)
    x = s().numpy()
    centers = toy.mode_centers(name)
    assert len(centers) == n_modes
    dist = np.linalg.norm(x[:, None] - centers[None], axis=2)
    nearest = dist.argmin(1)
    offset = x - centers[nearest]
    assert offset.std() == pytest.approx(std, rel=0.05)  # per-coordinate noise
    freq = np.bincount(nearest, minlength=n_modes) / len(x)
    assert np.abs(freq - 1 / n_modes).max() < 5 * np.sqrt(1 / n_modes / len(x))  # uniform modes
    if name == "ring8":
        np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0)
    else:
        assert sorted(set(centers.ravel())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_toy_sampler_is_seeded_and_resumable() -> None:
    a, b = ToySampler("ring8", 16, seed=3), ToySampler("ring8", 16, seed=3)
    torch.testing.assert_close(a(), b())
    assert not torch.equal(
        ToySampler("ring8", 16, seed=3, rank=1)(), ToySampler("ring8", 16, seed=3)()
    )
    state = a.state_dict()
    nxt = a()
    fresh = ToySampler("ring8", 16, seed=99)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(), nxt)
    assert a.epoch is None


# --- IDX ---------------------------------------------------------------------------------------


def test_idx_images_are_scaled_to_minus_one_one(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = [0, 255]
    write_idx(tmp_path, images)
    cfg = TrainConfig(dataset="mnist", arch="dcgan28", batch_size=8, data_root=str(tmp_path))
    sampler = make_sampler(cfg)
    assert sampler.channels == 1 and sampler.info["n_images"] == 40
    batch = sampler()
    assert batch.shape == (8, 1, 28, 28) and batch.dtype == torch.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    # every batch row is exactly u8 / 127.5 - 1 of one of the training images
    expected = torch.from_numpy(images).float() / 127.5 - 1.0
    for row in batch:
        assert any(torch.equal(row[0], e) for e in expected)
    assert float(expected[0, 0, 0]) == -1.0 and float(expected[0, 0, 1]) == 1.0


def test_idx_resized_for_bigger_arch(tmp_path: Path) -> None:
    write_idx(tmp_path, numbered_images(16))
    images = load_idx_images("mnist", 32, tmp_path)
    assert images.shape == (16, 1, 32, 32) and images.dtype == torch.uint8


def test_missing_idx_dataset_is_a_clear_error(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset="fashion-mnist", arch="dcgan28", data_root=str(tmp_path))
    with pytest.raises(
        DatasetError, match=r"dataset 'fashion-mnist' \(train\) not found.*--data-root"
    ):
        make_sampler(cfg)


def _ids(batch: torch.Tensor) -> list[int]:
    return [round((v + 1) * 127.5) for v in batch[:, 0, 0, 0].tolist()]


def drain(s: ArraySampler, n_batches: int) -> list[int]:
    return [i for _ in range(n_batches) for i in _ids(s())]


def test_epochs_are_shuffled_permutations() -> None:
    images = torch.from_numpy(numbered_images(40)).unsqueeze(1)
    s = ArraySampler(images, batch_size=8, seed=0)
    epoch0 = drain(s, 5)
    assert sorted(epoch0) == list(range(40)) and epoch0 != list(range(40))
    assert s.epoch == 1.0
    epoch1 = drain(s, 5)
    assert sorted(epoch1) == list(range(40)) and epoch1 != epoch0  # a new order each epoch
    assert s.epoch == 2.0


def test_partial_last_batch_is_dropped() -> None:
    s = ArraySampler(torch.from_numpy(numbered_images(20)).unsqueeze(1), batch_size=8, seed=0)
    assert s.batches_per_epoch == 2
    s(), s()
    s()
    assert s.epoch_index == 1 and s.epoch == 1.5


def test_ranks_see_disjoint_shards() -> None:
    images = torch.from_numpy(numbered_images(40)).unsqueeze(1)
    seen = []
    for rank in range(2):
        s = ArraySampler(images, batch_size=5, seed=1, rank=rank, world_size=2)
        seen.append(set(drain(s, s.batches_per_epoch)))
    assert len(seen[0]) == len(seen[1]) == 20
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(40))


def test_array_sampler_state_round_trip_across_epochs() -> None:
    images = torch.from_numpy(numbered_images(24)).unsqueeze(1)
    a = ArraySampler(images, batch_size=8, seed=5)
    for _ in range(2):
        a()
    state = a.state_dict()
    expected = [_ids(a()) for _ in range(5)]  # crosses two epoch boundaries
    b = ArraySampler(images, batch_size=8, seed=5)
    b.load_state_dict(state)
    assert [_ids(b()) for _ in range(5)] == expected
    with pytest.raises(ValueError, match="images"):
        ArraySampler(images[:16], batch_size=8, seed=5).load_state_dict(state)


def test_too_few_images_for_a_batch() -> None:
    with pytest.raises(DatasetError, match="cannot fill one batch"):
        ArraySampler(torch.zeros(6, 1, 28, 28, dtype=torch.uint8), batch_size=8, seed=0)


def test_real_mnist_loads() -> None:
    require_real_data("mnist", splits=("train",))
    s = make_sampler(TrainConfig(dataset="mnist", arch="dcgan28", batch_size=64))
    assert s.info["n_images"] == 60_000 and s.batches_per_epoch == 937
    x = s()
    assert x.shape == (64, 1, 28, 28) and x.min() == -1.0 and x.max() == 1.0


# --- folders -----------------------------------------------------------------------------------


def _make_folder(root: Path) -> Path:
    from PIL import Image

    (root / "sub").mkdir(parents=True)
    # 60x40 landscape: red left margin, green centre, blue right margin -> centre crop is green
    im = np.zeros((40, 60, 3), np.uint8)
    im[:, :10] = [255, 0, 0]
    im[:, 10:50] = [0, 255, 0]
    im[:, 50:] = [0, 0, 255]
    Image.fromarray(im).save(root / "a.png")
    Image.fromarray(np.full((50, 50), 128, np.uint8)).save(root / "sub" / "b.jpg", quality=95)
    Image.fromarray(np.zeros((30, 30, 4), np.uint8)).save(root / "c.webp")
    Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(root / "d.bmp")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_dataset_loads_crops_and_resizes(tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "imgs")
    images = load_folder_images(folder, 32)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    a = images[0].float()  # a.png, sorted first
    # only the green centre remains
    assert a[1].mean() > 250 and a[0].mean() < 5 and a[2].mean() < 5
    assert abs(images[3].float().mean() - 128) < 3  # sub/b.jpg (sorted last): grey L image -> RGB
    cfg = TrainConfig(dataset=f"folder:{folder}", arch="dcgan32", batch_size=2)
    s = make_sampler(cfg)
    assert s.channels == 3 and s.info["kind"] == "folder" and s().shape == (2, 3, 32, 32)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a directory"):
        load_folder_images(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_folder_images(tmp_path / "empty", 32)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="could be read"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_folder_images(tmp_path / "bad", 32)


def test_unreadable_images_are_skipped_with_a_warning(tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "imgs")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert len(load_folder_images(folder, 16)) == 4


def test_unknown_dataset_name() -> None:
    with pytest.raises(DatasetError, match="choose one of"):
        make_sampler(TrainConfig(dataset="cifar100", arch="dcgan32"))
