"""Sweeps on local Ray: smoke run, sweep files, the default data folder, ASHA pruning, NaN and failed
trials, Optuna, kill -9 and resume, the live rows against `gather`, CLI errors."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow.dataset as ds
import pytest
from support.sweep_files import GOOD

from orchestrator.cli import main
from orchestrator.plan import RunOptions, plan_sweep
from orchestrator.records import tune_states
from results.query import run_query
from results.store import ParquetStore
from search_spaces.experiment import Experiment

ray = pytest.importorskip("ray")  # the sweep tests need ray; the project's install always has it

ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def local_ray():
    from orchestrator.tuner import connect

    connect("")
    yield
    ray.shutdown()


def read(store, table):
    return ds.dataset(str(store / table), format="parquet", partitioning="hive").to_table().to_pylist()


def rows_by_key(store):
    """Every row of every table, keyed and sorted, for comparing two stores."""
    from results.schema import KEYS

    out = {}
    for table, keys in KEYS.items():
        if (store / table).is_dir():
            rows = read(store, table)
            out[table] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))
    return out


def test_table1_smoke_run_reports_every_trial_and_gather_reproduces_its_rows(local_ray, tmp_path, capsys):
    store, runs = tmp_path / "store", tmp_path / "runs"
    assert main(["run", "table1", "--smoke-test", "--store", str(store), "--storage", str(runs)]) == 0
    trials = read(store, "trials")
    assert len(trials) == 8 and {t["status"] for t in trials} == {"done"}
    assert {(t["layer"], t["activation"], t["pooling"]) for t in trials} == {
        (a, b, c) for a in ("conv", "scs") for b in ("relu", "none") for c in ("max", "maxabs")}
    assert all(t["budget"] == "smoke" and t["n_train"] == 256 and t["dataset"] == "synthetic" for t in trials)
    # the costliest variants were planned, created and started first (SCS with MaxAbsPool2d), the cheapest last
    by_index = sorted(trials, key=lambda t: t["trial_id"].rsplit("_", 1)[1])
    assert [(t["layer"], t["pooling"]) for t in by_index[:2]] == [("scs", "maxabs")] * 2
    assert [(t["layer"], t["pooling"]) for t in by_index[-2:]] == [("conv", "max")] * 2
    first = min(trials, key=lambda t: t["started_at"])
    assert (first["layer"], first["pooling"]) == ("scs", "maxabs")
    epochs = read(store, "epochs")
    assert len(epochs) == 8 and all(e["epoch"] == 1 for e in epochs)
    assert all(t["params"] > 0 and t["host"] and t["code_version"] and t["started_at"] for t in trials)
    assert all(t["compiled"] == "no" and t["compile_error"] is None for t in trials)  # too short to pay to compile
    assert all(isinstance(t["started_at"], datetime) and t["ended_at"] >= t["started_at"] for t in trials)
    assert all(e["ended_at"] and e["wall_s"] > 0 and e["node_id"] for e in epochs)
    assert len(read(store, "robustness")) == 8 * 7 and len(read(store, "saliency")) == 8 * 10
    assert all(len(s["image"]) == 3 * 32 * 32 for s in read(store, "saliency"))
    (span,) = run_query(ParquetStore(str(store)), "SELECT min(ended_at - started_at) > INTERVAL 0 SECOND AS later "
                                                 "FROM trials").to_pylist()
    assert span["later"] is True  # Parquet timestamps: DuckDB subtracts them as they are
    out = capsys.readouterr().out
    assert "part 1/1: table1, 8 trial(s) of 1 epoch(s)" in out and "seeds 0" in out
    assert "part table1: each trial asks for 1 CPU and no GPU (--smoke-test trains on the CPU)" in out
    assert all(t["gpu"] == "cpu" and t["gpu_index"] is None and t["node_ip"] for t in trials)
    assert "8 done" in out and "best test_acc" in out and "ETA" in out
    assert (runs / "table1" / "sweep.toml").read_text().startswith("# scs-sweep sweep file: table1")
    assert list((runs / "table1" / "table1").rglob("events.out.tfevents*"))  # TensorBoard logs
    assert main(["status", "table1", "--storage", str(runs)]) == 0
    assert "8 trials: 8 done" in capsys.readouterr().out
    # one record function: gather from Tune's files writes exactly the rows the sweep wrote
    assert main(["gather", str(runs / "table1"), "--store", str(tmp_path / "gathered")]) == 0
    live, gathered = rows_by_key(store), rows_by_key(tmp_path / "gathered")
    assert live.keys() == gathered.keys() and live == gathered
    # resume refuses to split one sweep's rows across two stores
    assert main(["resume", "table1", "--storage", str(runs), "--store", str(tmp_path / "other")]) == 2
    assert "writes its rows to" in capsys.readouterr().err
    # resuming the finished sweep refills ASHA's rungs from the trials' records and changes no row
    assert main(["resume", "table1", "--storage", str(runs), "--store", str(store)]) == 0
    assert "ASHA: rungs refilled from the recorded results of 8 trial(s)" in capsys.readouterr().out
    assert rows_by_key(store) == live


TWO_AXES = GOOD  # the two-axis sweep file of test_plan.py: layer x max_lr, 4 trials of rohrer25k


def test_a_sweep_file_from_a_folder_holding_data_trains_on_that_data(local_ray, tmp_path, monkeypatch):
    from support.data import write_cifar_bin

    write_cifar_bin(tmp_path / "data", n=40)
    (tmp_path / "two_axes.toml").write_text(TWO_AXES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCS_DATA", raising=False)
    assert main(["run", "two_axes.toml", "--no-evaluate", "--no-prune", "--test-images", "30"]) == 0
    trials = read(tmp_path / "scs_store", "trials")
    assert {(t["layer"], t["max_lr"]) for t in trials} == {(a, b) for a in ("conv", "scs") for b in (0.003, 0.01)}
    assert all(t["group"] == "lr-axis" and t["arch"] == "rohrer25k" and t["batch_size"] == 64 for t in trials)
    assert all(t["dataset"] == "cifar10" and t["data_dir"] == str(tmp_path / "data") for t in trials)
    assert all(t["status"] == "done" and t["epochs_done"] == 2 and t["budget"] == "reduced" for t in trials)
    assert (tmp_path / "scs_runs" / "lr-axis" / "sweep.toml").read_text() == TWO_AXES
    assert (tmp_path / "scs_store" / "_sweeps" / "lr-axis.toml").read_text() == TWO_AXES


def test_a_sweep_whose_trials_fail_exits_nonzero_with_a_line_per_failed_trial(local_ray, tmp_path, capsys):
    (tmp_path / "diverge.toml").write_text(TWO_AXES.replace('pooling = "maxabs"', 'pooling = "maxabs"\n'
                                                            'optimizer = "sgd"\nscheduler = "constant"')
                                           .replace("max_lr = [0.003, 0.01]", "max_lr = [1e12]"))
    rc = main(["run", str(tmp_path / "diverge.toml"), "--dataset", "synthetic", "--train-images", "128",
               "--test-images", "64", "--no-evaluate", "--store", str(tmp_path / "store"),
               "--storage", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 1
    failed = [line for line in out.splitlines() if line.startswith("scs-sweep: trial ")]
    assert len(failed) == 2
    for line in failed:  # the summary's epoch is the one the error names
        at, named = re.search(r"failed at epoch (\d+): NonFiniteLossError: .* in epoch (\d+)", line).groups()
        assert at == named, line
    assert "2 trial(s) of lr-axis failed" in out
    assert {t["status"] for t in read(tmp_path / "store", "trials")} == {"failed"}


def _experiment(name, epochs, *trials):
    return Experiment(name, epochs, grids=tuple({k: [v] for k, v in t.items()} for t in trials))


def _good(**kw):
    base = dict(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs", optimizer="adam",
                scheduler="onecycle", max_lr=0.01, batch_size=64)
    return dict(base, **kw)


def test_asha_prunes_a_hopeless_trial_and_a_nan_trial_fails_alone(local_ray, tmp_path):
    from orchestrator.tuner import execute

    experiment = _experiment("asha", 6, _good(seed=0), _good(seed=1), _good(seed=2),
                             _good(layer="conv", activation="relu", max_lr=1e-9, scheduler="constant"),
                             _good(layer="conv", activation="relu", optimizer="sgd", max_lr=1e12,
                                   scheduler="constant"))
    sweep = plan_sweep("asha", "test", [experiment], RunOptions(dataset="synthetic", train_images=512,
                                                                test_images=256, max_concurrent=2,
                                                                evaluate=False),
                       store=str(tmp_path / "store"), storage=str(tmp_path / "runs"))
    sweep.max_failures = 1
    failed = execute(sweep)
    rows = read(tmp_path / "store", "trials")
    assert len(rows) == 5
    (hopeless,) = [t for t in rows if t["max_lr"] == 1e-9]
    (nan,) = [t for t in rows if t["max_lr"] == 1e12]
    assert hopeless["status"] == "pruned" and hopeless["epochs_done"] < 6
    assert nan["status"] == "failed" and "epoch 1" in nan["error"]
    assert [f["trial_id"] for f in failed] == [nan["trial_id"]]
    good = [t for t in rows if t["layer"] == "scs"]
    assert sum(t["status"] == "done" and t["epochs_done"] == 6 for t in good) >= 1


def test_optuna_p_proposes_distinct_p_values_prunes_and_keeps_its_study_in_sqlite(local_ray, tmp_path):
    import optuna

    from orchestrator.tuner import OPTUNA_DB, execute
    from search_spaces import get_preset

    sweep = plan_sweep("optuna", "optuna-p-rohrer100k", get_preset("optuna-p-rohrer100k"),
                       RunOptions(smoke_test=True, epochs=4, num_samples=8, evaluate=False),
                       store=str(tmp_path / "store"), storage=str(tmp_path / "runs"))
    execute(sweep)
    trials = read(tmp_path / "store", "trials")
    p_values = [t["p_value"] for t in trials]
    assert len(trials) == 8 and len(set(p_values)) == 8 and all(0.1 <= p <= 10 for p in p_values)
    assert any(t["status"] == "pruned" for t in trials)
    study = optuna.load_study(study_name="optuna-p-rohrer100k",
                              storage=f"sqlite:///{tmp_path / 'runs' / 'optuna' / OPTUNA_DB}")
    assert len(study.trials) == 8
    assert sorted(t.params["p_value"] for t in study.trials) == pytest.approx(sorted(p_values))


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path):
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = ["--store", str(store), "--storage", str(runs)]
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "table1", "--smoke-test", "--epochs", "4",
           "--checkpoint-every", "1", "--no-prune", "--max-concurrent", "2", *args]
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    part = runs / "table1" / "table1"
    deadline = time.time() + 240
    # kill once Tune's saved state says a trial ended (a trial whose end it had not saved yet runs again on
    # resume: Tune saves its state every few seconds) and other trials are mid-way
    while time.time() < deadline:
        ended = {t for t, state in tune_states(part)[0].items() if state == "TERMINATED"} if part.is_dir() else set()
        unfinished = [p for p in runs.rglob("result.json") if len(p.read_text().splitlines()) < 4]
        if ended and (unfinished or len(list(runs.rglob("result.json"))) < 8):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ended = {t for t, state in tune_states(part)[0].items() if state == "TERMINATED"}
    lines_of = {p.parent: p.read_text().splitlines() for p in runs.rglob("result.json")}
    # a result.json with no line yet: its trial started just before the kill, so it had not ended
    done_before = {folder: len(lines) for folder, lines in lines_of.items()
                   if lines and json.loads(lines[0])["trial_id"] in ended}
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


STAGED_PLAIN = """
name = "plain"
epochs = 6

[fixed]
arch = "rohrer25k"
activation = "relu"
pooling = "max"
batch_size = 64

[[grid]]
group = ["first"]
layer = ["conv"]
seed = [0, 1]

[[grid]]
group = ["second"]
layer = ["scs"]
seed = [0, 1]
init_from = ["@first"]
"""


def test_ctrl_c_stops_the_sweep_where_it_is_and_resume_finishes_it(tmp_path):
    """Tune catches Ctrl+C itself, saves and returns: the sweep went on to its next part (a settle judged a
    look on half its trials) and said it had finished. Now the sweep stops there: exit 130, one line saying
    how to continue, no later part started; `resume` then finishes every trial of both stages once."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    (tmp_path / "plain.toml").write_text(STAGED_PLAIN)
    args = ["--store", str(store), "--storage", str(runs)]
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(tmp_path / "plain.toml"),
                             "--dataset", "synthetic", "--train-images", "256", "--test-images", "64",
                             "--checkpoint-every", "2", "--no-evaluate", "--no-prune", "--max-concurrent", "2", *args],
                            env=ENV, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any(len(p.read_text().splitlines()) >= 2 for p in runs.rglob("result.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # the driver alone, as `kill -INT`; a terminal's Ctrl+C reaches its group
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "sweep plain interrupted after" in out and "`scs-sweep resume plain` continues it" in out
    assert "part 2/2" not in out and not (runs / "plain" / "plain-second").exists()
    resumed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", "plain", *args], env=ENV,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert "part 2/2: plain-second" in resumed.stdout and "resumed and finished" in resumed.stdout
    trials = read(store, "trials")
    assert len(trials) == 4 and all(t["status"] == "done" and t["epochs_done"] == 6 for t in trials), \
        [(t["group"], t["seed"], t["status"], t["epochs_done"], t["error"]) for t in trials]
    epochs = [(e["trial_id"], e["epoch"]) for e in read(store, "epochs")]
    assert len(epochs) == len(set(epochs)) == 4 * 6


@pytest.mark.parametrize("argv,message", [
    (["run", "table99", "--smoke-test"], "unknown preset 'table99'"),
    (["run", "missing.toml", "--smoke-test"], "cannot read sweep file missing.toml"),
    (["resume", "nothing-here", "--storage", "/tmp/scs-none"], "no sweep named 'nothing-here'"),
    (["run", "table1", "--smoke-test", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster"),
])
def test_bad_input_gives_one_clear_line_and_nonzero_exit(argv, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv, "--storage", str(tmp_path)]
                         if argv[0] == "run" else [sys.executable, "-m", "orchestrator.cli", *argv],
                         env=ENV, capture_output=True, text=True, timeout=120, cwd=tmp_path)
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


def _trial_dir(root, epochs_recorded, budget=4):
    """A Tune trial folder as the sweep leaves it: params.json and result.json lines."""
    from orchestrator.plan import resolve_trial

    config = resolve_trial(_good(), {"epochs": budget, "dataset": "synthetic"}, "test")
    trial_dir = root / "train_scs_ab123_00000_0_x"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps({"trial": {"group": "g", "budget": "full", "config": config},
                                                       "run": {}}))
    results = [{"epoch": e, "training_iteration": e, "test_acc": 0.1 * e, "train_time_s": 1.0, "eval_time_s": 0.1,
                "trial_id": "ab123_00000", "timestamp": 1_800_000_000 + e, "time_this_iter_s": 1.0}
               for e in range(1, epochs_recorded + 1)]
    (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    return trial_dir, results


def test_the_store_callback_writes_rows_from_the_trials_folder_even_without_a_report(tmp_path):
    """A trial restored from its final checkpoint completes without reporting; a kill between Tune's
    record of an epoch and the store's flush loses nothing: rows come from the trial's own folder."""
    from orchestrator.store_callback import StoreAndProgress
    from results.store import ParquetStore

    trial_dir, results = _trial_dir(tmp_path / "runs", 4)
    store = ParquetStore(str(tmp_path / "store"))
    callback = StoreAndProgress("s", str(tmp_path / "store"), n_trials=1, epochs=4)  # a fresh driver
    trial = SimpleNamespace(trial_id="ab123_00000", status="TERMINATED", local_path=str(trial_dir))
    callback.on_trial_result(0, [trial], trial, results[-1])
    (row,) = store.read_table("trials").to_pylist()
    assert row["status"] == "done" and row["epochs_done"] == 4  # rows are flushed at first sight
    callback.on_trial_complete(0, [trial], trial)
    (row,) = store.read_table("trials").to_pylist()
    assert row["status"] == "done" and row["final_acc"] == pytest.approx(0.4) and row["ended_at"]
    assert sorted(r["epoch"] for r in store.read_table("epochs").to_pylist()) == [1, 2, 3, 4]


def test_a_data_error_in_a_worker_ends_the_trial_as_failed_without_a_retry(tmp_path, monkeypatch):
    """The trainable reports the failure as the trial's last result and returns: Tune has nothing to
    retry (on this node or another), and the trial's rows say failed with the error."""
    import orchestrator.trainable as trainable
    from orchestrator.plan import resolve_trial
    from orchestrator.records import read_trial_dir, trial_rows
    from trainables.cifar_files import DataError

    reported = []
    monkeypatch.setattr(trainable, "tune", SimpleNamespace(report=reported.append))
    monkeypatch.setattr("trainables.data.load_cifar10", lambda root: (_ for _ in ()).throw(
        DataError(f"no CIFAR-10 in {root}")))
    config = resolve_trial(_good(), {"epochs": 2, "dataset": "cifar10", "data_dir": "/nowhere"}, "test")
    params = {"trial": {"group": "g", "budget": "full", "config": config}, "run": {}}
    trainable.train_scs(params)  # returns: no exception for Tune to retry
    ((failure, acc),) = [(r["failure"], r["test_acc"]) for r in reported]
    assert failure == "DataError: no CIFAR-10 in /nowhere" and acc != acc  # NaN: no score for the scheduler
    trial_dir, _ = _trial_dir(tmp_path, 0)
    (trial_dir / "result.json").write_text(json.dumps(dict(reported[0], trial_id="ab123_00000")) + "\n")
    (row,) = trial_rows(read_trial_dir(trial_dir), "s", "TERMINATED")["trials"]
    assert row["status"] == "failed" and row["error"] == "DataError: no CIFAR-10 in /nowhere"


STAGED = """
name = "staged"
epochs = 2

[fixed]
arch = "rohrer25k"
activation = "relu"
pooling = "max"
batch_size = 64

[[grid]]
group = ["first"]
layer = ["conv"]
seed = [0]

[[grid]]                # the seed-1 trial of the first stage diverges: its second-stage twin has nothing to start from
group = ["first"]
layer = ["conv"]
seed = [1]
optimizer = ["sgd"]
scheduler = ["constant"]
max_lr = [1e12]

[[grid]]
group = ["second"]
layer = ["scs"]
seed = [0, 1]
init_from = ["@first"]
"""


def test_each_later_stage_trial_starts_from_its_own_seeds_trial_and_evaluate_reads_its_checkpoint(
        local_ray, tmp_path, capsys):
    store, runs = tmp_path / "store", tmp_path / "runs"
    (tmp_path / "staged.toml").write_text(STAGED)
    rc = main(["run", str(tmp_path / "staged.toml"), "--dataset", "synthetic", "--train-images", "128",
               "--test-images", "64", "--no-evaluate", "--store", str(store), "--storage", str(runs)])
    out = capsys.readouterr().out
    assert rc == 1 and "part 1/2: staged" in out and "part 2/2: staged-second" in out
    rows = {(t["group"], t["seed"]): t for t in read(store, "trials")}
    assert rows[("first", 0)]["status"] == "done" and rows[("first", 1)]["status"] == "failed"
    started = rows[("second", 0)]
    assert started["status"] == "done" and started["init_from_trial"] == rows[("first", 0)]["trial_id"]
    assert rows[("first", 0)]["trial_id"] in json.loads(started["config_json"])["init_from"]
    orphan = rows[("second", 1)]
    assert orphan["status"] == "failed" and orphan["init_from_trial"] is None
    assert "no first trial with seed 1 finished its budget" in orphan["error"]
    # evaluate reads the later stage's checkpoint even after the checkpoint it started from is gone
    for checkpoint in (runs / "staged" / "staged").rglob("trainer.pt"):
        checkpoint.unlink()
    (checkpoint,) = [p for p in (runs / "staged" / "staged-second").rglob("trainer.pt")
                     if started["trial_id"] in str(p)][-1:]
    assert main(["evaluate", str(checkpoint), "--store", str(store), "--pgd-images", "16", "--steps", "1",
                 "--eps", "0,0.01"]) == 0
    evaluated = [r for r in read(store, "robustness") if r["trial_id"] == started["trial_id"]]
    assert sorted(r["eps"] for r in evaluated) == [0.0, 0.01] and all(r["n_images"] == 16 for r in evaluated)
    assert main(["evaluate", str(runs / "staged"), "--store", str(store), "--pgd-images", "8", "--steps", "1"]) == 0


def test_bad_evaluate_and_models_arguments_are_one_line_and_models_lists_every_variant(tmp_path):
    from support.cli import cli, cli_many

    (tmp_path / "junk.pt").write_text("not a checkpoint")
    results, _, _ = cli_many([
        ["evaluate", str(tmp_path / "junk.pt"), "--store", str(tmp_path / "s")],
        ["evaluate", str(tmp_path), "--eps", "0.1,x"],
        ["evaluate", str(tmp_path), "--eps", "2"],
        ["evaluate", str(tmp_path), "--steps", "0"],
        ["evaluate", str(tmp_path), "--device", "cuda:7"],
        ["evaluate", str(tmp_path / "none")],
        ["models", "--jsn"],
        ["figures", "--store", str(tmp_path / "nothing-here")],
    ])
    for rc, lines in results:
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("scs-sweep "), lines
    assert "is not a readable trainer checkpoint" in results[0][1][0]
    out = cli(["models"])
    assert out.returncode == 0
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith(("rohrer", "resnet"))]
    assert len(rows) == 7 * 3 * 2 * 2 * 2
    assert ["rohrer100k", "scs", "none", "maxabs", "none", "113,741"] in rows


def test_status_names_an_unreadable_tune_state_and_trial_folder(tmp_path, capsys):
    sweep = plan_sweep("broken", "test", [_experiment("broken", 4, _good())], RunOptions(dataset="synthetic"),
                       storage=str(tmp_path))
    part = tmp_path / "broken" / "broken"
    part.mkdir(parents=True)
    sweep.save(tmp_path / "broken" / "sweep.json")
    (part / "experiment_state-2026-01-01_00-00-00.json").write_text("{not json")
    (part / "train_scs_ab123_00001_1_x").mkdir()
    (part / "train_scs_ab123_00001_1_x" / "params.json").write_text("{cut")
    assert main(["status", "broken", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning: " in out and "experiment_state-2026-01-01_00-00-00.json cannot be read" in out
    assert "unreadable trial folder" in out and "train_scs_ab123_00001_1_x/params.json" in out


def test_the_progress_line_counts_a_started_trial_as_running_and_names_its_part(capsys):
    from orchestrator.store_callback import StoreAndProgress

    callback = StoreAndProgress("sweep", "unused", n_trials=3, epochs=4, part="sweep-second")
    trials = [SimpleNamespace(trial_id=f"t{i}", status=s, config={}) for i, s in
              enumerate(("RUNNING", "PENDING", "PENDING"))]
    callback.on_trial_start(0, trials, trials[0])
    trials[1].status = "RUNNING"
    callback._last_progress = 0
    callback.on_trial_start(0, trials, trials[1])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("[sweep/sweep-second] 3/3 trials: 0 done, 2 running, 1 pending")


def test_the_progress_line_of_a_resumed_sweep_counts_the_trials_that_ended_before_it(tmp_path, capsys):
    """A resumed part said '8/8 trials: 4 done, 0 running, 0 pending' with 64/128 epochs at its end: the trials
    that had finished before the resume were counted nowhere. They count as they ended, with their epochs."""
    from orchestrator.store_callback import StoreAndProgress

    trial_dir, _ = _trial_dir(tmp_path / "runs", 4)
    callback = StoreAndProgress("s", str(tmp_path / "store"), n_trials=2, epochs=4)  # the resumed driver
    ended = SimpleNamespace(trial_id="ab123_00000", status="TERMINATED", local_path=str(trial_dir), config={})
    running = SimpleNamespace(trial_id="ab123_00001", status="RUNNING", local_path="", config={})
    callback.on_trial_start(0, [ended, running], running)
    assert capsys.readouterr().out.splitlines()[-1].startswith("[s] 2/2 trials: 1 done, 1 running, 0 pending, "
                                                                "0 pruned, 0 failed; best test_acc -; 4/8 epochs")


def test_a_checkpoint_that_breaks_after_planning_fails_its_trial_once_with_its_own_line(tmp_path, monkeypatch):
    """A user error that can only show inside a trial is reported as the trial's failure (no retry): here the
    init_from file was a checkpoint when the sweep was planned and is not one when the trial starts."""
    import torch

    import orchestrator.trainable as trainable
    from common.config import TrialConfig
    from orchestrator.plan import resolve_trial
    from trainables.train import Trainer

    source = tmp_path / "trainer.pt"
    Trainer(TrialConfig(**{k: v for k, v in _good().items() if k != "group"}, dataset="synthetic",
                        epochs=1)).save(source)
    config = resolve_trial(dict(_good(), init_from=str(source)), {"epochs": 1, "dataset": "synthetic"}, "test")
    source.write_text("overwritten by something else")
    reported = []
    monkeypatch.setattr(trainable, "tune", SimpleNamespace(report=reported.append, get_checkpoint=lambda: None))
    trainable.train_scs({"trial": {"group": "g", "budget": "smoke", "config": config}, "run": {"cpus_per_trial": 2}})
    (report,) = reported
    assert report["failure"].startswith(f"ConfigError: init_from {source} is not a checkpoint of scs-sweep")
    assert torch.get_num_threads() == 2
