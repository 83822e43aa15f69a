"""``factor_effects``: does saturation depend on a factor of the sweep (init, depth, optimizer, ...)?

Each run gives one number, its saturated fraction at its last complete record (averaged over
its hidden layers, or its top hidden layer); the factor's levels are compared on those
numbers, runs being the independent replicates.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.errors import ActstatsError, ActstatsValueError
from actstats.queries._results import _describe
from actstats.queries.training import last_complete
from actstats.validate import validate_choice, validate_eps

#: How a run's layers are reduced to one number: the mean over its hidden layers, or its top one.
LAYER_CHOICES = ("mean", "top")


def init_labels(ds) -> np.ndarray:
    """Each run's ``init``, with its ``init_scale`` (from the run's ``config``) appended where
    runs of one init differ in scale: ``normal(0.01)`` and ``normal(1)`` are two levels.

    Examples
    --------
    >>> import json
    >>> import xarray as xr
    >>> configs = [json.dumps({"model": {"init_scale": s}}) for s in (0.01, 1, 1)]
    >>> ds = xr.Dataset(coords={"init": ("run", ["normal", "normal", "uniform"]), "config": ("run", configs)})
    >>> init_labels(ds).tolist()
    ['normal(0.01)', 'normal(1)', 'uniform']
    """
    names = np.asarray(ds["init"].values).astype(str)
    scales = []
    configs = np.asarray(ds["config"].values).astype(str) if "config" in ds.variables else [""] * names.size
    for text in configs:
        try:
            scale = json.loads(text).get("model", {}).get("init_scale")
        except (ValueError, AttributeError):
            scale = None
        scales.append(scale if isinstance(scale, (int, float)) else None)
    labels = names.astype(object)
    for name in np.unique(names):
        runs = np.flatnonzero(names == name)
        if len({scales[r] for r in runs}) > 1:
            for r in runs:
                labels[r] = f"{name}({scales[r]:g})" if scales[r] is not None else name
    return labels.astype(str)


def run_levels(ds: xr.Dataset, factor: str) -> tuple[np.ndarray, list[str]]:
    """Each run's level of ``factor`` as text, and the levels in order (of the coordinate's values).

    ``factor="init"`` uses :func:`init_labels`; any other run coordinate its values as text
    (``str`` of the numpy value: ``0.05``, ``3``, ``adam``), ordered by value (numbers as numbers).
    """
    if factor == "init":
        labels = init_labels(ds)
        return labels, sorted(set(labels.tolist()))
    values = np.asarray(ds[factor].values)
    ordered = np.unique(values)
    text = {str(v): i for i, v in enumerate(ordered)}
    labels = np.array([str(v) for v in values], dtype=str)
    return labels, sorted(set(labels.tolist()), key=text.__getitem__)


def _validate_factor(ds: xr.Dataset, factor) -> str:
    known = sorted(str(n) for n, c in ds.coords.items() if c.dims == ("run",))
    if not isinstance(factor, str) or factor not in known:
        problem = f"must be a run coordinate ({', '.join(known)})"
        raise ActstatsValueError(f"factor {problem}, got {factor!r}", argument="factor", problem=problem)
    return factor


def _validate_count(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        problem = "must be a positive integer"
        raise ActstatsValueError(f"{name} {problem}, got {value!r}", argument=name, problem=problem)
    return int(value)


def _per_run(fractions: np.ndarray, layer: str, depth: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """(run, layer) fractions → one per run: mean over the existing layers, or the layer == depth."""
    if layer == "mean":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a run without any value: NaN
            return np.nanmean(fractions, axis=1)
    top = np.full(fractions.shape[0], np.nan)
    for r, d in enumerate(depth):
        where = np.flatnonzero(layers == d)
        if where.size:
            top[r] = fractions[r, where[0]]
    return top


def factor_effects(
    ds: xr.Dataset,
    factor: str,
    eps: float | None = None,
    *,
    split: str = "train",
    layer: str = "mean",
    runs: Sequence | None = None,
    n_permutations: int = kernels.DEFAULT_PERMUTATIONS,
    n_resamples: int = kernels.DEFAULT_RESAMPLES,
    seed: int = kernels.DEFAULT_SEED,
) -> xr.Dataset:
    """Saturation per level of a factor, and the difference between its most and least saturated levels.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (:func:`actstats.open_store`) or the same data in memory.
    factor : str
        A run coordinate: ``init`` (with its scale where one init has several:
        :func:`init_labels`), ``depth``, ``optimizer``, ``lr``, ``batch_size``,
        ``activation_fn``, ``seed``, ...
    eps : float, optional
        Band width of :func:`actstats.saturation`; default ``OPTIONS["eps"]`` (0.05).
    split : str, default "train"
        The probes the fractions are taken on (a value of the ``split`` coordinate).
    layer : {"mean", "top"}, default "mean"
        A run's number: the mean over its hidden layers, or its top hidden layer (the
        layer equal to its ``depth``: compares depths at the same relative position).
    runs : sequence of run labels, optional
        Use only these runs (labels of the ``run`` coordinate).
    n_permutations, n_resamples, seed
        Permutation p-value of :func:`actstats.kernels.compare_groups`; Welch t interval of :func:`actstats.kernels.welch_interval`.

    Returns
    -------
    xarray.Dataset
        Per ``level`` (the factor's levels among the runs used, as text):

        * ``mean_fraction``: the mean over the level's runs of each run's saturated
          fraction at its last complete record (:func:`actstats.saturation` by (run,
          epoch, layer, split) at ``eps`` on ``split``, reduced over layers by ``layer``);
        * ``mean_fraction_initial``: the same at epoch 0 (NaN when the store has no
          epoch 0; runs whose epoch-0 record is not complete are skipped);
        * ``mean_change``: the mean over runs of (end − epoch 0);
        * ``n_runs``: runs of the level used.

        and scalars: ``most_saturated`` and ``least_saturated`` (the levels with the
        largest and smallest ``mean_fraction``; ties go to the first level in order),
        ``difference`` (most − least of ``mean_fraction``), ``ci_low``/``ci_high`` (95%
        Welch t interval, :func:`actstats.kernels.welch_interval`: with a few runs a level a
        bootstrap over runs is too narrow) and ``pvalue`` (permutation test of the two
        levels' runs, :func:`actstats.kernels.compare_groups`).

        A run is used when it has a complete record and a finite number there; the others
        are named in ``attrs["runs_excluded"]``.

    Raises
    ------
    ActstatsValueError
        An unknown factor, split or layer; fewer than two levels among the runs used.

    Notes
    -----
    The most and least saturated levels are picked from the data, so for a factor with
    more than two levels the interval and p-value are optimistic (selection). Runs are the
    replicates: a level with one run has no spread of its own.

    Verification: equal to a loop over runs on per-sample fractions of each (run, layer)
    slab, with ``compare_groups`` on the same arrays, on the captured store and on
    synthetic stores with planted activations (``tests/test_queries_factors.py``).

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=4, activation_fn=["sigmoid", "tanh", "sigmoid", "tanh"], weight_scale=6.0)
    >>> result = actstats.factor_effects(ds, "activation_fn", n_permutations=99, n_resamples=200)
    >>> result["level"].values.tolist(), result["n_runs"].values.tolist()
    (['sigmoid', 'tanh'], [2, 2])
    """
    from actstats.queries.saturation import saturation
    from actstats.selection import select_runs

    if runs is not None:
        ds = select_runs(ds, runs=runs)
    factor = _validate_factor(ds, factor)
    eps = validate_eps(eps)
    layer = validate_choice("layer", layer, LAYER_CHOICES)
    split_labels = list(dict.fromkeys(np.asarray(ds["split"].values).astype(str).tolist()))
    split = validate_choice("split", split, split_labels)
    n_permutations = _validate_count("n_permutations", n_permutations)
    n_resamples = _validate_count("n_resamples", n_resamples)
    if "complete" not in ds.variables:
        raise ActstatsError("factor_effects needs 'complete', which this dataset does not have")

    labels, order = run_levels(ds, factor)
    last = last_complete(ds)
    epochs = np.asarray(ds["epoch"].values, dtype=np.float64)
    initial = np.flatnonzero(epochs == 0.0)
    initial = int(initial[0]) if initial.size else None
    needed = sorted(set(last[last >= 0].tolist()) | ({initial} if initial is not None else set()))

    n_runs = ds.sizes["run"]
    end = np.full(n_runs, np.nan)
    start = np.full(n_runs, np.nan)
    if needed:
        fractions = saturation(ds.isel(epoch=needed), eps=eps, by=("run", "epoch", "layer", "split"))["fraction"]
        fractions = np.asarray(fractions.sel(split=split).transpose("run", "epoch", "layer").values, dtype=np.float64)
        position = {e: i for i, e in enumerate(needed)}
        depth = np.asarray(ds["depth"].values)
        layers = np.asarray(ds["layer"].values)
        has_record = last >= 0
        at_end = fractions[np.arange(n_runs), [position.get(int(e), 0) for e in last]]
        end = np.where(has_record, _per_run(at_end, layer, depth, layers), np.nan)
        if initial is not None:
            start = _per_run(fractions[:, position[initial]], layer, depth, layers)
    used = np.isfinite(end)
    run_labels = np.asarray(ds["run"].values)
    present = [level for level in order if (used & (labels == level)).any()]
    if len(present) < 2:
        found = ", ".join(repr(level) for level in present) or "none"
        problem = (f"has {len(present)} level(s) ({found}) among the {int(used.sum())} run(s) used "
                   f"(with a complete record); at least 2 are needed")
        raise ActstatsValueError(f"factor {factor!r} {problem}", argument="factor", problem=problem)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a level without an epoch-0 record: NaN
        groups = [used & (labels == level) for level in present]
        mean_fraction = np.array([np.mean(end[g]) for g in groups])
        mean_initial = np.array([np.nanmean(start[g]) for g in groups])
        mean_change = np.array([np.nanmean(end[g] - start[g]) for g in groups])
    most = int(np.argmax(mean_fraction))
    others = [i for i in range(len(present)) if i != most]
    least = others[int(np.argmin(mean_fraction[others]))]
    comparison = kernels.compare_groups(end[groups[most]], end[groups[least]], n_permutations=n_permutations,
                                        n_resamples=n_resamples, seed=seed)
    # the interval over a few runs a level: Welch's t (a bootstrap over 3-5 runs is too narrow)
    difference, ci_low, ci_high = kernels.welch_interval(end[groups[most]], end[groups[least]])

    result = xr.Dataset(coords={"level": np.array(present, dtype=str)})
    result["mean_fraction"] = ("level", mean_fraction)
    result["mean_fraction_initial"] = ("level", mean_initial)
    result["mean_change"] = ("level", mean_change)
    result["n_runs"] = ("level", np.array([int(g.sum()) for g in groups], dtype=np.int64))
    result["most_saturated"] = ((), np.array(present[most], dtype=str))
    result["least_saturated"] = ((), np.array(present[least], dtype=str))
    result["difference"] = ((), difference)
    result["ci_low"] = ((), ci_low)
    result["ci_high"] = ((), ci_high)
    result["pvalue"] = ((), float(comparison.pvalue))
    where = "the top hidden layer (layer == depth)" if layer == "top" else "the mean over the run's hidden layers"
    _describe(result, {
        "mean_fraction": f"mean over runs of the saturated fraction on {split} probes at the run's last complete "
                         f"record, {where}",
        "mean_fraction_initial": "the same at epoch 0 (NaN: no epoch 0)",
        "mean_change": "mean over runs of (last complete record - epoch 0)",
        "n_runs": "runs of the level used",
        "most_saturated": "the level with the largest mean_fraction",
        "least_saturated": "the level with the smallest mean_fraction (another level)",
        "difference": "mean_fraction of most_saturated - mean_fraction of least_saturated",
        "ci_low": "lower end of the 95% Welch t interval of difference (kernels.welch_interval over the two levels' runs)",
        "ci_high": "upper end of the 95% Welch t interval of difference (kernels.welch_interval over the two levels' runs)",
        "pvalue": "permutation p-value of difference (runs of the two levels permuted)",
    })
    result.attrs = {
        "query": "factor_effects",
        "factor": factor,
        "eps": eps,
        "split": split,
        "layer": layer,
        "independent_unit": "run",
        "interval": (f"95% percentile bootstrap over runs within the two levels ({n_resamples} resamples), "
                     f"permutation p-value ({n_permutations} permutations), seed {seed}; the two levels are "
                     f"picked from the data"),
        "runs_used": ",".join(str(r) for r in run_labels[used]),
        "runs_excluded": ",".join(str(r) for r in run_labels[~used]),
    }
    return result
