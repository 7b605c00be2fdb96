"""A two-node Ray cluster on this machine: trials on both nodes; a killed node's trial moves on."""
import json
import os
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

EPOCHS = 16


def reports(runs):
    """trial_id -> every report of its result.json, in order."""
    out = {}
    for result in runs.rglob("result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if lines:
            out[lines[0]["trial_id"]] = lines
    return out


def node_ids_by_trial(runs):
    """trial_id -> [(epoch, node_id) of every reported epoch, in order]."""
    return {trial_id: [(r["epoch"], r["node_id"]) for r in lines] for trial_id, lines in reports(runs).items()}


def test_trials_use_both_nodes_and_survive_a_worker_node_kill(tmp_path):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    address_of = {node.node_id: node.node_ip_address for node in cluster.list_all_nodes()}
    runs, store = tmp_path / "runs", tmp_path / "store"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "cosine", "--smoke-test", "--epochs", str(EPOCHS),
           "--checkpoint-every", "2", "--no-prune", "--address", cluster.address,
           "--store", str(store), "--storage", str(runs)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, killed_trial = time.time() + 300, None
        while time.time() < deadline and killed_trial is None:
            for trial_id, epochs in node_ids_by_trial(runs).items():
                on_worker = [e for e, node in epochs if node == worker.node_id]
                if len(on_worker) >= 3 and len(epochs) < EPOCHS and list(runs.rglob("trainer.pt")):
                    killed_trial = trial_id
            time.sleep(0.2)
        assert killed_trial, "no trial ran on the worker node"
        cluster.remove_node(worker)
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.shutdown()
    history = node_ids_by_trial(runs)
    nodes = {node for epochs in history.values() for _, node in epochs}
    assert worker.node_id in nodes and len(nodes) == 2  # both nodes ran trials
    moved = history[killed_trial]
    first_after = next(i for i, (_, node) in enumerate(moved) if node != worker.node_id and i > 0)
    resumed_at = moved[first_after][0]
    assert resumed_at > 1 and (resumed_at - 1) % 2 == 0  # continued after its last checkpoint (every 2)
    rows = ds.dataset(str(store / "epochs"), format="parquet", partitioning="hive").to_table().to_pylist()
    mine = sorted(r["epoch"] for r in rows if r["trial_id"] == killed_trial)
    assert mine == list(range(1, EPOCHS + 1))  # no epoch lost or repeated in the store
    # each report names its node by the address Ray lists for it, and the trial's row keeps its last node's
    assert all(r["node_ip"] == address_of[r["node_id"]] for lines in reports(runs).values() for r in lines)
    trials = ds.dataset(str(store / "trials"), format="parquet", partitioning="hive").to_table().to_pylist()
    last = {trial_id: lines[-1] for trial_id, lines in reports(runs).items()}
    assert all(t["node_ip"] == address_of[last[t["trial_id"]]["node_id"]] for t in trials)
