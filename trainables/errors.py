"""ScsSweepError: the one base of every failure a user can fix (bad config, data, store, sweep file, CLI).

The CLI prints such an error as one line and exits with code 2; anything else is a bug and keeps its
traceback. Subclasses name where the problem is (ConfigError, DataError, StoreError, SpecError,
UsageError). Pure Python, so every package can import it without torch.
"""


class ScsSweepError(Exception):
    """A failure the user can fix; the message names the problem and what to do."""
