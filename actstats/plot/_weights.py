"""Figures of the weights and their gradients: QQ plots against the fitted normal, excess
kurtosis over training, gradient flow per layer."""

from __future__ import annotations

import numpy as np

from actstats.plot._common import (
    bad,
    epoch_axis,
    layer_index,
    narrow,
    panel_title,
    panels,
    positive_int,
    quiet,
    recorded,
    require,
    returned,
    run_label,
    run_layers,
    suptitle,
    text,
)

__all__ = ["gradient_flow", "weight_kurtosis", "weight_qq"]


def _record(ds, run: int, epoch) -> int:
    """The position on ``epoch`` of the record drawn: ``epoch``, or the run's last complete one."""
    complete = np.flatnonzero(recorded(ds, run))
    label = ds["run"].values[run].item()
    if epoch is None:
        if not complete.size:
            bad("weight_qq", "runs", f"run {label} has no complete record")
        return int(complete[-1])
    there = np.asarray(ds["epoch"].values, dtype=float)
    try:
        position = np.flatnonzero(there == float(epoch))
    except (TypeError, ValueError):
        position = np.array([], dtype=int)
    if not position.size:
        bad("weight_qq", "epoch", f"no epoch {epoch!r} in the store (epochs: {', '.join(f'{e:g}' for e in there)})")
    if position[0] not in complete:
        bad("weight_qq", "epoch", f"run {label} has no complete record at epoch {float(epoch):g}")
    return int(position[0])


def weight_qq(ds, *, runs=None, layers=None, epoch=None, max_points: int = 4000, ax=None):
    """QQ plots of each layer's weights against the normal fitted to them (their mean and
    standard deviation): standardised weights against standard normal quantiles.

    Parameters
    ----------
    ds : xarray.Dataset
        A store, possibly narrowed.
    runs, layers : run labels and layer labels, optional
        One row per run, one panel per layer; default all.
    epoch : float, optional
        The record drawn; default each run's last complete one.
    max_points : int, default 4000
        At most this many points per panel: evenly spaced order statistics (at their own
        plotting positions, so the curve is the full sample's).
    ax : matplotlib Axes or array of Axes, optional
        Runs × (the most layers of a run).

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        Runs × layers; or ``ax`` when given. Each panel's first line holds the points: x the
        normal quantiles at plotting positions (i − 0.5)/n, y the sorted standardised finite
        weights (both increasing); the second is the diagonal y = x.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = weight_qq(synthetic_store(runs=1, depth=2))
    >>> axes.shape, bool((np.diff(axes[0, 0].get_lines()[0].get_ydata()) >= 0).all())
    ((1, 2), True)
    """
    from scipy.special import ndtri

    ds = narrow(ds, "weight_qq", runs=runs, layers=layers)
    max_points = positive_int("weight_qq", "max_points", max_points)
    require(ds, ("weight",), "weight_qq", "a store with weights")
    n = ds.sizes["run"]
    layers_of = [run_layers(ds, run) for run in range(n)]
    records = [_record(ds, run, epoch) for run in range(n)]
    columns = max(1, max(len(shown) for shown in layers_of))
    figure, axes, created = panels(ax, n, columns, "weight_qq", size=(3.0, 3.0), what="runs × layers")
    epoch_values = np.asarray(ds["epoch"].values, dtype=float)
    for run in range(n):
        weights = ds["weight"].isel(run=run, epoch=records[run]).transpose("layer", ...).values
        for column, panel in enumerate(axes[run]):
            if column >= len(layers_of[run]):
                panel.set_axis_off()
                continue
            layer = layers_of[run][column]
            w = weights[layer_index(ds, layer)].ravel()
            w = np.sort(w[np.isfinite(w)].astype(np.float64))
            positions = np.unique(np.linspace(0, len(w) - 1, min(len(w), max_points)).round().astype(int))
            with quiet():
                z = (w[positions] - w.mean()) / w.std()
            panel.plot(ndtri((positions + 0.5) / len(w)), z, ".", ms=2)
            panel.plot([-4, 4], [-4, 4], "k--", lw=0.8)
            panel.set_title(panel_title(ds, run, n > 1, f"layer {layer}"))
            panel.set_xlabel("normal quantile")
        axes[run][0].set_ylabel("standardised weight")
    if created:
        shown = {float(epoch_values[r]) for r in records}
        at = f"at epoch {shown.pop():g}" if len(shown) == 1 else "at each run's last complete record"
        suptitle(figure, ds, f"weights {at} against the fitted normal — ")
    return returned(ax, axes)


def _result(data, variable: str, function: str, query: str, needs: str):
    """``data`` if it holds ``variable`` (a query result), else the query on the store ``data``."""
    if variable in data.data_vars:
        return data
    import actstats

    require(data, (needs,), function, f"a store with {needs!r} or a result of actstats.{query}")
    if query == "weight_normality":
        return actstats.weight_normality(data, by=("run", "epoch", "layer")).compute()
    return actstats.gradient_flow(data).compute()


def weight_kurtosis(data, *, runs=None, layers=None, epochs=None, ax=None):
    """Excess kurtosis of each layer's weights over training (0: normal, −1.2: uniform, the
    default initialisation), one panel per run.

    Parameters
    ----------
    data : xarray.Dataset
        A store (:func:`actstats.weight_normality` is computed by run, epoch and layer), or
        such a result.
    runs, layers, epochs : run labels, layer labels, epoch values, optional
        What is drawn; default everything (each run's complete records).
    ax : matplotlib Axes or array of Axes, optional
        One per run.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        One row, one panel per run; or ``ax`` when given: one line per layer, then the
        reference lines at 0 and −1.2.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = weight_kurtosis(synthetic_store(runs=1, depth=2))
    >>> [line.get_label() for line in axes[0, 0].get_lines()][:2]
    ['layer 1', 'layer 2']
    """
    data = narrow(data, "weight_kurtosis", runs=runs, epochs=epochs, layers=layers)
    result = _result(data, "excess_kurtosis", "weight_kurtosis", "weight_normality", "weight")
    kurtosis = result["excess_kurtosis"].transpose("run", "epoch", "layer").values
    n = data.sizes["run"]
    figure, axes, created = panels(ax, 1, n, "weight_kurtosis", size=(4.2, 3.0), what="one per run")
    epoch_values = np.asarray(result["epoch"].values, dtype=float)
    for run, panel in enumerate(axes[0]):
        ok = recorded(data, run, kurtosis[run])
        for layer in run_layers(result, run):
            panel.plot(epoch_values[ok], kurtosis[run][ok, layer_index(result, layer)], marker="o", ms=3,
                       label=f"layer {layer}")
        panel.axhline(0, color="k", lw=0.8, ls="--")
        panel.axhline(-1.2, color="grey", lw=0.8, ls=":")
        epoch_axis(panel, epoch_values[ok])
        panel.set_ylabel("excess kurtosis (0 = normal, −1.2 = uniform)")
        panel.set_title(text(run_label(result, run)), fontsize=8)
        panel.legend()
    return returned(ax, axes)


def gradient_flow(data, *, runs=None, layers=None, epochs=None, ax=None):
    """The gradient signal per layer over training: the norm of ∂L/∂W (log scale) above, the
    mean derivative f′(z) below (with σ′'s maximum 1/4 for sigmoid runs), one column per run.

    Parameters
    ----------
    data : xarray.Dataset
        A store with ``weight_grad`` (:func:`actstats.gradient_flow` is computed), or a
        gradient_flow result.
    runs, layers, epochs : run labels, layer labels, epoch values, optional
        What is drawn; default everything (each run's complete records).
    ax : array of matplotlib Axes, optional
        2 × runs.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        2 × runs (``weight_grad_norm``, ``mean_derivative``); or ``ax`` when given. One line
        per layer in each panel.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = gradient_flow(synthetic_store(runs=2, depth=2))
    >>> axes.shape, axes[0, 0].get_yscale()
    ((2, 2), 'log')
    """
    data = narrow(data, "gradient_flow", runs=runs, epochs=epochs, layers=layers)
    result = _result(data, "weight_grad_norm", "gradient_flow", "gradient_flow", "weight_grad")
    norm = result["weight_grad_norm"].transpose("run", "epoch", "layer").values
    derivative = result["mean_derivative"].transpose("run", "epoch", "layer").values
    n = data.sizes["run"]
    figure, axes, created = panels(ax, 2, n, "gradient_flow", size=(4.2, 2.8), what="two per run")
    epoch_values = np.asarray(result["epoch"].values, dtype=float)
    for run in range(n):
        ok = recorded(data, run, norm[run])
        top, bottom = axes[0][run], axes[1][run]
        for layer in run_layers(result, run):
            i = layer_index(result, layer)
            top.plot(epoch_values[ok], norm[run][ok, i], marker="o", ms=3, label=f"layer {layer}")
            bottom.plot(epoch_values[ok], derivative[run][ok, i], marker="o", ms=3)
        top.set_yscale("log")
        top.set_ylabel("‖∂L/∂W‖")
        bottom.set_ylabel("mean f′(z)")
        if str(result["activation_fn"].values[run]) == "sigmoid":
            bottom.axhline(0.25, color="grey", lw=0.8, ls=":")
        top.set_title(text(run_label(result, run)), fontsize=8)
        top.legend()
        for panel in (top, bottom):
            epoch_axis(panel, epoch_values[ok])
    if created:
        figure.tight_layout()
    return returned(ax, axes)
