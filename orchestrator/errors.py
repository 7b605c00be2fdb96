"""UsageError: bad input from the user, printed by the CLI as one line with exit code 2."""


class UsageError(RuntimeError):
    """Bad input from the user: printed as one line, exit code 2."""
