"""A trial's store rows from its Tune directory: the one path from what Tune recorded to the store.

The live store callback (while a part runs), the reconcile after each part and `scs-sweep gather` all
call `trial_rows`, so they write identical rows. Everything comes from files Tune writes: the trial's
params.json (its planned config, tune_config.py), result.json (one line per reported epoch, the last
report of an epoch wins) and error.txt, plus the part's experiment_state-*.json for the trial's state
when the caller does not know it. `trial_status` is the one rule for done / pruned / failed / ....
No ray import: `status` and `gather` run without it.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common import defaults
from common.vocabulary import COUNTED, FINISHED, STATUSES
from results.rows import epoch_timeline, rows_for_trial

from .tune_config import TrialSpec, trial_spec

__all__ = ["TrialDir", "read_trial_dir", "trial_status", "count_line", "trial_rows", "tune_states", "trial_dirs",
           "scan_part", "gather_part", "gather_path", "sweep_status", "sweep_name_of", "trial_id_of",
           "newest_checkpoint", "STATUSES", "FAILURE_KEY"]

FAILURE_KEY = "failure"   # the trainable's last report when it ended a trial as failed (trainable.py)


@dataclass
class TrialDir:
    path: Path
    trial_id: str
    spec: TrialSpec
    results: list           # result.json lines, in order (a resumed trial may repeat epochs)
    error: str              # the failure the trial reported, else the last line of error.txt, else ""

    @property
    def epochs_done(self) -> int:
        return len(epoch_timeline(self.results))

    @property
    def reported_failure(self) -> bool:
        """The trial ended itself as failed (a data or config error, a diverged loss): not retried."""
        return bool(self.results) and FAILURE_KEY in self.results[-1]

    def status(self, tune_state: str | None) -> str:
        """This trial's status by the one rule, given Tune's state of it (None where nothing says it)."""
        return trial_status(self.epochs_done, self.spec.config.get("epochs", 0), self.error, tune_state,
                            self.reported_failure)


def newest_checkpoint(trial_folder: Path) -> Path | None:
    """The newest checkpoint file under a trial's folder: the one in the highest checkpoint_NNNNNN folder Tune
    numbered (None when the trial saved none)."""
    found = sorted(trial_folder.rglob(defaults.CHECKPOINT_FILE), key=lambda p: p.parent.name)
    return found[-1] if found else None


_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_")  # Tune's trial dirs: <trainable>_<hash>_<index>_...


def trial_id_of(trial_dir: Path, results: list[dict]) -> str:
    """The Tune trial id of a trial directory: from its results, else from its name ('' if neither)."""
    if results and results[-1].get("trial_id"):
        return results[-1]["trial_id"]
    match = _TRIAL_ID.search(trial_dir.name)
    return match.group(1) if match else ""


def _error_line(trial_dir: Path, results: list[dict]) -> str:
    """The failure the trial reported, else the last line naming an error in error.txt (Tune appends one
    traceback per failed attempt)."""
    if results and FAILURE_KEY in results[-1]:
        return str(results[-1][FAILURE_KEY])[:500]
    try:
        lines = [line.strip() for line in (trial_dir / "error.txt").read_text().splitlines() if line.strip()]
    except OSError:
        return ""
    named = [line for line in lines if "Error" in line or "Exception" in line]
    return (named or lines or [""])[-1][:500]


class UnreadableTrial(ValueError):
    """A trial folder whose params.json cannot be read or is not one of ours; the message says why."""


def read_trial_dir(trial_dir: Path) -> TrialDir | None:
    """What Tune recorded of one trial, or None if the directory holds no readable trial of ours."""
    try:
        return _read_trial_dir(trial_dir)
    except UnreadableTrial:
        return None


def _read_trial_dir(trial_dir: Path) -> TrialDir | None:
    try:
        params = json.loads((trial_dir / "params.json").read_text())
        spec = trial_spec(params)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableTrial(f"{trial_dir / 'params.json'}: {type(exc).__name__}: {exc}") from None
    results = []
    try:
        lines = (trial_dir / "result.json").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.strip():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut off by a kill: everything before it is intact
    trial_id = trial_id_of(trial_dir, results)
    return TrialDir(trial_dir, trial_id, spec, results, _error_line(trial_dir, results)) if trial_id else None


def trial_status(epochs_done: int, epochs: int, error: str, tune_state: str | None,
                 reported_failure: bool = False) -> str:
    """The one status rule. tune_state: Tune's state of the trial (TERMINATED, ERROR, RUNNING, PENDING,
    PAUSED), or None where nothing says it (a directory without experiment state); reported_failure: the
    trial ended itself as failed."""
    if epochs and epochs_done >= epochs:
        return FINISHED                    # even after an error that a retry overcame
    if reported_failure or tune_state == "ERROR" or (tune_state is None and error):
        return "failed"
    if tune_state == "TERMINATED":
        return "pruned"                    # ended early without an error: the scheduler stopped it
    if tune_state in ("RUNNING", "PAUSED"):
        return "running"
    if tune_state == "PENDING":
        return "pending" if not epochs_done else "running"
    return "stopped"                       # ended early, and nothing says why


def count_line(states) -> str:
    """'1 done, 2 running, 0 pending, 0 pruned, 0 failed': trials by state in STATUSES order, the COUNTED
    states even at 0 (what `status` and the progress line print)."""
    counts = Counter(states)
    return ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts[k] or k in COUNTED)


def trial_rows(trial: TrialDir, experiment: str, tune_state: str | None) -> dict[str, list[dict]]:
    """The store rows of one trial, from what its directory holds and its Tune state."""
    status = trial.status(tune_state)
    spec = trial.spec
    return rows_for_trial(experiment, trial.trial_id, spec.group, spec.budget, spec.config, trial.results,
                          status, trial.error if status == "failed" else "", spec.paper_table, spec.init_from_trial)


def tune_states(part_dir: Path) -> tuple[dict[str, str], str]:
    """(trial_id -> Tune's state, a problem) from the part's newest experiment_state-*.json: ({}, "") when
    the part has none yet, ({}, why) when it cannot be read (trials that ended early then read as
    'stopped', not 'pruned' or 'failed', and the caller says so)."""
    states = sorted(part_dir.glob("experiment_state-*.json"))
    if not states:
        return {}, ""
    try:
        data = json.loads(states[-1].read_text())
        out = {}
        for trial_json, _ in data["trial_data"]:
            trial = json.loads(trial_json)
            out[trial["trial_id"]] = trial["status"]
        return out, ""
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {}, (f"{states[-1]} cannot be read ({type(exc).__name__}: {exc}); trials that ended early show "
                    f"as 'stopped' instead of pruned or failed")


def scan_part(part_dir: Path) -> tuple[list[TrialDir], list[str]]:
    """Every trial folder of one part, and one line for each folder that cannot be read."""
    trials, problems = [], []
    for params in sorted(part_dir.rglob("params.json")):
        try:
            trial = _read_trial_dir(params.parent)
        except UnreadableTrial as exc:
            problems.append(f"unreadable trial folder {exc}")
            continue
        if trial:
            trials.append(trial)
    return trials, problems


def trial_dirs(part_dir: Path) -> list[TrialDir]:
    return scan_part(part_dir)[0]


def gather_part(part_dir: Path, experiment: str, store, warn=None) -> list[tuple[TrialDir, dict]]:
    """(Re)write the rows of every started trial of one part; returns (trial, its trials row). `warn`
    receives one line per problem found (an unreadable Tune state or trial folder)."""
    states, problem = tune_states(part_dir)
    trials, problems = scan_part(part_dir)
    if warn:
        for line in ([problem] if problem else []) + problems:
            warn(line)
    written = []
    for trial in trials:
        if not trial.results and not trial.error:
            continue  # never started: nothing to store
        rows = trial_rows(trial, experiment, states.get(trial.trial_id))
        store.write_trial(experiment, trial.trial_id, rows)
        written.append((trial, rows["trials"][0]))
    return written


def sweep_name_of(path: Path) -> str:
    """The name of the sweep whose folder holds path (the folder with sweep.json), '' if none."""
    return next((p.name for p in [path, *path.parents] if (p / "sweep.json").exists()), "")


def gather_path(path: Path, experiment: str, store, warn=None) -> int:
    """gather: a sweep folder (every part), or one part's folder; returns the number of trials."""
    parts = [p.parent for p in path.rglob("tuner.pkl")] or [path]
    return sum(len(gather_part(part, experiment, store, warn)) for part in sorted(set(parts)))


def _label(spec: TrialSpec) -> str:
    c = spec.config
    variant = "/".join(str(c.get(k)) for k in ("arch", "layer", "activation", "pooling", "normalization"))
    p = f" p={c['p_value']:.3g}" if c.get("p_mode") == "fixed" else ""
    return f"{spec.group} {variant}{p} seed {c.get('seed')}"


def sweep_status(sweep_dir: Path, plan) -> tuple[list[dict], list[str]]:
    """(One row per planned trial of every part: its state by the status rule, epochs and accuracy;
    one line per problem that makes a state uncertain). Trials Tune has not created yet are 'pending'."""
    rows, problems = [], []
    for part in plan.parts:
        part_dir = sweep_dir / part.part
        states, problem = tune_states(part_dir)
        found, unreadable = scan_part(part_dir) if part_dir.is_dir() else ([], [])
        problems += ([problem] if problem else []) + unreadable
        for trial in found:
            state = trial.status(states.get(trial.trial_id))
            accs = [r["test_acc"] for r in trial.results if r.get("test_acc") is not None]
            rows.append({"part": part.part, "trial_id": trial.trial_id, "state": state,
                         "epoch": trial.epochs_done, "epochs": trial.spec.config.get("epochs", 0),
                         "test_acc": accs[-1] if accs else None, "label": _label(trial.spec)})
        for _ in range(max(0, part.n_trials - len(found) - len(unreadable))):
            rows.append({"part": part.part, "trial_id": "", "state": "pending", "epoch": 0,
                         "epochs": part.epochs, "test_acc": None, "label": ""})
    return rows, problems
