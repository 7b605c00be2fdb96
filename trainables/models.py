"""The paper's model zoo as a registry: five Rohrer nets, torchvision-style ResNet18, Idelbayev ResNet20.

Every architecture takes its layer (conv / scs / sdp), activation, pooling and normalization as injected
module factories, so one definition serves all variants. Module names are the same in every variant of an
arch, which is what lets `init_weights` give every variant with the same seed identical starting values.

ResNet18 is written here rather than imported from torchvision: its structure and state-dict names are
torchvision's `resnet18(num_classes=10)`, but importing torchvision with a CPU-only torch fails
(its compiled ops do not load), and we need to swap every Conv2d anyway.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from common.config import ARCHS, ConfigError, TrialConfig

from . import windowed
from .layers import MaxAbsPool2d, SharpCosSim2d, SharpenedSDP2d

__all__ = ["build_model", "init_weights", "count_params", "list_archs", "sharpened_layers",
           "weight_layers", "ARCH_SPECS"]


# ---------------------------------------------------------------------------------------------
# Injected building blocks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blocks:
    """Factories for one variant: the layer that replaces Conv2d, activation, pooling, normalization."""
    cfg: TrialConfig

    def layer(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
              groups: int = 1, bias: bool = False) -> nn.Module:
        if self.cfg.layer == "conv":
            return nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias)
        cls = SharpCosSim2d if self.cfg.layer == "scs" else SharpenedSDP2d
        return cls(cin, cout, k, stride, padding, groups, p_value=self.cfg.effective_p)

    def act(self) -> nn.Module:
        return nn.ReLU(inplace=False) if self.cfg.activation == "relu" else nn.Identity()

    def norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if self.cfg.normalization == "batchnorm" else nn.Identity()

    def dropout(self) -> nn.Module:
        """Before the classifier, where a CNN's dropout usually sits (the paper's runs use none)."""
        return nn.Dropout(self.cfg.dropout) if self.cfg.dropout > 0 else nn.Identity()

    def pool(self, k: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False):
        cls = MaxAbsPool2d if self.cfg.pooling == "maxabs" else nn.MaxPool2d
        return cls(k, stride if stride is not None else k, padding, ceil_mode=ceil_mode)


class InputNormalize(nn.Module):
    """(x - mean) / std inside the model, so attacks and saliency work on images in [0, 1].

    Buffers are not persistent: the state dict keeps torchvision's / akamaster's key names.
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# Rohrer gallery nets (docs/scs_reference.md §3.2): [layer | pool] stages, then Flatten -> Linear
#
# Where the activation sits: each stage is layer -> [norm] -> [pool] -> activation, i.e. the ReLU comes
# after the stage's pooling, and a stage without a pool is layer -> [norm] -> activation. The gallery nets
# have no activation at all; the paper adds one per "[layer | pool]" stage. Only this order can produce
# the paper's Rohrer tables: with the ReLU before a max-pool every value is >= 0, so max|x| = max x and
# ReLU + MaxAbsPool2d would train exactly like ReLU + MaxPool2d, whereas the paper reports large gaps
# (Table 1 Conv2d 0.6496 vs 0.8032; Rohrer25K Conv2d 0.1301 vs 0.7609). For MaxPool2d the order changes
# nothing (ReLU is monotone, so it commutes with max). See docs/paper_facts.md, "Where the
# activation sits". The ResNets keep their reference structure (torchvision: conv -> BN -> ReLU -> the
# stem's max-pool), which is why the paper sees no ReLU + MaxAbsPool2d dip there.
# ---------------------------------------------------------------------------------------------
class RohrerStage(nn.Sequential):
    """layer -> norm -> pool -> activation; norm, pool and activation are Identity when switched off."""

    def __init__(self, blocks: Blocks, cin, cout, k, padding=0, groups=1, pool=0):
        # Conv2d keeps its default bias in the bias-free-elsewhere Rohrer nets unless BatchNorm follows.
        bias = blocks.cfg.normalization == "none"
        super().__init__()
        self.add_module("layer", blocks.layer(cin, cout, k, 1, padding, groups, bias=bias))
        self.add_module("norm", blocks.norm(cout))
        # MaxAbsPool2d uses ceil_mode as in the gallery scripts (15 -> 8 with k = s = 2)
        self.add_module("pool", blocks.pool(pool, ceil_mode=True) if pool else nn.Identity())
        self.add_module("act", blocks.act())

    def forward(self, x):
        if self._pools_in_layer(x):
            return self.act(self.layer(x, pool=self.pool))
        return super().forward(x)

    def _pools_in_layer(self, x) -> bool:
        """An SCS/SDP layer right before a pooling that runs windowed: one fused kernel (layers.py), where
        a hook on the layer sees the pooled output and one on the pooling does not run; else module by
        module (a model without compiled kernels, as evaluate builds it for hooks, always is)."""
        return (isinstance(self.layer, (SharpCosSim2d, SharpenedSDP2d)) and isinstance(self.norm, nn.Identity)
                and windowed.runs_windowed(self.pool, x, self.layer.compiled_kernels))


class RohrerNet(nn.Module):
    """Stages are (cin, cout, k, pad, groups, pool): pool is the kernel (= stride) of the pooling that
    ends the stage, 0 for none."""

    def __init__(self, blocks: Blocks, stages: tuple, n_features: int, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(*(RohrerStage(blocks, *stage) for stage in stages))
        self.drop = blocks.dropout()
        self.fc = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.fc(self.drop(self.features(x).flatten(1)))


def _rohrer(stages, n_features):
    return lambda blocks: RohrerNet(blocks, stages, n_features)


def _three_stage(c1, c2, c3):
    """model_cifar10_18_4 / 15_9 / 12_9: SCS3x3 (pad 0, 1, 1) with MaxAbsPool 2 after each."""
    return ((3, c1, 3, 0, 1, 2), (c1, c2, 3, 1, 1, 2), (c2, c3, 3, 1, 1, 2)), c3 * 4 * 4


# SCS5x5(80) -> MAP2 -> SCS-dw3x3(80) -> SCS1x1(40) -> MAP2 -> SCS3x3(40) -> MAP4
ROHRER_25K = ((3, 80, 5, 0, 1, 2), (80, 80, 3, 0, 80, 0), (80, 40, 1, 0, 1, 2), (40, 40, 3, 0, 1, 4))
# 3 x SCS5x5(30), MAP 2 / 2 / 4
ROHRER_47K = ((3, 30, 5, 0, 1, 2), (30, 30, 5, 1, 1, 2), (30, 30, 5, 1, 1, 4))


# ---------------------------------------------------------------------------------------------
# torchvision ResNet18 (fc -> 10 classes), every Conv2d swapped, stem max-pool swappable
# ---------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, blocks: Blocks, cin, cout, stride=1):
        super().__init__()
        self.conv1 = blocks.layer(cin, cout, 3, stride, 1)
        self.bn1 = blocks.norm(cout)
        self.relu = blocks.act()
        self.conv2 = blocks.layer(cout, cout, 3, 1, 1)
        self.bn2 = blocks.norm(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(blocks.layer(cin, cout, 1, stride, 0), blocks.norm(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, blocks: Blocks, n_classes: int = 10):
        super().__init__()
        self.input_norm = InputNormalize(IMAGENET_MEAN, IMAGENET_STD)
        self.conv1 = blocks.layer(3, 64, 7, 2, 3)
        self.bn1 = blocks.norm(64)
        self.relu = blocks.act()
        self.maxpool = blocks.pool(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            self.add_module(f"layer{i + 1}", nn.Sequential(BasicBlock(blocks, cin, width, stride),
                                                           BasicBlock(blocks, width, width, 1)))
            cin = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = blocks.dropout()
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.input_norm(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.drop(self.avgpool(x).flatten(1)))


# ---------------------------------------------------------------------------------------------
# Idelbayev ResNet20 (docs/scs_reference.md §4): option-A shortcuts, no max-pool (the pooling axis is a no-op)
# ---------------------------------------------------------------------------------------------
class ShortcutA(nn.Module):
    """Every 2nd pixel, channels zero-padded by planes/4 on each side; no parameters."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class ResNet20Block(nn.Module):
    def __init__(self, blocks: Blocks, cin, cout, stride=1):
        super().__init__()
        self.conv1 = blocks.layer(cin, cout, 3, stride, 1)
        self.bn1 = blocks.norm(cout)
        self.conv2 = blocks.layer(cout, cout, 3, 1, 1)
        self.bn2 = blocks.norm(cout)
        self.act1, self.act2 = blocks.act(), blocks.act()
        self.shortcut = ShortcutA(cout) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, blocks: Blocks, n_classes: int = 10):
        super().__init__()
        self.input_norm = InputNormalize(IMAGENET_MEAN, IMAGENET_STD)
        self.conv1 = blocks.layer(3, 16, 3, 1, 1)
        self.bn1 = blocks.norm(16)
        self.act = blocks.act()
        cin = 16
        for i, width in enumerate((16, 32, 64)):
            stride = 1 if i == 0 else 2
            layers = [ResNet20Block(blocks, cin, width, stride)]
            layers += [ResNet20Block(blocks, width, width) for _ in range(2)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            cin = width
        self.drop = blocks.dropout()
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(self.input_norm(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(self.drop(x.mean(dim=(2, 3))))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchSpec:
    build: Callable[[Blocks], nn.Module]
    init: str                            # "conv_default" | "kaiming_normal_fan_out" | "kaiming_normal_fan_in"


# Parameter counts of the SCS variants (docs/scs_reference.md §3.1): 24,974 / 47,653 / 68,029 / 113,741 / 629,933;
# tests/test_models.py checks them.
ARCH_SPECS: dict[str, ArchSpec] = {
    "rohrer25k": ArchSpec(_rohrer(ROHRER_25K, 40), "conv_default"),
    "rohrer47k": ArchSpec(_rohrer(ROHRER_47K, 30), "conv_default"),
    "rohrer68k": ArchSpec(_rohrer(*_three_stage(24, 48, 96)), "conv_default"),
    "rohrer100k": ArchSpec(_rohrer(*_three_stage(32, 64, 128)), "conv_default"),
    "rohrer583k": ArchSpec(_rohrer(*_three_stage(80, 160, 320)), "conv_default"),
    # torchvision's and akamaster's inits
    "resnet18": ArchSpec(ResNet18, "kaiming_normal_fan_out"),
    "resnet20": ArchSpec(ResNet20, "kaiming_normal_fan_in"),
}
assert tuple(ARCH_SPECS) == ARCHS


def list_archs() -> list[str]:
    return list(ARCH_SPECS)


def build_model(cfg: TrialConfig | dict, init: bool = True) -> nn.Module:
    """The model for one trial config; weights drawn by `init_weights(model, cfg.seed)`.

    Pass init=False under `torch.device("meta")` to count parameters without allocating them.
    """
    if isinstance(cfg, dict):
        cfg = TrialConfig.from_dict(cfg)
    spec = ARCH_SPECS.get(cfg.arch)
    if spec is None:
        raise ConfigError(f"unknown arch {cfg.arch!r}; known: {', '.join(ARCH_SPECS)}")
    model = spec.build(Blocks(cfg))
    if init:
        init_weights(model, cfg.seed, spec.init)
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every conv / SCS / SDP / Linear layer, in forward order."""
    kinds = (nn.Conv2d, SharpCosSim2d, SharpenedSDP2d, nn.Linear)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def sharpened_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SharpCosSim2d, SharpenedSDP2d))]


def _generator(seed: int, name: str) -> torch.Generator:
    """A generator for one named position: the same (seed, name) gives the same draws in any variant."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()) + seed * 1_000_003)


@torch.no_grad()
def init_weights(model: nn.Module, seed: int, scheme: str = "conv_default") -> None:
    """Draw every weight from a generator keyed on (seed, module name).

    Conv and SCS/SDP kernels share one scheme so that a conv net and its SCS twin start from identical
    kernels (SCS normalises its kernel, so only the direction matters to its forward pass).
    """
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, SharpCosSim2d, SharpenedSDP2d)):
            g = _generator(seed, name)
            w = m.weight
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            if scheme == "conv_default":       # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
                bound = 1 / math.sqrt(fan_in)
                w.copy_(torch.empty(w.shape).uniform_(-bound, bound, generator=g))
            else:
                fan = fan_out if scheme == "kaiming_normal_fan_out" else fan_in
                w.copy_(torch.empty(w.shape).normal_(0, math.sqrt(2 / fan), generator=g))
            if getattr(m, "bias", None) is not None:
                bound = 1 / math.sqrt(fan_in)
                m.bias.copy_(torch.empty(m.bias.shape).uniform_(-bound, bound, generator=g))
            if isinstance(m, (SharpCosSim2d, SharpenedSDP2d)) and not m.p_fixed:
                m.p.copy_(torch.empty(m.p.shape).uniform_(1.0, 3.0, generator=_generator(seed, name + ".p")))
            if isinstance(m, SharpCosSim2d):
                m.log_q.fill_(math.log(1e-3))
        elif isinstance(m, nn.Linear):
            g = _generator(seed, name)
            bound = 1 / math.sqrt(m.in_features)
            m.weight.copy_(torch.empty(m.weight.shape).uniform_(-bound, bound, generator=g))
            m.bias.copy_(torch.empty(m.bias.shape).uniform_(-bound, bound, generator=g))
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
