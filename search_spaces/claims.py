"""Claims as data: what a table of trials is expected to show, in the form a sweep file's `[[claim]]` takes.

    [[claim]]
    name = "SCS without ReLU is as accurate as Conv2d with ReLU"
    a = { layer = "scs", activation = "none" }        # side A: a variant filter
    b = { layer = "conv", activation = "relu" }       # side B
    side = "above"                                    # above | below | within the threshold
    threshold = -0.03                                 # accuracy points (a ratio of seconds for a time metric)
    statistic = "best"                                # best | mean_within (with within = ["layer", ...])
    metric = "val_acc"                                # val_acc | final_acc | train_time_s | eval_time_s
    when = { arch = "rohrer*" }                       # optional: about a table only when every trial matches

Per seed (variants that share a seed share their initial weights): A minus B of the metric, where each side
is the best value of its matching variants (statistic best), or the mean over groups of `within` of
best(A) - best(B) (mean_within); for times, the log of mean seconds A / B. results/claims.py judges it.

The paper's claims (BUILTIN) are written in the same form, named after the paper's wording (listed with
what each tests in docs/paper_facts.md, "The claims this project judges"). A claim applies to a table when
every trial matches `when` and each side matches at least one trial. Plain data: no torch, no ray.

Thresholds, and why:
- DELTA = 0.03 (3 accuracy points) separates "comparable" from "matters". It is the widest gap the paper
  itself calls comparable: SCS without ReLU against Conv2d with ReLU differs by -0.026 to +0.014 across its
  Tables 1-8 (Table 5 is -0.026). The same margin serves every accuracy claim, so that "A needs B" and "A
  matches B" mean one thing throughout.
- BatchNorm2d's gain at 224x224 is tested for its sign (> 0), not against DELTA: the paper's own Table 8 gains
  average 0.027, below DELTA, while it describes them as "3-4 points".
- Time ratios are tested against 1 (any slowdown or speed-up), as the paper states them.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import MISSING, dataclass, field, fields

from common.vocabulary import ARCH_LABELS, LABELS

from .experiment import SpecError

__all__ = ["ClaimSpec", "BUILTIN", "DELTA", "SIDES", "STATISTICS", "METRICS", "FILTER_KEYS", "matches",
           "side_text", "applicable"]

DELTA = 0.03
SIDES = ("above", "below", "within")
STATISTICS = ("best", "mean_within")    # time metrics always compare mean seconds as a ratio
METRICS = {"val_acc": False, "final_acc": False, "train_time_s": True, "eval_time_s": True}  # metric -> a time?
# the trials table's columns a claim may filter on (the store keeps each trial's settings as these columns)
FILTER_KEYS = ("arch", "layer", "activation", "pooling", "normalization", "image_dim", "p_mode", "p_value",
               "dropout", "group", "max_lr", "weight_decay", "optimizer", "batch_size")
_ORDER = ("layer", "activation", "pooling", "normalization", "arch", "image_dim", "p_mode", "p_value", "dropout",
          "max_lr", "weight_decay", "optimizer", "batch_size", "group")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def matches(value, wanted) -> bool:
    """A trial's value against a filter value: equal, one of a list, or a glob pattern for text."""
    if isinstance(wanted, (list, tuple)):
        return any(matches(value, w) for w in wanted)
    if isinstance(wanted, str) and isinstance(value, str):
        return fnmatch.fnmatchcase(value, wanted)
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        try:
            return not _is_missing(value) and float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return value == wanted


def side_text(where: dict) -> str:
    """{'layer': 'scs', 'activation': 'none'} -> 'SCS/None' (the paper's labels where there are some)."""
    def word(key, value):
        if isinstance(value, (list, tuple)):
            return "|".join(word(key, v) for v in value)
        if key in LABELS:
            return LABELS[key].get(value, str(value))
        if key == "arch":
            return ARCH_LABELS.get(value, str(value))
        return f"{key}={value}"
    keys = sorted(where, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
    return "/".join(word(k, where[k]) for k in keys) or "all"


def _row_matches(row: dict, where: dict) -> bool:
    return all(matches(row.get(key), wanted) for key, wanted in where.items())


@dataclass(frozen=True)
class ClaimSpec:
    """One claim as data (the module's docstring gives its keys)."""
    name: str
    a: dict
    b: dict
    side: str = "above"
    threshold: float = 0.0          # accuracy points for accuracies; a ratio of seconds for times (1 = equal)
    statistic: str = "best"
    within: tuple = ()
    metric: str = "val_acc"
    when: dict = field(default_factory=dict)
    effect: str = ""                # what the per-seed value is (default: spelled from the sides)
    positive: str = ""              # what a value above 0 means (default: "A > B")
    paper: str = ""                 # what the paper says, and where (built-in claims)

    @classmethod
    def from_dict(cls, values, where: str = "claim") -> ClaimSpec:
        """A claim from a sweep file's [[claim]] table; SpecError naming the key for anything wrong."""
        if not isinstance(values, dict):
            raise SpecError(f"{where}: a [[claim]] must be a table of keys, got {values!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SpecError(f"{where}: unknown key '{unknown[0]}' in [[claim]]; a claim takes: {', '.join(known)}")
        missing = [k for k in ("name", "a", "b", "threshold") if k not in values]
        if missing:
            raise SpecError(f"{where}: [[claim]] needs '{missing[0]}' (name, a, b, threshold; optional side, "
                            f"statistic, within, metric, when)")
        values = dict(values)
        if isinstance(values.get("within"), list):
            values["within"] = tuple(values["within"])
        spec = cls(**values)
        spec.check(where)
        return spec

    def to_dict(self) -> dict:
        """The [[claim]] table (defaults left out)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not MISSING else f.default_factory() \
                if f.default_factory is not MISSING else MISSING
            if f.name in ("name", "a", "b", "threshold") or value != default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def check(self, where: str = "claim") -> None:
        """SpecError naming the claim and its first wrong key."""
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"{where}: a [[claim]]'s 'name' must be a non-empty string")
        where = f"{where} claim {self.name!r}"
        if self.side not in SIDES:
            raise SpecError(f"{where}: side {self.side!r}; choose one of: {', '.join(SIDES)}")
        if self.metric not in METRICS:
            raise SpecError(f"{where}: metric {self.metric!r}; choose one of: {', '.join(METRICS)}")
        if self.statistic not in STATISTICS:
            raise SpecError(f"{where}: statistic {self.statistic!r}; choose one of: {', '.join(STATISTICS)}")
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool):
            raise SpecError(f"{where}: threshold must be a number, got {self.threshold!r}")
        if self.time and self.threshold <= 0:
            raise SpecError(f"{where}: a time claim's threshold is a ratio of seconds (1 = equal), "
                            f"got {self.threshold}")
        if self.side == "within" and (self.threshold <= 0 or self.time):
            raise SpecError(f"{where}: side 'within' takes a positive accuracy margin, got {self.threshold}")
        for name in ("a", "b", "when"):
            value = getattr(self, name)
            if not isinstance(value, dict) or (name != "when" and not value):
                raise SpecError(f"{where}: '{name}' must be a table of column = value, "
                                f"e.g. {name} = {{ layer = \"scs\" }}")
            bad = sorted(set(value) - set(FILTER_KEYS))
            if bad:
                raise SpecError(f"{where}: '{name}' filters on '{bad[0]}'; filter on: {', '.join(FILTER_KEYS)}")
        if not isinstance(self.within, tuple) or not all(isinstance(k, str) for k in self.within):
            raise SpecError(f"{where}: 'within' must be a list of column names, got {self.within!r}")
        if self.statistic == "mean_within" and not self.within:
            raise SpecError(f"{where}: statistic mean_within needs 'within' (the columns to pair inside)")
        bad = sorted(set(self.within) - set(FILTER_KEYS))
        if bad:
            raise SpecError(f"{where}: 'within' names '{bad[0]}'; choose from: {', '.join(FILTER_KEYS)}")

    @property
    def time(self) -> bool:
        return METRICS.get(self.metric, False)

    def side_rows(self, rows: list[dict], side: str) -> list[dict]:
        """The rows (trial dicts) matching side 'a' or 'b'."""
        return [r for r in rows if _row_matches(r, getattr(self, side))]

    def applies(self, rows: list[dict]) -> bool:
        """Whether this claim is about a table of these trials (dicts of trial columns): every one matches
        `when`, and each side matches at least one."""
        return bool(rows) and all(_row_matches(r, self.when) for r in rows) and \
            bool(self.side_rows(rows, "a")) and bool(self.side_rows(rows, "b"))

    @property
    def effect_text(self) -> str:
        if self.effect:
            return self.effect
        a, b = side_text(self.a), side_text(self.b)
        if self.time:
            return f"{self.metric.replace('_s', '').replace('_', ' ')} {a} / {b}"
        if self.statistic == "mean_within":
            return f"{a} minus {b}, mean over {', '.join(self.within)}"
        return f"best {a} minus best {b}"

    @property
    def positive_text(self) -> str:
        if self.positive:
            return self.positive
        return f"{side_text(self.a)} slower" if self.time else f"{side_text(self.a)} > {side_text(self.b)}"


def applicable(specs, rows: list[dict]) -> list[ClaimSpec]:
    """The specs (one per name: a later one replaces an earlier one of the same name) that apply to rows."""
    by_name = {}
    for spec in specs:
        by_name[spec.name] = spec
    return [spec for spec in by_name.values() if spec.applies(rows)]


def claims_for_rows(rows: list[dict], own=()) -> list[ClaimSpec]:
    """The claims a group of trials (rows: their configs, or their store rows) can speak to: the paper's
    (BUILTIN) and a sweep's own, which replace a built-in of the same name. The one rule, for the tables, the
    report and settle alike."""
    return applicable((*BUILTIN, *own), rows)


_MEAN_LAYERS = ("layer", "normalization")
BUILTIN = (
    ClaimSpec("SCS without ReLU is as accurate as Conv2d with ReLU", dict(layer="scs", activation="none"),
              dict(layer="conv", activation="relu"), "above", -DELTA,
              paper="Tables 1-8: SCS without an activation within a few points of Conv2d with ReLU"),
    ClaimSpec("Conv2d needs ReLU", dict(layer="conv", activation="relu"), dict(layer="conv", activation="none"),
              "above", DELTA, paper="Conv2d without ReLU almost always trained poorly (dropped after Tables 1-2)"),
    ClaimSpec("With ReLU, MaxAbsPool2d trains worse than MaxPool2d in the Rohrer nets",
              dict(activation="relu", pooling="max"), dict(activation="relu", pooling="maxabs"), "above", DELTA,
              statistic="mean_within", within=_MEAN_LAYERS, when=dict(arch="rohrer*"),
              effect="ReLU+MaxPool2d minus ReLU+MaxAbsPool2d, mean over layers",
              positive="ReLU+MaxPool2d > ReLU+MaxAbsPool2d",
              paper="the ReLU + MaxAbsPool2d dip: Table 1 Conv2d 0.6496 vs 0.8032; Rohrer25K Conv2d 0.1301 vs 0.7609"),
    ClaimSpec("ResNet18 shows no ReLU + MaxAbsPool2d dip", dict(activation="relu", pooling="max"),
              dict(activation="relu", pooling="maxabs"), "within", DELTA, statistic="mean_within",
              within=_MEAN_LAYERS, when=dict(arch="resnet18"),
              effect="ReLU+MaxPool2d minus ReLU+MaxAbsPool2d, mean over layers",
              positive="ReLU+MaxPool2d > ReLU+MaxAbsPool2d",
              paper="the dip does not occur in ResNet18: Table 2 0.8225 vs 0.8219, Table 8 likewise"),
    ClaimSpec("cosine similarity (p = 1) needs ReLU", dict(activation="relu"), dict(activation="none"), "above",
              DELTA, when=dict(layer="scs", p_mode="fixed", p_value=1.0), effect="best ReLU minus best None",
              positive="ReLU > None", paper="§4.2: best accuracy 76.04 % with ReLU, 56.58 % without"),
    ClaimSpec("SharpenedSDP needs no activation", dict(layer="sdp", activation="none"),
              dict(layer="sdp", activation="relu"), "above", -DELTA, effect="best SDP/None minus best SDP/ReLU",
              positive="SDP/None > SDP/ReLU", paper="Tables 3-7: SharpenedSDP without an activation"),
    ClaimSpec("BatchNorm2d adds 3-4 points at 224x224", dict(normalization="batchnorm"), dict(normalization="none"),
              "above", 0.0, statistic="mean_within", within=("layer", "activation", "pooling"),
              when=dict(image_dim=224), effect="BatchNorm2d minus none, mean over variants",
              positive="BatchNorm2d > None", paper="Table 8: BatchNorm2d adds 3-4 points at 224x224"),
    ClaimSpec("SCS trains slower than Conv2d", dict(layer="scs"), dict(layer="conv"), "above", 1.0,
              metric="train_time_s", effect="train time SCS / Conv2d", positive="SCS trains slower",
              paper="Tables 1-8: SCS's Train Time (s) above Conv2d's"),
    ClaimSpec("SCS evaluates faster than Conv2d", dict(layer="scs"), dict(layer="conv"), "below", 1.0,
              metric="eval_time_s", effect="eval time SCS / Conv2d", positive="SCS evaluates slower",
              paper="Tables 1-8: SCS's Eval Time (s) below Conv2d's"),
)
