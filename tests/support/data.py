"""Small CIFAR-format data sets the tests write themselves (the real CIFAR-10 is never needed)."""
import pickle

import numpy as np

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def write_cifar_bin(root, n=20, seed=0):
    """root/cifar-10-batches-bin with n random images per batch file, in the official binary layout."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in TRAIN_FILES + ["test_batch"]:
        labels = rng.integers(0, 10, (n, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (folder / f"{name}.bin").write_bytes(np.hstack([labels, pixels]).tobytes())
    return folder


def write_cifar_py(root, n=20, seed=0):
    """The python layout with the official structure: dicts of bytes keys, uint8 arrays, label lists."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in TRAIN_FILES + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist(), b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder
