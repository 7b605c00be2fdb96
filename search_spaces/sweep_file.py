"""Sweep files: an experiment (or several) described in TOML, read, validated and written back.

    name = "lr-sweep"                  # the sweep's default name (else the file's stem)
    description = "SCS vs conv over the learning rate"
    epochs = 30                        # every trial's budget
    paper_table = "table1"             # optional: the paper's experiment it reproduces, to compare with

    [fixed]                            # settings every trial gets (any TrialConfig key, and `group`)
    arch = "rohrer100k"
    activation = "none"

    [[grid]]                           # trials: the product of the axes (several [[grid]]s: their union)
    layer = ["conv", "scs"]
    max_lr = [0.003, 0.01]

    [search]                           # optional: Optuna TPE over one numeric key instead of a grid
    key = "p_value"
    low = 0.1
    high = 10.0
    log = true
    samples = 30

    [asha]                             # optional: ASHA's settings (pruning is on unless --no-prune)
    grace_period = 5
    reduction_factor = 4

    [[claim]]                          # optional: what the tables should show (search_spaces/claims.py)
    name = "SCS gains 2 points from the higher lr"
    a = { layer = "scs", max_lr = 0.01 }
    b = { layer = "scs", max_lr = 0.003 }
    threshold = 0.02                   # best A minus best B, per seed, above 0.02

Several experiments in one file are `[[experiment]]` tables with the same keys (a composite preset).
A list-valued key such as `milestones` is one value in [fixed] and an axis of lists in [[grid]].
Every problem is one SpecError line naming the file and the key.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from common.vocabulary import TRACKERS

from .claims import ClaimSpec
from .experiment import Asha, Experiment, Search, SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["load_sweep_file", "parse_sweep_text", "sweep_file_text", "is_sweep_file"]

_EXPERIMENT_KEYS = ("name", "description", "paper", "paper_table", "epochs", "fixed", "grid", "search", "asha", "claim",
                    "track")
_SEARCH_KEYS = ("key", "low", "high", "log", "samples")
_ASHA_KEYS = ("grace_period", "reduction_factor")


def is_sweep_file(name: str) -> bool:
    return name.endswith(".toml")


def load_sweep_file(path: str | Path) -> tuple[str, list[Experiment], str]:
    """(default sweep name, validated experiments, the file's text) from a TOML sweep file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read sweep file {path}: {exc.strerror or exc}") from None
    name, experiments = parse_sweep_text(text, path.name, path.stem)
    return name, experiments, text


def parse_sweep_text(text: str, where: str, default_name: str = "sweep") -> tuple[str, list[Experiment]]:
    """(default sweep name, validated experiments) from a sweep file's text (also as the store keeps it)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: not valid TOML ({exc})") from None
    if "experiment" in data:
        extra = sorted(set(data) - {"name", "description", "experiment", "claim", "track"})
        if extra:
            raise SpecError(f"{where}: with [[experiment]] tables, put '{extra[0]}' inside each experiment")
        tables = data["experiment"]
        if not isinstance(tables, list) or not tables:
            raise SpecError(f"{where}: 'experiment' must be one or more [[experiment]] tables")
        shared = _claims(data, where)  # top-level [[claim]]s: about every experiment of the file
        experiments = [_experiment(t, f"{where} experiment {i + 1}", "", shared, _track(data, where))
                       for i, t in enumerate(tables)]
    else:
        experiments = [_experiment(data, where, default_name)]
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}: experiment names must differ, got {', '.join(names)}")
    for experiment in experiments:
        experiment.validate(where if len(experiments) == 1 else f"{where} experiment {experiment.name!r}")
    return str(data.get("name") or default_name), experiments


def _claims(data: dict, where: str) -> tuple:
    """The [[claim]] tables of a table of the file, as ClaimSpecs (names unique)."""
    tables = data.get("claim", [])
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list):
        raise SpecError(f"{where}: 'claim' must be [[claim]] tables")
    claims = tuple(ClaimSpec.from_dict(t, where) for t in tables)
    names = [c.name for c in claims]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError(f"{where}: two [[claim]]s are named {repeated[0]!r}; give each claim its own name")
    return claims


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{where}: '{key}' must be a table ([{key}]), got {value!r}")
    return value


def _known(mapping: dict, allowed: tuple, where: str, section: str) -> None:
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown key '{unknown[0]}' in {section}; allowed: {', '.join(allowed)}")


def _track(data: dict, where: str) -> tuple:
    """`track = ["mlflow", "wandb"]` (or one name): the trackers the sweep logs to."""
    value = data.get("track", [])
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or any(n not in TRACKERS for n in names):
        raise SpecError(f"{where}: 'track' must name trackers among {', '.join(TRACKERS)}, got {value!r}")
    return tuple(names)


def _experiment(data: dict, where: str, default_name: str, shared: tuple = (), track: tuple = ()) -> Experiment:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: an experiment must be a table, got {data!r}")
    _known(data, _EXPERIMENT_KEYS, where, "the experiment (top level)")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    if "epochs" not in data:
        raise SpecError(f"{where}: 'epochs' is missing; give every trial's epoch budget, e.g. epochs = 30")
    grids = data.get("grid", [])
    if isinstance(grids, dict):  # a single [grid] table
        grids = [grids]
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise SpecError(f"{where}: 'grid' must be [grid] or [[grid]] tables of key = [values]")
    search = None
    if "search" in data:
        s = _table(data, "search", where)
        _known(s, _SEARCH_KEYS, where, "[search]")
        missing = [k for k in ("key", "low", "high") if k not in s]
        if missing:
            raise SpecError(f"{where}: [search] needs '{missing[0]}' (key, low, high; optional log, samples)")
        search = Search(**s)
    asha = _table(data, "asha", where)
    _known(asha, _ASHA_KEYS, where, "[asha]")
    claims = shared + tuple(c for c in _claims(data, where) if c.name not in {s.name for s in shared})
    return Experiment(name=name, epochs=data["epochs"], fixed=_table(data, "fixed", where),
                      grids=tuple(grids), description=str(data.get("description", "")),
                      paper=str(data.get("paper", "")), paper_table=_text(data, "paper_table", where),
                      search=search, asha=Asha(**asha), claims=claims,
                      track=tuple(dict.fromkeys([*track, *_track(data, where)])))


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise SpecError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def _as_toml(experiment: Experiment) -> dict:
    out = {"name": experiment.name}
    if experiment.description:
        out["description"] = experiment.description
    if experiment.paper:
        out["paper"] = experiment.paper
    if experiment.paper_table:
        out["paper_table"] = experiment.paper_table
    if experiment.track:
        out["track"] = list(experiment.track)
    out["epochs"] = experiment.epochs
    if experiment.fixed:
        out["fixed"] = dict(experiment.fixed)
    if experiment.grids:
        out["grid"] = [dict(g) for g in experiment.grids]
    if experiment.search:
        s = experiment.search
        out["search"] = dict(key=s.key, low=float(s.low), high=float(s.high), log=s.log, samples=s.samples)
    if experiment.asha != Asha():
        out["asha"] = dict(grace_period=experiment.asha.grace_period,
                           reduction_factor=experiment.asha.reduction_factor)
    if experiment.claims:
        out["claim"] = [claim.to_dict() for claim in experiment.claims]
    return out


def _value(v) -> str:
    """A TOML value for the types a sweep holds: strings, numbers, booleans and (nested) lists."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else ("nan" if v != v else
                                                                             ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON's escapes are valid in a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _lines(table: dict, prefix: str) -> list[str]:
    """key = value lines, then each [sub-table] and [[array of tables]] under `prefix`."""
    lines = [f"{k} = {_value(v)}" for k, v in table.items() if not isinstance(v, dict)
             and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", *_lines(v, f"{prefix}{k}.")]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines += ["", f"[[{prefix}{k}]]", *_lines(item, f"{prefix}{k}.")]
    return lines


def sweep_file_text(name: str, experiments: list[Experiment]) -> str:
    """The TOML sweep file that runs exactly these experiments' trials (load_sweep_file reads it back)."""
    header = [f"# scs-sweep sweep file: {name}",
              "# Run it with `scs-sweep run FILE.toml`; every `run` option (--seeds, --quick, --data, ...)",
              "# applies to it as to a preset. Keys: TrialConfig fields and `group`; see README, Sweep files.", ""]
    if len(experiments) == 1:
        body = _lines(_as_toml(experiments[0]), "")
    else:
        body = _lines({"name": name, "experiment": [_as_toml(e) for e in experiments]}, "")
    return "\n".join(header + body) + "\n"
