"""apt-get for the labs (as root, as CI runs them), one install at a time on this machine: `./dev.sh test` runs
the on-prem and the SLURM lab on two pytest workers at once, and apt's own lock fails at once ("Could not get
lock /var/lib/dpkg/lock-frontend") rather than waiting."""
import fcntl
import os
import subprocess

LOCK = "/var/lock/scs-sweep-tests-apt.lock"


def apt_install(packages: list[str], timeout_s: float = 900) -> None:
    """Install the packages under this machine's lock for the labs, apt also waiting for any other apt; the
    package lists are updated only when the install cannot find a package. RuntimeError with apt's last
    words when it fails."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    install = ["apt-get", *wait, "install", "-y", "-q", *packages]
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process ends
        if subprocess.run(install, env=env, capture_output=True, timeout=timeout_s).returncode == 0:
            return
        subprocess.run(["apt-get", *wait, "update", "-qq"], env=env, capture_output=True, timeout=timeout_s)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode:
        raise RuntimeError(f"`{' '.join(install)}` failed: {done.stderr.strip()[-500:]}")
