"""The sweep in MLflow (a real tracking server on 127.0.0.1 with a SQLite backend, read back with MLflow's own
client) and in W&B (offline: its run files read back): one run per trial for its whole life, a kill and a
resume included, every epoch the store has logged exactly once with the same values; a server that stops
mid-sweep never fails a trial; a tracker that is not installed or does not answer is one line."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from support.wandb_files import history

from orchestrator.records import tune_states

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
ENV.pop("RAY_ADDRESS", None)
EPOCHS = 4
SWEEP = ["table1", "--dataset", "synthetic", "--epochs", str(EPOCHS), "--train-images", "256", "--test-images", "64",
         "--checkpoint-every", "2", "--no-prune", "--no-evaluate", "--max-concurrent", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` with a SQLite backend and a local artifact root, in a process group of its own (its
    helper processes outlive the server's own process otherwise)."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
             f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root", str(folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=open(folder / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer in 90 s: {(folder / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def _read(store: Path, table: str) -> list[dict]:
    return ds.dataset(str(store / table), format="parquet", partitioning="hive").to_table().to_pylist()


def _run_killed_and_resumed(tmp_path: Path, env: dict, track: str) -> tuple[Path, Path]:
    """The sweep with --track, SIGKILLed once a trial has ended and others are mid-way, then resumed."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = ["--store", str(store), "--storage", str(runs)]
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", *SWEEP, "--track", track, *args],
                            env=env, start_new_session=True, stdout=open(tmp_path / "run.log", "w"),
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    part = runs / "table1" / "table1"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ended = {t for t, state in tune_states(part)[0].items() if state == "TERMINATED"} if part.is_dir() else set()
        midway = [p for p in runs.rglob("result.json") if 0 < len(p.read_text().splitlines()) < EPOCHS]
        if ended and midway:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", "table1", *args], env=env,
                             capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert resumed.returncode == 0, (tmp_path / "run.log").read_text()[-2000:] + resumed.stdout[-2000:] + \
        resumed.stderr[-2000:]
    return store, runs


def test_mlflow_has_one_parent_and_one_child_per_trial_whose_epochs_are_the_stores_across_a_kill(
        mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    env = dict(ENV, MLFLOW_TRACKING_URI=mlflow_server.uri, MLFLOW_EXPERIMENT_NAME="killed")
    store, _ = _run_killed_and_resumed(tmp_path, env, "mlflow")
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("killed")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("scs.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("scs.role") == "trial"]
    assert len(parents) == 1 and len(children) == 8, [r.data.tags for r in runs]  # no second run after the resume
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["trials_planned"] == "8"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.toml", "tables.md", "tables.csv", "report.html"} <= artifacts
    epochs = {(e["trial_id"], e["epoch"]): e for e in _read(store, "epochs")}
    trials = {t["trial_id"]: t for t in _read(store, "trials")}
    for child in children:
        tags = child.data.tags
        trial = trials[tags["scs.trial_id"]]
        assert tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        assert (tags["layer"], tags["activation"], tags["pooling"], tags["seed"]) == \
            (trial["layer"], trial["activation"], trial["pooling"], str(trial["seed"]))
        assert tags["budget"] == trial["budget"] and tags["paper_table"] == trial["paper_table"]
        assert child.data.params["epochs"] == str(EPOCHS) and child.data.params["arch"] == trial["arch"]
        for key in ("test_acc", "train_loss"):
            history = client.get_metric_history(child.info.run_id, key)
            steps = [m.step for m in history]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)  # each epoch once, none missing
            for m in history:
                assert m.value == pytest.approx(epochs[(trial["trial_id"], m.step)][key], rel=1e-9)
        assert child.data.metrics["val_acc"] == pytest.approx(trial["val_acc"])
        assert child.data.metrics["final_acc"] == pytest.approx(trial["final_acc"])


def test_a_tracker_that_is_missing_or_does_not_answer_is_one_line_before_ray_starts(tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "table1", "--smoke-test", "--track",
                           "mlflow", "--storage", str(tmp_path)], env=dict(ENV, MLFLOW_TRACKING_URI=dead),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and line.startswith(f"scs-sweep run: error: --track mlflow: the MLflow server at {dead}")
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "table1", "--smoke-test", "--track",
                           "neptune", "--storage", str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--track 'neptune': the trackers are mlflow, wandb" in done.stderr
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "table1", "--smoke-test", "--track",
                           "wandb", "--storage", str(tmp_path)],
                          env={k: v for k, v in dict(ENV, WANDB_MODE="online", HOME=str(tmp_path)).items()
                               if k != "WANDB_API_KEY"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no W&B login here: set WANDB_API_KEY" in done.stderr
    assert not (tmp_path / "table1").exists()  # nothing started


def test_wandb_offline_keeps_one_run_per_trial_resumed_in_place_after_a_kill(tmp_path):
    wandb_dir = tmp_path / "wandb-files"
    env = dict(ENV, WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), WANDB_PROJECT="scs-test", WANDB_SILENT="true")
    store, _ = _run_killed_and_resumed(tmp_path, env, "wandb")
    trials = {t["trial_id"] for t in _read(store, "trials")}
    folders = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    by_run = {}
    for folder in folders:  # offline-run-<time>-<run id>: a resumed run writes a second folder, same id
        by_run.setdefault(folder.name.split("-", 3)[3], []).append(folder)
    assert sorted(by_run) == sorted(f"table1-{t}" for t in trials), sorted(by_run)  # one run id per trial
    epochs = {(e["trial_id"], e["epoch"]): e for e in _read(store, "epochs")}
    for run_id, run_folders in by_run.items():
        trial_id = run_id.split("-", 1)[1]
        # W&B keeps what a killed driver logged only as far as it had written it: the run's last folder (the
        # resumed one) holds its whole history, each epoch once; any earlier one only values the store has
        last = [row["epoch"] for row in history(run_folders[-1])]
        assert sorted(last) == list(range(1, EPOCHS + 1)), (run_id, [history(f) for f in run_folders])
        for row in (row for folder in run_folders for row in history(folder)):
            assert row["test_acc"] == pytest.approx(epochs[(trial_id, row["epoch"])]["test_acc"], rel=1e-9)


def test_a_run_created_just_before_a_kill_gets_its_params_when_the_sweep_resumes(mlflow_server, monkeypatch):
    """The driver can die between creating a trial's run (tags) and logging its params: the resumed sweep
    finds that run by its tags and logs what it lacks, so no run in the experiment is left without params."""
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from orchestrator.trackers import MLflowRuns

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "half-created")
    sweep = {"name": "table1", "trials": 1, "code_version": "abc"}
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.create_experiment("half-created")
    parent = client.create_run(experiment, tags={"scs.sweep": "table1", "scs.role": "sweep"}).info.run_id
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent, "scs.sweep": "table1",
                                                "scs.trial_id": "t1", "scs.role": "trial"}).info.run_id
    spec = SimpleNamespace(config={"arch": "rohrer100k", "layer": "scs", "epochs": 4, "widths": [8, 16]},
                           group="table1", paper_table="1", budget="quick")
    runs = MLflowRuns(sweep, None)
    assert runs.parent == parent and runs.start("t1", spec, "") == child  # found again, not a second run
    assert client.get_run(parent).data.params["trials_planned"] == "1"
    assert client.get_run(child).data.params == {"arch": "rohrer100k", "layer": "scs", "epochs": "4",
                                                 "widths": "[8, 16]"}
    assert runs.start("t1", spec, child) == child  # params already there: logging again changes nothing
    assert len(client.search_runs([experiment])) == 2


def test_a_tracking_server_that_stops_mid_sweep_fails_no_trial(mlflow_server, tmp_path):
    """The last test of the module: it stops the module's server."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    env = dict(ENV, MLFLOW_TRACKING_URI=mlflow_server.uri, MLFLOW_EXPERIMENT_NAME="stopped")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", *SWEEP, "--track", "mlflow", "--store",
                             str(store), "--storage", str(runs)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    deadline = time.time() + 240
    while time.time() < deadline and not list(runs.rglob("result.json")):
        time.sleep(0.2)
    mlflow_server.stop()
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    assert out.count("scs-sweep: mlflow failed") == 1 and "the sweep goes on without it" in out  # said once
    trials = _read(store, "trials")
    assert len(trials) == 8 and all(t["status"] == "done" for t in trials)
    assert len(_read(store, "epochs")) == 8 * EPOCHS


class _Tracker:
    """A tracker client that records what it is given; `held`: the last epoch its run holds when asked."""

    def __init__(self, held: int = 0):
        self.held, self.logged, self.ended, self.extras = held, [], [], []

    def start(self, trial_id, spec, known):
        return known or f"run-{trial_id}"

    def logged_epochs(self, run_id):
        return self.held

    def log(self, run_id, epochs, extra=None):
        self.logged += [(row["epoch"], row["test_acc"]) for row in epochs]
        self.extras += [extra] if extra else []

    def end(self, run_id, status):
        self.ended.append(status)


def _one_trial(folder, epochs: int):
    """A trial of table1 whose results go to FOLDER/result.json as Tune writes them, and report(callback,
    epoch, acc), which hands one epoch's result to a callback as Tune would."""
    import json
    from types import SimpleNamespace

    config = {"trial": {"group": "table1", "budget": "quick", "config": {"arch": "rohrer100k", "epochs": epochs}}}
    trial = SimpleNamespace(trial_id="t1", config=config, local_path=str(folder), last_result={})
    (folder / "params.json").write_text(json.dumps(config))

    def report(callback, epoch, acc):
        result = {"trial_id": "t1", "epoch": epoch, "test_acc": acc, "train_loss": 1.0}
        with open(folder / "result.json", "a") as out:
            out.write(json.dumps(result) + "\n")
        trial.last_result = result
        callback.on_trial_result(0, [], trial, result)

    return trial, report


def _driver(trial, live: dict, saved: dict | None = None):
    """A driver's TrackerCallback with the given tracker clients, the trial started, or, with Tune's saved
    state, restored as a resumed driver restores it."""
    from orchestrator.tracker_callback import TrackerCallback

    callback = TrackerCallback({"name": "table1"})
    if saved is not None:
        callback.set_state(saved)
    callback._live = live
    (callback.on_trial_start if saved is None else callback.on_trial_restore)(0, [], trial)
    return callback


def test_a_tracker_that_lost_the_epochs_of_a_killed_driver_gets_them_again_from_the_trials_results(tmp_path):
    """The driver logs epochs 1-2 at the checkpoint of epoch 2, Tune saves that, and the driver is killed
    before W&B wrote them; the resumed driver logs them again to W&B (from result.json, the store's own source)
    with 3-4, and to MLflow, which kept them, only 3-4."""
    trial, report = _one_trial(tmp_path, epochs=4)
    first = _driver(trial, {"mlflow": _Tracker(), "wandb": _Tracker()})
    report(first, 1, 0.1), report(first, 2, 0.2)
    first.on_checkpoint(0, [], trial, None)
    report(first, 3, 0.25)                              # not covered by a checkpoint: killed here
    saved = first.get_state()
    assert first._live["wandb"].logged == [(1, 0.1), (2, 0.2)] and saved["logged"]["t1"] == {"mlflow": 2, "wandb": 2}

    # the resumed driver: W&B's run file held nothing
    second = _driver(trial, {"mlflow": _Tracker(held=2), "wandb": _Tracker(held=0)}, saved)
    report(second, 3, 0.3), report(second, 4, 0.4)      # re-run from the checkpoint of epoch 2
    second.on_checkpoint(0, [], trial, None)
    second.on_trial_complete(0, [], trial)
    assert second._live["wandb"].logged == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]  # the kept value of each
    assert second._live["mlflow"].logged == [(3, 0.3), (4, 0.4)]  # it kept 1-2
    assert second._live["wandb"].ended == second._live["mlflow"].ended == ["FINISHED"]
    assert second.best["t1"] == 0.4 and second.get_state()["logged"]["t1"] == {"mlflow": 4, "wandb": 4}


@pytest.mark.parametrize("wandb_held", [0, 4])
def test_epochs_a_tracker_took_after_tunes_last_save_are_not_logged_again_when_the_trial_re_runs_them(
        tmp_path, wandb_held):
    """Tune saves its state with the checkpoint of epoch 2; MLflow then takes epochs 3-4 at the checkpoint of
    epoch 4, and the driver is killed before Tune saves again. The resumed trial re-runs 3-4 from the checkpoint
    of epoch 2: MLflow, asked, holds them and gets none twice; W&B gets those it lacks (all six when it kept
    nothing). Both get the trial's best accuracy, epoch 3's, as val_acc, though with W&B holding 1-4 too the
    resumed driver logged epoch 3 to neither."""
    import copy

    trial, report = _one_trial(tmp_path, epochs=6)
    first = _driver(trial, {"mlflow": _Tracker(), "wandb": _Tracker()})
    report(first, 1, 0.1), report(first, 2, 0.2)
    first.on_checkpoint(0, [], trial, None)
    saved = copy.deepcopy(first.get_state())            # Tune's last save (it pickles the state)
    report(first, 3, 0.9), report(first, 4, 0.4)
    first.on_checkpoint(0, [], trial, None)             # MLflow has 1-4; killed before Tune saves
    assert first._live["mlflow"].logged == [(1, 0.1), (2, 0.2), (3, 0.9), (4, 0.4)]

    assert saved["logged"]["t1"] == {"mlflow": 2, "wandb": 2}  # behind MLflow
    second = _driver(trial, {"mlflow": _Tracker(held=4), "wandb": _Tracker(held=wandb_held)}, saved)
    for epoch, acc in ((3, 0.9), (4, 0.4), (5, 0.5), (6, 0.6)):  # re-run from the checkpoint of epoch 2
        report(second, epoch, acc)
        if epoch % 2 == 0:
            second.on_checkpoint(0, [], trial, None)
    second.on_trial_complete(0, [], trial)
    assert second._live["mlflow"].logged == [(5, 0.5), (6, 0.6)]
    assert second._live["wandb"].logged == [(1, 0.1), (2, 0.2), (3, 0.9), (4, 0.4), (5, 0.5), (6, 0.6)][wandb_held:]
    assert second._live["wandb"].ended == second._live["mlflow"].ended == ["FINISHED"]
    for kind in ("mlflow", "wandb"):
        assert second._live[kind].extras == [{"final_acc": 0.6, "val_acc": 0.9, "_step": 6}], kind
    assert second.get_state()["logged"]["t1"] == {"mlflow": 6, "wandb": 6}


def test_a_tracker_state_saved_with_one_epoch_count_for_all_trackers_still_resumes():
    from orchestrator.tracker_callback import TrackerCallback

    callback = TrackerCallback({"name": "table1"})
    callback.set_state({"runs": {"t1": {"mlflow": "r"}}, "logged": {"t1": 2}, "best": {"t1": 0.5}})
    assert callback.logged == {"t1": {"mlflow": 2, "wandb": 2}}
