"""Time to build every table and figure from a store of the full paper's size, and its size on disk.

Synthesises the 78 trials of Tables 1-8 (the variants of the presets) with 800 epochs each, per-layer
rows with every p value (the real layer counts and kernel counts of each arch), PGD rows for 6 eps and
10 saliency maps per trial; then times the tables (three formats, --compare-paper: intervals, claims,
effects), the PNG figures and the self-contained report. Time `scs-sweep query` and `scs-sweep tables`
on the store it leaves (OUT/store) with /usr/bin/time -v for their wall time and peak memory.

    python -m bench.store_bench [--epochs 800] [--out /tmp/store_bench]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from common.config import TrialConfig
from results.figures import write_figures
from results.report import write_report
from results.rows import evaluation_rows, rows_for_trial
from results.store import ParquetStore
from results.tables import render_all
from search_spaces.presets import get_preset
from trainables.models import build_model, weight_layers


def layer_shapes(trial: dict) -> list[tuple[str, str, int]]:
    """(name, type, number of p values) of every weight layer of the trial's model."""
    cfg = TrialConfig.from_dict({k: v for k, v in trial.items() if k != "group"})
    with torch.device("meta"):
        model = build_model(cfg, init=False)
    out = []
    for name, m in weight_layers(model):
        kind = cfg.layer if m.weight.dim() == 4 else "linear"
        out.append((name, kind, m.weight.shape[0] if kind in ("scs", "sdp") else 0))
    return out


def synthesise(store: ParquetStore, epochs: int) -> int:
    rng = np.random.default_rng(0)
    trials = [t for n in ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "table8")
              for t in get_preset(n)[0].trials()]
    for i, trial in enumerate(trials):
        shapes = layer_shapes(trial)
        acc = np.clip(0.1 + 0.75 * (1 - np.exp(-np.arange(1, epochs + 1) / 60)) + rng.normal(0, 0.01, epochs), 0, 1)
        results = []
        for e in range(epochs):
            layers = [{"layer_index": j, "layer_name": name, "layer_type": kind, "weight_norm": 1.0 + 0.01 * e,
                       "grad_norm": 0.1, "p_mean": 2.0 if n_p else None, "p_min": 1.0 if n_p else None,
                       "p_max": 3.0 if n_p else None, "q": 1e-3 if kind == "scs" else None,
                       "p_values": rng.uniform(1, 3, n_p).astype(np.float32).tolist() if n_p else None}
                      for j, (name, kind, n_p) in enumerate(shapes)]
            results.append({"epoch": e + 1, "train_loss": 1.0, "train_acc": float(acc[e]), "test_loss": 1.0,
                            "test_acc": float(acc[e]), "train_time_s": 1.0, "eval_time_s": 0.1, "lr": 0.01,
                            "params": 100_000, "layers": layers})
        config = TrialConfig.from_dict({**{k: v for k, v in trial.items() if k != "group"},
                                        "epochs": epochs}).to_dict()
        tid = f"trial{i:03d}"
        store.write_trial("paper", tid, rows_for_trial("paper", tid, trial["group"], "full", config, results,
                                                       "done"))
        evaluation = {"robustness": [{"attack": "pgd_linf", "eps": eps, "steps": 10, "step_size": eps / 4,
                                      "accuracy": float(acc[-1]) - 10 * eps, "n_images": 1000}
                                     for eps in (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03)],
                      "saliency": [{"image_index": k, "label": k, "predicted": k, "height": 32, "width": 32,
                                    "map": rng.random(1024).astype(np.float32).tolist(), "sparsity_gini": 0.3,
                                    "top5_mass": 0.1} for k in range(10)]}
        store.write_trial("paper", tid, evaluation_rows(tid, evaluation))
    return len(trials)


def disk_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=800)
    p.add_argument("--out", default="/tmp/store_bench")
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    store = ParquetStore(str(out / "store"))
    t = time.perf_counter()
    n = synthesise(store, args.epochs)
    t_write = time.perf_counter() - t
    rows = {name: store.read_table(name).num_rows for name in ("trials", "epochs", "layers", "robustness", "saliency")}

    t = time.perf_counter()
    texts = [render_all(store, "", fmt, True, False) for fmt in ("md", "csv", "latex")]
    t_tables = time.perf_counter() - t

    t = time.perf_counter()
    figures = write_figures(store, out / "figures")
    t_figures = time.perf_counter() - t
    t = time.perf_counter()
    report = write_report(store, out / "report")
    t_report = time.perf_counter() - t

    print(f"store: {n} trials x {args.epochs} epochs; rows {rows}")
    print(f"synthesise + write: {t_write:.1f} s")
    print(f"tables (8 tables x md/csv/latex, --compare-paper, claims, effects): {t_tables:.2f} s "
          f"({sum(t.count('###') for t in texts)} md tables)")
    print(f"figures: {t_figures:.1f} s ({len(figures)} PNGs)")
    print(f"report: {t_report:.1f} s ({report.stat().st_size / 2**20:.1f} MiB, one file)")
    print(f"store size on disk: {disk_size(out / 'store') / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
