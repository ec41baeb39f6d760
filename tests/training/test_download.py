"""Downloads of missing datasets (training.download) from a local HTTP server.

The server serves ../shared/data (the official bytes) where a test needs real files, or files a
test makes; ``GAN_DATA_MIRROR`` points the downloader at it.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from fixtures.fake_data import cifar_archive
from fixtures.real_data import require_real_data

from training import download
from training.data import DatasetError, load_cifar10_dataset, load_idx_dataset
from training.idx import DEFAULT_DATA_ROOT
from training.train import main


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[functools.partial[str]]:
    """``serve(folder)`` starts a mirror of ``folder`` and turns downloads on, pointed at it."""
    servers: list[ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv(download.MIRROR_ENV, url)
        monkeypatch.setenv(download.DOWNLOAD_ENV, "1")
        return url

    yield functools.partial(start)
    for server in servers:
        server.shutdown()
        server.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_idx_datasets_download_verified_from_a_mirror(
    dataset: str, tmp_path: Path, serve: functools.partial[str]
) -> None:
    require_real_data(dataset)
    serve(DEFAULT_DATA_ROOT)
    images, labels = load_idx_dataset(dataset, 28, tmp_path, fetch=True)
    assert images.shape == (60_000, 1, 28, 28) and labels.shape == (60_000,)
    source = download.SOURCES[dataset]
    assert _leftovers(tmp_path) == sorted(
        f.name for f in source.files
    )  # both splits, no temp files
    for f in source.files:
        assert (
            hashlib.sha256((tmp_path / source.folder / f.name).read_bytes()).hexdigest() == f.sha256
        )


def test_the_cli_trains_on_a_download(tmp_path: Path, serve: functools.partial[str]) -> None:
    require_real_data("mnist")
    serve(DEFAULT_DATA_ROOT)
    torch.set_num_threads(1)
    out = tmp_path / "run"
    argv = ["--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--width", "4"]
    argv += ["--batch-size", "8", "--steps", "1", "--no-progress", "--no-tensorboard"]
    assert main([*argv, "--out", str(out)]) == 0
    assert (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_a_corrupted_download_is_refused_and_leaves_nothing(
    tmp_path: Path, serve: functools.partial[str], capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror" / "mnist"
    mirror.mkdir(parents=True)
    for f in download.SOURCES["mnist"].files:
        (mirror / f.name).write_bytes(b"\x1f\x8b not the official bytes")
    serve(tmp_path / "mirror")
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as e:
        load_idx_dataset("mnist", 28, root, fetch=True)
    message = str(e.value)
    assert "dataset 'mnist' (train) not found" in message and "checksum mismatch" in message
    assert "expected 9912422 bytes with sha256 440fcabf" in message
    assert len(message.splitlines()) == 1
    assert _leftovers(root) == []


def test_no_network_and_no_files_gives_the_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv(download.DOWNLOAD_ENV, "1")
    out = tmp_path / "run"
    argv = ["--dataset", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(
        "python -m training.train: error: dataset 'fashion-mnist' (train) not found"
    )
    assert "no connection" in err and "Pass --data-root" in err
    assert not (tmp_path / "data").exists() and not (out / "config.json").exists()


def test_downloads_off_keeps_todays_error(tmp_path: Path, serve: functools.partial[str]) -> None:
    serve(tmp_path)
    with pytest.raises(DatasetError, match=r"not found: missing .*Pass --data-root") as e:
        load_idx_dataset("mnist", 28, tmp_path / "data", fetch=False)
    assert "download of" not in str(e.value)
    assert not (tmp_path / "data").exists()


def test_mirror_urls_follow_the_data_root_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    source = download.SOURCES["cifar10"]
    assert download.file_urls(source, "cifar-10-python.tar.gz") == [
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    ]
    monkeypatch.setenv(download.MIRROR_ENV, "http://host:8000/data/")
    assert download.file_urls(source, "x.tar.gz") == ["http://host:8000/data/cifar10/x.tar.gz"]


# --- CIFAR-10 --------------------------------------------------------------------------------


def test_cifar10_downloads_and_reads_the_official_archive_layout(
    tmp_path: Path, serve: functools.partial[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mirror" / "cifar10").mkdir(parents=True)
    archive = tmp_path / "mirror" / "cifar10" / "cifar-10-python.tar.gz"
    images, labels = cifar_archive(archive)
    data = archive.read_bytes()
    # The real archive is 170 MB and not in ../shared/data: this stand-in gets its own checksums.
    fake = download.RemoteFile(
        archive.name, len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
    )
    monkeypatch.setitem(
        download.SOURCES, "cifar10", download.Source("cifar10", ("unused",), (fake,))
    )
    serve(tmp_path / "mirror")
    got, got_labels, info = load_cifar10_dataset(32, tmp_path / "data", fetch=True)
    assert torch.equal(got, torch.from_numpy(images[:20]))  # the 5 training batches
    assert got_labels.tolist() == labels[:20].tolist()
    assert info["pixels"] == "original"
    assert _leftovers(tmp_path / "data") == ["cifar-10-python.tar.gz"]
