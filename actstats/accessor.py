"""The ``ds.actstats`` accessor: the queries of :mod:`actstats.queries` as Dataset methods.

Thin by design (as xarray's ``core/extensions.py`` shows): each method forwards to the
function of the same name with the Dataset as first argument, so the two spellings give
the same result.

Examples
--------
>>> import actstats
>>> from actstats.synthetic import synthetic_store
>>> ds = synthetic_store()
>>> ds.actstats.saturation(by="layer").identical(actstats.saturation(ds, by="layer"))
True
"""

from __future__ import annotations

import functools

import xarray as xr

from actstats import queries

__all__ = ["ActstatsAccessor"]


def _forward(function):
    @functools.wraps(function)
    def method(self, *args, **kwargs):
        return function(self._ds, *args, **kwargs)

    method.__doc__ = f"Same as :func:`actstats.{function.__name__}` with this Dataset as ``ds``.\n\n{function.__doc__}"
    return method


@xr.register_dataset_accessor("actstats")
class ActstatsAccessor:
    """Statistical queries on a Dataset in the store layout (``ds.actstats.<query>(...)``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    saturation = _forward(queries.saturation)
    bimodality = _forward(queries.bimodality)
    fit = _forward(queries.fit)
    weight_normality = _forward(queries.weight_normality)
    gradient_flow = _forward(queries.gradient_flow)
    compare_splits = _forward(queries.compare_splits)
