"""`scs-sweep report`: one self-contained HTML file that says first what the store's trials say about the paper.

The page reads top to bottom:
1. the paper it reproduces (title, authors, link), and the bottom line: one bold sentence saying what the
   run decided and what it did not;
2. a contents list;
3. the summary, per table: its budget, then per claim two verdicts in their own words (at this run's
   budget: supported / contradicted / undecided; the paper's claim: judged only at the paper's budget,
   else "not tested"), our effect with its interval and P(A > B), the paper's own effect beside it, where
   the effect is heading with training; then how the variants rank against the paper's (the comparison
   that does not need the paper's budget), the strongest factor effects, and whether the learning
   curves were still rising; the method, once, folded away;
4. per experiment and table: the table (best and final accuracy, seconds per epoch; columns that never
   vary said once in its caption) with its per-seed values as a CSV to download, the claim figures, the
   factor effects (A - B, simple effects under their interaction), the other figures (each naming the
   paper's figure it reproduces), and the provenance (code version, device, data, budget, the sweep file).
Figures are SVGs (vector, text kept as text: sharp on high-DPI screens), embedded as data: URIs, and the
style sheet is inline, so the file references nothing outside itself. It fits an 800-pixel window with no
text under 10 pixels (figures.py says how), and prints without cut tables.
"""
from __future__ import annotations

import base64
import html
import io
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from common.vocabulary import PAPER_TEST_IMAGES, PAPER_TRAIN_IMAGES

from .claims import DELTA, NOT_JUDGED, NOT_TESTED
from .figures import figures_for_group, gini_table
from .paper import CITATION, table_number, where_in_paper
from .stats import Interval
from .summary import RANK_NOTE
from .table_data import groups_of, load_table_data
from .tables import ACCURACY_NOTE, budget_line, build_tables, compare_paper, read_trials, render
from .variants import LABEL_COLUMNS, variant_label, with_settings

__all__ = ["write_report", "REPORT_FILE", "summary_lines", "claim_detail", "bottom_line", "rank_text"]

REPORT_FILE = "report.html"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1000px;
     padding:0 15px;color:#222;line-height:1.45;font-size:15px}
h1{margin-bottom:.2em;font-size:26px} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.8em;border-bottom:1px solid #eee} h4{margin:1.4em 0 .4em}
a{color:#0b57d0} .meta,.caption,figcaption{color:#444;font-size:13px}
.bottom{font-size:17px;background:#fff8e1;border-left:4px solid #9a6700;padding:.6em .8em;margin:1em 0}
.budget{font-size:14px;background:#f3f6fb;border-left:4px solid #0b57d0;padding:.4em .7em}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:.4em 0}
td,th{border:1px solid #ccc;padding:2px 5px;text-align:left;vertical-align:top} th{background:#f3f3f3}
td{white-space:nowrap}
table.effects td.effect{white-space:normal} table.effects tr.interaction td{font-weight:600}
table.effects tr.simple td.effect{padding-left:2.2em} table.effects tr.simple td{color:#333;background:#fafafa}
table.settle tr.claim th{background:#fff;font-size:13px;padding-top:.5em;white-space:normal}
figure{margin:1em 0 1.6em} figure img{max-width:100%;height:auto;border:1px solid #eee}
.badge{display:inline-block;text-align:center;border-radius:3px;padding:0 .45em;margin:.15em .4em .15em 0;
       font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.v-supported{background:#1a7f37} .v-contradicted{background:#b42318} .v-undecided{background:#9a6700}
.v-not-judged{background:#666} .v-not-tested{background:#5b6b8c}
ul.summary{padding-left:0;list-style:none} ul.summary li{margin:.8em 0;font-size:14px}
ul.summary .detail{display:block;color:#333;font-size:13px}
nav ol{margin:.2em 0;padding-left:1.4em} nav li{font-size:14px}
details{margin:.6em 0} details summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.6em;font-size:12px;overflow:auto}
@media print{body{max-width:none;font-size:11pt} figure,table,ul.summary li{break-inside:avoid}
             a{color:inherit;text-decoration:none} .scroll{overflow:visible} details{display:block}}
"""
METHOD = (f"Every effect and claim here is a difference between variants computed within each seed (variants "
          f"that share a seed start from identical weights), then averaged over seeds with a 95 % t-interval "
          f"over seeds; the factor effects use the same method. P(A > B) is the probability that A beats B on a "
          f"new seed (the t predictive distribution of one more per-seed difference), beside how many measured "
          f"seeds it did. Accuracy claims use a margin of {DELTA:g}. Each claim gets two verdicts. At this "
          f"run's budget: supported or contradicted when the whole interval lies on one side of the threshold, "
          f"else undecided, with the seeds that would decide it at this budget (80 % power, if the effect and "
          f"its spread stay as measured). The paper's claim: judged the same way, but only from trials that ran "
          f"the paper's budget (CIFAR-10, all its images, its epochs); otherwise \"not tested at the paper's "
          f"budget\". \"Not judged\" marks what cannot be judged at all: accuracy on data other than CIFAR-10, "
          f"times from trials that shared their node. The paper's own effect is the same statistic on its table, "
          f"one run per variant with no spread. Rank agreement is Spearman's rho between our variant means and "
          f"the paper's values, with a percentile bootstrap interval over our seeds.")


def _e(text) -> str:
    return html.escape(str(text))


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in p) for p in parts)


def _html(frame: pd.DataFrame) -> str:
    """A frame as an HTML table (pandas escapes every cell), in a box that scrolls rather than widen the page."""
    return f"<div class='scroll'>{frame.to_html(index=False, border=0, classes='data', escape=True)}</div>"


def _badge(kind: str, verdict: str) -> str:
    css = "v-not-tested" if verdict == NOT_TESTED else "v-" + verdict.replace(" ", "-")
    return f"<span class='badge {css}'>{_e(kind)}: {_e(verdict)}</span>"


def _csv_link(filename: str, frame: pd.DataFrame, text: str) -> str:
    """A link that downloads `frame` as a CSV file, the data inside the page (a data: URI)."""
    data = base64.b64encode(frame.to_csv(index=False).encode()).decode()
    return f"<a download='{_e(filename)}' href='data:text/csv;base64,{data}'>{_e(text)}</a>"


# ---------------------------------------------------------------------------------------------
# The bottom line and the summary
# ---------------------------------------------------------------------------------------------
def _on_claimed_side(v) -> bool:
    e = v.interval.estimate
    return v.claim.side_of(Interval(e, e, e, v.interval.n)) == "supported"


def bottom_line(summaries: list) -> str:
    """One sentence: what the run decided about the paper's claims and what it did not, where the effects
    point, and how the variants rank against the paper's."""
    verdicts = [v for s in summaries for v in s.verdicts]
    accuracy = [v for v in verdicts if not v.claim.time and v.budget_verdict != NOT_JUDGED]
    parts = []
    tested = [v for v in accuracy if v.paper_verdict not in (NOT_TESTED, NOT_JUDGED)]
    notes = sorted({s.budget_note for s in summaries if s.budget_note})
    if accuracy and not tested:
        where = notes[0].split(",")[0] if len(notes) == 1 else "below the paper's budget"
        parts.append(f"Nothing about the paper's accuracy claims is decided at {where}")
    elif tested:
        c = Counter(v.paper_verdict for v in tested)
        parts.append(f"At the paper's budget, of its {len(tested)} accuracy claims tested here {c['supported']} "
                     f"{'is' if c['supported'] == 1 else 'are'} supported, {c['contradicted']} contradicted and "
                     f"{c['undecided']} undecided")
    if accuracy and not tested:
        c = Counter(v.budget_verdict for v in accuracy)
        rest = [f"{c[w]} {w}" for w in ("contradicted", "undecided") if c[w]]
        parts.append(f"at this budget {c['supported']} of {len(accuracy)} {'is' if c['supported'] == 1 else 'are'} "
                     f"supported" + (f", {' and '.join(rest)}" if rest else ""))
    settled = {s.settle.to_json(): s.settle for s in summaries if s.settle is not None}
    for record in settled.values():
        parts.append(record.counts_text())
    measured = [v for v in accuracy if v.interval.n]
    if measured:
        parts.append(f"{sum(map(_on_claimed_side, measured))} of {len(measured)} effects point the paper's way")
    ranks = rank_text([s.rank for s in summaries if s.rank is not None])
    if ranks:
        parts.append(ranks)
    times = [v for v in verdicts if v.claim.time]
    if times and all(v.budget_verdict == NOT_JUDGED for v in times):
        parts.append("time claims not judged (trials shared their nodes)")
    if not parts:
        return "No claim of the paper applies to these trials."
    sentence = "; ".join(parts) + "."
    return sentence[0].upper() + sentence[1:]


def rank_text(ranks: list) -> str:
    """How the variants rank against the paper's, in words that say what rho means: agree (its interval
    above 0), agree only partly (the interval holds 0), disagree (below 0); '' with nothing compared (the
    paper's values say nothing about data other than CIFAR-10, so summary.py compares only there)."""
    if len(ranks) == 1:
        return ranks[0].sentence()
    if not ranks:
        return ""
    words = Counter(r.agreement for r in ranks)
    said = [f"{words[w]} {what}" for w, what in (("agree", "agree"), ("partly", "agree only partly"),
                                                 ("disagree", "disagree"), ("", "have one seed: no interval"))
            if words[w]]
    return (f"of {len(ranks)} tables' variant rankings, {', '.join(said)} with the paper's (rho "
            f"{min(r.rho for r in ranks):+.2f} to {max(r.rho for r in ranks):+.2f})")


def claim_detail(summary, v) -> str:
    """What the summary says under a claim: the effect and its interval, P(A > B), the paper's effect, why
    each verdict, and where the effect is heading with training."""
    if not v.interval.n:
        return f"At this budget: {v.budget_reason}."
    reading = summary.reading(v)
    paper = v.paper_effect_text()
    out = f"{v.effect} = {v.interval_text} over {v.interval.n} seed(s); {v.prob_text()}."
    if paper:
        out += f" {paper[0].upper()}{paper[1:]}."
    out += f" At this budget: {v.budget_reason}."
    if v.paper_verdict not in (NOT_TESTED, NOT_JUDGED) and v.paper_reason != v.budget_reason:
        out += f" The paper's claim: {v.paper_reason}."
    if reading:
        out += f" Effect against epoch: {reading}."
    return out


def summary_lines(summary) -> list[str]:
    """One plain-text line per claim, as the page prints it."""
    return [f"{v.claim.name}: at this budget {v.budget_verdict.upper()}; the paper's claim {v.paper_verdict.upper()}. "
            f"{claim_detail(summary, v)}" for v in summary.verdicts]


def _strongest_text(summary) -> str:
    if not summary.strongest:
        return ""
    items = [f"{e.name} {e.interval.text()}" + (f" ({arch})" if len({a for a, _ in summary.strongest}) > 1 else "")
             for arch, e in summary.strongest]
    return "; ".join(items)


def _summary_html(experiment: str, summary, several: bool) -> str:
    title = f"{experiment}: {summary.group}" if several else summary.group
    budget = (f"Budget: {summary.budget_note}. The paper's claims are about its own budget, so none is tested "
              f"here: each claim gets a verdict at this budget, and the effect against epoch says whether the "
              f"pattern is on its way to the paper's." if summary.budget_note else
              "Budget: the paper's (CIFAR-10, all images, its epochs): the paper's claims are tested.")
    parts = [f"<h3 id='{_anchor('summary', experiment, summary.group)}'>{_e(title)}</h3>",
             f"<p class='budget'>{_e(budget)} {summary.n_trials} trials over {summary.n_seeds} seed(s).</p>"]
    if summary.paper_table and not table_number(summary.paper_table):  # one of the paper's other experiments
        parts.insert(1, f"<p class='meta'>Reproduces the paper's {_e(where_in_paper(summary.paper_table))} "
                        f"({_e(summary.paper_table)}).</p>")
    items = [f"<li><b>{_e(v.claim.name)}</b><br>{_badge('at this budget', v.budget_verdict)}"
             f"{_badge('the paper’s claim', v.paper_verdict)}<span class='detail'>{_e(claim_detail(summary, v))}"
             f"</span></li>" for v in summary.verdicts]
    parts.append(f"<ul class='summary'>{''.join(items)}</ul>" if items else
                 "<p>No claim of the paper applies to these variants.</p>")
    if summary.rank is not None:
        parts.append(f"<p><b>Rank agreement with the paper's {_e(summary.paper_table)}:</b> "
                     f"{_e(summary.rank.sentence()[0].upper() + summary.rank.sentence()[1:])}; "
                     f"{_e(summary.rank.text())}: {_e(RANK_NOTE)}.</p>")
    elif summary.rank_note:
        parts.append(f"<p><b>Rank agreement with the paper's {_e(summary.paper_table)}:</b> "
                     f"{_e(summary.rank_note)}.</p>")
    strongest = _strongest_text(summary)
    if strongest:
        parts.append(f"<p><b>Strongest factor effects</b> (A - B; 95 % intervals excluding 0): {_e(strongest)}.</p>")
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


def _effects_html(rows: list) -> str:
    """Factor effects (GroupSummary.effects) as A - B, each simple effect indented under the interaction it
    breaks down."""
    if not rows:
        return ""
    several = len({arch for arch, _ in rows}) > 1
    head = "".join(f"<th>{_e(h)}</th>" for h in (["Architecture"] if several else []) +
                   ["Effect (A - B)", "Estimate", "95 % CI", "Seeds"])
    body = []
    for arch, e in rows:
        i = e.interval
        ci = "-" if not i.has_interval else f"[{i.low:+.4f}, {i.high:+.4f}]"
        name = e.name if e.kind != "simple" else f"{e.name} (under {e.parent})"
        cells = ([arch] if several else []) + [name, f"{i.estimate:+.4f}", ci, str(i.n)]
        tds = "".join(f"<td class='effect'>{_e(c)}</td>" if k == (1 if several else 0) else f"<td>{_e(c)}</td>"
                      for k, c in enumerate(cells))
        body.append(f"<tr class='{e.kind}'>{tds}</tr>")
    note = ("Each main effect (A - B) is the mean difference between variants that differ only in that factor: "
            "level A minus the reference level B (SCS - Conv2d, ReLU - None, MaxAbsPool2d - MaxPool2d). An "
            "interaction (A x B) is how much A's effect changes with B; under an interaction that is large or "
            "whose interval excludes 0, the indented rows give each factor's simple effect within each level of "
            "the other (what the main effects average away). Each is computed within each seed and averaged over "
            "seeds, the method the claims use.")
    return (f"<p class='caption'>{_e(note)}</p><div class='scroll'><table class='effects'><thead><tr>{head}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table></div>")


def _settle_html(summary) -> str:
    """A settled group: its design, each claim's repeated interval at every look, and the seeds it cost."""
    record = summary.settle
    design = record.designs.get(summary.group) if record is not None else None
    if design is None or not record.claims.get(summary.group):
        return ""
    head = (f"A group-sequential design fixed before the first trial: looks at {', '.join(map(str, design.looks))} "
            f"seeds, {design.spending} alpha spending, alpha {design.alpha:g} two-sided over {design.claims} "
            f"claim(s) (Bonferroni: {design.alpha_per_claim:.4f} each); critical values c_k "
            f"{', '.join(f'{c:.2f}' for c in design.critical)} for the paired t statistic (simulated). A claim is "
            f"decided when its repeated interval, mean +/- c_k s/sqrt(n), lies wholly on one side of its "
            f"threshold: whatever the look at which it stops, the chance that any of its intervals misses the "
            f"true effect is at most alpha / K (Jennison & Turnbull 2000, ch. 9).")
    columns = ("Look", "Seeds", "c_k", "Estimate", "Repeated interval", "Decision")
    body = []
    looks = len(design.looks)
    for name, r in record.claims[summary.group].items():  # each claim a heading row over its looks: narrow
        spec = r.spec or {}
        side = "above" if spec.get("side", "above") == "above" else "below"
        against = (f" (supported when the whole interval is {side} {spec['threshold']:+g})"
                   if "threshold" in spec else "")
        body.append(f"<tr class='claim'><th colspan='{len(columns)}'>{_e(name)}<span class='meta'>{_e(against)}</span>"
                    f"</th></tr>")
        for p in r.path:
            low = "-" if p.low != p.low else f"[{p.low:+.4f}, {p.high:+.4f}]"
            ended = r.closed and p is r.at()
            decision = (r.decided or r.when(looks)) if ended else "open"
            cells = (p.look, p.seeds, f"{p.c:.2f}", f"{p.estimate:+.4f}", low, decision)
            body.append("<tr>" + "".join(f"<td>{_e(str(c))}</td>" for c in cells) + "</tr>")
    planned, run = record.fixed_trials, record.trials_run
    epochs = max(record.epochs.values(), default=0)
    spent = (f"{run} trials trained ({run * epochs:,} trial-epochs) against the {planned} ({planned * epochs:,}) "
             f"a fixed design at {design.max_seeds} seeds needs, for the whole sweep"
             + (f"; {record.stopped}" if record.stopped else "") + ".")
    if not body:
        return ""
    head_row = "".join(f"<th>{c}</th>" for c in columns)
    return (f"<p class='caption'>{_e(head)}</p><div class='scroll'><table class='data settle'><thead><tr>{head_row}"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div><p class='meta'>{_e(spent)}</p>")


def _figure_html(figure) -> str:
    data = base64.b64encode(figure.svg()).decode()
    figure.close()
    return (f"<figure data-kind='{_e(figure.kind)}'><img alt='{_e(figure.title)}' width='{figure.css_width}' "
            f"src='data:image/svg+xml;base64,{data}'><figcaption>{_e(figure.caption or figure.title)}</figcaption>"
            f"</figure>")


def _per_seed(part: pd.DataFrame) -> pd.DataFrame:
    """Every trial of a table as a row: its variant, seed, status and what the table averages."""
    rows = with_settings(part)
    out = pd.DataFrame({"experiment": rows["experiment"], "table": rows["group"],
                        "variant": [variant_label(r) for _, r in rows.iterrows()], "seed": rows["seed"],
                        "trial_id": rows["trial_id"], "status": rows["status"], "epochs_done": rows["epochs_done"],
                        "val_acc": rows["val_acc"], "final_acc": rows["final_acc"],
                        "train_s_per_epoch": rows["train_time_s"], "eval_s_per_epoch": rows["eval_time_s"]})
    return out.sort_values(["variant", "seed"])


def _claim_values(summary) -> pd.DataFrame:
    return pd.DataFrame([{"claim": v.claim.name, "statistic": v.claim.effect, "seed": seed,
                          "value": value, "at_this_budget": v.budget_verdict, "papers_claim": v.paper_verdict}
                         for v in summary.verdicts for seed, value in v.values])


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
        ("training images",
         ", ".join(f"{v:,}" if v else _all(trials, PAPER_TRAIN_IMAGES) for v in sorted(set(n_train)))),
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


def _section(name: str, group: str, mine: dict, summary, alone) -> tuple[str, str]:
    """(the section of one table, its contents entry)."""
    part = mine["trials"][mine["trials"]["group"] == group]
    (frame, _), = build_tables(part).values()
    compared = compare_paper(summary.paper_table, frame, part)
    base = _anchor(name, group)
    figures = figures_for_group(group, mine, summary, alone)
    claims = [f for f in figures if f.kind == "claims"]
    others = [f for f in figures if f.kind != "claims"]
    downloads = [_csv_link(f"{name}_{group}_trials.csv".replace("/", "-"), _per_seed(part),
                           "every trial's values per seed (CSV)")]
    if summary.verdicts and any(v.values for v in summary.verdicts):
        downloads.append(_csv_link(f"{name}_{group}_claims.csv".replace("/", "-"), _claim_values(summary),
                                   "each claim's per-seed values (CSV)"))
    body = [f"<h3 id='{base}'>{_e(group)}</h3>"]
    not_compared = budget_line(compared)
    if not_compared:
        body.append(f"<p class='meta'>{_e(not_compared)}</p>")
    body += [f"<h4 id='{base}-table'>Table</h4>", _table_html(group, compared),
             f"<p class='meta'>Download: {' · '.join(downloads)}</p>"]
    settled = _settle_html(summary)
    if settled:
        body += [f"<h4 id='{base}-settle'>Sequential seeds: the design and each claim's path</h4>", settled]
    if claims:
        body += [f"<h4 id='{base}-claims'>Claims: paired differences and effect against epoch</h4>",
                 *map(_figure_html, claims)]
    effects = _effects_html(summary.effects)
    if effects:
        body += [f"<h4 id='{base}-effects'>Factor effects on best test accuracy</h4>", effects]
    if others:
        body.append(f"<h4 id='{base}-figures'>Figures</h4>")
        for figure in others:
            body.append(_figure_html(figure))
            if figure.kind == "saliency":
                gini = gini_table(part, mine["saliency"][mine["saliency"]["trial_id"].isin(part["trial_id"])])
                if not gini.empty:
                    body.append("<p class='caption'>The saliency maps' Gini coefficient per variant: each trial's "
                                "mean over its images, then the mean over seeds and its 95 % t-interval.</p>"
                                + _html(gini))
    entry = (f"<li><a href='#{base}'>{_e(group)}</a>: <a href='#{base}-table'>table</a>"
             + (f", <a href='#{base}-settle'>sequential seeds</a>" if settled else "")
             + (f", <a href='#{base}-claims'>claims</a>" if claims else "")
             + (f", <a href='#{base}-effects'>effects</a>" if effects else "")
             + (f", <a href='#{base}-figures'>figures</a>" if others else "") + "</li>")
    return "\n".join(body), entry


_GROUPS: list = []  # the groups a forked worker draws (set before the pool forks: nothing is pickled)


def _section_of(index: int) -> tuple[str, str]:
    return _section(*_GROUPS[index])


def _sections(groups: list) -> list[tuple[str, str]]:
    """Every group's section, drawn in parallel where the machine has cores to spare: drawing and encoding
    the figures is most of a report's time (about 0.2 s a figure), and groups are independent."""
    global _GROUPS
    workers = min(len(groups), os.cpu_count() or 1)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_section(*group) for group in groups]
    _GROUPS = groups
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_section_of, range(len(groups))))
    finally:
        _GROUPS = []


def write_report(store, out: str | Path, experiment: str = "") -> Path:
    """Write OUT/report.html for the store (or one experiment); returns its path."""
    read_trials(store, experiment, ["trial_id"])  # one clear line when there is nothing to report
    data = load_table_data(store, experiment)
    trials = data["trials"]
    several = trials["experiment"].nunique() > 1
    groups = list(groups_of(data, store))
    summaries = [summary for _, _, _, summary, _ in groups]
    sections, contents = {}, {}
    for (name, *_), (section, entry) in zip(groups, _sections(groups)):
        sections.setdefault(name, []).append(section)
        contents.setdefault(name, []).append(entry)
    nav = ["<li><a href='#summary'>Summary</a></li>"]
    page_sections = []
    for name in sections:
        anchor = _anchor("exp", name)
        nav.append(f"<li><a href='#{anchor}'>Experiment {_e(name)}</a><ol>{''.join(contents[name])}"
                   f"<li><a href='#{anchor}-provenance'>provenance</a></li></ol></li>")
        page_sections.append("\n".join([f"<h2 id='{anchor}'>Experiment {_e(name)}</h2>", *sections[name],
                                        f"<h3 id='{anchor}-provenance'>Provenance</h3>",
                                        _provenance(store, name, trials[trials["experiment"] == name])]))
    paper = (f"<a href='{CITATION['url']}'>{_e(CITATION['authors'])} ({CITATION['year']}), “{_e(CITATION['title'])}”, "
             f"{_e(CITATION['arxiv'])}</a>")
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(CITATION['title'])}: a reproduction</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(CITATION['title'])}: a reproduction</h1>",
        f"<p class='meta'>The paper: {paper}. Reproduced with scs-sweep from the store {_e(store.uri)}: "
        f"{len(trials)} trials in {trials['experiment'].nunique()} experiment(s); written "
        f"{time.strftime('%Y-%m-%d %H:%M')}.</p>",
        f"<p class='bottom' id='bottom-line'><b>{_e(bottom_line(summaries))}</b></p>",
        f"<nav><h2>Contents</h2><ol>{''.join(nav)}</ol></nav>",
        "<h2 id='summary'>Summary</h2>",
        *[_summary_html(name, summary, several) for name, _, _, summary, _ in groups],
        f"<details id='method'><summary>How the verdicts are reached</summary><p class='caption'>{_e(METHOD)}</p>"
        f"</details>",
        *page_sections, "</body></html>"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text("\n".join(page))
    tmp.replace(path)
    return path
