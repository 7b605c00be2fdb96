"""One way to judge a difference: within each seed, then over seeds (scipy, statsmodels).

Variants that share a seed start from identical weights, so every effect here (a claim of the paper,
a factor's main effect, an interaction, a simple effect) is first computed within each seed and then
averaged over seeds, with the 95 % t-interval of those per-seed values:

- `mean_interval`: a mean and its 95 % t-interval over seeds (scipy.stats.ttest_1samp).
- `prob_better`: the probability that the difference is positive for a new seed (the t predictive
  distribution of one more per-seed value), beside how many of the measured seeds were positive.
- `seeds_to_settle`: the seeds a t-test would need to exclude a threshold with 80 % power
  (statsmodels' TTestPower), if the effect and its spread stay as measured.
- `rank_agreement`: Spearman's rho between our variant means and the paper's one value per variant, with a
  percentile bootstrap interval over our seeds (Efron & Tibshirani 1993, An Introduction to the Bootstrap,
  ch. 13): the comparison with the paper that does not need the paper's budget.
- `effects`: the main effect of each factor (layer, activation, pooling, normalization: "A - B", the level
  minus the reference level), every two-factor interaction, and for a large interaction the simple effects it hides
  (e.g. ReLU within Conv2d and within SCS), each a contrast of variant means taken within each seed. An effect
  averages over the
  variants that exist for both levels (tables 3-8 have no Conv2d without ReLU).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from common.vocabulary import LABELS

__all__ = ["Interval", "mean_interval", "Rank", "rank_agreement", "strongest", "prob_better", "seeds_to_settle",
           "effects", "Effect", "FACTORS", "REFERENCE_LEVEL", "LEVEL_LABELS", "LEVEL", "per_seed_slopes"]

LEVEL = 0.95
FACTORS = ("layer", "activation", "pooling", "normalization")
# Each effect is "level minus reference": SCS vs Conv2d, ReLU vs none, MaxAbsPool2d vs MaxPool2d, BN vs none.
REFERENCE_LEVEL = {"layer": "conv", "activation": "none", "pooling": "max", "normalization": "none"}
# every factor level's printed label (vocabulary.LABELS; "none" reads None for both activation and norm)
LEVEL_LABELS = {level: label for labels in LABELS.values() for level, label in labels.items()}


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float            # NaN where there is no interval (one value, or no residual degrees of freedom)
    high: float
    n: int                # seeds

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, digits: int = 4, ratio: bool = False) -> str:
        """'+0.0123 [-0.0040, +0.0286]' (a difference) or 'x1.52 [x1.31, x1.77]' (a ratio)."""
        if math.isnan(self.estimate):
            return "-"
        fmt = (lambda v: f"x{v:.{min(digits, 3)}f}") if ratio else (lambda v: f"{v:+.{digits}f}")
        if not self.has_interval:
            return f"{fmt(self.estimate)} (no interval)"
        return f"{fmt(self.estimate)} [{fmt(self.low)}, {fmt(self.high)}]"


def mean_interval(values) -> Interval:
    """The mean of values (one per seed) and its 95 % t-interval; no interval from one value."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if len(x) == 1 or np.ptp(x) == 0:  # one value, or no spread to build an interval from
        return Interval(float(x.mean()), math.nan, math.nan, len(x))
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(LEVEL)
    return Interval(float(x.mean()), float(ci.low), float(ci.high), len(x))


@dataclass(frozen=True)
class Rank:
    """Spearman's rho of our variant means against the paper's values, and its bootstrap interval."""
    rho: float
    low: float            # NaN without an interval (one seed)
    high: float
    variants: int
    seeds: int

    def text(self) -> str:
        interval = f" [{self.low:+.2f}, {self.high:+.2f}]" if not math.isnan(self.low) else " (no interval: one seed)"
        return f"Spearman's rho = {self.rho:+.2f}{interval} over {self.variants} variants, {self.seeds} seed(s)"

    @property
    def agreement(self) -> str:
        """agree: the whole interval above 0 (the variants rank as the paper's, beyond what seeds would
        shuffle); disagree: the whole interval below 0; partly: it holds 0 (some of the order is the paper's,
        the data cannot say how much); '' without an interval (one seed)."""
        if math.isnan(self.low):
            return ""
        return "agree" if self.low > 0 else "disagree" if self.high < 0 else "partly"

    def sentence(self) -> str:
        """'the variants' ranks agree with the paper's (rho +0.69 [+0.40, +0.95])', and the like."""
        said = {"agree": "agree with the paper's", "disagree": "disagree with the paper's",
                "partly": "agree only partly with the paper's (the interval holds 0)",
                "": "cannot be compared with the paper's from one seed"}[self.agreement]
        interval = f" [{self.low:+.2f}, {self.high:+.2f}]" if not math.isnan(self.low) else ""
        return f"the variants' ranks {said} (rho {self.rho:+.2f}{interval})"


def rank_agreement(ours: np.ndarray, paper: np.ndarray, resamples: int = 2000, seed: int = 0) -> Rank | None:
    """ours: (seeds, variants) per-seed values (NaN where a variant lacks a seed); paper: (variants,) the
    paper's values. Rho between our per-variant means and the paper's; the interval resamples seeds with
    replacement, every variant's mean taken over the same resampled seeds (variants that share a seed share
    its initial weights), over the seeds every variant has. None with fewer than 3 variants."""
    from scipy import stats

    ours, paper = np.asarray(ours, dtype=float), np.asarray(paper, dtype=float)
    if ours.ndim != 2 or ours.shape[1] < 3 or np.ptp(paper) == 0:
        return None
    means = np.nanmean(ours, axis=0)
    if np.ptp(means) == 0 or np.isnan(means).any():  # no ranking to compare
        return None
    rho = float(stats.spearmanr(means, paper).statistic)
    complete = ours[~np.isnan(ours).any(axis=1)]
    if len(complete) < 2:
        return Rank(rho, math.nan, math.nan, ours.shape[1], len(ours))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(complete), size=(resamples, len(complete)))
    rhos = [stats.spearmanr(complete[d].mean(axis=0), paper).statistic for d in draws]
    rhos = np.asarray([r for r in rhos if not np.isnan(r)])
    low, high = np.percentile(rhos, [2.5, 97.5]) if len(rhos) else (math.nan, math.nan)
    return Rank(rho, float(low), float(high), ours.shape[1], len(ours))


def _contrasts(cells: list[tuple], keys: list[str], factors: list[str]) -> list[tuple[str, tuple, dict]]:
    """(name, the factors it is about, {cell: weight}) for every main effect and two-factor interaction
    of `factors` the cells support. Cells are tuples over `keys` (the factors, then any other setting that varies); a
    contrast only compares cells that agree on every key but the factors it is about."""
    present = set(cells)

    def cell(values: dict):
        key = tuple(values[k] for k in keys)
        return key if key in present else None

    out = []
    levels = {f: sorted({c[keys.index(f)] for c in cells}, key=lambda v: (v != REFERENCE_LEVEL[f], v))
              for f in factors}
    for f in factors:
        ref = levels[f][0]
        for level in levels[f][1:]:
            weights, pairs = {}, 0
            for c in cells:
                base = dict(zip(keys, c))
                if base[f] != ref:
                    continue
                other = cell({**base, f: level})
                if other is not None:
                    pairs += 1
                    weights[other] = weights.get(other, 0) + 1
                    weights[c] = weights.get(c, 0) - 1
            if pairs:
                out.append((f"{LEVEL_LABELS.get(level, level)} - {LEVEL_LABELS.get(ref, ref)}", (f,),
                            {k: w / pairs for k, w in weights.items()}))
    for f, g in itertools.combinations(factors, 2):
        for lf, lg in itertools.product(levels[f][1:], levels[g][1:]):
            weights, quads = {}, 0
            for c in cells:
                base = dict(zip(keys, c))
                if base[f] != levels[f][0] or base[g] != levels[g][0]:
                    continue
                corners = [cell({**base, f: a, g: b}) for a, b in
                           ((lf, lg), (lf, levels[g][0]), (levels[f][0], lg), (levels[f][0], levels[g][0]))]
                if all(x is not None for x in corners):
                    quads += 1
                    for corner, w in zip(corners, (1, -1, -1, 1)):
                        weights[corner] = weights.get(corner, 0) + w
            if quads:
                out.append((f"{LEVEL_LABELS.get(lf, lf)} x {LEVEL_LABELS.get(lg, lg)}", (f, g),
                            {k: w / quads for k, w in weights.items()}))
    return out


@dataclass(frozen=True)
class Effect:
    """One row of the effects table: a main effect, an interaction, or a simple effect under one."""
    name: str             # "ReLU - None" (A - B), "ReLU x MaxAbsPool2d", "ReLU - None where layer = Conv2d"
    kind: str             # main | interaction | simple
    interval: Interval    # over seeds, of the per-seed contrast
    values: tuple = ()    # the per-seed values
    parent: str = ""      # a simple effect: the interaction it breaks down

    @property
    def excludes_zero(self) -> bool:
        i = self.interval
        return i.has_interval and (i.low > 0 or i.high < 0)


def effects(trials: pd.DataFrame, value: str = "val_acc", extra: tuple = (),
            simple_above: float = 0.03) -> list[Effect]:
    """Main effects, two-factor interactions and (for an interaction whose interval excludes 0 or whose
    size reaches `simple_above`) its simple effects, for the factors that vary in `trials` (one table of
    one architecture, one row per trial). `extra`: columns of further settings (e.g. a learning-rate
    axis) that tell variants apart without being factors of their own."""
    data = trials.dropna(subset=[value])
    factors = [f for f in FACTORS if data[f].nunique() > 1]
    if not factors or data.empty:
        return []
    keys = factors + [e for e in extra if e in data and data[e].nunique() > 1]
    by_seed = {seed: {tuple(str(r[k]) for k in keys): float(r[value]) for _, r in rows.iterrows()}
               for seed, rows in data.groupby("seed")}
    cells = sorted({c for values in by_seed.values() for c in values})

    def judged(name: str, kind: str, weights: dict) -> Effect:
        per_seed = [sum(w * values[c] for c, w in weights.items()) for values in by_seed.values()
                    if all(c in values for c in weights)]
        return Effect(name, kind, mean_interval(per_seed), tuple(per_seed))

    out = []
    for name, about, weights in _contrasts(cells, keys, factors):
        effect = judged(name, "interaction" if len(about) == 2 else "main", weights)
        out.append(effect)
        i = effect.interval
        if len(about) == 2 and (abs(i.estimate) >= simple_above or effect.excludes_zero):
            out += [replace(e, parent=name) for e in _simple_effects(about, cells, keys, judged)]
    return out


def _simple_effects(about: tuple, cells: list, keys: list, judged) -> list[Effect]:
    """The effect of each factor of an interaction within each level of the other (what its main
    effects average away: ReLU helps Conv2d and hurts SCS)."""
    out = []
    for f, g in (about, about[::-1]):
        for level in sorted({c[keys.index(g)] for c in cells}, key=lambda v: (v != REFERENCE_LEVEL[g], v)):
            within = [c for c in cells if c[keys.index(g)] == level]
            for name, _, weights in _contrasts(within, keys, [f]):
                out.append(judged(f"{name} where {g} = {LEVEL_LABELS.get(level, level)}", "simple", weights))
    return out


def strongest(rows: list, n: int = 3) -> list:
    """The n largest effects (by size) whose interval excludes 0, from (label, Effect) pairs."""
    decided = [(label, e) for label, e in rows if e.excludes_zero]
    return sorted(decided, key=lambda pair: -abs(pair[1].interval.estimate))[:n]


def prob_better(values) -> tuple[float, int, int]:
    """(P(a new seed's value > 0) from the t predictive distribution, seeds > 0, seeds) of per-seed
    differences; the probability is NaN without a spread to predict from."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    n, positive = len(x), int((x > 0).sum())
    if n < 2 or np.ptp(x) == 0:
        return math.nan, positive, n
    scale = x.std(ddof=1) * math.sqrt(1 + 1 / n)
    return float(stats.t.cdf(x.mean() / scale, n - 1)), positive, n


def seeds_to_settle(values, threshold: float, alpha: float = 0.05) -> int | None:
    """Seeds after which a two-sided t-interval at level 1 - alpha would exclude `threshold` with 80 %
    probability, if the mean and spread of `values` stay as measured (the power of the one-sample t-test,
    statsmodels' TTestPower; None when there is no spread or no gap, or more than 1,000 would be needed)."""
    from statsmodels.stats.power import TTestPower

    x = np.asarray(values, dtype=float)
    sd, gap = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0, abs(float(np.mean(x)) - threshold)
    if sd == 0 or gap == 0:
        return None
    n = TTestPower().solve_power(effect_size=gap / sd, power=0.8, alpha=alpha, alternative="two-sided")
    return int(math.ceil(n)) if n and n <= 1000 else None


def per_seed_slopes(series: pd.DataFrame, value: str = "value") -> list[float]:
    """The least-squares slope per epoch of `value` against `epoch`, one per seed (rows: seed, epoch,
    value), for seeds with at least 3 epochs."""
    out = []
    for _, rows in series.groupby("seed"):
        rows = rows.dropna(subset=[value])
        if rows["epoch"].nunique() >= 3:
            out.append(float(np.polyfit(rows["epoch"].astype(float), rows[value].astype(float), 1)[0]))
    return out
