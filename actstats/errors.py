"""Errors that the command line turns into one line on stderr and an exit code."""

from __future__ import annotations


class ActstatsError(Exception):
    """Bad usage or bad input: a config, a store, an argument. Exit code 2."""

    exit_code = 2


class StoreFormatError(ActstatsError):
    """A store that does not follow the actstats.store format (/2, or the older /1 it still reads)."""


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


#: The most characters of one user-given value that an error message shows.
SHOWN_CHARACTERS = 200


def shorten(value, limit: int = SHOWN_CHARACTERS, *, quote: bool = True) -> str:
    """`value` as text for an error message: at most about `limit` characters, the middle
    elided with its original length said, so that a 50 MB value makes a short line.

    Strings are shown as ``repr`` shows them (quoted, control characters escaped), unless
    `quote` is false; other values as ``str``.

    Examples
    --------
    >>> shorten("digits")
    "'digits'"
    >>> shorten("x" * 1000, limit=20)
    "'xxxxxxxx…xxxxxxxxx' (1002 characters)"
    >>> shorten(3.5)
    '3.5'
    """
    text = repr(value) if quote and isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    head = (limit + 1) // 2 - 1
    tail = limit - head - 1
    return f"{text[:head]}…{text[-tail:]} ({len(text)} characters)"
