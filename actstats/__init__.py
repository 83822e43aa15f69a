"""actstats: what the hidden layers of trained networks do, measured and tested.

The analysis half of the project: open stores written by capture (or by any program that
follows docs/store-format.md) and answer statistical queries on them.
"""

from actstats.errors import ActstatsError, ActstatsWarning, IntegrityError, StoreFormatError
from actstats.options import OPTIONS, set_options
from actstats.store import SCHEMA, open_store, verify_store
from actstats import accessor as _accessor  # registers ds.actstats

_QUERIES = ("bimodality", "compare_splits", "fit", "gradient_flow", "saturation", "to_records", "weight_normality")


def __getattr__(name: str):
    # The queries load scipy.stats and statsmodels (about a second): only when first used.
    if name in _QUERIES:
        from actstats import queries

        return getattr(queries, name)
    raise AttributeError(f"module 'actstats' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_QUERIES))

__all__ = [
    "SCHEMA",
    "OPTIONS",
    "ActstatsError",
    "ActstatsWarning",
    "IntegrityError",
    "StoreFormatError",
    "bimodality",
    "compare_splits",
    "fit",
    "gradient_flow",
    "open_store",
    "saturation",
    "set_options",
    "to_records",
    "verify_store",
    "weight_normality",
]
