"""actstats: what the hidden layers of trained networks do, measured and tested.

The analysis half of the project: open stores written by capture (or by any program that
follows docs/store-format.md) and answer statistical queries on them.
"""

from actstats.errors import ActstatsError, IntegrityError, StoreFormatError
from actstats.options import OPTIONS, set_options
from actstats.store import SCHEMA, open_store, verify_store

__all__ = [
    "SCHEMA",
    "OPTIONS",
    "ActstatsError",
    "IntegrityError",
    "StoreFormatError",
    "open_store",
    "set_options",
    "verify_store",
]
