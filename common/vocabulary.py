"""The project's vocabulary in one place: config values, their printed labels, trial statuses, budgets,
and the paper's own budgets (docs/paper_facts.md).

Pure Python, imported by every package (the results package included) without torch or ray, so that
each fact is written once: a new pooling, status or paper table is added here and nowhere else.
"""
from __future__ import annotations

# -- config values (design.md, "Vocabulary") ----------------------------------------------------
ARCHS = ("rohrer25k", "rohrer47k", "rohrer68k", "rohrer100k", "rohrer583k", "resnet18", "resnet20")
LAYERS = ("conv", "scs", "sdp")
ACTIVATIONS = ("relu", "none")
POOLINGS = ("max", "maxabs")
NORMALIZATIONS = ("batchnorm", "none")
P_MODES = ("learned", "fixed")
DATASETS = ("cifar10", "synthetic")
OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("onecycle", "multistep", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")        # auto: bf16 autocast on CUDA, fp32 on the CPU
# Trainer(compile=...): auto = the whole model compiled + CUDA graphs on a GPU (eager if that fails), and
# on a CPU the sharpening and windowed-pooling kernels for trials long enough to pay
# (train.compiles_kernels); on = the whole model on a CPU too; off = nothing compiled
COMPILE_MODES = ("auto", "on", "off")
# the experiment trackers a sweep can log to (--track, a sweep file's `track`; orchestrator/trackers.py)
TRACKERS = ("mlflow", "wandb")

# -- how tables, figures and the report print them (the paper's labels) --------------------------
LABELS = {
    "layer": {"conv": "Conv2d", "scs": "SCS", "sdp": "SharpenedSDP"},
    "activation": {"relu": "ReLU", "none": "None"},
    "pooling": {"max": "MaxPool2d", "maxabs": "MaxAbsPool2d"},
    "normalization": {"batchnorm": "BatchNorm2d", "none": "None"},
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ARCH_LABELS = {"rohrer25k": "Rohrer25K", "rohrer47k": "Rohrer47K", "rohrer68k": "Rohrer68K",
               "rohrer100k": "Rohrer100K", "rohrer583k": "Rohrer583K", "resnet18": "ResNet18",
               "resnet20": "ResNet20"}


def dropout_label(dropout) -> str:
    """The paper's Dropout column: "None" when off, else the drop probability."""
    return "None" if not dropout or dropout != dropout else f"{float(dropout):g}"


# -- trials ---------------------------------------------------------------------------------------
# done: ran its whole budget; pruned: stopped early by the scheduler; stopped: ended early and nothing
# says why; failed: an error it could not get past.
STATUSES = ("done", "running", "pending", "pruned", "stopped", "failed")
FINISHED = "done"                                   # the only status tables average and claims judge
COUNTED = ("done", "running", "pending", "pruned", "failed")  # what status lines count even when 0
ENDED = ("done", "pruned", "stopped", "failed")     # a trial in one of these will report no more
# A trial row's budget: full = the paper's (CIFAR-10, all 50,000 / 10,000 images, the paper's epochs);
# reduced = anything less (fewer epochs or images, or other data); quick and smoke = those run modes.
BUDGETS = ("full", "reduced", "quick", "smoke")
FULL_BUDGET = "full"

# -- the paper's experiments (docs/paper_facts.md, Appendix A) -----------------------------------
# Every experiment the paper reports numbers, figures or claims for: where it is in the paper and the epochs
# it trained. A sweep links to one with `paper_table` (every preset does; the name is the store's column,
# though not every experiment is a table), which sets its budget and what it is compared with.
PAPER_EXPERIMENTS = {
    "table1": ("Table 1, Figs 1, 3, 5", 800), "table2": ("Table 2, Figs 4, 6", 200),
    "table3": ("Table 3", 800), "table4": ("Table 4", 800), "table5": ("Table 5", 800),
    "table6": ("Table 6", 800), "table7": ("Table 7", 800), "table8": ("Table 8, Figs 14, 17", 200),
    "cosine": ("Section 4.2", 800),
    "weight-norms": ("Section 4.3, Fig 2", 200),
    "p-dynamics": ("Appendix C.1, Fig 7", 100),
    "optuna-p-rohrer100k": ("Appendix C.2, Fig 8", 600),
    "optuna-p-resnet18": ("Appendix C.2, Fig 8", 100),
}
PAPER_EPOCHS = {name: epochs for name, (_, epochs) in PAPER_EXPERIMENTS.items()}
PAPER_SECTIONS = {name: where for name, (where, _) in PAPER_EXPERIMENTS.items()}
PAPER_TRAIN_IMAGES, PAPER_TEST_IMAGES = 50_000, 10_000   # CIFAR-10's training and test sets


# -- how benches spell a variant ----------------------------------------------------------------
VARIANT_KEYS = ("layer", "activation", "pooling", "normalization")


def parse_variant(variant: str) -> dict:
    """TrialConfig keys from the benches' spelling of a variant, layer+activation+pooling[+normalization]
    (e.g. scs+none+maxabs); TrialConfig checks the values."""
    return dict(zip(VARIANT_KEYS, variant.strip().split("+")))
