"""CIFAR-10 and a synthetic stand-in, held on the device once and batched with tensor augmentation.

Reading: the standard archive layouts in a local directory, `cifar-10-batches-bin` (raw bytes, preferred)
or `cifar-10-batches-py` (pickles read by an unpickler that only admits the few numpy names the official
files contain, so a crafted file is an error, never code execution). Each file's md5 is checked against
the official values; a truncated or malformed file is a DataError naming the file. Download happens only
when nothing is there and a network is reachable, under a file lock so parallel trials fetch once. A
`data_dir` that is an object-store URI is copied to the node's disk first (node_data.py).

Batching (airbench style): the uint8 set lives on the device; every epoch draws a permutation, random
crops (pad 4) and horizontal flips from one CPU generator whose state is saved with the checkpoint,
applies them as batched tensor ops, and (for image_dim 224) resizes on the device. No DataLoader.
"""
from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import defaults
from common.uris import is_uri

from .cifar_files import CIFAR10_PY_MD5, TRAIN_FILES, DataError, download_cifar10, find_cifar10, md5_of

__all__ = ["ImageSet", "load_dataset", "load_cifar10", "make_synthetic", "DeviceLoader", "augment"]

RECORD_BYTES = 1 + 3 * 32 * 32  # binary layout: one label byte, then 3072 pixel bytes (R, G, B planes)


@dataclass
class ImageSet:
    """uint8 images (N, 3, 32, 32) and int64 labels (N,), on any device."""
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, n: int, seed: int = 0) -> ImageSet:
        """A fixed, seeded subset of n images (the whole set when n is 0 or larger than it)."""
        if n <= 0 or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.sort().values.to(self.labels.device)
        return ImageSet(self.images[idx], self.labels[idx])


# ---------------------------------------------------------------------------------------------
# CIFAR-10 from disk
# ---------------------------------------------------------------------------------------------
class _CifarUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR-10 pickles contain: dicts, lists, bytes and numpy arrays."""
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2; encodes text, nothing more
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            if module == "_codecs":
                return codecs.encode  # the same function as _codecs.encode
            if name == "_reconstruct":  # numpy 2 moved numpy.core to numpy._core
                core = getattr(np, "_core", None) or np.core
                return core.multiarray._reconstruct
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_py_batch(path: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    if verify and path.name in CIFAR10_PY_MD5 and md5_of(path) != CIFAR10_PY_MD5[path.name]:
        raise DataError(f"{path}: checksum mismatch (corrupt or not the official CIFAR-10); "
                        f"delete the folder and download it again")
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError,
            IndexError) as exc:
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); "
                        f"delete it and re-download") from None
    return _check_batch(path, data.reshape(len(data), -1) if data.ndim else data, labels)


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records "
                        f"(truncated?); delete it and re-download")
    records = raw.reshape(-1, RECORD_BYTES)
    return _check_batch(path, records[:, 1:], records[:, 0].astype(np.int64))


def _check_batch(path: Path, data: np.ndarray, labels: np.ndarray):
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{path}: expected N x 3072 pixels and N labels, got {data.shape} and "
                        f"{labels.shape}; delete it and re-download")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels outside 0..9; the file is corrupt")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path, verify: bool = True, download: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train, test) from root/cifar-10-batches-{bin,py}; downloads when absent and allowed."""
    root = Path(root)
    found = find_cifar10(root)
    if found is None and download:
        download_cifar10(root)
        found = find_cifar10(root)
    if found is None:
        raise DataError(f"no CIFAR-10 in {root} (expected cifar-10-batches-py or -bin); "
                        f"set --data to its parent folder, or use --dataset synthetic")
    layout, folder = found

    def read(name: str):
        path = folder / (name + ".bin" if layout == "bin" else name)
        if not path.is_file():
            raise DataError(f"{path} is missing; the CIFAR-10 folder is incomplete, re-download it")
        return _read_bin_batch(path) if layout == "bin" else _read_py_batch(path, verify)

    parts = [read(n) for n in TRAIN_FILES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read("test_batch")
    def as_set(x, y):
        return ImageSet(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))

    return as_set(train_x, train_y), as_set(test_x, test_y)


# ---------------------------------------------------------------------------------------------
# Synthetic stand-in
# ---------------------------------------------------------------------------------------------
def make_synthetic(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A learnable 10-class set with CIFAR's shapes: each class is a smooth colour pattern plus noise.

    Class templates are low-frequency random fields; images are a randomly shifted, scaled template
    plus pixel noise, so a small net learns it in a few epochs but not in one step.
    """
    g = torch.Generator().manual_seed(1234)  # the templates are the same for every seed
    coarse = torch.rand(10, 3, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=40, mode="bicubic", align_corners=False).clamp(0, 1)

    def draw(n: int, gen: torch.Generator) -> ImageSet:
        labels = torch.randint(0, 10, (n,), generator=gen)
        dx, dy = torch.randint(0, 9, (2, n), generator=gen)
        crops = _crop(templates[labels], dy, dx)                          # (n, 3, 32, 32)
        scale = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
        noise = 0.25 * torch.randn(n, 3, 32, 32, generator=gen)
        x = (crops * scale + noise).clamp(0, 1)
        return ImageSet((x * 255).round().to(torch.uint8), labels)

    gen = torch.Generator().manual_seed(seed)
    return draw(n_train, gen), draw(n_test, gen)


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Per-image crops of size x size at offsets (dy, dx) from a batch (B, C, H, W), as one gather."""
    b = padded.shape[0]
    rows = (dy[:, None] + torch.arange(size, device=padded.device))           # (B, size)
    cols = (dx[:, None] + torch.arange(size, device=padded.device))
    batch = torch.arange(b, device=padded.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, size, size, C)
    return out.permute(0, 3, 1, 2)


def load_dataset(name: str, data_dir: str = "", n_train: int = 0, n_test: int = 0,
                 seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """The (train, test) sets a trial asks for, optionally cut to fixed seeded subsets."""
    if name == "synthetic":
        train, test = make_synthetic(n_train or 5000, n_test or 1000, seed=0)
    elif name == "cifar10":
        folder = defaults.data_dir(data_dir)
        if is_uri(folder):  # an object store's copy: this node's own copy of it (node_data.py, with pyarrow:
            from .node_data import node_copy  # imported only here, so the core runs where only torch is)

            folder = node_copy(folder)
        train, test = load_cifar10(folder)
    else:
        raise DataError(f"unknown dataset {name!r}; choose cifar10 or synthetic")
    return train.subset(n_train, seed), test.subset(n_test, seed + 1)


# ---------------------------------------------------------------------------------------------
# Batching and augmentation on the device
# ---------------------------------------------------------------------------------------------
def draw_augmentation(n: int, gen: torch.Generator, pad: int = 4) -> tuple[torch.Tensor, ...]:
    """Crop offsets (dy, dx) and flip flags for n images, drawn on the CPU from gen."""
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    return dy, dx, torch.rand(n, generator=gen) < 0.5


def apply_augmentation(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
                       pad: int = 4) -> torch.Tensor:
    """RandomCrop(32, padding=pad) + RandomHorizontalFlip of a batch, zero fill, all on its device."""
    padded = F.pad(images, (pad, pad, pad, pad))
    out = _crop(padded, dy, dx, images.shape[-1])
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """RandomCrop(32, padding=pad) + RandomHorizontalFlip on a batch (B, C, 32, 32), zero fill."""
    dy, dx, flip = (t.to(images.device) for t in draw_augmentation(images.shape[0], gen, pad))
    return apply_augmentation(images, dy, dx, flip, pad)


class DeviceLoader:
    """Batches of float images in [0, 1] (and labels) from an ImageSet resident on one device.

    Training batches are shuffled and augmented with `gen`; the last partial batch is kept
    (DataLoader's drop_last=False, as in the gallery scripts). The epoch's order, crop offsets and flips
    are drawn at its start and copied to the device once: a copy from the CPU per batch would make the
    host wait for the GPU at every step.
    """

    def __init__(self, data: ImageSet, batch_size: int, image_dim: int = 32, train: bool = False,
                 gen: torch.Generator | None = None, dtype=torch.float32, channels_last: bool = False):
        self.data, self.batch_size, self.image_dim, self.train = data, batch_size, image_dim, train
        self.gen = gen or torch.Generator().manual_seed(0)
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def _prepare(self, images: torch.Tensor, augmentation: tuple | None) -> torch.Tensor:
        x = images.to(self.dtype) / 255
        if augmentation is not None:
            x = apply_augmentation(x, *augmentation)
        if self.image_dim != x.shape[-1]:
            x = F.interpolate(x, size=self.image_dim, mode="bilinear", align_corners=False)
        return x.contiguous(memory_format=self.memory_format)

    def __iter__(self):
        n = len(self.data)
        order = torch.randperm(n, generator=self.gen) if self.train else torch.arange(n)
        device = self.data.labels.device
        order = order.to(device)
        drawn = [t.to(device) for t in draw_augmentation(n, self.gen)] if self.train else None
        for start in range(0, n, self.batch_size):
            batch = slice(start, start + self.batch_size)
            augmentation = [t[batch] for t in drawn] if drawn else None
            idx = order[batch]
            yield self._prepare(self.data.images[idx], augmentation), self.data.labels[idx]
