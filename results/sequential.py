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

__all__ = ["Design", "SPENDING", "spent", "critical_values", "repeated_interval", "simulate", "smallest_decided",
           "conditional_power", "futility_applies", "FUTILITY", "MAX_SEEDS"]

SPENDING = ("pocock", "obrien-fleming")
PATHS = 200_000          # simulated null paths per design: c_k to about 1 % at the spends used here
SIMULATION_SEED = 20_230_724
# The most seeds a settle may plan: 100 seeds of Table 1 are already 800 trials (640,000 epochs at the paper's
# budget), and the design's simulation grows with them (100 seeds: about 10 s).
MAX_SEEDS = 100
BLOCK_VALUES = 4_000_000  # draws held at once while computing critical values (32 MB)


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
    # |t| of every path at every look, from blocks of paths drawn one after another: the same numbers, in the
    # same order, as one (paths, n_max) draw, without holding all of it (200,000 x 100 seeds: 160 MB)
    t_all = np.empty((paths, len(looks)))
    block = max(1, min(paths, BLOCK_VALUES // n_max))
    for start in range(0, paths, block):
        x = rng.standard_normal((min(block, paths - start), n_max))
        for j, n in enumerate(looks):
            part = x[:, :n]
            t_all[start:start + len(x), j] = np.abs(part.mean(axis=1)) / (part.std(axis=1, ddof=1) / math.sqrt(n))
    alive = np.ones(paths, dtype=bool)
    out, before = [], 0.0
    for j, n in enumerate(looks):
        t = t_all[:, j]
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


# Futility (non-binding): a claim whose conditional power falls below FUTILITY stops, from the second look on
# (the first look's few seeds measure the spread too roughly to give up on). Simulated (20,000 runs, 3 to 10
# seeds; one and three claims, normal and t(3) per-seed values): on the threshold about half the seeds of a
# design without it (4.4-4.9 against 9.8-9.9); two per-seed SDs from the threshold 0.2-0.7 points fewer
# decisions. A bound of 0.10, or futility from the first look, lost up to 2 points there.
FUTILITY = 0.05
FUTILITY_FROM = 1        # the first look (0-based) at which futility applies
INNER_PATHS = 1000       # simulated continuations per conditional power (seeded: the same data, the same value)


def _decided(mean, se, c, edges) -> np.ndarray:
    """Whether mean +/- c * se lies wholly on one side of every edge (the claim's threshold, or both ends of
    a 'within' band): a decision either way, supported or contradicted."""
    low, high = mean - c * se, mean + c * se
    out = np.ones(np.shape(mean), dtype=bool)
    for edge in edges:
        out &= (low > edge) | (high < edge)
    return out


def futility_applies(design: Design, look_index: int) -> bool:
    """Whether futility may stop a claim at this look (0-based): from the second look, before the last."""
    return FUTILITY_FROM <= look_index < len(design.looks) - 1


def conditional_power(values, design: Design, look_index: int, edges, paths: int = INNER_PATHS,
                      seed: int = SIMULATION_SEED) -> float:
    """The chance that a claim not decided at look `look_index` (0-based) is decided at a later look of the
    design, if the seeds to come follow the current trend: normal per-seed values with the mean and spread
    measured so far (conditional power under the current estimate: Lan, Simon & Halperin 1982, Communications
    in Statistics C 1:207-219; Jennison & Turnbull 2000, ch. 10). Simulated (seeded): each continuation adds
    the design's future seeds and is judged with the design's repeated intervals at every later look. 1.0
    where there is no later look, or fewer than 2 values."""
    x = np.asarray([v for v in values if v is not None and v == v], dtype=float)
    looks, critical = design.looks, design.criticals()
    if look_index + 1 >= len(looks) or len(x) < 2:
        return 1.0
    return float(_continuations(x[None, :], looks, critical, look_index, edges, paths, seed)[0])


def _continuations(x: np.ndarray, looks: list, critical, index: int, edges, paths: int, seed: int) -> np.ndarray:
    """Conditional power of each row of x (per-seed values of one path at look `index`), by `paths` simulated
    continuations per row (vectorized over rows)."""
    n_now, n_max = looks[index], looks[-1]
    mean, sd = x.mean(axis=1), x.std(axis=1, ddof=1)
    rng = np.random.default_rng(seed)
    future = mean[:, None, None] + sd[:, None, None] * rng.standard_normal((len(x), paths, n_max - n_now))
    total = x.sum(axis=1)[:, None, None] + np.cumsum(future, axis=2)
    squares = (x ** 2).sum(axis=1)[:, None, None] + np.cumsum(future ** 2, axis=2)
    decided = np.zeros((len(x), paths), dtype=bool)
    for n, c in zip(looks[index + 1:], critical[index + 1:]):
        s, q = total[:, :, n - n_now - 1], squares[:, :, n - n_now - 1]
        m = s / n
        se = np.sqrt(np.maximum(q - s * m, 0.0) / (n - 1) / n)
        decided |= _decided(m, se, c, edges)
    return decided.mean(axis=1)



def simulate(design: Design, effect: float, distribution: str = "normal", reps: int = 20_000, seed: int = 1,
             futility: float | None = None, inner: int = 200) -> dict:
    """Per-seed values = effect + noise (unit spread), judged against a threshold of 0 with the design's
    repeated intervals (and, with `futility`, stopped when the conditional power falls below it), and with a
    fixed 95 % t-interval re-checked at every look (naive). Returns the share of runs that decided (at effect
    0 every decision is wrong), that stopped for futility, that the naive rule decided, the mean seeds the
    design used, and each run's stopping look (0-based: the look it was decided or stopped at, else the last)."""
    from scipy.stats import t as student

    c = design.criticals()
    rng = np.random.default_rng(seed)
    x = effect + _draw(rng, (reps, design.max_seeds), distribution)
    decided = np.zeros(reps, dtype=bool)
    futile = np.zeros(reps, dtype=bool)
    naive = np.zeros(reps, dtype=bool)
    stop = np.full(reps, len(design.looks) - 1)
    for k, (n, c_k) in enumerate(zip(design.looks, c)):
        part = x[:, :n]
        mean, se = part.mean(axis=1), part.std(axis=1, ddof=1) / math.sqrt(n)
        now = ~decided & ~futile & (np.abs(mean) > c_k * se)
        stop[now] = k
        decided |= now
        naive |= np.abs(mean) > student.ppf(1 - design.alpha_per_claim / 2, n - 1) * se
        if futility is not None and FUTILITY_FROM <= k < len(design.looks) - 1:
            open_rows = np.flatnonzero(~decided & ~futile)
            for block in np.array_split(open_rows, max(1, len(open_rows) // 2000)):
                if len(block):
                    power = _continuations(part[block], design.looks, c, k, (0.0,), inner, seed + 7919 * (k + 1))
                    stopped = block[power < futility]
                    futile[stopped] = True
                    stop[stopped] = k
    used = np.asarray(design.looks)[stop]
    return {"decided": float(decided.mean()), "futile": float(futile.mean()), "naive_decided": float(naive.mean()),
            "mean_seeds": float(used.mean()), "stop_looks": stop, "reps": reps}


def smallest_decided(design: Design, spread: float) -> float:
    """The smallest distance from the threshold that the last look decides when the per-seed spread is
    `spread` (the interval's half-width at max_seeds, taking the spread as measured)."""
    c = design.criticals()[-1]
    return c * spread / math.sqrt(design.max_seeds)
