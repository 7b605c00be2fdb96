#!/usr/bin/env bash
# The quick Table 1 on real CIFAR-10, run as a Ray Job on a two-host cluster that `ray up
# cluster-onprem.yaml` brings up on this machine (head 127.0.0.1, worker 127.0.0.2, each an sshd in its own
# namespace: tests/support/onprem_lab.py), then its wall time and `scs-sweep tables`; everything is torn down.
#   sudo bash bench/onprem_quick_table1.sh DATA_DIR [WORK_DIR]     # DATA_DIR holds cifar-10-batches-py (or -bin)
# SCS_LAB_SWEEP replaces the Job's arguments (tried here only as "run table1 --smoke-test").
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${1:?usage: bench/onprem_quick_table1.sh DATA_DIR [WORK_DIR]}")
work=${2:-/var/tmp/scs-onprem-$(date +%Y%m%d-%H%M%S)}
name=onprem-quick-table1
read -r -a sweep <<< "${SCS_LAB_SWEEP:-run table1 --quick}"
./dev.sh setup
start=$(date +%s)
.venv/bin/python tests/support/onprem_lab.py "$work" --data "$data" --name "$name" --timeout 3600 \
  -- "${sweep[@]}" --data /mnt/scs/data
.venv/bin/python - "$work/lab.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"ray up {r['ray_up_s']} s; sweep (Job submitted to finished) {r['sweep_wall_s']} s; ray down {r['ray_down_s']} s")
print("job:", r["job"]["status"], "| nodes the trials ran on:",
      sorted({ip for h in r["trial_histories"].values() for _, ip, _ in h}))
PY
echo "lab wall time: $(( $(date +%s) - start )) s; files in $work (logs/, shared/runs, shared/store)"
.venv/bin/scs-sweep tables --experiment "$name" --store "$work/shared/store" --compare-paper
