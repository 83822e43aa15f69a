"""The ``ds.actstats`` accessor: the queries of :mod:`actstats.registry` as Dataset methods.

Thin by design (as xarray's ``core/extensions.py`` shows): each method is the function of
the same name with the Dataset as first argument, so the two spellings give the same
result. The methods are derived from the registry; each carries its function's signature
(without ``ds``) and docstring, so ``help(ds.actstats.saturation)`` shows the parameters.
The queries (scipy.stats, statsmodels) are imported at the first use of a method, not when
``import actstats`` registers the accessor.

Examples
--------
>>> import actstats
>>> from actstats.synthetic import synthetic_store
>>> ds = synthetic_store()
>>> ds.actstats.saturation(by="layer").identical(actstats.saturation(ds, by="layer"))
True
>>> "eps" in str(__import__("inspect").signature(ds.actstats.saturation))
True
"""

from __future__ import annotations

import functools
import inspect

import xarray as xr

from actstats.registry import QUERIES, get_query

__all__ = ["ActstatsAccessor"]


class _QueryMethod:
    """A method resolved from the registry when it is first looked up (a descriptor)."""

    def __init__(self, name: str):
        self.name = name
        self.__doc__ = f"Same as :func:`actstats.{name}` with this Dataset as ``ds``."

    def __get__(self, accessor, owner=None):
        function = get_query(self.name).function
        if accessor is None:
            return function

        @functools.wraps(function)
        def method(*args, **kwargs):
            return function(accessor._ds, *args, **kwargs)

        signature = inspect.signature(function)
        method.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
        return method


@xr.register_dataset_accessor("actstats")
class ActstatsAccessor:
    """Statistical queries on a Dataset in the store layout (``ds.actstats.<query>(...)``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(QUERIES))


for _name in QUERIES:
    setattr(ActstatsAccessor, _name, _QueryMethod(_name))
del _name
