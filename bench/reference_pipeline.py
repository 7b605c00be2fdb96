"""The gallery scripts' pipeline, rebuilt to time this project's training core against it.

The reference layer's SCS (a ones-kernel conv2d for the patch norm, repeat_interleave, plain autograd; see
docs/scs_reference.md §1.4), the two-pass MaxAbsPool2d, a per-image Dataset doing RandomCrop(32, pad 4)
and RandomHorizontalFlip, and torch's DataLoader (batch 128, shuffled, no workers), trained with Adam and
OneCycleLR as the gallery scripts do. Torch only (PIL-free transforms, no torchvision): the same
arithmetic as the reference, on the same images and weights as the project's model of the same config.
bench.targets times this project's training epoch against it (`python -m bench.targets --data DIR`).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from common.config import TrialConfig
from trainables.bench import ReferenceStyleSCS
from trainables.data import ImageSet
from trainables.layers import MaxAbsPool2d, SharpCosSim2d
from trainables.models import build_model

__all__ = ["ReferenceMaxAbsPool2d", "reference_model", "train_reference"]


class ReferenceMaxAbsPool2d(nn.Module):
    """The reference's MaxAbsPool2d: two max-poolings and a where, plain autograd."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.args = (kernel_size, stride or kernel_size, padding)
        self.ceil_mode = ceil_mode

    def forward(self, x):
        largest = F.max_pool2d(x, *self.args, ceil_mode=self.ceil_mode)
        neg_smallest = F.max_pool2d(-x, *self.args, ceil_mode=self.ceil_mode)
        return torch.where(largest >= neg_smallest, largest, -neg_smallest)


def reference_model(cfg: TrialConfig) -> nn.Module:
    """The project's model of `cfg` with the reference's SCS and MaxAbsPool2d in place of its own (same
    initial weights)."""
    model = build_model(cfg)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, SharpCosSim2d):
                ref = ReferenceStyleSCS(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                        child.padding, child.groups, p_value=cfg.effective_p)
                ref.load_state_dict(child.state_dict())
                setattr(parent, name, ref)
            elif isinstance(child, MaxAbsPool2d):
                setattr(parent, name, ReferenceMaxAbsPool2d(child.kernel_size, child.stride, child.padding,
                                                            child.ceil_mode))
    return model


class _Images(Dataset):
    """One image at a time, as torchvision's CIFAR10 with RandomCrop(32, padding=4) and a flip gives it."""

    def __init__(self, images: ImageSet, train: bool, seed: int = 0):
        self.images, self.labels, self.train = images.images, images.labels, train
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float() / 255
        if self.train:
            dy, dx = torch.randint(0, 9, (2,), generator=self.gen).tolist()
            x = F.pad(x, (4, 4, 4, 4))[:, dy:dy + 32, dx:dx + 32]
            if torch.rand((), generator=self.gen) < 0.5:
                x = x.flip(2)
        return x, self.labels[i]


def train_reference(cfg: TrialConfig, train: ImageSet, test: ImageSet, epochs: int) -> list[dict]:
    """Train the reference pipeline for `epochs` (of a OneCycle over cfg.epochs); per epoch its training
    and evaluation seconds and test accuracy."""
    torch.manual_seed(cfg.seed)
    model = reference_model(cfg)
    loader = DataLoader(_Images(train, True, cfg.seed), batch_size=cfg.batch_size, shuffle=True, num_workers=0)
    test_loader = DataLoader(_Images(test, False), batch_size=cfg.batch_size, num_workers=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.max_lr, epochs=cfg.epochs,
                                                    steps_per_epoch=len(loader))
    out = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
        train_s = time.perf_counter() - start
        model.eval()
        start, correct = time.perf_counter(), 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        out.append({"train_s": train_s, "eval_s": time.perf_counter() - start, "test_acc": correct / len(test)})
    return out
