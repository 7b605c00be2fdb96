"""The `scs-sweep` CLI in a fresh interpreter (cli_probe.py), as a user runs it: exit codes, output, and
whether a command imported ray or torch."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).resolve().parent / "cli_probe.py"
# no cluster a `ray start` left behind, no token authentication, no usage reports
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
ENV.pop("RAY_ADDRESS", None)


def cli(args, cwd=None, timeout=120, env=None):
    """One command (with `env` added to the environment); its CompletedProcess, whose stdout ends
    'IMPORTED <ray> <torch>'."""
    return subprocess.run([sys.executable, str(PROBE), "one", *args], env=dict(ENV, **(env or {})), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_many(commands: list[list[str]]):
    """Several commands in one fresh interpreter (each start costs most of a second): [(exit code, stderr
    lines)], and whether ray or torch was ever imported."""
    done = subprocess.run([sys.executable, str(PROBE), "many", json.dumps(commands)], env=ENV, capture_output=True,
                          text=True, timeout=300)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["results"], report["ray"], report["torch"]
