"""``training``: did each run learn? Its accuracy and loss at its last complete record, and a status."""

from __future__ import annotations

import numpy as np
import xarray as xr

from actstats.errors import ActstatsError
from actstats.queries._results import _describe
from actstats.store.summary import (  # the rule itself, in numpy: shared with `actstats info`
    CHANCE_MARGIN, STATUSES, TRAINING_METRICS as _METRICS, last_complete_positions, training_rule, training_status,
    validate_min_accuracy,
)


def last_complete(ds) -> np.ndarray:
    """Each run's position on ``epoch`` of its last complete record; -1 for a run with none.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"complete": (("run", "epoch"), [[True, True, False], [False, False, False]])})
    >>> last_complete(ds).tolist()
    [1, -1]
    """
    return last_complete_positions(ds["complete"].transpose("run", "epoch").values)


def training(ds: xr.Dataset, *, min_accuracy: float | None = None) -> xr.Dataset:
    """Whether each run trained: accuracy and loss at its last complete record, and a status.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (:func:`actstats.open_store`) or the same data in memory. Needs
        ``complete``; reads ``train_accuracy``, ``test_accuracy``, ``train_loss``,
        ``test_loss`` and ``diverged`` where the store has them.
    min_accuracy : float, optional
        The training accuracy a run needs at its last complete record to count as trained,
        in (0, 1]. Default ``OPTIONS["trained_accuracy"]`` (0.9, read at each call;
        :func:`actstats.set_options`).

    Returns
    -------
    xarray.Dataset
        Per run (with the store's run coordinates):

        * ``epoch_last``: the epoch of the run's last complete record (NaN if none);
        * ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss`` there (NaN
          where the store lacks the variable or the run has no complete record);
        * ``chance_accuracy``: 1 / the number of classes (size of the ``class``
          dimension; NaN without one);
        * ``diverged``: the store's ``diverged`` flag at any complete record, or a
          ``train_loss`` that is not finite (inf or NaN) at any complete record;
        * ``status``: ``"no complete record"``, else ``"diverged"``, else ``"not known"``
          (no ``train_accuracy`` in the store, or NaN at the last record), else
          ``"trained"`` when ``train_accuracy >= min_accuracy``, else ``"not trained"``
          (decided in this order; compared in the store's precision, so an accuracy of
          exactly 0.9 written as float32 reaches a cut of 0.9);
        * ``trained``: ``status == "trained"``;
        * ``at_chance``: ``train_accuracy <= chance_accuracy + 0.05`` (False where either
          is unknown).

        ``attrs["rule"]`` states the rule in words, ``attrs["min_accuracy"]`` the cut.

    Notes
    -----
    The rule looks at the last complete record only: a run that reached the cut and then
    degraded is judged by where it ended. Accuracy on the full training split (as capture
    records it) is the criterion because the question is about networks that fit their
    training points; ``test_accuracy`` is reported beside it, not used.

    Verification: equal to a plain loop over runs on a captured store and on synthetic
    stores with planted accuracies and divergence (``tests/test_queries_verdicts.py``).

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=3, train_accuracy=[0.99, 0.5, 0.95], diverged=[False, False, True])
    >>> actstats.training(ds)["status"].values.tolist()
    ['trained', 'not trained', 'diverged']
    >>> actstats.training(ds, min_accuracy=0.4)["trained"].values.tolist()
    [True, True, False]
    """
    min_accuracy = validate_min_accuracy(min_accuracy)
    if "complete" not in ds.variables:
        raise ActstatsError("training needs 'complete', which this dataset does not have")

    def values(name):
        return ds[name].transpose("run", "epoch").values

    # the rule (actstats.store.summary.training_status, which `actstats info` calls too)
    status = training_status(
        values("complete"), ds["epoch"].values, ds.sizes.get("class", 0),
        {name: values(name) for name in _METRICS if name in ds.data_vars},
        values("diverged") if "diverged" in ds.data_vars else None, min_accuracy=min_accuracy,
    )

    coords = {name: c.variable for name, c in ds.coords.items() if c.dims == ("run",)}
    result = xr.Dataset(coords=coords)
    for name in ("epoch_last", *_METRICS, "chance_accuracy", "diverged", "status", "trained", "at_chance"):
        result[name] = ("run", status[name])
    _describe(result, {
        "epoch_last": "epoch of the run's last complete record (NaN: none)",
        "train_accuracy": "accuracy on the full training split at the last complete record",
        "test_accuracy": "accuracy on the full held-out split at the last complete record",
        "train_loss": "mean loss on the full training split at the last complete record",
        "test_loss": "mean loss on the full held-out split at the last complete record",
        "chance_accuracy": "1 / number of classes (size of the class dimension)",
        "diverged": "diverged flag at any complete record, or non-finite train_loss at any complete record",
        "status": " | ".join(STATUSES),
        "trained": "status == 'trained'",
        "at_chance": f"train_accuracy <= chance_accuracy + {CHANCE_MARGIN}",
    })
    result.attrs = {
        "query": "training",
        "min_accuracy": min_accuracy,
        "rule": training_rule(min_accuracy),
        "missing_variables": ",".join(n for n in (*_METRICS, "diverged") if n not in ds.data_vars),
    }
    return result
