"""The streamed paths: groups too large to load whole, summarised in one pass per chunk.

Bounded activations (``bimodality`` and ``fit`` with ``method="histogram"``): each chunk
gives :func:`actstats.kernels.bounded_summary` (Beta sums, moments, logit moments, a
logit-space histogram), merged per group. Weights (``weight_normality`` and the weight
``fit``): per-group moments (and extremes) first, then a histogram of the standardised
values (:func:`actstats.kernels.standardized_histogram`) summed over chunks. Each chunk's
work is one compiled loop over its values (numpy takes the logarithms of the bounded
summary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.kernels.moments import moments_extremes
from actstats.queries._engine import (
    _FIELD, Fields, Reduction, _Layout, _chunk_values, _compute, _flat, _map_chunks, _merge_sum, _reduce_axes,
    _template,
)


def _moments_chunk(values, *, grid, n_reduce, layout):
    return {"moments": moments_extremes(_flat(values, n_reduce))[..., :5]}


#: Mergeable moments of each chunk (kernels.moments, computed by the compiled
#: kernels.moments.moments_extremes), merged by the query with combine_moments.
MOMENTS = Reduction("moments", _moments_chunk, Fields(("moments", 5)), combine="gather")


def _moments_extrema_chunk(values, *, grid, n_reduce, layout):
    summary = moments_extremes(_flat(values, n_reduce))
    return {"moments": summary[..., :5], "min": summary[..., 5], "max": summary[..., 6]}


#: Moments and the smallest and largest value of each chunk, in one compiled pass.
MOMENTS_EXTREMA = Reduction("moments_extrema", _moments_extrema_chunk, Fields(("moments", 5), "min", "max"),
                            combine="gather")


def _group_values(per_group: np.ndarray, grid, n_group: int, shape) -> np.ndarray:
    """A per-group array (dims = the kept dims) picked out for the groups of a block."""
    index = tuple(np.ravel(grid[d]) for d in list(grid)[:n_group])
    return per_group[np.ix_(*index)].reshape(shape) if n_group else np.asarray(per_group).reshape(shape)


def _histogram_chunk(values, *, grid, n_reduce, layout, mean, std, n_group):
    keep_shape = values.shape[: values.ndim - n_reduce]
    return {"histogram": kernels.standardized_histogram(
        _flat(values, n_reduce),
        _group_values(mean, grid, n_group, keep_shape),
        _group_values(std, grid, n_group, keep_shape),
    )}


#: Histograms of the standardised values (kernels.standardized_histogram), summed over chunks.
STANDARDIZED_HISTOGRAM = Reduction("standardized_histogram", _histogram_chunk,
                                   Fields(("histogram", kernels.HISTOGRAM_BINS + 4)))


def _standardized_histograms(weight: xr.DataArray, group, core, layout: _Layout, mean, std) -> xr.DataArray:
    """Lazy per-group histograms of ``(weight - mean) / std`` (per-group arrays), summed over chunks."""
    return STANDARDIZED_HISTOGRAM.merge(_map_chunks(
        weight, STANDARDIZED_HISTOGRAM, group, core, layout,
        mean=np.asarray(mean, dtype=float), std=np.asarray(std, dtype=float), n_group=len(group),
    ))


#: The layout of :func:`actstats.kernels.bounded_summary` (its docstring): Beta sums,
#: moments of y, moments of logit y, then the logit histogram.
_SUMMARY = Fields(("sums", 4), ("moments", 5), ("logit_moments", 5),
                  ("histogram", kernels.LOGIT_HISTOGRAM_BINS + 2 * kernels.LOGIT_OUTER_BINS + 4))
#: What is gathered per chunk (the histogram is summed in the graph instead).
_SUMMARY_HEAD = ("sums", "moments", "logit_moments", "n_nonfinite")


def _bounded_summary_chunk(values, *, grid, n_reduce, layout):
    summary = kernels.bounded_summary(_flat(values, n_reduce))
    return {name: summary[..., _SUMMARY.slices[name]] for name in _SUMMARY.names[:-1]}


BOUNDED_SUMMARY = Reduction("bounded_summary", _bounded_summary_chunk, _SUMMARY, combine="gather")


@dataclass(frozen=True)
class _Streamed:
    """Merged per-group summaries of rescaled activations (arrays over the kept dims)."""

    sums: np.ndarray  # beta_sufficient_statistics, (..., 4)
    moments: np.ndarray  # of y, (..., 5)
    logit_moments: np.ndarray  # of logit(clipped y), (..., 5)
    histogram: np.ndarray  # kernels.logit_histogram, (..., fields)
    n_nonfinite: np.ndarray
    template: xr.DataArray  # dims and coords of the groups

    def fields(self, values: dict[str, np.ndarray]) -> dict[str, xr.DataArray]:
        """Per-group numpy fields (+ ``n_nonfinite``) as DataArrays over the groups."""
        values = {**values, "n_nonfinite": self.n_nonfinite}
        return {name: xr.DataArray(np.asarray(v), dims=self.template.dims, coords=self.template.coords)
                for name, v in values.items()}


def _stream_bounded(arrays: Sequence[xr.DataArray], group: Sequence[str], core: Sequence[str],
                    layout: _Layout) -> list[_Streamed]:
    """One streaming pass over each array: the summaries the histogram paths of fit and bimodality need."""
    head = Fields(*[(n, _SUMMARY.slices[n].stop - _SUMMARY.slices[n].start) for n in _SUMMARY_HEAD[:-1]])
    positions = [p for n in _SUMMARY_HEAD for p in np.atleast_1d(np.arange(_SUMMARY.size)[_SUMMARY.slices[n]])]
    lazy = []
    for x in arrays:  # one task per chunk; its small head is gathered, its histogram summed
        summary = _map_chunks(x, BOUNDED_SUMMARY, group, core, layout, rescale=True)
        lazy.append(summary.isel({_FIELD: positions}))  # laid out as `head`
        lazy.append(_merge_sum(_SUMMARY.get(summary, "histogram")))
    computed = _compute(*lazy)
    out = []
    for blocks, histogram in zip(computed[0::2], computed[1::2]):
        values, chunk_axes = _chunk_values(blocks, group, core)
        out.append(_Streamed(
            sums=head.get(values, "sums").sum(axis=chunk_axes),
            moments=kernels.combine_moments(head.get(values, "moments"), axis=chunk_axes),
            logit_moments=kernels.combine_moments(head.get(values, "logit_moments"), axis=chunk_axes),
            histogram=histogram.transpose(*group, _FIELD).values,
            n_nonfinite=head.get(values, "n_nonfinite").sum(axis=chunk_axes),
            template=_template(blocks, core),
        ))
    return out
