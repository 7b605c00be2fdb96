"""Every figure is produced from a small planted store and is a real, non-blank PNG."""
import matplotlib.pyplot as plt
import numpy as np
import pytest

from results.figures import write_figures, write_report
from results.rows import evaluation_rows, rows_for_trial
from results.store import ParquetStore


def png_pixels(path):
    """The decoded pixels of a PNG (matplotlib reads it through Pillow): (height, width, channels)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return (plt.imread(path) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = ParquetStore(str(tmp_path_factory.mktemp("s") / "store"))
    rng = np.random.default_rng(0)
    specs = [("table1", "rohrer100k", "conv", "relu", "max", "learned", None),
             ("table1", "rohrer100k", "scs", "none", "maxabs", "learned", None),
             ("weight-norms/scs-scratch", "resnet20", "scs", "relu", "max", "learned", None)]
    specs += [("optuna-p-rohrer100k", "rohrer100k", "scs", "none", "maxabs", "fixed", p) for p in (0.3, 1.0, 3.0)]
    for i, (group, arch, layer, act, pool, mode, p) in enumerate(specs):
        results = []
        for e in range(1, 5):
            layers = [{"layer_index": j, "layer_name": f"l{j}", "layer_type": layer, "weight_norm": 1 + e * j,
                       "grad_norm": 0.1, "p_values": list(rng.uniform(1, 3, 8)) if layer != "conv" else None,
                       "weight_norm_per_batch": list(rng.uniform(1, 2, 5))} for j in range(3)]
            results.append({"epoch": e, "train_loss": 2 / e, "train_acc": 0.2 * e, "test_loss": 2 / e,
                            "test_acc": 0.15 * e + 0.01 * i, "train_time_s": 1.0 + i, "eval_time_s": 0.2,
                            "lr": 0.01, "layers": layers})
        config = dict(group=group, arch=arch, layer=layer, activation=act, pooling=pool, normalization="none",
                      image_dim=32, p_mode=mode, p_value=p, epochs=4)
        store.write_trial("exp", f"t{i}", rows_for_trial("exp", f"t{i}", config, results, "done"))
        evaluation = {"robustness": [{"attack": "pgd_linf", "eps": eps, "steps": 10, "step_size": eps / 4,
                                      "accuracy": 0.8 - eps * (5 + i), "n_images": 100}
                                     for eps in (0.001, 0.01, 0.03)],
                      "saliency": [{"image_index": k, "label": k, "predicted": k, "height": 32, "width": 32,
                                    "map": list(rng.random(1024)), "sparsity_gini": 0.3, "top5_mass": 0.1}
                                   for k in range(3)]}
        store.write_trial("exp", f"t{i}", evaluation_rows(f"t{i}", evaluation))
    return store


def test_every_figure_is_a_nontrivial_png(store, tmp_path):
    paths = write_figures(store, tmp_path)
    names = {p.name for p in paths}
    for expected in ("table1_accuracy.png", "table1_times.png", "p_per_kernel_t1.png",
                     "weight_norms_t2.png", "optuna-p-rohrer100k_parallel.png",
                     "table1_rohrer100k_pgd.png", "table1_saliency.png"):
        assert expected in names
    for path in paths:
        pixels = png_pixels(path)
        assert min(pixels.shape[:2]) > 150, (path.name, pixels.shape)
        colours = len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0))
        assert colours > 20, path.name  # more than a blank canvas with a frame


def test_report_puts_tables_and_figures_on_one_page(store, tmp_path):
    paths = write_figures(store, tmp_path)
    report = write_report(store, tmp_path, paths).read_text()
    assert "<h2>table1</h2>" in report and "Paper Val. Acc." in report
    assert all(f"src='{p.name}'" in report for p in paths)
