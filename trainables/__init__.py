"""The SCS training core: layers, models, data, the training loop, evaluation, and `scs-sweep bench`.
May import torch and numpy only (never ray, nor any other package of this project).

Names load lazily (PEP 562), so `common.config`, `errors`, `vocabulary`, `defaults` and `eval_settings`
are plain Python and import without torch: the CLI's read commands (tables, query, status, ...) need them
but not the ~1.6 s torch import.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DataError": "cifar_files", "ImageSet": "data", "load_dataset": "data",
    "MaxAbsPool2d": "layers", "SharpCosSim2d": "layers", "SharpenedSDP2d": "layers",
    "ARCH_SPECS": "models", "build_model": "models", "count_params": "models", "list_archs": "models",
    "EpochResult": "train", "LayerStats": "train", "NonFiniteLossError": "train", "Trainer": "train",
    "pick_device": "devices",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainables' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
