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


def run_saturated_fraction(ds: xr.Dataset, r: int, e: int, eps: float, split: str, layer: str) -> float:
    """One run's saturated fraction on ``split`` probes at epoch position ``e``: per hidden layer
    (layer labels 1..depth) the mean over probe samples of each sample's fraction, then the mean
    over the layers that have values (``layer="mean"``) or the layer whose label is the depth
    (``"top"``); NaN where nothing exists."""
    function = str(ds["activation_fn"].values[r])
    depth = int(ds["depth"].values[r])
    samples = split_samples(ds)[split]
    per_layer = []
    for l, label in enumerate(ds["layer"].values):
        if int(label) > depth or (layer == "top" and int(label) != depth):
            continue
        fractions = sample_fractions(activation_slab(ds, "activation", r, e, l, samples), function, eps)[0]
        fractions = fractions[~np.isnan(fractions)]
        if fractions.size:
            per_layer.append(float(np.mean(fractions)))
    return float(np.mean(per_layer)) if per_layer else float("nan")


def factor_effects_reference(ds: xr.Dataset, labels, order, eps: float, split: str = "train", layer: str = "mean",
                             **comparison) -> dict:
    """factor_effects one run at a time: ``labels`` is each run's level (text), ``order`` the
    levels in their order; a level's runs are those with a complete record and a finite
    fraction there; the two levels compared with ``compare_groups(**comparison)`` (p-value) and scipy's Welch
    t interval (``ttest_ind(equal_var=False).confidence_interval()``)."""
    from actstats.kernels import compare_groups

    epochs = list(np.asarray(ds["epoch"].values, dtype=float))
    initial = epochs.index(0.0) if 0.0 in epochs else None
    end, start = {}, {}
    for r in range(ds.sizes["run"]):
        records = [e for e in range(ds.sizes["epoch"]) if bool(ds["complete"].values[r, e])]
        if not records:
            continue
        value = run_saturated_fraction(ds, r, records[-1], eps, split, layer)
        if np.isnan(value):
            continue
        end[r] = value
        start[r] = run_saturated_fraction(ds, r, initial, eps, split, layer) if initial is not None else np.nan
    levels = [level for level in order if any(labels[r] == level for r in end)]
    out = {"level": levels, "n_runs": [], "mean_fraction": [], "mean_fraction_initial": [], "mean_change": []}
    values = {}
    for level in levels:
        runs = [r for r in end if labels[r] == level]
        values[level] = np.array([end[r] for r in runs])
        initials = [start[r] for r in runs if not np.isnan(start[r])]
        changes = [end[r] - start[r] for r in runs if not np.isnan(start[r])]
        out["n_runs"].append(len(runs))
        out["mean_fraction"].append(float(np.mean(values[level])))
        out["mean_fraction_initial"].append(float(np.mean(initials)) if initials else np.nan)
        out["mean_change"].append(float(np.mean(changes)) if changes else np.nan)
    means = out["mean_fraction"]
    most = max(range(len(levels)), key=lambda i: (means[i], -i))
    least = min((i for i in range(len(levels)) if i != most), key=lambda i: (means[i], i))
    result = compare_groups(values[levels[most]], values[levels[least]], **comparison)
    first, second = values[levels[most]], values[levels[least]]
    if first.size >= 2 and second.size >= 2 and (np.ptp(first) > 0 or np.ptp(second) > 0):
        from scipy import stats

        interval = stats.ttest_ind(first, second, equal_var=False).confidence_interval(0.95)  # Welch
        ci_low, ci_high = float(interval.low), float(interval.high)
    else:
        ci_low = ci_high = float(first.mean() - second.mean()) if first.size >= 2 and second.size >= 2 else np.nan
    out.update(most_saturated=levels[most], least_saturated=levels[least], difference=float(result.statistic),
               ci_low=ci_low, ci_high=ci_high, pvalue=float(result.pvalue))
    return out
