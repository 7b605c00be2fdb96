"""One experiment as data: fixed settings, grids of axes, an epoch budget, an optional search.

Every built-in preset (presets.py) and every sweep file (sweep_file.py) is a list of these, so one
expansion and one validation serve both. The trials of an experiment are the union of its grids: each
grid is the product of its axes, every trial also gets the fixed settings. Keys are TrialConfig fields
plus `group`, the label a trial's rows carry (the paper's table; default: the experiment's name).

A trial whose `init_from` is "@GROUP" starts from the trained weights of the trial of that group with
the same seed, so it waits for it: the plan runs it as a later stage (weight-norms).

`paper_table` links an experiment to the paper's experiment it reproduces (table1 ... table8, cosine,
weight-norms, p-dynamics, optuna-p-rohrer100k, optuna-p-resnet18: common/vocabulary.py PAPER_EXPERIMENTS):
tables and claims compare with the paper's values and budget through it, whatever the experiment or
its groups are called, so a renamed or edited copy of a preset is still judged against the paper.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from common.config import ConfigError, TrialConfig
from common.errors import ScsSweepError
from common.vocabulary import PAPER_EXPERIMENTS

__all__ = ["Experiment", "Search", "Asha", "SpecError", "GROUP_KEY", "RUN_OPTION_KEYS", "config_keys",
           "stage_ref"]

GROUP_KEY = "group"
# Settings that belong to the run, not to the experiment: set by `run` options (--epochs, --data, ...).
RUN_OPTION_KEYS = ("epochs", "dataset", "data_dir", "n_train", "n_test")


class SpecError(ScsSweepError):
    """A preset name or sweep file that cannot run; the message names the key or value."""


def stage_ref(trial: dict) -> str:
    """The group named by an init_from of "@GROUP" (the trained run this trial starts from), else ''."""
    value = trial.get("init_from", "")
    return value[1:] if isinstance(value, str) and value.startswith("@") else ""


def _whole(value, least: int) -> bool:
    """A whole number (not a bool, which Python counts as one) of at least `least`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def config_keys() -> dict[str, type]:
    """Every key an experiment may set, with the type TrialConfig expects."""
    keys = {f.name: type(f.default) for f in dataclasses.fields(TrialConfig)}
    for key in RUN_OPTION_KEYS:
        keys.pop(key)
    keys[GROUP_KEY] = str
    return keys


@dataclass(frozen=True)
class Search:
    """Optuna TPE over one numeric key, `samples` trials from `low` to `high` (log-uniform if `log`)."""
    key: str
    low: float
    high: float
    log: bool = False
    samples: int = 30


@dataclass(frozen=True)
class Asha:
    """ASHA's settings (one bracket, on test accuracy); pruning itself is switched by `run --no-prune`."""
    grace_period: int = 0        # epochs before the first cut; 0: epochs // 16, at least 1, at most 50
    reduction_factor: int = 4    # keep the best 1/reduction_factor at each rung

    def grace(self, epochs: int) -> int:
        return self.grace_period or max(1, min(epochs // 16, 50))


@dataclass(frozen=True)
class Experiment:
    name: str
    epochs: int                          # the budget of every trial (the paper's, for a preset)
    fixed: dict = field(default_factory=dict)
    grids: tuple = ()                    # dicts of key -> list of values
    description: str = ""
    paper: str = ""                      # where in the paper, in words ("Table 1, Figs 1, 3, 5")
    paper_table: str = ""                # the paper's experiment this one reproduces (PAPER_EXPERIMENTS)
    track: tuple = ()                    # experiment trackers its sweep logs to: mlflow, wandb
    search: Search | None = None
    asha: Asha = Asha()
    claims: tuple = ()                   # claims.ClaimSpec: what this experiment's tables should show

    def trials(self) -> list[dict]:
        """Every trial as a flat dict of keys (with `group`), in grid order, duplicates dropped."""
        out, seen = [], set()
        for grid in self.grids or ({},):
            axes = [[(key, v) for v in values] for key, values in grid.items()]
            for combo in itertools.product(*axes):
                trial = {GROUP_KEY: self.name, **self.fixed, **dict(combo)}
                marker = repr(sorted(trial.items()))
                if marker not in seen:
                    seen.add(marker)
                    out.append(trial)
        return out

    def trial_rows(self) -> list[dict]:
        """Every trial as its resolved config (the arch's defaults filled in) with `group`: what a claim's
        filters read to decide whether it applies, before anything has run."""
        rows = []
        for trial in self.trials():
            values = {k: v for k, v in trial.items() if k != GROUP_KEY}
            values["init_from"] = "" if stage_ref(values) else values.get("init_from", "")
            if self.search is not None:
                values[self.search.key] = self.search.low
            rows.append({**TrialConfig.from_dict({**values, "epochs": self.epochs}).to_dict(),
                         GROUP_KEY: trial[GROUP_KEY]})
        return rows

    def validate(self, where: str) -> None:
        """Raise SpecError naming the first problem: an unknown key, an empty axis, a wrong type or value,
        or a bad search range. `where` names the source in the message ("preset table1", "my.toml")."""
        keys = config_keys()
        if not _whole(self.epochs, 1):
            raise SpecError(f"{where}: epochs must be a whole number >= 1, got {self.epochs!r}")
        for section, mapping in [("fixed", self.fixed)] + [("grid", g) for g in self.grids]:
            for key, value in mapping.items():
                if key in RUN_OPTION_KEYS:
                    raise SpecError(f"{where}: '{key}' in [{section}] is a run setting; set epochs at the top "
                                    f"of the file, the data with `run --data/--dataset/--train-images`")
                if key not in keys:
                    raise SpecError(f"{where}: unknown key '{key}' in [{section}]; known keys: "
                                    f"{', '.join(sorted(keys))}")
                if section == "grid" and (not isinstance(value, list) or not value):
                    raise SpecError(f"{where}: grid axis '{key}' must be a non-empty list of values, "
                                    f"got {value!r}")
        if self.paper_table not in ("", *PAPER_EXPERIMENTS):
            raise SpecError(f"{where}: paper_table {self.paper_table!r} is not one of the paper's experiments; "
                            f"choose one of: {', '.join(PAPER_EXPERIMENTS)} (or leave it out)")
        if self.search is not None:
            self._check_search(where, keys)
        trials = self.trials()
        for trial in trials:
            self._check_config(where, trial)
        self._check_stage_refs(where, trials)
        for name, least in (("grace_period", 0), ("reduction_factor", 2)):
            value = getattr(self.asha, name)
            if not _whole(value, least):
                raise SpecError(f"{where}: asha {name} must be a whole number >= {least}, got {value!r}")

    def _check_stage_refs(self, where: str, trials: list[dict]) -> None:
        """Every "@GROUP" names a group of this experiment whose trials start from scratch, with a trial
        for every seed that refers to it: a typo fails here, not after the first stage has trained."""
        first = [t for t in trials if not stage_ref(t)]
        for trial in trials:
            group = stage_ref(trial)
            if not group:
                continue
            sources = [t for t in first if t[GROUP_KEY] == group]
            if not sources:
                groups = sorted({t[GROUP_KEY] for t in first})
                raise SpecError(f"{where}: init_from \"@{group}\" names no group of trials that start from "
                                f"scratch; groups: {', '.join(groups)}")
            if not any(t.get("seed", 0) == trial.get("seed", 0) for t in sources):
                raise SpecError(f"{where}: init_from \"@{group}\" has no trial with seed {trial.get('seed', 0)} "
                                f"to start the seed-{trial.get('seed', 0)} trial of {trial[GROUP_KEY]} from")

    def _check_config(self, where: str, trial: dict) -> None:
        if not isinstance(trial.get(GROUP_KEY), str) or not trial[GROUP_KEY]:
            raise SpecError(f"{where}: 'group' must be a non-empty string, got {trial.get(GROUP_KEY)!r}")
        values = {k: v for k, v in trial.items() if k != GROUP_KEY}
        if stage_ref(values):
            values["init_from"] = ""  # a stage reference, resolved to a checkpoint when the stage starts
        if self.search is not None:
            values[self.search.key] = self.search.low
        try:
            TrialConfig.from_dict({**values, "epochs": self.epochs})
        except ConfigError as exc:
            raise SpecError(f"{where}: {exc}") from None

    def _check_search(self, where: str, keys: dict) -> None:
        s = self.search
        trials = self.trials()
        if len(trials) > 1:
            raise SpecError(f"{where}: a [search] samples the settings of one trial, but the grid makes "
                            f"{len(trials)}; put the settings in [fixed], or make each grid point "
                            f"an experiment of its own")
        if not isinstance(s.key, str) or keys.get(s.key) not in (int, float):
            numeric = sorted(k for k, t in keys.items() if t in (int, float))
            raise SpecError(f"{where}: search key '{s.key}' is not a numeric config key; choose one of: "
                            f"{', '.join(numeric)}")
        for name in ("low", "high"):
            value = getattr(s, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SpecError(f"{where}: search {name} must be a number, got {value!r}")
        if not isinstance(s.log, bool):
            raise SpecError(f"{where}: search log must be true or false, got {s.log!r}")
        if not s.low < s.high:
            raise SpecError(f"{where}: search range needs low < high, got low {s.low} and high {s.high}")
        if s.log and s.low <= 0:
            raise SpecError(f"{where}: a log search needs low > 0, got {s.low}")
        if not _whole(s.samples, 1):
            raise SpecError(f"{where}: search samples must be a whole number >= 1, got {s.samples!r}")
        base = {k: v for k, v in trials[0].items() if k != GROUP_KEY}
        for end in (s.low, s.high):  # both ends must make a valid trial (e.g. p_value >= 0.1)
            try:
                TrialConfig.from_dict({**base, s.key: end, "epochs": self.epochs})
            except ConfigError as exc:
                raise SpecError(f"{where}: search range {s.low}..{s.high}: {exc}") from None
