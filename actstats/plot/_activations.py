"""Figures of the hidden layers' activations: mean ± std over training, histograms that resolve
both bounds, tracked probes' trajectories."""

from __future__ import annotations

import numpy as np

from actstats.errors import shorten
from actstats.plot._common import (
    SPLIT_WORDS,
    activation_of,
    bad,
    choice,
    epoch_axis,
    eps_value,
    layer_index,
    narrow,
    panel_title,
    panels,
    positive_int,
    quiet,
    recorded,
    returned,
    run_label,
    run_layers,
    sample_positions,
    suptitle,
    text,
)

__all__ = ["histograms", "mean_std", "trajectories"]

#: Histogram bins of a bounded activation: even in logit space over ±LOGIT_LIMIT.
LOGIT_LIMIT = 12.0
LOGIT_BINS = 72


def mean_std(ds, *, runs=None, layers=None, epochs=None, split: str = "train", variable: str = "activation",
             ax=None):
    """Mean ± standard deviation of each layer's activations over training, one panel per run
    (Glorot & Bengio 2010, Fig. 2).

    Parameters
    ----------
    ds : xarray.Dataset
        A store (:func:`actstats.open_store`), possibly narrowed (:func:`actstats.select_runs`).
    runs : run labels, optional
        The runs drawn (labels of the ``run`` coordinate); default every run of ``ds``.
    layers, epochs : layer labels and epoch values, optional
        The layers and records drawn; default all (each run's own layers, its complete records).
    split : {"train", "test", "all"}, default "train"
        The probes the mean and std are taken over (with every unit of the layer).
    variable : {"activation", "preactivation"}, default "activation"
    ax : matplotlib Axes or array of Axes, optional
        One per run, drawn into; by default a new figure.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        One row, one panel per run; or ``ax`` when given. In each panel one line per layer
        (the mean at each complete record) and a band of ± one standard deviation
        (``ddof=0``, over the probes and units of the layer, NaN padding skipped).

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = mean_std(synthetic_store(runs=2, depth=2))
    >>> axes.shape, [line.get_label() for line in axes[0, 0].get_lines()]
    ((1, 2), ['layer 1', 'layer 2'])
    """
    ds = narrow(ds, "mean_std", runs=runs, epochs=epochs, layers=layers)
    split = choice("mean_std", "split", split, ("train", "test", "all"))
    variable = choice("mean_std", "variable", variable, ("activation", "preactivation"))
    if variable not in ds.data_vars:
        bad("mean_std", "variable", f"this store has no {variable!r}")
    import xarray as xr

    n = ds.sizes["run"]
    figure, axes, created = panels(ax, 1, n, "mean_std", size=(4.2, 3.2), what="one per run")
    samples = sample_positions(ds, split)
    epoch_values = np.asarray(ds["epoch"].values, dtype=float)
    for run, panel in enumerate(axes[0]):
        h = ds[variable].isel(run=run, sample=samples).astype("float64")
        with quiet():
            moments = xr.Dataset({"mean": h.mean(["sample", "unit"]), "std": h.std(["sample", "unit"])}).compute()
        mean = moments["mean"].transpose("epoch", "layer").values
        std = moments["std"].transpose("epoch", "layer").values
        ok = recorded(ds, run)
        for layer in run_layers(ds, run):
            i = layer_index(ds, layer)
            line, = panel.plot(epoch_values[ok], mean[ok, i], marker="o", ms=3, label=f"layer {layer}")
            panel.fill_between(epoch_values[ok], (mean - std)[ok, i], (mean + std)[ok, i], color=line.get_color(),
                               alpha=0.12)
        epoch_axis(panel, epoch_values[ok])
        panel.set_title(text(run_label(ds, run)), fontsize=8)
        panel.set_ylabel(f"{variable} ({SPLIT_WORDS[split]}): mean ± std")
        panel.legend(loc="best")
    return returned(ax, axes)


def _logit_histogram(h, act):
    """Counts of ``h`` in bins even in logit space of the activation's range; values beyond
    ±LOGIT_LIMIT (within 6e-6 of a bound, or on it) are counted in the outermost bins."""
    u = (h - act.lower) / (act.upper - act.lower)
    with quiet():
        x = np.clip(np.log(u) - np.log1p(-u), -LOGIT_LIMIT, LOGIT_LIMIT)
    edges = np.linspace(-LOGIT_LIMIT, LOGIT_LIMIT, LOGIT_BINS + 1)
    return np.histogram(x, bins=edges)


def histograms(ds, *, runs=None, layers=None, epochs=None, split: str = "train", n_epochs: int = 4,
               density: bool = True, ax=None):
    """Histograms of each layer's activations at a few records, with bins even in logit space
    so that both bounds of a bounded activation function (sigmoid, tanh) are resolved.

    Parameters
    ----------
    ds : xarray.Dataset
        A store, possibly narrowed.
    runs : run labels, optional
        One row of panels per run; default every run of ``ds``.
    layers : layer labels, optional
        One panel per layer of the run; default the run's layers.
    epochs : epoch values, optional
        The records drawn (the complete ones among them); default ``n_epochs`` of each run's
        complete records, evenly spaced from the first to the last.
    split : {"train", "test", "all"}, default "train"
    n_epochs : int, default 4
    density : bool, default True
        Densities (in the logit coordinate for a bounded function); False: counts of values.
    ax : matplotlib Axes or array of Axes, optional
        Runs × (the most layers of a run) axes; by default a new figure.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        Runs × layers; or ``ax`` when given. Each record is one step curve
        (``matplotlib.patches.StepPatch``, its label ``"epoch E"``) over the finite values of
        the layer on the split's probes. For a bounded function: 72 bins even in logit space
        over ±12, values beyond (within 6e-6 of a bound, or on it) in the outermost bins,
        ticks labelled in activation units; otherwise 60 bins over the values' range.
        Panels of a run with fewer layers than the widest row are switched off.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = histograms(synthetic_store(runs=1, depth=2), density=False, n_epochs=2)
    >>> [patch.get_label() for patch in axes[0, 0].patches]
    ['epoch 0', 'epoch 1']
    """
    ds = narrow(ds, "histograms", runs=runs, epochs=epochs, layers=layers)
    split = choice("histograms", "split", split, ("train", "test", "all"))
    n_epochs = positive_int("histograms", "n_epochs", n_epochs)
    n = ds.sizes["run"]
    layers_of = [run_layers(ds, run) for run in range(n)]
    columns = max(1, max(len(shown) for shown in layers_of))
    figure, axes, created = panels(ax, n, columns, "histograms", size=(3.2, 2.8), sharey=True,
                                   what="runs × layers")
    samples = sample_positions(ds, split)
    epoch_values = np.asarray(ds["epoch"].values, dtype=float)
    for run in range(n):
        complete = np.flatnonzero(recorded(ds, run))
        picks = complete if epochs is not None or len(complete) <= n_epochs else complete[
            np.unique(np.linspace(0, len(complete) - 1, n_epochs).round().astype(int))]
        values = ds["activation"].isel(run=run, epoch=picks, sample=samples).transpose(
            "epoch", "layer", "sample", "unit").values
        for column, panel in enumerate(axes[run]):
            if column >= len(layers_of[run]):
                panel.set_axis_off()
                continue
            layer = layers_of[run][column]
            act = activation_of(ds, run, layer)
            for k, e in enumerate(picks):
                h = values[k, layer_index(ds, layer)].ravel()
                h = h[np.isfinite(h)]
                if not h.size:
                    continue
                counts, edges = _logit_histogram(h, act) if act.bounded else np.histogram(h, bins=60)
                heights = counts / (counts.sum() * np.diff(edges)) if density else counts
                panel.stairs(heights, edges, label=f"epoch {epoch_values[e]:g}")
            if act.bounded:
                ticks = np.array([0.001, 0.05, 0.5, 0.95, 0.999])
                panel.set_xticks(np.log(ticks / (1 - ticks)))
                panel.set_xticklabels([f"{act.lower + t * (act.upper - act.lower):g}" for t in ticks], rotation=45)
            panel.set_title(panel_title(ds, run, n > 1, f"layer {layer}"))
            panel.set_xlabel("activation (logit-spaced bins)" if act.bounded else "activation")
        axes[run][0].set_ylabel("density" if density else "values")
    axes[0][-1].legend(loc="upper center")
    if created:
        suptitle(figure, ds)
    return returned(ax, axes)


def trajectories(ds, *, runs=None, epochs=None, layer=None, eps=None, n_tracked: int = 5, ax=None):
    """Tracked probes over training: each one's share of a layer's units in the saturated band
    (within ``eps`` of a bound) and its mean activation; training probes solid, held-out dashed.

    Parameters
    ----------
    ds : xarray.Dataset
        A store, possibly narrowed.
    runs : run labels, optional
        One row of two panels per run; default every run of ``ds``.
    epochs : epoch values, optional
        The records drawn (each run's complete ones among them); default all.
    layer : layer label, optional
        The layer followed; default each run's top hidden layer.
    eps : float, optional
        The band, a share of the activation's range (default: the option ``eps``, 0.05): the
        queries' band (:func:`actstats.kernels.saturation_counts`).
    n_tracked : int, default 5
        The first ``n_tracked`` probes of each split are followed.
    ax : array of 2 × runs matplotlib Axes, optional

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        Runs × 2 (saturated share, mean activation); or ``ax`` when given. One line per
        tracked probe in each panel, labelled ``"training #S"`` / ``"held-out #S"`` with
        ``S`` its label on ``sample``.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> axes = trajectories(synthetic_store(runs=1, samples=(3, 2)), n_tracked=2)
    >>> [line.get_label() for line in axes[0, 0].get_lines()]
    ['training #0', 'training #1', 'held-out #3', 'held-out #4']
    """
    from actstats import kernels

    if layer is not None and (isinstance(layer, str) or np.ndim(layer) != 0):
        bad("trajectories", "layer", f"one layer label, e.g. 2, got {shorten(layer)}")
    ds = narrow(ds, "trajectories", runs=runs, epochs=epochs, layers=None if layer is None else [layer])
    eps = eps_value("trajectories", eps)
    n_tracked = positive_int("trajectories", "n_tracked", n_tracked)
    n = ds.sizes["run"]
    figure, axes, created = panels(ax, n, 2, "trajectories", size=(4.5, 3.0), what="two per run")
    split = np.asarray(ds["split"].values).astype(str)
    sample_labels = np.asarray(ds["sample"].values)
    epoch_values = np.asarray(ds["epoch"].values, dtype=float)
    for run in range(n):
        if not run_layers(ds, run):
            for panel in axes[run]:
                panel.text(0.5, 0.5, f"run {text(ds['run'].values[run].item())} has no layer {layer}", ha="center",
                           va="center", transform=panel.transAxes, fontsize=8, color="0.4")
            continue
        shown = run_layers(ds, run)[-1]
        act = activation_of(ds, run, shown)
        ok = recorded(ds, run)
        h = ds["activation"].isel(run=run, layer=layer_index(ds, shown), epoch=np.flatnonzero(ok)).transpose(
            "epoch", "sample", "unit").values
        for name, style, label in (("train", "-", "training"), ("test", "--", "held-out")):
            for s in np.flatnonzero(split == name)[:n_tracked]:
                values = h[:, s]
                counts = kernels.saturation_counts(values, act.lower, act.band_upper, eps, axis=-1,
                                                   mode=act.saturation)
                with quiet():
                    fraction = (counts[:, 0] + counts[:, 1]) / counts[:, 2]
                    mean = np.nanmean(values, axis=1)
                axes[run][0].plot(epoch_values[ok], fraction, style, marker=".",
                                  label=f"{label} #{text(sample_labels[s].item())}")
                axes[run][1].plot(epoch_values[ok], mean, style, marker=".")
        for panel in axes[run]:
            epoch_axis(panel, epoch_values[ok])
        axes[run][0].set_ylabel(f"share of layer-{shown} units near a bound")
        axes[run][1].set_ylabel(f"mean layer-{shown} activation")
        if n > 1:
            axes[run][0].set_title(f"run {text(ds['run'].values[run].item())}", fontsize=8)
        axes[run][0].legend(ncol=2, fontsize=6)
    if created:
        suptitle(figure, ds, "tracked probes — ")
    return returned(ax, axes)
