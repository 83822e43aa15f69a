"""Where a store lives: a local path, a ``file://`` URL, or any other fsspec URL."""

from __future__ import annotations

import os


def is_local(path: str | os.PathLike) -> bool:
    """Whether `path` is on the local file system (a plain path or a ``file://`` URL).

    Examples
    --------
    >>> is_local("data/default.zarr"), is_local("file:///tmp/s.zarr"), is_local("s3://bucket/s.zarr")
    (True, True, False)
    """
    path = os.fspath(path)
    return "://" not in str(path) or str(path).startswith("file://")


def local_path(path: str | os.PathLike) -> str:
    """`path` without its ``file://`` prefix.

    Examples
    --------
    >>> local_path("file:///tmp/s.zarr")
    '/tmp/s.zarr'
    """
    path = str(os.fspath(path))
    return path[len("file://") :] if path.startswith("file://") else path
