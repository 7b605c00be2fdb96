"""The sweep commands of `scs-sweep`: presets, run, resume, status, gather."""
from __future__ import annotations

import os
import time
from pathlib import Path

from search_spaces.epoch_times import seconds_per_epoch
from search_spaces.presets import get_preset, list_presets

from .errors import UsageError
from .plan import SweepPlan, estimate_gpu_hours, plan_sweep

DEFAULT_STORAGE = "scs_runs"


def _storage(args) -> Path:
    return Path(getattr(args, "storage", "") or os.environ.get("SCS_RUNS", DEFAULT_STORAGE)).resolve()


def presets(args) -> int:
    print(f"{'preset':<20} {'trials':>6} {'epochs':>7} {'epochs in all':>13} {'est. H200 h':>11}  paper")
    for name in list_presets():
        parts = get_preset(name)
        trials, total_epochs, hours = estimate_gpu_hours(name, seconds_per_epoch)
        epochs = "/".join(sorted({str(p.epochs) for p in parts}, key=int))
        where = parts[0].paper if len(parts) == 1 else f"{len(parts)} experiments"
        print(f"{name:<20} {trials:>6} {epochs:>7} {total_epochs:>13,} {hours:>11.1f}  {where}")
    print("\nest. H200 h: one trial per GPU at the paper's epoch budgets, from the H200 epoch-time anchors "
          "in search_spaces/epoch_times.py (override with SCS_EPOCH_TIMES).")
    return 0


def _check_cifar10(data: str) -> None:
    """Read (and, where a network is there, download) CIFAR-10 once before any trial starts, so a
    missing or corrupt set is one clear line instead of every trial failing."""
    from trainables.data import load_cifar10

    load_cifar10(data or os.environ.get("SCS_DATA", "data"))


def _has_gpu(address: str) -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def run(args) -> int:
    from . import tune_wiring

    get_preset(args.preset)  # unknown preset: fail before starting Ray
    storage = _storage(args)
    name = args.name or args.preset
    if (storage / name / "sweep.json").exists():
        raise UsageError(f"a sweep named {name!r} exists in {storage}; continue it with "
                         f"`scs-sweep resume {name}` or pick another --name")
    if args.data and args.dataset == "synthetic":
        raise UsageError("--data and --dataset synthetic exclude each other")
    if args.data and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data} is not a folder; point it at the folder that holds "
                         f"cifar-10-batches-py")
    dataset = args.dataset or ("cifar10" if args.data else ("synthetic" if args.smoke_test else "cifar10"))
    if dataset == "cifar10":
        _check_cifar10(args.data)
    tune_wiring.connect(args.address)
    has_gpu = _has_gpu(args.address) and not args.smoke_test
    sweep = plan_sweep(args.preset, name=name, epochs=args.epochs, seeds=args.seeds,
                       dataset=dataset,
                       data_dir=args.data, smoke_test=args.smoke_test, gpus_per_trial=args.gpus_per_trial,
                       has_gpu=has_gpu, prune=not args.no_prune, max_concurrent=args.max_concurrent,
                       checkpoint_every=args.checkpoint_every, num_samples=args.num_samples,
                       store=str(Path(args.store).resolve()) if "://" not in args.store else args.store,
                       storage=str(storage), evaluate=not args.no_evaluate, pgd_images=args.pgd_images,
                       compile=args.compile)
    n = sum(r.n_trials for r in sweep.runs)
    print(f"sweep {name}: {n} trials in {len(sweep.runs)} part(s); runs in {storage / name}, "
          f"rows in {sweep.store}")
    start = time.time()
    tune_wiring.execute(sweep)
    print(f"sweep {name} finished in {time.time() - start:.1f} s; `scs-sweep status {name}` for details")
    return 0


def resume(args) -> int:
    from . import tune_wiring

    storage = _storage(args)
    path = storage / args.name / "sweep.json"
    if not path.exists():
        known = sorted(p.parent.name for p in storage.glob("*/sweep.json"))
        raise UsageError(f"no sweep named {args.name!r} in {storage}; known: {', '.join(known) or 'none'}")
    sweep = SweepPlan.load(path)
    if args.store:
        sweep.store = args.store
    tune_wiring.connect(args.address)
    start = time.time()
    tune_wiring.execute(sweep, resume=True)
    print(f"sweep {args.name} resumed and finished in {time.time() - start:.1f} s")
    return 0


def status(args) -> int:
    from . import tune_wiring

    storage = _storage(args)
    names = [args.name] if args.name else sorted(p.parent.name for p in storage.glob("*/sweep.json"))
    if args.name and not (storage / args.name / "sweep.json").exists():
        raise UsageError(f"no sweep named {args.name!r} in {storage}")
    if not names:
        print(f"no sweeps in {storage}")
        return 0
    for name in names:
        rows = tune_wiring.status(storage / name)
        counts = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "running", "pending", "pruned", "failed"))
        print(f"{name}: {len(rows)} trials: {summary}")
        if args.name:
            for r in rows:
                acc = f"{r['test_acc']:.4f}" if r["test_acc"] is not None else "-"
                print(f"  {r['part']:<24} {r['trial_id']:<14} {r['state']:<8} epoch {r['epoch']}/{r['epochs']}"
                      f"  test_acc {acc}")
    return 0


def gather(args) -> int:
    from results.rows import gather_experiment
    from results.store import get_store

    path = Path(args.experiment_dir)
    if not path.is_dir():
        raise UsageError(f"{path} is not a Tune experiment directory")
    name = args.experiment or (path.name if (path / "sweep.json").exists() else path.parent.name
                               if (path.parent / "sweep.json").exists() else path.name)
    store = get_store(args.store)
    n = gather_experiment(path, name, store)
    print(f"gathered {n} trials of {name} into {store.uri}")
    return 0


def query(args) -> int:
    from results.query import format_table, run_query
    from results.store import get_store

    print(format_table(run_query(get_store(args.store), args.sql), args.format))
    return 0


def tables(args) -> int:
    from results.store import get_store
    from results.tables import build_tables, claims, compare_paper, render

    store = get_store(args.store)
    trials = store.read_table("trials").to_pandas()
    if args.experiment:
        trials = trials[trials["experiment"] == args.experiment]
    frames = build_tables(trials)
    if not frames:
        raise UsageError(f"no finished trials in {store.uri}" + (f" for {args.experiment}" if args.experiment else ""))
    for name, frame in frames.items():
        if args.compare_paper:
            frame = compare_paper(name, frame)
        print(render(frame, args.format, name) + "\n")
    if args.compare_paper:
        print("Paper claims against our data:")
        for line in claims(frames):
            print(f"- {line}")
    return 0


def figures(args) -> int:
    from results.figures import write_figures, write_report
    from results.store import get_store

    store = get_store(args.store)
    store.require()
    paths = write_figures(store, args.out)
    report = write_report(store, args.out, paths)
    print(f"wrote {len(paths)} figures and {report}")
    return 0
