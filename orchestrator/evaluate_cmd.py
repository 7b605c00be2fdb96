"""`scs-sweep evaluate`: PGD robustness and saliency of stored checkpoints, written to the store.

Takes one trainer checkpoint, or a sweep / experiment directory (every trial's newest checkpoint), on
this disk or in an object store (a URI: the trial folders' small files are mirrored, and only the
checkpoints evaluated are downloaded). Needs torch, and pyarrow for the store; not ray.
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path

from trainables import defaults

from .errors import UsageError
from .records import read_trial_dir, sweep_name_of


def _trial_id_of(checkpoint: Path) -> str:
    """The Tune trial id of the trial folder that holds a checkpoint ('' if none)."""
    for parent in checkpoint.parents:
        if (parent / "params.json").exists():
            record = read_trial_dir(parent)
            return record.trial_id if record else ""
    return ""


def _newest_checkpoints(folder: Path) -> list[Path]:
    """Each trial's newest checkpoint: the highest checkpoint_NNNNNN folder Tune numbered."""
    newest = {}
    for ckpt in folder.rglob(defaults.CHECKPOINT_FILE):
        tid = _trial_id_of(ckpt) or str(ckpt.parent.parent)
        if tid not in newest or ckpt.parent.name > newest[tid].parent.name:
            newest[tid] = ckpt
    return [newest[k] for k in sorted(newest)]


def evaluate_checkpoint(path: Path, settings, data: str = "", device: str = "") -> tuple[dict, dict]:
    """PGD and saliency of the model a trainer checkpoint holds, on its trial's own test images (or
    CIFAR-10 from `data`). Only the model's weights are loaded: nothing is resumed, and a later stage's
    `init_from` (the first-stage checkpoint it started from, maybe gone by now) is not read again."""
    import torch

    from trainables.config import ConfigError, TrialConfig
    from trainables.evaluation import evaluate_model
    from trainables.train import Trainer

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = TrialConfig.from_dict(state["config"])
    except ConfigError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise UsageError(f"{path} is not a readable trainer checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if data:
        cfg = cfg.replace(dataset="cifar10", data_dir=str(Path(data).resolve()))
    trainer = Trainer(cfg, device=device, load_init=False)
    trainer.model.load_state_dict(state["model"])
    start = time.perf_counter()
    result = evaluate_model(trainer.model, trainer.test_set, cfg.image_dim, settings)
    return result, {"arch": cfg.arch, "layer": cfg.layer, "image_dim": cfg.image_dim,
                    "seconds": time.perf_counter() - start, "device": str(trainer.device)}


def _settings(args):
    """EvalSettings from the command line, every bad value one UsageError line."""
    from trainables.evaluation import EvalSettings

    for flag, value, least in (("--steps", args.steps, 1), ("--pgd-images", args.pgd_images, 1),
                               ("--saliency-per-class", args.saliency_per_class, 0)):
        if value < least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    settings = dict(steps=args.steps, pgd_images=args.pgd_images, saliency_per_class=args.saliency_per_class)
    if args.eps:
        try:
            eps = [float(e) for e in args.eps.split(",")]
        except ValueError:
            raise UsageError(f"--eps {args.eps!r} is not a comma-separated list of numbers "
                             f"(e.g. 0,0.001,0.01)") from None
        if any(not 0 <= e <= 1 for e in eps):
            raise UsageError(f"--eps values are L-inf radii of images in [0, 1]: each must be in [0, 1], "
                             f"got {args.eps}")
        settings["eps"] = eps
    return EvalSettings.from_dict(settings)


def run(args) -> int:
    settings = _settings(args)
    from .storage import local_view

    with local_view(args.path, "scs-evaluate-") as (path, fetch, sweep):
        if not path.exists():
            raise UsageError(f"{args.path} does not exist; give a trainer.pt checkpoint or a sweep directory")
        return _evaluate(args, path, fetch, settings, sweep)


def _evaluate(args, path: Path, fetch, settings, sweep: str = "") -> int:
    from results.rows import evaluation_rows
    from results.store import check_name, get_store
    from trainables.train import check_device

    check_device(args.device)
    if args.data and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data} is not a folder; point it at the folder that holds "
                         f"cifar-10-batches-py (or -bin)")
    checkpoints = [path] if path.is_file() else _newest_checkpoints(path)
    if not checkpoints:
        raise UsageError(f"no {defaults.CHECKPOINT_FILE} checkpoints under {path}")
    store = get_store(args.store)
    experiment = check_name("experiment", args.experiment or sweep or sweep_name_of(path.resolve()) or "evaluations")
    for ckpt in checkpoints:
        trial_id = (args.trial_id if path.is_file() and args.trial_id else "") or _trial_id_of(ckpt) \
            or ckpt.parent.name
        result, info = evaluate_checkpoint(fetch(ckpt), settings, args.data, args.device)
        store.write_trial(experiment, trial_id, evaluation_rows(trial_id, result))
        accs = ", ".join(f"{r['eps']:g}: {r['accuracy']:.3f}" for r in result["robustness"])
        print(f"{experiment}/{trial_id} ({info['arch']} {info['layer']} @{info['image_dim']}, {info['device']}): "
              f"{info['seconds']:.1f} s; PGD accuracy by eps {accs}")
    if store.generations().get(experiment):  # its rows were compacted: merge the new ones in
        store.compact(experiment)
    return 0
