#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv (CPU torch where no GPU), installs the project,
# then runs what was asked.
#   ./dev.sh demo   -> the table1 preset as a smoke sweep on embedded Ray (synthetic data if no CIFAR-10),
#                      then its table beside the paper's and one self-contained HTML report
#   ./dev.sh test   -> the test suite
#   ./dev.sh setup  -> only the set-up (what every cluster node runs)
#   ./dev.sh ARGS   -> scs-sweep ARGS inside the environment
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${SCS_VENV:-.venv}                   # SCS_VENV: another place for the environment
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
gpu=0; nvidia-smi -L >/dev/null 2>&1 && gpu=1
# SCS_TORCH=cuda: torch's CUDA build here even without a GPU (a SLURM login node installing the environment its
# GPU nodes use: the job checks the GPUs when it starts); SCS_TORCH=cpu: the CPU build even with one
case "${SCS_TORCH:-auto}" in cuda) cuda_build=1 ;; cpu) cuda_build=0 ;; *) cuda_build=$gpu ;; esac
# SCS_TORCH_INDEX: a PyTorch wheel index for the CUDA build; part of the stamp, so changing it reinstalls.
# PyPI's torch 2.13 is a CUDA 13 build, which needs driver 580 or newer: where nvidia-smi says the driver
# runs an older CUDA (12.x: driver 525-575), the CUDA 12.6 build is taken unless SCS_TORCH_INDEX names one.
if [ "$gpu" = 1 ] && [ -z "${SCS_TORCH_INDEX:-}" ]; then
  driver_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
  if [ -n "$driver_cuda" ] && [ "$driver_cuda" -lt 13 ]; then
    SCS_TORCH_INDEX=https://download.pytorch.org/whl/cu126
    echo "dev.sh: the NVIDIA driver runs CUDA $driver_cuda, older than PyPI's torch needs (13): torch from $SCS_TORCH_INDEX"
  fi
fi
stamp="$VENV/.installed-$( (cat pyproject.toml; echo "${SCS_TORCH_INDEX:-}"; [ "$cuda_build" = "$gpu" ] || echo "$cuda_build") | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned, so the project's install keeps the build chosen here. PyPI's Linux wheel is the
  # CUDA build: right where an NVIDIA GPU is; elsewhere a CPU build, from a local wheel folder when pip
  # is configured with one (dev and CI machines), else from PyTorch's CPU index (GBs less to download).
  TORCH="torch>=2.13,<2.14"
  if [ "$cuda_build" = 1 ] && [ -n "${SCS_TORCH_INDEX:-}" ]; then
    "$VENV/bin/python" -m pip install -q --force-reinstall "$TORCH" --index-url "$SCS_TORCH_INDEX"
  elif [ "$cuda_build" = 1 ]; then
    "$VENV/bin/python" -m pip install -q "$TORCH"
  elif ! "$VENV/bin/python" -m pip install -q --no-index --no-deps "$TORCH" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q --no-deps "$TORCH" --index-url https://download.pytorch.org/whl/cpu
  fi
  "$VENV/bin/python" -m pip install -q -e .
  rm -f "$VENV"/.installed-*
  # the stamp records which torch build went in (torch version, the CUDA it was built for)
  "$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" > "$stamp"
fi
if [ "${1:-demo}" = test ] && [ ! -f "$stamp.test" ]; then
  # what only the tests need (pytest, moto's S3 server, ruff, the trackers): not on every cluster node
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  cp "$stamp" "$stamp.test"
fi
if [ "$gpu" = 1 ]; then
  # a GPU node ends set up only where torch can use its GPU and torch.compile can build GPU kernels;
  # otherwise one line says what to install (trainables/devices.py)
  "$VENV/bin/python" -m trainables.devices --require-gpu || exit 1
fi
export PATH="$VENV/bin:$PATH"
case "${1:-demo}" in
  setup) echo "scs-sweep is installed in $VENV" ;;
  # the linter (pyproject.toml), then the tests: each file on one of 2 workers (-n 0 after it: one process)
  test) shift || true; ruff check . || exit 1; exec python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder "$@" ;;
  demo)
    shift || true
    data_args=(--dataset synthetic)
    if [ -d "${SCS_DATA:-data}/cifar-10-batches-py" ] || [ -d "${SCS_DATA:-data}/cifar-10-batches-bin" ]; then
      data_args=(--data "${SCS_DATA:-data}")
    fi
    name="demo-$(date +%Y%m%d-%H%M%S)"
    scs-sweep run table1 --smoke-test --name "$name" "${data_args[@]}" "$@"
    scs-sweep tables --experiment "$name" --compare-paper
    scs-sweep report --experiment "$name" --out "reports/$name"
    echo "report: reports/$name/report.html; store: ./scs_store; Tune runs: ./scs_runs/$name" ;;
  *) exec scs-sweep "$@" ;;
esac
