"""A settle's record: its design per group of trials, and each claim's path through the looks.

`scs-sweep settle` writes it (orchestrator/settle.py) to the sweep's folder and to the store
(`_settle/NAME.json`); the tables, the report and `status` read it from there to judge the claims a settle
governs with its repeated intervals (summary.py, `with_settle`). One typed record, with its text (when a
claim was decided, why it stopped) written once here. The JSON keeps the names of the first records, so a
store written by an earlier version reads the same.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from .sequential import Design
from .stats import Interval

__all__ = ["Look", "ClaimRecord", "SettleRecord", "DECIDED", "FUTILE", "UNDECIDED", "OPEN"]

# where a claim stands: decided (its repeated interval cleared the threshold), futile (it cannot be decided
# within the maximum seeds: stopped for futility, non-binding), undecided at the maximum seeds, or open
DECIDED, FUTILE, UNDECIDED, OPEN = "decided", "futile", "undecided", "open"


@dataclass
class Look:
    """A claim at one look: its repeated interval over the seeds the look reached, the critical value
    c_k it used, and (with futility) the chance that the claim is decided by the maximum seeds."""
    look: int
    seeds: int
    estimate: float
    low: float
    high: float
    c: float
    power: float | None = None

    @property
    def interval(self) -> Interval:
        return Interval(self.estimate, self.low, self.high, self.seeds)


@dataclass
class ClaimRecord:
    """One claim of one group: its spec (ClaimSpec.to_dict()), its path, and how it ended."""
    spec: dict
    path: list = field(default_factory=list)        # [Look]
    decided: str = ""             # supported | contradicted, once its interval cleared the threshold
    look: int = 0                 # the look it was decided or stopped at
    seeds: int = 0                # the seeds it had then
    undecided: str = ""           # "undecided at N seeds": the maximum reached
    futile: str = ""              # why it stopped for futility (with the seeds it would take)

    @property
    def status(self) -> str:
        if self.decided:
            return DECIDED
        if self.futile:
            return FUTILE
        return UNDECIDED if self.undecided else OPEN

    @property
    def closed(self) -> bool:
        """No more seeds for it: decided, stopped for futility, or at the maximum."""
        return self.status != OPEN

    def at(self) -> Look | None:
        """The look that governs its verdict: the one it was decided or stopped at, else the last."""
        if not self.path:
            return None
        return next((p for p in self.path if p.look == self.look), self.path[-1]) if self.look else self.path[-1]

    def when(self, looks: int, stopped: str = "") -> str:
        """'decided after 5 seeds (look 3 of 8)', 'undecided at 10 seeds', 'cannot be decided within 10 seeds
        (...)' or 'open after 2 look(s)': the one wording of where a claim stands."""
        if self.decided:
            return f"decided after {self.seeds} seeds (look {self.look} of {looks})"
        if self.futile:
            return f"stopped for futility after {self.seeds} seeds: {self.futile}"
        if self.undecided:
            return self.undecided
        return f"open after {len(self.path)} look(s)" + (f" ({stopped})" if stopped else "")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = [{k: v for k, v in asdict(p).items() if v is not None} for p in self.path]
        return {k: v for k, v in out.items() if v not in ("", 0) or k in ("spec", "path")}

    @classmethod
    def from_dict(cls, data: dict) -> ClaimRecord:
        data = dict(data)
        path = [Look(**p) for p in data.pop("path", [])]
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        return cls(path=path, **{k: v for k, v in data.items() if k in known})


@dataclass
class SettleRecord:
    """What a settle fixed before its first trial, and how far it got."""
    source: str                           # the preset or sweep file it settles
    options: dict                         # first, step, max_seeds, spending, alpha (and futility)
    designs: dict                         # group -> Design
    claims: dict                          # group -> {claim name -> ClaimRecord}
    looks_done: int = 0
    stopped: str = ""                     # why it stopped before its last look (--time-limit), if it did
    time_limit_s: float | None = None
    seconds: float = 0.0
    trials_run: int = 0
    planned: list = field(default_factory=list)      # [{part, trials}]: every trial of the maximum design
    fixed_trials: int = 0                 # the trials a fixed design at the maximum seeds needs
    epochs: dict = field(default_factory=dict)       # part -> epochs
    look_parts: list = field(default_factory=list)   # the look parts that ran (PartPlan fields)

    @property
    def looks(self) -> list[int]:
        """Seeds at each look (every group's design has the same looks)."""
        return next(iter(self.designs.values())).looks if self.designs else []

    def claim(self, group: str, name: str) -> ClaimRecord | None:
        return self.claims.get(group, {}).get(name)

    def open_claims(self) -> list[str]:
        return [name for claims in self.claims.values() for name, r in claims.items() if not r.closed]

    def counts(self, group: str | None = None) -> dict:
        """How many claims (of one group, or all) are decided, futile, undecided at the maximum and open."""
        out = {DECIDED: 0, FUTILE: 0, UNDECIDED: 0, OPEN: 0}
        for name, claims in self.claims.items():
            if group is None or name == group:
                for r in claims.values():
                    out[r.status] += 1
        return out

    def counts_text(self, group: str | None = None) -> str:
        """'the settle decided 1 of 3 claims, stopped 2 for futility and left none undecided at 10 seeds'."""
        c = self.counts(group)
        total = sum(c.values())
        most = max((d.max_seeds for d in self.designs.values()), default=0)
        text = (f"the settle decided {c[DECIDED]} of {total} claim(s), stopped {c[FUTILE]} for futility (more seeds "
                f"would not decide them) and left {c[UNDECIDED]} undecided at {most} seeds")
        return text + (f"; {c[OPEN]} still open" if c[OPEN] else "")

    def lines(self) -> list[str]:
        """One line per claim: where it stands, with its (repeated) interval."""
        out = []
        for group, claims in self.claims.items():
            looks = len(self.designs[group].looks)
            for name, r in claims.items():
                at = r.at()
                interval = f" [{at.low:+.4f}, {at.high:+.4f}]" if at and not math.isnan(at.low) else ""
                word = f"{r.decided} at this budget, " if r.decided else ""
                out.append(f"{group}: {name}: {word}{r.when(looks, self.stopped)}{interval}")
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        out["designs"] = {g: d.to_dict() for g, d in self.designs.items()}
        out["claims"] = {g: {n: r.to_dict() for n, r in claims.items()} for g, claims in self.claims.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_dict(cls, data: dict) -> SettleRecord:
        data = dict(data)
        designs = {g: Design.from_dict(d) for g, d in data.pop("designs", {}).items()}
        claims = {g: {n: ClaimRecord.from_dict(r) for n, r in c.items()} for g, c in data.pop("claims", {}).items()}
        known = set(cls.__dataclass_fields__) - {"designs", "claims"}
        return cls(designs=designs, claims=claims, **{k: v for k, v in data.items() if k in known})
