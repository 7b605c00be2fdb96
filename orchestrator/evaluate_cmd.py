"""`scs-sweep evaluate`: PGD robustness and saliency of stored checkpoints, written to the store.

Takes one trainer checkpoint, or a sweep / experiment directory (every trial's newest checkpoint), on
this disk or in an object store (a URI: the trial folders' small files are mirrored, and only the
checkpoints evaluated are downloaded). Needs torch, and pyarrow for the store; not ray.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

from common import defaults
from common.config import ConfigError, TrialConfig
from common.errors import first_line
from common.eval_settings import EvalSettings
from results.rows import evaluation_rows
from results.store import check_name, get_store

from .errors import UsageError
from .records import newest_checkpoint, read_trial_dir, sweep_name_of
from .storage import local_view


def _trial_folder(checkpoint: Path) -> Path:
    """The trial folder (the one with Tune's params.json) that holds a checkpoint; else the folder above its
    checkpoint_NNNNNN folder."""
    return next((parent for parent in checkpoint.parents if (parent / "params.json").exists()),
                checkpoint.parent.parent)


def _trial_id_of(checkpoint: Path) -> str:
    """The Tune trial id of the trial folder that holds a checkpoint ('' if none)."""
    folder = _trial_folder(checkpoint)
    record = read_trial_dir(folder) if (folder / "params.json").exists() else None
    return record.trial_id if record else ""


def _newest_checkpoints(folder: Path) -> list[Path]:
    """Each trial's newest checkpoint (records.newest_checkpoint), in the order of the trials' ids."""
    trials = {_trial_folder(ckpt) for ckpt in folder.rglob(defaults.CHECKPOINT_FILE)}
    newest = {(_trial_id_of(newest_checkpoint(t)) or str(t)): newest_checkpoint(t) for t in trials}
    return [newest[k] for k in sorted(newest)]


def evaluate_checkpoint(path: Path, settings, data: str = "", device: str = "") -> tuple[dict, dict]:
    """PGD and saliency of the model a trainer checkpoint holds, on its trial's own test images (or
    CIFAR-10 from `data`). Only the model's weights are loaded: nothing is resumed, and a later stage's
    `init_from` (the first-stage checkpoint it started from, maybe gone by now) is not read again."""
    import torch

    from trainables.evaluation import evaluate_model  # torch
    from trainables.train import Trainer

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = TrialConfig.from_dict(state["config"])
    except ConfigError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise UsageError(f"{path} is not a readable trainer checkpoint ({type(exc).__name__}: "
                         f"{first_line(exc)})") from None
    if data:
        cfg = cfg.replace(dataset="cifar10", data_dir=str(Path(data).resolve()))
    trainer = Trainer(cfg, device=device, load_init=False)
    trainer.model.load_state_dict(state["model"])
    start = time.perf_counter()
    result = evaluate_model(trainer.model, trainer.test_set, cfg.image_dim, settings)
    return result, {"arch": cfg.arch, "layer": cfg.layer, "image_dim": cfg.image_dim,
                    "seconds": time.perf_counter() - start, "device": str(trainer.device)}


@dataclass(frozen=True)
class EvaluateRequest:
    """What `scs-sweep evaluate` was asked for, typed at the CLI's edge."""
    path: str                      # a trainer.pt, or a sweep / experiment folder (or its URI)
    settings: EvalSettings
    store: str = ""
    experiment: str = ""
    trial_id: str = ""
    data: str = ""
    device: str = ""


def eval_settings(steps: int, pgd_images: int, saliency_per_class: int, eps: str = "") -> EvalSettings:
    """EvalSettings from the command line's values, every bad value one UsageError line."""
    for flag, value, least in (("--steps", steps, 1), ("--pgd-images", pgd_images, 1),
                               ("--saliency-per-class", saliency_per_class, 0)):
        if value < least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    settings = dict(steps=steps, pgd_images=pgd_images, saliency_per_class=saliency_per_class)
    if eps:
        try:
            radii = [float(e) for e in eps.split(",")]
        except ValueError:
            raise UsageError(f"--eps {eps!r} is not a comma-separated list of numbers "
                             f"(e.g. 0,0.001,0.01)") from None
        if any(not 0 <= e <= 1 for e in radii):
            raise UsageError(f"--eps values are L-inf radii of images in [0, 1]: each must be in [0, 1], "
                             f"got {eps}")
        settings["eps"] = radii
    return EvalSettings.from_dict(settings)


def run(request: EvaluateRequest) -> int:
    with local_view(request.path, "scs-evaluate-") as (path, fetch, sweep):
        if not path.exists():
            raise UsageError(f"{request.path} does not exist; give a trainer.pt checkpoint or a sweep directory")
        return _evaluate(request, path, fetch, sweep)


def _evaluate(request: EvaluateRequest, path: Path, fetch, sweep: str = "") -> int:
    from trainables.devices import check_device  # torch

    check_device(request.device)
    if request.data and not Path(request.data).is_dir():
        raise UsageError(f"--data {request.data} is not a folder; point it at the folder that holds "
                         f"cifar-10-batches-py (or -bin)")
    checkpoints = [path] if path.is_file() else _newest_checkpoints(path)
    if not checkpoints:
        raise UsageError(f"no {defaults.CHECKPOINT_FILE} checkpoints under {path}")
    store = get_store(request.store)
    experiment = check_name("experiment", request.experiment or sweep or sweep_name_of(path.resolve())
                            or "evaluations")
    for ckpt in checkpoints:
        trial_id = (request.trial_id if path.is_file() and request.trial_id else "") or _trial_id_of(ckpt) \
            or ckpt.parent.name
        result, info = evaluate_checkpoint(fetch(ckpt), request.settings, request.data, request.device)
        store.write_trial(experiment, trial_id, evaluation_rows(trial_id, result))
        accs = ", ".join(f"{r['eps']:g}: {r['accuracy']:.3f}" for r in result["robustness"])
        print(f"{experiment}/{trial_id} ({info['arch']} {info['layer']} @{info['image_dim']}, {info['device']}): "
              f"{info['seconds']:.1f} s; PGD accuracy by eps {accs}")
    if store.generations().get(experiment):  # its rows were compacted: merge the new ones in
        store.compact(experiment)
    return 0
