"""``training``: did each run learn? Its accuracy and loss at its last complete record, and a status."""

from __future__ import annotations

import numpy as np
import xarray as xr

from actstats.errors import ActstatsError, ActstatsValueError
from actstats.options import OPTIONS
from actstats.queries._results import _describe

#: The values of the ``status`` variable, in the order the rule decides them.
STATUSES = ("no complete record", "diverged", "not known", "trained", "not trained")

#: A run is ``at_chance`` when its training accuracy is at most chance plus this.
CHANCE_MARGIN = 0.05

_METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


def last_complete(ds) -> np.ndarray:
    """Each run's position on ``epoch`` of its last complete record; -1 for a run with none.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"complete": (("run", "epoch"), [[True, True, False], [False, False, False]])})
    >>> last_complete(ds).tolist()
    [1, -1]
    """
    complete = np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool)
    return np.where(complete.any(axis=1), complete.shape[1] - 1 - np.argmax(complete[:, ::-1], axis=1), -1)


def validate_min_accuracy(min_accuracy=None) -> float:
    """``min_accuracy`` as a float in (0, 1]; ``None``: ``OPTIONS["trained_accuracy"]`` (read now)."""
    if min_accuracy is None:
        min_accuracy = OPTIONS["trained_accuracy"]
    try:
        value = float(min_accuracy)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(min_accuracy, bool) or not 0 < value <= 1:
        problem = "must be a training accuracy greater than 0 and at most 1"
        raise ActstatsValueError(f"min_accuracy {problem}, got {min_accuracy!r}", argument="min_accuracy",
                                 problem=problem)
    return value


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
    runs = ds.sizes["run"]
    last = last_complete(ds)
    has_record = last >= 0
    at_last = xr.DataArray(np.maximum(last, 0), dims="run")
    complete = np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool)

    values = {}
    for name in _METRICS:
        if name in ds.data_vars:
            value = np.asarray(ds[name].transpose("run", "epoch").isel(epoch=at_last).values, dtype=np.float64)
            values[name] = np.where(has_record, value, np.nan)
        else:
            values[name] = np.full(runs, np.nan)
    epochs = np.asarray(ds["epoch"].values, dtype=np.float64)
    epoch_last = np.where(has_record, epochs[np.maximum(last, 0)], np.nan)

    n_classes = ds.sizes.get("class", 0)
    chance = 1.0 / n_classes if n_classes > 0 else np.nan

    diverged = np.zeros(runs, dtype=bool)
    if "diverged" in ds.data_vars:
        flags = np.asarray(ds["diverged"].transpose("run", "epoch").values, dtype=bool)
        diverged |= (flags & complete).any(axis=1)
    if "train_loss" in ds.data_vars:
        loss = np.asarray(ds["train_loss"].transpose("run", "epoch").values, dtype=np.float64)
        diverged |= (~np.isfinite(loss) & complete).any(axis=1)

    accuracy = values["train_accuracy"]
    known = ~np.isnan(accuracy)
    # compared in the store's precision: an accuracy of exactly 0.9 written as float32
    # (0.899999976) reaches a cut of 0.9, as its writer meant
    precision = ds["train_accuracy"].dtype if "train_accuracy" in ds.data_vars else np.dtype(np.float64)
    precision = precision if precision.kind == "f" else np.dtype(np.float64)
    stored = accuracy.astype(precision)
    with np.errstate(invalid="ignore"):
        reached = known & (stored >= precision.type(min_accuracy))
        at_chance = known & (stored <= precision.type(chance + CHANCE_MARGIN))
    status = np.where(~has_record, STATUSES[0],
                      np.where(diverged, STATUSES[1],
                               np.where(~known, STATUSES[2], np.where(reached, STATUSES[3], STATUSES[4]))))

    coords = {name: c.variable for name, c in ds.coords.items() if c.dims == ("run",)}
    result = xr.Dataset(coords=coords)
    result["epoch_last"] = ("run", epoch_last)
    for name in _METRICS:
        result[name] = ("run", values[name])
    result["chance_accuracy"] = ("run", np.full(runs, chance))
    result["diverged"] = ("run", diverged)
    result["status"] = ("run", status.astype(str))
    result["trained"] = ("run", status == STATUSES[3])
    result["at_chance"] = ("run", at_chance)
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
        "rule": (
            f"a run is trained when it has a complete record, did not diverge (no diverged flag and a finite "
            f"train_loss at every complete record) and its training accuracy at its last complete record is at "
            f"least {min_accuracy:g} (option trained_accuracy or min_accuracy=); without train_accuracy its "
            f"status is 'not known'; at_chance: training accuracy at most chance (1/classes) + {CHANCE_MARGIN:g}"
        ),
        "missing_variables": ",".join(n for n in (*_METRICS, "diverged") if n not in ds.data_vars),
    }
    return result
