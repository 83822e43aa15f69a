"""Run selection: keep the runs of a store whose per-run coordinates match.

:func:`select_runs` is applied to an opened store before a query or the report (the command
line's ``--where KEY=VALUE[,VALUE…]`` and ``--runs 0,3,5``). The run labels are kept, so a
selected dataset's ``run`` coordinate still names the runs of the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the command line parses --runs/--epochs with this module before any store is open
    import xarray as xr

from actstats.errors import ActstatsValueError, shorten

__all__ = ["run_coordinates", "select_runs", "select_records", "parse_where", "parse_runs", "parse_epochs",
           "parse_layers"]


def run_coordinates(ds: xr.Dataset) -> list[str]:
    """The names of the coordinates on the ``run`` dimension alone (``activation_fn``, ``init``, …), sorted."""
    return sorted(str(name) for name, coord in ds.coords.items() if coord.dims == ("run",))


def _values(value) -> list:
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        return [value]
    return list(value)


def _error(key, problem: str, argument: str = "where") -> ActstatsValueError:
    error = ActstatsValueError(f"{argument}: {problem}", argument=argument, problem=problem)
    error.key = key  # the --where item the command line names
    return error


def _convert(key: str, value, dtype: np.dtype, argument: str = "where"):
    """``value`` (its text form or a Python value) as a value of ``dtype``; ActstatsValueError if it is none."""
    text = value.decode() if isinstance(value, bytes) else value
    try:
        if dtype.kind in "US" or dtype == object:
            return str(text)
        if dtype.kind == "b":
            lowered = str(text).strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if dtype.kind in "iu":
            number = float(text) if not isinstance(text, str) else None
            if number is not None and not number.is_integer():
                raise ValueError
            return np.asarray(int(text.strip()) if isinstance(text, str) else int(number)).astype(dtype).item()
        if dtype.kind == "f":
            return np.asarray(float(text.strip() if isinstance(text, str) else text), dtype=dtype).item()
    except (TypeError, ValueError, OverflowError):
        kind = {"i": "an integer", "u": "an integer", "f": "a number", "b": "true or false"}.get(dtype.kind, str(dtype))
        raise _error(key, f"{shorten(key, quote=False)}={shorten(text)} is not {kind} ({shorten(key, quote=False)} is {dtype})", argument) from None
    raise _error(key, f"{key}: cannot select on a coordinate of dtype {dtype}", argument)


def _shown(values: Iterable) -> str:
    unique = list(dict.fromkeys(np.asarray(values).tolist()))
    text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in unique[:12])
    return text + (", …" if len(unique) > 12 else "")


def select_runs(ds: xr.Dataset, where: Mapping | None = None, runs: Iterable | None = None) -> xr.Dataset:
    """The runs of ``ds`` whose per-run coordinates match ``where`` and whose label is in ``runs``.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (:func:`actstats.open_store`) or anything with a ``run`` dimension.
    where : mapping, optional
        ``{coordinate: value or list of values}`` over the coordinates on the ``run``
        dimension (``activation_fn``, ``init``, ``optimizer``, ``lr``, ``batch_size``,
        ``seed``, ``dataset``, ``depth``, …). A run is kept when, for every key, its
        coordinate equals one of the values. Values may be given in their text form
        (``"0.1"``, ``"3"``): each is converted to the coordinate's dtype before comparing.
    runs : iterable of run labels, optional
        Keep only these runs (labels of the ``run`` coordinate, not positions).

    Returns
    -------
    xarray.Dataset
        ``ds`` restricted to the kept runs, in the store's order, with their labels.

    Raises
    ------
    ActstatsValueError
        A key that is not a run coordinate (the message lists the known ones), a value
        that cannot be converted, a run label not in the store, or no run left.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=4, activation_fn=["sigmoid", "tanh", "sigmoid", "relu"])
    >>> select_runs(ds, where={"activation_fn": "sigmoid"}).run.values.tolist()
    [0, 2]
    >>> select_runs(ds, where={"activation_fn": ["tanh", "relu"]}, runs=[1, 2, 3]).run.values.tolist()
    [1, 3]
    >>> select_runs(ds, where={"activation": "tanh"})
    Traceback (most recent call last):
    ...
    actstats.errors.ActstatsValueError: where: unknown run coordinate 'activation' (known: activation_fn, batch_size, config, dataset, depth, init, lr, optimizer, run, seed)
    """
    if "run" not in ds.dims:
        raise ActstatsValueError("select_runs: the dataset has no 'run' dimension")
    keep = np.ones(ds.sizes["run"], dtype=bool)
    if where is not None:
        if not isinstance(where, Mapping):
            raise ActstatsValueError(f"where must be a dict of run coordinate to value(s), got {type(where).__name__}",
                                     argument="where")
        known = run_coordinates(ds)
        wanted = {}
        for key, value in where.items():
            if key not in known:
                raise _error(key, f"unknown run coordinate {shorten(key)} (known: {', '.join(known)})")
            dtype = ds.coords[key].dtype
            wanted[key] = [_convert(key, v, dtype) for v in _values(value)]
            if not wanted[key]:
                raise _error(key, f"{key}: no value given")
        for key, values in wanted.items():
            coord = np.asarray(ds.coords[key].values)
            matches = np.isin(coord, np.asarray(values, dtype=coord.dtype))
            if not matches.any():
                raise _error(key, f"no run has {key}={_shown(values)} ({key} in this store: {_shown(coord)})")
            keep &= matches
        if not keep.any():
            given = " and ".join(f"{key}={_shown(values)}" for key, values in wanted.items())
            raise _error(None, f"no run has {given} at once")
    if runs is not None:
        labels = np.asarray(ds["run"].values)
        chosen_labels = [_convert("run", r, labels.dtype, "runs") for r in _values(runs)]
        if not chosen_labels:
            raise _error(None, "no run given", "runs")
        missing = [r for r in chosen_labels if r not in set(labels.tolist())]
        if missing:
            raise _error(None, f"no run {_shown(missing)} in the store (runs: {_shown(labels)})", "runs")
        chosen = np.isin(labels, chosen_labels)
        if not (keep & chosen).any():
            raise _error(None, f"none of runs {_shown(chosen_labels)} has {_where_text(where)}", "runs")
        keep &= chosen
    if keep.all():
        return ds
    return ds.isel(run=np.flatnonzero(keep))


def select_records(ds: xr.Dataset, epochs=None, layers=None) -> xr.Dataset:
    """The records and layers of ``ds`` a query should see (the command line's ``--epochs``
    and ``--layers``).

    Parameters
    ----------
    epochs : "last", or epochs (values of the ``epoch`` coordinate), optional
        ``"last"``: each run's last complete record (runs stopped by ``train.until`` end at
        different epochs: the other records are marked incomplete, which every query skips,
        and epochs where no run has a record left are dropped).
    layers : hidden layers (values of the ``layer`` coordinate, 1 the lowest), optional

    Raises
    ------
    ActstatsValueError
        An epoch or layer not in the store (the message lists those there), or a run with
        no complete record for ``"last"``.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store()
    >>> select_records(ds, epochs="last", layers=[2]).sizes["epoch"], ds.sizes["epoch"] > 1
    (1, True)
    """
    if epochs is not None:
        if isinstance(epochs, str) and epochs == "last":
            complete = np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool)
            if not complete.any(axis=1).all():
                empty = ds["run"].values[~complete.any(axis=1)]
                raise _error(None, f"run(s) {_shown(empty)} have no complete record", "epochs")
            last = complete.shape[1] - 1 - np.argmax(complete[:, ::-1], axis=1)
            keep = np.zeros_like(complete)
            keep[np.arange(len(last)), last] = True
            ds = ds.assign(complete=(("run", "epoch"), keep)).isel(epoch=np.flatnonzero(keep.any(axis=0)))
        else:
            ds = _select_values(ds, "epoch", epochs, "epochs")
    if layers is not None:
        ds = _select_values(ds, "layer", layers, "layers")
    return ds


def _select_values(ds: xr.Dataset, dim: str, values, argument: str) -> xr.Dataset:
    there = np.asarray(ds[dim].values)
    wanted = [_convert(dim, v, there.dtype, argument) for v in _values(values)]
    if not wanted:
        raise _error(None, f"no {dim} given", argument)
    missing = [v for v in wanted if v not in set(there.tolist())]
    if missing:
        raise _error(None, f"no {dim} {_shown(missing)} in the store ({dim}s: {_shown(there)})", argument)
    return ds.isel({dim: np.flatnonzero(np.isin(there, wanted))})


def _where_text(where) -> str:
    return " and ".join(f"{key}={_shown(_values(value))}" for key, value in (where or {}).items())


# ------------------------------------------------------------------ the command line's text forms


def parse_where(text: str) -> tuple[str, list[str]]:
    """``--where KEY=VALUE[,VALUE…]`` → ``(KEY, [VALUE, …])``; ValueError if it is not of that form.

    The values stay text: :func:`select_runs` converts them to the coordinate's dtype.

    >>> parse_where("activation_fn=sigmoid,tanh")
    ('activation_fn', ['sigmoid', 'tanh'])
    """
    key, sep, values = text.partition("=")
    key = key.strip()
    parts = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key or not parts:
        raise ValueError(f"expected KEY=VALUE[,VALUE...], got {shorten(text)}")
    return key, parts


def parse_runs(text: str) -> list[int]:
    """``--runs 0,3,5`` → ``[0, 3, 5]``; ValueError if an item is not an integer.

    >>> parse_runs("0, 3,5")
    [0, 3, 5]
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"expected run labels such as 0,3,5, got {shorten(text)}")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected run labels such as 0,3,5, got {shorten(text)}") from None


def parse_epochs(text: str):
    """``--epochs last`` → ``"last"``; ``--epochs 0,10.5`` → ``[0.0, 10.5]``.

    >>> parse_epochs("last"), parse_epochs("0, 10.5")
    ('last', [0.0, 10.5])
    """
    if text.strip() == "last":
        return "last"
    return _parse_list(text, float, "last or epochs such as 0,10,100")


def parse_layers(text: str) -> list[int]:
    """``--layers 1,3`` → ``[1, 3]`` (1 is the lowest hidden layer).

    >>> parse_layers("1, 3")
    [1, 3]
    """
    return _parse_list(text, int, "hidden layers such as 1,3")


def _parse_list(text: str, convert, expected: str) -> list:
    """Comma-separated values of `text`, each through `convert`; ValueError saying `expected`."""
    try:
        values = [convert(p.strip()) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"expected {expected}, got {shorten(text)}")
    return values
