"""`ray up cluster-onprem.yaml` for real: two SSH hosts on this machine, a sweep as a Ray Job, a lost worker.

tests/support/onprem_lab.py does the work inside its own PID, mount and network namespaces (head 127.0.0.1 and
worker 127.0.0.2, each an sshd with its own PID namespace), so `ray stop` / `ray down` reach only what it
started. It needs root, unshare and apt (sshd and rsync are installed when missing); CI has all three.
Locally, SCS_SKIP_ONPREM=1 skips it (about 4 minutes); under CI=true that flag is refused, not obeyed.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from support.data import write_cifar_bin

ROOT = Path(__file__).resolve().parent.parent
HEAD, WORKER = "127.0.0.1", "127.0.0.2"
EPOCHS, CHECKPOINT_EVERY = 12, 2


def resumable_from(last_on_worker: int) -> set[int]:
    """The epochs whose checkpoint a trial whose last report on the killed node was `last_on_worker` may
    resume from: its newest checkpoint, or the one before when that newest came with the last report.
    Tune registers a function trainable's checkpoint in a second call to the actor (`save`, after the
    result is logged; ray.tune.execution.tune_controller._checkpoint_trial_if_needed), so a node lost
    between the two loses that checkpoint. The next epoch's report only comes after the save, so the
    window is only there when the last report was itself a checkpoint's."""
    newest = last_on_worker - last_on_worker % CHECKPOINT_EVERY
    return {newest, newest - CHECKPOINT_EVERY} if newest == last_on_worker else {newest}
CI = os.environ.get("CI", "").lower() in ("1", "true")

if os.environ.get("SCS_SKIP_ONPREM") == "1" and not CI:
    pytest.skip("SCS_SKIP_ONPREM=1: the on-prem `ray up` test is skipped on this machine",
                allow_module_level=True)


def _table(store: Path, name: str) -> list[dict]:
    return ds.dataset(str(store / name), format="parquet", partitioning="hive").to_table().to_pylist()


@pytest.fixture(scope="module")
def lab_place(tmp_path_factory):
    """One folder where the module's labs run in turn. The nodes' .venv is written into it by the first lab's
    `./dev.sh setup` (about a minute) and the next lab's finds it installed (dev.sh's stamp): a venv names
    its own path inside, so it can only be shared where every lab has the same folder."""
    base = tmp_path_factory.mktemp("onprem")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def work(lab_place, tmp_path):
    """The lab's folder, with the nodes' .venv of the lab before it in place; when the test ends, everything
    else of it goes to the test's own folder (its logs, runs and store, for a failure's reader)."""
    assert os.geteuid() == 0, "the on-prem test needs root (namespaces, sshd on port 22, apt-get)"
    work, kept = lab_place / "lab", lab_place / "venv"
    if kept.exists():
        (work / "home" / "scs-sweep").mkdir(parents=True)
        kept.rename(work / "home" / "scs-sweep" / ".venv")
    yield work
    venv = work / "home" / "scs-sweep" / ".venv"
    if venv.exists():
        venv.rename(kept)
    for host in (HEAD, WORKER):  # the S3 lab's hosts each have a copy of the home, its .venv hard-linked
        shutil.rmtree(work / "hosts" / host / "home" / "scs-sweep" / ".venv", ignore_errors=True)
    if work.exists():
        work.rename(tmp_path / "lab")


def test_ray_up_a_two_host_lab_run_a_job_lose_the_worker_and_ray_down(work):
    assert not os.environ.get("SCS_SKIP_ONPREM") == "1" or not CI, "SCS_SKIP_ONPREM=1 is not obeyed in CI"
    write_cifar_bin(work / "shared" / "data", n=130)  # every node sees it as /mnt/scs/data
    cmd = [sys.executable, str(ROOT / "tests" / "support" / "onprem_lab.py"), str(work), "--timeout", "600",
           "--kill-worker-after", "3", "--name", "onprem-smoke", "--", "run", "table1", "--smoke-test",
           "--epochs", str(EPOCHS), "--checkpoint-every", str(CHECKPOINT_EVERY), "--no-prune",
           "--data", "/mnt/scs/data"]
    lab = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    report_file = work / "lab.json"
    assert report_file.exists(), lab.stdout[-3000:] + lab.stderr[-3000:]
    report = json.loads(report_file.read_text())
    print(json.dumps({k: v for k, v in report.items() if k not in ("tables", "report")}, indent=1))
    assert lab.returncode == 0 and "error" not in report, (report.get("error"), lab.stderr[-3000:])

    # `ray up` brought up both hosts, and the Job ran the sweep to the end
    assert report["steps"]["up"]["rc"] == 0 and report["ray_up_s"] > 0
    assert report["job"]["status"] == "SUCCEEDED", report["job"]

    # trials ran on both nodes, and the rows say where
    store = work / "shared" / "store"
    trials = _table(store, "trials")
    assert len(trials) == 8 and {t["status"] for t in trials} == {"done"}
    histories = report["trial_histories"]  # trial_id -> [(epoch, node_ip, node_id)]
    assert {ip for history in histories.values() for _, ip, _ in history} == {HEAD, WORKER}
    assert {t["node_ip"] for t in trials} <= {HEAD, WORKER}

    # the worker's Ray was killed mid-sweep; its trials went on (on another node, or on the worker once
    # the autoscaler restarted it: a new node id) from their last checkpoint
    killed = report["killed_worker"]["trials"]
    assert killed, "no trial was running on the worker when its Ray was killed"
    epochs = _table(store, "epochs")
    resumed = {}
    for trial_id in killed:
        history = histories[trial_id]
        assert history[-1][0] == EPOCHS
        moved = [i for i in range(1, len(history)) if history[i][2] != history[i - 1][2]]
        assert moved and history[moved[0] - 1][1] == WORKER, f"{trial_id} never left the killed node: {history}"
        # its last epoch on the worker (reports in flight when Ray was killed arrive after the kill)
        last_on_worker, resumed[trial_id] = history[moved[0] - 1][0], history[moved[0]][0]
        # right after its last checkpoint on the worker (from scratch, epoch 1, where it had none yet)
        assert resumed[trial_id] - 1 in resumable_from(last_on_worker), (trial_id, history)
        mine = sorted(r["epoch"] for r in epochs if r["trial_id"] == trial_id)
        assert mine == list(range(1, EPOCHS + 1))  # the store holds every epoch once
    assert max(resumed.values()) > 1  # the trial the kill waited for had a checkpoint to go on from

    # the commit the Job was submitted from (the working dir `ray job submit` uploaded), not "unknown"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    (version,) = {t["code_version"] for t in trials}
    assert version.split("+")[0] == commit, version  # +dirty: the checkout had uncommitted changes

    # the README's read commands on the head, and the report
    assert "onprem-smoke: 8 trials: 8 done" in report["status"]
    assert "job onprem-smoke: SUCCEEDED" in report["status_here"]  # from this machine, through the tunnel
    assert (work / "shared" / "reports" / "onprem-smoke" / "report.html").exists()

    # `ray down` left no Ray process, and stopping the hosts no sshd
    assert report["steps"]["down"]["rc"] == 0
    assert report["ray_processes_after_down"] == []
    assert report["processes_after_hosts_stopped"] == []
    leftovers = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True).stdout
    assert leftovers == "", leftovers


def test_a_lab_without_a_shared_disk_keeps_runs_checkpoints_store_and_data_on_its_s3_server(work, tmp_path):
    """The same lab with no shared folder: an S3 server on 127.0.0.3 (metadata.scs_storage of
    cluster-onprem.yaml filled in), each host with its own home, /mnt/scs and /tmp; the worker's Ray killed
    mid-sweep, its trials going on from checkpoints read back from the bucket."""
    from support.onprem_lab import BUCKET, s3_uri

    write_cifar_bin(tmp_path / "cifar", n=130)  # put into the bucket from "this machine"; no host has it
    name = "s3-smoke"
    cmd = [sys.executable, str(ROOT / "tests" / "support" / "onprem_lab.py"), str(work), "--s3", "--timeout", "600",
           "--kill-worker-after", "3", "--name", name, "--data", str(tmp_path / "cifar"), "--", "run", "table1",
           "--smoke-test", "--epochs", str(EPOCHS), "--checkpoint-every", str(CHECKPOINT_EVERY), "--no-prune",
           "--data", s3_uri("data")]
    lab = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    report_file = work / "lab.json"
    assert report_file.exists(), lab.stdout[-3000:] + lab.stderr[-3000:]
    report = json.loads(report_file.read_text())
    print(json.dumps({k: v for k, v in report.items() if k not in ("tables", "report", "bucket")}, indent=1))
    print(json.dumps(report.get("bucket", {}).get("files"), indent=1))
    assert lab.returncode == 0 and "error" not in report, (report.get("error"), lab.stderr[-3000:])
    assert report["steps"]["up"]["rc"] == 0 and report["job"]["status"] == "SUCCEEDED", report["job"]

    # no host had a shared folder: each /mnt/scs stayed empty, and the sweep's files are in the bucket
    for host in (HEAD, WORKER):
        assert list((work / "hosts" / host / "mnt-scs").iterdir()) == []
    bucket = report["bucket"]
    files = bucket["files"]
    assert files.get("data: MD5SUMS") == 1 and files.get("runs: sweep.json") == 1
    assert files.get("runs: checkpoints", 0) >= 8 and files.get("store: compacted") == 5
    assert not any(kind.endswith("trial files") for kind in files), files  # compacted after the part

    # every trial done, on both hosts, each epoch row once
    trials = bucket["trials"]
    assert len(trials) == 8 and {t["status"] for t in trials} == {"done"}
    histories = report["trial_histories"]
    assert {ip for history in histories.values() for _, ip, _ in history} == {HEAD, WORKER}
    keys = [tuple(k) for k in bucket["epoch_keys"]]
    assert len(keys) == len(set(keys)) == 8 * EPOCHS

    # the worker's trials went on elsewhere (or on the restarted worker) from their last checkpoint
    killed = report["killed_worker"]["trials"]
    assert killed, "no trial was running on the worker when its Ray was killed"
    resumed = {}
    for trial_id in killed:
        history = histories[trial_id]
        moved = [i for i in range(1, len(history)) if history[i][2] != history[i - 1][2]]
        assert moved and history[moved[0] - 1][1] == WORKER, f"{trial_id} never left the killed node: {history}"
        last_on_worker, resumed[trial_id] = history[moved[0] - 1][0], history[moved[0]][0]
        assert resumed[trial_id] - 1 in resumable_from(last_on_worker), (trial_id, history)
    assert max(resumed.values()) > 1  # read back from the bucket: no disk of the worker's was reachable

    # the read commands on the head, and from this machine, from the bucket; the report on the head's disk
    assert f"{name}: 8 trials: 8 done" in report["status"]
    assert f"{name}: 8 trials: 8 done" in report["status_here"]
    assert (work / "hosts" / HEAD / "home" / "reports" / name / "report.html").exists()
    assert BUCKET in json.dumps(report["job"])

    assert report["steps"]["down"]["rc"] == 0
    assert report["ray_processes_after_down"] == []
    assert report["processes_after_hosts_stopped"] == []
    leftovers = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True).stdout
    assert leftovers == "", leftovers
