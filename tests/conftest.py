"""Shared fixtures: small generated data, and a CPU-only, 2-thread torch."""
import os
from unittest import mock

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_data():
    from trainables.data import make_synthetic
    return make_synthetic(n_train=512, n_test=256, seed=0)


@pytest.fixture(scope="session")
def s3():
    """An S3-compatible server on 127.0.0.1 (tests/support/s3.py) for the session, with the client's
    variables set in this process (and so in the processes tests start)."""
    from support.s3 import CLIENT_ENV, S3Server

    with mock.patch.dict(os.environ, CLIENT_ENV), S3Server() as server:
        yield server
