"""A real SLURM on this machine for one scenario of tests/test_slurm.py: munge, one slurmctld and two slurmd
("n1" on 127.0.0.1, "n2" on 127.0.0.2, each with 2 CPUs and two dummy GPUs as GRES), inside this process's
own PID, mount and network namespaces, so nothing listens beyond loopback and every daemon, job and Ray
process ends with it. `scs-sweep slurm` is run as a user would on a login node (this machine).

    python tests/support/slurm_lab.py WORK SCENARIO      # as root; writes WORK/lab.json

Scenarios: bad-input (every refusal one line, nothing submitted), two-jobs (a two-node CPU sweep and a GPU job
on the same nodes at once), requeue (the time limit, then a manual USR2: saved, requeued, resumed).
Needs root, util-linux's unshare and Debian's slurm-wlm and munge (installed with apt-get when missing).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODES = {"n1": "127.0.0.1", "n2": "127.0.0.2"}
CTLD_PORT, NODE_PORTS = 16817, {"n1": 16818, "n2": 16819}
PACKAGES = {"sbatch": "slurm-wlm", "munged": "munge"}


class LabError(Exception):
    pass


def ensure_packages() -> None:
    missing = sorted({pkg for tool, pkg in PACKAGES.items() if not shutil.which(tool)
                      and not Path(f"/usr/sbin/{tool}").exists()})
    if missing:
        sys.path.insert(0, str(ROOT / "tests"))
        from support.packages import apt_install

        apt_install(missing)


def slurm_conf(work: Path) -> str:
    host = socket.gethostname().split(".")[0]
    nodes = "\n".join(f"NodeName={name} NodeHostname={host} NodeAddr={addr} Port={NODE_PORTS[name]} CPUs=2 "
                      f"RealMemory=1000 Gres=gpu:2 State=UNKNOWN" for name, addr in NODES.items())
    return f"""ClusterName=scslab
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={CTLD_PORT}
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool/%n
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd-%n.pid
SlurmctldLogFile={work}/logs/slurmctld.log
SlurmdLogFile={work}/logs/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
MinJobAge=600
KillWait=5
GresTypes=gpu
{nodes}
PartitionName=lab Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""


class Lab:
    def __init__(self, work: Path):
        self.work = work
        self.logs = work / "logs"
        self.env = dict(os.environ, SLURM_CONF=str(work / "slurm.conf"), RAY_USAGE_STATS_ENABLED="0",
                        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.env.pop("RAY_ADDRESS", None)
        self.daemons: list[subprocess.Popen] = []
        self.report: dict = {"steps": {}}

    # -- the cluster ------------------------------------------------------------------------------
    def start(self) -> None:
        start = time.time()
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        # SLURM resolves its own addresses with AI_ADDRCONFIG, which finds nothing where loopback is the only
        # interface: a veth pair with both ends in this namespace (nothing leaves it) and a documentation
        # address (TEST-NET-1) on one end
        for cmd in (["ip", "link", "add", "scs0", "type", "veth", "peer", "name", "scs1"],
                    ["ip", "addr", "add", "192.0.2.1/32", "dev", "scs0"], ["ip", "link", "set", "scs0", "up"],
                    ["ip", "link", "set", "scs1", "up"]):
            subprocess.run(cmd, check=True)
        for sub in ("state", "spool/n1", "spool/n2", "logs", "dev"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        for i in range(2):  # the GRES' "devices": SLURM checks they exist and sets CUDA_VISIBLE_DEVICES from them
            (self.work / "dev" / f"nvidia{i}").touch()
        (self.work / "slurm.conf").write_text(slurm_conf(self.work))
        (self.work / "gres.conf").write_text(f"NodeName=n[1-2] Name=gpu File={self.work}/dev/nvidia[0-1]\n")
        # munged's socket folder, this namespace's own (a tmpfs over /run/munge)
        Path("/run/munge").mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/munge"], check=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True, timeout=30)
        conf = str(self.work / "slurm.conf")
        self.daemons.append(subprocess.Popen(["slurmctld", "-D", "-f", conf], env=self.env,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        self._wait_port("127.0.0.1", CTLD_PORT, 30)
        for name in NODES:
            self.daemons.append(subprocess.Popen(["slurmd", "-D", "-N", name, "-f", conf], env=self.env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        deadline = time.time() + 60
        while time.time() < deadline:
            states = self.sh("sinfo", ["sinfo", "-h", "-N", "-o", "%N %T"], 30, check=False)
            if states.count("idle") == len(NODES):
                break
            time.sleep(0.5)
        else:
            raise LabError(f"the nodes did not come up: {states!r} (see {self.logs})")
        self.report["steps"]["slurm up"] = {"seconds": round(time.time() - start, 1)}

    @staticmethod
    def _wait_port(host: str, port: int, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise LabError(f"nothing answers on {host}:{port} after {timeout_s:.0f} s")

    def sh(self, step: str, cmd: list[str], timeout_s: float, check: bool = True, env: dict | None = None) -> str:
        done = subprocess.run(cmd, cwd=self.work, env=env or self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
        (self.logs / f"{step}.log").write_text(f"$ {' '.join(cmd)}\n{done.stdout}")
        if check and done.returncode:
            raise LabError(f"{step}: `{' '.join(cmd)}` exited {done.returncode}: {done.stdout[-1500:]}")
        return done.stdout

    def scs(self, step: str, args: list[str], check: bool = True, env: dict | None = None) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=self.work, env=env or self.env,
                              capture_output=True, text=True, timeout=300)
        (self.logs / f"{step}.log").write_text(f"$ scs-sweep {' '.join(args)}\n{done.stdout}{done.stderr}")
        if check and done.returncode:
            raise LabError(f"{step}: scs-sweep {' '.join(args)} exited {done.returncode}: {done.stderr[-1500:]}")
        return done.returncode, done.stdout + done.stderr

    def job(self, job_id: str) -> dict:
        text = self.sh(f"job-{job_id}", ["scontrol", "show", "job", "-o", job_id], 30, check=False)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait_job(self, job_id: str, timeout_s: float, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")) -> dict:
        """Until the job is in one of `until`; a requeued job's hold (BeginTime) is lifted at once."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            job = self.job(job_id)
            if job.get("JobState") in until:
                return job
            self._release(job)
            time.sleep(1)
        raise LabError(f"job {job_id} is {self.job(job_id).get('JobState')} after {timeout_s:.0f} s")

    def _release(self, job: dict) -> None:
        """SLURM holds a requeued job back for two minutes (its begin time): start it now."""
        if job.get("JobState") == "PENDING" and job.get("Reason") == "BeginTime":
            self.sh("release", ["scontrol", "update", f"JobId={job['JobId']}", "StartTime=now"], 30, check=False)

    def wait_restarts(self, job_id: str, restarts: int, timeout_s: float) -> dict:
        """Until SLURM has requeued the job `restarts` times (scontrol's Restarts), holds lifted."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            job = self.job(job_id)
            if int(job.get("Restarts") or 0) >= restarts:
                return job
            if job.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"):
                raise LabError(f"job {job_id} ended {job.get('JobState')} before its restart {restarts}")
            self._release(job)
            time.sleep(1)
        raise LabError(f"job {job_id} was not requeued {restarts} time(s) in {timeout_s:.0f} s")

    def stop(self) -> None:
        for folder in ([] if os.environ.get("SCS_LAB_KEEP") else Path("/tmp").glob("scs-ray-*")):  # the jobs' Ray temp folders
            shutil.rmtree(folder, ignore_errors=True)
        for proc in reversed(self.daemons):
            proc.terminate()
        for proc in self.daemons:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _submitted(out: str) -> str:
    match = re.search(r"submitted SLURM job (\d+)", out)
    if not match:
        raise LabError(f"no job id in: {out[-800:]}")
    return match.group(1)


def _store_rows(store: Path, table: str, experiment: str) -> list[dict]:
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(store / table), format="parquet", partitioning="hive")
    return dataset.to_table(filter=ds.field("experiment") == experiment).to_pylist()


# -- scenarios ----------------------------------------------------------------------------------------
def bad_input(lab: Lab) -> None:
    runs, store = str(lab.work / "runs"), str(lab.work / "store")
    common = ["table1", "--smoke-test", "--storage", runs, "--store", store]
    cases = {
        "no sbatch": (["slurm", *common], dict(lab.env, PATH="/nonexistent")),
        "partition": (["slurm", *common, "--partition", "gpu-a100"], None),
        "gpus": (["slurm", *common, "--gpus-per-node", "4"], None),
        "time": (["slurm", *common, "--time", "5", "--signal-lead", "300"], None),
        "node-local": (["slurm", "table1", "--smoke-test", "--storage", "/tmp/runs", "--store", store], None),
    }
    lab.report["bad"] = {}
    for name, (args, env) in cases.items():
        rc, out = lab.scs(f"bad-{name}", args, check=False, env=env)
        lab.report["bad"][name] = {"rc": rc, "lines": out.strip().splitlines()}
    # --dry-run: the script, checked against this SLURM, printed; nothing written or submitted
    rc, out = lab.scs("dry-run", ["slurm", *common, "--name", "dry", "--nodes", "2", "--gpus-per-node", "2",
                                  "--time", "30", "--partition", "lab", "--setup", "module load cuda/12.6",
                                  "--sbatch=--mail-type=END", "--dry-run"], check=False)
    lab.report["dry_run"] = {"rc": rc, "out": out, "left": sorted(p.name for p in (lab.work / "runs").rglob("*"))
                             if (lab.work / "runs").exists() else []}
    lab.report["queue_after_bad"] = lab.sh("squeue", ["squeue", "-h"], 30).strip()


def two_jobs(lab: Lab) -> None:
    """A CPU sweep on both nodes, and at the same time a GPU job on the same nodes: Ray's GPUs are the GRES."""
    runs, store = str(lab.work / "runs"), str(lab.work / "store")
    where = ["--storage", runs, "--store", store, "--nodes", "2", "--cpus-per-node", "1"]
    _, out = lab.scs("submit-smoke", ["slurm", "table1", "--smoke-test", "--no-evaluate", "--name", "smoke", *where])
    smoke = _submitted(out)
    gpu_args = ["slurm", "table1", "--dataset", "synthetic", "--epochs", "1", "--train-images", "64",
                "--test-images", "32", "--no-evaluate", "--no-prune", "--gpus-per-trial", "1", "--gpus-per-node", "2"]
    _, out = lab.scs("submit-gpu", [*gpu_args, "--no-gpu-check", "--name", "gpus", *where])
    gpus = _submitted(out)
    _, out = lab.scs("submit-gpu-checked", [*gpu_args, "--name", "gpus-checked", *where])
    checked = _submitted(out)
    lab.report["jobs"] = {"smoke": smoke, "gpus": gpus, "gpus-checked": checked}
    running_together = False
    deadline = time.time() + 600
    while time.time() < deadline:
        states = {name: lab.job(job).get("JobState") for name, job in lab.report["jobs"].items()}
        running_together |= states["smoke"] == "RUNNING" and states["gpus"] == "RUNNING"
        if all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states.values()):
            break
        time.sleep(1)
    lab.report["states"] = {name: lab.job(job) for name, job in lab.report["jobs"].items()}
    lab.report["running_together"] = running_together
    lab.report["logs"] = {name: (lab.work / "runs" / name / f"slurm-{job}.log").read_text(errors="replace")
                          if (lab.work / "runs" / name / f"slurm-{job}.log").exists() else ""
                          for name, job in lab.report["jobs"].items()}
    lab.report["trials"] = {name: _store_rows(lab.work / "store", "trials", name) for name in ("smoke", "gpus")
                            if (lab.work / "store" / "trials").exists()}
    _, lab.report["status"] = lab.scs("status", ["status", "smoke", "--storage", runs], check=False)


def requeue(lab: Lab) -> None:
    """A sweep stopped three ways: by hand (`scancel --signal=USR2 --batch`, as a warning may come at any time),
    then by its time limit for real (SLURM's own --signal, the limit lowered for that run), then finished
    (the limit raised again): saved, requeued and resumed each time, every trial once."""
    runs, store = str(lab.work / "runs"), str(lab.work / "store")
    args = ["slurm", "table1", "--dataset", "synthetic", "--epochs", "16", "--train-images", "768", "--test-images",
            "64", "--checkpoint-every", "8", "--no-prune", "--no-evaluate", "--name", "long", "--storage", runs,
            "--store", store, "--nodes", "2", "--cpus-per-node", "2", "--time", "10", "--signal-lead", "30"]
    _, out = lab.scs("submit-long", args)
    job = _submitted(out)
    log = lab.work / "runs" / "long" / f"slurm-{job}.log"
    lab.report["job"] = job

    def trained(run: int) -> bool:  # the run-th start of the job has reported epochs
        text = log.read_text(errors="replace") if log.exists() else ""
        this = text.split(f"(restart {run})", 1)[1] if f"(restart {run})" in text else ""
        return bool(re.search(r"\[long/table1\] .* ([1-9]\d*)/\d+ epochs", this))

    def wait_for(what, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while not what():
            if time.time() > deadline:
                raise LabError(f"waited {timeout_s:.0f} s in vain; the job's log: {log}")
            time.sleep(1)

    # run 1: the warning by hand once it trains
    wait_for(lambda: trained(0), 300)
    lab.sh("signal", ["scancel", "--signal=USR2", "--batch", job], 60)
    lab.report["after_signal"] = lab.wait_restarts(job, 1, 300)
    # run 2: a 1-minute limit: SLURM's own warning, 30 s before it (or up to a minute earlier)
    lab.sh("limit", ["scontrol", "update", f"JobId={job}", "TimeLimit=1"], 30)
    lab.report["after_time_limit"] = lab.wait_restarts(job, 2, 400)
    # run 3: time enough to finish
    lab.sh("unlimit", ["scontrol", "update", f"JobId={job}", "TimeLimit=10"], 30)
    lab.report["final"] = lab.wait_job(job, 600)
    lab.report["log"] = log.read_text(errors="replace")
    lab.report["trials"] = _store_rows(lab.work / "store", "trials", "long")
    lab.report["epochs"] = [{k: r[k] for k in ("trial_id", "epoch", "node_id", "ended_at")}
                            for r in _store_rows(lab.work / "store", "epochs", "long")]
    resumed = {}
    for result in (lab.work / "runs" / "long").rglob("result.json"):
        for line in result.read_text().splitlines():
            line = json.loads(line) if line.strip() else {}
            if line.get("iterations_since_restore") == 1 and line.get("training_iteration", 1) > 1:
                resumed.setdefault(line.get("trial_id"), []).append(line["training_iteration"] - 1)
    lab.report["resumed_from"] = resumed
    _, lab.report["status"] = lab.scs("status", ["status", "long", "--storage", runs], check=False)


SCENARIOS = {"bad-input": bad_input, "two-jobs": two_jobs, "requeue": requeue}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    args = p.parse_args(argv)
    work = args.work.resolve()
    if os.environ.get("SCS_SLURM_LAB_INSIDE") != "1":
        if os.geteuid() != 0:
            raise SystemExit("slurm_lab: needs root (namespaces, munge, slurmd)")
        ensure_packages()
        work.mkdir(parents=True, exist_ok=True)
        cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--net", "--mount", "--kill-child", sys.executable,
               __file__, str(work), args.scenario]
        return subprocess.run(cmd, env=dict(os.environ, SCS_SLURM_LAB_INSIDE="1"), cwd=ROOT).returncode
    lab = Lab(work)
    start = time.time()
    try:
        lab.start()
        SCENARIOS[args.scenario](lab)
    except LabError as exc:
        lab.report["error"] = str(exc)
    finally:
        lab.report["wall_s"] = round(time.time() - start, 1)
        lab.stop()
        (work / "lab.json").write_text(json.dumps(lab.report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
