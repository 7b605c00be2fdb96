"""The sections of bench/gpu_check.sh: the GPU path of the training core, exercised the way sweeps use it.

    PYTHONPATH=. python -m bench.gpu_check SECTION --out DIR

    trials    three trials in one process, each in a new thread (as Tune would run trials in a reused worker;
              GPU sweeps give each trial a fresh process, orchestrator/tuner.py), each training, saving a
              checkpoint, restoring it into a new Trainer in the same thread and training on; what ran
              compiled for both; the partial last batch included; step time and GPU memory, trial 1 to 3
              (the compile path's graph breaks and recompiles go to the log through TORCH_LOGS)
    epochs    Rohrer100K Conv2d vs SCS training epochs, compiled (compile=auto) and eager (compile=off)
    amp       ResNet20 with BatchNorm in fp16 (GradScaler) and bf16: finite losses and gradient norms, and
              the host synchronisations of an epoch (torch.cuda.set_sync_debug_mode), counted apart: inside
              its steps (there should be none) and once per epoch (its statistics: .item(), .tolist())
Each prints a Markdown table, each row the moment it is measured (a section that runs out of time keeps
the rows it has), and writes its rows to DIR/SECTION.json. On a machine without CUDA `trials`
and `epochs` run on the CPU at a small size (to check the script itself), and `amp` says it is skipped.
Needs only torch (no Ray): a lent GPU machine may have nothing else.
"""
from __future__ import annotations

import argparse
import json
import math
import threading
import time
import warnings
from pathlib import Path

import torch

from common.config import TrialConfig
from common.vocabulary import parse_variant
from trainables.bench import bench_epochs
from trainables.data import make_synthetic
from trainables.train import Trainer

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


def _row(cells) -> None:
    """One Markdown row, printed the moment it is measured: a section that runs out of time keeps its rows."""
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _header(title: str, columns: list[str]) -> None:
    print(title + "\n", flush=True)
    _row(columns)
    _row(["---"] * len(columns))


def trials(out: Path) -> list[dict]:
    n_train, n_test = _sizes((5_000, 1_000), (1_000, 300))
    train, test = make_synthetic(n_train, n_test)
    rows = []
    _header(f"Rohrer100K SCS/None/MaxAbsPool2d, {n_train:,}/{n_test:,} images (a partial last batch), batch 128; "
            f"three trials in one process, each in a new thread, as a reused worker would run them",
            ["trial", "thread", "device", "compiled", "compile s", "restored: compiled", "restored: compile s",
             "ms/step", "restored: ms/step", "epoch after restore", "test acc", "GPU MB reserved",
             "GPU MB peak"])

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
        row = {"trial": index + 1, "thread": threading.current_thread().name, "device": str(first.device),
               "compiled": first.compile_path, "compile_s": compile_s, "restored_compiled": resumed.compile_path,
               "restored_compile_s": resumed.compile_s, "step_ms": _step_ms(first, before),
               "restored_step_ms": _step_ms(resumed, after), "epoch_after_restore": resumed.epoch,
               "loss": after.train_loss, "test_acc": after.test_acc, "reserved_mb": _memory_mb(),
               "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if _gpu() else 0.0,
               "compile_error": first.compile_problems or resumed.compile_problems}
        rows.append(row)
        _row([row["trial"], row["thread"], row["device"], row["compiled"], f"{compile_s:.1f}",
              row["restored_compiled"], f"{resumed.compile_s:.1f}", f"{row['step_ms']:.2f}",
              f"{row['restored_step_ms']:.2f}", row["epoch_after_restore"], f"{row['test_acc']:.3f}",
              f"{row['reserved_mb']:.0f}", f"{row['peak_mb']:.0f}"])

    for index in range(3):
        thread = threading.Thread(target=one_trial, args=(index,), name=f"trial-{index + 1}")
        thread.start()
        thread.join()
    for r in rows:
        if r["compile_error"]:
            print(f"trial {r['trial']} fell back to eager: {r['compile_error']}")
    ok = len(rows) == 3 and all(r["epoch_after_restore"] == 2 and r["loss"] == r["loss"] for r in rows)
    print(f"\nevery trial restored its checkpoint and trained on: {'yes' if ok else 'NO'}")
    if len(rows) == 3:  # in a reused worker, trial 3's backward graphs would pile up on trial 1's
        print(f"trial 3 over trial 1: ms/step {rows[2]['step_ms'] / rows[0]['step_ms']:.2f}, GPU memory reserved "
              f"{rows[2]['reserved_mb']:.0f} MB against {rows[0]['reserved_mb']:.0f} MB")
    return rows


def epochs(out: Path) -> list[dict]:
    n_train, n_test = _sizes((50_000, 10_000), (1_024, 256))
    rows = []
    _header(f"Rohrer100K, {n_train:,}/{n_test:,} synthetic images, batch 128, one timed epoch after one warm-up",
            ["compile", "variant", "ran compiled", "train s/epoch", "eval s/epoch", "warm-up s", "SCS / Conv2d"])
    for compile_mode in ("auto", "off"):
        for variant in ("conv+relu+max", "scs+none+maxabs"):
            cfg = TrialConfig(arch="rohrer100k", batch_size=128, **parse_variant(variant))
            r = bench_epochs(cfg, n_train, n_test, epochs=1, warmup=1 if _gpu() else 0, compile=compile_mode)
            rows.append(dict(r, variant=variant, compile=compile_mode))
            conv = next((c for c in rows if c["compile"] == compile_mode and c["variant"] == "conv+relu+max"), None)
            _row([compile_mode, variant, r["compile_path"], f"{r['train_s_per_epoch']:.3f}",
                  f"{r['eval_s_per_epoch']:.3f}", f"{r['compile_s']:.1f}",
                  f"{r['train_s_per_epoch'] / conv['train_s_per_epoch']:.2f}" if conv else "-"])
    return rows


class _StepWindow:
    """The training loader, marking where an epoch's steps begin and end in the list of caught warnings:
    host synchronisations inside the window happen per step, the rest once per epoch (its statistics)."""

    def __init__(self, loader, caught: list, marks: list):
        self.loader, self.caught, self.marks = loader, caught, marks

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        self.marks.append(len(self.caught))
        yield from self.loader
        self.marks.append(len(self.caught))


def amp(out: Path) -> list[dict]:
    if not _gpu():
        print("skipped: needs CUDA (fp16 with a GradScaler, and bf16, are the GPU's autocast path)")
        return []
    train, test = make_synthetic(10_000, 2_000)
    rows = []
    _header("ResNet20 SCS/ReLU/MaxPool2d with BatchNorm2d, 10,000/2,000 synthetic images, batch 128; host "
            "synchronisations of epoch 2 (torch.cuda.set_sync_debug_mode), inside its steps and once per epoch",
            ["precision", "compiled", "compile s", "train loss epoch 1, 2", "test acc", "train s", "steps",
             "syncs inside steps", "syncs per epoch (statistics)", "loss scale", "first layer grad norm"])
    for precision in ("fp16", "bf16"):
        cfg = TrialConfig(arch="resnet20", layer="scs", activation="relu", pooling="max", normalization="batchnorm",
                          precision=precision, dataset="synthetic", epochs=3, batch_size=128)
        trainer = Trainer(cfg, train, test, compile="auto")
        compile_s = trainer.warm_up()
        first = trainer.train_epoch()
        marks: list = []
        torch.cuda.set_sync_debug_mode("warn")  # every host synchronisation of the next epoch warns
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer.train_loader = _StepWindow(trainer.train_loader, caught, marks)
                second = trainer.train_epoch()
        finally:
            torch.cuda.set_sync_debug_mode(0)
            trainer.train_loader = trainer.train_loader.loader
        syncs = [i for i, w in enumerate(caught) if "synchroniz" in str(w.message)]
        in_steps = sum(marks[0] <= i < marks[1] for i in syncs)
        row = {"precision": precision, "compiled": trainer.compile_path, "compile_s": compile_s,
               "losses": [first.train_loss, second.train_loss], "test_acc": second.test_acc,
               "train_s": second.train_time_s, "steps": len(trainer.train_loader), "syncs_in_steps": in_steps,
               "syncs_per_epoch": len(syncs) - in_steps,
               "scale": trainer.scaler.get_scale() if trainer.scaler.is_enabled() else None,
               "grad_norm_first_layer": second.layers[0].grad_norm,
               "grad_norms_finite": all(math.isfinite(layer.grad_norm) for r in (first, second) for layer in r.layers)}
        rows.append(row)
        _row([precision, row["compiled"], f"{compile_s:.1f}", f"{first.train_loss:.3f}, {second.train_loss:.3f}",
              f"{second.test_acc:.3f}", f"{second.train_time_s:.2f}", row["steps"], in_steps,
              row["syncs_per_epoch"], row["scale"] if row["scale"] is not None else "-",
              f"{row['grad_norm_first_layer']:.4f}"])
    print(f"\nevery layer's gradient norm finite in both epochs (fp16's skipped steps left out): "
          f"{'yes' if all(r['grad_norms_finite'] for r in rows) else 'NO'}")
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
