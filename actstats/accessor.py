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

import xarray as xr

__all__ = ["ActstatsAccessor"]


def _forward(name: str):
    # actstats.queries (scipy.stats, statsmodels) is imported at the first call, not when
    # `import actstats` registers the accessor: capture and `actstats info` never need it.
    def method(self, *args, **kwargs):
        from actstats import queries

        return getattr(queries, name)(self._ds, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Same as :func:`actstats.{name}` with this Dataset as ``ds``."
    return method


@xr.register_dataset_accessor("actstats")
class ActstatsAccessor:
    """Statistical queries on a Dataset in the store layout (``ds.actstats.<query>(...)``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    saturation = _forward("saturation")
    bimodality = _forward("bimodality")
    fit = _forward("fit")
    weight_normality = _forward("weight_normality")
    gradient_flow = _forward("gradient_flow")
    compare_splits = _forward("compare_splits")
