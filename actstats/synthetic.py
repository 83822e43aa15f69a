"""Small in-memory datasets laid out like a store, for examples, tests and trying queries.

:func:`synthetic_store` returns an ``xarray.Dataset`` with the variables, dimensions and
coordinates of the "actstats.store/2" format (docs/store-format.md), filled by a forward
pass of random networks, or with activations and weights drawn from given distributions.
Nothing is trained and nothing is written to disk.

:func:`write_synthetic_store` writes a store of any size to disk in the same format, chunk by
chunk with memory bounded by a few chunks, for benchmarks of out-of-core queries
(tests/benchmarks/bench_scale.py).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from actstats.activations import get_activation
from actstats.store import SCHEMA

__all__ = ["synthetic_store", "write_synthetic_store"]

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

_TINY = 1e-12  # keeps the inverse finite where a drawn activation sits on a bound


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
    train_accuracy=None,
    diverged=None,
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
    train_accuracy : float, one per run, or an array (run, epoch), optional
        Planted training accuracies: writes ``train_accuracy`` and a stand-in
        ``train_loss`` = -log(accuracy) (nothing is trained; for the ``training`` query's
        tests). Without it the dataset has neither variable.
    diverged : bool, one per run, or an array (run, epoch), optional
        Writes the ``diverged`` flags as given (without it there is no ``diverged``).
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
                    with np.errstate(all="ignore"):
                        z = (f.inverse(np.clip(h, f.lower + _TINY, f.upper - _TINY)) if f.inverse
                             else np.full(h.shape, np.nan))
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
    if train_accuracy is not None:
        accuracy = _per_record(train_accuracy, runs, n_epochs, "train_accuracy").astype("float32")
        data_vars["train_accuracy"] = (("run", "epoch"), accuracy)
        with np.errstate(divide="ignore", invalid="ignore"):
            data_vars["train_loss"] = (("run", "epoch"), -np.log(accuracy))
    if diverged is not None:
        data_vars["diverged"] = (("run", "epoch"), _per_record(diverged, runs, n_epochs, "diverged").astype(bool))
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


# ------------------------------------------------------------------ large stores on disk


def _per_record(value, runs: int, n_epochs: int, name: str) -> np.ndarray:
    """A scalar, one value per run, or a (run, epoch) array, as a (run, epoch) array."""
    value = np.asarray(value)
    if value.ndim == 1:
        if value.size != runs:
            raise ValueError(f"{name}: expected one value per run ({runs}), got {value.size}")
        value = value[:, None]
    elif value.ndim > 2 or (value.ndim == 2 and value.shape != (runs, n_epochs)):
        raise ValueError(f"{name}: expected a scalar, one value per run or a ({runs}, {n_epochs}) array")
    return np.array(np.broadcast_to(value, (runs, n_epochs)))


def _epoch_values(epochs) -> np.ndarray:
    if isinstance(epochs, (int, np.integer)):
        if epochs < 1:
            raise ValueError(f"epochs: at least 1, got {epochs}")
        return np.r_[0.0, np.geomspace(0.01, 10.0, int(epochs) - 1)] if epochs > 1 else np.zeros(1)
    return np.asarray(epochs, dtype=np.float64)


def _standard_normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def write_synthetic_store(
    path: str | os.PathLike,
    *,
    runs: int,
    epochs: int | Sequence[float],
    layers: int,
    samples: int,
    units: int,
    seed: int = 0,
    activation_fn: str | Sequence[str] = "sigmoid",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    training: dict | None = None,
) -> str:
    """Write a synthetic store of any size to disk, chunk by chunk.

    Every required variable of the format is written (``activation``, ``preactivation``,
    ``weight``, ``bias``, ``complete``, ``input``) with every coordinate; each run has
    ``layers`` hidden layers of ``units`` units (no padding), ``units`` input features, and
    every record is complete. Memory stays at a few (run, epoch, layer) slabs whatever the
    store's size, and values are drawn as float32, so writing runs at the speed of the
    random number generator and the disk.

    Content, for run r, epoch index e (progress t = e / (E - 1)) and layer l (0-based):

    * pre-activations z = mu + sigma (N(0, 1) + shift of the sample), with
      sigma = 0.3 + a_r (0.5 + 7.5 t)(1 + l / 2) and mu = b_r t (l + 1), where a_r ~ U(0.5, 1.5)
      and b_r ~ U(-1, 1) per run and the sample shifts ~ N(0, 0.25²) per store: saturation
      grows with epoch and depth, from almost none to most values, towards one bound or
      the other by run;
    * activation = f(z) in float32 with the run's ``activation_fn``;
    * weights: N(0, s² / fan_in) with s = 1 + a_r t (l + 1), except layers with
      l % 4 == 2 (uniform) and l % 4 == 3 (Laplace), of the same standard deviation;
      biases N(0, 0.1²).

    Each (run, epoch, layer) slab has its own generator, seeded by (seed, r, e, l): the
    values do not depend on the order of writing, and the same arguments give the same store.

    Parameters
    ----------
    path : str or path-like
        A local directory; must not exist unless ``overwrite``.
    runs, layers, samples, units : int
        Sizes of the run, layer, sample and unit (= fan_in = feature) dimensions. The last
        ``samples // 5`` samples are held-out probes (``split == "test"``).
    epochs : int or sequence of float
        The number of recording moments (0, then log-spaced from 0.01 to 10), or the epoch
        coordinate itself.
    seed : int
    activation_fn : str or one per run
        sigmoid, tanh, relu or softsign.
    progress : callable, optional
        ``progress(bytes_written, bytes_total)`` after each (run, epoch, layer) slab.
    overwrite : bool
        Remove a store at ``path`` first.
    training : dict, optional
        Planted ``train_accuracy``, ``test_accuracy``, ``train_loss`` and/or ``test_loss``:
        each a scalar, one value per run or a (run, epoch) array, written as given (float32);
        the store has 10 classes. Without it the store has none of these variables.

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import actstats, tempfile, os
    >>> from actstats.synthetic import write_synthetic_store
    >>> path = write_synthetic_store(os.path.join(tempfile.mkdtemp(), "s.zarr"), runs=2, epochs=3,
    ...                              layers=2, samples=20, units=8)
    >>> dict(actstats.open_store(path).activation.sizes)
    {'run': 2, 'epoch': 3, 'layer': 2, 'sample': 20, 'unit': 8}
    >>> actstats.verify_store(path, progress=False).ok
    True
    """
    import zarr

    from actstats.store import StoreLayout, canonical_json, create_store
    from actstats.store.chunks import ChunkFiles
    from actstats.store.manifest import log_chunk_writes, write_record_manifest

    path = os.fspath(path)
    epoch_values = _epoch_values(epochs)
    n_epochs = epoch_values.size
    functions = [str(f) for f in _per_run(activation_fn, runs, "activation_fn")]
    act_functions = [get_activation(f) for f in functions]
    if min(runs, layers, samples, units) < 1:
        raise ValueError("runs, layers, samples and units must be at least 1")
    if os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
        shutil.rmtree(path)

    n_test = samples // 5
    rng = np.random.default_rng([seed, 2**31])
    run_scale = rng.uniform(0.5, 1.5, runs)
    run_shift = rng.uniform(-1.0, 1.0, runs)
    sample_shift = (0.25 * _standard_normal(rng, (samples, 1))).astype(np.float32)
    x = rng.random((samples, units), dtype=np.float32)
    parameters = {"runs": runs, "epochs": epoch_values.tolist(), "layers": layers, "samples": samples,
                  "units": units, "seed": seed, "activation_fn": functions}
    unknown = set(training or {}) - {"train_accuracy", "test_accuracy", "train_loss", "test_loss"}
    if unknown:
        raise ValueError(f"training: not a training variable: {', '.join(sorted(unknown))}")
    planted = {name: _per_record(value, runs, n_epochs, name).astype(np.float32)
               for name, value in (training or {}).items()}
    layout = StoreLayout(n_runs=runs, epochs=tuple(epoch_values.tolist()), n_layers=layers, n_units=units,
                         n_fan_in=units, n_classes=10, n_features=units, n_samples=samples,
                         optional=frozenset(planted) | {"preactivation"})
    coords = {
        "run": np.arange(runs),
        "epoch": epoch_values,
        "layer": np.arange(1, layers + 1),
        "unit": np.arange(units),
        "fan_in": np.arange(units),
        "class": np.arange(10),
        "feature": np.arange(units),
        "sample": np.arange(samples),
        "step": np.tile(np.round(epoch_values * 100).astype(np.int64), (runs, 1)),
        "split": np.array(["train"] * (samples - n_test) + ["test"] * n_test),
        "label": np.arange(samples) % 10,
        "source_index": np.arange(samples),
        "width": np.full((runs, layers), units, dtype=np.int64),
        "depth": np.full(runs, layers, dtype=np.int64),
        "activation_fn": np.array(functions),
        "init": np.array(["synthetic"] * runs),
        "optimizer": np.array(["none"] * runs),
        "lr": np.zeros(runs),
        "batch_size": np.ones(runs, dtype=np.int64),
        "seed": np.full(runs, seed, dtype=np.int64),
        "dataset": np.array(["synthetic"] * runs),
        "config": np.array([canonical_json({**parameters, "run": r}) for r in range(runs)]),
    }
    attributes = {"torch_version": "", "sweep": canonical_json({"write_synthetic_store": parameters})}
    create_store(path, layout, coords, attributes, x)

    group = zarr.open_group(path, mode="r")
    files = {name: ChunkFiles(path, name, group[name], fsync=False)
             for name in ("activation", "preactivation", "weight", "bias", "complete", *planted)}
    log_chunk_writes(files)  # for each record's manifest (actstats.store.manifest)
    slab = samples * units * 4
    total = runs * n_epochs * layers * (2 * slab + units * units * 4)
    done = 0
    for r in range(runs):
        f = act_functions[r].function
        for e in range(n_epochs):
            t = e / (n_epochs - 1) if n_epochs > 1 else 0.0
            bias = np.empty((layers, units), dtype=np.float32)
            for l in range(layers):
                slab_rng = np.random.default_rng([seed, r, e, l])
                sigma = np.float32(0.3 + run_scale[r] * (0.5 + 7.5 * t) * (1 + l / 2))
                mu = np.float32(run_shift[r] * t * (l + 1))
                z = _standard_normal(slab_rng, (samples, units))
                z += sample_shift
                z *= sigma
                z += mu
                with np.errstate(over="ignore"):
                    h = np.asarray(f(z), dtype=np.float32)
                files["preactivation"].write_block((r, e, l), z)
                files["activation"].write_block((r, e, l), h)
                del z, h
                std = np.float32((1 + run_scale[r] * t * (l + 1)) / np.sqrt(units))
                if l % 4 == 2:  # uniform on (-a, a): std a / sqrt(3)
                    w = slab_rng.random((units, units), dtype=np.float32)
                    w -= np.float32(0.5)
                    w *= np.float32(2 * np.sqrt(3)) * std
                elif l % 4 == 3:  # Laplace of scale b: std b sqrt(2)
                    w = slab_rng.standard_exponential((units, units), dtype=np.float32)
                    w *= np.where(slab_rng.random((units, units), dtype=np.float32) < 0.5,
                                  np.float32(-1), np.float32(1))
                    w *= std / np.float32(np.sqrt(2))
                else:
                    w = _standard_normal(slab_rng, (units, units))
                    w *= std
                files["weight"].write_block((r, e, l), w)
                bias[l] = np.float32(0.1) * _standard_normal(slab_rng, units)
                del w
                done += 2 * slab + units * units * 4
                if progress is not None:
                    progress(done, total)
            files["bias"].write_block((r, e), bias)
        for name, values in planted.items():
            files[name].write_block((r, 0), values[r][None])
        for e in range(n_epochs):  # each record's manifest, before `complete` vouches for it
            write_record_manifest(path, files, r, e, {name: values[r][e] for name, values in planted.items()},
                                  fsync=False)
        # last: the records of this run are all on disk
        files["complete"].write_block((r, 0), np.ones((1, n_epochs), dtype=bool))
    return path
