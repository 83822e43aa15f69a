"""Whether the networks learned: training and held-out accuracy and loss per run, as curves
over training and as a table at each run's last complete record.

The report shows these beside its verdicts: statistics of the hidden layers of a network at
chance accuracy describe a network that did not learn.
"""

from __future__ import annotations

import numpy as np

from actstats import plot
from actstats.plot import TRAINING_VARIABLES
from actstats.report.figures import pyplot, run_label, save

__all__ = ["training_curves", "training_table", "TRAINING_VARIABLES"]


def training_curves(ds, runs, directory, name: str = "training_curves.png") -> str | None:
    """Save :func:`actstats.plot.training_curves` of ``ds`` as ``directory/name``.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (or a selection of its runs).
    runs : iterable of int
        Positions on ``ds``'s ``run`` dimension of the runs to draw, as the report's other
        figures take them; the legend names each run by its label in the store (which
        differs from its position after :func:`actstats.select_runs`).
    directory : str
        Where the PNG is written.
    name : str
        Its file name.

    Returns
    -------
    str or None
        The path of the figure; None when the store has none of ``train_accuracy``,
        ``test_accuracy``, ``train_loss``, ``test_loss``.
    """
    if not any(v in ds.data_vars for v in TRAINING_VARIABLES):
        return None
    pyplot()
    labels = np.asarray(ds["run"].values)[[int(r) for r in runs]].tolist()
    return save(plot.training_curves(ds, runs=labels), directory, name)


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
            "label": run_label(ds, i),
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
