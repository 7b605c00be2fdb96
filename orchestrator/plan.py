"""From experiments (a preset or a sweep file) and the `run` options to a validated sweep plan.

Every trial is built into a TrialConfig here, before Ray starts: a bad option or key ends as one line,
and the resolved config (arch defaults filled in, data folder absolute) is what travels to the worker.
The plan is also the one place where trials become unique: no two trials of a sweep have the same
resolved config (seed included). A sweep is named (NAME, default the preset or file) and lives at
STORAGE/NAME; each experiment (or stage of a two-stage one such as weight-norms) is one Tune experiment,
a "part", at STORAGE/NAME/<part>. The plan is saved as STORAGE/NAME/sweep.json, so that `resume NAME`
needs nothing else.

Seeds: a trial's seed s (its experiment's, 0 unless set) with `--seeds N` stands for the N seeds
s*N ... s*N+N-1. So `--seeds 1` changes nothing, and experiments that fix different seeds (table6's
"new initial weights" is seed 1) never share one: `paper --seeds 3` trains table1 on seeds 0-2 and
table6 on 3-5. An experiment whose grid lists several seeds chooses them itself: `--seeds` is refused
with it, and `--quick` keeps its list.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from common import defaults
from common.config import ConfigError, TrialConfig
from common.locations import Location
from common.vocabulary import COMPILE_MODES
from search_spaces.epoch_times import expected_epoch_cost
from search_spaces.experiment import GROUP_KEY, Experiment, config_keys, stage_ref

from .budget import IMAGES, budget_for
from .errors import UsageError

__all__ = ["PartPlan", "SweepPlan", "RunOptions", "plan_sweep", "resolve_trial", "estimate_gpu_hours"]


@dataclass
class RunOptions:
    """What `run` was asked for, beyond the experiments themselves (0 / None: the default)."""
    epochs: int = 0
    seeds: int | None = None
    dataset: str = ""
    data_dir: str = ""              # absolute; resolved once by the driver (--data, $SCS_DATA, ./data)
    train_images: int | None = None
    test_images: int | None = None
    quick: bool = False
    smoke_test: bool = False
    prune: bool = True
    num_samples: int = 0
    gpus_per_trial: float | None = None   # None: decided from the cluster once Ray runs (gpus.py)
    max_concurrent: int = 0
    checkpoint_every: int = defaults.CHECKPOINT_EVERY
    evaluate: bool = True
    pgd_images: int = 0
    compile: str = "auto"
    track: tuple = ()               # the experiment trackers to log to (orchestrator/trackers.py)

    @property
    def resolved_dataset(self) -> str:
        """--dataset, else cifar10 with --data, else synthetic for a smoke test, else cifar10."""
        return self.dataset or ("cifar10" if self.data_dir else ("synthetic" if self.smoke_test else "cifar10"))

    def check(self) -> None:
        """One UsageError line for the first option out of range (before anything starts)."""
        least = dict(epochs=0, seeds=1, train_images=0, test_images=0, num_samples=0, max_concurrent=0,
                     checkpoint_every=1, pgd_images=0)
        for name, low in least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be >= {low}, got {value}")
        limits = IMAGES.get(self.resolved_dataset, {})
        for flag, given, key in (("--train-images", self.train_images, "n_train"),
                                 ("--test-images", self.test_images, "n_test")):
            if given and key in limits and given > limits[key]:
                raise UsageError(f"{flag} {given:,} is more than {self.resolved_dataset} has "
                                 f"({limits[key]:,}); give at most {limits[key]:,}, or leave it out for all")
        gpus = self.gpus_per_trial
        if gpus is not None and not 0 <= gpus <= 1:
            raise UsageError(f"--gpus-per-trial {gpus:g}: a trial trains on one GPU; give 1, or a fraction "
                             f"(0.25: four trials share a GPU)")
        if gpus and self.smoke_test:
            raise UsageError("--smoke-test runs on the CPU; drop --gpus-per-trial (or use --epochs 1 "
                             "--train-images 256 to try the GPU)")
        if self.pgd_images and not self.evaluate:
            raise UsageError("--pgd-images sets the end-of-trial evaluation, which --no-evaluate skips; drop one")
        if self.quick and self.smoke_test:
            raise UsageError("--quick and --smoke-test exclude each other; pick one")
        if self.compile not in COMPILE_MODES:
            raise UsageError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")


@dataclass
class PartPlan:
    """One Tune experiment: its trials, fully resolved, and how they are scheduled."""
    part: str
    trials: list                     # [{"group", "budget", "paper_table", "config"}]; a search: its base
    epochs: int
    search: dict | None = None       # {key, low, high, log, integer, samples}
    asha: dict | None = None         # {grace_period, reduction_factor}; None: no pruning
    depends_on: str = ""             # the part whose trained checkpoints an "@group" init_from refers to
    gpus_per_trial: float = 0.0
    budget: dict | None = None       # the experiment's budget.Budget, as a dict

    @property
    def n_trials(self) -> int:
        return self.search["samples"] if self.search else len(self.trials)


@dataclass
class SweepPlan:
    name: str
    source: str                      # the preset's name or the sweep file's path
    parts: list
    store: str = ""
    storage: str = ""
    max_concurrent: int = 0
    checkpoint_every: int = defaults.CHECKPOINT_EVERY
    max_failures: int = 2
    evaluation: dict | None = None   # EvalSettings fields for the end-of-trial PGD/saliency; None: off
    compile: str = "auto"            # Trainer's compile mode (vocabulary.COMPILE_MODES): auto | on | off
    budget: str = "full"
    dropped: int = 0                 # planned trials that repeated another's resolved config (not run)
    track: list = field(default_factory=list)  # the experiment trackers the sweep logs to (trackers.py)

    @property
    def n_trials(self) -> int:
        return sum(p.n_trials for p in self.parts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def from_json(cls, read_text, where: str) -> SweepPlan:
        """The plan from read_text() (the text of a sweep.json, wherever it is stored); where names it."""
        try:
            data = json.loads(read_text())
            data["parts"] = [PartPlan(**p) for p in data["parts"]]
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read the plan {where} ({type(exc).__name__}: {exc}); it was written by "
                             f"another version of scs-sweep: run the sweep again under a new --name") from None

    @classmethod
    def load(cls, path: Path) -> SweepPlan:
        return cls.from_json(Path(path).read_text, str(path))


def _stages(experiment: Experiment, trials: list[dict]) -> list[tuple[str, list[dict], str]]:
    """(part name, trials, part it waits for): a trial whose init_from is "@GROUP" runs in a later part."""
    waiting = [t for t in trials if stage_ref(t)]
    first = [t for t in trials if t not in waiting]
    parts = [(experiment.name, first, "")] if first else []
    for group in dict.fromkeys(t[GROUP_KEY] for t in waiting):
        parts.append((f"{experiment.name}-{group.split('/')[-1]}",
                      [t for t in waiting if t[GROUP_KEY] == group], experiment.name))
    return parts


def _seed_axis(experiment: Experiment) -> list:
    """The seeds an experiment's grid lists, when some axis lists more than one ([] otherwise)."""
    axes = [g["seed"] for g in experiment.grids if isinstance(g.get("seed"), list) and len(g["seed"]) > 1]
    return sorted({s for axis in axes for s in axis})


def resolve_trial(trial: dict, overrides: dict, where: str) -> dict:
    """The trial's TrialConfig as a dict: validated, with the arch's defaults filled in; an init_from file is
    read, so that one that is missing or not a checkpoint is refused here, before anything starts."""
    values = {k: v for k, v in trial.items() if k != GROUP_KEY}
    values.update(overrides)
    waits_for = stage_ref(values)
    if waits_for:
        values["init_from"] = ""
    elif values.get("init_from"):
        _check_checkpoint(str(values["init_from"]), where)
    try:
        # plain JSON types (tuples as lists): the config travels through Tune's params.json as it is
        config = json.loads(json.dumps(TrialConfig.from_dict(values).to_dict()))
    except ConfigError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if waits_for:
        config["init_from"] = "@" + waits_for  # resolved per seed to a trained checkpoint when the stage starts
    return config


_CHECKED: dict = {}  # checkpoint path -> (mtime, size) already read by this process: read each file once


def _check_checkpoint(path: str, where: str) -> None:
    """UsageError unless `path` (a file or a URI) is a checkpoint holding model weights (reads it with torch,
    once)."""
    info = Location(path).fs.get_file_info(Location(path).path)
    if info.type != pafs.FileType.File:
        raise UsageError(f"{where}: init_from {path} is not a checkpoint file (give a trainer.pt, or \"@GROUP\" "
                         f"for the trained run of another group of the sweep)")
    stamp = (info.mtime_ns, info.size)
    if _CHECKED.get(path) == stamp:
        return
    from trainables.checkpoints import read_model_weights  # torch: only where a sweep starts from weights

    try:
        read_model_weights(path)
    except ConfigError as exc:
        raise UsageError(f"{where}: {exc}") from None
    _CHECKED[path] = stamp


def _unique(planned: list[dict], seen: dict[str, str], where: str) -> tuple[list[dict], int]:
    """planned without repeats of a resolved config already planned in the same group (returns how many
    were dropped); a config planned by another group or experiment too is a UsageError: two tables
    would train the very same trial twice."""
    kept, dropped = [], 0
    for trial in planned:
        key = json.dumps(trial["config"], sort_keys=True)
        owner = f"{where} group {trial[GROUP_KEY]!r}"
        if key in seen:
            if seen[key] != owner:
                c = trial["config"]
                raise UsageError(f"{owner} plans the same trial as {seen[key]} ({c['arch']} {c['layer']}/"
                                 f"{c['activation']}/{c['pooling']}, seed {c['seed']}); give one of them other "
                                 f"seeds or settings, or drop it")
            dropped += 1
            continue
        seen[key] = owner
        kept.append(trial)
    return kept, dropped


def plan_sweep(name: str, source: str, experiments: list[Experiment], options: RunOptions, *,
               store: str = "", storage: str = "") -> SweepPlan:
    """Every experiment x trial x seed as a validated, resolved, unique trial config, in parts to run in
    order."""
    options.check()
    dataset = options.resolved_dataset
    if options.num_samples and not any(e.search for e in experiments):
        raise UsageError(f"--num-samples sets the number of trials of an Optuna search, and {source} has no "
                         f"[search]; drop it (--seeds repeats grid trials)")
    if options.seeds and all(e.search for e in experiments):
        raise UsageError(f"--seeds repeats grid trials, and {source} is an Optuna search (its trials are drawn "
                         f"from one seed); drop it, or set the search's seed in the sweep file")
    parts, seen, dropped, evaluation = [], {}, 0, None
    for experiment in experiments:
        where = f"{source} ({experiment.name})"
        listed = _seed_axis(experiment)
        if listed and options.seeds:
            raise UsageError(f"{where} lists its seeds ({', '.join(map(str, listed))}); --seeds would repeat "
                             f"them: drop --seeds, or the seed axis")
        budget = budget_for(experiment, options, listed_seeds=bool(listed))
        evaluation = budget.evaluation  # the same for every experiment: the options that set it are the run's
        overrides = {"epochs": budget.epochs, "dataset": dataset}
        if dataset == "cifar10":
            overrides["data_dir"] = options.data_dir
        for key in ("n_train", "n_test", "batch_size"):
            if getattr(budget, key):
                overrides[key] = getattr(budget, key)
        search = None
        if experiment.search:
            s = experiment.search
            search = dict(key=s.key, low=s.low, high=s.high, log=s.log, samples=budget.samples,
                          integer=config_keys()[s.key] is int)
        stages = _stages(experiment, experiment.trials())
        depended_on = {depends_on for _, _, depends_on in stages}
        for part, trials, depends_on in stages:
            planned = []
            for trial in trials:
                base = trial.get("seed", 0)
                # a search draws its trials from the first seed of the block; a grid runs every seed of it
                for seed in range(base * budget.seeds, base * budget.seeds + (1 if search else budget.seeds)):
                    extra = {search["key"]: search["low"]} if search else {}
                    config = resolve_trial({**trial, **extra}, {**overrides, "seed": seed}, where)
                    planned.append({GROUP_KEY: trial[GROUP_KEY], "budget": budget.name,
                                    "paper_table": experiment.paper_table, "config": config})
            if not search:
                planned, n = _unique(planned, seen, where)
                dropped += n
                # costliest first (stable: seeds keep their order), so the last trials are the shortest
                # (re-ordered for a GPU when the sweep's GPUs are decided: gpus.assign_gpus)
                planned.sort(key=lambda t: -expected_epoch_cost(t["config"], False))
            asha = None
            # a part a later stage starts from must finish its trials
            if budget.prune and part not in depended_on:
                asha = dict(grace_period=experiment.asha.grace(budget.epochs),
                            reduction_factor=experiment.asha.reduction_factor)
            parts.append(PartPlan(part=part, trials=planned, epochs=budget.epochs, search=search, asha=asha,
                                  depends_on=depends_on, gpus_per_trial=options.gpus_per_trial or 0.0,
                                  budget=budget.to_dict()))
    budgets = sorted({t["budget"] for part in parts for t in part.trials})
    return SweepPlan(name=name, source=source, parts=parts, store=store, storage=storage,
                     max_concurrent=options.max_concurrent, checkpoint_every=options.checkpoint_every,
                     evaluation=evaluation, compile=options.compile, budget=", ".join(budgets), dropped=dropped,
                     track=list(dict.fromkeys([*options.track, *(k for e in experiments for k in e.track)])))


def estimate_gpu_hours(experiments: list[Experiment], seconds_per_epoch) -> tuple[int, int, float]:
    """(trials, epochs in all, GPU-hours) of experiments at their own budgets, one trial per GPU."""
    trials = total_epochs = 0
    hours = 0.0
    for experiment in experiments:
        per_trial = experiment.search.samples if experiment.search else 1
        for t in experiment.trials():
            trials += per_trial
            total_epochs += per_trial * experiment.epochs
            hours += per_trial * experiment.epochs * seconds_per_epoch(t) / 3600
    return trials, total_epochs, hours
