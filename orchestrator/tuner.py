"""Tuner assembly and execution: connect to Ray, build (or restore) one Tuner per part, run the parts in
order, and leave the store matching Tune's files after each.

A part is one Tune experiment at STORAGE/NAME/<part> (storage.py: a folder every node sees, or an object
store that Tune writes through pyarrow). Its scheduler is ResumableASHA (or FIFO without pruning), a search
part adds OptunaSearch with its study in the sweep's local folder (optuna.db, copied to the storage after
the part), and the callbacks write result.json (what the store is built from), progress.csv, TensorBoard
scalars and the store rows. After each part the store's rows of the sweep are compacted.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.schedulers import FIFOScheduler

from common.errors import first_line
from common.vocabulary import FINISHED
from results.store import get_store
from search_spaces.experiment import stage_ref

from . import gpus, stopping
from .errors import UsageError
from .plan import PartPlan, SweepPlan
from .provenance import code_version, in_ray_job
from .records import gather_part, newest_checkpoint, trial_dirs, tune_states
from .scheduler import METRIC, MODE, ResumableASHA
from .storage import SWEEP_FILE, Storage, SweepFolder
from .store_callback import StoreAndProgress
from .tracker_callback import TrackerCallback
from .trackers import finish_sweep
from .trainable import train_scs
from .tune_config import param_space

__all__ = ["connect", "execute", "gpu_supply", "reuses_workers", "OPTUNA_DB", "CPUS_PER_TRIAL"]

CPUS_PER_TRIAL = 1
OPTUNA_DB = "optuna.db"   # in the sweep's folder: `optuna-dashboard sqlite:///.../optuna.db`
# how often Tune copies the driver's files (result.json, experiment state) to an object store: what a new
# head resumes from, and what `status` from another machine sees (Tune's default is 5 minutes)
REMOTE_SYNC_S = 30


class KeepStudy(tune.Callback):
    """With an object store as the storage: the Optuna study (SQLite on the head's disk) copied into the
    sweep's folder there as trials end, at most every `every_s` seconds, so a new head resuming mid-search
    finds the study Tune's restored searcher refers to. SQLite's backup API copies a consistent snapshot."""

    def __init__(self, folder: SweepFolder, every_s: float = 60.0):
        self.folder, self.every_s, self.last = folder, every_s, 0.0

    def __getstate__(self):
        return dict(self.__dict__, last=0.0)

    def keep(self, force: bool = False) -> None:
        db = self.folder.local_dir / OPTUNA_DB
        if not db.exists() or (not force and time.time() - self.last < self.every_s):
            return
        self.last = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / OPTUNA_DB
            with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
                source.backup(target)
            self.folder.location.upload(copy, OPTUNA_DB)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.keep()

    def on_experiment_end(self, trials, **info):
        self.keep(force=True)


class ScalarTBXLogger(TBXLoggerCallback):
    """TensorBoard scalars per trial: the epoch's metrics and each weight layer's weight norm, gradient
    norm and mean p (TensorBoard cannot show the per-layer rows, p lists or saliency maps as they are)."""

    def log_trial_result(self, iteration, trial, result):
        flat = {k: v for k, v in result.items() if k not in ("layers", "robustness", "saliency")}
        for layer in result.get("layers") or []:
            for key in ("weight_norm", "grad_norm", "p_mean"):
                if layer.get(key) is not None:
                    flat[f"layers/{layer['layer_name']}/{key}"] = layer[key]
        super().log_trial_result(iteration, trial, flat)


def reuses_workers(part: PartPlan) -> bool:
    """Whether a worker process runs trial after trial (Tune's reuse_actors): on CPUs, yes; on GPUs, no.

    On CPUs what torch.compile built for an architecture then serves every later trial of it. On a GPU a
    trial's model runs as CUDA graphs, recorded for its own parameters' addresses, whose memory pools torch
    keeps in per-thread trees (torch/_inductor/cudagraph_trees.py) that only the recording thread can reset,
    while Tune runs each trial in a new thread: a reused worker would keep every earlier trial's graphs and
    pools. A fresh process per GPU trial frees them with the process; it compiles again from inductor's
    on-disk caches (FX graph and Triton kernels, on by default), seconds against a trial of many epochs.
    """
    return not part.gpus_per_trial


def _trainable(part: PartPlan):
    return tune.with_resources(train_scs, {"cpu": CPUS_PER_TRIAL, "gpu": part.gpus_per_trial})


def _scheduler(part: PartPlan):
    if not part.asha:
        return FIFOScheduler()
    return ResumableASHA(time_attr="training_iteration", max_t=max(part.epochs, 1), **part.asha)


def _search_alg(part: PartPlan, folder: SweepFolder):
    if not part.search:
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    db = folder.local_dir / OPTUNA_DB  # SQLite wants a disk: the head's own, copied to the storage (execute)
    db.parent.mkdir(parents=True, exist_ok=True)
    folder.fetch(db)
    storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=part.trials[0]["config"]["seed"]),
                        metric=METRIC, mode=MODE, study_name=part.part, storage=storage)


def _run_settings(sweep: SweepPlan, folder: SweepFolder) -> dict:
    # checkpoint_now: where a graceful stop (stopping.py) asks the running trials to save at their epoch's end
    return {"checkpoint_every": sweep.checkpoint_every, "cpus_per_trial": CPUS_PER_TRIAL,
            "code_version": code_version(), "evaluation": sweep.evaluation, "compile": sweep.compile,
            "checkpoint_now": folder.uri_of_file(stopping.CHECKPOINT_NOW)}


def _tracked(sweep: SweepPlan, folder: SweepFolder) -> dict:
    """What the trackers' sweep-level run records: its name, source, planned trials, code, sweep file."""
    text = folder.read_text(SWEEP_FILE) if folder.exists(SWEEP_FILE) else ""
    return {"name": sweep.name, "source": sweep.source, "trials": sweep.n_trials, "code_version": code_version(),
            "sweep_file": text}


def build_tuner(part: PartPlan, sweep: SweepPlan, folder: SweepFolder, trials: list[dict] | None = None) -> tune.Tuner:
    """The Tuner of one part; `trials` replaces the part's planned trials (a later stage's, with the
    checkpoints they start from filled in)."""
    trials = part.trials if trials is None else trials
    tune_config = tune.TuneConfig(metric=METRIC, mode=MODE, scheduler=_scheduler(part),
                                  search_alg=_search_alg(part, folder), num_samples=1 if not part.search
                                  else part.search["samples"],
                                  max_concurrent_trials=sweep.max_concurrent or None,
                                  reuse_actors=reuses_workers(part))
    run_config = tune.RunConfig(
        name=part.part, storage_path=folder.tune_path(), storage_filesystem=folder.filesystem, verbose=0,
        sync_config=tune.SyncConfig(sync_period=REMOTE_SYNC_S) if folder.remote else None,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        # result.json first: the store callback builds rows from it
        callbacks=[JsonLoggerCallback(), CSVLoggerCallback(), ScalarTBXLogger(),
                   StoreAndProgress(sweep.name, sweep.store, part.n_trials, part.epochs, part=part.part),
                   TrackerCallback(_tracked(sweep, folder), str(folder.local_dir))]
        + ([KeepStudy(folder)] if part.search and folder.remote else []))
    return tune.Tuner(_trainable(part), param_space=param_space(trials, _run_settings(sweep, folder), part.search),
                      tune_config=tune_config, run_config=run_config)


def stage_trials(part: PartPlan, folder: SweepFolder) -> list[dict]:
    """A later stage's trials, each starting from the final checkpoint of the finished (done) trial of
    the group its "@group" names with its own seed, and saying which trial that was: named as the storage
    names it (a URI in an object store, which a trial on any node can read). A trial with no such source
    carries `init_error` instead and fails alone when it starts (trainable.py)."""
    if not part.depends_on:
        return part.trials
    source_dir = folder.view() / part.depends_on
    states, _ = tune_states(source_dir)
    finished = {}
    for trial in trial_dirs(source_dir):
        checkpoint = newest_checkpoint(trial.path)
        if trial.status(states.get(trial.trial_id)) == FINISHED and checkpoint is not None:
            finished[(trial.spec.group, trial.spec.config.get("seed"))] = (trial.trial_id, folder.uri_of(checkpoint))
    out = []
    for planned in part.trials:
        group, seed = stage_ref(planned["config"]), planned["config"]["seed"]
        if (group, seed) in finished:
            trial_id, checkpoint = finished[(group, seed)]
            out.append(dict(planned, init_from_trial=trial_id, config=dict(planned["config"], init_from=checkpoint)))
        else:
            out.append(dict(planned, init_error=f"init_from \"@{group}\": no {group} trial with seed {seed} finished "
                                                f"its budget in {part.depends_on}, so there are no trained weights "
                                                f"to start from"))
    return out


_START_ONE = "start one with `ray up CONFIG` or `ray start --head`, or drop --address to run locally"


def _locate(address: str) -> tuple[str, str]:
    """(HOST:PORT, where it came from) of `auto` or HOST:PORT, without waiting on the cluster. `auto`
    looks where Ray looks: RAY_ADDRESS, the file the last `ray start` wrote, a running GCS process."""
    if address != "auto":
        return address, "--address"
    try:  # Ray's own lookup (private: Ray versions other than the one tested may not have it)
        from ray._common.utils import get_ray_address_file
        from ray._private.services import find_bootstrap_address, find_gcs_addresses
    except ImportError:
        return address, ""  # ray.init("auto") looks itself, without the check in seconds
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    recorded = find_bootstrap_address(None)
    if recorded:
        return recorded, get_ray_address_file(None)
    running = find_gcs_addresses()
    if running:
        return running[0], "a Ray process on this machine"
    raise UsageError(f"--address auto found no Ray cluster on this machine (no RAY_ADDRESS, no `ray start`); "
                     f"{_START_ONE}")


def _check_reachable(address: str, timeout_s: float = 5.0) -> str:
    """HOST:PORT of a cluster that answers: fail in seconds, not minutes (ray.init retries a dead one
    for a long time, and `auto` may name a cluster that died without cleaning up)."""
    if "://" in address:  # ray:// (Ray Client): ray.init checks it itself
        return address
    resolved, source = _locate(address)
    if resolved == "auto":
        return resolved
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        stale = f" (found in {source}: a cluster that is gone leaves it behind; `ray stop` clears it)" \
            if address == "auto" else ""
        raise UsageError(f"cannot reach a Ray cluster at {resolved}{stale} ({exc}); {_START_ONE}") from None
    return resolved


def connect(address: str = "") -> bool:
    """Join a cluster (auto | HOST:PORT), or start Ray embedded on this machine.

    Embedded means a fresh local Ray whatever RAY_ADDRESS or Ray's "current cluster" file say: a plain
    ray.init() would join any cluster a `ray start` left behind, alive or dead. The one exception is a
    driver that Ray's Job server started: the Job's own cluster is the one it was submitted to.
    Returns whether this joined a cluster (False: embedded, or already connected in this process).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # we add the loggers ourselves
    # Tune's own console output: our progress line says what it would, and its start-up banner points
    # TensorBoard at the driver's temporary staging folder instead of the sweep's folder
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return False
    if not address and in_ray_job():
        address = "auto"
        print("running as a Ray Job: the sweep uses the Job's cluster", flush=True)
    if address:
        resolved = _check_reachable(address)
        try:
            ray.init(address=resolved, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot join the Ray cluster at {resolved} ({first_line(exc)}); {_START_ONE}") from None
        return True
    os.environ.pop("RAY_ADDRESS", None)  # nor may anything this process starts join it
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    return False


def gpu_supply(on_cluster: bool) -> gpus.GpuSupply:
    """The GPUs the connected Ray has, and on a cluster the GPU node types its autoscaler can start."""
    return gpus.gpu_supply(ray.cluster_resources(), on_cluster)


def _unfinished(part_dir: Path, part: PartPlan) -> bool:
    """Whether Tune returned with trials of the part left to run: its last saved state (written before it
    marks live trials terminated on the way out) has fewer trials than planned, or one not ended."""
    states, problem = tune_states(part_dir)
    if problem or not states:  # no readable state (gather said so): no grounds to stop the sweep
        return False
    return len(states) < part.n_trials or any(s not in ("TERMINATED", "ERROR") for s in states.values())


def execute(sweep: SweepPlan, resume: bool = False, parts: list | None = None) -> list[dict]:
    """Run (or resume) every part of a sweep in order (or only `parts`, settle's look); returns the trials
    rows of the failed trials. The plan saved is the whole sweep.

    After each part every trial's rows are rewritten from Tune's files (what `gather` writes), which
    also closes rows a killed driver left 'running', and the sweep's rows in the store are compacted.
    """
    folder = Storage(sweep.storage).sweep(sweep.name)
    if folder.remote and not resume:  # a new sweep of this name: a study left on this disk is another's
        (folder.local_dir / OPTUNA_DB).unlink(missing_ok=True)
    folder.save_plan(sweep)
    store = get_store(sweep.store)
    failed = []
    parts = sweep.parts if parts is None else parts
    for index, part in enumerate(parts, 1):
        if stopping.requested():  # a graceful stop (SLURM's time limit, preemption): no part starts after it
            break
        part_path, fs = folder.part_path(part.part), folder.filesystem
        restore = resume and tune.Tuner.can_restore(part_path, storage_filesystem=fs)
        print(f"[{sweep.name}] part {index}/{len(parts)}: {part.part}, {part.n_trials} trial(s) of "
              f"{part.epochs} epoch(s)" + (", resumed" if restore else ""), flush=True)
        if restore:
            if part.search:  # a new head: the study from the storage
                folder.fetch(folder.local_dir / OPTUNA_DB)
            # the scheduler refills its rungs from result.json (scheduler.py); finished trials stay done
            tuner = tune.Tuner.restore(part_path, trainable=_trainable(part), resume_unfinished=True,
                                       resume_errored=False, storage_filesystem=fs)
        else:
            tuner = build_tuner(part, sweep, folder, stage_trials(part, folder))
        tuner.fit()
        if part.search and folder.remote:
            KeepStudy(folder).keep(force=True)
        part_dir = folder.view() / part.part
        rows = gather_part(part_dir, sweep.name, store, warn=lambda line: print(f"[{sweep.name}] {line}"))
        if not stopping.requested() and _unfinished(part_dir, part):
            stopping.interrupted()  # Tune caught Ctrl+C and returned: nothing after this part may start
        failed += [row for _, row in rows if row["status"] == "failed"]
        store.compact(sweep.name)
    if sweep.track and not stopping.requested() and parts is sweep.parts:  # the whole sweep ran to its end
        finish_sweep(sweep, tuple(sweep.track), folder.local_dir)
    return failed
