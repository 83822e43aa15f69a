"""``saturation``: the fraction of activations within ``eps`` of the bounds, with sample-level CIs."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.activations import ACTIVATIONS, describe_saturation
from actstats.errors import ActstatsValueError
from actstats.queries import _direct
from actstats.queries._engine import (
    Fields, Reduction, _Layout, _cells_by, _compute, _grid, _in_run_batches, _is_dask, _layout, _map_chunks,
    _pool_axes,
    _reduce_axes, _refuse_beyond_width, _runs_per_batch, _template, one_blas_thread,
)
from actstats.queries._results import (
    _attrs, _concat_splits, _describe, _divide, _like, _sample_subsets, _take, _to_int, _warn_nonfinite,
)
from actstats.validate import (
    ACTIVATION_DIMS, DEFAULT_ACTIVATION_BY, require_variables, validate_by, validate_confidence_level, validate_eps,
)


#: Saturation counts per cell: values near the lower bound, near the upper bound, and counted.
_COUNTS = Fields(*kernels.SATURATION_FIELDS)


def _count_chunk(values, *, grid, n_reduce, layout, eps):
    """``low``, ``high``, ``total`` over the reduced axes with each layer's bounds (dims run,
    epoch, layer, ...: the layer's own function where the store has ``layer_activation_fn``)."""
    runs, layers = grid["run"].reshape(-1), grid["layer"].reshape(-1)
    out = np.zeros(values.shape[: values.ndim - n_reduce] + (3,), dtype=np.int64)
    axis = _reduce_axes(values[0, :, 0], n_reduce)
    for i, run in enumerate(runs):
        for j, layer in enumerate(layers):
            out[i, :, j] = kernels.saturation_counts(
                values[i, :, j], layout.layer_lower[run, layer], layout.layer_band_upper[run, layer], eps, axis=axis,
                mode=layout.layer_saturation[run, layer])
    return dict(zip(_COUNTS.names, np.moveaxis(out, -1, 0)))


def _slabs(block, location, dims, layout, variable):
    """The (run, epoch, layer) slabs of an activation-like block (run, epoch, layer, sample,
    unit) that exist: ``(i, j, k, run, layer, slab)`` with `slab` the (sample, unit) values
    below the layer's width, for complete records only; a value beyond a layer's width that
    is not NaN is refused (a format error, as :func:`_block` refuses it)."""
    values = block
    (r0, _), (e0, _), (l0, _), _, (u0, u1) = location
    for i, j, k in np.ndindex(*values.shape[:3]):
        run, epoch, layer = r0 + i, e0 + j, l0 + k
        if not layout.complete[run, epoch]:
            continue
        units = min(u1, int(layout.width[run, layer])) - u0
        beyond = values[i, j, k, :, max(units, 0):]
        if beyond.size and not np.isnan(beyond).all():  # a format error, never silently left out
            grid = _grid(dims, [(run, run + 1), (epoch, epoch + 1), (layer, layer + 1), location[3], location[4]])
            _refuse_beyond_width(values[i:i + 1, j:j + 1, k:k + 1], grid, grid["unit"] < layout.width[run, layer],
                                 layout, variable)
        if units > 0:
            yield i, j, k, run, layer, values[i, j, k, :, :units]


def _count_block(block, *, reduction, dims, n_reduce, layout, rescale, options, block_info=None, location=None,
                 variable=None):
    """The block function of :data:`CELL_COUNTS`: activation blocks (run, epoch, layer, sample,
    unit) counted one (run, epoch, layer) slab at a time in their own dtype, in one compiled
    pass a slab (:func:`actstats.kernels.band_counts`: low, high, finite and not finite per
    sample; the hot loop of the biggest queries), with what does not exist skipped and a value
    beyond a layer's width refused, as :func:`_block` does."""
    if location is None:
        location = block_info[0]["array-location"]
    values = np.asarray(block)
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    eps = options["eps"]
    out = np.zeros(values.shape[:4] + (1, _COUNTS.size))
    for i, j, k, run, layer, slab in _slabs(values, location, dims, layout, variable):
        mode = layout.layer_saturation[run, layer]
        thresholds = _thresholds(str(mode), float(layout.layer_lower[run, layer]),
                                 float(layout.layer_band_upper[run, layer]), float(eps), values.dtype.str)
        # fields low, high, total, n_nonfinite: the kernel's own order
        kernels.band_counts(slab, *thresholds, mode, out[i, j, k, :, 0])
    return out


@functools.lru_cache(maxsize=256)
def _thresholds(mode: str, lower: float, band_upper: float, eps: float, dtype: str) -> tuple:
    """:func:`actstats.kernels.band_thresholds` of a layer's band in the block's dtype, once
    per band (a block is counted a Zarr chunk at a time: ~1000 calls on a 4 GB store)."""
    if mode not in ("bounds", "lower_bound"):
        return (0.0, 0.0)
    # saturation_counts' checks: a bad eps or bound is an error, not a count
    kernels.saturation_counts(np.zeros((1, 1), dtype), lower, band_upper, eps, mode=mode)
    return kernels.band_thresholds(lower, band_upper, eps, np.dtype(dtype))


#: Per-unit counts summed over samples (``by`` with ``unit``).
COUNTS = Reduction("saturation_counts", _count_chunk, _COUNTS)
#: Per-cell counts, (run, epoch, layer, sample), summed over unit chunks: the hot path.
CELL_COUNTS = Reduction("saturation_cell_counts", None, _COUNTS, block=_count_block, per_cell=True)


def _cell_counts(ds: xr.Dataset, layout: _Layout, eps: float, index=None) -> xr.DataArray:
    """Lazy :data:`CELL_COUNTS` per (run, epoch, layer, sample) cell."""
    return _map_chunks(_take(ds["activation"], index), CELL_COUNTS, ["run", "epoch", "layer", "sample"], ["unit"],
                       layout, eps=eps)


def saturation(
    ds: xr.Dataset,
    eps: float | None = None,
    by: str | Sequence[str] = DEFAULT_ACTIVATION_BY,
    confidence_level: float = 0.95,
    *,
    n_resamples: int = kernels.DEFAULT_RESAMPLES,
    seed: int = kernels.DEFAULT_SEED,
) -> xr.Dataset:
    """Fraction of activations within ``eps`` of the bounds, with sample-level CIs.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (:func:`actstats.open_store`) or the same data in memory.
    eps : float, optional
        Default ``OPTIONS["eps"]`` (0.05; :func:`actstats.set_options`).
        Width of each saturated band as a fraction of the range: a value is *low* if
        ``x <= lower + eps (upper - lower)`` and *high* if ``x >= upper - eps (upper -
        lower)``. Bounds come from each run's ``activation_fn``: sigmoid [0, 1], tanh and
        softsign [-1, 1]; in a store with ``layer_activation_fn`` (layers of one run with
        different functions), from each layer's own. For relu (unbounded above) *low* is an exact zero (a dead
        unit), *high* is never counted, and ``eps`` does not apply. For one-sided functions (elu, softplus,
        silu, gelu: a lower bound only) *low* is ``x <= lower + eps (f(0) - lower)`` and *high* is never
        counted. For functions where saturation has no meaning (leaky_relu: no bound, no dead value) the
        layer's values are not counted: a group of only such layers has a NaN fraction and
        ``attrs["not_applicable"]`` says which functions. Must be in (0, 0.5).
    by : str or sequence of str, default ("run", "epoch", "layer", "split")
        Kept dimensions, from run, epoch, layer, sample, unit and split.
    confidence_level : float, default 0.95
    n_resamples, seed
        Of the bootstrap inside :func:`actstats.kernels.fraction_interval`.

    Returns
    -------
    xarray.Dataset
        Per group: ``fraction`` (low or high), ``fraction_low``, ``fraction_high``,
        ``ci_low``/``ci_high`` (the interval of ``fraction``), ``interval_method``,
        ``n_samples`` (independent units in the group), ``n_values`` (activations
        counted) and ``n_nonfinite`` (excluded, see the module notes).

    Notes
    -----
    Each *cell* — a (run, sample) pair, further split by the kept dims — gets its own
    fraction over its units (and over epochs/layers when those are pooled):
    :func:`~actstats.kernels.saturation_counts` then
    :func:`~actstats.kernels.saturated_fractions`. ``fraction`` is the mean of the
    cell fractions over the group's samples; it equals the pooled fraction of values
    whenever every sample has the same number of values (always within one run).
    The interval is :func:`~actstats.kernels.fraction_interval` over those cells: a BCa
    bootstrap that resamples samples, or the Wilson interval when fewer than 10 samples
    are saturated (or unsaturated). When ``run`` is pooled the resampled unit is the
    (run, sample) pair, which treats runs as exchangeable replicates.

    With ``sample`` in ``by`` each group is one sample, and with ``unit`` in ``by`` the
    per-unit fraction over samples is reported; neither has an interval here
    (``ci_low``/``ci_high`` are NaN and ``interval_method`` is empty).

    Verification: fractions, counts and intervals equal a plain numpy loop over groups
    that applies the same definitions and ``fraction_interval`` to per-sample fractions
    (``tests/test_queries.py``); numpy- and dask-backed data give identical numbers;
    interval coverage checked by simulation on a hierarchical store (100 replicate runs,
    inside the binomial 99% band around 95%).

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=1, weight_scale=8.0)
    >>> result = actstats.saturation(ds, by=("layer", "split"))
    >>> result.fraction.dims
    ('layer', 'split')
    >>> bool((result.ci_low <= result.fraction).all() and (result.fraction <= result.ci_high).all())
    True
    """
    eps = validate_eps(eps)
    confidence_level = validate_confidence_level(confidence_level)
    by = validate_by(by, ACTIVATION_DIMS, split=True)
    if "sample" in by and "unit" in by:
        raise ActstatsValueError("by: sample and unit together make each group a single activation; keep one of them",
                                 argument="by", problem="sample and unit together make each group a single "
                                 "activation; keep one of them")
    require_variables(ds, ["activation"], "saturation")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values, per_layer=True)
    group = [d for d in by if d != "split"]
    pool = [d for d in ("run", "sample") if d not in by]
    subsets = _sample_subsets(ds, by)
    labels = [label for label, _ in subsets]
    per_unit = "unit" in by

    batched = "run" in by and not per_unit and _runs_per_batch(ds) < ds.sizes["run"]
    if batched and not _is_dask(ds["activation"]):
        # Groups never span runs: a batch of runs at a time keeps the per-sample cell counts
        # (the bootstrap's input) bounded whatever the number of runs. Same numbers: each
        # group's bootstrap depends on its own cells and the seed only.
        result = _in_run_batches(ds, lambda part: saturation(part, eps, by, confidence_level,
                                                             n_resamples=n_resamples, seed=seed)).transpose(*by, ...)
        _warn_nonfinite(result["n_nonfinite"], "'activation'", "saturation")
        return result

    direct = None
    if "run" in by and not per_unit:
        counts = _cell_counts(ds, layout, eps)
        direct = _direct.workers() if _direct.plan_of(counts) is not None else None
    if direct:
        # blocks read here, without a graph (_direct), a batch's numbers beside the next batch's
        # reads: half batches, so that a store of two runs has two (1 GB and 4 GB bench stores:
        # the reading overlaps a batch's bootstrap on both, and peak memory is the same)
        parts = _batched_direct(counts, direct, max(1, _runs_per_batch(ds) // 2), by, group, pool, subsets,
                                confidence_level, n_resamples, seed)
        result = xr.concat(parts, dim="run", data_vars="minimal", coords="minimal", compat="override",
                           join="outer", combine_attrs="override").transpose(*by, ...)
        batched = True
    elif batched:  # the same batches, each reduced to its numbers by a task of one graph
        # half the batch: two batches' cells are in memory at once (one a thread). Measured on the
        # 4 GB store (9 runs): peak RSS 306 MB with 1 run a batch, 333 MB with 2 (1 GB store: 302)
        parts = _batched_in_graph(_cell_counts(ds, layout, eps), max(1, _runs_per_batch(ds) // 2), by, group, pool,
                                  subsets, confidence_level, n_resamples, seed)
        result = xr.concat(parts, dim="run", data_vars="minimal", coords="minimal", compat="override",
                           join="outer", combine_attrs="override").transpose(*by, ...)
    elif per_unit:  # reduce samples inside each chunk: per-unit counts are as large as the data otherwise
        lazy = [
            _map_chunks(_take(ds["activation"], index), COUNTS, ["run", "epoch", "layer", "unit"], ["sample"], layout,
                        eps=eps)
            for _, index in subsets
        ]
        parts = [_unit_saturation(COUNTS.merge(c), by) for c in _compute(*lazy)]
    else:
        (counts,) = _compute(_cell_counts(ds, layout, eps))
        cells = _cells_by(CELL_COUNTS.merge(counts), by)
        with one_blas_thread():  # the same bits as the batches' (computed on one BLAS thread)
            parts = [
                _sample_saturation(_take(cells, index), group, pool, confidence_level, n_resamples, seed)
                for _, index in subsets
            ]
    if not batched:
        result = _concat_splits(parts, labels).transpose(*by, ...)
    _warn_nonfinite(result["n_nonfinite"], "'activation'", "saturation")

    with_interval = "sample" not in by and not per_unit
    unit = "(run, sample) pair" if "run" not in by else "sample"
    present, not_applicable = _functions_present(layout)
    _describe(result, {
        "fraction": "mean over samples of each sample's fraction of values within eps of a bound",
        "fraction_low": "same, near the lower bound (relu: exact zeros)",
        "fraction_high": "same, near the upper bound (relu: 0)",
        "ci_low": f"lower end of the {confidence_level:.0%} interval of fraction",
        "ci_high": f"upper end of the {confidence_level:.0%} interval of fraction",
        "interval_method": "bootstrap-bca or wilson (kernels.fraction_interval); empty without an interval",
        "n_samples": f"independent units in the group: each a {unit}",
        "n_values": "activations counted",
        "n_nonfinite": "existing values that were not finite (excluded)",
    })
    result.attrs = _attrs(
        "saturation", by, [d for d in ACTIVATION_DIMS if d not in by],
        method=(
            "per-sample fraction of values within eps*(upper-lower) of a bound (kernels.saturation_counts, "
            "saturated_fractions); fraction = mean over samples"
            if not per_unit else
            "fraction of the unit's values within eps*(upper-lower) of a bound, pooled over samples"
        ),
        eps=eps,
        bounds=describe_saturation(present or None),
        **({"not_applicable": not_applicable} if not_applicable else {}),
        confidence_level=confidence_level,
        interval=(
            f"kernels.fraction_interval over {unit}s: BCa bootstrap ({n_resamples} resamples, seed {seed}), "
            "Wilson when fewer than 10 samples are saturated (or unsaturated)"
            if with_interval
            else "none: with sample or unit in by a group is not a set of independent samples (NaN)"
        ),
        independent_unit=unit,
    )
    return result


def _batched_in_graph(counts: xr.DataArray, batch: int, by, group, pool, subsets, confidence_level, n_resamples,
                      seed) -> list[xr.Dataset]:
    """Saturation of each batch of `batch` runs from lazy cell counts, in one computation: a
    task of the graph turns each batch's counts into its groups' numbers (the bootstrap
    included), so the intervals of one batch are computed on one core while the other reads
    and counts chunks, the graph is built and ordered once, and no more than a few batches'
    cells are in memory. Same numbers as one batch at a time (each group's bootstrap depends
    on its own cells and the seed only)."""
    import dask
    labels = [label for label, _ in subsets]
    coords = {name: (c.dims, c.values) for name, c in counts.coords.items()}
    tasks = []
    for start in range(0, counts.sizes["run"], batch):
        part = counts.isel(run=slice(start, start + batch))
        part_coords = {name: (dims, values[start:start + batch] if dims[:1] == ("run",) else values)
                       for name, (dims, values) in coords.items()}
        tasks.append(dask.delayed(_batch_saturation, pure=True)(
            part.data, part.dims, part_coords, by, group, pool, subsets, labels, confidence_level, n_resamples, seed))
    # one BLAS thread a task: the bootstrap's matrix products run beside the other worker's reads,
    # and a second BLAS thread each would contend for the same two cores (4 GB store: 1.7-1.9 s
    # and 2.5-2.9 s of CPU with one, 1.9-2.3 s and 3.2-3.9 s with OpenBLAS' default of two)
    with one_blas_thread():
        return list(_compute(*tasks))


def _batched_direct(counts: xr.DataArray, n_workers: int, batch: int, by, group, pool, subsets, confidence_level,
                    n_resamples, seed) -> list[xr.Dataset]:
    """Saturation of each batch of about `batch` runs from lazy cell counts computed by
    :mod:`actstats.queries._direct`: a batch's bootstrap beside the next batch's reads
    (:func:`~actstats.queries._direct.in_batches`). Same numbers as one batch at a time (each
    group's bootstrap depends on its own cells and the seed only)."""
    labels = [label for label, _ in subsets]
    sizes = {counts.sizes["sample"] if index is None else len(index) for _, index in subsets}

    def prepare():  # the resampling counts of every split size, drawn while the first batch is read
        if "sample" in pool:
            for size in sizes:
                kernels.keep_resampling_weights(size, n_resamples, seed)

    return _direct.in_batches((counts,), n_workers, batch, lambda part: _counts_saturation(
        part, by, group, pool, subsets, labels, confidence_level, n_resamples, seed), prepare)


def _batch_saturation(values, dims, coords, by, group, pool, subsets, labels, confidence_level, n_resamples,
                      seed) -> xr.Dataset:
    """One batch's saturation per group and split from its computed cell counts."""
    counts = xr.DataArray(values, dims=dims, coords={name: xr.Variable(*spec) for name, spec in coords.items()})
    return _counts_saturation(counts, by, group, pool, subsets, labels, confidence_level, n_resamples, seed)


def _counts_saturation(counts, by, group, pool, subsets, labels, confidence_level, n_resamples, seed) -> xr.Dataset:
    """Saturation per group and split from computed cell counts (a DataArray)."""
    cells = _cells_by(CELL_COUNTS.merge(counts), by)
    parts = [_sample_saturation(_take(cells, index), group, pool, confidence_level, n_resamples, seed)
             for _, index in subsets]
    return _concat_splits(parts, labels)


def _functions_present(layout) -> tuple[list[str], str | None]:
    """The known activation functions of the layers that exist, and the sentence saying for
    which of them saturation has no meaning (None when for none)."""
    names = layout.layer_names[layout.width > 0] if layout.layer_names is not None else np.array([])
    present = [n for n in ACTIVATIONS if n in set(names.tolist())]
    meaningless = [n for n in present if ACTIVATIONS[n].saturation == "none"]
    if not meaningless:
        return present, None
    return present, (f"{', '.join(meaningless)}: saturation has no meaning (no bound, no dead value); those layers' "
                     "values are not counted (a group of only such layers has fraction NaN)")


def _sample_saturation(cells, group, pool, confidence_level, n_resamples, seed) -> xr.Dataset:
    """Saturation per group from cell counts (dims run, sample, kept dims, field)."""
    values, axes = _pool_axes(cells, group, pool)
    template = _template(cells.isel({d: 0 for d in pool}, drop=True)).transpose(*group)
    fractions = kernels.saturated_fractions(_counts_of(values))
    present = ~np.isnan(fractions[..., 0])
    n_samples = present.sum(axis=axes)
    out = {}
    for k, name in enumerate(("fraction", "fraction_low", "fraction_high")):
        total = np.where(present, fractions[..., k], 0.0).sum(axis=axes)
        out[name] = _divide(total, n_samples)
    if "sample" in pool:
        interval = kernels.fraction_interval(
            fractions[..., 0], axis=axes, confidence_level=confidence_level, n_resamples=n_resamples, seed=seed
        )
        out["fraction"] = interval.estimate  # the interval's own estimate
        out["ci_low"] = interval.ci_low
        out["ci_high"] = interval.ci_high
        out["interval_method"] = np.asarray(interval.interval_method, dtype=str)
    else:
        out["ci_low"] = np.full(template.shape, np.nan)
        out["ci_high"] = np.full(template.shape, np.nan)
        out["interval_method"] = np.full(template.shape, "", dtype=str)
    out["n_samples"] = n_samples.astype(np.int64)
    out["n_values"] = _COUNTS.get(values, "total").sum(axis=axes).astype(np.int64)
    out["n_nonfinite"] = _COUNTS.get(values, "n_nonfinite").sum(axis=axes).astype(np.int64)
    # one Dataset made at once: assigning variables one by one aligns the coordinates at each
    return xr.Dataset({name: (template.dims, np.asarray(v)) for name, v in out.items()}, coords=template.coords)


def _unit_saturation(counts: xr.DataArray, by) -> xr.Dataset:
    """Saturation per unit from counts summed over samples (dims run, epoch, layer, unit, field)."""
    pooled = [d for d in ("run", "epoch", "layer") if d not in by]
    summed = counts.sum(pooled) if pooled else counts
    low, high, total = (_COUNTS.get(summed, name) for name in ("low", "high", "total"))
    out = xr.Dataset(coords=low.coords)
    out["fraction"] = _like(low, _divide(low + high, total))
    out["fraction_low"] = _like(low, _divide(low, total))
    out["fraction_high"] = _like(low, _divide(high, total))
    out["ci_low"] = xr.full_like(out["fraction"], np.nan)
    out["ci_high"] = xr.full_like(out["fraction"], np.nan)
    out["interval_method"] = _like(low, np.full(low.shape, "", dtype=str))
    # every existing unit has a value for each sample: its sample count is its value count
    samples = _COUNTS.get(counts, "total")
    within = [d for d in ("epoch", "layer") if d not in by]
    samples = samples.max(within) if within else samples
    out["n_samples"] = _to_int(samples.sum("run") if "run" not in by else samples)
    out["n_values"] = _to_int(total)
    out["n_nonfinite"] = _to_int(_COUNTS.get(summed, "n_nonfinite"))
    return out


def _counts_of(values: np.ndarray) -> np.ndarray:
    """``[low, high, total]`` on the last axis, as :func:`actstats.kernels.saturated_fractions` reads them."""
    return np.stack([_COUNTS.get(values, name) for name in kernels.SATURATION_FIELDS], axis=-1)
