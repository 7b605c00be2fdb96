"""Column names and Arrow types of the store's five tables (the contract in README.md, "The results store")."""
from __future__ import annotations

import pyarrow as pa

# 2: trials gain budget, n_train, n_test and data_dir (what a reduced run used).
# 3: trials' started_at / ended_at become timestamps (UTC, no zone: DuckDB's `ended_at - started_at` is an
#    interval); trials gain paper_table, init_from_trial, compiled (what ran compiled: model + CUDA graphs,
#    model, kernels (before 2026-11-29: sharpening kernels) or no), compile_error and node_ip (the host that ran it);
#    epochs gain ended_at, wall_s and node_id (when and where each epoch ran); saliency gains the input image.
# 4: trials gain gpu_index (the GPU Ray assigned the trial, as its node numbers them; null on the CPU).
# A reader with this schema sees older files' missing columns as null and their ISO-text times as
# timestamps (pyarrow casts them on read), and `ensure` upgrades the version: old stores read as they are.
SCHEMA_VERSION = 4

# milliseconds: timing.py tells epochs of two trials apart that end within the same second
_F, _I, _S, _B, _T = pa.float64(), pa.int64(), pa.string(), pa.bool_(), pa.timestamp("ms")

# `experiment` is not listed: it is the Hive partition key of every table.
_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "trials": [
        ("trial_id", _S), ("group", _S), ("arch", _S), ("layer", _S), ("activation", _S),
        ("pooling", _S), ("normalization", _S), ("dropout", _F), ("image_dim", _I), ("p_mode", _S),
        ("p_value", _F), ("seed", _I), ("epochs", _I), ("epochs_done", _I), ("batch_size", _I),
        ("optimizer", _S), ("max_lr", _F), ("weight_decay", _F), ("dataset", _S), ("status", _S),
        ("error", _S), ("params", _I), ("val_acc", _F), ("final_acc", _F), ("train_time_s", _F),
        ("eval_time_s", _F), ("gpu", _S), ("host", _S), ("code_version", _S), ("torch_version", _S),
        ("ray_version", _S), ("config_hash", _S), ("config_json", _S), ("started_at", _T),
        ("ended_at", _T), ("compile_s", _F), ("budget", _S), ("n_train", _I), ("n_test", _I),
        ("data_dir", _S), ("paper_table", _S), ("init_from_trial", _S), ("compiled", _S),
        ("compile_error", _S), ("node_ip", _S), ("gpu_index", _I),
    ],
    "epochs": [
        ("trial_id", _S), ("epoch", _I), ("train_loss", _F), ("train_acc", _F), ("test_loss", _F),
        ("test_acc", _F), ("train_time_s", _F), ("eval_time_s", _F), ("lr", _F), ("ended_at", _T),
        ("wall_s", _F), ("node_id", _S),
    ],
    "layers": [
        ("trial_id", _S), ("epoch", _I), ("layer_index", _I), ("layer_name", _S), ("layer_type", _S),
        ("weight_norm", _F), ("grad_norm", _F), ("p_mean", _F), ("p_min", _F), ("p_max", _F), ("q", _F),
        ("p_values", pa.list_(pa.float32())), ("weight_norm_per_batch", pa.list_(pa.float32())),
    ],
    "robustness": [
        ("trial_id", _S), ("attack", _S), ("eps", _F), ("steps", _I), ("step_size", _F),
        ("accuracy", _F), ("n_images", _I),
    ],
    "saliency": [
        ("trial_id", _S), ("image_index", _I), ("label", _I), ("predicted", _I),
        ("map", pa.list_(pa.float32())), ("height", _I), ("width", _I), ("sparsity_gini", _F),
        ("top5_mass", _F), ("image", pa.list_(pa.uint8())),
    ],
}
TABLES = tuple(_COLUMNS)
# The columns that identify a row; unique after any kill, resume or repeated gather.
KEYS = {
    "trials": ("experiment", "trial_id"),
    "epochs": ("experiment", "trial_id", "epoch"),
    "layers": ("experiment", "trial_id", "epoch", "layer_index"),
    "robustness": ("experiment", "trial_id", "attack", "eps"),
    "saliency": ("experiment", "trial_id", "image_index"),
}


def table_schema(table: str) -> pa.Schema:
    return pa.schema(_COLUMNS[table])


def columns(table: str) -> list[str]:
    return [name for name, _ in _COLUMNS[table]]
