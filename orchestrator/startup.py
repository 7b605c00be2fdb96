"""How a sweep starts, the one way `run`, `resume`, `settle` and `slurm` share: plan it, check where it goes,
read its data once, connect to Ray, decide its GPUs, write its files; and the line a failed trial ends with.

`SweepRequest` is what the CLI was asked for, typed at its edge (cli.py): nothing here reads argparse.
Planning (`plan_for`) imports no ray, so every bad input is one line before Ray is even imported; the steps
that need Ray (`start_sweep`, `connect`) import the tuner when they run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from common import defaults
from common.locations import Location
from common.uris import is_uri
from results.store import check_name, get_store
from search_spaces import get_preset, is_sweep_file, load_sweep_file, sweep_file_text
from trainables.node_data import has_data, node_copy, put_data

from .errors import UsageError
from .gpus import assign_gpus
from .plan import RunOptions, SweepPlan, plan_sweep
from .provenance import in_ray_job
from .storage import SETTLE_FILE, SWEEP_FILE, Storage
from .trackers import TRACK_ENV, check_trackers

__all__ = ["SweepRequest", "SWEEP_FILE", "SETTLE_FILE", "experiments_of", "store_uri", "plan_for", "start_sweep",
           "connect", "track", "report_failures", "check_locations"]



@dataclass(frozen=True)
class SweepRequest:
    """A sweep to start: its preset or sweep file, where it goes, the cluster, and the run options as given
    (the data folder and dataset resolved by plan_for)."""
    source: str                       # a preset's name or a sweep file's path
    name: str = ""                    # default: the preset's, or the file's
    store: str = ""                   # default $SCS_STORE or ./scs_store
    storage: str = ""                 # default $SCS_RUNS or ./scs_runs
    address: str = ""                 # '' embedded; auto or HOST:PORT
    options: RunOptions = field(default_factory=RunOptions)


def experiments_of(source: str) -> tuple[str, list, str]:
    """(default sweep name, experiments, the sweep file's text) of a preset name or a .toml path."""
    if is_sweep_file(source):
        return load_sweep_file(source)
    experiments = get_preset(source)
    return source, experiments, sweep_file_text(source, experiments)


def store_uri(given: str) -> str:
    """The store a command means: its --store, $SCS_STORE or ./scs_store, a local one made absolute."""
    uri = defaults.store(given)
    return uri if "://" in uri else str(Path(uri).resolve())


def _resolve_data(options: RunOptions) -> RunOptions:
    """The options with the dataset the plan will use and the CIFAR-10 folder every trial reads, resolved once
    to an absolute path, or an object store's copy (a URI: each node copies it to its own disk)."""
    given = options.data_dir
    dataset = options.resolved_dataset
    if given and dataset == "synthetic":
        raise UsageError("--data and --dataset synthetic exclude each other")
    if dataset == "synthetic":
        return replace(options, dataset=dataset, data_dir="")
    where = defaults.data_dir(given)
    if is_uri(where):
        return replace(options, dataset=dataset, data_dir=where)
    folder = Path(where).resolve()
    if given and not folder.is_dir():
        raise UsageError(f"--data {given} is not a folder; point it at the folder that holds "
                         f"cifar-10-batches-py (or -bin)")
    return replace(options, dataset=dataset, data_dir=str(folder))


def check_locations(storage: Storage, store: str) -> None:
    """Where runs and rows go must take a write, checked in seconds before Ray starts (one line each)."""
    if storage.remote:
        storage.check_writable()
    if is_uri(store):
        Location(store).check_writable("--store")


def _check_local_gpu(gpus: float) -> None:
    """GPUs asked of an embedded Ray on a machine without one would be ignored: refuse before Ray starts."""
    import torch  # only when GPUs were asked for

    if not torch.cuda.is_available():
        raise UsageError(f"--gpus-per-trial {gpus:g}, but this machine has no GPU that torch can use; drop it "
                         f"to train on the CPU, or give --address of a cluster with GPUs")


def plan_for(request: SweepRequest, seeds_from_design: int = 0,
             trains_here: bool = True) -> tuple[SweepPlan, list, str, RunOptions]:
    """(sweep plan, its experiments, its sweep file's text, the resolved options): every trial validated and
    where it goes checked, before Ray starts. With seeds_from_design (settle), each grid trial gets that many
    seeds and pruning is off. trains_here=False: the sweep trains elsewhere (a SLURM job), so GPUs asked for
    are not looked for on this machine."""
    default_name, experiments, text = experiments_of(request.source)
    storage = Storage(request.storage)
    name = request.name or default_name
    check_name("sweep name", name)  # it names the store's partition and the sweep's folder
    options = _resolve_data(request.options)
    if seeds_from_design:
        options = replace(options, seeds=seeds_from_design, prune=False)
    store = store_uri(request.store)
    sweep = plan_sweep(name, request.source, experiments, options, store=store, storage=storage.uri)
    check_locations(storage, store)
    if trains_here and options.gpus_per_trial and not request.address and not in_ray_job():  # embedded
        _check_local_gpu(options.gpus_per_trial)
    return sweep, experiments, text, options


def _read_data_once(options: RunOptions) -> None:
    """CIFAR-10 read (or downloaded, or put into its bucket) once by the driver, before any trial starts."""
    from trainables.data import load_cifar10  # torch

    if is_uri(options.data_dir):  # the bucket's copy, put there once; the head's own copy checks it
        if not has_data(options.data_dir):
            print(put_data(options.data_dir), flush=True)
        load_cifar10(node_copy(options.data_dir))
    else:
        load_cifar10(options.data_dir)


def start_sweep(sweep: SweepPlan, text: str, options: RunOptions, address: str = "") -> None:
    """Read the data once, connect to Ray (embedded, or the cluster at `address`), decide the GPUs each part's
    trials ask for, and write the sweep's files; then `tuner.execute` runs it."""
    from . import tuner  # ray

    track(sweep.track)
    if options.dataset == "cifar10":
        _read_data_once(options)
    on_cluster = tuner.connect(address)
    supply = tuner.gpu_supply(on_cluster)  # the GPUs each trial asks for: decided once, from the cluster
    requests = assign_gpus(sweep, options.gpus_per_trial, options.smoke_test, supply)
    if options.gpus_per_trial and not supply.any:
        print(f"note: the cluster has no GPU now; trials asking for --gpus-per-trial "
              f"{options.gpus_per_trial:g} wait until a node with GPUs joins (an autoscaling cluster starts "
              f"one); Ctrl-C and drop --gpus-per-trial to train on CPUs")
    Storage(sweep.storage).sweep(sweep.name).write_text(SWEEP_FILE, text)
    get_store(sweep.store).write_sweep(sweep.name, text)
    for line in requests:
        print(f"sweep {sweep.name}: {line}")


def track(kinds) -> None:
    """The trackers this driver logs to, for the Tune callback that reads them when a part starts
    (trackers.py: from the environment, never from the pickled tuner); each installed and answering, or one
    line before Ray starts (the one check of `run`, `settle` and `resume`)."""
    os.environ[TRACK_ENV] = ",".join(kinds)
    for line in check_trackers(tuple(kinds)):
        print(f"tracking: {line}", flush=True)


def connect(address: str = "") -> None:
    """Connect to Ray (embedded, or the cluster at `address`) to resume a sweep."""
    from . import tuner  # ray

    tuner.connect(address)


def report_failures(name: str, failed: list[dict]) -> int:
    """One line per failed trial (its variant, seed, epoch and error), and the exit code: 1 if any failed."""
    if not failed:
        return 0
    for row in failed:
        variant = "/".join(str(row.get(k)) for k in ("arch", "layer", "activation", "pooling", "normalization"))
        print(f"scs-sweep: trial {row['trial_id']} of {name} ({row.get('group')}, {variant}, seed "
              f"{row.get('seed')}) failed at epoch {row.get('epochs_done', 0) + 1}: {row.get('error') or '?'}")
    print(f"scs-sweep: {len(failed)} trial(s) of {name} failed; `scs-sweep status {name}` lists every trial")
    return 1

