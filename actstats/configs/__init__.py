"""The example capture configs shipped with actstats: ``actstats init --list`` names them.

``default`` is the sweep ``make report`` captures; the others are the experiments behind
docs/findings.md. Each file's first comment line says what it is and what it costs. They are
package data read with :mod:`importlib.resources`, so that listing or copying one imports
neither torch nor the capture code (``actstats init`` works with ``pip install actstats``).
"""

from __future__ import annotations

import contextlib
import difflib
from importlib import resources
from typing import TYPE_CHECKING

from actstats.errors import ActstatsError, shorten

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable
    from pathlib import Path

SUFFIX = ".toml"


def _directory() -> Traversable:
    """Where the examples are (the tests point it at a directory of their own)."""
    return resources.files(__name__)


def names() -> list[str]:
    """The examples' names, sorted (each a ``NAME.toml`` of this package)."""
    return sorted(entry.name[: -len(SUFFIX)] for entry in _directory().iterdir()
                  if entry.name.endswith(SUFFIX) and entry.is_file())


def _entry(name: str) -> Traversable:
    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ActstatsError(f"unknown example {shorten(name)}{hint}; the examples: {', '.join(known)}")
    return _directory() / f"{name}{SUFFIX}"


def text(name: str) -> str:
    """The example config `name` as TOML text (:func:`actstats.capture.parse_config` reads it).

    Raises
    ------
    ActstatsError
        An unknown name; the message lists the known ones.
    """
    return _entry(name).read_text(encoding="utf-8")


def summary(name: str) -> str:
    """The example's first comment line, without its ``#``: what it is and what it costs."""
    for line in text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def path(name: str) -> contextlib.AbstractContextManager[Path]:
    """A context manager: the example `name` as a file on disk while it lasts (a temporary copy
    only when the package is not unpacked on a file system). An unknown name is refused here,
    before the context is entered."""
    return resources.as_file(_entry(name))
