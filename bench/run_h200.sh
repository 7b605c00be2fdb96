#!/usr/bin/env bash
# Every GPU figure the issues ask for, in one call on a machine with only torch (the lent H200):
#   PYTHONPATH=. bash bench/run_h200.sh > bench/h200.md
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
echo "## Epoch times and one-layer SCS/conv ratios (scs-sweep bench)"
python3 -m trainables.bench --arch rohrer100k --variants conv+relu+max,scs+none+maxabs --batch-size 128 --layers
echo "## ResNet18 @224"
python3 -m trainables.bench --arch resnet18 --image-dim 224 --variants conv+relu+max+batchnorm,scs+none+max+batchnorm --batch-size 128 --epochs 1
echo "## Packing small nets on one GPU"
python3 bench/packing.py --arch rohrer100k --variant scs+none+maxabs --procs 1,2,4,8
