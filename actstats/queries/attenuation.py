"""``attenuation``: how much the back-propagated error shrinks from one layer to the one below, and why.

Back-propagation through hidden layer l gives δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f′(z_l). So the
attenuation ‖δ_l‖ / ‖δ_{l+1}‖ is roughly a *derivative factor* — how far the mean f′(z_l)
lies below f′'s maximum (sigmoid 1/4, tanh 1) — times a *weight factor*: everything else
(the weights W_{l+1}, the alignment of δ_{l+1} with them, and f′'s maximum itself). Saturation
lowers the first; small weights, or sigmoid's f′max = 1/4, lower the second. Gradients can
therefore vanish without saturation (a derivative factor near 1 and a weight factor below 1).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from actstats.activations import ACTIVATIONS
from actstats.queries._engine import _FIELD, _compute, _layout, _map_chunks, _template
from actstats.queries._results import _attrs, _describe, _divide, _like, _warn_nonfinite
from actstats.queries.gradients import DERIVATIVE, SQUARES
from actstats.validate import require_variables


def attenuation(ds: xr.Dataset) -> xr.Dataset:
    """Attenuation of the back-propagated error per layer, split into a derivative and a weight factor.

    Parameters
    ----------
    ds : xarray.Dataset
        Needs ``delta`` (capture's ``[record] delta = true``) and ``preactivation``.

    Returns
    -------
    xarray.Dataset
        Per (run, epoch, layer), NaN where the layer above (layer + 1) does not exist:

        * ``delta_rms``: RMS of ``delta`` over probe samples and units (as
          :func:`~actstats.gradient_flow`);
        * ``mean_derivative``: mean f'(z) over probe samples and units;
        * ``derivative_max``: the largest value of f' for the run's activation
          (:attr:`actstats.activations.Activation.derivative_max`: sigmoid 0.25, tanh,
          softsign and relu 1);
        * ``delta_attenuation``: ``delta_rms`` of this layer / that of the layer above;
        * ``derivative_factor``: ``mean_derivative / derivative_max`` (1: no unit's f' is
          below its maximum; saturation lowers it);
        * ``weight_factor``: ``delta_attenuation / derivative_factor`` (the rest: the
          weights of the layer above and f'max);
        * ``log_share_derivative``: ``log(derivative_factor) / log(delta_attenuation)``
          where ``delta_attenuation < 1`` (else NaN): the share of the log attenuation that
          the derivative falling below its maximum accounts for (the weight factor accounts
          for the rest; above 1 or below 0 when the weight factor amplifies);
        * ``vanishing``: ``delta_attenuation < 1`` (False where it is NaN);
        * ``n_nonfinite``.

    Notes
    -----
    The decomposition is descriptive, not exact: ‖(Wᵀδ) ⊙ f′‖ equals ‖Wᵀδ‖ times the mean
    f′ only when f′ is the same for every unit and probe, or uncorrelated with (Wᵀδ)²; the
    weight factor absorbs whatever that leaves, so it is "everything except the mean
    derivative's shortfall", not a property of the weights alone. RMS over probes and units
    stands for the norm (the layers' widths may differ: RMS compares them per unit).

    Verification: against ``numpy`` on each (run, epoch, layer) slab in a loop
    (``tests/test_queries_verdicts.py``), and on synthetic stores where the answer is
    planted: deltas shrinking 10x per layer with unsaturated pre-activations (vanishing,
    derivative factor near 1) and the same deltas with saturated pre-activations.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> result = actstats.attenuation(synthetic_store(depth=3))
    >>> bool(result.delta_attenuation.sel(layer=3).isnull().all())
    True
    >>> bool((result.derivative_factor <= 1).all())
    True
    """
    require_variables(ds, ["delta", "preactivation"], "attenuation")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    keep = ["run", "epoch", "layer"]
    lazy = (
        _map_chunks(ds["delta"], SQUARES, keep, ["sample", "unit"], layout),
        _map_chunks(ds["preactivation"], DERIVATIVE, keep, ["sample", "unit"], layout),
    )
    delta, derivative = (SQUARES.merge(c).transpose(*keep, _FIELD) for c in _compute(*lazy))
    template = _template(delta)
    result = xr.Dataset(coords=template.coords)
    rms = np.sqrt(_divide(SQUARES.get(delta, "sum"), SQUARES.get(delta, "count")))
    mean_derivative = _divide(DERIVATIVE.get(derivative, "sum"), DERIVATIVE.get(derivative, "count"))
    names = list(ACTIVATIONS)
    maximum = np.array([ACTIVATIONS[names[i]].derivative_max for i in layout.activation_index], dtype=np.float64)
    maximum = np.broadcast_to(maximum[:, None, None], rms.shape)

    layers = [int(v) for v in np.atleast_1d(ds["layer"].values)]
    above = np.full(rms.shape, np.nan)
    for j, layer in enumerate(layers):
        if layer + 1 in layers:
            above[:, :, j] = rms[:, :, layers.index(layer + 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(above > 0, rms / np.where(above > 0, above, 1.0), np.nan)
        factor = mean_derivative / maximum
        weight = np.where(factor > 0, ratio / np.where(factor > 0, factor, 1.0), np.nan)
        share = np.where((ratio < 1) & (ratio > 0) & (factor > 0), np.log(factor) / np.log(ratio), np.nan)
    result["delta_rms"] = _like(template, rms)
    result["mean_derivative"] = _like(template, mean_derivative)
    result["derivative_max"] = _like(template, np.array(maximum))
    result["delta_attenuation"] = _like(template, ratio)
    result["derivative_factor"] = _like(template, factor)
    result["weight_factor"] = _like(template, weight)
    result["log_share_derivative"] = _like(template, share)
    with np.errstate(invalid="ignore"):
        result["vanishing"] = _like(template, ratio < 1)
    n_nonfinite = SQUARES.get(delta, "n_nonfinite").values + DERIVATIVE.get(derivative, "n_nonfinite").values
    result["n_nonfinite"] = _like(template, n_nonfinite.astype(np.int64))
    _warn_nonfinite(result["n_nonfinite"], "delta and preactivation", "attenuation")
    _describe(result, {
        "delta_rms": "root mean square of delta over probe samples and units",
        "mean_derivative": "mean of f'(preactivation) over probe samples and units",
        "derivative_max": "largest value of f' for the run's activation function",
        "delta_attenuation": "delta_rms of this layer / delta_rms of the layer above (NaN at the top)",
        "derivative_factor": "mean_derivative / derivative_max",
        "weight_factor": "delta_attenuation / derivative_factor: the weights of the layer above, f'max and the rest",
        "log_share_derivative": "log(derivative_factor) / log(delta_attenuation), where delta_attenuation < 1",
        "vanishing": "delta_attenuation < 1 (False where it is NaN)",
        "n_nonfinite": "existing values of delta and preactivation that were not finite (excluded)",
    })
    result.attrs = _attrs(
        "attenuation", keep, ["sample", "unit"],
        method="per-chunk sums of delta² and f'(preactivation) (as gradient_flow); ratios between adjacent layers",
        decomposition=(
            "delta_l = (W_{l+1}^T delta_{l+1}) * f'(z_l), so |delta_l| / |delta_{l+1}| ~ (mean f'(z_l) / max f') x "
            "(the rest: W_{l+1}, f' max, and how f' and W^T delta co-vary); descriptive, not exact: the weight "
            "factor is whatever the derivative factor does not account for"
        ),
    )
    return result
