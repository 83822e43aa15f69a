"""actstats.write_store: a store from an xarray.Dataset or numpy arrays with named dims,
checked against the schema first (one line naming what is wrong, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import actstats
from actstats.errors import ActstatsError, ActstatsValueError
from actstats.store import VARIABLES, write_store
from actstats.synthetic import synthetic_store, write_synthetic_store

from conftest import ROOT

NEURONS = ("run", "epoch", "layer", "sample", "unit")


def arrays(runs=1, epochs=2, layers=2, samples=10, units=4, features=3, seed=0):
    """Named arrays of tanh layers, all units present."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(runs, epochs, layers, samples, units)).astype("float32")
    fan_in = max(units, features)
    weight = np.full((runs, epochs, layers, units, fan_in), np.nan, "float32")
    weight[..., 0, :, :features] = rng.normal(size=(runs, epochs, units, features))
    weight[..., 1:, :, :units] = rng.normal(size=(runs, epochs, layers - 1, units, units))
    return {
        "activation": (NEURONS, np.tanh(z)),
        "preactivation": (NEURONS, z),
        "weight": (("run", "epoch", "layer", "unit", "fan_in"), weight),
        "bias": (("run", "epoch", "layer", "unit"), np.zeros((runs, epochs, layers, units), "float32")),
        "input": (("sample", "feature"), rng.random((samples, features))),
        "epoch": ("epoch", np.arange(epochs, dtype=float)),
        "split": ("sample", ["train"] * (samples - 3) + ["test"] * 3),
        "activation_fn": ("run", ["tanh"] * runs),
    }


def assert_same_data(a, b) -> None:
    for name in list(VARIABLES):
        if name in a.variables:
            np.testing.assert_array_equal(np.asarray(a[name].values), np.asarray(b[name].values), err_msg=name)
    for name in a.coords:
        assert np.asarray(a[name].values).tolist() == np.asarray(b[name].values).tolist(), name


def test_a_dataset_round_trips(tmp_path):
    ds = synthetic_store(runs=2, depth=[2, 1], width=[6, 4], activation_fn=["sigmoid", "relu"], train_accuracy=0.9,
                         diverged=False)
    path = write_store(tmp_path / "s.zarr", ds)
    stored = actstats.open_store(path)
    assert_same_data(ds, stored)
    assert set(ds.data_vars) == set(stored.data_vars)
    report = actstats.verify_store(path, progress=False)
    assert report.ok and report.manifest and report.records_without_manifest == 0, report.lines()


def test_a_store_read_lazily_is_written_again(tmp_path):
    source = write_synthetic_store(str(tmp_path / "a.zarr"), runs=2, epochs=3, layers=2, samples=12, units=5,
                                   training={"train_accuracy": 0.8})
    ds = actstats.open_store(source)  # dask-backed
    copy = write_store(tmp_path / "b.zarr", ds)
    assert_same_data(actstats.open_store(source), actstats.open_store(copy))
    assert actstats.open_store(copy).attrs["sweep"] == ds.attrs["sweep"]


def test_named_arrays_with_defaults_and_padding(tmp_path):
    data = arrays(runs=2, epochs=3)
    activation, pre = data["activation"][1].copy(), data["preactivation"][1].copy()
    activation[1, :, 1, :, 3:] = pre[1, :, 1, :, 3:] = np.nan  # run 1's layer 2 has 3 units
    activation[0, 2] = pre[0, 2] = np.nan  # run 0 has no record at epoch 2
    weight = data["weight"][1].copy()
    weight[1, :, 1, 3:] = np.nan
    weight[1, :, 1, :, 4:] = np.nan
    bias = data["bias"][1].copy()
    bias[1, :, 1, 3:] = np.nan
    data |= {"bias": (data["bias"][0], bias), "activation": (NEURONS, activation), "preactivation": (NEURONS, pre),
             "weight": (data["weight"][0], weight),
             # dims in another order are put in the format's
             "input": (("feature", "sample"), data["input"][1].T)}
    path = write_store(tmp_path / "n.zarr", data)
    ds = actstats.open_store(path)
    assert ds["width"].values.tolist() == [[4, 4], [4, 3]]
    assert ds["depth"].values.tolist() == [2, 2]
    assert ds["complete"].values.tolist() == [[True, True, False], [True, True, True]]
    assert ds["step"].values.tolist() == [[0, 1, -1], [0, 1, 2]]  # no record: not scheduled
    assert ds["label"].values.tolist() == [-1] * 10 and ds["source_index"].values.tolist() == [*range(7), *range(3)]
    assert ds["init"].values.tolist() == ["unknown", "unknown"] and np.isnan(ds["lr"].values).all()
    np.testing.assert_array_equal(ds["input"].values, data["input"][1].T.astype("float32"))
    report = actstats.verify_store(path, progress=False)
    assert report.ok, report.lines()
    assert actstats.saturation(ds, by=("run",))["n_values"].values.tolist() == [2 * 10 * 8, 3 * 10 * (4 + 3)]


def test_layer_activation_functions_make_a_mixed_run(tmp_path):
    data = arrays(layers=2) | {"layer_activation_fn": (("run", "layer"), [["tanh", "tanh"]])}
    del data["activation_fn"]
    ds = actstats.open_store(write_store(tmp_path / "one.zarr", data))
    assert ds["activation_fn"].values.tolist() == ["tanh"]
    z = data["preactivation"][1]
    data["activation"] = (NEURONS, np.stack([np.tanh(z[:, :, 0]), np.maximum(z[:, :, 1], 0)], axis=2))
    data["layer_activation_fn"] = (("run", "layer"), [["tanh", "relu"]])
    ds = actstats.open_store(write_store(tmp_path / "two.zarr", data))
    assert ds["activation_fn"].values.tolist() == ["mixed"]
    assert ds["layer_activation_fn"].values.tolist() == [["tanh", "relu"]]
    assert np.isfinite(actstats.saturation(ds, by=("layer",))["fraction"].values).all()


def test_the_example_writes_the_same_store_as_plain_zarr(tmp_path):
    """docs/examples/write_store_from_arrays.py: the plain-zarr example's store, in a few lines."""
    made = {}
    for name in ("write_store_from_arrays.py", "write_store_without_actstats.py"):
        target = tmp_path / name.replace(".py", ".zarr")
        result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "examples", name), str(target)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        made[name] = actstats.open_store(target)
    a, b = made.values()
    for name in ("activation", "preactivation", "weight", "bias", "input", "epoch"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6, err_msg=name)
    for name in ("width", "depth", "split", "label", "activation_fn", "complete"):
        assert a[name].values.tolist() == b[name].values.tolist(), name
    assert actstats.verify_store(str(tmp_path / "write_store_from_arrays.zarr"), progress=False).ok


def _without(name):
    data = arrays()
    del data[name]
    return data


def _replace(name, value):
    return arrays() | {name: value}


def _beyond_width():
    data = arrays() | {"width": (("run", "layer"), [[4, 3]])}  # layer 2 has 3 units
    for name in ("activation", "preactivation"):
        data[name][1][:, :, 1, :, 3] = np.nan
    data["weight"][1][:, :, 1, 3] = np.nan
    data["bias"][1][:, :, 1, 3] = np.nan
    data["activation"][1][0, 0, 1, 2, 3] = 0.5  # one value where unit 4 does not exist
    return data


@pytest.mark.parametrize("data, message", [
    (_without("input"), "required variable 'input' (sample, feature) is missing"),
    (_without("epoch"), "coordinate 'epoch' is missing (epochs elapsed at each record, 0 = initialisation)"),
    (_without("activation_fn"), "coordinate 'activation_fn' (run) is missing"),
    (arrays() | {"activations": arrays()["activation"]},
     "'activations' is not a variable or coordinate of the format (did you mean 'activation'?); drop it"),
    (_replace("bias", (("run", "epoch", "unit"), np.zeros((1, 2, 4)))),
     "variable 'bias' has dims (run, epoch, unit), expected (run, epoch, layer, unit)"),
    (_replace("bias", (("run", "epoch", "layer", "unit"), np.zeros((1, 2, 2, 5)))),
     "dimension 'unit' is 5 in 'bias' but 4 in 'activation'"),
    (_replace("activation_fn", ("run", ["swish"])),
     "coordinate 'activation_fn' has 'swish' at run 0: not an activation function actstats knows"),
    (_replace("split", ("sample", ["train"] * 9 + ["val"])),
     "coordinate 'split' holds 'val'; expected 'train' or 'test' for each sample"),
    (_replace("epoch", ("epoch", [1.0, 0.0])), "coordinate 'epoch' must increase along the epoch dimension"),
    (arrays() | {"depth": ("run", [1])}, "run 0: depth 1 and width [4, 4] disagree"),
    (_beyond_width(), "variable 'activation' holds values beyond its width 3 at run 0, epoch index 0, layer 2"),
    (_replace("input", ("sample", np.zeros(10))), "variable 'input' has dims (sample), expected (sample, feature)"),
    ("not data", "expected an xarray.Dataset or a mapping of names to (dims, array), got str"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, data, message):
    with pytest.raises(ActstatsValueError) as error:
        write_store(tmp_path / "bad.zarr", data)
    text = str(error.value)
    assert text.startswith("write_store: ") and message in text, text
    assert "\n" not in text
    assert not os.path.exists(tmp_path / "bad.zarr")


def test_an_existing_path_is_refused_unless_overwrite(tmp_path):
    path = write_store(tmp_path / "e.zarr", arrays())
    with pytest.raises(ActstatsError, match=r"e.zarr: exists; pass overwrite=True to replace it"):
        write_store(path, arrays(seed=1))
    write_store(path, arrays(seed=1), overwrite=True)
    np.testing.assert_array_equal(actstats.open_store(path)["input"].values,
                                  arrays(seed=1)["input"][1].astype("float32"))
