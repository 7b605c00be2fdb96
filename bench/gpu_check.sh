#!/usr/bin/env bash
# The device check: the GPU path of scs-sweep in about 6 minutes on one H100/H200, every figure and log
# under $OUT. Runs from the checkout on whatever torch the machine has (no Ray, no network needed):
#   PYTHONPATH=. bash bench/gpu_check.sh            # OUT=/tmp/gpu_check-<time> unless $OUT is set
# Sections (each under a time limit; the limits and their kill grace add up to 325 s, so the whole stays
# within 6 minutes; one that fails or runs out of time says so, keeps the rows it printed, and the rest go on):
#   trials   3 trials in one process, each in a new thread, checkpoint saved and restored; graph breaks and
#            recompiles logged (TORCH_LOGS); the partial batch; step time and memory, trial 1 to trial 3
#   epochs   Rohrer100K Conv2d vs SCS epochs, compiled and eager
#   amp      ResNet20 + BatchNorm in fp16 and bf16, host syncs inside steps and per epoch (skipped without CUDA)
#   packing  1 vs 4 processes sharing the GPU, a start barrier, one common timed window (skipped without CUDA)
#   sweep    a table1 sweep through Ray, nvidia-smi during it showing where its trials run (skipped without
#            Ray; on the CPU a --smoke-test)
# Without CUDA (this project's CPU machines) the same script runs to its end at a small size, skipping only
# what needs CUDA, which checks the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # rows appear as they are measured
OUT=${OUT:-/tmp/gpu_check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}   # this checkout's .venv when it has one (dev machines), else the machine's python3
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
start=$(date +%s)
cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
ray=$("$PY" -c "import ray, pyarrow, duckdb, optuna, pandas, scipy, statsmodels, matplotlib, yaml; print(1)" 2>/dev/null || echo 0)

section() {  # section NAME LIMIT_S COMMAND...: run it with a time limit, its output on screen and in $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo; echo "## $name (limit ${limit} s)"
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > >(tee "$OUT/$name.log") 2> "$OUT/$name.stderr.log"
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "$name: ran out of its ${limit} s (log: $OUT/$name.stderr.log)"
  elif [ $rc -ne 0 ]; then echo "$name: FAILED (exit $rc); last lines of its log:"; tail -n 15 "$OUT/$name.stderr.log"
  fi
  echo "($name took $(( $(date +%s) - t0 )) s)"
}

echo "# scs-sweep GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$PY" -m trainables.devices || "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not found or no GPU"
echo "Python $("$PY" -c 'import sys; print(sys.version.split()[0])'); Ray and the store's libraries: $([ "$ray" = 1 ] && echo yes || echo no); output: $OUT"

TORCH_LOGS="graph_breaks,recompiles" section trials 70 "$PY" -m bench.gpu_check trials --out "$OUT"
echo "graph breaks logged: $(grep -c 'Graph break' "$OUT/trials.stderr.log" 2>/dev/null || true); recompiles logged: $(grep -c -i 'recompil' "$OUT/trials.stderr.log" 2>/dev/null || true) (details: $OUT/trials.stderr.log)"
section epochs 60 "$PY" -m bench.gpu_check epochs --out "$OUT"
section amp 50 "$PY" -m bench.gpu_check amp --out "$OUT"
if [ "$cuda" = 1 ]; then
  section packing 50 "$PY" -m bench.packing --procs 1,4 --seconds 8 --json-out "$OUT/packing.json"
else
  echo; echo "## packing"; echo "skipped: needs CUDA (processes sharing one GPU)"
fi

if [ "$ray" != 1 ]; then
  echo; echo "## sweep"; echo "skipped: Ray or the store's libraries are not installed here (pip install -e . gives them)"
else
  if [ "$cuda" = 1 ]; then
    sweep=(--dataset synthetic --epochs 2 --train-images 2000 --test-images 500 --no-evaluate --no-prune)
    ( while sleep 2; do nvidia-smi --query-compute-apps=timestamp,pid,process_name,gpu_uuid,used_memory \
        --format=csv,noheader >> "$OUT/nvidia-smi-during-sweep.csv" 2>/dev/null; done ) & watcher=$!
  else
    sweep=(--smoke-test --no-evaluate); watcher=""
  fi
  export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} RAY_USAGE_STATS_ENABLED=0
  section sweep 70 "$PY" -m orchestrator.cli run table1 "${sweep[@]}" --name gpu-check \
    --storage "$OUT/runs" --store "$OUT/store"
  [ -n "$watcher" ] && kill "$watcher" 2>/dev/null
  "$PY" -m orchestrator.cli query "SELECT layer, activation, pooling, gpu, gpu_index, node_ip, compiled, \
    round(train_time_s, 3) AS train_s FROM trials ORDER BY started_at" --store "$OUT/store" 2>&1 | tee "$OUT/sweep-trials.txt"
  if [ -s "$OUT/nvidia-smi-during-sweep.csv" ]; then
    echo "nvidia-smi during the sweep: $(cut -d, -f2 "$OUT/nvidia-smi-during-sweep.csv" | sort -u | wc -l) processes on the GPU(s) $(cut -d, -f4 "$OUT/nvidia-smi-during-sweep.csv" | sort -u | tr -d ' ' | paste -sd, -), at most $(cut -d, -f1 "$OUT/nvidia-smi-during-sweep.csv" | sort | uniq -c | sort -rn | head -1 | awk '{print $1}') at once ($OUT/nvidia-smi-during-sweep.csv)"
  fi
fi
echo; echo "gpu_check: $(( $(date +%s) - start )) s in all; every log and figure is in $OUT"
