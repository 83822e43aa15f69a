"""``compare_splits``: saturation on training vs held-out probe samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.errors import ActstatsError
from actstats.queries import _direct
from actstats.queries._engine import (
    Fields, Reduction, _cells_by, _compute, _in_run_batches, _layout, _map_chunks, _pool_axes,
    _runs_per_batch, _template, one_blas_thread,
)
from actstats.queries._results import _attrs, _bh, _describe, _divide, _family_description, _like, _warn_nonfinite
from actstats.queries.saturation import CELL_COUNTS, _cell_counts, _counts_of, _slabs
from actstats.validate import (
    ACTIVATION_DIMS, DEFAULT_WEIGHT_BY, require_variables, validate_by, validate_confidence_level, validate_eps,
)


def _absolute_block(block, *, reduction, dims, n_reduce, layout, rescale, options, block_info=None, location=None,
                    variable=None):
    """The block function of :data:`ABSOLUTE` on (run, epoch, layer, sample, unit) blocks: a
    (run, epoch, layer) slab at a time (:func:`actstats.kernels.absolute_sums`), what does not
    exist skipped and a value beyond a layer's width refused (:func:`_slabs`)."""
    if location is None:
        location = block_info[0]["array-location"]
    values = np.asarray(block)
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    out = np.zeros(values.shape[:4] + (1, 3))
    for i, j, k, _, _, slab in _slabs(values, location, dims, layout, variable):
        # sum_abs, count, n_nonfinite: the fields' order; the whole row, as the generic path summed it
        kernels.absolute_sums(values[i, j, k], slab.shape[1], out[i, j, k, :, 0])
    return out


#: Σ |preactivation| per (run, epoch, layer, sample) cell, summed over unit chunks.
ABSOLUTE = Reduction("sum_of_absolute_values", None, Fields("sum_abs", "count"), block=_absolute_block,
                     per_cell=True)


def compare_splits(
    ds: xr.Dataset,
    eps: float | None = None,
    by: str | Sequence[str] = DEFAULT_WEIGHT_BY,
    *,
    confidence_level: float = 0.95,
    n_permutations: int = kernels.DEFAULT_PERMUTATIONS,
    n_resamples: int = kernels.DEFAULT_RESAMPLES,
    seed: int = kernels.DEFAULT_SEED,
) -> xr.Dataset:
    """Saturation on training vs held-out probe samples: difference, interval, p-value.

    Parameters
    ----------
    ds : xarray.Dataset
        Needs the ``split`` coordinate with ``train`` and ``test`` samples.
    eps : float, optional
        Default ``OPTIONS["eps"]`` (0.05; :func:`actstats.set_options`).
        As in :func:`saturation`.
    by : str or sequence of str, default ("run", "epoch", "layer")
        Kept dimensions, from run, epoch and layer.
    confidence_level : float, default 0.95
    n_permutations, n_resamples, seed
        Of :func:`actstats.kernels.compare_groups`.

    Returns
    -------
    xarray.Dataset
        Per group: ``fraction_train``, ``fraction_test`` (as ``fraction`` of
        :func:`saturation`), ``difference`` (train − test), ``ci_low``/``ci_high`` (its
        interval), ``pvalue`` (two-sided permutation test), ``pvalue_adjusted`` (BH
        across every group of the result), ``n_train``/``n_test`` (samples, or (run,
        sample) pairs when runs are pooled), ``mean_abs_preactivation_train``/``_test``/
        ``_difference`` (mean over samples of each sample's mean |z|), ``n_nonfinite``.

    Notes
    -----
    Each sample contributes its saturated fraction (as in :func:`saturation`); the two
    sets of samples are independent, and :func:`actstats.kernels.compare_groups` gives a
    permutation p-value for the difference in means (samples permuted between the
    splits) and a stratified percentile bootstrap interval. When ``run`` is pooled the
    permuted and resampled units are (run, sample) pairs.

    Verification: equals ``kernels.compare_groups`` applied in a plain loop to
    per-sample fractions computed with numpy, and BH equals statsmodels'
    ``multipletests(method="fdr_bh")`` (``tests/test_queries.py``).

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> result = actstats.compare_splits(synthetic_store(weight_scale=8.0), n_permutations=999)
    >>> sorted(result.data_vars)[:4]
    ['ci_high', 'ci_low', 'difference', 'fraction_test']
    """
    eps = validate_eps(eps)
    confidence_level = validate_confidence_level(confidence_level)
    by = validate_by(by, ("run", "epoch", "layer"), split=False)
    require_variables(ds, ["activation"], "compare_splits")
    with_preactivation = "preactivation" in ds  # optional: mean |z| beside the fractions
    split = np.asarray(ds["split"].values).astype(str)
    for label in ("train", "test"):
        if not np.any(split == label):
            raise ActstatsError(f"compare_splits needs probe samples with split == {label!r}; this store has none")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    keep = ["run", "epoch", "layer", "sample"]
    lazy = [_cell_counts(ds, layout, eps)]
    if with_preactivation:
        lazy.append(_map_chunks(ds["preactivation"], ABSOLUTE, keep, ["unit"], layout))
    options = dict(by=by, split=split, eps=eps, confidence_level=confidence_level, n_permutations=n_permutations,
                   n_resamples=n_resamples, seed=seed)
    n_workers = None
    if "run" in by and all(_direct.plan_of(o) is not None for o in lazy):
        n_workers = _direct.workers()
    if n_workers or ("run" in by and _runs_per_batch(ds) < ds.sizes["run"]):
        # As saturation: a batch of runs at a time (groups never span runs), then one
        # Benjamini-Hochberg adjustment over every group.
        if n_workers:  # blocks read here, without a graph; a batch's tests beside the next batch's reads
            # (half batches, as saturation's: a store of two runs has two)
            sizes = [int(np.sum(split == label)) for label in ("train", "test")]
            parts = _direct.in_batches(lazy, n_workers, max(1, _runs_per_batch(ds) // 2),
                                       lambda counts, *absolute: _compare_cells(
                                           counts, absolute[0] if absolute else None, **options),
                                       lambda: kernels.prepare_compare_groups(
                                           *sizes, n_permutations=n_permutations, n_resamples=n_resamples, seed=seed))
            result = xr.concat(parts, dim="run", data_vars="minimal", coords="minimal", compat="override",
                               join="outer", combine_attrs="override")
        else:
            result = _in_run_batches(ds, lambda part: compare_splits(
                part, eps, by, confidence_level=confidence_level, n_permutations=n_permutations,
                n_resamples=n_resamples, seed=seed,
            ))
        result = result.transpose(*by, ...)
        adjusted = _bh(result["pvalue"].values)
        result["pvalue_adjusted"] = (result["pvalue"].dims, adjusted)
        family = _family_description(by, int(np.isfinite(adjusted).sum()), "pvalue")
        result["pvalue_adjusted"].attrs["description"] = family
        result.attrs["pvalue_adjustment"] = family
        _warn_nonfinite(result["n_nonfinite"], "activation and preactivation", "compare_splits")
        return result
    counts, *absolute = _compute(*lazy)
    with one_blas_thread():  # the same bits as the batches' (computed on one BLAS thread)
        result = _compare_cells(counts, absolute[0] if absolute else None, **options)
    _warn_nonfinite(result["n_nonfinite"], "activation and preactivation", "compare_splits")
    return result


def _compare_cells(counts, absolute, *, by, split, eps, confidence_level, n_permutations, n_resamples,
                   seed) -> xr.Dataset:
    """compare_splits' numbers from computed cell counts and (or None) |preactivation| sums,
    dims (run, epoch, layer, sample, chunk, field)."""
    with_preactivation = absolute is not None
    group = list(by)
    pool = [d for d in ("run", "sample") if d not in by]
    counts = _cells_by(CELL_COUNTS.merge(counts), by)
    absolute = _cells_by(ABSOLUTE.merge(absolute), by) if with_preactivation else None
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    fractions, means = [], []
    for index in (train, test):
        values, axes = _pool_axes(counts.isel(sample=index), group, pool)
        fractions.append(kernels.saturated_fractions(_counts_of(values))[..., 0])
        if absolute is None:
            pooled = {a % fractions[-1].ndim for a in np.atleast_1d(axes)}
            means.append(np.full([n for a, n in enumerate(fractions[-1].shape) if a not in pooled], np.nan))
            continue
        sums, _ = _pool_axes(absolute.isel(sample=index), group, pool)
        per_sample = _divide(ABSOLUTE.get(sums, "sum_abs"), ABSOLUTE.get(sums, "count"))
        present = ~np.isnan(per_sample)
        means.append(_divide(np.where(present, per_sample, 0.0).sum(axis=axes), present.sum(axis=axes)))
    comparison = kernels.compare_groups(
        fractions[0], fractions[1], axis=axes, n_permutations=n_permutations, n_resamples=n_resamples,
        confidence_level=confidence_level, seed=seed,
    )
    template = _template(counts.isel({d: 0 for d in pool}, drop=True)).transpose(*group)
    template = template.drop_vars([c for c in template.coords if "sample" in template[c].dims or c == "split"])
    result = xr.Dataset(coords=template.coords)
    result["fraction_train"] = _like(template, comparison.mean_first)
    result["fraction_test"] = _like(template, comparison.mean_second)
    result["difference"] = _like(template, comparison.statistic)
    result["ci_low"] = _like(template, comparison.ci_low)
    result["ci_high"] = _like(template, comparison.ci_high)
    result["pvalue"] = _like(template, comparison.pvalue)
    adjusted = _bh(result["pvalue"].values)
    result["pvalue_adjusted"] = _like(template, adjusted)
    result["n_train"] = _like(template, np.asarray(comparison.n_first, dtype=np.int64))
    result["n_test"] = _like(template, np.asarray(comparison.n_second, dtype=np.int64))
    result["mean_abs_preactivation_train"] = _like(template, means[0])
    result["mean_abs_preactivation_test"] = _like(template, means[1])
    result["mean_abs_preactivation_difference"] = _like(template, means[0] - means[1])
    nonfinite = CELL_COUNTS.get(counts, "n_nonfinite") + (
        ABSOLUTE.get(absolute, "n_nonfinite") if absolute is not None else 0)
    nonfinite = nonfinite.sum(pool)
    result["n_nonfinite"] = _like(template, nonfinite.transpose(*group).values.astype(np.int64))
    unit = "(run, sample) pair" if "run" not in by else "sample"
    family = _family_description(by, int(np.isfinite(adjusted).sum()), "pvalue")
    _describe(result, {
        "difference": "fraction_train - fraction_test",
        "ci_low": f"lower end of the {confidence_level:.0%} stratified bootstrap interval of difference",
        "ci_high": f"upper end of the {confidence_level:.0%} stratified bootstrap interval of difference",
        "pvalue": f"two-sided permutation test ({n_permutations} permutations of {unit}s between the splits)",
        "pvalue_adjusted": family,
        "mean_abs_preactivation_train": "mean over training samples of each sample's mean |preactivation|"
                                        + ("" if with_preactivation else " (NaN: the store has no preactivation)"),
        "mean_abs_preactivation_test": "mean over held-out samples of each sample's mean |preactivation|"
                                       + ("" if with_preactivation else " (NaN: the store has no preactivation)"),
    })
    result.attrs = _attrs(
        "compare_splits", by, [d for d in ACTIVATION_DIMS if d not in by],
        method=f"kernels.compare_groups on per-sample saturated fractions: {comparison.method}",
        eps=eps,
        confidence_level=confidence_level,
        independent_unit=unit,
        pvalue_adjustment=family,
    )
    return result
