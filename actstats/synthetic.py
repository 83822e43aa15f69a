"""Small in-memory datasets laid out like a store, for examples, tests and trying queries.

:func:`synthetic_store` returns an ``xarray.Dataset`` with the variables, dimensions and
coordinates of the "actstats.store/1" format (docs/store-format.md), filled by a forward
pass of random networks, or with activations and weights drawn from given distributions.
Nothing is trained and nothing is written to disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from actstats.activations import get_activation
from actstats.store import SCHEMA

__all__ = ["synthetic_store"]

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

_TINY = 1e-12  # keeps the inverse finite where a drawn activation sits on a bound
_INVERSE = {
    "sigmoid": lambda h: (lambda c: np.log(c) - np.log1p(-c))(np.clip(h, _TINY, 1 - _TINY)),
    "tanh": lambda h: np.arctanh(np.clip(h, -1 + _TINY, 1 - _TINY)),
    "softsign": lambda h: (lambda c: c / (1 - np.abs(c)))(np.clip(h, -1 + _TINY, 1 - _TINY)),
}


def _per_run(value, runs: int, name: str) -> list:
    if isinstance(value, (str, int, np.integer)):
        return [value] * runs
    value = list(value)
    if len(value) != runs:
        raise ValueError(f"{name}: expected one value per run ({runs}), got {len(value)}")
    return value


def synthetic_store(
    *,
    runs: int = 1,
    epochs: Sequence[float] = (0.0, 1.0),
    depth: int | Sequence[int] = 2,
    width: int | Sequence[int] = 16,
    units: int | None = None,
    samples: tuple[int, int] = (30, 20),
    activation_fn: str | Sequence[str] = "sigmoid",
    activation: Sampler | None = None,
    weight: Sampler | None = None,
    weight_scale: float = 1.0,
    gradients: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """A small dataset in the store layout, numpy-backed.

    Parameters
    ----------
    runs : int
        Number of runs.
    epochs : sequence of float
        The epoch coordinate (0 = at initialisation).
    depth, width : int or one per run
        Hidden layers and their width; runs with fewer or narrower layers than the
        largest get NaN padding, and the ``width`` coordinate says what exists.
    units : int, optional
        Size of the ``unit``, ``fan_in`` and ``feature`` dimensions (default: the
        largest width). The probe inputs have ``units`` features.
    samples : (int, int)
        Number of training and held-out probe samples.
    activation_fn : str or one per run
        sigmoid, tanh, relu or softsign.
    activation : callable, optional
        ``activation(rng, shape)`` gives the activations directly (on the activation
        function's scale) instead of a forward pass; the pre-activations are then its
        inverse (NaN for relu).
    weight : callable, optional
        ``weight(rng, shape)`` draws each layer's weights at epoch 0 (default: normal with
        standard deviation ``weight_scale / sqrt(fan_in)``). Later epochs are
        ``W_0 (1 + epoch / 2)``.
    weight_scale : float
    gradients : bool
        Include ``delta`` and ``weight_grad`` (random normal values, for gradient_flow).
    seed : int

    Returns
    -------
    xarray.Dataset
        Every value of a (run, epoch) record is present and ``complete`` is True.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=2, depth=[2, 1])
    >>> dict(ds.activation.sizes)
    {'run': 2, 'epoch': 2, 'layer': 2, 'sample': 50, 'unit': 16}
    >>> bool(ds.activation.sel(run=1, layer=2).isnull().all())
    True
    """
    rng = np.random.default_rng(seed)
    depths = [int(d) for d in _per_run(depth, runs, "depth")]
    widths = [int(w) for w in _per_run(width, runs, "width")]
    functions = [str(f) for f in _per_run(activation_fn, runs, "activation_fn")]
    epochs = np.asarray(epochs, dtype=float)
    n_layers = max(depths)
    n_units = int(units) if units is not None else max(widths)
    n_train, n_test = samples
    n_samples = n_train + n_test
    n_epochs = epochs.size
    x = rng.random((n_samples, n_units)).astype("float32")

    shape5 = (runs, n_epochs, n_layers, n_samples, n_units)
    act = np.full(shape5, np.nan, "float32")
    pre = np.full(shape5, np.nan, "float32")
    delta = np.full(shape5, np.nan, "float32")
    weights = np.full((runs, n_epochs, n_layers, n_units, n_units), np.nan, "float32")
    grads = np.full_like(weights, np.nan)
    bias = np.full((runs, n_epochs, n_layers, n_units), np.nan, "float32")
    width_coord = np.zeros((runs, n_layers), "int64")
    for r in range(runs):
        f = get_activation(functions[r])
        width_coord[r, : depths[r]] = widths[r]
        initial = []
        for layer in range(depths[r]):
            fan_in = n_units if layer == 0 else widths[r]
            shape = (widths[r], fan_in)
            if weight is None:
                w0 = rng.normal(0.0, weight_scale / np.sqrt(fan_in), shape)
            else:
                w0 = np.asarray(weight(rng, shape), dtype=float)
            initial.append(w0)
        for e, epoch in enumerate(epochs):
            h = x.astype(float)
            for layer in range(depths[r]):
                w = initial[layer] * (1 + epoch / 2)
                fan_in = w.shape[1]
                weights[r, e, layer, : widths[r], :fan_in] = w
                bias[r, e, layer, : widths[r]] = 0.0
                grads[r, e, layer, : widths[r], :fan_in] = rng.normal(0, 10.0 ** -(depths[r] - layer), w.shape)
                delta[r, e, layer, :, : widths[r]] = rng.normal(0, 10.0 ** -(depths[r] - layer), (n_samples, widths[r]))
                if activation is None:
                    z = h @ w.T
                    h = f.function(z)
                else:
                    h = np.asarray(activation(rng, (n_samples, widths[r])), dtype=float)
                    inverse = _INVERSE.get(f.name)
                    with np.errstate(all="ignore"):
                        z = inverse(h) if inverse else np.full(h.shape, np.nan)
                pre[r, e, layer, :, : widths[r]] = z
                act[r, e, layer, :, : widths[r]] = h

    dims5 = ("run", "epoch", "layer", "sample", "unit")
    dimsw = ("run", "epoch", "layer", "unit", "fan_in")
    data_vars = {
        "activation": (dims5, act),
        "preactivation": (dims5, pre),
        "weight": (dimsw, weights),
        "bias": (("run", "epoch", "layer", "unit"), bias),
        "complete": (("run", "epoch"), np.ones((runs, n_epochs), bool)),
        "input": (("sample", "feature"), x),
    }
    if gradients:
        data_vars["delta"] = (dims5, delta)
        data_vars["weight_grad"] = (dimsw, grads)
    coords = {
        "run": np.arange(runs),
        "epoch": epochs,
        "layer": np.arange(1, n_layers + 1),
        "unit": np.arange(n_units),
        "fan_in": np.arange(n_units),
        "class": np.arange(2),
        "feature": np.arange(n_units),
        "sample": np.arange(n_samples),
        "step": (("run", "epoch"), np.tile(np.round(epochs * 100).astype("int64"), (runs, 1))),
        "split": ("sample", np.array(["train"] * n_train + ["test"] * n_test)),
        "label": ("sample", rng.integers(0, 2, n_samples)),
        "source_index": ("sample", np.arange(n_samples)),
        "width": (("run", "layer"), width_coord),
        "depth": ("run", np.array(depths, dtype="int64")),
        "activation_fn": ("run", np.array(functions)),
        "init": ("run", np.array(["synthetic"] * runs)),
        "optimizer": ("run", np.array(["none"] * runs)),
        "lr": ("run", np.zeros(runs)),
        "batch_size": ("run", np.ones(runs, "int64")),
        "seed": ("run", np.full(runs, seed, "int64")),
        "dataset": ("run", np.array(["synthetic"] * runs)),
        "config": ("run", np.array(["{}"] * runs)),
    }
    attrs = {
        "schema": SCHEMA,
        "created_at": "1970-01-01T00:00:00+00:00",
        "creation_library": "actstats.synthetic",
        "creation_library_version": "0",
        "torch_version": "",
        "sweep": json.dumps({"synthetic": True, "seed": seed}),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
