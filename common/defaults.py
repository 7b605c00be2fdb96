"""Where things live unless told: the CIFAR-10 folder, the results store and Tune's runs folder.

The one place for these defaults: each comes from the command line, else its environment variable,
else a folder under the current directory. Pure Python (every package may import it without torch).
"""
from __future__ import annotations

import os

DATA_ENV, DATA_DEFAULT = "SCS_DATA", "data"              # holds cifar-10-batches-py (or -bin)
STORE_ENV, STORE_DEFAULT = "SCS_STORE", "scs_store"      # the Parquet results store (a path or a URI)
RUNS_ENV, RUNS_DEFAULT = "SCS_RUNS", "scs_runs"          # Tune's experiment folders, one per sweep


def data_dir(given: str = "") -> str:
    return given or os.environ.get(DATA_ENV) or DATA_DEFAULT


def store(given: str = "") -> str:
    return given or os.environ.get(STORE_ENV) or STORE_DEFAULT


def runs_dir(given: str = "") -> str:
    return given or os.environ.get(RUNS_ENV) or RUNS_DEFAULT

CHECKPOINT_EVERY = 10          # epochs between a trial's checkpoints (`run --checkpoint-every`)
CHECKPOINT_FILE = "trainer.pt"  # a trial's checkpoint (Trainer.save) in each of its checkpoint folders
