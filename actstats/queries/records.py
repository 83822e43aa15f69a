"""``to_records``: query results as flat JSON-able records (the command line's json and csv)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

#: Non-dimension coordinates that :func:`to_records` adds to each record when present.
RECORD_COORDINATES = ("split", "activation_fn")


def _plain(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, (np.str_, str)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def _expander(own_dims, dims) -> tuple:
    """Index that inserts new axes for the dims a variable lacks (its dims in order)."""
    return tuple(slice(None) if d in own_dims else np.newaxis for d in dims)


def to_records(result: xr.Dataset) -> list[dict[str, Any]]:
    """Flat JSON-able records: one per combination of the result's dimensions.

    Parameters
    ----------
    result : xarray.Dataset
        A query result.

    Returns
    -------
    list of dict
        Keys: the dimension coordinates (``run``, ``epoch``, ``layer``, ``split``,
        ``family`` …), then ``split`` and ``activation_fn`` when they are coordinates
        of a kept dimension, then every data variable (broadcast where it lacks a
        dimension, e.g. ``best_family`` of :func:`fit` on each family's record). NaN
        and ±inf become None; numpy scalars become Python ones. Values are not rounded.

    Examples
    --------
    >>> import xarray as xr
    >>> result = xr.Dataset({"fraction": ("layer", [0.5, float("nan")])}, coords={"layer": [1, 2]})
    >>> to_records(result)
    [{'layer': 1, 'fraction': 0.5}, {'layer': 2, 'fraction': None}]
    """
    dims: list[Hashable] = []
    for variable in result.data_vars.values():
        dims += [d for d in variable.dims if d not in dims]
    dims += [d for d in result.dims if d not in dims]
    shape = tuple(result.sizes[d] for d in dims)
    columns: dict[Hashable, np.ndarray] = {}
    for d in dims:
        coordinate = result[d].values if d in result.coords else np.arange(result.sizes[d])
        columns[d] = np.broadcast_to(np.asarray(coordinate)[_expander((d,), dims)], shape)
    for name in RECORD_COORDINATES:
        if name in result.coords and name not in result.dims and set(result[name].dims) <= set(dims):
            coordinate = result[name]
            own = [d for d in dims if d in coordinate.dims]
            columns[name] = np.broadcast_to(coordinate.transpose(*own).values[_expander(own, dims)], shape)
    for name, variable in result.data_vars.items():
        own = [d for d in dims if d in variable.dims]
        columns[name] = np.broadcast_to(variable.transpose(*own).values[_expander(own, dims)], shape)
    flat = {k: v.reshape(-1) for k, v in columns.items()}
    size = int(np.prod(shape)) if shape else 1
    return [{str(k): _plain(v[i]) for k, v in flat.items()} for i in range(size)]
