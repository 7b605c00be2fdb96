"""The Parquet store contract, SQL queries and the paper's tables from planted rows."""
import json

import duckdb
import pyarrow.dataset as ds
import pytest

from results.query import run_query
from results.rows import gather_experiment, rows_for_trial
from results.store import ParquetStore, StoreError
from results.tables import build_tables, compare_paper, render


def planted_results(epochs, acc, train_s=1.0, eval_s=0.1):
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": acc, "test_loss": 1.0, "test_acc": acc * e / epochs,
             "train_time_s": train_s, "eval_time_s": eval_s, "lr": 0.01, "params": 100,
             "layers": [{"layer_index": 0, "layer_name": "features.0.layer", "layer_type": "scs",
                         "weight_norm": 1.0, "grad_norm": 0.5, "p_mean": 2.0, "p_min": 1.0, "p_max": 3.0,
                         "q": 0.001, "p_values": [1.0, 3.0]}]} for e in range(1, epochs + 1)]


VARIANTS = [("conv", "relu", "max", 0.80), ("conv", "relu", "maxabs", 0.65), ("scs", "none", "max", 0.79),
            ("scs", "none", "maxabs", 0.78)]


def plant(store, experiment="exp", seeds=(0,)):
    for i, (layer, act, pool, acc) in enumerate(VARIANTS):
        for seed in seeds:
            config = dict(group="table1", arch="rohrer100k", layer=layer, activation=act, pooling=pool,
                          normalization="none", dropout=0.0, image_dim=32, p_mode="learned", seed=seed,
                          epochs=2, batch_size=128)
            tid = f"t{i}_{seed}"
            store.write_trial(experiment, tid, rows_for_trial(
                experiment, tid, config, planted_results(2, acc + 0.01 * seed, 2.0 if layer == "scs" else 1.0,
                                                          0.1 if layer == "scs" else 0.2), "done"))


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
    assert json.loads((tmp_path / "store" / "_schema.json").read_text())["schema_version"] == 1


def test_rewriting_a_trial_and_re_reporting_epochs_leave_keys_unique(tmp_path):
    store = ParquetStore(str(tmp_path / "s"))
    config = dict(group="g", arch="rohrer25k", layer="scs", epochs=3)
    results = planted_results(2, 0.5) + planted_results(3, 0.6)  # a resumed trial re-reports 1..2
    for _ in range(2):
        store.write_trial("e", "t1", rows_for_trial("e", "t1", config, results, "done"))
    epochs = store.read_table("epochs").to_pylist()
    assert sorted(e["epoch"] for e in epochs) == [1, 2, 3]
    assert [e["test_acc"] for e in sorted(epochs, key=lambda e: e["epoch"])] == pytest.approx([0.2, 0.4, 0.6])
    assert not list((tmp_path / "s").rglob(".*tmp"))


def test_gather_twice_from_an_experiment_directory_is_idempotent(tmp_path):
    trial_dir = tmp_path / "exp" / "train_scs_ab_00000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps({"variant": {"arch": "rohrer25k", "layer": "scs", "group": "g"},
                                                       "overrides": {"epochs": 2}, "seed_offset": 0}))
    lines = [dict(r, trial_id="ab_00000", training_iteration=r["epoch"]) for r in planted_results(2, 0.5)]
    (trial_dir / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n{\"cut")
    store = ParquetStore(str(tmp_path / "store"))
    assert gather_experiment(tmp_path / "exp", "exp", store) == 1
    assert gather_experiment(tmp_path / "exp", "exp", store) == 1
    trials = store.read_table("trials").to_pylist()
    assert len(trials) == 1 and trials[0]["status"] == "done" and trials[0]["epochs_done"] == 2
    assert store.read_table("epochs").num_rows == 2 and store.read_table("layers").num_rows == 2


def test_query_by_table_name_and_clear_errors(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store)
    out = run_query(store, "SELECT layer, avg(val_acc) AS acc FROM trials GROUP BY ALL ORDER BY layer").to_pylist()
    assert [r["layer"] for r in out] == ["conv", "scs"] and out[0]["acc"] == pytest.approx(0.725)
    with pytest.raises(StoreError, match="bad query"):
        run_query(store, "SELEC 1")
    with pytest.raises(StoreError, match="bad query.*nosuchtable"):
        run_query(store, "SELECT * FROM nosuchtable")
    with pytest.raises(StoreError, match="no results store"):
        run_query(ParquetStore(str(tmp_path / "missing")), "SELECT 1")
    with pytest.raises(StoreError, match="unknown table"):
        store.read_table("nosuch")


EXPECTED_MD = """### table1

| Architecture | Layer | Activation | Pooling | Dropout | Normalization | Image Dim. | Val. Acc. | Train Time (s) | Eval Time (s) | n |
|---|---|---|---|---|---|---|---|---|---|---|
| Rohrer100K | Conv2d | ReLU | MaxAbsPool2d | None | None | 32x32 | 0.6550 ± 0.0071 | 1.000 ± 0.000 | 0.200 ± 0.000 | 2 |
| Rohrer100K | Conv2d | ReLU | MaxPool2d | None | None | 32x32 | 0.8050 ± 0.0071 | 1.000 ± 0.000 | 0.200 ± 0.000 | 2 |
| Rohrer100K | SCS | None | MaxAbsPool2d | None | None | 32x32 | 0.7850 ± 0.0071 | 2.000 ± 0.000 | 0.100 ± 0.000 | 2 |
| Rohrer100K | SCS | None | MaxPool2d | None | None | 32x32 | 0.7950 ± 0.0071 | 2.000 ± 0.000 | 0.100 ± 0.000 | 2 |"""


def test_tables_from_planted_rows_in_all_three_formats(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store, seeds=(0, 1))
    frames = build_tables(store.read_table("trials").to_pandas())
    assert render(frames["table1"], "md", "table1") == EXPECTED_MD
    csv = render(frames["table1"], "csv", "table1").splitlines()
    assert csv[0] == "Architecture,Layer,Activation,Pooling,Dropout,Normalization,Image Dim.,Val. Acc.,Train Time (s),Eval Time (s),n"
    assert csv[1] == "Rohrer100K,Conv2d,ReLU,MaxAbsPool2d,None,None,32x32,0.6550 ± 0.0071,1.000 ± 0.000,0.200 ± 0.000,2"
    latex = render(frames["table1"], "latex", "table1").splitlines()
    assert latex[1] == "\\begin{tabular}{lllllllllll}"
    assert latex[5] == ("Rohrer100K & Conv2d & ReLU & MaxAbsPool2d & None & None & 32x32 & 0.6550 $\\pm$ 0.0071 & "
                        "1.000 $\\pm$ 0.000 & 0.200 $\\pm$ 0.000 & 2 \\\\")


def test_compare_paper_matches_rows_by_label(tmp_path):
    store = ParquetStore(str(tmp_path / "store"))
    plant(store)
    frame = compare_paper("table1", build_tables(store.read_table("trials").to_pandas())["table1"])
    row = frame[(frame["Layer"] == "SCS") & (frame["Pooling"] == "MaxAbsPool2d")].iloc[0]
    assert row["Paper Val. Acc."] == pytest.approx(0.7761)  # Table 1: SCS, None, MaxAbsPool2d
    assert row["Δ Val. Acc."] == pytest.approx(0.78 - 0.7761)
    conv = frame[(frame["Layer"] == "Conv2d") & (frame["Pooling"] == "MaxPool2d")].iloc[0]
    assert conv["Paper Val. Acc."] == pytest.approx(0.8032)


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
])
def test_cli_errors_are_one_line_with_exit_code_2(argv, message, tmp_path, capsys):
    from orchestrator.cli import main

    store = ParquetStore(str(tmp_path / "store"))
    if argv[0] == "query":
        plant(store)
    assert main([*argv, "--store", str(tmp_path / ("store" if argv[0] == "query" else "missing"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith(f"scs-sweep {argv[0]}: error:")


def test_trial_ids_come_from_results_or_from_tunes_directory_names(tmp_path):
    from results.rows import trial_id_of

    name = "train_scs_023ea_00004_4_variant=arch_rohrer25k_layer_conv_2026-11-22_19-22-26"
    assert trial_id_of(tmp_path / name, []) == "023ea_00004"
    assert trial_id_of(tmp_path / name, [{"trial_id": "abcde_00001"}]) == "abcde_00001"
    assert trial_id_of(tmp_path / "something_else_2026-11-22", []) == ""
