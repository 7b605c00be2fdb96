"""`scs-sweep evaluate`: PGD robustness and saliency of stored checkpoints, written to the store.

Takes one trainer checkpoint, or a sweep / experiment directory (every trial's newest checkpoint).
Needs torch, and pyarrow for the store; not ray.
"""
from __future__ import annotations

import time
from pathlib import Path

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
    newest = {}
    for ckpt in folder.rglob("trainer.pt"):
        tid = _trial_id_of(ckpt) or str(ckpt.parent.parent)
        if tid not in newest or ckpt.stat().st_mtime > newest[tid].stat().st_mtime:
            newest[tid] = ckpt
    return [newest[k] for k in sorted(newest)]


def evaluate_checkpoint(path: Path, settings, data: str = "", device: str = "") -> tuple[dict, dict]:
    import torch

    from trainables.config import TrialConfig
    from trainables.evaluation import evaluate_model
    from trainables.train import Trainer

    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrialConfig.from_dict(state["config"])
    if data:
        cfg = cfg.replace(dataset="cifar10", data_dir=str(Path(data).resolve()))
    cfg = cfg.replace(init_from="")
    trainer = Trainer(cfg, device=device)
    trainer.load_state_dict(state)
    start = time.perf_counter()
    result = evaluate_model(trainer.model, trainer.test_set, cfg.image_dim, settings)
    return result, {"arch": cfg.arch, "layer": cfg.layer, "image_dim": cfg.image_dim,
                    "seconds": time.perf_counter() - start, "device": str(trainer.device)}


def run(args) -> int:
    from results.rows import evaluation_rows
    from results.store import get_store
    from trainables.evaluation import EvalSettings

    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a trainer.pt checkpoint or a sweep directory")
    checkpoints = [path] if path.is_file() else _newest_checkpoints(path)
    if not checkpoints:
        raise UsageError(f"no trainer.pt checkpoints under {path}")
    settings = dict(steps=args.steps, pgd_images=args.pgd_images, saliency_per_class=args.saliency_per_class)
    if args.eps:
        settings["eps"] = [float(e) for e in args.eps.split(",")]
    settings = EvalSettings.from_dict(settings)
    store = get_store(args.store)
    experiment = args.experiment or sweep_name_of(path.resolve()) or "evaluations"
    for ckpt in checkpoints:
        trial_id = (args.trial_id if path.is_file() and args.trial_id else "") or _trial_id_of(ckpt) \
            or ckpt.parent.name
        result, info = evaluate_checkpoint(ckpt, settings, args.data, args.device)
        store.write_trial(experiment, trial_id, evaluation_rows(trial_id, result))
        accs = ", ".join(f"{r['eps']:g}: {r['accuracy']:.3f}" for r in result["robustness"])
        print(f"{experiment}/{trial_id} ({info['arch']} {info['layer']} @{info['image_dim']}, {info['device']}): "
              f"{info['seconds']:.1f} s; PGD accuracy by eps {accs}")
    return 0
