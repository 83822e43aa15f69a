"""``unit_learning``: do saturated units learn less? Saturated against other units of the same layer.

Within one (run, layer), at the run's last complete record, each existing unit has a
*saturated share* (the share of probes on which it is within ``eps`` of a bound, as
:func:`~actstats.unit_states` counts it) and a *relative weight change* since
initialisation, ‖W_T[u, :] − W_0[u, :]‖ / ‖W_0[u, :]‖ over its incoming weights. If
saturation stops learning (f′ ≈ 0 on the probes), the units that are saturated on almost
every probe change less than the others. Comparing units of the same layer and epoch
holds fixed everything that differs between layers (the error arriving from above, the
fan-in, the learning rate seen) which a correlation over (epoch, layer) points mixes in.
"""

from __future__ import annotations

import operator

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.activations import describe_saturation
from actstats.errors import ActstatsError, ActstatsValueError
from actstats.queries._engine import _FIELD, _compute, _layout, _map_chunks
from actstats.queries._results import _bh, _describe, _divide, _family_description, _take, _warn_nonfinite
from actstats.queries.normality import DISTANCE, _broadcast_epoch
from actstats.queries.saturation import COUNTS
from actstats.queries.training import last_complete
from actstats.queries.unit_states import _SLACK, _validate_split, _validate_stuck_share
from actstats.validate import require_variables, validate_eps

_BATCH = 1000


def _validate_count(name: str, value, minimum: int) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        count = None
    if isinstance(value, bool) or count is None or count < minimum:
        problem = f"must be an integer of at least {minimum}"
        raise ActstatsValueError(f"{name} {problem}, got {value!r}", argument=name, problem=problem)
    return int(count)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (``scipy.stats.rankdata(method="average")``)."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    new = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], x.size)
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman_permutation(x, y, n_permutations: int, seed: int) -> tuple[float, float]:
    """Spearman's ρ of ``x`` and ``y`` and its two-sided permutation p-value.

    ρ is the Pearson correlation of the average ranks. The null permutes ``y`` among the
    positions (``n_permutations`` random permutations, ``numpy.random.default_rng(seed)``):
    ``(1 + #{|ρ*| ≥ |ρ|}) / (1 + P)``, with |ρ*| equal to |ρ| up to a relative 1e-12 counted
    as reaching it (ties of ranks give exactly equal correlations up to round-off). NaN (ρ
    and p-value) with fewer than 3 pairs or where either variable is constant.

    Examples
    --------
    >>> rho, p = spearman_permutation(np.arange(10.0), np.arange(10.0) ** 3, 999, 0)
    >>> float(rho), float(p)
    (1.0, 0.001)
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3:
        return np.nan, np.nan
    a, b = _average_ranks(x), _average_ranks(y)
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt((a @ a) * (b @ b))
    if not scale > 0:
        return np.nan, np.nan
    rho = float(a @ b / scale)
    threshold = abs(rho) * (1 - 1e-12)
    rng = np.random.default_rng(seed)
    exceed, done = 0, 0
    while done < n_permutations:
        batch = min(_BATCH, n_permutations - done)
        permuted = rng.permuted(np.tile(b, (batch, 1)), axis=1)
        exceed += int((np.abs(permuted @ a) / scale >= threshold).sum())
        done += batch
    return rho, (1 + exceed) / (1 + n_permutations)


def unit_learning(
    ds: xr.Dataset,
    eps: float | None = None,
    *,
    split: str | None = "train",
    stuck_share: float = 0.95,
    n_permutations: int = kernels.DEFAULT_PERMUTATIONS,
    seed: int = kernels.DEFAULT_SEED,
) -> xr.Dataset:
    """Do saturated units learn less? Their weights' change since initialisation against the other units'.

    Per (run, layer), at the run's last complete record (:func:`actstats.queries.training.last_complete`)
    and against epoch 0: each existing unit's *saturated share* (share of the probes on
    which it is within ``eps`` of either bound, as :func:`~actstats.unit_states` counts)
    and the *relative change* of its incoming weights ‖W_T[u, :] − W_0[u, :]‖ / ‖W_0[u, :]‖
    (over the fan-in columns that exist). A unit is *saturated* when its saturated share is
    at least ``stuck_share``; the others are the rest of the layer's units.

    Parameters
    ----------
    ds : xarray.Dataset
        A store with ``activation`` and ``weight`` and an epoch 0 (the initialisation).
    eps : float, optional
        Width of each saturated band as a fraction of the range; default
        ``OPTIONS["eps"]`` (0.05).
    split : str or None, default "train"
        The probes: ``"train"``, ``"test"``, or ``None``/``"all"``.
    stuck_share : float, default 0.95
        The saturated share in (0.5, 1] that makes a unit saturated (a share equal to it
        reaches it, as in :func:`~actstats.unit_states`).
    n_permutations : int, default 9999
        Permutations of each test (seeded; p-values are multiples of 1/(P + 1)).
    seed : int, default 0

    Returns
    -------
    xarray.Dataset
        Per (run, layer), with the run's coordinates:

        * ``n_saturated_units``, ``n_other_units``: units with a saturated share ≥
          ``stuck_share``, and below it (units with both a saturated share and a relative
          change; 0 for runs of an activation without two bounds, e.g. relu);
        * ``change_saturated``, ``change_other``: mean relative weight change of each
          class (NaN for an empty class);
        * ``difference``: ``change_saturated − change_other``;
        * ``pvalue``: two-sided permutation test of that difference, the units' labels
          permuted within the (run, layer) (:func:`actstats.kernels.compare_groups`);
        * ``pvalue_adjusted``: Benjamini–Hochberg of ``pvalue`` across all (run, layer)
          groups of the result;
        * ``spearman_rho``: Spearman's ρ between the units' saturated share and relative
          change over all the layer's units;
        * ``spearman_pvalue``: two-sided permutation p-value of ρ, the relative changes
          permuted among the layer's units: ``(1 + #{|ρ*| ≥ |ρ|}) / (1 + P)``;
        * ``epoch_last``: the epoch compared with epoch 0;
        * ``n_nonfinite``: activations and weights at that record that were not finite
          (excluded).

        ``difference``, ``pvalue``, ``pvalue_adjusted``, ``spearman_rho`` and
        ``spearman_pvalue`` are NaN where either class has fewer than 2 units; ρ and its
        p-value also where the shares or the changes are all equal. Everything but the
        counts is NaN for a run whose last complete record is epoch 0, has none, or whose
        epoch 0 is not complete. ``attrs["rule"]`` says the rule in words.

    Notes
    -----
    A unit whose incoming weights are all 0 at initialisation has no relative change and
    is left out. The two tests are conditional on the layer: they ask whether, among this
    layer's units, the saturated ones changed less (or more) than could arise by
    assigning the changes to the units at random; the units of a layer are not
    independent samples of anything, so a p-value speaks about this network, not about
    networks in general (an effect across runs is a question for intervals over runs).

    Verification: against a loop over (run, layer) with numpy and scipy
    (``scipy.stats.spearmanr`` for ρ) on synthetic stores with planted stuck and graded
    units and planted weight changes; the permutation p-value's rejection rate on null
    layers within a binomial bound (``tests/test_queries_unit_learning.py``); numpy- and
    dask-backed equal.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> result = actstats.unit_learning(synthetic_store(weight_scale=8.0), n_permutations=99)
    >>> result.difference.dims
    ('run', 'layer')
    """
    eps = validate_eps(eps)
    stuck_share = _validate_stuck_share(stuck_share)
    n_permutations = _validate_count("n_permutations", n_permutations, 1)
    seed = _validate_count("seed", seed, 0)
    require_variables(ds, ["activation", "weight"], "unit_learning")
    refuse_conv_layers(ds, "unit_learning pairs each unit with its weight row")
    split, index = _validate_split(ds, split)
    epochs = np.asarray(ds["epoch"].values, dtype=np.float64).reshape(-1)
    if not np.any(epochs == 0):
        listed = ", ".join(f"{e:g}" for e in epochs)
        raise ActstatsValueError(
            f"unit_learning compares each unit's weights with their initialisation and needs epoch 0, "
            f"which this store does not have (epochs: {listed})",
            argument="ds", problem="has no epoch 0 (the initialisation)",
        )
    initial = int(np.flatnonzero(epochs == 0)[0])
    complete = np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool)
    last = last_complete(ds)
    usable = (last >= 0) & (last != initial) & complete[:, initial]
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)

    # only the epochs compared are read: each run's last record, and epoch 0 for the weights
    wanted = sorted({int(e) for e in last[usable]} | {initial})
    part = ds.isel(epoch=wanted)
    at = np.array([wanted.index(int(e)) if ok else 0 for e, ok in zip(last, usable)], dtype=np.int64)
    part_layout = _layout(part)
    keep = ["run", "epoch", "layer", "unit"]
    start = wanted.index(initial)
    counts, distance = _compute(
        _map_chunks(_take(part["activation"], index), COUNTS, keep, ["sample"], part_layout, eps=eps),
        _map_chunks(part["weight"], DISTANCE, keep, ["fan_in"], part_layout,
                    others=[_broadcast_epoch(part["weight"], start)], initial_epoch=start),
    )
    counts = COUNTS.merge(counts).transpose(*keep, _FIELD).values
    distance = DISTANCE.merge(distance).transpose(*keep, _FIELD).values
    runs = np.arange(ds.sizes["run"])
    counts, distance = counts[runs, at], distance[runs, at]  # (run, layer, unit, field)

    bounded = np.array([kind == "bounds" for kind in part_layout.saturation], dtype=bool)[:, None, None]
    saturated_count = COUNTS.get(counts, "low") + COUNTS.get(counts, "high")
    share = np.where(bounded, _divide(saturated_count, COUNTS.get(counts, "total")), np.nan)
    squared_initial = DISTANCE.get(distance, "sum_squared_initial")
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.where((DISTANCE.get(distance, "count") > 0) & (squared_initial > 0),
                          np.sqrt(DISTANCE.get(distance, "sum_squared_change") / squared_initial), np.nan)
    units = np.isfinite(share) & np.isfinite(change) & usable[:, None, None]
    with np.errstate(invalid="ignore"):
        saturated = units & (share >= stuck_share - _SLACK)
    other = units & ~saturated
    n_saturated, n_other = saturated.sum(axis=-1), other.sum(axis=-1)

    comparison = kernels.compare_groups(np.where(saturated, change, np.nan), np.where(other, change, np.nan),
                                        axis=-1, n_permutations=n_permutations, seed=seed)
    enough = (n_saturated >= 2) & (n_other >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_saturated = np.where(n_saturated > 0, comparison.mean_first, np.nan)
        mean_other = np.where(n_other > 0, comparison.mean_second, np.nan)
    difference = np.where(enough, mean_saturated - mean_other, np.nan)
    pvalue = np.where(enough, comparison.pvalue, np.nan)
    rho = np.full(n_saturated.shape, np.nan)
    rho_pvalue = np.full(n_saturated.shape, np.nan)
    for r, j in zip(*np.nonzero(enough)):
        rho[r, j], rho_pvalue[r, j] = spearman_permutation(share[r, j][units[r, j]], change[r, j][units[r, j]],
                                                           n_permutations, seed)
    n_nonfinite = (COUNTS.get(counts, "n_nonfinite") + DISTANCE.get(distance, "n_nonfinite")).sum(axis=-1)

    coords = {name: c.variable for name, c in ds.coords.items() if c.dims and set(c.dims) <= {"run", "layer"}}
    result = xr.Dataset(coords=coords)
    dims = ("run", "layer")
    result["n_saturated_units"] = (dims, n_saturated.astype(np.int64))
    result["n_other_units"] = (dims, n_other.astype(np.int64))
    result["change_saturated"] = (dims, mean_saturated)
    result["change_other"] = (dims, mean_other)
    result["difference"] = (dims, difference)
    result["pvalue"] = (dims, pvalue)
    adjusted = _bh(pvalue)
    result["pvalue_adjusted"] = (dims, adjusted)
    result["spearman_rho"] = (dims, rho)
    result["spearman_pvalue"] = (dims, rho_pvalue)
    epoch_last = np.where(usable, epochs[np.maximum(last, 0)], np.nan)
    result["epoch_last"] = (dims, np.broadcast_to(epoch_last[:, None], n_saturated.shape).copy())
    result["n_nonfinite"] = (dims, np.asarray(n_nonfinite, dtype=np.int64))
    _warn_nonfinite(result["n_nonfinite"], "'activation' and 'weight'", "unit_learning")

    cut = f"{stuck_share:g}"
    probes = split if split is not None else "all"
    family = _family_description(dims, int(np.isfinite(adjusted).sum()), "pvalue")
    _describe(result, {
        "n_saturated_units": f"units within eps of a bound on >= {cut} of the {probes} probes at the last record",
        "n_other_units": f"the layer's other units (saturated share < {cut})",
        "change_saturated": "mean over the saturated units of ||W_T[u,:] - W_0[u,:]|| / ||W_0[u,:]||",
        "change_other": "mean over the other units of ||W_T[u,:] - W_0[u,:]|| / ||W_0[u,:]||",
        "difference": "change_saturated - change_other (NaN: fewer than 2 units in a class)",
        "pvalue": f"two-sided permutation test of the difference ({n_permutations} permutations of the units' "
                  f"labels within the layer, kernels.compare_groups)",
        "pvalue_adjusted": family,
        "spearman_rho": "Spearman correlation of the units' saturated share and relative weight change",
        "spearman_pvalue": f"two-sided permutation p-value of spearman_rho ({n_permutations} permutations of the "
                           f"weight changes among the layer's units): (1 + #{{|rho*| >= |rho|}}) / (1 + P)",
        "epoch_last": "epoch of the run's last complete record, compared with epoch 0 (NaN: no such record)",
        "n_nonfinite": "activations and weights at the last record that were not finite (excluded)",
    })
    result.attrs = {
        "query": "unit_learning",
        "by": ",".join(dims),
        "pooled_dims": "unit",
        "excluded_values": (
            "NaN padding (units beyond width, fan-in columns beyond the width of the layer below, incomplete "
            "records) never enters; non-finite values are excluded and counted in n_nonfinite"
        ),
        "method": (
            "per unit, counts of probes within eps*(upper-lower) of each bound (kernels.saturation_counts) at the "
            "run's last complete record, and sums of squares of W_T - W_0 and W_0 over its fan-in; per (run, "
            "layer), kernels.compare_groups on the two classes' relative changes and a permutation test of "
            "Spearman's rho"
        ),
        "eps": eps,
        "split": probes,
        "stuck_share": stuck_share,
        "n_permutations": n_permutations,
        "seed": seed,
        "rule": (
            f"per (run, layer), at the run's last complete record against epoch 0: a unit is saturated when it is "
            f"within eps={eps:g} of a bound on >= {cut} of the {probes} probes; each unit's relative change is "
            f"||W_T[u,:] - W_0[u,:]|| / ||W_0[u,:]|| over its incoming weights; difference = mean change of the "
            f"saturated units - that of the others, two-sided permutation p-value permuting the units' labels "
            f"within the layer, BH-adjusted across the groups; spearman_rho between the saturated share and the "
            f"relative change over the layer's units, permutation p-value permuting the changes; NaN where "
            f"either class has fewer than 2 units, and for activations without two bounds (relu)"
        ),
        "pvalue_adjustment": family,
        "bounds": describe_saturation(),
    }
    return result


def refuse_conv_layers(ds, why: str) -> None:
    """Refuse layers whose units are not one a weight row (conv layers: units are channel ×
    position outputs, weight rows are channels; ``layer_weight_rows``)."""
    if "layer_weight_rows" not in ds.variables:
        return
    rows = np.asarray(ds["layer_weight_rows"].transpose("run", "layer").values)
    width = np.asarray(ds["width"].transpose("run", "layer").values)
    conv = (rows != width) & (width > 0)
    if conv.any():
        r, l = (int(i) for i in np.argwhere(conv)[0])
        layer = int(np.atleast_1d(ds["layer"].values)[l])
        raise ActstatsError(f"{why}, but layer {layer} of run {r} is a conv layer (its {int(width[r, l])} units are "
                            f"channel × position outputs of {int(rows[r, l])} weight rows): select the other layers, "
                            "e.g. ds.sel(layer=[...])")
