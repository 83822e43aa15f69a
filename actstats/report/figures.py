"""The report's figures (matplotlib, Agg). Each function saves one PNG and returns its path."""

from __future__ import annotations

import os

import numpy as np

from actstats import kernels
from actstats.activations import get_activation


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, with the report's style (small fonts, no top
    or right spines, no legend frames); figures of the report and of docs/findings.md use it.

    Examples
    --------
    >>> plt = pyplot()
    >>> plt.get_backend().lower()
    'agg'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
        "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
        "legend.fontsize": 8, "legend.frameon": False,
    })
    return plt


def _save(fig, directory, name):
    path = os.path.join(directory, name)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _epoch_axis(ax, epochs):
    positive = epochs[epochs > 0]
    if len(positive) and positive.max() / max(positive.min(), 1e-12) > 50:
        ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xlim(0, float(positive.max()) * 1.3)  # no negative epochs from the margins
    ax.set_xlabel("epoch")


def run_label(ds, run) -> str:
    """The label of the run at position ``run``: its label on the store's ``run`` dim (not
    the position, which differs after a selection) and its settings."""
    r = int(run)
    label = int(ds["run"].values[r]) if "run" in ds.coords else r
    return (
        f"run {label}: {ds['activation_fn'].values[r]}, depth {int(ds['depth'].values[r])}, "
        f"{ds['init'].values[r]}, {ds['optimizer'].values[r]} lr {float(ds['lr'].values[r]):g}, seed {int(ds['seed'].values[r])}"
    )


def mean_std_over_training(ds, runs, directory):
    """Glorot & Bengio (2010), Fig. 2 style: mean and std (over training probes and units)
    of each layer's activations over training, one panel per run."""
    plt = pyplot()
    runs = list(runs)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.2), squeeze=False, sharey=False)
    train = ds["split"] == "train"
    for ax, run in zip(axes[0], runs):
        h = ds["activation"].isel(run=int(run)).where(train)
        mean = h.mean(["sample", "unit"]).values
        std = h.std(["sample", "unit"]).values
        epochs = ds["epoch"].values
        ok = np.asarray(ds["complete"].values[int(run)], dtype=bool)
        for i in range(int(ds["depth"].values[int(run)])):
            line, = ax.plot(epochs[ok], mean[ok, i], marker="o", ms=3, label=f"layer {i + 1}")
            ax.fill_between(epochs[ok], (mean - std)[ok, i], (mean + std)[ok, i], color=line.get_color(), alpha=0.12)
        _epoch_axis(ax, epochs[ok])
        ax.set_title(run_label(ds, run), fontsize=8)
        ax.set_ylabel("activation: mean ± std")
        ax.legend(loc="best")
    return _save(fig, directory, "mean_std_over_training.png")


def histograms(ds, run, directory, n_epochs=4):
    """Per-layer activation histograms at a few recorded epochs, with bins even in logit
    space so that both bounds are resolved (for a bounded activation function)."""
    plt = pyplot()
    run = int(run)
    act = get_activation(str(ds["activation_fn"].values[run]))
    depth = int(ds["depth"].values[run])
    complete = np.flatnonzero(np.asarray(ds["complete"].values[run], dtype=bool))
    picks = complete[np.unique(np.linspace(0, len(complete) - 1, n_epochs).round().astype(int))]
    fig, axes = plt.subplots(1, depth, figsize=(3.2 * depth, 2.8), squeeze=False, sharey=True)
    train = (ds["split"] == "train").values
    for layer, ax in enumerate(axes[0]):
        for e in picks:
            h = ds["activation"].isel(run=run, epoch=int(e), layer=layer).values[train].ravel()
            h = h[np.isfinite(h)]
            if act.bounded:
                u = np.clip((h - act.lower) / (act.upper - act.lower), 1e-7, 1 - 1e-7)
                x = np.log(u / (1 - u))
                bins = np.linspace(-12, 12, 73)
            else:
                x, bins = h, 60
            ax.hist(x, bins=bins, histtype="step", density=True, label=f"epoch {ds['epoch'].values[e]:g}")
        if act.bounded:
            ticks = np.array([0.001, 0.05, 0.5, 0.95, 0.999])
            ax.set_xticks(np.log(ticks / (1 - ticks)))
            ax.set_xticklabels([f"{act.lower + t * (act.upper - act.lower):g}" for t in ticks], rotation=45)
        ax.set_title(f"layer {layer + 1}")
        ax.set_xlabel("activation (logit-spaced bins)" if act.bounded else "activation")
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(loc="upper center")
    fig.suptitle(run_label(ds, run), fontsize=9, y=1.06)
    return _save(fig, directory, "histograms.png")


def saturation_heatmap(saturation, ds, runs, directory):
    """Saturated fraction on training probes, layer x epoch, one panel per run."""
    plt = pyplot()
    runs = [int(r) for r in runs]
    n_epochs = saturation.sizes["epoch"]
    max_depth = max(int(ds["depth"].values[r]) for r in runs)
    fig, axes = plt.subplots(
        len(runs), 1, figsize=(min(1.5 + 0.55 * n_epochs, 11), (0.5 * max_depth + 1.1) * len(runs)), squeeze=False
    )
    for ax, run in zip(axes[:, 0], runs):
        values = saturation["fraction"].sel(split="train").isel(run=run).transpose("layer", "epoch").values
        depth = int(ds["depth"].values[run])
        image = ax.imshow(values[:depth], aspect="auto", vmin=0, vmax=1, cmap="magma", origin="lower")
        ax.set_yticks(range(depth))
        ax.set_yticklabels([f"layer {i + 1}" for i in range(depth)])
        ax.set_xticks(range(n_epochs))
        ax.set_xticklabels([f"{e:.3g}" for e in saturation["epoch"].values], rotation=60)
        for (i, j), v in np.ndenumerate(values[:depth]):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
        fig.colorbar(image, ax=ax, label="saturated fraction")
        ax.set_title(run_label(ds, run), fontsize=8)
    axes[-1, 0].set_xlabel("epoch")
    fig.tight_layout()
    return _save(fig, directory, "saturation_heatmap.png")


def trajectories(ds, run, eps, directory, n_tracked=5):
    """Tracked probes: each one's saturated fraction (share of its top-layer units within eps
    of a bound) over training, training probes solid, held-out dashed."""
    plt = pyplot()
    run = int(run)
    act = get_activation(str(ds["activation_fn"].values[run]))
    depth = int(ds["depth"].values[run])
    split = ds["split"].values
    train = np.flatnonzero(split == "train")[:n_tracked]
    test = np.flatnonzero(split == "test")[:n_tracked]
    ok = np.asarray(ds["complete"].values[run], dtype=bool)
    epochs = ds["epoch"].values[ok]
    h = ds["activation"].isel(run=run, layer=depth - 1).values[ok]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
    for samples, style, label in ((train, "-", "training"), (test, "--", "held-out")):
        for s in samples:
            values = h[:, s]
            counts = kernels.saturation_counts(np.where(np.isfinite(values), values, np.nan), act.lower, act.band_upper,
                                               eps, axis=-1, mode=act.saturation)  # the queries' band
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction = (counts[:, 0] + counts[:, 1]) / counts[:, 2]
            axes[0].plot(epochs, fraction, style, marker=".", label=f"{label} #{s}")
            axes[1].plot(epochs, np.nanmean(values, axis=1), style, marker=".")
    for ax in axes:
        _epoch_axis(ax, epochs)
    axes[0].set_ylabel(f"share of layer-{depth} units near a bound")
    axes[1].set_ylabel(f"mean layer-{depth} activation")
    axes[0].legend(ncol=2, fontsize=6)
    fig.suptitle("tracked probes — " + run_label(ds, run), fontsize=9)
    return _save(fig, directory, "trajectories.png")


def weight_qq(ds, run, directory):
    """QQ plots of each layer's weights at the last epoch against the fitted normal."""
    from scipy import stats

    plt = pyplot()
    run = int(run)
    depth = int(ds["depth"].values[run])
    last = int(np.flatnonzero(np.asarray(ds["complete"].values[run], dtype=bool))[-1])
    fig, axes = plt.subplots(1, depth, figsize=(3.0 * depth, 3.0), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        w = ds["weight"].isel(run=run, epoch=last, layer=layer).values.ravel()
        w = np.sort(w[np.isfinite(w)])
        if len(w) > 4000:
            w = w[np.linspace(0, len(w) - 1, 4000).astype(int)]
        z = (w - w.mean()) / w.std()
        q = stats.norm.ppf((np.arange(1, len(z) + 1) - 0.5) / len(z))
        ax.plot(q, z, ".", ms=2)
        ax.plot([-4, 4], [-4, 4], "k--", lw=0.8)
        ax.set_title(f"layer {layer + 1}")
        ax.set_xlabel("normal quantile")
    axes[0][0].set_ylabel("standardised weight")
    fig.suptitle(f"weights at epoch {ds['epoch'].values[last]:g} against the fitted normal — " + run_label(ds, run), fontsize=9)
    return _save(fig, directory, "weights_qq.png")


def weight_kurtosis(normality, ds, runs, directory):
    """Excess kurtosis of each layer's weights over training, from the initialisation."""
    plt = pyplot()
    runs = list(runs)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.0), squeeze=False)
    for ax, run in zip(axes[0], runs):
        run = int(run)
        ok = np.asarray(ds["complete"].values[run], dtype=bool)
        epochs = ds["epoch"].values[ok]
        k = normality["excess_kurtosis"].isel(run=run).values[ok]
        for layer in range(int(ds["depth"].values[run])):
            ax.plot(epochs, k[:, layer], marker="o", ms=3, label=f"layer {layer + 1}")
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.axhline(-1.2, color="grey", lw=0.8, ls=":")
        _epoch_axis(ax, epochs)
        ax.set_ylabel("excess kurtosis (0 = normal, −1.2 = uniform)")
        ax.set_title(run_label(ds, run), fontsize=8)
        ax.legend()
    return _save(fig, directory, "weights_kurtosis.png")


def gradient_flow(gradients, ds, runs, directory):
    """Weight-gradient norm and mean f'(z) per layer over training."""
    plt = pyplot()
    runs = list(runs)
    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 5.6), squeeze=False)
    for column, run in enumerate(runs):
        run = int(run)
        ok = np.asarray(ds["complete"].values[run], dtype=bool)
        epochs = ds["epoch"].values[ok]
        norm = gradients["weight_grad_norm"].isel(run=run).values[ok]
        derivative = gradients["mean_derivative"].isel(run=run).values[ok]
        for layer in range(int(ds["depth"].values[run])):
            axes[0][column].plot(epochs, norm[:, layer], marker="o", ms=3, label=f"layer {layer + 1}")
            axes[1][column].plot(epochs, derivative[:, layer], marker="o", ms=3)
        axes[0][column].set_yscale("log")
        axes[0][column].set_ylabel("‖∂L/∂W‖")
        axes[1][column].set_ylabel("mean f′(z)")
        if str(ds["activation_fn"].values[run]) == "sigmoid":
            axes[1][column].axhline(0.25, color="grey", lw=0.8, ls=":")
        axes[0][column].set_title(run_label(ds, run), fontsize=8)
        axes[0][column].legend()
        for ax in axes[:, column]:
            _epoch_axis(ax, epochs)
    fig.tight_layout()
    return _save(fig, directory, "gradient_flow.png")


def sweep_comparison(run_fraction, factors: dict[str, np.ndarray], directory, name="sweep_comparison.png"):
    """Last-epoch saturated fraction per run (mean over layers), by each swept factor."""
    plt = pyplot()
    names = [n for n, v in factors.items() if len(np.unique(np.asarray(v).astype(str))) > 1]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names) + 0.6, 3.0), squeeze=False, sharey=True)
    rng = np.random.default_rng(0)
    for ax, factor in zip(axes[0], names):
        levels = np.asarray(factors[factor]).astype(str)
        unique = sorted(np.unique(levels), key=lambda v: (len(v), v))
        for i, level in enumerate(unique):
            values = run_fraction[levels == level]
            ax.plot(i + rng.uniform(-0.12, 0.12, len(values)), values, "o", ms=4, alpha=0.7)
            ax.plot([i - 0.25, i + 0.25], [np.nanmean(values)] * 2, "k-", lw=1.5)
        ax.set_xticks(range(len(unique)))
        ax.set_xticklabels(unique, rotation=30)
        ax.set_title(factor)
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("saturated fraction, last epoch\n(training probes, mean over layers)")
    return _save(fig, directory, name)
