"""A lab of two SSH hosts on this one machine, brought up with `ray up cluster-onprem.yaml`, used the way
the README says (a sweep submitted as a Ray Job through `ray dashboard`'s tunnel) and torn down with
`ray down`; writes what it measured to WORK/lab.json.

    sudo python tests/support/onprem_lab.py WORK -- run table1 --smoke-test --data /mnt/scs/data

tests/test_onprem_cluster.py runs it with --kill-worker-after (the worker host's Ray is killed mid-sweep);
bench/onprem_quick_table1.sh runs the quick Table 1 on real CIFAR-10 with it (--data DIR). Needs root,
util-linux's unshare, openssh-server and rsync (installed with apt-get when missing).

With --s3 the lab has no shared folder at all: an S3-compatible server (moto's, on 127.0.0.3:9000, the
lab's "MinIO") holds runs, checkpoints, the store and CIFAR-10 (put there from this machine with
`scs-sweep put-data`), cluster-onprem.yaml's metadata.scs_storage names it, and each host has its own home,
/mnt/scs and /tmp (its own mount namespace; the provisioned home is copied to each, its .venv hard-linked:
it is only read after set-up). What the lab read from the bucket at the end goes into lab.json.

Isolation, so that `ray stop` and `ray down` reach only what this script started and nothing is left:
- it re-executes itself as PID 1 of a new PID and mount namespace; when it ends, all it started ends;
- inside, /tmp is a fresh tmpfs (no Ray address file or SSH socket reaches the machine's /tmp), root's
  home is WORK/home (a bind-mounted copy of /etc/passwd says so, for sshd's logins too) and /mnt/scs is
  WORK/shared, the lab's shared folder;
- each host is an sshd on its own loopback address (head 127.0.0.1, worker 127.0.0.2, port 22) running
  as PID 1 of a nested PID namespace with its own /tmp, so Ray on one host cannot see or stop the other's;
- the cluster lives in a network namespace of its own, with only a loopback interface: Ray's servers that
  listen on every interface listen on nothing else, and nothing can be sent off this machine. That
  namespace cannot reach the package registry either, so the nodes' shared home is set up first, outside
  it, with the command cluster-onprem.yaml runs (`./dev.sh setup` in ~/scs-sweep, after the same rsync);
  `ray up` then runs every set-up command again, and dev.sh finds its install done.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAD, WORKER = "127.0.0.1", "127.0.0.2"
S3_HOST, S3_PORT, BUCKET = "127.0.0.3", 9000, "scs-lab"   # the lab's S3-compatible server (--s3)
SHARED = Path("/mnt/scs")            # what cluster-onprem.yaml calls the lab's shared folder
KEEP = Path("/mnt/.lab-keep")        # where paths under /tmp wait while /tmp is replaced
DASHBOARD_PORT = 18265               # this machine's end of `ray dashboard`'s tunnel (8265 is the head's own)
# Ray's daemons and workers, as `ray stop` finds them
RAY_PROCESS_MARKS = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard.py", "monitor.py",
                     "log_monitor.py", "runtime_env/agent", "dashboard/agent.py", "ray_client_server")


class LabError(RuntimeError):
    """A step of the lab failed; the message says which and where its log is."""


# ----------------------------------------------------------------------------------------------- set-up
def ensure_packages() -> None:
    """sshd and rsync from apt when missing (CI runs as root on a machine like this one)."""
    missing = [pkg for pkg, tool in (("openssh-server", "/usr/sbin/sshd"), ("rsync", "rsync"),
                                     ("openssh-client", "ssh"), ("iproute2", "ip"))
               if not shutil.which(tool)]
    if not missing:
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from support.packages import apt_install

    try:
        apt_install(missing)
    except RuntimeError as exc:
        raise LabError(str(exc)) from None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def private_tmp(keep: list[Path]) -> None:
    """A fresh tmpfs over /tmp in this mount namespace; the paths in `keep` under /tmp stay where they are."""
    stashes = {path: KEEP / str(path).strip("/").replace("/", "_") for path in keep
               if path.is_relative_to("/tmp")}
    for path, stash in stashes.items():
        if not stash.exists():  # the lab's own namespace stashes; the hosts' reuse its stash
            stash.mkdir(parents=True)
            _mount("--bind", str(path), str(stash))
    _mount("-t", "tmpfs", "-o", "mode=1777", "labtmp", "/tmp")
    for path, stash in stashes.items():
        path.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(stash), str(path))


def isolate(work: Path, data: Path | None, shared: bool = True) -> None:
    """Inside the lab's namespace: private mounts, /mnt/scs (the shared folder, unless the lab uses S3),
    root's home in WORK/home, a fresh /tmp."""
    _mount("--make-rprivate", "/")
    _mount("-t", "tmpfs", "labmnt", "/mnt")
    SHARED.mkdir()
    if shared:
        _mount("--bind", str(work / "shared"), str(SHARED))
    if data and shared:
        (SHARED / "data").mkdir(exist_ok=True)
        _mount("--bind", "-o", "ro", str(data), str(SHARED / "data"))
    passwd = work / "passwd"
    passwd.write_text("".join(
        ":".join(f[:5] + [str(work / "home")] + f[6:]) + "\n" if f[0] == "root" else line + "\n"
        for line in Path("/etc/passwd").read_text().splitlines() for f in [line.split(":")]))
    _mount("--bind", str(passwd), "/etc/passwd")
    private_tmp([work, ROOT] + ([data] if data and not shared else []))  # --s3: put into the bucket from here
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder


def make_home(home: Path, real_home: Path) -> Path:
    """The SSH user's home, shared by every host (as an NFS home would be): key, shell, pip settings."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = ssh / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (ssh / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
    # the hosts' python3 is this machine's (the one .venv was made from), as a node's would be on its PATH
    base_python = Path(sys.base_prefix) / "bin"
    (home / ".bashrc").write_text(f'export PATH="{base_python}:$PATH"\n')
    (home / ".profile").write_text(". ~/.bashrc\n")
    pip_conf = real_home / ".config/pip/pip.conf"
    if pip_conf.exists():  # this machine's pip settings (its local wheel folder) hold on its hosts too
        (home / ".config/pip").mkdir(parents=True)
        shutil.copy(pip_conf, home / ".config/pip/pip.conf")
    (home / ".ray").mkdir()
    (home / ".ray/config.json").write_text('{"usage_stats": false}')  # nothing leaves the machine
    return key


def provision(home: Path, logs: Path) -> float:
    """The nodes' shared home gets this checkout and its .venv exactly as cluster-onprem.yaml's file_mounts
    and `./dev.sh setup` make them (while the package registry can still be reached)."""
    start = time.time()
    dest = home / "scs-sweep"
    subprocess.run(["rsync", "-a", "--filter", "dir-merge,- .gitignore", f"{ROOT}/", f"{dest}/"], check=True)
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # a login's
    with open(logs / "provision.log", "w") as log:
        done = subprocess.run(["bash", "--login", "-c", "cd ~/scs-sweep && ./dev.sh setup"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise LabError(f"./dev.sh setup in the nodes' home failed; see {logs / 'provision.log'}")
    return time.time() - start


def private_homes(work: Path, ips: list[str]) -> None:
    """Each host's own copy of the provisioned home (and an empty /mnt/scs of its own); the .venv hard-linked."""
    for ip in ips:
        own = work / "hosts" / ip
        (own / "mnt-scs").mkdir(parents=True, exist_ok=True)
        subprocess.run(["rsync", "-a", "--exclude", "/scs-sweep/.venv", f"{work / 'home'}/", f"{own / 'home'}/"],
                       check=True)
        subprocess.run(["cp", "-al", str(work / "home/scs-sweep/.venv"), str(own / "home/scs-sweep/.venv")],
                       check=True)


def start_s3(logs: Path):
    """The lab's S3-compatible server on S3_HOST:S3_PORT (in the lab's network namespace), with its bucket."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.s3 import CLIENT_ENV, S3Server

    os.environ.update(CLIENT_ENV)
    subprocess.run(["ip", "addr", "add", f"{S3_HOST}/8", "dev", "lo"], capture_output=True)  # lo has it already
    server = S3Server(S3_HOST, S3_PORT, log=logs / "s3.log").__enter__()
    server.make_bucket(BUCKET)
    return server


def s3_uri(path: str) -> str:
    return f"s3://{BUCKET}/{path}?endpoint_override=http://{S3_HOST}:{S3_PORT}&scheme=http"


def bucket_histories(name: str) -> dict:
    """trial_histories of the sweep's runs in the bucket (a mirror of its small files, refreshed)."""
    from common.locations import Location
    from orchestrator.storage import mirror

    where = Location(s3_uri(f"runs/{name}"))
    return trial_histories(mirror(where.fs, where.path, Path("/tmp/lab-bucket-mirror") / name))


def bucket_checkpointed(name: str, trial_id: str) -> bool:
    from common.locations import Location

    return any(trial_id in i.path and i.base_name == "trainer.pt" for i in Location(s3_uri(f"runs/{name}")).files())


def bucket_contents(name: str) -> dict:
    """What the bucket holds at the end: files by kind, and the store's rows."""
    from collections import Counter

    from common.locations import Location
    from results.store import ParquetStore

    kinds = Counter()
    for info in Location(s3_uri("")).files():
        path = info.path.split("/", 1)[1]
        top = path.split("/", 1)[0]
        kind = "checkpoints" if info.base_name == "trainer.pt" else "tensorboard" if \
            info.base_name.startswith("events.out.tfevents") else \
            ("compacted" if "/compacted-" in path else ("trial files" if "/experiment=" in path else info.base_name))
        kinds[f"{top}: {kind}"] += 1
    store = ParquetStore(s3_uri("store"))
    trials = store.read_table("trials", experiment=name, columns=["trial_id", "status", "node_ip", "code_version",
                                                                  "epochs_done"]).to_pylist()
    epochs = store.read_table("epochs", experiment=name, columns=["trial_id", "epoch"]).to_pylist()
    return {"files": dict(sorted(kinds.items())), "trials": trials,
            "epoch_keys": sorted([r["trial_id"], r["epoch"]] for r in epochs)}


def own_network() -> None:
    """From here on this process and all it starts have a network namespace with loopback only."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise LabError(f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def host_main(ip: str, work: Path) -> int:
    """PID 1 of one host's namespace: its own /tmp (and with --s3 its own home and /mnt/scs), then sshd on
    IP:22; reaps orphans until sshd ends."""
    private_tmp([work])
    own = work / "hosts" / ip
    if own.is_dir():  # --s3: nothing of this host's is on a disk another host sees
        _mount("--bind", str(own / "home"), str(work / "home"))
        _mount("--bind", str(own / "mnt-scs"), str(SHARED))
    conf = work / "sshd" / f"{ip}.conf"
    log = open(work / "logs" / f"sshd-{ip}.log", "w")
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], stdout=log, stderr=log)
    while True:  # Ray daemonizes: its processes end up as children of PID 1
        pid, status = os.wait()
        if pid == sshd.pid:
            return os.waitstatus_to_exitcode(status)


def write_sshd_config(work: Path, ip: str) -> None:
    folder = work / "sshd"
    folder.mkdir(exist_ok=True)
    if not (folder / "host_ed25519").exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_ed25519")],
                       check=True)
    (folder / f"{ip}.conf").write_text("\n".join([
        f"ListenAddress {ip}:22", f"HostKey {folder / 'host_ed25519'}", f"PidFile {folder / ip}.pid",
        "AuthorizedKeysFile .ssh/authorized_keys", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "AllowUsers root", "PrintMotd no", "MaxStartups 100", "MaxSessions 100",
        "Subsystem sftp internal-sftp", ""]))


def wait_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise LabError(f"nothing answers on {host}:{port} after {timeout_s:.0f} s") from None
            time.sleep(0.2)


# --------------------------------------------------------------------------------------------- the lab
class Lab:
    def __init__(self, work: Path, env: dict):
        self.work, self.env, self.logs = work, env, work / "logs"
        self.config = work / "cluster.yaml"
        self.report: dict = {"steps": {}}
        self.hosts: dict[str, subprocess.Popen] = {}

    def sh(self, step: str, cmd: list[str], timeout_s: float, check: bool = True) -> str:
        """Run one command from this machine (the user's laptop) with its output in logs/STEP.log."""
        start = time.time()
        log = self.logs / f"{step}.log"
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
            out, rc = done.stdout, done.returncode
        except subprocess.TimeoutExpired as exc:
            out, rc = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
                else (exc.stdout or ""), "timeout"
        log.write_text(f"$ {shlex.join(cmd)}\n{out}")
        self.report["steps"][step] = {"seconds": round(time.time() - start, 1), "rc": rc}
        if check and rc != 0:  # the log's last lines too: a CI machine's lab folder is gone when it is read
            tail = "\n".join(out.strip().splitlines()[-25:])
            raise LabError(f"{step}: `{shlex.join(cmd)}` ended with {rc}; see {log}; its last lines:\n{tail}")
        return out

    def start_host(self, ip: str) -> None:
        write_sshd_config(self.work, ip)
        self.hosts[ip] = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, __file__,
             "--host", ip, str(self.work)], env=self.env)
        wait_port(ip, 22, 20)

    def write_config(self, s3: bool = False) -> dict:
        """cluster-onprem.yaml as shipped, with this lab's hosts and user in place of the YOUR-... values (and
        with --s3 its storage keys filled in with the lab's S3 server)."""
        import yaml

        config = yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())
        config["provider"].update(head_ip=HEAD, worker_ips=[WORKER])
        config["auth"]["ssh_user"] = "root"
        if s3:
            config["metadata"]["scs_storage"].update(
                runs=f"s3://{BUCKET}/runs", store=f"s3://{BUCKET}/store", data=f"s3://{BUCKET}/data",
                s3_endpoint=f"http://{S3_HOST}:{S3_PORT}", s3_access_key=os.environ["AWS_ACCESS_KEY_ID"],
                s3_secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], s3_region=os.environ["AWS_DEFAULT_REGION"])
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        return config

    def alive_node_ips(self) -> list[str]:
        out = self.sh("nodes", ["ray", "exec", str(self.config),
                                "ray list nodes --filter state=ALIVE --format json"], 120, check=False)
        for line in out.splitlines():  # the JSON list, among ray exec's own lines and Ray's warnings
            if line.startswith("[{"):
                return sorted(node["node_ip"] for node in json.loads(line))
        return []

    def wait_nodes(self, want: list[str], timeout_s: float) -> float:
        start = time.time()
        while (ips := self.alive_node_ips()) != sorted(want):
            if time.time() - start > timeout_s:
                raise LabError(f"nodes alive after {timeout_s:.0f} s: {ips or 'none'}; want {want}; "
                               f"see {self.logs}/nodes.log and the head's ray logs in {self.work}/home")
            time.sleep(3)
        return time.time() - start

    def job_api(self, path: str) -> dict:
        token = (self.work / "home/.ray/auth_token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{DASHBOARD_PORT}{path}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def kill_worker_ray(self) -> None:
        """`ray stop --force` on the worker host: SIGKILL to every Ray process there, as a crash would."""
        key = self.work / "home/.ssh/id_ed25519"
        self.sh("kill_worker", ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no",
                                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"root@{WORKER}",
                                "~/scs-sweep/.venv/bin/ray stop --force"], 60)

    def ray_processes(self) -> list[str]:
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if any(mark in cmdline for mark in RAY_PROCESS_MARKS):
                    found.append(f"{proc.name} {cmdline[:120]}")
        return found

    def stop_hosts(self) -> None:
        for proc in self.hosts.values():
            proc.kill()  # unshare ignores SIGTERM; --kill-child takes the host's PID 1, so its namespace
        for proc in self.hosts.values():
            proc.wait(timeout=30)


def trial_histories(runs: Path) -> dict[str, list[tuple[int, str, str]]]:
    """trial_id -> [(epoch, node_ip, node_id) of every report in its result.json, in order]."""
    out = {}
    for result in runs.rglob("result.json"):
        rows, trial_id = [], ""
        for line in result.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line being written
                continue
            trial_id = trial_id or row.get("trial_id", "")
            if "epoch" in row:
                rows.append((row["epoch"], row.get("node_ip", "?"), row.get("node_id", "?")))
        if rows and trial_id:  # a result.json being created reads empty
            out[trial_id] = rows
    return out


def checkpointed(runs: Path, trial_id: str) -> bool:
    return any(runs.rglob(f"*{trial_id}*/checkpoint_*/trainer.pt"))


def run_lab(args) -> int:
    work = args.work
    work.joinpath("logs").mkdir(parents=True, exist_ok=True)
    (work / "shared").mkdir(exist_ok=True)
    isolate(work, args.data, shared=not args.s3)
    make_home(work / "home", Path(os.environ.get("HOME", "/root")))
    env = dict(os.environ, HOME=str(work / "home"), RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="token", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    lab = Lab(work, env)
    report, start = lab.report, time.time()
    name = args.name
    try:
        report["provision_s"] = round(provision(work / "home", lab.logs), 1)
        if args.s3:
            private_homes(work, [HEAD, WORKER])
        own_network()
        if args.s3:
            s3_server = start_s3(lab.logs)
            env.update({k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                                  "AWS_EC2_METADATA_DISABLED")})
            if args.data:  # CIFAR-10 into the bucket from this machine: no host has a copy of its own
                lab.sh("put_data", ["scs-sweep", "put-data", "--from", str(args.data), "--data", s3_uri("data")], 120)
        for ip in (HEAD, WORKER):
            lab.start_host(ip)
        lab.sh("token", ["ray", "get-auth-token", "--generate"], 60)
        lab.write_config(s3=args.s3)
        lab.sh("up", ["scs-sweep", "up", str(lab.config), "--yes"], args.timeout)
        report["ray_up_s"] = report["steps"]["up"]["seconds"]
        report["nodes_alive_after_up_s"] = round(lab.wait_nodes([HEAD, WORKER], 300), 1)
        tunnel = subprocess.Popen(["ray", "dashboard", str(lab.config), "--port", str(DASHBOARD_PORT)],
                                  cwd=ROOT, env=env, stdout=open(lab.logs / "dashboard.log", "w"),
                                  stderr=subprocess.STDOUT)
        try:
            wait_port("127.0.0.1", DASHBOARD_PORT, 60)
            address = f"http://127.0.0.1:{DASHBOARD_PORT}"
            sweep_started = time.time()
            lab.sh("submit", ["scs-sweep", "submit", "--address", address, "--no-wait", "--", *args.sweep,
                              "--name", name], 300)
            follow = subprocess.Popen(["ray", "job", "logs", "--address", address, "--follow", name],
                                      cwd=ROOT, env=env, stdout=open(lab.logs / "job.log", "w"),
                                      stderr=subprocess.STDOUT)
            runs, killed = SHARED / "runs" / name, None
            histories_now = (lambda: bucket_histories(name)) if args.s3 else (lambda: trial_histories(runs))
            saved = (lambda t: bucket_checkpointed(name, t)) if args.s3 else (lambda t: checkpointed(runs, t))
            deadline = time.time() + args.timeout
            while follow.poll() is None and time.time() < deadline:
                if args.kill_worker_after and killed is None:
                    histories = histories_now()
                    on_worker = {t: h for t, h in histories.items() if h[-1][1] == WORKER}
                    ready = [t for t, h in on_worker.items() if len(h) >= args.kill_worker_after and saved(t)]
                    if ready:
                        lab.kill_worker_ray()
                        killed = {"at_s": round(time.time() - sweep_started, 1),
                                  "trials": {t: h[-1][0] for t, h in histories_now().items()
                                             if h[-1][1] == WORKER}}
                        report["killed_worker"] = killed
                time.sleep(1)
            if follow.poll() is None:
                follow.kill()
                raise LabError(f"the job did not end within {args.timeout} s; see {lab.logs}/job.log")
            report["sweep_wall_s"] = round(time.time() - sweep_started, 1)
            report["job"] = {k: v for k, v in lab.job_api(f"/api/jobs/{name}").items()
                             if k in ("status", "message", "entrypoint", "submission_id")}
            report["trial_histories"] = histories_now()
            reports = "~/reports" if args.s3 else "/mnt/scs/reports"  # with --s3: the head's own disk
            for step, cmd in (("status", f"scs-sweep status {name}"),
                              ("tables", f"scs-sweep tables --experiment {name}"),
                              ("report", f"scs-sweep report --experiment {name} --out {reports}/{name}")):
                report[step] = lab.sh(step, ["ray", "exec", str(lab.config), cmd], 300, check=False)
            report["nodes_alive_at_end"] = lab.alive_node_ips()
            # from this machine: the Job through the tunnel, the trials from the shared folder it mounts (or
            # from the bucket)
            report["status_here"] = lab.sh("status_here", ["scs-sweep", "status", name, "--address", address,
                                                          "--storage", s3_uri("runs") if args.s3 else
                                                          str(SHARED / "runs")], 60, check=False)
            if args.s3:
                report["bucket"] = bucket_contents(name)
        finally:
            tunnel.terminate()
        lab.sh("down", ["scs-sweep", "down", str(lab.config), "--yes"], 300)
        report["ray_down_s"] = report["steps"]["down"]["seconds"]
        report["ray_processes_after_down"] = lab.ray_processes()
    except Exception as exc:  # noqa: BLE001 - whatever failed, the lab still tears down what came up
        report["error"] = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        if "down" not in report["steps"] and lab.config.exists():  # still tear down what came up
            lab.sh("down", ["scs-sweep", "down", str(lab.config), "--yes"], 300, check=False)
    finally:
        lab.stop_hosts()
        if args.s3 and "s3_server" in locals():
            s3_server.__exit__(None, None, None)
        for _ in range(50):  # the kernel ends a namespace's processes once its PID 1 is gone
            left = lab.ray_processes() + [p for p in _processes() if "sshd" in p]
            if not left:
                break
            time.sleep(0.2)
        report["processes_after_hosts_stopped"] = left
        report["wall_s"] = round(time.time() - start, 1)
        (work / "lab.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("trial_histories", "status", "tables",
                                                                     "report")}, indent=1))
    return 1 if "error" in report else 0


def _processes() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                out.append(f"{proc.name} " + (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path, help="an empty folder for the lab's files (kept: logs, runs, store)")
    p.add_argument("--name", default="onprem", help="the sweep's name and the Job's submission id")
    p.add_argument("--data", type=Path, default=None, help="a CIFAR-10 folder, seen by every node as "
                   "/mnt/scs/data (read-only); with --s3, put into the bucket's data/ from this machine")
    p.add_argument("--s3", action="store_true", help="no shared folder: runs, store and data on an S3 server of the "
                   "lab; each host with its own home, /mnt/scs and /tmp")
    p.add_argument("--kill-worker-after", type=int, default=0, metavar="EPOCHS",
                   help="kill the worker host's Ray once a trial there has reported this many epochs")
    p.add_argument("--timeout", type=float, default=900, help="seconds for `ray up`, and for the sweep")
    p.add_argument("--host", default="", help=argparse.SUPPRESS)  # internal: be one host's PID 1
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: the Job's scs-sweep arguments
    args = p.parse_args(argv[:cut])
    args.sweep = argv[cut + 1:] or ["run", "table1", "--smoke-test"]
    args.work = args.work.resolve()
    if args.host:
        return host_main(args.host, args.work)
    if os.environ.get("SCS_LAB_INSIDE") != "1":  # enter the lab's own PID and mount namespace
        if os.geteuid() != 0:
            raise SystemExit("onprem_lab: needs root (mount namespaces, sshd on port 22)")
        if not shutil.which("unshare"):
            raise SystemExit("onprem_lab: needs util-linux's unshare")
        ensure_packages()
        args.work.mkdir(parents=True, exist_ok=True)
        cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, __file__, *argv]
        return subprocess.run(cmd, env=dict(os.environ, SCS_LAB_INSIDE="1")).returncode
    if args.data:
        args.data = args.data.resolve()
    return run_lab(args)


if __name__ == "__main__":
    raise SystemExit(main())
