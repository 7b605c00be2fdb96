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
VENV=.venv
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned, so the project's install keeps the build chosen here. PyPI's Linux wheel is the
  # CUDA build: right where an NVIDIA GPU is; elsewhere a CPU build, from a local wheel folder when pip
  # is configured with one (dev and CI machines), else from PyTorch's CPU index (GBs less to download).
  TORCH="torch>=2.13,<2.14"
  if nvidia-smi -L >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q "$TORCH"
  elif ! "$VENV/bin/python" -m pip install -q --no-index --no-deps "$TORCH" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q --no-deps "$TORCH" --index-url https://download.pytorch.org/whl/cpu
  fi
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
case "${1:-demo}" in
  setup) echo "scs-sweep is installed in $PWD/$VENV" ;;
  test) shift || true; exec python -m pytest -q "$@" ;;
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
