"""TrialConfig: the frozen, validated settings of one training run.

Built once at the top of every trial from a plain dict (a Tune config, a CLI, a test). Unknown keys,
wrong types and values outside the vocabulary (vocabulary.py) are rejected with one line that says
what is allowed, so a typo in a preset fails before any GPU time is spent.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .errors import ScsSweepError
from .vocabulary import (
    ACTIVATIONS,
    ARCHS,
    DATASETS,
    LAYERS,
    NORMALIZATIONS,
    OPTIMIZERS,
    P_MODES,
    PAPER_EPOCHS,
    POOLINGS,
    PRECISIONS,
    SCHEDULERS,
)

__all__ = ["TrialConfig", "ConfigError", "ARCHS", "LAYERS", "ACTIVATIONS", "POOLINGS",
           "NORMALIZATIONS", "P_MODES", "DATASETS"]


# The paper's defaults per architecture family (Appendix A; ResNet20 from akamaster/trainer.py).
_DEFAULT_NORMALIZATION = {"resnet18": "batchnorm", "resnet20": "batchnorm"}


class ConfigError(ScsSweepError, ValueError):
    """A trial config that cannot run; the message names the key and what is allowed."""


@dataclass(frozen=True)
class TrialConfig:
    arch: str = "rohrer100k"
    layer: str = "scs"
    activation: str = "none"
    pooling: str = "maxabs"
    normalization: str = ""            # "" -> the arch's default (BatchNorm2d for the ResNets)
    dropout: float = 0.0               # drop probability before the classifier; the paper's is 0 (None)
    image_dim: int = 32
    p_mode: str = "learned"
    p_value: float = 0.0               # used when p_mode == "fixed" (1.0 = plain cosine similarity)
    seed: int = 0
    epochs: int = PAPER_EPOCHS["table1"]  # the Rohrer nets' budget in the paper
    batch_size: int = 128
    optimizer: str = "adam"
    max_lr: float = 0.01               # peak lr of OneCycle, or the lr of the other schedules
    weight_decay: float = 0.0
    momentum: float = 0.9              # SGD only
    scheduler: str = "onecycle"        # stepped per batch; multistep is stepped per epoch
    milestones: tuple = ()             # epochs at which multistep multiplies the lr by gamma
    gamma: float = 0.1
    label_smoothing: float = 0.0
    dataset: str = "cifar10"
    data_dir: str = ""                 # "" -> $SCS_DATA or ./data (trainables/defaults.py)
    n_train: int = 0                   # 0 -> the whole training set; >0 takes a fixed subset
    n_test: int = 0
    precision: str = "auto"            # auto: bf16 autocast on CUDA, fp32 on CPU
    batch_weight_norms: bool = False   # record every layer's weight norm after every step (Fig 2)
    init_from: str = ""                # checkpoint whose model weights start this run (weight-norms)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = type(f.default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif expected is tuple and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"config key '{f.name}' must be {expected.__name__}, "
                                  f"got {type(value).__name__} {value!r}")
        self._check_choice("arch", ARCHS)
        self._check_choice("layer", LAYERS)
        self._check_choice("activation", ACTIVATIONS)
        self._check_choice("pooling", POOLINGS)
        if not self.normalization:
            object.__setattr__(self, "normalization", _DEFAULT_NORMALIZATION.get(self.arch, "none"))
        self._check_choice("normalization", NORMALIZATIONS)
        self._check_choice("p_mode", P_MODES)
        self._check_choice("dataset", DATASETS)
        self._check_choice("optimizer", OPTIMIZERS)
        self._check_choice("scheduler", SCHEDULERS)
        self._check_choice("precision", PRECISIONS)
        if self.image_dim not in (32, 224):
            raise ConfigError(f"image_dim must be 32 or 224, got {self.image_dim}")
        if self.image_dim == 224 and not self.arch.startswith("resnet"):
            raise ConfigError(f"image_dim 224 is only for the ResNets; {self.arch} flattens a 32x32 map")
        if self.p_mode == "fixed" and self.p_value < 0.1:
            raise ConfigError(f"p_mode 'fixed' needs p_value >= 0.1 (p_min), got {self.p_value}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_lr <= 0:
            raise ConfigError(f"max_lr must be > 0, got {self.max_lr}")

    def _check_choice(self, key: str, allowed: tuple) -> None:
        if getattr(self, key) not in allowed:
            raise ConfigError(f"config key '{key}' is {getattr(self, key)!r}; "
                              f"choose one of: {', '.join(allowed)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    @property
    def effective_p(self) -> float | None:
        """The fixed exponent shared by every SCS/SDP layer, or None when p is learned."""
        return self.p_value if self.p_mode == "fixed" else None

    def config_hash(self) -> str:
        """Short hash of the settings that change the result (not where the data lives)."""
        d = self.to_dict()
        d.pop("data_dir")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
