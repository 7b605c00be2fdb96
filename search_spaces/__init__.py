"""Each experiment of the paper as plain data (no torch, no ray)."""
from .presets import PRESETS, Preset, PresetError, get_preset, list_presets

__all__ = ["PRESETS", "Preset", "PresetError", "get_preset", "list_presets"]
