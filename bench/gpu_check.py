"""The sections of bench/gpu_check.sh: the GPU path of the training core, exercised the way sweeps use it.

    PYTHONPATH=. python -m bench.gpu_check SECTION --out DIR

    trials    three trials in one process, each in a new thread (as Tune runs trials in a reused worker),
              each training, saving a checkpoint, restoring it into a new Trainer and training on; the
              partial last batch included; step time and GPU memory from the first trial to the third
              (the compile path's graph breaks and recompiles go to the log through TORCH_LOGS)
    epochs    Rohrer100K Conv2d vs SCS training epochs, compiled (compile=auto) and eager (compile=off)
    amp       ResNet20 with BatchNorm in fp16 (GradScaler) and bf16: finite losses, and the host
              synchronisations per step (torch.cuda.set_sync_debug_mode)
Each prints a Markdown table and writes its rows to DIR/SECTION.json. On a machine without CUDA `trials`
and `epochs` run on the CPU at a small size (to check the script itself), and `amp` says it is skipped.
Needs only torch (no Ray): a lent GPU machine may have nothing else.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import warnings
from pathlib import Path

import torch

from trainables.bench import bench_epochs
from trainables.config import TrialConfig
from trainables.data import make_synthetic
from trainables.train import Trainer
from trainables.vocabulary import parse_variant

SECTIONS = ("trials", "epochs", "amp")


def _gpu() -> bool:
    return torch.cuda.is_available()


def _sizes(gpu_images: tuple[int, int], cpu_images: tuple[int, int]) -> tuple[int, int]:
    """Training and test images: with a partial last batch of 128 either way (10,000 = 78 x 128 + 16)."""
    return gpu_images if _gpu() else cpu_images


def _memory_mb() -> float:
    return torch.cuda.memory_reserved() / 2 ** 20 if _gpu() else 0.0


def _step_ms(trainer: Trainer, result) -> float:
    return 1000 * result.train_time_s / len(trainer.train_loader)


def trials(out: Path) -> list[dict]:
    n_train, n_test = _sizes((10_000, 2_000), (1_000, 300))
    train, test = make_synthetic(n_train, n_test)
    rows = []

    def one_trial(index: int) -> None:
        cfg = TrialConfig(arch="rohrer100k", layer="scs", activation="none", pooling="maxabs", seed=index,
                          dataset="synthetic", epochs=4, batch_size=128)
        first = Trainer(cfg, train, test, compile="auto")
        compile_s = first.warm_up()
        before = first.train_epoch()
        path = out / f"trial{index}.pt"
        first.save(path)
        resumed = Trainer(cfg, train, test, compile="auto")  # what a retry on another worker builds
        resumed.load(path)
        after = resumed.train_epoch()
        rows.append({"trial": index + 1, "thread": threading.current_thread().name, "device": str(first.device),
                     "compiled": first.compile_path, "compile_s": compile_s,
                     "restored_compile_s": resumed.compile_s, "step_ms": _step_ms(first, before),
                     "restored_step_ms": _step_ms(resumed, after), "epoch_after_restore": resumed.epoch,
                     "loss": after.train_loss, "test_acc": after.test_acc, "reserved_mb": _memory_mb()})

    for index in range(3):
        thread = threading.Thread(target=one_trial, args=(index,), name=f"trial-{index + 1}")
        thread.start()
        thread.join()
    print(f"Rohrer100K SCS/None/MaxAbsPool2d, {n_train:,}/{n_test:,} images (a partial last batch), batch 128\n")
    print("| trial | thread | device | compiled | compile s | restored: compile s | ms/step | restored: ms/step | "
          "epoch after restore | test acc | GPU memory reserved MB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['trial']} | {r['thread']} | {r['device']} | {r['compiled']} | {r['compile_s']:.1f} | "
              f"{r['restored_compile_s']:.1f} | {r['step_ms']:.2f} | {r['restored_step_ms']:.2f} | "
              f"{r['epoch_after_restore']} | {r['test_acc']:.3f} | {r['reserved_mb']:.0f} |")
    ok = all(r["epoch_after_restore"] == 2 and r["loss"] == r["loss"] for r in rows)
    print(f"\nevery trial restored its checkpoint and trained on: {'yes' if ok else 'NO'}; ms/step, trial 3 over "
          f"trial 1: {rows[-1]['step_ms'] / rows[0]['step_ms']:.2f}")
    return rows


def epochs(out: Path) -> list[dict]:
    n_train, n_test = _sizes((50_000, 10_000), (1_024, 256))
    rows = []
    for compile_mode in ("auto", "off"):
        for variant in ("conv+relu+max", "scs+none+maxabs"):
            cfg = TrialConfig(arch="rohrer100k", batch_size=128, **parse_variant(variant))
            r = bench_epochs(cfg, n_train, n_test, epochs=1, warmup=1 if _gpu() else 0, compile=compile_mode)
            rows.append(dict(r, variant=variant, compile=compile_mode))
    print(f"Rohrer100K, {n_train:,}/{n_test:,} synthetic images, batch 128, one timed epoch after one warm-up\n")
    print("| compile | variant | ran compiled | train s/epoch | eval s/epoch | warm-up s | SCS / Conv2d |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        conv = next(c for c in rows if c["compile"] == r["compile"] and c["variant"] == "conv+relu+max")
        print(f"| {r['compile']} | {r['variant']} | {r['compile_path']} | {r['train_s_per_epoch']:.3f} | "
              f"{r['eval_s_per_epoch']:.3f} | {r['compile_s']:.1f} | "
              f"{r['train_s_per_epoch'] / conv['train_s_per_epoch']:.2f} |")
    return rows


def amp(out: Path) -> list[dict]:
    if not _gpu():
        print("skipped: needs CUDA (fp16 with a GradScaler, and bf16, are the GPU's autocast path)")
        return []
    train, test = make_synthetic(10_000, 2_000)
    rows = []
    for precision in ("fp16", "bf16"):
        cfg = TrialConfig(arch="resnet20", layer="scs", activation="relu", pooling="max", normalization="batchnorm",
                          precision=precision, dataset="synthetic", epochs=3, batch_size=128)
        trainer = Trainer(cfg, train, test, compile="auto")
        compile_s = trainer.warm_up()
        first = trainer.train_epoch()
        torch.cuda.set_sync_debug_mode("warn")  # every host synchronisation of the next epoch warns
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                second = trainer.train_epoch()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        rows.append({"precision": precision, "compiled": trainer.compile_path, "compile_s": compile_s,
                     "losses": [first.train_loss, second.train_loss], "test_acc": second.test_acc,
                     "train_s": second.train_time_s, "steps": len(trainer.train_loader), "syncs": syncs,
                     "scale": trainer.scaler.get_scale() if trainer.scaler.is_enabled() else None,
                     "grad_norm_first_layer": second.layers[0].grad_norm})
    print("ResNet20 SCS/ReLU/MaxPool2d with BatchNorm2d, 10,000/2,000 synthetic images, batch 128\n")
    print("| precision | compiled | compile s | train loss epoch 1, 2 | test acc | train s | steps | host syncs in "
          "epoch 2 | loss scale | first layer grad norm |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['compiled']} | {r['compile_s']:.1f} | {r['losses'][0]:.3f}, "
              f"{r['losses'][1]:.3f} | {r['test_acc']:.3f} | {r['train_s']:.2f} | {r['steps']} | {r['syncs']} | "
              f"{r['scale'] if r['scale'] is not None else '-'} | {r['grad_norm_first_layer']:.4f} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("section", choices=SECTIONS)
    p.add_argument("--out", required=True, help="folder for the section's JSON and checkpoints")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    rows = {"trials": trials, "epochs": epochs, "amp": amp}[args.section](out)
    (out / f"{args.section}.json").write_text(json.dumps(rows, indent=1, default=str))
    print(f"\n({args.section}: {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
