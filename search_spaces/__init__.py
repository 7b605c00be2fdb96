"""Each experiment of the paper, and its claims, as plain data; sweep files in the same shape.
May import trainables' plain-Python modules (config, errors, vocabulary, defaults) only: no torch, no ray."""
from .experiment import Asha, Experiment, Search, SpecError
from .presets import PRESETS, get_preset, list_presets
from .sweep_file import is_sweep_file, load_sweep_file, sweep_file_text

__all__ = ["Asha", "Experiment", "PRESETS", "Search", "SpecError", "get_preset", "is_sweep_file",
           "list_presets", "load_sweep_file", "sweep_file_text"]
