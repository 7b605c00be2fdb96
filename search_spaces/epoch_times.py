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
