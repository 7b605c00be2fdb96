"""The driver's view of a running part: each trial's rows written to the store, and a progress line.

Rows come from the trial's own Tune folder through `records.trial_rows` (the one record function), after
Tune's JSON logger has appended the epoch to result.json, so what is stored live is what `gather` would
write. A trial's rows are rewritten whole (atomically) at most every `flush_s` seconds and whenever it
checkpoints, finishes, is pruned or fails. The progress line names the part, counts trials by state (a
trial counts as running from the moment it starts, before its first report) and estimates the time left:
every unfinished trial's remaining epochs at the seconds per epoch seen so far for its kind of variant
(an SCS epoch costs several conv epochs), divided by the trials running at once.
"""
from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from common.vocabulary import ENDED
from results.store import get_store

from .records import count_line, read_trial_dir, trial_rows
from .scheduler import METRIC
from .tune_config import trial_spec

__all__ = ["StoreAndProgress", "eta_text"]


def eta_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class StoreAndProgress(tune.Callback):
    """Writes each trial's rows as results arrive and prints a one-line progress view with an ETA."""

    def __init__(self, experiment: str, store: str, n_trials: int, epochs: int, flush_s: float = 20.0,
                 progress_s: float = 10.0, part: str = ""):
        self.experiment, self.store_uri, self.part = experiment, store, part or experiment
        self.n_trials, self.epochs = n_trials, epochs
        self.flush_s, self.progress_s = flush_s, progress_s
        self.last_flush, self.epochs_done, self.state = {}, {}, {}
        self.epoch_seconds = {}          # variant kind -> seconds of each epoch reported
        self.best = (None, None)
        self.warned = set()              # trials whose compile fallback was already printed
        self._last_progress = 0.0

    def __getstate__(self):  # Tune pickles callbacks with the experiment: keep no live state
        state = dict(self.__dict__)
        state.update(last_flush={}, epochs_done={}, state={}, epoch_seconds={}, best=(None, None), warned=set())
        return state

    def _print(self, line: str) -> None:
        print(line, flush=True)

    def flush(self, trial, tune_state: str) -> dict | None:
        """Rewrite one trial's rows from its folder; returns its trials row."""
        record = read_trial_dir(Path(trial.local_path))
        if record is None:
            return None
        rows = trial_rows(record, self.experiment, tune_state)
        get_store(self.store_uri).write_trial(self.experiment, record.trial_id, rows)
        self.last_flush[trial.trial_id] = time.time()
        self.epochs_done[trial.trial_id] = record.epochs_done
        self.state[trial.trial_id] = rows["trials"][0]["status"]
        return rows["trials"][0]

    def _ended_before(self, trial) -> None:
        """A trial that ended before a resume is counted as it ended (done, pruned, failed), with its epochs:
        the progress line of a resumed sweep covers every trial, not only those this run trains."""
        record = read_trial_dir(Path(trial.local_path)) if trial.local_path else None
        if record is None:  # nothing reported: left uncounted, as before
            self.state[trial.trial_id] = trial.status.lower()
            return
        self.state[trial.trial_id] = trial_rows(record, self.experiment, trial.status)["trials"][0]["status"]
        self.epochs_done[trial.trial_id] = record.epochs_done

    def on_trial_start(self, iteration, trials, trial, **info):
        self.state[trial.trial_id] = "running"
        self._progress(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial.trial_id
        if result.get("compile_error") and tid not in self.warned:
            self.warned.add(tid)
            self._print(f"[{self.experiment}] trial {tid}: {result['compile_error']}")
        if result.get("time_this_iter_s"):
            self.epoch_seconds.setdefault(_kind(trial), []).append(float(result["time_this_iter_s"]))
        self.epochs_done[tid] = max(self.epochs_done.get(tid, 0), int(result.get("epoch", 0)))
        self.state[tid] = "running"
        acc = result.get(METRIC)
        if acc is not None and acc == acc and (self.best[0] is None or acc > self.best[0]):  # NaN: a failure
            self.best = (acc, tid)
        if result.get("should_checkpoint") or time.time() - self.last_flush.get(tid, 0) > self.flush_s:
            self.flush(trial, "RUNNING")
        self._progress(trials)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.flush(trial, "RUNNING")

    def on_trial_complete(self, iteration, trials, trial, **info):
        # after a resume, a trial restored from its final checkpoint completes without reporting; a trial
        # that reported its own failure (not retried) completes too, and its row says failed
        self._say_if_failed(trial, self.flush(trial, "TERMINATED"))
        self._progress(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say_if_failed(trial, self.flush(trial, "ERROR"))

    def _say_if_failed(self, trial, row: dict | None) -> None:
        if row and row["status"] == "failed":
            self._print(f"[{self.experiment}] trial {trial.trial_id} failed: {row.get('error') or '?'}")

    def _eta(self, trials) -> str:
        """Seconds of work left over the trials running at once (an upper bound while ASHA may still
        stop trials early). A trial's epochs cost what epochs of its kind cost so far, else the mean."""
        if not self.epoch_seconds:
            return ""
        mean = {kind: sum(s) / len(s) for kind, s in self.epoch_seconds.items()}
        overall = sum(mean.values()) / len(mean)
        work = 0.0
        for t in trials:
            if self.state.get(t.trial_id) in ENDED or t.status in ("TERMINATED", "ERROR"):
                continue
            work += (self.epochs - self.epochs_done.get(t.trial_id, 0)) * mean.get(_kind(t), overall)
        work += max(0, self.n_trials - len(trials)) * self.epochs * overall  # not created yet (a search)
        running = max(1, sum(t.status == "RUNNING" for t in trials))
        return f"; ETA {eta_text(work / running)}"

    def _progress(self, trials, force: bool = False) -> None:
        if not force and time.time() - self._last_progress < self.progress_s:
            return
        self._last_progress = time.time()
        for t in trials:
            if t.trial_id not in self.state and t.status in ("TERMINATED", "ERROR"):
                self._ended_before(t)
        best = f"{self.best[0]:.4f} ({self.best[1]})" if self.best[0] is not None else "-"
        parts = count_line(self.state.get(t.trial_id) or t.status.lower() for t in trials)
        done = sum(self.epochs_done.values())
        where = self.experiment if self.part == self.experiment else f"{self.experiment}/{self.part}"
        self._print(f"[{where}] {len(trials)}/{self.n_trials} trials: {parts}; best {METRIC} {best}; "
                    f"{done}/{self.n_trials * self.epochs} epochs{self._eta(trials)}")


def _kind(trial) -> tuple:
    """What sets an epoch's cost: the model and its layer, pooling and normalization."""
    try:
        c = trial_spec(trial.config).config
    except (KeyError, TypeError, AttributeError):
        return ()
    return (c.get("arch"), c.get("layer"), c.get("pooling"), c.get("normalization"), c.get("image_dim"),
            c.get("n_train"), c.get("batch_size"))
