"""Training-core speed: seconds per epoch of any arch x variant, and one SCS layer vs one Conv2d.

Runs with only torch installed (`PYTHONPATH=. python3 -m trainables.bench ...` on a GPU machine, or
`scs-sweep bench ...`). Epoch times use the real Trainer on synthetic data of the size asked for
(default CIFAR-10's 50,000/10,000), after warm-up epochs, and the compile/warm-up seconds before them;
layer times are CUDA-event (or wall-clock on CPU) medians of forward+backward, every SCS implementation
and Conv2d measured side by side in one process:

    reference  the reference layer's way (ones-kernel conv2d for the norm, repeat_interleave, autograd)
    unfused    this project's layer with plain autograd through the sharpening (fused=False)
    fused      this project's layer with the hand-written backward of fused.py, run eagerly
    kernels    the same with its two bodies compiled (what a trial runs with compile=auto: on the GPU,
               and on the CPU for trials of KERNEL_COMPILE_MIN_STEPS steps or more)
    compiled   the fused layer under a whole-layer torch.compile (what a compiled training step runs)

Layers and models run in channels_last, as the Trainer runs them. `--threads` sets torch's threads (a
sweep's trial has one). The developers' benchmarks (CPU targets against earlier revisions, the gallery
scripts' pipeline, packing, the GPU check) live in the repository's bench/ folder, not here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from common.config import ConfigError, TrialConfig
from common.errors import ScsSweepError
from common.vocabulary import COMPILE_MODES, PAPER_TEST_IMAGES, PAPER_TRAIN_IMAGES, PRECISIONS, parse_variant

from .data import make_synthetic
from .devices import check_device
from .layers import SharpCosSim2d
from .train import Trainer, compiles

__all__ = ["bench_epochs", "bench_layer", "variant_keys", "LAYER_SHAPES", "ReferenceStyleSCS", "main"]

# (name, batch, in, out, kernel, stride, padding, H=W): the conv-like layers of the paper's nets.
LAYER_SHAPES = [
    ("rohrer100k.l1", 128, 3, 32, 3, 1, 0, 32),
    ("rohrer100k.l2", 128, 32, 64, 3, 1, 1, 15),
    ("rohrer100k.l3", 128, 64, 128, 3, 1, 1, 8),
    ("rohrer583k.l2", 128, 80, 160, 3, 1, 1, 15),
    ("resnet18@224.stem", 64, 3, 64, 7, 2, 3, 224),
    ("resnet18@224.layer1", 64, 64, 64, 3, 1, 1, 56),
    ("resnet18@224.layer2", 64, 128, 128, 3, 1, 1, 28),
    ("resnet18@224.layer3", 64, 256, 256, 3, 1, 1, 14),
    ("resnet18@224.layer4", 64, 512, 512, 3, 1, 1, 7),
]


class ReferenceStyleSCS(SharpCosSim2d):
    """SCS computed the way the reference layer does (docs/scs_reference.md §1.4): a ones-kernel conv2d for
    the patch norm, repeat_interleave, plain autograd. The layer bench's baseline (and bench/'s pipeline)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.constrain_()
        w = self.weight / torch.linalg.vector_norm(self.weight, dim=(1, 2, 3), keepdim=True)
        dot = self._dot(x, w)
        ones = torch.ones(self.groups, self.in_channels // self.groups, self.kernel_size, self.kernel_size,
                          device=x.device, dtype=x.dtype)
        sq = F.conv2d(x.square(), ones, None, self.stride, self.padding, 1, self.groups)
        norm = (torch.sqrt(sq + self.eps) + self.log_q.exp()).repeat_interleave(
            self.out_channels // self.groups, dim=1)
        c = dot / norm
        return torch.sign(c) * (c.abs() + self.eps) ** self.p


def variant_keys(variant: str) -> dict:
    """TrialConfig keys from the bench's spelling of a variant: layer+activation+pooling[+normalization]."""
    return parse_variant(variant)


def _timer(device: torch.device):
    """A function that times fn() once, in seconds, with CUDA events on a GPU."""
    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
    else:
        def run(fn):
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
    return run


def bench_layer(shape: tuple, device: torch.device, repeats: int = 20, warmup: int = 3,
                compiled: bool = False, kernels: bool = True) -> dict:
    """Median forward+backward milliseconds of Conv2d and each SCS implementation of one shape, and
    each SCS over Conv2d. `kernels` adds the fused layer with compiled bodies, `compiled` the whole
    layer torch.compile'd (and compiled Conv2d)."""
    name, batch, cin, cout, k, stride, pad, hw = shape
    on_gpu = device.type == "cuda"
    dtype = torch.bfloat16 if on_gpu else None
    fmt = torch.channels_last
    x = torch.rand(batch, cin, hw, hw, device=device).contiguous(memory_format=fmt).requires_grad_(True)
    eager = SharpCosSim2d(cin, cout, k, stride, pad)
    eager.compiled_kernels = False
    layers = {"conv": nn.Conv2d(cin, cout, k, stride, pad, bias=False),
              "reference": ReferenceStyleSCS(cin, cout, k, stride, pad),
              "unfused": SharpCosSim2d(cin, cout, k, stride, pad, fused=False),
              "fused": eager}
    if kernels:
        layers["kernels"] = SharpCosSim2d(cin, cout, k, stride, pad)
        layers["kernels"].compiled_kernels = True
    if compiled:
        layers["conv_compiled"] = torch.compile(nn.Conv2d(cin, cout, k, stride, pad, bias=False))
        layers["compiled"] = torch.compile(SharpCosSim2d(cin, cout, k, stride, pad))
    timer = _timer(device)
    result = {"shape": name, "batch": batch, "in": cin, "out": cout, "k": k, "hw": hw}
    for kind, layer in layers.items():
        layer = layer.to(device).to(memory_format=fmt)

        def step(layer=layer):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                y = layer(x)
            y.float().sum().backward()

        for _ in range(warmup):
            step()
        result[f"{kind}_ms"] = 1000 * statistics.median(timer(step) for _ in range(repeats))
    for kind in layers:
        if kind not in ("conv", "conv_compiled"):
            result[f"{kind}_over_conv"] = result[f"{kind}_ms"] / result["conv_ms"]
    return result


def bench_epochs(cfg: TrialConfig, n_train: int, n_test: int, epochs: int = 2, warmup: int = 1,
                 device: str = "", compile: str = "auto", budget_epochs: int = 0) -> dict:
    """Seconds per training and evaluation epoch (mean over `epochs` after `warmup` epochs), and the
    seconds the Trainer's warm_up() took first (compiling and capturing; 0 when eager). budget_epochs:
    the epochs of the trial being imitated (what compile="auto" decides by; default epochs + warmup)."""
    train, test = make_synthetic(n_train, n_test)
    cfg = cfg.replace(dataset="synthetic", epochs=max(budget_epochs, epochs + warmup))
    trainer = Trainer(cfg, train, test, device=device, compile=compile)
    compile_s = trainer.warm_up()
    results = [trainer.train_epoch() for _ in range(epochs + warmup)][warmup:]
    train_s = statistics.mean(r.train_time_s for r in results)
    eval_s = statistics.mean(r.eval_time_s for r in results)
    return {
        "arch": cfg.arch, "layer": cfg.layer, "activation": cfg.activation, "pooling": cfg.pooling,
        "normalization": cfg.normalization, "batch_size": cfg.batch_size, "image_dim": cfg.image_dim,
        "n_train": n_train, "n_test": n_test, "device": str(trainer.device),
        "compiled": trainer.compiled, "cuda_graphs": trainer.cuda_graphs, "compile_path": trainer.compile_path,
        "train_s_per_epoch": train_s, "eval_s_per_epoch": eval_s, "compile_s": compile_s,
        # what warm-up costs a 100-epoch trial that compiles in its own process
        "compile_share_100_epochs": compile_s / (compile_s + 100 * (train_s + eval_s)),
        "test_acc": results[-1].test_acc,
    }


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="rohrer100k")
    p.add_argument("--variants", default="conv+relu+max,scs+none+maxabs",
                   help="comma-separated layer+activation+pooling[+normalization] (e.g. sdp+relu+max)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-dim", type=int, default=32)
    p.add_argument("--n-train", type=int, default=PAPER_TRAIN_IMAGES,
                   help=f"training images (default CIFAR-10's {PAPER_TRAIN_IMAGES:,})")
    p.add_argument("--n-test", type=int, default=PAPER_TEST_IMAGES,
                   help=f"test images (default CIFAR-10's {PAPER_TEST_IMAGES:,})")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after --warmup epochs)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--budget-epochs", type=int, default=100, help="the epochs of the trial being imitated: "
                   "what --compile auto decides by (default 100)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's; a trial has 1)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--compile", default="auto", choices=COMPILE_MODES,
                   help="the Trainer's compile mode; also adds compiled layers to --layers when not off "
                        "(auto: on a GPU only)")
    p.add_argument("--layers", action="store_true", help="also time one SCS layer vs Conv2d per shape")
    p.add_argument("--layers-only", action="store_true", help="only the one-layer comparison")
    p.add_argument("--shapes", default="", help="comma-separated layer shape names (default: all of "
                   + ", ".join(s[0] for s in LAYER_SHAPES) + ")")
    p.add_argument("--device", default="")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown tables")
    p.add_argument("--json-out", default="", help="also write the JSON to this file (for SCS_EPOCH_TIMES)")


def _check(args: argparse.Namespace) -> torch.device:
    """The device asked for; every bad option is one ConfigError line."""
    for flag, value, least in (("--n-train", args.n_train, 1), ("--n-test", args.n_test, 1),
                               ("--epochs", args.epochs, 1), ("--warmup", args.warmup, 0),
                               ("--batch-size", args.batch_size, 1), ("--threads", args.threads, 0)):
        if value < least:
            raise ConfigError(f"{flag} must be >= {least}, got {value}")
    return check_device(args.device)


def run(args: argparse.Namespace) -> int:
    device = _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    out = {"device": _device_name(device), "torch": torch.__version__, "epochs": [], "layers": []}
    if not args.layers_only:
        for variant in args.variants.split(","):
            cfg = TrialConfig(arch=args.arch, batch_size=args.batch_size, image_dim=args.image_dim,
                              precision=args.precision, **variant_keys(variant))
            out["epochs"].append(bench_epochs(cfg, args.n_train, args.n_test, args.epochs, args.warmup,
                                              str(device), args.compile, args.budget_epochs))
    if args.layers or args.layers_only:
        compiled = compiles(args.compile, device)
        kernels = args.compile != "off"
        wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s[0] for s in LAYER_SHAPES})
        if unknown:
            raise ConfigError(f"unknown layer shape(s) {', '.join(unknown)}; choose from "
                              + ", ".join(s[0] for s in LAYER_SHAPES))
        out["layers"] = [bench_layer(s, device, compiled=compiled, kernels=kernels) for s in LAYER_SHAPES
                         if not wanted or s[0] in wanted]
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"device: {out['device']}, torch {out['torch']}")
    if out["epochs"]:
        print("\n| arch | variant | batch | images | path | train s/epoch | eval s/epoch | warm-up s | "
              "warm-up share of 100 epochs |\n|---|---|---|---|---|---|---|---|---|")
        for r in out["epochs"]:
            variant = f"{r['layer']}+{r['activation']}+{r['pooling']}+{r['normalization']}"
            path = r["compile_path"]  # what ran compiled: model + CUDA graphs, model, kernels, no
            print(f"| {r['arch']}@{r['image_dim']} | {variant} | {r['batch_size']} | {r['n_train']}/{r['n_test']} | "
                  f"{path} | {r['train_s_per_epoch']:.3f} | {r['eval_s_per_epoch']:.3f} | {r['compile_s']:.1f} | "
                  f"{100 * r['compile_share_100_epochs']:.1f} % |")
    if out["layers"]:
        kinds = [k[:-len("_over_conv")] for k in out["layers"][0] if k.endswith("_over_conv")]
        extra = " conv compiled ms |" if "conv_compiled_ms" in out["layers"][0] else ""
        print("\n| shape | conv ms |" + extra + "".join(f" {k} ms |" for k in kinds)
              + "".join(f" {k}/conv |" for k in kinds))
        print("|---" * (2 + bool(extra) + 2 * len(kinds)) + "|")
        for r in out["layers"]:
            cells = [r["shape"], f"{r['conv_ms']:.3f}"] + ([f"{r['conv_compiled_ms']:.3f}"] if extra else [])
            cells += [f"{r[k + '_ms']:.3f}" for k in kinds] + [f"{r[k + '_over_conv']:.2f}" for k in kinds]
            print("| " + " | ".join(cells) + " |")
    return 0


def main(argv=None, prog: str = "python -m trainables.bench") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except ScsSweepError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
