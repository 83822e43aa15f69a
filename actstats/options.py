"""One registry of actstats' options, with a validator each (like xarray's set_options)."""

from __future__ import annotations

import os
from typing import Any, Callable

OPTIONS: dict[str, Any] = {
    # None: a bar on stderr only when stderr is a terminal; False: never; True: always.
    "progress": None,
    # Address of a dask.distributed scheduler, or None for the local threaded scheduler.
    "scheduler": os.environ.get("ACTSTATS_SCHEDULER") or None,
}

_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "progress": lambda v: v is None or isinstance(v, bool),
    "scheduler": lambda v: v is None or (isinstance(v, str) and bool(v)),
}

_DESCRIPTIONS = {
    "progress": "None, True or False",
    "scheduler": "None or a scheduler address such as 'tcp://127.0.0.1:8786'",
}


class set_options:
    """Set options globally, or for a ``with`` block.

    Examples
    --------
    >>> with set_options(progress=False):
    ...     OPTIONS["progress"]
    False
    """

    def __init__(self, **kwargs: Any):
        self.old: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key not in OPTIONS:
                raise ValueError(f"unknown option {key!r}; options are: {', '.join(OPTIONS)}")
            if not _VALIDATORS[key](value):
                raise ValueError(f"option {key!r}: {value!r} is not valid (expected {_DESCRIPTIONS[key]})")
            self.old[key] = OPTIONS[key]
        OPTIONS.update(kwargs)

    def __enter__(self) -> "set_options":
        return self

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self.old)
