"""Whether the networks learned: training and held-out accuracy and loss against epoch."""

from __future__ import annotations

import numpy as np

from actstats.errors import ActstatsError
from actstats.plot._common import epoch_axis, narrow, panels, recorded, returned, run_label, text

__all__ = ["TRAINING_VARIABLES", "training_curves"]

#: The store's training variables, (run, epoch), in the order of the figure's panels.
TRAINING_VARIABLES = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")

_TITLES = {
    "train_accuracy": "training accuracy",
    "test_accuracy": "held-out accuracy",
    "train_loss": "training loss",
    "test_loss": "held-out loss",
}

#: Runs named in the legend at most; beyond, the title says how many runs are drawn.
LEGEND_RUNS = 10


def training_curves(ds, *, runs=None, epochs=None, ax=None):
    """Training and held-out accuracy and loss against epoch, one line per run.

    Parameters
    ----------
    ds : xarray.Dataset
        A store, possibly narrowed.
    runs : run labels, optional
        Default every run of ``ds``. The legend names each run by its label and settings
        (up to 10 runs; beyond, no legend and the title says how many).
    epochs : epoch values, optional
        Default all (each run's complete records).
    ax : array of 4 matplotlib Axes, optional
        Panels in the order training accuracy, held-out accuracy, training loss, held-out loss.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        2 × 2; or ``ax`` when given. One line per run in each panel of a variable the store
        has (a panel of one it lacks says so); the accuracy panels also show chance
        (1 / the number of classes) as a dashed line. A new figure gets the legend below
        the panels and a title; into axes given, the legend goes into the first panel drawn.

    Raises
    ------
    ActstatsError
        The store has none of ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss``.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=2).assign(train_accuracy=(("run", "epoch"), [[0.1, 0.9], [0.1, 0.5]]))
    >>> axes = training_curves(ds)
    >>> axes.shape, len(axes[0, 0].get_lines())  # two runs and chance
    ((2, 2), 3)
    """
    ds = narrow(ds, "training_curves", runs=runs, epochs=epochs)
    present = [v for v in TRAINING_VARIABLES if v in ds.data_vars]
    if not present:
        raise ActstatsError(f"training_curves: this store has none of {', '.join(TRAINING_VARIABLES)}")
    n = ds.sizes["run"]
    figure, axes, created = panels(ax, 2, 2, "training_curves", size=(4.2, 2.9),
                                   what="training and held-out accuracy, training and held-out loss")
    epoch_values = np.asarray(ds["epoch"].values, dtype=float)
    chance = 1.0 / ds.sizes["class"] if ds.sizes.get("class", 0) else None
    labelled = n <= LEGEND_RUNS
    drawn_epochs = []
    by_variable = dict(zip(TRAINING_VARIABLES, axes.ravel()))
    for variable, panel in by_variable.items():
        panel.set_title(_TITLES[variable])
        if variable not in ds.data_vars:
            panel.text(0.5, 0.5, "not recorded in this store", ha="center", va="center", transform=panel.transAxes,
                       fontsize=8, color="0.4")
            panel.set_xticks([])
            panel.set_yticks([])
            continue
        values = np.asarray(ds[variable].transpose("run", "epoch").values, dtype=float)
        for run in range(n):
            ok = recorded(ds, run, values[run])
            panel.plot(epoch_values[ok], values[run][ok], marker="o", ms=2.5, lw=1.2,
                       label=text(run_label(ds, run)) if labelled else None)
            drawn_epochs.append(epoch_values[ok])
        if variable.endswith("accuracy"):
            if chance is not None:
                panel.axhline(chance, ls="--", lw=1, color="0.35", label=f"chance (1/{ds.sizes['class']})")
            panel.set_ylim(-0.02, 1.02)
            panel.set_ylabel("accuracy")
        else:
            panel.set_ylabel("loss")
        epoch_axis(panel, np.concatenate(drawn_epochs) if drawn_epochs else epoch_values)
    # the legend of the first drawn panel (an accuracy panel, with chance, when there is one)
    first = by_variable[present[0]]
    handles, labels = first.get_legend_handles_labels()
    if handles and created:
        figure.legend(handles, labels, loc="lower center", ncol=1 if labelled else 2, fontsize=7,
                      bbox_to_anchor=(0.5, -0.02 - 0.028 * len(labels)))
    elif handles:
        first.legend(fontsize=6)
    if created:
        shown = "" if labelled else f" ({n} runs)"
        figure.suptitle(f"Did the networks learn? Accuracy and loss over training{shown}", fontsize=10)
        figure.tight_layout()
    return returned(ax, axes)
