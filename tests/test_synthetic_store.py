"""actstats.synthetic.write_synthetic_store: large synthetic stores written chunk by chunk.

The generator feeds tests/benchmarks/bench_scale.py; here a store of a few MB is checked to
be a valid store (verify, the CLI, open_store), reproducible from its seed, and read by
actstats exactly as by plain zarr-python + numpy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from scipy import stats

import actstats
import actstats.store.schema
from actstats.cli import main as cli_main
from actstats.synthetic import write_synthetic_store

SHAPE = dict(runs=2, epochs=3, layers=4, samples=150, units=200)  # ~9 MB on disk


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("synthetic") / "s.zarr")
    return write_synthetic_store(path, **SHAPE, seed=7, activation_fn=["sigmoid", "tanh"])


def _arrays(path):
    group = zarr.open_group(path, mode="r")
    return {name: np.asarray(array[...]) for name, array in group.arrays()}


def test_store_is_valid(store, capsys):
    report = actstats.verify_store(store, progress=False)
    assert report.ok, report.lines()
    assert cli_main(["--no-progress", "verify", store]) == 0
    ds = actstats.open_store(store)
    assert dict(ds.activation.sizes) == {"run": 2, "epoch": 3, "layer": 4, "sample": 150, "unit": 200}
    assert dict(ds.weight.sizes) == {"run": 2, "epoch": 3, "layer": 4, "unit": 200, "fan_in": 200}
    assert ds.complete.values.all()
    assert (ds.width.values == 200).all() and (ds.depth.values == 4).all()
    assert ds.activation_fn.values.tolist() == ["sigmoid", "tanh"]
    assert (ds.split.values == "test").sum() == 30
    assert ds.epoch.values[0] == 0


def test_values(store):
    arrays = _arrays(store)
    act, pre = arrays["activation"], arrays["preactivation"]
    assert act.dtype == np.float32 and np.isfinite(act).all() and np.isfinite(pre).all()
    np.testing.assert_array_equal(act[0], actstats.activations.get_activation("sigmoid").function(pre[0]))
    np.testing.assert_array_equal(act[1], np.tanh(pre[1]))
    weight = arrays["weight"].astype(np.float64)
    assert np.isfinite(weight).all() and np.isfinite(arrays["bias"]).all()
    # layer index 2 is uniform (excess kurtosis -1.2), 3 Laplace (+3), 0 and 1 normal (0)
    kurtosis = stats.kurtosis(weight.reshape(2, 3, 4, -1), axis=-1)
    assert (np.abs(kurtosis[:, :, :2]) < 0.2).all()
    assert (np.abs(kurtosis[:, :, 2] + 1.2) < 0.1).all()
    assert (np.abs(kurtosis[:, :, 3] - 3) < 0.5).all()
    # epoch 0 weights ~ N(0, 1/fan_in)
    np.testing.assert_allclose(weight[:, 0].std(axis=(-1, -2)), 1 / np.sqrt(200), rtol=0.02)


def test_same_seed_same_store(store, tmp_path):
    again = write_synthetic_store(str(tmp_path / "again.zarr"), **SHAPE, seed=7, activation_fn=["sigmoid", "tanh"])
    first, second = _arrays(store), _arrays(again)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    other = write_synthetic_store(str(tmp_path / "other.zarr"), **SHAPE, seed=8, activation_fn=["sigmoid", "tanh"])
    assert not np.array_equal(_arrays(other)["activation"], first["activation"])
    with pytest.raises(FileExistsError):
        write_synthetic_store(again, **SHAPE, seed=7)
    write_synthetic_store(again, runs=1, epochs=1, layers=1, samples=5, units=3, overwrite=True)
    assert actstats.open_store(again).activation.shape == (1, 1, 1, 5, 3)


def test_saturation_equals_numpy(store):
    result = actstats.saturation(actstats.open_store(store), by=("run", "epoch", "layer", "split"))
    act = _arrays(store)["activation"].astype(np.float64)
    split = np.asarray(actstats.open_store(store)["split"].values).astype(str)
    bounds = {0: (0.0, 1.0), 1: (-1.0, 1.0)}
    fractions = {"fraction": [], "fraction_low": [], "fraction_high": []}
    for r in range(2):
        lower, upper = bounds[r]
        low = (act[r] <= lower + 0.05 * (upper - lower)).mean(axis=-1)  # (epoch, layer, sample)
        high = (act[r] >= upper - 0.05 * (upper - lower)).mean(axis=-1)
        for name, per_sample in (("fraction", low + high), ("fraction_low", low), ("fraction_high", high)):
            fractions[name].append(np.stack([per_sample[..., split == s].mean(axis=-1) for s in ("train", "test")], -1))
    assert result.split.values.tolist() == ["train", "test"]
    for name, expected in fractions.items():
        np.testing.assert_allclose(result[name].values, np.stack(expected), rtol=0, atol=1e-12, err_msg=name)
    # groups differ: from almost unsaturated to mostly saturated
    assert result.fraction.min() < 0.05 and result.fraction.max() > 0.8


def test_chunk_edges(tmp_path, monkeypatch):
    """Several chunks per (run, epoch, layer) slab, the last one partial (padded with NaN)."""
    monkeypatch.setattr(actstats.store.schema, "CHUNK_TARGET_BYTES", 7 * 4 * 10)  # 7 rows of 10 floats
    path = write_synthetic_store(str(tmp_path / "edges.zarr"), runs=1, epochs=2, layers=2, samples=23, units=10,
                                 activation_fn="tanh")
    group = zarr.open_group(path, mode="r")
    assert group["activation"].chunks == (1, 1, 1, 7, 10) and group["weight"].chunks == (1, 1, 1, 7, 10)
    assert actstats.verify_store(path, progress=False).ok
    act = np.asarray(group["activation"][...])
    assert np.isfinite(act).all() and np.isfinite(np.asarray(group["weight"][...])).all()
    np.testing.assert_array_equal(act, np.tanh(np.asarray(group["preactivation"][...])))
    assert len(os.listdir(os.path.join(path, "activation", "c", "0", "0", "0"))) == 4  # ceil(23 / 7)
