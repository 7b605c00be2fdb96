#!/usr/bin/env bash
# Every GPU figure of bench/report.md in one call, on a machine with only torch (the lent H200):
#   PYTHONPATH=. bash bench/run_h200.sh 2>&1 | tee bench/h200.md
# Not yet run on a GPU, so its length is unknown: where one call is limited (10 minutes on the lent
# machine), run the sections between the "##" lines as separate calls.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
echo "## One layer forward+backward, bf16 channels_last: every SCS implementation vs Conv2d"
python3 -m trainables.bench --layers-only
echo "## Rohrer100K, batch 128, 50,000/10,000: the default (compiled, CUDA graphs) path, then eager"
python3 -m trainables.bench --arch rohrer100k --variants conv+relu+max,scs+none+maxabs --epochs 3 --json-out bench/h200_rohrer.json
python3 -m trainables.bench --arch rohrer100k --variants conv+relu+max,scs+none+maxabs --epochs 2 --compile off
echo "## ResNet18 @224, batch 128"
python3 -m trainables.bench --arch resnet18 --image-dim 224 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --epochs 1 --json-out bench/h200_resnet18_224.json
echo "## ResNet18 @32 and ResNet20, batch 128 (the rest of the paper's GPU-hour estimate)"
python3 -m trainables.bench --arch resnet18 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --epochs 2 --json-out bench/h200_resnet18_32.json
python3 -m trainables.bench --arch resnet20 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --epochs 2 --json-out bench/h200_resnet20.json
echo "## GPU-hours of the whole paper from these epoch times (one trial per GPU)"
SCS_EPOCH_TIMES=bench/h200_rohrer.json,bench/h200_resnet18_224.json,bench/h200_resnet18_32.json,bench/h200_resnet20.json \
  python3 -c "from search_spaces.epoch_times import seconds_per_epoch; from orchestrator.plan import estimate_gpu_hours; from search_spaces import get_preset; print('paper: %d trials, %d epochs, %.1f H200-hours' % estimate_gpu_hours(get_preset('paper'), seconds_per_epoch))"
echo "## Packing small nets on one GPU (sets the --gpus-per-trial defaults)"
python3 bench/packing.py --arch rohrer100k --variant scs+none+maxabs --procs 1,2,4,8
echo "## End-of-trial evaluation (PGD 7 eps, 0 included, x 10 steps on 1,000 images + 10 saliency maps)"
python3 bench/evaluation.py
