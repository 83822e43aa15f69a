"""``xr.open_dataset(path, engine="actstats")``: a store opened as :func:`~actstats.store.open_store`
opens it, for code that opens data through xarray's back ends.

Registered in pyproject.toml (``[project.entry-points."xarray.backends"]``). xarray imports
this module whenever it lists its engines (any ``open_dataset`` call), so it imports nothing
but xarray's base class; actstats' store code is loaded when a store is opened.

The engine is used only when named: :meth:`ActstatsBackendEntrypoint.guess_can_open` says
no, so ``xr.open_dataset(path)`` without ``engine=`` and ``xr.open_zarr(path)`` keep reading
the store as plain Zarr (text coordinates as integer codes with their labels in the
attributes, docs/store-format.md).
"""

from __future__ import annotations

import os

from xarray.backends import BackendEntrypoint


class ActstatsBackendEntrypoint(BackendEntrypoint):
    """Open an actstats store (docs/store-format.md) as an ``xarray.Dataset``: its format
    checked, text coordinates decoded from their codes, data variables as dask arrays whose
    read errors name the variable and chunk, exactly as :func:`actstats.open_store` returns.

    Examples
    --------
    >>> import os, tempfile, xarray as xr
    >>> from actstats.synthetic import write_synthetic_store
    >>> path = write_synthetic_store(os.path.join(tempfile.mkdtemp(), "s.zarr"), runs=1, epochs=2, layers=2,
    ...                              samples=6, units=3)
    >>> ds = xr.open_dataset(path, engine="actstats")
    >>> sorted(set(ds["split"].values.tolist())), type(ds["activation"].data).__module__.split(".")[0]
    (['test', 'train'], 'dask')
    """

    description = "actstats stores (Zarr 3): format checked, text coordinates decoded, damaged chunks named"
    open_dataset_parameters = ("filename_or_obj", "drop_variables")

    def open_dataset(self, filename_or_obj, *, drop_variables=None):
        from actstats.store.open import open_store

        if not isinstance(filename_or_obj, (str, os.PathLike)):
            raise TypeError(f"engine 'actstats' opens a path or URL of a store, not a {type(filename_or_obj).__name__}")
        ds = open_store(filename_or_obj)
        if drop_variables is not None:
            names = [drop_variables] if isinstance(drop_variables, str) else list(drop_variables)
            ds = ds.drop_vars(names, errors="ignore")
        for variable in ds.data_vars.values():  # chunks={} keeps open_store's dask chunks (whole Zarr chunks)
            if getattr(variable.data, "chunks", None) is not None:
                variable.encoding["preferred_chunks"] = {d: c[0] for d, c in zip(variable.dims, variable.data.chunks)}
        return ds

    def guess_can_open(self, filename_or_obj) -> bool:
        return False  # only when named: engine="actstats"
