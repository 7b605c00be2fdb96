"""The CPU speed targets in one run: this checkout, and with --before REV an earlier revision of it.

    MaxAbsPool2d / MaxPool2d     Rohrer100K training epoch, conv+relu+maxabs over conv+relu+max   <= 1.15
    SCS / Conv2d                 scs+none+max over conv+relu+max                                   <= 1.35
    SDP / Conv2d                 sdp+none+max over conv+relu+max                                   <= 1.35
    project / reference          CIFAR-10 (--data), 10,000 / 2,000 images, scs+none+maxabs: this
                                 project's epoch over the gallery scripts' pipeline's              <= 0.5
    quick Table 1                `scs-sweep run table1 --quick` wall time (--quick-table1)          <= 15 min

Epochs are timed as a sweep's trial runs them: one thread (--threads, default 1), compile=auto for a
trial of --budget-epochs epochs, synthetic data of CIFAR-10's shape (5,000 / 2,000 images by default).
Each measurement runs in a fresh process of the revision it measures (PYTHONPATH at a git worktree of
REV for --before), and the revisions take turns, repeat by repeat, so that both see the same machine:
read the ratios, not the seconds, on a shared machine. Needs only torch (and git for --before; the
quick Table 1 runs this checkout's `scs-sweep`).

    python -m bench.targets [--before REV] [--data DIR [--quick-table1]] [--threads 1] ...

What each fresh process runs is bench/targets_measure.py, run as a file so that its imports resolve to the
revision being measured (its PYTHONPATH), whatever that revision's bench/ folder holds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.errors import ScsSweepError

__all__ = ["run_targets", "TARGETS", "VARIANTS", "BenchError", "main"]

BASE = "conv+relu+max"
VARIANTS = (BASE, "conv+relu+maxabs", "scs+none+max", "scs+none+maxabs", "sdp+none+max")
# (name, variant over BASE, goal)
TARGETS = (("MaxAbsPool2d / MaxPool2d", "conv+relu+maxabs", 1.15), ("SCS / Conv2d", "scs+none+max", 1.35),
           ("SDP / Conv2d", "sdp+none+max", 1.35))
REAL = dict(n_train=10_000, n_test=2_000, epochs=4, goal=0.5)   # the project / reference comparison
QUICK_TABLE1_GOAL_MIN = 15
ROOT = Path(__file__).resolve().parent.parent


class BenchError(ScsSweepError):
    """A measurement that could not run; the message says which, and the end of its output."""

MEASURE = Path(__file__).resolve().parent / "targets_measure.py"


def _measure(tree: Path, kind: str, args: dict) -> dict:
    """Run one measurement (targets_measure.py: epoch | project | reference) in a fresh interpreter on `tree`'s
    code; its JSON result."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(MEASURE), kind, json.dumps(args)], cwd=tree, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"measuring on {tree} failed: {_last_line(done)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _quick_table1(tree: Path, data: str, work: Path, name: str) -> float:
    """Wall seconds of `scs-sweep run table1 --quick` on `tree`'s code, its table printed."""
    env = dict(os.environ, PYTHONPATH=str(tree), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    store, runs = work / "store", work / "runs"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "table1", "--quick", "--data", data,
                           "--name", name, "--store", str(store), "--storage", str(runs)], cwd=tree, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise BenchError(f"the quick table1 on {tree} failed: {_last_line(done)}")
    table = subprocess.run([sys.executable, "-m", "orchestrator.cli", "tables", "--experiment", name, "--store",
                            str(store)], cwd=tree, env=env, capture_output=True, text=True)
    print(table.stdout, flush=True)
    return wall


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def _worktree(rev: str, where: Path) -> Path:
    done = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                          capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"--before {rev}: cannot check it out ({_last_line(done)})")
    return where


def run_targets(args) -> int:
    threads = args.threads or 1
    sides = {"after": ROOT}
    scratch = Path(tempfile.mkdtemp(prefix="scs-targets-"))
    try:
        if args.before:
            sides = {"before": _worktree(args.before, scratch / "before"), **sides}
        epochs = {side: {v: [] for v in VARIANTS} for side in sides}
        base = dict(threads=threads, n_train=args.n_train, n_test=args.n_test, epochs=args.epochs, warmup=args.warmup,
                    budget=args.budget_epochs)
        repeats = 2
        for rep in range(repeats):
            for variant in VARIANTS:
                for side, tree in sides.items():  # both revisions measure a variant back to back
                    r = _measure(tree, "epoch", dict(base, variant=variant))
                    epochs[side][variant].append(r["train_s_per_epoch"])
                    print(f"[{rep + 1}/{repeats}] {side:6s} {variant:18s} {r['train_s_per_epoch']:.3f} s/epoch "
                          f"({r.get('compile_path', 'eager' if not r['compiled'] else 'model')}, warm-up "
                          f"{r['compile_s']:.1f} s)", flush=True)
        real = {}
        if args.data:
            real_args = dict(base, data=str(Path(args.data).resolve()), n_train=REAL["n_train"],
                             n_test=REAL["n_test"], epochs=REAL["epochs"])
            real["reference"] = _measure(ROOT, "reference", real_args)
            for side, tree in sides.items():
                real[side] = _measure(tree, "project", real_args)
        walls = {}
        if args.quick_table1:
            for side, tree in sides.items():
                walls[side] = _quick_table1(tree, str(Path(args.data).resolve()), scratch / f"quick-{side}",
                                            f"bench-quick-{side}")
        _print(sides, epochs, real, walls, base)
    finally:
        if args.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(scratch / "before")],
                           capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _print(sides, epochs, real, walls, base) -> None:
    med = {side: {v: statistics.median(ts) for v, ts in runs.items()} for side, runs in epochs.items()}
    print(f"\nRohrer100K training epoch, {base['n_train']:,} / {base['n_test']:,} synthetic images, batch 128, "
          f"{base['threads']} thread(s), compile=auto for a {base['budget']}-epoch trial; medians of 2 runs, "
          f"revisions measured in turn\n")
    print("| variant | " + " | ".join(f"{s} s/epoch" for s in sides) + " |")
    print("|---|" + "---|" * len(sides))
    for v in VARIANTS:
        print(f"| {v} | " + " | ".join(f"{med[s][v]:.3f}" for s in sides) + " |")
    print("\n| target | " + " | ".join(sides) + " | goal |\n|---|" + "---|" * (len(sides) + 1))
    for name, variant, goal in TARGETS:
        print(f"| {name} | " + " | ".join(f"{med[s][variant] / med[s][BASE]:.2f}" for s in sides) + f" | <= {goal} |")
    if real:
        ref = statistics.median(real["reference"]["train_s"])
        cells = [f"{statistics.median(real[s]['train_s']) / ref:.2f} ({statistics.median(real[s]['train_s']):.2f} s)"
                 for s in sides]
        print(f"| project / reference, CIFAR-10 {REAL['n_train']:,}/{REAL['n_test']:,}, scs+none+maxabs "
              f"(reference {ref:.2f} s/epoch) | " + " | ".join(cells) + f" | <= {REAL['goal']} |")
    if walls:
        print("| quick Table 1 wall time | " + " | ".join(f"{walls[s] / 60:.1f} min" if s in walls else "-"
                                                   for s in sides) + f" | <= {QUICK_TABLE1_GOAL_MIN} min |")
    if real:
        accs = ", ".join(f"{k} {v['test_acc']:.3f}" for k, v in real.items())
        print(f"\nCIFAR-10 test accuracy after {REAL['epochs']} epochs (a check, not a target): {accs}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__.splitlines()[0])
    p.add_argument("--before", default="", metavar="REV", help="measure git revision REV of this checkout too, "
                   "in turn with this one (before/after)")
    p.add_argument("--data", default="", help="a CIFAR-10 folder: also this project against the reference pipeline")
    p.add_argument("--quick-table1", action="store_true", help="also time `scs-sweep run table1 --quick --data DATA`")
    p.add_argument("--threads", type=int, default=1, help="torch threads per measurement (a sweep's trial has 1)")
    p.add_argument("--n-train", type=int, default=5_000)
    p.add_argument("--n-test", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after --warmup epochs)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--budget-epochs", type=int, default=100, help="the trial imitated: what compile=auto decides by")
    args = p.parse_args(argv)
    try:
        if args.quick_table1 and not args.data:
            raise BenchError("--quick-table1 runs table1 on CIFAR-10: give its folder with --data")
        if args.data and not os.path.isdir(args.data):
            raise BenchError(f"--data {args.data} is not a folder; give the one that holds cifar-10-batches-py "
                             f"(or -bin)")
        return run_targets(args)
    except ScsSweepError as exc:
        print(f"python -m bench.targets: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
