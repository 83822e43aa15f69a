"""What the figures of :mod:`actstats.plot` share: narrowing the data to the runs, records and
layers asked for, the panels to draw into, run labels, each run's layers and complete records,
and the epoch axis.

matplotlib is imported when the first figure is drawn, never when this module is imported.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np

from actstats.errors import ActstatsError, ActstatsValueError, shorten

__all__ = ["run_label"]


def text(value) -> str:
    """A string from the store as matplotlib text: a ``$`` stays a dollar sign (matplotlib
    would parse ``$…$`` as mathtext, and fail to draw a store's ``$\\x$``)."""
    return str(value).replace("$", r"\$")


def run_label(ds, run) -> str:
    """The label of the run at position ``run``: its label on the ``run`` dimension (not the
    position, which differs after a selection of runs) and its settings.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> run_label(synthetic_store(runs=2), 1)
    'run 1: sigmoid, depth 2, synthetic, none lr 0, seed 0'
    """
    r = int(run)
    label = ds["run"].values[r].item() if "run" in ds.coords else r
    return (
        f"run {label}: {ds['activation_fn'].values[r]}, depth {int(ds['depth'].values[r])}, "
        f"{ds['init'].values[r]}, {ds['optimizer'].values[r]} lr {float(ds['lr'].values[r]):g}, "
        f"seed {int(ds['seed'].values[r])}"
    )


@contextmanager
def named(function: str):
    """The shared checks' errors (:mod:`actstats.validate`, :mod:`actstats.selection`) with the
    figure's name in front: ``"mean_std: runs: no run 9 in the store (…)"``."""
    try:
        yield
    except ActstatsValueError as error:
        raise ActstatsValueError(f"{function}: {error}", argument=error.argument, problem=error.problem) from None


def bad(function: str, argument: str, problem: str):
    """Raise the one-line ``"<function>: <argument>: <problem>"``."""
    raise ActstatsValueError(f"{function}: {argument}: {problem}", argument=argument, problem=problem)


def narrow(ds, function: str, *, runs=None, epochs=None, layers=None):
    """``ds`` restricted to run labels ``runs``, epoch values ``epochs`` and layers ``layers``
    (:func:`actstats.select_runs`, :func:`actstats.selection.select_records`), with their
    errors prefixed by the figure's name."""
    from actstats.selection import select_records, select_runs

    if not hasattr(ds, "data_vars") or "run" not in ds.dims:
        raise ActstatsValueError(f"{function}: expected a store or a query result with a 'run' dimension "
                                 f"(an xarray.Dataset), got {type(ds).__name__}", argument="ds")
    if isinstance(epochs, str) and epochs == "last" and "complete" not in ds.variables:
        bad(function, "epochs", "'last' needs the store's 'complete' (this is a query result: give epoch values)")
    with named(function):
        if runs is not None:
            ds = select_runs(ds, runs=runs)
            ds = ds.isel(run=_in_order(ds, runs))
        if epochs is not None or layers is not None:
            ds = select_records(ds, epochs=epochs, layers=layers)
    return ds


def _in_order(ds, runs) -> list[int]:
    """Positions on ``run`` of the labels ``runs`` (all in ``ds``), in the order given: panels
    follow the order the caller asked for, not the store's."""
    labels = np.asarray(ds["run"].values).astype(str).tolist()
    given = [runs] if isinstance(runs, (str, bytes)) or np.ndim(runs) == 0 else list(runs)
    return list(dict.fromkeys(labels.index(str(np.asarray(r).item())) for r in given))


def choice(function: str, argument: str, value, choices) -> str:
    from actstats.validate import validate_choice

    with named(function):
        return validate_choice(argument, value, choices)


def positive_int(function: str, argument: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        bad(function, argument, f"must be a positive integer, got {shorten(value)}")
    return int(value)


def eps_value(function: str, eps) -> float:
    from actstats.validate import validate_eps

    with named(function):
        return validate_eps(eps)


def require(ds, names, function: str, what: str) -> None:
    """Refuse data without the variables ``names`` (a store, or ``what`` it may be instead)."""
    missing = [name for name in names if name not in ds.variables]
    if missing:
        raise ActstatsError(f"{function}: needs {what}; this dataset has no {', '.join(map(repr, missing))}")


def sample_positions(ds, split: str) -> np.ndarray:
    """Positions on ``sample`` of the probes of ``split`` ("all": every probe)."""
    if split == "all":
        return np.arange(ds.sizes["sample"])
    return np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split)


SPLIT_WORDS = {"train": "training probes", "test": "held-out probes", "all": "all probes"}


def run_layers(ds, run: int) -> list:
    """The layers (labels on ``layer``) that run position ``run`` has: ``width`` > 0."""
    layers = np.asarray(ds["layer"].values)
    if "width" in ds.variables:
        width = np.asarray(ds["width"].transpose("run", "layer").values)[run]
        return layers[width > 0].tolist()
    if "depth" in ds.variables:
        return layers[layers <= int(ds["depth"].values[run])].tolist()
    return layers.tolist()


def layer_index(ds, layer) -> int:
    return int(np.flatnonzero(np.asarray(ds["layer"].values) == layer)[0])


def recorded(ds, run: int, values=None) -> np.ndarray:
    """(epoch,) bool: the records of run position ``run`` to draw: complete ones in a store;
    in a query result (no ``complete``), the epochs where ``values`` (epoch first) has a finite value."""
    if "complete" in ds.variables:
        return np.asarray(ds["complete"].transpose("run", "epoch").values[run], dtype=bool)
    values = np.asarray(values, dtype=float)
    return np.isfinite(values.reshape(values.shape[0], -1)).any(axis=1)


def activation_of(ds, run: int, layer):
    """The :class:`~actstats.activations.Activation` of ``layer`` in run position ``run``:
    the layer's own function where the store has ``layer_activation_fn``, else the run's."""
    from actstats.activations import get_activation

    if "layer_activation_fn" in ds.variables:
        name = ds["layer_activation_fn"].transpose("run", "layer").values[run, layer_index(ds, layer)]
    else:
        name = ds["activation_fn"].values[run]
    return get_activation(str(name))


@contextmanager
def quiet():
    """All-NaN slices (the padding of absent layers and units, incomplete records) are expected."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def panels(ax, rows: int, columns: int, function: str, *, size: tuple[float, float], what: str,
           sharey: bool = False):
    """``(figure, axes as a rows × columns array, created)``: a new figure of ``size`` per panel,
    or the axes ``ax`` given (as many as the figure has panels, ``what`` says which)."""
    if ax is None:
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False,
                                    sharey=sharey)
        return figure, axes, True
    axes = np.asarray(ax, dtype=object)
    if axes.size != rows * columns:
        bad(function, "ax", f"{axes.size} axes given; this figure draws {rows * columns} ({what})")
    if not all(hasattr(a, "plot") and hasattr(a, "figure") for a in axes.flat):
        bad(function, "ax", "expected matplotlib Axes (one, or an array of them)")
    return axes.flat[0].figure, axes.reshape(rows, columns), False


def returned(ax, axes):
    """What a figure returns: the axes drawn into, as given (one Axes, or the array given);
    the new figure's rows × columns array when none was given."""
    if ax is None:
        return axes
    return ax if hasattr(ax, "plot") else np.asarray(ax, dtype=object)


def panel_title(ds, run: int, several: bool, what: str) -> str:
    """A panel's title: ``what`` alone when one run is drawn, else prefixed by the run's label."""
    return f"run {text(ds['run'].values[run].item())} · {what}" if several else what


def suptitle(figure, ds, prefix: str = "") -> None:
    """A new figure's panels laid out, and its title above them: ``prefix`` and the labels of
    its runs, one line each (saved with ``bbox_inches="tight"``, as notebooks show figures)."""
    labels = "\n".join(text(run_label(ds, r)) for r in range(ds.sizes["run"]))
    figure.tight_layout()  # before the title, which sits above the panels
    figure.suptitle(prefix + labels, fontsize=9, y=1.0, va="bottom")


def epoch_axis(ax, epochs) -> None:
    """Symmetric-log epochs where the recorded ones span more than a factor 50 (fractions of
    the first epoch), starting at 0."""
    epochs = np.asarray(epochs, dtype=float)
    positive = epochs[epochs > 0]
    if len(positive) and positive.max() / max(positive.min(), 1e-12) > 50:
        ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xlim(0, float(positive.max()) * 1.3)  # no negative epochs from the margins
    ax.set_xlabel("epoch")
