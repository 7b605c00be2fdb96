"""A run's budget: what one experiment's trials cost, decided once per experiment and read everywhere else.

`budget_for(experiment, options)` is the one place where `--smoke-test`, `--quick`, `--epochs`, the image
counts, `--seeds`, `--num-samples`, `--no-prune` and the evaluation options meet an experiment's own
settings. The plan (plan.py) builds every trial from the Budget it returns, the CLI's help quotes SMOKE and
QUICK (`describe()`), and every trial row carries its `name`, the one rule tables and claims read for
"ran the paper's budget":

    smoke    --smoke-test: one epoch on a few hundred synthetic images, on the CPU
    quick    --quick: a reduced budget a 2-core CPU finishes in minutes, with seeds for intervals
    full     CIFAR-10, all its images, at least the paper's epochs for an experiment linked to the paper
             (`paper_table`), else the experiment's own
    reduced  anything less, or other data
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from common.vocabulary import FULL_BUDGET, PAPER_EPOCHS, PAPER_TEST_IMAGES, PAPER_TRAIN_IMAGES

__all__ = ["Budget", "SMOKE", "QUICK", "IMAGES", "budget_for"]

# The images a data set has: a subset cannot be larger (synthetic data is drawn to any size).
IMAGES = {"cifar10": {"n_train": PAPER_TRAIN_IMAGES, "n_test": PAPER_TEST_IMAGES}}


@dataclass(frozen=True)
class Budget:
    """What each trial of one experiment runs, and how many of them."""
    name: str                       # smoke | quick | full | reduced
    epochs: int
    n_train: int = 0                # 0: every training image
    n_test: int = 0                 # 0: every test image
    seeds: int = 1                  # seeds per grid trial (a search draws its trials from one)
    samples: int = 0                # trials of an Optuna search (0: the experiment has none)
    batch_size: int = 0             # 0: the experiment's own
    prune: bool = True              # ASHA (a part a later stage starts from is never pruned: plan.py)
    evaluation: dict | None = None  # the end-of-trial PGD and saliency (EvalSettings overrides); None: off

    def describe(self) -> str:
        """'8 epochs, 5,000/2,000 images, 3 seeds, no pruning, PGD on 100 images'."""
        parts = [f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"]
        if self.n_train or self.n_test:
            parts.append(f"{self.n_train or PAPER_TRAIN_IMAGES:,}/{self.n_test or PAPER_TEST_IMAGES:,} images")
        if self.batch_size:
            parts.append(f"batch {self.batch_size}")
        if self.seeds > 1:
            parts.append(f"{self.seeds} seeds")
        if not self.prune:
            parts.append("no pruning")
        if self.evaluation is not None and self.evaluation.get("pgd_images"):
            steps = self.evaluation.get("steps")
            parts.append(f"PGD on {self.evaluation['pgd_images']} images" + (f", {steps} steps" if steps else ""))
        if self.samples:
            parts.append(f"{self.samples} samples of a search")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


SMOKE = Budget("smoke", epochs=1, n_train=256, n_test=128, batch_size=64, samples=4,
               evaluation=dict(pgd_images=32, steps=2))
# Sized so that `run table1 --quick` on real CIFAR-10 (8 variants x 3 seeds, 2 trials at a time) ends within
# 15 minutes on this project's 2-core dev machine, evaluation included (see the README's figures). A quick
# run is too short to prune: every trial counts.
QUICK = Budget("quick", epochs=8, n_train=5000, n_test=2000, seeds=3, samples=8, prune=False,
               evaluation=dict(pgd_images=100))


def _label(dataset: str, epochs: int, target: int, n_train: int, n_test: int) -> str:
    """full when CIFAR-10, all its images and at least `target` epochs; else reduced."""
    whole = all(n in (0, IMAGES["cifar10"][key]) for n, key in ((n_train, "n_train"), (n_test, "n_test")))
    return FULL_BUDGET if dataset == "cifar10" and whole and epochs >= target else "reduced"


def budget_for(experiment, options, listed_seeds: bool = False) -> Budget:
    """The budget of one experiment under `run`'s options (plan.RunOptions). listed_seeds: the
    experiment's grid lists its own seeds (then each grid trial runs once: its seed is in the grid)."""
    mode = SMOKE if options.smoke_test else QUICK if options.quick else None
    if options.epochs:
        epochs = options.epochs
    elif mode is SMOKE:
        epochs = SMOKE.epochs
    else:
        epochs = min(experiment.epochs, QUICK.epochs) if mode is QUICK else experiment.epochs
    n_train = options.train_images if options.train_images is not None else (mode.n_train if mode else 0)
    n_test = options.test_images if options.test_images is not None else (mode.n_test if mode else 0)
    seeds = 1 if listed_seeds else options.seeds or (mode.seeds if mode else 1)
    samples = 0
    if experiment.search:
        defaults = experiment.search.samples
        samples = options.num_samples or (SMOKE.samples if mode is SMOKE else
                                          min(defaults, QUICK.samples) if mode is QUICK else defaults)
    evaluation = None
    if options.evaluate:
        evaluation = dict(mode.evaluation) if mode else {}
        if options.pgd_images:
            evaluation["pgd_images"] = options.pgd_images
    name = mode.name if mode else _label(options.resolved_dataset, epochs,
                                         PAPER_EPOCHS.get(experiment.paper_table, experiment.epochs), n_train, n_test)
    base = mode or Budget(name, epochs)
    return replace(base, name=name, epochs=epochs, n_train=n_train, n_test=n_test, seeds=seeds, samples=samples,
                   prune=options.prune and (mode is not QUICK), evaluation=evaluation)
