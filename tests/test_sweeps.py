"""Sweeps on local Ray: smoke run, ASHA pruning, NaN failures, Optuna, kill -9 and resume, CLI errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from orchestrator.cli import main
from orchestrator.plan import RunPlan, SweepPlan, plan_sweep

ray = pytest.importorskip("ray")  # the sweep tests need ray; the project's install always has it

ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def local_ray():
    from orchestrator.tune_wiring import connect

    connect("")
    yield
    ray.shutdown()


def read(store, table):
    return ds.dataset(str(store / table), format="parquet", partitioning="hive").to_table().to_pylist()


def test_table1_smoke_run_reports_every_trial(local_ray, tmp_path, capsys):
    rc = main(["run", "table1", "--smoke-test", "--store", str(tmp_path / "store"),
               "--storage", str(tmp_path / "runs")])
    assert rc == 0
    trials = read(tmp_path / "store", "trials")
    assert len(trials) == 8 and {t["status"] for t in trials} == {"done"}
    assert {(t["layer"], t["activation"], t["pooling"]) for t in trials} == {
        (a, b, c) for a in ("conv", "scs") for b in ("relu", "none") for c in ("max", "maxabs")}
    epochs = read(tmp_path / "store", "epochs")
    assert len(epochs) == 8 and all(e["epoch"] == 1 for e in epochs)
    assert all(t["params"] > 0 and t["host"] and t["code_version"] for t in trials)
    out = capsys.readouterr().out
    assert "8 done" in out and "best test_acc" in out
    assert main(["status", "table1", "--storage", str(tmp_path / "runs")]) == 0
    assert "8 trials: 8 done" in capsys.readouterr().out


def _good(**kw):
    base = dict(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs", group="test",
                optimizer="adam", scheduler="onecycle", max_lr=0.01, batch_size=64)
    base.update(kw)
    return base


def test_asha_prunes_a_hopeless_trial_and_a_nan_trial_fails_alone(local_ray, tmp_path):
    from orchestrator.tune_wiring import execute

    variants = [_good(seed=0), _good(seed=1), _good(seed=2),
                _good(layer="conv", activation="relu", max_lr=1e-9, scheduler="constant"),  # hopeless
                _good(layer="conv", activation="relu", optimizer="sgd", max_lr=1e12,        # diverges
                      scheduler="constant")]
    run = RunPlan(part="asha", variants=variants, seeds=[0],
                  overrides=dict(epochs=6, dataset="synthetic", n_train=512, n_test=256))
    sweep = SweepPlan(name="asha", preset="custom", runs=[run], max_concurrent=2, max_failures=1,
                      store=str(tmp_path / "store"), storage=str(tmp_path / "runs"))
    execute(sweep)
    rows = read(tmp_path / "store", "trials")
    assert len(rows) == 5
    (hopeless,) = [t for t in rows if t["max_lr"] == 1e-9]
    (nan,) = [t for t in rows if t["max_lr"] == 1e12]
    assert hopeless["status"] == "pruned" and hopeless["epochs_done"] < 6
    assert nan["status"] == "failed" and "epoch 1" in nan["error"]
    good = [t for t in rows if t["layer"] == "scs"]
    assert sum(t["status"] == "done" and t["epochs_done"] == 6 for t in good) >= 1


def test_optuna_p_proposes_distinct_p_values_and_prunes(local_ray, tmp_path):
    from orchestrator.tune_wiring import execute

    sweep = plan_sweep("optuna-p-rohrer100k", smoke_test=True, epochs=4, num_samples=8,
                       store=str(tmp_path / "store"), storage=str(tmp_path / "runs"))
    execute(sweep)
    trials = read(tmp_path / "store", "trials")
    p_values = [t["p_value"] for t in trials]
    assert len(trials) == 8 and len(set(p_values)) == 8 and all(0.1 <= p <= 10 for p in p_values)
    assert any(t["status"] == "pruned" for t in trials)


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path):
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = ["--store", str(store), "--storage", str(runs)]
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "table1", "--smoke-test", "--epochs", "4",
           "--checkpoint-every", "1", "--no-prune", "--max-concurrent", "2", *args]
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once at least one trial has finished and others are mid-way
        finished = [p for p in runs.rglob("result.json") if len(p.read_text().splitlines()) >= 4]
        if finished and list(runs.rglob("trainer.pt")):
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent: len(p.read_text().splitlines()) for p in runs.rglob("result.json")
                   if len(p.read_text().splitlines()) >= 4}
    assert done_before, "no trial finished before the kill"
    resumed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", "table1", *args],
                             env=ENV, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    for trial_dir, lines in done_before.items():  # finished trials were not run again
        assert len((trial_dir / "result.json").read_text().splitlines()) == lines
    epochs = read(store, "epochs")
    keys = [(e["experiment"], e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)) == 8 * 4
    trials = read(store, "trials")
    assert len(trials) == 8 and all(t["status"] == "done" and t["epochs_done"] == 4 for t in trials)


@pytest.mark.parametrize("argv,message", [
    (["run", "table99", "--smoke-test"], "unknown preset 'table99'"),
    (["resume", "nothing-here", "--storage", "/tmp/scs-none"], "no sweep named 'nothing-here'"),
    (["run", "table1", "--smoke-test", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster"),
])
def test_bad_input_gives_one_clear_line_and_nonzero_exit(argv, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv, "--storage", str(tmp_path)]
                         if argv[0] == "run" else [sys.executable, "-m", "orchestrator.cli", *argv],
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert message in lines[-1] and lines[-1].startswith("scs-sweep")


def test_bad_option_is_rejected_by_the_parser():
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "table1", "--epochz", "3"],
                         env=ENV, capture_output=True, text=True)
    assert out.returncode == 2 and "unrecognized arguments: --epochz" in out.stderr


def test_cluster_yaml_passes_rays_schema_validation():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((Path(__file__).parent.parent / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    start = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in start and "--dashboard-host=127.0.0.1" in start


def test_reconcile_corrects_a_row_left_running_by_a_killed_driver(tmp_path):
    from orchestrator.tune_wiring import reconcile_store
    from results.rows import rows_for_trial
    from results.store import ParquetStore

    trial_dir = tmp_path / "runs" / "s" / "part" / "train_scs_ab_00000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps({"variant": {"arch": "rohrer25k", "group": "g"},
                                                       "overrides": {"epochs": 2}}))
    results = [{"trial_id": "ab_00000", "epoch": e, "test_acc": 0.5, "train_time_s": 1.0, "eval_time_s": 0.1}
               for e in (1, 2)]
    (trial_dir / "result.json").write_text("\n".join(json.dumps(r) for r in results))
    store = ParquetStore(str(tmp_path / "store"))
    config = {"arch": "rohrer25k", "group": "g", "epochs": 2}
    store.write_trial("s", "ab_00000", rows_for_trial("s", "ab_00000", config, results, "running"))
    sweep = SweepPlan(name="s", preset="x", runs=[], store=str(tmp_path / "store"))
    assert reconcile_store(trial_dir.parent, sweep) == 1
    assert store.read_table("trials").to_pylist()[0]["status"] == "done"
    assert reconcile_store(trial_dir.parent, sweep) == 0  # final rows are left alone


def test_a_trial_that_completes_without_reporting_after_resume_is_marked_done(tmp_path):
    """Restored from its final checkpoint, a trial reports nothing: the new driver still closes it."""
    from types import SimpleNamespace

    from orchestrator.tune_wiring import StoreAndProgress
    from results.rows import rows_for_trial
    from results.store import ParquetStore

    store = ParquetStore(str(tmp_path / "store"))
    config = {"arch": "rohrer25k", "group": "g", "epochs": 2}
    results = [{"epoch": e, "test_acc": 0.5, "train_time_s": 1.0, "eval_time_s": 0.1} for e in (1, 2)]
    store.write_trial("s", "ab_00000", rows_for_trial("s", "ab_00000", config, results, "running"))
    callback = StoreAndProgress("s", str(tmp_path / "store"), epochs=2)  # a fresh driver's callback
    trial = SimpleNamespace(trial_id="ab_00000", status="TERMINATED", last_result={"training_iteration": 2},
                            config={"variant": {"arch": "rohrer25k", "group": "g"}, "overrides": {"epochs": 2}})
    callback.on_trial_complete(0, [trial], trial)
    (row,) = store.read_table("trials").to_pylist()
    assert row["status"] == "done" and row["epochs_done"] == 2
    assert store.read_table("epochs").num_rows == 2


def test_a_resumed_trial_recovers_the_epoch_a_kill_kept_out_of_the_store(tmp_path):
    """Killed after Tune recorded epoch 3 but before the store's flush: the new driver takes Tune's record."""
    import json
    from types import SimpleNamespace

    from orchestrator.tune_wiring import StoreAndProgress
    from results.rows import rows_for_trial
    from results.store import ParquetStore

    store = ParquetStore(str(tmp_path / "store"))
    config = {"arch": "rohrer25k", "group": "g", "epochs": 4}
    results = [{"epoch": e, "training_iteration": e, "test_acc": 0.1 * e, "train_time_s": 1.0,
                "eval_time_s": 0.1, "trial_id": "ab_00000"} for e in (1, 2, 3, 4)]
    store.write_trial("s", "ab_00000", rows_for_trial("s", "ab_00000", config, results[:2], "running"))
    trial_dir = tmp_path / "runs" / "train_scs_ab_00000_0"
    trial_dir.mkdir(parents=True)
    (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results[:3]))
    callback = StoreAndProgress("s", str(tmp_path / "store"), epochs=4)
    trial = SimpleNamespace(trial_id="ab_00000", status="RUNNING", last_result={}, local_path=str(trial_dir),
                            config={"variant": {"arch": "rohrer25k", "group": "g"}, "overrides": {"epochs": 4}})
    callback.on_trial_result(0, [trial], trial, results[3])  # the resumed run reports epoch 4
    callback.on_trial_complete(0, [trial], trial)
    epochs = sorted(r["epoch"] for r in store.read_table("epochs").to_pylist())
    assert epochs == [1, 2, 3, 4]
    (row,) = store.read_table("trials").to_pylist()
    assert row["status"] == "done" and row["final_acc"] == pytest.approx(0.4)
