"""Inside a SLURM allocation: one Ray cluster on its nodes, the sweep's driver on the first, and a time limit
or preemption that loses nothing.

`scs-sweep slurm` (slurm.py) writes a batch script whose last line is `scs-sweep slurm-job STORAGE NAME`; SLURM
runs it on the allocation's first node. From the job's own variables it starts a Ray head there and a Ray
worker on every other node, each with `srun` (one step per node, so SLURM tracks and ends every Ray process
with the job: nothing here runs `ray stop`, which would reach other jobs' Ray on a shared node), and hardened
for shared nodes:

- every address explicit: each node's own SLURM address (`scontrol show node`: NodeAddr) as its
  `--node-ip-address`, the head's as the address workers and the driver join (never `auto`);
- every Ray port derived from the job id (a block of PORT_BLOCK per job) and checked free before use, so two
  jobs on one node do not collide; a short node-local temp folder per job (AF_UNIX paths stay under 107 bytes);
- `--num-cpus` / `--num-gpus` from what SLURM gave the job on each node (the GPUs are the GRES, with
  CUDA_VISIBLE_DEVICES as SLURM set it); a per-job Ray auth token unless one is set;
- workers start once the head answers; a node whose Ray does not start fails the job at once with its log.

Then the sweep: `run` (or `settle`) as `scs-sweep slurm` was asked, or `resume` when the sweep's folder already
holds its plan (a requeued job: SLURM_RESTART_COUNT > 0). On the time-limit warning (SIGUSR2, `--signal`'s
lead before the limit) or SIGTERM (preemption) the driver stops gracefully (stopping.py: trials save at
their next epoch's end, Tune saves its state) and the job requeues itself (`scontrol requeue`), at most
`--max-requeues` times, unless the sweep is done.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.errors import ScsSweepError, first_line

from . import stopping
from .plan import RunOptions
from .records import sweep_status
from .settle import SettleOptions, settle
from .startup import SweepRequest
from .storage import Storage, SweepFolder
from .sweep_cmd import ResumeRequest, resume, run

__all__ = ["JOB_FILE", "JOBS_FILE", "INTERRUPTED", "Allocation", "SlurmJobError", "ports_of", "job", "node"]

JOB_FILE = "slurm-job.json"    # in the sweep's folder: what the job runs (written by `scs-sweep slurm`)
JOBS_FILE = "slurm-jobs.json"  # in the sweep's folder: every SLURM job id that ran it, for `status`
# Ray's ports: 20000-59999 in blocks of 400 per job (job id modulo 100), and within a job's block 100 per node
# (node index modulo 4: nodes on different machines may share numbers; several "nodes" of one machine may not):
# 8 named ports, then 92 for worker processes (one each: a node runs at most about 90 trials at once)
PORT_BASE, PORT_JOB, PORT_NODE, JOB_SLOTS, NODE_SLOTS = 20000, 400, 100, 100, 4
HEAD_WAIT_S, NODES_WAIT_S = 240, 180   # the head's wait includes its ports of a run before a requeue
INTERRUPTED = 3                # exit code of a job that stopped for its time limit or preemption


class SlurmJobError(ScsSweepError):
    """The allocation could not become a Ray cluster, or the job was given what it cannot use."""


HEAD_PORTS = ("port", "ray-client-server-port", "dashboard-port")  # the head's alone


def ports_of(job_id: str, index: int = 0) -> dict[str, int]:
    """Every port the index-th node of a job uses, from the job id: two jobs whose ids differ by less than
    JOB_SLOTS never share one, nor do nodes of one job on one machine (up to NODE_SLOTS of them)."""
    base = PORT_BASE + (int(job_id) % JOB_SLOTS) * PORT_JOB + (index % NODE_SLOTS) * PORT_NODE
    names = ("port", "node-manager-port", "object-manager-port", "ray-client-server-port",
             "dashboard-agent-grpc-port", "dashboard-agent-listen-port", "metrics-export-port",
             "runtime-env-agent-port")
    ports = {name: base + i for i, name in enumerate(names)}
    ports["dashboard-port"] = base + len(names)
    ports.update({"min-worker-port": base + len(names) + 1, "max-worker-port": base + PORT_NODE - 1})
    return ports


def _scontrol(*args: str) -> str:
    done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise SlurmJobError(f"scontrol {' '.join(args)}: {first_line(done.stderr or done.stdout)}")
    return done.stdout


@dataclass(frozen=True)
class Allocation:
    """What SLURM gave the job: its id, its nodes (hostnames, first is where this script runs) and each one's
    address, CPUs and GPUs per node, and how many times it was requeued."""
    job_id: str
    hosts: tuple
    addresses: tuple
    cpus: int
    gpus: int
    restarts: int

    @classmethod
    def from_environ(cls, env=os.environ) -> Allocation:
        if not env.get("SLURM_JOB_ID"):
            raise SlurmJobError("not inside a SLURM job (no SLURM_JOB_ID): `scs-sweep slurm` submits one")
        hosts = tuple(_scontrol("show", "hostnames", env["SLURM_JOB_NODELIST"]).split())
        addresses = tuple(node_address(host) for host in hosts)
        cpus = int(env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE") or os.cpu_count() or 1)
        return cls(env["SLURM_JOB_ID"], hosts, addresses, cpus, gpus_on_node(env),
                   int(env.get("SLURM_RESTART_COUNT") or 0))

    @property
    def head(self) -> str:
        return self.addresses[0]

    def address(self) -> str:
        return f"{self.head}:{ports_of(self.job_id, 0)['port']}"

    def temp_dir(self, index: int) -> str:
        """Ray's temp folder on the index-th node: short and node-local (AF_UNIX socket paths under it stay far
        below 107 bytes), one per job and node (nodes that share a /tmp keep apart)."""
        return f"/tmp/scs-ray-{self.job_id}-{index}"


def node_address(host: str) -> str:
    """The address SLURM knows a node by (NodeAddr), as an IP."""
    text = _scontrol("show", "node", "-o", host)
    match = re.search(r"\bNodeAddr=(\S+)", text)
    address = match.group(1) if match else host
    try:
        return socket.gethostbyname(address)
    except OSError:
        raise SlurmJobError(f"node {host}: its address {address} does not resolve") from None


def gpus_on_node(env=os.environ) -> int:
    """The GPUs SLURM gave the job on this node: SLURM_GPUS_ON_NODE, else the devices it made visible."""
    if env.get("SLURM_GPUS_ON_NODE"):
        return int(env["SLURM_GPUS_ON_NODE"])
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return len(visible) if env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS") else 0


PORTS_WAIT_S = 90   # a requeued job's Ray of the run before may still be shutting down on these ports


def _check_ports_free(address: str, ports: dict, wait_s: float = PORTS_WAIT_S) -> None:
    """Every port of the block binds on this node's address: another program (or another job's Ray) does not
    hold it. Checked before Ray starts, so a clash is one line, not a half-started cluster; ports of this job's
    run before a requeue (the same numbers) are waited for."""
    deadline = time.time() + wait_s
    while True:
        taken = _taken(address, ports)
        if not taken or time.time() > deadline:
            break
        time.sleep(2)
    if taken:
        raise SlurmJobError(f"ports {taken[:5]} on {address} are in use (another job's Ray?); requeue the job")


def _taken(address: str, ports: dict) -> list[int]:
    taken = []
    for name, port in ports.items():
        wanted = [port] if name != "min-worker-port" else range(port, ports["max-worker-port"] + 1)
        for p in wanted:
            with socket.socket() as s:
                # as Ray's servers bind (gRPC sets SO_REUSEADDR): connections of the run before a requeue that
                # linger in TIME_WAIT (a minute) do not hold the port; a socket listening on it does
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((address, p))
                except OSError:
                    taken.append(p)
    return taken


def _ray_start(alloc: Allocation, index: int) -> list[str]:
    """`ray start` for the index-th node of the allocation (the head on the first)."""
    ports, head = ports_of(alloc.job_id, index), index == 0
    cmd = ["ray", "start", "--block", f"--node-ip-address={alloc.addresses[index]}", f"--num-cpus={alloc.cpus}",
           f"--num-gpus={alloc.gpus}", f"--temp-dir={alloc.temp_dir(index)}", "--disable-usage-stats"]
    cmd += [f"--{k}={v}" for k, v in ports.items() if k not in HEAD_PORTS]
    if head:
        cmd += ["--head", f"--port={ports['port']}", f"--ray-client-server-port={ports['ray-client-server-port']}",
                f"--dashboard-port={ports['dashboard-port']}", "--include-dashboard=false"]
    else:
        cmd += [f"--address={alloc.address()}"]
    return cmd


def node(job_id: str) -> int:
    """`scs-sweep slurm-node JOB_ID`, run by srun on every node: check this node's ports, then Ray (head on
    the first node, worker elsewhere), in the foreground for as long as the job lasts."""
    alloc = Allocation.from_environ()
    me = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    index = alloc.hosts.index(me) if me in alloc.hosts else 0
    ports = ports_of(job_id, index)
    _check_ports_free(alloc.addresses[index], ports if index == 0 else
                      {k: v for k, v in ports.items() if k not in HEAD_PORTS})
    Path(alloc.temp_dir(index)).mkdir(parents=True, exist_ok=True)
    ray = Path(sys.executable).with_name("ray")  # the ray of this environment, whatever PATH says
    os.execv(str(ray), [str(ray), *_ray_start(alloc, index)[1:]])


class Cluster:
    """The allocation's Ray: a head step and a worker step (srun), watched until the job ends."""

    def __init__(self, alloc: Allocation, log_dir: Path):
        self.alloc, self.log_dir, self.steps = alloc, log_dir, []

    def _srun(self, hosts: list[str], label: str) -> subprocess.Popen:
        log = self.log_dir / f"ray-{self.alloc.job_id}-{label}.log"
        # one task per node, with every CPU and GPU the job has there (a step gets only what it asks for);
        # --overlap: the steps share the job's resources with this batch step
        cmd = ["srun", "--overlap", f"--nodes={len(hosts)}", f"--ntasks={len(hosts)}", "--ntasks-per-node=1",
               f"--cpus-per-task={self.alloc.cpus}", f"--nodelist={','.join(hosts)}", "--kill-on-bad-exit=1"]
        if self.alloc.gpus:
            cmd.append(f"--gres=gpu:{self.alloc.gpus}")
        cmd += [sys.executable, "-m", "orchestrator.cli", "slurm-node", self.alloc.job_id]
        with open(log, "ab") as out:
            step = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.steps.append((label, step, log))
        return step

    def end(self) -> None:
        """This job's Ray steps killed at once (Ray's own shutdown drains for half a minute; everything is saved
        already): `scancel --signal=KILL` of this job's steps by id. Nothing of any other job is touched."""
        listed = subprocess.run(["squeue", "-h", "-s", "-j", self.alloc.job_id, "-o", "%i"], capture_output=True,
                                text=True, timeout=30).stdout.split()
        steps = [s for s in listed if s.startswith(f"{self.alloc.job_id}.") and s.split(".")[1].isdigit()]
        if steps:
            subprocess.run(["scancel", "--signal=KILL", *steps], capture_output=True, timeout=30)
        for _, step, _ in self.steps:
            try:
                step.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def _failed(self) -> str:
        for label, step, log in self.steps:
            if step.poll() is not None:
                lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                return f"Ray did not start on the {label} (srun exited {step.returncode}): " + \
                    (lines[-1] if lines else f"see {log}")
        return ""

    def _wait(self, what: str, ready, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while not ready():
            failed = self._failed()
            if failed:
                raise SlurmJobError(failed)
            if time.time() > deadline:
                raise SlurmJobError(f"{what} did not come up in {timeout_s:.0f} s (logs in {self.log_dir})")
            time.sleep(1)

    def start(self) -> str:
        """Head, then workers, then every node alive: the cluster's address."""
        alloc = self.alloc
        self._srun([alloc.hosts[0]], "head")
        port = ports_of(alloc.job_id, 0)["port"]

        def head_answers() -> bool:
            try:
                socket.create_connection((alloc.head, port), timeout=2).close()
                return True
            except OSError:
                return False

        self._wait("the Ray head", head_answers, HEAD_WAIT_S)
        if len(alloc.hosts) > 1:
            self._srun(list(alloc.hosts[1:]), "workers")
        self._wait(f"Ray on all {len(alloc.hosts)} nodes", lambda: self._alive() >= len(alloc.hosts), NODES_WAIT_S)
        return alloc.address()

    def _alive(self) -> int:
        """Nodes the head lists alive: the driver connects here once (the sweep's commands find it connected)."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.alloc.address(), log_to_driver=False)
        return sum(1 for n in ray.nodes() if n.get("Alive"))

    def resources(self) -> str:
        import ray

        total = ray.cluster_resources()
        return f"{total.get('CPU', 0):g} CPU(s) and {total.get('GPU', 0):g} GPU(s) in all"


def _record_job(folder: SweepFolder, alloc: Allocation) -> None:
    """The sweep's SLURM jobs, for `status`: this job's id and restart count added."""
    jobs = json.loads(folder.read_text(JOBS_FILE)) if folder.exists(JOBS_FILE) else {"jobs": []}
    jobs["jobs"].append({"job_id": alloc.job_id, "restart": alloc.restarts, "nodes": list(alloc.hosts),
                         "started": time.time()})
    folder.write_text(JOBS_FILE, json.dumps(jobs, indent=1))


def _check_gpus(alloc: Allocation) -> None:
    """A job given GPUs starts only where torch can use them: one line otherwise (no requeue)."""
    if not alloc.gpus:
        return
    import torch

    from trainables.devices import node_build

    if not torch.cuda.is_available() or torch.cuda.device_count() < alloc.gpus:
        build = node_build()
        raise SlurmJobError(f"SLURM gave this job {alloc.gpus} GPU(s) per node, but torch here sees "
                            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}: {build.describe()}; "
                            f"{build.fix() or 'check CUDA_VISIBLE_DEVICES'} (a login node without a GPU installs "
                            f"torch's CUDA build with SCS_TORCH=cuda ./dev.sh setup)")


def _finished(folder: SweepFolder) -> bool:
    """Whether every trial of the sweep has ended (done, pruned, stopped or failed)."""
    if not folder.exists("sweep.json"):
        return False
    rows, _ = sweep_status(folder.view(), folder.load_plan())
    return bool(rows) and all(r["state"] not in ("pending", "running") for r in rows)


def _drive(spec: dict, folder: SweepFolder, address: str) -> int:
    """The sweep's driver against the allocation's cluster: what was asked on the first run, `resume` after."""
    request = SweepRequest(**{**spec["request"], "options": RunOptions(**spec["request"]["options"]),
                              "address": address})
    if folder.exists("sweep.json"):
        print(f"slurm job: {folder.name} has started before: resuming it", flush=True)
        return resume(ResumeRequest(name=request.name, storage=request.storage, address=address))
    if spec.get("settle"):
        return settle(request, SettleOptions(**spec["settle"]))
    return run(request)


def job(storage: str, name: str) -> int:
    """`scs-sweep slurm-job STORAGE NAME`: the batch script's one command (see the module docstring)."""
    alloc = Allocation.from_environ()
    folder = Storage(storage).sweep(name)
    spec = json.loads(folder.read_text(JOB_FILE))
    print(f"slurm job {alloc.job_id} (restart {alloc.restarts}): {len(alloc.hosts)} node(s) "
          f"{', '.join(f'{h} {a}' for h, a in zip(alloc.hosts, alloc.addresses))}; {alloc.cpus} CPU(s) and "
          f"{alloc.gpus} GPU(s) each", flush=True)
    _record_job(folder, alloc)
    folder.remove(stopping.CHECKPOINT_NOW)  # a stop of the run before is over
    if spec.get("gpu_check", True):
        _check_gpus(alloc)
    if os.environ.get("RAY_AUTH_MODE", "token") != "disabled":  # token auth, with a token of this job's own:
        os.environ["RAY_AUTH_MODE"] = "token"                      # every step inherits it, no one else has it
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    lead = float(spec.get("signal_lead_s", 300))
    grace = max(5.0, min(lead / 3, 120.0))  # the running trials' next epoch ends, then Tune stops and saves
    signal.signal(signal.SIGUSR1, lambda *_: None)  # stopping.py's signal to Tune: harmless outside a part
    signal.signal(signal.SIGUSR2, lambda *_: stopping.request(folder, grace))   # the time limit is near
    signal.signal(signal.SIGTERM, lambda *_: stopping.request(folder, 0.0))     # preemption: save now
    log_dir = Path(spec.get("log_dir") or ".")
    cluster = Cluster(alloc, log_dir)
    try:
        address = cluster.start()
        print(f"slurm job: Ray on {len(alloc.hosts)} node(s) at {address}: {cluster.resources()}", flush=True)
        rc = _drive(spec, folder, address)
    except ScsSweepError as exc:
        print(f"scs-sweep slurm-job: error: {exc}", file=sys.stderr, flush=True)
        return 2
    if not stopping.requested():
        print(f"slurm job: {name} finished (exit {rc})", flush=True)
        return rc
    if _finished(folder):
        print(f"slurm job: stopped, but every trial of {name} has ended: not requeued", flush=True)
        return rc
    most = int(spec.get("max_requeues", 5))
    if alloc.restarts >= most:
        print(f"slurm job: {name} is not finished after {alloc.restarts} requeue(s), the most --max-requeues "
              f"allows; submit it again with `scs-sweep slurm --resume {name}` (a longer --time?)", flush=True)
        return INTERRUPTED
    print(f"slurm job: {name} saved; requeueing job {alloc.job_id} (restart {alloc.restarts + 1} of at most "
          f"{most})", flush=True)
    cluster.end()  # this job's own Ray steps, at once: the next run starts on free ports
    _scontrol("requeue", alloc.job_id)
    return INTERRUPTED

