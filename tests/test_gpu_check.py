"""bench/gpu_check.sh runs to its end on a machine without CUDA, skipping (and saying so) only what needs it."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_runs_to_its_end_without_cuda_and_says_what_it_skipped(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"))
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    lines = out.splitlines()
    assert lines[1].startswith("torch ") and "no GPU usable by torch" in lines[1]  # versions first
    assert "FAILED" not in out and "ran out of" not in out
    assert "every trial restored its checkpoint and trained on: yes" in out
    assert sum(line.startswith("| ") and "| trial-" in line for line in lines) == 3  # three threads
    assert sum(line.startswith("| auto |") or line.startswith("| off |") for line in lines) == 4
    skipped = [line for line in lines if line.startswith("skipped:")]
    assert len(skipped) == 2 and all("needs CUDA" in line for line in skipped)  # amp, packing
    assert "8/8 trials: 8 done" in out and "each trial asks for 1 CPU and no GPU" in out
    for name in ("trials.json", "epochs.json", "trials.log", "sweep.log", "sweep-trials.txt"):
        assert (tmp_path / "out" / name).is_file(), name


def test_the_gpu_checks_section_limits_and_their_grace_add_up_to_under_six_minutes():
    """A lent GPU's time is short: the sections' limits, each with timeout's kill grace, fit in 6 minutes."""
    import re

    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    limits = [int(n) for n in re.findall(r"^\s*(?:\S+=\S+ )?section \w+ (\d+) ", script, flags=re.M)]
    (grace,) = {int(n) for n in re.findall(r"timeout -k (\d+) ", script)}
    assert len(limits) == 5 and sum(limits) + grace * len(limits) < 360, (limits, grace)
