"""`scs-sweep models`: every arch x variant with its parameter count (built on the meta device)."""
from __future__ import annotations

import itertools
import json

import torch

from trainables.config import ACTIVATIONS, LAYERS, NORMALIZATIONS, POOLINGS, TrialConfig
from trainables.models import ARCH_SPECS, build_model, count_params


def list_variants() -> list[dict]:
    rows = []
    for arch in ARCH_SPECS:
        for layer, act, pool, norm in itertools.product(LAYERS, ACTIVATIONS, POOLINGS, NORMALIZATIONS):
            cfg = TrialConfig(arch=arch, layer=layer, activation=act, pooling=pool, normalization=norm)
            with torch.device("meta"):  # shapes only: no memory, no init
                params = count_params(build_model(cfg, init=False))
            rows.append({"arch": arch, "layer": layer, "activation": act, "pooling": pool,
                         "normalization": norm, "params": params})
    return rows


def run(args) -> int:
    rows = list_variants()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'arch':<11} {'layer':<5} {'activation':<10} {'pooling':<7} {'normalization':<13} {'params':>11}")
    for r in rows:
        print(f"{r['arch']:<11} {r['layer']:<5} {r['activation']:<10} {r['pooling']:<7} "
              f"{r['normalization']:<13} {r['params']:>11,}")
    return 0
