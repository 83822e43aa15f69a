"""Whether the networks learned: training and held-out accuracy and loss per run, as curves
over training and as a table at each run's last complete record.

The report shows these beside its verdicts: statistics of the hidden layers of a network at
chance accuracy describe a network that did not learn.
"""

from __future__ import annotations

import numpy as np

from actstats.report.figures import _epoch_axis, _save, pyplot, run_label

__all__ = ["training_curves", "training_table", "TRAINING_VARIABLES"]

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


def _label(ds, position: int) -> str:
    """:func:`~actstats.report.figures.run_label` of the run at ``position``, named by its label
    in the store (``run_label`` names it by position, which differs after a selection of runs)."""
    position = int(position)
    label = np.asarray(ds["run"].values)[position]
    return run_label(ds, position).replace(f"run {position}:", f"run {label}:", 1)


def _chance(ds) -> float | None:
    n_classes = ds.sizes.get("class", 0)
    return 1.0 / n_classes if n_classes else None


def training_curves(ds, runs, directory, name: str = "training_curves.png") -> str | None:
    """Training and held-out accuracy and loss against epoch, one line per run.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (or a selection of its runs).
    runs : iterable of int
        Positions on ``ds``'s ``run`` dimension of the runs to draw, as the report's other
        figure functions take them; the legend names each run by its label in the store
        (which differs from its position after :func:`actstats.select_runs`).
    directory : str
        Where the PNG is written.
    name : str
        Its file name.

    Returns
    -------
    str or None
        The path of the figure; None when the store has none of ``train_accuracy``,
        ``test_accuracy``, ``train_loss``, ``test_loss``.

    Each run's complete records only. The epoch axis is symmetric-log where the recorded
    epochs span more than a factor 50 (fractions of the first epoch). The accuracy panels
    show chance (1 / the number of classes) as a dashed line.
    """
    present = [v for v in TRAINING_VARIABLES if v in ds.data_vars]
    if not present:
        return None
    runs = list(runs)
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 5.8), squeeze=False)
    epochs = np.asarray(ds["epoch"].values, dtype=float)
    chance = _chance(ds)
    labelled = len(runs) <= LEGEND_RUNS
    drawn_epochs = []
    for ax, variable in zip(axes.ravel(), TRAINING_VARIABLES):
        ax.set_title(_TITLES[variable])
        if variable not in ds.data_vars:
            ax.text(0.5, 0.5, "not recorded in this store", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        values = ds[variable].transpose("run", "epoch")
        for run in runs:
            ok = np.asarray(ds["complete"].isel(run=int(run)).values, dtype=bool)
            y = np.asarray(values.isel(run=int(run)).values, dtype=float)[ok]
            ax.plot(epochs[ok], y, marker="o", ms=2.5, lw=1.2, label=_label(ds, run) if labelled else None)
            drawn_epochs.append(epochs[ok])
        if variable.endswith("accuracy"):
            if chance is not None:
                ax.axhline(chance, ls="--", lw=1, color="0.35", label=f"chance (1/{ds.sizes['class']})")
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("accuracy")
        else:
            ax.set_ylabel("loss")
        _epoch_axis(ax, np.concatenate(drawn_epochs) if drawn_epochs else epochs)
    # the legend of the first drawn panel (an accuracy panel, with chance, when there is one)
    handles, labels = dict(zip(TRAINING_VARIABLES, axes.ravel()))[present[0]].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=1 if labelled else 2, fontsize=7,
                   bbox_to_anchor=(0.5, -0.02 - 0.028 * len(labels)))
    shown = "" if labelled else f" ({len(runs)} runs)"
    fig.suptitle(f"Did the networks learn? Accuracy and loss over training{shown}", fontsize=10)
    fig.tight_layout()
    return _save(fig, directory, name)


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def training_table(ds) -> list[dict]:
    """One row per run: its factors and its accuracy and loss at its last complete record.

    Keys: ``run`` (the label), ``label`` (the report's description of the run),
    ``activation_fn``, ``init``, ``optimizer``, ``epoch`` (of the last complete record),
    ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss`` (the store's values
    there, as floats; None where the store lacks the variable, the value is not finite, or the
    run has no complete record), ``chance_accuracy`` and ``status`` (:func:`actstats.training`:
    trained, not trained, diverged, not known, no complete record) and ``at_chance``.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> rows = training_table(synthetic_store(runs=2, train_accuracy=[0.5, 0.875]))
    >>> [(row["run"], row["train_accuracy"], row["status"]) for row in rows]
    [(0, 0.5, 'not trained'), (1, 0.875, 'not trained')]
    """
    from actstats.queries.training import training

    result = training(ds)
    rows = []
    for i, run in enumerate(np.asarray(ds["run"].values).tolist()):
        epoch = float(result["epoch_last"].values[i])
        rows.append({
            "run": run,
            "label": _label(ds, i),
            "activation_fn": str(ds["activation_fn"].values[i]),
            "init": str(ds["init"].values[i]),
            "optimizer": str(ds["optimizer"].values[i]),
            "epoch": epoch if np.isfinite(epoch) else None,
            **{name: _finite(result[name].values[i]) for name in TRAINING_VARIABLES},
            "chance_accuracy": _finite(result["chance_accuracy"].values[i]),
            "status": str(result["status"].values[i]),
            "at_chance": bool(result["at_chance"].values[i]),
        })
    return rows
