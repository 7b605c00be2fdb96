"""The function trainable every trial runs: the one piece of this project that ships to Ray's workers.

A thin adapter: it reads the trial's resolved config (planned and validated on the driver; see
tune_config.py), restores a checkpoint if Tune hands one over, runs `Trainer.train_epoch()` and reports
each epoch (`_report`). A failure that a retry would only repeat (a data or config error, a loss that
became NaN) is reported as the trial's last result (`failure`) and ends the trial, so Tune does not
retry it, on this node or another; records.py marks such a trial failed. Anything else raises, and Tune
retries the trial from its last checkpoint.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from common import defaults
from common.config import ConfigError, TrialConfig
from common.errors import ScsSweepError
from common.locations import Location
from common.uris import is_uri

from .records import FAILURE_KEY
from .scheduler import METRIC
from .tune_config import RUN_KEY, trial_spec

__all__ = ["train_scs"]

CHECKPOINT_FILE = defaults.CHECKPOINT_FILE


def _report(metrics: dict, trainer=None) -> None:
    """The one place that talks to Tune from inside a trial (the report API changed across versions)."""
    if trainer is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trainer.save(Path(tmp) / CHECKPOINT_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _node_address(node_id: str) -> str:
    """The address Ray's control store lists for a node (what `ray status` and `ray list nodes` print, and
    the address a cluster file names for it), else the one this worker's raylet was started with."""
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("NodeManagerAddress"):
            return node["NodeManagerAddress"]
    return ray.util.get_node_ip_address()


def _checkpoint_asked(marker: str) -> bool:
    """Whether the sweep is stopping gracefully (orchestrator/stopping.py): its marker file is there, and this
    epoch's report carries a checkpoint, so the resumed trial continues from here."""
    if not marker:
        return False
    return Location(marker).is_file() if is_uri(marker) else os.path.exists(marker)


def train_scs(params: dict) -> None:
    """Function trainable: one trial of any sweep."""
    try:
        _train(params)
    except ScsSweepError as exc:  # the user's to fix (data, config, device, a diverged loss): no retry
        # Tune requires the metric in every result; NaN is what ASHA's cutoffs (nanpercentile) ignore
        # and what makes Optuna record the trial as failed
        _report({FAILURE_KEY: f"{type(exc).__name__}: {exc}", METRIC: float("nan")})


def _train(params: dict) -> None:
    import torch

    from trainables.devices import trial_device, use_cpus
    from trainables.train import Trainer

    run = params[RUN_KEY]
    spec = trial_spec(params)
    if spec.init_error:  # a later stage whose first-stage trial of this seed did not finish (tuner.py)
        raise ConfigError(spec.init_error)
    cfg = TrialConfig.from_dict(spec.config)
    use_cpus(run.get("cpus_per_trial", 1))  # torch's threads and inductor's compile workers
    # what Ray assigned, never "any visible GPU": Ray leaves CUDA_VISIBLE_DEVICES alone for a trial that
    # asked for no GPU, and a GPU torch cannot use is one line here (DeviceError: failed, not retried)
    gpu_ids = ray.get_gpu_ids()
    trainer = Trainer(cfg, device=trial_device(gpu_ids), compile=run.get("compile", "auto"))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load(Path(d) / CHECKPOINT_FILE)
    node_id = ray.get_runtime_context().get_node_id()
    provenance = {
        "params": trainer.n_params, "host": socket.gethostname(),
        "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu",
        "torch_version": torch.__version__, "ray_version": ray.__version__,
        "code_version": run.get("code_version", "unknown"), "config_hash": cfg.config_hash(),
        "node_id": node_id,  # which cluster node ran this epoch
        "node_ip": _node_address(node_id),  # the same node as `ray status` and the cluster file name it
        # the GPU Ray assigned, as its node numbers them (None on the CPU, or a GPU Ray names by UUID)
        "gpu_index": int(gpu_ids[0]) if gpu_ids and str(gpu_ids[0]).isdigit() else None,
        "compile_s": trainer.warm_up(),  # compile + CUDA-graph capture before epoch 1 (0 when eager)
    }
    every = max(1, int(run.get("checkpoint_every", defaults.CHECKPOINT_EVERY)))
    marker = run.get("checkpoint_now") or ""
    while not trainer.done:
        result = trainer.train_epoch()
        metrics = result.metrics()
        metrics["layers"] = [vars(layer) for layer in result.layers]
        metrics.update(provenance)
        # whether the model ran compiled, and why not where compiling failed (the worker's log is not
        # forwarded to the driver, so the trial's rows say it)
        metrics["compiled"] = trainer.compile_path
        metrics["compile_error"] = trainer.compile_problems or None
        if trainer.done and run.get("evaluation") is not None:  # PGD and saliency on the final model
            from trainables.evaluation import EvalSettings, evaluate_model

            metrics.update(evaluate_model(trainer.model, trainer.test_set, cfg.image_dim,
                                          EvalSettings.from_dict(run["evaluation"])))
        # when this report's work (the epoch, and at the end the evaluation) ended, by this process's
        # clock: Tune's own `timestamp` is whole seconds, and timing.py needs the epoch's span
        metrics["ended_at"] = time.time()
        save = trainer.epoch % every == 0 or trainer.done or _checkpoint_asked(marker)
        _report(metrics, trainer if save else None)
