"""Which chunks a store must hold: those of its complete records (for the layers and units
each run has) and the probe inputs. Any other chunk may be absent and then reads as its
fill value (NaN padding, or False for a record not yet written).

:func:`~actstats.store.open_store` uses this to tell a deleted chunk from padding when a read
returns fill values, and :func:`~actstats.store.verify_store` to list missing chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from actstats.store.schema import RECORD_DIMS, VARIABLES


@dataclass(frozen=True)
class ExpectedChunks:
    """Which chunks of a store must exist, from its ``complete``, ``depth``, ``width`` and
    ``epoch``. ``complete`` None: unknown (damaged), so no record chunk is required."""

    complete: np.ndarray | None  # (run, epoch) bool
    depth: np.ndarray | None  # (run,)
    width: np.ndarray | None  # (run, layer)
    epochs: np.ndarray | None  # (epoch,)

    def reason(self, dims: tuple[str, ...], chunks: tuple[int, ...], index: tuple[int, ...]) -> str | None:
        """Why chunk `index` of an array with `dims` must exist, or None if it may be absent."""
        if dims == VARIABLES["input"][0]:
            return "the probe inputs are always written"
        if dims[:2] != RECORD_DIMS or self.complete is None:
            return None
        r = index[0]
        if r >= self.complete.shape[0]:
            return None
        if dims == RECORD_DIMS:
            return f"run {r} has complete records" if self.complete[r].any() else None
        e = index[1]
        if e >= self.complete.shape[1] or not self.complete[r, e]:
            return None
        if dims[2] == "layer":
            first = index[2] * chunks[2]
            layers = range(first, first + chunks[2])
            if self.depth is not None:
                layers = [layer for layer in layers if layer < self.depth[r]]
            if not layers:
                return None
            if "unit" in dims and self.width is not None:
                axis = dims.index("unit")
                first_unit = index[axis] * chunks[axis]
                if not any(layer < self.width.shape[1] and self.width[r, layer] > first_unit for layer in layers):
                    return None
        epoch = f"{self.epochs[e]:g}" if self.epochs is not None and e < len(self.epochs) else f"#{e}"
        return f"run {r}, epoch {epoch} is complete"


def chunk_exists(array, key: str) -> bool:
    """Whether chunk `key` of `array` is in its store."""
    from zarr.core.sync import sync
    from zarr.storage import LocalStore

    store = array.store_path.store
    prefix = array.store_path.path
    full = f"{prefix}/{key}" if prefix else key
    if isinstance(store, LocalStore):  # a stat, without a round trip through zarr's event loop
        return os.path.isfile(os.path.join(store.root, *full.split("/")))
    return sync(store.exists(full))
