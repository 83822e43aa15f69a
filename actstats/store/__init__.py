"""The store format "actstats.store/2" (and the older "actstats.store/1", still read), end to end.

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
- :mod:`~actstats.store.text`: text coordinates as integer codes with their labels.
- :mod:`~actstats.store.backend`: ``xr.open_dataset(path, engine="actstats")``.
"""

#: The package's names and the module each comes from. Imported when first used, so that
#: importing one module of the package (``actstats.store.text``, or the xarray back end
#: :mod:`actstats.store.backend` that xarray imports whenever it lists its engines) does not
#: load zarr and every other module.
_NAMES = {
    "actstats.store.create": ("ABANDONED_AFTER_SECONDS", "StoreContents", "create_store", "StoreWriter",
                              "hold_directory_lock", "hold_store_for_writing", "prepare_store", "tidy_beside"),
    "actstats.store.filestore": ("open_group_read_only", "refuse_special_files"),
    "actstats.store.open": ("open_store",),
    "actstats.store.paths": ("is_local", "local_path"),
    "actstats.store.schema": ("CHUNK_TARGET_BYTES", "COORDINATES", "OPTIONAL_COORDINATES", "RECORD_DIMS",
                              "RECORD_VARIABLES", "ROOT_ATTRIBUTES", "SCHEMA", "SCHEMA_1", "VARIABLES",
                              "StoreLayout", "canonical_json", "scheduled_records"),
    "actstats.store.verify": ("VerifyReport", "verify_store"),
    "actstats.store.write": ("write_store",),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once
        return value
    try:  # a module of the package (actstats.store.schema, ...)
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


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
    "SCHEMA_1",
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
