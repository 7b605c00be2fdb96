"""Each preset expands to exactly the paper's variant set (shared/reference/paper_facts.md)."""
import pytest

from orchestrator.plan import plan_sweep
from search_spaces.presets import PresetError, get_preset, list_presets
from trainables.config import TrialConfig


def variant_set(name):
    (preset,) = get_preset(name)
    return {(t["arch"], t["layer"], t["activation"], t["pooling"], t.get("normalization", "")) for t in preset.trials}


@pytest.mark.parametrize("name,count", [("table1", 8), ("table2", 8), ("table3", 10), ("table4", 10),
                                        ("table5", 10), ("table6", 10), ("table7", 10), ("table8", 12)])
def test_tables_have_the_papers_variant_counts(name, count):
    (preset,) = get_preset(name)
    assert len(preset.trials) == count == len(variant_set(name))


@pytest.mark.parametrize("name", ["table3", "table4", "table5", "table6", "table7", "table8"])
def test_no_conv_without_relu_after_table2(name):
    assert not any(layer == "conv" and act == "none" for _, layer, act, _, _ in variant_set(name))


def test_table8_is_resnet18_at_224_with_and_without_batchnorm():
    (preset,) = get_preset("table8")
    assert {t["image_dim"] for t in preset.trials} == {224}
    assert sum(t["layer"] == "scs" for t in preset.trials) == 8
    assert {t["normalization"] for t in preset.trials} == {"batchnorm", "none"}
    assert not any(t["layer"] == "sdp" for t in preset.trials)


def test_every_preset_trial_is_a_valid_trial_config():
    for name in list_presets():
        for preset in get_preset(name):
            for t in preset.trials:
                keys = {k: v for k, v in t.items() if k != "group"}
                if keys.get("init_from", "").startswith("@"):
                    keys["init_from"] = "/some/checkpoint.pt"
                cfg = TrialConfig.from_dict({**keys, "epochs": preset.epochs,
                                             **({"p_value": 1.0} if preset.search else {})})
                assert cfg.epochs == preset.epochs


def test_paper_covers_every_experiment_and_seeds_repeat_variants():
    parts = {p.name for p in get_preset("paper")}
    assert {"table1", "table2", "cosine", "weight-norms", "p-dynamics", "table8"} <= parts
    plan = plan_sweep("table1", seeds=3)
    assert plan.runs[0].n_trials == 24 and plan.runs[0].seeds == [0, 1, 2]


def test_weight_norms_runs_the_scs_from_conv_stage_after_the_conv_run():
    plan = plan_sweep("weight-norms")
    assert [r.part for r in plan.runs] == ["weight-norms", "weight-norms-scs-from-conv"]
    assert plan.runs[1].depends_on == "weight-norms"
    assert {v["layer"] for v in plan.runs[0].variants} == {"conv", "scs"}


def test_cosine_fixes_p_to_one_and_optuna_searches_p():
    assert all(t["p_mode"] == "fixed" and t["p_value"] == 1.0 for t in get_preset("cosine")[0].trials)
    search = get_preset("optuna-p-rohrer100k")[0].search
    assert search.key == "p_value" and search.low <= 1.0 <= search.high


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(PresetError, match="table1"):
        get_preset("table9")


def test_gpu_hour_estimate_uses_bench_json_when_given(tmp_path, monkeypatch):
    import json

    from orchestrator.plan import estimate_gpu_hours
    from search_spaces.epoch_times import seconds_per_epoch

    trials, epochs, hours = estimate_gpu_hours("table1", seconds_per_epoch)
    assert (trials, epochs) == (8, 6400) and hours > 0
    bench = {"epochs": [{"arch": "rohrer100k", "layer": "conv", "image_dim": 32, "train_s_per_epoch": 0.2,
                         "eval_s_per_epoch": 0.05},
                        {"arch": "rohrer100k", "layer": "scs", "image_dim": 32, "train_s_per_epoch": 0.3,
                         "eval_s_per_epoch": 0.05}]}
    (tmp_path / "times.json").write_text(json.dumps(bench))
    monkeypatch.setenv("SCS_EPOCH_TIMES", str(tmp_path / "times.json"))
    _, _, measured = estimate_gpu_hours("table1", seconds_per_epoch)
    assert measured == pytest.approx(4 * 800 * (0.25 + 0.35) / 3600)
