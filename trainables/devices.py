"""Which device a trial trains on, and what this node's torch, CUDA and NVIDIA driver are.

A trial trains on what Ray assigned it and nothing else (design.md, "Devices"): Ray sets
CUDA_VISIBLE_DEVICES only for actors that asked for GPUs, so a trial that asked for none still sees every
GPU of its node, and "any visible GPU" would put every CPU trial on GPU 0. `trial_device` takes the GPU
ids Ray gave the trial: none is the CPU, one is that GPU, and a GPU torch cannot use (a CPU build of
torch, a driver older than torch's CUDA) is one DeviceError line naming the torch build, its CUDA and
the driver, at once, instead of a trial that quietly trains on one CPU thread while Ray holds the GPU.

`python -m trainables.devices --require-gpu` is the same check for `dev.sh setup` on a GPU node, plus
what torch.compile's GPU path needs there: a C compiler and Python's headers (to build Triton's launcher),
and then one small kernel compiled, launched and checked on the GPU. Needs only torch (no ray), like the
rest of trainables/.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import ConfigError
from common.errors import ScsSweepError, first_line

__all__ = ["DeviceError", "Build", "node_build", "pick_device", "check_device", "trial_device", "local_gpu_index",
           "use_cpus", "compiler_problems", "compile_probe"]

# PyTorch's wheels for CUDA 12, for a driver too old for the default (CUDA 13) wheel: dev.sh installs
# torch from $SCS_TORCH_INDEX when it is set.
CUDA12_INDEX = "https://download.pytorch.org/whl/cu126"


class DeviceError(ScsSweepError):
    """A device a trial was given but cannot use; the message names torch's build, CUDA and the driver."""


@dataclass(frozen=True)
class Build:
    """What this node's torch was built for and what its NVIDIA driver offers ('' where there is none)."""
    torch: str              # torch.__version__, e.g. 2.13.0+cpu
    torch_cuda: str         # the CUDA torch was built for ('' for a CPU build)
    driver: str             # the NVIDIA driver's version ('' when no driver is installed)
    driver_cuda: str        # the newest CUDA that driver runs ('' when unknown)
    cuda_available: bool    # torch.cuda.is_available()

    def describe(self) -> str:
        """'torch 2.13.0 (CUDA 13.0 build), driver 535.104.05 (CUDA <= 12.2)'."""
        built = f"CUDA {self.torch_cuda} build" if self.torch_cuda else "a CPU build, no CUDA"
        driver = (f"driver {self.driver}" + (f" (CUDA <= {self.driver_cuda})" if self.driver_cuda else "")
                  if self.driver else "no NVIDIA driver")
        return f"torch {self.torch} ({built}), {driver}"

    def fix(self) -> str:
        """What to install so that torch can use this node's GPU ('' when it can)."""
        if self.cuda_available:
            return ""
        if not self.driver:
            return "install the NVIDIA driver on this node (nvidia-smi must list its GPUs)"
        if not self.torch_cuda:
            return "reinstall with torch's CUDA build, from the checkout: rm -rf .venv && ./dev.sh setup"
        need, have = _major_minor(self.torch_cuda), _major_minor(self.driver_cuda)
        if have and need and have < need:
            if have >= (12, 0):
                return (f"update the driver to one for CUDA {self.torch_cuda}, or install torch's CUDA 12 build: "
                        f"rm -rf .venv && SCS_TORCH_INDEX={CUDA12_INDEX} ./dev.sh setup")
            return f"update the driver (torch {self.torch} needs CUDA 12 or newer: driver 525 or newer)"
        return "check that nvidia-smi works for this user and that CUDA_VISIBLE_DEVICES names a GPU"


def _major_minor(version: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else ()


def _driver_version() -> str:
    """The kernel module's version, from /proc (no process to start); else nvidia-smi's."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    return _nvidia_smi_field(r"Driver Version:\s*([\d.]+)")


def _driver_cuda() -> str:
    """The newest CUDA the driver runs: libcuda's cuDriverGetVersion (12020 -> 12.2), else nvidia-smi's header."""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value:
            return f"{version.value // 1000}.{version.value % 1000 // 10}"
    except (OSError, AttributeError):
        pass
    return _nvidia_smi_field(r"CUDA Version:\s*([\d.]+)")


def _nvidia_smi_field(pattern: str) -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(pattern, out)
    return match.group(1) if match else ""


def node_build() -> Build:
    return Build(torch=torch.__version__, torch_cuda=torch.version.cuda or "", driver=_driver_version(),
                 driver_cuda=_driver_cuda(), cuda_available=torch.cuda.is_available())


def pick_device(requested: str = "") -> torch.device:
    requested = requested or os.environ.get("SCS_DEVICE", "")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(requested: str = "") -> torch.device:
    """pick_device for a command's --device, every device it cannot train on one ConfigError line: a name
    torch does not know, a type other than cpu and cuda, or cuda on a machine without a GPU torch can use."""
    flag, value = ("--device", requested) if requested else ("SCS_DEVICE", os.environ.get("SCS_DEVICE", ""))
    try:
        device = pick_device(requested)
    except RuntimeError:
        raise ConfigError(f"{flag} {value!r} is not a device; give cpu or cuda (or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{flag} {value}: this machine has no GPU that torch can use; give cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{flag} {value!r}: give cpu or cuda (or cuda:N)")
    return device


def local_gpu_index(gpu_id) -> int:
    """The CUDA index, inside this process, of the GPU Ray calls `gpu_id` on its node: Ray restricts
    CUDA_VISIBLE_DEVICES to the trial's GPUs, so its first one is cuda:0 (where Ray left the variable
    alone, the id is the index)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if str(gpu_id) in visible:
        return visible.index(str(gpu_id))
    return 0 if visible else int(gpu_id)


def trial_device(gpu_ids: list) -> torch.device:
    """The device of a trial Ray gave `gpu_ids` (ray.get_gpu_ids()): the CPU for none, else its GPU.

    Raises DeviceError when torch cannot use the GPU Ray assigned (one line: the build, CUDA, the driver,
    what to install), and for more than one GPU: a trial trains on one (plan.py refuses more)."""
    if not gpu_ids:
        return torch.device("cpu")
    if len(gpu_ids) > 1:
        raise DeviceError(f"Ray gave this trial {len(gpu_ids)} GPUs ({', '.join(map(str, gpu_ids))}); a trial "
                          f"trains on one: give --gpus-per-trial 1 or a fraction")
    if not torch.cuda.is_available():
        build = node_build()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise DeviceError(f"Ray gave this trial GPU {gpu_ids[0]} (CUDA_VISIBLE_DEVICES={visible}), but torch cannot "
                          f"use it: {build.describe()}; {build.fix()}")
    return torch.device("cuda", local_gpu_index(gpu_ids[0]))


def use_cpus(n: int) -> None:
    """Train and compile on the n CPUs Ray gave the trial: torch's intra-op threads, and inductor's compile
    workers, which are otherwise min(32, the node's CPU count) per process (torch/_inductor/config.py,
    decide_compile_threads): 8 GPUs with 4 packed trials each on a 96-core node would start 32 x 32
    compile processes. Inductor starts its worker pool at the first compile, so call this before it."""
    import torch._inductor.config as inductor_config

    n = max(1, int(n))
    torch.set_num_threads(n)
    inductor_config.compile_threads = n


def compiler_problems() -> list[str]:
    """What torch.compile's GPU path (Triton builds a small C launcher per kernel) lacks on this node:
    a C compiler, Python's headers. Without them compiling fails and trials run eagerly, slower."""
    problems = []
    if not any(shutil.which(cc) for cc in (os.environ.get("CC", ""), "cc", "gcc", "clang") if cc):
        problems.append("no C compiler (cc/gcc)")
    include = sysconfig.get_paths().get("include", "")
    if not (Path(include) / "Python.h").is_file():
        problems.append(f"no Python headers ({include}/Python.h)")
    return problems


def _probe_kernel(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) * 2 + 1


def compile_probe(device: str = "cuda") -> str:
    """'' when torch.compile builds a kernel for this device and it runs and computes right; else why not,
    in one line. On a GPU that is Triton compiling for this GPU and driver and building its launcher with
    the node's C compiler: what a compiler and headers being present does not prove (a driver too old for
    the ptxas Triton ships, a libcuda Triton cannot find)."""
    try:
        kernel = torch.compile(_probe_kernel, fullgraph=True, dynamic=False)
        x = torch.linspace(-3, 3, 1024, device=device)
        got = kernel(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if not torch.allclose(got.cpu(), _probe_kernel(x.cpu()), atol=1e-5):
            return "a compiled kernel computed wrong values"
    except Exception as exc:  # noqa: BLE001 - Triton, the C compiler and the driver fail in many ways
        return f"{type(exc).__name__}: {first_line(exc, 200)}"
    return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainables.devices", description=__doc__.splitlines()[0])
    p.add_argument("--require-gpu", action="store_true",
                   help="exit 1, with one line saying what to install, unless torch can use this node's GPU "
                        "and torch.compile builds and runs a GPU kernel here")
    args = p.parse_args(argv)
    build = node_build()
    if not args.require_gpu:
        print(build.describe() + (f"; {torch.cuda.device_count()} GPU(s) usable" if build.cuda_available else
                                  "; no GPU usable by torch"))
        return 0
    if not build.cuda_available:
        print(f"scs-sweep setup: this node has a GPU but torch cannot use it: {build.describe()}; {build.fix()}",
              file=sys.stderr)
        return 1
    missing = compiler_problems()
    if missing:
        print(f"scs-sweep setup: torch.compile cannot build GPU kernels here ({'; '.join(missing)}), so trials "
              f"would run eagerly: sudo apt-get install -y build-essential python3-dev (or your system's "
              f"equivalents)", file=sys.stderr)
        return 1
    failed = compile_probe("cuda")
    if failed:
        print(f"scs-sweep setup: torch.compile cannot build and run a GPU kernel here ({failed}), so trials "
              f"would run eagerly: {build.describe()}; update the driver or install torch's build for it "
              f"(SCS_TORCH_INDEX, README), then ./dev.sh setup again", file=sys.stderr)
        return 1
    print(f"scs-sweep setup: {build.describe()}; {torch.cuda.device_count()} GPU(s) usable, a compiled kernel ran: "
          f"{torch.cuda.get_device_name(0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
