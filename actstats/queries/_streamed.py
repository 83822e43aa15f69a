"""The streamed paths: groups too large to load whole, summarised in one pass per chunk.

Bounded activations (``bimodality`` and ``fit`` with ``method="histogram"``): each chunk
gives :func:`actstats.kernels.bounded_summary` (Beta sums, moments, logit moments, a
logit-space histogram), merged per group. Weights (``weight_normality`` and the weight
``fit``): per-group moments first, then a histogram of the standardised values
(:func:`actstats.kernels.standardized_histogram`) summed over chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.queries._engine import _FIELD, _Layout, _compute, _field, _flat, _map_chunks, _merge_sum


def _moments_function(values, *, grid, n_reduce, layout):
    return kernels.moments(values, axis=tuple(range(values.ndim - n_reduce, values.ndim)))


def _group_values(per_group: np.ndarray, grid, n_group: int, shape) -> np.ndarray:
    """A per-group array (dims = the kept dims) picked out for the groups of a block."""
    index = tuple(np.ravel(grid[d]) for d in list(grid)[:n_group])
    return per_group[np.ix_(*index)].reshape(shape) if n_group else np.asarray(per_group).reshape(shape)


def _histogram_function(values, *, grid, n_reduce, layout, mean, std, n_group):
    keep_shape = values.shape[: values.ndim - n_reduce]
    return kernels.standardized_histogram(
        _flat(values, n_reduce),
        _group_values(mean, grid, n_group, keep_shape),
        _group_values(std, grid, n_group, keep_shape),
    )


def _standardized_histograms(weight: xr.DataArray, group, core, layout: _Layout, mean, std) -> xr.DataArray:
    """Lazy per-group histograms of ``(weight - mean) / std`` (per-group arrays), summed over chunks."""
    return _merge_sum(_map_chunks(
        weight, _histogram_function, group, core, kernels.HISTOGRAM_BINS + 4, layout,
        mean=np.asarray(mean, dtype=float), std=np.asarray(std, dtype=float), n_group=len(group),
    ))


def _bounded_summary_function(values, *, grid, n_reduce, layout):
    return kernels.bounded_summary(_flat(values, n_reduce))


@dataclass(frozen=True)
class _Streamed:
    """Merged per-group summaries of rescaled activations (arrays over the kept dims)."""

    sums: np.ndarray  # beta_sufficient_statistics, (..., 4)
    moments: np.ndarray  # of y, (..., 5)
    logit_moments: np.ndarray  # of logit(clipped y), (..., 5)
    histogram: np.ndarray  # kernels.logit_histogram, (..., fields)
    n_nonfinite: np.ndarray
    template: xr.DataArray  # dims and coords of the groups

    def packed(self, fields: np.ndarray) -> xr.DataArray:
        """``(..., k)`` fields + the non-finite count, laid out like a ``_single`` whole-group result."""
        values = np.concatenate([fields, self.n_nonfinite[..., None]], axis=-1)
        return xr.DataArray(values, dims=self.template.dims + (_FIELD,), coords=self.template.coords)


def _stream_bounded(arrays: Sequence[xr.DataArray], group: Sequence[str], core: Sequence[str],
                    layout: _Layout) -> list[_Streamed]:
    """One streaming pass over each array: the summaries the histogram paths of fit and bimodality need."""
    head = kernels.SUMMARY_FIELDS
    fields = head + kernels.LOGIT_HISTOGRAM_BINS + 2 * kernels.LOGIT_OUTER_BINS + 4
    lazy = []
    for x in arrays:  # one task per chunk; its small head is gathered, its histogram summed
        summary = _map_chunks(x, _bounded_summary_function, group, core, fields, layout, rescale=True)
        lazy.append(summary.isel({_FIELD: list(range(head)) + [fields]}))  # + the non-finite count
        lazy.append(_merge_sum(summary.isel({_FIELD: slice(head, fields + 1)})))
    computed = _compute(*lazy)
    out = []
    chunk_axes = tuple(range(len(group), len(group) + len(core)))
    for blocks, histogram in zip(computed[0::2], computed[1::2]):
        block = blocks.transpose(*group, *[f"{d}_chunk" for d in core], _FIELD)
        values = block.values
        template = _field(block.isel({f"{d}_chunk": 0 for d in core}, drop=True), 0)
        out.append(_Streamed(
            sums=values[..., :4].sum(axis=chunk_axes),
            moments=kernels.combine_moments(values[..., 4:9], axis=chunk_axes),
            logit_moments=kernels.combine_moments(values[..., 9:14], axis=chunk_axes),
            histogram=histogram.transpose(*group, _FIELD).values[..., :-1],
            n_nonfinite=values[..., 14].sum(axis=chunk_axes),
            template=template,
        ))
    return out


def _extrema_function(values, *, grid, n_reduce, layout):
    flat = _flat(values, n_reduce)
    missing = np.isnan(flat)
    return np.stack([np.where(missing, np.inf, flat).min(axis=-1), np.where(missing, -np.inf, flat).max(axis=-1)],
                    axis=-1)
