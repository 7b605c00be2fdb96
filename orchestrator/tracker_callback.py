"""The Tune callback that feeds the experiment trackers from a sweep's driver: one run per trial for its
whole life, epochs logged once a checkpoint covers them (trackers.py says why, and what each run holds)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ray import tune

from common.errors import first_line

from .records import FAILURE_KEY, read_trial_dir
from .trackers import EPOCH_METRICS, TRACK_ENV, TRACKERS, MLflowRuns, WandbRuns, fail_fast_env, parse_track
from .tune_config import trial_spec

__all__ = ["TrackerCallback"]


def _reported(trial) -> dict:
    """epoch -> the trial's result for it, as Tune's result.json holds it (the store's own source): the last
    report of each epoch, which for the epochs of the checkpoint a trial resumed from is the one it kept."""
    record = read_trial_dir(Path(trial.local_path)) if trial.local_path else None
    rows = {}
    for result in record.results if record else []:
        if FAILURE_KEY not in result and isinstance(result.get("epoch"), int):
            rows[result["epoch"]] = {"epoch": result["epoch"], **{k: result.get(k) for k in EPOCH_METRICS}}
    return rows


class TrackerCallback(tune.Callback):
    """The trackers of $SCS_TRACK, fed from Tune's events on the driver (see the module docstring)."""

    def __init__(self, sweep: dict, local_dir: str = ""):
        self.sweep, self.local_dir = sweep, local_dir
        self.runs: dict = {}        # trial id -> {tracker: run id}
        self.logged: dict = {}      # trial id -> {tracker: the last epoch it has logged}
        self.best: dict = {}        # trial id -> its best test accuracy logged (the trials row's val_acc)
        self._live: dict = {}       # tracker -> its client (in this process only)
        self._opened: dict = {}     # trial id -> the trackers whose run this process has (re)opened
        self._pending: dict = {}    # trial id -> [epoch results not yet covered by a checkpoint]
        self._said: set = set()

    def __getstate__(self):
        return dict(self.__dict__, _live={}, _opened={}, _pending={}, _said=set())

    def get_state(self) -> dict:
        return {"runs": self.runs, "logged": self.logged, "best": self.best}

    def set_state(self, state: dict) -> None:
        self.runs = dict(state.get("runs", {}))
        # a state saved before epochs were counted per tracker holds one number for all of them
        self.logged = {t: dict(n) if isinstance(n, dict) else {k: n for k in TRACKERS}
                       for t, n in state.get("logged", {}).items()}
        self.best = dict(state.get("best", {}))

    # -- the trackers ------------------------------------------------------------------------------
    def setup(self, **info) -> None:
        fail_fast_env()
        kinds = parse_track(os.environ.get(TRACK_ENV, ""))
        local = Path(self.local_dir) if self.local_dir else None
        for kind in kinds:
            self._guard(kind, lambda k=kind: self._live.__setitem__(
                k, (MLflowRuns if k == "mlflow" else WandbRuns)(self.sweep, local)))

    def _guard(self, kind: str, call):
        """call(); a tracker that fails is said once and left out from then on: the sweep goes on."""
        if kind not in TRACKERS:
            return None
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - whatever a tracker's client raises, the trial must not fail
            if kind not in self._said:
                self._said.add(kind)
                print(f"scs-sweep: {kind} failed ({type(exc).__name__}: {first_line(exc, 200)}); the sweep goes on "
                      f"without it (the store is the record)", file=sys.stderr, flush=True)
            self._live.pop(kind, None)
            return None

    def _run(self, kind: str, trial) -> str:
        """The trial's run in a tracker, opened in this process the first time it is needed (a new run, or the
        one it had: a resumed driver reopens it), and the epochs that run holds."""
        runs = self.runs.setdefault(trial.trial_id, {})
        opened = self._opened.setdefault(trial.trial_id, set())
        if kind not in opened:
            client = self._live[kind]
            runs[kind] = client.start(trial.trial_id, trial_spec(trial.config), runs.get(kind, ""))
            opened.add(kind)
            # the run itself is asked what it holds: the count saved with Tune's state can be behind it (a
            # driver killed after MLflow took a checkpoint's epochs but before Tune saved its state: the trial
            # re-runs those epochs from the checkpoint before, and they must not be logged twice) or ahead of it
            # (W&B keeps a run's data for sure only once the run is finished), or lost with the driver
            self.logged.setdefault(trial.trial_id, {})[kind] = client.logged_epochs(runs[kind])
        return runs[kind]

    def _flush(self, trial, upto: int | None, extra: dict | None = None) -> None:
        """Log the trial's epochs up to `upto` (all: None) that each tracker does not hold yet: those pending,
        and, for a tracker that lost some (a resumed run), those of its checkpoint from the trial's results."""
        tid = trial.trial_id
        pending = self._pending.get(tid, [])
        ready = {r["epoch"]: r for r in pending if upto is None or r["epoch"] <= upto}
        self._pending[tid] = [r for r in pending if upto is not None and r["epoch"] > upto]
        last = upto if upto is not None else max([*ready, int((trial.last_result or {}).get("epoch", 0) or 0)])
        for kind in list(self._live):
            def log(k=kind):
                run_id = self._run(k, trial)
                done = self.logged[tid].get(k, 0)
                rows = {e: r for e, r in ready.items() if e > done}
                if min([*rows, last + 1]) > done + 1:  # a gap: epochs this run lost, restored from a checkpoint
                    rows = {**{e: r for e, r in _reported(trial).items() if done < e <= last}, **rows}
                rows = [rows[e] for e in sorted(rows)]
                self._live[k].log(run_id, rows, dict(extra) if extra else None)
                if rows:
                    self.logged[tid][k] = max(done, rows[-1]["epoch"])
                    accs = [r["test_acc"] for r in rows if isinstance(r.get("test_acc"), (int, float))]
                    self.best[tid] = max([self.best.get(tid, -1.0), *accs])
            self._guard(kind, log)

    # -- Tune's events -------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        for kind in list(self._live):
            self._guard(kind, lambda k=kind: self._run(k, trial))

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if FAILURE_KEY in result or "epoch" not in result:
            return
        rows = self._pending.setdefault(trial.trial_id, [])
        rows[:] = [r for r in rows if r["epoch"] != result["epoch"]] + [
            {"epoch": int(result["epoch"]), **{k: result.get(k) for k in EPOCH_METRICS}}]

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        last = (trial.last_result or {}).get("epoch")
        if last is not None:
            self._flush(trial, int(last))

    def on_trial_complete(self, iteration, trials, trial, **info):
        """Every epoch logged, then the trials row's values (val_acc: the best test accuracy, final_acc: the
        last) and the status: FAILED (its own failure), KILLED (pruned before its budget) or FINISHED."""
        result = trial.last_result or {}
        failed = FAILURE_KEY in result
        epochs = int(trial_spec(trial.config).config.get("epochs", 0) or 0)
        last_acc = result.get("test_acc") if isinstance(result.get("test_acc"), (int, float)) else None
        self._flush(trial, None)
        # val_acc as the store computes it, from every epoch of the trial's results: the epochs logged by this
        # driver can be fewer (those a tracker already held when a resumed trial re-ran them are not logged again)
        accs = [r["test_acc"] for r in _reported(trial).values() if isinstance(r.get("test_acc"), (int, float))]
        best = max(accs) if accs else self.best.get(trial.trial_id, last_acc)
        for kind in list(self._live):
            self._guard(kind, lambda k=kind: self._final(k, trial, failed, last_acc, best, epochs))

    def _final(self, kind: str, trial, failed: bool, last_acc, best, epochs: int) -> None:
        client, run_id = self._live[kind], self._run(kind, trial)
        last_epoch = self.logged[trial.trial_id].get(kind, 0)
        status = "FAILED" if failed else ("FINISHED" if last_epoch >= epochs else "KILLED")
        if not failed and last_acc is not None:
            client.log(run_id, [], {"final_acc": last_acc, "val_acc": best, "_step": last_epoch})
        client.end(run_id, status)

    def on_trial_error(self, iteration, trials, trial, **info):
        for kind in list(self._live):
            self._guard(kind, lambda k=kind: self._live[k].end(self._run(k, trial), "FAILED"))

    def on_experiment_end(self, trials, **info):
        for kind in list(self._live):
            self._guard(kind, lambda k=kind: self._live[k].end_sweep({}) if k == "wandb" else None)
