"""Opening a store: its format checked against the schema, its data read lazily and checked.

:func:`open_store` refuses a group that departs from the format with a message naming what
is wrong, and wraps each data variable in a :class:`_CheckedArray` for dask: a read error
names the variable and the chunk, and a chunk of a complete record that is absent is an
error, not NaN handed to a statistic. Whole chunks of local arrays are read with
:class:`~actstats.store.chunks.ChunkFiles` (plain file reads, checked here), not zarr-python.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter

import numpy as np

from actstats.errors import IntegrityError, StoreFormatError
from actstats.store.chunks import ChunkFiles, DamagedChunkError
from actstats.store.manifest import ExpectedChunks, chunk_exists, missing_coordinate_chunks, read_manifest
from actstats.store.padding import describe_beyond, fan_in_widths, values_beyond_width
from actstats.store.paths import is_local, local_path
from actstats.store import text
from actstats.store.schema import (
    COORDINATES, OPTIONAL_COORDINATES, ROOT_ATTRIBUTES, SCHEMA, SCHEMA_1, TEXT_ENCODING, VARIABLES,
)


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


#: The variables whose values beyond a layer's width (or fan-in) must be NaN.
PADDED_VARIABLES = ("activation", "preactivation", "delta", "weight", "weight_grad", "bias")


class _CheckedArray:
    """A zarr array whose read errors name the variable and chunk (for dask.from_array).

    zarr reads an absent chunk as the fill value; when the chunk belongs to a complete record
    (see :class:`ExpectedChunks`), that is a deleted chunk, not padding, and reading it raises
    IntegrityError instead of handing NaN to a statistic.
    """

    def __init__(self, array, name: str, location: str, expected: ExpectedChunks | None = None, padding=None):
        self.padding = padding  # (width, fan_in, complete, epochs, layers): values beyond a width are refused
        self.array = array
        self.name = name
        self.location = location
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.dims = VARIABLES[name][0] if name in VARIABLES else ()
        self.expected = expected
        self._present: set[tuple[int, ...]] = set()
        self._files = _chunk_files(array, name, location)

    def __dask_tokenize__(self):
        return (type(self).__name__, self.location, self.name, self.shape, str(self.dtype))

    def __getitem__(self, key):
        return self._refuse_beyond_width(key, self._read(key))

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """The Zarr chunk shape of the array."""
        return tuple(int(c) for c in self.array.chunks)

    @property
    def reads_files(self) -> bool:
        """Whether whole chunks are read with :class:`ChunkFiles` (a local array in a codec
        chain it decodes), so that :meth:`read_block` can fill a buffer of the caller's."""
        return self._files is not None

    def read_block(self, key, out=None):
        """``self[key]`` (the same checks), read into `out` when `key` selects whole chunks
        and `out` is a C-contiguous buffer of the block's shape and native dtype (the caller
        reuses it from block to block: a new 16 MiB array costs about as much in page faults
        as reading it); else a new array."""
        values = self._read_whole_chunk(key, out) if self._files is not None else None
        if values is None:
            values = self._read(key)
        return self._refuse_beyond_width(key, values)

    def _refuse_beyond_width(self, key, values):
        """A value beyond a layer's width or fan-in (not NaN) in a complete record: a format
        error, raised whenever a read meets one (:mod:`actstats.store.padding`)."""
        if self.padding is None or not isinstance(key, tuple) or len(key) != self.ndim or not all(
                (isinstance(k, slice) and k.step in (None, 1)) or isinstance(k, (int, np.integer)) for k in key):
            return values  # dask reads blocks as slices (and integers where a dim is indexed)
        width, fan_in, complete, epochs, layers, rows = self.padding
        block = np.asarray(values)
        origin = []
        for axis, (k, n) in enumerate(zip(key, self.shape)):
            if isinstance(k, slice):
                origin.append(k.indices(n)[0])
            else:
                origin.append(int(k) % n)
                block = np.expand_dims(block, axis)
        found = values_beyond_width(self.dims, block, tuple(origin), width, fan_in, complete, rows)
        if found:
            raise StoreFormatError(f"{self.location}: {describe_beyond(self.name, found, epochs, layers)}; "
                                   "actstats verify lists every such place")
        return values

    def _read(self, key):
        if self._files is not None:
            values = self._read_whole_chunk(key)
            if values is not None:  # else: not whole chunks: zarr decides
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
            if not chunk_exists(self.array, self.array.metadata.encode_chunk_key(index)):
                raise IntegrityError(
                    f"{self.location}: variable {self.name!r} chunk {index} is missing although {reason}"
                )
            self._present.add(index)

    def _read_whole_chunk(self, key, out=None):
        """`key` read with :class:`ChunkFiles` if it selects whole chunks (one or several,
        clipped at the array's edge; an integer picks one position of a chunk); else None, and
        zarr decides. Plain file reads straight into the block: zarr-python's read path does
        the same work in Python under the GIL at ~1 GB/s, this reaches the file system's speed
        and lets dask's threads overlap (docs/benchmarks.md, "Scale"). An absent chunk is the
        fill value unless it must exist (:class:`ExpectedChunks`): then IntegrityError, as zarr's
        read followed by :meth:`_check_present` says."""
        files = self._files
        if not isinstance(key, tuple) or len(key) != len(files.shape):
            return None
        axes = []  # per axis: (first chunk, number of chunks, start inside the first chunk, int or slice)
        for k, size, n in zip(key, files.chunks, files.shape):
            if isinstance(k, (int, np.integer)) and -n <= k < n:  # one position (a dim selected away)
                position = int(k) % n
                axes.append((position // size, 1, position % size, None))
                continue
            if not isinstance(k, slice) or k.step not in (None, 1):
                return None
            start, stop, _ = k.indices(n)
            if start % size or stop <= start or (stop % size and stop != n):
                return None
            axes.append((start // size, -(-(stop - start) // size), 0, stop - start))
        shape = tuple(extent for _, _, _, extent in axes if extent is not None)
        dtype = files.dtype.newbyteorder("=")
        if out is None or out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            out = np.empty(shape, dtype=dtype)
        for offset in itertools.product(*(range(count) for _, count, _, _ in axes)):
            index = tuple(first + o for (first, _, _, _), o in zip(axes, offset))
            region, target = [], []
            for (first, _, inside, extent), o, size, n, i in zip(axes, offset, files.chunks, files.shape, index):
                if extent is None:
                    region.append(inside)
                    continue
                length = min(size, n - i * size)
                region.append(slice(0, length))
                target.append(slice(o * size, o * size + length))
            part = out[(*target, Ellipsis)]  # a view, also of a 0-d block
            try:
                found = files.read_region(index, tuple(region), part)
            except DamagedChunkError as exc:
                raise IntegrityError(f"{self.location}: variable {self.name!r} chunk {index} is damaged ({exc})") from None
            except OSError as exc:
                raise IntegrityError(
                    f"{self.location}: variable {self.name!r} chunk {index} cannot be read ({exc.strerror})"
                ) from None
            if not found:
                reason = self.expected.reason(self.dims, files.chunks, index) if self.expected is not None else None
                if reason is not None:
                    raise IntegrityError(
                        f"{self.location}: variable {self.name!r} chunk {index} is missing although {reason}")
                part[...] = files.fill_value
        return out


def _read_all(array, name: str, location: str) -> np.ndarray:
    """``array[...]``, a local array's chunk files read here (:func:`_chunk_files`: ~0.1 ms a
    small array against ~1 ms through zarr's event loop; ``open_store`` reads some twenty of
    them), else through zarr. An absent chunk is the fill value, as zarr reads it. Raises
    :class:`DamagedChunkError` or OSError for a chunk that cannot be read."""
    files = _chunk_files(array, name, location)
    if files is None:
        return array[...]
    out = np.empty(files.shape, dtype=files.dtype.newbyteorder("="))
    grid = [-(-n // c) for n, c in zip(files.shape, files.chunks)]
    for index in np.ndindex(*grid):
        target = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, files.chunks, files.shape))
        part = out[target]
        if not files.read_region(index, tuple(slice(0, t.stop - t.start) for t in target), part):
            part[...] = files.fill_value
    return out


def _chunk_files(array, name: str, location: str) -> ChunkFiles | None:
    """:class:`ChunkFiles` for reading a local array with the codecs bytes (little-endian),
    then optionally compressors that numcodecs decodes (blosc, zstd, gzip), then crc32c; a
    numeric or boolean data type of more than one byte (one-byte types name no byte order:
    zarr reads those) and a regular chunk grid. Anything else (sharding, other codecs) is
    read by zarr."""
    try:
        from zarr.codecs import BytesCodec

        codecs = list(array.metadata.codecs)
        readable = (
            len(codecs) >= 2 and isinstance(codecs[0], BytesCodec)
            and codecs[0].endian is not None and codecs[0].endian.value == "little"
            and np.dtype(array.dtype).kind in "fiub"
            and array.metadata.chunk_grid is not None and hasattr(array.metadata.chunk_grid, "chunk_shape")
        )
        if readable and not is_local(location):
            return None
        store_path = local_path(location) if readable else None
        if not readable or not os.path.isdir(os.path.join(store_path, name)):
            return None
        return ChunkFiles(store_path, name, array, read_only=True)
    except (ImportError, AttributeError, ValueError):  # ValueError: a codec chain ChunkFiles does not read
        return None


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

    from actstats.store.filestore import RegularFilesStore

    location = os.fspath(path) if not isinstance(path, str) else path
    try:
        if is_local(location) and not os.path.exists(local_path(location)):
            raise StoreFormatError(f"{location}: no such store")
        # A URL goes to zarr's FsspecStore (read-only), through whatever fsspec back end its
        # protocol names (memory://, s3:// with s3fs, gs:// with gcsfs, ...); file:// and
        # plain paths go to zarr's LocalStore.
        # Local stores are read through RegularFilesStore: a FIFO in a file's place is
        # refused (DamagedChunkError) instead of blocking the read for ever.
        store = RegularFilesStore(local_path(location), read_only=True) if is_local(location) else location
        group = zarr.open_group(store, mode="r")
        if group.metadata.zarr_format != 3:
            raise StoreFormatError(f"{location}: Zarr format {group.metadata.zarr_format}, expected 3")
        attrs = dict(group.attrs)
        arrays = dict(group.arrays())
    except StoreFormatError:
        raise
    except Exception as exc:
        if not is_local(location):
            problem = _url_problem(location, exc)
            if problem:
                raise StoreFormatError(f"{location}: {problem}") from None
        raise StoreFormatError(f"{location}: not a Zarr group ({type(exc).__name__}: {exc})") from None
    return location, group, attrs, arrays


def _url_problem(url: str, exc: Exception) -> str | None:
    """Why a URL could not be opened, when the reason is the URL rather than its content:
    no fsspec back end for its protocol (or the back end is not installed), no credentials,
    no such bucket, or nothing there (:func:`actstats.store.remote.url_problem`)."""
    from actstats.store.remote import url_problem

    return url_problem(url, exc)


def _array_problem(name, array, expected_dims, expected_dtype, text_encoding=None) -> str | None:
    """What is wrong with one array's metadata (dimension names, checksum codec, data type,
    and a text coordinate's labels). `text_encoding`: how the store's schema stores text,
    "codes" or "strings" (:data:`~actstats.store.schema.TEXT_ENCODING`); None: either."""
    from zarr.codecs import Crc32cCodec

    dims = tuple(array.metadata.dimension_names or ())
    if dims != tuple(expected_dims):
        return f"variable {name!r} has dimension_names {list(dims)}, expected {list(expected_dims)}"
    codecs = getattr(array.metadata, "codecs", ())
    if not any(isinstance(c, Crc32cCodec) for c in codecs):
        return f"variable {name!r} has no crc32c checksum codec"
    if expected_dtype == "str":
        return _text_problem(name, array, text_encoding)
    if expected_dtype is not None:
        kind = np.dtype(array.dtype).kind if not _is_string(array.dtype) else "U"
        ok = {
            "float32": np.dtype(array.dtype) == np.float32 if kind == "f" else False,
            "bool": kind == "b",
            "int": kind in "iu",
            "float": kind == "f",
        }[expected_dtype]
        if not ok:
            return f"variable {name!r} has data type {array.dtype}, expected {expected_dtype}"
    return None


def _text_problem(name, array, text_encoding) -> str | None:
    """A text coordinate: integer codes with valid labels (actstats.store/2), or strings
    (actstats.store/1)."""
    coded = text.is_code_type(array.dtype)
    if coded and text_encoding != "strings":
        return text.label_problem(name, array.attrs)
    if not coded and _is_string(array.dtype) and text_encoding != "codes":
        return None
    expected = {"codes": f"integer codes with their labels (text in {SCHEMA}, docs/store-format.md)",
                "strings": f"str ({SCHEMA_1} stores text as strings)"}.get(text_encoding, "integer codes or str")
    return f"variable {name!r} has data type {array.dtype}, expected {expected}"


def _text_encoding(attrs: dict) -> str | None:
    """How the store's schema stores text ("codes", "strings"); None for an unknown schema
    (reported by itself: then either is taken)."""
    return TEXT_ENCODING.get(attrs.get("schema")) if isinstance(attrs.get("schema"), str) else None


def _format_problems(attrs: dict, arrays: dict) -> tuple[list[str], set[str]]:
    """Every way a group departs from the format, in the order :func:`open_store` checks,
    and the names of the arrays whose metadata is wrong."""
    problems: list[str] = []
    bad: set[str] = set()
    schema = attrs.get("schema")
    if schema is None:
        problems.append("root attribute 'schema' is missing (not an actstats store)")
    elif not isinstance(schema, str) or schema not in TEXT_ENCODING:
        problems.append(f"schema {schema!r} is not supported (expected {SCHEMA!r} or {SCHEMA_1!r})")
    text_encoding = _text_encoding(attrs)
    for key in ROOT_ATTRIBUTES:
        if key != "schema" and key not in attrs:
            problems.append(f"root attribute {key!r} is missing")
    # (name, dims, data type, what to say if it is absent): variables, then coordinates
    tables = [(n, d, t, f"required variable {n!r} is missing" if required else None)
              for n, (d, t, required) in VARIABLES.items()]
    tables += [(n, d, kind, f"coordinate {n!r} is missing") for n, (d, kind) in COORDINATES.items()]
    tables += [(n, d, kind, None) for n, (d, kind) in OPTIONAL_COORDINATES.items()]
    for name, dims, kind, if_absent in tables:
        if name not in arrays:
            if if_absent:
                problems.append(if_absent)
            continue
        problem = _array_problem(name, arrays[name], dims, kind, text_encoding)
        if problem:
            problems.append(problem)
            bad.add(name)
    # each dimension's size is the one most arrays agree on, so that an edited array is
    # named, not the arrays that agree with each other
    checked = [n for n in arrays if (n in VARIABLES or n in COORDINATES or n in OPTIONAL_COORDINATES) and n not in bad]
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


#: ``open_store(chunks="auto")`` groups whole Zarr chunks into dask chunks of about this many
#: bytes. One dask task costs ~1 ms of scheduling on the calling thread, against ~0.5 ms to
#: read and check a 4 MiB chunk: a task of a few chunks keeps the scheduler off the critical
#: path, and 16 MiB keeps what a task holds (a float64 copy and masks in the generic chunk
#: function) small beside the ~160 MB the imports take (docs/benchmarks.md, "third round").
DASK_CHUNK_BYTES = 16 * 2**20


def dask_chunks(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int,
                target: int = DASK_CHUNK_BYTES) -> tuple[int, ...]:
    """Dask chunk sizes made of whole Zarr `chunks`: from the last axis inward, an axis grows
    by whole chunks until the block reaches `target` bytes; an axis grows only once every
    axis after it is whole (a block is then a run of consecutive chunks in C order).

    Examples
    --------
    >>> dask_chunks((9, 12, 5, 2000, 1000), (1, 1, 1, 1048, 1000), 4)
    (1, 1, 2, 2000, 1000)
    >>> dask_chunks((2, 3, 4, 10), (1, 1, 1, 10), 8, target=400)
    (1, 1, 4, 10)
    """
    out = list(chunks)
    for axis in range(len(shape) - 1, -1, -1):
        c, n = chunks[axis], shape[axis]
        if c <= 0 or n <= c:
            out[axis] = max(c, 0) if n > 0 else c
            continue
        block = itemsize * int(np.prod(out, dtype=np.int64))
        factor = min(-(-n // c), max(1, target // max(block, 1)))
        out[axis] = min(c * factor, n) if factor * c >= n else c * factor
        if out[axis] < n:
            break
    return tuple(int(v) for v in out)


def open_store(path: str | os.PathLike, *, chunks: str | None = "auto"):
    """Open a store lazily as an xarray Dataset (dask-backed), after checking its format.

    Parameters
    ----------
    path
        A local path or an fsspec URL of a Zarr v3 group in the actstats.store/2 format (or
        the older actstats.store/1).
    chunks
        "auto" (default): dask chunks of whole Zarr chunks, about :data:`DASK_CHUNK_BYTES`
        each (:func:`dask_chunks`); "zarr": one dask chunk per Zarr chunk.

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
        With a message naming what is missing or wrong (in a text coordinate: labels that
        are not a list of distinct strings, a code without a label).
    IntegrityError
        When a coordinate or ``complete`` cannot be read, or a chunk of a coordinate is
        missing (it would read as fill values: wrong labels), or, in a store with a manifest
        (:mod:`actstats.store.manifest`), a ``complete`` chunk is missing.

    Examples
    --------
    >>> import tempfile
    >>> from actstats.synthetic import write_synthetic_store
    >>> ds = open_store(write_synthetic_store(f"{tempfile.mkdtemp()}/s.zarr", runs=1, epochs=2, layers=2,
    ...                                       samples=10, units=4))
    >>> ds.activation.dims
    ('run', 'epoch', 'layer', 'sample', 'unit')
    """
    import dask.array as da
    import xarray as xr

    if chunks not in ("auto", "zarr"):
        raise ValueError(f"chunks must be 'auto' or 'zarr', got {chunks!r}")
    location, group, attrs, arrays = _open_group(path)
    problems, _ = _format_problems(attrs, arrays)
    if problems:
        raise StoreFormatError(f"{location}: {problems[0]}")
    # coordinates present in full (a missing chunk would read as fill values: wrong labels), and
    # with a manifest the `complete` chunks too: one stat a chunk (actstats.store.manifest)
    missing = missing_coordinate_chunks(arrays, read_manifest(location, records=False))
    if missing:
        more = f" (and {len(missing) - 1} more: actstats verify lists them)" if len(missing) > 1 else ""
        raise IntegrityError(f"{location}: {missing[0]}{more}")

    coords = {}
    present = {**COORDINATES, **{n: spec for n, spec in OPTIONAL_COORDINATES.items() if n in arrays}}
    for name, (dims, kind) in present.items():
        try:
            values = _read_all(arrays[name], name, location)
        except Exception as exc:
            raise IntegrityError(f"{location}: coordinate {name!r} is damaged ({type(exc).__name__}: {exc})") from None
        if kind == "str" and text.is_code_type(arrays[name].dtype):  # actstats.store/2: codes and labels
            try:
                values = text.decode(name, dims, values, arrays[name].attrs)
            except text.CodeError as exc:
                raise StoreFormatError(f"{location}: {exc}") from None
        elif kind == "str":  # actstats.store/1: strings
            values = np.asarray(values, dtype=object).astype(str)
        coords[name] = (dims, values)
    try:
        complete = np.asarray(_read_all(arrays["complete"], "complete", location))
    except Exception as exc:
        raise IntegrityError(f"{location}: variable 'complete' is damaged ({type(exc).__name__}: {exc})") from None
    expected = ExpectedChunks(complete, np.asarray(coords["depth"][1]), np.asarray(coords["width"][1]),
                              np.asarray(coords["epoch"][1]))
    width = np.asarray(coords["width"][1])
    n_features = arrays["input"].shape[1] if "input" in arrays else 0
    layer_fan_in = np.asarray(coords["layer_fan_in"][1]) if "layer_fan_in" in coords else None
    rows = np.asarray(coords["layer_weight_rows"][1]) if "layer_weight_rows" in coords else None
    padding = (width, fan_in_widths(width, n_features, layer_fan_in), np.asarray(complete, dtype=bool),
               np.asarray(coords["epoch"][1]), np.asarray(coords["layer"][1]).tolist(), rows)
    data_vars = {}
    for name, (dims, _, _) in VARIABLES.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if name == "complete":
            data = complete
        else:
            checked = _CheckedArray(array, name, location, expected,
                                    padding if name in PADDED_VARIABLES else None)
            data = da.from_array(
                checked,
                chunks=array.chunks if chunks == "zarr" else dask_chunks(array.shape, array.chunks,
                                                                          np.dtype(array.dtype).itemsize),
                asarray=False,
                lock=False,
                meta=np.empty((0,) * array.ndim, dtype=array.dtype),
                name=f"actstats-{name}-{da.core.tokenize(checked)}",
            )
            # the array this dask array reads, untouched: a query may read its blocks itself
            # (actstats.queries._engine._map_chunks); any derived array (isel, rechunk, ...) is
            # a new object without it
            data._actstats_source = checked
        var_attrs = {k: v for k, v in array.attrs.items() if k != "coordinates"}
        data_vars[name] = xr.Variable(dims, data, attrs=var_attrs)
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
