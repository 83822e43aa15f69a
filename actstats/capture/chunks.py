"""Direct chunk writes for capture's hot path: the format's chunk codec, with capture's settings.

Why not ``zarr_array[region] = block``: zarr-python's write path is asyncio and Python-heavy,
and capture writes from a background thread while training runs on the main thread. Measured
here (docs/benchmarks.md, "Capture"), a zarr write loop in a background thread slowed the
training thread 2.6x through the GIL, where the same bytes written with plain file calls
(which release the GIL) slowed it ~10%.

So capture writes chunk files itself, through the one codec of the format,
:class:`actstats.store.chunks.ChunkFiles` (a chunk is its C-order bytes followed by their
CRC-32C, little-endian; written to a temporary file, fsync'd, then renamed, as zarr's
LocalStore does). It refuses any array whose metadata differs from what it can encode.
tests/test_chunks.py checks the bytes are identical to zarr's own encoding and that zarr reads
them back.

Fault injection (tests only): with ``ACTSTATS_FAULT_KILL_AFTER_PUTS=N`` in the environment
when this module is imported, the process sends itself SIGKILL during its N-th chunk
write, after the temporary file is written and synced and before the rename: the moment
that leaves a ``*.partial`` file and an old chunk behind. tests/test_reliability.py uses it
to kill captures at chosen points; unset (the default) it costs one comparison per chunk.

With ``ACTSTATS_FAULT_PAUSE_BEFORE_RECORD=N`` and ``ACTSTATS_FAULT_PAUSE_FILE=F``, the
process pauses before the first write of its N-th record (:func:`before_record`, at the
record boundary, after the previous record's ``complete`` flag): it creates ``F.paused``
and waits until ``F`` exists. Tests use it to do something to a store while a capture is
known to be between two records (an ``--overwrite``, moving the store, a signal).
"""

from __future__ import annotations

import os
import signal
import time

from actstats.store.chunks import ChunkFiles


def _fault_kill_after_puts() -> int:
    try:
        return max(0, int(os.environ.get("ACTSTATS_FAULT_KILL_AFTER_PUTS", "0")))
    except ValueError:
        return 0


_KILL_AFTER_PUTS = _fault_kill_after_puts()
_puts = 0


def _fault_pause() -> tuple[int, str | None]:
    try:
        n = max(0, int(os.environ.get("ACTSTATS_FAULT_PAUSE_BEFORE_RECORD", "0")))
    except ValueError:
        n = 0
    return n, os.environ.get("ACTSTATS_FAULT_PAUSE_FILE")


_PAUSE_BEFORE_RECORD, _PAUSE_FILE = _fault_pause()
_records = 0


def before_record() -> None:
    """Called before each record's first write: the pause of the module header (tests only)."""
    global _records
    if not _PAUSE_BEFORE_RECORD or not _PAUSE_FILE:
        return
    _records += 1
    if _records == _PAUSE_BEFORE_RECORD:
        with open(_PAUSE_FILE + ".paused", "w"):
            pass
        with open(f"{_PAUSE_FILE}.paused.{os.getpid()}", "w"):  # which processes are paused
            pass
        while not os.path.exists(_PAUSE_FILE):
            time.sleep(0.01)


class ChunkWriter(ChunkFiles):
    """:class:`~actstats.store.chunks.ChunkFiles` of one array of a capture's store: each
    chunk fsync'd before its rename by default (a record's data reaches the disk before the
    ``complete`` flag that vouches for it, which is written, and synced, last), and the
    fault injection above."""

    def __init__(self, store_path: str, name: str, array, *, fsync: bool = True):
        super().__init__(store_path, name, array, fsync=fsync,
                         before_rename=_count_put_and_maybe_die if _KILL_AFTER_PUTS else None)
        self.log = {}  # each chunk's CRC-32C, for the record's manifest (actstats/capture/recorder.py)


def _count_put_and_maybe_die() -> None:
    global _puts
    _puts += 1
    if _puts >= _KILL_AFTER_PUTS:
        os.kill(os.getpid(), signal.SIGKILL)
