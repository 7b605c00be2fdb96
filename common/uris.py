"""Whether a place is an object-store URI or a local path: plain Python, for code that must not need
pyarrow to tell (the training core on a machine that has only torch)."""
from __future__ import annotations

__all__ = ["is_uri"]


def is_uri(text: str) -> bool:
    """Whether text names an object store (or any pyarrow filesystem) rather than a local path."""
    return "://" in str(text) and not str(text).startswith("file://")
