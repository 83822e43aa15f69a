"""What ``actstats info`` shows, read straight from a local store: its metadata and its small arrays.

:func:`store_summary` reads the root ``zarr.json`` (the consolidated metadata of every array,
docs/store-format.md) and, with :class:`~actstats.store.chunks.ChunkFiles` (plain file reads
checked against each chunk's CRC-32C; numcodecs only for a compressed chunk), every coordinate,
``complete``, ``stopped`` and the training variables: what :func:`actstats.store.open_store`
reads or checks for what ``info`` shows, without importing xarray, zarr or dask (the command
takes ~0.2 s instead of ~2 s). :func:`training_status` is the rule of
:func:`actstats.training` in numpy, called by both.

It serves only a store it can vouch for exactly as :func:`~actstats.store.open_store` would:
a local ``actstats.store/2`` store with consolidated metadata in the form zarr-python writes
(regular chunk grid, default chunk keys, ``bytes`` little-endian + optional blosc/zstd/gzip +
``crc32c``), every check of ``open_store`` passed, every chunk of a coordinate and of
``complete`` present and intact, and no chunk of ``stopped`` or the training variables
damaged or missing where ``open_store``'s reads refuse it. For anything else it raises
:class:`NotServed` before printing anything, and the caller opens the store with
``open_store`` (xarray), which serves it or says in one line what is wrong: a remote store
(``s3://`` ...), a store of ``actstats.store/1`` (text as vlen-utf8 strings), a store without
consolidated metadata, and every damaged or malformed store take that path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

from actstats.errors import ActstatsValueError
from actstats.options import OPTIONS
from actstats.store import text
from actstats.store.chunks import DECOMPRESSORS, ChunkFiles, DamagedChunkError, open_regular
from actstats.store.manifest import ExpectedChunks
from actstats.store.paths import is_local, local_path
from actstats.store.schema import COORDINATES, OPTIONAL_COORDINATES, ROOT_ATTRIBUTES, SCHEMA, VARIABLES

# -- the training rule (actstats.training and actstats info) --------------------------------

#: The values of the ``status`` of :func:`training_status`, in the order the rule decides them.
STATUSES = ("no complete record", "diverged", "not known", "trained", "not trained")
#: A run is ``at_chance`` when its training accuracy is at most chance plus this.
CHANCE_MARGIN = 0.05
#: The four training variables, in the order results list them.
TRAINING_METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


def validate_min_accuracy(min_accuracy=None) -> float:
    """``min_accuracy`` as a float in (0, 1]; ``None``: ``OPTIONS["trained_accuracy"]`` (read now)."""
    if min_accuracy is None:
        min_accuracy = OPTIONS["trained_accuracy"]
    try:
        value = float(min_accuracy)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(min_accuracy, bool) or not 0 < value <= 1:
        problem = "must be a training accuracy greater than 0 and at most 1"
        raise ActstatsValueError(f"min_accuracy {problem}, got {min_accuracy!r}", argument="min_accuracy",
                                 problem=problem)
    return value


def last_complete_positions(complete) -> np.ndarray:
    """Each run's position on ``epoch`` of its last complete record; -1 for a run with none.
    `complete`: (run, epoch) booleans.

    Examples
    --------
    >>> last_complete_positions([[True, True, False], [False, False, False]]).tolist()
    [1, -1]
    """
    complete = np.asarray(complete, dtype=bool)
    return np.where(complete.any(axis=1), complete.shape[1] - 1 - np.argmax(complete[:, ::-1], axis=1), -1)


def training_rule(min_accuracy: float) -> str:
    """The rule of :func:`training_status` in words."""
    return (
        f"a run is trained when it has a complete record, did not diverge (no diverged flag and a finite "
        f"train_loss at every complete record) and its training accuracy at its last complete record is at "
        f"least {min_accuracy:g} (option trained_accuracy or min_accuracy=); without train_accuracy its "
        f"status is 'not known'; at_chance: training accuracy at most chance (1/classes) + {CHANCE_MARGIN:g}"
    )


def training_status(complete, epochs, n_classes: int, metrics: Mapping[str, np.ndarray], diverged=None, *,
                    min_accuracy: float) -> dict[str, np.ndarray]:
    """Whether each run trained, from (run, epoch) numpy arrays: the rule of :func:`actstats.training`.

    Parameters
    ----------
    complete : (run, epoch) bool
    epochs : (epoch,) the epoch of each position
    n_classes : the size of the ``class`` dimension (0: none)
    metrics : the training variables the store has (of :data:`TRAINING_METRICS`), each (run,
        epoch) in the store's data type: ``train_accuracy`` is compared with the cuts in its
        precision (an accuracy of exactly 0.9 written as float32 reaches a cut of 0.9)
    diverged : (run, epoch) bool, the store's ``diverged`` flag; None: the store has none
    min_accuracy : the cut, already checked (:func:`validate_min_accuracy`)

    Returns
    -------
    dict of per-run arrays: ``epoch_last``, each of :data:`TRAINING_METRICS` (NaN where the
    store lacks it or the run has no complete record), ``chance_accuracy``, ``diverged``,
    ``status`` (str), ``trained``, ``at_chance``; :func:`actstats.training` says what each is.

    Examples
    --------
    >>> complete = np.array([[True, True], [True, False], [False, False]])
    >>> accuracy = np.array([[0.5, 0.95], [0.12, np.nan], [np.nan, np.nan]], dtype=np.float32)
    >>> out = training_status(complete, [0.0, 1.0], 10, {"train_accuracy": accuracy}, min_accuracy=0.9)
    >>> out["status"].tolist(), out["at_chance"].tolist()
    (['trained', 'not trained', 'no complete record'], [False, True, False])
    """
    complete = np.asarray(complete, dtype=bool)
    runs = complete.shape[0]
    last = last_complete_positions(complete)
    has_record = last >= 0
    at_last = np.maximum(last, 0)
    rows = np.arange(runs)

    values = {}
    for name in TRAINING_METRICS:
        if name in metrics:
            value = np.asarray(metrics[name], dtype=np.float64)
            picked = value[rows, at_last] if value.shape[1] else np.full(runs, np.nan)
            values[name] = np.where(has_record, picked, np.nan)
        else:
            values[name] = np.full(runs, np.nan)
    epochs = np.asarray(epochs, dtype=np.float64)
    epoch_last = np.where(has_record, epochs[at_last], np.nan) if epochs.size else np.full(runs, np.nan)

    chance = 1.0 / n_classes if n_classes > 0 else np.nan

    flagged = np.zeros(runs, dtype=bool)
    if diverged is not None:
        flagged |= (np.asarray(diverged, dtype=bool) & complete).any(axis=1)
    if "train_loss" in metrics:
        loss = np.asarray(metrics["train_loss"], dtype=np.float64)
        flagged |= (~np.isfinite(loss) & complete).any(axis=1)

    accuracy = values["train_accuracy"]
    known = ~np.isnan(accuracy)
    # compared in the store's precision: an accuracy of exactly 0.9 written as float32
    # (0.899999976) reaches a cut of 0.9, as its writer meant
    precision = np.asarray(metrics["train_accuracy"]).dtype if "train_accuracy" in metrics else np.dtype(np.float64)
    precision = precision if precision.kind == "f" else np.dtype(np.float64)
    stored = accuracy.astype(precision)
    with np.errstate(invalid="ignore"):
        reached = known & (stored >= precision.type(min_accuracy))
        at_chance = known & (stored <= precision.type(chance + CHANCE_MARGIN))
    status = np.where(~has_record, STATUSES[0],
                      np.where(flagged, STATUSES[1],
                               np.where(~known, STATUSES[2], np.where(reached, STATUSES[3], STATUSES[4]))))
    return {
        "epoch_last": epoch_last,
        **values,
        "chance_accuracy": np.full(runs, chance),
        "diverged": flagged,
        "status": status.astype(str),
        "trained": status == STATUSES[3],
        "at_chance": at_chance,
    }


# -- the store, read without zarr ----------------------------------------------------------


class NotServed(Exception):
    """:func:`store_summary` cannot vouch for this store as :func:`~actstats.store.open_store`
    would; the message says why (for tests and debugging, never shown: the caller opens the
    store with ``open_store``)."""


#: The data types read here (Zarr 3 names; all have numpy's name).
_DATA_TYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                         "float32", "float64"})
_ARRAY_KEYS = frozenset({"shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs",
                         "attributes", "dimension_names", "zarr_format", "node_type", "storage_transformers"})
_GROUP_KEYS = frozenset({"zarr_format", "node_type", "attributes", "consolidated_metadata"})
#: The consolidated metadata of a group without members (what capture writes for its groups).
_NO_MEMBERS = {"kind": "inline", "must_understand": False, "metadata": {}}
#: Files that zarr-python reads beside the root zarr.json (Zarr 2 metadata).
_ZARR_2_FILES = (".zgroup", ".zattrs", ".zmetadata")
_BLOSC = {"cname": {"lz4", "lz4hc", "blosclz", "zstd", "snappy", "zlib"},
          "shuffle": {"noshuffle", "shuffle", "bitshuffle"}}


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _compressor_ok(name: str, config: dict) -> bool:
    """Whether a compressor's configuration is one zarr-python accepts (checked narrowly)."""
    if name == "gzip":
        return set(config) == {"level"} and _integer(config["level"]) and 0 <= config["level"] <= 9
    if name == "zstd":
        return (set(config) == {"level", "checksum"} and _integer(config["level"]) and config["level"] <= 22
                and isinstance(config["checksum"], bool))
    if name == "blosc":
        return (set(config) == {"typesize", "cname", "clevel", "shuffle", "blocksize"}
                and _integer(config["typesize"]) and config["typesize"] > 0
                and isinstance(config["cname"], str) and config["cname"] in _BLOSC["cname"]
                and isinstance(config["shuffle"], str) and config["shuffle"] in _BLOSC["shuffle"]
                and _integer(config["clevel"]) and 0 <= config["clevel"] <= 9
                and _integer(config["blocksize"]) and config["blocksize"] >= 0)
    return False


def _fill_value(value, dtype: np.dtype):
    """The fill value as zarr-python reads it, for the forms zarr-python writes; else NotServed."""
    if dtype.kind == "b" and isinstance(value, bool):
        return np.bool_(value)
    if dtype.kind in "iu" and _integer(value):
        info = np.iinfo(dtype)
        if info.min <= value <= info.max:
            return dtype.type(value)
    if dtype.kind == "f":
        if _integer(value) or isinstance(value, float):
            return dtype.type(value)
        special = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
        if isinstance(value, str) and value in special:
            return dtype.type(special[value])
    raise NotServed(f"fill value {value!r} of a {dtype} array")


class _Array:
    """One array's metadata from the consolidated copy, checked to be a form that zarr-python
    reads and :class:`ChunkFiles` reads the same way."""

    def __init__(self, name: str, meta):
        if not isinstance(meta, dict) or not set(meta) <= _ARRAY_KEYS or meta.get("zarr_format") != 3:
            raise NotServed(f"array {name!r}: metadata keys")
        shape = meta.get("shape")
        if not isinstance(shape, list) or not all(_integer(n) and n >= 0 for n in shape):
            raise NotServed(f"array {name!r}: shape")
        grid = meta.get("chunk_grid")
        chunks = grid.get("configuration", {}).get("chunk_shape") if isinstance(grid, dict) else None
        if (not isinstance(grid, dict) or grid.get("name") != "regular" or set(grid) != {"name", "configuration"}
                or not isinstance(grid["configuration"], dict) or set(grid["configuration"]) != {"chunk_shape"}
                or not isinstance(chunks, list) or len(chunks) != len(shape)
                or not all(_integer(c) and c > 0 for c in chunks)):
            raise NotServed(f"array {name!r}: chunk grid")
        encoding = meta.get("chunk_key_encoding")
        config = encoding.get("configuration", {}) if isinstance(encoding, dict) else None
        if (not isinstance(encoding, dict) or encoding.get("name") != "default" or not isinstance(config, dict)
                or not set(encoding) <= {"name", "configuration"} or not set(config) <= {"separator"}
                or config.get("separator", "/") not in ("/", ".")):
            raise NotServed(f"array {name!r}: chunk key encoding")
        data_type = meta.get("data_type")
        if not isinstance(data_type, str) or data_type not in _DATA_TYPES:
            raise NotServed(f"array {name!r}: data type {data_type!r}")
        dtype = np.dtype(data_type)
        names = meta.get("dimension_names")
        if names is not None and (not isinstance(names, list) or len(names) != len(shape)
                                  or not all(n is None or isinstance(n, str) for n in names)):
            raise NotServed(f"array {name!r}: dimension names")
        attributes = meta.get("attributes", {})
        if not isinstance(attributes, dict) or meta.get("storage_transformers", []) != []:
            raise NotServed(f"array {name!r}: attributes or storage transformers")
        self.name = name
        self.shape = tuple(shape)
        self.chunks = tuple(chunks)
        self.dtype = dtype
        self.dims = tuple(names) if names is not None else None
        self.attrs = attributes
        self.fill_value = _fill_value(meta.get("fill_value"), dtype)
        self.separator = config.get("separator", "/")
        self.compressors = self._codecs(meta.get("codecs"))

    def _codecs(self, codecs) -> list[str]:
        """The compressors between ``bytes`` and ``crc32c``; NotServed for any other chain."""
        if not isinstance(codecs, list) or len(codecs) < 2 or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str) and set(c) <= {"name", "configuration"}
                and isinstance(c.get("configuration", {}), dict) for c in codecs):
            raise NotServed(f"array {self.name!r}: codecs")
        first, last = codecs[0], codecs[-1]
        endian = first.get("configuration", {}).get("endian")
        if (first["name"] != "bytes" or not set(first.get("configuration", {})) <= {"endian"}
                or not (endian == "little" or (endian is None and self.dtype.itemsize == 1))):
            raise NotServed(f"array {self.name!r}: serializer")
        if last["name"] != "crc32c" or last.get("configuration", {}) != {}:
            raise NotServed(f"array {self.name!r}: no final crc32c")
        middle = codecs[1:-1]
        if not all(c["name"] in DECOMPRESSORS and _compressor_ok(c["name"], c.get("configuration", {}))
                   for c in middle):
            raise NotServed(f"array {self.name!r}: compressors")
        return [c["name"] for c in middle]

    def encode_key(self, index: tuple[int, ...]) -> str:
        """The chunk key of `index` (Zarr 3's default encoding, as zarr-python makes it)."""
        return self.separator.join(map(str, ("c", *index)))


def _array_files(store_path: str, array: _Array) -> ChunkFiles:
    """:class:`ChunkFiles` of an array described by :class:`_Array` (its metadata read from
    JSON, not a zarr array), for reading only."""
    return ChunkFiles.for_reading(store_path, array.name, shape=array.shape, chunks=array.chunks, dtype=array.dtype,
                                  fill_value=array.fill_value, encode_key=array.encode_key,
                                  compressors=array.compressors)


def _read(store_path: str, array: _Array, expected: ExpectedChunks | None = None) -> np.ndarray:
    """The whole array. A damaged or unreadable chunk is NotServed; so is an absent one,
    unless `expected` is given and says it may be absent (then it is the fill value), as
    ``open_store``'s checked reads say."""
    files = _array_files(store_path, array)
    out = np.empty(array.shape, dtype=array.dtype)
    grid = [-(-n // c) for n, c in zip(array.shape, array.chunks)]
    for index in np.ndindex(*grid):
        try:
            values = files.read(index)
        except (DamagedChunkError, OSError) as exc:
            raise NotServed(f"array {array.name!r} chunk {index}: {exc}") from None
        target = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, array.chunks, array.shape))
        if values is None:
            if expected is None or expected.reason(array.dims, array.chunks, index) is not None:
                raise NotServed(f"array {array.name!r} chunk {index} is absent")
            out[target] = array.fill_value
            continue
        out[target] = values[tuple(slice(0, s.stop - s.start) for s in target)]
    return out


def _kind_ok(array: _Array, kind: str) -> bool:
    """The data type (and for text, the labels) that ``open_store`` accepts for a table's kind."""
    if kind == "str":  # actstats.store/2: integer codes with valid labels
        return array.dtype.kind in "iu" and text.label_problem(array.name, array.attrs) is None
    return {"float32": array.dtype == np.float32, "bool": array.dtype.kind == "b",
            "int": array.dtype.kind in "iu", "float": array.dtype.kind == "f"}[kind]


def _metadata(store_path: str) -> tuple[dict, dict[str, _Array]]:
    """The root attributes and the arrays of the consolidated metadata."""
    if any(os.path.lexists(os.path.join(store_path, name)) for name in _ZARR_2_FILES):
        raise NotServed("Zarr 2 metadata beside zarr.json")  # zarr-python reads (or warns about) them
    try:
        with open_regular(os.path.join(store_path, "zarr.json")) as f:
            root = json.loads(f.read())
    except (OSError, ValueError, RecursionError) as exc:
        raise NotServed(f"root zarr.json: {exc}") from None
    if (not isinstance(root, dict) or not set(root) <= _GROUP_KEYS or root.get("zarr_format") != 3
            or root.get("node_type") != "group" or not isinstance(root.get("attributes", {}), dict)):
        raise NotServed("root zarr.json is not a Zarr 3 group in the form read here")
    consolidated = root.get("consolidated_metadata")
    if (not isinstance(consolidated, dict) or consolidated.get("kind") != "inline"
            or consolidated.get("must_understand") is not False or not isinstance(consolidated.get("metadata"), dict)
            or not set(consolidated) <= {"kind", "must_understand", "metadata"}):
        raise NotServed("no consolidated metadata")
    arrays = {}
    for name, meta in consolidated["metadata"].items():
        if "/" in name or not name or not isinstance(meta, dict):
            raise NotServed(f"member {name!r}")
        if meta.get("node_type") == "group":  # (resume, actstats_manifest): no members of their own
            if (meta.get("zarr_format") != 3 or not set(meta) <= _GROUP_KEYS
                    or not isinstance(meta.get("attributes", {}), dict)
                    or meta.get("consolidated_metadata") not in (None, _NO_MEMBERS)):
                raise NotServed(f"group {name!r}")
            continue
        if meta.get("node_type") != "array":
            raise NotServed(f"member {name!r}: node type")
        arrays[name] = _Array(name, meta)
    return root.get("attributes", {}), arrays


def _check_format(attrs: dict, arrays: dict[str, _Array]) -> None:
    """NotServed unless every check of ``open_store``'s format (root attributes, required
    arrays, dimension names, data types, labels, sizes that agree) passes."""
    if attrs.get("schema") != SCHEMA:
        raise NotServed(f"schema {attrs.get('schema')!r}")
    if any(key not in attrs for key in ROOT_ATTRIBUTES):
        raise NotServed("a root attribute is missing")
    tables = {**{n: (d, t, required) for n, (d, t, required) in VARIABLES.items()},
              **{n: (d, kind, True) for n, (d, kind) in COORDINATES.items()},
              **{n: (d, kind, False) for n, (d, kind) in OPTIONAL_COORDINATES.items()}}
    sizes: dict[str, int] = {}
    for name, (dims, kind, required) in tables.items():
        if name not in arrays:
            if required:
                raise NotServed(f"{name!r} is missing")
            continue
        array = arrays[name]
        if array.dims != tuple(dims) or not _kind_ok(array, kind):
            raise NotServed(f"{name!r}: dimension names or data type")
        for dim, size in zip(dims, array.shape):
            if sizes.setdefault(dim, size) != size:
                raise NotServed(f"{name!r}: {dim}={size}, elsewhere {sizes[dim]}")


def store_summary(path, *, min_accuracy: float | None = None) -> dict:
    """What ``actstats info`` shows of the store at `path`, read without xarray, zarr or dask.

    Returns a dict: ``schema``, ``created_at``, ``dims`` (name -> size, in the order of
    ``open_store(path).sizes``), ``variables`` (data variable -> ``"RxE float32"``, in the
    order of its ``data_vars``), the coordinates ``run``, ``epoch``, ``step``, ``depth``,
    ``width``, ``activation_fn``, ``init``, ``optimizer``, ``lr``, ``seed`` as numpy arrays
    (text decoded), ``complete``, ``stopped`` (None when the store has none) and
    ``training``: None when the store has none of the four training variables, else
    ``{"fields": the ones it has, "min_accuracy", "rule", **training_status(...)}``.

    Raises
    ------
    NotServed
        When the store is not one read here (remote, ``actstats.store/1``, no consolidated
        metadata, metadata in another form) or anything ``open_store`` or its reads would
        refuse or warn about is found: then ask ``open_store``.
    ActstatsValueError
        `min_accuracy` outside (0, 1].
    """
    location = os.fspath(path)
    if not isinstance(location, str) or not is_local(location):
        raise NotServed("not a local store")
    store_path = local_path(location)
    if not os.path.isdir(store_path):
        raise NotServed("not a directory")
    try:
        attrs, arrays = _metadata(store_path)
        _check_format(attrs, arrays)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # metadata of a shape not foreseen above: open_store says what it makes of it
        raise NotServed(f"metadata: {type(exc).__name__}: {exc}") from None
    min_accuracy = validate_min_accuracy(min_accuracy)

    coords = {}
    present = {**COORDINATES, **{n: spec for n, spec in OPTIONAL_COORDINATES.items() if n in arrays}}
    for name, (dims, kind) in present.items():
        values = _read(store_path, arrays[name])
        if kind == "str":
            try:
                values = text.decode(name, dims, values, arrays[name].attrs)
            except text.CodeError as exc:
                raise NotServed(str(exc)) from None
        coords[name] = values
    complete = _read(store_path, arrays["complete"])
    expected = ExpectedChunks(complete, coords["depth"], coords["width"], coords["epoch"])

    def record(name):
        return _read(store_path, arrays[name], expected) if name in arrays else None

    stopped = record("stopped")
    data_vars = [name for name in VARIABLES if name in arrays]
    dims: dict[str, int] = {}
    for name in [*data_vars, *present]:  # xarray's order: data variables, then coordinates
        for dim, size in zip(arrays[name].dims, arrays[name].shape):
            dims.setdefault(dim, size)
    summary = {
        "schema": attrs["schema"],
        "created_at": attrs["created_at"],
        "dims": dims,
        "variables": {name: f"{'x'.join(str(s) for s in arrays[name].shape)} {arrays[name].dtype}"
                      for name in data_vars},
        **{name: coords[name] for name in ("run", "epoch", "step", "depth", "width", "activation_fn", "init",
                                           "optimizer", "lr", "seed")},
        "complete": complete,
        "stopped": stopped,
        "training": None,
    }
    fields = [name for name in TRAINING_METRICS if name in arrays]
    if fields:
        metrics = {name: record(name) for name in fields}
        status = training_status(complete, coords["epoch"], dims.get("class", 0), metrics, record("diverged"),
                                 min_accuracy=min_accuracy)
        summary["training"] = {"fields": fields, "min_accuracy": min_accuracy, "rule": training_rule(min_accuracy),
                               **status}
    return summary


__all__ = ["CHANCE_MARGIN", "NotServed", "STATUSES", "TRAINING_METRICS", "last_complete_positions", "store_summary",
           "training_rule", "training_status", "validate_min_accuracy"]
