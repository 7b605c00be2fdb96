"""The paper's claims, and a sweep's own, each checked on a table's finished trials: an effect with a 95 %
interval over seeds, the probability that it favours one side on a new seed, the paper's own effect beside
it, and two verdicts that never share a word:

    at this budget    supported / contradicted (the whole interval on one side of the threshold) /
                      undecided, with the seeds that would decide it at this budget
    the paper's claim judged only from trials at the paper's budget (CIFAR-10, all images, its epochs),
                      else "not tested at the paper's budget (8 of 800 epochs, ...)"
    not judged        for both, where a claim cannot be judged at all: data other than CIFAR-10 (accuracy
                      claims), times from trials that shared their node

A claim is data (search_spaces/claims.py, `ClaimSpec`): its two sides as variant filters, the per-seed
statistic, the metric, the side of the threshold it claims, and `when`, the trials it is about. The paper's
claims (BUILTIN) and a sweep file's own `[[claim]]` tables take the same form, so one mechanism serves the
reproduction and new research.

Every effect is computed per seed and then averaged (stats.py, the one method the effects table uses
too): trials of one table that share a seed start from identical weights, so a per-seed difference leaves
out the initialisation's share of the noise. Times are compared as ratios (the interval of the mean
log-ratio, exponentiated). The thresholds, and why, are with the claims (search_spaces/claims.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from common.vocabulary import (
    ARCH_LABELS,
    FINISHED,
    FULL_BUDGET,
    LABELS,
    PAPER_EPOCHS,
    PAPER_TEST_IMAGES,
    PAPER_TRAIN_IMAGES,
)
from search_spaces.claims import BUILTIN, DELTA, ClaimSpec, claims_for_rows, matches

from .paper import paper_values
from .stats import Interval, mean_interval, prob_better, seeds_to_settle

__all__ = ["ClaimSpec", "Claim", "Verdict", "BUILTIN", "check_claims", "claims_for", "claim_values", "with_interval",
           "DELTA", "budget_note", "full_budget", "paper_trials", "paper_effects", "BUDGET_WORDS", "PAPER_WORDS",
           "NOT_TESTED", "NOT_JUDGED"]

NOT_JUDGED = "not judged"
NOT_TESTED = "not tested at the paper's budget"
BUDGET_WORDS = ("supported", "contradicted", "undecided", NOT_JUDGED)            # at this run's budget
PAPER_WORDS = ("supported", "contradicted", "undecided", NOT_TESTED, NOT_JUDGED)  # the paper's claim


def _mask(rows: pd.DataFrame, where: dict) -> pd.Series:
    mask = pd.Series(True, index=rows.index)
    for key, wanted in where.items():
        mask &= rows[key].map(lambda v, w=wanted: matches(v, w)) if key in rows else False
    return mask


@dataclass(frozen=True)
class Claim:
    """A ClaimSpec ready to judge: its texts spelled out, its threshold in the statistic's units (a
    log-ratio for times)."""
    spec: ClaimSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def time(self) -> bool:
        return self.spec.time

    @property
    def side(self) -> str:
        return self.spec.side

    @property
    def threshold(self) -> float:
        return math.log(self.spec.threshold) if self.time else float(self.spec.threshold)

    @property
    def effect(self) -> str:
        return self.spec.effect_text

    @property
    def positive(self) -> str:
        return self.spec.positive_text

    @property
    def threshold_text(self) -> str:
        t = self.spec.threshold
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

    def stat(self, rows: pd.DataFrame):
        """The per-seed value from the rows of one seed (None where a side has no value)."""
        s = self.spec
        if self.time:
            a, b = rows.loc[_mask(rows, s.a), s.metric], rows.loc[_mask(rows, s.b), s.metric]
            if a.dropna().empty or b.dropna().empty or not b.mean() > 0 or not a.mean() > 0:
                return None
            return math.log(a.mean() / b.mean())
        if s.statistic == "mean_within":
            keys = [k for k in s.within if k in rows]
            diffs = [_diff(_best(part, s.a, s.metric), _best(part, s.b, s.metric))
                     for _, part in (rows.groupby(keys) if keys else [((), rows)])]
            diffs = [d for d in diffs if d is not None]
            return float(np.mean(diffs)) if diffs else None
        return _diff(_best(rows, s.a, s.metric), _best(rows, s.b, s.metric))


def _best(rows: pd.DataFrame, where: dict, metric: str):
    """The best value of `metric` among the rows matching `where` (None if none)."""
    values = rows.loc[_mask(rows, where), metric].dropna() if metric in rows else pd.Series(dtype=float)
    return float(values.max()) if len(values) else None


def _diff(a, b):
    return None if a is None or b is None else a - b


@dataclass(frozen=True)
class Verdict:
    """A claim on one table: the per-seed values, their interval, and the two verdicts with their reasons."""
    table: str
    claim: Claim
    interval: Interval
    budget_verdict: str              # BUDGET_WORDS: at this run's budget
    budget_reason: str
    paper_verdict: str               # PAPER_WORDS: the paper's claim
    paper_reason: str
    values: tuple = ()               # ((seed, per-seed value), ...) the interval is of
    prob: tuple = (math.nan, 0, 0)   # P(a > b) for a new seed, seeds where a > b, seeds
    paper_effect: float | None = None  # the same statistic on the paper's table (its one run per variant)

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

    @property
    def paper_inside(self) -> bool | None:
        """Whether the paper's own effect lies inside our interval (None: no paper value, or no interval)."""
        if self.paper_effect is None or not self.interval.has_interval:
            return None
        return self.interval.low <= self.paper_effect <= self.interval.high

    def paper_effect_text(self) -> str:
        """"the paper's: -0.016 (inside our interval; one run per variant, no spread)" ('' without one)."""
        if self.paper_effect is None:
            return ""
        where = {True: "inside our interval", False: "outside our interval", None: "no interval to compare"}[
            self.paper_inside]
        return f"the paper's: {self.claim.show(self.paper_effect)} ({where}; one run per variant, no spread)"

    def budget_text(self) -> str:
        return f"At this budget: {self.budget_verdict.upper()} ({self.budget_reason})"

    def paper_text(self) -> str:
        return f"The paper's claim: {self.paper_verdict.upper()} ({self.paper_reason})"

    def line(self) -> str:
        paper = self.paper_effect_text()
        return (f"{self.table}: {self.claim.name} -- {self.effect} = {self.interval_text} (threshold "
                f"{self.threshold}, {self.interval.n} seed(s); {self.prob_text()}" + (f"; {paper}" if paper else "")
                + f"). {self.budget_text()}. {self.paper_text()}.")


def _images(trials: pd.DataFrame, column: str) -> pd.Series:
    return trials[column].fillna(0) if column in trials else pd.Series(0, index=trials.index)


def full_budget(trials: pd.DataFrame) -> bool:
    """Whether every trial ran the paper's budget, by the one rule the plan wrote into each row's
    `budget` (orchestrator/budget.py: CIFAR-10, all its images, the paper's epochs)."""
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


def _rows(trials: pd.DataFrame) -> list[dict]:
    """Trials as the plain rows a ClaimSpec reads (NaN as None)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in trials.to_dict("records")]


def claims_for(trials: pd.DataFrame, specs=None) -> list[Claim]:
    """Every claim (BUILTIN, and a sweep's own `specs`, which replace a built-in of the same name) that a
    table with these trials can speak to."""
    return [Claim(spec) for spec in claims_for_rows(_rows(trials), specs or ())]


def claim_values(claim: Claim, trials: pd.DataFrame) -> list[tuple[int, float]]:
    """(seed, the claim's per-seed value) for every seed where it is defined."""
    out = []
    for seed, rows in trials.groupby("seed"):
        value = claim.stat(rows)
        if value is not None and not math.isnan(value):
            out.append((int(seed), float(value)))
    return out


def paper_trials(table: str) -> pd.DataFrame:
    """The paper's table ("table1" ...) as trial rows in this project's vocabulary (one 'seed', 0), so that a
    claim's statistic applies to it unchanged; empty for anything else."""
    paper = paper_values(table, all_columns=True)
    if paper.empty:
        return pd.DataFrame()
    inverse = {column: {label: value for value, label in labels.items()} for column, labels in LABELS.items()}
    archs = {label: arch for arch, label in ARCH_LABELS.items()}
    return pd.DataFrame({
        "arch": paper["Architecture"].map(archs), "layer": paper["Layer"].map(inverse["layer"]),
        "activation": paper["Activation"].map(inverse["activation"]),
        "pooling": paper["Pooling"].map(inverse["pooling"]),
        "normalization": paper["Normalization"].map(inverse["normalization"]),
        "image_dim": paper["Image Dim."].str.split("x").str[0].astype(int), "dropout": 0.0, "p_mode": "learned",
        "p_value": np.nan, "seed": 0, "val_acc": paper["Paper Val. Acc."],
        "train_time_s": paper["Paper Train Time (s)"], "eval_time_s": paper["Paper Eval Time (s)"]})


def paper_effects(table: str, claims: list) -> dict:
    """claim name -> the claim's statistic on the paper's table (its one run per variant; None where the
    claim does not apply to it, or the experiment is not one of its tables): the paper's CSV read once."""
    paper = paper_trials(table)
    rows = _rows(paper)
    out = {}
    for claim in claims:
        value = claim.stat(paper) if not paper.empty and claim.spec.applies(rows) else None
        out[claim.name] = None if value is None or math.isnan(value) else float(value)
    return out


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------
def _at_budget(claim: Claim, interval: Interval, values: list, left_out: int, exclusive: str,
               trials: pd.DataFrame) -> tuple[str, str]:
    """(verdict at this run's budget, reason)."""
    if claim.time and exclusive:
        return NOT_JUDGED, exclusive
    if not claim.time and len(trials) and (trials["dataset"] != "cifar10").any():
        return NOT_JUDGED, f"{', '.join(sorted(trials['dataset'].dropna().unique()))} data, not CIFAR-10"
    if interval.n == 0:
        return "undecided", "no finished trials to compare" + (
            f" ({left_out} pruned, failed or unfinished trial(s) left out; --no-prune runs every trial to its "
            f"budget)" if left_out else "")
    if not interval.has_interval:
        return "undecided", ("one seed: no interval (run with --seeds 3 or more)" if interval.n == 1 else
                             "every seed gave the same value: no spread to build an interval from")
    side = claim.side_of(interval)
    if side:
        why = "the whole interval is on " + ("the claimed" if side == "supported" else "the other") + " side"
        if claim.time:  # times hold for the hardware they were measured on
            devices = ", ".join(sorted(trials["gpu"].dropna().unique())) if "gpu" in trials else ""
            why += f"; times measured on {devices or 'an unrecorded device'}"
        return side, why
    n = seeds_to_settle(values, claim.edge(interval.estimate))
    return "undecided", "the interval spans the threshold" + (
        f"; about {n} seeds would decide it at this budget (80 % chance) if the effect "
        f"({claim.show(interval.estimate)}) and its spread across seeds stay as measured" if n else
        "; the effect is too close to the threshold to decide with any practical number of seeds")


def _the_papers(claim: Claim, at_budget: tuple[str, str], trials: pd.DataFrame, table: str) -> tuple[str, str]:
    """(verdict on the paper's claim, reason): the verdict at this budget when the trials ran the paper's
    budget; for times (seconds per epoch do not depend on the budget) the verdict at this budget, always."""
    verdict, reason = at_budget
    if verdict == NOT_JUDGED:
        return NOT_JUDGED, reason
    if claim.time:
        return verdict, reason + "; seconds per epoch do not depend on the epochs or images trained"
    note = budget_note(trials, table)
    if note:
        return NOT_TESTED, note
    return verdict, reason


def check_claims(table: str, all_trials: pd.DataFrame, name: str = "", alone: set | None = None,
                 why_not_alone: str = "", specs=None) -> list[Verdict]:
    """Every claim (the paper's, and a sweep's own `specs`) that this table's trials (one row per trial) can
    speak to, judged on the trials that ran their whole budget. table: the paper's experiment they are
    linked to ('' if none); name: what the verdicts call the table (default: table); alone: the trial ids
    that had their node to themselves (timing.py), which alone judge the time claims (None: all of them, as
    for a store that does not say); why_not_alone: the reason time claims are not judged when none did."""
    trials = all_trials[all_trials["status"] == FINISHED]
    claims = claims_for(all_trials, specs)
    effects_in_paper = paper_effects(table, claims)
    out = []
    for claim in claims:
        judged, exclusive = trials, ""
        if claim.time and alone is not None:
            judged = trials[trials["trial_id"].isin(alone)]
            if judged.empty:
                exclusive = why_not_alone or "no trial of this table had its node to itself"
        values = claim_values(claim, judged)
        interval = mean_interval([v for _, v in values])
        at_budget = _at_budget(claim, interval, [v for _, v in values], len(all_trials) - len(trials), exclusive,
                               judged)
        papers = _the_papers(claim, at_budget, judged if len(judged) else all_trials, table)
        out.append(Verdict(name or table, claim, interval, *at_budget, *papers, tuple(values),
                           prob_better([v for _, v in values]), effects_in_paper[claim.name]))
    return out


def with_interval(verdict: Verdict, interval: Interval, method: str, trials: pd.DataFrame,
                  paper_table: str, decided: str = "") -> Verdict:
    """The verdict at this budget decided by another interval (settle's repeated confidence interval), the
    line saying which (method) and when (decided: 'decided after 5 seeds (look 3 of 8)'); the paper's verdict
    follows it as check_claims' does. What cannot be judged at all stays not judged, with this interval."""
    if verdict.budget_verdict == NOT_JUDGED:
        return replace(verdict, interval=interval)
    side = verdict.claim.side_of(interval) if interval.has_interval else ""
    reason = (("the whole repeated interval is on " + ("the claimed" if side == "supported" else "the other")
               + " side") if side else "the repeated interval spans the threshold")
    at_budget = (side or "undecided", (f"{decided}: " if decided else "") + f"{reason} ({method})")
    papers = _the_papers(verdict.claim, at_budget, trials, paper_table)
    return replace(verdict, interval=interval, budget_verdict=at_budget[0], budget_reason=at_budget[1],
                   paper_verdict=papers[0], paper_reason=papers[1])
