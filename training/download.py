"""Fetch a missing dataset's official files into ``--data-root``, checksums verified.

Where each file comes from and how its checksum is known:

- MNIST: the mirror torchvision uses first (ossci-datasets on S3), then Yann LeCun's page.
  sha256 from ../shared/data/SHA256SUMS, whose files are byte-identical to the official ones:
  their MD5s (kept here too) are the published ones (torchvision's ``MNIST.resources``).
- Fashion-MNIST: Zalando's S3 website, then the zalandoresearch/fashion-mnist GitHub repository.
  sha256 from ../shared/data/SHA256SUMS; MD5s as Zalando's README publishes them.
- CIFAR-10: the authors' page at the University of Toronto (python version). MD5 as that page
  and torchvision publish it; sha256 as Keras (``keras.datasets.cifar10``) pins it. Not in
  ../shared/data (only JPEG copies are), so this checksum is the only one not checked here.

Every file is streamed to a temporary file beside its destination, hashed on the way, and
renamed into place only when size and checksums match: a failed or corrupted download leaves
nothing behind. ``GAN_DATA_MIRROR=URL`` replaces the official URLs by ``URL/<folder>/<file>``
(the layout of ../shared/data, so ``python -m http.server`` in that folder is a mirror);
``GAN_DATA_DOWNLOAD=0`` turns downloads off (the test suite does, so it never reaches the network).
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from training.checkpoint import atomic_write

MIRROR_ENV = "GAN_DATA_MIRROR"
DOWNLOAD_ENV = "GAN_DATA_DOWNLOAD"
TIMEOUT_S = 60.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str
    md5: str


@dataclass(frozen=True)
class Source:
    folder: str  # under the data root
    mirrors: tuple[str, ...]  # base URLs, tried in order
    files: tuple[RemoteFile, ...]

    def file(self, name: str) -> RemoteFile:
        return next(f for f in self.files if f.name == name)


SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        (
            RemoteFile("train-images-idx3-ubyte.gz", 9912422,
                       "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                       "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", 28881,
                       "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                       "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", 1648877,
                       "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                       "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", 4542,
                       "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                       "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        (
            RemoteFile("train-images-idx3-ubyte.gz", 26421880,
                       "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                       "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile("train-labels-idx1-ubyte.gz", 29515,
                       "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                       "25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile("t10k-images-idx3-ubyte.gz", 4422102,
                       "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                       "bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", 5148,
                       "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                       "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
    ),
    "cifar10": Source(
        "cifar10",
        ("https://www.cs.toronto.edu/~kriz/",),
        (
            RemoteFile("cifar-10-python.tar.gz", 170498071,
                       "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                       "c58f30108f718f92721af3b95e74349a"),
        ),
    ),
}  # fmt: skip


class DownloadError(OSError):
    """No mirror gave a file with the right checksum; the message says what each one did."""


def downloads_enabled() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def file_urls(source: Source, name: str) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [f"{mirror.rstrip('/')}/{source.folder}/{name}"]
    return [base + name for base in source.mirrors]


def fetch(dataset: str, names: list[str], root: Path, log: TextIO | None = None) -> list[Path]:
    """Download ``names`` (files of ``dataset``) into ``root/<folder>/``; return their paths."""
    source = SOURCES[dataset]
    folder = Path(root) / source.folder
    paths = []
    for name in names:
        remote = source.file(name)
        dest = folder / name
        errors = []
        for url in file_urls(source, name):
            print(f"downloading {url} -> {dest}", file=log or sys.stderr, flush=True)
            try:
                _fetch_one(url, remote, dest)
                break
            except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
                errors.append(f"{url}: {_reason(e)}")
        else:
            raise DownloadError(f"download of {dataset} failed: {'; '.join(errors)}")
        paths.append(dest)
    return paths


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"no connection ({e.reason})"
    return " ".join(str(e).split()) or type(e).__name__


def _fetch_one(url: str, remote: RemoteFile, dest: Path) -> None:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    size = 0

    # Connect first: with no network, not even the dataset's folder is created.
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:

        def write(f: IO[bytes]) -> None:
            nonlocal size
            while chunk := response.read(CHUNK):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                f.write(chunk)
            # Raised inside atomic_write, so the temporary file is removed, never renamed.
            if size != remote.size or sha256.hexdigest() != remote.sha256:
                raise ValueError(
                    f"checksum mismatch: got {size} bytes with sha256 {sha256.hexdigest()}, "
                    f"expected {remote.size} bytes with sha256 {remote.sha256}"
                )
            if md5.hexdigest() != remote.md5:
                raise ValueError(f"checksum mismatch: md5 {md5.hexdigest()}, expected {remote.md5}")

        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, write)
