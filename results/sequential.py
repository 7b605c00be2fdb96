"""Group-sequential seeds: repeated confidence intervals that stay valid whenever a claim stops.

`scs-sweep settle` adds seeds in looks (after the first `first` seeds, then every `step` seeds, up to
`max_seeds`) and stops a claim as soon as its interval clears the threshold. Re-checking an ordinary 95 %
t-interval after every seed would be wrong more often than 5 % (optional stopping); a group-sequential design
spends the error rate across the looks instead (Jennison & Turnbull 2000, Group Sequential Methods with
Applications to Clinical Trials, ch. 7 and 9):

- alpha spending (Lan & DeMets 1983): at information fraction t = n_k / max_seeds the design has spent
  alpha(t) of its two-sided alpha: Pocock-type alpha * ln(1 + (e - 1) t), which decides clear effects early
  (where seeds are saved), or O'Brien-Fleming-type 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)), which keeps its
  early looks strict. alpha is split over a table's claims with Bonferroni (alpha / K each), which stays
  valid when claims stop at different looks.
- the critical values c_k are those of the paired t statistic |mean| / (s / sqrt(n)) itself, found by
  simulation under the null with normal per-seed values (the statistic is pivotal there): c_k is the value
  that the paths not stopped before look k cross at look k with probability alpha(t_k) - alpha(t_{k-1}).
  The z-to-t shortcut (normal boundaries with t quantiles) is too permissive at 3-10 seeds. The simulation
  is seeded and cached per design, so a design's c_k never change.
- the repeated confidence interval at look k is mean +/- c_k s / sqrt(n_k); the probability that any of a
  claim's intervals misses its true effect is at most alpha / K, whatever the rule for stopping. A claim is
  decided when its interval lies wholly on one side of its threshold, as claims.Claim.side_of judges.

`simulate` checks this (tests/test_sequential.py): at an effect exactly on the threshold the chance of a
wrong decision is at most alpha (normal and t(3) per-seed values), re-checking a fixed t-interval after
each seed exceeds it, and a clear effect stops well before the maximum seeds. Measured (40,000 runs each,
3 to 10 seeds, a look after every seed, alpha 0.05, one claim):

    effect on the threshold       Pocock    O'Brien-Fleming    a fixed 95 % t-interval re-checked each seed
      normal per-seed values      4.9 %     4.9 %              16.4 %
      t(3) per-seed values        3.8 %     3.7 %              13.7 %
    effect 2 sd from threshold    decided 99.5 %, after 5.2 seeds on average (O'Brien-Fleming: 6.0)
    three claims (alpha/3 each)   1.5 % per claim (of 1.67 %); re-checking: 6.4 %
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .stats import Interval

__all__ = ["Design", "SPENDING", "spent", "critical_values", "repeated_interval", "simulate", "smallest_decided"]

SPENDING = ("pocock", "obrien-fleming")
PATHS = 200_000          # simulated null paths per design: c_k to about 1 % at the spends used here
SIMULATION_SEED = 20_230_724


def spent(t: float, alpha: float, kind: str) -> float:
    """The two-sided alpha spent by information fraction t (Lan-DeMets spending functions)."""
    from scipy.stats import norm

    t = min(max(t, 0.0), 1.0)
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    if kind == "obrien-fleming":
        return 0.0 if t == 0 else float(2 - 2 * norm.cdf(norm.ppf(1 - alpha / 2) / math.sqrt(t)))
    raise ValueError(f"unknown spending function {kind!r}; choose one of: {', '.join(SPENDING)}")


@dataclass(frozen=True)
class Design:
    """A settle design, fixed before the first trial: its looks, spending, alpha and number of claims."""
    first: int = 3                    # seeds at the first look
    step: int = 1                     # seeds added between looks
    max_seeds: int = 10
    spending: str = "pocock"
    alpha: float = 0.05               # two-sided, for the table's claims together
    claims: int = 1                   # K: Bonferroni splits alpha over them
    critical: tuple = field(default=())   # c_k per look (filled by with_critical_values)

    @property
    def looks(self) -> list[int]:
        """Seeds at each look: first, first + step, ..., max_seeds (the last look is max_seeds)."""
        out = list(range(self.first, self.max_seeds, max(self.step, 1)))
        return out + [self.max_seeds] if not out or out[-1] != self.max_seeds else out

    @property
    def alpha_per_claim(self) -> float:
        return self.alpha / max(self.claims, 1)

    def criticals(self) -> tuple:
        """c_k of each look: the design's own, else computed (seeded simulation, cached)."""
        return self.critical or tuple(critical_values(self.looks, self.alpha_per_claim, self.spending))

    def with_critical_values(self) -> Design:
        return Design(**{**asdict(self), "critical": self.criticals()})

    def to_dict(self) -> dict:
        out = asdict(self)
        out["critical"] = list(self.critical)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Design:
        return cls(**{**data, "critical": tuple(data.get("critical", ()))})


@functools.lru_cache(maxsize=64)
def _critical(looks: tuple, alpha: float, spending: str, paths: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    n_max = looks[-1]
    x = rng.standard_normal((paths, n_max))
    alive = np.ones(paths, dtype=bool)
    out, before = [], 0.0
    for n in looks:
        part = x[:, :n]
        t = np.abs(part.mean(axis=1)) / (part.std(axis=1, ddof=1) / math.sqrt(n))
        target = spent(n / n_max, alpha, spending) - before
        before += max(target, 0.0)
        crossings = int(round(max(target, 0.0) * paths))
        candidates = np.sort(t[alive])[::-1]
        if crossings <= 0 or len(candidates) == 0:
            out.append(math.inf)
            continue
        c = float(candidates[min(crossings, len(candidates)) - 1])
        out.append(c)
        alive &= t < c
    return tuple(out)


def critical_values(looks: list[int], alpha: float, spending: str, paths: int = PATHS,
                    seed: int = SIMULATION_SEED) -> list[float]:
    """c_k of the two-sided paired t statistic at each look (simulated, seeded, cached)."""
    if spending not in SPENDING:
        raise ValueError(f"unknown spending function {spending!r}; choose one of: {', '.join(SPENDING)}")
    return list(_critical(tuple(looks), float(alpha), spending, int(paths), int(seed)))


def repeated_interval(values, c: float) -> Interval:
    """mean +/- c * s / sqrt(n) of per-seed values (no interval from fewer than 2 or without spread)."""
    x = np.asarray([v for v in values if v is not None and v == v], dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if len(x) < 2 or np.ptp(x) == 0 or not math.isfinite(c):
        return Interval(float(x.mean()), math.nan, math.nan, len(x))
    half = c * x.std(ddof=1) / math.sqrt(len(x))
    return Interval(float(x.mean()), float(x.mean() - half), float(x.mean() + half), len(x))


def _draw(rng, shape, distribution: str) -> np.ndarray:
    if distribution == "normal":
        return rng.standard_normal(shape)
    if distribution == "t3":  # heavy tails, scaled to unit variance
        return rng.standard_t(3, shape) / math.sqrt(3)
    raise ValueError(f"distribution {distribution!r}: normal or t3")


def simulate(design: Design, effect: float, distribution: str = "normal", reps: int = 20_000,
             seed: int = 1) -> dict:
    """Per-seed values = effect + noise (unit spread), judged against a threshold of 0 with the design's
    repeated intervals, and with a fixed 95 % t-interval re-checked at every look (naive). Returns the share
    of runs that decided (at effect 0 every decision is wrong), the share the naive rule decided, and the
    mean seeds the design used."""
    from scipy.stats import t as student

    c = design.criticals()
    rng = np.random.default_rng(seed)
    x = effect + _draw(rng, (reps, design.max_seeds), distribution)
    decided = np.zeros(reps, dtype=bool)
    naive = np.zeros(reps, dtype=bool)
    used = np.full(reps, design.max_seeds)
    for n, c_k in zip(design.looks, c):
        part = x[:, :n]
        mean, se = part.mean(axis=1), part.std(axis=1, ddof=1) / math.sqrt(n)
        now = ~decided & (np.abs(mean) > c_k * se)
        used[now] = n
        decided |= now
        naive |= np.abs(mean) > student.ppf(1 - design.alpha_per_claim / 2, n - 1) * se
    return {"decided": float(decided.mean()), "naive_decided": float(naive.mean()), "mean_seeds": float(used.mean()),
            "reps": reps}


def smallest_decided(design: Design, spread: float) -> float:
    """The smallest distance from the threshold that the last look decides when the per-seed spread is
    `spread` (the interval's half-width at max_seeds, taking the spread as measured)."""
    c = design.criticals()[-1]
    return c * spread / math.sqrt(design.max_seeds)
