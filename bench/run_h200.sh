#!/usr/bin/env bash
# Every GPU figure of bench/report.md, in sections of under ten minutes each (one call of the lent
# machine), on a machine with only torch; bench/gpu_check.sh is the short check to run first.
#   PYTHONPATH=. bash bench/run_h200.sh [SECTION ...]     # default: every section, in order
# Sections: layers, rohrer100k, resnet18-224, resnet18-32, resnet20, gpu-hours (after the epoch sections),
# packing, evaluation. Every figure goes to $OUT (default /tmp/h200-<time>): SECTION.md and its JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/h200-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
LIMIT=${SECTION_LIMIT_S:-590}
bench() { "$PY" -m trainables.bench "$@"; }

run() {  # run SECTION: its commands under one time limit, output to the screen and $OUT/SECTION.md
  local name=$1
  echo "## $name (limit ${LIMIT} s)"
  timeout -k 10 "$LIMIT" bash -c "$(declare -f bench section_$name); PY='$PY' OUT='$OUT' section_$name" \
    2>&1 | tee "$OUT/$name.md"
  echo "exit ${PIPESTATUS[0]}; $OUT/$name.md"
}

section_layers() {  # one layer forward+backward, bf16 channels_last: every SCS implementation vs Conv2d
  bench --layers-only --json-out "$OUT/layers.json"
}
section_rohrer100k() {  # batch 128, 50,000/10,000: the default (compiled, CUDA graphs) path, then eager
  bench --arch rohrer100k --variants conv+relu+max,scs+none+maxabs,sdp+none+maxabs --epochs 3 --json-out "$OUT/rohrer100k.json"
  bench --arch rohrer100k --variants conv+relu+max,scs+none+maxabs --epochs 2 --compile off
}
section_resnet18-224() {
  bench --arch resnet18 --image-dim 224 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --epochs 1 \
    --json-out "$OUT/resnet18_224.json"
}
section_resnet18-32() {
  bench --arch resnet18 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --epochs 2 --json-out "$OUT/resnet18_32.json"
}
section_resnet20() {
  bench --arch resnet20 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --epochs 2 --json-out "$OUT/resnet20.json"
}
section_gpu-hours() {  # the whole paper from the epoch sections' times, one trial per GPU
  local files; files=$(ls "$OUT"/rohrer100k.json "$OUT"/resnet18_224.json "$OUT"/resnet18_32.json "$OUT"/resnet20.json 2>/dev/null | paste -sd, -)
  SCS_EPOCH_TIMES="$files" "$PY" -c "from search_spaces.epoch_times import seconds_per_epoch; from orchestrator.plan import estimate_gpu_hours; from search_spaces import get_preset; print('paper: %d trials, %d epochs, %.1f GPU-hours (from %s)' % (*estimate_gpu_hours(get_preset('paper'), seconds_per_epoch), '$files'))"
}
section_packing() {  # small nets sharing one GPU: total throughput over one common window (the --gpus-per-trial defaults)
  "$PY" -m bench.packing --arch rohrer100k --variant scs+none+maxabs --procs 1,2,4,8 --seconds 20 --json-out "$OUT/packing_scs.json"
  "$PY" -m bench.packing --arch rohrer100k --variant conv+relu+max --procs 1,4 --seconds 20 --json-out "$OUT/packing_conv.json"
}
section_evaluation() {  # the end-of-trial PGD (7 eps, 0 included, x 10 steps, 1,000 images) + 10 saliency maps
  "$PY" bench/evaluation.py
}

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(layers rohrer100k resnet18-224 resnet18-32 resnet20 gpu-hours packing evaluation)
"$PY" -m trainables.devices
for name in "${sections[@]}"; do
  declare -F "section_$name" >/dev/null || { echo "unknown section $name"; exit 2; }
  run "$name"
done
echo "every figure is in $OUT"
