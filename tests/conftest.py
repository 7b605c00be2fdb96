"""Shared fixtures: small generated data, and a CPU-only torch with 2 threads (1 in each of two workers)."""
import os
from unittest import mock

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# `./dev.sh test` runs the files on 2 pytest-xdist workers: torch's threads in each share the cores among them
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 2) // WORKERS)))
# The files that take minutes (labs of real clusters, kills and resumes), started first so that the other
# worker runs the short files meanwhile rather than the long ones ending last on one worker (dev.sh passes
# --no-loadscope-reorder: xdist would otherwise start the files with the most tests first)
LONG_FILES = ("test_onprem_cluster.py", "test_slurm.py", "test_object_storage.py", "test_trackers.py",
              "test_sweeps.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: each file's order kept


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
