"""``gradient_flow``: gradient signal per (run, epoch, layer)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from actstats.activations import ACTIVATIONS
from actstats.queries._engine import (
    _FIELD, Fields, Reduction, _compute, _layout, _map_chunks, _reduce_axes, _template,
)
from actstats.queries._results import _attrs, _describe, _divide, _like, _warn_nonfinite
from actstats.validate import require_variables


def _squares_chunk(values, *, grid, n_reduce, layout):
    """Σ x² and the count over the reduced axes."""
    axis = _reduce_axes(values, n_reduce)
    present = ~np.isnan(values)
    return {"sum": np.where(present, values * values, 0.0).sum(axis=axis), "count": present.sum(axis=axis)}


#: Sums of squares (of weight_grad, of delta) and counts, summed over chunks.
SQUARES = Reduction("sum_of_squares", _squares_chunk, Fields("sum", "count"))


def _derivative_chunk(values, *, grid, n_reduce, layout):
    """Σ f'(z) and the count, with each run's activation function."""
    names = list(ACTIVATIONS)
    code = np.broadcast_to(layout.activation_index[grid["run"]], values.shape)
    present = ~np.isnan(values)
    derivative = np.zeros(values.shape)
    for c in np.unique(code[present]):
        where = present & (code == c)
        derivative[where] = ACTIVATIONS[names[int(c)]].derivative(values[where])
    axis = _reduce_axes(values, n_reduce)
    return {"sum": derivative.sum(axis=axis), "count": present.sum(axis=axis)}


#: Sums of f'(preactivation) and counts, summed over chunks.
DERIVATIVE = Reduction("sum_of_derivatives", _derivative_chunk, Fields("sum", "count"))


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
    require_variables(ds, ["weight_grad", "delta"], "gradient_flow")
    with_preactivation = "preactivation" in ds  # optional: mean_derivative is NaN without it
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    keep = ["run", "epoch", "layer"]
    lazy = [
        _map_chunks(ds["weight_grad"], SQUARES, keep, ["unit", "fan_in"], layout),
        _map_chunks(ds["delta"], SQUARES, keep, ["sample", "unit"], layout),
    ]
    if with_preactivation:
        lazy.append(_map_chunks(ds["preactivation"], DERIVATIVE, keep, ["sample", "unit"], layout))
    computed = [SQUARES.merge(c).transpose(*keep, _FIELD) for c in _compute(*lazy)]
    grad, delta = computed[:2]
    derivative = computed[2] if with_preactivation else None
    template = _template(grad)
    result = xr.Dataset(coords=template.coords)
    norm = np.where(SQUARES.get(grad, "count") > 0, np.sqrt(SQUARES.get(grad, "sum").values), np.nan)
    result["weight_grad_norm"] = _like(template, norm)
    result["delta_rms"] = _like(template, np.sqrt(_divide(SQUARES.get(delta, "sum"), SQUARES.get(delta, "count"))))
    result["mean_derivative"] = _like(
        template, _divide(DERIVATIVE.get(derivative, "sum"), DERIVATIVE.get(derivative, "count")) if with_preactivation
        else np.full(template.shape, np.nan))
    following = result["weight_grad_norm"].shift(layer=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result["ratio_to_next_layer"] = _like(template, result["weight_grad_norm"].values / following.values)
    n_nonfinite = sum(SQUARES.get(a, "n_nonfinite").values for a in computed)
    result["n_nonfinite"] = _like(template, n_nonfinite.astype(np.int64))
    _warn_nonfinite(result["n_nonfinite"], "weight_grad, delta and preactivation", "gradient_flow")
    _describe(result, {
        "weight_grad_norm": "Frobenius norm of weight_grad (unit x fan_in)",
        "delta_rms": "root mean square of delta over probe samples and units",
        "mean_derivative": "mean of f'(preactivation) over probe samples and units"
                           + ("" if with_preactivation else " (NaN: the store has no preactivation)"),
        "ratio_to_next_layer": "weight_grad_norm of this layer / that of the next layer up (NaN at the top)",
    })
    result.attrs = _attrs(
        "gradient_flow", keep, ["sample", "unit", "fan_in"],
        method="per-chunk sums of weight_grad², delta² and f'(preactivation) (actstats.activations derivatives)",
    )
    return result
