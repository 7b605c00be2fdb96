"""ScsSweepError: the one base of every failure a user can fix (bad config, data, store, sweep file, CLI).

The CLI prints such an error as one line and exits with code 2; anything else is a bug and keeps its
traceback. Subclasses name where the problem is (ConfigError, DataError, StoreError, SpecError,
UsageError). Pure Python, so every package can import it without torch.
"""


class ScsSweepError(Exception):
    """A failure the user can fix; the message names the problem and what to do."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (or of a text), at most `limit` characters; the
    exception's type name when it has no message: how a library's long error becomes part of one line."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return line[:limit]
