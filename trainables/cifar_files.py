"""CIFAR-10's files in a folder: which layout is there, their official md5s, and the one download.

Plain Python (hashlib, urllib, tarfile and filelock, which torch itself depends on): data.py reads the
batches these find, node_data.py copies and checks them between a bucket and a node's disk.
"""
from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from pathlib import Path

from filelock import FileLock

from common.errors import ScsSweepError

__all__ = ["DataError", "md5_of", "find_cifar10", "download_cifar10", "CIFAR10_PY_MD5", "TRAIN_FILES"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# Official md5s of the python layout (the same values torchvision checks).
CIFAR10_PY_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
DOWNLOAD_TIMEOUT_S = 30

class DataError(ScsSweepError):
    """A dataset that cannot be read; the message names the file and what to do."""


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_cifar10(root: Path) -> tuple[str, Path] | None:
    for layout, folder in (("bin", "cifar-10-batches-bin"), ("py", "cifar-10-batches-py")):
        if (root / folder).is_dir():
            return layout, root / folder
    return None


def download_cifar10(root: Path) -> None:
    """Fetch and unpack the official archive once (md5-checked), guarded by a file lock."""
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".cifar10.lock")):
        if find_cifar10(root):
            return
        archive = root / "cifar-10-python.tar.gz"
        try:  # a timeout: a machine whose firewall drops the packets says so in seconds, not minutes
            with urllib.request.urlopen(CIFAR10_URL, timeout=DOWNLOAD_TIMEOUT_S) as answer, open(archive, "wb") as out:
                shutil.copyfileobj(answer, out, 1 << 20)
        except OSError as exc:
            raise DataError(f"CIFAR-10 is not in {root} and cannot be downloaded ({exc}); copy "
                            f"cifar-10-batches-py there, or use --dataset synthetic") from None
        if md5_of(archive) != CIFAR10_ARCHIVE_MD5:
            raise DataError(f"{archive}: checksum mismatch after download; delete it and try again")
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
