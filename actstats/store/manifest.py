"""Which chunks a store must hold, and the manifest that binds each chunk's checksum to its place.

Two sources say which chunks must exist:

- :class:`ExpectedChunks`: those of its complete records (for the layers and units each run
  has) and the probe inputs, read from ``complete``, ``depth``, ``width`` and ``epoch``. Any
  other chunk of a record variable may be absent and then reads as its fill value (NaN
  padding, or False for a record not yet written).
- The **manifest** (written by actstats' writers; optional for other programs): a group
  ``actstats_manifest`` at the store's root holding ``store.json``, written at creation (every
  coordinate chunk and the ``input`` chunk with its CRC-32C, and the ``complete`` chunks that
  must exist), and one ``rRRRRR-eEEEEE.json`` per (run, epoch) record, written atomically after
  the record's chunks and before ``complete`` vouches for them (every chunk of the record with
  its CRC-32C, and the record's (run, epoch) scalars byte for byte). One file per record, so
  writers of different runs never write the same file. A chunk whose own checksum passes but
  whose checksum is not the one its key's entry holds was moved or swapped from another place
  (or rewritten): :func:`~actstats.store.verify_store` lists it as damaged.

Coordinates are checked for presence in every store (:func:`missing_coordinate_chunks`, by
:func:`~actstats.store.open_store` and :func:`~actstats.store.verify_store`): a missing chunk
would read as the fill value, giving wrong labels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from actstats.store.chunks import DamagedChunkError, open_regular
from actstats.store.schema import COORDINATES, OPTIONAL_COORDINATES, RECORD_DIMS, VARIABLES

#: The group (a directory with a zarr.json, so Zarr readers see a known node) holding the manifest.
MANIFEST_GROUP = "actstats_manifest"
#: The file written at creation.
STORE_MANIFEST = "store.json"
MANIFEST_FORMAT = "actstats.manifest/1"


@dataclass(frozen=True)
class ExpectedChunks:
    """Which chunks of a store must exist, from its ``complete``, ``depth``, ``width`` and
    ``epoch``. ``complete`` None: unknown (damaged), so no record chunk is required; ``depth``
    or ``width`` None (a missing or damaged chunk, itself reported): every layer and unit is
    taken to exist."""

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


def chunk_exists(array, key: str) -> bool:
    """Whether chunk `key` of `array` is in its store."""
    from zarr.core.sync import sync
    from zarr.storage import LocalStore

    store = array.store_path.store
    full = _full_key(array, key)
    if isinstance(store, LocalStore):  # a stat, without a round trip through zarr's event loop
        return os.path.isfile(os.path.join(store.root, *full.split("/")))
    return sync(store.exists(full))


def _full_key(array, key: str) -> str:
    prefix = array.store_path.path
    return f"{prefix}/{key}" if prefix else key


def stored_checksum(array, key: str) -> int | None:
    """The CRC-32C a chunk file ends with (its last 4 bytes, little-endian), or None if absent."""
    from zarr.storage import LocalStore

    store = array.store_path.store
    full = _full_key(array, key)
    if isinstance(store, LocalStore):
        try:
            with open_regular(os.path.join(store.root, *full.split("/"))) as f:
                f.seek(-4, os.SEEK_END)
                return int.from_bytes(f.read(4), "little")
        except (FileNotFoundError, DamagedChunkError):  # a FIFO: its read is refused elsewhere
            return None
        except OSError:  # shorter than 4 bytes: the checksum check says so
            return None
    from zarr.abc.store import SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    buffer = sync(store.get(full, prototype=default_buffer_prototype(), byte_range=SuffixByteRequest(4)))
    return None if buffer is None else int.from_bytes(buffer.to_bytes(), "little")


# -- coordinates: present in full -------------------------------------------------------

#: Coordinates whose values may all equal the fill value (0, or "" for the strings of
#: actstats.store/1) in a valid store, so that a writer that skips all-fill chunks
#: (zarr-python's default) may leave their chunk out; only matters for stores without a
#: manifest. Index coordinates (0 ... n-1) and `epoch` can be all zero only with one element.
#: Text stored as codes (actstats.store/2) never equals its fill value (-1: no label).
_MAY_BE_ALL_FILL = {"step", "label", "seed", "lr", "source_index", "dataset", "config"}
_ALL_FILL_IF_ONE = {"run", "epoch", "unit", "fan_in", "class", "feature", "sample"}


def missing_coordinate_chunks(arrays: Mapping, manifest: "Manifest | None") -> list[str]:
    """Chunks of coordinates (and, with a manifest, of ``complete``) that are absent although
    they must exist: with a manifest, every chunk it lists as written at creation; without,
    every chunk of a coordinate whose values cannot all be the fill value. One stat a chunk."""
    out = []
    names = [n for n in (*COORDINATES, *OPTIONAL_COORDINATES) if n in arrays]
    if manifest is not None and "complete" in arrays:
        names.append("complete")
    for name in names:
        array = arrays[name]
        kind = "variable" if name in VARIABLES else "coordinate"
        for index in np.ndindex(*array.cdata_shape):
            key = array.metadata.encode_chunk_key(index)
            if chunk_exists(array, key):
                continue
            if manifest is not None:
                if f"{name}/{key}" in manifest.created:
                    out.append(f"{kind} {name!r} chunk {index} is missing although the manifest lists it "
                               f"(written when the store was created)")
            elif not ((name in _MAY_BE_ALL_FILL and not _codes(name, array))
                      or (name in _ALL_FILL_IF_ONE and array.size <= 1)):
                out.append(f"{kind} {name!r} chunk {index} is missing (it would read as fill values: wrong labels)")
    return out


def _codes(name: str, array) -> bool:
    """Whether `array` is a text coordinate stored as integer codes (actstats.store/2)."""
    from actstats.store.text import is_code_type

    spec = COORDINATES.get(name) or OPTIONAL_COORDINATES.get(name)
    return spec is not None and spec[1] == "str" and is_code_type(array.dtype)


# -- the manifest ------------------------------------------------------------------------


@dataclass
class Manifest:
    """A store's manifest as read: chunk key -> CRC-32C, and per record its scalar values."""

    created: dict[str, int | None] = field(default_factory=dict)  # key -> crc (None: mutable, must exist)
    records: dict[tuple[int, int], dict] = field(default_factory=dict)  # (run, epoch index) -> entry
    problems: list[str] = field(default_factory=list)  # unreadable manifest files

    def expected_checksum(self, key: str, record: tuple[int, int] | None) -> int | None:
        crc = self.created.get(key)
        if crc is None and record is not None and record in self.records:
            crc = self.records[record]["chunks"].get(key)
        return crc


def _manifest_dir(store_path: str) -> str:
    return os.path.join(store_path, MANIFEST_GROUP)


def record_manifest_name(run: int, epoch_index: int) -> str:
    return f"r{run:05d}-e{epoch_index:05d}.json"


def read_manifest(location: str, *, records: bool = True) -> Manifest | None:
    """The manifest of the local store at `location`, or None when it has none (written by
    another program, by an older actstats, or not local). With `records` false only
    ``store.json`` is read (what :func:`~actstats.store.open_store` needs)."""
    from actstats.store.paths import is_local, local_path

    if not is_local(location):
        return None
    directory = _manifest_dir(local_path(location))
    try:
        with open_regular(os.path.join(directory, STORE_MANIFEST)) as f:
            created = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return Manifest(problems=[f"manifest {MANIFEST_GROUP}/{STORE_MANIFEST} is not readable ({exc})"])
    manifest = Manifest()
    try:
        manifest.created = {k: int(v, 16) for k, v in created["chunks"].items()}
        manifest.created.update({k: None for k in created.get("present", [])})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        manifest.problems.append(f"manifest {MANIFEST_GROUP}/{STORE_MANIFEST} is not readable ({exc!r})")
    if not records:
        return manifest
    for entry in sorted(os.listdir(directory)):
        if not (entry.startswith("r") and entry.endswith(".json")):
            continue
        try:
            with open_regular(os.path.join(directory, entry)) as f:
                data = json.loads(f.read())
            key = (int(data["run"]), int(data["epoch_index"]))
            data["chunks"] = {k: int(v, 16) for k, v in data["chunks"].items()}
            data.setdefault("values", {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            manifest.problems.append(f"manifest {MANIFEST_GROUP}/{entry} is not readable ({exc!r})")
            continue
        manifest.records[key] = data
    return manifest


def _write_json(path: str, data: dict, fsync: bool) -> None:
    from actstats.store.chunks import atomic_write

    atomic_write(path, (json.dumps(data, sort_keys=True, separators=(",", ":")).encode(),), fsync=fsync)


def write_store_manifest(store_path: str) -> None:
    """Write ``actstats_manifest/store.json`` of a store being created (:func:`create_store`,
    after its coordinates, ``input`` and ``complete`` chunks are written, and the group
    ``actstats_manifest`` made): each coordinate and ``input`` chunk's CRC-32C, and the
    ``complete`` chunks, which change later and so are listed as present only."""
    import zarr

    group = zarr.open_group(store_path, mode="r")
    chunks, present = {}, []
    for name, array in group.arrays():
        if name not in COORDINATES and name not in OPTIONAL_COORDINATES and name not in ("input", "complete"):
            continue
        for index in np.ndindex(*array.cdata_shape):
            key = array.metadata.encode_chunk_key(index)
            if name == "complete":
                if chunk_exists(array, key):
                    present.append(f"{name}/{key}")
                continue
            crc = stored_checksum(array, key)
            if crc is not None:
                chunks[f"{name}/{key}"] = f"{crc:08x}"
    _write_json(os.path.join(_manifest_dir(store_path), STORE_MANIFEST),
                {"format": MANIFEST_FORMAT, "checksum": "crc32c", "chunks": chunks, "present": sorted(present)},
                fsync=False)


def log_chunk_writes(files: Mapping) -> None:
    """Make each :class:`~actstats.store.chunks.ChunkFiles` of `files` note the CRC-32C of every
    chunk it writes, for :func:`write_record_manifest`."""
    for f in files.values():
        if f.log is None:
            f.log = {}


def write_record_manifest(store_path: str, files: Mapping, run: int, epoch_index: int,
                          values: Mapping | None = None, *, fsync: bool = True) -> None:
    """Write the manifest of record (`run`, `epoch_index`): every chunk of it that `files`
    wrote since :func:`log_chunk_writes` (taken out of their logs), and its (run, epoch)
    scalars among `values` (name -> value at that record) as the stored bytes, hex. Call it
    after the record's chunks and before its ``complete`` flag. Stores without the manifest
    group (made by an older actstats or another program) get none."""
    directory = _manifest_dir(store_path)
    chunks, scalars = {}, {}
    for name, f in files.items():
        log = f.log or {}
        dims = VARIABLES.get(name, ((),))[0]
        if dims == RECORD_DIMS:  # a (run, epoch) scalar's chunk holds the whole run: values below
            for index in [i for i in log if i[0] == run]:
                del log[index]
        else:
            for index in [i for i in log if tuple(i[:2]) == (run, epoch_index)]:
                chunks[f"{name}/{f.encode_key(index)}"] = f"{log.pop(index):08x}"
        if dims == RECORD_DIMS and name != "complete" and values is not None and name in values:
            scalars[name] = np.asarray(values[name]).astype(f.dtype).tobytes().hex()
    if not os.path.isdir(directory):
        return
    _write_json(os.path.join(directory, record_manifest_name(run, epoch_index)),
                {"format": MANIFEST_FORMAT, "run": int(run), "epoch_index": int(epoch_index),
                 "checksum": "crc32c", "chunks": chunks, "values": scalars}, fsync=fsync)
