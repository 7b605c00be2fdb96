"""The paper's figures as PNGs from the store, and one report.html that shows tables and figures.

Each figure reads only store tables (pandas frames) and is skipped when its data is absent:
accuracy vs epoch and train/eval time bars per table, learned p per kernel per epoch (Fig 7),
weight norms per layer (Fig 2), Optuna p vs accuracy as parallel coordinates (Fig 8),
accuracy vs PGD eps per architecture (Figs 5, 6, 15-17) and saliency grids (Figs 3, 9-14).
"""
from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import ARCH_LABELS, LABELS, build_tables, render  # noqa: E402

__all__ = ["write_figures", "write_report", "variant_label"]


def variant_label(row) -> str:
    parts = [LABELS["layer"][row["layer"]], LABELS["activation"][row["activation"]],
             LABELS["pooling"][row["pooling"]]]
    if row.get("normalization") == "batchnorm":
        parts.append("BN")
    if row.get("p_mode") == "fixed" and row.get("p_value") == row.get("p_value"):
        parts.append(f"p={row['p_value']:.2g}")
    if row.get("seed"):
        parts.append(f"seed {row['seed']}")
    return " + ".join(parts)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_curves(trials: pd.DataFrame, epochs: pd.DataFrame, out: Path) -> list[Path]:
    paths = []
    merged = epochs.merge(trials, on=["experiment", "trial_id"], suffixes=("", "_trial"))
    for group, part in merged.groupby("group"):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for trial_id, rows in part.groupby("trial_id"):
            rows = rows.sort_values("epoch")
            ax.plot(rows["epoch"], rows["test_acc"], label=variant_label(rows.iloc[0]), lw=1.2)
        ax.set(xlabel="epoch", ylabel="test accuracy", title=f"{group}: accuracy per epoch")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / f"{_safe(group)}_accuracy.png"))
    return paths


def time_bars(trials: pd.DataFrame, out: Path) -> list[Path]:
    paths = []
    for group, part in trials.dropna(subset=["train_time_s"]).groupby("group"):
        labels = [variant_label(r) for _, r in part.iterrows()]
        x = np.arange(len(part))
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(part)), 4.2))
        ax.bar(x - 0.2, part["train_time_s"], 0.4, label="train s/epoch")
        ax.bar(x + 0.2, part["eval_time_s"], 0.4, label="eval s/epoch")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set(ylabel="seconds per epoch", title=f"{group}: train and eval time")
        ax.legend()
        paths.append(_save(fig, out / f"{_safe(group)}_times.png"))
    return paths


def p_per_kernel(trials: pd.DataFrame, layers: pd.DataFrame, out: Path) -> list[Path]:
    """Fig 7: the learned p of every kernel of the first sharpened layer, per epoch."""
    paths = []
    sharp = layers[layers["p_values"].notna() & layers["layer_type"].isin(["scs", "sdp"])]
    learned = trials[trials["p_mode"] == "learned"]
    for _, trial in learned.iterrows():
        rows = sharp[(sharp["trial_id"] == trial["trial_id"]) & (sharp["experiment"] == trial["experiment"])]
        if rows.empty or rows["epoch"].nunique() < 2:
            continue
        first = rows[rows["layer_index"] == rows["layer_index"].min()].sort_values("epoch")
        values = np.stack([np.asarray(v, dtype=float) for v in first["p_values"]])  # (epochs, kernels)
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(first["epoch"], values, lw=0.6, alpha=0.7)
        ax.set(xlabel="epoch", ylabel="p", title=f"{trial['group']} {variant_label(trial)}: p per kernel "
                                                 f"({first['layer_name'].iloc[0]})")
        paths.append(_save(fig, out / f"p_per_kernel_{_safe(trial['trial_id'])}.png"))
        if len(paths) >= 12:
            break
    return paths


def weight_norms(trials: pd.DataFrame, layers: pd.DataFrame, out: Path) -> list[Path]:
    """Fig 2: L2 norm of every layer's weights, per mini-batch where recorded, else per epoch."""
    paths = []
    for group, part in trials.groupby("group"):
        if not str(group).startswith("weight-norms"):
            continue
        for _, trial in part.iterrows():
            rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
            if rows.empty:
                continue
            fig, ax = plt.subplots(figsize=(7, 4.2))
            for name, per_layer in rows.groupby("layer_name", sort=False):
                per_layer = per_layer.sort_values("epoch")
                batches = [b for b in per_layer["weight_norm_per_batch"] if b is not None and len(b)]
                if batches:
                    series = np.concatenate([np.asarray(b) for b in batches])
                    ax.plot(np.arange(1, len(series) + 1), series, lw=0.8, label=name)
                    ax.set_xlabel("mini-batch")
                else:
                    ax.plot(per_layer["epoch"], per_layer["weight_norm"], lw=0.8, label=name)
                    ax.set_xlabel("epoch")
            ax.set(ylabel="weight L2 norm", title=f"{group}: weight norms")
            ax.legend(fontsize=5, ncol=3)
            paths.append(_save(fig, out / f"weight_norms_{_safe(trial['trial_id'])}.png"))
    return paths


def optuna_parallel(trials: pd.DataFrame, out: Path) -> list[Path]:
    """Fig 8: each Optuna trial a line from its p to its accuracy (two parallel axes)."""
    paths = []
    fixed = trials[(trials["p_mode"] == "fixed") & trials["group"].str.startswith("optuna-p")]
    for group, part in fixed.dropna(subset=["val_acc"]).groupby("group"):
        p, acc = part["p_value"].to_numpy(), part["val_acc"].to_numpy()
        p_norm = (np.log(p) - np.log(p.min())) / max(np.ptp(np.log(p)), 1e-9)
        a_norm = (acc - acc.min()) / max(np.ptp(acc), 1e-9)
        cmap = plt.get_cmap("viridis")
        fig, ax = plt.subplots(figsize=(5, 4.2))
        for pn, an, a in zip(p_norm, a_norm, a_norm):
            ax.plot([0, 1], [pn, an], color=cmap(a), lw=1.2, alpha=0.8)
        ax.set_xticks([0, 1], ["p (log scale)", "val. accuracy"])
        ax.set_yticks([0, 1], [f"{p.min():.2g} / {acc.min():.3f}", f"{p.max():.2g} / {acc.max():.3f}"])
        ax.set_title(f"{group}: p vs accuracy ({len(part)} trials)")
        paths.append(_save(fig, out / f"{_safe(group)}_parallel.png"))
    return paths


def robustness_curves(trials: pd.DataFrame, robustness: pd.DataFrame, out: Path) -> list[Path]:
    paths = []
    if robustness.empty:
        return paths
    merged = robustness.merge(trials, on=["experiment", "trial_id"])
    for (group, arch), part in merged.groupby(["group", "arch"]):
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for trial_id, rows in part.groupby("trial_id"):
            rows = rows.sort_values("eps")
            ax.plot(rows["eps"], rows["accuracy"], marker="o", ms=3, label=variant_label(rows.iloc[0]))
        ax.set(xlabel="PGD ε (L∞, images in [0, 1])", ylabel="accuracy",
               title=f"{group} {ARCH_LABELS.get(arch, arch)}: accuracy under PGD")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / f"{_safe(group)}_{arch}_pgd.png"))
    return paths


def saliency_grids(trials: pd.DataFrame, saliency: pd.DataFrame, out: Path) -> list[Path]:
    """Rows = variants, columns = the same test images; each map normalised to its own maximum."""
    paths = []
    if saliency.empty:
        return paths
    merged = saliency.merge(trials, on=["experiment", "trial_id"])
    for group, part in merged.groupby("group"):
        variants = list(part.groupby("trial_id"))
        images = sorted(part["image_index"].unique())[:10]
        fig, axes = plt.subplots(len(variants), len(images), squeeze=False,
                                 figsize=(1.2 * len(images) + 1.5, 1.2 * len(variants) + 0.5))
        for r, (trial_id, rows) in enumerate(variants):
            for c, index in enumerate(images):
                ax = axes[r][c]
                ax.set_xticks([])
                ax.set_yticks([])
                hit = rows[rows["image_index"] == index]
                if not hit.empty:
                    h, w = int(hit["height"].iloc[0]), int(hit["width"].iloc[0])
                    sal = np.asarray(hit["map"].iloc[0], dtype=float).reshape(h, w)
                    ax.imshow(sal / max(sal.max(), 1e-12), cmap="hot", vmin=0, vmax=1)
                if c == 0:
                    ax.set_ylabel(variant_label(rows.iloc[0]), fontsize=5, rotation=0, ha="right", va="center")
                if r == 0:
                    ax.set_title(f"img {index}", fontsize=6)
        fig.suptitle(f"{group}: vanilla-gradient saliency", fontsize=8)
        paths.append(_save(fig, out / f"{_safe(group)}_saliency.png"))
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(name))


def write_figures(store, out: str | Path) -> list[Path]:
    """Every figure the store has data for; returns the PNG paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = {name: store.read_table(name).to_pandas() for name in ("trials", "epochs", "layers", "robustness",
                                                               "saliency")}
    trials = t["trials"]
    paths = []
    paths += accuracy_curves(trials, t["epochs"], out)
    paths += time_bars(trials, out)
    paths += p_per_kernel(trials, t["layers"], out)
    paths += weight_norms(trials, t["layers"], out)
    paths += optuna_parallel(trials, out)
    paths += robustness_curves(trials, t["robustness"], out)
    paths += saliency_grids(trials, t["saliency"], out)
    return paths


def write_report(store, out: str | Path, figures: list[Path]) -> Path:
    """report.html: the paper's tables (with the paper's values beside ours) and every figure."""
    from .tables import claims, compare_paper

    out = Path(out)
    trials = store.read_table("trials").to_pandas()
    frames = build_tables(trials)
    parts = ["<!doctype html><meta charset='utf-8'><title>scs-sweep report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:900px;display:block;margin:1em 0}</style>",
             f"<h1>scs-sweep report</h1><p>store: {html.escape(store.uri)}; {len(trials)} trials</p>"]
    for name, frame in frames.items():
        compared = compare_paper(name, frame)
        csv = render(compared, "csv", name).splitlines()
        rows = [line.split(",") for line in csv]
        parts.append(f"<h2>{html.escape(name)}</h2><table><tr>" +
                     "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>" +
                     "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                             for row in rows[1:]) + "</table>")
    if frames:
        parts.append("<h2>The paper's claims against this data</h2><ul>" +
                     "".join(f"<li>{html.escape(line)}</li>" for line in claims(frames)) + "</ul>")
    parts.append("<h2>Figures</h2>")
    for path in figures:
        parts.append(f"<h3>{html.escape(path.stem)}</h3><img src='{html.escape(path.name)}'>")
    report = out / "report.html"
    report.write_text("\n".join(parts))
    return report
