"""The `scs-sweep` console script: parses arguments and calls each command's function.

Every subcommand's handler is a function of commands.py, sweep_cmd.py, settle.py, slurm.py, cluster_cmd.py or
evaluate_cmd.py. Parsing
imports neither torch nor ray, nor do the modules those functions live in: each command imports them when it
runs, so the read commands (presets, status, query, tables, figures, report) start in well under a second.
The sweep commands get typed options built here, at the edge (`sweep_request`, `settle_options`,
`evaluate_request`): no argparse object travels further. Every failure the user can fix is a ScsSweepError,
printed as one line with exit code 2; a sweep with failed trials exits with 1.
"""
from __future__ import annotations

import argparse
import os
import sys

from common import defaults
from common.errors import ScsSweepError, first_line
from common.eval_settings import EvalSettings
from common.locations import explain_error
from common.vocabulary import COMPILE_MODES, DATASETS
from results.sequential import FUTILITY, SPENDING

from . import cluster_cmd, commands, evaluate_cmd, settle, slurm, slurm_job, sweep_cmd
from .budget import QUICK, SMOKE
from .errors import UsageError
from .evaluate_cmd import EvaluateRequest, eval_settings
from .plan import RunOptions
from .settle import SettleOptions
from .startup import SweepRequest
from .trackers import TRACK_ENV, parse_track


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (naming the command and where to look) and exit code 2,
    like every other error of scs-sweep, instead of the usage block followed by the error."""

    commands: dict = {}   # the top-level parser's subcommand parsers, by name

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:  # name the subcommand they were given to, not the top-level program
            self.commands.get(getattr(parsed, "command", None), self).error(
                f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _store(parser) -> None:
    parser.add_argument("--store", default="", help="results store: a folder or a pyarrow URI "
                        "(default $SCS_STORE or ./scs_store)")


def _storage(parser) -> None:
    parser.add_argument("--storage", default="", help="folder of Tune's sweep folders, or an object store URI "
                        "(s3://BUCKET/PREFIX[?endpoint_override=...]) (default $SCS_RUNS or ./scs_runs)")


def _run_options(r, for_settle: bool = False, preset_optional: bool = False) -> None:
    """The options of `run`, which `settle` shares but for the seeds and pruning (its design sets them)."""
    r.add_argument("preset", metavar="PRESET|SWEEP.toml", **({"nargs": "?", "default": ""} if preset_optional else {}))
    r.add_argument("--name", default="", help="sweep name (default: the preset, or the file's name)")
    r.add_argument("--data", default="", help="folder holding cifar-10-batches-py (or -bin), or an object "
                   "store's copy (s3://...; see put-data) (default $SCS_DATA or ./data)")
    r.add_argument("--dataset", default="", choices=["", *DATASETS])
    _store(r)
    _storage(r)
    r.add_argument("--epochs", type=int, default=0, help="every trial's epochs (default: the preset's)")
    if not for_settle:
        r.add_argument("--seeds", type=int, default=None, help="repeat every variant over N seeds "
                       "(default 1, 3 with --quick)")
    r.add_argument("--train-images", type=int, default=None, metavar="N",
                   help="train on a fixed seeded subset of N images (default: all 50,000)")
    r.add_argument("--test-images", type=int, default=None, metavar="N",
                   help="test on a fixed seeded subset of N images (default: all 10,000)")
    r.add_argument("--quick", action="store_true", help=f"a reduced budget sized for a 2-core CPU: "
                   f"{QUICK.describe()}")
    r.add_argument("--address", default="", help="Ray cluster: auto or HOST:PORT (default: embedded)")
    r.add_argument("--gpus-per-trial", type=float, default=None)
    r.add_argument("--max-concurrent", type=int, default=0)
    r.add_argument("--checkpoint-every", type=int, default=defaults.CHECKPOINT_EVERY,
                   help="epochs between checkpoints")
    if not for_settle:
        r.add_argument("--num-samples", type=int, default=0, help="trials of an Optuna search ([search] only)")
        r.add_argument("--no-prune", action="store_true", help="no ASHA: every trial runs every epoch")
    r.add_argument("--smoke-test", action="store_true", help=f"on the CPU: {SMOKE.describe()}")
    r.add_argument("--no-evaluate", action="store_true", help="skip the end-of-trial PGD and saliency")
    r.add_argument("--pgd-images", type=int, default=0,
                   help=f"test images attacked per trial (default {EvalSettings.pgd_images:,})")
    _track_option(r)
    r.add_argument("--compile", default="auto", choices=COMPILE_MODES,
                   help="auto: the whole model compiled + CUDA graphs on GPUs; on CPUs the SCS and pooling kernels "
                        "for trials of 200 steps or more; on: compile the whole model on CPUs too; off: nothing")
    if for_settle:
        r.set_defaults(seeds=None, num_samples=0, no_prune=True)


def sweep_request(args) -> SweepRequest:
    """The sweep `run` or `settle` was asked for, typed: the rest of the program never sees argparse."""
    options = RunOptions(
        epochs=args.epochs, seeds=args.seeds, dataset=args.dataset, data_dir=args.data,
        train_images=args.train_images, test_images=args.test_images, quick=args.quick,
        smoke_test=args.smoke_test, prune=not args.no_prune, num_samples=args.num_samples,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
        checkpoint_every=args.checkpoint_every, evaluate=not args.no_evaluate, pgd_images=args.pgd_images,
        compile=args.compile, track=parse_track(args.track))
    return SweepRequest(source=args.preset, name=args.name, store=args.store, storage=args.storage,
                        address=args.address, options=options)


def settle_options(args) -> SettleOptions:
    return SettleOptions(max_seeds=args.max_seeds, first=args.first, step=args.step, spending=args.spending,
                         alpha=args.alpha, futility=None if args.no_futility else args.futility,
                         time_limit=getattr(args, "time_limit", ""), plan=getattr(args, "plan", False),
                         spread=getattr(args, "spread", None))


def evaluate_request(args) -> EvaluateRequest:
    return EvaluateRequest(path=args.path, settings=eval_settings(args.steps, args.pgd_images,
                                                                 args.saliency_per_class, args.eps),
                           store=args.store, experiment=args.experiment, trial_id=args.trial_id, data=args.data,
                           device=args.device)


def _track_option(p) -> None:
    p.add_argument("--track", default=os.environ.get(TRACK_ENV, ""), metavar="mlflow,wandb",
                   help="log the sweep to experiment trackers: MLflow (where MLFLOW_TRACKING_URI says) and/or W&B "
                        "(WANDB_PROJECT, WANDB_MODE); default $SCS_TRACK")


def _settle_design(p, required: bool) -> None:
    """The options of a settle's design, which `slurm` takes too (with --max-seeds its job settles)."""
    p.add_argument("--max-seeds", type=int, required=required, default=None,
                   help="the most seeds any variant gets" + ("" if required else "; given, the job settles the sweep"))
    p.add_argument("--first", type=int, default=3, help="seeds of the first look (default 3)")
    p.add_argument("--step", type=int, default=1, help="seeds added between looks (default 1)")
    p.add_argument("--spending", default="pocock", choices=SPENDING, help="alpha spending: pocock decides "
                   "clear effects early (default); obrien-fleming keeps the early looks strict")
    p.add_argument("--futility", type=float, default=FUTILITY, metavar="BOUND", help="stop a claim whose chance of "
                   f"being decided by --max-seeds (conditional power, current trend) falls below BOUND (default "
                   f"{FUTILITY:g}); non-binding: the decisions' error rate is the design's either way")
    p.add_argument("--no-futility", action="store_true", help="never stop a claim before it is decided or the "
                   "maximum is reached")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided error rate of a table's claims together "
                   "(split over them with Bonferroni; default 0.05)")


def _slurm_parser(sub) -> None:
    sl = sub.add_parser("slurm", help="a sweep (or, with --max-seeds, a settle) as a SLURM job that survives its "
                        "time limit and preemption", description="Plan the sweep, check what SLURM has, write one "
                        "batch script beside the sweep's runs and submit it: Ray on every node of the allocation, the "
                        "driver on the first; before the time limit (or at preemption) the trials save, the job "
                        "requeues itself and resumes.")
    _run_options(sl, preset_optional=True)
    _settle_design(sl, required=False)
    sl.add_argument("--nodes", type=int, default=1, help="nodes of the allocation (one Ray node each)")
    sl.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (a GRES request; Ray gets these)")
    sl.add_argument("--cpus-per-node", type=int, default=0, help="CPUs per node (default: SLURM's for one task)")
    sl.add_argument("--time", default="", help="the job's time limit, as sbatch takes it (24:00:00, 2-00:00)")
    sl.add_argument("--partition", default="")
    sl.add_argument("--account", default="")
    sl.add_argument("--qos", default="")
    sl.add_argument("--setup", action="append", default=[], metavar="LINE",
                    help="a shell line run before Python starts (`module load cuda/12`); repeatable")
    sl.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                    help="any other sbatch option, as one argument (--sbatch=--mem=64G); repeatable")
    sl.add_argument("--signal-lead", type=int, default=300, metavar="SECONDS",
                    help="the time-limit warning this long before the limit: the trials save, the job requeues")
    sl.add_argument("--max-requeues", type=int, default=5, help="stop requeueing a sweep that never fits (default 5)")
    sl.add_argument("--no-gpu-check", action="store_true", help="start even where torch cannot use the GPUs SLURM "
                    "gave the job (the trials then fail at their own device check)")
    sl.add_argument("--resume", default="", metavar="NAME", help="submit a new job for a sweep that ran before")
    sl.add_argument("--dry-run", action="store_true", help="print the batch script; write and submit nothing")
    sl.set_defaults(handler=slurm.submit, typed=slurm_arguments)


def slurm_arguments(args) -> tuple:
    """(sweep request or None, settle options or None, SLURM options, --resume, --storage) for slurm.submit."""
    options = slurm.SlurmOptions(
        nodes=args.nodes, gpus_per_node=args.gpus_per_node, cpus_per_node=args.cpus_per_node, time=args.time,
        partition=args.partition, account=args.account, qos=args.qos, setup=tuple(args.setup),
        sbatch=tuple(args.sbatch), signal_lead_s=args.signal_lead, max_requeues=args.max_requeues,
        gpu_check=not args.no_gpu_check, dry_run=args.dry_run)
    if args.resume:
        return None, None, options, args.resume, args.storage
    if not args.preset:
        raise UsageError("give the preset or sweep file to run (or --resume NAME for a sweep that ran before)")
    if args.max_seeds is not None and args.seeds is not None:
        raise UsageError("--seeds and --max-seeds exclude each other: a settle chooses its seeds")
    return (sweep_request(args), settle_options(args) if args.max_seeds is not None else None, options, "",
            args.storage)


def build_parser(bench_options: bool = False) -> argparse.ArgumentParser:
    """The whole CLI; bench's options come from trainables.bench (which also runs without this CLI, with
    only torch), so they are added only when asked for: building them imports torch."""
    p = OneLineParser(prog="scs-sweep", description="Sharpened Cosine Similarity sweeps.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    p.commands = sub.choices

    m = sub.add_parser("models", help="every arch x variant with parameter counts")
    m.add_argument("--json", action="store_true")
    m.set_defaults(handler=commands.models)

    pr = sub.add_parser("presets", help="experiments, trial counts, epoch budgets, est. GPU-hours")
    pr.add_argument("--show", default="", metavar="PRESET", help="print a preset as a TOML sweep file")
    pr.set_defaults(handler=commands.presets)

    r = sub.add_parser("run", help="run a preset or a sweep file as a Ray Tune sweep")
    _run_options(r)
    r.set_defaults(handler=sweep_cmd.run, typed=lambda a: (sweep_request(a),))

    se = sub.add_parser("settle", help="add seeds only where a claim is open: a group-sequential design",
                        description="Train the first seeds of every variant, then look after each added seed "
                                    "(or --step seeds): each open claim gets a repeated confidence interval, and "
                                    "only the variants that open claims compare get the next seeds.")
    _run_options(se, for_settle=True)
    _settle_design(se, required=True)
    se.add_argument("--time-limit", default="", metavar="DURATION", help="stop adding seeds when the next look "
                    "would not fit (45m, 2h, 1h30m)")
    se.add_argument("--plan", action="store_true", help="print the design (critical values per look, worst-case "
                    "trials and time) and exit; nothing runs")
    se.add_argument("--spread", type=float, default=None, help="with --plan: a per-seed standard deviation of "
                    "the effects, to show the smallest effect the last look decides")
    se.set_defaults(handler=settle.settle, typed=lambda a: (sweep_request(a), settle_options(a)))

    _slurm_parser(sub)
    # inside a SLURM job (the batch script's command, and each node's Ray): not for typing by hand
    sj = sub.add_parser("slurm-job")
    sj.add_argument("storage")
    sj.add_argument("name")
    sj.set_defaults(handler=slurm_job.job, typed=lambda a: (a.storage, a.name))
    sn = sub.add_parser("slurm-node")
    sn.add_argument("job_id")
    sn.set_defaults(handler=slurm_job.node, typed=lambda a: (a.job_id,))

    re_ = sub.add_parser("resume", help="continue an interrupted sweep where it stopped")
    re_.add_argument("name")
    _store(re_)
    _storage(re_)
    re_.add_argument("--address", default="")
    _track_option(re_)
    re_.set_defaults(handler=sweep_cmd.resume, typed=lambda a: (sweep_cmd.ResumeRequest(
        name=a.name, storage=a.storage, store=a.store, address=a.address, track=parse_track(a.track)),))

    st = sub.add_parser("status", help="trials done / running / pending / pruned / failed")
    st.add_argument("name", nargs="?", default="")
    _storage(st)
    st.add_argument("--address", default="", help="also the sweep's Ray Jobs: the cluster's Job server "
                    "(http://HOST:8265, as `ray job` takes it; `ray dashboard CONFIG` tunnels it here)")
    st.set_defaults(handler=commands.status)

    pd = sub.add_parser("put-data", help="copy CIFAR-10 into an object store once, for nodes without a shared disk",
                        description="Copy CIFAR-10 (a local folder, else the official download) to --data "
                                    "s3://..., with an MD5SUMS that every node checks its own copy against.")
    pd.add_argument("--data", default="", help="where: s3://BUCKET/PREFIX[?...] (default $SCS_DATA)")
    pd.add_argument("--from", dest="source", default="", metavar="FOLDER",
                    help="a folder holding cifar-10-batches-bin (or -py) (default: download the official archive)")
    pd.add_argument("--force", action="store_true", help="replace the copy there (each node fetches it again)")
    pd.set_defaults(handler=commands.put_data)

    g = sub.add_parser("gather", help="(re)build store rows from a sweep or Tune experiment directory")
    g.add_argument("experiment_dir")
    _store(g)
    g.add_argument("--experiment", default="", help="experiment name in the store (default: the sweep's)")
    g.set_defaults(handler=commands.gather)

    ev = sub.add_parser("evaluate", help="PGD robustness and saliency of stored checkpoints")
    ev.add_argument("path", help="a trainer checkpoint (trainer.pt) or a sweep/experiment directory")
    _store(ev)
    ev.add_argument("--experiment", default="", help="store experiment name (default: from the path)")
    ev.add_argument("--trial-id", default="", help="store trial id of a single checkpoint")
    ev.add_argument("--data", default="", help="CIFAR-10 folder (default: the trial's own data setting)")
    ev.add_argument("--eps", default="", help=f"comma-separated eps list (default {EvalSettings().eps_text})")
    ev.add_argument("--steps", type=int, default=EvalSettings.steps)
    ev.add_argument("--pgd-images", type=int, default=EvalSettings.pgd_images)
    ev.add_argument("--saliency-per-class", type=int, default=EvalSettings.saliency_per_class)
    ev.add_argument("--device", default="")
    ev.set_defaults(handler=evaluate_cmd.run, typed=lambda a: (evaluate_request(a),))

    q = sub.add_parser("query", help="SQL over the store (tables: trials, epochs, layers, ...)")
    q.add_argument("sql")
    _store(q)
    q.add_argument("--format", default="table", choices=["table", "csv", "json"])
    q.set_defaults(handler=commands.query)

    t = sub.add_parser("tables", help="the paper's tables from the store, with intervals and verdicts")
    _store(t)
    t.add_argument("--experiment", default="", help="only this sweep's trials")
    t.add_argument("--format", default="md", choices=["md", "csv", "latex"])
    t.add_argument("--compare-paper", action="store_true", help="paper values, intervals, claims, effects")
    t.add_argument("--include-partial", action="store_true",
                   help="also average pruned, failed and unfinished trials (marked)")
    t.set_defaults(handler=commands.tables)

    f = sub.add_parser("figures", help="the paper's figures as PNG files")
    _store(f)
    f.add_argument("--experiment", default="", help="only this sweep's trials")
    f.add_argument("--out", default="figures")
    f.set_defaults(handler=commands.figures)

    rp = sub.add_parser("report", help="one self-contained HTML file: tables, verdicts, effects, figures")
    _store(rp)
    rp.add_argument("--experiment", default="", help="only this sweep's trials")
    rp.add_argument("--out", default="report", help="folder to write report.html into")
    rp.set_defaults(handler=commands.report)

    up = sub.add_parser("up", help="check a cluster file, this machine and its hosts, then `ray up`")
    up.add_argument("config", help="cluster-onprem.yaml or cluster.yaml (run from this checkout's root)")
    up.add_argument("-y", "--yes", action="store_true", help="no confirmation prompts (ray up -y)")
    up.set_defaults(handler=cluster_cmd.up)

    dn = sub.add_parser("down", help="`ray down`, and on your own machines `ray stop` on every worker host")
    dn.add_argument("config", help="the cluster file `up` used")
    dn.add_argument("-y", "--yes", action="store_true", help="no confirmation prompts (ray down -y)")
    dn.set_defaults(handler=cluster_cmd.down)

    sb = sub.add_parser("submit", help="run an scs-sweep command on a cluster as a Ray Job (this checkout, its commit)",
                        description="`ray job submit` of `scs-sweep ARGS` with this checkout as the working dir, the "
                                    "sweep's --name as the submission id, and the commit recorded in every row.")
    sb.add_argument("--address", default="http://127.0.0.1:8265",
                    help="the cluster's Job server (default: the tunnel `ray dashboard CONFIG` opens)")
    sb.add_argument("--submission-id", default="", help="the Job's id (default: the sweep's --name)")
    sb.add_argument("--no-wait", action="store_true", help="return once submitted (follow with `ray job logs -f`)")
    sb.add_argument("sweep", nargs=argparse.REMAINDER, metavar="-- ARGS",
                    help="the scs-sweep command to run, after --: run PRESET ..., resume NAME, settle ...")
    sb.set_defaults(handler=cluster_cmd.submit)

    b = sub.add_parser("bench", help="training-core speed: epoch times, SCS vs conv (no Ray needed)",
                       description="Training-core speed: seconds per epoch of any arch x variant, and one SCS "
                                   "layer vs one Conv2d.")
    b.set_defaults(handler=commands.bench)
    if bench_options:
        from trainables import bench

        bench.add_arguments(b)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(bench_options=argv[:1] == ["bench"]).parse_args(argv)
    except SystemExit as exc:  # a bad argument (one line, printed) or --help
        return int(exc.code or 0)
    try:
        return args.handler(*getattr(args, "typed", lambda a: (a,))(args))
    except ScsSweepError as exc:
        print(f"scs-sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `scs-sweep models | head`
        return 0
    except OSError as exc:  # a folder, file or object store the command was pointed at: one line
        where = f" ({exc.filename})" if exc.filename else ""
        text = explain_error(exc) if "AWS Error" in str(exc) else (exc.strerror or str(exc))
        print(f"scs-sweep {args.command}: error: {first_line(text) if text else repr(exc)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scs-sweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
