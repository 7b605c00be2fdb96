"""Seconds per epoch (train + eval) on one H200, for the GPU-hour estimates of `scs-sweep presets`.

Source: the H200 speed anchors in docs/paper_facts.md (GPU-resident data, eager, batch 128,
unfused SCS), not yet this project's own `scs-sweep bench` figures; replace them with your GPU's:
`scs-sweep bench --json-out times.json ...` then `SCS_EPOCH_TIMES=times.json scs-sweep presets`
(several files separated by commas, as bench/run_h200.sh writes them; a {"family/layer": seconds} map
works too). Eval adds ~10 %.
Assumptions where no anchor exists are marked.
"""
from __future__ import annotations

import functools
import json
import os

from .experiment import SpecError

H200_SECONDS_PER_EPOCH = {
    "rohrer/conv": 0.93 * 1.1,        # anchor: Rohrer100K conv, 0.93 s
    "rohrer/scs": 2.70 * 1.1,         # anchor: Rohrer100K SCS (naive, unfused), 2.70 s
    "rohrer/sdp": 2.70 * 1.1,         # assumption: as SCS (same sharpening, no norm)
    "resnet18-32/conv": 3.64 * 1.1,   # anchor: ~9.3 ms/step (launch-bound) x 391 steps
    "resnet18-32/scs": 3.64 * 2.0,    # assumption: 2x conv (the 1.9-2.2x compiled layer ratio)
    "resnet18-224/conv": 3.76 * 1.1,  # anchor: eager bf16, batch 256
    "resnet18-224/scs": 3.76 * 2.0,   # assumption: 2x conv
    "resnet20/conv": 3.64 * 1.1,      # assumption: launch-bound like ResNet18 @32
    "resnet20/scs": 3.64 * 2.0,
}


def _key(trial: dict) -> str:
    arch, layer = trial["arch"], trial.get("layer", "scs")
    if arch.startswith("rohrer"):
        family = "rohrer"
    elif arch == "resnet18":
        family = f"resnet18-{trial.get('image_dim', 32)}"
    else:
        family = arch
    if layer == "sdp" and f"{family}/sdp" not in H200_SECONDS_PER_EPOCH:
        layer = "scs"
    return f"{family}/{layer}"


def _measured(path: str) -> dict:
    """{"family/layer": s} from a map, or from `scs-sweep bench --json` output (train + eval)."""
    try:
        with open(path) as f:
            data = json.load(f)
        if "epochs" not in data:
            return {str(k): float(v) for k, v in data.items()}
        return {_key(r): r["train_s_per_epoch"] + r["eval_s_per_epoch"] for r in data["epochs"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpecError(f"SCS_EPOCH_TIMES: {path} is not a `scs-sweep bench --json` file or a "
                        f"{{\"family/layer\": seconds}} map ({type(exc).__name__}: {exc})") from None


@functools.lru_cache(maxsize=8)
def _table(files: str) -> dict:
    """The built-in table updated with the files SCS_EPOCH_TIMES names (read once per value)."""
    table = dict(H200_SECONDS_PER_EPOCH)
    for path in filter(None, files.split(",")):
        table.update(_measured(path.strip()))
    return table


def seconds_per_epoch(trial: dict) -> float:
    table = _table(os.environ.get("SCS_EPOCH_TIMES", ""))
    return table[_key(trial)]


# The CPU: seconds of a training epoch relative to Conv2d + MaxPool2d of the same net, measured with
# `python bench/cpu_targets.py` on the 2-core dev machine (Rohrer100K, one thread, channels_last, the
# sharpening and pooling kernels compiled; bench/report.md); SDP + MaxAbsPool2d was not measured and is
# put between SDP + MaxPool2d and Conv2d + MaxAbsPool2d. Only their order is used: a part's costliest
# trials start first, so that the tail of a sweep, when cores fall idle, is its shortest trials.
CPU_RELATIVE = {("conv", "max"): 1.0, ("conv", "maxabs"): 1.02, ("scs", "max"): 1.09, ("scs", "maxabs"): 1.15,
                ("sdp", "max"): 0.99, ("sdp", "maxabs"): 1.01}


def expected_epoch_cost(trial: dict, gpu: bool) -> float:
    """A trial's expected seconds per epoch, to order trials by: on one H200 (gpu), else the arch's H200
    conv epoch scaled by the variant's CPU cost relative to conv."""
    if gpu:
        return seconds_per_epoch(trial)
    variant = (trial.get("layer", "scs"), trial.get("pooling", "maxabs"))
    return seconds_per_epoch({**trial, "layer": "conv"}) * CPU_RELATIVE.get(variant, 1.0)


# Seconds per training epoch per 1,000 training images on one CPU thread, eager, batch 128, for Conv2d, and
# what SCS/SDP multiply it by: measured on the 2-core dev machine with `scs-sweep bench --n-train 512
# --n-test 256 --threads 1 --compile off` (2026-12-06): Rohrer100K conv 0.52 s, SCS 1.62 s; Rohrer583K 2.55 /
# 6.44 s; ResNet20 2.82 / 7.03 s; ResNet18 @32 3.11 / 4.09 s. Rohrer25K-68K are taken as Rohrer100K and ResNet18
# @224 as 49 times @32 (its pixels): assumptions, not measurements. Only `settle` reads these, to say before
# anything starts whether a time limit fits its first look; later looks use the epoch times measured.
CPU_CONV_S_PER_1K = {"rohrer25k": 0.52, "rohrer47k": 0.52, "rohrer68k": 0.52, "rohrer100k": 0.52,
                     "rohrer583k": 2.55, "resnet20": 2.82, "resnet18-32": 3.11, "resnet18-224": 3.11 * 49}
CPU_SHARPENED_FACTOR = {"rohrer": 3.1, "resnet20": 2.5, "resnet18": 1.3}
EVAL_SHARE = 0.15      # an evaluation pass over the test set adds about this much per epoch (test 1/5 of train)


def cpu_seconds_per_epoch(trial: dict) -> float:
    """An estimate of one epoch's seconds (training and evaluation) of a trial on one CPU thread."""
    arch = trial["arch"]
    key = f"resnet18-{trial.get('image_dim', 32)}" if arch == "resnet18" else arch
    family = "rohrer" if arch.startswith("rohrer") else arch
    factor = CPU_SHARPENED_FACTOR[family] if trial.get("layer", "scs") in ("scs", "sdp") else 1.0
    images = (trial.get("n_train") or 50_000) / 1000
    return CPU_CONV_S_PER_1K[key] * factor * images * (1 + EVAL_SHARE)
