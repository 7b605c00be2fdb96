"""The paper's Tables 1-8 from the store, with the paper's columns and labels, and the comparison.

Rows are grouped by variant (mean ± std and n over seeds); `--compare-paper` adds the paper's value
(results/reference/paper_tables.csv, copied from shared/reference, i.e. arXiv 2307.13855 Tables 1-8)
and our minus theirs, matched by the label columns, then checks the paper's qualitative claims.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

LABELS = {
    "layer": {"conv": "Conv2d", "scs": "SCS", "sdp": "SharpenedSDP"},
    "activation": {"relu": "ReLU", "none": "None"},
    "pooling": {"max": "MaxPool2d", "maxabs": "MaxAbsPool2d"},
    "normalization": {"batchnorm": "BatchNorm2d", "none": "None"},
}
ARCH_LABELS = {"rohrer25k": "Rohrer25K", "rohrer47k": "Rohrer47K", "rohrer68k": "Rohrer68K",
               "rohrer100k": "Rohrer100K", "rohrer583k": "Rohrer583K", "resnet18": "ResNet18",
               "resnet20": "ResNet20"}
LABEL_COLUMNS = ["Architecture", "Layer", "Activation", "Pooling", "Dropout", "Normalization", "Image Dim."]
VALUE_COLUMNS = {"Val. Acc.": "val_acc", "Train Time (s)": "train_time_s", "Eval Time (s)": "eval_time_s"}
PAPER_CSV = Path(__file__).parent / "reference" / "paper_tables.csv"


def labelled(trials: pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame({
        "Table": trials["group"],
        "Architecture": trials["arch"].map(ARCH_LABELS),
        "Layer": trials["layer"].map(LABELS["layer"]),
        "Activation": trials["activation"].map(LABELS["activation"]),
        "Pooling": trials["pooling"].map(LABELS["pooling"]),
        "Dropout": "None",
        "Normalization": trials["normalization"].map(LABELS["normalization"]),
        "Image Dim.": trials["image_dim"].map(lambda d: f"{d}x{d}"),
    })
    for label, col in VALUE_COLUMNS.items():
        df[label] = trials[col].astype(float)
    return df


def build_tables(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{"table1": frame, ...}: one row per variant, values as mean, std and n over seeds."""
    trials = trials[trials["status"].isin(["done", "pruned", "running", "stopped"])]
    out = {}
    for group, part in labelled(trials).groupby("Table", sort=True):
        agg = part.groupby(LABEL_COLUMNS, sort=True)
        frame = agg[list(VALUE_COLUMNS)].mean()
        for label in VALUE_COLUMNS:
            frame[f"{label} std"] = agg[label].std(ddof=1)
        frame["n"] = agg.size()
        out[group] = frame.reset_index()
    return out


def compare_paper(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    if not table.startswith("table") or not table[5:].isdigit():
        return frame
    paper = pd.read_csv(PAPER_CSV, dtype=str, keep_default_na=False)  # "None" is a label, not NA
    paper = paper[paper["table"] == table[5:]].rename(columns={
        "architecture": "Architecture", "layer": "Layer", "activation": "Activation", "pooling": "Pooling",
        "dropout": "Dropout", "normalization": "Normalization", "image_dim": "Image Dim.",
        "val_acc": "Paper Val. Acc.", "train_time_s": "Paper Train Time (s)", "eval_time_s": "Paper Eval Time (s)"})
    merged = frame.merge(paper.drop(columns=["table"]), on=LABEL_COLUMNS, how="left")
    for label in VALUE_COLUMNS:
        merged[f"Paper {label}"] = merged[f"Paper {label}"].astype(float)
    merged["Δ Val. Acc."] = merged["Val. Acc."] - merged["Paper Val. Acc."]
    return merged


def _cell(value, std, n, digits) -> str:
    if pd.isna(value):
        return "-"
    text = f"{value:.{digits}f}"
    if n > 1 and not pd.isna(std):
        text += f" ± {std:.{digits}f}"
    return text


def render(frame: pd.DataFrame, fmt: str, title: str) -> str:
    """Markdown, CSV or LaTeX text of one table, in the paper's column order."""
    shown = frame[LABEL_COLUMNS].copy()
    for label, digits in (("Val. Acc.", 4), ("Train Time (s)", 3), ("Eval Time (s)", 3)):
        shown[label] = [_cell(v, s, n, digits) for v, s, n in
                        zip(frame[label], frame[f"{label} std"], frame["n"])]
    shown["n"] = frame["n"].astype(int)
    for extra in ("Paper Val. Acc.", "Δ Val. Acc."):
        if extra in frame:
            shown[extra] = [("-" if pd.isna(v) else f"{v:+.4f}" if extra.startswith("Δ") else f"{v:.4f}")
                            for v in frame[extra]]
    if fmt == "csv":
        return shown.to_csv(index=False).rstrip("\n")
    if fmt == "latex":
        cols = "l" * len(shown.columns)
        lines = [f"% {title}", f"\\begin{{tabular}}{{{cols}}}", "\\hline",
                 " & ".join(shown.columns) + " \\\\", "\\hline"]
        lines += [" & ".join(str(v).replace("±", "$\\pm$") for v in row) + " \\\\" for row in shown.values]
        lines += ["\\hline", "\\end{tabular}"]
        return "\n".join(lines).replace("Δ", "$\\Delta$")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.values]
    return "\n".join([f"### {title}", "", header, rule, *rows])


def claims(frames: dict[str, pd.DataFrame]) -> list[str]:
    """The paper's qualitative claims, each marked confirmed or contradicted by our data."""
    lines = []
    for table, f in sorted(frames.items()):
        acc = {(lay, act, pool): v for lay, act, pool, v in
               zip(f["Layer"], f["Activation"], f["Pooling"], f["Val. Acc."])}
        scs_none = [v for (lay, act, _), v in acc.items() if lay == "SCS" and act == "None"]
        conv_relu = [v for (lay, act, _), v in acc.items() if lay == "Conv2d" and act == "ReLU"]
        if scs_none and conv_relu:
            gap = max(scs_none) - max(conv_relu)
            verdict = "confirmed" if abs(gap) <= 0.02 or gap > 0 else "contradicted"
            lines.append(f"{table}: SCS without ReLU ≈ Conv2d with ReLU (best {max(scs_none):.4f} vs "
                         f"{max(conv_relu):.4f}): {verdict}")
        if f["Architecture"].str.startswith("Rohrer").all():
            fails = [v for (lay, act, pool), v in acc.items() if act == "ReLU" and pool == "MaxAbsPool2d"]
            others = [v for (lay, act, pool), v in acc.items() if not (act == "ReLU" and pool == "MaxAbsPool2d")]
            if fails and others:
                verdict = "confirmed" if min(fails) < min(others) else "contradicted"
                lines.append(f"{table}: ReLU + MaxAbsPool2d trains worst in the Rohrer nets "
                             f"(worst {min(fails):.4f} vs {min(others):.4f} otherwise): {verdict}")
        scs = f[f["Layer"] == "SCS"]
        conv = f[f["Layer"] == "Conv2d"]
        if len(scs) and len(conv):
            slower = scs["Train Time (s)"].mean() > conv["Train Time (s)"].mean()
            faster_eval = scs["Eval Time (s)"].mean() < conv["Eval Time (s)"].mean()
            lines.append(f"{table}: SCS trains slower than Conv2d: {'confirmed' if slower else 'contradicted'}; "
                         f"SCS evaluates faster: {'confirmed' if faster_eval else 'contradicted'}")
    return lines
