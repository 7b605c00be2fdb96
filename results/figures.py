"""The paper's figures from the store, as matplotlib figures with captions: per table (group) of trials,

    claims          per claim: the per-seed paired differences (a dot per seed, the mean and its interval,
                    the threshold) and the same effect against epoch (summary.py)
    accuracy        best test accuracy per variant: a dot per seed, the mean and its 95 % interval
    curves          test accuracy per epoch, one panel per variant, a line per seed and their mean
    times           train and eval seconds per epoch per variant
    pgd             accuracy under L-inf PGD against eps from 0 (clean), per variant (Figs 5, 6, 15-17)
    saliency        the input images and each variant's vanilla-gradient saliency maps (Figs 3, 9-14)
    p-per-kernel    learned p of every kernel of the first sharpened layer per epoch, a panel per variant (Fig 7)
    weight-norms    L2 norm of every layer's weights per mini-batch (Fig 2)
    optuna          the fixed-p search: parallel coordinates p -> accuracy, and accuracy against p (Fig 8)

Each kind reads only the store tables it needs (and only their needed columns) and is skipped when its
data is absent. Each figure carries a caption saying what it shows and from how many trials and seeds.
`write_figures` saves them as PNG files; report.py embeds the same figures in one page. Figures are
8 inches wide at most, so that at 100 dpi they fit an 800-pixel page without shrinking their text.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trainables.vocabulary import (ARCH_LABELS, CIFAR10_CLASSES, FINISHED, PAPER_EPOCHS,  # noqa: E402
                                   PAPER_TRAIN_IMAGES)

from .claims import full_budget  # noqa: E402
from .stats import mean_interval  # noqa: E402
from .table_data import load_table_data, per_batch_norms, tables_of  # noqa: E402
from .tables import compare_paper, paper_table_of, table_rows  # noqa: E402
from .variants import LABEL_COLUMNS, variant_keys, variant_label, with_settings  # noqa: E402

__all__ = ["Figure", "figures_for_group", "claim_figures", "write_figures", "KINDS"]

KINDS = ("claims", "accuracy", "curves", "times", "pgd", "saliency", "p-per-kernel", "weight-norms", "optuna")
FEW_EPOCHS = 30          # up to this many points a curve gets a marker on every epoch
MAX_P_PANELS = 8         # p-per-kernel panels per table (every variant's first seed)
WIDTH = 8.0              # inches: 800 px at the report's 100 dpi
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8})
CLAIMED = "#d9f0d3"      # the side of the threshold a claim puts its effect on
THRESHOLD = "#b42318"


@dataclass
class Figure:
    kind: str
    group: str
    name: str            # file name stem, unique within a store
    title: str
    fig: object          # matplotlib Figure
    caption: str = ""    # what it shows, from how many trials and seeds

    def png(self, dpi: int = 100) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(self.fig)
        return buf.getvalue()


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(name))


def _legend_outside(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _colours(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _seed_colours(seeds) -> dict:
    """One colour per seed, the same in every figure of a table (dark, so thin lines stay visible)."""
    cmap = plt.get_cmap("Dark2")
    return {seed: cmap(i % cmap.N) for i, seed in enumerate(sorted(seeds))}


def _count(trials: pd.DataFrame) -> str:
    seeds = trials["seed"].nunique()
    return f"{len(trials)} trial{'s' if len(trials) != 1 else ''}, {seeds} seed{'s' if seeds != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# Per-table figures
# ---------------------------------------------------------------------------------------------
def _panel_grid(n: int, panel_height: float, margin: float, ylabel: str):
    """n panels against epoch, two to a row, sharing their axes (labelled once), the unused ones hidden."""
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, panel_height * rows + margin), squeeze=False,
                             sharex=True, sharey=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    return fig, axes


def _labelled(trials: pd.DataFrame) -> pd.DataFrame:
    """trials + `label`: the variant as the legends spell it, with any setting beyond the paper's columns
    (an lr axis, a searched p), so that trials differing in it never share a curve, colour or bar."""
    trials = with_settings(trials)
    trials["label"] = [variant_label(r) for _, r in trials.iterrows()]
    return trials


def _shade_claim(ax, claim, horizontal: bool = True) -> None:
    """The claimed side of the threshold, shaded, and the threshold itself, dashed (values in the
    claim's own units: a ratio for times)."""
    t = math.exp(claim.threshold) if claim.time else claim.threshold
    span = ax.axhspan if horizontal else ax.axvspan
    line = ax.axhline if horizontal else ax.axvline
    big = 1e6
    if claim.side == "above":
        span(t, big, color=CLAIMED, zorder=0, label="the claimed side")
    elif claim.side == "below":
        span(-big if not claim.time else 0, t, color=CLAIMED, zorder=0, label="the claimed side")
    else:
        span(-t, t, color=CLAIMED, zorder=0, label="the claimed side")
    for edge in ([t] if claim.side != "within" else [-t, t]):
        line(edge, color=THRESHOLD, ls="--", lw=1, zorder=1)
    if not claim.time:
        line(0, color="#888", lw=0.6, zorder=1)


def claim_figures(group: str, summary) -> list[Figure]:
    """Per claim: the per-seed differences the verdict rests on and, for accuracy claims with epochs,
    the same difference against epoch. summary: summary.TableSummary of the table."""
    out = []
    for verdict in summary.verdicts:
        claim, values = verdict.claim, verdict.values
        if not values:
            continue
        series = summary.series.get(claim.name)
        two = series is not None and not series.empty and series["epoch"].nunique() > 1
        fig, axes = plt.subplots(1, 2 if two else 1, figsize=(WIDTH, 2.9), squeeze=False, sharey=True,
                                 gridspec_kw={"width_ratios": [1, 2.2] if two else [1]})
        left = axes[0][0]
        show = (lambda v: math.exp(v)) if claim.time else (lambda v: v)
        colours = _seed_colours([s for s, _ in values])
        for i, (seed, value) in enumerate(values):
            left.scatter(i, show(value), color=colours[seed], s=30, zorder=3, label=f"seed {seed}")
        shown = verdict.shown
        if shown.has_interval:
            left.errorbar(len(values), shown.estimate, yerr=[[shown.estimate - shown.low], [shown.high - shown.estimate]],
                          fmt="D", color="black", capsize=4, zorder=3)
        else:
            left.scatter(len(values), shown.estimate, marker="D", color="black", zorder=3)
        left.set_xticks(range(len(values) + 1), [f"s{s}" for s, _ in values] + ["mean"])
        left.set_xlim(-0.6, len(values) + 0.6)
        unit = "ratio" if claim.time else "difference in test accuracy"
        left.set_ylabel(f"{claim.effect}\n({unit})", fontsize=8)
        left.set_title("per seed, and the mean with its 95 % CI")
        _shade_claim(left, claim)
        lows = [show(v) for _, v in values] + [shown.low, shown.high, show(claim.threshold)]
        if two:
            right = axes[0][1]
            for seed, rows in series.groupby("seed"):
                right.plot(rows["epoch"], rows["value"], color=colours.get(seed, "grey"), lw=0.9, alpha=0.8)
            stats = [(epoch, mean_interval(rows["value"].tolist())) for epoch, rows in series.groupby("epoch")]
            epochs = [e for e, _ in stats]
            right.plot(epochs, [i.estimate for _, i in stats], color="black", lw=2, label="mean over seeds")
            if any(i.has_interval for _, i in stats):
                right.fill_between(epochs, [i.low for _, i in stats], [i.high for _, i in stats], color="grey",
                                   alpha=0.3, label="95 % CI over seeds")
            lows += [v for _, i in stats for v in (i.low, i.high) if not math.isnan(v)]
            right.set_xlabel("epoch (each trial's best test accuracy up to it)")
            right.set_title("the same effect against epoch")
            right.xaxis.set_major_locator(MaxNLocator(integer=True))
            _shade_claim(right, claim)
            _legend_outside(right)
        finite = [v for v in lows if v == v and abs(v) < 1e5]
        pad = 0.15 * (max(finite) - min(finite) or 0.02)
        left.set_ylim(min(finite) - pad, max(finite) + pad)
        fig.suptitle(f"{claim.name}: {verdict.verdict}", fontsize=10)
        fig.tight_layout()
        caption = (f"{claim.name} ({verdict.verdict}). Left: {claim.effect}, one dot per seed ({len(values)} "
                   f"seeds), and their mean with its 95 % t-interval over seeds; dashed: the threshold "
                   f"({claim.threshold_text}); shaded: the side the paper claims.")
        if two:
            caption += (f" Right: the same per-seed difference computed on each trial's best test accuracy up "
                        f"to each epoch (thin lines: seeds; black: their mean; grey: its 95 % interval), "
                        f"epochs {int(series['epoch'].min())}-{int(series['epoch'].max())}.")
        out.append(Figure("claims", group, f"{_safe(group)}_claim_{_safe(claim.name)[:40]}", claim.name, fig,
                          caption))
    return out


def accuracy_by_variant(group: str, trials: pd.DataFrame) -> list[Figure]:
    """Best test accuracy per variant (trials that ran their budget): a dot per seed, the mean and its
    95 % interval, on an axis fitted to the values so that the differences show."""
    table = paper_table_of(group, trials)
    frame = compare_paper(table, table_rows(trials), trials)
    frame = frame[frame["n"] > 0]
    if frame.empty:
        return []
    finished = _labelled(trials[trials["status"] == FINISHED])
    colours = _seed_colours(finished["seed"].unique())
    fig, ax = plt.subplots(figsize=(WIDTH, 0.42 * len(frame) + 1.3))
    y = np.arange(len(frame))
    labels = []
    values = []
    variant_of = variant_keys(finished)  # each trial's table row, as table_rows groups them
    for i, (_, row) in enumerate(frame.iterrows()):
        keys = tuple(row[c] for c in LABEL_COLUMNS + ["Setting"])
        mine = finished[[key == keys for key in variant_of]]
        offsets = np.linspace(-0.18, 0.18, max(len(mine), 1))
        for offset, (_, trial) in zip(offsets, mine.sort_values("seed").iterrows()):
            ax.scatter(trial["val_acc"], i + offset, color=colours[trial["seed"]], s=18, zorder=3,
                       label=f"seed {trial['seed']}")
            values.append(trial["val_acc"])
        mean = row["Val. Acc."]
        values += [v for v in (row["CI low"], row["CI high"]) if not pd.isna(v)]
        if not pd.isna(row["CI low"]):
            ax.errorbar(mean, i, xerr=[[mean - row["CI low"]], [row["CI high"] - mean]], fmt="|", color="black",
                        ms=14, capsize=3, zorder=2)
        else:
            ax.scatter(mean, i, marker="|", s=200, color="black", zorder=2)
        labels.append(variant_label(mine.iloc[0]))
    comparable = full_budget(trials) and frame["Paper Val. Acc."].notna().any()
    if comparable:
        ax.scatter(frame["Paper Val. Acc."], y, marker="D", color="#dd8452", zorder=3,
                   label=f"the paper ({PAPER_EPOCHS[table]} epochs, {PAPER_TRAIN_IMAGES:,} images)")
        values += frame["Paper Val. Acc."].dropna().tolist()
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    span = max(values) - min(values) or 0.02
    ax.set_xlim(min(values) - 0.08 * span, max(values) + 0.08 * span)
    ax.set_xlabel("best test accuracy over epochs (fraction correct)")
    ax.grid(axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"{group}: best test accuracy per variant")
    caption = (f"Best test accuracy over epochs of each trial that ran its budget ({_count(finished)}): a dot "
               f"per seed, the black bar the mean and its 95 % t-interval over seeds. The axis spans the "
               f"values, not 0-1, so that the differences show.")
    caption += (" Diamonds: the paper's values." if comparable else
                " The paper's values (its own budget) are in the table, not here: this run's budget is not the "
                "paper's." if frame["Paper Val. Acc."].notna().any() else "")
    return [Figure("accuracy", group, f"{_safe(group)}_accuracy", f"{group}: accuracy per variant", fig, caption)]


def learning_curves(group: str, trials: pd.DataFrame, epochs: pd.DataFrame) -> list[Figure]:
    """One panel per variant: its test accuracy per epoch, a line per seed and their mean."""
    trials = _labelled(trials)
    merged = epochs.merge(trials, on=["experiment", "trial_id"], suffixes=("", "_trial"))
    if merged.empty:
        return []
    labels = sorted(set(merged["label"]))
    colours = _seed_colours(merged["seed"].unique())
    fig, axes = _panel_grid(len(labels), 1.7, 0.9, "test accuracy")
    n_epochs = int(merged["epoch"].max())
    marker = "o" if n_epochs <= FEW_EPOCHS else None
    for ax, label in zip(axes.flat, labels):
        part = merged[merged["label"] == label]
        for (seed, _), rows_ in part.groupby(["seed", "trial_id"]):
            rows_ = rows_.sort_values("epoch")
            ax.plot(rows_["epoch"], rows_["test_acc"], color=colours[seed], lw=1, marker=marker, ms=2.5,
                    label=f"seed {seed}")
        mean = part.groupby("epoch")["test_acc"].mean()
        ax.plot(mean.index, mean.values, color="black", lw=2, label="mean over seeds")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, names = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1:len(labels)]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    order = sorted(range(len(names)), key=lambda i: (names[i] == "mean over seeds", names[i]))
    fig.legend([handles[i] for i in order], [names[i] for i in order], loc="upper center", ncol=len(names),
               frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    caption = (f"Test accuracy after each epoch, one panel per variant ({_count(trials)}): a line per seed "
               f"(its colour is the same in every figure of this table) and their mean in black.")
    return [Figure("curves", group, f"{_safe(group)}_curves", f"{group}: learning curves", fig, caption)]


def time_bars(group: str, trials: pd.DataFrame, alone: set | None = None) -> list[Figure]:
    """Seconds per epoch do not depend on how long a trial ran, so pruned trials count here too."""
    timed = _labelled(trials.dropna(subset=["train_time_s"]))
    if timed.empty:
        return []
    per_variant = [(part["label"].iloc[0], part["train_time_s"].mean(), part["eval_time_s"].mean())
                   for _, part in timed.groupby(variant_keys(timed), sort=True)]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.42 * len(per_variant) + 1.3))
    y = np.arange(len(per_variant))
    for offset, index, name, colour in ((-0.2, 1, "train", "#4c72b0"), (0.2, 2, "eval", "#55a868")):
        ax.barh(y + offset, [v[index] for v in per_variant], 0.4, color=colour, label=f"{name} s/epoch")
    ax.set_yticks(y, [v[0] for v in per_variant])
    ax.invert_yaxis()
    ax.set(xlabel="seconds per epoch (mean over trials)", title=f"{group}: train and eval time per epoch")
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax)
    devices = ", ".join(sorted(timed["gpu"].dropna().unique())) if "gpu" in timed else ""
    shared = "" if alone is None else (
        " Every trial here shared its node with another trial while it trained, so these seconds include "
        "that contention; the time claims are not judged from them." if not set(timed["trial_id"]) & alone else
        f" {len(set(timed['trial_id']) & alone)} of {len(timed)} trials had their node to themselves.")
    caption = (f"Mean seconds per training and evaluation epoch per variant ({_count(timed)}), measured on "
               f"{devices or 'an unrecorded device'}.{shared}")
    return [Figure("times", group, f"{_safe(group)}_times", f"{group}: train and eval time", fig, caption)]


def robustness_curves(group: str, trials: pd.DataFrame, robustness: pd.DataFrame) -> list[Figure]:
    """Accuracy under PGD against eps, from eps = 0 (the clean accuracy on the same images)."""
    merged = robustness.merge(_labelled(trials), on=["experiment", "trial_id"])
    out = []
    for arch, part in merged.groupby("arch"):
        labels = sorted(set(part["label"]))
        colours = _colours(labels)
        fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
        for label, rows in part.groupby("label", sort=True):
            eps = sorted(rows["eps"].unique())
            stats = [mean_interval(rows[rows["eps"] == e]["accuracy"].tolist()) for e in eps]
            err = [[s.estimate - s.low if s.has_interval else 0 for s in stats],
                   [s.high - s.estimate if s.has_interval else 0 for s in stats]]
            ax.errorbar(eps, [s.estimate for s in stats], yerr=err, marker="o", ms=3.5, capsize=2, elinewidth=0.7,
                        color=colours[label], label=label)
        positive = sorted(e for e in part["eps"].unique() if e > 0)
        if len(positive) > 2:  # the paper's eps span 30x: log spacing, with 0 (clean) kept on the axis
            ax.set_xscale("symlog", linthresh=positive[0])
            ticks = ([0.0] if part["eps"].min() == 0 else []) + positive
            ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
            ax.minorticks_off()
        ax.set(xlabel="PGD ε (L∞ radius, images in [0, 1])", ylabel="accuracy under attack",
               title=f"{group} {ARCH_LABELS.get(arch, arch)}: accuracy under PGD")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
        steps = int(part["steps"].max())
        n_images = int(part["n_images"].max())
        ptrials = trials[trials["trial_id"].isin(part["trial_id"])]
        caption = (f"Accuracy under an L∞ PGD attack ({steps} steps of 2.5·ε/{steps}, random start) on the same "
                   f"{n_images} test images for every trial ({_count(ptrials)}); ε = 0 is the clean accuracy on "
                   f"those images. Points: the mean over seeds; bars: its 95 % t-interval over seeds "
                   f"(none with one seed).")
        out.append(Figure("pgd", group, f"{_safe(group)}_{arch}_pgd", f"{group}: accuracy under PGD", fig, caption))
    return out


def saliency_grid(group: str, trials: pd.DataFrame, saliency: pd.DataFrame) -> list[Figure]:
    """Row 1: the test images; then one row per variant (first seed): each map normalised to its maximum,
    with its Gini coefficient (0 = uniform, 1 = one pixel)."""
    merged = saliency.merge(trials, on=["experiment", "trial_id"])
    if merged.empty:
        return []
    first = merged[merged["seed"] == merged["seed"].min()]
    variants = sorted(first.groupby("trial_id"), key=lambda kv: variant_label(kv[1].iloc[0]))
    images = sorted(first["image_index"].unique())[:10]
    has_input = "image" in first and first["image"].notna().any()
    n_rows = len(variants) + has_input
    fig, axes = plt.subplots(n_rows, len(images), squeeze=False, figsize=(WIDTH, 0.86 * n_rows + 0.5))
    fig.subplots_adjust(left=0.2, right=0.99, top=0.93, bottom=0.02, wspace=0.05, hspace=0.32)
    for c, index in enumerate(images):
        hit = first[first["image_index"] == index].iloc[0]
        axes[0][c].set_title(CIFAR10_CLASSES[int(hit["label"])] if 0 <= hit["label"] < 10 else str(hit["label"]),
                             fontsize=8)
        if has_input and hit["image"] is not None:
            image = np.asarray(hit["image"], dtype=np.uint8).reshape(3, int(hit["height"]), int(hit["width"]))
            axes[0][c].imshow(image.transpose(1, 2, 0), interpolation="nearest")
    if has_input:
        axes[0][0].set_ylabel("input", fontsize=8, rotation=0, ha="right", va="center")
    for r, (trial_id, rows) in enumerate(variants, start=int(has_input)):
        for c, index in enumerate(images):
            hit = rows[rows["image_index"] == index]
            if not hit.empty:
                h, w = int(hit["height"].iloc[0]), int(hit["width"].iloc[0])
                sal = np.asarray(hit["map"].iloc[0], dtype=float).reshape(h, w)
                axes[r][c].imshow(sal / max(sal.max(), 1e-12), cmap="hot", vmin=0, vmax=1, interpolation="nearest")
                axes[r][c].text(0.5, -0.02, f"{hit['sparsity_gini'].iloc[0]:.2f}", transform=axes[r][c].transAxes,
                                ha="center", va="top", fontsize=7)
        axes[r][0].set_ylabel(variant_label(rows.iloc[0]), fontsize=7, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{group}: saliency |∂ score / ∂ input| (max over channels), seed {int(first['seed'].min())}",
                 fontsize=9)
    caption = (f"Top row: the test images (one per class, the same for every variant); below, one row per variant "
               f"(its seed-{int(first['seed'].min())} trial): the vanilla-gradient saliency of the true class's score, "
               f"each map scaled to its own maximum (white = largest), with its Gini coefficient under it "
               f"(0 = spread evenly, 1 = one pixel).")
    return [Figure("saliency", group, f"{_safe(group)}_saliency", f"{group}: saliency maps", fig, caption)]


def p_per_kernel(group: str, trials: pd.DataFrame, layers: pd.DataFrame) -> list[Figure]:
    """Fig 7 as one panel per variant (its first seed): the learned p of every kernel of the first
    sharpened layer, per epoch."""
    learned = trials[(trials["p_mode"] == "learned") & trials["layer"].isin(["scs", "sdp"])]
    panels = []
    limit = MAX_P_PANELS
    for _, part in learned.sort_values(["seed", "trial_id"]).groupby(variant_keys(learned), sort=True):
        trial = part.iloc[0]
        rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
        rows = rows[rows["p_values"].notna()]
        if rows.empty or rows["epoch"].nunique() < 2:
            continue
        first = rows[rows["layer_index"] == rows["layer_index"].min()].sort_values("epoch")
        panels.append((trial, first, np.stack([np.asarray(v, dtype=float) for v in first["p_values"]])))
        if limit and len(panels) >= limit:
            break
    if not panels:
        return []
    fig, axes = _panel_grid(len(panels), 2.0, 0.5, "learned p")
    for ax, (trial, first, values) in zip(axes.flat, panels):
        ax.plot(first["epoch"], values, lw=0.6, alpha=0.7)
        ax.set_title(f"{variant_label(trial)}, seed {trial['seed']}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    kernels = panels[0][2].shape[1]
    caption = (f"The learned exponent p of each of the {kernels} kernels of the first sharpened layer "
               f"({panels[0][1]['layer_name'].iloc[0]}) after every epoch; one panel per variant "
               f"({len(panels)} trials, each variant's first seed).")
    return [Figure("p-per-kernel", group, f"{_safe(group)}_p_per_kernel", f"{group}: p per kernel", fig, caption)]


def weight_norms(group: str, trials: pd.DataFrame, layers: pd.DataFrame) -> list[Figure]:
    """Fig 2: L2 norm of every layer's weights, per mini-batch where recorded, else per epoch."""
    out = []
    for _, trial in trials.iterrows():
        rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
        if rows.empty:
            continue
        fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
        per_batch = False
        for name, per_layer in rows.groupby("layer_name", sort=False):
            per_layer = per_layer.sort_values("epoch")
            batches = [b for b in per_layer["weight_norm_per_batch"] if b is not None and len(b)]
            if batches:
                series = np.concatenate([np.asarray(b) for b in batches])
                ax.plot(np.arange(1, len(series) + 1), series, lw=0.8, label=name)
                per_batch = True
            else:
                ax.plot(per_layer["epoch"], per_layer["weight_norm"], lw=0.8, marker=".", label=name)
        ax.set(xlabel="mini-batch" if per_batch else "epoch", ylabel="weight L2 norm",
               title=f"{group} {variant_label(trial)}: weight norm of every layer")
        ax.grid(alpha=0.3)
        if rows["layer_name"].nunique() <= 24:
            _legend_outside(ax)
        out.append(Figure("weight-norms", group, f"{_safe(group)}_weight_norms_{_safe(trial['trial_id'])}",
                          f"{group}: weight norms", fig,
                          f"The L2 norm of every layer's weights after every {'mini-batch' if per_batch else 'epoch'} "
                          f"of one trial ({variant_label(trial)}, seed {trial['seed']})."))
    return out


def optuna_search(group: str, trials: pd.DataFrame) -> list[Figure]:
    """Fig 8: each trial a line from its p to its accuracy, and accuracy against p."""
    searched = trials[trials["p_mode"] == "fixed"].dropna(subset=["val_acc", "p_value"])
    if len(searched) < 2 or searched["p_value"].nunique() < 2:
        return []
    p, acc = searched["p_value"].to_numpy(float), searched["val_acc"].to_numpy(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    lp = np.log10(p)
    p_norm = (lp - lp.min()) / max(np.ptp(lp), 1e-9)
    a_norm = (acc - acc.min()) / max(np.ptp(acc), 1e-9)
    cmap = plt.get_cmap("viridis")
    for pn, an in zip(p_norm, a_norm):
        left.plot([0, 1], [pn, an], color=cmap(an), lw=1.2, alpha=0.8)
    left.set_xticks([0, 1], ["p (log scale)", "best test accuracy"])
    left.set_yticks([0, 1], [f"p {p.min():.2g}\nacc {acc.min():.3f}", f"p {p.max():.2g}\nacc {acc.max():.3f}"],
                    fontsize=7)
    left.set_title("parallel coordinates", fontsize=9)
    status = searched["status"].to_numpy()
    for mark, which, label in (("o", status == FINISHED, "ran its budget"),
                               ("x", status != FINISHED, "ended early")):
        if which.any():
            right.scatter(p[which], acc[which], marker=mark, label=label)
    right.set_xscale("log")
    right.set(xlabel="fixed p shared by every SCS layer (log scale)", ylabel="best test accuracy (fraction)",
              title="accuracy against p")
    right.axvline(1.0, color="grey", lw=0.8, ls=":")
    right.grid(alpha=0.3)
    _legend_outside(right)
    fig.suptitle(f"{group}: Optuna search over p ({len(searched)} trials)", fontsize=10)
    caption = (f"The Optuna search over one fixed p shared by every SCS layer ({len(searched)} trials): left, each "
               f"trial a line from its p to its best test accuracy; right, accuracy against p (x: ended early, "
               f"pruned or failed).")
    return [Figure("optuna", group, f"{_safe(group)}_optuna", f"{group}: Optuna search over p", fig, caption)]


# ---------------------------------------------------------------------------------------------
# Per table
# ---------------------------------------------------------------------------------------------
def figures_for_group(group: str, data: dict[str, pd.DataFrame], summary=None, alone: set | None = None) -> list[Figure]:
    """Every figure one table (group of one experiment) of trials has the data for; `summary`
    (summary.TableSummary) adds the claim figures, `alone` the trials that had their node to themselves."""
    trials = data["trials"][data["trials"]["group"] == group]
    ids = set(trials["trial_id"])

    def of(table: str) -> pd.DataFrame:
        frame = data[table]
        return frame[frame["trial_id"].isin(ids)]

    layers = of("layers")
    out = claim_figures(group, summary) if summary is not None else []
    out += accuracy_by_variant(group, trials) + learning_curves(group, trials, of("epochs"))
    out += time_bars(group, trials, alone) + robustness_curves(group, trials, of("robustness"))
    out += saliency_grid(group, trials, of("saliency"))
    if per_batch_norms(trials).any():  # Fig 2's runs (batch_weight_norms), whatever the group is called
        out += weight_norms(group, trials, layers)
    else:
        out += p_per_kernel(group, trials, layers)
    return out + optuna_search(group, trials)


def write_figures(store, out: str | Path, experiment: str = "") -> list[Path]:
    """Every figure the store (or one experiment of it) has data for, as PNG files; returns their paths.
    Files are named by table, prefixed by the experiment when the store holds several."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_table_data(store, experiment)
    several = data["trials"]["experiment"].nunique() > 1
    paths = []
    for name, group, mine, summary, alone in tables_of(data):
        for figure in figures_for_group(group, mine, summary, alone):
            path = out / f"{_safe(name) + '_' if several else ''}{figure.name}.png"
            path.write_bytes(figure.png(dpi=110))
            paths.append(path)
    return paths
