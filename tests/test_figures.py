"""Every figure kind from a small planted store is a real, non-blank PNG, and the report is one
self-contained HTML file holding the tables, verdicts, effects, provenance and a figure of every kind."""
import base64
import io
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

from results.figures import KINDS, write_figures
from results.report import write_report
from results.rows import evaluation_rows, rows_for_trial
from results.store import ParquetStore


def png_pixels(data: bytes):
    """The decoded pixels of a PNG (matplotlib reads it through Pillow): (height, width, channels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return (plt.imread(io.BytesIO(data)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = ParquetStore(str(tmp_path_factory.mktemp("s") / "store"))
    rng = np.random.default_rng(0)
    specs = [("table1", "rohrer100k", layer, act, pool, "learned", None, seed)
             for layer, act, pool in (("conv", "relu", "max"), ("conv", "relu", "maxabs"), ("scs", "none", "max"),
                                      ("scs", "none", "maxabs"), ("conv", "none", "max")) for seed in (0, 1)]
    specs += [("p-dynamics", "rohrer100k", "scs", "none", "maxabs", "learned", None, 0),
              ("weight-norms/scs-scratch", "resnet20", "scs", "relu", "max", "learned", None, 0)]
    specs += [("optuna-p-rohrer100k", "rohrer100k", "scs", "none", "maxabs", "fixed", p, 0) for p in (0.3, 1.0, 3.0)]
    for i, (group, arch, layer, act, pool, mode, p, seed) in enumerate(specs):
        results = []
        for e in range(1, 5):
            layers = [{"layer_index": j, "layer_name": f"l{j}", "layer_type": layer, "weight_norm": 1 + e * j,
                       "grad_norm": 0.1, "p_values": list(rng.uniform(1, 3, 8)) if layer != "conv" else None,
                       "weight_norm_per_batch": list(rng.uniform(1, 2, 5))} for j in range(3)]
            results.append({"epoch": e, "train_loss": 2 / e, "train_acc": 0.2 * e, "test_loss": 2 / e,
                            "test_acc": 0.15 * e + 0.01 * i, "train_time_s": 1.0 + (layer == "scs"),
                            "eval_time_s": 0.2, "lr": 0.01, "layers": layers, "code_version": "abc1234",
                            "torch_version": "2.13.0", "ray_version": "2.60.0", "gpu": "cpu", "host": "h"})
        config = dict(arch=arch, layer=layer, activation=act, pooling=pool, normalization="none", image_dim=32,
                      p_mode=mode, p_value=p, epochs=4, seed=seed, dataset="cifar10", n_train=5000, n_test=2000,
                      batch_weight_norms=group.startswith("weight-norms"))
        store.write_trial("exp", f"t{i}", rows_for_trial("exp", f"t{i}", group, "quick", config, results, "done"))
        evaluation = {"robustness": [{"attack": "pgd_linf", "eps": eps, "steps": 10, "step_size": eps / 4,
                                      "accuracy": 0.8 - eps * (5 + i), "n_images": 100}
                                     for eps in (0.0, 0.001, 0.01, 0.03)],
                      "saliency": [{"image_index": k, "label": k, "predicted": k, "height": 32, "width": 32,
                                    "map": list(rng.random(1024)), "sparsity_gini": 0.3, "top5_mass": 0.1,
                                    "image": list(rng.integers(0, 256, 3 * 32 * 32))} for k in range(3)]}
        store.write_trial("exp", f"t{i}", evaluation_rows(f"t{i}", evaluation))
    store.write_sweep("exp", "name = \"exp\"\nepochs = 4\n")
    return store


def test_every_figure_kind_is_a_nontrivial_png(store, tmp_path):
    paths = write_figures(store, tmp_path)
    names = {p.name for p in paths}
    for expected in ("table1_accuracy.png", "table1_curves.png", "table1_times.png", "table1_rohrer100k_pgd.png",
                     "table1_saliency.png", "p-dynamics_p_per_kernel.png", "weight-norms-scs-scratch_weight_norms_t11.png",
                     "optuna-p-rohrer100k_optuna.png", "table1_claim_Conv2d-needs-ReLU.png"):
        assert expected in names, sorted(names)
    for path in paths:
        pixels = png_pixels(path.read_bytes())
        assert min(pixels.shape[:2]) > 150, (path.name, pixels.shape)
        packed = pixels[..., :3].astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
        colours = len(np.unique(packed))
        assert colours > 20, path.name  # more than a blank canvas with a frame


def test_a_one_epoch_learning_curve_still_shows_its_points(tmp_path):
    """Single points drawn as lines without markers would leave an empty frame."""
    store = ParquetStore(str(tmp_path / "store"))
    for i in range(2):
        config = dict(arch="rohrer25k", layer="conv", activation="relu", pooling=("max", "maxabs")[i],
                      normalization="none", image_dim=32, p_mode="learned", epochs=1, seed=0, dataset="synthetic")
        result = {"epoch": 1, "test_acc": 0.5, "train_time_s": 1.0, "eval_time_s": 0.1}
        store.write_trial("e", f"t{i}", rows_for_trial("e", f"t{i}", "g", "smoke", config, [result], "done"))
    (path,) = [p for p in write_figures(store, tmp_path / "f") if p.name == "g_curves.png"]
    pixels = png_pixels(path.read_bytes())[..., :3].astype(int)
    seed_colour = np.array(plt.get_cmap("Dark2")(0)[:3]) * 255  # the first seed's colour
    assert (abs(pixels - seed_colour).sum(axis=2) < 60).sum() > 20  # the markers are drawn


def test_the_report_is_one_self_contained_file_with_every_kind(store, tmp_path):
    out = tmp_path / "report"
    path = write_report(store, out)
    assert [p.name for p in out.iterdir()] == ["report.html"]
    page = path.read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page)
    # nothing is loaded from outside; the one link out is to the paper itself
    outside = [r for r in refs if not r.startswith(("data:", "#"))]
    assert refs and outside == ["https://arxiv.org/abs/2307.13855"], [r[:40] for r in outside]
    assert all(r.startswith("data:") for r in re.findall(r"""src\s*=\s*['"]([^'"]*)['"]""", page))
    assert "<link" not in page and "<script" not in page and "@import" not in page
    kinds = set(re.findall(r"data-kind='([a-z-]+)'", page))
    assert kinds == set(KINDS)
    images = re.findall(r"src='data:image/svg\+xml;base64,([^']+)'", page)
    assert len(images) == page.count("<figure")  # every figure a vector image: sharp at any pixel density
    for data in images[:3]:
        svg = base64.b64decode(data).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and svg.count("<path") > 10
        assert "<text" in svg  # text stays text (the page's sans-serif), not outlines
    for needle in ("Provenance", "abc1234", "2.13.0", "5,000", "quick", "Paper Val. Acc.", "95% CI", "Final Acc.",
                   "Summary", "Claims: paired differences", "Factor effects", "MaxAbsPool2d - MaxPool2d",
                   "the sweep file it ran"):
        assert needle in page, needle
    assert re.search(r"class='badge v-(supported|contradicted|undecided|not-judged|not-tested)'", page)


def test_a_setting_beyond_the_papers_columns_gets_its_own_curves(tmp_path):
    """Two learning rates of one variant are two curves, not one averaged over them."""
    from results.figures import figures_for_group
    from results.table_data import load_table_data

    store = ParquetStore(str(tmp_path / "store"))
    for i, lr in enumerate((0.003, 0.01)):
        config = dict(arch="rohrer25k", layer="scs", activation="none", pooling="max", normalization="none",
                      image_dim=32, p_mode="learned", epochs=1, seed=0, dataset="synthetic", max_lr=lr)
        result = {"epoch": 1, "test_acc": 0.5, "train_time_s": 1.0, "eval_time_s": 0.1}
        store.write_trial("e", f"t{i}", rows_for_trial("e", f"t{i}", "lr", "smoke", config, [result], "done"))
        store.write_trial("e", f"t{i}", evaluation_rows(f"t{i}", {"robustness": [
            {"attack": "pgd_linf", "eps": eps, "steps": 2, "step_size": eps, "accuracy": 0.4 - i / 10,
             "n_images": 10} for eps in (0.01, 0.03)]}))
    figures = {f.kind: f for f in figures_for_group("lr", load_table_data(store))}
    panels = [ax.get_title() for ax in figures["curves"].fig.axes if ax.get_title()]
    assert panels == ["SCS / None / MaxPool2d / max_lr=0.003", "SCS / None / MaxPool2d / max_lr=0.01"]
    # under PGD the one setting is compared with the other, the baseline named in the caption
    pgd = figures["pgd"]
    assert [ax.get_title() for ax in pgd.fig.axes if ax.get_title()] == ["SCS / None / MaxPool2d / max_lr=0.01"]
    assert "the baseline (SCS / None / MaxPool2d / max_lr=0.003)" in pgd.caption
