"""UsageError: bad command-line input (a value out of range, a missing folder, an unknown sweep)."""
from common.errors import ScsSweepError


class UsageError(ScsSweepError):
    """Bad input from the user: printed as one line, exit code 2."""
