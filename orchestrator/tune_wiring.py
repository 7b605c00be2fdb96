"""Ray Tune wiring: the trainable, ASHA that survives a resume, the store/progress callback, Tuners.

The only module that imports ray. The trainable is a thin adapter: it builds a TrialConfig, restores a
checkpoint if Tune hands one over, runs `Trainer.train_epoch()` and reports each epoch (`_report`).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from results.rows import read_trial_dir, rows_for_trial, trial_config_of
from results.store import get_store

from .errors import UsageError
from .plan import RunPlan, SweepPlan

METRIC, MODE = "test_acc", "max"
CHECKPOINT_FILE = "trainer.pt"
DIVERGED_MARKER = "diverged.txt"


def code_version() -> str:
    try:
        here = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        return sha or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# The trainable
# ---------------------------------------------------------------------------------------------
def _report(metrics: dict, trainer=None) -> None:
    """The one place that talks to Tune from inside a trial (the report API changed across versions)."""
    if trainer is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trainer.save(Path(tmp) / CHECKPOINT_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def train_scs(config: dict) -> None:
    """Function trainable: one trial of any preset."""
    import torch

    from trainables import NonFiniteLossError, Trainer, TrialConfig

    run = config.get("run", {})
    flat = trial_config_of(config)
    flat.pop("group", None)
    cfg = TrialConfig.from_dict(flat)
    context = tune.get_context()
    marker = Path(context.get_trial_dir()) / DIVERGED_MARKER
    if marker.exists():  # a retry of a diverged trial would only diverge again
        raise NonFiniteLossError(marker.read_text())
    torch.set_num_threads(max(1, int(run.get("cpus_per_trial", 1))))
    trainer = Trainer(cfg, compile=run.get("compile", "auto"))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load(Path(d) / CHECKPOINT_FILE)
    provenance = {
        "params": trainer.n_params, "host": socket.gethostname(),
        "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu",
        "torch_version": torch.__version__, "ray_version": ray.__version__,
        "code_version": run.get("code_version", "unknown"), "config_hash": cfg.config_hash(),
        "trial_config": cfg.to_dict(),  # the resolved config (arch defaults filled in) for the store
        "node_id": ray.get_runtime_context().get_node_id(),  # which cluster node ran this epoch
        "compile_s": trainer.warm_up(),  # compile + CUDA-graph capture before epoch 1 (0 when eager)
    }
    every = max(1, int(run.get("checkpoint_every", 10)))
    while not trainer.done:
        try:
            result = trainer.train_epoch()
        except NonFiniteLossError as exc:
            marker.write_text(str(exc))
            raise
        metrics = result.metrics()
        metrics["layers"] = [vars(layer) for layer in result.layers]
        metrics.update(provenance)
        if trainer.done and run.get("evaluation") is not None:  # PGD and saliency on the final model
            from trainables.evaluation import EvalSettings, evaluate_model

            metrics.update(evaluate_model(trainer.model, trainer.test_set, cfg.image_dim,
                                          EvalSettings.from_dict(run["evaluation"])))
        _report(metrics, trainer if trainer.epoch % every == 0 or trainer.done else None)


# ---------------------------------------------------------------------------------------------
# ASHA that keeps its rung history across a resume (ray-project/ray#30838)
# ---------------------------------------------------------------------------------------------
class ResumableASHA(ASHAScheduler):
    """ASHA with one bracket whose rungs are re-filled from the trials' stored results on resume.

    Tune restores the scheduler as it was built, with empty rungs, so a resumed sweep would compare
    later trials against fewer (or no) records than the uninterrupted one. Seeding replays each trial's
    recorded metric at every rung milestone it passed, which is exactly what the rung held before.
    """

    def __init__(self, history: dict | None = None, **kwargs):
        super().__init__(brackets=1, **kwargs)
        self.seed_history(history or {})

    def seed_history(self, history: dict) -> None:
        """history: trial_id -> [(iteration, metric), ...] in reported order."""
        op = 1.0 if self._mode == "max" else -1.0
        bracket = self._brackets[0]
        for trial_id, series in history.items():
            for milestone, recorded in bracket._rungs:
                passed = [value for it, value in series if it >= milestone]
                if passed and trial_id not in recorded:
                    recorded[trial_id] = op * passed[0]


def history_from_experiment(experiment_dir: Path) -> dict:
    """trial_id -> [(epoch, test_acc)] read from every trial's result.json."""
    history = {}
    for params in experiment_dir.rglob("params.json"):
        _, results, _ = read_trial_dir(params.parent)
        if results:
            history[results[-1]["trial_id"]] = [(r["training_iteration"], r[METRIC]) for r in results
                                                if METRIC in r]
    return history


# ---------------------------------------------------------------------------------------------
# Store writer and progress view (driver side)
# ---------------------------------------------------------------------------------------------
class StoreAndProgress(tune.Callback):
    """Writes each trial's rows to the store as results arrive, and prints a one-line progress view.

    A trial's rows are rewritten whole (atomically) at most every `flush_s` seconds and whenever it
    checkpoints, finishes, is pruned or fails; rows already in the store from before a resume are
    loaded first, so a resumed trial's file keeps its earlier epochs.
    """

    def __init__(self, experiment: str, store: str, epochs: int, flush_s: float = 20.0,
                 progress_s: float = 10.0):
        self.experiment, self.store_uri, self.epochs = experiment, store, epochs
        self.flush_s, self.progress_s = flush_s, progress_s
        self.results, self.configs, self.last_flush, self.status = {}, {}, {}, {}
        self.errors, self.started = {}, {}
        self.best = (None, None)
        self._last_progress = 0.0

    def __getstate__(self):  # Tune pickles callbacks with the experiment: keep no live rows
        state = dict(self.__dict__)
        state.update(results={}, configs={}, last_flush={}, status={}, errors={}, started={})
        return state

    def _print(self, line: str) -> None:
        print(line, flush=True)

    def _load_previous(self, trial) -> list:
        """The trial's results from before this driver started: Tune's result.json where it is readable
        (a kill can leave the store up to one flush behind it), else the rows in the store."""
        trial_id = trial.trial_id
        store = get_store(self.store_uri)
        stored = self._stored_results(store, trial_id) if store.exists() else []
        try:
            _, recorded, _ = read_trial_dir(Path(trial.local_path))
        except (OSError, ValueError, AttributeError):
            recorded = []
        recorded = [r for r in recorded if "epoch" in r]
        return recorded if len(recorded) >= len(stored) and recorded else stored

    def _stored_results(self, store, trial_id: str) -> list:
        rows = store.read_trial(self.experiment, trial_id)
        layers_by_epoch = {}
        for row in rows["layers"]:
            layers_by_epoch.setdefault(row["epoch"], []).append(row)
        out = []
        for row in rows["epochs"]:
            out.append(dict(row, layers=layers_by_epoch.get(row["epoch"], [])))
        if rows["trials"]:
            t = rows["trials"][0]
            out = [dict(r, **{k: t[k] for k in ("params", "gpu", "host", "code_version", "torch_version",
                                                 "ray_version", "config_hash") if t.get(k)}) for r in out]
            self.started.setdefault(trial_id, t.get("started_at") or "")
        return out

    def on_trial_start(self, iteration, trials, trial, **info):
        self.status[trial.trial_id] = "running"
        self.started.setdefault(trial.trial_id, time.strftime("%Y-%m-%dT%H:%M:%S"))

    def _track(self, trial) -> str:
        """Load a trial's earlier rows the first time this driver hears of it, from any callback.

        After a resume, a trial restored from its final checkpoint completes without reporting.
        """
        tid = trial.trial_id
        if tid not in self.results:
            self.results[tid] = self._load_previous(trial)
            self.configs[tid] = trial_config_of(trial.config)
        return tid

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = self._track(trial)
        self.results[tid].append(result)
        self.status[tid] = "running"
        acc = result.get(METRIC)
        if acc is not None and (self.best[0] is None or acc > self.best[0]):
            self.best = (acc, tid)
        if result.get("should_checkpoint") or time.time() - self.last_flush.get(tid, 0) > self.flush_s:
            self.flush(tid)
        self._progress(trials)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trial.trial_id in self.results:
            self.flush(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = self._track(trial)
        done = max(len({int(r["epoch"]) for r in self.results[tid] if "epoch" in r}),
                   (trial.last_result or {}).get("training_iteration", 0))
        epochs = self.configs[tid].get("epochs", self.epochs)
        self.status[tid] = "done" if done >= epochs else "pruned"
        self.flush(tid, ended=True)
        self._progress(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = self._track(trial)
        self.status[tid] = "failed"
        self.errors[tid] = _error_line(trial)
        self.flush(tid, ended=True)
        self._print(f"[{self.experiment}] trial {tid} failed: {self.errors[tid]}")

    def flush(self, tid: str, ended: bool = False) -> None:
        rows = rows_for_trial(self.experiment, tid, self.configs[tid], self.results[tid],
                              self.status.get(tid, "running"), self.errors.get(tid, ""),
                              self.started.get(tid, ""),
                              time.strftime("%Y-%m-%dT%H:%M:%S") if ended else "")
        get_store(self.store_uri).write_trial(self.experiment, tid, rows)
        self.last_flush[tid] = time.time()

    def _progress(self, trials, force: bool = False) -> None:
        if not force and time.time() - self._last_progress < self.progress_s:
            return
        self._last_progress = time.time()
        counts = {}
        for t in trials:
            state = self.status.get(t.trial_id) or t.status.lower()
            counts[state] = counts.get(state, 0) + 1
        best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best[0] is not None else "-"
        parts = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("running", "done", "pruned", "failed",
                                                               "pending"))
        self._print(f"[{self.experiment}] {len(trials)} trials: {parts}; best {METRIC} {best}")


def _error_line(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text().strip().splitlines() if path else []
    except OSError:
        text = []
    for line in reversed(text):
        if "Error" in line:
            return line.strip()[:500]
    return (text[-1] if text else "unknown error")[:500]


# ---------------------------------------------------------------------------------------------
# Tuner construction, run, resume
# ---------------------------------------------------------------------------------------------
def param_space(run: RunPlan, sweep: SweepPlan, cpus_per_trial: int, init_from: str = "") -> dict:
    overrides = dict(run.overrides)
    variants = [dict(v) for v in run.variants]
    if init_from:
        for v in variants:
            v["init_from"] = init_from
    space = {
        "overrides": overrides,
        "run": {"checkpoint_every": sweep.checkpoint_every, "cpus_per_trial": cpus_per_trial,
                "code_version": code_version(), "evaluation": sweep.evaluation,
                "compile": sweep.compile},
    }
    if run.search:
        space["variant"] = variants[0]
        s = run.search
        space[s["key"]] = (tune.loguniform if s["log"] else tune.uniform)(s["low"], s["high"])
        space["seed_offset"] = run.seeds[0]
    else:
        space["variant"] = tune.grid_search(variants)
        space["seed_offset"] = tune.grid_search(run.seeds) if len(run.seeds) > 1 else run.seeds[0]
    return space


def _scheduler(run: RunPlan, sweep: SweepPlan, history: dict | None = None):
    if not sweep.prune:
        return FIFOScheduler()
    epochs = run.overrides["epochs"]
    return ResumableASHA(history=history, time_attr="training_iteration", max_t=max(epochs, 1),
                         grace_period=max(1, min(epochs // 16, 50)), reduction_factor=4)


CPUS_PER_TRIAL = 1


def _trainable(run: RunPlan):
    return tune.with_resources(train_scs, {"cpu": CPUS_PER_TRIAL, "gpu": run.gpus_per_trial})


def build_tuner(run: RunPlan, sweep: SweepPlan, experiment_root: Path, init_from: str = "") -> tune.Tuner:
    trainable = _trainable(run)
    search_alg = None
    num_samples = 1
    if run.search:
        from ray.tune.search.optuna import OptunaSearch
        import optuna

        search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=run.variants[0].get("seed", 0)),
                                  metric=METRIC, mode=MODE)
        num_samples = run.search["num_samples"]
    tune_config = tune.TuneConfig(metric=METRIC, mode=MODE, scheduler=_scheduler(run, sweep),
                                  search_alg=search_alg, num_samples=num_samples,
                                  max_concurrent_trials=sweep.max_concurrent or None,
                                  # a worker process runs trial after trial, so what torch.compile
                                  # built for an architecture serves every later trial of it
                                  reuse_actors=True)
    run_config = tune.RunConfig(
        name=run.part, storage_path=str(experiment_root), verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        # result.json (what `gather` reads) and progress.csv; no TensorBoard logger, which cannot
        # log the per-layer rows and warns about them every epoch.
        callbacks=[JsonLoggerCallback(), CSVLoggerCallback(),
                   StoreAndProgress(sweep.name, sweep.store, run.overrides["epochs"])])
    return tune.Tuner(trainable, param_space=param_space(run, sweep, CPUS_PER_TRIAL, init_from),
                      tune_config=tune_config, run_config=run_config)


def _final_checkpoint_of(experiment_dir: Path) -> str:
    """The newest trainer checkpoint of the (single) trial of a finished part (weight-norms stage 1)."""
    found = sorted(experiment_dir.rglob(CHECKPOINT_FILE), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"no checkpoint in {experiment_dir} to start the next stage from")
    return str(found[-1])


def _init_from_for(run: RunPlan, sweep_dir: Path) -> str:
    if not run.depends_on:
        return ""
    target = next(v.get("init_from", "") for v in run.variants)
    group = target.lstrip("@")
    for params in (sweep_dir / run.depends_on).rglob("params.json"):
        cfg = trial_config_of(json.loads(params.read_text()))
        if cfg.get("group") == group:
            return _final_checkpoint_of(params.parent)
    raise RuntimeError(f"stage {run.part} needs the trained {group} run, which has no checkpoint yet")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes: ray.init retries an unreachable GCS for a long time."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot reach a Ray cluster at {address!r} ({exc}); start it with "
                         f"`ray up cluster.yaml` or `ray start --head`, or drop --address to run "
                         f"locally") from None


def connect(address: str = "") -> None:
    """Join a cluster (auto | HOST:PORT), or start Ray embedded on this machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # we add the JSON and CSV loggers ourselves
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"cannot reach a Ray cluster at {address!r} ({first}); start it with "
                             f"`ray up cluster.yaml` or `ray start --head`, or drop --address to run "
                             f"locally") from None
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(include_dashboard=False, log_to_driver=False)


def execute(sweep: SweepPlan, resume: bool = False) -> dict:
    """Run (or resume) every part of a sweep in order; returns {part: ResultGrid}."""
    sweep_dir = Path(sweep.storage) / sweep.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    sweep.save(sweep_dir / "sweep.json")
    grids = {}
    for run in sweep.runs:
        part_dir = sweep_dir / run.part
        init_from = _init_from_for(run, sweep_dir)
        if resume and tune.Tuner.can_restore(str(part_dir)):
            tuner = tune.Tuner.restore(str(part_dir), trainable=_trainable(run), resume_unfinished=True,
                                       resume_errored=False)
            if sweep.prune:
                # Tune rebuilds the scheduler with empty rungs (ray#30838): refill them.
                tuner._local_tuner._tune_config.scheduler = _scheduler(
                    run, sweep, history_from_experiment(part_dir))
        else:
            tuner = build_tuner(run, sweep, sweep_dir, init_from)
        grids[run.part] = tuner.fit()
        reconcile_store(part_dir, sweep)
    return grids


def reconcile_store(part_dir: Path, sweep: SweepPlan) -> int:
    """Rewrite the rows of every trial whose stored status is not final, from Tune's files.

    A driver killed between a trial's last report and its completion leaves that trial's row
    'running'; resume does not run a finished trial again, so nothing else would correct it.
    After fit() returns, a trial that ended early without an error was stopped by the scheduler.
    """
    from results.rows import gather_experiment

    return gather_experiment(part_dir, sweep.name, get_store(sweep.store), ended_early="pruned",
                             keep_final=True)


def status(sweep_dir: Path) -> list[dict]:
    """Trials of every part with their state, from Tune's experiment state."""
    from ray.tune import ExperimentAnalysis

    rows = []
    for part_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        try:
            analysis = ExperimentAnalysis(str(part_dir))
        except Exception:  # a part that has not started has no experiment state yet
            continue
        for trial in analysis.trials:
            last = trial.last_result or {}
            epochs = trial_config_of(trial.config).get("epochs", 0)
            state = trial.status.lower()
            if state == "terminated":
                state = "done" if last.get("training_iteration", 0) >= epochs else "pruned"
            elif state == "error":
                state = "failed"
            rows.append({"part": part_dir.name, "trial_id": trial.trial_id, "state": state,
                         "epoch": last.get("training_iteration", 0), "epochs": epochs,
                         METRIC: last.get(METRIC)})
    return rows
