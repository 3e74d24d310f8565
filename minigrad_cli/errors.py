"""The one error type the command turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: a file, an option or a folder we cannot use."""
