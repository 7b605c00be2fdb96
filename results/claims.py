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

A verdict is "inconclusive" when there is no interval (one seed, or no spread across seeds), when the
interval spans the threshold (with the number of seeds that would settle it), when the data are not
CIFAR-10, or when the budget is shorter than the paper's: the claims are about the paper's budget, so a
reduced run says only which side its interval lies on at its own budget. Time claims do not depend on
the budget (seconds per epoch), but hold only for the device they were measured on, which they name.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainables.vocabulary import (FINISHED, FULL_BUDGET, PAPER_EPOCHS, PAPER_TEST_IMAGES,
                                   PAPER_TRAIN_IMAGES)

from .stats import Interval, mean_interval

__all__ = ["Verdict", "check_claims", "DELTA", "budget_note", "full_budget"]

DELTA = 0.03


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


def _images(trials: pd.DataFrame, column: str) -> pd.Series:
    return trials[column].fillna(0) if column in trials else pd.Series(0, index=trials.index)


def full_budget(trials: pd.DataFrame) -> bool:
    """Whether every trial ran the paper's budget, by the one rule the plan wrote into each row's
    `budget` (orchestrator/plan.py: CIFAR-10, all its images, the paper's epochs)."""
    return bool(len(trials)) and "budget" in trials and (trials["budget"] == FULL_BUDGET).all()


def budget_note(trials: pd.DataFrame, table: str) -> str:
    """'' at the paper's budget, else what this run used against the paper's. table: the paper's
    experiment the trials are linked to (their `paper_table`), '' if none."""
    if table not in PAPER_EPOCHS:
        return "not linked to one of the paper's experiments (give the sweep a paper_table)"
    if full_budget(trials):
        return ""
    if trials["dataset"].isna().any() or "budget" not in trials or trials["budget"].isna().any():
        return "the budget is not recorded (rows of an older store)"
    if (trials["dataset"] != "cifar10").any():
        return f"{', '.join(sorted(trials['dataset'].unique()))} data, not CIFAR-10"
    epochs = int(trials["epochs"].max())
    n_train, n_test = int(_images(trials, "n_train").max()), int(_images(trials, "n_test").max())
    return (f"{epochs} of {PAPER_EPOCHS[table]} epochs, {n_train or PAPER_TRAIN_IMAGES:,} of "
            f"{PAPER_TRAIN_IMAGES:,} training and {n_test or PAPER_TEST_IMAGES:,} of {PAPER_TEST_IMAGES:,} test images")


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


def _seeds_to_settle(values: list[float], threshold: float, show) -> str:
    """The number of seeds after which a t-interval would exclude the threshold with 80 % probability,
    if the mean effect and the spread across seeds stay as measured (a t-test's sample size)."""
    from scipy import stats

    sd, gap = float(np.std(values, ddof=1)), abs(float(np.mean(values)) - threshold)
    if gap == 0 or sd == 0:
        return ""
    for n in range(len(values) + 1, 1001):
        if (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.80, n - 1)) * sd / math.sqrt(n) < gap:
            return (f"; about {n} seeds would settle it (80 % chance) if the effect ({show(np.mean(values))}) "
                    f"and its spread across seeds stay as measured")
    return "; the effect is too close to the threshold to settle with any practical number of seeds"


def _judge(table: str, claim: str, effect: str, values: list[float], trials: pd.DataFrame, *,
           above: float | None = None, below: float | None = None, within: float | None = None,
           accuracy: bool = True, log_ratio: bool = False, left_out: int = 0) -> Verdict:
    """Verdict for `values` (one per seed) against one threshold: the interval wholly on the claimed
    side supports, wholly on the other side contradicts, across it is inconclusive. left_out: trials of
    the table that did not run their whole budget (not in `trials`)."""
    interval = mean_interval(values)
    show = (lambda v: f"x{math.exp(v):.3f}") if log_ratio else (lambda v: f"{v:+.3f}")
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
    note = budget_note(trials, table) if accuracy and len(trials) else ""

    def verdict(kind: str, reason: str) -> Verdict:
        return Verdict(table, claim, effect, shown, threshold, kind, reason, ratio=log_ratio)

    if interval.n == 0:
        return verdict("inconclusive", "no finished trials to compare" + (
            f" ({left_out} pruned, failed or unfinished trial(s) left out; --no-prune runs every trial to its "
            f"budget)" if left_out else ""))
    if not interval.has_interval:
        return verdict("inconclusive", "one seed: no interval (run with --seeds 3 or more)" if interval.n == 1
                       else "every seed gave the same value: no spread to build an interval from")
    if accuracy and (trials["dataset"] != "cifar10").any():
        return verdict("inconclusive", note)
    edge = t if within is None else (t if interval.estimate > 0 else -t)
    where = ("the interval spans the threshold" + _seeds_to_settle(values, edge, show) if not side else
             "the whole interval is on " + ("the claimed" if side == "supported" else "the other") + " side")
    if note:  # the claim is about the paper's budget: a shorter run can only say where it stands itself
        return verdict("inconclusive", f"budget shorter than the paper's ({note}); at this budget {where}")
    if not side:
        return verdict("inconclusive", where)
    device = ""
    if not accuracy and "gpu" in trials:  # times hold for the hardware they were measured on
        device = f" (times measured on {', '.join(sorted(trials['gpu'].dropna().unique())) or 'an unrecorded device'})"
    return verdict(side, where + device)


def _time_ratio(rows: pd.DataFrame, column: str) -> float | None:
    scs, conv = rows[rows["layer"] == "scs"][column], rows[rows["layer"] == "conv"][column]
    if scs.empty or conv.empty or conv.mean() <= 0:
        return None
    return math.log(scs.mean() / conv.mean())


def _mean_difference(rows: pd.DataFrame, within: list[str], a: dict, b: dict) -> float | None:
    """Mean over the groups of `within` of best(a) minus best(b), where both exist."""
    diffs = [_diff(_acc(part, **a), _acc(part, **b)) for _, part in rows.groupby(within)]
    diffs = [d for d in diffs if d is not None]
    return float(np.mean(diffs)) if diffs else None


def _maxabs_dip(rows: pd.DataFrame) -> float | None:
    """Mean over layers (and normalizations) of ReLU+MaxPool2d minus ReLU+MaxAbsPool2d."""
    return _mean_difference(rows, ["layer", "normalization"], dict(activation="relu", pooling="max"),
                            dict(activation="relu", pooling="maxabs"))


def _bn_gain(rows: pd.DataFrame) -> float | None:
    """Mean over the other variants of BatchNorm2d minus none."""
    return _mean_difference(rows, ["layer", "activation", "pooling"], dict(normalization="batchnorm"),
                            dict(normalization="none"))


def check_claims(table: str, all_trials: pd.DataFrame, name: str = "") -> list[Verdict]:
    """Every claim of the paper that this table's trials (one row per trial) can speak to, judged on the
    trials that ran their whole budget. table: the paper's experiment they are linked to ('' if none);
    name: what the verdicts call the table (default: table)."""
    trials = all_trials[all_trials["status"] == FINISHED]

    def judge(claim: str, effect: str, values: list[float], **kw) -> Verdict:
        verdict = _judge(table, claim, effect, values, trials, left_out=len(all_trials) - len(trials), **kw)
        return dataclasses.replace(verdict, table=name or table)

    out = []
    layers, acts = set(all_trials["layer"]), set(all_trials["activation"])
    rohrer = all_trials["arch"].str.startswith("rohrer").all()
    resnet18 = (all_trials["arch"] == "resnet18").all()
    if {"conv", "scs"} <= layers and {"relu", "none"} <= acts:
        out.append(judge("SCS without ReLU is as accurate as Conv2d with ReLU", "best SCS/None minus best "
                         "Conv2d/ReLU", _per_seed(trials, lambda r: _diff(_acc(r, layer="scs", activation="none"),
                                                                       _acc(r, layer="conv", activation="relu"))),
                         above=-DELTA))
    if "conv" in layers and {"relu", "none"} <= acts:
        out.append(judge("Conv2d needs ReLU", "best Conv2d/ReLU minus best Conv2d/None",
                         _per_seed(trials, lambda r: _diff(_acc(r, layer="conv", activation="relu"),
                                                           _acc(r, layer="conv", activation="none"))),
                         above=DELTA))
    if {"max", "maxabs"} <= set(all_trials["pooling"]) and "relu" in acts and (rohrer or resnet18):
        effect, values = "ReLU+MaxPool2d minus ReLU+MaxAbsPool2d, mean over layers", _per_seed(trials, _maxabs_dip)
        if rohrer:
            out.append(judge("ReLU + MaxAbsPool2d trains worst in the Rohrer nets", effect, values, above=DELTA))
        else:
            out.append(judge("ResNet18 shows no ReLU + MaxAbsPool2d dip", effect, values, within=DELTA))
    if (all_trials["p_mode"] == "fixed").all() and (all_trials["p_value"] == 1.0).all() and layers == {"scs"} \
            and {"relu", "none"} <= acts:
        out.append(judge("cosine similarity (p = 1) needs ReLU", "best ReLU minus best None",
                         _per_seed(trials, lambda r: _diff(_acc(r, activation="relu"), _acc(r, activation="none"))),
                         above=DELTA))
    if "sdp" in layers and {"relu", "none"} <= acts:
        out.append(judge("SharpenedSDP needs no activation", "best SDP/None minus best SDP/ReLU",
                         _per_seed(trials, lambda r: _diff(_acc(r, layer="sdp", activation="none"),
                                                           _acc(r, layer="sdp", activation="relu"))),
                         above=-DELTA))
    if {"batchnorm", "none"} <= set(all_trials["normalization"]) and (all_trials["image_dim"] == 224).all():
        out.append(judge("BatchNorm2d adds 3-4 points at 224x224", "BatchNorm2d minus none, mean over variants",
                         _per_seed(trials, _bn_gain), above=0.0))
    if {"conv", "scs"} <= layers:
        out.append(judge("SCS trains slower than Conv2d", "train time SCS / Conv2d",
                         _per_seed(trials, lambda r: _time_ratio(r, "train_time_s")), above=0.0, accuracy=False,
                         log_ratio=True))
        out.append(judge("SCS evaluates faster than Conv2d", "eval time SCS / Conv2d",
                         _per_seed(trials, lambda r: _time_ratio(r, "eval_time_s")), below=0.0, accuracy=False,
                         log_ratio=True))
    return out
