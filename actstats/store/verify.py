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
from actstats.options import progress_enabled
from actstats.store.manifest import ExpectedChunks, chunk_exists
from actstats.store.open import _format_problems, _open_group
from actstats.store.schema import COORDINATES, VARIABLES


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
    expected = ExpectedChunks(complete, depth, width, epochs)
    names = [n for n in list(VARIABLES) + list(COORDINATES) if n in arrays and n not in bad]
    total = sum(int(np.prod(arrays[n].cdata_shape)) for n in names)
    with tqdm(total=total, desc="verify", unit="chunk", disable=not progress_enabled(progress)) as bar:
        for name in names:
            array = arrays[name]
            kind = "variable" if name in VARIABLES else "coordinate"
            dims = VARIABLES[name][0] if name in VARIABLES else COORDINATES[name][0]
            for index in np.ndindex(*array.cdata_shape):
                bar.update(1)
                try:
                    exists = chunk_exists(array, array.metadata.encode_chunk_key(index))
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
