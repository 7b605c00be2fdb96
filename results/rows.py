"""Turn one trial's reported results into store rows (trials, epochs, layers, robustness, saliency).

A pure conversion: what a trial was (group, budget, resolved config), what it reported (one dict per
epoch, in order) and its status in; rows out. Reading Tune's files is the orchestrator's job
(orchestrator/records.py). When a restored trial re-reports an epoch, the last report wins: keys stay
unique and no epoch is lost.
"""
from __future__ import annotations

import json
import statistics

from .schema import columns

__all__ = ["rows_for_trial", "evaluation_rows", "epoch_timeline"]

# Provenance the trainable reports with every epoch; the trial's row keeps the last epoch's values.
_PROVENANCE = ("params", "gpu", "host", "code_version", "torch_version", "ray_version", "config_hash",
               "compile_s", "node_ip")


def epoch_timeline(results: list[dict]) -> list[dict]:
    """One report per epoch, in order, as the trial's final history has it.

    A trial restored from a checkpoint at epoch k reports k+1, k+2, ... again: the reports after k from
    before the restore belong to a run that was abandoned, so they are dropped even if the restored
    run ends (fails) before reaching them again."""
    by_epoch = {}
    for r in results:
        if "epoch" in r:
            epoch = int(r["epoch"])
            for later in [e for e in by_epoch if e >= epoch]:
                del by_epoch[later]
            by_epoch[epoch] = r
    return [by_epoch[e] for e in sorted(by_epoch)]


def rows_for_trial(experiment: str, trial_id: str, group: str, budget: str, config: dict,
                   results: list[dict], status: str, error: str = "", started_at: str = "",
                   ended_at: str = "") -> dict[str, list[dict]]:
    """The trials, epochs and layers rows of one trial, and its robustness and saliency rows when its
    final report carries the end-of-trial evaluation."""
    epochs = epoch_timeline(results)
    epoch_cols = columns("epochs")
    epoch_rows = [{c: (trial_id if c == "trial_id" else r.get(c)) for c in epoch_cols} for r in epochs]
    layer_cols = [c for c in columns("layers") if c not in ("trial_id", "epoch")]
    layer_rows = [{"trial_id": trial_id, "epoch": int(r["epoch"]), **{c: layer.get(c) for c in layer_cols}}
                  for r in epochs for layer in r.get("layers") or []]
    last = epochs[-1] if epochs else {}
    accs = [r["test_acc"] for r in epochs if r.get("test_acc") is not None]
    trial = {c: config.get(c) for c in columns("trials") if c in config}
    trial.update(
        trial_id=trial_id, group=group, budget=budget, status=status, error=error or None,
        epochs_done=len(epochs),
        val_acc=max(accs) if accs else None,
        final_acc=accs[-1] if accs else None,
        train_time_s=statistics.mean(r["train_time_s"] for r in epochs) if epochs else None,
        eval_time_s=statistics.mean(r["eval_time_s"] for r in epochs) if epochs else None,
        config_json=json.dumps(config, sort_keys=True, default=str),
        started_at=started_at or None, ended_at=ended_at or None,
    )
    trial.update({key: last[key] for key in _PROVENANCE if last.get(key) is not None})
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
