"""The error a user can cause, in a module that imports nothing (so every command can raise it)."""


class UsageError(ValueError):
    """A problem with what the user asked for; ``minitx`` prints it as one line and exits 2."""


__all__ = ["UsageError"]
