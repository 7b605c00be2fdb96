"""A trial's variant: the table row it belongs to, and the one way figures, summaries and reports spell it.

A table row is one variant: the paper's label columns (architecture, layer, activation, pooling, dropout,
normalization, image size) plus `setting`, any other config key that differs between a table's trials (a
learning-rate axis, the searched p), so that trials differing only by seed share a row and nothing else
does. `variant_keys` groups trials into rows; `variant_label` is the short name legends and lines use.
"""
from __future__ import annotations

import json

import pandas as pd

from common.vocabulary import ARCH_LABELS, LABELS, dropout_label

__all__ = ["LABEL_COLUMNS", "row_key", "variant_keys", "variant_label", "with_settings"]

LABEL_COLUMNS = ["Architecture", "Layer", "Activation", "Pooling", "Dropout", "Normalization", "Image Dim."]
# Config keys that never tell variants apart: the label columns, and what seeds and data placement change.
# init_from: a later stage's checkpoint is each seed's own (its row names the trial in init_from_trial)
NOT_SETTINGS = {"arch", "layer", "activation", "pooling", "normalization", "image_dim", "dropout", "seed",
                "data_dir", "init_from"}


def row_key(row) -> tuple:
    """A trial's table row: its LABEL_COLUMNS values as the paper prints them, then its setting."""
    return (ARCH_LABELS.get(row["arch"], row["arch"]), LABELS["layer"][row["layer"]],
            LABELS["activation"][row["activation"]], LABELS["pooling"][row["pooling"]],
            dropout_label(row.get("dropout")),
            LABELS["normalization"].get(row["normalization"], row["normalization"]),
            f"{row['image_dim']}x{row['image_dim']}", row.get("setting", ""))


def variant_keys(trials: pd.DataFrame) -> pd.Series:
    """Each trial's row_key, to group trials by variant (trials with_settings, for the setting)."""
    return pd.Series([row_key(r) for _, r in trials.iterrows()], index=trials.index, dtype=object)


def with_settings(trials: pd.DataFrame) -> pd.DataFrame:
    """trials + a `setting` column: the config keys beyond the paper's label columns that differ between
    the trials, as "max_lr=0.01, p_value=0.5". Trials that differ only by seed share a setting, so a row's
    interval is over seeds, never over another axis."""
    trials = trials.copy()
    if "config_json" not in trials or trials.empty:
        trials["setting"] = ""
        return trials
    configs = pd.DataFrame([json.loads(c) if isinstance(c, str) else {} for c in trials["config_json"]],
                           index=trials.index)
    varying = [k for k in configs.columns if k not in NOT_SETTINGS and configs[k].astype(str).nunique() > 1]
    trials["setting"] = [", ".join(f"{k}={configs.at[i, k]}" for k in varying) for i in trials.index]
    return trials


def variant_label(row) -> str:
    """'SCS / None / MaxAbsPool2d [/ BN] [/ dropout 0.5] [/ p=1] [/ setting]' of a trial row (its setting
    when it has one: a row of with_settings)."""
    parts = [LABELS["layer"][row["layer"]], LABELS["activation"][row["activation"]],
             LABELS["pooling"][row["pooling"]]]
    if row.get("normalization") == "batchnorm":
        parts.append("BN")
    if dropout_label(row.get("dropout")) != "None":
        parts.append(f"dropout {dropout_label(row.get('dropout'))}")
    if row.get("p_mode") == "fixed" and row.get("p_value") == row.get("p_value"):
        parts.append(f"p={row['p_value']:.2g}")
    if row.get("setting"):
        parts.append(row["setting"])
    return " / ".join(parts)
