"""Seconds to evaluate one checkpoint the way every trial's end does: PGD (the default eps list, 10 steps,
1,000 images) and one saliency map per class (10 images). Needs only torch.

    python -m bench.evaluation                      # rohrer100k and ResNet18@224, SCS
    python -m bench.evaluation --models rohrer100k:scs+none+maxabs --pgd-images 100

The weights are freshly initialised: the attack does the same work on any weights, so the time is
what a trained checkpoint costs (its accuracies are not meaningful here).
"""
from __future__ import annotations

import argparse
import time

import torch

from common.config import TrialConfig
from common.vocabulary import parse_variant
from trainables.data import make_synthetic
from trainables.devices import pick_device
from trainables.evaluation import EvalSettings, evaluate_model
from trainables.models import build_model


def time_evaluation(spec: str, settings: EvalSettings, device: torch.device) -> dict:
    arch_dim, variant = spec.split(":")
    arch, _, dim = arch_dim.partition("@")
    cfg = TrialConfig(arch=arch, image_dim=int(dim or 32), **parse_variant(variant))
    model = build_model(cfg).to(device)
    _, test = make_synthetic(100, 10_000)
    test = test.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = evaluate_model(model, test, cfg.image_dim, settings)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"model": spec, "seconds": time.perf_counter() - start,
            "eps": len(result["robustness"]), "maps": len(result["saliency"])}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.evaluation", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="rohrer100k:scs+none+maxabs,resnet18@224:scs+none+max+batchnorm")
    p.add_argument("--pgd-images", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="")
    args = p.parse_args()
    device = pick_device(args.device)
    settings = EvalSettings(pgd_images=args.pgd_images, steps=args.steps)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}\n")
    print("| model | PGD images | eps values x steps | saliency maps | seconds |\n|---|---|---|---|---|")
    for spec in args.models.split(","):
        r = time_evaluation(spec.strip(), settings, device)
        print(f"| {r['model']} | {args.pgd_images} | {r['eps']} x {args.steps} | {r['maps']} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
