"""The Parquet store contract, SQL queries, gather from Tune's files, and the tables from planted rows."""
import json
from datetime import datetime

import duckdb
import pyarrow.dataset as ds
import pytest
from support.stores import config, plant, planted_results, tune_trial_dir

from orchestrator.records import gather_path, trial_id_of, trial_status
from results.query import run_query
from results.rows import rows_for_trial
from results.schema import SCHEMA_VERSION
from results.store import ParquetStore, StoreError
from results.tables import build_tables, compare_paper, render


def test_rows_are_read_back_by_plain_pyarrow_and_duckdb(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store)
    trials = ds.dataset(str(tmp_path / "store" / "trials"), format="parquet", partitioning="hive").to_table()
    assert trials.num_rows == 4 and set(trials.column("experiment").to_pylist()) == {"exp"}
    got = duckdb.sql(f"SELECT count(*), max(epoch) FROM read_parquet('{tmp_path}/store/epochs/**/*.parquet', "
                     f"hive_partitioning=true)").fetchall()[0]
    assert got == (8, 2)
    layers = duckdb.sql(f"SELECT p_values FROM read_parquet('{tmp_path}/store/layers/**/*.parquet')").fetchall()
    assert layers[0][0] == [1.0, 3.0]
    assert json.loads((tmp_path / "store" / "_schema.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_rewriting_a_trial_and_re_reporting_epochs_leave_keys_unique(tmp_path):
    store = ParquetStore(str(tmp_path / "s"))
    results = planted_results(2, 0.5) + planted_results(3, 0.6)  # a resumed trial re-reports 1..2
    for _ in range(2):
        store.write_trial("e", "t1", rows_for_trial("e", "t1", "g", "full", config(epochs=3), results, "done"))
    epochs = store.read_table("epochs").to_pylist()
    assert sorted(e["epoch"] for e in epochs) == [1, 2, 3]
    assert [e["test_acc"] for e in sorted(epochs, key=lambda e: e["epoch"])] == pytest.approx([0.2, 0.4, 0.6])
    assert not list((tmp_path / "s").rglob(".*tmp"))


def test_a_store_of_schema_1_is_read_with_the_new_columns_null_and_upgraded_on_write(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "old"
    (root / "trials" / "experiment=e").mkdir(parents=True)
    (root / "_schema.json").write_text('{"schema_version": 1}')
    pq.write_table(pa.table({"trial_id": ["a"], "group": ["g"], "status": ["done"],
                             "started_at": ["2026-11-20T10:00:00"]}),  # schema 1-2 kept times as ISO text
                   root / "trials" / "experiment=e" / "a.parquet")
    store = ParquetStore(str(root))
    (row,) = store.read_table("trials").to_pylist()
    assert row["trial_id"] == "a" and row["budget"] is None and row["n_train"] is None
    assert row["started_at"] == datetime(2026, 11, 20, 10, 0)  # read as a timestamp
    store.write_trial("e", "b", rows_for_trial("e", "b", "g", "quick", config(n_train=500), [], "running"))
    assert json.loads((root / "_schema.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert {r["trial_id"]: r["n_train"] for r in store.read_table("trials").to_pylist()} == {"a": None, "b": 500}
    (root / "_schema.json").write_text('{"schema_version": 99}')
    with pytest.raises(StoreError, match="newer than this code"):
        store.write_trial("e", "c", {})


def test_gather_twice_from_an_experiment_directory_is_idempotent(tmp_path):
    tune_trial_dir(tmp_path / "exp")
    store = ParquetStore(str(tmp_path / "store"))
    assert gather_path(tmp_path / "exp", "exp", store) == 1
    assert gather_path(tmp_path / "exp", "exp", store) == 1
    trials = store.read_table("trials").to_pylist()
    assert len(trials) == 1 and trials[0]["status"] == "done" and trials[0]["epochs_done"] == 2
    assert trials[0]["group"] == "g" and trials[0]["arch"] == "rohrer25k" and trials[0]["budget"] == "full"
    assert store.read_table("epochs").num_rows == 2 and store.read_table("layers").num_rows == 2


def test_gather_reads_tunes_state_to_tell_pruned_from_stopped_and_failed(tmp_path):
    part = tmp_path / "part"
    tune_trial_dir(part, "train_scs_aa000_00000_0_x", "aa000_00000", epochs=1, budget_epochs=4)
    tune_trial_dir(part, "train_scs_aa000_00001_1_x", "aa000_00001", epochs=1, budget_epochs=4,
                    error="trainables.train.NonFiniteLossError: training loss became nan in epoch 2")
    store = ParquetStore(str(tmp_path / "store"))
    gather_path(part, "exp", store)
    status = {r["trial_id"]: (r["status"], r["error"]) for r in store.read_table("trials").to_pylist()}
    assert status["aa000_00000"] == ("stopped", None)
    assert status["aa000_00001"][0] == "failed" and "epoch 2" in status["aa000_00001"][1]
    state = {"trial_data": [[json.dumps({"trial_id": "aa000_00000", "status": "TERMINATED"}), "{}"],
                            [json.dumps({"trial_id": "aa000_00001", "status": "ERROR"}), "{}"]]}
    (part / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    gather_path(part, "exp", store)
    status = {r["trial_id"]: r["status"] for r in store.read_table("trials").to_pylist()}
    assert status == {"aa000_00000": "pruned", "aa000_00001": "failed"}


def test_the_one_status_rule():
    assert trial_status(4, 4, "an error a retry overcame", "ERROR") == "done"
    assert trial_status(2, 4, "", "ERROR") == "failed"
    assert trial_status(2, 4, "", "TERMINATED") == "pruned"
    assert trial_status(2, 4, "", "RUNNING") == "running"
    assert trial_status(0, 4, "", "PENDING") == "pending"
    assert trial_status(2, 4, "", None) == "stopped"
    assert trial_status(2, 4, "boom", None) == "failed"


def test_query_scans_in_place_by_table_name_with_clear_errors(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store)
    out = run_query(store, "SELECT layer, avg(val_acc) AS acc FROM trials GROUP BY ALL ORDER BY layer").to_pylist()
    assert [r["layer"] for r in out] == ["conv", "scs"] and out[0]["acc"] == pytest.approx(0.725)
    (row,) = run_query(store, "SELECT count(*) AS n FROM layers WHERE experiment = 'exp'").to_pylist()
    assert row["n"] == 8
    with pytest.raises(StoreError, match="bad query"):
        run_query(store, "SELEC 1")
    with pytest.raises(StoreError, match="bad query.*nosuchtable"):
        run_query(store, "SELECT * FROM nosuchtable")
    with pytest.raises(StoreError, match="no results store"):
        run_query(ParquetStore(str(tmp_path / "missing")), "SELECT 1")
    with pytest.raises(StoreError, match="unknown table"):
        store.read_table("nosuch")


def frames(store, experiment="exp", **kw):
    return {group: value for (sweep, group), value in build_tables(store.read_table("trials").to_pandas(), **kw).items()
            if sweep == experiment}


def test_tables_from_planted_rows_in_all_three_formats_show_epochs_and_intervals(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store, seeds=(0, 1, 2))
    frame, _ = frames(store)["table1"]
    md = render(frame, "md", "table1").splitlines()
    header = md.index(next(line for line in md if line.startswith("| Architecture")))
    assert "best test accuracy over a trial's epochs" in " ".join(md[:header])  # what Val. Acc. is, said above
    assert md[header] == ("| Architecture | Layer | Activation | Pooling | Dropout | Normalization | Image Dim. | "
                          "Val. Acc. | 95% CI | Final Acc. | n | Epochs | Train Time (s/epoch) | Eval Time (s/epoch) | Status |")
    # Conv2d/ReLU/MaxAbsPool2d over seeds 0.65, 0.66, 0.67: mean 0.66, sd 0.01, t(2) interval 0.66 +/- 0.0248
    assert md[header + 2] == ("| Rohrer100K | Conv2d | ReLU | MaxAbsPool2d | None | None | 32x32 | 0.6600 ± 0.0100 | "
                              "[0.6352, 0.6848] | 0.6600 ± 0.0100 | 3 | 2/2 | 1.000 | 0.200 |  |")
    csv = render(frame, "csv", "table1").splitlines()
    assert csv[0].endswith(",Val. Acc.,95% CI,Final Acc.,n,Epochs,Train Time (s/epoch),Eval Time (s/epoch),Status")
    assert csv[1].startswith("Rohrer100K,Conv2d,ReLU,MaxAbsPool2d,None,None,32x32,0.6600 ± 0.0100,")
    latex = render(frame, "latex", "table1").splitlines()
    begin = latex.index("\\begin{tabular}{" + "l" * 10 + "r" + "l" * 4 + "}")  # n is a number: right-aligned
    assert latex[begin + 1] == "\\toprule" and "Epochs" in latex[begin + 2] and "Train Time (s/epoch)" in latex[begin + 2]
    assert latex[begin + 4].startswith("Rohrer100K & Conv2d & ReLU & MaxAbsPool2d & None & None & 32x32 & "
                                       "0.6600 ± 0.0100 & [0.6352, 0.6848] & 0.6600 ± 0.0100 & 3 & 2/2 &")


def test_pruned_and_failed_variants_show_what_happened_not_a_number(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store, seeds=(0, 1), epochs=800)  # status done, but the rows say 2 of 800 epochs ...
    store.write_trial("exp", "t1_0", rows_for_trial("exp", "t1_0", "table1", "full", config(
        layer="conv", activation="relu", pooling="maxabs", epochs=800), planted_results(50, 0.4), "pruned"))
    store.write_trial("exp", "t1_1", rows_for_trial("exp", "t1_1", "table1", "full", config(
        layer="conv", activation="relu", pooling="maxabs", epochs=800, seed=1), planted_results(3, 0.3), "failed"))
    frame, trials = frames(store)["table1"]
    row = frame[(frame["Layer"] == "Conv2d") & (frame["Pooling"] == "MaxAbsPool2d")].iloc[0]
    assert row["n"] == 0 and row["Epochs"] == "-"
    assert row["Status"] == "not finished: 1 failed (at 3/800 epochs), 1 pruned (at 50/800 epochs)"
    shown = render(compare_paper("table1", frame, trials), "md", "table1")
    line = next(x for x in shown.splitlines() if "| Conv2d | ReLU | MaxAbsPool2d |" in x)
    assert "| - | - | 0 | - |" in line and "0.6496" in line  # no number of ours beside the paper's
    partial, _ = frames(store, include_partial=True)["table1"]
    row = partial[(partial["Layer"] == "Conv2d") & (partial["Pooling"] == "MaxAbsPool2d")].iloc[0]
    assert row["n"] == 2 and row["Epochs"] == "3-50/800" and row["Status"].startswith("partial: ")


def test_compare_paper_places_the_papers_value_against_our_interval_only_at_its_budget(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store, seeds=range(5), epochs=800)
    frame, trials = frames(store)["table1"]
    compared = compare_paper("table1", frame, trials)
    row = compared[(compared["Layer"] == "SCS") & (compared["Pooling"] == "MaxAbsPool2d")].iloc[0]
    assert row["Paper Val. Acc."] == pytest.approx(0.7761)  # Table 1: SCS, None, MaxAbsPool2d
    assert row["Paper vs ours"] == "below our interval"     # ours 0.78 ... 0.82: [0.7804, 0.8196]
    conv = compared[(compared["Layer"] == "Conv2d") & (compared["Pooling"] == "MaxPool2d")].iloc[0]
    assert conv["Paper Val. Acc."] == pytest.approx(0.8032) and conv["Paper vs ours"] == "inside our interval"
    quick = ParquetStore(str(tmp_path / "quick"))
    plant(quick, seeds=(0, 1, 2), epochs=8, budget="quick")
    frame, trials = frames(quick)["table1"]
    compared = compare_paper("table1", frame, trials)
    assert (compared["Paper vs ours"] == "not comparable: budget").all()
    assert render(compared, "md", "table1").splitlines()[3] == (
        "Not the paper's budget (8 of 800 epochs, 50,000 of 50,000 training and 10,000 of 10,000 test images): "
        "its values are shown for orientation, not compared.  ")


def test_a_store_given_as_a_uri_and_shared_by_two_sweeps(tmp_path):
    store = ParquetStore(f"file://{tmp_path}/uri_store")
    plant(store, experiment="sweep-a")
    plant(store, experiment="sweep-b")
    assert store.experiments() == ["sweep-a", "sweep-b"]
    assert store.read_table("trials").num_rows == 8
    assert store.read_table("epochs", experiment="sweep-b").num_rows == 8
    assert (tmp_path / "uri_store" / "trials" / "experiment=sweep-a").is_dir()


@pytest.mark.parametrize("argv,message", [
    (["query", "SELEC 1"], "bad query: Parser Error"),
    (["query", "SELECT * FROM nosuchtable"], "bad query: Catalog Error"),
    (["tables"], "no results store at"),
    (["report"], "no results store at"),
])
def test_cli_errors_are_one_line_with_exit_code_2(argv, message, tmp_path, capsys):
    from orchestrator.cli import main

    store = ParquetStore(str(tmp_path / "store"))
    if argv[0] == "query":
        plant(store)
    assert main([*argv, "--store", str(tmp_path / ("store" if argv[0] == "query" else "missing"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith(f"scs-sweep {argv[0]}: error:")


def test_the_store_defaults_to_scs_store_env(tmp_path, monkeypatch, capsys):
    from orchestrator.cli import main

    plant(ParquetStore(str(tmp_path / "env_store")))
    monkeypatch.setenv("SCS_STORE", str(tmp_path / "env_store"))
    assert main(["query", "SELECT count(*) AS n FROM trials", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "4"]


def test_trial_ids_come_from_results_or_from_tunes_directory_names(tmp_path):
    name = "train_scs_023ea_00004_4_variant=arch_rohrer25k_layer_conv_2026-11-22_19-22-26"
    assert trial_id_of(tmp_path / name, []) == "023ea_00004"
    assert trial_id_of(tmp_path / name, [{"trial_id": "abcde_00001"}]) == "abcde_00001"
    assert trial_id_of(tmp_path / "something_else_2026-11-22", []) == ""


def test_a_trials_history_after_a_restore_drops_the_abandoned_epochs():
    from results.rows import epoch_timeline

    run = planted_results(4, 0.5)
    restored = [dict(r, test_acc=0.9) for r in planted_results(4, 0.5)[2:3]]  # back to the epoch-2 checkpoint
    timeline = epoch_timeline(run + restored)  # ... then it failed in epoch 4 again
    assert [r["epoch"] for r in timeline] == [1, 2, 3] and timeline[-1]["test_acc"] == 0.9
    row = rows_for_trial("e", "t", "g", "full", config(epochs=4), run + restored, "failed")["trials"][0]
    assert row["epochs_done"] == 3 and row["final_acc"] == 0.9


def test_an_axis_beyond_the_papers_columns_gets_rows_of_its_own(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    for lr in (0.003, 0.01):
        for seed in (0, 1):
            cfg = config(layer="scs", activation="none", pooling="max", seed=seed, max_lr=lr)
            cfg_json = dict(cfg)
            tid = f"lr{lr}_{seed}"
            store.write_trial("exp", tid, rows_for_trial("exp", tid, "lr", "full", cfg_json,
                                                         planted_results(2, 0.5 + 10 * lr + 0.01 * seed), "done"))
    frame, _ = frames(store)["lr"]
    assert list(frame["Setting"]) == ["max_lr=0.003", "max_lr=0.01"] and list(frame["n"]) == [2, 2]
    assert frame["Val. Acc."].tolist() == pytest.approx([0.535, 0.605])
    assert any(line.startswith("| Architecture") and "| Setting |" in line for line in render(frame, "md", "lr").splitlines())


def test_compare_paper_in_latex_lists_claims_and_effects_and_csv_stays_one_table(tmp_path):
    from results.tables import render_all

    store = ParquetStore(str(tmp_path / "store"))
    plant(store, seeds=(0, 1, 2))
    latex = render_all(store, "exp", "latex", True, False)
    assert "% Claims of table1" in latex
    line = next(x for x in latex.splitlines() if x.startswith("SCS without ReLU is as accurate as Conv2d with ReLU &"))
    # the two verdicts in their own columns (planted: the same difference on every seed), the paper's effect
    assert line.count(" & undecided & every seed gave the same value") == 2
    assert "the paper's: -0.016" in line.replace("\\textquoteright ", "'")
    assert "At this budget" in latex and "The paper's claim" in latex
    assert "% Factor effects on Val. Acc. of table1" in latex and "Effect (A - B)" in latex
    assert latex.count("\\begin{tabular}") == 3  # the table, its claims, its factor effects: tables for a paper
    assert "% Rank agreement with the paper's table1: the variants' ranks agree with the paper's (rho +1.00" in latex
    import csv

    rows = list(csv.reader(render_all(store, "exp", "csv", True, False).splitlines()))
    assert len(rows) == 5 and {len(r) for r in rows} == {len(rows[0])} and "Paper vs ours" in rows[0]


def test_a_later_stage_of_several_seeds_is_one_row_though_each_seed_started_from_its_own_checkpoint(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    for seed in (0, 1, 2):
        cfg = config(layer="scs", activation="relu", pooling="max", seed=seed,
                     init_from=f"/runs/wn/first/trial_{seed}/checkpoint_000002/trainer.pt")
        store.write_trial("wn", f"s{seed}", rows_for_trial("wn", f"s{seed}", "second", "full", cfg,
                                                           planted_results(2, 0.5 + 0.01 * seed), "done",
                                                           init_from_trial=f"first{seed}"))
    frame, _ = frames(store, experiment="wn")["second"]
    assert len(frame) == 1 and frame["n"].iloc[0] == 3 and frame["Setting"].iloc[0] == ""
    rows = store.read_table("trials").to_pylist()
    assert sorted(r["init_from_trial"] for r in rows) == ["first0", "first1", "first2"]


def test_latex_comparison_keeps_each_sweeps_own_claims_after_the_first_table(tmp_path):
    from results.tables import render_all

    store = ParquetStore(str(tmp_path / "store"))
    claim = ('[[claim]]\nname = "MaxPool2d helps SCS"\na = { layer = "scs", pooling = "max" }\n'
             'b = { layer = "scs", pooling = "maxabs" }\nthreshold = 0.01\n')
    for experiment in ("exp", "exp2"):  # two sweeps, each with a table1 and its own claim
        plant(store, experiment=experiment, seeds=(0, 1, 2))
        store.write_sweep(experiment, f'name = "{experiment}"\nepochs = 2\n\n[fixed]\narch = "rohrer100k"\n\n'
                                      f'[[grid]]\ngroup = ["table1"]\nlayer = ["conv", "scs"]\n\n{claim}')
    latex = render_all(store, "", "latex", True, False)
    assert latex.count("% Claims of table1") == 2
    assert sum(line.startswith("MaxPool2d helps SCS &") for line in latex.splitlines()) == 2
