"""Intervals over seeds and factor effects, computed with scipy and statsmodels.

- `mean_interval`: a mean and its 95 % t-interval over seeds (scipy.stats.ttest_1samp).
- `effects`: the main effect of each factor (layer, activation, pooling, normalization) and every
  two-factor interaction, as contrasts of variant means in one OLS fit (statsmodels) with the seed as
  a block: variants that share a seed start from identical weights, so comparing them within a seed
  removes the initialisation's share of the noise. Each effect averages over the variants that exist
  for both levels (tables 3-8 have no Conv2d without ReLU), and says how many pairs it used.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainables.vocabulary import LABELS

__all__ = ["Interval", "mean_interval", "effects", "FACTORS", "REFERENCE_LEVEL", "LEVEL_LABELS"]

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
    n: int                # seeds (or, for an effect, the residual degrees of freedom + 1)

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


def _contrasts(cells: list[tuple], keys: list[str], factors: list[str]) -> list[tuple[str, dict]]:
    """(name, {cell: weight}) for every main effect and two-factor interaction of `factors` the cells
    support. Cells are tuples over `keys` (the factors, then any other setting that varies); a contrast
    only compares cells that agree on every key but the factors it is about."""
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
                out.append((f"{LEVEL_LABELS.get(level, level)} vs {LEVEL_LABELS.get(ref, ref)}",
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
                out.append((f"{LEVEL_LABELS.get(lf, lf)} x {LEVEL_LABELS.get(lg, lg)}",
                            {k: w / quads for k, w in weights.items()}))
    return out


def effects(trials: pd.DataFrame, value: str = "val_acc", extra: tuple = ()) -> list[tuple[str, Interval]]:
    """Main effects and two-factor interactions of the factors that vary in `trials` (one table of one
    architecture, one row per trial), each with its 95 % interval. `extra`: columns of further settings
    (e.g. a learning-rate axis) that tell variants apart without being factors of their own."""
    import statsmodels.formula.api as smf

    data = trials.dropna(subset=[value]).copy()
    factors = [f for f in FACTORS if data[f].nunique() > 1]
    if not factors or len(data) < 2:
        return []
    keys = factors + [e for e in extra if e in data and data[e].nunique() > 1]
    data["cell"] = [" | ".join(str(r[k]) for k in keys) for _, r in data.iterrows()]
    data["y"] = data[value].astype(float)
    blocked = data["seed"].nunique() > 1
    fit = smf.ols("y ~ C(cell)" + (" + C(seed)" if blocked else ""), data=data).fit()
    names = list(fit.params.index)
    cells = sorted({tuple(str(r[k]) for k in keys) for _, r in data.iterrows()})
    out = []
    for name, weights in _contrasts(cells, keys, factors):
        vector = np.zeros(len(names))
        for c, w in weights.items():
            key = f"C(cell)[T.{' | '.join(c)}]"
            if key in names:          # the reference cell is the intercept: its weight cancels
                vector[names.index(key)] += w
        estimate = float(vector @ fit.params.to_numpy())
        if fit.df_resid > 0:
            low, high = fit.t_test(vector).conf_int(alpha=1 - LEVEL)[0]
        else:
            low = high = math.nan
        out.append((name, Interval(estimate, float(low), float(high), int(fit.df_resid) + 1)))
    return out
