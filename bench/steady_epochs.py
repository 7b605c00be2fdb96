"""Rohrer100K training epochs of several variants in one process, taking turns: the steady state, after
each variant's warm-up and first epoch, with no process start or compile in the timing.

    python -m bench.steady_epochs conv+relu+max,conv+relu+maxabs,scs+none+max [IMAGES] [ROUNDS]

A variant is layer+activation+pooling, optionally @COMPILE (auto, on, off; default auto for a 100-epoch
trial). One thread, as a sweep's trial; synthetic images (default 2,560), batch 128. Prints each variant's
median seconds per training epoch and its ratio to the first variant.
"""
import statistics
import sys

import torch

from common.config import TrialConfig
from common.vocabulary import parse_variant
from trainables.data import make_synthetic
from trainables.train import Trainer


def main(variants: list[str], n_train: int, rounds: int) -> None:
    torch.set_num_threads(1)
    train, test = make_synthetic(n_train, 256)
    trainers = {}
    for variant in variants:
        spec, _, mode = variant.partition("@")
        cfg = TrialConfig(arch="rohrer100k", batch_size=128, dataset="synthetic", epochs=100, **parse_variant(spec))
        trainers[variant] = Trainer(cfg, train, test, device="cpu", compile=mode or "auto")
        trainers[variant].train_epoch()  # warm-up and the first epoch, untimed
    times = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            times[v].append(trainers[v].train_epoch().train_time_s)
    base = statistics.median(times[variants[0]])
    for v in variants:
        median = statistics.median(times[v])
        print(f"{v:22s} {median:.3f} s/epoch  ratio {median / base:.2f}  ({', '.join(f'{t:.3f}' for t in times[v])})")


if __name__ == "__main__":
    main(sys.argv[1].split(","), int(sys.argv[2]) if len(sys.argv) > 2 else 2560,
         int(sys.argv[3]) if len(sys.argv) > 3 else 3)
