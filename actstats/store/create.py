"""Making stores: lay one out (:func:`create_store`), and get one ready for a capture
(:func:`prepare_store`: tidy what killed captures left, refuse or check an existing store,
or replace it), with the directory locks that keep concurrent captures apart.

Every step that puts a store in place is a rename of a fully built directory, so a store at
its path is either absent or fully laid out, whatever moment a process is killed; what a
killed process leaves beside it (``.NAME.creating-*``, ``.NAME.old-*``) is tidied by the
next capture (:func:`tidy_beside`).

Writers exclude replacers. The lock is one flock on the store's directory itself (its
inode, so it moves with the directory): every process that writes a store's chunks holds
it shared for as long as it writes (:func:`hold_store_for_writing`; capture's parent
process and each of its workers), and a replacement (``prepare_store(mode="overwrite")``,
and :func:`tidy_beside` on a directory beside the store) needs it exclusive, without
waiting: while any capture writes the store, ``--overwrite`` is refused in one line and
nothing is changed. A writer also remembers the identity (device and inode) of the
directory it locked, and checks before each record's writes that the path still leads to
it (:meth:`StoreWriter.check`, one ``stat``): a store moved away or replaced by other
means (``mv``, ``rm -r``, a file system without locks) stops its capture with one line,
and nothing of it is written into the store that took its place. Where the file system
has no locks, only that check remains.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

import numpy as np

from actstats.errors import ActstatsError
from actstats.store import text
from actstats.store.paths import local_path
from actstats.store.manifest import MANIFEST_GROUP, write_store_manifest
from actstats.store.schema import (
    COORDINATES, OPTIONAL_COORDINATES, SCHEMA, VARIABLES, StoreLayout, library_version,
)


# No compressor: on recorded activations, pre-activations and deltas zstd saves only 7-14%
# of the bytes and encodes at ~330 MB/s, against ~10 GB/s for the crc32c checksum alone
# (docs/benchmarks.md, "Codecs"). Writing and reading uncompressed keeps capture cheap.
def _codecs(kind: str):
    """The bytes-to-bytes codecs of every array: a crc32c checksum, no compressor."""
    from zarr.codecs import Crc32cCodec

    return [Crc32cCodec()]


def _numpy_dtype(kind: str):
    return {"int": "int64", "float": "float64", "str": text.CODE_DTYPE, "float32": "float32", "bool": "bool"}[kind]


def create_store(
    path: str | os.PathLike,
    layout: StoreLayout,
    coordinates: Mapping[str, np.ndarray],
    attributes: Mapping[str, Any],
    input_values: np.ndarray,
) -> None:
    """Create an empty store with every array, coordinate and attribute in place.

    The store is built in a temporary directory beside `path` and renamed into place, so a
    store at `path` is either absent or fully laid out, whatever moment a capture is killed.
    If another process put a store at `path` first, raises FileExistsError and leaves it.
    Record variables start as missing chunks (read as NaN/False) until capture fills them.
    Text coordinates (kind ``"str"``) are given as text and written as integer codes with
    their labels in the array's attributes (:mod:`actstats.store.text`).
    """
    import zarr

    path = local_path(os.fspath(path))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.creating-{uuid.uuid4().hex[:8]}")
    lock = None
    try:
        os.mkdir(tmp)
        # Held while the store is built: tidy_beside() leaves a locked directory alone.
        lock = hold_directory_lock(tmp)
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        root_attrs = {
            "schema": SCHEMA,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "creation_library": "actstats",
            "creation_library_version": library_version(),
            **attributes,
        }
        group.attrs.update(root_attrs)
        sizes = layout.sizes()
        # the optional coordinates (schema.OPTIONAL_COORDINATES) are written when given
        written = {**COORDINATES, **{n: spec for n, spec in OPTIONAL_COORDINATES.items() if n in coordinates}}
        for name, (dims, kind) in written.items():
            values = np.asarray(coordinates[name])
            shape = tuple(sizes[d] for d in dims)
            if values.shape != shape:
                raise ValueError(f"coordinate {name!r} has shape {values.shape}, expected {shape}")
            attrs = {}
            if kind == "str":  # integer codes, their labels in the attributes: any Zarr 3 reader reads them
                values, attrs = text.encode(values)
            dtype = _numpy_dtype(kind)
            array = group.create_array(
                name,
                shape=shape,
                chunks=shape,
                dtype=dtype,
                compressors=_codecs(kind),
                dimension_names=list(dims),
                fill_value=text.CODE_FILL if kind == "str" else 0,
                attributes=attrs,
                config={"write_empty_chunks": True},  # every chunk on disk, even all-zero: a missing one is damage
            )
            array[...] = values.astype(dtype)
        for name in layout.variables():
            dims, dtype, _ = VARIABLES[name]
            shape = tuple(sizes[d] for d in dims)
            coords = [c for c, (cdims, _) in written.items() if set(cdims) <= set(dims) and cdims != (c,)]
            array = group.create_array(
                name,
                shape=shape,
                chunks=layout.chunks(name),
                dtype=dtype,
                compressors=_codecs(dtype),
                dimension_names=list(dims),
                fill_value=False if dtype == "bool" else np.nan,
                attributes={"coordinates": " ".join(coords)} if coords else {},
                config={"write_empty_chunks": name == "complete"},  # complete: a chunk per run from the start
            )
            if name == "input":
                array[...] = input_values.astype("float32")
            if name == "complete":
                array[...] = False
        group.create_group("resume", attributes={"description": "capture checkpoints for --resume"})
        # the manifest (actstats.store.manifest): what was written here, and later each record's chunks
        group.create_group(MANIFEST_GROUP, attributes={"description": "chunk checksums bound to their keys"})
        # The hierarchy never changes after creation (capture only fills chunks), so its
        # consolidated metadata stays true; it lets readers open the store with one read.
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(tmp)
        write_store_manifest(tmp)  # after consolidating: its files are not Zarr nodes
        try:
            os.rename(tmp, path)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another process created it first
                raise FileExistsError(errno.EEXIST, "store exists", path) from None
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    finally:
        if lock is not None:
            os.close(lock)


#: A directory left beside a store (``.NAME.creating-*``, ``.NAME.old-*``) is taken as
#: abandoned only when no process holds its lock and it is at least this old.
ABANDONED_AFTER_SECONDS = 60.0


def hold_directory_lock(path: str) -> int:
    """An exclusive flock on directory `path`; returns the descriptor (close it to release).

    Where the file system has no locks the descriptor is returned unlocked."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # no locks on this file system
        pass
    return fd


class StoreWriter:
    """A capture's hold on the store it writes: the store directory's flock, shared (so any
    number of writers, and no replacement: see the module header), and its identity.

    Close it (or use it as a context manager) when the writing is done."""

    def __init__(self, path: str, fd: int, identity: tuple[int, int]):
        self.path, self.fd, self.identity = path, fd, identity

    def check(self) -> None:
        """Raise :class:`ActstatsError` unless `path` still leads to the locked store."""
        try:
            st = os.stat(self.path)
            now = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if now != self.identity:
            raise ActstatsError(
                f"{self.path}: the store was moved away or replaced while this capture was writing it; "
                "stopped without writing into what is there now"
            )

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def hold_store_for_writing(path: str | os.PathLike, identity: tuple[int, int] | None = None) -> StoreWriter:
    """Lock the store at `path` for writing (a shared flock on its directory; waits while a
    replacement of it is under way) and return the :class:`StoreWriter`.

    With `identity` (the :attr:`StoreWriter.identity` another process of the same capture
    holds), the store must be that directory; without, it is the one found at `path`, which
    must still be there once the lock is held. Either way a store moved or replaced meanwhile
    is an :class:`ActstatsError` (one line).
    """
    import fcntl

    path = local_path(os.fspath(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ActstatsError(f"{path}: the store is gone (moved away or removed); stopped") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        st = os.fstat(fd)
        writer = StoreWriter(path, fd, (st.st_dev, st.st_ino))
        writer.check()  # still at `path` now that it is locked (not replaced while we waited)
        if identity is not None and tuple(identity) != writer.identity:
            raise ActstatsError(
                f"{path}: the store was moved away or replaced while this capture was writing it; "
                "stopped without writing into what is there now"
            )
    except BaseException:
        os.close(fd)
        raise
    return writer


def tidy_beside(path: str | os.PathLike) -> list[str]:
    """Deal with what killed captures left beside the store at `path`; returns what was done.

    ``.NAME.creating-*`` (a store being built when its capture was killed) is removed.
    ``.NAME.old-*`` (the old store of an ``--overwrite`` killed before it finished) is put
    back at `path` when nothing is there (nothing is lost), and removed when the new store
    is in place. A directory is touched only when no running capture holds its lock and it
    is older than :data:`ABANDONED_AFTER_SECONDS`.
    """
    import time

    path = os.path.abspath(local_path(os.fspath(path)))
    parent, base = os.path.dirname(path), os.path.basename(path)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    done = []
    for entry in entries:
        creating = entry.startswith(f".{base}.creating-")
        old = entry.startswith(f".{base}.old-")
        if not (creating or old):
            continue
        full = os.path.join(parent, entry)
        try:
            if time.time() - os.stat(full).st_mtime < ABANDONED_AFTER_SECONDS:
                continue
            lock = hold_directory_lock(full)
        except (BlockingIOError, FileNotFoundError):
            continue  # in use by a running capture, or gone meanwhile
        try:
            if old and not os.path.exists(path):
                os.rename(full, path)
                done.append(f"restored {entry} as {base} (an --overwrite was interrupted)")
            else:
                shutil.rmtree(full)
                done.append(f"removed {entry} (left by an interrupted capture)")
        except OSError as exc:  # e.g. a read-only file system: leave it, say so
            done.append(f"could not tidy {entry} ({exc.strerror})")
        finally:
            os.close(lock)
    return done




@dataclass(frozen=True)
class StoreContents:
    """What :func:`create_store` lays out: sizes, coordinates, root attributes, probe inputs."""

    layout: StoreLayout
    coordinates: Mapping[str, np.ndarray]
    attributes: Mapping[str, Any]
    input_values: np.ndarray


def prepare_store(
    path: str | os.PathLike,
    mode: Literal["create", "resume", "overwrite"] = "create",
    *,
    contents: StoreContents | Callable[[], StoreContents],
    sweep: str | None = None,
    data_fingerprint: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
) -> str:
    """Get the local store at `path` ready to be filled, as capture needs it.

    First tidies what killed captures left beside it (:func:`tidy_beside`; each thing done
    is a line on stderr). Then, by `mode`:

    - ``"create"``: make the store; refuse if one exists (also if another process made it
      meanwhile).
    - ``"resume"``: continue an existing store, refusing one whose root attribute ``sweep``
      is not `sweep`; with no store, make it (and if another process made it meanwhile,
      join it after the same check).
    - ``"overwrite"``: make the store; an existing one is replaced: the new store is built
      beside it first, and the old one is removed only once the new one is in place (an
      interrupted replacement is undone by the next :func:`tidy_beside`). Refused, with
      nothing changed, while any capture writes the store (:func:`hold_store_for_writing`).

    Parameters
    ----------
    path : str or path-like
        A local directory (or a ``file://`` URL).
    mode : {"create", "resume", "overwrite"}
    contents : StoreContents or callable
        What a new store holds, or a function that returns it: it is called (once) only when
        a store is to be made, after every refusal that can be decided without it, so that
        building it (loading a data set) is not paid for a refused call.
    sweep : str
        With ``mode="resume"``: the text the store's ``sweep`` attribute must equal, as
        :func:`~actstats.store.canonical_json` writes it.
    data_fingerprint : mapping or callable, optional
        With ``mode="resume"``: what the store's ``data_fingerprint`` root attribute must
        equal (the data the capture is made from, see docs/store-format.md), or a function
        that returns it, called only when an existing store is checked and its config
        matched. Refused when the fingerprints' ``arrays`` differ (the message names which);
        their ``source`` (generator, version, seeds) only describes. A store without the
        attribute (made by an older actstats or another program) is resumed unchecked, with
        a line on stderr saying so.

    Returns
    -------
    str
        ``"created"``, ``"resumed"`` (an existing store, including one made meanwhile by
        another process) or ``"replaced"``.

    Raises
    ------
    ActstatsError
        With one line saying why the store is refused.

    Examples
    --------
    >>> import os, tempfile
    >>> contents = StoreContents(StoreLayout(1, (0.0,), 1, 2, 2, 2, 2, 3), {
    ...     "run": [0], "epoch": [0.0], "layer": [1], "unit": [0, 1], "fan_in": [0, 1], "class": [0, 1],
    ...     "feature": [0, 1], "sample": [0, 1, 2], "step": [[0]], "split": ["train", "train", "test"],
    ...     "label": [0, 1, 0], "source_index": [0, 1, 2], "width": [[2]], "depth": [1],
    ...     "activation_fn": ["sigmoid"], "init": ["default"], "optimizer": ["sgd"], "lr": [0.1],
    ...     "batch_size": [1], "seed": [0], "dataset": ["example"], "config": ["{}"]},
    ...     {"torch_version": "", "sweep": '{"a":1}'}, np.zeros((3, 2)))
    >>> path = os.path.join(tempfile.mkdtemp(), "s.zarr")
    >>> prepare_store(path, "create", contents=contents)
    'created'
    >>> prepare_store(path, "resume", contents=contents, sweep='{"a":1}')
    'resumed'
    >>> prepare_store(path, "overwrite", contents=contents)
    'replaced'
    """
    if mode not in ("create", "resume", "overwrite"):
        raise ValueError(f"mode {mode!r}: expected 'create', 'resume' or 'overwrite'")
    if mode == "resume" and sweep is None:
        raise TypeError("prepare_store(mode='resume') needs sweep=, the text a resumable store's 'sweep' attribute holds")
    path = local_path(path)
    for line in tidy_beside(path):
        print(f"{path}: {line}", file=sys.stderr)
    exists = os.path.exists(path)
    refusal = f"{path}: store exists; use --resume to continue it or --overwrite to replace it"
    if exists and mode == "create":
        raise ActstatsError(refusal)
    if exists and mode == "resume":
        _check_resumable(path, sweep, data_fingerprint)
        return "resumed"
    if exists and mode == "overwrite":
        _refuse_if_in_use(path)  # before the data set is loaded; checked again under the lock
    if callable(contents):
        contents = contents()
    if not exists:
        try:
            create_store(path, contents.layout, contents.coordinates, contents.attributes, contents.input_values)
        except FileExistsError:  # another process created it meanwhile
            if mode != "resume":
                raise ActstatsError(refusal) from None
            _check_resumable(path, sweep, data_fingerprint)  # and join it: the run locks share out its runs
            return "resumed"
        return "created"
    _replace(path, contents)
    return "replaced"


_IN_USE = ("{path}: a capture is writing this store (or another --overwrite is replacing it) right now; "
           "refusing to replace it: wait for it to end or stop it first")


def _refuse_if_in_use(path: str) -> None:
    try:
        lock = hold_directory_lock(path)
    except BlockingIOError:
        raise ActstatsError(_IN_USE.format(path=path)) from None
    except OSError:
        return  # not a directory, unreadable: _replace says so
    os.close(lock)


def _replace(path: str, contents: StoreContents) -> None:
    """Build the new store, then swap it for the old one, under the old store's lock."""
    parent, base = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    aside = os.path.join(parent, f".{base}.old-{uuid.uuid4().hex[:8]}")
    if not os.path.exists(os.path.join(path, "zarr.json")) and os.listdir(path):
        raise ActstatsError(f"{path}: exists and is not a Zarr store; refusing to overwrite it")
    try:
        lock = hold_directory_lock(path)  # held until the old store is gone: see tidy_beside
    except BlockingIOError:
        raise ActstatsError(_IN_USE.format(path=path)) from None
    try:
        os.rename(path, aside)
        try:
            create_store(path, contents.layout, contents.coordinates, contents.attributes, contents.input_values)
        except BaseException:
            os.rename(aside, path)
            raise
        shutil.rmtree(aside)
    finally:
        os.close(lock)


def _check_resumable(path: str, sweep: str, data_fingerprint=None) -> None:
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        stored = group.attrs.get("sweep")
        stored_fingerprint = group.attrs.get("data_fingerprint")
    except Exception:
        raise ActstatsError(f"{path}: exists but is not a readable store; refusing to resume into it") from None
    if stored != sweep:
        raise ActstatsError(
            f"{path}: --resume with a different config than the store was made with ({_difference(stored, sweep)})"
        )
    if data_fingerprint is None:
        return
    if stored_fingerprint is None:
        print(f"{path}: the store has no data fingerprint (made by an older actstats or another program): "
              "resuming without checking that the data are the ones it was made from", file=sys.stderr)
        return
    expected = data_fingerprint() if callable(data_fingerprint) else data_fingerprint
    difference = _fingerprint_difference(stored_fingerprint, expected)
    if difference:
        raise ActstatsError(f"{path}: --resume with other data than the store was made from ({difference}); "
                            "nothing written: restore the data, or use --overwrite")


def _fingerprint_difference(stored, expected: Mapping[str, Any]) -> str | None:
    """How two data fingerprints differ, in a few words, or None when their ``arrays`` (and any
    other entry but ``source``) agree; ``source`` is named alongside when it differs too."""
    if not isinstance(stored, Mapping):
        return "the store's data fingerprint is not readable"
    expected = json.loads(json.dumps(expected))  # as the attribute stores it (lists, str keys)
    differing = []
    for key in sorted(set(stored) | set(expected)):
        if key == "source" or stored.get(key) == expected.get(key):
            continue
        a, b = stored.get(key), expected.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differing += [f"{key}.{k}" if key != "arrays" else k
                          for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            differing.append(key)
    if not differing:
        return None
    shown = ", ".join(differing[:6]) + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")
    text = f"{shown} differ{'s' if len(differing) == 1 else ''}"
    a, b = stored.get("source"), expected.get("source")
    if isinstance(a, Mapping) and isinstance(b, Mapping) and a != b:
        changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        text += "; " + ", ".join(f"{k}: store has {_short(a.get(k))}, now {_short(b.get(k))}" for k in changed[:3])
    return text


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _difference(stored: str | None, expected: str) -> str:
    """The first setting (``section.key``) on which two configs' JSON texts differ."""
    if stored is None:
        return "the store has no config"
    try:
        old = json.loads(stored)
    except (TypeError, ValueError):
        return "the store's config is not readable"
    new = json.loads(expected)
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return "they differ"
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        if not (isinstance(a, dict) and isinstance(b, dict)):
            if a != b:
                return f"{section}: store has {a!r}, config has {b!r}"
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f"{section}.{key}: store has {a.get(key)!r}, config has {b.get(key)!r}"
    return "they differ"
