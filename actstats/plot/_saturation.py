"""Figures of the saturated fraction: layer × epoch heatmaps, and runs compared by their factors."""

from __future__ import annotations

import numpy as np

from actstats.errors import shorten
from actstats.plot._common import (
    SPLIT_WORDS,
    bad,
    choice,
    eps_value,
    layer_index,
    narrow,
    panels,
    quiet,
    require,
    returned,
    run_label,
    run_layers,
    text,
)

__all__ = ["saturation_heatmap", "sweep_comparison"]

#: The run coordinates :func:`sweep_comparison` compares by default.
SWEEP_FACTORS = ("init", "depth", "optimizer", "lr", "batch_size")


def _saturation(data, eps, function: str):
    """``data`` if it is a saturation result (its ``eps`` checked against ``eps``), else
    :func:`actstats.saturation` of the store ``data`` by run, epoch, layer and split."""
    if "fraction" in data.data_vars:
        computed = data.attrs.get("eps")
        if eps is not None and computed is not None and not np.isclose(eps_value(function, eps), float(computed)):
            bad(function, "eps", f"the saturation result given was computed at eps {float(computed):g}; "
                                 f"leave eps out or compute it again with actstats.saturation(ds, eps={eps:g})")
        missing = [dim for dim in ("run", "epoch", "layer") if dim not in data["fraction"].dims]
        if missing:
            bad(function, "data", f"the saturation result has no {', '.join(map(repr, missing))} dimension; "
                                  "compute it with by=('run', 'epoch', 'layer', 'split')")
        return data
    import actstats

    require(data, ("activation",), function, "a store or a saturation result (actstats.saturation)")
    return actstats.saturation(data, eps=eps_value(function, eps), by=("run", "epoch", "layer", "split")).compute()


def _at_split(result, split: str, function: str):
    fraction = result["fraction"]
    if "split" not in fraction.dims:
        return fraction
    there = np.asarray(fraction["split"].values).astype(str).tolist()
    if split not in there:
        bad(function, "split", f"{split!r} is not in the saturation result (splits: {', '.join(there)})")
    return fraction.sel(split=split)


def saturation_heatmap(data, *, runs=None, layers=None, epochs=None, split: str = "train", eps=None, ax=None):
    """The saturated fraction (activations within ``eps`` of a bound), layer × epoch, one
    heatmap per run, each cell annotated with its value.

    Parameters
    ----------
    data : xarray.Dataset
        A store (the fraction is computed with :func:`actstats.saturation` by run, epoch,
        layer and split), or such a saturation result (it is drawn as it is).
    runs, layers, epochs : run labels, layer labels, epoch values, optional
        What is drawn; default everything in ``data``.
    split : {"train", "test"}, default "train"
    eps : float, optional
        The band (default: the option ``eps``, 0.05); with a saturation result, only checked
        against the ``eps`` it was computed at.
    ax : matplotlib Axes or array of Axes, optional
        One per run; by default a new figure (one row per run).

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        Runs × 1; or ``ax`` when given. Each holds one image (rows: the run's layers, lowest
        first; columns: the epochs; values in [0, 1]; NaN where the record is incomplete) with
        a colour bar beside it.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = saturation_heatmap(synthetic_store(runs=2, depth=3, epochs=(0, 0.5, 1, 2)))
    >>> axes.shape, axes[0, 0].get_images()[0].get_array().shape
    ((2, 1), (3, 4))
    """
    data = narrow(data, "saturation_heatmap", runs=runs, epochs=epochs, layers=layers)
    split = choice("saturation_heatmap", "split", split, ("train", "test"))
    result = _saturation(data, eps, "saturation_heatmap")
    fraction = _at_split(result, split, "saturation_heatmap").transpose("run", "layer", "epoch").values
    n, n_layers, n_epochs = fraction.shape
    rows_of = [run_layers(result, run) for run in range(n)]
    most = max(1, max(len(rows) for rows in rows_of))
    figure, axes, created = panels(ax, n, 1, "saturation_heatmap", what="one per run",
                                   size=(min(1.5 + 0.55 * n_epochs, 11), 0.5 * most + 1.1))
    for run, panel in enumerate(axes[:, 0]):
        rows = rows_of[run]
        values = fraction[run][[layer_index(result, layer) for layer in rows]]
        image = panel.imshow(values, aspect="auto", vmin=0, vmax=1, cmap="magma", origin="lower")
        panel.set_yticks(range(len(rows)))
        panel.set_yticklabels([f"layer {layer}" for layer in rows])
        panel.set_xticks(range(n_epochs))
        panel.set_xticklabels([f"{e:.3g}" for e in result["epoch"].values], rotation=60)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                panel.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
        band = f", eps {float(result.attrs['eps']):g}" if "eps" in result.attrs else ""
        figure.colorbar(image, ax=panel, label=f"saturated fraction{band}\n({SPLIT_WORDS[split]})")
        panel.set_title(text(run_label(result, run)), fontsize=8)
    axes[-1, 0].set_xlabel("epoch")
    if created:
        figure.tight_layout()
    return returned(ax, axes)


def _varying_factors(data, factors) -> list[str]:
    """The ``factors`` (run coordinates) that take more than one value among ``data``'s runs."""
    from actstats.selection import run_coordinates

    if isinstance(factors, str):
        factors = [factors]
    known = run_coordinates(data)
    for name in factors:
        if name not in known:
            bad("sweep_comparison", "factors", f"unknown run coordinate {shorten(name)} (known: {', '.join(known)})")
    return [name for name in factors if len(np.unique(np.asarray(data[name].values).astype(str))) > 1]


def _last_fraction(data, split: str, eps) -> np.ndarray:
    """Each run's saturated fraction on ``split`` at its last record, the mean over its layers."""
    if "fraction" not in data.data_vars:
        require(data, ("activation", "complete"), "sweep_comparison", "a store or a saturation result")
        data = narrow(data, "sweep_comparison", epochs="last")  # each run's last complete record only
    fraction = _at_split(_saturation(data, eps, "sweep_comparison"), split, "sweep_comparison")
    fraction = fraction.transpose("run", "epoch", "layer").values
    values = np.full(fraction.shape[0], np.nan)
    with quiet():
        for run, per_run in enumerate(fraction):
            finite = np.flatnonzero(np.isfinite(per_run).any(axis=1))  # the records the result has
            if finite.size:
                values[run] = np.nanmean(per_run[finite[-1]])
    return values


def sweep_comparison(data, *, factors=SWEEP_FACTORS, runs=None, split: str = "train", eps=None, values=None,
                     label: str | None = None, ax=None):
    """One number per run against each swept factor: by default each run's saturated fraction at
    its last complete record (the mean over its layers), one panel per factor that varies.

    Parameters
    ----------
    data : xarray.Dataset
        A store, or a saturation result by run, epoch, layer (and split).
    factors : sequence of str, default ("init", "depth", "optimizer", "lr", "batch_size")
        Run coordinates (``activation_fn``, ``seed``, …); those with one value among the runs
        are left out.
    runs : run labels, optional
        Default every run of ``data``.
    split : {"train", "test"}, default "train"
    eps : float, optional
        The band (default: the option ``eps``).
    values : array-like or xarray.DataArray, optional
        The number drawn per run instead: one per run of ``data`` in its order (a DataArray
        on ``run`` is matched by run label); NaN is not drawn.
    label : str, optional
        The y axis's label; default the saturated fraction's.
    ax : matplotlib Axes or array of Axes, optional
        One per varying factor.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        One row, one panel per varying factor; or ``ax`` when given. In each, the runs as
        jittered points (one ``Line2D`` per level) and the level's mean as a short black bar
        (a second ``Line2D``), levels ordered by length then text.

    Raises
    ------
    ActstatsValueError
        An unknown factor, or no factor with more than one value among the runs.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=4).assign_coords(init=("run", ["default", "default", "normal", "normal"]))
    >>> axes = sweep_comparison(ds, values=[0.1, 0.2, 0.5, 0.7])
    >>> [panel.get_title() for panel in axes[0]]
    ['init']
    """
    data = narrow(data, "sweep_comparison", runs=runs)
    split = choice("sweep_comparison", "split", split, ("train", "test"))
    names = _varying_factors(data, factors)
    if not names:
        listed = ", ".join([factors] if isinstance(factors, str) else factors)
        bad("sweep_comparison", "factors", f"none of {listed} takes more than one value among these runs")
    n = data.sizes["run"]
    if values is None:
        values = _last_fraction(data, split, eps)
    else:
        if hasattr(values, "dims") and "run" in values.dims:
            values = values.sel(run=data["run"].values)
        try:
            values = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            bad("sweep_comparison", "values", "must be numbers, one per run")
        if values.shape != (n,):
            bad("sweep_comparison", "values", f"one number per run ({n}) expected, got shape {values.shape}")
    figure, axes, created = panels(ax, 1, len(names), "sweep_comparison", size=(2.6 + 0.6 / len(names), 3.0),
                                   sharey=True, what="one per factor that varies")
    rng = np.random.default_rng(0)
    for panel, factor in zip(axes[0], names):
        levels = np.asarray(data[factor].values).astype(str)
        unique = sorted(np.unique(levels), key=lambda v: (len(v), v))
        for i, level in enumerate(unique):
            chosen = values[levels == level]
            panel.plot(i + rng.uniform(-0.12, 0.12, len(chosen)), chosen, "o", ms=4, alpha=0.7)
            with quiet():
                panel.plot([i - 0.25, i + 0.25], [np.nanmean(chosen)] * 2, "k-", lw=1.5)
        panel.set_xticks(range(len(unique)))
        panel.set_xticklabels([text(level) for level in unique], rotation=30)
        panel.set_title(text(factor))
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            panel.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel(label if label is not None else
                          f"saturated fraction, last epoch\n({SPLIT_WORDS[split]}, mean over layers)")
    return returned(ax, axes)

