"""Runs, checkpoints, the store and CIFAR-10 in an S3-compatible object store (moto's server on 127.0.0.1):
a sweep that writes nothing to a local folder named after the URI, a head killed mid-sweep whose
successor resumes from the bucket alone, a later stage reading its first stage's checkpoint from the
bucket, a node's checked copy of the data, and one line for each storage URI that cannot be used."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import ENV as CLI_ENV
from support.cli import cli
from support.data import write_cifar_bin
from support.s3 import CLIENT_ENV, S3Server

from common.locations import Location, explain_error
from results.schema import KEYS
from results.store import ParquetStore
from trainables.cifar_files import DataError

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent


def head_env(home: Path) -> dict:
    """A head of its own: its HOME (so its ~/.cache, where a remote storage's mirror and Optuna study live)."""
    home.mkdir(parents=True, exist_ok=True)
    return dict(CLI_ENV, **CLIENT_ENV, HOME=str(home), PYTHONUNBUFFERED="1")


def scs(args, cwd, env, timeout=400):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def keys(store: ParquetStore, table: str) -> list[tuple]:
    rows = store.read_table(table).to_pylist()
    return [tuple(r[k] for k in KEYS[table]) for r in rows]


def local_names(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if "s3:" in p.name or "endpoint_override" in str(p)]


def test_a_head_killed_mid_sweep_is_replaced_by_one_that_resumes_from_the_bucket_alone(s3, tmp_path):
    s3.make_bucket("lab")
    runs, store_uri, data = s3.uri("lab/runs"), s3.uri("lab/store"), s3.uri("lab/data")
    write_cifar_bin(tmp_path / "cifar", n=130)
    first, second = tmp_path / "head1", tmp_path / "head2"
    env1 = head_env(first / "home")
    (first / "cwd").mkdir(parents=True)
    put = scs(["put-data", "--data", data, "--from", str(tmp_path / "cifar")], first / "cwd", env1, 60)
    assert put.returncode == 0 and "with MD5SUMS" in put.stdout, put.stderr

    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "table1", "--smoke-test", "--epochs", "4",
           "--checkpoint-every", "1", "--no-prune", "--max-concurrent", "2", "--data", data,
           "--storage", runs, "--store", store_uri]
    proc = subprocess.Popen(cmd, cwd=first / "cwd", env=env1, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    bucket = Location(runs)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill the head once a trial has checkpointed in the bucket
        if any(i.base_name == "trainer.pt" for i in bucket.files("table1")):
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    out = proc.communicate()[0]
    assert any(i.base_name == "trainer.pt" for i in bucket.files("table1")), out[-3000:]
    assert "runs in s3://lab/runs/table1" in out

    # a new head: another machine's disk (no mirror, no study, no data copy), the same bucket
    env2 = head_env(second / "home")
    (second / "cwd").mkdir(parents=True)
    resumed = scs(["resume", "table1", "--storage", runs], second / "cwd", env2)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout

    store = ParquetStore(store_uri)
    trials = store.read_table("trials").to_pylist()
    assert len(trials) == 8 and {t["status"] for t in trials} == {"done"}
    epochs = keys(store, "epochs")
    assert len(epochs) == len(set(epochs)) == 8 * 4
    # the store was compacted after the part: one file per table, in the bucket
    names = {i.path.rsplit("/", 2)[-2:][1] for i in Location(store_uri).files() if "/experiment=" in i.path}
    assert names == {"compacted-000001.parquet"}

    # status, query and the report from a third machine, from the bucket alone
    third = tmp_path / "laptop"
    (third / "cwd").mkdir(parents=True)
    env3 = head_env(third / "home")
    status = scs(["status", "table1", "--storage", runs], third / "cwd", env3, 120)
    assert "table1: 8 trials: 8 done" in status.stdout, status.stderr
    report = scs(["report", "--store", store_uri, "--out", str(third / "report")], third / "cwd", env3, 300)
    assert report.returncode == 0 and (third / "report" / "report.html").exists(), report.stderr

    # nothing was written under a local folder named after the URI, on any of the three machines
    for machine in (first, second, third):
        assert local_names(machine) == []
    # each head copied the data from the bucket to its own disk, md5-checked
    for home in (first / "home", second / "home"):
        assert list((home / ".cache" / "scs-sweep" / "data").rglob("data_batch_1.bin"))


STAGED = """
name = "staged"
epochs = 1

[fixed]
arch = "rohrer25k"
activation = "relu"
pooling = "max"
batch_size = 64
layer = "conv"
seed = 0

[[grid]]
group = ["first"]

[[grid]]
group = ["second"]
init_from = ["@first"]
"""


def test_a_later_stage_reads_its_first_stage_checkpoint_from_the_bucket(s3, tmp_path):
    s3.make_bucket("stages")
    runs, store_uri = s3.uri("stages/runs"), s3.uri("stages/store")
    (tmp_path / "staged.toml").write_text(STAGED)
    env = head_env(tmp_path / "home")
    done = scs(["run", str(tmp_path / "staged.toml"), "--dataset", "synthetic", "--train-images", "128",
                "--test-images", "64", "--no-evaluate", "--store", store_uri, "--storage", runs], tmp_path, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {t["group"]: t for t in ParquetStore(store_uri).read_table("trials").to_pylist()}
    second = rows["second"]
    assert second["status"] == "done" and second["init_from_trial"] == rows["first"]["trial_id"]
    source = json.loads(second["config_json"])["init_from"]
    assert source.startswith("s3://stages/runs/staged/staged/") and source.endswith("/trainer.pt?"
                                                                                   + runs.split("?", 1)[1])
    # evaluate reads a checkpoint from the bucket too
    evaluated = scs(["evaluate", s3.uri("stages/runs/staged"), "--store", store_uri, "--pgd-images", "8",
                     "--steps", "1", "--eps", "0,0.01"], tmp_path, env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    robustness = ParquetStore(store_uri).read_table("robustness", experiment="staged").to_pylist()
    assert {r["trial_id"] for r in robustness} == {rows["first"]["trial_id"], second["trial_id"]}
    # one checkpoint by its URI: its rows name its own trial and sweep
    bucket = Location(runs)
    ckpt = next(i.path for i in bucket.files("staged") if i.base_name == "trainer.pt" and "staged-second" in i.path)
    single = scs(["evaluate", bucket.uri_of(ckpt), "--store", store_uri, "--pgd-images", "8", "--steps", "1",
                  "--eps", "0,0.02"], tmp_path, env)
    assert single.returncode == 0 and f"staged/{second['trial_id']} " in single.stdout, single.stderr[-2000:]
    assert ParquetStore(store_uri).experiments() == ["staged"]
    # and gather rebuilds the sweep's rows from the bucket into another store
    gathered = scs(["gather", s3.uri("stages/runs/staged"), "--store", str(tmp_path / "gathered")], tmp_path, env)
    assert gathered.returncode == 0 and "gathered 2 trials of staged" in gathered.stdout, gathered.stderr[-2000:]
    again = {t["trial_id"]: t["status"] for t in ParquetStore(str(tmp_path / "gathered")).read_table("trials").to_pylist()}
    assert again == {t["trial_id"]: t["status"] for t in rows.values()}


def test_each_node_copies_the_bucket_data_once_and_checks_every_md5(s3, tmp_path, monkeypatch):
    from trainables.node_data import CACHE_ENV, node_copy, put_data

    s3.make_bucket("data")
    write_cifar_bin(tmp_path / "cifar", n=20)
    uri = s3.uri("data/cifar")
    assert "copied 6 files of cifar-10-batches-bin" in put_data(uri, str(tmp_path / "cifar"))
    assert "nothing copied" in put_data(uri, str(tmp_path / "cifar"))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node-a"))
    copy = node_copy(uri)
    assert (copy / "cifar-10-batches-bin" / "test_batch.bin").read_bytes() == \
        (tmp_path / "cifar" / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    # a corrupt object in the bucket: a node that copies it now refuses it, naming the file
    Location(uri).write_bytes(b"\0" * 3073, "cifar-10-batches-bin/test_batch.bin")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node-b"))
    with pytest.raises(DataError, match="test_batch.bin: md5 .* is not the"):
        node_copy(uri)
    # the first node's checked copy stands while MD5SUMS is the one it was checked against
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node-a"))
    assert node_copy(uri) == copy
    # put-data --force repairs the bucket; every node fetches the new copy
    write_cifar_bin(tmp_path / "other", n=20, seed=1)
    assert "copied 6 files" in put_data(uri, str(tmp_path / "other"), force=True)
    assert (node_copy(uri) / "cifar-10-batches-bin" / "test_batch.bin").read_bytes() == \
        (tmp_path / "other" / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    with pytest.raises(DataError, match="no CIFAR-10 at .*put-data"):
        node_copy(s3.uri("data/elsewhere"))


def _one_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "IMPORTED False False", done.stdout  # nothing started
    return lines[0]


def test_storage_uris_that_cannot_be_used_are_one_line_each_before_ray_starts(s3, tmp_path):
    env = dict(CLIENT_ENV)
    run = ["run", "table1", "--smoke-test"]
    # a bucket that does not exist
    line = _one_line(cli([*run, "--storage", s3.uri("no-such-bucket/runs")], cwd=tmp_path, env=env))
    assert line.startswith("scs-sweep run: error: --storage s3://no-such-bucket/runs?") and \
        "bucket 'no-such-bucket' does not exist" in line
    line = _one_line(cli([*run, "--store", s3.uri("no-such-bucket/store")], cwd=tmp_path, env=env))
    assert "--store s3://no-such-bucket/store" in line and "does not exist" in line
    # an endpoint that does not answer
    dead = s3.uri("lab/runs").replace(str(s3.port), "1")
    line = _one_line(cli([*run, "--storage", dead], cwd=tmp_path, env=env))
    assert "the object store does not answer" in line and "AWS_ACCESS_KEY_ID" in line
    # resume, status and query name the same problem
    line = _one_line(cli(["resume", "x", "--storage", s3.uri("no-such-bucket/runs")], cwd=tmp_path, env=env))
    assert "does not exist" in line
    line = _one_line(cli(["query", "SELECT 1", "--store", dead], cwd=tmp_path, env=env))
    assert "does not answer" in line
    # a URI with no bucket at all (answered "cannot write there: Not a regular file: '.scs-write-check-...'")
    line = _one_line(cli([*run, "--storage", "s3://"], cwd=tmp_path, env=env))
    assert line == ("scs-sweep run: error: s3:// names no bucket; give s3://BUCKET/PREFIX (and for a non-AWS "
                    "server ?endpoint_override=http://HOST:PORT&scheme=http)")
    assert list(tmp_path.iterdir()) == []  # and nothing was written here


def test_wrong_credentials_are_one_line(tmp_path):
    with S3Server(check_credentials=True) as guarded:
        env = dict(CLIENT_ENV, AWS_ACCESS_KEY_ID="not-a-key")
        line = _one_line(cli(["run", "table1", "--smoke-test", "--storage", guarded.uri("lab/runs")], cwd=tmp_path,
                             env=env))
    assert "access denied" in line and "AWS_ACCESS_KEY_ID" in line


def test_the_optuna_study_is_kept_in_the_bucket_and_a_new_head_fetches_it(s3, tmp_path, monkeypatch):
    import sqlite3

    from orchestrator.storage import LOCAL_ENV, Storage
    from orchestrator.tuner import OPTUNA_DB, KeepStudy

    s3.make_bucket("study")
    monkeypatch.setenv(LOCAL_ENV, str(tmp_path / "head1"))
    folder = Storage(s3.uri("study/runs")).sweep("search")
    db = folder.local_dir / OPTUNA_DB
    assert str(db).startswith(str(tmp_path / "head1"))
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as con:  # a study being written: the copy is a consistent snapshot
        con.execute("CREATE TABLE trials (number INTEGER)")
        con.executemany("INSERT INTO trials VALUES (?)", [(i,) for i in range(5)])
    keeper = KeepStudy(folder, every_s=3600)
    keeper.on_trial_complete(0, [], None)      # the first trial's end: copied
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO trials VALUES (5)")
    keeper.on_trial_complete(0, [], None)      # within every_s: not copied again
    monkeypatch.setenv(LOCAL_ENV, str(tmp_path / "head2"))
    again = Storage(s3.uri("study/runs")).sweep("search")
    fresh = again.local_dir / OPTUNA_DB
    assert not fresh.exists()
    again.fetch(fresh)
    with sqlite3.connect(fresh) as con:
        assert con.execute("SELECT count(*) FROM trials").fetchone() == (5,)
    keeper.on_experiment_end([])              # the part's end: always copied
    fresh.unlink()
    again.fetch(fresh)
    with sqlite3.connect(fresh) as con:
        assert con.execute("SELECT count(*) FROM trials").fetchone() == (6,)
    # a local storage keeps everything in the sweep's own folder
    local = Storage(str(tmp_path / "runs")).sweep("search")
    assert local.local_dir == tmp_path / "runs" / "search" and local.filesystem is None


def test_a_cluster_files_s3_settings_become_every_nodes_variables_and_are_checked_before_ray_up(s3, tmp_path,
                                                                                                monkeypatch):
    import shlex

    import yaml

    from orchestrator import cluster_cmd
    from orchestrator.errors import UsageError

    config = yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())
    settings = config["metadata"]["scs_storage"]
    assert settings["runs"] == "/mnt/scs/runs"  # shipped: the shared folder
    s3.make_bucket("lab-files")
    settings.update(runs="s3://lab-files/runs", store="s3://lab-files/store", data="s3://lab-files/data",
                    s3_endpoint=s3.endpoint, s3_access_key="scs-test", s3_secret_key="s3cr&t", s3_region="us-east-1")
    monkeypatch.chdir(tmp_path)
    path = cluster_cmd.write_storage_env(config, "cluster.yaml")
    assert path == Path(".scs-cluster/scs-onprem.env") and oct(path.stat().st_mode)[-3:] == "600"
    shell = subprocess.run(["bash", "-c", f". {path} && echo \"$SCS_RUNS|$AWS_SECRET_ACCESS_KEY|"
                                          f"$AWS_EC2_METADATA_DISABLED\""], capture_output=True, text=True)
    assert shell.stdout.strip() == f"s3://lab-files/runs?endpoint_override={s3.endpoint}&scheme=http|s3cr&t|true"
    cluster_cmd.check_storage(config, "cluster.yaml")  # the bucket takes a write with the file's keys
    settings["store"] = "s3://no-bucket-here/store"
    with pytest.raises(UsageError, match=r"^cluster.yaml: metadata.scs_storage \(SCS_STORE\) s3://no-bucket-here/"
                                         r"store\?.*bucket 'no-bucket-here' does not exist"):
        cluster_cmd.check_storage(config, "cluster.yaml")
    assert shlex.quote("s3cr&t") in path.read_text()


def test_a_refused_connection_is_not_read_as_access_denied_whatever_its_delay():
    # under load curl reports the delay of the refused connection: "after 403 ms" is not an HTTP 403
    refused = OSError("When initiating multiple part upload for key 'runs/x' in bucket 'lab': AWS Error "
                      "NETWORK_CONNECTION during CreateMultipartUpload operation: curlCode: 7, Could not "
                      "connect to server; Details: Failed to connect to 127.0.0.1:1 after 403 ms")
    assert explain_error(refused, "lab").startswith("the object store does not answer")
    denied = OSError("When reading information for key 'runs' in bucket 'lab': AWS Error UNKNOWN "
                     "(HTTP status 403) during HeadObject operation: No response body.")
    assert explain_error(denied, "lab").startswith("access denied")
