"""What one group of trials says about the paper's claims, and how that moves with training: the one
pipeline from a group's rows to its verdicts, which `tables`, `report` and `status` all read.

For each claim (claims.py): its verdict, effect, interval and P(A > B) over seeds (for a settled sweep the
settle's repeated interval and its verdict: `with_settle`), the factor effects, the rank agreement with the
paper's table (only on CIFAR-10: on other data the paper's values say nothing), and with the epoch rows the
effect against epoch: the same per-seed statistic computed on each trial's best test accuracy up to that epoch (so its
last point is the claim's effect), with its interval over seeds, and the trend over the last half of
training (the per-seed slopes, judged like every other effect: a t-interval over seeds). At a reduced
budget the verdict cannot decide a claim about 800 epochs, but the trend says whether the pattern is on
its way to the paper's. Also: whether the learning curves were still rising when training stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from common.vocabulary import ARCH_LABELS, FINISHED

from .claims import Verdict, budget_note, check_claims, claim_values, with_interval
from .paper import paper_values
from .settled import SettleRecord
from .stats import Effect, Interval, Rank, effects, mean_interval, per_seed_slopes, rank_agreement, strongest
from .variants import LABEL_COLUMNS, variant_keys, variant_label, with_settings

__all__ = ["GroupSummary", "Trend", "summarize", "claim_series", "with_settle", "effect_rows", "rank_against_paper",
           "RANK_NOTE", "MAX_SERIES_EPOCHS"]

RANK_NOTE = ("the one comparison with the paper that does not need the paper's budget: whether the variants rank "
             "as in the paper (the paper's values are single runs)")

MAX_SERIES_EPOCHS = 100      # an effect-against-epoch series evaluates at most this many epochs (evenly spread)
TREND_SHARE = 0.5            # the trend is read over the last half of the epochs


@dataclass(frozen=True)
class Trend:
    """The per-epoch slope of a per-seed quantity over epochs first..last, as a t-interval over seeds."""
    slope: Interval
    first: int
    last: int

    @property
    def direction(self) -> int:
        """+1 rising, -1 falling, 0 when the interval holds 0 (or there is none)."""
        s = self.slope
        return 0 if not s.has_interval else 1 if s.low > 0 else -1 if s.high < 0 else 0

    def text(self) -> str:
        return f"{self.slope.estimate:+.4f} per epoch [{self.slope.low:+.4f}, {self.slope.high:+.4f}]" \
            if self.slope.has_interval else f"{self.slope.estimate:+.4f} per epoch (no interval)"


@dataclass
class GroupSummary:
    group: str
    paper_table: str
    budget_note: str                  # '' at the paper's budget
    verdicts: list                    # [Verdict]
    series: dict = field(default_factory=dict)      # claim name -> DataFrame(seed, epoch, value)
    trends: dict = field(default_factory=dict)      # claim name -> Trend (accuracy claims with >= 3 epochs)
    curves: dict = field(default_factory=dict)      # variant label -> Trend of its test accuracy
    n_trials: int = 0
    n_seeds: int = 0
    rank: Rank | None = None          # rank agreement with the paper's table (rank_against_paper), on CIFAR-10
    rank_note: str = ""               # why there is no rank agreement where the paper has values to rank by
    settle: SettleRecord | None = None  # the settle's record, if the sweep was settled
    effects: list = field(default_factory=list)     # [(architecture, stats.Effect)]: every factor effect
    strongest: list = field(default_factory=list)   # the largest decided of them

    def reading(self, verdict: Verdict) -> str:
        """What the budget allows one to say about a claim, and where its effect is heading."""
        claim, trend = verdict.claim, self.trends.get(verdict.claim.name)
        if claim.time or trend is None:
            return ""
        if claim.side == "within":  # toward: the effect's size shrinks
            toward = -trend.direction if verdict.interval.estimate >= 0 else trend.direction
        else:
            toward = trend.direction if claim.side == "above" else -trend.direction
        heading = {1: "moving toward the claimed side", -1: "moving away from the claimed side",
                   0: "no clear trend"}[toward]
        return f"over epochs {trend.first}-{trend.last} the effect changes by {trend.text()}: {heading}"

    def curves_text(self) -> str:
        """'still rising at the end in 8 of 8 variants (...)' or that the curves had levelled off."""
        if not self.curves:
            return ""
        trends = list(self.curves.values())
        rising = [t for t in trends if t.direction > 0]
        span = f"epochs {trends[0].first}-{trends[0].last}"
        if rising:
            low, high = min(t.slope.estimate for t in rising), max(t.slope.estimate for t in rising)
            return (f"Test accuracy was still rising at the end ({span}) in {len(rising)} of {len(trends)} "
                    f"variants (by {low:+.4f} to {high:+.4f} per epoch): longer training would move these numbers.")
        return f"Test accuracy had stopped rising by the end ({span}) in every variant (no slope excludes 0)."


def _evaluated_epochs(last: int) -> list[int]:
    if last <= MAX_SERIES_EPOCHS:
        return list(range(1, last + 1))
    return sorted({int(round(e)) for e in np.linspace(1, last, MAX_SERIES_EPOCHS)})


def claim_series(verdict: Verdict, trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """(seed, epoch, value): the claim's per-seed effect on each trial's best test accuracy up to each epoch.
    trials: the finished trials the verdict was judged on; epochs: rows with trial_id, epoch, test_acc."""
    mine = epochs[epochs["trial_id"].isin(trials["trial_id"])].sort_values("epoch")
    if mine.empty or verdict.claim.time:
        return pd.DataFrame(columns=["seed", "epoch", "value"])
    best = mine.assign(best=mine.groupby("trial_id")["test_acc"].cummax())
    table = best.pivot_table(index="epoch", columns="trial_id", values="best").sort_index().ffill()
    rows = []
    for epoch in _evaluated_epochs(int(table.index.max())):
        if epoch not in table.index:
            continue
        at = trials.assign(val_acc=trials["trial_id"].map(table.loc[epoch]))
        rows += [(seed, epoch, value) for seed, value in claim_values(verdict.claim, at)]
    return pd.DataFrame(rows, columns=["seed", "epoch", "value"])


def _tail(series: pd.DataFrame) -> pd.DataFrame:
    last = int(series["epoch"].max())
    return series[series["epoch"] > last - max(3, math.ceil(TREND_SHARE * last))]


def _trend(series: pd.DataFrame) -> Trend | None:
    if series.empty or series["epoch"].nunique() < 3:
        return None
    tail = _tail(series)
    return Trend(mean_interval(per_seed_slopes(tail)), int(tail["epoch"].min()), int(tail["epoch"].max()))


def _curve_trends(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    """variant label -> Trend of its raw test accuracy over the last half of training."""
    out = {}
    mine = epochs.merge(trials[["trial_id", "seed"]], on="trial_id")
    trials = with_settings(trials)
    for _, rows in trials.groupby(variant_keys(trials), sort=True):  # a table row: every label and setting
        series = mine[mine["trial_id"].isin(rows["trial_id"])].rename(columns={"test_acc": "value"})
        trend = _trend(series[["seed", "epoch", "value"]])
        if trend is not None:
            out[variant_label(rows.iloc[0])] = trend
    return out


def effect_rows(trials: pd.DataFrame) -> list[tuple[str, Effect]]:
    """(architecture, Effect) of the finished trials' factor effects, per architecture."""
    out = []
    for arch, part in with_settings(trials).groupby("arch", sort=True):
        # the label columns that are not factors tell variants apart too (a dropout axis)
        out += [(ARCH_LABELS.get(arch, arch), effect)
                for effect in effects(part, extra=("setting", "dropout", "image_dim"))]
    return out


def rank_against_paper(paper_table: str, trials: pd.DataFrame) -> Rank | None:
    """Spearman's rho between our variant means (finished trials) and the paper's values of the same variants,
    with its bootstrap interval over our seeds (stats.rank_agreement); None without 3 shared variants."""
    finished = with_settings(trials[trials["status"] == FINISHED].dropna(subset=["val_acc"]))
    paper = paper_values(paper_table)
    if finished.empty or paper.empty:
        return None
    paper_by = {tuple(r[c] for c in LABEL_COLUMNS) + ("",): r["Paper Val. Acc."] for _, r in paper.iterrows()}
    keys = variant_keys(finished)
    variants = sorted(k for k in set(keys) if k in paper_by)
    seeds = sorted(finished["seed"].unique())
    ours = np.full((len(seeds), len(variants)), np.nan)
    for (key, seed), value in finished.groupby([keys, finished["seed"]])["val_acc"].max().items():
        if key in paper_by:
            ours[seeds.index(seed), variants.index(key)] = value
    return rank_agreement(ours, np.array([paper_by[v] for v in variants]))


def _rank(paper_table: str, trials: pd.DataFrame) -> tuple[Rank | None, str]:
    """(the rank agreement, or why there is none where the paper has a table to rank by)."""
    if paper_values(paper_table).empty:
        return None, ""
    data = sorted(trials["dataset"].dropna().unique()) if "dataset" in trials else []
    if data and data != ["cifar10"]:
        return None, f"not compared: {', '.join(data)} data, not CIFAR-10, says nothing about the paper's ranking"
    return rank_against_paper(paper_table, trials), ""


def with_settle(verdicts: list, record: SettleRecord, group: str, trials: pd.DataFrame, paper_table: str) -> list:
    """The verdicts at this budget of the claims a settle governs: its repeated interval (valid whenever it
    stopped) in place of a plain t-interval over the seeds it chose to add (which optional stopping makes
    too narrow), and its decision. What cannot be judged at all (accuracy on data other than CIFAR-10) keeps
    that verdict, with the repeated interval."""
    design = record.designs.get(group)
    out = []
    for v in verdicts:
        r = record.claim(group, v.claim.name)
        at = r.at() if r is not None else None
        if design is None or at is None:
            out.append(v)
            continue
        method = (f"repeated 95 % interval of a {design.spending} design, c = {at.c:.2f} at look {at.look} of "
                  f"{len(design.looks)}, alpha {design.alpha:g} over {design.claims} claim(s)")
        when = r.when(len(design.looks), record.stopped)
        out.append(with_interval(v, at.interval, method, trials, paper_table, when))
    return out


def summarize(group: str, paper_table: str, trials: pd.DataFrame, epochs: pd.DataFrame | None = None,
              alone: set | None = None, why_not_alone: str = "", specs=None,
              settle: SettleRecord | None = None) -> GroupSummary:
    """The summary of one group (its trials, one row per trial): the claims' verdicts (specs: the sweep's own
    claims beside the paper's; settle: the settle's record, whose repeated intervals govern the verdicts of
    the claims it settled), the factor effects and the rank agreement; with `epochs` (trial_id, epoch,
    test_acc) also each claim's effect against epoch and the learning curves' trends."""
    finished = trials[trials["status"] == FINISHED]
    verdicts = check_claims(paper_table, trials, group, alone, why_not_alone, specs)
    if settle is not None:
        verdicts = with_settle(verdicts, settle, group, trials, paper_table)
    found = effect_rows(finished)
    rank, rank_note = _rank(paper_table, trials)
    summary = GroupSummary(group, paper_table, budget_note(trials, paper_table), verdicts,
                           n_trials=len(trials), n_seeds=trials["seed"].nunique(), rank=rank, rank_note=rank_note,
                           effects=found, strongest=strongest(found), settle=settle)
    if epochs is None:
        return summary
    for verdict in verdicts:
        series = claim_series(verdict, finished, epochs)
        if not series.empty:
            summary.series[verdict.claim.name] = series
            trend = _trend(series)
            if trend is not None:
                summary.trends[verdict.claim.name] = trend
    summary.curves = _curve_trends(finished, epochs)
    return summary
