"""The commands that run a sweep: `run` (plan, start, execute) and `resume` (continue one where it stopped, a
settle included). What starting a sweep takes is in startup.py, shared with `settle` and the SLURM job."""
from __future__ import annotations

import time
from dataclasses import dataclass

from common.locations import Location
from common.uris import is_uri

from . import stopping
from .errors import UsageError
from .settle import continue_settle
from .startup import SETTLE_FILE, SweepRequest, connect, plan_for, report_failures, start_sweep, store_uri, track
from .storage import Storage

__all__ = ["ResumeRequest", "run", "resume"]


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


def run(request: SweepRequest) -> int:
    """`scs-sweep run`: plan every trial, then the sweep on embedded Ray or a cluster."""
    sweep, _, text, options = plan_for(request)
    if Storage(sweep.storage).sweep(sweep.name).exists("sweep.json"):
        raise UsageError(f"a sweep named {sweep.name!r} exists in {sweep.storage}; continue it with "
                         f"`scs-sweep resume {sweep.name}` or pick another --name")
    from .tuner import execute  # ray

    start_sweep(sweep, text, options, request.address)
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
    failed = execute(sweep)
    _say_how_it_ended(sweep.name, time.time() - start)
    return stopping.EXIT_INTERRUPTED if stopping.by_hand() else report_failures(sweep.name, failed)


@dataclass(frozen=True)
class ResumeRequest:
    """A sweep to continue, typed at the CLI's edge: its name, where its folder is, the cluster."""
    name: str
    storage: str = ""
    store: str = ""
    address: str = ""
    track: tuple = ()               # the trackers to log to from now on (default: those the sweep started with)


def _say_how_it_ended(name: str, seconds: float, resumed: bool = False) -> None:
    if stopping.by_hand():
        print(f"sweep {name} interrupted after {seconds:.1f} s, its state saved; `scs-sweep resume {name}` "
              f"continues it, each unfinished trial from its last checkpoint")
    elif stopping.requested():
        print(f"sweep {name} stopped after {seconds:.1f} s, its state and the trials' checkpoints saved; "
              f"`scs-sweep resume {name}` continues it")
    else:
        print(f"sweep {name} {'resumed and ' if resumed else ''}finished in {seconds:.1f} s; `scs-sweep status "
              f"{name}` for details")


def resume(args: ResumeRequest) -> int:
    storage = Storage(args.storage)
    if storage.remote:
        storage.check_writable()
    folder = storage.sweep(args.name)
    if not folder.exists("sweep.json"):
        raise UsageError(f"no sweep named {args.name!r} in {storage}; known: {', '.join(storage.sweeps()) or 'none'}")
    sweep = folder.load_plan()
    if is_uri(sweep.store):  # where its rows go must still take a write
        Location(sweep.store).check_writable("--store")
    if args.store and store_uri(args.store) != sweep.store:
        raise UsageError(f"sweep {args.name} writes its rows to {sweep.store}; resume it without --store "
                         f"(rows of one sweep stay in one store), or copy that store where you want it")
    if folder.exists(SETTLE_FILE):  # a settle: the same loop, from the looks it took
        return continue_settle(sweep, args.address, args.track)
    from .tuner import execute  # ray

    connect(args.address)
    track(args.track or sweep.track)
    start = time.time()
    failed = execute(sweep, resume=True)
    _say_how_it_ended(args.name, time.time() - start, resumed=True)
    return stopping.EXIT_INTERRUPTED if stopping.by_hand() else report_failures(args.name, failed)
