"""The streamed paths: groups too large to load whole, summarised in one pass per chunk.

Bounded activations (``bimodality`` and ``fit`` with ``method="histogram"``): each chunk
gives :func:`actstats.kernels.bounded_summary` (Beta sums, moments, logit moments, a
logit-space histogram), merged per group. Weights (``weight_normality`` and the weight
``fit``): per-group moments (and extremes) first, then a histogram of the standardised
values (:func:`actstats.kernels.standardized_histogram`) summed over chunks. Each chunk's
work is compiled: one loop over its values (two for the bounded summary, whose
logarithms numpy takes).

The three streamed reductions clean their blocks themselves (``block=``): each group's
values are handed to the compiled kernels as stored (float32), which skip what does not
exist, skip and count what is not finite and apply the rescale to [0, 1] value by value,
so no float64 copy or mask of a 16 MiB block is made; the numbers are those of the
engine's :func:`~actstats.queries._engine._block` and the reduction's chunk function
(``tests/test_streamed_blocks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.kernels.histogram import standardized_histogram_block
from actstats.kernels.logit_histogram import bounded_summary_block
from actstats.kernels.moments import moments_extremes, moments_extremes_lanes
from actstats.queries import _direct
from actstats.queries._engine import (
    _FIELD, Fields, Reduction, _Layout, _block, _chunk_values, _compute, _exists, _flat, _grid, _map_chunks,
    _merge_sum, _refuse_beyond_width, _template,
)


def _stored_rows(block, dims, n_reduce, layout, location, variable):
    """A block as the kernels read it: ``(grid, rows, exists, keep_shape)`` with ``rows`` the
    stored values ``(groups of the block, values of a group)`` in C order of the reduced axes
    (a view of the block where its layout allows, as float32 stays float32) and ``exists``
    None when every value exists, else the same shape's mask. A value beyond a layer's width
    that is not NaN is refused, as :func:`_block` refuses it. None where the block needs
    the engine's own cleaning: fan-in columns of a layer whose layer below was selected away
    (their NaN is padding, not a non-finite value)."""
    grid = _grid(dims, location)
    if "fan_in" in grid and not layout.fan_in_known.all():
        return None
    values = np.asarray(block)
    if values.dtype.kind != "f" or values.dtype.itemsize > 8:
        values = values.astype(np.float64)
    keep_shape = values.shape[: values.ndim - n_reduce]
    n_rows = int(np.prod(keep_shape, dtype=np.int64))
    rows = np.ascontiguousarray(values.reshape(n_rows, -1))
    # existence is monotone along unit and fan_in (below a limit) and does not depend on the
    # sample: the last unit and fan-in column of the block decide whether every value exists
    # (the usual block: then no mask and nothing beyond a width to refuse)
    corner = {d: np.take(g, [-1], axis=dims.index(d)) if d in ("unit", "fan_in") and g.size else g
              for d, g in grid.items()}
    if values.size and np.all(_exists(layout, corner)):
        return grid, rows, None, keep_shape
    exists = _exists(layout, grid)
    _refuse_beyond_width(values, grid, exists, layout, variable)
    mask = np.ascontiguousarray(np.broadcast_to(exists, values.shape).reshape(n_rows, -1))
    return grid, rows, mask, keep_shape


def _packed(reduction: Reduction, fields: dict, nonfinite, keep_shape, n_reduce) -> np.ndarray:
    """The block result laid out as :func:`_block` lays it out (n_nonfinite last)."""
    out = reduction.fields.pack(fields, keep_shape)
    out = np.concatenate([out, np.asarray(nonfinite, dtype=np.float64).reshape(keep_shape + (1,))], axis=-1)
    return out.reshape(keep_shape + (1,) * n_reduce + (out.shape[-1],))


def _engine_block(block, *others, reduction, dims, n_reduce, layout, rescale, options, block_info, location,
                  variable):
    return _block(block, *others, reduction=reduction, dims=dims, n_reduce=n_reduce, layout=layout, rescale=rescale,
                  options=options, block_info=block_info, location=location, variable=variable)


def _moments_chunk(values, *, grid, n_reduce, layout):
    return {"moments": moments_extremes(_flat(values, n_reduce))[..., :5]}


#: Mergeable moments of each chunk (kernels.moments, computed by the compiled
#: kernels.moments.moments_extremes), merged by the query with combine_moments.
MOMENTS = Reduction("moments", _moments_chunk, Fields(("moments", 5)), combine="gather")


def _moments_extrema_chunk(values, *, grid, n_reduce, layout):
    flat = np.asarray(_flat(values, n_reduce), dtype=np.float64)
    summary, _ = moments_extremes_lanes(flat.reshape(-1, flat.shape[-1]))  # NaN where the engine skipped
    summary = summary.reshape(flat.shape[:-1] + (7,))
    return {"moments": summary[..., :5], "min": summary[..., 5], "max": summary[..., 6]}


def _moments_extrema_block(block, *, reduction, dims, n_reduce, layout, rescale, options, block_info=None,
                           location=None, variable=None):
    """The block function of :data:`MOMENTS_EXTREMA`: :func:`moments_extremes_lanes` on the
    stored rows (the numbers of :func:`_block` with :func:`_moments_extrema_chunk`, bit for bit)."""
    if location is None:
        location = block_info[0]["array-location"]
    stored = _stored_rows(block, dims, n_reduce, layout, location, variable)
    if stored is None:
        return _engine_block(block, reduction=reduction, dims=dims, n_reduce=n_reduce, layout=layout,
                             rescale=rescale, options=options, block_info=block_info, location=location,
                             variable=variable)
    _, rows, exists, keep_shape = stored
    summary, nonfinite = moments_extremes_lanes(rows, exists)
    return _packed(reduction, {"moments": summary[:, :5], "min": summary[:, 5], "max": summary[:, 6]}, nonfinite,
                   keep_shape, n_reduce)


#: Moments and the smallest and largest value of each chunk, in one compiled pass (the
#: weight fit's first pass: kernels.moments.moments_extremes_lanes, its sums in vector lanes).
MOMENTS_EXTREMA = Reduction("moments_extrema", _moments_extrema_chunk, Fields(("moments", 5), "min", "max"),
                            combine="gather", block=_moments_extrema_block)


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


def _histogram_block(block, *, reduction, dims, n_reduce, layout, rescale, options, block_info=None, location=None,
                     variable=None):
    """The block function of :data:`STANDARDIZED_HISTOGRAM`: :func:`standardized_histogram_block`
    on the stored rows (the numbers of :func:`_block` with :func:`_histogram_chunk`, bit for bit)."""
    if location is None:
        location = block_info[0]["array-location"]
    stored = _stored_rows(block, dims, n_reduce, layout, location, variable)
    if stored is None:
        return _engine_block(block, reduction=reduction, dims=dims, n_reduce=n_reduce, layout=layout,
                             rescale=rescale, options=options, block_info=block_info, location=location,
                             variable=variable)
    grid, rows, exists, keep_shape = stored
    n_group = options["n_group"]
    mean = _group_values(options["mean"], grid, n_group, keep_shape)
    std = _group_values(options["std"], grid, n_group, keep_shape)
    histogram, nonfinite = standardized_histogram_block(rows, np.reshape(mean, -1), np.reshape(std, -1), exists)
    return _packed(reduction, {"histogram": histogram}, nonfinite, keep_shape, n_reduce)


#: Histograms of the standardised values (kernels.standardized_histogram), summed over chunks.
STANDARDIZED_HISTOGRAM = Reduction("standardized_histogram", _histogram_chunk,
                                   Fields(("histogram", kernels.HISTOGRAM_BINS + 4)), block=_histogram_block)


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


def _bounded_summary_block(block, *, reduction, dims, n_reduce, layout, rescale, options, block_info=None,
                           location=None, variable=None):
    """The block function of :data:`BOUNDED_SUMMARY`: :func:`bounded_summary_block` on the
    stored rows, rescaled value by value with the bounds of the block's runs (the numbers of
    :func:`_block` with :func:`_bounded_summary_chunk`, bit for bit). A block whose runs
    differ in their bounds (possible only with ``run`` reduced and runs of different
    functions in one dask block) is cleaned by the engine."""
    if location is None:
        location = block_info[0]["array-location"]
    bounds = None
    if rescale:
        (r0, r1) = location[dims.index("run")]
        lower = layout.lower[r0:r1]
        scale = np.where(layout.bounded[r0:r1], layout.upper[r0:r1] - lower, np.nan)
        if np.array_equal(lower, np.full_like(lower, lower[0]), equal_nan=True) and \
                np.array_equal(scale, np.full_like(scale, scale[0]), equal_nan=True):
            bounds = (lower[0], scale[0])
    stored = None if (rescale and bounds is None) else _stored_rows(block, dims, n_reduce, layout, location, variable)
    if stored is None:
        return _engine_block(block, reduction=reduction, dims=dims, n_reduce=n_reduce, layout=layout,
                             rescale=rescale, options=options, block_info=block_info, location=location,
                             variable=variable)
    _, rows, exists, keep_shape = stored
    summary, nonfinite = bounded_summary_block(rows, exists, bounds)
    return _packed(reduction, {name: summary[:, _SUMMARY.slices[name]] for name in _SUMMARY.names[:-1]}, nonfinite,
                   keep_shape, n_reduce)


BOUNDED_SUMMARY = Reduction("bounded_summary", _bounded_summary_chunk, _SUMMARY, combine="gather",
                            block=_bounded_summary_block)


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
    lazy, summaries = [], []
    for x in arrays:  # one task per chunk; its small head is gathered, its histogram summed
        summary = _map_chunks(x, BOUNDED_SUMMARY, group, core, layout, rescale=True)
        summaries.append(summary)
        lazy.append(summary.isel({_FIELD: positions}))  # laid out as `head`
        lazy.append(_merge_sum(_SUMMARY.get(summary, "histogram")))
    n_workers = _direct.workers() if all(_direct.plan_of(s) is not None for s in summaries) else None
    if n_workers:  # the store's own blocks, read here without a graph: the same numbers (counts summed)
        computed = []
        for summary, head_lazy, histogram_lazy in zip(summaries, lazy[0::2], lazy[1::2]):
            head_values, histogram = _direct.compute_gathered(summary, n_workers, positions,
                                                              _SUMMARY.slices["histogram"])
            computed += [head_lazy.copy(data=head_values), histogram_lazy.copy(data=histogram)]
    else:
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
