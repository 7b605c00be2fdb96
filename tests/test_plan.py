"""Plans validate before Ray starts: bad options and bad sweep files are one line and exit code 2;
--quick and the image subsets are recorded in every planned trial."""
import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from support.cli import cli, cli_many
from support.sweep_files import GOOD, GRID

from orchestrator.budget import QUICK
from orchestrator.errors import UsageError
from orchestrator.plan import RunOptions, plan_sweep
from search_spaces import SpecError, get_preset, load_sweep_file


def test_a_two_axis_sweep_file_expands_to_its_product(tmp_path):
    (tmp_path / "s.toml").write_text(GOOD)
    name, (experiment,), text = load_sweep_file(tmp_path / "s.toml")
    assert name == "lr-axis" and text == GOOD
    trials = experiment.trials()
    assert {(t["layer"], t["max_lr"]) for t in trials} == {(a, b) for a in ("conv", "scs") for b in (0.003, 0.01)}
    assert all(t["group"] == "lr-axis" and t["arch"] == "rohrer25k" for t in trials)


BAD_FILES = [
    (("max_lr = [0.003, 0.01]", "lr = [0.003, 0.01]"), "unknown key 'lr' in [grid]"),
    (("batch_size = 64", "batch_size = \"big\""), "config key 'batch_size' must be int, got str 'big'"),
    (("layer = [\"conv\", \"scs\"]", "layer = []"), "grid axis 'layer' must be a non-empty list"),
    (("layer = [\"conv\", \"scs\"]", "layer = [\"conv\", \"transformer\"]"), "config key 'layer' is 'transformer'"),
    (("epochs = 2", "epochs = -3"), "epochs must be a whole number >= 1, got -3"),
    (("[fixed]", "[fixed]\nepochs = 3"), "'epochs' in [fixed] is a run setting"),
    ((GRID, "[search]\nkey = \"p_value\"\nlow = 5.0\nhigh = 0.5"), "search range needs low < high"),
    ((GRID, "[search]\nkey = \"p_value\"\nlow = 0.0\nhigh = 2.0\nlog = true"), "a log search needs low > 0"),
    ((GRID, "[search]\nkey = \"widht\"\nlow = 1.0\nhigh = 2.0"), "search key 'widht' is not a numeric config key"),
    (("name = ", "nme = "), "unknown key 'nme' in the experiment"),
    (("[[grid]]", "[search]\nkey = \"p_value\"\nlow = 0.5\nhigh = 2.0\n\n[[grid]]"),
     "a [search] samples the settings of one trial, but the grid makes 4"),
    ((GRID, "[search]\nkey = [\"p_value\"]\nlow = 0.5\nhigh = 2.0"), "is not a numeric config key"),
    (("[fixed]", "[fixed"), "not valid TOML"),
]

BAD_OPTIONS = [
    (["--epochs", "-3"], "--epochs must be >= 0, got -3"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--train-images", "-1"], "--train-images must be >= 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--quick", "--smoke-test"], "--quick and --smoke-test exclude each other"),
    (["--data", "/no/such/folder"], "--data /no/such/folder is not a folder"),
]


def test_a_bad_sweep_file_is_one_line_naming_the_problem_and_nothing_starts(tmp_path):
    commands = []
    for i, (edit, message) in enumerate(BAD_FILES):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(GOOD.replace(*edit))
        with pytest.raises(SpecError, match=f"bad{i}.toml: .*" + re.escape(message)):
            load_sweep_file(path)
        commands.append(["run", str(path), "--storage", str(tmp_path / "runs"), "--store", str(tmp_path / "store")])
    results, imported_ray, imported_torch = cli_many(commands)
    for i, ((rc, lines), (_, message)) in enumerate(zip(results, BAD_FILES)):
        assert rc == 2 and len(lines) == 1, (message, lines)
        assert lines[0].startswith(f"scs-sweep run: error: bad{i}.toml") and message in lines[0]
    assert not imported_ray and not imported_torch  # decided before Ray (or even torch) was imported
    assert not (tmp_path / "runs").exists() and not (tmp_path / "store").exists()


def test_bad_run_options_are_one_line_before_ray_starts(tmp_path):
    results, imported_ray, imported_torch = cli_many(
        [["run", "table1", "--dataset", "synthetic" if "--data" not in args else "", "--storage",
          str(tmp_path / "runs"), *args] for args, _ in BAD_OPTIONS])
    for (rc, lines), (_, message) in zip(results, BAD_OPTIONS):
        assert rc == 2 and len(lines) == 1 and message in lines[0], (message, lines)
    assert not imported_ray and not imported_torch


def test_plan_rejects_a_preset_key_that_trial_config_does_not_know():
    from search_spaces.experiment import Experiment

    bad = Experiment("x", 2, fixed={"arch": "rohrer25k", "widht": 3})
    with pytest.raises(SpecError, match="unknown key 'widht'"):
        bad.validate("preset x")
    with pytest.raises(UsageError, match="unknown config key"):
        plan_sweep("x", "x", [bad], RunOptions(dataset="synthetic"))


def test_quick_and_subsets_are_recorded_in_every_trial():
    quick = plan_sweep("table1", "table1", get_preset("table1"), RunOptions(quick=True, data_dir="/d"))
    (part,) = quick.parts
    assert part.n_trials == 8 * QUICK.seeds and part.asha is None  # every trial of a quick run counts
    for t in part.trials:
        assert t["budget"] == "quick"
        c = t["config"]
        assert (c["epochs"], c["n_train"], c["n_test"]) == (QUICK.epochs, QUICK.n_train, QUICK.n_test)
        assert c["dataset"] == "cifar10" and c["data_dir"] == "/d"
    assert quick.evaluation == QUICK.evaluation
    sub = plan_sweep("table1", "table1", get_preset("table1"),
                     RunOptions(train_images=1000, test_images=500, epochs=3, data_dir="/d"))
    assert all(t["budget"] == "reduced" and (t["config"]["n_train"], t["config"]["n_test"], t["config"]["epochs"])
               == (1000, 500, 3) for t in sub.parts[0].trials)
    fewer = plan_sweep("table1", "table1", get_preset("table1"), RunOptions(epochs=20, data_dir="/d"))
    assert {t["budget"] for t in fewer.parts[0].trials} == {"reduced"}
    full = plan_sweep("table1", "table1", get_preset("table1"), RunOptions(data_dir="/d"))
    assert all(t["budget"] == "full" and t["config"]["n_train"] == 0 and t["config"]["epochs"] == 800
               for t in full.parts[0].trials)
    assert full.parts[0].asha == {"grace_period": 50, "reduction_factor": 4}


def test_presets_show_prints_a_sweep_file_and_read_commands_stay_light(tmp_path):
    out = cli(["presets", "--show", "table1"])
    assert out.returncode == 0 and "IMPORTED False False" in out.stdout
    text = out.stdout.split("IMPORTED")[0]
    (tmp_path / "t1.toml").write_text(text)
    (shown,), (preset,) = load_sweep_file(tmp_path / "t1.toml")[1], get_preset("table1")
    # the preset, and the paper's claims about its table written out as [[claim]]s (the same data as BUILTIN)
    from search_spaces.claims import BUILTIN

    assert replace(shown, claims=()) == preset
    assert [c.name for c in shown.claims] == ["SCS without ReLU is as accurate as Conv2d with ReLU", "Conv2d needs ReLU",
                                              "With ReLU, MaxAbsPool2d trains worse than MaxPool2d in the Rohrer nets",
                                              "SCS trains slower than Conv2d", "SCS evaluates faster than Conv2d"]
    assert all(c in BUILTIN for c in shown.claims)
    assert Path(tmp_path / "t1.toml").read_text().count("[[grid]]") == 1


@pytest.mark.parametrize("command", [["tables", "--compare-paper"], ["query", "SELECT count(*) FROM trials"],
                                     ["report", "--out", "REPORT"], ["status", "--storage", "RUNS"]])
def test_read_commands_import_neither_torch_nor_ray(command, tmp_path):
    from results.rows import rows_for_trial
    from results.store import ParquetStore

    store = ParquetStore(str(tmp_path / "store"))
    config = dict(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs", normalization="none",
                  image_dim=32, p_mode="learned", seed=0, epochs=1, dataset="synthetic")
    store.write_trial("e", "t0", rows_for_trial("e", "t0", "g", "smoke", config, [
        {"epoch": 1, "test_acc": 0.5, "train_time_s": 1.0, "eval_time_s": 0.1}], "done"))
    args = [a.replace("REPORT", str(tmp_path / "r")).replace("RUNS", str(tmp_path / "runs")) for a in command]
    out = cli([*args, *(["--store", str(tmp_path / "store")] if command[0] != "status" else [])])
    assert out.returncode == 0, out.stderr
    assert "IMPORTED False False" in out.stdout


def test_the_readme_sweep_file_example_is_a_valid_sweep(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "lr-sweep.toml").write_text(example)
    name, (experiment,), _ = load_sweep_file(tmp_path / "lr-sweep.toml")
    assert name == "lr-sweep" and len(experiment.trials()) == 18
    plan = plan_sweep(name, "lr-sweep.toml", [experiment], RunOptions(dataset="synthetic"))
    assert plan.parts[0].asha == {"grace_period": 5, "reduction_factor": 4}


def test_a_search_log_must_be_a_boolean(tmp_path):
    (tmp_path / "s.toml").write_text('name = "s"\nepochs = 2\n[fixed]\nlayer = "scs"\np_mode = "fixed"\n'
                                     '[search]\nkey = "p_value"\nlow = 0.5\nhigh = 2.0\nlog = "no"\n')
    with pytest.raises(SpecError, match="search log must be true or false, got 'no'"):
        load_sweep_file(tmp_path / "s.toml")


def test_a_bad_sweep_name_and_an_unreadable_plan_are_one_line(tmp_path):
    out = cli(["run", "table1", "--smoke-test", "--name", "a b", "--storage", str(tmp_path / "runs")])
    assert out.returncode == 2 and "sweep name 'a b' may only contain" in out.stderr
    assert "IMPORTED False False" in out.stdout
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    (old / "sweep.json").write_text('{"name": "old", "preset": "table1", "runs": []}')  # an older plan
    out = cli(["status", "old", "--storage", str(tmp_path / "runs")])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "another version of scs-sweep" in lines[0]
    listing = cli(["status", "--storage", str(tmp_path / "runs")])
    assert listing.returncode == 0 and "old: cannot read the plan" in listing.stdout


# -- issue 16: every trial counted once, every option meaningful --------------------------------------------
SEED_AXIS = GOOD.replace("max_lr = [0.003, 0.01]", "seed = [3, 4, 5]")


def _configs(plan):
    return [t["config"] for part in plan.parts for t in part.trials]


def test_a_seed_axis_chooses_the_seeds_itself_and_seeds_is_refused_beside_it(tmp_path):
    (tmp_path / "axis.toml").write_text(SEED_AXIS)
    name, experiments, _ = load_sweep_file(tmp_path / "axis.toml")
    with pytest.raises(UsageError, match=r"lists its seeds \(3, 4, 5\); --seeds would repeat them"):
        plan_sweep(name, "axis.toml", experiments, RunOptions(dataset="synthetic", seeds=3))
    quick = plan_sweep(name, "axis.toml", experiments, RunOptions(dataset="synthetic", quick=True))
    configs = _configs(quick)
    assert sorted((c["layer"], c["seed"]) for c in configs) == [(layer, s) for layer in ("conv", "scs")
                                                                for s in (3, 4, 5)]


def test_seeds_turn_each_seed_into_its_own_block_so_no_two_trials_of_a_sweep_are_the_same():
    plan = plan_sweep("paper", "paper", get_preset("paper"), RunOptions(dataset="synthetic", seeds=2,
                                                                        smoke_test=True))
    by_table = {}
    for part in plan.parts:
        for t in part.trials:
            by_table.setdefault(t["group"], set()).add(t["config"]["seed"])
    assert by_table["table1"] == {0, 1} and by_table["table6"] == {2, 3}  # table6 fixes seed 1: block 2-3
    keys = [json.dumps(c, sort_keys=True) for c in _configs(plan)]
    assert len(keys) == len(set(keys))
    assert plan.parts[0].n_trials == 8 * 2
    one = plan_sweep("table6", "table6", get_preset("table6"), RunOptions(dataset="synthetic"))
    assert {c["seed"] for c in _configs(one)} == {1}  # without --seeds a written seed is kept


def test_trials_are_unique_after_resolving_and_a_repeat_across_groups_is_refused(tmp_path):
    from search_spaces.experiment import Experiment

    # p_value 1 and 1.0, and a written-out default (normalization "none" for a Rohrer net), resolve the same
    same = Experiment("same", 2, fixed=dict(arch="rohrer25k", layer="scs", p_mode="fixed"),
                      grids=({"p_value": [1]}, {"p_value": [1.0]}, {"p_value": [1.0], "normalization": ["none"]}))
    plan = plan_sweep("same", "same.toml", [same], RunOptions(dataset="synthetic"))
    assert plan.n_trials == 1 and plan.dropped == 2
    twice = Experiment("twice", 2, fixed=dict(arch="rohrer25k"), grids=({"group": ["a", "b"]},))
    with pytest.raises(UsageError, match="group 'b' plans the same trial as .*group 'a'"):
        plan_sweep("twice", "twice.toml", [twice], RunOptions(dataset="synthetic"))


def test_a_dropout_axis_runs_two_different_models_and_prints_its_column(tmp_path):
    import torch

    from results.tables import table_rows
    from search_spaces.experiment import Experiment
    from trainables.models import build_model

    (tmp_path / "drop.toml").write_text(GOOD.replace("max_lr = [0.003, 0.01]", "dropout = [0.0, 0.5]"))
    name, experiments, _ = load_sweep_file(tmp_path / "drop.toml")
    configs = _configs(plan_sweep(name, "drop.toml", experiments, RunOptions(dataset="synthetic")))
    assert sorted({c["dropout"] for c in configs}) == [0.0, 0.5] and len(configs) == 4
    plain, dropped = (build_model(dict(c, layer="conv")) for c in sorted(configs, key=lambda c: c["dropout"])[::2])
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropped.eval()(x))            # same weights, no dropout at eval
        assert not torch.allclose(plain.train()(x), dropped.train()(x))  # dropout acts in training
    rows = table_rows(pd.DataFrame([dict(c, status="done", val_acc=0.5, epochs_done=2, train_time_s=1.0,
                                         eval_time_s=0.1, config_json=json.dumps(c)) for c in configs]))
    assert sorted(rows["Dropout"].unique()) == ["0.5", "None"]
    with pytest.raises(SpecError, match=r"dropout must be in \[0, 1\), got 1.0"):
        Experiment("x", 2, fixed=dict(dropout=1.0)).validate("x.toml")


BAD_OPTIONS_16 = [
    (["--dataset", "cifar10", "--train-images", "100000"], "--train-images 100,000 is more than cifar10 has (50,000)"),
    (["--dataset", "cifar10", "--test-images", "10001"], "--test-images 10,001 is more than cifar10 has (10,000)"),
    (["--num-samples", "5"], "--num-samples sets the number of trials of an Optuna search, and table1 has no"),
    (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5: a trial trains on one GPU; give 1, or a fraction"),
    (["--gpus-per-trial", "2"], "--gpus-per-trial 2: a trial trains on one GPU; give 1, or a fraction"),
    (["--smoke-test", "--gpus-per-trial", "1"], "--smoke-test runs on the CPU; drop --gpus-per-trial"),
    (["--compile", "sometimes"], "argument --compile: invalid choice: 'sometimes'"),
    (["--no-evaluate", "--pgd-images", "50"], "--pgd-images sets the end-of-trial evaluation, which --no-evaluate"),
]


def test_options_that_would_change_nothing_are_refused_in_one_line(tmp_path):
    results, imported_ray, imported_torch = cli_many(
        [["run", "table1", "--dataset", "synthetic", "--storage", str(tmp_path / "runs"), *args]
         for args, _ in BAD_OPTIONS_16])
    for (rc, lines), (_, message) in zip(results, BAD_OPTIONS_16):
        assert rc == 2 and len(lines) == 1 and message in lines[0], (message, lines)
    assert not imported_ray and not imported_torch
    ((rc, lines),), _, _ = cli_many([["run", "optuna-p-rohrer100k", "--dataset", "synthetic", "--seeds", "2",
                                      "--storage", str(tmp_path / "runs")]])
    assert rc == 2 and len(lines) == 1 and "--seeds repeats grid trials, and optuna-p-rohrer100k is an Optuna" in lines[0]


def test_gpus_asked_of_a_machine_without_one_are_refused_before_ray_starts(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the request is honoured")  # CI and the dev machine have none
    out = cli(["run", "table1", "--dataset", "synthetic", "--gpus-per-trial", "0.5",
               "--storage", str(tmp_path / "runs")])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "this machine has no GPU" in lines[0]
    assert "IMPORTED False True" in out.stdout  # torch was asked; ray never started


def test_a_renamed_copy_of_a_preset_keeps_its_link_to_the_papers_table(tmp_path):
    from results.rows import rows_for_trial
    from results.store import ParquetStore
    from results.tables import render_all

    text = cli(["presets", "--show", "table1"]).stdout.split("IMPORTED")[0]
    assert 'paper_table = "table1"' in text
    (tmp_path / "mine.toml").write_text(text.replace('name = "table1"', 'name = "my-copy"'))
    name, experiments, _ = load_sweep_file(tmp_path / "mine.toml")
    plan = plan_sweep(name, "mine.toml", experiments, RunOptions(data_dir="/d"))
    store = ParquetStore(str(tmp_path / "store"))
    for i, t in enumerate(plan.parts[0].trials):
        assert t["group"] == "my-copy" and t["paper_table"] == "table1" and t["budget"] == "full"
        store.write_trial("mine", f"t{i}", rows_for_trial("mine", f"t{i}", t["group"], t["budget"], t["config"], [
            {"epoch": 800, "test_acc": 0.7, "train_time_s": 1.0, "eval_time_s": 0.1}], "done",
            paper_table=t["paper_table"]))
    out = render_all(store, "", "md", compare=True, include_partial=False)
    assert "my-copy (mine), compared with the paper's table1" in out
    assert "| 0.8032 | " in out and "Conv2d needs ReLU" in out  # the paper's Conv2d/ReLU/MaxPool2d value
    (tmp_path / "bad.toml").write_text(text.replace('paper_table = "table1"', 'paper_table = "table9"'))
    with pytest.raises(SpecError, match="paper_table 'table9' is not one of the paper's experiments"):
        load_sweep_file(tmp_path / "bad.toml")


def test_a_stage_reference_is_checked_when_the_sweep_is_planned(tmp_path):
    text = cli(["presets", "--show", "weight-norms"]).stdout.split("IMPORTED")[0]
    (tmp_path / "typo.toml").write_text(text.replace('init_from = ["@weight-norms/conv"]',
                                                     'init_from = ["@weight-norms/cnov"]'))
    with pytest.raises(SpecError, match='init_from "@weight-norms/cnov" names no group of trials that start '
                                        'from scratch; groups: weight-norms/conv, weight-norms/scs-scratch'):
        load_sweep_file(tmp_path / "typo.toml")
    plan = plan_sweep("wn", "weight-norms", get_preset("weight-norms"), RunOptions(dataset="synthetic"))
    first, later = plan.parts
    assert first.asha is None and later.depends_on == first.part  # the trials a stage starts from finish


def test_no_comment_or_docstring_points_outside_the_repository():
    """The team's shared folder (../shared: reference/, design.md, ...) is not in the repository: docs/ holds
    what the code cites."""
    outside = re.compile(r"\.\./shared|shared/(reference|design\.md|style\.md|hooks)")
    root = Path(__file__).parent.parent
    for path in [*root.glob("*/*.py"), *root.glob("*.yaml"), *root.glob("*.sh"), *root.glob("bench/*")]:
        if ".venv" not in path.parts and path != Path(__file__):
            assert not outside.search(path.read_text()), path


def test_an_init_from_that_is_not_a_checkpoint_is_refused_when_the_sweep_is_planned(tmp_path):
    """A file that exists but holds no model weights used to start Ray and fail the trial three times with an
    unpickler's IndexError; now it is one line, before Ray (and with nothing started)."""
    import torch

    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"format": 1, "epoch": 3}, tmp_path / "no_weights.pt")
    commands = []
    for i, target in enumerate(("/etc/passwd", str(tmp_path / "empty.pt"), str(tmp_path / "no_weights.pt"))):
        path = tmp_path / f"init{i}.toml"
        path.write_text(GOOD.replace("[fixed]", f"[fixed]\ninit_from = \"{target}\""))
        commands.append(["run", str(path), "--dataset", "synthetic", "--storage", str(tmp_path / "runs"),
                         "--store", str(tmp_path / "store")])
    results, imported_ray, _ = cli_many(commands)
    for (rc, lines), message in zip(results, ("/etc/passwd is not a checkpoint of scs-sweep",
                                              "empty.pt is not a checkpoint of scs-sweep",
                                              "no_weights.pt holds no model weights")):
        assert rc == 2 and len(lines) == 1 and message in lines[0], lines
        assert lines[0].startswith("scs-sweep run: error: ") and "give a trainer.pt that a sweep wrote" in lines[0]
    assert not imported_ray and not (tmp_path / "runs").exists() and not (tmp_path / "store").exists()
