"""Shared fixtures: small generated data, and a CPU-only, 2-thread torch."""
import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_data():
    from trainables.data import make_synthetic
    return make_synthetic(n_train=512, n_test=256, seed=0)
