"""The chunk codec of the format, written once: whole chunks as plain files, and one atomic write.

Every array of the format has the codec chain ``bytes`` (little-endian), then ``crc32c``, and
no compressor (:mod:`actstats.store.create`), so a chunk file is the chunk's C-order bytes
followed by their CRC-32C, little-endian. :class:`ChunkFiles` writes and reads exactly that
with plain file calls; capture's recorder, :func:`actstats.synthetic.write_synthetic_store`
and the checked reads of :func:`actstats.store.open_store` all go through it.

Why not zarr-python for these bytes: its read and write paths are asyncio and Python-heavy,
and hold the GIL. Capture writes from a background thread while training runs on the main
thread; measured (docs/benchmarks.md, "Capture"), a zarr write loop in a background thread
slowed the training thread 2.6x through the GIL, where the same bytes written with plain
file calls (which release the GIL) slowed it ~10%. Reading, zarr decodes at ~1 GB/s under
the GIL where plain reads reach the file system's speed and let dask's threads overlap
(docs/benchmarks.md, "Scale"). The files are byte-identical to zarr's own encoding and zarr
reads them back (tests/test_chunks.py).

Each file is written whole beside its place and renamed into it (:func:`atomic_write`, as
zarr's LocalStore does), so a kill at any moment leaves the old chunk or the new one, never
half a chunk; with ``fsync`` the bytes reach the disk before the rename.
"""

from __future__ import annotations

import glob
import os
import stat
import uuid
from collections.abc import Callable, Iterable

import crc32c
import numpy as np


def atomic_write(
    path: str,
    parts: Iterable,
    *,
    fsync: bool = True,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write the bytes-like `parts`, one after the other, as the file `path`, atomically.

    The bytes go to a temporary file ``PATH.<random>.partial`` beside `path` (synced to the
    disk first if `fsync`), which is then renamed onto `path`: readers see the old file or
    the new one, never a mix. `before_rename` is called just before the rename (capture's
    fault injection kills the process there). On any failure the temporary file is removed,
    and an OSError that names no file is raised again naming `path`.
    """
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


class DamagedChunkError(ValueError):
    """A chunk file whose length or CRC-32C checksum is wrong, or that is not a regular file;
    the message says which."""


def special_file_kind(mode: int) -> str:
    """What a file of `mode` (``st_mode``) is, in words, for a message about a file that
    is not a regular file."""
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "a special file"


def open_regular(path: str):
    """`path` opened for reading in binary, if it is a regular file; else
    :class:`DamagedChunkError` (a FIFO would block the open, a device never end): it is
    opened without blocking and checked with ``fstat`` before any read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DamagedChunkError(f"{special_file_kind(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


#: The compressors read by :class:`ChunkFiles` (zarr codec name -> numcodecs codec id).
#: Their frames describe themselves (blosc's header holds its typesize and shuffle), so the
#: codec's configuration is not needed to decode.
DECOMPRESSORS = {"blosc": "blosc", "zstd": "zstd", "gzip": "gzip"}


def _plain(codecs) -> bool:
    from zarr.codecs import BytesCodec, Crc32cCodec

    return len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], Crc32cCodec)


def _decoders(codecs) -> list | None:
    """numcodecs decoders of the bytes-to-bytes codecs between ``bytes`` and the last
    ``crc32c`` (empty for the plain chain); None when the chain is anything else."""
    import numcodecs
    from zarr.codecs import BytesCodec, Crc32cCodec

    if len(codecs) < 2 or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[-1], Crc32cCodec):
        return None
    decoders = []
    for codec in codecs[1:-1]:
        name = codec.to_dict().get("name")
        if name not in DECOMPRESSORS:
            return None
        decoders.append(numcodecs.get_codec({"id": DECOMPRESSORS[name]}))
    return decoders


def _prefix_shape(region: tuple, chunks: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape of ``chunk[region]`` if its values are the first bytes of the chunk in C
    order (slices from 0; after the first axis cut short, every axis whole), else None."""
    shape, cut = [], False
    for k, c in zip(region, chunks):
        if not isinstance(k, slice) or k.start not in (None, 0) or k.step not in (None, 1):
            return None
        n = min(c, k.stop if k.stop is not None else c)
        if cut and n != c:
            return None
        cut = cut or n != c
        shape.append(n)
    return tuple(shape)


def _decodes_into(decoder, data, nbytes: int) -> bool:
    """Whether `decoder` can write `data` decoded straight into a buffer of `nbytes`: a blosc
    frame that says it holds exactly `nbytes` (its header; blosc refuses a wrong destination
    size). Other codecs decode into a new buffer, then copied."""
    if decoder.codec_id != "blosc":
        return False
    # the blosc frame's header (c-blosc's format, version 2 of the frame): 16 bytes, the
    # uncompressed size as a little-endian uint32 at offset 4. Read here, not through
    # numcodecs' helper, which numcodecs 0.16 made private (`_cbuffer_sizes`): the
    # public name's absence had made every chunk decode into a new buffer and a copy
    header = memoryview(data).cast("B")
    return len(header) >= 16 and int.from_bytes(header[4:8], "little") == nbytes


class ChunkFiles:
    """The chunk files of one local Zarr 3 array with a regular grid and the codecs
    ``bytes`` + ``crc32c``.

    Parameters
    ----------
    store_path : str
        The store's local directory.
    name : str
        The array's name (its directory in the store).
    array : zarr.Array
        The array, for its metadata (shape, chunks, data type, fill value, chunk keys).
    fsync : bool
        Sync each chunk to the disk before its rename (capture: a record's data is durable
        before the ``complete`` flag that vouches for it).
    before_rename : callable, optional
        Called before each chunk's rename (see :func:`atomic_write`).

    Raises
    ------
    ValueError
        When the array's codecs are not ``bytes`` + ``crc32c``, or, with ``read_only``,
        ``bytes`` + compressors (:data:`DECOMPRESSORS`) + ``crc32c``.

    Reading a compressed array (other programs may write the format with a compressor):
    each chunk file is checked against its CRC-32C, then decompressed with numcodecs, which
    releases the GIL, so dask's threads decode chunks side by side (zarr-python decodes
    under its event loop). Only ``read`` is allowed on such an array.
    """

    def __init__(self, store_path: str, name: str, array, *, fsync: bool = True,
                 before_rename: Callable[[], None] | None = None, read_only: bool = False):
        meta = array.metadata
        codecs = list(meta.codecs)
        decoders = _decoders(codecs) if read_only else None
        if decoders is None and not _plain(codecs):
            raise ValueError(f"{name}: codecs {codecs} are not bytes+crc32c; use zarr to write it")
        self._set(store_path, name, shape=array.shape, chunks=array.chunks, dtype=array.dtype,
                  fill_value=meta.fill_value, encode_key=meta.encode_chunk_key, decoders=decoders, fsync=fsync,
                  before_rename=before_rename)

    @classmethod
    def for_reading(cls, store_path: str, name: str, *, shape, chunks, dtype, fill_value, encode_key,
                    compressors=()) -> "ChunkFiles":
        """The chunk files of an array described by its metadata alone (no zarr array, no zarr
        import: ``actstats info``'s reader), for reading only; `compressors` names the
        compressors between ``bytes`` and ``crc32c`` (:data:`DECOMPRESSORS`' keys)."""
        decoders = []
        if compressors:
            import numcodecs  # only for compressed chunks

            decoders = [numcodecs.get_codec({"id": DECOMPRESSORS[c]}) for c in compressors]
        files = cls.__new__(cls)
        files._set(store_path, name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value,
                   encode_key=encode_key, decoders=decoders, fsync=False, before_rename=None)
        return files

    def _set(self, store_path, name, *, shape, chunks, dtype, fill_value, encode_key, decoders, fsync,
             before_rename) -> None:
        self.decoders = decoders  # None: plain chunks, read and written; a list: read only
        self.name = name
        self.directory = os.path.join(store_path, name)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.chunks = tuple(chunks)
        self.shape = tuple(shape)
        self.fill_value = fill_value
        self.encode_key = encode_key
        self.nbytes = int(np.prod(self.chunks)) * self.dtype.itemsize
        self.fsync = fsync
        self.before_rename = before_rename
        #: chunk index -> CRC-32C of each chunk written, when a dict (the manifest's log:
        #: :func:`actstats.store.manifest.log_chunk_writes`); None: not noted.
        self.log: dict[tuple[int, ...], int] | None = None

    def path(self, index: tuple[int, ...]) -> str:
        """The file of chunk `index`."""
        return os.path.join(self.directory, *self.encode_key(tuple(index)).split("/"))

    # -- reading ----------------------------------------------------------------------
    def read(self, index: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray | None:
        """Chunk `index` as a read-only array of the chunk's shape, or None if its file is absent.

        Raises :class:`DamagedChunkError` when the file's length or checksum is wrong, or when
        it is not a regular file (a FIFO, device or socket in a chunk's place would block the
        read or never end: it is opened without blocking and refused unread); other OSErrors
        of the read pass through.
        """
        try:
            fd = os.open(self.path(index), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise DamagedChunkError(f"{special_file_kind(mode)}, not a regular file")
            data = f.read()
        if self.decoders:  # compressed: checksum, then decompress
            if len(data) < 4 or crc32c.crc32c(memoryview(data)[:-4]) != int.from_bytes(data[-4:], "little"):
                raise DamagedChunkError("CRC-32C checksum mismatch")
            data = memoryview(data)[:-4]
            for k, decoder in enumerate(reversed(self.decoders)):
                try:
                    if out is not None and k == len(self.decoders) - 1 and _decodes_into(decoder, data, self.nbytes):
                        data = decoder.decode(data, out=memoryview(out).cast("B"))  # no intermediate buffer
                    else:
                        data = decoder.decode(data)
                except Exception as exc:  # a codec's own error: the bytes are not what it wrote
                    raise DamagedChunkError(f"{decoder.codec_id} cannot decode it ({exc})") from None
            if len(memoryview(data).cast("B")) != self.nbytes:
                raise DamagedChunkError(f"{len(memoryview(data).cast('B'))} bytes decoded, expected {self.nbytes}")
            values = np.frombuffer(data, dtype=self.dtype, count=self.nbytes // self.dtype.itemsize)
            return values.reshape(self.chunks)
        if len(data) != self.nbytes + 4:
            raise DamagedChunkError(f"{len(data)} bytes, expected {self.nbytes + 4}")
        if crc32c.crc32c(memoryview(data)[:-4]) != int.from_bytes(data[-4:], "little"):
            raise DamagedChunkError("CRC-32C checksum mismatch")
        values = np.frombuffer(data, dtype=self.dtype, count=self.nbytes // self.dtype.itemsize)
        return values.reshape(self.chunks)

    def read_region(self, index: tuple[int, ...], region: tuple, out: np.ndarray) -> bool:
        """Copy ``chunk[region]`` of chunk `index` into `out` (its shape); False if the file is absent.

        `region` holds a slice from 0 or an integer per axis. When the region is a prefix of
        the chunk's bytes (C order) and `out` is contiguous, the file is read straight into
        `out` (no intermediate buffer: a new 4 MiB buffer costs about as much in page faults
        as reading it) and checked with the rest of the file against its CRC-32C; otherwise
        the chunk is read (:meth:`read`) and its region copied. Raises as :meth:`read` does.
        """
        if out.flags.c_contiguous and out.dtype == self.dtype.newbyteorder("=") and self.dtype.isnative:
            shape = _prefix_shape(region, self.chunks)
            if not self.decoders and shape is not None and shape == out.shape:
                return self._read_prefix_into(index, out)
            if self.decoders and shape == self.chunks == out.shape:  # a whole compressed chunk
                values = self.read(index, out=out)
                if values is None:
                    return False
                if not np.shares_memory(values, out):
                    out[...] = values
                return True
        values = self.read(index)
        if values is None:
            return False
        out[...] = values[region]
        return True

    def _read_prefix_into(self, index, out: np.ndarray) -> bool:
        try:
            fd = os.open(self.path(index), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return False
        with os.fdopen(fd, "rb", buffering=0) as f:
            size = os.fstat(fd)
            if not stat.S_ISREG(size.st_mode):
                raise DamagedChunkError(f"{special_file_kind(size.st_mode)}, not a regular file")
            if size.st_size != self.nbytes + 4:
                raise DamagedChunkError(f"{size.st_size} bytes, expected {self.nbytes + 4}")
            head = memoryview(out).cast("B")
            got = 0
            while got < len(head):  # readinto may return less than asked
                n = f.readinto(head[got:])
                if not n:
                    raise DamagedChunkError(f"{got} bytes, expected {self.nbytes + 4}")
                got += n
            rest = f.read()
        if len(rest) != self.nbytes + 4 - len(head):
            raise DamagedChunkError(f"{len(head) + len(rest)} bytes, expected {self.nbytes + 4}")
        crc = crc32c.crc32c(memoryview(rest)[:-4], crc32c.crc32c(head))
        if crc != int.from_bytes(rest[-4:], "little"):
            raise DamagedChunkError("CRC-32C checksum mismatch")
        return True

    # -- writing ----------------------------------------------------------------------
    def write(self, index: tuple[int, ...], piece: np.ndarray) -> None:
        """Write chunk `index`. A `piece` smaller than a chunk fills its leading corner and
        the rest is the fill value."""
        if self.decoders is not None:
            raise ValueError(f"{self.name}: a compressed array is read here, never written; use zarr to write it")
        piece = np.asarray(piece)
        if piece.shape != self.chunks:
            full = np.full(self.chunks, self.fill_value, dtype=self.dtype)
            full[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = full
        piece = np.ascontiguousarray(piece, dtype=self.dtype)
        path = self.path(index)
        body = memoryview(piece).cast("B")
        crc = crc32c.crc32c(body)
        parts = (body, crc.to_bytes(4, "little"))
        try:
            atomic_write(path, parts, fsync=self.fsync, before_rename=self.before_rename)
        except FileNotFoundError:  # the chunk's first write: its directory is made then (not a mkdir a write)
            if os.path.isdir(os.path.dirname(path)):
                raise
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, parts, fsync=self.fsync, before_rename=self.before_rename)
        if self.log is not None:
            self.log[tuple(int(i) for i in index)] = crc

    def write_block(self, start: tuple[int, ...], block: np.ndarray) -> None:
        """Write `block` at `start` (chunk-aligned; missing trailing dims start at 0, missing
        leading dims of `block` have size 1). Where the block ends inside a chunk, the rest of
        that chunk is the fill value: callers pass blocks whose remainder is padding (layers
        a run does not have), or that run to the array's edge."""
        block = np.asarray(block)
        start = tuple(start) + (0,) * (len(self.shape) - len(start))
        block = block.reshape((1,) * (len(self.shape) - block.ndim) + block.shape)
        for s, c in zip(start, self.chunks):
            if s % c:
                raise ValueError(f"{self.name}: start {start} is not aligned to chunks {self.chunks}")
        first = [s // c for s, c in zip(start, self.chunks)]
        counts = [-(-n // c) for n, c in zip(block.shape, self.chunks)]
        for offset in np.ndindex(*counts):
            index = tuple(f + o for f, o in zip(first, offset))
            lo = [o * c for o, c in zip(offset, self.chunks)]
            self.write(index, block[tuple(slice(a, a + c) for a, c in zip(lo, self.chunks))])

    def update(self, index: tuple[int, ...], where: tuple, value) -> None:
        """Read-modify-write one chunk (for small per-run arrays such as ``complete``); an
        absent chunk starts as the fill value, a damaged one raises ValueError."""
        try:
            chunk = self.read(index)
        except DamagedChunkError:
            raise ValueError(f"{self.name}: chunk {index} fails its crc32c checksum") from None
        chunk = np.full(self.chunks, self.fill_value, dtype=self.dtype) if chunk is None else chunk.copy()
        chunk[where] = value
        self.write(index, chunk)

    def remove_leftovers(self, run: int) -> None:
        """Delete the temporary files that a killed write left among run `run`'s chunks
        (the caller holds the run's lock: no write of that run is under way)."""
        shape = [-(-n // c) for n, c in zip(self.shape, self.chunks)]
        if self.shape[0] == 0 or run >= shape[0]:
            return
        own = {self.path((run, *rest)) for rest in np.ndindex(*shape[1:])}
        base = os.path.commonpath([os.path.dirname(p) for p in own])  # the run's own subtree
        for leftover in glob.glob(os.path.join(glob.escape(base), "**", "*.partial"), recursive=True):
            chunk = leftover[: -len(".partial")].rsplit(".", 1)[0]
            if chunk in own:
                try:
                    os.remove(leftover)
                except FileNotFoundError:
                    pass

