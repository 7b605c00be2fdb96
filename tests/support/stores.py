"""Stores planted with rows of made-up trials (four Table-1 variants), for the store and table tests."""
import json

from results.rows import rows_for_trial


def planted_results(epochs, acc, train_s=1.0, eval_s=0.1):
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": acc, "test_loss": 1.0, "test_acc": acc * e / epochs,
             "train_time_s": train_s, "eval_time_s": eval_s, "lr": 0.01, "params": 100,
             "layers": [{"layer_index": 0, "layer_name": "features.0.layer", "layer_type": "scs",
                         "weight_norm": 1.0, "grad_norm": 0.5, "p_mean": 2.0, "p_min": 1.0, "p_max": 3.0,
                         "q": 0.001, "p_values": [1.0, 3.0]}]} for e in range(1, epochs + 1)]


VARIANTS = [("conv", "relu", "max", 0.80), ("conv", "relu", "maxabs", 0.65), ("scs", "none", "max", 0.79),
            ("scs", "none", "maxabs", 0.78)]


def config(**kw):
    base = dict(arch="rohrer100k", layer="scs", activation="none", pooling="maxabs", normalization="none",
                dropout=0.0, image_dim=32, p_mode="learned", seed=0, epochs=2, batch_size=128,
                dataset="cifar10", n_train=0, n_test=0)
    base.update(kw)
    return base


def plant(store, experiment="exp", seeds=(0,), group="table1", status="done", epochs=2, budget="full"):
    for i, (layer, act, pool, acc) in enumerate(VARIANTS):
        for seed in seeds:
            tid = f"t{i}_{seed}"
            store.write_trial(experiment, tid, rows_for_trial(
                experiment, tid, group, budget, config(layer=layer, activation=act, pooling=pool, seed=seed,
                                                       epochs=epochs),
                planted_results(2, acc + 0.01 * seed, 2.0 if layer == "scs" else 1.0,
                                0.1 if layer == "scs" else 0.2), status))


def tune_trial_dir(root, name="train_scs_ab123_00000_0_x", trial_id="ab123_00000", epochs=2, budget_epochs=2,
                    error=""):
    trial_dir = root / name
    trial_dir.mkdir(parents=True)
    params = {"trial": {"group": "g", "budget": "full", "config": config(arch="rohrer25k", epochs=budget_epochs)},
              "run": {}}
    (trial_dir / "params.json").write_text(json.dumps(params))
    lines = [dict(r, trial_id=trial_id, training_iteration=r["epoch"], timestamp=1_800_000_000 + r["epoch"],
                  time_this_iter_s=1.0) for r in planted_results(epochs, 0.5)]
    (trial_dir / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n{\"cut")
    if error:
        (trial_dir / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    return trial_dir
