"""`scs-sweep settle`: add seeds only where a claim is still open, with error rates that hold when a claim stops.

The design is fixed before the first trial and stored with the sweep (settle.json in its folder, and the
store's `_settle/NAME.json` for the report): the seeds of the first look, the seeds added between looks,
the maximum seeds, the alpha-spending function, and alpha, split over each table's accuracy claims with
Bonferroni; the critical values follow from them (results/sequential.py). Every trial of the maximum design
is planned and validated first, with the seed numbers the plan gives `--seeds MAX` (so that no other
experiment's seed block can collide with seeds added later); a look then trains, for each table, the next
seeds of the variants that its open claims compare (a variant several open claims share trains once per
seed; decided claims cost nothing more), as a Tune part of its own through the same plan, Tuner and store as
`run`. After each look every open claim gets its repeated confidence interval, and is decided when the
interval lies wholly on one side of its threshold; at the maximum seeds it ends "undecided at N seeds". A
trial the store already has (the same resolved config and seed, done) is never trained again.

Killed, it continues where it stopped with `scs-sweep resume NAME`, or by running the same settle again:
the looks already taken are kept as they were. With `--time-limit`, each look's cost is estimated from the
epoch times measured so far (before the first look, from the CPU or H200 anchors of
search_spaces/epoch_times.py), and no look starts that would not fit.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import replace

from results.sequential import SPENDING, Design, repeated_interval, smallest_decided, spent
from search_spaces.claims import BUILTIN, ClaimSpec, applicable
from search_spaces.epoch_times import cpu_seconds_per_epoch, expected_epoch_cost

from .errors import UsageError
from .plan import PartPlan, SweepPlan

__all__ = ["settle", "continue_settle", "SETTLE_FILE", "parse_duration", "settle_lines"]

SETTLE_FILE = "settle.json"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'45m', '2h', '1h30m', '90s' or a number of seconds -> seconds; UsageError otherwise."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise UsageError(f"--time-limit {text!r} is not a duration; give e.g. 45m, 2h, 1h30m or 90s")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _variant(config: dict) -> str:
    """A trial's config without its seed: what its seeds share."""
    return json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)


def _row(trial: dict) -> dict:
    return {**trial["config"], "group": trial["group"]}


def _tables(sweep: SweepPlan, experiments) -> dict:
    """group -> {part, claims (ClaimSpecs: the paper's and its experiment's own accuracy claims that apply),
    variants: {variant key -> [planned trials by seed index]}}."""
    own = {}
    for experiment in experiments:
        for trial in experiment.trials():
            own[trial["group"]] = experiment.claims
    tables = {}
    for part in sweep.parts:
        for trial in part.trials:
            table = tables.setdefault(trial["group"], {"part": part.part, "variants": {}})
            table["variants"].setdefault(_variant(trial["config"]), []).append(trial)
    for group, table in tables.items():
        for trials in table["variants"].values():
            trials.sort(key=lambda t: t["config"]["seed"])
        rows = [_row(trials[0]) for trials in table["variants"].values()]
        specs = applicable((*BUILTIN, *own.get(group, ())), rows)
        table["claims"] = [spec for spec in specs if not spec.time]  # times: `bench` and a node of their own
    return tables


def _check_own_claims(experiments, tables: dict) -> None:
    """A sweep file's own claim whose sides match no variant of its tables is one line, before anything."""
    for experiment in experiments:
        groups = {t["group"] for t in experiment.trials()}
        for spec in experiment.claims:
            if not any(spec.name in {c.name for c in tables[g]["claims"]} for g in groups if g in tables):
                if spec.time:
                    continue
                raise UsageError(f"claim {spec.name!r} of {experiment.name}: its sides (a = {spec.a}, b = {spec.b}) "
                                 f"match no variant of its table(s) {', '.join(sorted(groups))}, or `when` does not "
                                 f"hold for them; fix its filters")


def _needed(table: dict, open_names: set) -> list[str]:
    """The variants (keys) the open claims of a table compare: a variant shared by several trains once."""
    needed = []
    for key, trials in table["variants"].items():
        row = _row(trials[0])
        for spec in table["claims"]:
            if spec.name in open_names and (spec.side_rows([row], "a") or spec.side_rows([row], "b")):
                needed.append(key)
                break
    return needed


def _design(args, claims: int) -> Design:
    return Design(first=args.first, step=args.step, max_seeds=args.max_seeds, spending=args.spending,
                  alpha=args.alpha, claims=max(claims, 1)).with_critical_values()


def _check_args(args) -> None:
    if args.first < 2:
        raise UsageError(f"--first {args.first}: an interval needs at least 2 seeds; give --first 2 or more")
    if args.max_seeds < args.first:
        raise UsageError(f"--max-seeds {args.max_seeds} is below the first look's {args.first} seeds; give "
                         f"--max-seeds {args.first} or more")
    if args.step < 1:
        raise UsageError(f"--step must be >= 1, got {args.step}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.spending not in SPENDING:
        raise UsageError(f"--spending {args.spending!r}; choose one of: {', '.join(SPENDING)}")


def _trial_seconds(trial: dict, measured: dict, on_gpu: bool) -> float:
    """A trial's expected seconds: its variant's measured mean wall time, else epochs x an anchor epoch."""
    key = _variant(trial["config"])
    if key in measured:
        return measured[key]
    if measured:
        return sum(measured.values()) / len(measured)
    per_epoch = expected_epoch_cost(trial["config"], True) if on_gpu else cpu_seconds_per_epoch(trial["config"])
    return trial["config"]["epochs"] * per_epoch


def _look_trials(tables: dict, state: dict, index: int) -> list[dict]:
    """The planned trials of look `index` (0-based): each table's next seeds of the variants its open
    claims need (the first look: every variant of every table, claims or not)."""
    looks = Design.from_dict(next(iter(state["designs"].values()))).looks
    low = looks[index - 1] if index else 0
    high = looks[index]
    out = []
    for group, table in tables.items():
        open_names = {c for c, d in state["claims"][group].items() if not d.get("decided")}
        keys = list(table["variants"]) if index == 0 else _needed(table, open_names)
        for key in keys:
            out += table["variants"][key][low:high]
    return out


def _done_trials(store, name: str) -> list[dict]:
    """Every done trial of this sweep the store has (its config JSON, start and end), in one read."""
    try:
        trials = store.read_table("trials", name, columns=["status", "config_json", "started_at", "ended_at"])
    except Exception:  # noqa: BLE001 - no store yet: nothing done
        return []
    return [t for t in trials.to_pylist() if t["status"] == "done" and t["config_json"]]


def _measured_seconds(done: list[dict]) -> dict:
    """variant key -> mean seconds a done trial of it took (from start to end, evaluation included)."""
    out = {}
    for t in done:
        if t["started_at"] and t["ended_at"]:
            config = json.loads(t["config_json"])
            out.setdefault(_variant(config), []).append((t["ended_at"] - t["started_at"]).total_seconds())
    return {k: sum(v) / len(v) for k, v in out.items()}


def _judge(store, name: str, tables: dict, state: dict, index: int) -> list[str]:
    """After look `index`: each open claim's repeated interval on the seeds the look reached; lines saying
    what was decided."""
    from results.claims import Claim, claim_values

    trials = store.read_table("trials", name).to_pandas()
    trials = trials[trials["status"] == "done"]
    lines = []
    for group, table in tables.items():
        design = Design.from_dict(state["designs"][group])
        n = design.looks[index]
        seeds = {t["config"]["seed"] for trials_ in table["variants"].values() for t in trials_[:n]}
        mine = trials[(trials["group"] == group) & trials["seed"].isin(seeds)]
        for spec in table["claims"]:
            record = state["claims"][group][spec.name]
            if record.get("decided"):
                continue
            claim = Claim(spec)
            values = claim_values(claim, mine) if len(mine) else []
            interval = repeated_interval([v for _, v in values], design.critical[index])
            side = claim.side_of(interval) if interval.has_interval else ""
            record["path"].append({"look": index + 1, "seeds": interval.n, "estimate": interval.estimate,
                                   "low": interval.low, "high": interval.high, "c": design.critical[index]})
            if side:
                record.update(decided=side, look=index + 1, seeds=interval.n)
                lines.append(f"{group}: {spec.name}: {side.upper()} after {interval.n} seeds (look {index + 1} of "
                              f"{len(design.looks)}): repeated interval {interval.text()} against "
                              f"{claim.threshold_text}")
            elif index + 1 == len(design.looks):
                record.update(undecided=f"undecided at {n} seeds")
                lines.append(f"{group}: {spec.name}: undecided at {n} seeds: repeated interval {interval.text()}")
    return lines


def settle_lines(record: dict) -> list[str]:
    """What a settle decided, one line per claim: 'decided after 5 seeds (look 3 of 8)' and the rest."""
    out = []
    for group, claims in record.get("claims", {}).items():
        looks = len(Design.from_dict(record["designs"][group]).looks)
        for claim, r in claims.items():
            last = r["path"][-1] if r["path"] else None
            interval = (f" [{last['low']:+.4f}, {last['high']:+.4f}]" if last and last["low"] == last["low"] else "")
            if r.get("decided"):
                out.append(f"{group}: {claim}: {r['decided']} at this budget, decided after {r['seeds']} seeds "
                           f"(look {r['look']} of {looks}){interval}")
            elif r.get("undecided"):
                out.append(f"{group}: {claim}: {r['undecided']}{interval}")
            else:
                out.append(f"{group}: {claim}: open after {len(r['path'])} look(s)"
                           + (f" ({record['stopped']})" if record.get("stopped") else ""))
    return out


def _plan_text(tables: dict, sweep: SweepPlan, spread: float | None, on_gpu: bool) -> str:
    """`settle --plan`: the design per table, worst-case trials and time, the smallest decidable effect."""
    lines = []
    for group, table in tables.items():
        if not table["claims"]:
            lines.append(f"{group}: no accuracy claim applies; its variants train at the first look only")
            continue
        design = Design.from_dict(table["design"])
        lines.append(f"{group}: {len(table['claims'])} claim(s), alpha {design.alpha:g} two-sided, "
                     f"{design.alpha_per_claim:.4f} per claim (Bonferroni); {design.spending} spending; "
                     f"looks at {', '.join(map(str, design.looks))} seeds")
        lines.append("  look  seeds  alpha spent  critical value c_k (repeated interval: mean +/- c_k s/sqrt(n))")
        for k, (n, c) in enumerate(zip(design.looks, design.critical), 1):
            lines.append(f"  {k:>4}  {n:>5}  {spent(n / design.max_seeds, design.alpha_per_claim, design.spending):>11.4f}"
                         f"  {c:.3f}")
        trials = [t for trials_ in table["variants"].values() for t in trials_]
        seconds = sum(_trial_seconds(t, {}, on_gpu) for t in trials)
        lines.append(f"  worst case: {len(trials)} trials ({len(table['variants'])} variants x {design.max_seeds} "
                     f"seeds), {sum(t['config']['epochs'] for t in trials):,} trial-epochs, about "
                     f"{seconds / 3600:.1f} {'GPU' if on_gpu else 'CPU-thread'}-hours (anchor estimates)")
        for spec in table["claims"]:
            where = (f"{smallest_decided(design, spread):.4f} from its threshold ({spec.threshold:g}) with a "
                     f"per-seed spread of {spread:g}" if spread else
                     "give --spread (the per-seed standard deviation of the effect) to see the smallest effect "
                     "the last look decides")
            lines.append(f"  - {spec.name}: {where}")
    return "\n".join(lines)


def _folder(sweep: SweepPlan):
    from .storage import Storage

    return Storage(sweep.storage).sweep(sweep.name)


def _save(state: dict, sweep: SweepPlan, store) -> None:
    folder = _folder(sweep)
    folder.write_text(SETTLE_FILE, json.dumps(state, indent=1, default=str))  # whole, or not at all
    folder.save_plan(sweep)  # the look parts so far: what `status` and `resume` read
    store.write_settle(sweep.name, state)


def settle(args) -> int:
    """The `settle` command: plan every seed of the maximum design, fix the design, then look by look."""
    from .commands import plan_for

    _check_args(args)
    limit = parse_duration(args.time_limit) if args.time_limit else None
    from .commands import experiments_of

    experiments = experiments_of(args.preset)[1]
    for experiment in experiments:
        listed = [g["seed"] for g in experiment.grids if isinstance(g.get("seed"), list) and len(g["seed"]) > 1]
        if listed:
            raise UsageError(f"{experiment.name} lists its seeds ({listed[0]}); settle chooses the seeds: drop the "
                             f"seed axis")
        if experiment.search:
            raise UsageError(f"{experiment.name} is an Optuna search; settle adds seeds to grid trials: settle a "
                             f"grid experiment")
    sweep, experiments, text, options = plan_for(args, seeds_from_design=args.max_seeds)
    if any(part.depends_on for part in sweep.parts):
        raise UsageError(f"{args.preset} trains a later stage from an earlier one (init_from \"@GROUP\"); settle "
                         f"takes experiments whose trials start from scratch")
    tables = _tables(sweep, experiments)
    _check_own_claims(experiments, tables)
    if not any(t["claims"] for t in tables.values()):
        raise UsageError(f"{args.preset} has no accuracy claim to settle: add [[claim]] tables to its sweep file "
                         f"(`scs-sweep presets --show table1` shows the paper's as [[claim]]s)")
    for table in tables.values():
        table["design"] = _design(args, len(table["claims"])).to_dict()
    on_gpu = bool(options.gpus_per_trial)
    if args.plan:
        print(_plan_text(tables, sweep, args.spread, on_gpu))
        return 0
    first = _look_trials(tables, {"designs": {g: t["design"] for g, t in tables.items()},
                                  "claims": {g: {} for g in tables}}, 0)
    # trials at once: this machine's cores (one a trial), or trials per GPU on one GPU; the cluster's once Ray runs
    slots = max(1, int(1 / options.gpus_per_trial)) if on_gpu else _cpus()
    estimate = sum(_trial_seconds(t, {}, on_gpu) for t in first) / slots
    if limit is not None and estimate > limit:
        raise UsageError(f"--time-limit {args.time_limit}: the first look alone ({len(first)} trials) needs about "
                         f"{estimate / 60:.0f} min here (anchor estimates, {slots} at a time); give more time, a "
                         f"smaller --first, or a smaller budget (--quick, --epochs)")
    folder = _folder(sweep)
    if folder.exists("sweep.json") and not folder.exists(SETTLE_FILE):
        raise UsageError(f"a sweep named {sweep.name!r} exists in {sweep.storage} and is not a settle; pick "
                         f"another --name")
    state = {"source": args.preset, "options": _options_record(args), "designs": {g: t["design"] for g, t in
                                                                                      tables.items()},
             "claims": {g: {c.name: {"spec": c.to_dict(), "path": []} for c in t["claims"]} for g, t in tables.items()},
             "looks_done": 0, "stopped": "", "time_limit_s": limit, "seconds": 0.0, "trials_run": 0,
             "planned": [{"part": p.part, "trials": p.trials} for p in sweep.parts],
             "fixed_trials": sum(len(p.trials) for p in sweep.parts),
             "epochs": {p.part: p.epochs for p in sweep.parts}}
    if folder.exists(SETTLE_FILE):
        previous = json.loads(folder.read_text(SETTLE_FILE))
        if previous.get("options") != state["options"] or previous.get("designs") != state["designs"]:
            raise UsageError(f"a settle named {sweep.name!r} exists with another design or options; continue it "
                             f"with `scs-sweep resume {sweep.name}`, or pick another --name")
        state = previous
        print(f"settle {sweep.name}: continuing after look {state['looks_done']}")
    from .commands import start_sweep

    tuner = start_sweep(args, sweep, text, options)
    return _loop(tuner, sweep, tables, state, slots)


def _options_record(args) -> dict:
    return {k: getattr(args, k) for k in ("first", "step", "max_seeds", "spending", "alpha")}


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _slots(parts, fallback: int) -> int:
    """Trials that run at once on the connected cluster: its CPUs (one a trial), or its GPUs over the GPUs a
    trial asks for."""
    import ray

    resources = ray.cluster_resources()
    gpus = max((p.gpus_per_trial for p in parts), default=0.0)
    if gpus:
        return max(1, int(resources.get("GPU", 0) / gpus)) if resources.get("GPU") else fallback
    return max(1, int(resources.get("CPU", fallback)))


def _loop(tuner, sweep: SweepPlan, tables: dict, state: dict, slots: int) -> int:
    from results.store import get_store

    store = get_store(sweep.store)
    planned = {p.part: p for p in sweep.parts}
    looks = Design.from_dict(next(iter(state["designs"].values()))).looks
    sweep.parts = [PartPlan(**p) for p in state.get("look_parts", [])]  # the saved plan: the look parts that ran
    slots = _slots(planned.values(), slots)
    started = time.time() - state.get("seconds", 0.0)
    failed = []
    for index in range(state["looks_done"], len(looks)):
        open_claims = [c for claims in state["claims"].values() for c, r in claims.items()
                       if not r.get("decided")]
        if index and not open_claims:
            break
        trials = _look_trials(tables, state, index)
        done = _done_trials(store, sweep.name)
        done_configs = {t["config_json"] for t in done}
        fresh = [t for t in trials if json.dumps(t["config"], sort_keys=True, default=str) not in done_configs]
        if state["time_limit_s"] is not None and index:
            measured = _measured_seconds(done)
            need = sum(_trial_seconds(t, measured, False) for t in fresh) / slots
            left = state["time_limit_s"] - (time.time() - started)
            if need > left:
                state["stopped"] = (f"stopped before look {index + 1}: it needs about {need / 60:.1f} min, "
                                    f"{max(left, 0) / 60:.1f} min of --time-limit are left")
                print(f"settle {sweep.name}: {state['stopped']}")
                break
        parts = []
        for name, part in planned.items():
            mine = [t for t in fresh if t in part.trials]
            if mine:
                parts.append(replace(part, part=f"{name}-look{index + 1}", trials=mine, asha=None))
        print(f"settle {sweep.name}: look {index + 1} of {len(looks)} ({looks[index]} seeds): {len(fresh)} trial(s) "
              f"to train" + (f", {len(trials) - len(fresh)} already in the store" if len(trials) > len(fresh) else "")
              + f"; {len(open_claims) if index else sum(len(c) for c in state['claims'].values())} claim(s) open",
              flush=True)
        known = {p.part for p in sweep.parts}
        sweep.parts += [p for p in parts if p.part not in known]
        state["look_parts"] = [{**vars(p)} for p in sweep.parts]
        _save(state, sweep, store)
        if parts:
            failed += tuner.execute(sweep, resume=True, parts=parts)
        state["trials_run"] += len(fresh)
        for line in _judge(store, sweep.name, tables, state, index):
            print(f"settle {sweep.name}: {line}", flush=True)
        state["looks_done"] = index + 1
        state["seconds"] = time.time() - started
        _save(state, sweep, store)
    fixed = state["fixed_trials"]
    spent_ = sum(len(p.trials) for p in sweep.parts)
    print(f"settle {sweep.name}: {spent_} trials trained of the {fixed} a fixed design at "
          f"{looks[-1]} seeds needs, in {state['seconds'] / 60:.1f} min")
    for line in settle_lines(state):
        print(f"settle {sweep.name}: {line}")
    from .commands import report_failures

    return report_failures(sweep.name, failed)


def continue_settle(args, sweep: SweepPlan) -> int:
    """`resume NAME` of a settle: the same loop from the looks it already took."""
    folder = _folder(sweep)
    state = json.loads(folder.read_text(SETTLE_FILE))
    base = SweepPlan(**{**vars(sweep), "parts": [PartPlan(part=p["part"], trials=p["trials"],
                                                          epochs=state["epochs"][p["part"]])
                                                 for p in state["planned"]]})
    from search_spaces.sweep_file import parse_sweep_text

    from .commands import SWEEP_FILE, experiments_of

    # the sweep file as it ran, from the sweep's folder (a new head may not have the file it was started from)
    source = state["source"]
    if folder.exists(SWEEP_FILE):
        experiments = parse_sweep_text(folder.read_text(SWEEP_FILE), f"{folder}/{SWEEP_FILE}", sweep.name)[1]
    else:
        experiments = experiments_of(source)[1]
    tables = _tables(base, experiments)
    for group, table in tables.items():
        table["design"] = state["designs"][group]
    from .commands import connected_tuner

    tuner = connected_tuner(args.address)
    slots = _cpus()
    for part in base.parts:  # the GPUs a look's trials asked for: those of the look parts that ran
        gpus = [p["gpus_per_trial"] for p in state.get("look_parts", []) if p["part"].startswith(part.part)]
        part.gpus_per_trial = gpus[0] if gpus else 0.0
    return _loop(tuner, base, tables, state, slots)

