"""`scs-sweep settle`: add seeds only where a claim is still open, with error rates that hold when a claim stops.

The design is fixed before the first trial and stored with the sweep (settle.json in its folder, and the
store's `_settle/NAME.json` for the report): the seeds of the first look, the seeds added between looks,
the maximum seeds, the alpha-spending function, and alpha, split over each group's accuracy claims with
Bonferroni; the critical values follow from them (results/sequential.py). Every trial of the maximum design
is planned and validated first, with the seed numbers the plan gives `--seeds MAX` (so that no other
experiment's seed block can collide with seeds added later); a look then trains, for each group, the next
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
import os
import re
import time
from dataclasses import dataclass, replace

import numpy as np

from results.claims import Claim, claim_values, paper_effects
from results.sequential import (
    FUTILITY,
    MAX_SEEDS,
    SPENDING,
    Design,
    conditional_power,
    futility_applies,
    repeated_interval,
    simulate,
    smallest_decided,
    spent,
)
from results.settled import ClaimRecord, Look, SettleRecord
from results.stats import seeds_to_settle
from results.store import get_store
from search_spaces.claims import claims_for_rows
from search_spaces.epoch_times import cpu_seconds_per_epoch, expected_epoch_cost
from search_spaces.sweep_file import parse_sweep_text

from . import startup, stopping
from .errors import UsageError
from .plan import PartPlan, SweepPlan
from .startup import SETTLE_FILE, SWEEP_FILE, SweepRequest, experiments_of, plan_for, report_failures
from .storage import Storage
from .trackers import finish_sweep

__all__ = ["SettleOptions", "settle", "continue_settle", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SettleOptions:
    """The design a settle was asked for (typed at the CLI's edge): seeds of the first look, seeds added per
    look, the maximum, the spending function and alpha; the futility bound (None: off); a time limit;
    --plan (print, run nothing)."""
    max_seeds: int
    first: int = 3
    step: int = 1
    spending: str = "pocock"
    alpha: float = 0.05
    futility: float | None = FUTILITY
    time_limit: str = ""
    plan: bool = False
    spread: float | None = None

    def record(self) -> dict:
        """What a settle's record keeps of them: a settle continues only with the same."""
        return {"first": self.first, "step": self.step, "max_seeds": self.max_seeds, "spending": self.spending,
                "alpha": self.alpha, "futility": self.futility}


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


@dataclass
class Group:
    """One group of the settled sweep: the part it trains in, its variants (variant key -> its planned trials
    by seed), the accuracy claims that apply to it, and its design."""
    part: str
    variants: dict
    claims: list
    design: Design | None = None
    paper_table: str = ""             # the paper's experiment its trials are linked to


def _groups(sweep: SweepPlan, experiments) -> dict[str, Group]:
    """group -> Group: the paper's and its experiment's own accuracy claims that apply to its variants (times
    need `bench` and a node of their own, not more seeds)."""
    own = {}
    for experiment in experiments:
        for trial in experiment.trials():
            own[trial["group"]] = experiment.claims
    groups: dict[str, Group] = {}
    for part in sweep.parts:
        for trial in part.trials:
            group = groups.setdefault(trial["group"], Group(part.part, {}, [],
                                                            paper_table=trial.get("paper_table") or ""))
            group.variants.setdefault(_variant(trial["config"]), []).append(trial)
    for name, group in groups.items():
        for trials in group.variants.values():
            trials.sort(key=lambda t: t["config"]["seed"])
        rows = [_row(trials[0]) for trials in group.variants.values()]
        group.claims = [spec for spec in claims_for_rows(rows, own.get(name, ())) if not spec.time]
    return groups


def _check_own_claims(experiments, groups: dict[str, Group]) -> None:
    """A sweep file's own claim whose sides match no variant of its groups is one line, before anything."""
    for experiment in experiments:
        names = {t["group"] for t in experiment.trials()}
        for spec in experiment.claims:
            if spec.time or any(spec.name in {c.name for c in groups[g].claims} for g in names if g in groups):
                continue
            raise UsageError(f"claim {spec.name!r} of {experiment.name}: its sides (a = {spec.a}, b = {spec.b}) "
                             f"match no variant of its table(s) {', '.join(sorted(names))}, or `when` does not "
                             f"hold for them; fix its filters")


def _needed(group: Group, open_names: set) -> list[str]:
    """The variants (keys) the open claims of a group compare: a variant shared by several trains once."""
    needed = []
    for key, trials in group.variants.items():
        row = _row(trials[0])
        if any(spec.name in open_names and (spec.side_rows([row], "a") or spec.side_rows([row], "b"))
               for spec in group.claims):
            needed.append(key)
    return needed


def _design(options: SettleOptions, claims: int) -> Design:
    return Design(first=options.first, step=options.step, max_seeds=options.max_seeds, spending=options.spending,
                  alpha=options.alpha, claims=max(claims, 1)).with_critical_values()


def check_options(options: SettleOptions) -> None:
    """Every settle option out of range, as one UsageError line (before anything is planned)."""
    if options.max_seeds > MAX_SEEDS:
        raise UsageError(f"--max-seeds {options.max_seeds}: at most {MAX_SEEDS} (100 seeds of Table 1 are already "
                         f"800 trials, 640,000 epochs at the paper's budget); give a maximum a sweep can train")
    if options.futility is not None and not 0 < options.futility < 1:
        raise UsageError(f"--futility {options.futility:g}: a conditional power between 0 and 1 (default "
                         f"{FUTILITY:g}); --no-futility switches it off")
    if options.first < 2:
        raise UsageError(f"--first {options.first}: an interval needs at least 2 seeds; give --first 2 or more")
    if options.max_seeds < options.first:
        raise UsageError(f"--max-seeds {options.max_seeds} is below the first look's {options.first} seeds; give "
                         f"--max-seeds {options.first} or more")
    if options.step < 1:
        raise UsageError(f"--step must be >= 1, got {options.step}")
    if not 0 < options.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {options.alpha}")
    if options.spending not in SPENDING:
        raise UsageError(f"--spending {options.spending!r}; choose one of: {', '.join(SPENDING)}")


def _trial_seconds(trial: dict, measured: dict, on_gpu: bool) -> float:
    """A trial's expected seconds: its variant's measured mean wall time, else epochs x an anchor epoch."""
    key = _variant(trial["config"])
    if key in measured:
        return measured[key]
    if measured:
        return sum(measured.values()) / len(measured)
    per_epoch = expected_epoch_cost(trial["config"], True) if on_gpu else cpu_seconds_per_epoch(trial["config"])
    return trial["config"]["epochs"] * per_epoch


def _look_trials(groups: dict[str, Group], record: SettleRecord, index: int) -> list[dict]:
    """The planned trials of look `index` (0-based): each group's next seeds of the variants its open claims
    need (the first look: every variant of every group, claims or not)."""
    looks = record.looks
    low, high = (looks[index - 1] if index else 0), looks[index]
    out = []
    for name, group in groups.items():
        open_names = {c for c, r in record.claims.get(name, {}).items() if not r.closed}
        keys = list(group.variants) if index == 0 else _needed(group, open_names)
        for key in keys:
            out += group.variants[key][low:high]
    return out


def _done_trials(store, name: str) -> list[dict]:
    """Every done trial of this sweep the store has (its config JSON, start and end), in one read. A store
    not made yet has none; any other failure to read it is an error, not 'nothing done' (which would train
    every trial again)."""
    if not store.exists():
        return []
    trials = store.read_table("trials", name, columns=["status", "config_json", "started_at", "ended_at"])
    return [t for t in trials.to_pylist() if t["status"] == "done" and t["config_json"]]


def _measured_seconds(done: list[dict]) -> dict:
    """variant key -> mean seconds a done trial of it took (from start to end, evaluation included)."""
    out = {}
    for t in done:
        if t["started_at"] and t["ended_at"]:
            config = json.loads(t["config_json"])
            out.setdefault(_variant(config), []).append((t["ended_at"] - t["started_at"]).total_seconds())
    return {k: sum(v) / len(v) for k, v in out.items()}


def _judge(store, name: str, groups: dict[str, Group], record: SettleRecord, index: int) -> list[str]:
    """After look `index`: each open claim's repeated interval on the seeds the look reached, and (with
    futility) its conditional power; lines saying what was decided or stopped."""
    futility = record.options.get("futility")
    trials = store.read_table("trials", name).to_pandas()
    trials = trials[trials["status"] == "done"]
    lines = []
    for group_name, group in groups.items():
        design = record.designs[group_name]
        n = design.looks[index]
        seeds = {t["config"]["seed"] for trials_ in group.variants.values() for t in trials_[:n]}
        mine = trials[(trials["group"] == group_name) & trials["seed"].isin(seeds)]
        for spec in group.claims:
            r = record.claims[group_name][spec.name]
            if r.closed:
                continue
            claim = Claim(spec)
            values = claim_values(claim, mine) if len(mine) else []
            interval = repeated_interval([v for _, v in values], design.critical[index])
            side = claim.side_of(interval) if interval.has_interval else ""
            look = Look(index + 1, interval.n, interval.estimate, interval.low, interval.high, design.critical[index])
            r.path.append(look)
            if side:
                r.decided, r.look, r.seeds = side, index + 1, interval.n
                lines.append(f"{group_name}: {spec.name}: {side.upper()}, {r.when(len(design.looks))}: repeated "
                             f"interval {interval.text()} against {claim.threshold_text}")
            elif futility is not None and futility_applies(design, index) and interval.has_interval:
                # non-binding: the critical values ignore it, so stopping here only gives up chances to decide
                look.power = conditional_power([v for _, v in values], design, index, _edges(claim))
                if look.power < futility:
                    r.futile, r.look, r.seeds = _futile_text(claim, values, design, look.power), index + 1, interval.n
                    lines.append(f"{group_name}: {spec.name}: {r.when(len(design.looks))}")
            elif index + 1 == len(design.looks):
                r.undecided = f"undecided at {n} seeds"
                lines.append(f"{group_name}: {spec.name}: {r.undecided}: repeated interval {interval.text()}")
    return lines


def _edges(claim: Claim) -> tuple:
    """The threshold(s) a claim's interval must clear, in its statistic's units (both ends of a 'within' band)."""
    return (-claim.threshold, claim.threshold) if claim.side == "within" else (claim.threshold,)


def _futile_text(claim: Claim, values: list, design: Design, power: float) -> str:
    """'cannot be decided within 10 seeds (a 4 % chance by then ...); about 45 seeds would decide it ...'."""
    x = [v for _, v in values]
    estimate = sum(x) / len(x)
    need = seeds_to_settle(x, claim.edge(estimate), design.alpha_per_claim)
    more = (f"about {need} seeds would decide it, if the effect ({claim.show(estimate)}) and its spread stay as "
            f"measured" if need else f"the effect ({claim.show(estimate)}) is too close to its threshold for any "
                                     f"practical number of seeds")
    return (f"cannot be decided within {design.max_seeds} seeds (a {power:.0%} chance by then if the seeds to come "
            f"follow the measured effect and spread); {more}")


PLAN_RUNS = 2_000    # simulated settles per claim and effect behind `settle --plan`'s expected costs


def _claim_keys(group: Group, spec) -> set:
    """The variants (keys) a claim compares."""
    return {key for key, trials in group.variants.items()
            if spec.side_rows([_row(trials[0])], "a") or spec.side_rows([_row(trials[0])], "b")}


def _expected(group: Group, stops: dict, looks: list) -> float:
    """Mean trials a group trains when each claim stops at the looks simulated for it (claim -> array of
    0-based looks, one per run): every variant at the first look, then the variants the claims still open
    compare, at each look after. Claims are drawn independently, run by run."""
    keys = {spec.name: _claim_keys(group, spec) for spec in group.claims}
    runs = len(next(iter(stops.values())))
    total = 0
    for run in range(runs):
        trials = len(group.variants) * looks[0]
        for k in range(1, len(looks)):
            needed = set().union(*(keys[name] for name, stop in stops.items() if stop[run] >= k))
            trials += len(needed) * (looks[k] - looks[k - 1])
        total += trials
    return total / runs


def _measured(store, name: str, group_name: str, group: Group) -> dict:
    """claim name -> its per-seed values from the sweep's done trials the store already has ({} if none). A claim
    a settle closed counts only the seeds it was judged on: later seeds trained for other claims can hold some of
    its variants and not others (a mean over layers would then be over fewer layers)."""
    if not store.exists():
        return {}
    trials = store.read_table("trials", name).to_pandas()
    mine = trials[(trials["status"] == "done") & (trials["group"] == group_name)]
    if not len(mine):
        return {}
    settled = store.read_settle(name)
    records = SettleRecord.from_dict(settled).claims.get(group_name, {}) if settled else {}
    out = {}
    for spec in group.claims:
        rows, record = mine, records.get(spec.name)
        if record is not None and record.closed and record.seeds:
            judged = {t["config"]["seed"] for trials_ in group.variants.values() for t in trials_[:record.seeds]}
            rows = mine[mine["seed"].isin(judged)]
        out[spec.name] = [v for _, v in claim_values(Claim(spec), rows)]
    return out


def _plan_text(groups: dict[str, Group], options: SettleOptions, on_gpu: bool, store, name: str) -> str:
    """`settle --plan`: per group the design, worst-case trials and time, the smallest decidable effect, and the
    expected seeds and trials (simulated, with futility as asked) at each claim's threshold, at the paper's
    effect and at the effect measured so far, with the measured per-seed spread where the store has seeds."""
    lines = []
    for group_name, group in groups.items():
        if not group.claims:
            lines.append(f"{group_name}: no accuracy claim applies; its variants train at the first look only")
            continue
        design = group.design
        lines.append(f"{group_name}: {len(group.claims)} claim(s), alpha {design.alpha:g} two-sided, "
                     f"{design.alpha_per_claim:.4f} per claim (Bonferroni); {design.spending} spending; "
                     f"looks at {', '.join(map(str, design.looks))} seeds")
        lines.append("  look  seeds  alpha spent  critical value c_k (repeated interval: mean +/- c_k s/sqrt(n))")
        for k, (n, c) in enumerate(zip(design.looks, design.critical), 1):
            share = spent(n / design.max_seeds, design.alpha_per_claim, design.spending)
            lines.append(f"  {k:>4}  {n:>5}  {share:>11.4f}  {c:.3f}")
        trials = [t for trials_ in group.variants.values() for t in trials_]
        seconds = sum(_trial_seconds(t, {}, on_gpu) for t in trials)
        lines.append(f"  worst case: {len(trials)} trials ({len(group.variants)} variants x {design.max_seeds} "
                     f"seeds), {sum(t['config']['epochs'] for t in trials):,} trial-epochs, about "
                     f"{seconds / 3600:.1f} {'GPU' if on_gpu else 'CPU-thread'}-hours (anchor estimates)")
        measured = _measured(store, name, group_name, group)
        papers = paper_effects(group.paper_table, [Claim(spec) for spec in group.claims])
        stops: dict[str, dict] = {"at the thresholds": {}, "at the paper's effects": {}, "as measured so far": {}}
        futility = options.futility
        lines.append(f"  expected cost ({PLAN_RUNS:,} simulated settles per claim and effect, "
                     + (f"futility below a {futility:.0%} conditional power" if futility is not None else
                        "no futility") + "):")
        for i, spec in enumerate(group.claims):
            claim = Claim(spec)
            values = measured.get(spec.name, [])
            spread = float(np.std(values, ddof=1)) if len(values) >= 2 else options.spread
            where = f"the {len(values)} seeds measured" if len(values) >= 2 else "--spread" if options.spread else ""
            cases = [("at the thresholds", f"at its threshold ({claim.threshold_text})", 0.0)]
            paper = papers.get(spec.name)
            if paper is not None and spread:
                cases.append(("at the paper's effects", f"at the paper's effect ({claim.show(paper)})",
                              (paper - claim.edge(paper)) / spread))
            if len(values) >= 2 and spread:
                estimate = float(np.mean(values))
                cases.append(("as measured so far", f"as measured so far ({claim.show(estimate)} over {len(values)} "
                              f"seeds)", (estimate - claim.edge(estimate)) / spread))
            spread_text = (f"per-seed spread {spread:.4f} (from {where}); the last look decides an effect "
                           f"{smallest_decided(design, spread):.4f} or more from its threshold" if spread else
                           "no per-seed spread yet: give --spread, or run the first look, for the other effects")
            lines.append(f"  - {spec.name}: {spread_text}")
            for scenario, text, delta in cases:
                run = simulate(design, delta, reps=PLAN_RUNS, seed=101 + i, futility=futility, inner=200)
                stops[scenario][spec.name] = run["stop_looks"]
                lines.append(f"      {text}: {run['mean_seeds']:.1f} seeds on average, decided in {run['decided']:.0%}"
                             + (f", stopped for futility in {run['futile']:.0%}" if futility is not None else ""))
        costs = [f"{_expected(group, found, design.looks):.0f} {scenario}" for scenario, found in stops.items()
                 if len(found) == len(group.claims)]
        lines.append(f"  expected trials for {group_name} (claims drawn independently): {', '.join(costs)}; "
                     f"worst case {len(trials)}")
    return "\n".join(lines)


def _folder(sweep: SweepPlan):
    return Storage(sweep.storage).sweep(sweep.name)


def _save(record: SettleRecord, sweep: SweepPlan, store) -> None:
    folder = _folder(sweep)
    folder.write_text(SETTLE_FILE, record.to_json())  # whole, or not at all
    folder.save_plan(sweep)  # the look parts so far: what `status` and `resume` read
    store.write_settle(sweep.name, record.to_dict())


def _check_experiments(source: str) -> None:
    """What settle cannot take, one line each: listed seeds (settle chooses them), an Optuna search."""
    for experiment in experiments_of(source)[1]:
        listed = [g["seed"] for g in experiment.grids if isinstance(g.get("seed"), list) and len(g["seed"]) > 1]
        if listed:
            raise UsageError(f"{experiment.name} lists its seeds ({listed[0]}); settle chooses the seeds: drop the "
                             f"seed axis")
        if experiment.search:
            raise UsageError(f"{experiment.name} is an Optuna search; settle adds seeds to grid trials: settle a "
                             f"grid experiment")


def settle(request: SweepRequest, options: SettleOptions) -> int:
    """The `settle` command: plan every seed of the maximum design, fix the design, then look by look."""
    check_options(options)
    limit = parse_duration(options.time_limit) if options.time_limit else None
    _check_experiments(request.source)
    sweep, experiments, text, run = plan_for(request, seeds_from_design=options.max_seeds)
    if any(part.depends_on for part in sweep.parts):
        raise UsageError(f"{request.source} trains a later stage from an earlier one (init_from \"@GROUP\"); "
                         f"settle takes experiments whose trials start from scratch")
    groups = _groups(sweep, experiments)
    _check_own_claims(experiments, groups)
    if not any(g.claims for g in groups.values()):
        raise UsageError(f"{request.source} has no accuracy claim to settle: add [[claim]] tables to its sweep file "
                         f"(`scs-sweep presets --show table1` shows the paper's as [[claim]]s)")
    for group in groups.values():
        group.design = _design(options, len(group.claims))
    on_gpu = bool(run.gpus_per_trial)
    if options.plan:
        print(_plan_text(groups, options, on_gpu, get_store(sweep.store), sweep.name))
        return 0
    record = SettleRecord(
        source=request.source, options=options.record(), designs={g: grp.design for g, grp in groups.items()},
        claims={g: {c.name: ClaimRecord(spec=c.to_dict()) for c in grp.claims} for g, grp in groups.items()},
        time_limit_s=limit, planned=[{"part": p.part, "trials": p.trials} for p in sweep.parts],
        fixed_trials=sum(len(p.trials) for p in sweep.parts), epochs={p.part: p.epochs for p in sweep.parts})
    first = _look_trials(groups, record, 0)
    # trials at once: this machine's cores (one a trial), or trials per GPU on one GPU; the cluster's once Ray runs
    slots = max(1, int(1 / run.gpus_per_trial)) if on_gpu else _cpus()
    estimate = sum(_trial_seconds(t, {}, on_gpu) for t in first) / slots
    if limit is not None and estimate > limit:
        raise UsageError(f"--time-limit {options.time_limit}: the first look alone ({len(first)} trials) needs about "
                         f"{estimate / 60:.0f} min here (anchor estimates, {slots} at a time); give more time, a "
                         f"smaller --first, or a smaller budget (--quick, --epochs)")
    folder = _folder(sweep)
    if folder.exists("sweep.json") and not folder.exists(SETTLE_FILE):
        raise UsageError(f"a sweep named {sweep.name!r} exists in {sweep.storage} and is not a settle; pick "
                         f"another --name")
    if folder.exists(SETTLE_FILE):
        previous = SettleRecord.from_dict(json.loads(folder.read_text(SETTLE_FILE)))
        if previous.options != record.options or previous.designs != record.designs:
            raise UsageError(f"a settle named {sweep.name!r} exists with another design or options; continue it "
                             f"with `scs-sweep resume {sweep.name}`, or pick another --name")
        record = previous
        print(f"settle {sweep.name}: continuing after look {record.looks_done}")
    from .tuner import execute  # ray: only once the input is known good

    startup.start_sweep(sweep, text, run, request.address)
    return _loop(execute, sweep, groups, record, slots)


def _cpus() -> int:
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


def _loop(execute, sweep: SweepPlan, groups: dict[str, Group], record: SettleRecord, slots: int) -> int:
    """Look after look until no claim is open or the design ends: train the look's trials (`execute`,
    tuner.execute), judge the open claims, save the record."""
    store = get_store(sweep.store)
    planned = {p.part: p for p in sweep.parts}
    looks = record.looks
    sweep.parts = [PartPlan(**p) for p in record.look_parts]  # the saved plan: the look parts that ran
    slots = _slots(planned.values(), slots)
    started = time.time() - record.seconds
    failed = []
    for index in range(record.looks_done, len(looks)):
        open_claims = record.open_claims()
        if (index and not open_claims) or stopping.requested():  # a graceful stop: no look starts after it
            break
        trials = _look_trials(groups, record, index)
        done = _done_trials(store, sweep.name)
        done_configs = {t["config_json"] for t in done}
        fresh = [t for t in trials if json.dumps(t["config"], sort_keys=True, default=str) not in done_configs]
        if record.time_limit_s is not None and index:
            measured = _measured_seconds(done)
            need = sum(_trial_seconds(t, measured, False) for t in fresh) / slots
            left = record.time_limit_s - (time.time() - started)
            if need > left:
                record.stopped = (f"stopped before look {index + 1}: it needs about {need / 60:.1f} min, "
                                  f"{max(left, 0) / 60:.1f} min of --time-limit are left")
                print(f"settle {sweep.name}: {record.stopped}")
                break
        parts = []
        for name, part in planned.items():
            mine = [t for t in fresh if t in part.trials]
            if mine:
                parts.append(replace(part, part=f"{name}-look{index + 1}", trials=mine, asha=None))
        print(f"settle {sweep.name}: look {index + 1} of {len(looks)} ({looks[index]} seeds): {len(fresh)} trial(s) "
              f"to train" + (f", {len(trials) - len(fresh)} already in the store" if len(trials) > len(fresh) else "")
              + f"; {len(open_claims) if index else sum(len(c) for c in record.claims.values())} claim(s) open",
              flush=True)
        known = {p.part for p in sweep.parts}
        sweep.parts += [p for p in parts if p.part not in known]
        record.look_parts = [{**vars(p)} for p in sweep.parts]
        _save(record, sweep, store)
        if parts:
            failed += execute(sweep, resume=True, parts=parts)
        if stopping.requested():  # stopped mid-look: it is judged when the settle continues and finishes it
            break
        record.trials_run = len(_done_trials(store, sweep.name))
        for line in _judge(store, sweep.name, groups, record, index):
            print(f"settle {sweep.name}: {line}", flush=True)
        record.looks_done = index + 1
        record.seconds = time.time() - started
        _save(record, sweep, store)
    spent_ = sum(len(p.trials) for p in sweep.parts)
    print(f"settle {sweep.name}: {spent_} trials trained of the {record.fixed_trials} a fixed design at "
          f"{looks[-1]} seeds needs, in {record.seconds / 60:.1f} min")
    for line in record.lines():
        print(f"settle {sweep.name}: {line}")
    if sweep.track and not stopping.requested():  # the tables and the report to the sweep's MLflow run
        finish_sweep(sweep, tuple(sweep.track), _folder(sweep).local_dir)
    if stopping.by_hand():  # Ctrl+C: the look it stopped in is judged once `resume` has finished it
        print(f"settle {sweep.name}: interrupted in look {record.looks_done + 1}; `scs-sweep resume {sweep.name}` "
              f"continues it")
        return stopping.EXIT_INTERRUPTED
    return report_failures(sweep.name, failed)


def continue_settle(sweep: SweepPlan, address: str = "", track: tuple = ()) -> int:
    """`resume NAME` of a settle: the same loop from the looks it already took."""
    from .tuner import execute  # ray

    folder = _folder(sweep)
    record = SettleRecord.from_dict(json.loads(folder.read_text(SETTLE_FILE)))
    base = SweepPlan(**{**vars(sweep), "parts": [PartPlan(part=p["part"], trials=p["trials"],
                                                          epochs=record.epochs[p["part"]])
                                                 for p in record.planned]})
    # the sweep file as it ran, from the sweep's folder (a new head may not have the file it was started from)
    if folder.exists(SWEEP_FILE):
        experiments = parse_sweep_text(folder.read_text(SWEEP_FILE), f"{folder}/{SWEEP_FILE}", sweep.name)[1]
    else:
        experiments = experiments_of(record.source)[1]
    groups = _groups(base, experiments)
    for name, group in groups.items():
        group.design = record.designs[name]
    startup.connect(address)
    startup.track(track or sweep.track)
    base.track = list(track or sweep.track)
    for part in base.parts:  # the GPUs a look's trials asked for: those of the look parts that ran
        gpus = [p["gpus_per_trial"] for p in record.look_parts if p["part"].startswith(part.part)]
        part.gpus_per_trial = gpus[0] if gpus else 0.0
    return _loop(execute, base, groups, record, _cpus())
