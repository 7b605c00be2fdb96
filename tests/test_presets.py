"""Each preset expands to exactly the paper's variant set (docs/paper_facts.md) and plans into
valid trial configs; `presets --show` prints a sweep file that plans the very same trials."""
import pytest

from orchestrator.plan import RunOptions, estimate_gpu_hours, plan_sweep
from search_spaces import SpecError, get_preset, list_presets, load_sweep_file, sweep_file_text


def variant_set(name):
    (experiment,) = get_preset(name)
    return {(t["arch"], t["layer"], t["activation"], t["pooling"], t.get("normalization", ""))
            for t in experiment.trials()}


@pytest.mark.parametrize("name,count", [("table1", 8), ("table2", 8), ("table3", 10), ("table4", 10),
                                        ("table5", 10), ("table6", 10), ("table7", 10), ("table8", 12)])
def test_tables_have_the_papers_variant_counts(name, count):
    (experiment,) = get_preset(name)
    assert len(experiment.trials()) == count == len(variant_set(name))


@pytest.mark.parametrize("name", ["table3", "table4", "table5", "table6", "table7", "table8"])
def test_no_conv_without_relu_after_table2(name):
    assert not any(layer == "conv" and act == "none" for _, layer, act, _, _ in variant_set(name))


def test_table8_is_resnet18_at_224_with_and_without_batchnorm():
    trials = get_preset("table8")[0].trials()
    assert {t["image_dim"] for t in trials} == {224}
    assert sum(t["layer"] == "scs" for t in trials) == 8
    assert {t["normalization"] for t in trials} == {"batchnorm", "none"}
    assert not any(t["layer"] == "sdp" for t in trials)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_plans_into_resolved_trial_configs(name):
    sweep = plan_sweep(name, name, get_preset(name), RunOptions(dataset="synthetic"))
    configs = [t["config"] for part in sweep.parts for t in part.trials]
    assert configs and all(c["normalization"] in ("batchnorm", "none") for c in configs)  # defaults filled in
    for experiment in get_preset(name):
        planned = [t for part in sweep.parts if part.part.startswith(experiment.name) for t in part.trials]
        assert len(planned) == len(experiment.trials())
        assert all(t["config"]["epochs"] == experiment.epochs for t in planned)


@pytest.mark.parametrize("name", list_presets())
def test_the_printed_sweep_file_plans_exactly_the_presets_trials(name, tmp_path):
    path = tmp_path / f"{name}.toml"
    path.write_text(sweep_file_text(name, get_preset(name)))
    file_name, experiments, _ = load_sweep_file(path)
    assert file_name == name and experiments == get_preset(name)
    seeds = None if all(e.search for e in experiments) else 2  # --seeds is refused on a search-only sweep
    from_file = plan_sweep(name, str(path), experiments, RunOptions(dataset="synthetic", seeds=seeds))
    from_preset = plan_sweep(name, name, get_preset(name), RunOptions(dataset="synthetic", seeds=seeds))
    assert [p.trials for p in from_file.parts] == [p.trials for p in from_preset.parts]


def test_seeds_repeat_every_variant_and_paper_covers_every_experiment():
    parts = {e.name for e in get_preset("paper")}
    assert {"table1", "table2", "cosine", "weight-norms", "p-dynamics", "table8"} <= parts
    (part,) = plan_sweep("table1", "table1", get_preset("table1"), RunOptions(seeds=3, dataset="synthetic")).parts
    assert part.n_trials == 24
    assert sorted(t["config"]["seed"] for t in part.trials) == [0] * 8 + [1] * 8 + [2] * 8


def test_weight_norms_runs_the_scs_from_conv_stage_after_the_conv_run():
    plan = plan_sweep("weight-norms", "weight-norms", get_preset("weight-norms"), RunOptions(dataset="synthetic"))
    assert [p.part for p in plan.parts] == ["weight-norms", "weight-norms-scs-from-conv"]
    assert plan.parts[1].depends_on == "weight-norms"
    assert {t["config"]["layer"] for t in plan.parts[0].trials} == {"conv", "scs"}
    assert plan.parts[1].trials[0]["config"]["init_from"] == "@weight-norms/conv"


def test_cosine_fixes_p_to_one_and_optuna_searches_p():
    assert all(t["p_mode"] == "fixed" and t["p_value"] == 1.0 for t in get_preset("cosine")[0].trials())
    search = get_preset("optuna-p-rohrer100k")[0].search
    assert search.key == "p_value" and search.low <= 1.0 <= search.high and search.log


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SpecError, match="table1"):
        get_preset("table9")


def test_gpu_hour_estimate_uses_bench_json_when_given(tmp_path, monkeypatch):
    import json

    from search_spaces.epoch_times import H200_SECONDS_PER_EPOCH, seconds_per_epoch

    trials, epochs, hours = estimate_gpu_hours(get_preset("table1"), seconds_per_epoch)
    anchors = 4 * 800 * (H200_SECONDS_PER_EPOCH["rohrer/conv"] + H200_SECONDS_PER_EPOCH["rohrer/scs"]) / 3600
    assert (trials, epochs) == (8, 6400) and hours == pytest.approx(anchors)
    bench = {"epochs": [{"arch": "rohrer100k", "layer": "conv", "image_dim": 32, "train_s_per_epoch": 0.2,
                         "eval_s_per_epoch": 0.05},
                        {"arch": "rohrer100k", "layer": "scs", "image_dim": 32, "train_s_per_epoch": 0.3,
                         "eval_s_per_epoch": 0.05}]}
    (tmp_path / "times.json").write_text(json.dumps(bench))
    monkeypatch.setenv("SCS_EPOCH_TIMES", str(tmp_path / "times.json"))
    _, _, measured = estimate_gpu_hours(get_preset("table1"), seconds_per_epoch)
    assert measured == pytest.approx(4 * 800 * (0.25 + 0.35) / 3600)
