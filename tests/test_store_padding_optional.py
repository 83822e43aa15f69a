"""Stores without pre-activations (users who only have outputs): each claim says what it
needs; and values beyond a layer's declared width, a format error that verify lists and that
every read through open_store (hence every query) refuses, never silently leaves out."""

from __future__ import annotations

import os

import numpy as np
import pytest

import actstats
from actstats.errors import ActstatsError, StoreFormatError
from actstats.store import write_store
from actstats.synthetic import synthetic_store


@pytest.fixture(scope="module")
def outputs_only(tmp_path_factory):
    """Two runs (sigmoid, tanh) with activations, delta and weight_grad but no preactivation."""
    ds = synthetic_store(runs=2, depth=2, activation_fn=["sigmoid", "tanh"], train_accuracy=0.95, diverged=False)
    path = tmp_path_factory.mktemp("outputs") / "outputs.zarr"
    return write_store(path, ds.drop_vars("preactivation"))


def test_a_store_without_preactivation_opens_verifies_and_is_queried(outputs_only):
    ds = actstats.open_store(outputs_only)
    assert "preactivation" not in ds and actstats.verify_store(outputs_only, progress=False).ok
    assert np.isfinite(actstats.saturation(ds)["fraction"].values).all()
    compared = actstats.compare_splits(ds, n_permutations=99)
    assert np.isfinite(compared["difference"].values).all()
    assert np.isnan(compared["mean_abs_preactivation_train"].values).all()
    assert "no preactivation" in compared["mean_abs_preactivation_train"].attrs["description"]
    flow = actstats.gradient_flow(ds)
    assert np.isfinite(flow["delta_rms"].values).all() and np.isnan(flow["mean_derivative"].values).all()
    with pytest.raises(ActstatsError, match="preactivation"):
        actstats.attenuation(ds)


def test_each_claim_says_what_it_needs(outputs_only):
    from actstats.report import assess

    claims = {c.id: c for c in assess(actstats.open_store(outputs_only)).claims}
    for claim in ("C1", "C2", "C6"):  # activations (and the splits, the runs' functions) suffice
        assert claims[claim].verdict != "not testable", (claim, claims[claim].summary)
    assert claims["C4"].verdict == "not testable"
    assert claims["C4"].evidence["missing"] == (
        "the store has no preactivation (f'(z) needs z; capture: record.preactivation = true)")
    ds = actstats.open_store(outputs_only)
    without_delta = ds.drop_vars("delta")
    c4 = assess(without_delta, claims=["C4"]).claims[0]
    assert c4.evidence["missing"] == ("the store has no delta (each probe's back-propagated error; capture: "
                                      "record.delta = true) and no preactivation (f'(z) needs z; capture: "
                                      "record.preactivation = true)")


def _widen(path, name="activation", where=(0, 1, 0, 2, 5), value=0.5):
    """Write one value into the padding with plain zarr (as a writer that got `width` wrong)."""
    import zarr

    array = zarr.open_group(str(path), mode="r+")[name]
    array[where] = value


@pytest.fixture
def padded(tmp_path):
    """A store whose run 0 has layers of width 4 of 6 units, then a value beyond it."""
    ds = synthetic_store(runs=2, depth=2, width=[4, 6], train_accuracy=0.95, diverged=False)
    path = write_store(tmp_path / "padded.zarr", ds)
    assert actstats.verify_store(path, progress=False).ok
    _widen(path)
    return path


def test_verify_lists_values_beyond_a_width_as_a_format_error(padded, capsys):
    from actstats.cli import main

    report = actstats.verify_store(padded, progress=False)
    assert not report.ok
    beyond = [line for line in report.lines() if "unit 5 of layer 1" in line]
    assert beyond == ["damaged: variable 'activation' holds a value at unit 5 of layer 1, whose width is 4 (run 0, "
                      "epoch 1): a format error — padding must be NaN; the data is wider than 'width' (or "
                      "'layer_fan_in') says, and readers that trust it would leave values out (chunk (0, 1, 0, 0, 0))"]
    assert main(["--no-progress", "verify", str(padded)]) == 3
    assert "unit 5 of layer 1, whose width is 4" in capsys.readouterr().out


def test_reading_it_through_open_store_refuses_it(padded):
    ds = actstats.open_store(padded)  # opening reads no data
    message = (r"variable 'activation' holds a value at unit 5 of layer 1, whose width is 4 \(run 0, epoch 1\): a "
               r"format error")
    with pytest.raises(StoreFormatError, match=message):
        ds["activation"].isel(epoch=1).values
    with pytest.raises(StoreFormatError, match=message):
        actstats.saturation(ds, by=("run", "epoch", "layer"))
    assert np.isfinite(ds["activation"].isel(epoch=0, layer=0).values[..., :4]).all()  # the rest reads


def test_the_queries_refuse_it_in_memory_too(padded):
    """A dataset in memory (no open_store in between) is checked where the queries read it."""
    ds = actstats.open_store(padded)
    loaded = ds.drop_vars("activation").assign(activation=(ds["activation"].dims, np.full(ds["activation"].shape, 0.5,
                                                                                       dtype=np.float32)))
    with pytest.raises(StoreFormatError, match="holds a value at unit 4 of layer"):
        actstats.saturation(loaded)
    with pytest.raises(StoreFormatError, match="holds a value at unit 4 of layer"):
        actstats.bimodality(loaded)


def test_weights_beyond_the_fan_in_are_refused(tmp_path):
    ds = synthetic_store(runs=2, depth=2, width=[4, 6], train_accuracy=0.95, diverged=False)
    path = write_store(tmp_path / "w.zarr", ds)
    _widen(path, "weight", (0, 1, 1, 2, 5))  # layer 2's inputs are layer 1's 4 units: column 5 is padding
    lines = actstats.verify_store(path, progress=False).lines()
    assert any("variable 'weight' holds a value at input column 5 of layer 2, whose fan-in is 4" in line
               for line in lines), lines
    with pytest.raises(StoreFormatError, match="input column 5 of layer 2, whose fan-in is 4"):
        actstats.open_store(path)["weight"].values
    assert os.path.isdir(path)


def test_a_conv_dump_has_one_weight_row_a_channel(tmp_path):
    """write_store with layer_weight_rows (a conv layer: 2 channels × 4 positions = 8 units):
    weight rows beyond the channels are padding, refused when they hold values."""
    from actstats.errors import ActstatsValueError

    neurons = ("run", "epoch", "layer", "sample", "unit")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 1, 1, 5, 8)).astype("float32")
    weight = np.full((1, 1, 1, 8, 8), np.nan, "float32")
    weight[0, 0, 0, :2, :4] = rng.normal(size=(2, 4))
    bias = np.full((1, 1, 1, 8), np.nan, "float32")
    bias[0, 0, 0, :2] = 0.1
    data = {"activation": (neurons, np.tanh(z)), "weight": (("run", "epoch", "layer", "unit", "fan_in"), weight),
            "bias": (("run", "epoch", "layer", "unit"), bias), "input": (("sample", "feature"), rng.random((5, 4))),
            "epoch": ("epoch", [0.0]), "split": ("sample", ["train"] * 3 + ["test"] * 2),
            "activation_fn": ("run", ["tanh"]), "layer_weight_rows": (("run", "layer"), [[2]]),
            "layer_positions": (("run", "layer"), [[4]]), "layer_fan_in": (("run", "layer"), [[4]])}
    path = write_store(tmp_path / "conv.zarr", data)
    ds = actstats.open_store(path)
    assert ds["width"].values.tolist() == [[8]] and ds["layer_weight_rows"].values.tolist() == [[2]]
    assert actstats.verify_store(path, progress=False).ok
    assert int(actstats.weight_normality(ds)["n"].values.ravel()[0]) == 8  # 2 rows × 4 inputs
    weight[0, 0, 0, 5, 1] = 3.0  # a row beyond the channels
    with pytest.raises(ActstatsValueError, match="variable 'weight' holds values beyond its width 2"):
        write_store(tmp_path / "wider.zarr", data)
