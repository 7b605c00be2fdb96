"""ASHA that keeps its rung history across a resume (ray-project/ray#30838).

Tune restores a sweep's scheduler as it was built, with empty rungs, so a resumed sweep would compare
later trials against fewer (or no) records than the uninterrupted one and let through trials the
uninterrupted run would have stopped. ResumableASHA refills its rungs itself: the first time Tune adds a
trial, it reads every trial's recorded results (result.json) in the experiment's storage folder (not
the driver's staging copy, which a new driver has not filled yet; an object store's through a local
mirror, storage.py) and replays them. On a new sweep that folder holds no results, and nothing happens.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

from .records import trial_dirs
from .storage import mirror

__all__ = ["ResumableASHA", "history_from_experiment", "METRIC", "MODE"]

METRIC, MODE = "test_acc", "max"


class _Replayed:
    """Stands in for a trial whose results are replayed (the scheduler only reads `trial_id`)."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


class ResumableASHA(ASHAScheduler):
    """ASHA with one bracket whose rungs are refilled from the trials' stored results on resume."""

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None, **kwargs):
        super().__init__(time_attr=time_attr, metric=metric, brackets=1, **kwargs)
        self._replay_keys = (time_attr, metric or METRIC)
        self._history_loaded = False

    def on_trial_add(self, tune_controller, trial):
        if not self._history_loaded:
            self._history_loaded = True
            with _experiment_folder(trial) as folder:
                history = history_from_experiment(folder)
            if history:
                self.seed_history(history)
                print(f"ASHA: rungs refilled from the recorded results of {len(history)} trial(s)", flush=True)
        super().on_trial_add(tune_controller, trial)

    def seed_history(self, history: dict) -> None:
        """history: trial_id -> [(iteration, metric), ...] in reported order.

        Replays each trial's results through ASHA's own public callbacks and then forgets the trial:
        at each rung milestone it passed, the rung records the metric it reported when it first reached
        that milestone, exactly what the uninterrupted scheduler recorded (decisions are discarded).
        """
        time_attr, metric = self._replay_keys
        for trial_id, series in history.items():
            ghost = _Replayed(trial_id)
            super().on_trial_add(None, ghost)
            for iteration, value in series:
                super().on_trial_result(None, ghost, {time_attr: iteration, metric: value})
            super().on_trial_remove(None, ghost)


@contextmanager
def _experiment_folder(trial):
    """The local folder holding the experiment's recorded results: the storage folder itself, or a mirror
    of an object store's (in a temporary folder, removed after)."""
    storage = getattr(trial, "storage", None)
    fs, path = getattr(storage, "storage_filesystem", None), getattr(storage, "experiment_fs_path", None)
    if not path:
        yield None
    elif fs is None or fs.type_name == "local":
        yield Path(path)
    else:
        with tempfile.TemporaryDirectory(prefix="scs-asha-") as tmp:
            yield mirror(fs, path, Path(tmp))


def history_from_experiment(experiment_dir: Path | None) -> dict:
    """trial_id -> [(epoch, test_acc)] from every trial's result.json under a Tune experiment folder."""
    if experiment_dir is None:
        return {}
    return {t.trial_id: [(r["training_iteration"], r[METRIC]) for r in t.results if METRIC in r]
            for t in trial_dirs(experiment_dir) if t.results}
