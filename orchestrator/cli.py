"""The `scs-sweep` console script: parses arguments and hands each command to its module.

Commands that need Ray, pandas or DuckDB import them when they run, so `models` and `bench` work on a
machine that has only torch. Any expected failure ends as one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from trainables.config import ConfigError
from trainables.data import DataError

from search_spaces.presets import PresetError


from .errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    from trainables import bench

    p = argparse.ArgumentParser(prog="scs-sweep", description="Sharpened Cosine Similarity sweeps.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="every arch x variant with parameter counts")
    m.add_argument("--json", action="store_true")
    m.set_defaults(handler="orchestrator.models_cmd:run")

    pr = sub.add_parser("presets", help="experiments, trial counts, epoch budgets, est. GPU-hours")
    pr.set_defaults(handler="orchestrator.commands:presets")

    r = sub.add_parser("run", help="run a preset as a Ray Tune sweep")
    r.add_argument("preset")
    r.add_argument("--name", default="", help="sweep name (default: the preset)")
    r.add_argument("--data", default="", help="folder holding cifar-10-batches-py (or -bin)")
    r.add_argument("--dataset", default="", choices=["", "cifar10", "synthetic"])
    r.add_argument("--store", default="scs_store", help="results store: a folder or a pyarrow URI")
    r.add_argument("--storage", default="", help="where Tune keeps experiments (default ./scs_runs)")
    r.add_argument("--epochs", type=int, default=0, help="override the preset's epoch budget")
    r.add_argument("--seeds", type=int, default=1, help="repeat every variant over N seeds")
    r.add_argument("--address", default="", help="Ray cluster: auto or HOST:PORT (default: embedded)")
    r.add_argument("--gpus-per-trial", type=float, default=None)
    r.add_argument("--max-concurrent", type=int, default=0)
    r.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    r.add_argument("--num-samples", type=int, default=0, help="trials of an Optuna search")
    r.add_argument("--no-prune", action="store_true", help="no ASHA: every trial runs every epoch")
    r.add_argument("--smoke-test", action="store_true", help="1 epoch, 256 images, CPU")
    r.add_argument("--no-evaluate", action="store_true", help="skip the end-of-trial PGD and saliency")
    r.add_argument("--pgd-images", type=int, default=0, help="test images attacked per trial (default 1000)")
    r.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="auto: torch.compile + CUDA graphs on GPUs, eager on CPUs; on: compile on CPUs too")
    r.set_defaults(handler="orchestrator.commands:run")

    re_ = sub.add_parser("resume", help="continue an interrupted sweep where it stopped")
    re_.add_argument("name")
    re_.add_argument("--store", default="")
    re_.add_argument("--storage", default="")
    re_.add_argument("--address", default="")
    re_.set_defaults(handler="orchestrator.commands:resume")

    st = sub.add_parser("status", help="trials done / running / pending / pruned / failed")
    st.add_argument("name", nargs="?", default="")
    st.add_argument("--storage", default="")
    st.set_defaults(handler="orchestrator.commands:status")

    g = sub.add_parser("gather", help="(re)build store rows from a Tune experiment directory")
    g.add_argument("experiment_dir")
    g.add_argument("--store", default="scs_store")
    g.add_argument("--experiment", default="", help="experiment name in the store")
    g.set_defaults(handler="orchestrator.commands:gather")

    ev = sub.add_parser("evaluate", help="PGD robustness and saliency of stored checkpoints")
    ev.add_argument("path", help="a trainer checkpoint (trainer.pt) or a sweep/experiment directory")
    ev.add_argument("--store", default="scs_store")
    ev.add_argument("--experiment", default="", help="store experiment name (default: from the path)")
    ev.add_argument("--trial-id", default="", help="store trial id of a single checkpoint")
    ev.add_argument("--data", default="", help="CIFAR-10 folder (default: the trial's own data setting)")
    ev.add_argument("--eps", default="", help="comma-separated eps list (default 0.001,...,0.03)")
    ev.add_argument("--steps", type=int, default=10)
    ev.add_argument("--pgd-images", type=int, default=1000)
    ev.add_argument("--saliency-per-class", type=int, default=1)
    ev.add_argument("--device", default="")
    ev.set_defaults(handler="orchestrator.evaluate_cmd:run")

    q = sub.add_parser("query", help="SQL over the store (tables: trials, epochs, layers, ...)")
    q.add_argument("sql")
    q.add_argument("--store", default="scs_store")
    q.add_argument("--format", default="table", choices=["table", "csv", "json"])
    q.set_defaults(handler="orchestrator.commands:query")

    t = sub.add_parser("tables", help="the paper's Tables 1-8 from the store")
    t.add_argument("--store", default="scs_store")
    t.add_argument("--experiment", default="", help="only this sweep's trials")
    t.add_argument("--format", default="md", choices=["md", "csv", "latex"])
    t.add_argument("--compare-paper", action="store_true", help="paper values, differences, claims")
    t.set_defaults(handler="orchestrator.commands:tables")

    f = sub.add_parser("figures", help="the paper's figures as PNGs, plus report.html")
    f.add_argument("--store", default="scs_store")
    f.add_argument("--out", default="figures")
    f.set_defaults(handler="orchestrator.commands:figures")

    b = sub.add_parser("bench", help="training-core speed: epoch times, SCS vs conv (no Ray needed)")
    bench.add_arguments(b)
    b.set_defaults(handler="trainables.bench:run")
    return p


def _call(handler: str, args) -> int:
    import importlib

    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)(args)


def _store_error():
    try:
        from results.store import StoreError
        return StoreError
    except ImportError:  # pyarrow absent (a torch-only GPU machine running `bench`)
        return UsageError


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _call(args.handler, args)
    except (UsageError, ConfigError, DataError, PresetError, FileNotFoundError, _store_error()) as exc:
        print(f"scs-sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `scs-sweep models | head`
        return 0
    except KeyboardInterrupt:
        print(f"scs-sweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
