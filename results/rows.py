"""Turn one trial's reported results into store rows; rebuild them from a Tune experiment directory.

The same conversion serves the live writer (fed by the sweep as results arrive) and `gather`
(fed by each trial's result.json), so both produce identical rows. When a restored trial re-reports an
epoch, the last report wins: keys stay unique and no epoch is lost.
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from .schema import columns

__all__ = ["rows_for_trial", "evaluation_rows", "gather_experiment", "read_trial_dir", "trial_id_of",
           "trial_config_of", "ORCHESTRATION_KEYS"]

# Config keys that belong to the sweep, not to TrialConfig.
ORCHESTRATION_KEYS = ("group",)


def _latest_per_epoch(results: list[dict]) -> list[dict]:
    by_epoch = {}
    for r in results:
        if "epoch" in r:
            by_epoch[int(r["epoch"])] = r
    return [by_epoch[e] for e in sorted(by_epoch)]


def rows_for_trial(experiment: str, trial_id: str, config: dict, results: list[dict], status: str,
                   error: str = "", started_at: str = "", ended_at: str = "") -> dict[str, list[dict]]:
    """The trials, epochs and layers rows of one trial (robustness/saliency come from `evaluate`)."""
    epochs = _latest_per_epoch(results)
    epoch_cols = columns("epochs")
    epoch_rows = [{c: (trial_id if c == "trial_id" else r.get(c)) for c in epoch_cols} for r in epochs]
    layer_rows = []
    for r in epochs:
        for layer in r.get("layers") or []:
            layer_rows.append({"trial_id": trial_id, "epoch": int(r["epoch"]), **{
                c: layer.get(c) for c in columns("layers") if c not in ("trial_id", "epoch")}})
    last = epochs[-1] if epochs else {}
    accs = [r["test_acc"] for r in epochs if r.get("test_acc") is not None]
    config = {**config, **(last.get("trial_config") or {})}  # resolved values win over the preset's
    trial = {c: config.get(c) for c in columns("trials") if c in config}
    trial.update(
        trial_id=trial_id, status=status, error=error or None,
        epochs_done=len(epochs),
        val_acc=max(accs) if accs else None,
        final_acc=accs[-1] if accs else None,
        train_time_s=statistics.mean(r["train_time_s"] for r in epochs) if epochs else None,
        eval_time_s=statistics.mean(r["eval_time_s"] for r in epochs) if epochs else None,
        config_json=json.dumps(config, sort_keys=True, default=str),
        started_at=started_at or None, ended_at=ended_at or None,
    )
    for key in ("params", "gpu", "host", "code_version", "torch_version", "ray_version", "config_hash",
                "compile_s"):
        if last.get(key) is not None:
            trial[key] = last[key]
    if trial.get("p_mode") != "fixed":
        trial["p_value"] = None
    tables = {"trials": [trial], "epochs": epoch_rows, "layers": layer_rows}
    evaluated = [r for r in results if r.get("robustness") is not None]  # the final epoch's report
    if evaluated:
        tables.update(evaluation_rows(trial_id, evaluated[-1]))
    return tables


def evaluation_rows(trial_id: str, evaluation: dict) -> dict[str, list[dict]]:
    """robustness and saliency rows from evaluate_model's output (or a result that carries it)."""
    return {
        "robustness": [{"trial_id": trial_id, **{c: r.get(c) for c in columns("robustness") if c != "trial_id"}}
                       for r in evaluation.get("robustness") or []],
        "saliency": [{"trial_id": trial_id, **{c: r.get(c) for c in columns("saliency") if c != "trial_id"}}
                     for r in evaluation.get("saliency") or []],
    }


def read_trial_dir(trial_dir: Path) -> tuple[dict, list[dict], str]:
    """(config, results, error text) from a Tune trial directory's params.json and result.json."""
    config = json.loads((trial_dir / "params.json").read_text()) if (trial_dir / "params.json").exists() else {}
    results = []
    result_file = trial_dir / "result.json"
    if result_file.exists():
        for line in result_file.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut off by a kill: everything before it is intact
    error = ""
    if (trial_dir / "error.txt").exists():
        error = (trial_dir / "error.txt").read_text().strip().splitlines()[-1][:2000]
    return config, results, error


_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_")  # Tune's trial dirs: <trainable>_<hash>_<index>_...


def trial_id_of(trial_dir: Path, results: list[dict]) -> str:
    """The Tune trial id of a trial directory: from its results, else from its name ('' if neither)."""
    if results and results[-1].get("trial_id"):
        return results[-1]["trial_id"]
    match = _TRIAL_ID.search(trial_dir.name)
    return match.group(1) if match else ""


def trial_config_of(params: dict) -> dict:
    """The flat trial config (TrialConfig keys + group) from a Tune trial's params."""
    flat = dict(params.get("variant", {}))
    flat.update(params.get("overrides", {}))
    # --seeds N repeats each variant at seed offsets 0..N-1 from the variant's own seed
    flat["seed"] = flat.get("seed", 0) + params.get("seed_offset", 0)
    if "p_value" in params:
        flat["p_value"] = params["p_value"]
    return flat


def gather_experiment(experiment_dir: str | Path, experiment: str, store, ended_early: str = "stopped",
                      keep_final: bool = False) -> int:
    """(Re)write the store rows of every trial under a Tune experiment directory; returns the count.

    ended_early: the status of a trial that neither finished nor failed ("stopped" when Tune's files are
    all we know; the sweep driver, which knows the scheduler stopped it, passes "pruned").
    keep_final: leave trials whose stored status is already done, pruned or failed untouched.
    """
    experiment_dir = Path(experiment_dir)
    count = 0
    for params_file in sorted(experiment_dir.rglob("params.json")):
        trial_dir = params_file.parent
        params, results, error = read_trial_dir(trial_dir)
        trial_id = trial_id_of(trial_dir, results)
        if (not results and not error) or not trial_id:
            continue
        if keep_final and store.exists():
            stored = store.read_table("trials", experiment, trial_id).to_pylist()
            if stored and stored[0]["status"] in ("done", "pruned", "failed"):
                continue
        config = trial_config_of(params)
        epochs_total = config.get("epochs") or 0
        done = len(_latest_per_epoch(results))
        status = "failed" if error else ("done" if epochs_total and done >= epochs_total else ended_early)
        started = results[0].get("date", "") if results else ""
        ended = results[-1].get("date", "") if results else ""
        store.write_trial(experiment, trial_id, rows_for_trial(
            experiment, trial_id, config, results, status, error, started, ended))
        count += 1
    return count
