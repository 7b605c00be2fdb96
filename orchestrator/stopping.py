"""A graceful stop of a running sweep, asked for by a signal: SLURM's warning before the time limit, or
preemption (slurm_job.py). The running trials save a checkpoint at the end of their next epoch (the marker
file CHECKPOINT_NOW in the sweep's folder, which the trainable looks for after every epoch), then, after a
grace period, Tune stops and saves its state (SIGUSR1: Tune's own graceful stop,
ray.tune.tune._setup_signal_catching), and no new part or settle look starts. Resuming the sweep continues
every trial from the checkpoint it saved.
"""
from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["CHECKPOINT_NOW", "request", "requested", "interrupted", "by_hand", "clear", "EXIT_INTERRUPTED"]

CHECKPOINT_NOW = "checkpoint-now"   # in the sweep's folder while a stop is under way
EXIT_INTERRUPTED = 130              # a sweep stopped by Ctrl+C (or `kill -INT`), as a shell reports it
_REQUESTED = threading.Event()
_BY_HAND = threading.Event()


def requested() -> bool:
    """Whether a stop was asked for in this process: the sweep's loops start nothing new."""
    return _REQUESTED.is_set()


def by_hand() -> bool:
    """Whether the stop was Tune's own (Ctrl+C, `kill -INT`, SIGUSR1 from outside), not asked for by request()."""
    return _BY_HAND.is_set()


def clear() -> None:
    _REQUESTED.clear()
    _BY_HAND.clear()


def interrupted() -> None:
    """Tune stopped by itself on a signal it catches (Ctrl+C): its state is saved and its trials resume from their
    last checkpoint. A stop like the others from here on: no part, look or verdict after it."""
    if not _REQUESTED.is_set():
        _BY_HAND.set()
        _REQUESTED.set()


def request(folder, grace_s: float) -> None:
    """Ask the sweep whose folder this is to stop: the marker now, Tune's graceful stop after `grace_s`
    seconds (at once for 0), from a thread: a signal handler must return at once."""
    if _REQUESTED.is_set():
        return
    _REQUESTED.set()
    folder.write_text(CHECKPOINT_NOW, f"{time.time():.0f}\n")

    def stop_tune():
        time.sleep(max(0.0, grace_s))
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's handler while a part runs (ours is restored between)

    threading.Thread(target=stop_tune, name="scs-stop", daemon=True).start()
