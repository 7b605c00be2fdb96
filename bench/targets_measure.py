"""One measurement of bench/targets.py, in a fresh process on the code its PYTHONPATH names (this checkout, or
an earlier revision's worktree): run as a file, `python bench/targets_measure.py KIND JSON`, printing one
JSON line. KIND: epoch (a Rohrer100K training epoch on synthetic data), project (this project's epoch on
CIFAR-10), reference (the gallery scripts' pipeline on CIFAR-10; this checkout only).
"""
import inspect
import json
import sys

import torch


def _trial_config():
    """TrialConfig of the revision measured: common.config, or trainables.config before the shared base moved."""
    try:
        from common.config import TrialConfig
    except ImportError:
        from trainables.config import TrialConfig
    return TrialConfig


def epoch(a: dict) -> dict:
    from trainables.bench import bench_epochs

    TrialConfig = _trial_config()

    # spelled out rather than vocabulary.parse_variant: earlier revisions measured here do not have it
    keys = dict(zip(("layer", "activation", "pooling"), a["variant"].split("+")))
    # revisions before the budget_epochs argument time what compile=auto did then
    extra = {"budget_epochs": a["budget"]} if "budget_epochs" in inspect.signature(bench_epochs).parameters else {}
    return bench_epochs(TrialConfig(arch="rohrer100k", batch_size=128, **keys), a["n_train"], a["n_test"], a["epochs"],
                        a["warmup"], "cpu", "auto", **extra)


def _cifar_config(a: dict):
    return _trial_config()(arch="rohrer100k", layer="scs", activation="none", pooling="maxabs", dataset="cifar10",
                       data_dir=a["data"], n_train=a["n_train"], n_test=a["n_test"], epochs=a["budget"])


def project(a: dict) -> dict:
    from trainables.train import Trainer

    trainer = Trainer(_cifar_config(a), compile="auto")
    warm = trainer.warm_up()
    rows = [trainer.train_epoch() for _ in range(a["epochs"])]
    return {"train_s": [r.train_time_s for r in rows], "test_acc": rows[-1].test_acc, "warm_up_s": warm}


def reference(a: dict) -> dict:
    from bench.reference_pipeline import train_reference
    from trainables.data import load_dataset

    cfg = _cifar_config(a)
    train, test = load_dataset("cifar10", a["data"], a["n_train"], a["n_test"], 0)
    rows = train_reference(cfg, train, test, a["epochs"])
    return {"train_s": [r["train_s"] for r in rows], "test_acc": rows[-1]["test_acc"]}


if __name__ == "__main__":
    kind, args = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(args["threads"])
    print(json.dumps({"epoch": epoch, "project": project, "reference": reference}[kind](args)))
