"""The paper's tables from the store: one row per variant, its interval over seeds, and what it holds.

A row aggregates the trials that ran their whole budget (status done). A variant none of whose trials did
shows what happened to them instead ("pruned at 50/800 epochs") and no number to set beside the paper's;
`include_partial` averages them too, marked. Every row says how many trials it holds and the epochs they
ran. With `compare_paper` each row gains the paper's value (results/reference/paper_tables.csv: arXiv
2307.13855 Tables 1-8, see docs/paper_facts.md) and where it lies against our 95 % interval, and each
table its claims (claims.py) and factor effects (stats.py). A table finds its paper values through its
trials' `paper_table` (the sweep's link to the paper), not through its name.
"""
from __future__ import annotations

import math

import pandas as pd

from common.vocabulary import FINISHED

from .claims import budget_note, full_budget
from .paper import paper_table_of, paper_values, table_number, where_in_paper
from .stats import Effect, mean_interval
from .store import StoreError
from .summary import RANK_NOTE, summarize
from .table_data import sweep_context
from .timing import exclusive_trials
from .variants import LABEL_COLUMNS, variant_keys, with_settings

__all__ = ["table_rows", "build_tables", "compare_paper", "render", "render_all", "TRIAL_COLUMNS", "ACCURACY_NOTE",
           "budget_line", "read_trials", "FINAL", "TRAIN_TIME", "EVAL_TIME", "effect_line", "rank_line"]

# The trials columns tables, claims and effects read (the store is scanned for these only).
TRIAL_COLUMNS = ["experiment", "trial_id", "group", "paper_table", "arch", "layer", "activation", "pooling",
                 "normalization", "dropout", "image_dim", "p_mode", "p_value", "seed", "epochs", "epochs_done",
                 "dataset", "n_train", "n_test", "budget", "status", "val_acc", "final_acc", "train_time_s",
                 "eval_time_s", "gpu", "config_json"]
FINAL = (FINISHED,)
# seconds per epoch, as the paper's "Train Time (s)" and "Eval Time (s)" are (docs/paper_facts.md)
TRAIN_TIME, EVAL_TIME = "Train Time (s/epoch)", "Eval Time (s/epoch)"
def _what_happened(part: pd.DataFrame) -> str:
    """'2 pruned (at 50-200/800 epochs), 1 failed (at 3/800)' for trials that did not finish."""
    out = []
    for status, rows in part.groupby("status", sort=True):
        done = rows["epochs_done"].astype(int)
        span = f"{done.min()}" if done.min() == done.max() else f"{done.min()}-{done.max()}"
        out.append(f"{len(rows)} {status} (at {span}/{int(rows['epochs'].max())} epochs)")
    return ", ".join(out)


def table_rows(trials: pd.DataFrame, include_partial: bool = False) -> pd.DataFrame:
    """One row per variant of one table: labels, the interval of Val. Acc. over seeds, times, n, epochs."""
    rows = []
    trials = with_settings(trials)
    for labels, part in trials.groupby(variant_keys(trials), sort=True):
        finished = part[part["status"].isin(FINAL)]
        used = part if include_partial else finished
        unfinished = part[~part["status"].isin(FINAL)]
        acc = mean_interval(used["val_acc"].tolist())
        ran = used["epochs_done"].astype(int) if len(used) else pd.Series(dtype=int)
        final = used["final_acc"] if "final_acc" in used else pd.Series(dtype=float)
        rows.append(dict(zip(LABEL_COLUMNS + ["Setting"], labels), **{
            "Val. Acc.": acc.estimate, "Val. Acc. std": used["val_acc"].std(ddof=1) if len(used) > 1 else math.nan,
            "CI low": acc.low, "CI high": acc.high, "Final Acc.": final.mean() if len(final) else math.nan,
            "Final Acc. std": final.std(ddof=1) if len(final) > 1 else math.nan, "n": len(used),
            "Epochs": "-" if ran.empty else (f"{ran.min()}" if ran.min() == ran.max() else f"{ran.min()}-{ran.max()}")
            + f"/{int(part['epochs'].max())}",
            TRAIN_TIME: used["train_time_s"].mean(), EVAL_TIME: used["eval_time_s"].mean(),
            "Status": ("" if unfinished.empty else
                       ("partial: " if include_partial else "not finished: ") + _what_happened(unfinished)),
        }))
    return pd.DataFrame(rows)


def build_tables(trials: pd.DataFrame, include_partial: bool = False) -> dict[tuple, tuple[pd.DataFrame, pd.DataFrame]]:
    """{(experiment, table): (its variant rows, its trials)}: one table per sweep and group, so a smoke
    run and a real run of the same table never share a row."""
    return {key: (table_rows(part, include_partial), part)
            for key, part in trials.groupby(["experiment", "group"], sort=True)}


def read_trials(store, experiment: str = "", columns: list[str] | None = None) -> pd.DataFrame:
    """The store's trials rows (of one experiment), or one StoreError line when there are none."""
    trials = store.read_table("trials", experiment or None, columns=columns).to_pandas()
    if trials.empty:
        raise StoreError(f"no trials in {store.uri}" + (f" for experiment {experiment!r}" if experiment else "")
                         + "; run a sweep or `scs-sweep gather` first")
    return trials


def compare_paper(table: str, frame: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """frame + the paper's value and where it lies against our interval ("inside", "above", ...).
    table: the paper's experiment (paper_table_of)."""
    merged = frame.merge(paper_values(table), on=LABEL_COLUMNS, how="left")
    note = budget_note(trials, table)

    def where(row) -> str:
        paper = row["Paper Val. Acc."]
        if pd.isna(paper):
            return "-"
        if not full_budget(trials):
            return "not comparable: budget"
        if row["n"] == 0:
            return "no finished trial"
        if pd.isna(row["CI low"]):
            return "one seed: no interval"
        return ("inside our interval" if row["CI low"] <= paper <= row["CI high"] else
                "above our interval" if paper > row["CI high"] else "below our interval")

    merged["Paper vs ours"] = merged.apply(where, axis=1) if len(merged) else []
    merged.attrs["budget_note"] = note  # said once above the table (render)
    return merged


def effect_line(arch: str, e: Effect) -> str:
    """One factor effect as the tables print it: a simple effect indented under its interaction."""
    return f"{arch}: {'  ' if e.kind == 'simple' else ''}{e.name} {e.interval.text()}"


def _cell(value, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _mean_std(frame: pd.DataFrame, column: str) -> list[str]:
    """'0.6600 ± 0.0100' per row ('-' without trials; no ± with one)."""
    return [("-" if n == 0 else _cell(v, 4) + (f" ± {s:.4f}" if n > 1 and not pd.isna(s) else ""))
            for v, s, n in zip(frame[column], frame[f"{column} std"], frame["n"])]


def render(frame: pd.DataFrame, fmt: str, title: str) -> str:
    """Markdown, CSV or LaTeX text of one table, in the paper's column order."""
    shown = frame[LABEL_COLUMNS].copy()
    if "Setting" in frame and frame["Setting"].astype(bool).any():  # an axis beyond the paper's columns
        shown["Setting"] = frame["Setting"]
    shown["Val. Acc."] = _mean_std(frame, "Val. Acc.")
    shown["95% CI"] = ["-" if pd.isna(lo) else f"[{lo:.4f}, {hi:.4f}]"
                       for lo, hi in zip(frame["CI low"], frame["CI high"])]
    shown["Final Acc."] = _mean_std(frame, "Final Acc.")
    shown["n"] = frame["n"].astype(int)
    shown["Epochs"] = frame["Epochs"]
    shown[TRAIN_TIME] = [_cell(v, 3) for v in frame[TRAIN_TIME]]
    shown[EVAL_TIME] = [_cell(v, 3) for v in frame[EVAL_TIME]]
    if "Paper Val. Acc." in frame:
        shown["Paper Val. Acc."] = [_cell(v, 4) for v in frame["Paper Val. Acc."]]
        shown["Paper vs ours"] = frame["Paper vs ours"]
    shown["Status"] = frame["Status"]
    if fmt == "csv":
        return shown.to_csv(index=False).rstrip("\n")
    if fmt == "latex":
        return "\n".join(f"% {line}" for line in _notes(frame)) + "\n" + _latex(shown, title)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.values]
    return "\n".join([f"### {title}", "", *(f"{line}  " for line in _notes(frame)), "", header, rule, *rows])


ACCURACY_NOTE = ("Val. Acc. is the best test accuracy over a trial's epochs (the epoch selected on the test set, "
                 "as the paper did); Final Acc. is its last epoch's. Both: mean ± std over seeds.")


def budget_line(frame: pd.DataFrame) -> str:
    """Why the paper's values beside a compared table (compare_paper) are not compared with it: '' at the
    paper's budget, or when no paper value is shown."""
    note = frame.attrs.get("budget_note")
    if note and "Paper Val. Acc." in frame and frame["Paper Val. Acc."].notna().any():
        return f"Not the paper's budget ({note}): its values are shown for orientation, not compared."
    return ""


def _notes(frame: pd.DataFrame) -> list[str]:
    """What the table's numbers are, and (when the paper's are beside them) why they are not compared."""
    line = budget_line(frame)
    return [ACCURACY_NOTE] + ([line] if line else [])


def exclusive(store, experiment: str = "") -> tuple[set, str]:
    """timing.exclusive_trials over the epochs the store holds (of one experiment)."""
    columns = ["experiment", "trial_id", "ended_at", "wall_s", "node_id"]
    return exclusive_trials(store.read_table("epochs", experiment or None, columns=columns).to_pandas())


def _title(name: str, sweep: str, paper_table: str, compare: bool) -> str:
    """'table1 (quick)', and where the group is linked to the paper under another name or to one of its
    experiments that is not a table: ', the paper's Appendix C.1, Fig 7 (p-dynamics)'."""
    title = f"{name} ({sweep})"
    if not (compare and paper_table):
        return title
    if not table_number(paper_table):
        return title + f", the paper's {where_in_paper(paper_table)} ({paper_table})"
    return title + (f", compared with the paper's {paper_table}" if paper_table != name else "")


def rank_line(summary, fmt: str) -> str:
    """The rank agreement of a group with the paper's table, or why it is not compared ('' where the paper
    has no table to rank by)."""
    table = summary.paper_table
    if summary.rank is not None:
        text = f"Rank agreement with the paper's {table}: {summary.rank.sentence()}; {summary.rank.text()}"
        return f"% {text}" if fmt == "latex" else f"{text} ({RANK_NOTE})."
    if summary.rank_note:
        return f"{'% ' if fmt == 'latex' else ''}Rank agreement with the paper's {table}: {summary.rank_note}."
    return ""


def render_all(store, experiment: str, fmt: str, compare: bool, include_partial: bool) -> str:
    """Every table of the store (or of one experiment); when comparing, each with its claims, factor effects
    and rank agreement (md and LaTeX), from the one summary `report` and `status` read too (summary.py): a
    settled sweep's claims with the settle's repeated intervals."""
    trials = read_trials(store, experiment, TRIAL_COLUMNS)
    alone, why_not = exclusive(store, experiment) if compare else (None, "")
    out, context = [], {}
    for (sweep, name), (frame, part) in build_tables(trials, include_partial).items():
        table = paper_table_of(name, part)
        if compare:
            frame = compare_paper(table, frame, part)
        out.append(render(frame, fmt, _title(name, sweep, table, compare)))
        if not compare or fmt == "csv":  # CSV stays one table a reader can parse; md and LaTeX get lists
            continue
        if sweep not in context:
            context[sweep] = sweep_context(store, sweep)
        specs, settle = context[sweep]
        summary = summarize(name, table, part, None, alone, why_not, specs.get(name, ()), settle)
        rank = rank_line(summary, fmt)
        settled = summary.settle.counts_text(name) if summary.settle and name in summary.settle.claims else ""
        if fmt == "md":
            if rank:
                out.append(rank)
            if settled:
                out.append(f"Sequential seeds: {settled}.")
            for heading, items in (("Claims (95 % intervals over seeds; two verdicts: at this run's budget, "
                                    "and the paper's claim)", [v.line() for v in summary.verdicts]),
                                   ("Factor effects on Val. Acc. (A - B; 95 % intervals over seeds)",
                                    [effect_line(arch, e) for arch, e in summary.effects])):
                if items:
                    out.append(heading + ":\n" + "\n".join(f"- {item}" for item in items))
            continue
        claim_frame = pd.DataFrame([{"Claim": v.claim.name, "Effect": v.effect, "95% CI": v.interval_text,
                                     "P(A > B)": v.prob_text(), "The paper's effect": v.paper_effect_text() or "-",
                                     "At this budget": v.budget_verdict, "Why": v.budget_reason,
                                     "The paper's claim": v.paper_verdict, "Why (paper)": v.paper_reason}
                                    for v in summary.verdicts])
        factor = pd.DataFrame([{"Architecture": arch, "Effect (A - B)": ("  " if e.kind == "simple" else "")
                                + e.name, "Estimate and 95% CI": e.interval.text()} for arch, e in summary.effects])
        out += [_latex(frame, f"{heading} of {name}") for heading, frame in
                (("Claims", claim_frame), ("Factor effects on Val. Acc.", factor)) if len(frame)]
        if rank:
            out.append(rank)
    return "\n\n".join(out)


def _latex(frame: pd.DataFrame, title: str) -> str:
    """A frame as a LaTeX tabular (pandas' Styler escapes every cell; booktabs rules)."""
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return f"% {title}\n" + styler.to_latex(hrules=True).rstrip("\n")
