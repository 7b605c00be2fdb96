"""The store read once for the figures, the summaries and the report, then split group by group.

`load_table_data` reads only the columns and layer rows they draw; `groups_of` yields every group (one
experiment's group of trials: a table of the paper, or another of its experiments) with that experiment's
rows, its summary (summary.py) and the trials that had their node to themselves (timing.py), which is what
`figures` and `report` iterate over. `sweep_context` is what a summary needs from the store beside the rows:
the sweep's own claims and its settle record, each skipped with a warning when the store's copy cannot be
read.
"""
from __future__ import annotations

import json
import sys

import pandas as pd
import pyarrow.dataset as ds

from search_spaces.experiment import SpecError
from search_spaces.sweep_file import parse_sweep_text

from .paper import paper_table_of
from .settled import SettleRecord
from .store import StoreError
from .summary import summarize
from .timing import exclusive_trials

__all__ = ["load_table_data", "groups_of", "per_batch_norms", "sweep_claims", "sweep_context", "warn"]


def warn(line: str) -> None:
    """A file of the store skipped: said once on stderr, so that stdout (a table, a CSV) stays parseable."""
    print(f"warning: {line}", file=sys.stderr)


def per_batch_norms(trials: pd.DataFrame) -> pd.Series:
    """Which trials recorded every layer's weight norm per mini-batch (their config's batch_weight_norms)."""
    if "config_json" not in trials:
        return pd.Series(False, index=trials.index, dtype=bool)
    return pd.Series([bool(json.loads(c).get("batch_weight_norms")) if isinstance(c, str) else False
                      for c in trials["config_json"]], index=trials.index, dtype=bool)


def load_table_data(store, experiment: str = "") -> dict[str, pd.DataFrame]:
    """The store tables the figures and the summary read, only the columns and layer rows they draw."""
    exp = experiment or None
    trials = store.read_table("trials", exp).to_pandas()
    epochs = store.read_table("epochs", exp, columns=["experiment", "trial_id", "epoch", "test_acc", "ended_at",
                                                      "wall_s", "node_id"]).to_pandas()
    # layers: every row of the weight-norms runs; of the others only the first layer, when sharpened
    # (every weight layer of an SCS/SDP net is sharpened, and the first comes first in forward order)
    wanted = ds.field("layer_type").isin(["scs", "sdp"]) & (ds.field("layer_index") == 0)
    norms_ids = trials.loc[per_batch_norms(trials), "trial_id"].tolist()
    if norms_ids:
        wanted = wanted | ds.field("trial_id").isin(norms_ids)
    layers = store.read_table("layers", exp, where=wanted, columns=[
        "experiment", "trial_id", "epoch", "layer_index", "layer_name", "layer_type", "weight_norm",
        "p_values", "weight_norm_per_batch"]).to_pandas()
    return {"trials": trials, "epochs": epochs, "layers": layers,
            "robustness": store.read_table("robustness", exp).to_pandas(),
            "saliency": store.read_table("saliency", exp).to_pandas()}


def sweep_claims(store, experiment: str) -> dict[str, tuple]:
    """group -> the claims (ClaimSpec) the sweep file of a store experiment declares for that group: an
    [[experiment]]'s claims are about its groups; {} when the store keeps no sweep file for it, or one this
    version cannot read (said on stderr; the paper's claims still apply)."""
    text = store.read_sweep(experiment)
    if not text:
        return {}
    try:
        _, experiments = parse_sweep_text(text, f"the sweep file of {experiment}", experiment)
    except SpecError as exc:
        warn(f"{store.uri}: the sweep file kept for {experiment} cannot be read ({exc}); its own claims are "
             f"left out, the paper's still apply")
        return {}
    out = {}
    for e in experiments:
        for group in {t["group"] for t in e.trials()}:
            out[group] = out.get(group, ()) + e.claims
    return out


def settle_record(store, experiment: str) -> SettleRecord | None:
    """The settle record the store keeps for an experiment (None: not settled, or a record that cannot be
    read, said on stderr: its verdicts then use plain intervals)."""
    try:
        data = store.read_settle(experiment)
        return SettleRecord.from_dict(data) if data else None
    except (StoreError, KeyError, TypeError, ValueError) as exc:
        warn(f"{store.uri}: the settle record of {experiment} cannot be read ({type(exc).__name__}: {exc}); its "
             f"claims are judged with plain intervals")
        return None


def sweep_context(store, experiment: str) -> tuple[dict, SettleRecord | None]:
    """(group -> the sweep's own claims, its settle record or None): what a summary reads from the store
    beside the rows (nothing without a store)."""
    if store is None:
        return {}, None
    return sweep_claims(store, experiment), settle_record(store, experiment)


def groups_of(data: dict[str, pd.DataFrame], store=None):
    """(experiment, group, that experiment's data, its summary, the trials that ran alone) of every group,
    each from its own sweep's rows; with the store, each summary judges the sweep's own claims too, and a
    settled sweep's with its repeated intervals."""
    alone, why_not = exclusive_trials(data["epochs"])
    trials = data["trials"]
    for experiment in sorted(trials["experiment"].unique()):
        mine = {k: (v[v["experiment"] == experiment] if "experiment" in v else v) for k, v in data.items()}
        specs, settle = sweep_context(store, experiment)
        for group in sorted(mine["trials"]["group"].dropna().unique()):
            part = mine["trials"][mine["trials"]["group"] == group]
            summary = summarize(group, paper_table_of(group, part), part, mine["epochs"], alone, why_not,
                                specs.get(group, ()), settle)
            yield experiment, group, mine, summary, alone
