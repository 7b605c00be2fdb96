"""From experiments (a preset or a sweep file) and the `run` options to a validated sweep plan.

Every trial is built into a TrialConfig here, before Ray starts: a bad option or key ends as one line,
and the resolved config (arch defaults filled in, data folder absolute) is what travels to the worker.
A sweep is named (NAME, default the preset or file) and lives at STORAGE/NAME; each experiment (or stage
of a two-stage one such as weight-norms) is one Tune experiment, a "part", at STORAGE/NAME/<part>. The
plan is saved as STORAGE/NAME/sweep.json, so that `resume NAME` needs nothing else.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from search_spaces.experiment import GROUP_KEY, Experiment, config_keys, stage_ref
from trainables.config import COMPILE_MODES, ConfigError, TrialConfig

from .errors import UsageError

__all__ = ["PartPlan", "SweepPlan", "RunOptions", "plan_sweep", "default_gpus_per_trial",
           "estimate_gpu_hours", "SMOKE", "QUICK"]

# --smoke-test: one epoch on a few hundred synthetic images, on the CPU; PGD on 32 images with 2 steps.
SMOKE = dict(epochs=1, n_train=256, n_test=128, batch_size=64, pgd_images=32, steps=2, samples=4)
# --quick: any preset at a budget a 2-core CPU finishes in minutes, with seeds for intervals. Sized so that
# `run table1 --quick` on real CIFAR-10 (8 variants x 3 seeds, 2 trials at a time) ends within 30 minutes
# on this project's 2-core dev machine, evaluation included (see the README's figures).
QUICK = dict(epochs=8, n_train=5000, n_test=2000, seeds=3, pgd_images=100, samples=8)


def default_gpus_per_trial(arch: str, image_dim: int = 32) -> float:
    """Small nets share a GPU: the paper_facts H200 anchor is ~2x total throughput at 4 processes."""
    if arch == "resnet18":
        return 1.0 if image_dim == 224 else 0.5
    return 0.25


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
    gpus_per_trial: float | None = None
    has_gpu: bool = False
    max_concurrent: int = 0
    checkpoint_every: int = 10
    evaluate: bool = True
    pgd_images: int = 0
    compile: str = "auto"

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
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise UsageError(f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial}")
        if self.quick and self.smoke_test:
            raise UsageError("--quick and --smoke-test exclude each other; pick one")
        if self.compile not in COMPILE_MODES:
            raise UsageError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")

    def budget(self, epochs: int, experiment_epochs: int) -> str:
        """The label every trial row carries: smoke | quick | reduced (fewer epochs than the experiment
        or a subset of the images) | full."""
        if self.smoke_test:
            return "smoke"
        if self.quick:
            return "quick"
        return "reduced" if (self.train_images or self.test_images or epochs < experiment_epochs) else "full"


@dataclass
class PartPlan:
    """One Tune experiment: its trials, fully resolved, and how they are scheduled."""
    part: str
    trials: list                     # [{"group", "budget", "config": TrialConfig dict}]; a search: its base
    epochs: int
    search: dict | None = None       # {key, low, high, log, integer, samples}
    asha: dict | None = None         # {grace_period, reduction_factor}; None: no pruning
    depends_on: str = ""             # the part whose trained checkpoint an "@group" init_from refers to
    gpus_per_trial: float = 0.0

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
    checkpoint_every: int = 10
    max_failures: int = 2
    evaluation: dict | None = None   # EvalSettings fields for the end-of-trial PGD/saliency; None: off
    compile: str = "auto"            # Trainer's compile mode: auto (compiled + CUDA graphs on GPUs) | on | off
    budget: str = "full"

    @property
    def n_trials(self) -> int:
        return sum(p.n_trials for p in self.parts)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "SweepPlan":
        try:
            data = json.loads(path.read_text())
            data["parts"] = [PartPlan(**p) for p in data["parts"]]
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read the plan {path} ({type(exc).__name__}: {exc}); it was written by "
                             f"another version of scs-sweep: run the sweep again under a new --name") from None


def _stages(experiment: Experiment, trials: list[dict]) -> list[tuple[str, list[dict], str]]:
    """(part name, trials, part it waits for): a trial whose init_from is "@GROUP" runs in a later part."""
    waiting = [t for t in trials if stage_ref(t)]
    first = [t for t in trials if t not in waiting]
    parts = [(experiment.name, first, "")] if first else []
    for group in dict.fromkeys(t[GROUP_KEY] for t in waiting):
        parts.append((f"{experiment.name}-{group.split('/')[-1]}",
                      [t for t in waiting if t[GROUP_KEY] == group], experiment.name))
    return parts


def _resolve(trial: dict, overrides: dict, seed_offset: int, where: str) -> dict:
    """The trial's TrialConfig as a dict: validated, with the arch's defaults filled in."""
    values = {k: v for k, v in trial.items() if k != GROUP_KEY}
    values.update(overrides)
    values["seed"] = values.get("seed", 0) + seed_offset  # --seeds N: offsets 0..N-1 from the trial's seed
    waits_for = stage_ref(values)
    if waits_for:
        values["init_from"] = ""
    elif values.get("init_from") and not Path(str(values["init_from"])).is_file():
        raise UsageError(f"{where}: init_from {values['init_from']} is not a checkpoint file (give a "
                         f"trainer.pt, or \"@GROUP\" for the trained run of another group of the sweep)")
    try:
        # plain JSON types (tuples as lists): the config travels through Tune's params.json as it is
        config = json.loads(json.dumps(TrialConfig.from_dict(values).to_dict()))
    except ConfigError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if waits_for:
        config["init_from"] = "@" + waits_for  # resolved to the trained checkpoint when the stage starts
    return config


def plan_sweep(name: str, source: str, experiments: list[Experiment], options: RunOptions, *,
               store: str = "", storage: str = "") -> SweepPlan:
    """Every experiment x trial x seed as a validated, resolved trial config, in parts to run in order."""
    options.check()
    smoke, quick = options.smoke_test, options.quick
    seeds = options.seeds or (QUICK["seeds"] if quick else 1)
    dataset = options.resolved_dataset
    parts = []
    for experiment in experiments:
        epochs = options.epochs or (SMOKE["epochs"] if smoke else
                                    min(experiment.epochs, QUICK["epochs"]) if quick else experiment.epochs)
        budget = options.budget(epochs, experiment.epochs)
        overrides = {"epochs": epochs, "dataset": dataset}
        if dataset == "cifar10":
            overrides["data_dir"] = options.data_dir
        sized = SMOKE if smoke else QUICK if quick else {}
        for key, given in (("n_train", options.train_images), ("n_test", options.test_images)):
            value = given if given is not None else sized.get(key, 0)
            if value:
                overrides[key] = value
        if smoke:
            overrides["batch_size"] = SMOKE["batch_size"]
        search = None
        if experiment.search:
            s = experiment.search
            samples = options.num_samples or (SMOKE["samples"] if smoke else
                                              min(s.samples, QUICK["samples"]) if quick else s.samples)
            search = dict(key=s.key, low=s.low, high=s.high, log=s.log, samples=samples,
                          integer=config_keys()[s.key] is int)
        for part, trials, depends_on in _stages(experiment, experiment.trials()):
            planned = []
            # a search draws its trials from the first seed; a grid runs every trial x seed
            for offset in range(1 if search else seeds):
                for trial in trials:
                    extra = {search["key"]: search["low"]} if search else {}
                    config = _resolve({**trial, **extra}, overrides, offset, f"{source} ({experiment.name})")
                    planned.append({GROUP_KEY: trial[GROUP_KEY], "budget": budget, "config": config})
            first = planned[0]["config"]
            gpus = options.gpus_per_trial if options.gpus_per_trial is not None else \
                default_gpus_per_trial(first["arch"], first["image_dim"])
            asha = None
            if options.prune and not quick:  # a quick run is too short to prune; every trial counts
                asha = dict(grace_period=experiment.asha.grace(epochs),
                            reduction_factor=experiment.asha.reduction_factor)
            parts.append(PartPlan(part=part, trials=planned, epochs=epochs, search=search, asha=asha,
                                  depends_on=depends_on, gpus_per_trial=gpus if options.has_gpu else 0.0))
    evaluation = None
    if options.evaluate:
        evaluation = dict(pgd_images=SMOKE["pgd_images"], steps=SMOKE["steps"]) if smoke else \
            dict(pgd_images=QUICK["pgd_images"]) if quick else {}
        if options.pgd_images:
            evaluation["pgd_images"] = options.pgd_images
    budgets = sorted({t["budget"] for part in parts for t in part.trials})
    return SweepPlan(name=name, source=source, parts=parts, store=store, storage=storage,
                     max_concurrent=options.max_concurrent, checkpoint_every=options.checkpoint_every,
                     evaluation=evaluation, compile=options.compile, budget=", ".join(budgets))


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
