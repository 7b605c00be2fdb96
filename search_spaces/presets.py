"""Each experiment of the paper as plain data: its variants, fixed settings, epochs and search.

Source of every variant set and setting: shared/reference/paper_facts.md. No torch, no ray: a preset is
a list of trial dicts (keys of trainables.config.TrialConfig plus "group", the paper table a trial
belongs to), the epoch budget, and for optuna-p the search over the fixed p.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["Preset", "PRESETS", "get_preset", "list_presets", "PresetError"]


class PresetError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Search:
    """A search over one numeric key (the fixed p) by Optuna TPE, with ASHA pruning."""
    key: str
    low: float
    high: float
    log: bool
    num_samples: int


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    trials: tuple                      # trial dicts (TrialConfig keys + "group")
    epochs: int
    paper: str                         # where in the paper
    search: Search | None = None
    stages: tuple = ()                 # (group that waits, group it waits for): weight-norms

    @property
    def n_trials(self) -> int:
        return self.search.num_samples * len(self.trials) if self.search else len(self.trials)

    def groups(self) -> list[str]:
        return sorted({t["group"] for t in self.trials})


def _variants(arch: str, group: str, layers, activations, poolings, normalizations=("",), **fixed) -> list:
    return [dict(arch=arch, layer=lay, activation=act, pooling=pool, normalization=norm, group=group,
                 **fixed)
            for lay, act, pool, norm in itertools.product(layers, activations, poolings, normalizations)]


BOTH_POOLS = ("max", "maxabs")
BOTH_ACTS = ("relu", "none")
ADAM = dict(optimizer="adam", scheduler="onecycle", max_lr=0.01, weight_decay=0.0, batch_size=128)


def table1() -> Preset:
    trials = _variants("rohrer100k", "table1", ("conv", "scs"), BOTH_ACTS, BOTH_POOLS, **ADAM)
    return Preset("table1", "Rohrer100K: {Conv2d, SCS} x {ReLU, none} x {MaxPool, MaxAbsPool}",
                  tuple(trials), 800, "Table 1, Figs 1, 3, 5")


def table2() -> Preset:
    trials = _variants("resnet18", "table2", ("conv", "scs"), BOTH_ACTS, BOTH_POOLS, ("batchnorm",),
                       image_dim=32, **ADAM)
    return Preset("table2", "ResNet18 @32: {Conv2d, SCS} x {ReLU, none} x {MaxPool, MaxAbsPool}",
                  tuple(trials), 200, "Table 2, Figs 4, 6")


def cosine() -> Preset:
    trials = _variants("rohrer100k", "cosine", ("scs",), BOTH_ACTS, ("maxabs",), p_mode="fixed",
                       p_value=1.0, **ADAM)
    return Preset("cosine", "Rohrer100K with unsharpened cosine similarity (p fixed to 1), +/- ReLU",
                  tuple(trials), 800, "Section 4.2")


def weight_norms() -> Preset:
    """ResNet20 as in akamaster's trainer; the second SCS run starts from the trained conv run."""
    sgd = dict(arch="resnet20", activation="relu", pooling="max", normalization="batchnorm",
               optimizer="sgd", max_lr=0.1, momentum=0.9, weight_decay=1e-4, scheduler="multistep",
               milestones=[100, 150], gamma=0.1, batch_size=128, batch_weight_norms=True)
    trials = (dict(layer="conv", group="weight-norms/conv", **sgd),
              dict(layer="scs", group="weight-norms/scs-scratch", **sgd),
              dict(layer="scs", group="weight-norms/scs-from-conv", init_from="@weight-norms/conv", **sgd))
    return Preset("weight-norms", "ResNet20: SCS from scratch and from a trained conv ResNet20",
                  trials, 200, "Section 4.3, Fig 2",
                  stages=(("weight-norms/scs-from-conv", "weight-norms/conv"),))


def p_dynamics() -> Preset:
    trials = (dict(arch="rohrer100k", layer="scs", activation="none", pooling="maxabs",
                   optimizer="adam", scheduler="constant", max_lr=1e-3, weight_decay=1e-5,
                   batch_size=128, group="p-dynamics"),)
    return Preset("p-dynamics", "Rohrer100K SCS: learned p of every kernel per epoch (fixed lr 1e-3)",
                  trials, 100, "Appendix C.1, Fig 7")


def _optuna(name: str, arch: str, epochs: int, extra: dict) -> Preset:
    trials = (dict(arch=arch, layer="scs", activation="none", p_mode="fixed", group=name, **extra, **ADAM),)
    return Preset(name, f"{arch}: one fixed p for every SCS layer, searched by Optuna TPE with pruning",
                  trials, epochs, "Appendix C.2, Fig 8", search=Search("p_value", 0.1, 10.0, True, 30))


def optuna_p_rohrer() -> Preset:
    return _optuna("optuna-p-rohrer100k", "rohrer100k", 600, dict(pooling="maxabs"))


def optuna_p_resnet18() -> Preset:
    return _optuna("optuna-p-resnet18", "resnet18", 100, dict(pooling="max", normalization="batchnorm"))


def _gallery_table(number: int, arch: str, seed: int = 0) -> Preset:
    """Tables 3-7: Conv2d+ReLU x 2 pools, plus {SCS, SharpenedSDP} x {ReLU, none} x 2 pools = 10."""
    group = f"table{number}"
    trials = (_variants(arch, group, ("conv",), ("relu",), BOTH_POOLS, seed=seed, **ADAM)
              + _variants(arch, group, ("scs", "sdp"), BOTH_ACTS, BOTH_POOLS, seed=seed, **ADAM))
    return Preset(group, f"{arch}: Conv2d+ReLU and {{SCS, SharpenedSDP}} x {{ReLU, none}} x 2 pools",
                  tuple(trials), 800, f"Table {number}")


def table8() -> Preset:
    norms = ("batchnorm", "none")
    trials = (_variants("resnet18", "table8", ("conv",), ("relu",), BOTH_POOLS, norms, image_dim=224, **ADAM)
              + _variants("resnet18", "table8", ("scs",), BOTH_ACTS, BOTH_POOLS, norms, image_dim=224, **ADAM))
    return Preset("table8", "ResNet18 @224: Conv2d+ReLU and SCS x {ReLU, none}, x 2 pools x {BN, none}",
                  tuple(trials), 200, "Table 8, Figs 14, 17")


_BUILDERS = {
    "table1": table1, "table2": table2, "cosine": cosine, "weight-norms": weight_norms,
    "p-dynamics": p_dynamics, "optuna-p-rohrer100k": optuna_p_rohrer, "optuna-p-resnet18": optuna_p_resnet18,
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


def get_preset(name: str) -> list[Preset]:
    """The preset(s) a name stands for: one, or the parts of a composite such as `paper`."""
    if name in _BUILDERS:
        return [_BUILDERS[name]()]
    if name in COMPOSITES:
        return [_BUILDERS[part]() for part in COMPOSITES[name]]
    raise PresetError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
