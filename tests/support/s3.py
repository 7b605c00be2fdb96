"""An S3-compatible server on a loopback address for tests: moto's server (`pip install "moto[server]"`, in
the test extra), the way Ray's own tests stand in for S3. Nothing leaves this machine: the server listens
on 127.0.0.1, and the SDK is told not to look for an instance profile (which would mean 169.254.169.254).

    with S3Server() as s3:
        uri = s3.uri("bucket/prefix")      # s3://bucket/prefix?endpoint_override=http://127.0.0.1:PORT&scheme=http
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

# what every process that talks to the server needs (moto accepts any key unless told to check them)
CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "scs-test", "AWS_SECRET_ACCESS_KEY": "scs-test-secret",
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def moto_server_command() -> list[str]:
    found = Path(sys.executable).parent / "moto_server"
    if found.exists():
        return [str(found)]
    if shutil.which("moto_server"):
        return [shutil.which("moto_server")]
    raise RuntimeError('moto_server not found: pip install "moto[server]" (the project\'s test extra has it)')


class S3Server:
    """moto_server on HOST:PORT for the life of a `with` block; `check_credentials` makes it refuse
    unknown access keys (moto's IAM checks), so that wrong credentials can be tested."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, check_credentials: bool = False, log: Path | None = None):
        self.host, self.port = host, port or free_port(host)
        self.check_credentials, self.log = check_credentials, log
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def uri(self, path: str, create_bucket: bool = False) -> str:
        extra = "&allow_bucket_creation=true" if create_bucket else ""
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http{extra}"

    def __enter__(self) -> S3Server:
        env = dict(os.environ, **CLIENT_ENV)
        if self.check_credentials:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        out = open(self.log, "w") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen([*moto_server_command(), "-H", self.host, "-p", str(self.port)], env=env,
                                     stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"moto_server did not start on {self.endpoint}") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def make_bucket(self, name: str) -> None:
        import pyarrow.fs as pafs

        fs, _ = pafs.FileSystem.from_uri(self.uri(name, create_bucket=True))
        fs.create_dir(name)
