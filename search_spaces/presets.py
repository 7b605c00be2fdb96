"""Each experiment of the paper as plain data, in the shape of a sweep file (experiment.py).

Source of every variant set and setting: docs/paper_facts.md. Every preset is one of the paper's experiments
and says which (`paper`: its section and figure; `paper_table`: its key in common/vocabulary.py
PAPER_EXPERIMENTS, which gives its budget). No torch, no ray. A preset is a
list of Experiments (one, or several for `optuna-p` and `paper`); `scs-sweep presets --show NAME` prints
it as the TOML sweep file that runs exactly its trials.
"""
from __future__ import annotations

from common.vocabulary import PAPER_EPOCHS, PAPER_SECTIONS

from .experiment import Experiment, Search, SpecError

__all__ = ["PRESETS", "get_preset", "list_presets"]

BOTH_POOLS = ["max", "maxabs"]
BOTH_ACTS = ["relu", "none"]
# Appendix A: Adam, max lr 0.01, OneCycleLR, weight decay 0 (batch 128: the gallery scripts' size)
ADAM = dict(optimizer="adam", scheduler="onecycle", max_lr=0.01, weight_decay=0.0, batch_size=128)


def table1() -> Experiment:
    return Experiment(
        "table1", PAPER_EPOCHS["table1"], dict(arch="rohrer100k", **ADAM),
        grids=(dict(layer=["conv", "scs"], activation=BOTH_ACTS, pooling=BOTH_POOLS),),
        description="Rohrer100K: {Conv2d, SCS} x {ReLU, none} x {MaxPool, MaxAbsPool}",
        paper=PAPER_SECTIONS["table1"], paper_table="table1")


def table2() -> Experiment:
    return Experiment(
        "table2", PAPER_EPOCHS["table2"], dict(arch="resnet18", image_dim=32, normalization="batchnorm", **ADAM),
        grids=(dict(layer=["conv", "scs"], activation=BOTH_ACTS, pooling=BOTH_POOLS),),
        description="ResNet18 @32: {Conv2d, SCS} x {ReLU, none} x {MaxPool, MaxAbsPool}",
        paper=PAPER_SECTIONS["table2"], paper_table="table2")


def cosine() -> Experiment:
    return Experiment(
        "cosine", PAPER_EPOCHS["cosine"],
        dict(arch="rohrer100k", layer="scs", pooling="maxabs", p_mode="fixed", p_value=1.0, **ADAM),
        grids=(dict(activation=BOTH_ACTS),),
        description="Rohrer100K with unsharpened cosine similarity (p fixed to 1), +/- ReLU",
        paper=PAPER_SECTIONS["cosine"], paper_table="cosine")


def weight_norms() -> Experiment:
    """ResNet20 as in akamaster's trainer; the second SCS run starts from the trained conv run."""
    sgd = dict(arch="resnet20", activation="relu", pooling="max", normalization="batchnorm",
               optimizer="sgd", max_lr=0.1, momentum=0.9, weight_decay=1e-4, scheduler="multistep",
               milestones=[100, 150], gamma=0.1, batch_size=128, batch_weight_norms=True)
    return Experiment(
        "weight-norms", PAPER_EPOCHS["weight-norms"], sgd,
        grids=(dict(group=["weight-norms/conv"], layer=["conv"]),
               dict(group=["weight-norms/scs-scratch"], layer=["scs"]),
               dict(group=["weight-norms/scs-from-conv"], layer=["scs"], init_from=["@weight-norms/conv"])),
        description="ResNet20: SCS from scratch and from a trained conv ResNet20",
        paper=PAPER_SECTIONS["weight-norms"], paper_table="weight-norms")


def p_dynamics() -> Experiment:
    return Experiment(
        "p-dynamics", PAPER_EPOCHS["p-dynamics"],
        dict(arch="rohrer100k", layer="scs", activation="none", pooling="maxabs", optimizer="adam",
             scheduler="constant", max_lr=1e-3, weight_decay=1e-5, batch_size=128),
        description="Rohrer100K SCS: learned p of every kernel per epoch (fixed lr 1e-3)",
        paper=PAPER_SECTIONS["p-dynamics"], paper_table="p-dynamics")


def _optuna(name: str, arch: str, extra: dict) -> Experiment:
    return Experiment(
        name, PAPER_EPOCHS[name], dict(arch=arch, layer="scs", activation="none", p_mode="fixed", **extra, **ADAM),
        search=Search("p_value", 0.1, 10.0, log=True, samples=30),
        description=f"{arch}: one fixed p for every SCS layer, searched by Optuna TPE with pruning",
        paper=PAPER_SECTIONS[name], paper_table=name)


def _gallery_table(number: int, arch: str, seed: int = 0) -> Experiment:
    """Tables 3-7: Conv2d+ReLU x 2 pools, plus {SCS, SharpenedSDP} x {ReLU, none} x 2 pools = 10."""
    return Experiment(
        f"table{number}", PAPER_EPOCHS[f"table{number}"], dict(arch=arch, seed=seed, **ADAM),
        grids=(dict(layer=["conv"], activation=["relu"], pooling=BOTH_POOLS),
               dict(layer=["scs", "sdp"], activation=BOTH_ACTS, pooling=BOTH_POOLS)),
        description=f"{arch}: Conv2d+ReLU and {{SCS, SharpenedSDP}} x {{ReLU, none}} x 2 pools",
        paper=PAPER_SECTIONS[f"table{number}"], paper_table=f"table{number}")


def table8() -> Experiment:
    norms = ["batchnorm", "none"]
    return Experiment(
        "table8", PAPER_EPOCHS["table8"], dict(arch="resnet18", image_dim=224, **ADAM),
        grids=(dict(layer=["conv"], activation=["relu"], pooling=BOTH_POOLS, normalization=norms),
               dict(layer=["scs"], activation=BOTH_ACTS, pooling=BOTH_POOLS, normalization=norms)),
        description="ResNet18 @224: Conv2d+ReLU and SCS x {ReLU, none}, x 2 pools x {BN, none}",
        paper=PAPER_SECTIONS["table8"], paper_table="table8")


_BUILDERS = {
    "table1": table1, "table2": table2, "cosine": cosine, "weight-norms": weight_norms,
    "p-dynamics": p_dynamics,
    "optuna-p-rohrer100k": lambda: _optuna("optuna-p-rohrer100k", "rohrer100k", dict(pooling="maxabs")),
    "optuna-p-resnet18": lambda: _optuna("optuna-p-resnet18", "resnet18",
                                         dict(pooling="max", normalization="batchnorm")),
    "table3": lambda: _gallery_table(3, "rohrer25k"), "table4": lambda: _gallery_table(4, "rohrer47k"),
    "table5": lambda: _gallery_table(5, "rohrer68k"),
    # "Rohrer100K (new initial weights)": the same net as table1 from another seed.
    "table6": lambda: _gallery_table(6, "rohrer100k", seed=1),
    "table7": lambda: _gallery_table(7, "rohrer583k"), "table8": table8,
}
# Presets that run several of the above as one sweep.
COMPOSITES = {
    "optuna-p": ("optuna-p-rohrer100k", "optuna-p-resnet18"),
    "paper": ("table1", "table2", "cosine", "weight-norms", "p-dynamics", "table3", "table4", "table5",
              "table6", "table7", "table8", "optuna-p-rohrer100k", "optuna-p-resnet18"),
}
PRESETS = tuple(_BUILDERS) + tuple(COMPOSITES)


def list_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> list[Experiment]:
    """The experiment(s) a name stands for: one, or the parts of a composite such as `paper`."""
    if name in _BUILDERS:
        return [_BUILDERS[name]()]
    if name in COMPOSITES:
        return [_BUILDERS[part]() for part in COMPOSITES[name]]
    raise SpecError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} "
                    f"(or give a sweep file ending in .toml)")
