"""The paper's claims, each checked on the store's finished trials: an effect with a 95 % interval over
seeds, the probability that it favours one side on a new seed, and a verdict (supported, contradicted,
inconclusive, or not judged) with its reason.

Every effect is computed per seed and then averaged (stats.py, the one method the effects table uses
too): trials of one table that share a seed start from identical weights, so a per-seed difference
leaves out the initialisation's share of the noise. Times are compared as ratios (the interval of the
mean log-ratio, exponentiated).

Thresholds, and why:
- DELTA = 0.03 (3 accuracy points) separates "comparable" from "matters". It is the widest gap the
  paper itself calls comparable: SCS without ReLU against Conv2d with ReLU differs by -0.026 to +0.014
  across its Tables 1-8 (Table 5 is -0.026). The same margin is used for every accuracy claim so that
  "A needs B" and "A matches B" mean one thing throughout.
- BatchNorm2d's gain at 224x224 is tested for its sign (> 0), not against DELTA: the paper's own Table 8
  gains average 0.027, below DELTA, while it describes them as "3-4 points".
- Time ratios are tested against 1 (any slowdown or speed-up), as the paper states them.

A verdict is "inconclusive" when there is no interval (one seed, or no spread across seeds), when the
interval spans the threshold (with the number of seeds that would settle it), when the data are not
CIFAR-10, or when the budget is not the paper's: the claims are about the paper's budget, so a reduced
run says only which side its interval lies on at its own budget. A time claim is "not judged" unless
trials had their node to themselves (timing.py): two trials sharing a CPU or GPU time each other's
contention, not their layers. It holds only for the device it was measured on, which it names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from trainables.vocabulary import (FINISHED, FULL_BUDGET, PAPER_EPOCHS, PAPER_TEST_IMAGES,
                                   PAPER_TRAIN_IMAGES)

from .stats import Interval, mean_interval, prob_better, seeds_to_settle

__all__ = ["Claim", "Verdict", "check_claims", "claims_for", "claim_values", "DELTA", "budget_note",
           "full_budget", "VERDICTS"]

DELTA = 0.03
SHORT_BUDGET = "budget shorter than the paper's ({note}); "   # how a reason starts at a reduced budget
VERDICTS = ("supported", "contradicted", "inconclusive", "not judged")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper as a per-seed statistic and the side of a threshold it claims."""
    name: str                        # the claim, as the report prints it
    effect: str                      # what the per-seed value is
    positive: str                    # what a value above 0 means ("SCS/None > Conv2d/ReLU")
    stat: Callable                   # the rows of one seed -> the value (None where undefined)
    side: str                        # above | below | within: where the claim puts the value
    threshold: float                 # in the value's units (a log-ratio for times)
    time: bool = False               # a ratio of seconds (log), judged only from trials that ran alone

    @property
    def threshold_text(self) -> str:
        t = math.exp(self.threshold) if self.time else self.threshold
        return {"above": f"> {t:g}", "below": f"< {t:g}", "within": f"within +/-{t:g}"}[self.side]

    def show(self, value: float) -> str:
        return f"x{math.exp(value):.3f}" if self.time else f"{value:+.3f}"

    def side_of(self, interval: Interval) -> str:
        """supported / contradicted when the whole interval lies on one side, '' when it spans."""
        t, low, high = self.threshold, interval.low, interval.high
        if self.side == "above":
            return "supported" if low > t else "contradicted" if high < t else ""
        if self.side == "below":
            return "supported" if high < t else "contradicted" if low > t else ""
        return "supported" if -t < low and high < t else "contradicted" if low > t or high < -t else ""

    def edge(self, estimate: float) -> float:
        """The threshold an estimate is nearest to (within: the side it lies on)."""
        return self.threshold if self.side != "within" else math.copysign(self.threshold, estimate)


@dataclass(frozen=True)
class Verdict:
    table: str
    claim: Claim
    interval: Interval
    verdict: str                     # one of VERDICTS
    reason: str
    values: tuple = ()               # ((seed, per-seed value), ...) the interval is of
    prob: tuple = (math.nan, 0, 0)   # P(a > b) for a new seed, seeds where a > b, seeds

    @property
    def shown(self) -> Interval:
        """The interval in the units the claim is stated in (times: a ratio)."""
        if not self.claim.time:
            return self.interval
        return Interval(*(math.exp(v) if not math.isnan(v) else v
                          for v in (self.interval.estimate, self.interval.low, self.interval.high)), self.interval.n)

    @property
    def interval_text(self) -> str:
        return self.shown.text(ratio=self.claim.time)

    @property
    def effect(self) -> str:
        return self.claim.effect

    @property
    def threshold(self) -> str:
        return self.claim.threshold_text

    def prob_text(self) -> str:
        """'P(SCS/None > Conv2d/ReLU) = 0.93 (3 of 3 seeds)': for a new seed, and as measured."""
        p, k, n = self.prob
        seeds = f"{k} of {n} seed{'s' if n != 1 else ''}"
        return f"P({self.claim.positive}) = {p:.2f} ({seeds})" if not math.isnan(p) else \
            f"{self.claim.positive} in {seeds}"

    def reason_without(self, budget_note: str) -> str:
        """The reason less its budget clause, for a page that states the table's budget once above it."""
        return self.reason.replace(SHORT_BUDGET.format(note=budget_note), "")

    def line(self) -> str:
        return (f"{self.table}: {self.claim.name} -- {self.effect} = {self.interval_text} (threshold "
                f"{self.threshold}, {self.interval.n} seed(s); {self.prob_text()}): {self.verdict.upper()}: "
                f"{self.reason}")


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


# ---------------------------------------------------------------------------------------------
# The per-seed statistics
# ---------------------------------------------------------------------------------------------
def _acc(rows: pd.DataFrame, **match) -> float | None:
    """Best val_acc among the rows matching every key=value."""
    mask = pd.Series(True, index=rows.index)
    for key, value in match.items():
        mask &= rows[key] == value
    return rows.loc[mask, "val_acc"].max() if mask.any() else None


def _diff(a, b):
    return None if a is None or b is None or pd.isna(a) or pd.isna(b) else a - b


def _difference(a: dict, b: dict):
    return lambda rows: _diff(_acc(rows, **a), _acc(rows, **b))


def _mean_difference(within: list[str], a: dict, b: dict):
    """Mean over the groups of `within` of best(a) minus best(b), where both exist."""
    def stat(rows):
        diffs = [_diff(_acc(part, **a), _acc(part, **b)) for _, part in rows.groupby(within)]
        diffs = [d for d in diffs if d is not None]
        return float(np.mean(diffs)) if diffs else None
    return stat


def _time_ratio(column: str):
    def stat(rows):
        scs, conv = rows[rows["layer"] == "scs"][column], rows[rows["layer"] == "conv"][column]
        if scs.empty or conv.empty or not conv.mean() > 0:
            return None
        return math.log(scs.mean() / conv.mean())
    return stat


def claims_for(trials: pd.DataFrame) -> list[Claim]:
    """Every claim of the paper that a table with these trials (one row per trial) can speak to."""
    out = []
    layers, acts = set(trials["layer"]), set(trials["activation"])
    rohrer = trials["arch"].str.startswith("rohrer").all()
    resnet18 = (trials["arch"] == "resnet18").all()
    if {"conv", "scs"} <= layers and {"relu", "none"} <= acts:
        out.append(Claim("SCS without ReLU is as accurate as Conv2d with ReLU",
                         "best SCS/None minus best Conv2d/ReLU", "SCS/None > Conv2d/ReLU",
                         _difference(dict(layer="scs", activation="none"), dict(layer="conv", activation="relu")),
                         "above", -DELTA))
    if "conv" in layers and {"relu", "none"} <= acts:
        out.append(Claim("Conv2d needs ReLU", "best Conv2d/ReLU minus best Conv2d/None",
                         "Conv2d/ReLU > Conv2d/None", _difference(dict(layer="conv", activation="relu"),
                                                    dict(layer="conv", activation="none")), "above", DELTA))
    if {"max", "maxabs"} <= set(trials["pooling"]) and "relu" in acts and (rohrer or resnet18):
        dip = _mean_difference(["layer", "normalization"], dict(activation="relu", pooling="max"),
                               dict(activation="relu", pooling="maxabs"))
        effect = "ReLU+MaxPool2d minus ReLU+MaxAbsPool2d, mean over layers"
        if rohrer:
            out.append(Claim("ReLU + MaxAbsPool2d trains worst in the Rohrer nets", effect,
                             "ReLU+MaxPool2d > ReLU+MaxAbsPool2d", dip, "above", DELTA))
        else:
            out.append(Claim("ResNet18 shows no ReLU + MaxAbsPool2d dip", effect,
                             "ReLU+MaxPool2d > ReLU+MaxAbsPool2d", dip, "within", DELTA))
    if (trials["p_mode"] == "fixed").all() and (trials["p_value"] == 1.0).all() and layers == {"scs"} \
            and {"relu", "none"} <= acts:
        out.append(Claim("cosine similarity (p = 1) needs ReLU", "best ReLU minus best None", "ReLU > None",
                         _difference(dict(activation="relu"), dict(activation="none")), "above", DELTA))
    if "sdp" in layers and {"relu", "none"} <= acts:
        out.append(Claim("SharpenedSDP needs no activation", "best SDP/None minus best SDP/ReLU",
                         "SDP/None > SDP/ReLU", _difference(dict(layer="sdp", activation="none"),
                                                 dict(layer="sdp", activation="relu")), "above", -DELTA))
    if {"batchnorm", "none"} <= set(trials["normalization"]) and (trials["image_dim"] == 224).all():
        out.append(Claim("BatchNorm2d adds 3-4 points at 224x224", "BatchNorm2d minus none, mean over variants",
                         "BatchNorm2d > None", _mean_difference(["layer", "activation", "pooling"],
                                                                 dict(normalization="batchnorm"),
                                                                 dict(normalization="none")), "above", 0.0))
    if {"conv", "scs"} <= layers:
        out.append(Claim("SCS trains slower than Conv2d", "train time SCS / Conv2d", "SCS trains slower",
                         _time_ratio("train_time_s"), "above", 0.0, time=True))
        out.append(Claim("SCS evaluates faster than Conv2d", "eval time SCS / Conv2d", "SCS evaluates slower",
                         _time_ratio("eval_time_s"), "below", 0.0, time=True))
    return out


def claim_values(claim: Claim, trials: pd.DataFrame) -> list[tuple[int, float]]:
    """(seed, the claim's per-seed value) for every seed where it is defined."""
    out = []
    for seed, rows in trials.groupby("seed"):
        value = claim.stat(rows)
        if value is not None and not math.isnan(value):
            out.append((int(seed), float(value)))
    return out


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------
def _judge(claim: Claim, trials: pd.DataFrame, table: str, left_out: int, exclusive: str) -> tuple[str, str]:
    """(verdict, reason) for a claim on `trials` (finished trials). left_out: trials of the table that did
    not run their whole budget; exclusive: for a time claim, why no trial had its node to itself ('' if
    some did)."""
    values = [v for _, v in claim_values(claim, trials)]
    interval = mean_interval(values)
    if claim.time and exclusive:
        return "not judged", exclusive
    if interval.n == 0:
        return "inconclusive", "no finished trials to compare" + (
            f" ({left_out} pruned, failed or unfinished trial(s) left out; --no-prune runs every trial to its "
            f"budget)" if left_out else "")
    if not interval.has_interval:
        return "inconclusive", ("one seed: no interval (run with --seeds 3 or more)" if interval.n == 1 else
                                "every seed gave the same value: no spread to build an interval from")
    note = budget_note(trials, table) if not claim.time else ""
    if not claim.time and (trials["dataset"] != "cifar10").any():
        return "inconclusive", note
    side = claim.side_of(interval)
    if side:
        where = "the whole interval is on " + ("the claimed" if side == "supported" else "the other") + " side"
    else:
        n = seeds_to_settle(values, claim.edge(interval.estimate))
        where = "the interval spans the threshold" + (
            f"; about {n} seeds would settle it (80 % chance) if the effect ({claim.show(interval.estimate)}) "
            f"and its spread across seeds stay as measured" if n else
            "; the effect is too close to the threshold to settle with any practical number of seeds")
    if note and table not in PAPER_EPOCHS:  # nothing says which of the paper's budgets this one is
        return "inconclusive", f"{note}, so it is not judged at the paper's budget; at its own budget {where}"
    if note:  # the claim is about the paper's budget: a shorter run can only say where it stands itself
        return "inconclusive", SHORT_BUDGET.format(note=note) + f"at this budget {where}"
    if not side:
        return "inconclusive", where
    if claim.time:  # times hold for the hardware they were measured on
        devices = ", ".join(sorted(trials["gpu"].dropna().unique())) if "gpu" in trials else ""
        where += f" (times measured on {devices or 'an unrecorded device'})"
    return side, where


def check_claims(table: str, all_trials: pd.DataFrame, name: str = "", alone: set | None = None,
                 why_not_alone: str = "") -> list[Verdict]:
    """Every claim of the paper that this table's trials (one row per trial) can speak to, judged on the
    trials that ran their whole budget. table: the paper's experiment they are linked to ('' if none);
    name: what the verdicts call the table (default: table); alone: the trial ids that had their node to
    themselves (timing.py), which alone judge the time claims (None: all of them, as for a store that
    does not say); why_not_alone: the reason time claims are not judged when none did."""
    trials = all_trials[all_trials["status"] == FINISHED]
    out = []
    for claim in claims_for(all_trials):
        judged = trials
        exclusive = ""
        if claim.time and alone is not None:
            judged = trials[trials["trial_id"].isin(alone)]
            if judged.empty:
                exclusive = why_not_alone or "no trial of this table had its node to itself"
        verdict, reason = _judge(claim, judged, table, len(all_trials) - len(trials), exclusive)
        values = claim_values(claim, judged)
        out.append(Verdict(name or table, claim, mean_interval([v for _, v in values]), verdict, reason,
                           tuple(values), prob_better([v for _, v in values])))
    return out
