"""The paper's figures from the store, as matplotlib figures: per table (group) of trials,

    accuracy        best test accuracy per variant, 95 % interval over seeds, the paper's value beside it
    curves          test accuracy per epoch of every trial (markers where there are few epochs)
    times           train and eval seconds per epoch per variant
    pgd             accuracy under L-inf PGD against eps, per variant (Figs 5, 6, 15-17)
    saliency        vanilla-gradient saliency maps, each with its Gini sparsity (Figs 3, 9-14)
    p-per-kernel    learned p of every kernel of the first sharpened layer, per epoch (Fig 7)
    weight-norms    L2 norm of every layer's weights per mini-batch (Fig 2)
    optuna          the fixed-p search: parallel coordinates p -> accuracy, and accuracy against p (Fig 8)

Each kind reads only the store tables it needs (and only their needed columns) and is skipped when its
data is absent. `write_figures` saves them as PNG files; report.py embeds the same figures in one page.
Legends sit outside the axes so that they never cover data.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402

from trainables.vocabulary import (ARCH_LABELS, FINISHED, LABELS, PAPER_EPOCHS, PAPER_TRAIN_IMAGES,  # noqa: E402
                                   dropout_label)

from .stats import mean_interval  # noqa: E402
from .tables import _labels, compare_paper, paper_table_of, table_rows, with_settings  # noqa: E402

__all__ = ["Figure", "figures_for_group", "load_figure_data", "write_figures", "variant_label", "KINDS"]

KINDS = ("accuracy", "curves", "times", "pgd", "saliency", "p-per-kernel", "weight-norms", "optuna")
FEW_EPOCHS = 30          # up to this many points a curve gets a marker on every epoch
MAX_P_FIGURES = 4        # p-per-kernel figures per table (all of them for p-dynamics)


@dataclass
class Figure:
    kind: str
    group: str
    name: str            # file name stem, unique within a store
    title: str
    fig: object          # matplotlib Figure

    def png(self, dpi: int = 100) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(self.fig)
        return buf.getvalue()


def variant_label(row) -> str:
    parts = [LABELS["layer"][row["layer"]], LABELS["activation"][row["activation"]],
             LABELS["pooling"][row["pooling"]]]
    if row.get("normalization") == "batchnorm":
        parts.append("BN")
    if dropout_label(row.get("dropout")) != "None":
        parts.append(f"dropout {dropout_label(row.get('dropout'))}")
    if row.get("p_mode") == "fixed" and row.get("p_value") == row.get("p_value"):
        parts.append(f"p={row['p_value']:.2g}")
    return " / ".join(parts)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(name))


def _legend_outside(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def _colours(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


# ---------------------------------------------------------------------------------------------
# Per-table figures
# ---------------------------------------------------------------------------------------------
def _labelled(trials: pd.DataFrame) -> pd.DataFrame:
    """trials + `label`: the variant as the legends spell it, with any setting beyond the paper's columns
    (an lr axis, a searched p), so that trials differing in it never share a curve, colour or bar."""
    trials = with_settings(trials)
    trials["label"] = [variant_label(r) + (f" / {r['setting']}" if r["setting"] else "")
                       for _, r in trials.iterrows()]
    return trials


def _row_label(row) -> str:
    """A table row's variant as the figures spell it: "SCS / None / MaxAbsPool2d [/ BN] [/ setting]"."""
    parts = [row["Layer"], row["Activation"], row["Pooling"]]
    if row["Normalization"] == "BatchNorm2d":
        parts.append("BN")
    if row["Dropout"] != "None":
        parts.append(f"dropout {row['Dropout']}")
    if row.get("Setting"):
        parts.append(row["Setting"])
    return " / ".join(parts)


def accuracy_vs_paper(group: str, trials: pd.DataFrame) -> list[Figure]:
    """The table's rows (trials that ran their budget) as bars with their intervals, the paper's beside."""
    table = paper_table_of(group, trials)
    frame = compare_paper(table, table_rows(trials), trials)
    frame = frame[frame["n"] > 0]
    if frame.empty:
        return []
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(frame) + 1.4))
    y = np.arange(len(frame))
    means = frame["Val. Acc."].to_numpy(float)
    low = np.nan_to_num(means - frame["CI low"].to_numpy(float))
    high = np.nan_to_num(frame["CI high"].to_numpy(float) - means)
    ax.barh(y, means, xerr=[low, high], color="#4c72b0", alpha=0.8, capsize=3,
            label="ours: mean, 95 % CI over seeds")
    paper = frame["Paper Val. Acc."].to_numpy(float)
    if np.isfinite(paper).any():
        ax.scatter(paper, y, marker="D", color="#dd8452", zorder=3,
                   label=f"the paper ({PAPER_EPOCHS[table]} epochs, {PAPER_TRAIN_IMAGES:,} images)")
    ax.set_yticks(y, [_row_label(r) for _, r in frame.iterrows()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("best test accuracy (fraction correct)")
    ax.set_xlim(0, 1)
    n = int(frame["n"].max())
    ax.set_title(f"{group}: accuracy per variant (up to {n} seed{'s' if n > 1 else ''})", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax)
    return [Figure("accuracy", group, f"{_safe(group)}_accuracy", f"{group}: accuracy per variant", fig)]


def learning_curves(group: str, trials: pd.DataFrame, epochs: pd.DataFrame) -> list[Figure]:
    trials = _labelled(trials)
    merged = epochs.merge(trials, on=["experiment", "trial_id"], suffixes=("", "_trial"))
    if merged.empty:
        return []
    labels = sorted(set(trials["label"]))
    colours = _colours(labels)
    styles = ["-", "--", ":", "-."]
    seeds = sorted(trials["seed"].unique())
    fig, ax = plt.subplots(figsize=(8, 4.5))
    n_epochs = int(merged["epoch"].max())
    shown = set()
    for (trial_id, _), rows in merged.groupby(["trial_id", "experiment"]):
        rows = rows.sort_values("epoch")
        label, seed = rows["label"].iloc[0], rows["seed"].iloc[0]
        ax.plot(rows["epoch"], rows["test_acc"], color=colours[label],
                linestyle=styles[seeds.index(seed) % len(styles)], lw=1.2,
                marker="o" if n_epochs <= FEW_EPOCHS else None, ms=3,
                label=label if label not in shown else None)
        shown.add(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, even for one
    ax.set(xlabel="epoch", ylabel="test accuracy (fraction correct)",
           title=f"{group}: test accuracy per epoch, every trial"
                 + (f" (line style = seed, {len(seeds)} seeds)" if len(seeds) > 1 else ""))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return [Figure("curves", group, f"{_safe(group)}_curves", f"{group}: learning curves", fig)]


def time_bars(group: str, trials: pd.DataFrame) -> list[Figure]:
    """Seconds per epoch do not depend on how long a trial ran, so pruned trials count here too."""
    timed = _labelled(trials.dropna(subset=["train_time_s"]))
    if timed.empty:
        return []
    per_variant = [(part["label"].iloc[0], part["train_time_s"].mean(), part["eval_time_s"].mean())
                   for _, part in timed.groupby(timed.apply(_labels, axis=1), sort=True)]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(per_variant) + 1.4))
    y = np.arange(len(per_variant))
    for offset, index, name, colour in ((-0.2, 1, "train", "#4c72b0"), (0.2, 2, "eval", "#55a868")):
        ax.barh(y + offset, [v[index] for v in per_variant], 0.4, color=colour, label=f"{name} s/epoch")
    ax.set_yticks(y, [v[0] for v in per_variant], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="seconds per epoch (mean over trials)", title=f"{group}: train and eval time per epoch")
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax)
    return [Figure("times", group, f"{_safe(group)}_times", f"{group}: train and eval time", fig)]


def robustness_curves(group: str, trials: pd.DataFrame, robustness: pd.DataFrame) -> list[Figure]:
    merged = robustness.merge(_labelled(trials), on=["experiment", "trial_id"])
    out = []
    for arch, part in merged.groupby("arch"):
        labels = sorted(set(part["label"]))
        colours = _colours(labels)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for label, rows in part.groupby("label", sort=True):
            eps = sorted(rows["eps"].unique())
            stats = [mean_interval(rows[rows["eps"] == e]["accuracy"].tolist()) for e in eps]
            err = [[s.estimate - s.low if s.has_interval else 0 for s in stats],
                   [s.high - s.estimate if s.has_interval else 0 for s in stats]]
            ax.errorbar(eps, [s.estimate for s in stats], yerr=err, marker="o", ms=4, capsize=2,
                        color=colours[label], label=label)
        n_images = int(part["n_images"].max())
        positive = sorted(e for e in part["eps"].unique() if e > 0)
        if len(positive) == part["eps"].nunique() and len(positive) > 2:  # the paper's eps span 30x: log axis
            ax.set_xscale("log")
            ax.set_xticks(positive, [f"{e:g}" for e in positive])
            ax.minorticks_off()
        ax.set(xlabel="PGD ε (L∞ radius, images in [0, 1])", ylabel="accuracy under attack (fraction)",
               title=f"{group} {ARCH_LABELS.get(arch, arch)}: accuracy under PGD ({n_images} test images)")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
        out.append(Figure("pgd", group, f"{_safe(group)}_{arch}_pgd", f"{group}: accuracy under PGD", fig))
    return out


def saliency_grid(group: str, trials: pd.DataFrame, saliency: pd.DataFrame) -> list[Figure]:
    """Rows = variants (first seed), columns = the same test images; each map normalised to its maximum
    and titled with its Gini coefficient (0 = uniform, 1 = one pixel)."""
    merged = saliency.merge(trials, on=["experiment", "trial_id"])
    if merged.empty:
        return []
    first = merged[merged["seed"] == merged["seed"].min()]
    variants = list(first.groupby("trial_id"))
    images = sorted(first["image_index"].unique())[:10]
    fig, axes = plt.subplots(len(variants), len(images), squeeze=False, layout="constrained",
                             figsize=(1.15 * len(images) + 1.8, 1.3 * len(variants) + 0.6))
    for r, (trial_id, rows) in enumerate(variants):
        for c, index in enumerate(images):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            hit = rows[rows["image_index"] == index]
            if not hit.empty:
                h, w = int(hit["height"].iloc[0]), int(hit["width"].iloc[0])
                sal = np.asarray(hit["map"].iloc[0], dtype=float).reshape(h, w)
                ax.imshow(sal / max(sal.max(), 1e-12), cmap="hot", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"Gini {hit['sparsity_gini'].iloc[0]:.2f}", fontsize=6, pad=2)
            if c == 0:
                ax.set_ylabel(variant_label(rows.iloc[0]), fontsize=7, rotation=0, ha="right", va="center")
            if r == len(variants) - 1:
                ax.set_xlabel(f"test img {index}", fontsize=6)
    fig.suptitle(f"{group}: vanilla-gradient saliency |∂ score / ∂ input| (max over channels)", fontsize=9)
    return [Figure("saliency", group, f"{_safe(group)}_saliency", f"{group}: saliency maps", fig)]


def p_per_kernel(group: str, trials: pd.DataFrame, layers: pd.DataFrame) -> list[Figure]:
    """Fig 7: the learned p of every kernel of the first sharpened layer, per epoch."""
    out = []
    limit = None if group == "p-dynamics" else MAX_P_FIGURES
    learned = trials[(trials["p_mode"] == "learned") & trials["layer"].isin(["scs", "sdp"])]
    for _, trial in learned.sort_values(["seed", "trial_id"]).iterrows():
        rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
        rows = rows[rows["p_values"].notna()]
        if rows.empty or rows["epoch"].nunique() < 2:
            continue
        first = rows[rows["layer_index"] == rows["layer_index"].min()].sort_values("epoch")
        values = np.stack([np.asarray(v, dtype=float) for v in first["p_values"]])  # (epochs, kernels)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.plot(first["epoch"], values, lw=0.6, alpha=0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="learned exponent p",
               title=f"{group} {variant_label(trial)} seed {trial['seed']}: p of each of the {values.shape[1]} "
                     f"kernels of {first['layer_name'].iloc[0]}")
        ax.grid(alpha=0.3)
        out.append(Figure("p-per-kernel", group, f"{_safe(group)}_p_per_kernel_{_safe(trial['trial_id'])}",
                          f"{group}: p per kernel", fig))
        if limit and len(out) >= limit:
            break
    return out


def weight_norms(group: str, trials: pd.DataFrame, layers: pd.DataFrame) -> list[Figure]:
    """Fig 2: L2 norm of every layer's weights, per mini-batch where recorded, else per epoch."""
    out = []
    for _, trial in trials.iterrows():
        rows = layers[(layers["trial_id"] == trial["trial_id"]) & (layers["experiment"] == trial["experiment"])]
        if rows.empty:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
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
                          f"{group}: weight norms", fig))
    return out


def optuna_search(group: str, trials: pd.DataFrame) -> list[Figure]:
    """Fig 8: each trial a line from its p to its accuracy, and accuracy against p."""
    searched = trials[trials["p_mode"] == "fixed"].dropna(subset=["val_acc", "p_value"])
    if len(searched) < 2 or searched["p_value"].nunique() < 2:
        return []
    p, acc = searched["p_value"].to_numpy(float), searched["val_acc"].to_numpy(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
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
    return [Figure("optuna", group, f"{_safe(group)}_optuna", f"{group}: Optuna search over p", fig)]


# ---------------------------------------------------------------------------------------------
# From the store
# ---------------------------------------------------------------------------------------------
def load_figure_data(store, experiment: str = "") -> dict[str, pd.DataFrame]:
    """The store tables the figures read, only the columns and layer rows they draw."""
    exp = experiment or None
    trials = store.read_table("trials", exp).to_pandas()
    epochs = store.read_table("epochs", exp, columns=["experiment", "trial_id", "epoch", "test_acc"]).to_pandas()
    # layers: every row of the weight-norms runs; of the others only the first layer, when sharpened
    # (every weight layer of an SCS/SDP net is sharpened, and the first comes first in forward order)
    wanted = ds.field("layer_type").isin(["scs", "sdp"]) & (ds.field("layer_index") == 0)
    norms_ids = trials.loc[trials["group"].str.startswith("weight-norms"), "trial_id"].tolist()
    if norms_ids:
        wanted = wanted | ds.field("trial_id").isin(norms_ids)
    layers = store.read_table("layers", exp, where=wanted, columns=[
        "experiment", "trial_id", "epoch", "layer_index", "layer_name", "layer_type", "weight_norm",
        "p_values", "weight_norm_per_batch"]).to_pandas()
    return {"trials": trials, "epochs": epochs, "layers": layers,
            "robustness": store.read_table("robustness", exp).to_pandas(),
            "saliency": store.read_table("saliency", exp).to_pandas()}


def figures_for_group(group: str, data: dict[str, pd.DataFrame]) -> list[Figure]:
    """Every figure one table (group) of trials has the data for."""
    trials = data["trials"][data["trials"]["group"] == group]
    ids = set(trials["trial_id"])

    def of(table: str) -> pd.DataFrame:
        frame = data[table]
        return frame[frame["trial_id"].isin(ids)]

    layers = of("layers")
    out = accuracy_vs_paper(group, trials) + learning_curves(group, trials, of("epochs"))
    out += time_bars(group, trials) + robustness_curves(group, trials, of("robustness"))
    out += saliency_grid(group, trials, of("saliency"))
    if group.startswith("weight-norms"):
        out += weight_norms(group, trials, layers)
    else:
        out += p_per_kernel(group, trials, layers)
    return out + optuna_search(group, trials)


def write_figures(store, out: str | Path, experiment: str = "") -> list[Path]:
    """Every figure the store (or one experiment of it) has data for, as PNG files; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_figure_data(store, experiment)
    paths = []
    for group in sorted(data["trials"]["group"].dropna().unique()):
        for figure in figures_for_group(group, data):
            path = out / f"{figure.name}.png"
            path.write_bytes(figure.png(dpi=110))
            paths.append(path)
    return paths
