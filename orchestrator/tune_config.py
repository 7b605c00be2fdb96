"""How a planned trial travels to Tune and back: the param_space encoder and its decoder, side by side.

    {"trial": {"group", "budget", "paper_table", "config"[, "init_from_trial" | "init_error"]},
     "run": {sweep-wide settings}, <search key>: <sampled value>}

A grid part grid-searches over its planned trials; a search part holds its one base trial and lets
Optuna sample the searched key at the top level (so the Optuna study names the parameter plainly,
e.g. `p_value`), which the decoder writes over the base config. Nothing is re-resolved in the worker.
Only `param_space` needs ray (imported when called): the decoder serves `gather` and `status` too.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrialSpec", "param_space", "trial_spec", "TRIAL_KEY", "RUN_KEY"]

TRIAL_KEY, RUN_KEY = "trial", "run"


@dataclass(frozen=True)
class TrialSpec:
    group: str          # the label of the trial's rows (the paper's table)
    budget: str         # full | reduced | quick | smoke
    config: dict        # the resolved TrialConfig keys
    paper_table: str = ""       # the paper's experiment the trial's table is compared with ("" if none)
    init_from_trial: str = ""   # a later stage: the trial whose trained weights this one starts from
    init_error: str = ""        # a later stage: why no such trial exists (the trial then fails alone)


def param_space(trials: list[dict], run: dict, search: dict | None = None) -> dict:
    """Tune's param_space for one part. trials: the planned {"group", "budget", "config", ...} dicts."""
    from ray import tune

    if not search:
        return {TRIAL_KEY: tune.grid_search(trials), RUN_KEY: run}
    low, high = search["low"], search["high"]
    if search["integer"]:
        domain = tune.lograndint(low, high + 1) if search["log"] else tune.randint(low, high + 1)
    else:
        domain = tune.loguniform(low, high) if search["log"] else tune.uniform(low, high)
    return {TRIAL_KEY: trials[0], RUN_KEY: run, search["key"]: domain}


def trial_spec(params: dict) -> TrialSpec:
    """The trial a Tune config (a trial's params.json, or what the trainable receives) stands for."""
    trial = params[TRIAL_KEY]
    sampled = {k: v for k, v in params.items() if k not in (TRIAL_KEY, RUN_KEY)}
    return TrialSpec(group=trial["group"], budget=trial.get("budget", ""), config={**trial["config"], **sampled},
                     paper_table=trial.get("paper_table") or "", init_from_trial=trial.get("init_from_trial", ""),
                     init_error=trial.get("init_error", ""))
