"""The commands of `scs-sweep` that read or describe: models, presets, status, put-data, gather, query, tables,
figures, report, bench (sweep_cmd.py has run and resume, settle.py settle, slurm.py slurm, cluster_cmd.py up,
down and submit, evaluate_cmd.py evaluate).

None imports ray, and only models, bench and put-data torch; each imports what is heavy when it runs (the
imports inside functions below are those).
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import replace

from common import defaults
from common.config import ACTIVATIONS, LAYERS, NORMALIZATIONS, POOLINGS, TrialConfig
from common.locations import Location
from common.uris import is_uri
from results.claims import NOT_JUDGED
from results.paper import paper_table_of
from results.query import format_table, run_query
from results.settled import SettleRecord
from results.store import StoreError, get_store
from results.summary import summarize
from results.table_data import sweep_claims
from results.tables import TRIAL_COLUMNS, read_trials, render_all
from search_spaces import get_preset, is_sweep_file, list_presets, sweep_file_text
from search_spaces.claims import claims_for_rows
from search_spaces.epoch_times import seconds_per_epoch
from trainables.node_data import put_data as put

from .cluster_cmd import sweep_jobs
from .errors import UsageError
from .plan import estimate_gpu_hours
from .records import count_line, gather_path, sweep_name_of, sweep_status
from .slurm import job_states
from .startup import (
    SETTLE_FILE,
    experiments_of,
    store_uri,
)
from .storage import Storage, local_view


def presets(args) -> int:
    if args.show:  # a preset with the paper's claims it can speak to, written out as [[claim]] tables
        if is_sweep_file(args.show):
            print(experiments_of(args.show)[2], end="")
            return 0
        experiments = [replace(e, claims=tuple(claims_for_rows(e.trial_rows()))) for e in get_preset(args.show)]
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


def _print_jobs(args) -> None:
    """With --address: the sweep's Ray Jobs, as the cluster's Job server has them."""
    jobs = sweep_jobs(args.address, args.name)
    for job in jobs:
        print(f"job {job.get('submission_id') or job.get('job_id')}: {job.get('status')}  "
              f"{job.get('entrypoint')}")
    if not jobs:
        print(f"no Ray Job of {args.name or 'scs-sweep'} on the cluster")


def status(args) -> int:
    storage = Storage(args.storage)
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
        for line in job_states(folder):  # a sweep SLURM runs: its jobs and their state now
            print(f"{name}: {line}")
        if folder.exists(SETTLE_FILE):  # the settle's design, and each claim's verdict as tables and report say it
            for line in settle_status(folder, plan):
                print(line)
        if args.name:
            for r in rows:
                acc = f"{r['test_acc']:.4f}" if r["test_acc"] is not None else "-"
                print(f"  {r['part']:<24} {r['trial_id'] or '-':<14} {r['state']:<8} "
                      f"epoch {r['epoch']}/{r['epochs']}  test_acc {acc}  {r['label']}")
    return 0


def put_data(args) -> int:
    """`scs-sweep put-data`: CIFAR-10 into an object store once, for nodes without a shared disk."""
    uri = defaults.data_dir(args.data)
    if not is_uri(uri):
        raise UsageError(f"--data {uri} is a folder; put-data copies CIFAR-10 into an object store: give "
                         f"--data s3://BUCKET/PREFIX (or set $SCS_DATA to one)")
    Location(uri).check_writable("--data")
    print(put(uri, args.source, args.force))
    return 0


def settle_status(folder, plan) -> list[str]:
    """A settle's lines for `status`: its design, then each claim's verdict and interval as `tables` and
    `report` give them (summary.py, from the store's rows and the settle record), and where it stands."""
    record = SettleRecord.from_dict(json.loads(folder.read_text(SETTLE_FILE)))
    o = record.options
    lines = [f"{plan.name}: a settle ({o['spending']} spending, alpha {o['alpha']:g}, first {o['first']} seeds, "
             f"at most {o['max_seeds']}); {record.looks_done} look(s) taken"
             + (f"; {record.stopped}" if record.stopped else "")]
    store = get_store(plan.store)
    try:
        trials = read_trials(store, plan.name, TRIAL_COLUMNS)
    except StoreError:
        return lines + [f"  {line}" for line in record.lines()]  # no rows yet: where each claim stands
    specs = sweep_claims(store, plan.name)
    for group in record.claims:
        part = trials[trials["group"] == group]
        if part.empty:
            continue
        summary = summarize(group, paper_table_of(group, part), part, None, None, "", specs.get(group, ()), record)
        looks = len(record.designs[group].looks)
        for v in summary.verdicts:
            r = record.claim(group, v.claim.name)
            if r is None:
                continue
            why = f" ({v.budget_reason})" if v.budget_verdict == NOT_JUDGED else ""
            settled = f"{r.decided}, " if r.decided else ""
            lines.append(f"  {group}: {v.claim.name}: at this budget {v.budget_verdict.upper()}{why}, {v.effect} = "
                         f"{v.interval_text}; the settle: {settled}{r.when(looks, record.stopped)}")
    return lines


def gather(args) -> int:
    """Rows from a sweep's (or a Tune experiment's) folder, on this disk or in an object store (mirrored:
    only the small files are read), then the experiment's rows compacted."""
    with local_view(args.experiment_dir, "scs-gather-") as (path, _, sweep):
        if not path.is_dir():
            raise UsageError(f"{args.experiment_dir} is not a sweep or Tune experiment directory")
        if is_uri(args.experiment_dir) and not any(path.iterdir()):  # an object store has no empty folders
            raise UsageError(f"{args.experiment_dir} holds nothing; give a sweep or Tune experiment folder")
        name = args.experiment or sweep or sweep_name_of(path.resolve()) or path.name
        store = get_store(store_uri(args.store))
        n = gather_path(path, name, store, warn=lambda line: print(f"warning: {line}"))
    if n:
        store.compact(name)
    print(f"gathered {n} trials of {name} into {store.uri}")
    return 0


def query(args) -> int:
    print(format_table(run_query(get_store(store_uri(args.store)), args.sql), args.format))
    return 0


def tables(args) -> int:
    store = get_store(store_uri(args.store))
    print(render_all(store, args.experiment, args.format, args.compare_paper, args.include_partial))
    return 0


def figures(args) -> int:
    from results.figures import write_figures  # matplotlib
    store = get_store(store_uri(args.store))
    store.require()
    paths = write_figures(store, args.out, args.experiment)
    print(f"wrote {len(paths)} figures to {args.out}")
    return 0


def report(args) -> int:
    from results.report import write_report  # matplotlib
    store = get_store(store_uri(args.store))
    path = write_report(store, args.out, args.experiment)
    print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


def list_variants() -> list[dict]:
    """Every arch x layer x activation x pooling x normalization with its parameter count."""
    import torch

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

