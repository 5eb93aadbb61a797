"""The error types user-facing code raises; command lines print them as one line."""


class InputError(ValueError):
    """Bad user input (a file, a line, an element, a value); ``str(err)`` names it and why."""
