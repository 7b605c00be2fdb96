"""The store's compaction: one file per table and experiment after a part, each key exactly once for the
project's readers before, during and after it (a kill at any step included), on a disk and on S3."""
import threading
import time

import pyarrow.dataset as ds
import pytest
from support.stores import config, plant, planted_results

from common.locations import Location
from orchestrator.records import gather_path
from results.query import run_query
from results.rows import rows_for_trial
from results.schema import KEYS, TABLES
from results.store import ParquetStore


def keys(store, table="epochs"):
    cols = [c for c in KEYS[table]]
    rows = store.read_table(table, columns=cols).to_pylist()
    return sorted(tuple(r[c] for c in cols) for r in rows)


def files(root, experiment="exp"):
    return sorted(p.name for p in root.glob(f"*/experiment={experiment}/*.parquet"))


def snapshot_of(store):
    """Every table's rows, sorted, as the project reads them."""
    out = {}
    for table in TABLES:
        rows = store.read_table(table).to_pylist()
        out[table] = sorted(rows, key=lambda r: tuple(str(r[c]) for c in KEYS[table]))
    return out


def test_compaction_leaves_one_file_per_table_and_the_same_rows(tmp_path):
    store = ParquetStore(str(tmp_path / "s"))
    plant(store, seeds=(0, 1, 2))                  # 12 trials x 3 tables (trials, epochs, layers)
    plant(store, experiment="other", seeds=(0,))   # another sweep's rows are not touched
    before = snapshot_of(store)
    assert len(files(tmp_path / "s")) == 36
    done = store.compact("exp")
    assert done == {"files_before": 36, "files_after": 3, "generation": 1}
    assert files(tmp_path / "s") == ["compacted-000001.parquet"] * 3
    assert len(files(tmp_path / "s", "other")) == 12
    assert snapshot_of(store) == before
    # a plain Parquet reader sees each key once too, once compaction is over
    plain = ds.dataset(str(tmp_path / "s" / "epochs"), format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == len(before["epochs"])
    # and SQL over it
    assert run_query(store, "SELECT count(*) AS n FROM epochs").to_pylist() == [{"n": len(before["epochs"])}]
    # compacting again with nothing new keeps one file
    assert store.compact("exp")["files_after"] == 3


def test_a_rewrite_of_a_compacted_trial_wins_and_gather_twice_keeps_keys_once(tmp_path):
    store = ParquetStore(str(tmp_path / "s"))
    plant(store)
    store.compact("exp")
    rows = rows_for_trial("exp", "t0_0", "table1", "full", config(layer="conv", activation="relu", pooling="max"),
                          planted_results(3, 0.99), "done")
    store.write_trial("exp", "t0_0", rows)          # resumed to 3 epochs: its file replaces its compacted rows
    epochs = store.read_table("epochs", trial_id="t0_0").to_pylist()
    assert sorted(e["epoch"] for e in epochs) == [1, 2, 3] and max(e["test_acc"] for e in epochs) == pytest.approx(0.99)
    assert keys(store) == sorted(set(keys(store)))
    store.compact("exp")
    assert store.read_table("epochs", trial_id="t0_0").num_rows == 3 and keys(store) == sorted(set(keys(store)))
    assert files(tmp_path / "s") == ["compacted-000002.parquet"] * 3


def test_gather_into_a_compacted_store_keeps_each_key_once(tmp_path):
    from support.stores import tune_trial_dir

    tune_trial_dir(tmp_path / "exp")
    store = ParquetStore(str(tmp_path / "store"))
    gather_path(tmp_path / "exp", "exp", store)
    store.compact("exp")
    for _ in range(2):
        gather_path(tmp_path / "exp", "exp", store)
        assert store.read_table("epochs").num_rows == 2 and store.read_table("trials").num_rows == 1
        store.compact("exp")
    assert store.read_table("epochs").num_rows == 2


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the store catches it (the lock's release, which a kill would skip,
    is put back by the test)."""


OPERATIONS = 23  # 3 compacted files, the marker, 15 trial files, the old compacted files and marker


@pytest.mark.parametrize("step", range(1, OPERATIONS + 2))
def test_a_compaction_killed_at_any_write_or_delete_loses_and_repeats_nothing(tmp_path, monkeypatch, step):
    store = ParquetStore(str(tmp_path / "s"))
    plant(store, seeds=(0, 1))
    store.compact("exp")
    plant(store, seeds=(2,))                         # a second part's trials
    store.write_trial("exp", "t1_0", rows_for_trial(  # and a rewrite of a compacted one
        "exp", "t1_0", "table1", "full", config(layer="conv", activation="relu", pooling="maxabs"),
        planted_results(2, 0.42), "done"))
    want = snapshot_of(store)
    operations = [0]
    real_write, real_delete = Location.write_bytes, ParquetStore._delete

    def count():
        operations[0] += 1
        if operations[0] == step:
            raise Killed

    def write(self, data, *parts):
        count()
        real_write(self, data, *parts)

    def delete(self, paths):
        for path in paths:  # one at a time: a kill can fall between any two
            count()
            real_delete(self, [path])

    monkeypatch.setattr(Location, "write_bytes", write)
    monkeypatch.setattr(ParquetStore, "_delete", delete)
    try:
        store.compact("exp")
        killed = False
    except Killed:
        killed = True
    monkeypatch.setattr(Location, "write_bytes", real_write)
    monkeypatch.setattr(ParquetStore, "_delete", real_delete)
    if not killed:  # the last step: every operation before it was a kill point
        assert step == OPERATIONS + 1 and operations[0] == OPERATIONS
        assert snapshot_of(store) == want
        return
    assert snapshot_of(store) == want               # the project's readers: every key once, the newest rows
    lock = tmp_path / "s" / "_compacted" / "exp" / "lock"
    lock.touch()                                     # what the killed compaction left
    assert store.compact("exp").get("skipped")      # a compaction seems to run: the next one leaves it alone
    assert snapshot_of(store) == want
    monkeypatch.setattr("results.store.LOCK_STALE_S", 0)  # ... until its lock is old enough to be a dead one's
    store.compact("exp")                             # the next compaction finishes the job
    assert snapshot_of(store) == want
    assert files(tmp_path / "s") == [f"compacted-{store.generations()['exp']:06d}.parquet"] * 3
    assert not list((tmp_path / "s").rglob(".*tmp"))


def test_one_compaction_of_an_experiment_at_a_time(tmp_path, s3):
    s3.make_bucket("locks")
    for root in (str(tmp_path / "s"), s3.uri("locks/store")):
        store = ParquetStore(root)
        plant(store)
        with store._compaction_lock("exp") as held:  # another process compacting it
            assert held
            assert store.compact("exp") == {"files_before": 0, "files_after": 0, "generation": 0, "skipped": True}
        assert store.compact("exp")["generation"] == 1 and store.read_table("epochs").num_rows == 8


def test_readers_see_each_key_once_while_compactions_run(tmp_path):
    store = ParquetStore(str(tmp_path / "s"))
    plant(store, seeds=range(6))
    want = keys(store)
    stop, errors = threading.Event(), []

    def compact_again_and_again():
        try:
            while not stop.is_set():
                plant(store, seeds=range(3))  # rewrites: trial files that win until compacted again
                store.compact("exp")
                time.sleep(0.01)              # a sweep compacts once per part; this is far more often
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=compact_again_and_again)
    worker.start()
    try:
        for _ in range(60):
            assert keys(store) == want
            n = run_query(store, "SELECT count(*) AS n, count(DISTINCT trial_id || '/' || epoch) AS k FROM epochs")
            assert n.to_pylist() == [{"n": len(want), "k": len(want)}]
    finally:
        stop.set()
        worker.join()
    assert not errors and store.generations()["exp"] > 3


def test_compaction_on_an_s3_server(s3, tmp_path):
    s3.make_bucket("compact")
    store = ParquetStore(s3.uri("compact/store"))
    plant(store, seeds=(0, 1))
    before = snapshot_of(store)
    assert store.compact("exp") == {"files_before": 24, "files_after": 3, "generation": 1}
    assert snapshot_of(store) == before
    listed = sorted(info.path.rsplit("/", 1)[1] for info in Location(s3.uri("compact/store/epochs")).files())
    assert listed == ["compacted-000001.parquet"]
