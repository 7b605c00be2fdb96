#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv (CPU torch where no GPU), installs the project,
# then runs what was asked.
#   ./dev.sh demo   -> the table1 preset as a smoke sweep on embedded Ray (synthetic data if no CIFAR-10),
#                      then its table beside the paper's and one self-contained HTML report
#   ./dev.sh test   -> the test suite
#   ./dev.sh ARGS   -> scs-sweep ARGS inside the environment
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # Pin torch first: pip then keeps the local CPU build instead of pulling GBs of CUDA packages.
  "$VENV/bin/python" -m pip install -q "torch>=2.13,<2.14"
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
case "${1:-demo}" in
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
