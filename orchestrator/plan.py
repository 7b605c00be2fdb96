"""From a preset name and CLI options to a sweep plan: the Tune runs to make, in order.

A sweep is named (NAME, default the preset) and lives at STORAGE/NAME. Each preset part (or stage of a
two-stage preset such as weight-norms) is one Tune experiment at STORAGE/NAME/<part>. The plan is
saved as STORAGE/NAME/sweep.json so that `resume NAME` needs nothing else.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from search_spaces.presets import Preset, Search, get_preset

__all__ = ["RunPlan", "SweepPlan", "plan_sweep", "default_gpus_per_trial", "SMOKE"]

# --smoke-test: one epoch on a few hundred synthetic images, on the CPU.
SMOKE = dict(epochs=1, n_train=256, n_test=128, batch_size=64)
# The end-of-trial evaluation of a smoke test: PGD on 32 images with 2 steps, one saliency map a class.
SMOKE_EVALUATION = dict(pgd_images=32, steps=2)


def default_gpus_per_trial(arch: str, image_dim: int = 32) -> float:
    """Small nets share a GPU: the paper_facts H200 anchor is ~2x total throughput at 4 processes."""
    if arch == "resnet18":
        return 1.0 if image_dim == 224 else 0.5
    return 0.25


@dataclass
class RunPlan:
    """One Tune experiment: its trials' variants, the overrides every trial gets, and its search."""
    part: str
    variants: list
    overrides: dict
    seeds: list                      # seed offsets added to each variant's own seed
    search: dict | None = None       # Search fields, for optuna-p
    depends_on: str = ""             # the part whose trained checkpoint `init_from="@group"` refers to
    gpus_per_trial: float = 0.0

    @property
    def n_trials(self) -> int:
        # a search samples num_samples trials from the first seed; a grid runs every variant x seed
        return self.search["num_samples"] if self.search else len(self.variants) * len(self.seeds)


@dataclass
class SweepPlan:
    name: str
    preset: str
    runs: list
    prune: bool = True
    max_concurrent: int = 0
    checkpoint_every: int = 10
    max_failures: int = 2
    store: str = "scs_store"
    storage: str = ""
    evaluation: dict | None = None   # EvalSettings fields for the end-of-trial PGD/saliency; None: off
    compile: str = "auto"            # Trainer's compile mode: auto (compiled + CUDA graphs on GPUs) | on | off

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "SweepPlan":
        data = json.loads(path.read_text())
        data["runs"] = [RunPlan(**r) for r in data["runs"]]
        return cls(**data)


def _split_stages(preset: Preset) -> list[tuple[str, list, str]]:
    """(part name, variants, depends_on) per stage: waiting groups go into a later part."""
    waiting = {group: needs for group, needs in preset.stages}
    first = [t for t in preset.trials if t["group"] not in waiting]
    parts = [(preset.name, first, "")]
    for group, needs in preset.stages:
        parts.append((f"{preset.name}-{group.split('/')[-1]}", [t for t in preset.trials if t["group"] == group],
                      preset.name))
    return parts


def plan_sweep(preset_name: str, *, name: str = "", epochs: int = 0, seeds: int = 1, dataset: str = "",
               data_dir: str = "", smoke_test: bool = False, gpus_per_trial: float | None = None,
               has_gpu: bool = False, prune: bool = True, max_concurrent: int = 0,
               checkpoint_every: int = 10, num_samples: int = 0, store: str = "scs_store",
               storage: str = "", evaluate: bool = True, pgd_images: int = 0,
               compile: str = "auto") -> SweepPlan:
    runs = []
    for preset in get_preset(preset_name):
        overrides = {"epochs": epochs or preset.epochs}
        if smoke_test:
            overrides.update(SMOKE)
            if epochs:
                overrides["epochs"] = epochs
        if data_dir and not dataset:
            dataset = "cifar10"
        if smoke_test and not dataset:
            dataset = "synthetic"  # a smoke test never waits for (or fails on) a download
        if dataset:
            overrides["dataset"] = dataset
        if data_dir:
            overrides["data_dir"] = str(Path(data_dir).resolve())
        search = None
        if preset.search:
            s: Search = preset.search
            search = dict(key=s.key, low=s.low, high=s.high, log=s.log,
                          num_samples=num_samples or (4 if smoke_test else s.num_samples))
        for part, variants, depends_on in _split_stages(preset):
            first = variants[0]
            gpus = gpus_per_trial if gpus_per_trial is not None else (
                default_gpus_per_trial(first["arch"], first.get("image_dim", 32)) if has_gpu else 0.0)
            runs.append(RunPlan(part=part, variants=[dict(v) for v in variants], overrides=dict(overrides),
                                seeds=list(range(seeds)), search=search,
                                depends_on=depends_on, gpus_per_trial=gpus if has_gpu else 0.0))
    evaluation = None
    if evaluate:
        evaluation = dict(SMOKE_EVALUATION) if smoke_test else {}
        if pgd_images:
            evaluation["pgd_images"] = pgd_images
    return SweepPlan(name=name or preset_name, preset=preset_name, runs=runs, prune=prune,
                     max_concurrent=max_concurrent, checkpoint_every=checkpoint_every, store=store,
                     storage=storage, evaluation=evaluation, compile=compile)


def estimate_gpu_hours(preset_name: str, seconds_per_epoch) -> tuple[int, int, float]:
    """(trials, epochs in all, GPU-hours) of a preset at the paper's budgets, one trial per GPU."""
    trials = total_epochs = 0
    hours = 0.0
    for preset in get_preset(preset_name):
        per_variant = preset.search.num_samples if preset.search else 1
        for t in preset.trials:
            trials += per_variant
            total_epochs += per_variant * preset.epochs
            hours += per_variant * preset.epochs * seconds_per_epoch(t) / 3600
    return trials, total_epochs, hours
