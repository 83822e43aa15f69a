"""Errors that the command line turns into one line on stderr and an exit code."""

from __future__ import annotations


class ActstatsError(Exception):
    """Bad usage or bad input: a config, a store, an argument. Exit code 2."""

    exit_code = 2


class StoreFormatError(ActstatsError):
    """A store that does not follow the actstats.store/1 format."""


class IntegrityError(ActstatsError):
    """Damaged or incomplete data: a checksum mismatch, a truncated chunk. Exit code 3."""

    exit_code = 3


class ActstatsWarning(UserWarning):
    """Something a query excluded or could not do, e.g. non-finite values from a diverged run."""


class ActstatsValueError(ActstatsError, ValueError):
    """A bad argument value: a ``ValueError`` for Python users, exit code 2 on the command line.

    ``argument`` names the argument and ``problem`` says what is wrong without naming it, so
    that the command line can say the same of its option (``--eps 2: must be ...``).
    """

    def __init__(self, message: str, *, argument: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.argument = argument
        self.problem = problem or message
