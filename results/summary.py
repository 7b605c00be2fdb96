"""What one table of trials says about the paper's claims, and how that moves with training.

For each claim (claims.py): its verdict, effect, interval and P(A > B) over seeds, and the effect against
epoch: the same per-seed statistic computed on each trial's best test accuracy up to that epoch (so its
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

from trainables.vocabulary import FINISHED

from .claims import Verdict, budget_note, check_claims, claim_values, with_interval
from .stats import Interval, Rank, mean_interval, per_seed_slopes, strongest
from .tables import effect_rows, rank_against_paper
from .variants import variant_keys, variant_label, with_settings

__all__ = ["TableSummary", "Trend", "summarize", "claim_series", "MAX_SERIES_EPOCHS"]

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
class TableSummary:
    group: str
    paper_table: str
    budget_note: str                  # '' at the paper's budget
    verdicts: list                    # [Verdict]
    series: dict = field(default_factory=dict)      # claim name -> DataFrame(seed, epoch, value)
    trends: dict = field(default_factory=dict)      # claim name -> Trend (accuracy claims with >= 3 epochs)
    curves: dict = field(default_factory=dict)      # variant label -> Trend of its test accuracy
    n_trials: int = 0
    n_seeds: int = 0
    rank: Rank | None = None          # rank agreement with the paper's table (tables.rank_against_paper)
    settle: dict = field(default_factory=dict)      # the settle's record of this table's claims, if settled
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


def _settled(verdicts: list, record: dict, group: str, trials: pd.DataFrame, paper_table: str) -> list:
    """The verdicts at this budget that a settle's repeated intervals govern (its record in the store)."""
    from .sequential import Design

    if group not in record.get("claims", {}):
        return verdicts
    design = Design.from_dict(record["designs"][group])
    out = []
    for v in verdicts:
        r = record["claims"][group].get(v.claim.name)
        if not r or not r["path"]:
            out.append(v)
            continue
        at = next((p for p in r["path"] if p["look"] == r.get("look")), r["path"][-1])
        interval = Interval(at["estimate"], at["low"], at["high"], at["seeds"])
        method = (f"repeated 95 % interval of a {design.spending} design, c = {at['c']:.2f} at look {at['look']} of "
                  f"{len(design.looks)}, alpha {design.alpha:g} over {design.claims} claim(s)")
        when = (f"decided after {r['seeds']} seeds (look {r['look']} of {len(design.looks)})" if r.get("decided")
                else r.get("undecided") or f"open after {len(r['path'])} look(s)")
        out.append(with_interval(v, interval, method, trials, paper_table, when))
    return out


def summarize(group: str, paper_table: str, trials: pd.DataFrame, epochs: pd.DataFrame,
              alone: set | None = None, why_not_alone: str = "", specs=None, settle: dict | None = None) -> TableSummary:
    """The summary of one table (its trials, one row per trial; epochs: trial_id, epoch, test_acc); specs:
    the sweep's own claims (claims.ClaimSpec) beside the paper's; settle: the settle's record, whose repeated
    intervals govern the verdicts at this budget of the claims it settled."""
    finished = trials[trials["status"] == FINISHED]
    verdicts = check_claims(paper_table, trials, group, alone, why_not_alone, specs)
    effects = effect_rows(finished)
    if settle:
        verdicts = _settled(verdicts, settle, group, trials, paper_table)
    summary = TableSummary(group, paper_table, budget_note(trials, paper_table), verdicts,
                           n_trials=len(trials), n_seeds=trials["seed"].nunique(),
                           rank=rank_against_paper(paper_table, trials),
                           effects=effects, strongest=strongest(effects), settle=settle or {})
    for verdict in verdicts:
        series = claim_series(verdict, finished, epochs)
        if not series.empty:
            summary.series[verdict.claim.name] = series
            trend = _trend(series)
            if trend is not None:
                summary.trends[verdict.claim.name] = trend
    summary.curves = _curve_trends(finished, epochs)
    return summary
