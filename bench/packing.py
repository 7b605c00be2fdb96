"""Throughput of K small-net trainings sharing one GPU, against one alone (sets --gpus-per-trial).

Starts K processes at once, each training the same arch for a few epochs on synthetic data with the
real Trainer, and compares total images per second with K = 1. Needs only torch.

    PYTHONPATH=. python3 bench/packing.py --arch rohrer100k --variant scs+none+maxabs --procs 1,2,4,8
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

WORKER = """
import json, sys, time
from trainables.bench import bench_epochs, variant_keys
from trainables.config import TrialConfig
arch, variant, n_train, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = bench_epochs(TrialConfig(arch=arch, **variant_keys(variant)), n_train, 1000, epochs=epochs, warmup=1)
print(json.dumps(r))
"""


def run(procs: int, args) -> dict:
    start = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, args.arch, args.variant, str(args.n_train),
                                 str(args.epochs)], stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    results = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
    wall = time.perf_counter() - start
    per_epoch = max(r["train_s_per_epoch"] for r in results)
    return {"procs": procs, "slowest_train_s_per_epoch": per_epoch,
            "images_per_s": procs * args.n_train / per_epoch, "wall_s": wall}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="rohrer100k")
    p.add_argument("--variant", default="scs+none+maxabs")
    p.add_argument("--procs", default="1,2,4,8")
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    rows = [run(int(k), args) for k in args.procs.split(",")]
    base = rows[0]["images_per_s"]
    print("| processes | train s/epoch (slowest) | total images/s | vs 1 process |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['procs']} | {r['slowest_train_s_per_epoch']:.3f} | {r['images_per_s']:,.0f} | "
              f"{r['images_per_s'] / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
