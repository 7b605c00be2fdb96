"""Total training throughput of K small-net trainings sharing one GPU, against one alone (what the
`--gpus-per-trial` defaults of orchestrator/gpus.py should rest on).

    PYTHONPATH=. python -m bench.packing --arch rohrer100k --variant scs+none+maxabs --procs 1,4 --seconds 20

For each K, K processes (spawned, each its own CUDA context, as Tune's trials are) build the real Trainer
on synthetic data, compile and warm up, and train one untimed epoch; then all wait at one barrier and
train from the same instant for `--seconds`. Throughput is counted over the common window only: from the
barrier's release to the moment the first process stops, with each process's images up to that moment
(epochs are short; the one in progress is interpolated). Timing K processes separately, whose timed parts
need not overlap, makes packing look free. Needs only torch.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

from common.config import TrialConfig
from common.vocabulary import parse_variant

__all__ = ["measure", "main"]


def _worker(args: dict, barrier, results) -> None:
    import torch

    from trainables.data import make_synthetic
    from trainables.train import Trainer

    torch.set_num_threads(1)
    train, test = make_synthetic(args["n_train"], args["n_test"])
    cfg = TrialConfig(arch=args["arch"], dataset="synthetic", epochs=1000, batch_size=args["batch_size"],
                      **parse_variant(args["variant"]))
    trainer = Trainer(cfg, train, test, device=args["device"], compile=args["compile"])
    trainer.warm_up()
    trainer.train_epoch()  # caches, cuDNN's autotuning: outside the window
    barrier.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: the same clock in every process
    ends = []
    while time.perf_counter() < start + args["seconds"]:
        trainer.train_epoch()
        ends.append(time.perf_counter())
    results.put({"start": start, "ends": ends, "images": len(train), "device": str(trainer.device),
                 "path": trainer.compile_path})


def _images_by(ends: list[float], start: float, images: int, moment: float) -> float:
    """Images trained between start and moment, the epoch in progress at `moment` interpolated."""
    done, previous = 0.0, start
    for end in ends:
        if end <= moment:
            done, previous = done + images, end
        else:
            return done + images * (moment - previous) / (end - previous)
    return done


def measure(procs: int, args: dict) -> dict:
    """Total and per-process images per second of `procs` processes over their common window."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(args, barrier, results)) for _ in range(procs)]
    for w in workers:
        w.start()
    got = [results.get(timeout=args["seconds"] + 900) for _ in workers]
    for w in workers:
        w.join()
    start = max(r["start"] for r in got)            # every process is training from here on
    stop = min(r["ends"][-1] for r in got if r["ends"])  # ... until the first one stops
    per_process = [_images_by(r["ends"], r["start"], r["images"], stop) / (stop - start) for r in got]
    return {"procs": procs, "window_s": stop - start, "images_per_s": sum(per_process),
            "per_process_images_per_s": per_process, "device": got[0]["device"], "path": got[0]["path"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="rohrer100k")
    p.add_argument("--variant", default="scs+none+maxabs", help="layer+activation+pooling[+normalization]")
    p.add_argument("--procs", default="1,4", help="comma-separated process counts (the first is the baseline)")
    p.add_argument("--seconds", type=float, default=20.0, help="the common timed window")
    p.add_argument("--n-train", type=int, default=10_000, help="images per epoch (short epochs: a fine count)")
    p.add_argument("--n-test", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="", help="default: cuda when torch sees a GPU, else cpu")
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--json-out", default="", help="also write the rows as JSON to this file")
    a = p.parse_args(argv)
    args = dict(arch=a.arch, variant=a.variant, seconds=a.seconds, n_train=a.n_train, n_test=a.n_test,
                batch_size=a.batch_size, device=a.device, compile=a.compile)
    rows = [measure(int(k), args) for k in a.procs.split(",")]
    base = rows[0]["images_per_s"] / rows[0]["procs"]
    print(f"{a.arch} {a.variant}, batch {a.batch_size}, {rows[0]['device']}, compiled: {rows[0]['path']}; "
          f"throughput over the window all processes trained in together\n")
    print("| processes | common window s | total images/s | per process images/s | total vs one alone |\n"
          "|---|---|---|---|---|")
    for r in rows:
        each = ", ".join(f"{v:,.0f}" for v in r["per_process_images_per_s"])
        print(f"| {r['procs']} | {r['window_s']:.1f} | {r['images_per_s']:,.0f} | {each} | "
              f"{r['images_per_s'] / base:.2f}x |")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
