"""`scs-sweep slurm`: a sweep (or a settle) as one SLURM batch job, from a login node.

It plans the sweep first (every bad input one line, nothing submitted), asks SLURM what the request needs
(`sbatch` on PATH, the partition, its nodes' GPUs, `sinfo`/`scontrol`), checks that the nodes can see where
runs and rows go (not a node-local folder), then writes what the job runs (slurm-job.json) and one readable
batch script beside the sweep's runs, submits it and says how to follow it. `--dry-run` prints the script and
writes and submits nothing. In the job, slurm_job.py makes the allocation one Ray cluster and runs the
driver; the script asks SLURM for a signal `--signal-lead` seconds before the time limit and to requeue the
job, so a time limit or a preemption saves, requeues and resumes, at most `--max-requeues` times.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common.errors import first_line

from .errors import UsageError
from .provenance import code_version
from .settle import SettleOptions, check_options
from .slurm_job import JOB_FILE, JOBS_FILE
from .startup import SweepRequest, plan_for
from .storage import Storage, SweepFolder
from .trackers import check_trackers

__all__ = ["SlurmOptions", "submit", "minutes", "node_local", "batch_script", "job_states", "SCRIPT_FILE"]

SCRIPT_FILE = "slurm.sbatch"           # the batch script, in the sweep's folder (or ./.scs-slurm/ for a bucket)
# folders that are a node's own on every cluster: the other nodes, and the login node, never see them
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/scratch/local", "/local")


@dataclass(frozen=True)
class SlurmOptions:
    """What the job asks SLURM for (typed at the CLI's edge)."""
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_node: int = 0            # 0: SLURM's default for one task per node
    time: str = ""                    # as sbatch takes it: MM, HH:MM:SS, D-HH:MM, ...
    partition: str = ""
    account: str = ""
    qos: str = ""
    setup: tuple = ()                 # shell lines before Python starts (module load ...)
    sbatch: tuple = ()                # more sbatch options, as given (--mem=64G, --constraint=a100, ...)
    signal_lead_s: int = 300          # the time-limit warning, this long before the limit
    max_requeues: int = 5
    gpu_check: bool = True            # the job checks torch can use its GPUs before anything starts
    dry_run: bool = False


def minutes(text: str) -> float:
    """SLURM's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in minutes; UsageError otherwise."""
    days, _, rest = text.rpartition("-") if "-" in text else ("", "", text)
    parts = rest.split(":")
    if not all(p.isdigit() for p in parts) or (days and not days.isdigit()) or not 1 <= len(parts) <= 3:
        raise UsageError(f"--time {text!r} is not a SLURM time; give MM, HH:MM:SS or D-HH:MM (e.g. 24:00:00)")
    numbers = [int(p) for p in parts]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, s = (numbers + [0, 0])[:3]
        return int(days) * 1440 + h * 60 + m + s / 60
    if len(numbers) == 1:
        return float(numbers[0])
    if len(numbers) == 2:
        return numbers[0] + numbers[1] / 60
    return numbers[0] * 60 + numbers[1] + numbers[2] / 60


def node_local(path: str) -> str:
    """Why the nodes could not see a folder ('' when they may: a URI, or a path outside the node-local places)."""
    if "://" in path:
        return ""
    resolved = str(Path(path).resolve())
    places = list(NODE_LOCAL) + [v for v in (os.environ.get("TMPDIR"),) if v]
    for place in places:
        if resolved == place or resolved.startswith(place.rstrip("/") + "/"):
            return f"{resolved} is under {place}, a node's own disk"
    return ""


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise UsageError(f"{' '.join(cmd[:3])}: {first_line(done.stderr or done.stdout or 'failed')}")
    return done.stdout


def _partition_gpus(partition: str) -> list[int]:
    """The GPUs each node of a partition has (its GRES), from sinfo."""
    out = _run(["sinfo", "-h", "-N", *(["-p", partition] if partition else []), "-o", "%N %G"])
    counts = []
    for line in out.splitlines():
        gres = line.split(None, 1)[1] if " " in line.strip() else ""
        found = re.findall(r"gpu(?::[^:,()]+)?:(\d+)", gres)
        counts.append(sum(int(n) for n in found))
    return counts


def check_slurm(options: SlurmOptions) -> None:
    """What SLURM would refuse, or the job could not use, as one line each, before anything is written."""
    if not shutil.which("sbatch"):
        raise UsageError("no `sbatch` on PATH: run this on a SLURM login node (or load the module that has it)")
    if options.nodes < 1:
        raise UsageError(f"--nodes must be >= 1, got {options.nodes}")
    if options.max_requeues < 0:
        raise UsageError(f"--max-requeues must be >= 0, got {options.max_requeues}")
    if options.signal_lead_s < 30:
        raise UsageError(f"--signal-lead {options.signal_lead_s}: at least 30 s (SLURM may send its signal up to "
                         f"a minute late, and the trials need time to save)")
    if options.partition:
        listed = _run(["sinfo", "-h", "-o", "%R"]).split()
        if options.partition not in listed:
            raise UsageError(f"partition {options.partition!r} does not exist; this cluster has: "
                             f"{', '.join(listed) or 'none'} (`sinfo`)")
    if options.gpus_per_node:
        gpus = _partition_gpus(options.partition)
        if not gpus or max(gpus) < options.gpus_per_node:
            where = f"partition {options.partition}" if options.partition else "the default partition"
            raise UsageError(f"--gpus-per-node {options.gpus_per_node}, but the nodes of {where} have at most "
                             f"{max(gpus, default=0)} GPU(s) (`sinfo -o '%N %G'`)")
    if options.time:
        limit = minutes(options.time)
        if limit * 60 <= options.signal_lead_s + 60:
            raise UsageError(f"--time {options.time} is not longer than the time-limit warning's lead "
                             f"({options.signal_lead_s} s) and a minute for SLURM's delay: give a longer --time "
                             f"or a shorter --signal-lead")


def _directives(options: SlurmOptions, name: str, log: str) -> list[tuple[str, str]]:
    """(#SBATCH line, why) pairs."""
    lines = [(f"--job-name=scs-{name}", ""),
             (f"--nodes={options.nodes}", ""),
             ("--ntasks-per-node=1", "one Ray node per machine; its raylet schedules the trials"),
             (f"--output={log}", "one log across requeues (with --open-mode=append)"),
             ("--open-mode=append", ""),
             ("--requeue", "a preempted job goes back to the queue; the time limit requeues it too (below)"),
             (f"--signal=B:USR2@{options.signal_lead_s}",
              f"USR2 to this script {options.signal_lead_s} s before the time limit: save, requeue, resume")]
    if options.cpus_per_node:
        lines.append((f"--cpus-per-task={options.cpus_per_node}", "every CPU a node gives Ray"))
    if options.gpus_per_node:
        lines.append((f"--gres=gpu:{options.gpus_per_node}", "GPUs per node; Ray gets exactly these"))
    for flag, value in (("time", options.time), ("partition", options.partition), ("account", options.account),
                        ("qos", options.qos)):
        if value:
            lines.append((f"--{flag}={value}", ""))
    lines += [(extra, "as given to scs-sweep slurm --sbatch") for extra in options.sbatch]
    return lines


def batch_script(name: str, storage: str, options: SlurmOptions, what: str, log: str) -> str:
    """The batch script: every line a reader may not know commented."""
    venv = Path(sys.prefix)
    out = ["#!/bin/bash",
           f"# scs-sweep: {what}, as one SLURM job (written by `scs-sweep slurm` on {os.uname().nodename}, "
           f"{time.strftime('%Y-%m-%d %H:%M')}, code {code_version()})"]
    for directive, why in _directives(options, name, log):
        out.append(f"#SBATCH {directive}" + (f"    # {why}" if why else ""))
    out += ["set -euo pipefail",
            f"cd {shlex.quote(os.getcwd())}    # where it was submitted: relative paths, ./data, mean the same"]
    if options.setup:
        out.append("# --setup: before Python starts")
        out += list(options.setup)
    out += [f"source {shlex.quote(str(venv / 'bin' / 'activate'))}    # the environment ./dev.sh made, on the shared "
            f"filesystem",
            "# Ray on every node of the allocation (srun, ports and temp folder from the job id), the driver here;",
            "# on USR2 or TERM the trials save and Tune stops, then the job requeues itself unless the sweep is done",
            f"exec scs-sweep slurm-job {shlex.quote(storage)} {shlex.quote(name)}"]
    return "\n".join(out) + "\n"


def _places(folder: SweepFolder, storage: Storage) -> tuple[str, str, str]:
    """(where the script goes, the job's log, the folder for Ray's step logs) for a sweep folder."""
    if folder.remote:
        local = Path(".scs-slurm").resolve() / folder.name
        return str(local / SCRIPT_FILE), str(local / "slurm-%j.log"), str(local)
    base = Path(str(folder))
    return str(base / SCRIPT_FILE), str(base / "slurm-%j.log"), str(base)


def submit(request: SweepRequest | None, settle: SettleOptions | None, options: SlurmOptions,
           resume_name: str = "", storage_given: str = "") -> int:
    """`scs-sweep slurm`: plan, check, write and submit (or print, with --dry-run)."""
    check_slurm(options)
    if resume_name:  # a sweep that ran before: its job file says what it runs
        storage = Storage(storage_given)
        folder = storage.sweep(resume_name)
        if not folder.exists(JOB_FILE):
            raise UsageError(f"no SLURM sweep named {resume_name!r} in {storage} (no {JOB_FILE}); start one with "
                             f"`scs-sweep slurm PRESET --name {resume_name}`")
        spec = json.loads(folder.read_text(JOB_FILE))
        name, what = resume_name, f"sweep {resume_name}, continued"
    else:
        if settle is not None:
            check_options(settle)
        sweep, _, _, options_run = plan_for(request, seeds_from_design=settle.max_seeds if settle else 0,
                                            trains_here=False)
        check_trackers(tuple(sweep.track))  # from here, as the job's driver will log: one line, nothing submitted
        storage = Storage(sweep.storage)
        folder = storage.sweep(sweep.name)
        if folder.exists("sweep.json") or folder.exists(JOB_FILE):
            raise UsageError(f"a sweep named {sweep.name!r} exists in {storage}; continue it with "
                             f"`scs-sweep slurm --resume {sweep.name}` or pick another --name")
        name = sweep.name
        # what the job runs: the request as planned here (every path absolute), so nodes and requeues agree
        resolved = SweepRequest(source=str(Path(request.source).resolve()) if Path(request.source).suffix == ".toml"
                                else request.source, name=name, store=sweep.store, storage=storage.uri,
                                options=options_run)
        spec = {"request": asdict(resolved), "settle": asdict(settle) if settle else None}
        what = f"{'settle' if settle else 'sweep'} {name} ({request.source})"
    for place in (storage.uri, spec["request"]["store"], spec["request"]["options"].get("data_dir") or ""):
        why = node_local(place) if place else ""
        if why:
            raise UsageError(f"the nodes cannot see {place}: {why}; give --storage, --store and --data on the "
                             f"cluster's shared filesystem (or s3://)")
    script_path, log, log_dir = _places(folder, storage)
    spec.update(signal_lead_s=options.signal_lead_s, max_requeues=options.max_requeues, gpu_check=options.gpu_check,
                log_dir=log_dir, nodes=options.nodes)
    script = batch_script(name, storage.uri, options, what, log)
    if options.dry_run:
        print(script, end="")
        return 0
    folder.write_text(JOB_FILE, json.dumps(spec, indent=1))
    Path(script_path).parent.mkdir(parents=True, exist_ok=True)
    Path(script_path).write_text(script)
    done = subprocess.run(["sbatch", "--parsable", script_path], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise UsageError(f"sbatch refused the job: {first_line(done.stderr or done.stdout)} (the script: "
                         f"{script_path})")
    job_id = done.stdout.strip().split(";")[0]
    print(f"submitted SLURM job {job_id}: {what}\n"
          f"  the script:  {script_path}\n"
          f"  follow it:   squeue -j {job_id}; scs-sweep status {name}"
          + (f" --storage {storage.uri}" if storage_given or request and request.storage else "") + "\n"
          f"  its log:     tail -f {log.replace('%j', job_id)}")
    return 0


def job_states(folder: SweepFolder) -> list[str]:
    """One line per SLURM job that ran a sweep, with its state as SLURM has it now (`status`)."""
    if not folder.exists(JOBS_FILE):
        return []
    jobs = json.loads(folder.read_text(JOBS_FILE)).get("jobs", [])
    out = []
    for job_id in dict.fromkeys(j["job_id"] for j in jobs):
        runs = [j for j in jobs if j["job_id"] == job_id]
        out.append(f"SLURM job {job_id}: {_state(job_id)}, started {len(runs)} time(s) (restart "
                   f"{max(j['restart'] for j in runs)}) on {', '.join(runs[-1]['nodes'])}")
    return out


def _state(job_id: str) -> str:
    """The job's state (PENDING, RUNNING, COMPLETED, ...) from scontrol, or why it is not known here."""
    if not shutil.which("scontrol"):
        return "state unknown here (no scontrol on this machine)"
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    match = re.search(r"\bJobState=(\S+)", done.stdout)
    if not match:
        return "no longer known to SLURM (finished some time ago)"
    reason = re.search(r"\bReason=(\S+)", done.stdout)
    restarts = re.search(r"\bRestarts=(\d+)", done.stdout)
    return match.group(1) + (f" ({reason.group(1)})" if reason and reason.group(1) != "None" else "") + \
        (f", restarts {restarts.group(1)}" if restarts else "")
