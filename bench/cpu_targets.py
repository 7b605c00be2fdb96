"""The CPU speed targets (issue 18) in one run: `scs-sweep bench --targets` with this folder's defaults.

    PYTHONPATH=. python3 bench/cpu_targets.py --before 15afbf9 --data /tmp/cifar [--quick-table1]

prints the Rohrer100K epoch ratios (MaxAbsPool2d / MaxPool2d, SCS / Conv2d, SDP / Conv2d), the project
against the reference pipeline on CIFAR-10 and, with --quick-table1, the quick Table 1's wall time, for
this checkout and for the revision given (its code in a git worktree, measured in turn with this one).
Any other `scs-sweep bench` option passes through. trainables/bench_targets.py says how it measures.
"""
import sys

from trainables.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--targets", *sys.argv[1:]], prog="bench/cpu_targets.py"))
