"""Turn one trial's reported results into store rows (trials, epochs, layers, robustness, saliency).

A pure conversion: what a trial was (group, budget, resolved config), what it reported (one dict per
epoch, in order) and its status in; rows out. Reading Tune's files is the orchestrator's job
(orchestrator/records.py). When a restored trial re-reports an epoch, the last report wins: keys stay
unique and no epoch is lost.
"""
from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone

from common.vocabulary import ENDED

from .schema import columns

__all__ = ["rows_for_trial", "evaluation_rows", "epoch_timeline"]

# Provenance the trainable reports with every epoch; the trial's row keeps the last epoch's values.
_PROVENANCE = ("params", "gpu", "host", "code_version", "torch_version", "ray_version", "config_hash",
               "compile_s", "compiled", "compile_error", "node_ip", "gpu_index")


def _ended(result: dict) -> float | None:
    """When a report was made: the trainable's own clock (`ended_at`), else Tune's whole-second timestamp."""
    return result.get("ended_at") or result.get("timestamp")


def utc(timestamp: float | None) -> datetime | None:
    """A Unix time as the store keeps it: a timestamp in UTC without a zone (None stays None)."""
    return datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None) if timestamp else None


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
                   results: list[dict], status: str, error: str = "", paper_table: str = "",
                   init_from_trial: str = "") -> dict[str, list[dict]]:
    """The trials, epochs and layers rows of one trial, and its robustness and saliency rows when its
    final report carries the end-of-trial evaluation. `results` are the trial's reports in order, as
    Tune recorded them (each with its `timestamp` and `time_this_iter_s` when it came through Tune)."""
    epochs = epoch_timeline(results)
    epoch_cols = [c for c in columns("epochs") if c not in ("trial_id", "ended_at", "wall_s")]
    epoch_rows = [{"trial_id": trial_id, **{c: r.get(c) for c in epoch_cols}, "ended_at": utc(_ended(r)),
                   "wall_s": r.get("time_this_iter_s")} for r in epochs]
    layer_cols = [c for c in columns("layers") if c not in ("trial_id", "epoch")]
    layer_rows = [{"trial_id": trial_id, "epoch": int(r["epoch"]), **{c: layer.get(c) for c in layer_cols}}
                  for r in epochs for layer in r.get("layers") or []]
    last = epochs[-1] if epochs else {}
    first = results[0] if results else {}
    # the first report minus that epoch's wall time: when the trial's training began
    started = _ended(first) - first.get("time_this_iter_s", 0) if _ended(first) else None
    ended = _ended(results[-1]) if results and status in ENDED else None
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
        started_at=utc(started), ended_at=utc(ended), paper_table=paper_table or None,
        init_from_trial=init_from_trial or None,
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
