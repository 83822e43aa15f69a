"""Bring your own dump: :func:`write_store` makes a store from an ``xarray.Dataset`` or from
numpy arrays with named dimensions, whatever program (JAX, Keras, a C++ trainer) produced them.

The input is checked against the schema (:mod:`actstats.store.schema`) before anything is
written, and each problem is one line naming the variable or coordinate and what is missing
or wrongly shaped. The store is then laid out by :func:`~actstats.store.create_store` (built
beside its path and renamed into place) and filled as actstats' other writers fill one: each
record's chunks, then its manifest, then ``complete`` last.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from actstats.activations import ACTIVATIONS
from actstats.errors import ActstatsError, ActstatsValueError, shorten
from actstats.store import text
from actstats.store.schema import (
    COORDINATES, OPTIONAL_COORDINATES, RECORD_DIMS, VARIABLES, StoreLayout, canonical_json,
)

__all__ = ["write_store"]

#: What a missing coordinate becomes, and why it may be missing. Coordinates not listed here
#: (``epoch``, ``split``, ``activation_fn``) must be given.
_DEFAULTS = {
    "label": "-1 (unknown class)",
    "source_index": "each probe's position within its split",
    "step": "each epoch's position on the epoch axis (-1 where the run has no record)",
    "width": "the units of each (run, layer) that hold a value in 'activation'",
    "depth": "the layers with a width",
    "init": "'unknown'", "optimizer": "'unknown'", "dataset": "'unknown'", "lr": "NaN",
    "batch_size": "-1", "seed": "-1", "config": "'{}'",
}

#: Root attributes a caller may set (the others are written by create_store).
_ROOT_KEYS = ("torch_version", "sweep", "data_fingerprint", "config_text")

_PER_RUN_DEFAULTS = {"init": "unknown", "optimizer": "unknown", "dataset": "unknown", "lr": math.nan,
                     "batch_size": -1, "seed": -1, "config": "{}"}


def _fail(message: str) -> ActstatsValueError:
    return ActstatsValueError(f"write_store: {message}", argument="data", problem=message)


def _entries(data) -> dict[str, tuple[tuple[str, ...], Any]]:
    """name -> (dims, array) from a Dataset, or a mapping of (dims, array) pairs or DataArrays."""
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a dependency
        xr = None
    if xr is not None and isinstance(data, xr.Dataset):
        return {str(name): (tuple(map(str, v.dims)), _text_of(str(name), v)) for name, v in data.variables.items()}
    if not isinstance(data, Mapping):
        raise _fail(f"expected an xarray.Dataset or a mapping of names to (dims, array), got {type(data).__name__}")
    out = {}
    for name, value in data.items():
        if xr is not None and isinstance(value, (xr.DataArray, xr.Variable)):
            out[str(name)] = (tuple(map(str, value.dims)), _text_of(str(name), value))
            continue
        if not (isinstance(value, tuple) and len(value) == 2):
            raise _fail(f"{shorten(name)}: expected (dims, array), e.g. (('sample', 'feature'), x), "
                        f"got {type(value).__name__}")
        dims, array = value
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        if not all(isinstance(d, str) for d in dims):
            raise _fail(f"{shorten(name)}: dims must be names, got {shorten(dims)}")
        out[str(name)] = (dims, array)
    return out


def _text_of(name: str, variable):
    """A variable's data; a text coordinate read as codes with their labels (a store of
    actstats.store/2 opened by plain xarray) as its text."""
    spec = COORDINATES.get(name) or OPTIONAL_COORDINATES.get(name)
    if spec is None or spec[1] != "str" or text.LABELS not in variable.attrs or not text.is_code_type(variable.dtype):
        return variable.data
    try:
        return text.decode(name, variable.dims, np.asarray(variable.values), variable.attrs)
    except text.CodeError as exc:
        raise _fail(str(exc)) from None


def _kind_of(name: str) -> tuple[str, tuple[str, ...], str]:
    if name in VARIABLES:
        return "variable", VARIABLES[name][0], VARIABLES[name][1]
    if name in COORDINATES:
        return "coordinate", COORDINATES[name][0], COORDINATES[name][1]
    return "coordinate", OPTIONAL_COORDINATES[name][0], OPTIONAL_COORDINATES[name][1]


def _checked(entries: dict) -> tuple[dict, dict[str, int]]:
    """Every entry in the schema's dim order, numpy or dask; the size of each dimension."""
    known = [*VARIABLES, *COORDINATES, *OPTIONAL_COORDINATES]
    sizes: dict[str, tuple[int, str]] = {}
    out = {}
    for name, (dims, array) in entries.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(f"{shorten(name)} is not a variable or coordinate of the format{hint}; drop it")
        kind, expected, _ = _kind_of(name)
        if not hasattr(array, "shape") or not hasattr(array, "ndim"):
            array = np.asarray(array)
        if len(dims) != array.ndim:
            raise _fail(f"{kind} {name!r} names {len(dims)} dims {dims} for an array of {array.ndim}")
        if sorted(dims) != sorted(expected):
            raise _fail(f"{kind} {name!r} has dims ({', '.join(dims)}), expected ({', '.join(expected)})")
        if dims != expected:
            array = array.transpose([dims.index(d) for d in expected])
        for dim, size in zip(expected, array.shape):
            if dim in sizes and sizes[dim][0] != size:
                other_size, other = sizes[dim]
                raise _fail(f"dimension {dim!r} is {size} in {name!r} but {other_size} in {other!r}")
            sizes.setdefault(dim, (int(size), name))
        out[name] = array
    return out, {dim: size for dim, (size, _) in sizes.items()}


def _values(array, dtype=None) -> np.ndarray:
    values = np.asarray(array)
    return values if dtype is None else values.astype(dtype)


def _coordinates(arrays: dict, sizes: dict[str, int], complete: np.ndarray) -> dict[str, np.ndarray]:
    """Every coordinate: given (checked) or its default (:data:`_DEFAULTS`)."""
    for dim in ("run", "epoch", "layer", "sample", "unit"):
        if dim not in sizes:
            raise _fail(f"no dimension {dim!r}: required variable 'activation' (run, epoch, layer, sample, unit) "
                        "is missing")
    for name in ("epoch", "split"):
        if name not in arrays:
            meaning = {"epoch": "epochs elapsed at each record, 0 = initialisation",
                       "split": "'train' or 'test' for each probe sample"}[name]
            raise _fail(f"coordinate {name!r} is missing ({meaning})")
    if "activation_fn" not in arrays and "layer_activation_fn" not in arrays:
        raise _fail("coordinate 'activation_fn' (run) is missing: the activation function of each run, one of "
                    f"{', '.join(ACTIVATIONS)} (or 'layer_activation_fn' (run, layer) for each layer)")
    runs, layers, samples = sizes["run"], sizes["layer"], sizes["sample"]
    coords: dict[str, np.ndarray] = {}
    for name in ("run", "unit", "fan_in", "class", "feature", "sample", "layer"):
        n = sizes.get(name, 0)
        coords[name] = _values(arrays[name], np.int64) if name in arrays else np.arange(n) + (name == "layer")
    if "class" not in sizes:
        coords["class"] = np.arange(1)
    epoch = _values(arrays["epoch"])
    if epoch.dtype.kind not in "iuf" or not np.isfinite(epoch.astype(float)).all():
        raise _fail("coordinate 'epoch' must hold finite numbers (epochs elapsed)")
    if np.any(np.diff(epoch.astype(float)) <= 0):
        raise _fail("coordinate 'epoch' must increase along the epoch dimension")
    coords["epoch"] = epoch.astype(np.float64)
    split = _values(arrays["split"]).astype(str)
    strange = sorted(set(split.tolist()) - {"train", "test"})
    if strange:
        raise _fail(f"coordinate 'split' holds {shorten(str(strange[0]))}; expected 'train' or 'test' for each sample")
    coords["split"] = split
    coords["label"] = _values(arrays["label"], np.int64) if "label" in arrays else np.full(samples, -1, np.int64)
    if "source_index" in arrays:
        coords["source_index"] = _values(arrays["source_index"], np.int64)
    else:
        coords["source_index"] = np.array([np.sum(split[:i] == s) for i, s in enumerate(split)], dtype=np.int64)
    epochs = sizes["epoch"]
    # not given: each epoch's position where the run has a record, -1 (unscheduled) where it has none
    coords["step"] = (_values(arrays["step"], np.int64) if "step" in arrays
                      else np.where(complete, np.arange(epochs, dtype=np.int64), -1))
    if "width" in arrays:
        width = _values(arrays["width"], np.int64)
    else:
        width = _observed_width(arrays["activation"], runs, layers)
    if (width < 0).any() or (width > sizes["unit"]).any():
        raise _fail(f"coordinate 'width' must be between 0 and the unit dimension's size {sizes['unit']}")
    coords["width"] = width
    depth = _values(arrays["depth"], np.int64) if "depth" in arrays else (width > 0).sum(axis=1).astype(np.int64)
    for r in range(runs):
        if not ((width[r, :depth[r]] > 0).all() and (width[r, depth[r]:] == 0).all()):
            raise _fail(f"run {r}: depth {depth[r]} and width {width[r].tolist()} disagree (layers 1..depth have a "
                        "width, the others 0)")
    coords["depth"] = depth
    for name, default in _PER_RUN_DEFAULTS.items():
        if name in arrays:
            values = _values(arrays[name])
            coords[name] = values.astype(str) if isinstance(default, str) else values.astype(type(default))
        else:
            coords[name] = np.array([default] * runs)
    _activation_functions(arrays, coords, runs, layers, width)
    if "layer_fan_in" in arrays:
        fan_in = _values(arrays["layer_fan_in"], np.int64)
    else:
        fan_in = np.zeros((runs, layers), dtype=np.int64)
        for r in range(runs):
            for l in range(layers):
                if width[r, l] > 0:
                    fan_in[r, l] = sizes.get("feature", 0) if l == 0 else width[r, l - 1]
    if (fan_in > sizes.get("fan_in", 0)).any() and ("weight" in arrays):
        r, l = map(int, np.argwhere(fan_in > sizes["fan_in"])[0])
        raise _fail(f"run {r}, layer {l + 1} has {fan_in[r, l]} inputs but the fan_in dimension has "
                    f"{sizes['fan_in']}: make fan_in the largest of the feature count and the widths")
    if "layer_fan_in" in arrays:
        coords["layer_fan_in"] = fan_in
    for name in ("layer_weight_rows", "layer_positions"):  # conv layers (docs/store-format.md)
        if name in arrays:
            coords[name] = _values(arrays[name], np.int64)
    coords["_fan_in"] = fan_in  # for the padding check, not written
    return coords


def _observed_width(activation, runs: int, layers: int) -> np.ndarray:
    width = np.zeros((runs, layers), dtype=np.int64)
    for r in range(runs):
        for l in range(layers):
            present = ~np.isnan(np.asarray(activation[r, :, l], dtype=np.float64)).all(axis=(0, 1))
            width[r, l] = int(np.nonzero(present)[0][-1]) + 1 if present.any() else 0
    return width


def _activation_functions(arrays, coords, runs, layers, width) -> None:
    known = list(ACTIVATIONS)
    if "layer_activation_fn" in arrays:
        per_layer = _values(arrays["layer_activation_fn"]).astype(str)
        for r in range(runs):
            for l in range(layers):
                name = per_layer[r, l]
                if width[r, l] > 0 and name not in ACTIVATIONS:
                    raise _fail(f"coordinate 'layer_activation_fn' has {shorten(str(name))} at run {r}, layer {l + 1}: "
                                f"not an activation function actstats knows ({', '.join(known)})")
        coords["layer_activation_fn"] = np.where(width > 0, per_layer, "")
    if "activation_fn" in arrays:
        functions = _values(arrays["activation_fn"]).astype(str)
    else:
        functions = np.array([
            next(iter(set(coords["layer_activation_fn"][r][width[r] > 0])))
            if len(set(coords["layer_activation_fn"][r][width[r] > 0])) == 1 else "mixed"
            for r in range(runs)])
    for r, name in enumerate(functions):
        if name not in ACTIVATIONS and not (name == "mixed" and "layer_activation_fn" in coords):
            raise _fail(f"coordinate 'activation_fn' has {shorten(str(name))} at run {r}: not an activation function "
                        f"actstats knows ({', '.join(known)}; 'mixed' with layer_activation_fn)")
    coords["activation_fn"] = functions


def _check_padding(name: str, array, coords: dict, complete: np.ndarray) -> None:
    """Values beyond a layer's width (or fan-in) are a format error: they must be NaN."""
    dims = VARIABLES[name][0]
    if "layer" not in dims:
        return
    width, fan_in = coords["width"], coords["_fan_in"]
    if "sample" not in dims and "layer_weight_rows" in coords:  # conv layers: one weight row a channel
        width = np.asarray(coords["layer_weight_rows"])
    for r, e in zip(*np.nonzero(complete)):
        block = np.asarray(array[r, e], dtype=np.float64)
        for l in range(block.shape[0]):
            values = block[l]
            w = int(width[r, l])
            beyond = values[..., w:] if dims[-1] == "unit" else values[w:]
            if "fan_in" in dims:
                beyond = np.concatenate([beyond.ravel(), values[:w, int(fan_in[r, l]):].ravel()])
            if not np.isnan(beyond).all():
                where = (f"its width {w}" if "fan_in" not in dims
                         else f"its width {w} or its {int(fan_in[r, l])} inputs")
                raise _fail(f"variable {name!r} holds values beyond {where} at run {r}, epoch index {e}, layer "
                            f"{l + 1}: NaN-pad what does not exist, or fix 'width'")


def write_store(
    path: str | os.PathLike,
    data,
    *,
    attributes: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write a store from an ``xarray.Dataset`` or from numpy arrays with named dimensions.

    Parameters
    ----------
    path : str or path-like
        A local directory; refused if it exists, unless `overwrite`.
    data : xarray.Dataset or mapping
        The variables and coordinates of docs/store-format.md, by name: a Dataset (data
        variables and coordinates alike), or a mapping of names to ``(dims, array)`` pairs
        (numpy or dask arrays, dims named as the format names them, in any order) or to
        DataArrays. Required: ``activation``, ``weight``, ``bias``, ``input`` (``preactivation``
        is optional: for dumps of outputs only), and the coordinates ``epoch``, ``split`` and ``activation_fn`` (or
        ``layer_activation_fn``). Every other variable of the format may be given. Text
        coordinates are given as text (they are written as codes with their labels,
        :mod:`actstats.store.text`), or as integer codes whose DataArray carries their
        ``labels`` attribute (a store opened by plain ``xr.open_zarr``). Coordinates
        not given take a default: ``complete`` is true where a record has any activation
        that is not NaN, ``width`` the units holding a value in ``activation``, ``depth`` the
        layers with a width, ``step`` each epoch's position (−1 where the record is not
        complete: not scheduled), ``label`` −1, ``source_index``
        each probe's position within its split, ``init``/``optimizer``/``dataset``
        ``"unknown"``, ``lr`` NaN, ``batch_size``/``seed`` −1, ``config`` ``"{}"``; the
        index coordinates (``run``, ``unit``, …) count from 0, ``layer`` from 1.
    attributes : mapping, optional
        Root attributes: ``sweep`` (JSON text describing what was recorded), ``torch_version``,
        ``data_fingerprint``. A Dataset's own ``attrs`` of these names are used otherwise.
    overwrite : bool
        Replace an existing store at `path` (built beside it first, then swapped in).

    Returns
    -------
    str
        `path`.

    Raises
    ------
    actstats.errors.ActstatsValueError
        One line naming what is missing or wrongly shaped (nothing is written): an unknown
        name, a variable with other dims, a dimension of two sizes, a required variable or
        coordinate absent, an unknown activation function, values beyond a layer's width.

    Examples
    --------
    >>> import os, tempfile, numpy as np, actstats
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(1, 2, 1, 6, 3)).astype("float32")   # run, epoch, layer, sample, unit
    >>> path = write_store(os.path.join(tempfile.mkdtemp(), "mine.zarr"), {
    ...     "preactivation": (("run", "epoch", "layer", "sample", "unit"), z),
    ...     "activation": (("run", "epoch", "layer", "sample", "unit"), np.tanh(z)),
    ...     "weight": (("run", "epoch", "layer", "unit", "fan_in"), rng.normal(size=(1, 2, 1, 3, 4))),
    ...     "bias": (("run", "epoch", "layer", "unit"), np.zeros((1, 2, 1, 3))),
    ...     "input": (("sample", "feature"), rng.random((6, 4))),
    ...     "epoch": ("epoch", [0.0, 1.0]),
    ...     "split": ("sample", ["train"] * 4 + ["test"] * 2),
    ...     "activation_fn": ("run", ["tanh"]),
    ... })
    >>> ds = actstats.open_store(path)
    >>> ds["width"].values.tolist(), bool(ds["complete"].all()), actstats.verify_store(path, progress=False).ok
    ([[3]], True, True)
    """
    import zarr

    from actstats.store.chunks import ChunkFiles
    from actstats.store.create import StoreContents, create_store, hold_store_for_writing, prepare_store
    from actstats.store.manifest import log_chunk_writes, write_record_manifest
    from actstats.store.paths import is_local, local_path

    path = os.fspath(path)
    if not is_local(path):
        raise ActstatsValueError(f"{path}: write_store writes to a local path or a file:// URL only; write locally, "
                                 "then copy the store", argument="path")
    path = local_path(path)
    entries = _entries(data)
    arrays, sizes = _checked(entries)
    missing = [n for n, (_, _, required) in VARIABLES.items() if required and n != "complete" and n not in arrays]
    if missing:
        name = missing[0]
        raise _fail(f"required variable {name!r} ({', '.join(VARIABLES[name][0])}) is missing")
    runs, epochs = sizes["run"], sizes["epoch"]
    if "complete" in arrays:
        complete = _values(arrays["complete"]).astype(bool)
    else:
        complete = np.array([[not np.isnan(np.asarray(arrays["activation"][r, e], dtype=np.float64)).all()
                              for e in range(epochs)] for r in range(runs)], dtype=bool)
    coords = _coordinates(arrays, sizes, complete)
    record_names = [n for n in VARIABLES if n in arrays and VARIABLES[n][0][:2] == RECORD_DIMS and n != "complete"]
    for name in record_names:
        kind = VARIABLES[name][1]
        if kind == "float32" and np.dtype(arrays[name].dtype).kind not in "iuf":
            raise _fail(f"variable {name!r} has data type {arrays[name].dtype}, expected numbers")
        _check_padding(name, arrays[name], coords, complete)
    inputs = _values(arrays["input"])
    if inputs.dtype.kind not in "iuf":
        raise _fail(f"variable 'input' has data type {inputs.dtype}, expected numbers")
    optional = frozenset(n for n in arrays if n in VARIABLES and not VARIABLES[n][2])
    layout = StoreLayout(
        n_runs=runs, epochs=tuple(coords["epoch"].tolist()), n_layers=sizes["layer"], n_units=sizes["unit"],
        n_fan_in=sizes.get("fan_in", sizes["unit"]), n_classes=len(coords["class"]),
        n_features=sizes["feature"], n_samples=sizes["sample"], optional=optional,
    )
    coords.pop("_fan_in")
    root = {"torch_version": "", "sweep": canonical_json({"write_store": True})}
    if hasattr(data, "attrs"):
        root.update({k: v for k, v in data.attrs.items() if k in _ROOT_KEYS})
    root.update({k: v for k, v in (attributes or {}).items()})
    for key in ("schema", "created_at", "creation_library", "creation_library_version"):
        root.pop(key, None)
    contents = StoreContents(layout, coords, root, inputs.astype(np.float32))
    if os.path.lexists(path):
        if not overwrite:
            raise ActstatsError(f"{path}: exists; pass overwrite=True to replace it")
        prepare_store(path, "overwrite", contents=contents)
    else:
        try:
            create_store(path, layout, coords, root, contents.input_values)
        except FileExistsError:
            raise ActstatsError(f"{path}: exists (made meanwhile by another process); pass overwrite=True to "
                                "replace it") from None

    with hold_store_for_writing(path):
        group = zarr.open_group(path, mode="r")
        files = {name: ChunkFiles(path, name, group[name], fsync=True) for name in (*record_names, "complete")}
        log_chunk_writes(files)
        scalars = [n for n in record_names if VARIABLES[n][0] == RECORD_DIMS]
        for r in range(runs):
            per_run = {n: _values(arrays[n][r], VARIABLES[n][1]) for n in scalars}
            for n in scalars:
                files[n].write_block((r, 0), per_run[n][None])
            for e in np.nonzero(complete[r])[0]:
                for name in record_names:
                    if name in scalars:
                        continue
                    files[name].write_block((r, int(e)), _values(arrays[name][r, e], VARIABLES[name][1])[None, None])
                write_record_manifest(path, files, r, int(e), {n: per_run[n][e] for n in scalars})
            files["complete"].write_block((r, 0), complete[r][None])  # last: the run's records are on disk
    return path
