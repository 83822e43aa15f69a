"""Statistical queries on a store: the xarray layer of actstats.

Every query takes a Dataset in the store layout (:func:`actstats.open_store`, or the same
data loaded into memory), maps ``by=`` — the dimensions kept as groups — onto the
kernels' ``axis=`` (:mod:`actstats.kernels`), and returns an in-memory
``xarray.Dataset`` with one entry per group, statistic names that explain themselves,
and attrs that say the method, ``eps``, the confidence level and how p-values were
adjusted.

Conventions shared by every query
---------------------------------
``by``
    Dimensions of the analysed variable kept as groups, plus ``"split"`` (the
    ``train``/``test`` coordinate of ``sample``) where the variable has samples. Every
    other dimension is pooled inside a group. ``by`` is a name or a sequence of names;
    a name the query does not know raises ``ValueError`` naming it.
Which values enter
    A value enters only if it exists: its (run, epoch) record is ``complete``, its unit
    is below ``width[run, layer]`` and, for weights, its ``fan_in`` column is below the
    width of the layer beneath (the number of input features for layer 1). NaN padding
    therefore never enters a statistic. A value that exists but is not finite (inf, or
    NaN from a diverged run) is excluded and counted in ``n_nonfinite``, and the query
    warns with :class:`~actstats.errors.ActstatsWarning` giving the count.
The independent unit
    Activations of one probe sample are not independent across units, so intervals and
    tests on activations resample or permute *samples*; when ``run`` is pooled
    (not in ``by``) the unit is the (run, sample) pair.
Computation
    Each query makes one pass over the store's chunks: one dask task per chunk masks
    what does not exist, counts and drops non-finite values and reduces the chunk
    (counts, sums, mergeable moments), so memory stays bounded by a chunk. Statistics
    that need a whole group (dip test, fits, CDF-based normality statistics) get one task
    per group (the group's chunks are merged first). The small per-chunk results are
    combined in numpy. numpy-backed data go through the same per-chunk function, once,
    on the whole array. The graph is computed once, with a progress bar on stderr when
    ``OPTIONS["progress"]`` allows it (``None``: only when stderr is a terminal), on the
    dask.distributed scheduler named by ``OPTIONS["scheduler"]`` or ``$ACTSTATS_SCHEDULER``
    if any (:mod:`actstats.cluster`: a client for each computation).

Verification is described in each function's docstring and in docs/queries.md; the
tests are ``tests/test_queries*.py``.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr
from scipy import special

from actstats import kernels
from actstats.activations import ACTIVATIONS
from actstats.errors import ActstatsError, ActstatsWarning

__all__ = [
    "ACTIVATION_FAMILIES",
    "FAST_ACTIVATION_FAMILIES",
    "GAUSSIAN_THRESHOLDS",
    "NORMALITY_FAMILIES",
    "QUERY_MIXTURE_MAX_SIZE",
    "RECORD_COORDINATES",
    "WEIGHT_FAMILIES",
    "bimodality",
    "compare_splits",
    "fit",
    "gradient_flow",
    "saturation",
    "to_records",
    "weight_normality",
]

ACTIVATION_DIMS = ("run", "epoch", "layer", "sample", "unit")
WEIGHT_DIMS = ("run", "epoch", "layer", "unit", "fan_in")
DEFAULT_ACTIVATION_BY = ("run", "epoch", "layer", "split")
DEFAULT_WEIGHT_BY = ("run", "epoch", "layer")

#: Families of :func:`fit` for activations (rescaled to [0, 1]).
ACTIVATION_FAMILIES = ("beta", "logit_normal", "beta_mixture")
#: Activation families :func:`fit` uses by default: closed-form or Newton fits, milliseconds
#: per group. The Beta mixture (EM, 20-300 ms per group) is fitted when named.
FAST_ACTIVATION_FAMILIES = ("beta", "logit_normal")
#: Families of :func:`fit` for weights (those of :func:`actstats.kernels.fit_families`).
WEIGHT_FAMILIES = kernels.FAMILIES
#: Families :func:`weight_normality` compares for ``best_family`` by default: the ones
#: fitted in closed form or by a fast score equation (a few ms per group). ``t`` and
#: ``gennorm`` need scipy's numerical optimisation (0.1–1 s per group); ask for them
#: with ``families=`` or use :func:`fit`.
NORMALITY_FAMILIES = ("normal", "laplace", "logistic", "uniform")
#: The Beta mixture inside the queries runs EM on a deterministic subsample of at most
#: this many values per group (the kernel's default is 20000); its log-likelihood and
#: BIC are still evaluated on all values. Measured on 100 groups of 19200 values: 3x
#: faster, the same BIC preference in all 100; the weights of weakly identified
#: mixtures moved by up to 0.35, as the kernel warns they may (docs/queries.md).
QUERY_MIXTURE_MAX_SIZE = 5000
#: The effect-size verdict ``gaussian`` of :func:`weight_normality`.
#: Groups of more values than this are not loaded whole: their CDF statistics come from
#: fixed fine histograms with stated error bounds (``method="auto"`` of
#: :func:`weight_normality`). 2**25 values are 256 MiB as float64.
EXACT_GROUP_MAX_SIZE = 2**25

#: ``saturation`` keeps per-sample counts of at most about this many (run, epoch, layer,
#: sample) cells in memory at once (~140 bytes of peak memory each, measured), computing
#: larger stores a batch of runs at a time when runs are kept apart.
SATURATION_CELL_BATCH = 2**18

GAUSSIAN_THRESHOLDS = {"max_abs_skewness": 0.5, "max_abs_excess_kurtosis": 1.0, "max_w1_normal": 0.1}
#: Non-dimension coordinates that :func:`to_records` adds to each record when present.
RECORD_COORDINATES = ("split", "activation_fn")

_FIELD = "statistic_field"
_FAMILY_PARAMETERS = {"beta": 2, "logit_normal": 2, "beta_mixture": 8,
                      "normal": 2, "t": 3, "laplace": 2, "logistic": 2, "uniform": 2, "gennorm": 3}


# ------------------------------------------------------------------------ arguments


def _normalize_by(by, dims: Sequence[str], *, split: bool) -> tuple[str, ...]:
    """``by`` as a tuple of known names (``split`` dropped when ``sample`` is kept)."""
    allowed = tuple(dims) + (("split",) if split else ())
    if isinstance(by, str):
        names: tuple[Any, ...] = (by,)
    elif isinstance(by, Iterable):
        names = tuple(by)
    else:
        raise ValueError(f"by: expected a dimension name or a sequence of names, got {by!r}")
    for name in names:
        if name not in allowed:
            raise ValueError(f"by: unknown dimension {name!r}; choose from {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise ValueError(f"by: repeated dimension in {names!r}")
    if "sample" in names and "split" in names:  # split is then a coordinate of sample
        names = tuple(n for n in names if n != "split")
    return names


def _check_eps(eps) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}") from None
    if not 0 < value < 0.5:
        raise ValueError(f"eps must be in (0, 0.5) (a fraction of the activation's range), got {eps!r}")
    return value


def _check_confidence_level(level) -> float:
    value = float(level)
    if not 0 < value < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {level!r}")
    return value


def _families(family, variable) -> tuple[str, ...]:
    known = ACTIVATION_FAMILIES if variable == "activation" else WEIGHT_FAMILIES
    if family is None:
        return FAST_ACTIVATION_FAMILIES if variable == "activation" else NORMALITY_FAMILIES
    if isinstance(family, str) and family == "all":
        return tuple(known)
    names = (family,) if isinstance(family, str) else tuple(family)
    if not names:
        raise ValueError("family: give at least one family")
    for name in names:
        if name not in known:
            raise ValueError(f"family: unknown family {name!r} for {variable}s; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def _require(ds: xr.Dataset, names: Sequence[str], query: str) -> None:
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        listed = " and ".join(repr(n) for n in missing)
        raise ActstatsError(f"{query} needs the variable {listed}, which this store does not have")
    for name in ("width", "complete", "activation_fn"):
        if name not in ds.variables:
            raise ActstatsError(f"{query} needs {name!r}, which this dataset does not have")
    from actstats.store import VARIABLES

    for name in names:
        lost = [d for d in VARIABLES[name][0] if d not in ds[name].dims]
        if lost:
            raise ActstatsError(
                f"{query}: {name!r} has no {lost[0]!r} dimension (selected away?); select with a list, "
                f"e.g. ds.isel({lost[0]}=[0]), to keep it"
            )


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    """What exists where, by position: the numpy side of every per-chunk function."""

    complete: np.ndarray  # (run, epoch) bool
    width: np.ndarray  # (run, layer) units that exist
    fan_in_width: np.ndarray  # (run, layer) fan_in columns that exist
    fan_in_known: np.ndarray  # (run, layer) False where the layer below was selected away
    lower: np.ndarray  # (run,) activation bounds; NaN for unknown functions
    upper: np.ndarray  # (run,) inf when unbounded above (relu)
    activation_index: np.ndarray  # (run,) position in ACTIVATIONS, -1 if unknown
    names: tuple[str, ...]  # (run,) activation_fn

    def check_activations(self, runs) -> None:
        for run, name, index in zip(runs, self.names, self.activation_index):
            if index < 0:
                raise ActstatsError(
                    f"run {run}: unknown activation function {name!r}; known: {', '.join(ACTIVATIONS)}"
                )


def _layout(ds: xr.Dataset) -> _Layout:
    complete = np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool)
    width = np.asarray(ds["width"].transpose("run", "layer").values, dtype=np.int64)
    layers = [int(v) for v in np.atleast_1d(ds["layer"].values)]
    n_fan_in = ds.sizes.get("fan_in", 0)
    n_features = ds.sizes.get("feature", n_fan_in)
    fan_in_width = np.full(width.shape, n_fan_in, dtype=np.int64)
    fan_in_known = np.ones(width.shape, dtype=bool)
    for j, layer in enumerate(layers):
        if layer == 1:
            fan_in_width[:, j] = n_features
        elif layer - 1 in layers:
            fan_in_width[:, j] = width[:, layers.index(layer - 1)]
        else:  # the layer below is not in this dataset: its NaN columns are taken as padding
            fan_in_known[:, j] = False
    names = tuple(str(v) for v in np.atleast_1d(ds["activation_fn"].values))
    known = list(ACTIVATIONS)
    index = np.array([known.index(n) if n in ACTIVATIONS else -1 for n in names], dtype=np.int64)
    lower = np.array([ACTIVATIONS[n].lower if n in ACTIVATIONS else np.nan for n in names], dtype=float)
    upper = np.array([ACTIVATIONS[n].upper if n in ACTIVATIONS else np.nan for n in names], dtype=float)
    return _Layout(complete, width, fan_in_width, fan_in_known, lower, upper, index, names)


def _grid(dims: Sequence[str], location) -> dict[str, np.ndarray]:
    """Positions along each dim of a block, shaped to broadcast against the block."""
    grid = {}
    for axis, (dim, (start, stop)) in enumerate(zip(dims, location)):
        shape = [1] * len(dims)
        shape[axis] = stop - start
        grid[dim] = np.arange(start, stop).reshape(shape)
    return grid


def _exists(layout: _Layout, grid: dict[str, np.ndarray], epoch=None) -> np.ndarray:
    """Where a block holds values that exist (broadcastable to the block)."""
    epoch = grid["epoch"] if epoch is None else epoch
    mask = layout.complete[grid["run"], epoch]
    if "unit" in grid:
        mask = mask & (grid["unit"] < layout.width[grid["run"], grid["layer"]])
    if "fan_in" in grid:
        mask = mask & (grid["fan_in"] < layout.fan_in_width[grid["run"], grid["layer"]])
    return mask


# ------------------------------------------------------------------ the chunk engine


def _block(block, *others, function, dims, n_reduce, layout, rescale, kwargs, block_info=None, location=None):
    """Clean one block, apply ``function`` to it, append the count of non-finite values.

    The block's last ``n_reduce`` axes are reduced. Values that do not exist become NaN;
    values that exist but are not finite become NaN and are counted. Returns an array of
    the kept shape, with size-1 axes for the reduced ones and a last field axis.
    """
    if location is None:
        location = block_info[0]["array-location"]
    grid = _grid(dims, location)
    values = np.asarray(block, dtype=np.float64)
    exists = _exists(layout, grid)
    finite = np.isfinite(values)
    reduce_axes = tuple(range(values.ndim - n_reduce, values.ndim))
    nonfinite = exists & ~finite
    if "fan_in" in grid and not layout.fan_in_known.all():
        nonfinite = nonfinite & ~(np.isnan(values) & ~layout.fan_in_known[grid["run"], grid["layer"]])
    nonfinite = np.broadcast_to(nonfinite, values.shape).sum(axis=reduce_axes)
    values = np.where(exists & finite, values, np.nan)
    if rescale:  # to [0, 1] with each run's bounds; NaN for unbounded (relu) runs
        lower = layout.lower[grid["run"]]
        upper = layout.upper[grid["run"]]
        scale = np.where(np.isfinite(upper), upper - lower, np.nan)
        with np.errstate(invalid="ignore"):
            values = (values - lower) / scale
    with np.errstate(all="ignore"):
        out = function(values, *others, grid=grid, n_reduce=n_reduce, layout=layout, **kwargs)
    keep_shape = values.shape[: values.ndim - n_reduce]
    out = np.asarray(out, dtype=np.float64).reshape(keep_shape + (-1,))
    out = np.concatenate([out, np.asarray(nonfinite, dtype=np.float64).reshape(keep_shape + (1,))], axis=-1)
    return out.reshape(keep_shape + (1,) * n_reduce + (out.shape[-1],))


def _is_dask(obj) -> bool:
    from dask import is_dask_collection

    return is_dask_collection(obj)


def _map_chunks(
    x: xr.DataArray,
    function,
    keep: Sequence[str],
    reduce: Sequence[str],
    n_fields: int,
    layout: _Layout,
    *,
    whole: bool = False,
    rescale: bool = False,
    others: Sequence[xr.DataArray] = (),
    block_function=None,
    **kwargs,
) -> xr.DataArray:
    """``function`` on each chunk of ``x`` (dims ``keep`` + ``reduce``), lazily.

    ``function(values, *others, grid, n_reduce, layout, **kwargs)`` reduces the last
    ``n_reduce`` axes of ``values`` and returns ``(*kept, n_fields)``. With ``whole``
    the ``reduce`` dims are first merged into one chunk, so that each call sees whole
    groups. The result has dims ``keep``, one ``<dim>_chunk`` dim per reduced dim (one
    entry per chunk, to be merged by the caller) and a field dim whose last entry is
    the number of non-finite values.
    """
    keep, reduce = list(keep), list(reduce)
    dims = tuple(keep + reduce)
    x = x.transpose(*dims)
    n_keep, ndim = len(keep), len(dims)
    call = functools.partial(
        block_function or _block, function=function, dims=dims, n_reduce=len(reduce), layout=layout,
        rescale=rescale, kwargs=kwargs,
    )
    if _is_dask(x):
        import dask.array as da

        data = x.data
        if whole and reduce:
            group_size = int(np.prod(data.shape[n_keep:], dtype=np.int64))
            if group_size > EXACT_GROUP_MAX_SIZE:
                raise ActstatsError(
                    f"groups of {group_size} values (pooled over {', '.join(reduce)}) are too large to load whole "
                    f"(at most {EXACT_GROUP_MAX_SIZE}): keep more dimensions in --by / by="
                )
            data = data.rechunk({axis: -1 for axis in range(n_keep, ndim)})
        other_data = [da.asarray(o.transpose(*dims).data).rechunk(data.chunks) for o in others]
        chunks = data.chunks[:n_keep] + tuple((1,) * len(c) for c in data.chunks[n_keep:]) + ((n_fields + 1,),)
        out = da.map_blocks(
            call, data, *other_data, chunks=chunks, new_axis=ndim, dtype=np.float64,
            meta=np.empty((0,) * (ndim + 1), dtype=np.float64),
        )
    else:
        out = call(
            np.asarray(x.values), *[np.asarray(o.transpose(*dims).values) for o in others],
            location=[(0, n) for n in x.shape],
        )
    coords = {name: c.variable for name, c in x.coords.items() if set(c.dims) <= set(keep)}
    return xr.DataArray(out, dims=dims[:n_keep] + tuple(f"{d}_chunk" for d in reduce) + (_FIELD,), coords=coords)


def _merge_sum(computed: xr.DataArray) -> xr.DataArray:
    """Sum the per-chunk entries of a :func:`_map_chunks` result (counts and sums)."""
    return computed.sum([d for d in computed.dims if str(d).endswith("_chunk")])


def _single(computed: xr.DataArray) -> xr.DataArray:
    """The one entry of a ``whole`` :func:`_map_chunks` result."""
    return computed.isel({d: 0 for d in computed.dims if str(d).endswith("_chunk")}, drop=True)


def _field(array: xr.DataArray, index: int) -> xr.DataArray:
    return array.isel({_FIELD: index}, drop=True)


def _flat(values: np.ndarray, n_reduce: int) -> np.ndarray:
    """``(*kept, *reduced)`` → ``(*kept, m)`` in C order of the reduced axes."""
    return values.reshape(values.shape[: values.ndim - n_reduce] + (-1,))


def _stack(fields: Sequence) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.float64) for f in fields], axis=-1)


def _progress_enabled() -> bool:
    from actstats.options import OPTIONS

    progress = OPTIONS["progress"]
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def _compute(*objects):
    """Compute xarray objects together (one graph: every chunk is read once)."""
    import dask

    from actstats.cluster import scheduler_client

    if not any(_is_dask(o) for o in objects):
        return objects
    with scheduler_client() as client:  # None: no scheduler named (option or $ACTSTATS_SCHEDULER, read now)
        if client is not None:
            # The workers read the chunks themselves; an IntegrityError raised there is
            # re-raised here with its type and message.
            return dask.compute(*objects, scheduler=client)
    if _progress_enabled():
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=1.0, out=sys.stderr):
            return dask.compute(*objects)
    return dask.compute(*objects)


# --------------------------------------------------------------------- result helpers


def _sample_subsets(ds: xr.Dataset, by: Sequence[str]) -> list[tuple[str | None, np.ndarray | None]]:
    if "split" not in by:
        return [(None, None)]
    split = np.asarray(ds["split"].values).astype(str)
    labels = list(dict.fromkeys(split.tolist()))
    return [(label, np.flatnonzero(split == label)) for label in labels]


def _take(obj, index):
    return obj if index is None else obj.isel(sample=index)


def _concat_splits(parts: list[xr.Dataset], labels: list[str | None]) -> xr.Dataset:
    if labels == [None]:
        return parts[0]
    combined = xr.concat(parts, dim="split", coords="minimal", compat="override", join="outer")
    return combined.assign_coords(split=np.asarray(labels, dtype=str))


def _warn_nonfinite(n_nonfinite, variable: str, query: str) -> None:
    total = int(np.nansum(np.asarray(n_nonfinite)))
    if total:
        # attribute the warning to the first caller outside actstats (accessor, CLI, user code)
        frame, level = sys._getframe(), 1
        while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("actstats"):
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"{query}: {total} non-finite values of {variable} (inf, or NaN where a unit exists, "
            "e.g. from a diverged run) were excluded; see n_nonfinite",
            ActstatsWarning,
            stacklevel=level,
        )


def _divide(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _like(template: xr.DataArray, values) -> xr.DataArray:
    return xr.DataArray(np.asarray(values), dims=template.dims, coords=template.coords)


def _to_bool(array: xr.DataArray) -> xr.DataArray:
    return (array.fillna(0) > 0.5).astype(bool)


def _to_int(array: xr.DataArray) -> xr.DataArray:
    return array.fillna(0).astype(np.int64)


def _bh(pvalues) -> np.ndarray:
    values = np.asarray(pvalues, dtype=float)
    if values.size == 0:
        return values
    return kernels.benjamini_hochberg(values, axis=None).reshape(values.shape)  # 0-d (by=()) stays 0-d


def _family_description(dims: Sequence[str], count: int, what: str) -> str:
    spanned = " x ".join(dims) if dims else "one group"
    return (
        f"Benjamini-Hochberg (false discovery rate) across all {count} groups of this result "
        f"({spanned}) on {what}"
    )


def _attrs(query: str, by: Sequence[str], pooled: Sequence[str], **extra) -> dict:
    attrs = {
        "query": query,
        "by": ",".join(by),
        "pooled_dims": ",".join(pooled),
        "excluded_values": (
            "NaN padding (units beyond width, absent layers, incomplete records) never enters; "
            "non-finite values where a unit exists are excluded and counted in n_nonfinite"
        ),
    }
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def _describe(result: xr.Dataset, descriptions: dict[str, str]) -> None:
    for name, text in descriptions.items():
        if name in result:
            result[name].attrs["description"] = text


# --------------------------------------------------------------- per-chunk functions


def _count_function(values, *, grid, n_reduce, layout, eps):
    """``[low, high, total]`` over the reduced axes with each run's bounds (run is axis 0)."""
    runs = grid["run"].reshape(-1)
    lower, upper = layout.lower[runs], layout.upper[runs]
    out = np.zeros(values.shape[: values.ndim - n_reduce] + (3,), dtype=np.int64)
    axis = tuple(range(values.ndim - n_reduce, values.ndim))
    for low, high in {(float(a), float(b)) for a, b in zip(lower, upper)}:
        rows = (lower == low) & (upper == high)
        if np.isfinite(high):
            out[rows] = kernels.saturation_counts(values[rows], low, high, eps, axis=axis)
        else:  # unbounded above (relu): dead units, exact zeros
            out[rows] = kernels.saturation_counts(values[rows], axis=axis, mode="zero")
    return out


def _abs_function(values, *, grid, n_reduce, layout):
    """``[sum |x|, count]`` over the reduced axes."""
    axis = tuple(range(values.ndim - n_reduce, values.ndim))
    present = ~np.isnan(values)
    return _stack([np.where(present, np.abs(values), 0.0).sum(axis=axis), present.sum(axis=axis)])


def _squares_function(values, *, grid, n_reduce, layout):
    """``[sum x², count]`` over the reduced axes."""
    axis = tuple(range(values.ndim - n_reduce, values.ndim))
    present = ~np.isnan(values)
    return _stack([np.where(present, values * values, 0.0).sum(axis=axis), present.sum(axis=axis)])


def _derivative_function(values, *, grid, n_reduce, layout):
    """``[sum f'(z), count]`` with each run's activation function."""
    names = list(ACTIVATIONS)
    code = np.broadcast_to(layout.activation_index[grid["run"]], values.shape)
    present = ~np.isnan(values)
    derivative = np.zeros(values.shape)
    for c in np.unique(code[present]):
        where = present & (code == c)
        derivative[where] = ACTIVATIONS[names[int(c)]].derivative(values[where])
    axis = tuple(range(values.ndim - n_reduce, values.ndim))
    return _stack([derivative.sum(axis=axis), present.sum(axis=axis)])


def _moments_function(values, *, grid, n_reduce, layout):
    return kernels.moments(values, axis=tuple(range(values.ndim - n_reduce, values.ndim)))


def _distance_function(values, initial, *, grid, n_reduce, layout, initial_epoch):
    """``[Σ(W_e − W_0)², Σ W_0², count]`` over values present at both epochs."""
    initial = np.asarray(initial, dtype=np.float64)
    exists = _exists(layout, grid, epoch=np.full_like(grid["epoch"], initial_epoch))
    initial = np.where(exists & np.isfinite(initial), initial, np.nan)
    both = ~np.isnan(values) & ~np.isnan(initial)
    axis = tuple(range(values.ndim - n_reduce, values.ndim))
    difference = np.where(both, values - initial, 0.0)
    base = np.where(both, initial, 0.0)
    return _stack([(difference**2).sum(axis=axis), (base**2).sum(axis=axis), both.sum(axis=axis)])


_BIMODALITY_FIELDS = (
    "n", "dip", "dip_pvalue", "bimodality_coefficient",
    "beta_a", "beta_b", "beta_a_standard_error", "beta_b_standard_error", "u_shaped", "n_clipped",
    "beta_log_likelihood", "beta_bic", "logit_normal_log_likelihood", "logit_normal_bic",
    "mixture_weight_low", "mixture_weight_interior", "mixture_weight_high",
    "mixture_a_low", "mixture_b_low", "mixture_a_interior", "mixture_b_interior",
    "mixture_a_high", "mixture_b_high",
    "mixture_log_likelihood", "mixture_bic", "mixture_preferred_by_bic", "mixture_fitted",
    "bimodal_at_bounds_unadjusted",
)
_BIMODALITY_BOOL = ("u_shaped", "mixture_preferred_by_bic", "mixture_fitted", "bimodal_at_bounds_unadjusted")


def _bimodality_function(values, *, grid, n_reduce, layout, alpha, mixture, mixture_max_size, seed):
    """What kernels.bimodality computes, with the Beta mixture only where it is asked for."""
    flat = _flat(values, n_reduce)
    batch = flat.shape[:-1]
    rows = flat.reshape(-1, flat.shape[-1])
    dip = kernels.dip_test(rows)
    beta = kernels.fit_beta(rows, 0.0, 1.0)
    logit_normal = kernels.fit_logit_normal(rows, 0.0, 1.0)

    def fit_mixture(selected):
        return kernels.fit_beta_mixture(rows[selected], 0.0, 1.0, max_size=mixture_max_size, seed=seed)

    return _bimodality_fields(
        dip.statistic, dip.pvalue, kernels.bimodality_coefficient(x=rows), beta, logit_normal, fit_mixture,
        alpha=alpha, mixture=mixture,
    ).reshape(batch + (-1,))


def _bimodality_fields(dip, dip_pvalue, coefficient, beta, logit_normal, fit_mixture, *, alpha, mixture):
    """The ``_BIMODALITY_FIELDS`` of flat groups; ``fit_mixture(mask)`` fits the masked groups' mixtures."""
    n_rows = np.shape(beta.n)[0]
    if mixture == "always":
        fitted = np.ones(n_rows, dtype=bool)
    elif mixture == "never":
        fitted = np.zeros(n_rows, dtype=bool)
    else:  # the mixture can change bimodal_at_bounds only for multimodal groups that are not U-shaped
        fitted = ~np.asarray(beta.u_shaped, dtype=bool) & (
            (dip_pvalue < alpha) | (coefficient > kernels.BIMODALITY_COEFFICIENT_THRESHOLD)
        )
    fit = SimpleNamespace(
        weights=np.full((n_rows, 3), np.nan), a=np.full((n_rows, 3), np.nan), b=np.full((n_rows, 3), np.nan),
        log_likelihood=np.full(n_rows, np.nan), bic=np.full(n_rows, np.nan),
        preferred_by_bic=np.zeros(n_rows, dtype=bool),
    )
    fitted &= beta.n >= 10  # the kernel's minimum
    if fitted.any():
        part = fit_mixture(fitted)
        for name in ("weights", "a", "b", "log_likelihood", "bic", "preferred_by_bic"):
            getattr(fit, name)[fitted] = getattr(part, name)
    verdict = kernels.bimodal_at_bounds(dip_pvalue, coefficient, beta.u_shaped, fit, alpha=alpha)
    return _stack([
        beta.n, dip, dip_pvalue, coefficient,
        beta.a, beta.b, beta.a_standard_error, beta.b_standard_error, beta.u_shaped, beta.n_clipped,
        beta.log_likelihood, beta.bic, logit_normal.log_likelihood, logit_normal.bic,
        fit.weights[:, 0], fit.weights[:, 1], fit.weights[:, 2],
        fit.a[:, 0], fit.b[:, 0], fit.a[:, 1], fit.b[:, 1], fit.a[:, 2], fit.b[:, 2],
        fit.log_likelihood, fit.bic, fit.preferred_by_bic, fitted, verdict,
    ])


def _ks_from_cdf(cdf: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Two-sided KS distance of rows sorted ascending (NaN last) with model CDF ``cdf``."""
    n = counts[:, None].astype(float)
    index = np.arange(1, cdf.shape[1] + 1)[None, :]
    valid = index <= n
    above = np.where(valid, index / n - cdf, -np.inf).max(axis=1, initial=-np.inf)
    below = np.where(valid, cdf - (index - 1) / n, -np.inf).max(axis=1, initial=-np.inf)
    distance = np.maximum(above, below)
    return np.where((counts > 0) & np.isfinite(distance), distance, np.nan)


def _activation_fit_fields(families) -> tuple[str, ...]:
    fields = ["n", "n_clipped"]
    for family in families:
        fields += [f"{family}:{s}" for s in ("log_likelihood", "aic", "bic", "ks_statistic")]
        if family == "beta":
            fields += ["beta_a", "beta_b", "beta_a_standard_error", "beta_b_standard_error"]
        elif family == "logit_normal":
            fields += ["logit_normal_mean", "logit_normal_std"]
        else:
            fields += [f"mixture_{p}_{c}" for p in ("weight", "a", "b") for c in ("low", "interior", "high")]
    return tuple(fields)


def _activation_fit_function(values, *, grid, n_reduce, layout, families, mixture_max_size, seed):
    flat = _flat(values, n_reduce)
    batch = flat.shape[:-1]
    rows = flat.reshape(-1, flat.shape[-1])
    delta = kernels.DEFAULT_DELTA
    ordered = np.sort(np.clip(rows, delta, 1 - delta), axis=1)  # as the likelihoods see them
    counts = (~np.isnan(rows)).sum(axis=1)
    beta = kernels.fit_beta(rows, 0.0, 1.0, axis=-1)
    fields: list = [beta.n, beta.n_clipped]
    for family in families:
        if family == "beta":
            cdf = special.betainc(beta.a[:, None], beta.b[:, None], ordered)
            fields += [beta.log_likelihood, beta.aic, beta.bic, _ks_from_cdf(cdf, counts),
                       beta.a, beta.b, beta.a_standard_error, beta.b_standard_error]
        elif family == "logit_normal":
            fit = kernels.fit_logit_normal(rows, 0.0, 1.0, axis=-1)
            logit = np.log(ordered) - np.log1p(-ordered)
            cdf = special.ndtr((logit - fit.mean_logit[:, None]) / fit.std_logit[:, None])
            fields += [fit.log_likelihood, fit.aic, fit.bic, _ks_from_cdf(cdf, counts), fit.mean_logit, fit.std_logit]
        else:
            fit = kernels.fit_beta_mixture(rows, 0.0, 1.0, axis=-1, max_size=mixture_max_size, seed=seed)
            cdf = sum(
                fit.weights[:, k, None] * special.betainc(fit.a[:, k, None], fit.b[:, k, None], ordered)
                for k in range(3)
            )
            fields += [fit.log_likelihood, fit.aic, fit.bic, _ks_from_cdf(cdf, counts)]
            fields += [fit.weights[:, k] for k in range(3)] + [fit.a[:, k] for k in range(3)]
            fields += [fit.b[:, k] for k in range(3)]
    return _stack(fields).reshape(batch + (-1,))


_WEIGHT_FIT_STATISTICS = ("shape", "loc", "scale", "log_likelihood", "aic", "bic", "ks_statistic", "fit_size")


def _weight_fit_function(values, *, grid, n_reduce, layout, families, max_fit_size, seed):
    fits = kernels.fit_families(_flat(values, n_reduce), axis=-1, families=families,
                                max_fit_size=max_fit_size, seed=seed)
    columns = [getattr(fits, s)[..., k] for s in _WEIGHT_FIT_STATISTICS for k in range(len(families))]
    return _stack(columns + [fits.n, fits.best_family_index])


_NORMALITY_FIELDS = (
    "ad_statistic", "ad_pvalue", "lilliefors_statistic", "lilliefors_pvalue",
    "shapiro_statistic", "shapiro_pvalue", "shapiro_n_used", "ks_d", "w1_normal", "best_family_index",
)


_CDF_ERROR_FIELDS = ("ks_d_error", "w1_normal_error", "ad_statistic_error")


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


def _histogram_normality(histogram: np.ndarray, statistics, families) -> np.ndarray:
    """The fields of ``_NORMALITY_FIELDS`` + ``_CDF_ERROR_FIELDS`` from summed histograms."""
    n = np.asarray(statistics.n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(n / (n - 1))  # std(ddof=1) / std(ddof=0): the Lilliefors/AD normal
    fitted = kernels.histogram_cdf_statistics(histogram)
    sample = kernels.histogram_cdf_statistics(histogram, scale=ratio)
    small_ad = ~(n >= 8)
    small_lilliefors = ~(n >= 4)
    ad = np.where(small_ad, np.nan, sample.ad_statistic)
    lilliefors = np.where(small_lilliefors, np.nan, sample.ks_d)
    median = kernels.histogram_quantiles(histogram, [0.5])[0][..., 0]
    bins = histogram.shape[-1] - 4
    edges = kernels.histogram_edges(bins)
    middles = (edges[:-1] + edges[1:]) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mad = (histogram[..., :bins] * np.abs(middles - median[..., None])).sum(axis=-1) / n
    best = kernels.histogram_best_family(histogram, median, mad, families=families)
    fields = [
        ad, kernels.anderson_darling_pvalue(ad, n),
        lilliefors, kernels.lilliefors_pvalue(lilliefors, n),
        np.full(n.shape, np.nan), np.full(n.shape, np.nan), np.zeros(n.shape),
        fitted.ks_d, fitted.w1, best,
        fitted.ks_d_error, fitted.w1_error, sample.ad_statistic_error,
    ]
    return _stack(fields)


def _normality_function(values, *, grid, n_reduce, layout, families, max_fit_size, shapiro_max_size, seed):
    flat = _flat(values, n_reduce)
    ad = kernels.anderson_darling(flat)
    lilliefors = kernels.lilliefors(flat)
    shapiro = kernels.shapiro_wilk(flat, max_size=shapiro_max_size, seed=seed)
    fits = kernels.fit_families(flat, families=families, max_fit_size=max_fit_size, seed=seed)
    return _stack([
        ad.statistic, ad.pvalue, lilliefors.statistic, lilliefors.pvalue,
        shapiro.statistic, shapiro.pvalue, shapiro.n_used,
        kernels.ks_distance_normal(flat), kernels.wasserstein_normal(flat, standardize=True),
        fits.best_family_index,
    ])


# ------------------------------------------- bounded activations too large for memory


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


def _weight_fit_streamed(weight: xr.DataArray, group: Sequence[str], core: Sequence[str], layout: _Layout,
                         families) -> xr.DataArray:
    """Weight fits of groups too large for memory, laid out like the whole-group result (+ KS errors)."""
    chunk_dims = [f"{d}_chunk" for d in core]
    axes = tuple(range(len(group), len(group) + len(core)))
    blocks, extrema = _compute(_map_chunks(weight, _moments_function, group, core, 5, layout),
                               _map_chunks(weight, _extrema_function, group, core, 2, layout))
    values = blocks.transpose(*group, *chunk_dims, _FIELD).values
    moments = kernels.combine_moments(values[..., :5], axis=axes)
    bounds = extrema.transpose(*group, *chunk_dims, _FIELD).values
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(moments[..., 2] / moments[..., 0])
    (histogram,) = _compute(_standardized_histograms(weight, group, core, layout, moments[..., 1], std))
    fits = kernels.histogram_fit_families(histogram.transpose(*group, _FIELD).values[..., :-1], moments,
                                          bounds[..., 0].min(axis=axes), bounds[..., 1].max(axis=axes),
                                          families=families)
    columns = {"shape": np.full(fits.loc.shape, np.nan), "fit_size": np.broadcast_to(fits.n[..., None], fits.loc.shape)}
    columns.update({s: getattr(fits, s) for s in _WEIGHT_FIT_STATISTICS if s not in columns})
    packed = [columns[s][..., k] for s in _WEIGHT_FIT_STATISTICS for k in range(len(families))]
    packed += [fits.n, fits.best_family_index] + [fits.ks_statistic_error[..., k] for k in range(len(families))]
    packed.append(values[..., 5].sum(axis=axes))  # non-finite values
    template = _field(blocks.isel({d: 0 for d in chunk_dims}, drop=True), 0)
    return xr.DataArray(_stack(packed), dims=template.dims + (_FIELD,), coords=template.coords)


def _reference_cdfs(family: str, parameters) -> tuple[np.ndarray, np.ndarray]:
    """A fitted family's CDF at the logit grid's edges and middles, ``(..., bins + 1)`` and ``(..., bins)``."""
    edges, middles = kernels.logit_histogram_edges(), kernels.logit_histogram_middles()
    if family == "beta":
        a, b = (np.asarray(p, dtype=float)[..., None] for p in parameters)
        return special.betainc(a, b, special.expit(edges)), special.betainc(a, b, special.expit(middles))
    mean, std = (np.asarray(p, dtype=float)[..., None] for p in parameters)
    return special.ndtr((edges - mean) / std), special.ndtr((middles - mean) / std)


def _activation_fit_from_histogram(streamed: _Streamed, families) -> np.ndarray:
    """The ``_activation_fit_fields`` then each family's KS error bound, from streamed summaries."""
    beta = kernels.fit_beta_from_statistics(streamed.sums)
    normal = kernels.fit_logit_normal_from_statistics(streamed.logit_moments, streamed.sums)
    fields: list = [beta.n, beta.n_clipped]
    errors = []
    for family in families:
        parameters = (beta.a, beta.b) if family == "beta" else (normal.mean_logit, normal.std_logit)
        ks, error = kernels.logit_histogram_ks(streamed.histogram, *_reference_cdfs(family, parameters))
        errors.append(error)
        fit = beta if family == "beta" else normal
        fields += [fit.log_likelihood, fit.aic, fit.bic, ks, *parameters]
        if family == "beta":
            fields += [beta.a_standard_error, beta.b_standard_error]
    return _stack(fields + errors)


def _bimodality_from_histogram(streamed: _Streamed, *, alpha, mixture, mixture_max_size, seed) -> np.ndarray:
    """The ``_BIMODALITY_FIELDS`` then ``dip_error``, from streamed summaries."""
    shape = streamed.template.shape
    histogram = streamed.histogram.reshape(-1, streamed.histogram.shape[-1])
    beta = kernels.fit_beta_from_statistics(streamed.sums.reshape(-1, 4))
    normal = kernels.fit_logit_normal_from_statistics(streamed.logit_moments.reshape(-1, 5), streamed.sums.reshape(-1, 4))
    dip = kernels.logit_histogram_dip(histogram)
    coefficient = kernels.bimodality_coefficient(m=streamed.moments.reshape(-1, 5))

    def fit_mixture(selected):
        # EM on quantile points of each group's histogram (a stratified stand-in for the
        # exact path's random subsample); the likelihood binned over all values.
        points = kernels.logit_histogram_sample(histogram[selected], mixture_max_size)
        part = kernels.fit_beta_mixture(points, 0.0, 1.0, max_size=mixture_max_size, seed=seed)
        log_likelihood = kernels.logit_histogram_mixture_log_likelihood(histogram[selected], part.weights, part.a,
                                                                       part.b)
        with np.errstate(invalid="ignore", divide="ignore"):
            bic = 8 * np.log(beta.n[selected]) - 2 * log_likelihood
        return SimpleNamespace(weights=part.weights, a=part.a, b=part.b, log_likelihood=log_likelihood, bic=bic,
                               preferred_by_bic=bic < beta.bic[selected])

    fields = _bimodality_fields(dip.statistic, dip.pvalue, coefficient, beta, normal, fit_mixture,
                                alpha=alpha, mixture=mixture)
    return np.concatenate([fields, dip.error[:, None]], axis=-1).reshape(shape + (-1,))


def _choose_method(method: str, query: str, group_size: int, exact_max_size: int | None) -> str:
    if method not in ("auto", "exact", "histogram"):
        raise ValueError(f"{query}: method must be 'auto', 'exact' or 'histogram', got {method!r}")
    if exact_max_size is None:
        exact_max_size = EXACT_GROUP_MAX_SIZE
    if method == "auto":
        return "exact" if group_size <= exact_max_size else "histogram"
    return method


def _largest_group(x: xr.DataArray, core: Sequence[str], subsets) -> int:
    sizes = []
    for _, index in subsets:
        part = _take(x, index)
        sizes.append(int(np.prod([part.sizes[d] for d in core], dtype=np.int64)))
    return max(sizes)


# --------------------------------------------------------------------------- saturation


def _cell_counts(ds: xr.Dataset, layout: _Layout, eps: float, index=None) -> xr.DataArray:
    """Lazy ``[low, high, total, nonfinite]`` per (run, epoch, layer, sample) cell."""
    return _map_chunks(_take(ds["activation"], index), _count_function,
                       ["run", "epoch", "layer", "sample"], ["unit"], 3, layout, eps=eps,
                       block_function=_count_block)


def _band_thresholds(lower: float, upper: float, eps: float, dtype) -> tuple[Any, Any]:
    """Thresholds in ``dtype`` with ``x <= low ⟺ float64(x) <= lower + eps·width`` and
    ``x >= high ⟺ float64(x) >= upper - eps·width`` for every x of that dtype: the float64
    bounds rounded down and up to the dtype, so the band is the kernel's, exactly."""
    width = upper - lower
    low, high = lower + eps * width, upper - eps * width
    low_t, high_t = dtype.type(low), dtype.type(high)
    if float(low_t) > low:
        low_t = np.nextafter(low_t, dtype.type(-np.inf))
    if float(high_t) < high:
        high_t = np.nextafter(high_t, dtype.type(np.inf))
    return low_t, high_t


def _count_true(mask: np.ndarray) -> np.ndarray:
    """True values per row of a 2-D boolean mask (summing bytes: ~2× np.count_nonzero)."""
    dtype = np.uint16 if mask.shape[1] < 2**16 else np.int64
    return mask.view(np.uint8).sum(axis=1, dtype=dtype).astype(np.int64)


def _count_block(block, *, function, dims, n_reduce, layout, rescale, kwargs, block_info=None, location=None):
    """:func:`_block` + :func:`_count_function` for activation blocks (run, epoch, layer,
    sample, unit), in one pass over each (run, epoch, layer) slab in its own dtype: the
    saturation counts are the hot loop of the biggest queries. Same output, to the count
    (``tests/test_queries.py`` compares them)."""
    if location is None:
        location = block_info[0]["array-location"]
    values = np.asarray(block)
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    eps = kwargs["eps"]
    (r0, _), (e0, _), (l0, _), _, (u0, u1) = location
    out = np.zeros(values.shape[:4] + (1, 4))
    for i, j, k in np.ndindex(*values.shape[:3]):
        run, epoch, layer = r0 + i, e0 + j, l0 + k
        if not layout.complete[run, epoch]:
            continue
        units = min(u1, int(layout.width[run, layer])) - u0
        if units <= 0:
            continue
        slab = values[i, j, k, :, :units]
        with np.errstate(over="ignore", invalid="ignore"):
            clean = bool(np.isfinite(slab.sum()))  # no NaN or inf (one cheap pass)
        if clean:
            nonfinite = np.zeros(slab.shape[0], dtype=np.int64)
        else:
            finite = np.isfinite(slab)
            nonfinite = slab.shape[1] - _count_true(finite)
            slab = np.where(finite, slab, np.nan)
        lower, upper = layout.lower[run], layout.upper[run]
        if np.isfinite(upper):
            low_t, high_t = _band_thresholds(float(lower), float(upper), eps, slab.dtype)
            low = _count_true(slab <= low_t)
            high = _count_true(slab >= high_t)
        elif np.isfinite(lower):  # relu: dead units, exact zeros
            low = _count_true(slab == 0)
            high = np.zeros_like(low)
        else:  # unknown activation function: nothing counted (as the kernel's NaN bounds)
            low = high = np.zeros(slab.shape[0], dtype=np.int64)
        out[i, j, k, :, 0, 0] = low
        out[i, j, k, :, 0, 1] = high
        out[i, j, k, :, 0, 2] = units - nonfinite
        out[i, j, k, :, 0, 3] = nonfinite
    return out


def _runs_per_batch(ds: xr.Dataset) -> int:
    """Runs whose (run, epoch, layer, sample) cells fit in ``SATURATION_CELL_BATCH``."""
    return max(1, SATURATION_CELL_BATCH // max(ds.sizes["epoch"] * ds.sizes["layer"] * ds.sizes["sample"], 1))


def _in_run_batches(ds: xr.Dataset, query) -> xr.Dataset:
    """``query`` on batches of runs, concatenated along run (the caller warns once for the whole)."""
    batch = _runs_per_batch(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ActstatsWarning)
        parts = [query(ds.isel(run=slice(start, start + batch))) for start in range(0, ds.sizes["run"], batch)]
    return xr.concat(parts, dim="run", data_vars="minimal", coords="minimal", compat="override",
                     join="outer", combine_attrs="override")


def _cells_by(counts: xr.DataArray, by: Sequence[str]) -> xr.DataArray:
    """Counts per cell (run, sample and the kept dims): pooled epochs/layers summed."""
    summed = [d for d in ("epoch", "layer") if d not in by]
    return counts.sum(summed) if summed else counts


def _pool_axes(array: xr.DataArray, group: Sequence[str], pool: Sequence[str]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Values with dims ``group + pool`` (+ any trailing field dim) and the pool axes."""
    rest = [d for d in array.dims if d not in group and d not in pool]
    values = np.ascontiguousarray(array.transpose(*group, *pool, *rest).values)
    return values, tuple(range(len(group), len(group) + len(pool)))


def saturation(
    ds: xr.Dataset,
    eps: float = 0.05,
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
    eps : float, default 0.05
        Width of each saturated band as a fraction of the range: a value is *low* if
        ``x <= lower + eps (upper - lower)`` and *high* if ``x >= upper - eps (upper -
        lower)``. Bounds come from each run's ``activation_fn``: sigmoid [0, 1], tanh and
        softsign [-1, 1]. For relu (unbounded above) *low* is an exact zero (a dead
        unit), *high* is never counted, and ``eps`` does not apply. Must be in (0, 0.5).
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
    eps = _check_eps(eps)
    confidence_level = _check_confidence_level(confidence_level)
    by = _normalize_by(by, ACTIVATION_DIMS, split=True)
    if "sample" in by and "unit" in by:
        raise ValueError("by: sample and unit together make each group a single activation; keep one of them")
    _require(ds, ["activation"], "saturation")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    group = [d for d in by if d != "split"]
    pool = [d for d in ("run", "sample") if d not in by]
    subsets = _sample_subsets(ds, by)
    labels = [label for label, _ in subsets]
    per_unit = "unit" in by

    if "run" in by and not per_unit and _runs_per_batch(ds) < ds.sizes["run"]:
        # Groups never span runs: a batch of runs at a time keeps the per-sample cell counts
        # (the bootstrap's input) bounded whatever the number of runs. Same numbers: each
        # group's bootstrap depends on its own cells and the seed only.
        result = _in_run_batches(ds, lambda part: saturation(part, eps, by, confidence_level,
                                                             n_resamples=n_resamples, seed=seed)).transpose(*by, ...)
        _warn_nonfinite(result["n_nonfinite"], "'activation'", "saturation")
        return result

    if per_unit:  # reduce samples inside each chunk: per-unit counts are as large as the data otherwise
        lazy = [
            _map_chunks(_take(ds["activation"], index), _count_function,
                        ["run", "epoch", "layer", "unit"], ["sample"], 3, layout, eps=eps)
            for _, index in subsets
        ]
        parts = [_unit_saturation(_merge_sum(c), by) for c in _compute(*lazy)]
    else:
        (counts,) = _compute(_cell_counts(ds, layout, eps))
        cells = _cells_by(_merge_sum(counts), by)
        parts = [
            _sample_saturation(_take(cells, index), group, pool, confidence_level, n_resamples, seed)
            for _, index in subsets
        ]
    result = _concat_splits(parts, labels).transpose(*by, ...)
    _warn_nonfinite(result["n_nonfinite"], "'activation'", "saturation")

    with_interval = "sample" not in by and not per_unit
    unit = "(run, sample) pair" if "run" not in by else "sample"
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
        bounds="sigmoid [0, 1]; tanh, softsign [-1, 1]; relu: exact zeros count as low, eps unused",
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


def _sample_saturation(cells, group, pool, confidence_level, n_resamples, seed) -> xr.Dataset:
    """Saturation per group from cell counts (dims run, sample, kept dims, field)."""
    values, axes = _pool_axes(cells, group, pool)
    template = cells.isel({d: 0 for d in pool}, drop=True).isel({_FIELD: 0}, drop=True).transpose(*group)
    fractions = kernels.saturated_fractions(values[..., :3])
    present = ~np.isnan(fractions[..., 0])
    n_samples = present.sum(axis=axes)
    out = xr.Dataset(coords=template.coords)
    for k, name in enumerate(("fraction", "fraction_low", "fraction_high")):
        total = np.where(present, fractions[..., k], 0.0).sum(axis=axes)
        out[name] = _like(template, _divide(total, n_samples))
    if "sample" in pool:
        interval = kernels.fraction_interval(
            fractions[..., 0], axis=axes, confidence_level=confidence_level, n_resamples=n_resamples, seed=seed
        )
        out["fraction"] = _like(template, interval.estimate)  # the interval's own estimate
        out["ci_low"] = _like(template, interval.ci_low)
        out["ci_high"] = _like(template, interval.ci_high)
        out["interval_method"] = _like(template, np.asarray(interval.interval_method, dtype=str))
    else:
        out["ci_low"] = _like(template, np.full(template.shape, np.nan))
        out["ci_high"] = _like(template, np.full(template.shape, np.nan))
        out["interval_method"] = _like(template, np.full(template.shape, "", dtype=str))
    out["n_samples"] = _like(template, n_samples.astype(np.int64))
    out["n_values"] = _like(template, values[..., 2].sum(axis=axes).astype(np.int64))
    out["n_nonfinite"] = _like(template, values[..., 3].sum(axis=axes).astype(np.int64))
    return out


def _unit_saturation(counts: xr.DataArray, by) -> xr.Dataset:
    """Saturation per unit from counts summed over samples (dims run, epoch, layer, unit, field)."""
    pooled = [d for d in ("run", "epoch", "layer") if d not in by]
    summed = counts.sum(pooled) if pooled else counts
    low, high, total = (_field(summed, k) for k in range(3))
    out = xr.Dataset(coords=low.coords)
    out["fraction"] = _like(low, _divide(low + high, total))
    out["fraction_low"] = _like(low, _divide(low, total))
    out["fraction_high"] = _like(low, _divide(high, total))
    out["ci_low"] = xr.full_like(out["fraction"], np.nan)
    out["ci_high"] = xr.full_like(out["fraction"], np.nan)
    out["interval_method"] = _like(low, np.full(low.shape, "", dtype=str))
    # every existing unit has a value for each sample: its sample count is its value count
    samples = _field(counts, 2)
    within = [d for d in ("epoch", "layer") if d not in by]
    samples = samples.max(within) if within else samples
    out["n_samples"] = _to_int(samples.sum("run") if "run" not in by else samples)
    out["n_values"] = _to_int(total)
    out["n_nonfinite"] = _to_int(_field(summed, 3))
    return out


# --------------------------------------------------------------------------- bimodality


def _mixture_view(result: xr.Dataset) -> SimpleNamespace:
    """The fields of a BetaMixtureFit that kernels.bimodal_at_bounds reads."""
    def stacked(parameter):
        return np.stack([np.asarray(result[f"mixture_{parameter}_{c}"], dtype=float)
                         for c in ("low", "interior", "high")], axis=-1)

    return SimpleNamespace(
        preferred_by_bic=np.asarray(result["mixture_preferred_by_bic"], dtype=bool),
        weights=stacked("weight"),
        a=stacked("a"),
        b=stacked("b"),
    )


def _unbounded_functions(layout: _Layout) -> list[str]:
    return sorted({n for n, u in zip(layout.names, layout.upper) if not np.isfinite(u)})


def bimodality(
    ds: xr.Dataset,
    by: str | Sequence[str] = DEFAULT_ACTIVATION_BY,
    variable: str = "activation",
    *,
    alpha: float = 0.05,
    mixture: str = "auto",
    mixture_max_size: int = QUERY_MIXTURE_MAX_SIZE,
    seed: int = kernels.DEFAULT_SEED,
    method: str = "auto",
    exact_max_size: int | None = None,
) -> xr.Dataset:
    """Bimodality near the bounds: dip test, bimodality coefficient, Beta and mixture fits.

    Parameters
    ----------
    ds : xarray.Dataset
    by : str or sequence of str, default ("run", "epoch", "layer", "split")
        Kept dimensions, from run, epoch, layer, sample, unit and split.
    variable : {"activation"}
        The bounded variable (the only one a store has).
    alpha : float, default 0.05
        Level of the dip test inside the ``bimodal_at_bounds`` criterion, applied to
        the Benjamini–Hochberg adjusted p-value.
    mixture : {"auto", "always", "never"}, default "auto"
        Where to fit the three-component Beta mixture, the one expensive step (EM, 20–300
        ms per group). ``"auto"``: only where it can change ``bimodal_at_bounds`` — the
        group is multimodal (unadjusted dip p-value < ``alpha``, which the adjusted one
        can only exceed, or coefficient > 5/9) and the single Beta is not U-shaped;
        elsewhere the criterion does not depend on it. ``"always"``: every group (the
        numbers of :func:`actstats.kernels.bimodality`). ``"never"``: the criterion
        rests on the single Beta.
    mixture_max_size : int, default 5000
        EM of the mixture runs on a deterministic subsample of at most this many
        values per group (see ``QUERY_MIXTURE_MAX_SIZE``).
    seed : int, default 0
    method : {"auto", "exact", "histogram"}, default "auto"
        "exact": each group loaded whole. "histogram": one streaming pass over the
        store (:mod:`actstats.kernels.logit_histogram`): the Beta and logit-normal fits
        and the bimodality coefficient are the same (they need only sums and merged
        moments); the dip comes from a logit-space histogram with an exact error bound
        (``dip_error``) and ``dip_pvalue`` is the p-value of the smallest dip the
        bound allows, so at least the exact one (a rejection stays a rejection); the
        mixture's EM runs on ``mixture_max_size`` quantile points of the histogram and
        its log-likelihood is binned. "auto": "exact" for groups of at most
        ``exact_max_size`` values.
    exact_max_size : int, optional
        The largest group loaded whole by ``method="auto"``; default
        ``EXACT_GROUP_MAX_SIZE`` (2**25).

    Returns
    -------
    xarray.Dataset
        Per group: ``n``, ``dip``, ``dip_error`` (0 when exact), ``dip_pvalue``, ``pvalue_adjusted`` (BH of
        ``dip_pvalue`` across all groups), ``bimodality_coefficient``, the single Beta
        fit (``beta_a``, ``beta_b`` and their standard errors, ``u_shaped``,
        ``n_clipped``, ``beta_log_likelihood``, ``beta_bic``), the logit-normal's
        ``logit_normal_log_likelihood``/``logit_normal_bic``, the mixture
        (``mixture_weight_{low,interior,high}``, ``mixture_{a,b}_{low,interior,high}``,
        ``mixture_log_likelihood``, ``mixture_bic``, ``mixture_preferred_by_bic``,
        ``mixture_fitted``; NaN where not fitted),
        ``bimodal_at_bounds`` (with the adjusted p-value) and
        ``bimodal_at_bounds_unadjusted``, and ``n_nonfinite``.

    Notes
    -----
    Each run's activations are rescaled to [0, 1] with its bounds, ``(x - lower) /
    (upper - lower)``, so groups that pool runs of different activation functions
    compare like with like; log-likelihoods and BICs are on that [0, 1] scale. Runs
    whose activation is unbounded (relu) are skipped: their values never enter, and a
    group with nothing else is NaN (``bimodal_at_bounds`` False). Per group the
    statistics are those of :func:`actstats.kernels.bimodality` (its parts called one
    by one, so that the mixture can be skipped); the criterion is
    :func:`actstats.kernels.bimodal_at_bounds`, re-evaluated with the BH-adjusted dip
    p-value (the family is every group of the result).

    Verification: every field equals ``kernels.bimodality`` applied in a plain loop over
    groups of the rescaled store values, and the adjusted p-values equal
    ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``
    (``tests/test_queries.py``); Beta(0.2, 0.2) activations are found U-shaped and
    bimodal at the bounds and Beta(5, 5) ones are not.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(activation=lambda rng, shape: rng.beta(0.2, 0.2, shape), depth=1)
    >>> result = actstats.bimodality(ds, by=("epoch",))
    >>> result.bimodal_at_bounds.values.tolist()
    [True, True]
    """
    if variable != "activation":
        raise ValueError(f"variable must be 'activation' (the bounded variable), got {variable!r}")
    if mixture not in ("auto", "always", "never"):
        raise ValueError(f"mixture must be 'auto', 'always' or 'never', got {mixture!r}")
    by = _normalize_by(by, ACTIVATION_DIMS, split=True)
    _require(ds, [variable], "bimodality")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    group = [d for d in by if d != "split"]
    core = [d for d in ACTIVATION_DIMS if d not in group]
    subsets = _sample_subsets(ds, by)
    method = _choose_method(method, "bimodality", _largest_group(ds[variable], core, subsets), exact_max_size)
    fields = _BIMODALITY_FIELDS
    if method == "histogram":
        fields = fields + ("dip_error",)
        streamed = _stream_bounded([_take(ds[variable], index) for _, index in subsets], group, core, layout)
        packs = [
            part.packed(_bimodality_from_histogram(part, alpha=alpha, mixture=mixture,
                                                   mixture_max_size=mixture_max_size, seed=seed))
            for part in streamed
        ]
    else:
        lazy = [
            _map_chunks(_take(ds[variable], index), _bimodality_function, group, core, len(fields), layout,
                        whole=True, rescale=True, alpha=alpha, mixture=mixture, mixture_max_size=mixture_max_size,
                        seed=seed)
            for _, index in subsets
        ]
        packs = [_single(computed) for computed in _compute(*lazy)]
    parts = []
    for packed in packs:
        out = xr.Dataset({name: _field(packed, i) for i, name in enumerate(fields)})
        if "dip_error" not in out:
            out["dip_error"] = xr.zeros_like(out["dip"])
        for name in _BIMODALITY_BOOL:
            out[name] = _to_bool(out[name])
        out["n"] = _to_int(out["n"])
        out["n_clipped"] = _to_int(out["n_clipped"])
        out["n_nonfinite"] = _to_int(_field(packed, len(fields)))
        parts.append(out)
    result = _concat_splits(parts, [label for label, _ in subsets]).transpose(*by, ...)
    _warn_nonfinite(result["n_nonfinite"], f"{variable!r}", "bimodality")

    adjusted = _bh(result["dip_pvalue"].values)
    result["pvalue_adjusted"] = _like(result["dip_pvalue"], adjusted)
    verdict = kernels.bimodal_at_bounds(
        adjusted, result["bimodality_coefficient"].values, result["u_shaped"].values,
        _mixture_view(result), alpha=alpha,
    )
    result["bimodal_at_bounds"] = _like(result["dip_pvalue"], np.asarray(verdict, dtype=bool))
    first = ["n", "dip", "dip_error", "dip_pvalue", "pvalue_adjusted", "bimodality_coefficient", "beta_a", "beta_b",
             "u_shaped", "bimodal_at_bounds"]
    result = result[first + [v for v in result.data_vars if v not in first]]
    family = _family_description(by, int(np.isfinite(adjusted).sum()), "dip_pvalue")
    _describe(result, {
        "pvalue_adjusted": family,
        "bimodal_at_bounds": (
            f"kernels.bimodal_at_bounds with pvalue_adjusted < {alpha}: (dip test rejects unimodality or "
            "bimodality_coefficient > 5/9) and (Beta U-shaped or the Beta mixture wins by BIC with >= 10% "
            "at each bound)"
        ),
        "bimodal_at_bounds_unadjusted": "the same criterion with the unadjusted dip_pvalue",
        "dip_error": "the exact dip lies within dip ± this (0: computed exactly)",
        "u_shaped": "both upper 95% Wald bounds of the Beta's a and b are below 1",
        "mixture_fitted": "whether the Beta mixture was fitted in this group (see the mixture attribute)",
    })
    skipped = _unbounded_functions(layout)
    result.attrs = _attrs(
        "bimodality", by, [d for d in ACTIVATION_DIMS if d not in by],
        method=(
            "kernels.bimodality on activations rescaled to [0, 1] with each run's bounds: Hartigan dip test "
            "(diptest), Sarle's bimodality coefficient, Beta MLE, logit-normal MLE, 3-component Beta mixture "
            f"(EM on a deterministic subsample of at most {mixture_max_size} values, seed {seed})"
        ),
        mixture={
            "auto": "fitted only where it can change bimodal_at_bounds (multimodal and not U-shaped); "
                    "elsewhere the mixture fields are NaN and mixture_fitted is False",
            "always": "fitted in every group",
            "never": "not fitted: bimodal_at_bounds rests on the single Beta",
        }[mixture],
        alpha=alpha,
        cdf_method=method,
        dip_method=(
            "exact: each group loaded whole" if method == "exact" else
            "histogram: one streaming pass; fits and coefficient from sums and merged moments (exact); dip of "
            f"{kernels.DIP_SAMPLE_SIZE} quantile points of a {kernels.LOGIT_HISTOGRAM_BINS}-bin logit histogram "
            "with an exact bound (dip_error); dip_pvalue at dip - dip_error (conservative); mixture EM on "
            f"{mixture_max_size} quantile points, log-likelihood binned"
        ),
        pvalue_adjustment=family,
        scale="log-likelihoods and BIC on the rescaled [0, 1] scale",
        skipped=(
            f"runs with unbounded activation functions ({', '.join(skipped)}): their values are not analysed"
            if skipped else None
        ),
    )
    return result


# -------------------------------------------------------------------------------- fits


def fit(
    ds: xr.Dataset,
    family: str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    variable: str = "activation",
    *,
    mixture_max_size: int = QUERY_MIXTURE_MAX_SIZE,
    max_fit_size: int = kernels.SLOW_FIT_MAX_SIZE,
    seed: int = kernels.DEFAULT_SEED,
    method: str = "auto",
    exact_max_size: int | None = None,
) -> xr.Dataset:
    """Maximum-likelihood fits of distribution families, with AIC, BIC and KS distance.

    Parameters
    ----------
    ds : xarray.Dataset
    family : str, sequence of str or "all", optional
        For activations ``beta``, ``logit_normal``, ``beta_mixture``; for weights
        ``normal``, ``t``, ``laplace``, ``logistic``, ``uniform``, ``gennorm``; ``"all"``
        for every family of the variable. Default: the families that fit in
        milliseconds per group — ``beta``, ``logit_normal`` for activations and
        ``normal``, ``laplace``, ``logistic``, ``uniform`` for weights. The others
        (``beta_mixture``: EM; ``t``, ``gennorm``: scipy's numerical optimisation) cost
        0.05–1 s per group, minutes on a store with thousands of groups
        (docs/queries.md, "Query costs"), so they are fitted only when named.
    by : str or sequence of str, optional
        Kept dimensions. Default ("run", "epoch", "layer", "split") for activations,
        ("run", "epoch", "layer") for weights.
    variable : {"activation", "weight"}
    mixture_max_size : int, default 5000
        Subsample of the Beta mixture's EM (activations).
    max_fit_size : int, default 20000
        Subsample for the numerical fits of ``t`` and ``gennorm`` (weights).
    seed : int, default 0
    method : {"auto", "exact", "histogram"}, default "auto"
        How activation groups are read. "exact": each group whole. "histogram": one
        streaming pass; the Beta and logit-normal fits are the same (they need only
        sums), the KS distances come from a logit-space histogram with an error bound
        (``ks_statistic_error``; :mod:`actstats.kernels.logit_histogram`), and
        ``beta_mixture`` is not available. For weights: ``normal`` and ``uniform`` are the
        exact fits (merged moments, streamed extremes), ``laplace`` and ``logistic``
        are fitted to a standardised histogram (:func:`actstats.kernels.histogram_fit_families`)
        and ``t``, ``gennorm`` are not available. "auto": "exact" for groups of at most
        ``exact_max_size`` values.
    exact_max_size : int, optional
        The largest group loaded whole by ``method="auto"``; default
        ``EXACT_GROUP_MAX_SIZE`` (2**25).

    Returns
    -------
    xarray.Dataset
        A ``family`` dimension with ``log_likelihood``, ``aic``, ``bic``,
        ``ks_statistic`` (Kolmogorov–Smirnov distance between the data and the fitted
        distribution), ``ks_statistic_error`` (0 when exact) and ``n_parameters``; ``best_family`` (lowest AIC) and ``n`` per
        group; the parameters (activations: ``beta_a``, ``beta_b``,
        ``logit_normal_mean``/``_std``, ``mixture_*``; weights: ``shape``, ``loc``,
        ``scale`` in scipy's convention and ``fit_size`` along ``family``).

    Notes
    -----
    Activations are rescaled to [0, 1] with each run's bounds (relu runs skipped, as in
    :func:`bimodality`) and clipped into ``[1e-6, 1 - 1e-6]`` as the kernels' likelihoods
    require (``n_clipped`` counts the values moved); the KS distances are computed on
    those clipped values against the fitted CDFs (regularised incomplete beta function,
    the normal CDF of the logit, the weighted sum of Beta CDFs). The fits are
    :func:`actstats.kernels.fit_beta`, :func:`~actstats.kernels.fit_logit_normal`,
    :func:`~actstats.kernels.fit_beta_mixture` and
    :func:`~actstats.kernels.fit_families`. Costs: ``t`` and ``gennorm`` take
    0.1–1 s per group (scipy's numerical optimisation), the mixture 0.02–0.3 s per
    group of 20k values (EM iterations vary); see docs/queries.md.

    Verification: the fitted values equal the kernels applied in a plain loop over
    groups, and the KS distances equal ``scipy.stats.kstest`` against
    ``scipy.stats.beta`` / the fitted logit-normal (``tests/test_queries.py``); uniform
    weights come out ``uniform`` and Laplace weights ``laplace``.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(weight=lambda rng, shape: rng.uniform(-1, 1, shape), units=40, depth=1)
    >>> result = actstats.fit(ds, family=("normal", "laplace", "uniform"), variable="weight")
    >>> result.best_family.sel(run=0, layer=1).values.tolist()  # one per epoch
    ['uniform', 'uniform']
    """
    if variable not in ("activation", "weight"):
        raise ValueError(f"variable must be 'activation' or 'weight', got {variable!r}")
    families = _families(family, variable)
    dims = ACTIVATION_DIMS if variable == "activation" else WEIGHT_DIMS
    if by is None:
        by = DEFAULT_ACTIVATION_BY if variable == "activation" else DEFAULT_WEIGHT_BY
    by = _normalize_by(by, dims, split=variable == "activation")
    _require(ds, [variable], "fit")
    layout = _layout(ds)
    if variable == "activation":
        layout.check_activations(ds["run"].values)
        fields = _activation_fit_fields(families)
        function, options = _activation_fit_function, {"mixture_max_size": mixture_max_size}
    else:
        fields = tuple(f"{f}:{s}" for s in _WEIGHT_FIT_STATISTICS for f in families) + ("n", "best_family_index")
        function, options = _weight_fit_function, {"max_fit_size": max_fit_size}
    group = [d for d in by if d != "split"]
    core = [d for d in dims if d not in group]
    subsets = _sample_subsets(ds, by)
    group_size = _largest_group(ds[variable], core, subsets)
    method = _choose_method(method, "fit", group_size, exact_max_size)
    if method == "histogram":
        streamable = ("beta", "logit_normal") if variable == "activation" else kernels.HISTOGRAM_FIT_FAMILIES
        unsupported = [f for f in families if f not in streamable]
        if unsupported:
            raise ActstatsError(
                f"fit: {', '.join(unsupported)} needs the values in memory; with groups of {group_size} values "
                f"(streamed) choose among {', '.join(streamable)}, or keep more dimensions in --by / by="
            )
        fields = fields + tuple(f"{f}:ks_statistic_error" for f in families)
        if variable == "weight":
            packs = [_weight_fit_streamed(ds[variable], group, core, layout, families)]
        else:
            streamed = _stream_bounded([_take(ds[variable], index) for _, index in subsets], group, core, layout)
            packs = [part.packed(_activation_fit_from_histogram(part, families)) for part in streamed]
    else:
        lazy = [
            _map_chunks(_take(ds[variable], index), function, group, core, len(fields), layout, whole=True,
                        rescale=variable == "activation", families=families, seed=seed, **options)
            for _, index in subsets
        ]
        packs = [_single(computed) for computed in _compute(*lazy)]
    statistics = list(dict.fromkeys(f.split(":")[1] for f in fields if ":" in f))
    family_index = xr.DataArray(list(families), dims="family", name="family")
    names = np.array(list(families) + [""])
    parts = []
    for packed in packs:
        unpacked = {name: _field(packed, i) for i, name in enumerate(fields)}
        out = xr.Dataset()
        for statistic in statistics:
            out[statistic] = xr.concat([unpacked[f"{f}:{statistic}"] for f in families], dim=family_index)
        for name, array in unpacked.items():
            if ":" not in name:
                out[name] = array
        if "ks_statistic_error" not in out:
            out["ks_statistic_error"] = xr.zeros_like(out["ks_statistic"])
        if variable == "weight":
            best = out["best_family_index"].fillna(-1).astype(int).values
            out = out.drop_vars("best_family_index")
            out["fit_size"] = _to_int(out["fit_size"])
        else:
            aic = out["aic"].transpose(..., "family").values
            finite = np.isfinite(aic)
            best = np.where(finite.any(axis=-1), np.argmin(np.where(finite, aic, np.inf), axis=-1), -1)
            out["n_clipped"] = _to_int(out["n_clipped"])
        out["best_family"] = _like(out["n"], names[best])
        out["n"] = _to_int(out["n"])
        out["n_nonfinite"] = _to_int(_field(packed, len(fields)))
        parts.append(out)
    result = _concat_splits(parts, [label for label, _ in subsets])
    result = result.assign_coords(family=list(families))
    result["n_parameters"] = xr.DataArray([_FAMILY_PARAMETERS[f] for f in families], dims="family",
                                          coords={"family": list(families)})
    result = result.transpose(*by, ..., "family")
    _warn_nonfinite(result["n_nonfinite"], f"{variable!r}", "fit")
    _describe(result, {
        "ks_statistic": "Kolmogorov-Smirnov distance between the group's values and the fitted distribution",
        "ks_statistic_error": "the exact KS distance lies within ks_statistic ± this (0: computed exactly)",
        "best_family": "family with the lowest AIC",
        "n_parameters": "free parameters of the family (in AIC and BIC)",
    })
    skipped = _unbounded_functions(layout) if variable == "activation" else []
    result.attrs = _attrs(
        "fit", by, [d for d in dims if d not in by],
        variable=variable,
        method=(
            "maximum likelihood: kernels.fit_beta, fit_logit_normal, fit_beta_mixture (EM on a deterministic "
            f"subsample of at most {mixture_max_size} values, seed {seed}) on activations rescaled to [0, 1] "
            "and clipped into [1e-6, 1-1e-6]; log-likelihoods on that scale"
            if variable == "activation"
            else "maximum likelihood: kernels.fit_families (t and gennorm fitted on a deterministic subsample "
            f"of at most {max_fit_size} values, seed {seed}; likelihoods on all values)"
        ),
        selection="best_family: lowest AIC",
        cdf_method=method,
        ks_method=(
            "exact: each group loaded whole" if method == "exact" else
            "histogram: one streaming pass; fits from summed sufficient statistics and merged moments (exact); "
            f"KS from {kernels.LOGIT_HISTOGRAM_BINS} bins of logit y with exact bounds (ks_statistic_error)"
            if variable == "activation" else
            "histogram: two streaming passes (moments and extremes, then a standardised histogram of "
            f"{kernels.HISTOGRAM_BINS} bins); normal and uniform exact, laplace and logistic fitted to the "
            "histogram (kernels.histogram_fit_families); KS with exact bounds (ks_statistic_error)"
        ),
        skipped=(
            f"runs with unbounded activation functions ({', '.join(skipped)}): their values are not analysed"
            if skipped else None
        ),
    )
    return result


# -------------------------------------------------------------------- weight normality


def weight_normality(
    ds: xr.Dataset,
    by: str | Sequence[str] = DEFAULT_WEIGHT_BY,
    *,
    families: Sequence[str] = NORMALITY_FAMILIES,
    max_fit_size: int = kernels.SLOW_FIT_MAX_SIZE,
    shapiro_max_size: int = kernels.SHAPIRO_MAX_SIZE,
    seed: int = kernels.DEFAULT_SEED,
    method: str = "auto",
    exact_max_size: int = EXACT_GROUP_MAX_SIZE,
) -> xr.Dataset:
    """Are the weights Gaussian? Moments, tests, effect sizes, best family, a verdict.

    Parameters
    ----------
    ds : xarray.Dataset
    by : str or sequence of str, default ("run", "epoch", "layer")
        Kept dimensions, from run, epoch, layer, unit and fan_in.
    families : sequence of str, default ("normal", "laplace", "logistic", "uniform")
        Families compared for ``best_family`` (lowest AIC); any of
        :data:`WEIGHT_FAMILIES`. ``t`` and ``gennorm`` cost 0.1–1 s per group.
    max_fit_size : int, default 20000
        Subsample of the numerical ``t``/``gennorm`` fits, when asked for.
    shapiro_max_size : int, default 5000
        Shapiro–Wilk runs on a deterministic subsample of this size (see
        :func:`actstats.kernels.shapiro_wilk`: positions
        ``sort(default_rng(seed).choice(n, size, replace=False))`` of the group's
        non-NaN values in C order of the pooled dims, ``unit`` before ``fan_in``).
    seed : int, default 0
    method : {"auto", "exact", "histogram"}, default "auto"
        How the CDF-based statistics (KS, W1, Anderson–Darling, Lilliefors, best family)
        are computed. "exact": each group is loaded whole. "histogram": one streaming
        pass of fixed fine histograms of the standardised weights
        (:mod:`actstats.kernels.histogram`: 8192 bins on ±10 std), with error bounds in
        ``ks_d_error``, ``w1_normal_error`` and ``ad_statistic_error``; Shapiro–Wilk is
        then NaN and ``best_family`` ranks moment-matched families by binned likelihood.
        "auto": exact when a group holds at most ``exact_max_size`` values.
    exact_max_size : int, default 2**25
        The largest group loaded whole by ``method="auto"``.

    Returns
    -------
    xarray.Dataset
        Per group:

        * moments (streamed): ``n``, ``mean``, ``std`` (ddof=1), ``skewness`` and
          ``excess_kurtosis`` (adjusted G1, G2, as ``scipy.stats.skew/kurtosis(bias=False)``)
          with ``skewness_standard_error`` and ``excess_kurtosis_standard_error`` (exact
          under normality);
        * tests: ``k2_statistic``/``k2_pvalue`` (D'Agostino–Pearson), ``jb_statistic``/
          ``jb_pvalue`` (Jarque–Bera), both from the merged moments; ``ad_statistic``/
          ``ad_pvalue`` (Anderson–Darling), ``lilliefors_statistic``/``lilliefors_pvalue``,
          ``shapiro_statistic``/``shapiro_pvalue``/``shapiro_n_used``;
          ``pvalue_adjusted``: BH of ``k2_pvalue`` across every group of the result;
        * effect sizes: ``ks_d`` (KS distance to the maximum-likelihood normal) and
          ``w1_normal`` — the Wasserstein-1 distance to the fitted normal divided by the
          standard deviation, i.e. that of the standardised weights to N(0, 1): scale-free,
          so layers of different widths and initial scales compare; it is the mean
          absolute gap between the data's and the normal's quantiles, in standard
          deviations;
        * ``best_family`` (lowest AIC among ``families``);
        * ``distance_from_init``: ``‖W_e − W_0‖_F / ‖W_0‖_F`` over the group's values
          present at both epochs (pooled sums of squares when runs, layers or epochs are
          pooled); NaN when the store has no epoch 0;
        * ``gaussian``: the verdict (below), and ``n_nonfinite``.

    Notes
    -----
    With 10⁵ or more weights every test rejects for negligible departures, so the
    verdict rests on effect sizes only::

        gaussian = |skewness| < 0.5 and |excess_kurtosis| < 1 and w1_normal < 0.1

    For orientation (n = 2·10⁵): the normal gives w1 ≈ 0.002; Student t with 30 df
    0.015 (kurtosis 0.25), logistic 0.06 (kurtosis 1.2), t with 5 df 0.10 (kurtosis
    3.9), Laplace 0.15 (kurtosis 3), uniform 0.16 (kurtosis −1.2). So uniform,
    Laplace, logistic and t₅ are not Gaussian; a generalised normal with β = 1.5 or a
    skew-normal with α = 2 are. Below ~1000 values per group the estimates are too noisy
    for the verdict (SE of G2 ≈ sqrt(24/n)); read the standard errors.

    Moments stream: each dask chunk gives mergeable moments
    (:func:`actstats.kernels.moments`) that :func:`~actstats.kernels.combine_moments`
    merges exactly, so ``mean`` … ``jb_pvalue`` work on stores larger than memory. The
    CDF-based statistics (Anderson–Darling, Lilliefors, Shapiro–Wilk, KS, W1) and the
    fits load one group at a time.

    Verification: every field equals scipy/statsmodels applied in a plain loop over
    groups (``scipy.stats.skew/kurtosis(bias=False)``, ``normaltest``, ``jarque_bera``,
    ``anderson``, ``shapiro`` on the documented subsample, ``kstest``,
    ``statsmodels...lilliefors``, BH by ``multipletests``) and the W1 distance equals
    ``scipy.stats.wasserstein_distance`` against a fine quantile grid of N(0, 1)
    (``tests/test_queries.py``); uniform weights give excess kurtosis ≈ −1.2 and
    ``uniform``, Laplace ones ≈ +3 and ``laplace``, normal ones ``gaussian``.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(weight=lambda rng, shape: rng.normal(0, 0.1, shape), units=64, depth=1)
    >>> result = actstats.weight_normality(ds)
    >>> one_layer = result.sel(run=0, layer=1)  # one value per epoch
    >>> one_layer.gaussian.values.tolist(), one_layer.best_family.values.tolist()
    ([True, True], ['normal', 'normal'])
    """
    by = _normalize_by(by, WEIGHT_DIMS, split=False)
    families = _families(tuple(families), "weight")
    _require(ds, ["weight"], "weight_normality")
    layout = _layout(ds)
    group = list(by)
    core = [d for d in WEIGHT_DIMS if d not in group]
    weight = ds["weight"]
    group_size = int(np.prod([weight.sizes[d] for d in core], dtype=np.int64))
    method = _choose_method(method, "weight_normality", group_size, exact_max_size)
    if method == "histogram":
        unsupported = [f for f in families if f not in kernels.HISTOGRAM_FAMILIES]
        if unsupported:
            raise ValueError(
                f"weight_normality: families {', '.join(unsupported)} need the values in memory; with "
                f"groups of {group_size} values (method='histogram') choose among {', '.join(kernels.HISTOGRAM_FAMILIES)}"
            )
    lazy = {"moments": _map_chunks(weight, _moments_function, group, core, 5, layout)}
    if method == "exact":
        lazy["cdf"] = _map_chunks(weight, _normality_function, group, core, len(_NORMALITY_FIELDS), layout,
                                  whole=True, families=families, max_fit_size=max_fit_size,
                                  shapiro_max_size=shapiro_max_size, seed=seed)
    epochs = np.asarray(ds["epoch"].values, dtype=float)
    initial_epoch = int(np.flatnonzero(epochs == 0)[0]) if np.any(epochs == 0) else None
    if initial_epoch is not None:
        initial = _broadcast_epoch(weight, initial_epoch)
        lazy["distance"] = _map_chunks(weight, _distance_function, group, core, 3, layout, others=[initial],
                                       initial_epoch=initial_epoch)
    if method == "histogram":  # the moments first: they standardise the histograms' values
        computed = dict(zip(["moments"], _compute(lazy.pop("moments"))))
    else:
        computed = dict(zip(lazy, _compute(*lazy.values())))
        lazy = {}

    block_moments = computed["moments"].transpose(*group, *[f"{d}_chunk" for d in core], _FIELD).values
    chunk_axes = tuple(range(len(group), len(group) + len(core)))
    merged = kernels.combine_moments(block_moments[..., :5], axis=chunk_axes)
    n_nonfinite = block_moments[..., 5].sum(axis=chunk_axes)
    statistics = kernels.moment_statistics(merged, ddof=1, bias=False)
    k2 = kernels.dagostino_pearson(merged)
    jb = kernels.jarque_bera(merged)
    if method == "histogram":
        with np.errstate(invalid="ignore", divide="ignore"):
            std0 = statistics.std * np.sqrt((statistics.n - 1) / statistics.n)
        lazy["histogram"] = _standardized_histograms(weight, group, core, layout, statistics.mean, std0)
        computed.update(zip(lazy, _compute(*lazy.values())))
        histogram = computed["histogram"].transpose(*group, _FIELD)
        template = _field(histogram, 0)
        cdf = _histogram_normality(histogram.values[..., :-1], statistics, families)
        cdf = xr.DataArray(cdf, dims=histogram.dims, coords=template.coords)
    else:
        cdf = _single(computed["cdf"]).transpose(*group, _FIELD)
        template = _field(cdf, 0)
    result = xr.Dataset(coords=template.coords)
    result["n"] = _like(template, statistics.n.astype(np.int64))
    for name in ("mean", "std", "skewness", "excess_kurtosis", "skewness_standard_error",
                 "excess_kurtosis_standard_error"):
        result[name] = _like(template, getattr(statistics, name))
    result["k2_statistic"] = _like(template, k2.statistic)
    result["k2_pvalue"] = _like(template, k2.pvalue)
    result["jb_statistic"] = _like(template, jb.statistic)
    result["jb_pvalue"] = _like(template, jb.pvalue)
    for i, name in enumerate(_NORMALITY_FIELDS[:-1]):
        result[name] = _field(cdf, i)
    result["shapiro_n_used"] = _to_int(result["shapiro_n_used"].fillna(0))
    for i, name in enumerate(_CDF_ERROR_FIELDS):
        result[name] = _field(cdf, len(_NORMALITY_FIELDS) + i) if method == "histogram" else xr.zeros_like(template)
    names = np.array(list(families) + [""])
    best = _field(cdf, len(_NORMALITY_FIELDS) - 1).fillna(-1).astype(int).values
    result["best_family"] = _like(template, names[best])
    if initial_epoch is not None:
        sums = _merge_sum(computed["distance"]).transpose(*group, _FIELD).values
        ratio = np.sqrt(_divide(sums[..., 0], sums[..., 1]))
        ratio = np.where(sums[..., 2] > 0, ratio, np.nan)
    else:
        ratio = np.full(template.shape, np.nan)
    result["distance_from_init"] = _like(template, ratio)
    adjusted = _bh(result["k2_pvalue"].values)
    result["pvalue_adjusted"] = _like(template, adjusted)
    thresholds = GAUSSIAN_THRESHOLDS
    with np.errstate(invalid="ignore"):
        gaussian = (
            (np.abs(result["skewness"].values) < thresholds["max_abs_skewness"])
            & (np.abs(result["excess_kurtosis"].values) < thresholds["max_abs_excess_kurtosis"])
            & (result["w1_normal"].values < thresholds["max_w1_normal"])
        )
    result["gaussian"] = _like(template, gaussian)
    result["n_nonfinite"] = _like(template, n_nonfinite.astype(np.int64))
    _warn_nonfinite(result["n_nonfinite"], "'weight'", "weight_normality")

    criterion = (
        f"|skewness| < {thresholds['max_abs_skewness']} and |excess_kurtosis| < "
        f"{thresholds['max_abs_excess_kurtosis']} and w1_normal < {thresholds['max_w1_normal']}"
    )
    family = _family_description(by, int(np.isfinite(adjusted).sum()), "k2_pvalue")
    _describe(result, {
        "std": "standard deviation (ddof=1)",
        "skewness": "adjusted Fisher-Pearson skewness G1 (scipy.stats.skew bias=False)",
        "excess_kurtosis": "adjusted excess kurtosis G2 (scipy.stats.kurtosis bias=False)",
        "gaussian": f"effect-size verdict: {criterion} (p-values are not used)",
        "w1_normal": "Wasserstein-1 distance to the fitted normal N(mean, std ddof=0), divided by that std",
        "ks_d": "Kolmogorov-Smirnov distance to the fitted normal N(mean, std ddof=0)",
        "distance_from_init": "||W_e - W_0||_F / ||W_0||_F (NaN without epoch 0)",
        "pvalue_adjusted": family,
        "best_family": f"lowest AIC among {', '.join(families)}",
        "ks_d_error": "|ks_d - exact| is at most this (0 when computed on the values)",
        "w1_normal_error": "|w1_normal - exact| is at most this (0 when computed on the values)",
        "ad_statistic_error": "|ad_statistic - exact| is at most this (0 when computed on the values)",
    })
    if method == "exact":
        cdf_method = (
            f"Anderson-Darling, Lilliefors, Shapiro-Wilk (deterministic subsample of at most {shapiro_max_size}, "
            f"seed {seed}), KS and W1 on each group in memory"
        )
    else:
        cdf_method = (
            f"KS, W1, Anderson-Darling and Lilliefors from a streamed histogram of the standardised weights "
            f"({kernels.HISTOGRAM_BINS} bins on +-{kernels.HISTOGRAM_LIMIT:g} std; groups of {group_size} values), "
            f"with exact error bounds in *_error; no Shapiro-Wilk; best_family by binned likelihood of "
            f"moment-matched families (kernels.histogram)"
        )
    result.attrs = _attrs(
        "weight_normality", by, core,
        method=(
            "moments merged exactly across chunks (kernels.moments, combine_moments); skewness and excess "
            "kurtosis are the adjusted G1, G2; K2 and JB from the merged moments; " + cdf_method
        ),
        cdf_method=method,
        gaussian_criterion=criterion,
        best_family=f"lowest AIC among {', '.join(families)} (kernels.fit_families)",
        pvalue_adjustment=family,
        distance_from_init="||W_e - W_0||_F / ||W_0||_F" if initial_epoch is not None else "NaN: no epoch 0",
    )
    return result


def _broadcast_epoch(x: xr.DataArray, epoch: int) -> xr.DataArray:
    """``x`` at one epoch, repeated along epoch with ``x``'s chunks (a view, no copies)."""
    one = x.isel(epoch=[epoch])
    if _is_dask(x):
        import dask.array as da

        data = da.broadcast_to(one.data, x.shape, chunks=x.data.chunks)
    else:
        data = np.broadcast_to(np.asarray(one.values), x.shape)
    return x.copy(data=data)


# ----------------------------------------------------------------------- gradient flow


def gradient_flow(ds: xr.Dataset) -> xr.Dataset:
    """Gradient signal per (run, epoch, layer): norms, RMS delta, mean f'(z), layer ratios.

    Parameters
    ----------
    ds : xarray.Dataset
        Needs ``weight_grad`` and ``delta`` (capture's ``[record] weight_grad = true``,
        ``delta = true``) and ``preactivation``.

    Returns
    -------
    xarray.Dataset
        Per (run, epoch, layer):

        * ``weight_grad_norm``: Frobenius norm of ``weight_grad`` (the gradient of the
          mean training loss w.r.t. the layer's W);
        * ``delta_rms``: root mean square of ``delta`` (∂ℓᵢ/∂z) over probe samples and
          units;
        * ``mean_derivative``: mean of f'(z) over probe samples and units, from
          ``preactivation`` and the run's activation function (≤ 1/4 for sigmoid, ≤ 1 for
          tanh; for relu the fraction of active units);
        * ``ratio_to_next_layer``: ``weight_grad_norm`` of layer l over that of layer
          l + 1 (NaN for the top hidden layer); below 1 means the gradient shrinks as it
          flows down;
        * ``n_nonfinite``: existing values of the three variables that were not finite.

    Raises
    ------
    ActstatsError
        Naming ``weight_grad`` and/or ``delta`` when the store lacks them.

    Verification: equal to ``numpy.linalg.norm``, ``numpy.sqrt(numpy.nanmean(delta**2))``
    and the mean of the closed-form derivative in a plain loop
    (``tests/test_queries.py``); ``mean_derivative`` ≤ 1/4 for sigmoid runs.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> result = actstats.gradient_flow(synthetic_store(depth=3))
    >>> bool((result.mean_derivative <= 0.25).all())
    True
    >>> bool(result.ratio_to_next_layer.sel(layer=3).isnull().all())
    True
    """
    _require(ds, ["weight_grad", "delta"], "gradient_flow")
    _require(ds, ["preactivation"], "gradient_flow")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    keep = ["run", "epoch", "layer"]
    lazy = (
        _map_chunks(ds["weight_grad"], _squares_function, keep, ["unit", "fan_in"], 2, layout),
        _map_chunks(ds["delta"], _squares_function, keep, ["sample", "unit"], 2, layout),
        _map_chunks(ds["preactivation"], _derivative_function, keep, ["sample", "unit"], 2, layout),
    )
    grad, delta, derivative = (_merge_sum(c).transpose(*keep, _FIELD) for c in _compute(*lazy))
    template = _field(grad, 0)
    result = xr.Dataset(coords=template.coords)
    norm = np.where(_field(grad, 1) > 0, np.sqrt(_field(grad, 0).values), np.nan)
    result["weight_grad_norm"] = _like(template, norm)
    result["delta_rms"] = _like(template, np.sqrt(_divide(_field(delta, 0), _field(delta, 1))))
    result["mean_derivative"] = _like(template, _divide(_field(derivative, 0), _field(derivative, 1)))
    following = result["weight_grad_norm"].shift(layer=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result["ratio_to_next_layer"] = _like(template, result["weight_grad_norm"].values / following.values)
    n_nonfinite = sum(_field(a, 2).values for a in (grad, delta, derivative))
    result["n_nonfinite"] = _like(template, n_nonfinite.astype(np.int64))
    _warn_nonfinite(result["n_nonfinite"], "weight_grad, delta and preactivation", "gradient_flow")
    _describe(result, {
        "weight_grad_norm": "Frobenius norm of weight_grad (unit x fan_in)",
        "delta_rms": "root mean square of delta over probe samples and units",
        "mean_derivative": "mean of f'(preactivation) over probe samples and units",
        "ratio_to_next_layer": "weight_grad_norm of this layer / that of the next layer up (NaN at the top)",
    })
    result.attrs = _attrs(
        "gradient_flow", keep, ["sample", "unit", "fan_in"],
        method="per-chunk sums of weight_grad², delta² and f'(preactivation) (actstats.activations derivatives)",
    )
    return result


# -------------------------------------------------------------------------- comparison


def compare_splits(
    ds: xr.Dataset,
    eps: float = 0.05,
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
    eps : float, default 0.05
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
    eps = _check_eps(eps)
    confidence_level = _check_confidence_level(confidence_level)
    by = _normalize_by(by, ("run", "epoch", "layer"), split=False)
    _require(ds, ["activation", "preactivation"], "compare_splits")
    split = np.asarray(ds["split"].values).astype(str)
    for label in ("train", "test"):
        if not np.any(split == label):
            raise ActstatsError(f"compare_splits needs probe samples with split == {label!r}; this store has none")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    if "run" in by and _runs_per_batch(ds) < ds.sizes["run"]:
        # As saturation: a batch of runs at a time (groups never span runs), then one
        # Benjamini-Hochberg adjustment over every group.
        result = _in_run_batches(ds, lambda part: compare_splits(
            part, eps, by, confidence_level=confidence_level, n_permutations=n_permutations,
            n_resamples=n_resamples, seed=seed,
        )).transpose(*by, ...)
        adjusted = _bh(result["pvalue"].values)
        result["pvalue_adjusted"] = (result["pvalue"].dims, adjusted)
        family = _family_description(by, int(np.isfinite(adjusted).sum()), "pvalue")
        result["pvalue_adjusted"].attrs["description"] = family
        result.attrs["pvalue_adjustment"] = family
        _warn_nonfinite(result["n_nonfinite"], "activation and preactivation", "compare_splits")
        return result
    keep = ["run", "epoch", "layer", "sample"]
    counts, absolute = _compute(
        _cell_counts(ds, layout, eps),
        _map_chunks(ds["preactivation"], _abs_function, keep, ["unit"], 2, layout),
    )
    group = list(by)
    pool = [d for d in ("run", "sample") if d not in by]
    counts = _cells_by(_merge_sum(counts), by)
    absolute = _cells_by(_merge_sum(absolute), by)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    fractions, means = [], []
    for index in (train, test):
        values, axes = _pool_axes(counts.isel(sample=index), group, pool)
        fractions.append(kernels.saturated_fractions(values[..., :3])[..., 0])
        sums, _ = _pool_axes(absolute.isel(sample=index), group, pool)
        per_sample = _divide(sums[..., 0], sums[..., 1])
        present = ~np.isnan(per_sample)
        means.append(_divide(np.where(present, per_sample, 0.0).sum(axis=axes), present.sum(axis=axes)))
    comparison = kernels.compare_groups(
        fractions[0], fractions[1], axis=axes, n_permutations=n_permutations, n_resamples=n_resamples,
        confidence_level=confidence_level, seed=seed,
    )
    template = counts.isel({d: 0 for d in pool}, drop=True).isel({_FIELD: 0}, drop=True).transpose(*group)
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
    nonfinite = (_field(counts, 3) + _field(absolute, 2)).sum(pool)
    result["n_nonfinite"] = _like(template, nonfinite.transpose(*group).values.astype(np.int64))
    _warn_nonfinite(result["n_nonfinite"], "activation and preactivation", "compare_splits")
    unit = "(run, sample) pair" if "run" not in by else "sample"
    family = _family_description(by, int(np.isfinite(adjusted).sum()), "pvalue")
    _describe(result, {
        "difference": "fraction_train - fraction_test",
        "ci_low": f"lower end of the {confidence_level:.0%} stratified bootstrap interval of difference",
        "ci_high": f"upper end of the {confidence_level:.0%} stratified bootstrap interval of difference",
        "pvalue": f"two-sided permutation test ({n_permutations} permutations of {unit}s between the splits)",
        "pvalue_adjusted": family,
        "mean_abs_preactivation_train": "mean over training samples of each sample's mean |preactivation|",
        "mean_abs_preactivation_test": "mean over held-out samples of each sample's mean |preactivation|",
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


# ----------------------------------------------------------------------------- records


def _plain(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, (np.str_, str)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def _expander(own_dims, dims) -> tuple:
    """Index that inserts new axes for the dims a variable lacks (its dims in order)."""
    return tuple(slice(None) if d in own_dims else np.newaxis for d in dims)


def to_records(result: xr.Dataset) -> list[dict[str, Any]]:
    """Flat JSON-able records: one per combination of the result's dimensions.

    Parameters
    ----------
    result : xarray.Dataset
        A query result.

    Returns
    -------
    list of dict
        Keys: the dimension coordinates (``run``, ``epoch``, ``layer``, ``split``,
        ``family`` …), then ``split`` and ``activation_fn`` when they are coordinates
        of a kept dimension, then every data variable (broadcast where it lacks a
        dimension, e.g. ``best_family`` of :func:`fit` on each family's record). NaN
        and ±inf become None; numpy scalars become Python ones. Values are not rounded.

    Examples
    --------
    >>> import xarray as xr
    >>> result = xr.Dataset({"fraction": ("layer", [0.5, float("nan")])}, coords={"layer": [1, 2]})
    >>> to_records(result)
    [{'layer': 1, 'fraction': 0.5}, {'layer': 2, 'fraction': None}]
    """
    dims: list[Hashable] = []
    for variable in result.data_vars.values():
        dims += [d for d in variable.dims if d not in dims]
    dims += [d for d in result.dims if d not in dims]
    shape = tuple(result.sizes[d] for d in dims)
    columns: dict[Hashable, np.ndarray] = {}
    for d in dims:
        coordinate = result[d].values if d in result.coords else np.arange(result.sizes[d])
        columns[d] = np.broadcast_to(np.asarray(coordinate)[_expander((d,), dims)], shape)
    for name in RECORD_COORDINATES:
        if name in result.coords and name not in result.dims and set(result[name].dims) <= set(dims):
            coordinate = result[name]
            own = [d for d in dims if d in coordinate.dims]
            columns[name] = np.broadcast_to(coordinate.transpose(*own).values[_expander(own, dims)], shape)
    for name, variable in result.data_vars.items():
        own = [d for d in dims if d in variable.dims]
        columns[name] = np.broadcast_to(variable.transpose(*own).values[_expander(own, dims)], shape)
    flat = {k: v.reshape(-1) for k, v in columns.items()}
    size = int(np.prod(shape)) if shape else 1
    return [{str(k): _plain(v[i]) for k, v in flat.items()} for i in range(size)]
