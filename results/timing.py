"""Which trials had their node to themselves while they trained, from when and where each epoch ran.

Two trials on one node share its CPU cores, memory bandwidth and GPU, so each one's seconds per epoch
measure the contention as much as its own layers. The epochs table records when each epoch ended, its
wall time and its node (schema 3), so the overlap is read from the store, the same way by every reader.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["exclusive_trials", "ALONE_HINT"]

TOLERANCE_S = 0.05    # epochs of two trials that overlap by less than this are taken to follow each other

ALONE_HINT = ("time variants alone with `scs-sweep run ... --max-concurrent 1` on a node of its own, or "
              "with `scs-sweep bench`")


def exclusive_trials(epochs: pd.DataFrame) -> tuple[set, str]:
    """(ids of the trials no other trial overlapped on their node, why none ('' when some did)).
    epochs: rows with trial_id, ended_at, wall_s and node_id (and experiment, when several experiments'
    trials may share ids). A trial with an epoch that does not record when or where it ran (rows older
    than schema 3) is never counted alone."""
    needed = ["trial_id", "ended_at", "wall_s", "node_id"]
    unrecorded = "the store does not record when and on which node the epochs ran (rows older than schema 3)"
    if epochs.empty or not set(needed) <= set(epochs):
        return set(), unrecorded
    experiment = epochs["experiment"] if "experiment" in epochs else pd.Series("", index=epochs.index)
    trial = pd.Series(list(zip(experiment, epochs["trial_id"])), index=epochs.index)
    complete = ~trial.isin(trial[epochs[needed].isna().any(axis=1)])
    epochs, trial = epochs[complete], trial[complete]
    if epochs.empty:
        return set(), unrecorded
    end = (pd.to_datetime(epochs["ended_at"]) - pd.Timestamp(0)).dt.total_seconds()
    rows = pd.DataFrame({"trial": trial, "node": epochs["node_id"], "start": end - epochs["wall_s"], "end": end})
    shared, most = set(), 1
    for _, on_node in rows.groupby("node"):
        active = []                                     # (end, trial) of epochs still running
        for start, stop, trial in on_node.sort_values("start")[["start", "end", "trial"]].itertuples(index=False):
            active = [(e, t) for e, t in active if e > start + TOLERANCE_S]
            others = {t for _, t in active if t != trial}
            if others:
                shared |= others | {trial}
            active.append((stop, trial))
            most = max(most, len({t for _, t in active}))
    alone = {trial_id for experiment, trial_id in set(rows["trial"]) - shared}
    reason = "" if alone else (f"every trial shared its node with another trial while it trained (up to {most} at "
                               f"once), so their seconds per epoch measure contention; {ALONE_HINT}")
    return alone, reason
