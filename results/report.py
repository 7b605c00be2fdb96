"""`scs-sweep report`: one self-contained HTML file with everything the store knows.

Per experiment (sweep): its provenance (code version, torch/ray versions, device, data set and subset,
budget, seeds, the sweep file it ran), then per table of trials: the table with 95 % intervals and the
paper's values, the paper's claims with verdicts, the factor effects, and every figure of figures.py.
Figures are PNGs embedded as data: URIs and the style sheet is inline, so the file references nothing
outside itself: it reads offline and can be mailed as it is.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import pandas as pd

from .claims import check_claims
from .figures import figures_for_group, load_figure_data
from .tables import FINAL, build_tables, compare_paper, effect_rows, paper_table_of, read_trials, render

__all__ = ["write_report", "REPORT_FILE"]

REPORT_FILE = "report.html"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
     padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em} h3{margin-top:1.6em}
table{border-collapse:collapse;font-size:12px;margin:.6em 0} td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left} th{background:#f3f3f3} .meta{color:#666;font-size:13px}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eee} figcaption{font-size:12px;color:#555}
.v-supported{color:#1a7f37;font-weight:600} .v-contradicted{color:#b42318;font-weight:600}
.v-inconclusive{color:#9a6700;font-weight:600} ul.claims li{margin:.3em 0;font-size:13px}
pre{background:#f6f8fa;padding:.6em;font-size:12px;overflow:auto} nav li{font-size:13px}
"""


def _e(text) -> str:
    return html.escape(str(text))


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in p) for p in parts)


def _html_table(csv_text: str) -> str:
    frame = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in frame.values)
    return f"<table><tr>{head}</tr>{body}</table>"


def _values(series: pd.Series) -> str:
    values = sorted({str(v) for v in series.dropna()})
    return ", ".join(values) if values else "-"


def _provenance(store, experiment: str, trials: pd.DataFrame) -> str:
    n_train = trials["n_train"].fillna(0).astype(int) if "n_train" in trials else pd.Series([0])
    n_test = trials["n_test"].fillna(0).astype(int) if "n_test" in trials else pd.Series([0])
    rows = [
        ("trials", f"{len(trials)}: " + ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())),
        ("data set", _values(trials["dataset"])
         + (f" ({_values(trials['data_dir'])})" if "data_dir" in trials and trials["data_dir"].notna().any() else "")),
        ("training images", ", ".join(f"{v:,}" if v else "all (50,000)" for v in sorted(set(n_train)))),
        ("test images", ", ".join(f"{v:,}" if v else "all (10,000)" for v in sorted(set(n_test)))),
        ("budget", _values(trials["budget"]) if "budget" in trials else "-"),
        ("epochs (budget)", _values(trials["epochs"])),
        ("seeds", _values(trials["seed"])),
        ("device", _values(trials["gpu"])), ("hosts", _values(trials["host"])),
        ("code version", _values(trials["code_version"])), ("torch", _values(trials["torch_version"])),
        ("ray", _values(trials["ray_version"])),
        ("started / ended", f"{trials['started_at'].dropna().min() if trials['started_at'].notna().any() else '-'}"
                            f" / {trials['ended_at'].dropna().max() if trials['ended_at'].notna().any() else '-'}"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    sweep = store.read_sweep(experiment)
    sweep_html = f"<details><summary>the sweep file it ran</summary><pre>{_e(sweep)}</pre></details>" if sweep else ""
    return f"<h3>Provenance</h3><table>{body}</table>{sweep_html}"


def _claims_html(group: str, trials: pd.DataFrame) -> str:
    verdicts = check_claims(paper_table_of(group, trials), trials, group)
    if not verdicts:
        return ""
    items = "".join(
        f"<li><span class='v-{v.verdict}'>{_e(v.verdict)}</span>: {_e(v.claim)}. {_e(v.effect)} = "
        f"{_e(v.interval_text)} over {v.interval.n} seed(s), threshold {_e(v.threshold)}. {_e(v.reason)}.</li>"
        for v in verdicts)
    return f"<h4>The paper's claims (95 % intervals over seeds)</h4><ul class='claims'>{items}</ul>"


def _effects_html(finished: pd.DataFrame) -> str:
    rows = effect_rows(finished)
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_e(arch)}</td><td>{_e(name)}</td><td>{i.estimate:+.4f}</td><td>"
                   f"{'-' if not i.has_interval else f'[{i.low:+.4f}, {i.high:+.4f}]'}</td></tr>"
                   for arch, name, i in rows)
    return ("<h4>Factor effects on best test accuracy</h4><p class='meta'>Each effect is the mean difference "
            "between variants that differ only in that factor (an interaction: the difference of that "
            "difference), from one OLS fit with the seed as a block; 95 % intervals.</p>"
            f"<table><tr><th>architecture</th><th>effect</th><th>estimate</th><th>95 % CI</th></tr>{body}</table>")


def _figure_html(figure) -> str:
    data = base64.b64encode(figure.png()).decode()
    return (f"<figure data-kind='{_e(figure.kind)}'><img alt='{_e(figure.title)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{_e(figure.title)}</figcaption></figure>")


def write_report(store, out: str | Path, experiment: str = "") -> Path:
    """Write OUT/report.html for the store (or one experiment); returns its path."""
    read_trials(store, experiment, ["trial_id"])  # one clear line when there is nothing to report
    data = load_figure_data(store, experiment)
    trials = data["trials"]
    sections, contents = [], []
    for name, exp_trials in trials.groupby("experiment", sort=True):
        exp_data = {k: (v[v["experiment"] == name] if "experiment" in v else v) for k, v in data.items()}
        anchor = _anchor("exp", name)
        contents.append(f"<li><a href='#{anchor}'>{_e(name)}</a></li>")
        parts = [f"<h2 id='{anchor}'>Experiment {_e(name)}</h2>", _provenance(store, name, exp_trials)]
        for (_, group), (frame, part) in build_tables(exp_trials).items():
            finished = part[part["status"].isin(FINAL)]
            parts.append(f"<h3 id='{_anchor(name, group)}'>{_e(group)}</h3>")
            compared = compare_paper(paper_table_of(group, part), frame, part)
            if compared.attrs.get("budget_note") and compared["Paper Val. Acc."].notna().any():
                parts.append(f"<p class='meta'>Not the paper's budget ({_e(compared.attrs['budget_note'])}): "
                             f"its values are shown for orientation, not compared.</p>")
            parts.append(_html_table(render(compared, "csv", group)))
            parts.append(_claims_html(group, part))
            parts.append(_effects_html(finished))
            parts += [_figure_html(f) for f in figures_for_group(group, exp_data)]
        sections.append("\n".join(p for p in parts if p))
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>scs-sweep report</title><style>{STYLE}</style></head><body>",
        "<h1>scs-sweep report</h1>",
        f"<p class='meta'>store {_e(store.uri)}; {len(trials)} trials in {trials['experiment'].nunique()} "
        f"experiment(s); written {time.strftime('%Y-%m-%d %H:%M')}. Tables hold the trials that ran their "
        f"whole budget; Val. Acc. is the best test accuracy over epochs, mean ± std over seeds.</p>",
        f"<nav><ul>{''.join(contents)}</ul></nav>", *sections, "</body></html>"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text("\n".join(page))
    tmp.replace(path)
    return path
