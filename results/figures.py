"""The paper's figures from the store, as matplotlib figures with captions: per table (group) of trials,

    claims          per claim: the per-seed paired differences zoomed to the decision (a dot per seed, the
                    mean and its interval, the threshold, the paper's own effect) and the effect against epoch
    accuracy        best test accuracy per variant: a dot per seed, the mean and its 95 % interval (Table N)
    curves          test accuracy per epoch, one panel per variant, a line per seed and their mean
    times           train and eval seconds per epoch per variant (the tables' time columns)
    pgd             each variant's accuracy under L-inf PGD minus a named baseline's, per seed, against eps
                    from 0 (clean), with its interval over seeds (Figs 5, 6, 15-17)
    saliency        the input images and each variant's vanilla-gradient saliency maps for one named seed, with
                    their Gini coefficients (Figs 3, 4, 9-14); `gini_table` gives every seed's, with intervals
    p-per-kernel    the spread of the learned p across the first sharpened layer's kernels per epoch: median,
                    middle half and range, a panel per variant (Fig 7)
    weight-norms    L2 norm of every layer's weights per mini-batch (Fig 2)
    optuna          the fixed-p search: parallel coordinates p -> accuracy, and accuracy against p (Fig 8)

Each kind reads only the store tables it needs and is skipped when its data is absent; each caption says
what the figure shows, from how many trials and seeds, and which figure of the paper it reproduces and what
the paper reported there (docs/paper_facts.md).

Legible at 800 pixels: figures are 7.4 inches wide and use no text under 8 points; the report shows an inch
as 100 CSS pixels, as SVG (vector, text kept as text: sharp at any pixel density), so at an 800-pixel window
(about 770 pixels of page) no text is under 10 CSS pixels. `Figure.smallest_text_px` measures it.
`scs-sweep figures` writes PNG files at 200 dpi.
"""
from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from common.vocabulary import ARCH_LABELS, CIFAR10_CLASSES, FINISHED, PAPER_EPOCHS, PAPER_TRAIN_IMAGES  # noqa: E402

from .claims import full_budget  # noqa: E402
from .paper import CITATION, paper_table_of, table_number  # noqa: E402
from .stats import mean_interval  # noqa: E402
from .table_data import groups_of, load_table_data, per_batch_norms  # noqa: E402
from .tables import compare_paper, table_rows  # noqa: E402
from .variants import LABEL_COLUMNS, variant_keys, variant_label, with_settings  # noqa: E402

__all__ = ["Figure", "figures_for_group", "claim_figures", "write_figures", "gini_table", "pgd_baseline", "KINDS",
           "paper_figure", "CSS_PX_PER_INCH", "PAGE_PX_AT_800"]

KINDS = ("claims", "accuracy", "curves", "times", "pgd", "saliency", "p-per-kernel", "weight-norms", "optuna")
FEW_EPOCHS = 30          # up to this many points a curve gets a marker on every epoch
MAX_P_PANELS = 8         # p-per-kernel panels per table (every variant's first seed)
WIDTH = 7.4              # inches
CSS_PX_PER_INCH = 100    # how wide the report shows a figure inch
PNG_DPI = 200            # `figures`' PNG files: twice CSS_PX_PER_INCH, sharp on high-DPI screens
PAGE_PX_AT_800 = 770     # the report's column in an 800-pixel window (15 px of padding each side)
MIN_POINTS = 8
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 10,
                     # the report's SVGs keep text as text: the browser draws it in the first of these it has
                     "font.family": "sans-serif",
                     "font.sans-serif": ["DejaVu Sans", "Bitstream Vera Sans", "Arial", "Helvetica", "sans-serif"]})
CLAIMED = "#d9f0d3"      # the side of the threshold a claim puts its effect on
THRESHOLD = "#b42318"
PAPER = "#dd8452"
PAPER_REF = CITATION["short"]

# Which figure of the paper each kind reproduces, per paper table (docs/paper_facts.md: "Tables 1-8 ... Figs")
_SALIENCY_FIGS = {"table1": "Fig 3", "table2": "Fig 4", "table3": "Fig 9", "table4": "Fig 10", "table5": "Fig 11",
                  "table6": "Fig 12", "table7": "Fig 13", "table8": "Fig 14"}
_PGD_FIGS = {"table1": "Fig 5", "table2": "Fig 6", "table3": "Figs 15-16", "table4": "Figs 15-16",
             "table5": "Figs 15-16", "table6": "Figs 15-16", "table7": "Figs 15-16", "table8": "Fig 17"}


def paper_figure(kind: str, paper_table: str) -> str:
    """'Fig 5 of the paper (Wu et al. 2023), which plots ...' for a kind of figure and a table ('' if none)."""
    number = table_number(paper_table)
    said = {
        "pgd": (_PGD_FIGS.get(paper_table), "plots accuracy against ε for each variant; docs/paper_facts.md records "
                                            "no numbers from it, so no claim of the paper is judged here"),
        "saliency": (_SALIENCY_FIGS.get(paper_table), "shows these maps for fixed test images of each class and "
                                                      "compares their sparsity"),
        "accuracy": (f"Table {number}" if number else None, "reports one best test accuracy per variant, from "
                                                            "one run at its own budget"),
        "curves": (f"Table {number}" if number else None, "reports the best point of such curves over its "
                                                          f"{PAPER_EPOCHS.get(paper_table, '')} epochs"),
        "times": (f"Table {number}" if number else None, "reports seconds per epoch (Train Time, Eval Time) on "
                                                         "its P100/V100 GPUs"),
        "p-per-kernel": ("Fig 7", "plots p of every kernel of the first SCS layer per epoch (Rohrer100K, "
                                  "fixed lr 1e-3)"),
        "weight-norms": ("Fig 2", "plots the L2 norm of every SCS layer's weights per mini-batch, ResNet20 from "
                                  "scratch and from a trained conv net"),
        "optuna": ("Fig 8", "finds that every p above or near 1.0 performs well"),
    }
    figure, what = said.get(kind, (None, ""))
    return f" It reproduces {figure} of the paper ({PAPER_REF}), which {what}." if figure else ""


@dataclass
class Figure:
    kind: str
    group: str
    name: str            # file name stem, unique within a store
    title: str
    fig: object          # matplotlib Figure
    caption: str = ""    # what it shows, from how many trials and seeds, and the paper's figure

    def _render(self, fmt: str, **kwargs) -> bytes:
        # the layout is the figure's own (fixed margins, _finish): no tight bounding box, which would cost
        # another draw per figure
        buf = io.BytesIO()
        self.fig.savefig(buf, format=fmt, **kwargs)
        return buf.getvalue()

    def svg(self) -> bytes:
        """The figure as SVG, what the report embeds: vector lines, and text kept as text in the page's
        sans-serif, so sharp at any pixel density, and drawn in about half a PNG's time."""
        with plt.rc_context({"svg.fonttype": "none"}):
            return self._render("svg")

    def png(self, dpi: int = PNG_DPI) -> bytes:
        """The figure as a PNG file (`scs-sweep figures`), at twice CSS_PX_PER_INCH."""
        # zlib level 3: a quarter of the default level's encoding time, files about 10 % larger
        return self._render("png", dpi=dpi, pil_kwargs={"compress_level": 3})

    def close(self) -> None:
        """Let matplotlib free the figure (after rendering what is needed)."""
        plt.close(self.fig)

    @property
    def css_width(self) -> int:
        """The width the report shows the figure at, in CSS pixels."""
        return round(self.fig.get_size_inches()[0] * CSS_PX_PER_INCH)

    def smallest_text_px(self, page_px: int = PAGE_PX_AT_800) -> float:
        """The smallest text of the figure in CSS pixels when the page column is page_px wide."""
        texts = [t for t in self.fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        smallest = min((t.get_fontsize() for t in texts), default=math.nan)
        return smallest / 72 * CSS_PX_PER_INCH * min(1.0, page_px / self.css_width)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(name))


def _text_inches(text: str, points: float = 8) -> float:
    """About how wide a line of text is (DejaVu Sans averages 0.6 em a character)."""
    return len(text) * points * 0.6 / 72


def _finish(fig, handles=(), labels=(), ncol: int = 3, left: float = 0.8, right: float = 0.15, top: float = 0.4,
            below: float = 0.55, hspace: float = 0.5, wspace: float = 0.6) -> None:
    """Fixed margins in inches and one legend under the panels: a tight layout measures every text by
    drawing the figure, which was a third of a report's time. hspace and wspace: inches between panels."""
    unique = dict(zip(labels, handles))
    rows = math.ceil(len(unique) / ncol) if unique else 0
    bottom = below + (0.2 * rows + 0.08 if rows else 0)
    width, height = fig.get_size_inches()
    specs = [ax.get_subplotspec() for ax in fig.axes if ax.get_subplotspec() is not None]
    nrows, ncols = specs[0].get_gridspec().get_geometry() if specs else (1, 1)
    axes_h = (height - top - bottom - (nrows - 1) * hspace) / nrows
    axes_w = (width - left - right - (ncols - 1) * wspace) / ncols
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        hspace=hspace / axes_h if nrows > 1 else 0.2, wspace=wspace / axes_w if ncols > 1 else 0.2)
    if unique:
        fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(ncol, len(unique)), frameon=False,
                   bbox_to_anchor=(0.5, 0.02 / height))


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


def _panel_grid(n: int, panel_height: float, margin: float, ylabel: str, sharey: bool = True):
    """n panels against epoch (or eps), two to a row, sharing their axes (labelled once), the unused hidden."""
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, panel_height * rows + margin), squeeze=False,
                             sharex=True, sharey=sharey)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for c in range(cols):  # the lowest panel of each column shows the x axis (above an empty slot too)
        lowest = axes[max(r for r in range(rows) if r * cols + c < n)][c]
        lowest.set_xlabel("epoch")
        lowest.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    return fig, axes


def _labelled(trials: pd.DataFrame) -> pd.DataFrame:
    """trials + `label`: the variant as the legends spell it, with any setting beyond the paper's columns
    (an lr axis, a searched p), so that trials differing in it never share a curve, colour or bar."""
    trials = with_settings(trials)
    trials["label"] = [variant_label(r) for _, r in trials.iterrows()]
    return trials


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------
def _shade_claim(ax, claim, threshold_label: str = "") -> None:
    """The claimed side of the threshold, shaded, and the threshold itself, dashed (values in the claim's
    own units: a ratio for times)."""
    t = math.exp(claim.threshold) if claim.time else claim.threshold
    big = 1e6
    if claim.side == "above":
        ax.axhspan(t, big, color=CLAIMED, zorder=0)
    elif claim.side == "below":
        ax.axhspan(-big if not claim.time else 0, t, color=CLAIMED, zorder=0)
    else:
        ax.axhspan(-t, t, color=CLAIMED, zorder=0)
    for i, edge in enumerate([t] if claim.side != "within" else [-t, t]):
        ax.axhline(edge, color=THRESHOLD, ls="--", lw=1.2, zorder=1, label=threshold_label if i == 0 else None)
    if not claim.time:
        ax.axhline(0, color="#888", lw=0.6, zorder=1)


def _zoom(ax, values: list) -> None:
    finite = [v for v in values if v is not None and v == v and abs(v) < 1e5]
    if finite:
        pad = 0.18 * (max(finite) - min(finite) or 0.02)
        ax.set_ylim(min(finite) - pad, max(finite) + pad)


def claim_figures(group: str, summary) -> list[Figure]:
    """Per claim: the per-seed values its verdict rests on, zoomed to the decision, and the same effect
    against epoch on its own axis. summary: summary.GroupSummary of the table."""
    out = []
    for verdict in summary.verdicts:
        claim, values = verdict.claim, verdict.values
        if not values:
            continue
        series = summary.series.get(claim.name)
        two = series is not None and not series.empty and series["epoch"].nunique() > 1
        fig, axes = plt.subplots(1, 2 if two else 1, figsize=(WIDTH, 3.5), squeeze=False,
                                 gridspec_kw={"width_ratios": [1, 1.6] if two else [1]})
        left = axes[0][0]
        show = (lambda v: math.exp(v)) if claim.time else (lambda v: v)
        colours = _seed_colours([s for s, _ in values])
        for i, (seed, value) in enumerate(values):
            left.scatter(i, show(value), color=colours[seed], s=34, zorder=3, label=f"seed {seed}")
        shown = verdict.shown
        if shown.has_interval:
            left.errorbar(len(values), shown.estimate,
                          yerr=[[shown.estimate - shown.low], [shown.high - shown.estimate]],
                          fmt="D", color="black", capsize=4, zorder=3, label="mean and 95 % CI")
        else:
            left.scatter(len(values), shown.estimate, marker="D", color="black", zorder=3, label="mean (no interval)")
        focus = [show(v) for _, v in values] + [shown.low, shown.high, show(claim.threshold)]
        if claim.side == "within":
            focus.append(-claim.threshold)
        if verdict.paper_effect is not None:
            left.scatter(len(values) + 1, show(verdict.paper_effect), marker="*", s=120, color=PAPER, zorder=3,
                         label="the paper's (one run)")
            focus.append(show(verdict.paper_effect))
        ticks = [f"s{s}" for s, _ in values] + ["mean"] + (["paper"] if verdict.paper_effect is not None else [])
        left.set_xticks(range(len(ticks)), ticks)
        left.set_xlim(-0.6, len(ticks) - 0.4)
        left.set_ylabel("ratio A / B" if claim.time else "A − B, test accuracy")
        left.set_title("per seed: the decision")
        _shade_claim(left, claim, f"threshold ({claim.threshold_text})")
        _zoom(left, focus)
        if two:
            right = axes[0][1]
            for seed, rows in series.groupby("seed"):
                right.plot(rows["epoch"], rows["value"], color=colours.get(seed, "grey"), lw=0.9, alpha=0.8)
            stats = [(epoch, mean_interval(rows["value"].tolist())) for epoch, rows in series.groupby("epoch")]
            epochs = [e for e, _ in stats]
            right.plot(epochs, [i.estimate for _, i in stats], color="black", lw=2, label="mean over seeds")
            if any(i.has_interval for _, i in stats):
                right.fill_between(epochs, [i.low for _, i in stats], [i.high for _, i in stats], color="grey",
                                   alpha=0.3, label="its 95 % CI")
            right.set_xlabel("epoch (best test accuracy up to it)")
            right.set_title("the same effect against epoch")
            right.xaxis.set_major_locator(MaxNLocator(integer=True))
            _shade_claim(right, claim)
            _zoom(right, [v for _, i in stats for v in (i.estimate, i.low, i.high)] + series["value"].tolist()
                  + [show(claim.threshold)])
        handles, labels = [], []
        for ax in axes[0]:
            h, lab = ax.get_legend_handles_labels()
            handles += h
            labels += lab
        handles.append(Patch(color=CLAIMED))
        labels.append("the side the claim puts A − B on" if not claim.time else "the side the claim puts A / B on")
        title = textwrap.wrap(f"{claim.name}: {verdict.budget_verdict} at this budget", 80)
        fig.suptitle("\n".join(title))
        _finish(fig, handles, labels, ncol=3, top=0.35 + 0.2 * len(title), wspace=0.75)
        caption = (f"{claim.name}: {verdict.budget_verdict} at this budget. Left: {claim.effect}, one dot per seed "
                   f"({len(values)} seeds), their mean with its 95 % t-interval over seeds, the threshold "
                   f"({claim.threshold_text}, dashed), the side the claim puts it on (shaded)"
                   + (", and the paper's own value of the same statistic (a single run)" if
                      verdict.paper_effect is not None else "") + "; the axis is zoomed to the decision.")
        if two:
            caption += (f" Right: the same per-seed difference computed on each trial's best test accuracy up "
                        f"to each epoch (thin lines: seeds; black: their mean; grey: its 95 % interval), "
                        f"epochs {int(series['epoch'].min())}-{int(series['epoch'].max())}, on its own axis.")
        caption += f" The paper's claim: {verdict.claim.spec.paper}." if verdict.claim.spec.paper else ""
        out.append(Figure("claims", group, f"{_safe(group)}_claim_{_safe(claim.name)[:40]}", claim.name, fig,
                          caption))
    return out


# ---------------------------------------------------------------------------------------------
# Accuracy, curves, times
# ---------------------------------------------------------------------------------------------
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
    fig, ax = plt.subplots(figsize=(WIDTH, 0.42 * len(frame) + 1.6))
    y = np.arange(len(frame))
    labels, values = [], []
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
                        ms=14, capsize=3, zorder=2, label="mean and 95 % CI")
        else:
            ax.scatter(mean, i, marker="|", s=200, color="black", zorder=2, label="mean (one seed)")
        labels.append(variant_label(mine.iloc[0]))
    comparable = full_budget(trials) and frame["Paper Val. Acc."].notna().any()
    if comparable:
        ax.scatter(frame["Paper Val. Acc."], y, marker="D", color=PAPER, zorder=3,
                   label=f"the paper ({PAPER_EPOCHS[table]} epochs, {PAPER_TRAIN_IMAGES:,} images)")
        values += frame["Paper Val. Acc."].dropna().tolist()
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    span = max(values) - min(values) or 0.02
    ax.set_xlim(min(values) - 0.08 * span, max(values) + 0.08 * span)
    ax.set_xlabel("best test accuracy over epochs (fraction correct)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{group}: best test accuracy per variant")
    _finish(fig, *ax.get_legend_handles_labels(), ncol=5, left=0.2 + _text_inches(max(labels, key=len)))
    caption = (f"Best test accuracy over epochs of each trial that ran its budget ({_count(finished)}): a dot "
               f"per seed, the black bar the mean and its 95 % t-interval over seeds. The axis spans the "
               f"values, not 0-1, so that the differences show.")
    caption += (" Diamonds: the paper's values." if comparable else
                " The paper's values (its own budget) are in the table, not here: this run's budget is not the "
                "paper's." if frame["Paper Val. Acc."].notna().any() else "")
    caption += paper_figure("accuracy", table)
    return [Figure("accuracy", group, f"{_safe(group)}_accuracy", f"{group}: accuracy per variant", fig, caption)]


def learning_curves(group: str, trials: pd.DataFrame, epochs: pd.DataFrame) -> list[Figure]:
    """One panel per variant: its test accuracy per epoch, a line per seed and their mean."""
    trials = _labelled(trials)
    merged = epochs.merge(trials, on=["experiment", "trial_id"], suffixes=("", "_trial"))
    if merged.empty:
        return []
    labels = sorted(set(merged["label"]))
    colours = _seed_colours(merged["seed"].unique())
    fig, axes = _panel_grid(len(labels), 1.8, 1.2, "test accuracy")
    n_epochs = int(merged["epoch"].max())
    marker = "o" if n_epochs <= FEW_EPOCHS else None
    handles, names = [], []
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
        h, n = ax.get_legend_handles_labels()
        handles += h
        names += n
    _finish(fig, handles, names, ncol=6, top=0.3)
    caption = (f"Test accuracy after each epoch, one panel per variant ({_count(trials)}): a line per seed "
               f"(its colour is the same in every figure of this table) and their mean in black."
               + paper_figure("curves", paper_table_of(group, trials)))
    return [Figure("curves", group, f"{_safe(group)}_curves", f"{group}: learning curves", fig, caption)]


def time_bars(group: str, trials: pd.DataFrame, alone: set | None = None) -> list[Figure]:
    """Seconds per epoch do not depend on how long a trial ran, so pruned trials count here too."""
    timed = _labelled(trials.dropna(subset=["train_time_s"]))
    if timed.empty:
        return []
    per_variant = [(part["label"].iloc[0], part["train_time_s"].mean(), part["eval_time_s"].mean())
                   for _, part in timed.groupby(variant_keys(timed), sort=True)]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.42 * len(per_variant) + 1.6))
    y = np.arange(len(per_variant))
    for offset, index, name, colour in ((-0.2, 1, "train", "#4c72b0"), (0.2, 2, "eval", "#55a868")):
        ax.barh(y + offset, [v[index] for v in per_variant], 0.4, color=colour, label=f"{name} s/epoch")
    ax.set_yticks(y, [v[0] for v in per_variant])
    ax.invert_yaxis()
    ax.set(xlabel="seconds per epoch (mean over trials)", title=f"{group}: train and eval time per epoch")
    ax.grid(axis="x", alpha=0.3)
    _finish(fig, *ax.get_legend_handles_labels(), left=0.2 + _text_inches(max((v[0] for v in per_variant), key=len)))
    devices = ", ".join(sorted(timed["gpu"].dropna().unique())) if "gpu" in timed else ""
    shared = "" if alone is None else (
        " Every trial here shared its node with another trial while it trained, so these seconds include "
        "that contention; the time claims are not judged from them." if not set(timed["trial_id"]) & alone else
        f" {len(set(timed['trial_id']) & alone)} of {len(timed)} trials had their node to themselves.")
    caption = (f"Mean seconds per training and evaluation epoch per variant ({_count(timed)}), measured on "
               f"{devices or 'an unrecorded device'}.{shared}" + paper_figure("times", paper_table_of(group, trials)))
    return [Figure("times", group, f"{_safe(group)}_times", f"{group}: train and eval time", fig, caption)]


# ---------------------------------------------------------------------------------------------
# Robustness and saliency
# ---------------------------------------------------------------------------------------------
SHORT_CLASSES = {"airplane": "plane", "automobile": "car"}   # so that ten titles fit over ten small maps
BASELINE = dict(layer="conv", activation="relu", pooling="max")   # the conventional CNN: Conv2d + ReLU + MaxPool2d


def pgd_baseline(trials: pd.DataFrame) -> str:
    """The label of the variant every other is compared with under PGD: Conv2d / ReLU / MaxPool2d where the
    table has it (with the table's normalization), else its first variant."""
    labelled = _labelled(trials)
    mask = pd.Series(True, index=labelled.index)
    for key, value in BASELINE.items():
        mask &= labelled[key] == value
    pool = labelled[mask] if mask.any() else labelled
    return sorted(pool["label"].unique())[0]


def robustness_curves(group: str, trials: pd.DataFrame, robustness: pd.DataFrame) -> list[Figure]:
    """Per variant, its accuracy under PGD minus the baseline's on the same seed (the same images, the same
    initial weights), against eps from 0 (clean): a line per seed, the mean and its interval over seeds."""
    merged = robustness.merge(_labelled(trials), on=["experiment", "trial_id"])
    out = []
    table = paper_table_of(group, trials)
    for arch, part in merged.groupby("arch"):
        baseline = pgd_baseline(trials[trials["arch"] == arch])
        base = part[part["label"] == baseline].set_index(["seed", "eps"])["accuracy"]
        others = sorted(set(part["label"]) - {baseline})
        if base.empty or not others:
            continue
        colours = _seed_colours(part["seed"].unique())
        eps_all = sorted(part["eps"].unique())
        fig, axes = _panel_grid(len(others), 1.9, 1.2, "accuracy − baseline")
        handles, names = [], []
        for ax, label in zip(axes.flat, others):
            mine = part[part["label"] == label].set_index(["seed", "eps"])["accuracy"]
            diff = (mine - base).dropna().reset_index()
            for seed, rows in diff.groupby("seed"):
                ax.plot(rows["eps"], rows["accuracy"], color=colours[seed], lw=0.8, alpha=0.8, label=f"seed {seed}")
            stats = [(e, mean_interval(diff[diff["eps"] == e]["accuracy"].tolist())) for e in eps_all
                     if (diff["eps"] == e).any()]
            ax.plot([e for e, _ in stats], [i.estimate for _, i in stats], color="black", lw=2, marker="o", ms=3,
                    label="mean over seeds")
            if any(i.has_interval for _, i in stats):
                ax.fill_between([e for e, _ in stats], [i.low if i.has_interval else i.estimate for _, i in stats],
                                [i.high if i.has_interval else i.estimate for _, i in stats], color="grey", alpha=0.3,
                                label="its 95 % CI")
            ax.axhline(0, color=THRESHOLD, lw=1, ls="--", label=f"the baseline ({baseline})")
            ax.set_title(label)
            ax.grid(alpha=0.3)
            positive = [e for e in eps_all if e > 0]
            if len(positive) > 2:  # the paper's eps span 30x: log spacing, with 0 (clean) kept on the axis
                ax.set_xscale("symlog", linthresh=positive[0])
                ticks = ([0.0] if eps_all[0] == 0 else []) + positive[::2]
                ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
                ax.minorticks_off()
            h, n = ax.get_legend_handles_labels()
            handles += h
            names += n
        for ax in axes.flat:
            if ax.get_xlabel() == "epoch":
                ax.set_xlabel("PGD ε (L∞, images in [0, 1])")
        fig.suptitle(f"{group} {ARCH_LABELS.get(arch, arch)}: accuracy under PGD, minus {baseline}'s")
        _finish(fig, handles, names, ncol=3, top=0.75)
        steps = int(part["steps"].max())
        n_images = int(part["n_images"].max())
        ptrials = trials[trials["trial_id"].isin(part["trial_id"])]
        caption = (f"Is a variant more robust than the baseline ({baseline})? Each panel: its accuracy under an "
                   f"L∞ PGD attack ({steps} steps of 2.5·ε/{steps}, random start) on the same {n_images} test "
                   f"images, minus the baseline's on the same seed, against ε ({_count(ptrials)}); ε = 0 is the "
                   f"difference in clean accuracy on those images. Thin lines: seeds; black: their mean; grey: "
                   f"its 95 % t-interval over seeds. Above the dashed line: more accurate under attack than the "
                   f"baseline." + paper_figure("pgd", table))
        out.append(Figure("pgd", group, f"{_safe(group)}_{arch}_pgd", f"{group}: accuracy under PGD", fig, caption))
    return out


def gini_table(trials: pd.DataFrame, saliency: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the Gini coefficient of its saliency maps (each trial's mean over its images), the mean
    over seeds and its 95 % t-interval, and the seeds; empty without saliency rows."""
    variants = _labelled(trials)[["experiment", "trial_id", "seed", "label"]].rename(columns={"label": "variant"})
    merged = saliency.drop(columns=["seed"], errors="ignore").merge(variants, on=["experiment", "trial_id"])
    if merged.empty:
        return pd.DataFrame()
    rows = []
    for label, part in merged.groupby("variant", sort=True):
        per_trial = part.groupby("seed")["sparsity_gini"].mean()
        i = mean_interval(per_trial.tolist())
        rows.append({"Variant": label, "Gini (mean over seeds)": f"{i.estimate:.3f}",
                     "95 % CI": f"[{i.low:.3f}, {i.high:.3f}]" if i.has_interval else "-",
                     "Seeds": len(per_trial), "Images per trial": int(part.groupby("trial_id").size().max())})
    return pd.DataFrame(rows)


def saliency_grid(group: str, trials: pd.DataFrame, saliency: pd.DataFrame) -> list[Figure]:
    """Row 1: the test images; then one row per variant (the first seed, named): each map normalised to its
    maximum, with its Gini coefficient (0 = uniform, 1 = one pixel). Drawn as one mosaic image in one axes
    (a grid of small axes cost a second per table to build)."""
    merged = saliency.merge(trials, on=["experiment", "trial_id"])
    if merged.empty:
        return []
    seed = int(merged["seed"].min())
    first = merged[merged["seed"] == seed]
    variants = sorted(first.groupby("trial_id"), key=lambda kv: variant_label(kv[1].iloc[0]))
    images = sorted(first["image_index"].unique())[:10]
    has_input = "image" in first and first["image"].notna().any()
    size = int(first["height"].max())
    gap_x, gap_y = max(2, size // 8), max(8, size // 3)          # room between maps, and for a Gini under each
    n_rows = len(variants) + has_input
    canvas = np.ones((n_rows * (size + gap_y), len(images) * (size + gap_x), 3))
    texts = []                                                  # (x, y, text, va)
    hot = plt.get_cmap("hot")

    def place(r: int, c: int, rgb: np.ndarray) -> tuple[int, int]:
        y, x = r * (size + gap_y), c * (size + gap_x)
        canvas[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb
        return x, y

    for c, index in enumerate(images):
        hit = first[first["image_index"] == index].iloc[0]
        name = CIFAR10_CLASSES[int(hit["label"])] if 0 <= hit["label"] < 10 else str(hit["label"])
        texts.append((c * (size + gap_x) + size / 2, -2, SHORT_CLASSES.get(name, name), "bottom"))
        if has_input and hit["image"] is not None:
            image = np.asarray(hit["image"], dtype=np.uint8).reshape(3, int(hit["height"]), int(hit["width"]))
            place(0, c, image.transpose(1, 2, 0) / 255)
    labels = (["input"] if has_input else []) + [variant_label(rows.iloc[0]) for _, rows in variants]
    for r, (_, rows) in enumerate(variants, start=int(has_input)):
        for c, index in enumerate(images):
            hit = rows[rows["image_index"] == index]
            if not hit.empty:
                h, w = int(hit["height"].iloc[0]), int(hit["width"].iloc[0])
                sal = np.asarray(hit["map"].iloc[0], dtype=float).reshape(h, w)
                x, y = place(r, c, hot(np.clip(sal / max(sal.max(), 1e-12), 0, 1))[..., :3])
                texts.append((x + w / 2, y + h + 1, f"{hit['sparsity_gini'].iloc[0]:.2f}", "top"))
    height = 0.75 * n_rows + 0.7
    fig = plt.figure(figsize=(WIDTH, height))
    ax = fig.add_axes((0.27, 0.02, 0.72, 1 - 0.02 - 0.55 / height))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    for x, y, text, va in texts:
        ax.text(x, y, text, ha="center", va=va, fontsize=MIN_POINTS)
    for r, label in enumerate(labels):
        ax.text(-size * 0.15, r * (size + gap_y) + size / 2, label, ha="right", va="center", fontsize=MIN_POINTS)
    ax.axis("off")
    fig.suptitle(f"{group}: saliency |∂ score / ∂ input| of seed {seed}, Gini under each map", y=0.995)
    caption = (f"Top row: the test images (one per class, the same for every variant and seed); below, one row "
               f"per variant, its seed-{seed} trial (the table below gives every seed's Gini, with intervals): "
               f"the vanilla-gradient saliency of the true class's score, each map scaled to its own maximum "
               f"(white = largest), with its Gini coefficient under it (0 = spread evenly, 1 = one pixel)."
               + paper_figure("saliency", paper_table_of(group, trials)))
    return [Figure("saliency", group, f"{_safe(group)}_saliency", f"{group}: saliency maps", fig, caption)]


# ---------------------------------------------------------------------------------------------
# p, weight norms, the p search
# ---------------------------------------------------------------------------------------------
def p_per_kernel(group: str, trials: pd.DataFrame, layers: pd.DataFrame) -> list[Figure]:
    """Fig 7 as one panel per variant (its first seed): across the kernels of the first sharpened layer, the
    median learned p per epoch, the middle half and the range."""
    learned = trials[(trials["p_mode"] == "learned") & trials["layer"].isin(["scs", "sdp"])]
    panels = []
    for _, part in learned.sort_values(["seed", "trial_id"]).groupby(variant_keys(with_settings(learned)), sort=True):
        trial = part.iloc[0]
        rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
        rows = rows[rows["p_values"].notna()]
        if rows.empty or rows["epoch"].nunique() < 2:
            continue
        first = rows[rows["layer_index"] == rows["layer_index"].min()].sort_values("epoch")
        panels.append((trial, first, np.stack([np.asarray(v, dtype=float) for v in first["p_values"]])))
        if len(panels) >= MAX_P_PANELS:
            break
    if not panels:
        return []
    fig, axes = _panel_grid(len(panels), 1.9, 1.1, "learned p")
    for ax, (trial, first, values) in zip(axes.flat, panels):
        epochs = first["epoch"].to_numpy()
        low, q1, median, q3, high = np.percentile(values, [0, 25, 50, 75, 100], axis=1)
        ax.fill_between(epochs, low, high, color="#4c72b0", alpha=0.15, label="range across kernels")
        ax.fill_between(epochs, q1, q3, color="#4c72b0", alpha=0.4, label="middle half of the kernels")
        ax.plot(epochs, median, color="#1f3b73", lw=1.6, label="median kernel")
        ax.set_title(f"{variant_label(trial)}, seed {trial['seed']}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _finish(fig, *axes.flat[0].get_legend_handles_labels(), top=0.3)
    kernels = panels[0][2].shape[1]
    caption = (f"The learned exponent p of the {kernels} kernels of the first sharpened layer "
               f"({panels[0][1]['layer_name'].iloc[0]}) after every epoch: their median, the middle half and the "
               f"range across kernels; one panel per variant ({len(panels)} trials, each variant's first seed)."
               + paper_figure("p-per-kernel", paper_table_of(group, trials)))
    return [Figure("p-per-kernel", group, f"{_safe(group)}_p_per_kernel", f"{group}: p per kernel", fig, caption)]


def weight_norms(group: str, trials: pd.DataFrame, layers: pd.DataFrame) -> list[Figure]:
    """Fig 2: L2 norm of every layer's weights, per mini-batch where recorded, else per epoch."""
    out = []
    for _, trial in trials.iterrows():
        rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
        if rows.empty:
            continue
        fig, ax = plt.subplots(figsize=(WIDTH, 4.4))
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
        legend = ax.get_legend_handles_labels() if rows["layer_name"].nunique() <= 24 else ((), ())
        _finish(fig, *legend, ncol=4)
        out.append(Figure("weight-norms", group, f"{_safe(group)}_weight_norms_{_safe(trial['trial_id'])}",
                          f"{group}: weight norms", fig,
                          f"The L2 norm of every layer's weights after every {'mini-batch' if per_batch else 'epoch'} "
                          f"of one trial ({variant_label(trial)}, seed {trial['seed']})."
                          + paper_figure("weight-norms", "")))
    return out


def optuna_search(group: str, trials: pd.DataFrame) -> list[Figure]:
    """Fig 8: each trial a line from its p to its accuracy, and accuracy against p."""
    searched = trials[trials["p_mode"] == "fixed"].dropna(subset=["val_acc", "p_value"])
    if len(searched) < 2 or searched["p_value"].nunique() < 2:
        return []
    p, acc = searched["p_value"].to_numpy(float), searched["val_acc"].to_numpy(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    lp = np.log10(p)
    p_norm = (lp - lp.min()) / max(np.ptp(lp), 1e-9)
    a_norm = (acc - acc.min()) / max(np.ptp(acc), 1e-9)
    cmap = plt.get_cmap("viridis")
    for pn, an in zip(p_norm, a_norm):
        left.plot([0, 1], [pn, an], color=cmap(an), lw=1.2, alpha=0.8)
    left.set_xticks([0, 1], ["p (log)", "accuracy"])
    left.set_yticks([0, 1], [f"p {p.min():.2g}\nacc {acc.min():.3f}", f"p {p.max():.2g}\nacc {acc.max():.3f}"])
    left.set_title("parallel coordinates")
    status = searched["status"].to_numpy()
    for mark, which, label in (("o", status == FINISHED, "ran its budget"),
                               ("x", status != FINISHED, "ended early")):
        if which.any():
            right.scatter(p[which], acc[which], marker=mark, label=label)
    right.set_xscale("log")
    right.set(xlabel="fixed p of every SCS layer (log)", ylabel="best test accuracy", title="accuracy against p")
    right.axvline(1.0, color="grey", lw=0.8, ls=":")
    right.grid(alpha=0.3)
    fig.suptitle(f"{group}: Optuna search over p ({len(searched)} trials)")
    _finish(fig, *right.get_legend_handles_labels(), left=0.95, top=0.6, wspace=0.8)
    caption = (f"The Optuna search over one fixed p shared by every SCS layer ({len(searched)} trials): left, each "
               f"trial a line from its p to its best test accuracy; right, accuracy against p (x: ended early, "
               f"pruned or failed)." + paper_figure("optuna", ""))
    return [Figure("optuna", group, f"{_safe(group)}_optuna", f"{group}: Optuna search over p", fig, caption)]


# ---------------------------------------------------------------------------------------------
# Per table
# ---------------------------------------------------------------------------------------------
def figures_for_group(group: str, data: dict[str, pd.DataFrame], summary=None,
                      alone: set | None = None) -> list[Figure]:
    """Every figure one table (group of one experiment) of trials has the data for; `summary`
    (summary.GroupSummary) adds the claim figures, `alone` the trials that had their node to themselves."""
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
    for name, group, mine, summary, alone in groups_of(data, store):
        for figure in figures_for_group(group, mine, summary, alone):
            path = out / f"{_safe(name) + '_' if several else ''}{figure.name}.png"
            path.write_bytes(figure.png())
            figure.close()
            paths.append(path)
    return paths
