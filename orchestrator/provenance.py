"""Which code a sweep runs, and where its driver runs: the commit every row records, and whether this process
is a Ray Job's driver. Plain Python (git as a subprocess): the CLI, the tuner and `submit` share it.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["RAY_JOB_MARK", "CODE_VERSION_ENV", "head_commit", "checkout_commit", "code_version", "in_ray_job"]

# Set by Ray's Job supervisor in the driver it starts: this process is a Ray Job's entrypoint.
RAY_JOB_MARK = "RAY_JOB_CONFIG_JSON_ENV_VAR"
# The commit a Job's code comes from, set by `scs-sweep submit`: Ray's upload of the working dir leaves out
# .git, so the driver cannot ask git (code_version).
CODE_VERSION_ENV = "SCS_CODE_VERSION"


def in_ray_job() -> bool:
    """Whether this process is the driver Ray's Job server started (its cluster is the Job's)."""
    return bool(os.environ.get(RAY_JOB_MARK))


def head_commit(folder: Path, why: list | None = None) -> str:
    """The short commit of the git checkout holding `folder`, '' (and the reason appended to why) if none."""
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        if why is not None:
            why.append(f"{folder}: {exc}")
        return ""
    if done.returncode:
        if why is not None:
            # git's last line says why
            why.append(f"{folder}: {(done.stderr.strip().splitlines() or ['git failed'])[-1]}")
        return ""
    return done.stdout.strip()


def checkout_commit(folder: Path) -> str:
    """The short commit of the checkout at `folder`, '+dirty' when tracked files have changes ('' if none)."""
    head = head_commit(folder)
    if not head:
        return ""
    try:
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def code_version() -> str:
    """The commit the sweep's code comes from. A Ray Job's driver runs in the working dir `ray job submit
    --working-dir .` uploaded (the submitter's checkout; the workers import its code), which may be newer
    than the copy `ray up` put on the head, and Ray's upload leaves out .git: `scs-sweep submit` passes the
    commit in SCS_CODE_VERSION. Else the git checkout of the working dir (a Job) or of this code."""
    if os.environ.get(CODE_VERSION_ENV):  # `scs-sweep submit` passed the submitting checkout's commit
        return os.environ[CODE_VERSION_ENV]
    folders = ([Path.cwd()] if in_ray_job() else []) + [Path(__file__).resolve().parent.parent]
    why: list = []
    for folder in folders:
        commit = head_commit(folder, why)
        if commit:
            return commit
    print(f"note: the sweep's rows record code_version 'unknown': no git commit found ({'; '.join(why)})", flush=True)
    return "unknown"
