"""The SCS training core: layers, models, data, the training loop and its benchmark. Never imports ray."""
from .config import ConfigError, TrialConfig
from .data import DataError, ImageSet, load_dataset
from .layers import MaxAbsPool2d, SharpCosSim2d, SharpenedSDP2d
from .models import ARCH_SPECS, build_model, count_params, list_archs
from .train import EpochResult, LayerStats, NonFiniteLossError, Trainer, pick_device

__all__ = [
    "ARCH_SPECS", "ConfigError", "DataError", "EpochResult", "ImageSet", "LayerStats", "MaxAbsPool2d",
    "NonFiniteLossError", "SharpCosSim2d", "SharpenedSDP2d", "Trainer", "TrialConfig", "build_model",
    "count_params", "list_archs", "load_dataset", "pick_device",
]
