"""actstats: what the hidden layers of trained networks do, measured and tested.

The analysis half of the project: open stores written by capture (or by any program that
follows docs/store-format.md) and answer statistical queries on them.
"""

from actstats.errors import ActstatsError, ActstatsValueError, ActstatsWarning, IntegrityError, StoreFormatError
from actstats.options import OPTIONS, set_options
from actstats._after_xarray import register_accessor as _register_accessor

from actstats.registry import HELPERS as _HELPERS, QUERIES as _QUERY_SPECS

# ds.actstats: registered now if xarray is loaded, else as soon as it is (the command line
# never needs xarray for --help, so importing it here would only slow every command down)
_register_accessor()

#: Lazily exported names and their modules: the queries and to_records (from the registry),
#: and the store's functions (zarr and scipy.special are imported when first used, so that
#: ``actstats --help`` and ``import actstats`` stay quick).
_LAZY = {
    **{name: spec.module for name, spec in _QUERY_SPECS.items()},
    **_HELPERS,
    **{name: "actstats.store" for name in ("SCHEMA", "open_store", "verify_store", "write_store")},
    "select_runs": "actstats.selection",
    "select_records": "actstats.selection",
}

#: Submodules imported on first use: ``actstats.plot`` (figures for notebooks; matplotlib
#: only when a figure is drawn).
_SUBMODULES = ("plot",)


def __getattr__(name: str):
    # The queries load scipy.stats and statsmodels (about a second): only when first used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"actstats.{name}")
    raise AttributeError(f"module 'actstats' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))


__all__ = [
    "SCHEMA",
    "OPTIONS",
    "ActstatsError",
    "ActstatsValueError",
    "ActstatsWarning",
    "IntegrityError",
    "StoreFormatError",
    "open_store",
    "select_records",
    "select_runs",
    "set_options",
    "verify_store",
    "write_store",
    *_LAZY,
]
