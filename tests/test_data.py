"""CIFAR-10 reading from files the tests write, its error handling, and the device-side batching."""
import pickle

import numpy as np
import pytest
import torch
from support.data import write_cifar_bin, write_cifar_py

from trainables.cifar_files import DataError
from trainables.data import DeviceLoader, augment, load_cifar10, load_dataset, make_synthetic


def test_reads_the_python_layout(tmp_path):
    write_cifar_py(tmp_path)
    train, test = load_cifar10(tmp_path, verify=False, download=False)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.labels.shape == (20,) and int(train.labels.max()) <= 9
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    assert torch.equal(train.images[0].flatten(), torch.from_numpy(first[b"data"][0]))


def test_reads_the_binary_layout(tmp_path):
    folder = write_cifar_bin(tmp_path)
    train, test = load_cifar10(tmp_path, download=False)
    raw = np.frombuffer((folder / "test_batch.bin").read_bytes(), np.uint8).reshape(-1, 3073)
    assert train.images.shape == (100, 3, 32, 32)
    assert test.labels.tolist() == raw[:, 0].tolist()
    assert torch.equal(test.images[3].flatten(), torch.from_numpy(raw[3, 1:].copy()))


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_crafted_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = write_cifar_py(tmp_path)
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f)
    with pytest.raises(DataError, match="data_batch_2.*refusing to load posix.system|data_batch_2"):
        load_cifar10(tmp_path, verify=False, download=False)
    assert not (tmp_path / "pwned").exists()


def test_truncated_files_give_a_clear_error(tmp_path):
    folder = write_cifar_py(tmp_path)
    data = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="test_batch.*not a readable CIFAR-10 batch"):
        load_cifar10(tmp_path, verify=False, download=False)
    binf = write_cifar_bin(tmp_path / "b")
    (binf / "data_batch_3.bin").write_bytes((binf / "data_batch_3.bin").read_bytes()[:-5])
    with pytest.raises(DataError, match="data_batch_3.bin.*truncated"):
        load_cifar10(tmp_path / "b", download=False)


def test_checksums_are_verified_against_the_official_values(tmp_path):
    write_cifar_py(tmp_path)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_cifar10(tmp_path, verify=True, download=False)


def test_missing_dataset_names_the_folder_and_the_way_out(tmp_path):
    with pytest.raises(DataError, match="--dataset synthetic"):
        load_cifar10(tmp_path / "nowhere", download=False)


def test_synthetic_is_deterministic_and_cifar_shaped():
    a_train, a_test = make_synthetic(64, 32, seed=0)
    b_train, _ = make_synthetic(64, 32, seed=0)
    assert a_train.images.shape == (64, 3, 32, 32) and a_train.images.dtype == torch.uint8
    assert torch.equal(a_train.images, b_train.images)
    assert set(a_test.labels.tolist()) <= set(range(10))
    sub = load_dataset("synthetic", n_train=100, n_test=50)[0]
    assert len(sub) == 100


def test_augment_is_a_shifted_crop_or_its_mirror():
    x = torch.rand(64, 3, 32, 32)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(8):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        crops = [padded[:, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)


def test_device_loader_covers_every_image_once_and_resizes(tiny_data):
    train, _ = tiny_data
    loader = DeviceLoader(train, 100, train=True, gen=torch.Generator().manual_seed(1))
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 6 and sorted(labels.tolist()) == sorted(train.labels.tolist())
    x, _ = next(iter(DeviceLoader(train, 4, image_dim=224)))
    assert x.shape == (4, 3, 224, 224) and 0 <= x.min() and x.max() <= 1
