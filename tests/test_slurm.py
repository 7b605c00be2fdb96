"""`scs-sweep slurm` on a real SLURM: munge, a slurmctld and two slurmd on loopback (tests/support/slurm_lab.py),
in the lab's own PID, mount and network namespaces. Needs root, unshare, and Debian's slurm-wlm and munge
(installed with apt-get when missing); CI has all of them. Locally SCS_SKIP_SLURM=1 skips it (about 5 minutes);
under CI=true that flag is refused, not obeyed."""
import collections
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "tests" / "support" / "slurm_lab.py"
CI = os.environ.get("CI", "").lower() in ("1", "true")

if os.environ.get("SCS_SKIP_SLURM") == "1" and not CI:
    pytest.skip("SCS_SKIP_SLURM=1: the SLURM lab is skipped on this machine", allow_module_level=True)


def _lab_base() -> Path:
    """Where the lab's folders go: a place `scs-sweep slurm` takes for the cluster's shared filesystem (it
    refuses /tmp and the like as a node's own disk): root's cache or /var/lib, the checkout only as a last
    resort. Not first under the checkout: the on-prem lab runs `ray up` from it at the same time, and `ray up`
    reads every file under its file_mounts' folders to hash them, .gitignore'd ones too
    (ray.autoscaler._private.util.hash_runtime_conf), and fails on slurmd's sockets (CI at the last stop:
    "OSError: [Errno 6] No such device or address: './.slurm-lab/.../spool/n1/n1_1.0'")."""
    from orchestrator.slurm import node_local

    places = [Path.home() / ".cache" / "scs-sweep-tests" / "slurm-lab", Path("/var/lib/scs-sweep-tests/slurm-lab"),
              ROOT / ".slurm-lab"]
    usable = [place for place in places if not node_local(str(place))]
    assert usable, f"no place for the SLURM lab outside node-local folders: {[str(p) for p in places]}"
    return usable[0]


@pytest.fixture
def work():
    """The lab's folder (see _lab_base)."""
    assert os.geteuid() == 0, "the SLURM lab needs root (namespaces, munge, slurmd)"
    folder = _lab_base() / uuid.uuid4().hex[:8]
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _lab(work: Path, scenario: str, timeout: int) -> dict:
    done = subprocess.run([sys.executable, str(LAB), str(work), scenario], capture_output=True, text=True,
                          timeout=timeout)
    report_file = work / "lab.json"
    assert report_file.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    print(json.dumps({k: v for k, v in report.items() if k not in ("log", "logs", "epochs", "trials")}, indent=1))
    assert "error" not in report, report["error"]
    return report


def test_what_slurm_would_refuse_or_the_nodes_could_not_use_is_one_line_and_nothing_is_submitted(work):
    report = _lab(work, "bad-input", 300)
    expected = {
        "no sbatch": "no `sbatch` on PATH: run this on a SLURM login node",
        "partition": "partition 'gpu-a100' does not exist; this cluster has: lab (`sinfo`)",
        "gpus": "--gpus-per-node 4, but the nodes of the default partition have at most 2 GPU(s)",
        "time": "--time 5 is not longer than the time-limit warning's lead (300 s)",
        "node-local": "the nodes cannot see /tmp/runs: /tmp/runs is under /tmp, a node's own disk",
    }
    for case, says in expected.items():
        result = report["bad"][case]
        assert result["rc"] == 2 and len(result["lines"]) == 1, (case, result)
        assert result["lines"][0].startswith("scs-sweep slurm: error: ") and says in result["lines"][0], (case, result)
    dry = report["dry_run"]
    assert dry["rc"] == 0, dry["out"]
    script = dry["out"]
    for line in ("#!/bin/bash", "#SBATCH --job-name=scs-dry", "#SBATCH --nodes=2", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR2@", "#SBATCH --gres=gpu:2", "#SBATCH --time=30", "#SBATCH --partition=lab",
                 "#SBATCH --mail-type=END", "module load cuda/12.6", "exec scs-sweep slurm-job "):
        assert line in script, (line, script)
    assert script.index("module load cuda/12.6") < script.index("source ")  # --setup runs before Python
    assert dry["left"] == []  # nothing written beside the runs
    assert report["queue_after_bad"] == ""  # nothing was submitted


def test_the_allocation_is_one_ray_cluster_and_two_jobs_share_its_nodes(work):
    """A two-node CPU sweep and, at the same time on the same nodes, a job with two GPUs per node (GRES on
    dummy devices): separate ports and temp folders, Ray's GPUs the GRES, each trial given one of them; a GPU
    job torch cannot serve stops at its start in one line."""
    report = _lab(work, "two-jobs", 900)
    states = {name: state["JobState"] for name, state in report["states"].items()}
    assert states == {"smoke": "COMPLETED", "gpus": "FAILED", "gpus-checked": "FAILED"}, states
    assert report["running_together"]  # the CPU sweep and the GPU job ran on n1 and n2 at the same time
    smoke = report["trials"]["smoke"]
    assert len(smoke) == 8 and {t["status"] for t in smoke} == {"done"}
    assert {t["node_ip"] for t in smoke} == {"127.0.0.1", "127.0.0.2"}  # trials on both nodes
    logs = report["logs"]
    addresses = {name: log.split("slurm job: Ray on 2 node(s) at ", 1)[1].split(":", 2)[:2]
                 for name, log in logs.items() if "slurm job: Ray on" in log}
    assert addresses["smoke"][1] != addresses["gpus"][1]  # each job its own ports
    assert "4 GPU(s) in all" in logs["gpus"] and "0 GPU(s) in all" in logs["smoke"]
    gpus = report["trials"]["gpus"]
    assert len(gpus) == 8 and all(t["status"] == "failed" for t in gpus)
    for t in gpus:  # the GPU Ray assigned, as CUDA_VISIBLE_DEVICES shows it, then the device check
        assert t["error"].startswith("DeviceError: Ray gave this trial GPU ") and "(CUDA_VISIBLE_DEVICES=" in t["error"]
        assert "but torch cannot use it" in t["error"]
    assert "scs-sweep slurm-job: error: SLURM gave this job 2 GPU(s) per node, but torch here sees 0" in \
        logs["gpus-checked"]
    assert "slurm job: Ray on" not in logs["gpus-checked"]  # stopped before any Ray started
    assert "smoke: SLURM job 1: COMPLETED" in report["status"]


def test_a_sweep_survives_a_signal_and_its_time_limit_and_finishes_every_trial_once(work):
    """Stopped by hand (scancel --signal=USR2 --batch), then by its time limit for real: each time the trials
    save, Tune saves, the job requeues itself and resumes; at the end every trial is done once, no (trial,
    epoch) twice or missing, and scontrol shows the two restarts."""
    report = _lab(work, "requeue", 1500)
    assert int(report["after_signal"]["Restarts"]) == 1 and int(report["after_time_limit"]["Restarts"]) == 2
    final = report["final"]
    assert final["JobState"] == "COMPLETED" and final["Restarts"] == "2", final
    log = report["log"]
    assert log.count("stopped after") == 2 and log.count("has started before: resuming it") == 2
    assert "requeueing job" in log and "finished (exit 0)" in log
    trials = report["trials"]
    assert len(trials) == 8 and {t["status"] for t in trials} == {"done"}
    epochs = collections.Counter((e["trial_id"], e["epoch"]) for e in report["epochs"])
    assert set(epochs.values()) == {1}  # no epoch twice
    assert set(epochs) == {(t["trial_id"], e) for t in trials for e in range(1, t["epochs"] + 1)}  # none missing
    assert report["resumed_from"]  # interrupted trials resumed from a checkpoint, not from scratch
    assert all(epoch > 0 for epochs_ in report["resumed_from"].values() for epoch in epochs_)
    assert {e["node_id"] for e in report["epochs"]} and "restarts 2" in report["status"]
