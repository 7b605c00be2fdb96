"""The paper's claims, each checked on the store's finished trials: an effect with a 95 % interval over
seeds, and a verdict (supported, contradicted or inconclusive) with its reason.

Every effect is computed per seed and then averaged: trials of one table that share a seed start from
identical weights, so a per-seed difference leaves out the initialisation's share of the noise. The
interval is the t-interval of those per-seed values (scipy); times are compared as ratios (the
interval of the mean log-ratio, exponentiated).

Thresholds, and why:
- DELTA = 0.03 (3 accuracy points) separates "comparable" from "matters". It is the widest gap the
  paper itself calls comparable: SCS without ReLU against Conv2d with ReLU differs by -0.026 to +0.014
  across its Tables 1-8 (Table 5 is -0.026). The same margin is used for every accuracy claim so that
  "A needs B" and "A matches B" mean one thing throughout.
- BatchNorm2d's gain at 224 is tested for its sign (> 0), not against DELTA: the paper's own Table 8
  gains average 0.027, below DELTA, while it describes them as "3-4 points".
- Time ratios are tested against 1 (any slowdown or speed-up), as the paper states them.

A verdict is "inconclusive" when there is no interval (one seed), when the interval spans the threshold
(with the number of seeds that would likely settle it), when the data are not CIFAR-10, or when the
data contradict the claim at a budget shorter than the paper's (the claim is about the full budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .stats import Interval, mean_interval

__all__ = ["Verdict", "check_claims", "DELTA", "PAPER_EPOCHS", "budget_note", "full_budget"]

DELTA = 0.03
# The paper's epoch budget per table (paper_facts.md, Appendix A): 800 for the Rohrer nets, 200 for ResNet18.
PAPER_EPOCHS = {"table1": 800, "table2": 200, "table3": 800, "table4": 800, "table5": 800, "table6": 800,
                "table7": 800, "table8": 200, "cosine": 800}
PAPER_TRAIN_IMAGES = 50_000


@dataclass(frozen=True)
class Verdict:
    table: str
    claim: str
    effect: str                 # what the interval is of
    interval: Interval
    threshold: str
    verdict: str                # supported | contradicted | inconclusive
    reason: str
    ratio: bool = False         # the interval is of a ratio (times), not of a difference

    @property
    def interval_text(self) -> str:
        return self.interval.text(ratio=self.ratio)

    def line(self) -> str:
        return (f"{self.table}: {self.claim} -- {self.effect} = {self.interval_text} (threshold "
                f"{self.threshold}, {self.interval.n} seed(s)): {self.verdict.upper()}: {self.reason}")


def full_budget(trials: pd.DataFrame, table: str) -> bool:
    """Whether every trial ran the paper's budget: all CIFAR-10 images for the paper's epochs."""
    epochs = PAPER_EPOCHS.get(table)
    n_train = trials["n_train"].fillna(0) if "n_train" in trials else pd.Series(0, index=trials.index)
    return bool(epochs and (trials["dataset"] == "cifar10").all() and (trials["epochs"] >= epochs).all()
                and ((n_train == 0) | (n_train >= PAPER_TRAIN_IMAGES)).all())


def budget_note(trials: pd.DataFrame, table: str) -> str:
    """'' at the paper's budget, else what this run used against the paper's."""
    if full_budget(trials, table):
        return ""
    if trials["dataset"].isna().any():
        return "the data set is not recorded"
    if (trials["dataset"] != "cifar10").any():
        return f"{', '.join(sorted(trials['dataset'].unique()))} data, not CIFAR-10"
    epochs = int(trials["epochs"].max())
    n_train = int(trials["n_train"].fillna(0).max()) if "n_train" in trials else 0
    images = f"{n_train:,}" if n_train else "50,000"
    paper = PAPER_EPOCHS.get(table)
    return f"{epochs}{f' of {paper}' if paper else ''} epochs, {images} of 50,000 training images"


def _per_seed(trials: pd.DataFrame, stat) -> list[float]:
    """stat(rows of one seed) for every seed where it is defined."""
    out = []
    for _, rows in trials.groupby("seed"):
        value = stat(rows)
        if value is not None and not math.isnan(value):
            out.append(float(value))
    return out


def _acc(rows: pd.DataFrame, **match) -> float | None:
    """Best val_acc among the rows matching every key=value (a list value matches any of its items)."""
    mask = pd.Series(True, index=rows.index)
    for key, value in match.items():
        mask &= rows[key].isin(value if isinstance(value, list) else [value])
    return rows.loc[mask, "val_acc"].max() if mask.any() else None


def _diff(a, b):
    return None if a is None or b is None else a - b


def _seeds_to_settle(values: list[float], threshold: float) -> str:
    """Seeds after which a t-interval of this spread would likely exclude the threshold."""
    from scipy import stats

    sd, gap = float(np.std(values, ddof=1)), abs(float(np.mean(values)) - threshold)
    if gap == 0 or sd == 0:
        return ""
    for n in range(len(values) + 1, 1001):
        if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < gap:
            return f"; about {n} seeds would likely settle it if the effect stays {np.mean(values):+.3f}"
    return "; the effect is too close to the threshold to settle with any practical number of seeds"


def _judge(table: str, claim: str, effect: str, values: list[float], trials: pd.DataFrame, *,
           above: float | None = None, below: float | None = None, within: float | None = None,
           accuracy: bool = True, log_ratio: bool = False) -> Verdict:
    """Verdict for `values` (one per seed) against one threshold: the interval wholly on the claimed
    side supports, wholly on the other side contradicts, across it is inconclusive."""
    interval = mean_interval(values)
    shown = interval
    if log_ratio:  # times: the interval of the mean log-ratio, shown as a ratio
        shown = Interval(*(math.exp(v) if not math.isnan(v) else v
                           for v in (interval.estimate, interval.low, interval.high)), interval.n)
    if above is not None:
        threshold, t = f"> {math.exp(above) if log_ratio else above:g}", above
        side = "supported" if interval.low > t else "contradicted" if interval.high < t else ""
    elif below is not None:
        threshold, t = f"< {math.exp(below) if log_ratio else below:g}", below
        side = "supported" if interval.high < t else "contradicted" if interval.low > t else ""
    else:
        threshold, t = f"within +/-{within:g}", within
        side = ("supported" if -t < interval.low and interval.high < t else
                "contradicted" if interval.low > t or interval.high < -t else "")
    note = budget_note(trials, table) if accuracy else ""

    def verdict(kind: str, reason: str) -> Verdict:
        return Verdict(table, claim, effect, shown, threshold, kind, reason, ratio=log_ratio)

    if interval.n == 0:
        return verdict("inconclusive", "no finished trials to compare")
    if not interval.has_interval:
        return verdict("inconclusive", "one seed: no interval (run with --seeds 3 or more)")
    if accuracy and (trials["dataset"] != "cifar10").any():
        return verdict("inconclusive", note)
    if not side:
        edge = t if within is None else (t if interval.estimate > 0 else -t)
        return verdict("inconclusive", "the interval spans the threshold" + _seeds_to_settle(values, edge)
                       + (f" ({note})" if note else ""))
    if side == "contradicted" and note:
        return verdict("inconclusive", f"contradicted at a budget shorter than the paper's ({note}); the "
                                       f"claim is about the full budget")
    device = ""
    if not accuracy and "gpu" in trials:  # times hold for the hardware they were measured on
        device = f" (times measured on {', '.join(sorted(trials['gpu'].dropna().unique())) or 'an unrecorded device'})"
    return verdict(side, "the whole interval is on " + ("the claimed" if side == "supported" else "the other")
                   + " side" + (f" (at a reduced budget: {note})" if note else "") + device)


def _time_ratio(rows: pd.DataFrame, column: str) -> float | None:
    scs, conv = rows[rows["layer"] == "scs"][column], rows[rows["layer"] == "conv"][column]
    if scs.empty or conv.empty or conv.mean() <= 0:
        return None
    return math.log(scs.mean() / conv.mean())


def _maxabs_dip(rows: pd.DataFrame) -> float | None:
    """Mean over layers (and normalizations) of ReLU+MaxPool2d minus ReLU+MaxAbsPool2d."""
    dips = []
    for (_, _), part in rows.groupby(["layer", "normalization"]):
        dip = _diff(_acc(part, activation="relu", pooling="max"), _acc(part, activation="relu", pooling="maxabs"))
        if dip is not None:
            dips.append(dip)
    return float(np.mean(dips)) if dips else None


def _bn_gain(rows: pd.DataFrame) -> float | None:
    gains = [_diff(_acc(part, normalization="batchnorm"), _acc(part, normalization="none"))
             for _, part in rows.groupby(["layer", "activation", "pooling"])]
    gains = [g for g in gains if g is not None]
    return float(np.mean(gains)) if gains else None


def check_claims(table: str, trials: pd.DataFrame) -> list[Verdict]:
    """Every claim of the paper that this table's finished trials (one row per trial) can speak to."""
    out = []
    layers, acts = set(trials["layer"]), set(trials["activation"])
    rohrer = trials["arch"].str.startswith("rohrer").all()
    resnet18 = (trials["arch"] == "resnet18").all()
    if {"conv", "scs"} <= layers and "relu" in acts and "none" in acts:
        values = _per_seed(trials, lambda r: _diff(_acc(r, layer="scs", activation="none"),
                                                   _acc(r, layer="conv", activation="relu")))
        out.append(_judge(table, "SCS without ReLU is as accurate as Conv2d with ReLU",
                          "best SCS/None minus best Conv2d/ReLU", values, trials, above=-DELTA))
    if "conv" in layers and {"relu", "none"} <= acts:
        values = _per_seed(trials, lambda r: _diff(_acc(r, layer="conv", activation="relu"),
                                                   _acc(r, layer="conv", activation="none")))
        out.append(_judge(table, "Conv2d needs ReLU", "best Conv2d/ReLU minus best Conv2d/None", values,
                          trials, above=DELTA))
    if {"max", "maxabs"} <= set(trials["pooling"]) and "relu" in acts and (rohrer or resnet18):
        values = _per_seed(trials, _maxabs_dip)
        effect = "ReLU+MaxPool2d minus ReLU+MaxAbsPool2d, mean over layers"
        if rohrer:
            out.append(_judge(table, "ReLU + MaxAbsPool2d trains worst in the Rohrer nets", effect, values,
                              trials, above=DELTA))
        else:
            out.append(_judge(table, "ResNet18 shows no ReLU + MaxAbsPool2d dip", effect, values, trials,
                              within=DELTA))
    if (trials["p_mode"] == "fixed").all() and (trials["p_value"] == 1.0).all() and layers == {"scs"} \
            and {"relu", "none"} <= acts:
        values = _per_seed(trials, lambda r: _diff(_acc(r, activation="relu"), _acc(r, activation="none")))
        out.append(_judge(table, "cosine similarity (p = 1) needs ReLU", "best ReLU minus best None", values,
                          trials, above=DELTA))
    if "sdp" in layers and {"relu", "none"} <= acts:
        values = _per_seed(trials, lambda r: _diff(_acc(r, layer="sdp", activation="none"),
                                                   _acc(r, layer="sdp", activation="relu")))
        out.append(_judge(table, "SharpenedSDP needs no activation", "best SDP/None minus best SDP/ReLU",
                          values, trials, above=-DELTA))
    if {"batchnorm", "none"} <= set(trials["normalization"]) and (trials["image_dim"] == 224).all():
        out.append(_judge(table, "BatchNorm2d adds 3-4 points at 224x224",
                          "BatchNorm2d minus none, mean over variants", _per_seed(trials, _bn_gain), trials,
                          above=0.0))
    if {"conv", "scs"} <= layers:
        out.append(_judge(table, "SCS trains slower than Conv2d", "train time SCS / Conv2d",
                          _per_seed(trials, lambda r: _time_ratio(r, "train_time_s")), trials, above=0.0,
                          accuracy=False, log_ratio=True))
        out.append(_judge(table, "SCS evaluates faster than Conv2d", "eval time SCS / Conv2d",
                          _per_seed(trials, lambda r: _time_ratio(r, "eval_time_s")), trials, below=0.0,
                          accuracy=False, log_ratio=True))
    return out
