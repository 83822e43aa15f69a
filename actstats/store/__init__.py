"""The store format "actstats.store/1", end to end.

The schema lives here, in actstats: capture writes stores through :func:`prepare_store` /
:func:`create_store` and :class:`~actstats.store.chunks.ChunkFiles`, and :func:`open_store`
checks any store (written by capture or by another program) against the same tables.
docs/store-format.md describes the format for readers and writers in other languages.

- :mod:`~actstats.store.schema`: the tables (variables, coordinates, root attributes) and
  the chunk layout (:class:`StoreLayout`).
- :mod:`~actstats.store.chunks`: the one chunk codec (bytes + CRC-32C, as plain files) and
  :func:`~actstats.store.chunks.atomic_write`.
- :mod:`~actstats.store.create`: :func:`create_store`, :func:`prepare_store` (tidy, refuse
  or check an existing store, or replace it), the directory locks.
- :mod:`~actstats.store.open`: :func:`open_store` and its checked reads.
- :mod:`~actstats.store.manifest`: which chunks a store must hold.
- :mod:`~actstats.store.verify`: :func:`verify_store`.
- :mod:`~actstats.store.write`: :func:`write_store` (a store from a Dataset or named arrays).
- :mod:`~actstats.store.paths`: local paths and URLs.
"""

from actstats.store.create import (
    ABANDONED_AFTER_SECONDS,
    StoreContents,
    create_store,
    StoreWriter,
    hold_directory_lock,
    hold_store_for_writing,
    prepare_store,
    tidy_beside,
)
from actstats.store.filestore import open_group_read_only, refuse_special_files
from actstats.store.open import open_store
from actstats.store.paths import is_local, local_path
from actstats.store.schema import (
    CHUNK_TARGET_BYTES,
    COORDINATES,
    OPTIONAL_COORDINATES,
    RECORD_DIMS,
    RECORD_VARIABLES,
    ROOT_ATTRIBUTES,
    SCHEMA,
    VARIABLES,
    StoreLayout,
    canonical_json,
    scheduled_records,
)
from actstats.store.verify import VerifyReport, verify_store
from actstats.store.write import write_store

__all__ = [
    "open_group_read_only",
    "refuse_special_files",
    "ABANDONED_AFTER_SECONDS",
    "CHUNK_TARGET_BYTES",
    "COORDINATES",
    "OPTIONAL_COORDINATES",
    "RECORD_DIMS",
    "RECORD_VARIABLES",
    "ROOT_ATTRIBUTES",
    "SCHEMA",
    "VARIABLES",
    "StoreContents",
    "StoreLayout",
    "StoreWriter",
    "VerifyReport",
    "canonical_json",
    "create_store",
    "hold_directory_lock",
    "hold_store_for_writing",
    "is_local",
    "local_path",
    "open_store",
    "prepare_store",
    "scheduled_records",
    "tidy_beside",
    "verify_store",
    "write_store",
]
