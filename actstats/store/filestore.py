"""Local stores read through zarr-python, regular files only.

A FIFO in a chunk's (or a ``zarr.json``'s) place blocks whoever opens it for reading until a
writer comes, that is for ever; a device may never end. :class:`RegularFilesStore` is zarr's
LocalStore, read-only, refusing such a file with :class:`~actstats.store.chunks.DamagedChunkError`
naming the key. :func:`actstats.store.open_store` and :func:`actstats.store.verify_store` read
local stores through it, so every read zarr-python does for them (metadata, coordinates,
one-byte arrays, partial chunks) is covered, as :meth:`~actstats.store.chunks.ChunkFiles.read`
covers the plain chunk reads.
"""

from __future__ import annotations

import os
import stat

from zarr.storage import LocalStore

from actstats.store.chunks import DamagedChunkError, special_file_kind


class RegularFilesStore(LocalStore):
    """zarr's LocalStore that refuses to read a key whose file is not a regular file.

    Examples
    --------
    >>> import os, tempfile, zarr
    >>> d = tempfile.mkdtemp(); a = zarr.create_array(d, shape=(2,), dtype="int64", fill_value=0)
    >>> a[:] = [1, 2]; os.remove(os.path.join(d, "c", "0")); os.mkfifo(os.path.join(d, "c", "0"))
    >>> zarr.open_array(RegularFilesStore(d, read_only=True), mode="r")[:]
    Traceback (most recent call last):
    ...
    actstats.store.chunks.DamagedChunkError: c/0: a FIFO, not a regular file
    """

    def _refuse_special(self, key: str) -> None:
        try:
            mode = os.stat(self.root / key).st_mode
        except OSError:  # absent (or unreadable): zarr's own read decides
            return
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory: zarr reads it as absent
            raise DamagedChunkError(f"{key}: {special_file_kind(mode)}, not a regular file")

    async def get(self, key, prototype=None, byte_range=None):
        self._refuse_special(key)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            self._refuse_special(key)
        return await super().get_partial_values(prototype, key_ranges)


def open_group_read_only(path):
    """The store's root group, read-only; a local store through :class:`RegularFilesStore`
    (so a FIFO in place of ``complete``'s chunk raises instead of blocking a ``--resume``), a
    URL through zarr's own store."""
    import zarr

    from actstats.store.paths import is_local, local_path

    location = os.fspath(path)
    store = RegularFilesStore(local_path(location), read_only=True) if is_local(location) else location
    return zarr.open_group(store, mode="r")


def refuse_special_files(path, variable: str) -> None:
    """Raise :class:`~actstats.errors.IntegrityError` if a file under a local store's
    ``variable`` is neither regular nor a directory (a FIFO, device or socket), before
    zarr-python reads it: its asynchronous reads would otherwise fail half way, leaving pending
    tasks that print at exit."""
    from actstats.errors import IntegrityError
    from actstats.store.paths import is_local, local_path

    location = os.fspath(path)
    if not is_local(location):
        return
    root = os.path.join(local_path(location), variable)
    for directory, _, files in os.walk(root):
        for name in files:
            mode = os.lstat(os.path.join(directory, name)).st_mode
            if not stat.S_ISREG(mode):
                key = os.path.relpath(os.path.join(directory, name), local_path(location))
                raise IntegrityError(f"{location}: variable {variable!r}: {key}: {special_file_kind(mode)}, "
                                     f"not a regular file")


def is_special_chunk(array, key: str) -> bool:
    """Whether chunk `key` of a local `array` is a file that is neither regular nor a directory
    (a FIFO, device or socket): it exists, and reading it is refused. For
    :func:`~actstats.store.verify_store`, whose presence test (a regular file) would otherwise
    take it for an absent chunk, which may be padding."""
    store = array.store_path.store
    if not isinstance(store, LocalStore):
        return False
    prefix = array.store_path.path
    full = f"{prefix}/{key}" if prefix else key
    try:
        mode = os.stat(os.path.join(store.root, *full.split("/"))).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
