"""The store format "actstats.store/1": its schema, creation, opening and verification.

The schema lives here, in actstats: capture writes stores through :func:`create_store`, and
:func:`open_store` checks any store (written by capture or by another program) against the
same tables. docs/store-format.md describes the format for readers and writers in other
languages.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import numpy as np

from actstats.errors import IntegrityError, StoreFormatError

SCHEMA = "actstats.store/1"

RECORD_DIMS = ("run", "epoch")

#: Data variables: name -> (dims, dtype, required).
VARIABLES: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "activation": (("run", "epoch", "layer", "sample", "unit"), "float32", True),
    "preactivation": (("run", "epoch", "layer", "sample", "unit"), "float32", True),
    "weight": (("run", "epoch", "layer", "unit", "fan_in"), "float32", True),
    "bias": (("run", "epoch", "layer", "unit"), "float32", True),
    "readout_weight": (("run", "epoch", "class", "fan_in"), "float32", False),
    "readout_bias": (("run", "epoch", "class"), "float32", False),
    "delta": (("run", "epoch", "layer", "sample", "unit"), "float32", False),
    "weight_grad": (("run", "epoch", "layer", "unit", "fan_in"), "float32", False),
    "train_loss": (("run", "epoch"), "float32", False),
    "test_loss": (("run", "epoch"), "float32", False),
    "train_accuracy": (("run", "epoch"), "float32", False),
    "test_accuracy": (("run", "epoch"), "float32", False),
    "diverged": (("run", "epoch"), "bool", False),
    "complete": (("run", "epoch"), "bool", True),
    "input": (("sample", "feature"), "float32", True),
}

#: Coordinates: name -> (dims, kind). kind: "int", "float" or "str".
COORDINATES: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("run",), "int"),
    "epoch": (("epoch",), "float"),
    "layer": (("layer",), "int"),
    "unit": (("unit",), "int"),
    "fan_in": (("fan_in",), "int"),
    "class": (("class",), "int"),
    "feature": (("feature",), "int"),
    "sample": (("sample",), "int"),
    "step": (("run", "epoch"), "int"),
    "split": (("sample",), "str"),
    "label": (("sample",), "int"),
    "source_index": (("sample",), "int"),
    "width": (("run", "layer"), "int"),
    "depth": (("run",), "int"),
    "activation_fn": (("run",), "str"),
    "init": (("run",), "str"),
    "optimizer": (("run",), "str"),
    "lr": (("run",), "float"),
    "batch_size": (("run",), "int"),
    "seed": (("run",), "int"),
    "dataset": (("run",), "str"),
    "config": (("run",), "str"),
}

ROOT_ATTRIBUTES = (
    "schema",
    "created_at",
    "creation_library",
    "creation_library_version",
    "torch_version",
    "sweep",
)

#: Variables written once per (run, epoch) record, in the order capture writes them.
RECORD_VARIABLES = tuple(
    name for name, (dims, _, _) in VARIABLES.items() if dims[:2] == RECORD_DIMS and name != "complete"
)

#: Target size of one uncompressed chunk of the large record variables. Chosen by
#: measurement (docs/benchmarks.md): big enough that per-chunk overhead is small, small
#: enough that one (run, epoch, layer) slab of a wide layer splits over several chunks.
CHUNK_TARGET_BYTES = 4 * 2**20

#: No compressor: on recorded activations, pre-activations and deltas zstd saves only 7-14%
#: of the bytes and encodes at ~330 MB/s, against ~10 GB/s for the crc32c checksum alone
#: (docs/benchmarks.md, "Codecs"). Writing and reading uncompressed keeps capture cheap.


@dataclass(frozen=True)
class StoreLayout:
    """The sizes of every dimension of a store, and which optional variables it holds."""

    n_runs: int
    epochs: tuple[float, ...]
    n_layers: int
    n_units: int
    n_fan_in: int
    n_classes: int
    n_features: int
    n_samples: int
    optional: frozenset[str] = field(default_factory=frozenset)

    def sizes(self) -> dict[str, int]:
        return {
            "run": self.n_runs,
            "epoch": len(self.epochs),
            "layer": self.n_layers,
            "unit": self.n_units,
            "fan_in": self.n_fan_in,
            "class": self.n_classes,
            "feature": self.n_features,
            "sample": self.n_samples,
        }

    def variables(self) -> list[str]:
        return [
            name
            for name, (_, _, required) in VARIABLES.items()
            if required or name in self.optional
        ]

    def chunks(self, name: str) -> tuple[int, ...]:
        """Chunk shape: one chunk per (run, epoch, layer) slab, split along samples or units
        to stay near CHUNK_TARGET_BYTES; (run, epoch) scalars are chunked per run."""
        dims = VARIABLES[name][0]
        sizes = self.sizes()
        shape = [sizes[d] for d in dims]
        if dims == RECORD_DIMS:
            return (1, len(self.epochs))
        if dims[:2] != RECORD_DIMS:
            return tuple(shape)  # input: small, one chunk
        chunk = [1, 1] + shape[2:]
        if len(dims) == 5:
            chunk[2] = 1  # one layer per chunk
            row_bytes = shape[4] * 4
            chunk[3] = max(1, min(shape[3], CHUNK_TARGET_BYTES // row_bytes))
        return tuple(chunk)


def _codecs(kind: str):
    """The bytes-to-bytes codecs of every array: a crc32c checksum, no compressor."""
    from zarr.codecs import Crc32cCodec

    return [Crc32cCodec()]


def _numpy_dtype(kind: str):
    return {"int": "int64", "float": "float64", "str": str, "float32": "float32", "bool": "bool"}[kind]


def _is_local(path: str) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local_path(path: str) -> str:
    path = str(path)
    return path[len("file://") :] if path.startswith("file://") else path


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
    """
    import zarr

    path = _local_path(os.fspath(path))
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
            "creation_library_version": _version(),
            **attributes,
        }
        group.attrs.update(root_attrs)
        sizes = layout.sizes()
        for name, (dims, kind) in COORDINATES.items():
            values = np.asarray(coordinates[name])
            shape = tuple(sizes[d] for d in dims)
            if values.shape != shape:
                raise ValueError(f"coordinate {name!r} has shape {values.shape}, expected {shape}")
            dtype = _numpy_dtype(kind)
            array = group.create_array(
                name,
                shape=shape,
                chunks=shape,
                dtype=dtype,
                compressors=_codecs(kind),
                dimension_names=list(dims),
                fill_value="" if kind == "str" else 0,
            )
            array[...] = values.astype(dtype) if kind != "str" else values.astype(str)
        for name in layout.variables():
            dims, dtype, _ = VARIABLES[name]
            shape = tuple(sizes[d] for d in dims)
            coords = [c for c, (cdims, _) in COORDINATES.items() if set(cdims) <= set(dims) and cdims != (c,)]
            array = group.create_array(
                name,
                shape=shape,
                chunks=layout.chunks(name),
                dtype=dtype,
                compressors=_codecs(dtype),
                dimension_names=list(dims),
                fill_value=False if dtype == "bool" else np.nan,
                attributes={"coordinates": " ".join(coords)} if coords else {},
            )
            if name == "input":
                array[...] = input_values.astype("float32")
        group.create_group("resume", attributes={"description": "capture checkpoints for --resume"})
        # The hierarchy never changes after creation (capture only fills chunks), so its
        # consolidated metadata stays true; it lets readers open the store with one read.
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(tmp)
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


def tidy_beside(path: str | os.PathLike) -> list[str]:
    """Deal with what killed captures left beside the store at `path`; returns what was done.

    ``.NAME.creating-*`` (a store being built when its capture was killed) is removed.
    ``.NAME.old-*`` (the old store of an ``--overwrite`` killed before it finished) is put
    back at `path` when nothing is there (nothing is lost), and removed when the new store
    is in place. A directory is touched only when no running capture holds its lock and it
    is older than :data:`ABANDONED_AFTER_SECONDS`.
    """
    import time

    path = os.path.abspath(_local_path(os.fspath(path)))
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("actstats")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@dataclass(frozen=True)
class _Expected:
    """Which chunks must exist: those of complete records, for the layers (and units) a run
    has, and the probe inputs. Any other chunk may be absent (it then reads as the fill
    value: NaN padding, or False for a record not yet written). ``complete`` None: unknown
    (damaged), so no record chunk is required."""

    complete: np.ndarray | None  # (run, epoch) bool
    depth: np.ndarray | None  # (run,)
    width: np.ndarray | None  # (run, layer)
    epochs: np.ndarray | None  # (epoch,)

    def reason(self, dims: tuple[str, ...], chunks: tuple[int, ...], index: tuple[int, ...]) -> str | None:
        """Why chunk `index` of an array with `dims` must exist, or None if it may be absent."""
        if dims == VARIABLES["input"][0]:
            return "the probe inputs are always written"
        if dims[:2] != RECORD_DIMS or self.complete is None:
            return None
        r = index[0]
        if r >= self.complete.shape[0]:
            return None
        if dims == RECORD_DIMS:
            return f"run {r} has complete records" if self.complete[r].any() else None
        e = index[1]
        if e >= self.complete.shape[1] or not self.complete[r, e]:
            return None
        if dims[2] == "layer":
            first = index[2] * chunks[2]
            layers = range(first, first + chunks[2])
            if self.depth is not None:
                layers = [layer for layer in layers if layer < self.depth[r]]
            if not layers:
                return None
            if "unit" in dims and self.width is not None:
                axis = dims.index("unit")
                first_unit = index[axis] * chunks[axis]
                if not any(layer < self.width.shape[1] and self.width[r, layer] > first_unit for layer in layers):
                    return None
        epoch = f"{self.epochs[e]:g}" if self.epochs is not None and e < len(self.epochs) else f"#{e}"
        return f"run {r}, epoch {epoch} is complete"


def _covered_chunks(key, shape, chunks) -> list[tuple[int, ...]] | None:
    """Indices of the chunks that an ``array[key]`` selection touches (None: cannot tell)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis or k is None for k in key):
        return None
    key = key + (slice(None),) * (len(shape) - len(key))
    ranges = []
    for k, n, c in zip(key, shape, chunks):
        if isinstance(k, slice):
            positions = range(*k.indices(n))
            if positions.step == 1:
                ranges.append(list(range(positions.start // c, -(-positions.stop // c))) if positions else [])
                continue
        elif isinstance(k, (int, np.integer)):
            positions = [int(k) % n] if n else []
        else:
            try:
                positions = [int(i) % n for i in np.asarray(k).ravel()]
            except (TypeError, ValueError):
                return None
        ranges.append(sorted({p // c for p in positions}))
    return [tuple(int(i) for i in index) for index in itertools.product(*ranges)]


class _CheckedArray:
    """A zarr array whose read errors name the variable and chunk (for dask.from_array).

    zarr reads an absent chunk as the fill value; when the chunk belongs to a complete record
    (see :class:`_Expected`), that is a deleted chunk, not padding, and reading it raises
    IntegrityError instead of handing NaN to a statistic.
    """

    def __init__(self, array, name: str, location: str, expected: _Expected | None = None):
        self.array = array
        self.name = name
        self.location = location
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.dims = VARIABLES[name][0] if name in VARIABLES else ()
        self.expected = expected
        self._present: set[tuple[int, ...]] = set()
        self._direct = _direct_reader(array, name, location)

    def __dask_tokenize__(self):
        return (type(self).__name__, self.location, self.name, self.shape, str(self.dtype))

    def __getitem__(self, key):
        if self._direct is not None:
            values = self._direct.read(key)
            if values is not None:  # else: not one whole chunk, or absent: zarr decides
                return values
        try:
            values = self.array[key]
        except Exception as exc:  # any decode failure: checksum, truncation, codec
            where = _describe_selection(key, self.array.chunks)
            raise IntegrityError(
                f"{self.location}: variable {self.name!r} {where} is damaged ({type(exc).__name__}: {exc})"
            ) from None
        if self.expected is not None and _holds_fill(values):
            self._check_present(key)
        return values

    def _check_present(self, key) -> None:
        covered = _covered_chunks(key, self.shape, self.array.chunks)
        for index in covered or ():
            if index in self._present:
                continue
            reason = self.expected.reason(self.dims, self.array.chunks, index)
            if reason is None:
                continue
            if not _chunk_exists(self.array, self.array.metadata.encode_chunk_key(index)):
                raise IntegrityError(
                    f"{self.location}: variable {self.name!r} chunk {index} is missing although {reason}"
                )
            self._present.add(index)


class _DirectChunks:
    """Reads whole chunks of a local array whose codecs are ``bytes`` + ``crc32c`` (every
    array capture writes) with plain file calls: the chunk's C-order bytes, then their
    CRC-32C, checked here. zarr-python's read path does the same work in Python under the
    GIL at ~1 GB/s; this reaches the file system's speed and lets dask's threads overlap
    (docs/benchmarks.md, "Scale"). Anything else — a selection that is not one chunk, an
    absent chunk — is left to zarr (returns None)."""

    def __init__(self, array, name: str, location: str, directory: str):
        self.name, self.location = name, location
        self.directory = directory
        self.chunks = tuple(array.chunks)
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.encode_key = array.metadata.encode_chunk_key
        self.nbytes = int(np.prod(self.chunks)) * self.dtype.itemsize

    def read(self, key):
        import crc32c

        if not isinstance(key, tuple) or len(key) != len(self.shape):
            return None
        index, region = [], []
        for k, size, n in zip(key, self.chunks, self.shape):
            if not isinstance(k, slice) or k.step not in (None, 1):
                return None
            start, stop, _ = k.indices(n)
            if start % size or stop != min(start + size, n):
                return None
            index.append(start // size)
            region.append(slice(0, stop - start))
        path = os.path.join(self.directory, *self.encode_key(tuple(index)).split("/"))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IntegrityError(
                f"{self.location}: variable {self.name!r} chunk {tuple(index)} cannot be read ({exc.strerror})"
            ) from None
        problem = None
        if len(data) != self.nbytes + 4:
            problem = f"{len(data)} bytes, expected {self.nbytes + 4}"
        elif crc32c.crc32c(memoryview(data)[:-4]) != int.from_bytes(data[-4:], "little"):
            problem = "CRC-32C checksum mismatch"
        if problem:
            raise IntegrityError(f"{self.location}: variable {self.name!r} chunk {tuple(index)} is damaged ({problem})")
        values = np.frombuffer(data, dtype=self.dtype, count=self.nbytes // self.dtype.itemsize)
        return values.reshape(self.chunks)[tuple(region)].astype(self.dtype.newbyteorder("="), copy=False)


def _direct_reader(array, name: str, location: str) -> _DirectChunks | None:
    """A :class:`_DirectChunks` for a local array with exactly the bytes+crc32c codecs."""
    try:
        from zarr.codecs import BytesCodec, Crc32cCodec

        codecs = list(array.metadata.codecs)
        plain = (
            len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], Crc32cCodec)
            and codecs[0].endian is not None and codecs[0].endian.value == "little"
            and np.dtype(array.dtype).kind in "fiub"
            and array.metadata.chunk_grid is not None and hasattr(array.metadata.chunk_grid, "chunk_shape")
        )
    except (ImportError, AttributeError):
        return None
    if not plain or not _is_local(location):
        return None
    directory = os.path.join(_local_path(location), name)
    return _DirectChunks(array, name, location, directory) if os.path.isdir(directory) else None


def _holds_fill(values) -> bool:
    """Whether a read block has any fill value in it (NaN, or False): the only blocks that
    can come from an absent chunk."""
    values = np.asarray(values)
    if values.size == 0:
        return False
    if values.dtype.kind == "f":
        return bool(np.isnan(values).any())
    if values.dtype.kind == "b":
        return not bool(values.all())
    return False


def _describe_selection(key, chunks) -> str:
    if not isinstance(key, tuple):
        key = (key,)
    index = []
    for k, c in zip(key, chunks):
        if isinstance(k, slice):
            index.append(str((k.start or 0) // c))
        elif isinstance(k, (int, np.integer)):
            index.append(str(int(k) // c))
        else:
            index.append("?")
    return f"chunk ({', '.join(index)})" if index else "chunk"


def _open_group(path):
    import zarr

    location = os.fspath(path) if not isinstance(path, str) else path
    try:
        if _is_local(location) and not os.path.exists(_local_path(location)):
            raise StoreFormatError(f"{location}: no such store")
        # A URL goes to zarr's FsspecStore (read-only), through whatever fsspec back end its
        # protocol names (memory://, s3:// with s3fs, gs:// with gcsfs, ...); file:// and
        # plain paths go to zarr's LocalStore.
        group = zarr.open_group(_local_path(location) if _is_local(location) else location, mode="r")
        if group.metadata.zarr_format != 3:
            raise StoreFormatError(f"{location}: Zarr format {group.metadata.zarr_format}, expected 3")
        attrs = dict(group.attrs)
        arrays = dict(group.arrays())
    except StoreFormatError:
        raise
    except Exception as exc:
        if not _is_local(location):
            problem = _url_problem(location, exc)
            if problem:
                raise StoreFormatError(f"{location}: {problem}") from None
        raise StoreFormatError(f"{location}: not a Zarr group ({type(exc).__name__}: {exc})") from None
    return location, group, attrs, arrays


def _url_problem(url: str, exc: Exception) -> str | None:
    """Why a URL could not be opened, when the reason is the URL rather than its content:
    no fsspec back end for its protocol (or the back end is not installed), or nothing there."""
    if isinstance(exc, ImportError) or (isinstance(exc, ValueError) and "protocol" in str(exc).lower()):
        return f"cannot open this URL ({exc})"
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        if not fs.exists(root):
            return "no such store"
    except Exception:  # the original error says more
        return None
    return None


def _array_problem(name, array, expected_dims, expected_dtype) -> str | None:
    """What is wrong with one array's metadata (dimension names, checksum codec, data type)."""
    from zarr.codecs import Crc32cCodec

    dims = tuple(array.metadata.dimension_names or ())
    if dims != tuple(expected_dims):
        return f"variable {name!r} has dimension_names {list(dims)}, expected {list(expected_dims)}"
    codecs = getattr(array.metadata, "codecs", ())
    if not any(isinstance(c, Crc32cCodec) for c in codecs):
        return f"variable {name!r} has no crc32c checksum codec"
    if expected_dtype is not None:
        kind = np.dtype(array.dtype).kind if not _is_string(array.dtype) else "U"
        ok = {
            "float32": np.dtype(array.dtype) == np.float32 if kind == "f" else False,
            "bool": kind == "b",
            "int": kind in "iu",
            "float": kind == "f",
            "str": kind in "UTO",
        }[expected_dtype]
        if not ok:
            return f"variable {name!r} has data type {array.dtype}, expected {expected_dtype}"
    return None


def _format_problems(attrs: dict, arrays: dict) -> tuple[list[str], set[str]]:
    """Every way a group departs from the format, in the order :func:`open_store` checks,
    and the names of the arrays whose metadata is wrong."""
    problems: list[str] = []
    bad: set[str] = set()
    schema = attrs.get("schema")
    if schema is None:
        problems.append("root attribute 'schema' is missing (not an actstats store)")
    elif schema != SCHEMA:
        problems.append(f"schema {schema!r} is not supported (expected {SCHEMA!r})")
    for key in ROOT_ATTRIBUTES:
        if key != "schema" and key not in attrs:
            problems.append(f"root attribute {key!r} is missing")
    for name, (dims, dtype, required) in VARIABLES.items():
        if name not in arrays:
            if required:
                problems.append(f"required variable {name!r} is missing")
            continue
        problem = _array_problem(name, arrays[name], dims, dtype)
        if problem:
            problems.append(problem)
            bad.add(name)
    for name, (dims, kind) in COORDINATES.items():
        if name not in arrays:
            problems.append(f"coordinate {name!r} is missing")
            continue
        problem = _array_problem(name, arrays[name], dims, kind)
        if problem:
            problems.append(problem)
            bad.add(name)
    # each dimension's size is the one most arrays agree on, so that an edited array is
    # named, not the arrays that agree with each other
    checked = [n for n in arrays if (n in VARIABLES or n in COORDINATES) and n not in bad]
    votes: dict[str, Counter] = {}
    for name in checked:
        for dim, size in zip(arrays[name].metadata.dimension_names, arrays[name].shape):
            votes.setdefault(dim, Counter())[size] += 1
    sizes = {}
    for dim, counts in votes.items():
        ranked = counts.most_common()
        # a tie names no size: every array with that dimension is then suspect
        sizes[dim] = ranked[0][0] if len(ranked) == 1 or ranked[0][1] > ranked[1][1] else None
    for name in checked:
        for dim, size in zip(arrays[name].metadata.dimension_names, arrays[name].shape):
            if size != sizes[dim]:
                others = sizes[dim] if sizes[dim] is not None else " or ".join(str(s) for s in votes[dim] if s != size)
                problems.append(f"variable {name!r} has {dim}={size}, but other variables have {dim}={others}")
                bad.add(name)
                break
    return problems, bad


def _is_string(dtype) -> bool:
    try:
        return np.dtype(dtype).kind in "UTO"
    except TypeError:
        return True


def open_store(path: str | os.PathLike, *, chunks: str | None = "zarr"):
    """Open a store lazily as an xarray Dataset (dask-backed), after checking its format.

    Parameters
    ----------
    path
        A local path or an fsspec URL of a Zarr v3 group in the actstats.store/1 format.
    chunks
        "zarr" (default): one dask chunk per Zarr chunk.

    Returns
    -------
    xarray.Dataset
        Data variables as dask arrays whose read errors name the variable and the chunk
        (:class:`~actstats.errors.IntegrityError`), including a chunk of a complete record
        that is absent; coordinates and ``complete`` loaded in memory (``complete`` as it
        was at opening: records completed later by a running capture stay masked).

    Raises
    ------
    StoreFormatError
        With a message naming what is missing or wrong.
    IntegrityError
        When a coordinate or ``complete`` cannot be read.

    Examples
    --------
    >>> ds = open_store("data/default.zarr")  # doctest: +SKIP
    >>> ds.activation.dims
    ('run', 'epoch', 'layer', 'sample', 'unit')
    """
    import dask.array as da
    import xarray as xr

    location, group, attrs, arrays = _open_group(path)
    problems, _ = _format_problems(attrs, arrays)
    if problems:
        raise StoreFormatError(f"{location}: {problems[0]}")

    coords = {}
    for name, (dims, kind) in COORDINATES.items():
        try:
            values = arrays[name][...]
        except Exception as exc:
            raise IntegrityError(f"{location}: coordinate {name!r} is damaged ({type(exc).__name__}: {exc})") from None
        if kind == "str":
            values = np.asarray(values, dtype=object).astype(str)
        coords[name] = (dims, values)
    try:
        complete = np.asarray(arrays["complete"][...])
    except Exception as exc:
        raise IntegrityError(f"{location}: variable 'complete' is damaged ({type(exc).__name__}: {exc})") from None
    expected = _Expected(complete, np.asarray(coords["depth"][1]), np.asarray(coords["width"][1]),
                         np.asarray(coords["epoch"][1]))
    data_vars = {}
    for name, (dims, _, _) in VARIABLES.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if name == "complete":
            data = complete
        else:
            checked = _CheckedArray(array, name, location, expected)
            data = da.from_array(
                checked,
                chunks=array.chunks,
                asarray=False,
                lock=False,
                meta=np.empty((0,) * array.ndim, dtype=array.dtype),
                name=f"actstats-{name}-{da.core.tokenize(checked)}",
            )
        var_attrs = {k: v for k, v in array.attrs.items() if k != "coordinates"}
        data_vars[name] = xr.Variable(dims, data, attrs=var_attrs)
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


@dataclass
class VerifyReport:
    """What :func:`verify_store` found: damaged chunks, missing chunks and incomplete records."""

    location: str
    damaged: list[str] = field(default_factory=list)
    incomplete: list[tuple[int, float]] = field(default_factory=list)
    chunks_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.incomplete

    def lines(self) -> list[str]:
        out = [f"damaged: {d}" for d in self.damaged]
        out += [f"incomplete: run {r}, epoch {e:g}" for r, e in self.incomplete]
        return out


#: The metadata fields that decide how an array's bytes are read.
_LAYOUT_FIELDS = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "codecs", "fill_value", "dimension_names")


def verify_store(path, *, progress: bool | None = None) -> VerifyReport:
    """Read every chunk of every array; list damaged and missing chunks, damaged metadata and
    incomplete records.

    Metadata is damaged when the group departs from the format (a wrong schema version, a
    missing variable, another data type or shape than the other variables say) or when an
    array's own ``zarr.json`` disagrees with the consolidated copy in the root ``zarr.json``
    (readers that use one or the other would read different data). A chunk is damaged when
    it fails to decode (checksum mismatch, truncation). A chunk is missing when a (run, epoch)
    is marked complete but a chunk that should hold its data (a layer the run has) is absent.
    A record is incomplete when its step is scheduled (step >= 0) but `complete` is false.

    Raises StoreFormatError only when `path` is not an actstats store at all (no Zarr group,
    or no ``schema`` root attribute); everything else is listed in the report.
    """
    from tqdm.auto import tqdm

    location, group, attrs, arrays = _open_group(path)
    if "schema" not in attrs:
        raise StoreFormatError(f"{location}: root attribute 'schema' is missing (not an actstats store)")
    report = VerifyReport(location)
    problems, bad = _format_problems(attrs, arrays)
    report.damaged += problems
    report.damaged += _metadata_mismatches(group, arrays)

    def read(name):
        if name not in arrays or name in bad:
            return None
        try:
            return np.asarray(arrays[name][...])
        except Exception:  # listed as damaged by the chunk loop below
            return None

    complete = read("complete")
    if complete is not None:
        complete = complete.astype(bool)
    steps, depth, width, epochs = read("step"), read("depth"), read("width"), read("epoch")
    expected = _Expected(complete, depth, width, epochs)
    names = [n for n in list(VARIABLES) + list(COORDINATES) if n in arrays and n not in bad]
    total = sum(int(np.prod(arrays[n].cdata_shape)) for n in names)
    with tqdm(total=total, desc="verify", unit="chunk", disable=_progress_disabled(progress)) as bar:
        for name in names:
            array = arrays[name]
            kind = "variable" if name in VARIABLES else "coordinate"
            dims = VARIABLES[name][0] if name in VARIABLES else COORDINATES[name][0]
            for index in np.ndindex(*array.cdata_shape):
                bar.update(1)
                try:
                    exists = _chunk_exists(array, array.metadata.encode_chunk_key(index))
                    if exists:
                        array.get_block_selection(index)
                        report.chunks_read += 1
                except Exception as exc:
                    report.damaged.append(f"{kind} {name!r} chunk {index}: {type(exc).__name__}: {exc}")
                    continue
                if not exists:
                    reason = expected.reason(dims, tuple(array.chunks), index)
                    if reason is not None:
                        report.damaged.append(f"{kind} {name!r} chunk {index} is missing although {reason}")
    if complete is not None and epochs is not None and complete.shape[1:] == epochs.shape:
        scheduled = steps >= 0 if steps is not None and steps.shape == complete.shape else np.ones_like(complete)
        for r, e in zip(*np.nonzero(scheduled & ~complete)):
            report.incomplete.append((int(r), float(epochs[e])))
    return report


def _metadata_mismatches(group, arrays: dict) -> list[str]:
    """Arrays whose own zarr.json is missing, unreadable or differs from the consolidated copy."""
    consolidated = getattr(group.metadata, "consolidated_metadata", None)
    if consolidated is None:
        return []
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    out = []
    store, prefix = group.store_path.store, group.store_path.path
    for name in arrays:
        what = f"{'coordinate' if name in COORDINATES else 'variable'} {name!r}"
        key = f"{prefix}/{name}/zarr.json" if prefix else f"{name}/zarr.json"
        try:
            buffer = sync(store.get(key, prototype=default_buffer_prototype()))
            if buffer is None:
                out.append(f"{what}: its zarr.json is missing")
                continue
            own = json.loads(buffer.to_bytes())
            if not isinstance(own, dict):
                raise ValueError("not a JSON object")
        except Exception as exc:
            out.append(f"{what}: its zarr.json is not readable ({type(exc).__name__}: {exc})")
            continue
        listed = arrays[name].metadata.to_dict()
        listed = json.loads(json.dumps(listed, default=_json_default))
        differing = [k for k in _LAYOUT_FIELDS if own.get(k) != listed.get(k)]
        if differing:
            k = differing[0]
            out.append(
                f"{what}: its zarr.json says {k} = {_brief(own.get(k))}, the consolidated metadata "
                f"in the root zarr.json says {_brief(listed.get(k))}"
            )
    return out


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _brief(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _chunk_exists(array, key: str) -> bool:
    from zarr.core.sync import sync
    from zarr.storage import LocalStore

    store = array.store_path.store
    prefix = array.store_path.path
    full = f"{prefix}/{key}" if prefix else key
    if isinstance(store, LocalStore):  # a stat, without a round trip through zarr's event loop
        return os.path.isfile(os.path.join(store.root, *full.split("/")))
    return sync(store.exists(full))


def _progress_disabled(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None hides the bar when stderr is not a terminal."""
    from actstats.options import OPTIONS

    if progress is None:
        progress = OPTIONS["progress"]
    if progress is False:
        return True
    return None


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys: equal configs give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def list_chunk_keys(array) -> Iterable[str]:  # pragma: no cover - small helper for tests
    for index in np.ndindex(*array.cdata_shape):
        yield array.metadata.encode_chunk_key(index)
