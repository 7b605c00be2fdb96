"""Clusters from the user's side: both cluster files pass Ray's schema, `scs-sweep up` says the one thing
to fix, `status --address` reads a Job server, and without --address a sweep stays embedded whatever a
dead cluster left behind (`--address auto` then fails in seconds, in one line)."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from orchestrator import cluster_cmd, provenance
from orchestrator.errors import UsageError
from orchestrator.trackers import FORWARDED_ENV

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
ENV.pop("RAY_ADDRESS", None)


def cli(*argv, env=ENV, timeout=120, cwd=ROOT):
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], env=env, capture_output=True,
                         text=True, timeout=timeout, cwd=cwd)
    return out, time.time() - start


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-onprem.yaml"])
def test_both_cluster_files_pass_rays_schema_and_keep_auth_and_the_dashboard_private(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / name).read_text())
    validate_config(prepare_config(config))
    start = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert start.count("RAY_AUTH_MODE=token") == 2 and "--dashboard-host=127.0.0.1" in start
    assert "~/.ray/auth_token" in config["file_mounts"] and config["rsync_filter"] == [".gitignore"]
    assert any("./dev.sh setup" in c for c in config["setup_commands"])
    # every line of the file that holds a key has a comment saying what it does
    lines = [line for line in (ROOT / name).read_text().splitlines()
             if line.strip() and not line.lstrip().startswith(("#", "-")) and ":" in line]
    uncommented = [line for line in lines if "#" not in line and not line.rstrip().endswith(":")]
    assert uncommented == []


def test_onprem_nodes_join_with_the_address_the_file_names_and_the_classic_autoscaler():
    config = yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())
    assert config["provider"]["type"] == "local"
    head, worker = config["head_start_ray_commands"][-1], config["worker_start_ray_commands"][-1]
    own_address = "--node-ip-address=$(echo $SSH_CONNECTION | cut -d' ' -f3)"
    assert own_address in head and own_address in worker
    assert "RAY_enable_autoscaler_v2=0" in head  # the local provider starts no worker under v2


def test_up_on_a_shipped_file_names_its_placeholders_in_one_line():
    out, _ = cli("up", "cluster-onprem.yaml")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("scs-sweep up: error: cluster-onprem.yaml still has placeholders: provider.head_ip")


def _onprem(tmp_path, **changes) -> str:
    config = yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())
    config["provider"].update(head_ip="127.0.0.9", worker_ips=["127.0.0.10"])
    config["auth"].update(ssh_user="lab", ssh_private_key=str(tmp_path / "id_ed25519"))
    config["file_mounts"]["~/.ray/auth_token"] = str(tmp_path / "auth_token")
    for key, value in changes.items():
        config[key] = value
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_up_checks_this_machine_then_each_host_one_line_each(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = _onprem(tmp_path)
    real_which = cluster_cmd.shutil.which
    monkeypatch.setattr(cluster_cmd.shutil, "which", lambda tool: None if tool == "rsync" else real_which(tool))
    with pytest.raises(UsageError, match=r"^rsync is not installed on this machine .*apt-get install rsync"):
        cluster_cmd.check(path)
    monkeypatch.setattr(cluster_cmd.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    with pytest.raises(UsageError, match=r"auth_token \(a file_mounts source .*`ray get-auth-token --generate`"):
        cluster_cmd.check(path)
    (tmp_path / "auth_token").write_text("t")
    with pytest.raises(UsageError, match=r"^no SSH key at .*id_ed25519 \(auth.ssh_private_key in .*ssh-keygen"):
        cluster_cmd.check(path)
    (tmp_path / "id_ed25519").write_text("key")
    monkeypatch.setattr(cluster_cmd, "SSH_TIMEOUT_S", 2)
    start = time.time()  # nothing listens on 127.0.0.9:22 here
    with pytest.raises(UsageError, match=r"^cannot reach SSH on 127.0.0.9:22 \(provider.head_ip in "):
        cluster_cmd.check(path)
    assert time.time() - start < 5
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="run this from the root of the scs-sweep checkout"):
        cluster_cmd.check(path)


@pytest.mark.parametrize("kind", ["a socket", "a FIFO", "a broken link", "a file this user cannot read"])
def test_up_names_what_in_the_checkout_ray_up_could_not_read(tmp_path, monkeypatch, kind):
    """`ray up` reads every file of a file_mounts folder to hash it; a socket there (a SLURM lab's slurmd, in
    CI) ended it with a traceback: `scs-sweep up` names it in one line before. A file gone between the listing
    and its reading is passed over."""
    checkout = tmp_path / "checkout"
    (checkout / "orchestrator").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    (tmp_path / "auth_token").write_text("t")
    (tmp_path / "id_ed25519").write_text("key")
    path = _onprem(tmp_path)
    monkeypatch.chdir(checkout)
    monkeypatch.setattr(cluster_cmd.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    odd = Path(".lab/spool/n1_1.0")  # gitignored or not, ray reads it; relative: a socket's path has 107 bytes
    odd.parent.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        if kind == "a socket":
            stack.enter_context(socket.socket(socket.AF_UNIX)).bind(str(odd))
        elif kind == "a FIFO":
            os.mkfifo(odd)
        elif kind == "a broken link":
            odd.symlink_to(tmp_path / "gone")
        else:  # this test runs as root, who may read anything: what the check asks is emulated
            odd.write_text("")
            monkeypatch.setattr(cluster_cmd.os, "access", lambda file, mode: Path(file).name != odd.name)
        with pytest.raises(UsageError, match=rf"^\.lab/spool/n1_1\.0 is {kind} inside this checkout \(a "
                                             rf"file_mounts source in .*cluster.yaml\), .*move it out of this checkout$"):
            cluster_cmd.check(path)
    odd.unlink()
    listed = os.walk  # a file listed, then gone before it is read
    monkeypatch.setattr(cluster_cmd.os, "walk", lambda top: [(w, d, f + ["gone.tmp"]) for w, d, f in listed(top)])
    monkeypatch.setattr(cluster_cmd, "SSH_TIMEOUT_S", 1)
    with pytest.raises(UsageError, match=r"^cannot reach SSH"):  # the next check: nothing else in the way
        cluster_cmd.check(path)


class _JobServer(BaseHTTPRequestHandler):
    jobs: list = []
    seen_auth: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.seen_auth.append(self.headers.get("Authorization"))
        body = json.dumps(self.jobs if self.path == "/api/jobs/" else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_status_with_an_address_lists_the_sweeps_jobs_with_the_token(tmp_path):
    _JobServer.jobs = [
        {"submission_id": "lab-t1", "status": "RUNNING", "entrypoint": "scs-sweep run table1 --name lab-t1",
         "start_time": 2},
        {"submission_id": "other", "status": "SUCCEEDED", "entrypoint": "python train.py", "start_time": 1}]
    server = HTTPServer(("127.0.0.1", 0), _JobServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("secret\n")
    try:
        out, _ = cli("status", "lab-t1", "--address", f"127.0.0.1:{server.server_port}", "--storage",
                     str(tmp_path / "runs"), env=dict(ENV, HOME=str(tmp_path)))
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "job lab-t1: RUNNING  scs-sweep run table1 --name lab-t1"
    assert "its trials are not in" in lines[1] and len(lines) == 2
    assert _JobServer.seen_auth == ["Bearer secret"]


def test_embedded_means_embedded_and_a_dead_address_is_one_line_in_seconds(tmp_path):
    """A cluster that died uncleanly leaves its address in Ray's current-cluster file (and maybe in
    RAY_ADDRESS); a sweep without --address must start its own Ray, and `auto` must not wait on it."""
    port = dead_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths live under it
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    env = dict(ENV, RAY_TMPDIR=str(ray_tmp))
    runs, store = tmp_path / "runs", tmp_path / "store"
    paths = ["--storage", str(runs), "--store", str(store)]
    try:
        out, seconds = cli("run", "table1", "--smoke-test", "--no-evaluate", "--name", "embedded", *paths,
                           env=dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"), timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "Connecting to existing Ray cluster" not in out.stdout + out.stderr
        assert "sweep embedded finished" in out.stdout

        checks = [(("run", "table1", "--smoke-test", "--name", "joined", "--address", "auto", *paths), env,
                   f"cannot reach a Ray cluster at 127.0.0.1:{port} (found in {ray_tmp}/ray/ray_current_cluster"),
                  (("resume", "embedded", "--address", "auto", *paths), dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"),
                   f"cannot reach a Ray cluster at 127.0.0.1:{port} (found in RAY_ADDRESS"),
                  (("status", "embedded", "--address", f"127.0.0.1:{port}", "--storage", str(runs)), env,
                   f"no Ray Job server answers at http://127.0.0.1:{port}")]
        for argv, check_env, message in checks:
            out, seconds = cli(*argv, env=check_env)
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 2 and len(lines) == 1, out.stderr
            assert lines[0].startswith(f"scs-sweep {argv[0]}: error: {message}"), lines[0]
            assert seconds < 20
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)])


def test_a_job_submitted_sweep_records_the_commit_of_the_folder_it_was_submitted_from(tmp_path, monkeypatch):
    """`ray job submit --working-dir .` runs the driver in the uploaded checkout (its .git included): the
    commit recorded is that folder's, not the one of the copy `ray up` left on the head."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git[:1] + ["init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(git + ["add", "f"], check=True)
    subprocess.run(git + ["commit", "-qm", "c"], check=True)
    submitted = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    here = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(provenance.RAY_JOB_MARK, raising=False)
    assert provenance.code_version() == here  # a sweep run from a shell: this checkout's commit
    monkeypatch.setenv(provenance.RAY_JOB_MARK, "{}")
    assert provenance.code_version() == submitted != here


def test_submit_sends_this_checkout_with_its_commit_and_the_sweeps_name_as_the_job_id(tmp_path, monkeypatch, capsys):
    """Ray's upload of the working dir leaves out .git: `scs-sweep submit` passes the commit to the driver."""
    import json as json_
    from types import SimpleNamespace

    calls = []
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(cluster_cmd, "_ray", lambda: "ray")
    monkeypatch.setattr(cluster_cmd.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or SimpleNamespace(
        returncode=0))
    monkeypatch.setattr(cluster_cmd, "checkout_commit", lambda folder: "abc1234+dirty")
    for name in FORWARDED_ENV:
        monkeypatch.delenv(name, raising=False)
    # where the trackers log goes with the Job (its driver reads it when it starts); a secret does not
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    args = SimpleNamespace(address="http://127.0.0.1:8265", submission_id="", no_wait=True,
                           sweep=["--", "run", "table1", "--name", "t1", "--storage", "s3://b/runs?x=1&y=2"])
    assert cluster_cmd.submit(args) == 0
    (cmd,) = calls
    assert cmd[:6] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--working-dir"]
    env = json_.loads(cmd[cmd.index("--runtime-env-json") + 1])
    assert env == {"env_vars": {provenance.CODE_VERSION_ENV: "abc1234+dirty",
                                "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "WANDB_MODE": "offline"}}
    assert cmd[cmd.index("--submission-id") + 1] == "t1" and "--no-wait" in cmd
    assert cmd[cmd.index("--") + 1:] == ["scs-sweep", "run", "table1", "--name", "t1", "--storage", "s3://b/runs?x=1&y=2"]
    monkeypatch.setenv(provenance.CODE_VERSION_ENV, "abc1234+dirty")
    assert provenance.code_version() == "abc1234+dirty"  # what the Job's driver records
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="run this from the root of the scs-sweep checkout"):
        cluster_cmd.submit(args)


def test_checkout_commit_says_dirty_when_tracked_files_changed(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(git + ["add", "f"], check=True)
    subprocess.run(git + ["commit", "-qm", "c"], check=True)
    clean = provenance.checkout_commit(tmp_path)
    assert clean and "+" not in clean
    (tmp_path / "untracked").write_text("y")
    assert provenance.checkout_commit(tmp_path) == clean  # untracked files (a sweep file, notes) do not count
    (tmp_path / "f").write_text("changed")
    assert provenance.checkout_commit(tmp_path) == clean + "+dirty"
    assert provenance.checkout_commit(tmp_path / "nope") == ""
