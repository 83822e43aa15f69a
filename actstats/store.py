"""The store format "actstats.store/1": its schema, creation, opening and verification.

The schema lives here, in actstats: capture writes stores through :func:`create_store`, and
:func:`open_store` checks any store (written by capture or by another program) against the
same tables. docs/store-format.md describes the format for readers and writers in other
languages.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
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
    Record variables start as missing chunks (read as NaN/False) until capture fills them.
    """
    import zarr

    path = _local_path(os.fspath(path))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.creating-{uuid.uuid4().hex[:8]}")
    try:
        group = zarr.open_group(tmp, mode="w-", zarr_format=3)
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
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("actstats")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class _CheckedArray:
    """A zarr array whose read errors name the variable and chunk (for dask.from_array)."""

    def __init__(self, array, name: str, location: str):
        self.array = array
        self.name = name
        self.location = location
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __dask_tokenize__(self):
        return (type(self).__name__, self.location, self.name, self.shape, str(self.dtype))

    def __getitem__(self, key):
        try:
            return self.array[key]
        except Exception as exc:  # any decode failure: checksum, truncation, codec
            where = _describe_selection(key, self.array.chunks)
            raise IntegrityError(
                f"{self.location}: variable {self.name!r} {where} is damaged ({type(exc).__name__}: {exc})"
            ) from None


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
    if _is_local(location) and not os.path.exists(_local_path(location)):
        raise StoreFormatError(f"{location}: no such store")
    try:
        group = zarr.open_group(_local_path(location) if _is_local(location) else location, mode="r")
    except Exception as exc:
        raise StoreFormatError(f"{location}: not a Zarr group ({type(exc).__name__}: {exc})") from None
    if group.metadata.zarr_format != 3:
        raise StoreFormatError(f"{location}: Zarr format {group.metadata.zarr_format}, expected 3")
    return location, group


def _check_array(location, name, array, expected_dims, expected_dtype):
    from zarr.codecs import Crc32cCodec

    dims = tuple(array.metadata.dimension_names or ())
    if dims != tuple(expected_dims):
        raise StoreFormatError(
            f"{location}: variable {name!r} has dimension_names {list(dims)}, expected {list(expected_dims)}"
        )
    codecs = getattr(array.metadata, "codecs", ())
    if not any(isinstance(c, Crc32cCodec) for c in codecs):
        raise StoreFormatError(f"{location}: variable {name!r} has no crc32c checksum codec")
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
            raise StoreFormatError(
                f"{location}: variable {name!r} has data type {array.dtype}, expected {expected_dtype}"
            )


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
        (:class:`~actstats.errors.IntegrityError`); coordinates loaded in memory.

    Raises
    ------
    StoreFormatError
        With a message naming what is missing or wrong.

    Examples
    --------
    >>> ds = open_store("data/default.zarr")  # doctest: +SKIP
    >>> ds.activation.dims
    ('run', 'epoch', 'layer', 'sample', 'unit')
    """
    import dask.array as da
    import xarray as xr

    location, group = _open_group(path)
    attrs = dict(group.attrs)
    schema = attrs.get("schema")
    if schema is None:
        raise StoreFormatError(f"{location}: root attribute 'schema' is missing (not an actstats store)")
    if schema != SCHEMA:
        raise StoreFormatError(f"{location}: schema {schema!r} is not supported (expected {SCHEMA!r})")
    for key in ROOT_ATTRIBUTES:
        if key not in attrs:
            raise StoreFormatError(f"{location}: root attribute {key!r} is missing")
    arrays = {name: array for name, array in group.arrays()}
    for name, (dims, dtype, required) in VARIABLES.items():
        if name not in arrays:
            if required:
                raise StoreFormatError(f"{location}: required variable {name!r} is missing")
            continue
        _check_array(location, name, arrays[name], dims, dtype)
    for name, (dims, kind) in COORDINATES.items():
        if name not in arrays:
            raise StoreFormatError(f"{location}: coordinate {name!r} is missing")
        _check_array(location, name, arrays[name], dims, kind)

    sizes: dict[str, int] = {}
    for name, array in arrays.items():
        if name not in VARIABLES and name not in COORDINATES:
            continue
        for dim, size in zip(array.metadata.dimension_names, array.shape):
            if sizes.setdefault(dim, size) != size:
                raise StoreFormatError(
                    f"{location}: variable {name!r} has {dim}={size}, but other variables have {dim}={sizes[dim]}"
                )

    coords = {}
    for name, (dims, kind) in COORDINATES.items():
        try:
            values = arrays[name][...]
        except Exception as exc:
            raise IntegrityError(f"{location}: coordinate {name!r} is damaged ({type(exc).__name__}: {exc})") from None
        if kind == "str":
            values = np.asarray(values, dtype=object).astype(str)
        coords[name] = (dims, values)
    data_vars = {}
    for name, (dims, _, _) in VARIABLES.items():
        if name not in arrays:
            continue
        array = arrays[name]
        checked = _CheckedArray(array, name, location)
        if name == "complete":
            try:
                data = np.asarray(array[...])
            except Exception as exc:
                raise IntegrityError(f"{location}: variable 'complete' is damaged ({type(exc).__name__}: {exc})") from None
        else:
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


def verify_store(path, *, progress: bool | None = None) -> VerifyReport:
    """Read every chunk of every array; list damaged and missing chunks and incomplete records.

    A chunk is damaged when it fails to decode (checksum mismatch, truncation). A chunk is
    missing when a (run, epoch) is marked complete but a chunk that should hold its data
    (a layer the run has) is absent. A record is incomplete when its step is scheduled
    (step >= 0) but `complete` is false.
    """
    from tqdm.auto import tqdm

    location, group = _open_group(path)
    report = VerifyReport(location)
    try:
        ds = open_store(path)
    except IntegrityError as exc:
        report.damaged.append(str(exc))
        return report
    complete = np.asarray(ds["complete"].values)
    steps = np.asarray(ds["step"].values)
    depth = np.asarray(ds["depth"].values)
    epochs = ds["epoch"].values
    arrays = dict(group.arrays())
    names = [n for n in VARIABLES if n in arrays]
    total = sum(int(np.prod(arrays[n].cdata_shape)) for n in names)
    with tqdm(total=total, desc="verify", unit="chunk", disable=_progress_disabled(progress)) as bar:
        for name in names:
            array = arrays[name]
            dims = VARIABLES[name][0]
            for index in np.ndindex(*array.cdata_shape):
                bar.update(1)
                key = array.metadata.encode_chunk_key(index)
                exists = _chunk_exists(array, key)
                if not exists:
                    if dims[:2] == RECORD_DIMS and dims != RECORD_DIMS:
                        r, e = index[0], index[1]
                        layer_ok = len(dims) < 3 or dims[2] != "layer" or index[2] < depth[r]
                        if complete[r, e] and layer_ok:
                            report.damaged.append(
                                f"variable {name!r} chunk {index} is missing although run {r}, epoch {epochs[e]:g} is complete"
                            )
                    elif dims == RECORD_DIMS and complete[index[0]].any():
                        report.damaged.append(f"variable {name!r} chunk {index} is missing")
                    continue
                try:
                    array.get_block_selection(index)
                    report.chunks_read += 1
                except Exception as exc:
                    report.damaged.append(f"variable {name!r} chunk {index}: {type(exc).__name__}: {exc}")
    for r, e in zip(*np.nonzero((steps >= 0) & ~complete)):
        report.incomplete.append((int(r), float(epochs[e])))
    return report


def _chunk_exists(array, key: str) -> bool:
    from zarr.core.sync import sync

    store = array.store_path.store
    prefix = array.store_path.path
    return sync(store.exists(f"{prefix}/{key}" if prefix else key))


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
