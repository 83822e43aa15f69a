"""Reference computations for the query tests: plain numpy loops over groups.

An independent path from actstats.queries: what exists is taken by slicing each
(run, epoch, layer) slab with `width` (not by masks), bounds come from a table written
here, and statistics are computed with numpy, scipy and statsmodels where they exist
(the kernels only where the point is the grouping, e.g. the bootstrap interval).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

BOUNDS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0), "relu": (0.0, np.inf)}


def layer_position(ds: xr.Dataset, layer) -> int:
    return list(ds["layer"].values).index(layer)


def activation_slab(ds: xr.Dataset, name: str, r: int, e: int, l: int, samples=None) -> np.ndarray:
    """(samples, existing units) of a record; non-finite values become NaN."""
    width = int(ds["width"].values[r, l])
    values = np.asarray(ds[name].values[r, e, l], dtype=float)
    if samples is not None:
        values = values[samples]
    if not bool(ds["complete"].values[r, e]):
        return np.empty((values.shape[0], 0))
    values = values[:, :width]
    return np.where(np.isfinite(values), values, np.nan)


def weight_values(ds: xr.Dataset, name: str, r: int, e: int, l: int) -> np.ndarray:
    """The existing finite weights of one layer, row-major (unit, fan_in)."""
    if not bool(ds["complete"].values[r, e]):
        return np.empty(0)
    width = int(ds["width"].values[r, l])
    layer = int(ds["layer"].values[l])
    fan_in = ds.sizes["feature"] if layer == 1 else int(ds["width"].values[r, l - 1])
    values = np.asarray(ds[name].values[r, e, l], dtype=float)[:width, :fan_in].ravel()
    return values[np.isfinite(values)]


def sample_fractions(slab: np.ndarray, function: str, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample (row) fractions: (low or high, low, high), NaN skipped."""
    lower, upper = BOUNDS[function]
    valid = ~np.isnan(slab)
    with np.errstate(invalid="ignore"):
        if np.isinf(upper):
            low = valid & (slab == 0)
            high = np.zeros_like(valid)
        else:
            width = upper - lower
            low = valid & (slab <= lower + eps * width)
            high = valid & (slab >= upper - eps * width)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (low | high).sum(axis=1) / n, low.sum(axis=1) / n, high.sum(axis=1) / n


def split_samples(ds: xr.Dataset) -> dict[str, np.ndarray]:
    split = np.asarray(ds["split"].values).astype(str)
    return {label: np.flatnonzero(split == label) for label in dict.fromkeys(split.tolist())}


def rescaled(slab: np.ndarray, function: str) -> np.ndarray:
    lower, upper = BOUNDS[function]
    return (slab - lower) / (upper - lower)
