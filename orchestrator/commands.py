"""The commands of `scs-sweep`: models, presets, run, resume, status, gather, query, tables, figures, report,
bench (cluster_cmd.py has up and down, evaluate_cmd.py evaluate).

Only `run` and `resume` import ray (through tuner.py), and only models, bench, evaluate and a sweep's run
torch; the read commands import neither, each importing what it needs when it runs.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from search_spaces import get_preset, is_sweep_file, list_presets, load_sweep_file, sweep_file_text
from search_spaces.claims import BUILTIN, applicable
from trainables import defaults
from trainables.locations import Location, is_uri

from .cluster_cmd import RAY_JOB_MARK
from .errors import UsageError
from .plan import RunOptions, SweepPlan, estimate_gpu_hours, plan_sweep
from .records import count_line, gather_path, sweep_name_of, sweep_status
from .storage import Storage

SWEEP_FILE = "sweep.toml"   # the sweep file (or the preset as one) that a sweep ran, in its folder


def _storage(args) -> Storage:
    return Storage(getattr(args, "storage", ""))


def _store_uri(given: str) -> str:
    uri = defaults.store(given)
    return uri if "://" in uri else str(Path(uri).resolve())


def experiments_of(source: str) -> tuple[str, list, str]:
    """(default sweep name, experiments, the sweep file's text) of a preset name or a .toml path."""
    if is_sweep_file(source):
        return load_sweep_file(source)
    experiments = get_preset(source)
    return source, experiments, sweep_file_text(source, experiments)


def presets(args) -> int:
    from search_spaces.epoch_times import seconds_per_epoch

    if args.show:  # a preset with the paper's claims it can speak to, written out as [[claim]] tables
        if is_sweep_file(args.show):
            print(experiments_of(args.show)[2], end="")
            return 0
        experiments = [replace(e, claims=tuple(applicable(BUILTIN, e.trial_rows()))) for e in get_preset(args.show)]
        print(sweep_file_text(args.show, experiments), end="")
        return 0
    print(f"{'preset':<20} {'trials':>6} {'epochs':>7} {'epochs in all':>13} {'est. H200 h':>11}  paper")
    for name in list_presets():
        experiments = get_preset(name)
        trials, total_epochs, hours = estimate_gpu_hours(experiments, seconds_per_epoch)
        epochs = "/".join(sorted({str(e.epochs) for e in experiments}, key=int))
        where = experiments[0].paper if len(experiments) == 1 else f"{len(experiments)} experiments"
        print(f"{name:<20} {trials:>6} {epochs:>7} {total_epochs:>13,} {hours:>11.1f}  {where}")
    print("\nest. H200 h: one trial per GPU at the paper's epoch budgets, from the H200 epoch-time anchors "
          "in search_spaces/epoch_times.py (override with SCS_EPOCH_TIMES).\n"
          "`scs-sweep presets --show NAME` prints a preset as a sweep file to start your own from.")
    return 0


def _data_dir(args, dataset: str) -> str:
    """The CIFAR-10 folder every trial reads, resolved once to an absolute path, or an object store's copy
    (a URI: each node copies it to its own disk); '' for synthetic."""
    if args.data and dataset == "synthetic":
        raise UsageError("--data and --dataset synthetic exclude each other")
    if dataset == "synthetic":
        return ""
    if is_uri(defaults.data_dir(args.data)):
        return defaults.data_dir(args.data)
    folder = Path(defaults.data_dir(args.data)).resolve()
    if args.data and not folder.is_dir():
        raise UsageError(f"--data {args.data} is not a folder; point it at the folder that holds "
                         f"cifar-10-batches-py (or -bin)")
    return str(folder)


def _options(args) -> RunOptions:
    # the dataset the plan will use, given --data as asked (the folder itself is resolved below)
    dataset = RunOptions(dataset=args.dataset, data_dir=args.data, smoke_test=args.smoke_test).resolved_dataset
    return RunOptions(
        epochs=args.epochs, seeds=args.seeds, dataset=dataset, data_dir=_data_dir(args, dataset),
        train_images=args.train_images, test_images=args.test_images, quick=args.quick,
        smoke_test=args.smoke_test, prune=not args.no_prune, num_samples=args.num_samples,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
        checkpoint_every=args.checkpoint_every, evaluate=not args.no_evaluate, pgd_images=args.pgd_images,
        compile=args.compile)


def report_failures(name: str, failed: list[dict]) -> int:
    if not failed:
        return 0
    for row in failed:
        variant = "/".join(str(row.get(k)) for k in ("arch", "layer", "activation", "pooling", "normalization"))
        print(f"scs-sweep: trial {row['trial_id']} of {name} ({row.get('group')}, {variant}, seed "
              f"{row.get('seed')}) failed at epoch {row.get('epochs_done', 0) + 1}: {row.get('error') or '?'}")
    print(f"scs-sweep: {len(failed)} trial(s) of {name} failed; `scs-sweep status {name}` lists every trial")
    return 1


def _check_local_gpu(gpus: float) -> None:
    """GPUs asked of an embedded Ray on a machine without one would be ignored: refuse before Ray starts."""
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--gpus-per-trial {gpus:g}, but this machine has no GPU that torch can use; drop it "
                         f"to train on the CPU, or give --address of a cluster with GPUs")


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def check_locations(storage: Storage, store: str) -> None:
    """Where runs and rows go must take a write, checked in seconds before Ray starts (one line each)."""
    if storage.remote:
        storage.check_writable()
    if is_uri(store):
        Location(store).check_writable("--store")


def plan_for(args, seeds_from_design: int = 0):
    """(sweep plan, its sweep file's text, the options): every trial validated, before Ray starts. With
    seeds_from_design (settle), each grid trial gets that many seeds and pruning is off."""
    default_name, experiments, text = experiments_of(args.preset)
    storage = _storage(args)
    name = args.name or default_name
    from results.store import check_name

    check_name("sweep name", name)  # it names the store's partition and the sweep's folder
    options = _options(args)
    if seeds_from_design:
        options.seeds, options.prune = seeds_from_design, False
    store = _store_uri(args.store)
    # every trial validated before Ray starts: a bad value is one line, nothing launched
    sweep = plan_sweep(name, args.preset, experiments, options, store=store, storage=storage.uri)
    check_locations(storage, store)
    if options.gpus_per_trial and not args.address and not os.environ.get(RAY_JOB_MARK):  # embedded
        _check_local_gpu(options.gpus_per_trial)
    return sweep, experiments, text, options


def start_sweep(args, sweep: SweepPlan, text: str, options: RunOptions):
    """Read the data once, connect to Ray, decide the GPUs and write the sweep's files: the tuner module,
    ready to execute the sweep."""
    if options.dataset == "cifar10":
        from trainables.data import load_cifar10  # read (or download) once, before any trial starts

        if is_uri(options.data_dir):  # the bucket's copy, put there once; the head's own copy checks it
            from trainables.node_data import has_data, node_copy, put_data

            if not has_data(options.data_dir):
                print(put_data(options.data_dir), flush=True)
            load_cifar10(node_copy(options.data_dir))
        else:
            load_cifar10(options.data_dir)
    from . import tuner
    from .gpus import assign_gpus

    on_cluster = tuner.connect(args.address)
    supply = tuner.gpu_supply(on_cluster)  # the GPUs each trial asks for: decided once, from the cluster
    requests = assign_gpus(sweep, options.gpus_per_trial, options.smoke_test, supply)
    if options.gpus_per_trial and not supply.any:
        print(f"note: the cluster has no GPU now; trials asking for --gpus-per-trial "
              f"{options.gpus_per_trial:g} wait until a node with GPUs joins (an autoscaling cluster starts "
              f"one); Ctrl-C and drop --gpus-per-trial to train on CPUs")
    Storage(sweep.storage).sweep(sweep.name).write_text(SWEEP_FILE, text)
    from results.store import get_store

    get_store(sweep.store).write_sweep(sweep.name, text)
    for line in requests:
        print(f"sweep {sweep.name}: {line}")
    return tuner


def connected_tuner(address: str):
    """The tuner module, connected to Ray (embedded, or the cluster at address): to resume a sweep."""
    from . import tuner

    tuner.connect(address)
    return tuner


def run(args) -> int:
    sweep, _, text, options = plan_for(args)
    if Storage(sweep.storage).sweep(sweep.name).exists("sweep.json"):
        raise UsageError(f"a sweep named {sweep.name!r} exists in {sweep.storage}; continue it with "
                         f"`scs-sweep resume {sweep.name}` or pick another --name")
    tuner = start_sweep(args, sweep, text, options)
    seeds = sorted({t["config"]["seed"] for part in sweep.parts for t in part.trials})
    print(f"sweep {sweep.name}: {sweep.n_trials} trials in {len(sweep.parts)} part(s), seeds {_ranges(seeds)}, "
          f"budget {sweep.budget}; runs in {Storage(sweep.storage).sweep(sweep.name)}, rows in {sweep.store}")
    if sweep.dropped:
        print(f"note: {sweep.dropped} planned trial(s) repeated another's resolved config and seed; each runs once")
    searches = [p.part for p in sweep.parts if p.search]
    if searches and (options.seeds or 1) > 1:
        print(f"note: --seeds repeats grid trials; the search part(s) {', '.join(searches)} draw their "
              f"trials from the first seed")
    start = time.time()
    failed = tuner.execute(sweep)
    print(f"sweep {sweep.name} finished in {time.time() - start:.1f} s; `scs-sweep status {sweep.name}` for details")
    return report_failures(sweep.name, failed)


def resume(args) -> int:
    storage = _storage(args)
    if storage.remote:
        storage.check_writable()
    folder = storage.sweep(args.name)
    if not folder.exists("sweep.json"):
        raise UsageError(f"no sweep named {args.name!r} in {storage}; known: {', '.join(storage.sweeps()) or 'none'}")
    sweep = folder.load_plan()
    if is_uri(sweep.store):  # where its rows go must still take a write
        Location(sweep.store).check_writable("--store")
    if args.store and _store_uri(args.store) != sweep.store:
        raise UsageError(f"sweep {args.name} writes its rows to {sweep.store}; resume it without --store "
                         f"(rows of one sweep stay in one store), or copy that store where you want it")
    if folder.exists("settle.json"):  # a settle: the same loop, from the looks it took
        from .settle import continue_settle

        return continue_settle(args, sweep)
    tuner = connected_tuner(args.address)
    start = time.time()
    failed = tuner.execute(sweep, resume=True)
    print(f"sweep {args.name} resumed and finished in {time.time() - start:.1f} s")
    return report_failures(args.name, failed)


def _print_jobs(args) -> None:
    """With --address: the sweep's Ray Jobs, as the cluster's Job server has them."""
    from .cluster_cmd import sweep_jobs

    jobs = sweep_jobs(args.address, args.name)
    for job in jobs:
        print(f"job {job.get('submission_id') or job.get('job_id')}: {job.get('status')}  "
              f"{job.get('entrypoint')}")
    if not jobs:
        print(f"no Ray Job of {args.name or 'scs-sweep'} on the cluster")


def status(args) -> int:
    storage = _storage(args)
    if args.address:
        _print_jobs(args)
    if args.name and not storage.sweep(args.name).exists("sweep.json"):
        if args.address:  # this machine does not see the cluster's storage: the Jobs are what there is
            print(f"{args.name}: its trials are not in {storage} here; on the head: `ray exec CONFIG "
                  f"'scs-sweep status {args.name}'`")
            return 0
        raise UsageError(f"no sweep named {args.name!r} in {storage}")
    names = [args.name] if args.name else storage.sweeps()
    if not names:
        print(f"no sweeps in {storage}")
        return 0
    for name in names:
        folder = storage.sweep(name)
        try:
            plan = folder.load_plan()
        except UsageError as exc:
            if args.name:
                raise
            print(f"{name}: {exc}")
            continue
        rows, problems = sweep_status(folder.view(), plan)
        for line in problems:
            print(f"{name}: warning: {line}")
        print(f"{name}: {len(rows)} trials: {count_line(r['state'] for r in rows)}")
        if folder.exists("settle.json"):  # the settle's design and where each claim stands
            import json

            from .settle import settle_lines

            record = json.loads(folder.read_text("settle.json"))
            print(f"{name}: a settle ({record['options']['spending']} spending, alpha {record['options']['alpha']:g}, "
                  f"first {record['options']['first']} seeds, at most {record['options']['max_seeds']}); "
                  f"{record['looks_done']} look(s) taken" + (f"; {record['stopped']}" if record.get("stopped") else ""))
            for line in settle_lines(record):
                print(f"  {line}")
        if args.name:
            for r in rows:
                acc = f"{r['test_acc']:.4f}" if r["test_acc"] is not None else "-"
                print(f"  {r['part']:<24} {r['trial_id'] or '-':<14} {r['state']:<8} "
                      f"epoch {r['epoch']}/{r['epochs']}  test_acc {acc}  {r['label']}")
    return 0


def put_data(args) -> int:
    """`scs-sweep put-data`: CIFAR-10 into an object store once, for nodes without a shared disk."""
    from trainables.node_data import put_data as put

    uri = defaults.data_dir(args.data)
    if not is_uri(uri):
        raise UsageError(f"--data {uri} is a folder; put-data copies CIFAR-10 into an object store: give "
                         f"--data s3://BUCKET/PREFIX (or set $SCS_DATA to one)")
    Location(uri).check_writable("--data")
    print(put(uri, args.source, args.force))
    return 0


def gather(args) -> int:
    """Rows from a sweep's (or a Tune experiment's) folder, on this disk or in an object store (mirrored:
    only the small files are read), then the experiment's rows compacted."""
    from results.store import get_store

    from .storage import local_view

    with local_view(args.experiment_dir, "scs-gather-") as (path, _, sweep):
        if not path.is_dir():
            raise UsageError(f"{args.experiment_dir} is not a sweep or Tune experiment directory")
        if is_uri(args.experiment_dir) and not any(path.iterdir()):  # an object store has no empty folders
            raise UsageError(f"{args.experiment_dir} holds nothing; give a sweep or Tune experiment folder")
        name = args.experiment or sweep or sweep_name_of(path.resolve()) or path.name
        store = get_store(_store_uri(args.store))
        n = gather_path(path, name, store, warn=lambda line: print(f"warning: {line}"))
    if n:
        store.compact(name)
    print(f"gathered {n} trials of {name} into {store.uri}")
    return 0


def query(args) -> int:
    from results.query import format_table, run_query
    from results.store import get_store

    print(format_table(run_query(get_store(_store_uri(args.store)), args.sql), args.format))
    return 0


def tables(args) -> int:
    from results.store import get_store
    from results.tables import render_all

    store = get_store(_store_uri(args.store))
    print(render_all(store, args.experiment, args.format, args.compare_paper, args.include_partial))
    return 0


def figures(args) -> int:
    from results.figures import write_figures
    from results.store import get_store

    store = get_store(_store_uri(args.store))
    store.require()
    paths = write_figures(store, args.out, args.experiment)
    print(f"wrote {len(paths)} figures to {args.out}")
    return 0


def report(args) -> int:
    from results.report import write_report
    from results.store import get_store

    store = get_store(_store_uri(args.store))
    path = write_report(store, args.out, args.experiment)
    print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


def list_variants() -> list[dict]:
    """Every arch x layer x activation x pooling x normalization with its parameter count."""
    import itertools

    import torch

    from trainables.config import ACTIVATIONS, LAYERS, NORMALIZATIONS, POOLINGS, TrialConfig
    from trainables.models import ARCH_SPECS, build_model, count_params

    rows = []
    for arch in ARCH_SPECS:
        for layer, act, pool, norm in itertools.product(LAYERS, ACTIVATIONS, POOLINGS, NORMALIZATIONS):
            cfg = TrialConfig(arch=arch, layer=layer, activation=act, pooling=pool, normalization=norm)
            with torch.device("meta"):  # shapes only: no memory, no init
                params = count_params(build_model(cfg, init=False))
            rows.append({"arch": arch, "layer": layer, "activation": act, "pooling": pool,
                         "normalization": norm, "params": params})
    return rows


def models(args) -> int:
    import json

    rows = list_variants()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'arch':<11} {'layer':<5} {'activation':<10} {'pooling':<7} {'normalization':<13} {'params':>11}")
    for r in rows:
        print(f"{r['arch']:<11} {r['layer']:<5} {r['activation']:<10} {r['pooling']:<7} "
              f"{r['normalization']:<13} {r['params']:>11,}")
    return 0


def bench(args) -> int:
    """`scs-sweep bench`: the training core's own benchmark (trainables/bench.py; needs only torch)."""
    from trainables.bench import run as run_bench

    return run_bench(args)

