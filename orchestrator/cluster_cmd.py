"""Cluster commands: `scs-sweep up` (check, then `ray up`), `scs-sweep down`, `scs-sweep submit` (a sweep as a Ray
Job, with its commit), and a sweep's Ray Jobs.

`ray up` on a machine without rsync, without the SSH key, or with a host that refuses the key fails with a
traceback or a hang; these checks say the one thing to fix in one line each, before anything starts.
Imports neither torch nor ray: it runs the `ray` command, and reads the Job server's REST API.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from common.errors import first_line

from .errors import UsageError
from .provenance import CODE_VERSION_ENV, checkout_commit
from .trackers import forwarded_env

PLACEHOLDER = "YOUR-"      # how cluster-onprem.yaml and cluster.yaml mark the values a user must fill in
AUTH_TOKEN = "~/.ray/auth_token"
SSH_TIMEOUT_S = 10
# the storage settings of a cluster file (metadata.scs_storage), written by `scs-sweep up` into this file,
# which the file's file_mounts copy to every node and its setup commands append to ~/.scs-sweep.env
STORAGE_ENV_DIR = ".scs-cluster"
STORAGE_ENV_TARGET = "~/.scs-sweep-storage.env"
STORAGE_KEYS = {"runs": "SCS_RUNS", "store": "SCS_STORE", "data": "SCS_DATA", "s3_access_key": "AWS_ACCESS_KEY_ID",
                "s3_secret_key": "AWS_SECRET_ACCESS_KEY", "s3_region": "AWS_DEFAULT_REGION", "efs": "SCS_EFS"}


def load_config(path: str) -> dict:
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read cluster file {path}: {first_line(exc)}") from None
    if not isinstance(config, dict) or "provider" not in config:
        raise UsageError(f"{path} is not a Ray cluster file (no provider:)")
    return config


def placeholders(value, where: str = "") -> list[str]:
    """Every 'key = value' of the config whose value still holds a YOUR-... placeholder."""
    if isinstance(value, dict):
        return [hit for key, item in value.items() for hit in placeholders(item, f"{where}.{key}".lstrip("."))]
    if isinstance(value, list):
        return [hit for item in value for hit in placeholders(item, where)]
    return [f"{where} = {value}"] if isinstance(value, str) and PLACEHOLDER in value else []


def storage_settings(config: dict, path: str) -> dict:
    """metadata.scs_storage of a cluster file: where runs, the store and CIFAR-10 live (UsageError if absent)."""
    settings = (config.get("metadata") or {}).get("scs_storage")
    if not isinstance(settings, dict) or not all(settings.get(k) for k in ("runs", "store", "data")):
        raise UsageError(f"{path} has no metadata.scs_storage with runs, store and data: copy that section from "
                         f"the cluster file this project ships")
    return settings


def storage_locations(settings: dict) -> dict[str, str]:
    """SCS_RUNS / SCS_STORE / SCS_DATA as every node sees them: an s3:// place gets the lab server's endpoint
    (s3_endpoint) as pyarrow's endpoint_override."""
    endpoint = str(settings.get("s3_endpoint") or "")
    out = {}
    for key in ("runs", "store", "data"):
        value = str(settings[key])
        if value.startswith("s3://") and endpoint and "endpoint_override=" not in value:
            scheme = endpoint.split("://", 1)[0] if "://" in endpoint else "https"
            value += ("&" if "?" in value else "?") + f"endpoint_override={endpoint}&scheme={scheme}"
        out[STORAGE_KEYS[key]] = value
    return out


def credential_env(settings: dict) -> dict[str, str]:
    """The AWS SDK's variables for the file's S3 credentials and region."""
    env = {STORAGE_KEYS[k]: str(settings[k]) for k in ("s3_access_key", "s3_secret_key", "s3_region")
           if settings.get(k)}
    if settings.get("s3_endpoint"):  # a lab server: no instance profile to ask for (which would mean 169.254.x)
        env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def storage_env(settings: dict) -> str:
    """The lines of the env file every node sources: where things live and, for S3, the credentials."""
    values = {**storage_locations(settings), **credential_env(settings)}
    if settings.get("efs"):
        values[STORAGE_KEYS["efs"]] = str(settings["efs"])
    return "# written by `scs-sweep up` from metadata.scs_storage of the cluster file\n" + \
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def write_storage_env(config: dict, path: str) -> Path:
    """The file_mounts source of ~/.scs-sweep-storage.env (.scs-cluster/NAME.env), written from the file's
    metadata.scs_storage, mode 600: it may hold a secret."""
    settings = storage_settings(config, path)
    source = (config.get("file_mounts") or {}).get(STORAGE_ENV_TARGET, "")
    if not source or Path(source).parts[:1] != (STORAGE_ENV_DIR,):
        raise UsageError(f"{path}: file_mounts must copy {STORAGE_ENV_DIR}/NAME.env to {STORAGE_ENV_TARGET} (the "
                         f"storage settings every node reads); copy that line from the cluster file this project ships")
    target = Path(source)
    target.parent.mkdir(exist_ok=True)
    target.touch(mode=0o600)
    target.chmod(0o600)
    target.write_text(storage_env(settings))
    return target


@contextmanager
def _environ(values: dict[str, str]):
    """os.environ with `values` set, restored as it was afterwards (variables added are removed again)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_storage(config: dict, path: str) -> None:
    """Each s3:// place of the file takes a write from this machine, with the file's credentials: one line
    naming the key and what to set, before `ray up` (places on a shared folder are the nodes' to check).
    Without credentials in the file (an instance profile on the nodes) there is nothing to check here."""
    from common.locations import Location, LocationError  # pyarrow: only for `up`

    settings = storage_settings(config, path)
    if not settings.get("s3_access_key"):
        return
    with _environ(credential_env(settings)):
        for key, uri in storage_locations(settings).items():
            if uri.startswith("s3://"):
                try:
                    Location(uri).check_writable(f"metadata.scs_storage ({key})")
                except LocationError as exc:
                    raise UsageError(f"{path}: {exc}") from None


def hosts(config: dict) -> list[tuple[str, str]]:
    """(key, address) of every host a local-provider file names."""
    provider = config["provider"]
    return [("provider.head_ip", provider.get("head_ip", ""))] + \
        [("provider.worker_ips", ip) for ip in provider.get("worker_ips") or []]


def _ssh_key(config: dict) -> Path:
    """The key `ray up` logs in with: auth.ssh_private_key, else ssh's default."""
    return Path((config.get("auth") or {}).get("ssh_private_key", "~/.ssh/id_rsa")).expanduser()


def _ssh(config: dict, host: str, command: str) -> list[str]:
    """ssh as `ray up` logs in to a host of the file (its user and key), never prompting and keeping no
    known_hosts entry; runs `command` there."""
    user = (config.get("auth") or {}).get("ssh_user", "")
    return ["ssh", "-i", str(_ssh_key(config)), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT_S}",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            f"{user}@{host}", command]


def _ssh_login(config: dict, host: str) -> str:
    """'' when the host accepts the file's user and key; else ssh's own last line."""
    try:
        done = subprocess.run(_ssh(config, host, "true"), capture_output=True, text=True, timeout=SSH_TIMEOUT_S + 5)
    except subprocess.TimeoutExpired:
        return "no answer"
    lines = done.stderr.strip().splitlines()
    return "" if done.returncode == 0 else (lines[-1] if lines else f"exit code {done.returncode}")


def _not_a_file(folder: Path) -> tuple[Path, str] | None:
    """The first thing under `folder` that `ray up` cannot read as a file, and what it is. `ray up` reads every
    file under a file_mounts folder to hash it, .gitignore'd ones too (rsync_filter only steers the copy;
    ray.autoscaler._private.util.hash_runtime_conf): a socket, a broken link or a file it may not read ends it
    with a traceback (seen with a SLURM test lab's slurmd sockets inside the checkout), and a FIFO leaves it
    waiting for a writer for ever. None for a file (os.walk lists folders only)."""
    for where, _, names in os.walk(folder):
        for name in names:
            file = Path(where) / name
            try:
                mode = file.stat().st_mode
            except FileNotFoundError:
                if file.is_symlink():
                    return file, "a broken link"
                continue  # gone since it was listed (a temporary file): not there for `ray up` either
            except OSError as exc:
                return file, f"a file that cannot be read ({exc.strerror})"
            if not stat.S_ISREG(mode):
                return file, "a socket" if stat.S_ISSOCK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
                    "not a file"
            if not os.access(file, os.R_OK):
                return file, "a file this user cannot read"
    return None


def check(path: str) -> dict:
    """Raise a UsageError naming the first thing `ray up PATH` would trip over; return the config."""
    config = load_config(path)
    left = placeholders(config)
    if left:
        raise UsageError(f"{path} still has placeholders: {'; '.join(left[:4])}; put your own values there")
    for tool, why in (("rsync", "`ray up` copies this checkout to every node with it"), ("ssh", "`ray up` "
                      "logs in to every node with it")):
        if not shutil.which(tool):
            raise UsageError(f"{tool} is not installed on this machine ({why}): sudo apt-get install {tool} "
                             f"(macOS: brew install {tool})")
    mounts = config.get("file_mounts") or {}
    if "." in mounts.values() and not (Path("pyproject.toml").exists() and Path("orchestrator").is_dir()):
        raise UsageError(f"run this from the root of the scs-sweep checkout: {path} copies '.' to every node")
    for target, source in mounts.items():
        if Path(source).parts[:1] == (STORAGE_ENV_DIR,):  # written by `up` once the checks pass
            continue
        local = Path(source).expanduser()
        if not local.exists():
            make = "make it with `ray get-auth-token --generate`" if AUTH_TOKEN in (target, source) else \
                "create it"
            raise UsageError(f"{source} (a file_mounts source in {path}) does not exist: {make}")
        found = _not_a_file(local)
        if found:
            folder = "this checkout" if source == "." else source
            raise UsageError(f"{found[0]} is {found[1]} inside {folder} (a file_mounts source in {path}), which "
                             f"`ray up` would fail to read (it reads every file there, ignored ones too): move it "
                             f"out of {folder}")
    auth = config.get("auth") or {}
    key = _ssh_key(config)
    if "ssh_private_key" in auth and not key.is_file():
        raise UsageError(f"no SSH key at {key} (auth.ssh_private_key in {path}): make one with "
                         f"`ssh-keygen -t ed25519 -f {key}` and copy it to every node with `ssh-copy-id -i {key} "
                         f"USER@HOST`")
    if config["provider"].get("type") == "local":
        user = auth.get("ssh_user", "")
        for where, host in hosts(config):
            if not host:
                raise UsageError(f"{where} in {path} is empty: give the host's address")
            try:
                socket.create_connection((host, 22), timeout=SSH_TIMEOUT_S).close()
            except OSError as exc:
                raise UsageError(f"cannot reach SSH on {host}:22 ({where} in {path}): {exc}") from None
            refused = _ssh_login(config, host)
            if refused:
                raise UsageError(f"{user}@{host} does not accept the key {key} ({refused}): "
                                 f"`ssh-copy-id -i {key} {user}@{host}`")
    return config


def _ray() -> str:
    """The `ray` command of this environment (beside the running scs-sweep), else the one on PATH."""
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


def up(args) -> int:
    config = check(args.config)
    check_storage(config, args.config)
    write_storage_env(config, args.config)
    hosts_line = ", ".join(host for _, host in hosts(config)) if config["provider"].get("type") == "local" \
        else config["provider"].get("type", "?")
    print(f"{args.config}: checks passed ({hosts_line}); running ray up", flush=True)
    return subprocess.run([_ray(), "up", args.config, *(["-y"] if args.yes else [])]).returncode


def job_server(address: str) -> str:
    """The URL of a cluster's Ray Job server, as `ray job --address` takes it (`auto`: $RAY_ADDRESS when it
    is a URL, else the dashboard's default port here, where `ray dashboard CONFIG` tunnels it)."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        address = address if address.startswith("http") else "http://127.0.0.1:8265"
    return address.rstrip("/") if "://" in address else f"http://{address.rstrip('/')}"


def _auth_header() -> dict:
    """Token authentication: the token Ray's own clients send (RAY_AUTH_TOKEN, its path, ~/.ray/auth_token)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "")
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def sweep_jobs(address: str, name: str = "", timeout_s: float = 5.0) -> list[dict]:
    """The Ray Jobs of a sweep (its name is the submission id or a word of the entrypoint); all
    scs-sweep Jobs without a name. A server that does not answer is one UsageError within seconds."""
    url = job_server(address)
    request = urllib.request.Request(f"{url}/api/jobs/", headers=_auth_header())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            jobs = json.loads(answer.read())
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise UsageError(f"no Ray Job server answers at {url} ({getattr(exc, 'reason', exc)}); open the tunnel "
                         f"with `ray dashboard CONFIG` (then --address http://127.0.0.1:8265), or drop "
                         f"--address") from None
    def of_sweep(job: dict) -> bool:
        entrypoint = job.get("entrypoint") or ""
        return job.get("submission_id") == name or name in entrypoint.split() if name else \
            "scs-sweep" in entrypoint

    return sorted(filter(of_sweep, jobs), key=lambda job: job.get("start_time") or 0)


def down(args) -> int:
    """`ray down`, then, for your own machines, `ray stop` on every worker host: Ray's local provider
    stops Ray on the head only, and a worker's raylet would keep its GPUs until it gives up on the head."""
    config = load_config(args.config)
    rc = subprocess.run([_ray(), "down", args.config, *(["-y"] if args.yes else [])]).returncode
    if config["provider"].get("type") != "local":
        return rc
    for _, host in hosts(config)[1:]:  # after the head: no autoscaler left to restart them
        try:
            done = subprocess.run(_ssh(config, host, "bash -lc '. ~/.scs-sweep.env 2>/dev/null; ray stop'"),
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            print(f"{host}: ray stop: no answer in 120 s; stop Ray there by hand (`ray stop`)")
            rc = rc or 1
            continue
        lines = (done.stdout + done.stderr).strip().splitlines()
        print(f"{host}: ray stop: {lines[-1] if lines else f'exit code {done.returncode}'}")
        rc = rc or done.returncode
    return rc


def _option(argv: list, flag: str) -> str:
    """The value of `flag` in an argument list ('' if absent): `--name x` or `--name=x`."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return ""


def submit(args) -> int:
    """`ray job submit` of `scs-sweep ARGS` with this checkout as the working dir, the sweep's --name as the
    submission id (so `status NAME --address` finds it), and the checkout's commit passed to the driver."""
    if not (Path("pyproject.toml").exists() and Path("orchestrator").is_dir()):
        raise UsageError("run this from the root of the scs-sweep checkout: its folder is what the Job runs")
    sweep = args.sweep[1:] if args.sweep[:1] == ["--"] else args.sweep
    if not sweep:
        raise UsageError("give the scs-sweep command to run after --, e.g. "
                         "`scs-sweep submit -- run table1 --name t1`")
    commit = checkout_commit(Path.cwd())
    # the commit (Ray's upload leaves out .git) and where the trackers log, as this shell has them
    env_vars = {**forwarded_env(), **({CODE_VERSION_ENV: commit} if commit else {})}
    runtime_env = {"env_vars": env_vars} if env_vars else {}
    name = args.submission_id or _option(sweep, "--name")
    cmd = [_ray(), "job", "submit", "--address", job_server(args.address), "--working-dir", "."]
    if runtime_env:
        cmd += ["--runtime-env-json", json.dumps(runtime_env)]
    if name:
        cmd += ["--submission-id", name]
    if args.no_wait:
        cmd.append("--no-wait")
    print(f"submitting `scs-sweep {' '.join(sweep)}` to {job_server(args.address)} as a Ray Job"
          + (f" {name}" if name else "") + f" (code {commit or 'not a git checkout'})", flush=True)
    # each argument as it is: `ray job submit` quotes them for the shell the Job runs its entrypoint in (a URI's
    # ?...&... stays one argument)
    return subprocess.run([*cmd, "--", "scs-sweep", *sweep]).returncode

