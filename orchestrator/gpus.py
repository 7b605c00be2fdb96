"""How many GPUs each trial asks for, decided once per sweep from what the cluster has or can start.

The plan is built and validated before Ray starts (plan.py); once connected, `assign_gpus` sets each
part's GPUs per trial from `GpuSupply`: the GPUs the cluster has now, and the GPU node types its
autoscaler may still start. An autoscaling cluster (cluster.yaml) has no GPU worker when a sweep is
submitted, so its resources alone would say "no GPU" and the sweep would ask for none: its trials would
then train on the CPUs of whatever workers start, and leave the GPUs idle. The autoscaler's config, which
`ray up` writes on the head as ~/ray_bootstrap_config.yaml (where the sweep's driver runs as a Ray Job),
names those node types and their resources.

The request: `--gpus-per-trial` when given; none for `--smoke-test` (the CPU by design); else, where the
cluster has or can start GPUs, the packing default of the part's architecture (small nets share a GPU),
else none. Each part's line says what a trial asks for and why. No ray import (tested without it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from search_spaces.epoch_times import expected_epoch_cost

__all__ = ["GpuSupply", "gpu_supply", "read_autoscaler_gpus", "assign_gpus", "default_gpus_per_trial",
           "AUTOSCALER_CONFIG", "AUTOSCALER_CONFIG_ENV"]

AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"   # where `ray up` puts the cluster file on the head
AUTOSCALER_CONFIG_ENV = "SCS_AUTOSCALER_CONFIG"     # another path to read it from


def default_gpus_per_trial(arch: str, image_dim: int = 32) -> float:
    """Trials per GPU by architecture: small nets share one. Not measured yet on this project's GPU path;
    from the paper_facts H200 anchor (~2x total throughput with 4 small-net processes on one GPU):
    `bench/packing.py` measures it for your GPU, and --gpus-per-trial overrides it."""
    if arch == "resnet18":
        return 1.0 if image_dim == 224 else 0.5
    return 0.25


@dataclass(frozen=True)
class GpuSupply:
    """GPUs a cluster has now, and the autoscaler node types with GPUs that it may start."""
    now: float = 0.0
    node_types: tuple = ()          # ("gpu_worker: 1 GPU each, up to 8 nodes", ...)
    source: str = ""                # where node_types came from (the autoscaler config's path)
    on_cluster: bool = False        # a cluster joined (else an embedded Ray on this machine)

    @property
    def any(self) -> bool:
        return self.now > 0 or bool(self.node_types)

    def describe(self) -> str:
        parts = [f"{self.now:g} GPU(s) now"] if self.now else ["no GPU now"]
        if self.node_types:
            parts.append(f"its autoscaler can start {'; '.join(self.node_types)} ({self.source})")
        return ", ".join(parts)


def read_autoscaler_gpus(path: str) -> tuple:
    """The node types of an autoscaler config (a `ray up` cluster file) that bring GPUs and may start:
    ("NAME: N GPU each, up to M nodes", ...); () when the file is absent or names none."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError):
        return ()
    if not isinstance(config, dict):
        return ()
    out = []
    head = config.get("head_node_type")
    for name, node in (config.get("available_node_types") or {}).items():
        if not isinstance(node, dict) or name == head:
            continue
        gpus = (node.get("resources") or {}).get("GPU", 0) or 0
        most = node.get("max_workers", config.get("max_workers", 0)) or 0
        if gpus > 0 and most > 0:
            out.append(f"{name}: {gpus:g} GPU each, up to {most} node(s)")
    return tuple(out)


def gpu_supply(resources: dict, on_cluster: bool) -> GpuSupply:
    """GpuSupply from Ray's cluster resources and, on a cluster (not an embedded Ray), its autoscaler config."""
    if not on_cluster:
        return GpuSupply(now=float(resources.get("GPU", 0)))
    path = os.environ.get(AUTOSCALER_CONFIG_ENV) or AUTOSCALER_CONFIG
    types = read_autoscaler_gpus(path)
    return GpuSupply(now=float(resources.get("GPU", 0)), node_types=types, source=path if types else "",
                     on_cluster=True)


@dataclass
class Request:
    part: str
    gpus: float
    why: str = field(default="")

    def line(self) -> str:
        asks = f"1 CPU and {self.gpus:g} GPU" if self.gpus else "1 CPU and no GPU"
        return f"part {self.part}: each trial asks for {asks} ({self.why})"


def assign_gpus(sweep, explicit: float | None, smoke: bool, supply: GpuSupply) -> list[str]:
    """Set every part's gpus_per_trial (and order its grid trials costliest first on that device);
    returns one line per part saying what a trial asks for and why."""
    lines = []
    for part in sweep.parts:
        first = part.trials[0]["config"]
        if smoke:
            request = Request(part.part, 0.0, "--smoke-test trains on the CPU")
        elif explicit is not None:
            request = Request(part.part, explicit, f"--gpus-per-trial {explicit:g}; the cluster: {supply.describe()}")
        elif supply.any:
            gpus = default_gpus_per_trial(first["arch"], first["image_dim"])
            share = f"{round(1 / gpus)} trials share a GPU" if gpus < 1 else "one GPU each"
            request = Request(part.part, gpus, f"{first['arch']}@{first['image_dim']}: {share}, the default for "
                                               f"it (--gpus-per-trial sets it); the cluster: {supply.describe()}")
        elif supply.on_cluster:
            request = Request(part.part, 0.0, "the cluster has no GPU now and its autoscaler config names no GPU "
                                              "node type; trials train on CPUs")
        else:
            request = Request(part.part, 0.0, "this machine has no GPU; trials train on its CPUs")
        part.gpus_per_trial = request.gpus
        if not part.search:
            part.trials.sort(key=lambda t: -expected_epoch_cost(t["config"], request.gpus > 0))
        lines.append(request.line())
    return lines
