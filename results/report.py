"""`scs-sweep report`: one self-contained HTML file that says first what the store's trials say.

The page reads top to bottom:
1. a contents list, each entry a link;
2. the summary: per table, one line per claim of the paper (its verdict, the effect and its interval,
   P(A > B) across seeds, what the budget allows one to say, and where the effect is heading with
   training), then the budget and whether the learning curves were still rising at the end;
3. per experiment and table: the table (best and final accuracy, columns that never vary said once in
   its caption), the claims with their paired-difference and effect-against-epoch figures, the factor
   effects (the same per-seed method, simple effects under large interactions), the other figures,
   and the provenance (code version, device, data, budget, the sweep file it ran).
Every figure has a caption saying what it shows and from how many trials and seeds. Figures are PNGs
embedded as data: URIs and the style sheet is inline, so the file references nothing outside itself.
Tables are pandas' HTML; the layout fits an 800-pixel window and prints without cut tables.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import pandas as pd

from trainables.vocabulary import PAPER_TEST_IMAGES, PAPER_TRAIN_IMAGES

from .claims import DELTA
from .figures import figures_for_group
from .table_data import load_table_data, tables_of
from .tables import (ACCURACY_NOTE, FINAL, LABEL_COLUMNS, budget_line, build_tables, compare_paper, effect_rows,
                     read_trials, render)

__all__ = ["write_report", "REPORT_FILE", "summary_lines", "claim_detail"]

REPORT_FILE = "report.html"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1000px;
     padding:0 1em;color:#222;line-height:1.45;font-size:15px}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.8em;border-bottom:1px solid #eee} h4{margin:1.4em 0 .4em}
a{color:#0b57d0} .meta,.caption,figcaption{color:#555;font-size:13px}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:.4em 0}
td,th{border:1px solid #ccc;padding:2px 5px;text-align:left;vertical-align:top} th{background:#f3f3f3}
td{white-space:nowrap}
figure{margin:1em 0 1.6em} figure img{max-width:100%;height:auto;border:1px solid #eee}
.badge{display:inline-block;min-width:6.5em;text-align:center;border-radius:3px;padding:0 .4em;margin-right:.4em;
       font-size:12px;font-weight:600;color:#fff}
.v-supported .badge{background:#1a7f37} .v-contradicted .badge{background:#b42318}
.v-inconclusive .badge{background:#9a6700} .v-not-judged .badge{background:#777}
ul.summary{padding-left:0;list-style:none} ul.summary li{margin:.55em 0;font-size:14px}
ul.summary .detail{display:block;margin-left:7.4em;color:#444;font-size:13px}
nav ol{margin:.2em 0;padding-left:1.4em} nav li{font-size:14px}
pre{background:#f6f8fa;padding:.6em;font-size:12px;overflow:auto}
@media (max-width:820px){ul.summary .detail{margin-left:0}}
@media print{body{max-width:none;font-size:11pt} figure,table,ul.summary li{break-inside:avoid}
             a{color:inherit;text-decoration:none} .scroll{overflow:visible}}
"""
METHOD = (f"Every effect and claim here is a difference between variants computed within each seed (variants "
          f"that share a seed start from identical weights), then averaged over seeds with a 95 % t-interval "
          f"over seeds; the factor effects use the same method. P(A > B) is the probability that A beats B on a "
          f"new seed (the t predictive distribution of one more per-seed difference), beside how many measured "
          f"seeds it did. Accuracy claims use a margin of {DELTA:g}; a claim is supported or contradicted only "
          f"when its whole interval lies on one side, and only at the paper's budget.")


def _e(text) -> str:
    return html.escape(str(text))


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in p) for p in parts)


def _html(frame: pd.DataFrame) -> str:
    """A frame as an HTML table (pandas escapes every cell), in a box that scrolls rather than widen the page."""
    return f"<div class='scroll'>{frame.to_html(index=False, border=0, classes='data', escape=True)}</div>"


def _verdict_class(verdict: str) -> str:
    return "v-" + verdict.replace(" ", "-")


# ---------------------------------------------------------------------------------------------
# The summary
# ---------------------------------------------------------------------------------------------
def claim_detail(summary, v) -> str:
    """What the summary says after a claim's name: the effect and its interval, P(A > B), what the budget
    allows one to say, and where the effect is heading with training."""
    reading = summary.reading(v)
    reason = v.reason_without(summary.budget_note)  # the table's budget is said once above its claims
    reason = reason[:1].upper() + reason[1:] + "."
    if not v.interval.n:
        return reason
    return (f"{v.effect} = {v.interval_text} over {v.interval.n} seed(s); {v.prob_text()}. {reason}"
            + (f" Effect against epoch: {reading}." if reading else ""))


def summary_lines(summary) -> list[str]:
    """One plain-text line per claim, as the page prints it."""
    return [f"{v.verdict.upper()}: {v.claim.name}. {claim_detail(summary, v)}" for v in summary.verdicts]


def _summary_html(experiment: str, summary, several: bool) -> str:
    title = f"{experiment}: {summary.group}" if several else summary.group
    items = []
    for v in summary.verdicts:
        items.append(f"<li class='{_verdict_class(v.verdict)}'><span class='badge'>{_e(v.verdict)}</span>"
                     f"<b>{_e(v.claim.name)}</b><span class='detail'>{_e(claim_detail(summary, v))}</span></li>")
    budget = (f"Budget: {summary.budget_note}. The paper's claims are about its own budget, so no accuracy claim is "
              f"decided here; the effect against epoch says whether each pattern is on its way to the paper's."
              if summary.budget_note else "Budget: the paper's (CIFAR-10, all images, its epochs).")
    parts = [f"<h3 id='{_anchor('summary', experiment, summary.group)}'>{_e(title)}</h3>",
             f"<p class='meta'>{summary.n_trials} trials over {summary.n_seeds} seed(s). {_e(budget)}</p>"]
    if items:
        parts.append(f"<ul class='summary'>{''.join(items)}</ul>")
    else:
        parts.append("<p>No claim of the paper applies to these variants.</p>")
    if summary.curves_text():
        parts.append(f"<p>{_e(summary.curves_text())}</p>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Per table
# ---------------------------------------------------------------------------------------------
def _table_html(group: str, compared: pd.DataFrame) -> str:
    """The table with the columns that never vary said once in its caption."""
    frame = pd.read_csv(io.StringIO(render(compared, "csv", group)), dtype=str, keep_default_na=False)
    fixed = [c for c in frame.columns if c in LABEL_COLUMNS + ["Paper vs ours", "Status", "Epochs", "n"]
             and frame[c].nunique() == 1]
    said = "; ".join(f"{c}: {frame[c].iloc[0] or '-'}" for c in fixed if frame[c].iloc[0])
    frame = frame.drop(columns=fixed)
    caption = f"{ACCURACY_NOTE} The 95 % CI is Val. Acc.'s t-interval. Only trials that ran their whole budget count."
    return f"<p class='caption'>{_e('Every row: ' + said + '. ') if said else ''}{_e(caption)}</p>{_html(frame)}"


def _effects_html(finished: pd.DataFrame) -> str:
    rows = effect_rows(finished)
    if not rows:
        return ""
    several = len({arch for arch, _ in rows}) > 1
    frame = pd.DataFrame([{**({"Architecture": arch} if several else {}),
                           "Effect": ("\u2003" if e.kind == "simple" else "") + e.name,
                           "Estimate": f"{e.interval.estimate:+.4f}",
                           "95 % CI": "-" if not e.interval.has_interval else
                           f"[{e.interval.low:+.4f}, {e.interval.high:+.4f}]",
                           "Seeds": e.interval.n} for arch, e in rows])
    note = ("Each main effect is the mean difference between variants that differ only in that factor; an "
            "interaction (A x B) is how much A's effect changes with B; under an interaction that is large or "
            "whose interval excludes 0, the indented rows give each factor's simple effect within each level "
            "of the other (what the main effects average away). Each is computed within each seed and averaged "
            "over seeds, the method the claims use: a claim and an effect differ only where they measure "
            "different differences (e.g. the ReLU + MaxAbsPool2d claim is the pooling effect under ReLU, the "
            "interaction is how that effect differs from the one without ReLU).")
    return f"<p class='caption'>{_e(note)}</p>{_html(frame)}"


def _figure_html(figure) -> str:
    data = base64.b64encode(figure.png()).decode()
    return (f"<figure data-kind='{_e(figure.kind)}'><img alt='{_e(figure.title)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{_e(figure.caption or figure.title)}</figcaption></figure>")


def _values(series: pd.Series) -> str:
    values = sorted({str(v) for v in series.dropna()})
    return ", ".join(values) if values else "-"


def _when(timestamp) -> str:
    return "-" if pd.isna(timestamp) else f"{pd.Timestamp(timestamp):%Y-%m-%d %H:%M:%S}"


def _all(trials: pd.DataFrame, cifar10: int) -> str:
    """What n_train / n_test 0 means: CIFAR-10's whole set, or the synthetic set's default size."""
    return f"all ({cifar10:,})" if (trials["dataset"] == "cifar10").all() else "all of the data set"


def _provenance(store, experiment: str, trials: pd.DataFrame) -> str:
    n_train = trials["n_train"].fillna(0).astype(int) if "n_train" in trials else pd.Series([0])
    n_test = trials["n_test"].fillna(0).astype(int) if "n_test" in trials else pd.Series([0])
    rows = [
        ("trials", f"{len(trials)}: " + ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())),
        ("data set", _values(trials["dataset"])
         + (f" ({_values(trials['data_dir'])})" if "data_dir" in trials and trials["data_dir"].notna().any() else "")),
        ("training images", ", ".join(f"{v:,}" if v else _all(trials, PAPER_TRAIN_IMAGES) for v in sorted(set(n_train)))),
        ("test images", ", ".join(f"{v:,}" if v else _all(trials, PAPER_TEST_IMAGES) for v in sorted(set(n_test)))),
        ("budget", _values(trials["budget"]) if "budget" in trials else "-"),
        ("epochs (budget)", _values(trials["epochs"])),
        ("seeds", _values(trials["seed"])),
        ("device", _values(trials["gpu"])), ("hosts", _values(trials["host"])),
        ("compiled", _values(trials["compiled"]) if "compiled" in trials else "-"),
        ("code version", _values(trials["code_version"])), ("torch", _values(trials["torch_version"])),
        ("ray", _values(trials["ray_version"])),
        ("started / ended (UTC)", f"{_when(trials['started_at'].min())} / {_when(trials['ended_at'].max())}"),
    ]
    body = pd.DataFrame(rows, columns=["what", "value"]).to_html(index=False, header=False, border=0)
    sweep = store.read_sweep(experiment)
    sweep_html = f"<details><summary>the sweep file it ran</summary><pre>{_e(sweep)}</pre></details>" if sweep else ""
    return f"<div class='scroll'>{body}</div>{sweep_html}"


def write_report(store, out: str | Path, experiment: str = "") -> Path:
    """Write OUT/report.html for the store (or one experiment); returns its path."""
    read_trials(store, experiment, ["trial_id"])  # one clear line when there is nothing to report
    data = load_table_data(store, experiment)
    trials = data["trials"]
    several = trials["experiment"].nunique() > 1
    tables = list(tables_of(data))
    summaries, sections, contents = [], {}, {}
    for name, group, mine, summary, alone in tables:
        summaries.append(_summary_html(name, summary, several))
        part = mine["trials"][mine["trials"]["group"] == group]
        (frame, _), = build_tables(part).values()
        compared = compare_paper(summary.paper_table, frame, part)
        base = _anchor(name, group)
        figures = figures_for_group(group, mine, summary, alone)
        claims = [f for f in figures if f.kind == "claims"]
        others = [f for f in figures if f.kind != "claims"]
        body = [f"<h3 id='{base}'>{_e(group)}</h3>"]
        not_compared = budget_line(compared)
        if not_compared:
            body.append(f"<p class='meta'>{_e(not_compared)}</p>")
        body += [f"<h4 id='{base}-table'>Table</h4>", _table_html(group, compared)]
        if claims:
            body += [f"<h4 id='{base}-claims'>Claims: paired differences and effect against epoch</h4>",
                     f"<p class='caption'>{_e(METHOD)}</p>", *map(_figure_html, claims)]
        effects = _effects_html(part[part["status"].isin(FINAL)])
        if effects:
            body += [f"<h4 id='{base}-effects'>Factor effects on best test accuracy</h4>", effects]
        if others:
            body += [f"<h4 id='{base}-figures'>Figures</h4>", *map(_figure_html, others)]
        sections.setdefault(name, []).append("\n".join(body))
        contents.setdefault(name, []).append(
            f"<li><a href='#{base}'>{_e(group)}</a>: <a href='#{base}-table'>table</a>"
            + (f", <a href='#{base}-claims'>claims</a>" if claims else "")
            + (f", <a href='#{base}-effects'>effects</a>" if effects else "")
            + (f", <a href='#{base}-figures'>figures</a>" if others else "") + "</li>")
    nav = ["<li><a href='#summary'>Summary</a></li>"]
    page_sections = []
    for name in sections:
        exp_trials = trials[trials["experiment"] == name]
        anchor = _anchor("exp", name)
        nav.append(f"<li><a href='#{anchor}'>Experiment {_e(name)}</a><ol>{''.join(contents[name])}"
                   f"<li><a href='#{anchor}-provenance'>provenance</a></li></ol></li>")
        page_sections.append("\n".join([f"<h2 id='{anchor}'>Experiment {_e(name)}</h2>", *sections[name],
                                        f"<h3 id='{anchor}-provenance'>Provenance</h3>",
                                        _provenance(store, name, exp_trials)]))
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>scs-sweep report</title><style>{STYLE}</style></head><body>",
        "<h1>scs-sweep report</h1>",
        f"<p class='meta'>store {_e(store.uri)}; {len(trials)} trials in {trials['experiment'].nunique()} "
        f"experiment(s); written {time.strftime('%Y-%m-%d %H:%M')}.</p>",
        f"<nav><h2>Contents</h2><ol>{''.join(nav)}</ol></nav>",
        f"<h2 id='summary'>Summary</h2><p class='caption'>{_e(METHOD)}</p>", *summaries,
        *page_sections, "</body></html>"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text("\n".join(page))
    tmp.replace(path)
    return path
