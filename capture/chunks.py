"""Direct chunk writes for capture's hot path.

Why not ``zarr_array[region] = block``: zarr-python's write path is asyncio and Python-heavy,
and capture writes from a background thread while training runs on the main thread. Measured
here (docs/benchmarks.md, "Capture"), a zarr write loop in a background thread slowed the
training thread 2.6x through the GIL, where the same bytes written with plain file calls
(which release the GIL) slowed it ~10%.

The format's codec chain is fixed and simple (actstats.store: ``bytes`` little-endian, then
``crc32c``; no compressor), so a chunk is its C-order bytes followed by their CRC-32C,
little-endian. This module writes exactly that, atomically (a temporary file, then a
rename, as zarr's LocalStore does; fsync'd before the rename), and refuses any array whose metadata differs from what it
can encode. tests/test_chunks.py checks the bytes are identical to zarr's own encoding and
that zarr reads them back.

Fault injection (tests only): with ``ACTSTATS_FAULT_KILL_AFTER_PUTS=N`` in the environment
when this module is imported, the process sends itself SIGKILL during its N-th chunk
write, after the temporary file is written and synced and before the rename: the moment
that leaves a ``*.partial`` file and an old chunk behind. tests/test_reliability.py uses it
to kill captures at chosen points; unset (the default) it costs one comparison per chunk.
"""

from __future__ import annotations

import glob
import os
import signal
import uuid

import crc32c
import numpy as np


def _fault_kill_after_puts() -> int:
    try:
        return max(0, int(os.environ.get("ACTSTATS_FAULT_KILL_AFTER_PUTS", "0")))
    except ValueError:
        return 0


_KILL_AFTER_PUTS = _fault_kill_after_puts()
_puts = 0


class ChunkWriter:
    """Write whole chunks of one local Zarr 3 array (regular grid, bytes+crc32c codecs)."""

    def __init__(self, store_path: str, name: str, array, *, fsync: bool = True):
        from zarr.codecs import BytesCodec, Crc32cCodec

        meta = array.metadata
        codecs = list(meta.codecs)
        if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], Crc32cCodec):
            raise ValueError(f"{name}: codecs {codecs} are not bytes+crc32c; use zarr to write it")
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.chunks = tuple(array.chunks)
        self.shape = tuple(array.shape)
        self.fill_value = meta.fill_value
        self.encode_key = meta.encode_chunk_key
        self.directory = os.path.join(store_path, name)
        self.name = name
        # fsync each chunk before its rename: a record's data reaches the disk before the
        # `complete` flag that vouches for it (which is written, and synced, last).
        self.fsync = fsync

    def _path(self, index: tuple[int, ...]) -> str:
        return os.path.join(self.directory, *self.encode_key(index).split("/"))

    def write_block(self, start: tuple[int, ...], block: np.ndarray) -> None:
        """Write `block` at `start` (chunk-aligned). Where the block ends inside a chunk, the
        rest of that chunk is the fill value: callers pass blocks whose remainder is padding
        (layers a run does not have), or that run to the array's edge."""
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
            piece = block[tuple(slice(a, a + c) for a, c in zip(lo, self.chunks))]
            if piece.shape != self.chunks:
                full = np.full(self.chunks, self.fill_value, dtype=self.dtype)
                full[tuple(slice(0, n) for n in piece.shape)] = piece
                piece = full
            self._put(index, np.ascontiguousarray(piece, dtype=self.dtype))

    def read_chunk(self, index: tuple[int, ...]) -> np.ndarray:
        """Decode one chunk (fill value if absent); a checksum mismatch raises ValueError."""
        path = self._path(index)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return np.full(self.chunks, self.fill_value, dtype=self.dtype)
        body, checksum = raw[:-4], raw[-4:]
        if len(raw) < 4 or crc32c.crc32c(body).to_bytes(4, "little") != checksum:
            raise ValueError(f"{self.name}: chunk {index} fails its crc32c checksum")
        return np.frombuffer(body, dtype=self.dtype).reshape(self.chunks).copy()

    def update(self, index: tuple[int, ...], where: tuple, value) -> None:
        """Read-modify-write one chunk (for small per-run arrays such as `complete`)."""
        chunk = self.read_chunk(index)
        chunk[where] = value
        self._put(index, chunk)

    def _put(self, index: tuple[int, ...], piece: np.ndarray) -> None:
        path = self._path(index)
        body = piece.tobytes()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            with open(tmp, "wb") as f:
                f.write(body)
                f.write(crc32c.crc32c(body).to_bytes(4, "little"))
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            if _KILL_AFTER_PUTS:
                _count_put_and_maybe_die()
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                os.remove(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file
                raise OSError(exc.errno, exc.strerror, path) from None
            raise

    def remove_leftovers(self, run: int) -> None:
        """Delete temporary files that a killed write left among run `run`'s chunks."""
        shape = [-(-n // c) for n, c in zip(self.shape, self.chunks)]
        if self.shape[0] == 0 or run >= shape[0]:
            return
        own = {self._path((run, *rest)) for rest in np.ndindex(*shape[1:])}
        base = os.path.commonpath([os.path.dirname(p) for p in own])  # the run's own subtree
        for leftover in glob.glob(os.path.join(glob.escape(base), "**", "*.partial"), recursive=True):
            chunk = leftover[: -len(".partial")].rsplit(".", 1)[0]
            if chunk in own:
                try:
                    os.remove(leftover)
                except FileNotFoundError:
                    pass


def _count_put_and_maybe_die() -> None:
    global _puts
    _puts += 1
    if _puts >= _KILL_AFTER_PUTS:
        os.kill(os.getpid(), signal.SIGKILL)
