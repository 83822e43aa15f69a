"""Verifying a store: every chunk read, and every way it departs from the format listed.

:func:`verify_store` reports what :func:`~actstats.store.open_store` would refuse (the format),
what reading would fail on (damaged chunks, chunks of complete records that are missing:
:mod:`actstats.store.manifest`), arrays whose own metadata disagrees with the consolidated
copy, and records scheduled but not complete. ``actstats verify`` exits 3 when it lists any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from actstats.errors import StoreFormatError
from actstats.options import progress_bar
from actstats.store.filestore import is_special_chunk
from actstats.store.manifest import (
    ExpectedChunks,
    chunk_exists,
    missing_coordinate_chunks,
    read_manifest,
    stored_checksum,
)
from actstats.store.open import PADDED_VARIABLES, _format_problems, _open_group
from actstats.store.padding import describe_beyond, fan_in_widths, values_beyond_width
from actstats.store import text
from actstats.store.schema import COORDINATES, RECORD_DIMS, VARIABLES, scheduled_records
from actstats.store.schema import OPTIONAL_COORDINATES

# the optional coordinates are read and checked as coordinates where a store has them
COORDINATES = {**COORDINATES, **OPTIONAL_COORDINATES}


@dataclass
class VerifyReport:
    """What :func:`verify_store` found: damaged chunks, missing chunks and incomplete records."""

    location: str
    damaged: list[str] = field(default_factory=list)
    incomplete: list[tuple[int, float]] = field(default_factory=list)
    chunks_read: int = 0
    #: whether the store has a manifest (actstats.store.manifest): then each chunk's checksum
    #: was also checked against its place; without, only each chunk's own checksum
    manifest: bool = False
    #: complete records with no manifest entry (checked by their own checksums only)
    records_without_manifest: int = 0

    def checked(self) -> str:
        """What was checked, in words."""
        if not self.manifest:
            return "no manifest: chunk checksums checked, not their places"
        if self.records_without_manifest:
            return (f"checksums checked against the manifest; {self.records_without_manifest} complete records "
                    "have no manifest entry (their own checksums only)")
        return "checksums checked against the manifest"

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.incomplete

    def lines(self) -> list[str]:
        out = [f"damaged: {d}" for d in self.damaged]
        out += [f"incomplete: run {r}, epoch {e:g}" for r, e in self.incomplete]
        return out


def complete_of(arrays) -> np.ndarray | None:
    """``complete`` as booleans, or None when it is absent or unreadable (reported elsewhere)."""
    try:
        return np.asarray(arrays["complete"][...]).astype(bool) if "complete" in arrays else None
    except Exception:
        return None


def _variables_gone(manifest, arrays, complete) -> list[str]:
    """A variable whose chunks a complete record's manifest lists but which the store no
    longer has (removed with its metadata: an optional variable's absence is otherwise valid)."""
    gone: dict[str, tuple[int, int]] = {}
    for record, data in sorted(manifest.records.items()):
        if complete is not None and not _is_complete(complete, record):
            continue
        for key in data["chunks"]:
            name = key.split("/", 1)[0]
            if name not in arrays and name not in gone:
                gone[name] = record
    return [f"variable {name!r} is missing although the manifest of run {r}, epoch index {e} lists its chunks"
            for name, (r, e) in sorted(gone.items())]


#: The metadata fields that decide how an array's bytes are read.
_LAYOUT_FIELDS = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "codecs", "fill_value", "dimension_names")
#: A text coordinate's attributes that say what its codes mean (actstats.store.text).
_TEXT_ATTRIBUTES = (text.LABELS, "flag_values", "flag_meanings")


def verify_store(path, *, progress: bool | None = None) -> VerifyReport:
    """Read every chunk of every array; list damaged and missing chunks, damaged metadata and
    incomplete records.

    Metadata is damaged when the group departs from the format (a wrong schema version, a
    missing variable, another data type or shape than the other variables say) or when an
    array's own ``zarr.json`` disagrees with the consolidated copy in the root ``zarr.json``
    (readers that use one or the other would read different data). A chunk is damaged when
    it fails to decode (checksum mismatch, truncation), or when it is a text coordinate's and
    holds a code without a label (:mod:`actstats.store.text`). A chunk is missing when a (run,
    epoch) is marked complete but a chunk that should hold its data (a layer the run has) is absent.
    A record is incomplete when its step is scheduled (step >= 0) but `complete` is false,
    unless it comes after a complete record marked ``stopped`` (capture's ``train.until``
    ended that run there: :func:`~actstats.store.schema.scheduled_records`).
    A coordinate chunk that is missing is damage (it would read as fill values). With a
    manifest (:mod:`actstats.store.manifest`), a chunk it lists that is missing, or whose
    checksum is not the one the manifest holds for its place (swapped, moved), and a (run,
    epoch) scalar that differs from its record's manifest are damage too; without one, only
    each chunk's own checksum is checked (:meth:`VerifyReport.checked` says which).

    Raises StoreFormatError only when `path` is not an actstats store at all (no Zarr group,
    or no ``schema`` root attribute); everything else is listed in the report.
    `progress`: a bar on stderr (None: see :func:`actstats.options.progress_enabled`).

    Examples
    --------
    >>> import os, tempfile
    >>> from actstats.synthetic import write_synthetic_store
    >>> path = write_synthetic_store(os.path.join(tempfile.mkdtemp(), "s.zarr"), runs=1, epochs=2,
    ...                              layers=2, samples=10, units=4)
    >>> os.remove(os.path.join(path, "activation", "c", "0", "1", "1", "0", "0"))
    >>> verify_store(path, progress=False).lines()
    ["damaged: variable 'activation' chunk (0, 1, 1, 0, 0) is missing although run 0, epoch 0.01 is complete"]
    """

    location, group, attrs, arrays = _open_group(path)
    if "schema" not in attrs:
        raise StoreFormatError(f"{location}: root attribute 'schema' is missing (not an actstats store)")
    report = VerifyReport(location)
    problems, bad = _format_problems(attrs, arrays)
    report.damaged += problems
    report.damaged += _metadata_mismatches(group, arrays)
    manifest = read_manifest(location)
    report.manifest = manifest is not None
    if manifest is not None:
        report.damaged += manifest.problems
    report.damaged += missing_coordinate_chunks({n: a for n, a in arrays.items() if n not in bad}, manifest)
    if manifest is not None:
        report.damaged += _variables_gone(manifest, arrays, complete_of(arrays))

    def read(name):
        if name not in arrays or name in bad:
            return None
        array = arrays[name]
        if name in COORDINATES and not all(  # a missing chunk would read as fill values (reported above)
            chunk_exists(array, array.metadata.encode_chunk_key(i)) for i in np.ndindex(*array.cdata_shape)
        ):
            return None
        try:
            return np.asarray(arrays[name][...])
        except Exception:  # listed as damaged by the chunk loop below
            return None

    complete = read("complete")
    if complete is not None:
        complete = complete.astype(bool)
    steps, depth, width, epochs = read("step"), read("depth"), read("width"), read("epoch")
    expected = ExpectedChunks(complete, depth, width, epochs)
    names = [n for n in list(VARIABLES) + list(COORDINATES) if n in arrays and n not in bad]
    padding = _padding_check(arrays, read, complete, width, epochs)
    total = sum(int(np.prod(arrays[n].cdata_shape)) for n in names)
    # text coordinates stored as codes (actstats.store/2), with their labels checked: name -> labels
    coded = {n: len(arrays[n].attrs[text.LABELS]) for n in names
             if n in COORDINATES and COORDINATES[n][1] == "str" and text.is_code_type(arrays[n].dtype)}
    with progress_bar(total=total, desc="verify", unit="chunk", progress=progress) as bar:
        for name in names:
            array = arrays[name]
            kind = "variable" if name in VARIABLES else "coordinate"
            dims = VARIABLES[name][0] if name in VARIABLES else COORDINATES[name][0]
            for index in np.ndindex(*array.cdata_shape):
                bar.update(1)
                try:
                    key = array.metadata.encode_chunk_key(index)
                    # a FIFO in a chunk's place exists, and its read is refused (RegularFilesStore)
                    exists = chunk_exists(array, key) or is_special_chunk(array, key)
                    if exists:
                        block = array.get_block_selection(index)
                        report.chunks_read += 1
                        if padding is not None and name in padding.variables:
                            problem = padding(name, dims, block, index, tuple(array.chunks))
                            if problem:
                                report.damaged.append(f"{problem} (chunk {index})")
                        if name in coded:  # a text coordinate's codes: each has a label
                            origin = tuple(i * c for i, c in zip(index, array.chunks))
                            problem = text.code_problem(name, dims, block, coded[name], origin)
                            if problem:
                                report.damaged.append(problem)
                except Exception as exc:
                    report.damaged.append(f"{kind} {name!r} chunk {index}: {type(exc).__name__}: {exc}")
                    continue
                if name in COORDINATES:  # present in full: missing_coordinate_chunks above
                    if exists and manifest is not None:
                        report.damaged += _place_mismatch(manifest, array, kind, name, key, index, None)
                    continue
                record = tuple(int(i) for i in index[:2]) if dims[:2] == RECORD_DIMS else None
                if exists and manifest is not None and dims != RECORD_DIMS:
                    vouched = record is None or (record in manifest.records and _is_complete(complete, record))
                    if vouched:
                        report.damaged += _place_mismatch(manifest, array, kind, name, key, index, record)
                if not exists:
                    reason = expected.reason(dims, tuple(array.chunks), index)
                    if reason is None and manifest is not None:
                        reason = _manifest_reason(manifest, name, dims, key, index, record)
                    if reason is not None:
                        report.damaged.append(f"{kind} {name!r} chunk {index} is missing although {reason}")
    if manifest is not None and complete is not None:
        report.damaged += _value_mismatches(manifest, arrays, complete, epochs, read)
        if complete.ndim == 2:
            report.records_without_manifest = sum(
                1 for r, e in zip(*np.nonzero(complete)) if (int(r), int(e)) not in manifest.records)
    if complete is not None and epochs is not None and complete.shape[1:] == epochs.shape:
        if steps is not None and steps.shape == complete.shape:  # records after a run's stop are not due
            scheduled = scheduled_records(steps, complete, read("stopped"))
        else:
            scheduled = np.ones_like(complete)
        for r, e in zip(*np.nonzero(scheduled & ~complete)):
            report.incomplete.append((int(r), float(epochs[e])))
    return report


class _PaddingCheck:
    """Values beyond a layer's width or fan-in in a complete record: a format error
    (:mod:`actstats.store.padding`)."""

    variables = PADDED_VARIABLES

    def __init__(self, complete, width, fan_in, epochs, layers, rows=None):
        self.complete, self.width, self.fan_in, self.epochs, self.layers = complete, width, fan_in, epochs, layers
        self.rows = rows

    def __call__(self, name, dims, block, index, chunks) -> str | None:
        origin = tuple(i * c for i, c in zip(index, chunks))
        found = values_beyond_width(dims, block, origin, self.width, self.fan_in, self.complete, self.rows)
        return describe_beyond(name, found, self.epochs, self.layers) if found else None


def _padding_check(arrays, read, complete, width, epochs) -> _PaddingCheck | None:
    if complete is None or width is None or complete.ndim != 2 or width.ndim != 2:
        return None
    n_features = arrays["input"].shape[1] if "input" in arrays and len(arrays["input"].shape) == 2 else 0
    fan_in = fan_in_widths(width, n_features, read("layer_fan_in"))
    layers = read("layer")
    rows = read("layer_weight_rows")
    return _PaddingCheck(complete, width, fan_in, epochs, layers.tolist() if layers is not None else None,
                         rows if rows is not None and rows.shape == width.shape else None)


def _is_complete(complete, record) -> bool:
    r, e = record
    return complete is not None and complete.ndim == 2 and r < complete.shape[0] and e < complete.shape[1] \
        and bool(complete[r, e])


def _place_mismatch(manifest, array, kind, name, key, index, record) -> list[str]:
    """The chunk at `key` if its checksum is not the one the manifest holds for that place."""
    expected = manifest.expected_checksum(f"{name}/{key}", record)
    if expected is None:
        if record is not None and record in manifest.records:
            return [f"{kind} {name!r} chunk {index} is not in its record's manifest (no chunk was written "
                    "there: it was copied in from elsewhere)"]
        return []
    actual = stored_checksum(array, key)
    if actual == expected:
        return []
    return [f"{kind} {name!r} chunk {index} does not belong at its place: its checksum {actual:08x} is not the "
            f"{expected:08x} the manifest holds for it (moved, swapped or rewritten)"]


def _manifest_reason(manifest, name, dims, key, index, record) -> str | None:
    """Why the manifest says chunk `key` of `name` must exist, or None."""
    if f"{name}/{key}" in manifest.created:
        return "the manifest lists it (written when the store was created)"
    if record is None:
        return None
    if dims == RECORD_DIMS:
        epochs = sorted(e for (r, e), entry in manifest.records.items() if r == index[0] and name in entry["values"])
        return f"the manifest of run {index[0]} records its value at epoch index {epochs[0]}" if epochs else None
    entry = manifest.records.get(record)
    if entry is not None and f"{name}/{key}" in entry["chunks"]:
        return f"the manifest of run {record[0]}, epoch index {record[1]} lists it"
    return None


def _value_mismatches(manifest, arrays, complete, epochs, read) -> list[str]:
    """(run, epoch) scalars of complete records that differ from the bytes their manifest holds."""
    out = []
    values = {}
    for (r, e), entry in sorted(manifest.records.items()):
        if not _is_complete(complete, (r, e)):
            continue
        for name, stored in sorted(entry["values"].items()):
            if name not in values:
                values[name] = read(name)
            array = values[name]
            if array is None or array.ndim != 2 or r >= array.shape[0] or e >= array.shape[1]:
                continue
            dtype = np.dtype(arrays[name].dtype).newbyteorder("<")
            if np.asarray(array[r, e], dtype=dtype).tobytes().hex() != stored:
                epoch = f"{epochs[e]:g}" if epochs is not None and e < len(epochs) else f"#{e}"
                out.append(f"variable {name!r} at run {r}, epoch {epoch} is not the value the manifest holds "
                           "for it (its chunk was moved, swapped or rewritten)")
    return out


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
            continue
        # a text coordinate's labels say what its codes mean: both copies must say the same
        own_attrs, listed_attrs = own.get("attributes") or {}, listed.get("attributes") or {}
        for k in _TEXT_ATTRIBUTES:
            if name in COORDINATES and COORDINATES[name][1] == "str" and own_attrs.get(k) != listed_attrs.get(k):
                out.append(f"{what}: its zarr.json says {k} = {_brief(own_attrs.get(k))}, the consolidated metadata "
                           f"in the root zarr.json says {_brief(listed_attrs.get(k))}")
                break
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
