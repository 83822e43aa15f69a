"""Conv layers recorded by capture.Recorder: the README's small CNN on the bundled digits runs as
printed; a conv layer's units are its channel × position outputs (every value kept, the probe
the independent sample), its weight one row a channel; saturation equals a plain count over all
channels and positions; the weights, biases and deltas are the model's."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

import actstats

from conftest import ROOT


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """The README's CNN example, run as printed, in a temporary directory; its namespace."""
    import actstats.capture.recorder

    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("**A small CNN.**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    saved, actstats.capture.recorder.FSYNC = actstats.capture.recorder.FSYNC, False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cnn"))
    try:
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
        namespace["path"] = os.path.abspath("cnn.zarr")
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
        actstats.capture.recorder.FSYNC = saved
    return namespace


def test_the_store_maps_channels_and_positions_to_units(cnn):
    path = cnn["path"]
    ds = actstats.open_store(path)
    assert actstats.verify_store(path, progress=False).ok and bool(ds["complete"].all())
    assert ds["width"].values.tolist() == [[6 * 64, 8 * 64, 32]]
    assert ds["layer_weight_rows"].values.tolist() == [[6, 8, 32]]
    assert ds["layer_positions"].values.tolist() == [[64, 64, 1]]
    assert ds["layer_fan_in"].values.tolist() == [[1 * 9, 6 * 9, 128]]
    model, x = cnn["model"], cnn["x"]
    conv = model[2]
    last = ds.isel(run=0, epoch=-1)
    np.testing.assert_array_equal(last["weight"].isel(layer=1).values[:8, :54],
                                  conv.weight.detach().reshape(8, 54).numpy())
    np.testing.assert_array_equal(last["bias"].isel(layer=1).values[:8], conv.bias.detach().numpy())
    assert np.isnan(last["weight"].isel(layer=1).values[8:]).all()  # one row a channel: the rest padding
    with torch.no_grad():
        z = model[:3](x[:300]).reshape(300, -1).numpy()  # channel-major, then positions
    np.testing.assert_allclose(last["preactivation"].isel(layer=1).values[:300, :512], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last["activation"].isel(layer=1).values[:300, :512], np.tanh(z), atol=1e-6)


def test_delta_is_autograds_per_probe_gradient(cnn):
    ds = actstats.open_store(cnn["path"])
    model, x, y = cnn["model"], cnn["x"], cnn["y"]
    model.eval()
    probe = 7
    out = {}
    handle = model[1].register_forward_pre_hook(lambda m, inputs: out.__setitem__("z", inputs[0]))
    try:
        loss = torch.nn.functional.cross_entropy(model(x[probe:probe + 1]), y[probe:probe + 1])
        (delta,) = torch.autograd.grad(loss, out["z"])
    finally:
        handle.remove()
    np.testing.assert_allclose(ds["delta"].isel(run=0, epoch=-1, layer=0, sample=probe).values[:384],
                               delta.reshape(-1).numpy(), rtol=1e-4, atol=1e-7)


def test_saturation_is_a_plain_count_over_all_positions(cnn):
    ds = actstats.open_store(cnn["path"])
    result = actstats.saturation(ds, eps=0.05, by=("epoch", "layer", "split"))
    split = ds["split"].values
    for layer, (width, inside) in enumerate([(384, lambda h: (h <= -0.9) | (h >= 0.9))] * 1
                                            + [(512, lambda h: (h <= -0.9) | (h >= 0.9)),
                                               (32, lambda h: (h <= 0.05) | (h >= 0.95))]):
        for e in range(ds.sizes["epoch"]):
            h = ds["activation"].isel(run=0, epoch=e, layer=layer).values[:, :width]
            for name in ("train", "test"):
                plain = inside(h[split == name]).mean()  # every probe, channel and position
                got = float(result["fraction"].isel(epoch=e, layer=layer).sel(split=name))
                assert got == pytest.approx(plain, abs=1e-9), (layer, e, name)
    assert float(result["fraction"].isel(epoch=-1, layer=1).sel(split="train")) > 0.05  # the band is reached
    # the interval resamples probes (300 training probes), not probe × position pairs
    assert int(result["n_samples"].isel(epoch=-1, layer=1).sel(split="train")) == 300


def test_queries_and_the_report_run_on_it(cnn):
    from actstats.errors import ActstatsError
    from actstats.report import assess

    ds = actstats.open_store(cnn["path"])
    assert np.isfinite(actstats.weight_normality(ds)["excess_kurtosis"].values).all()
    flow = actstats.gradient_flow(ds.sel(layer=[1, 2]))  # the conv layers: tanh (one function a run)
    assert np.isfinite(flow["weight_grad_norm"].values).all() and np.isfinite(flow["mean_derivative"].values).all()
    with pytest.raises(ActstatsError, match=r"^unit_learning pairs each unit with its weight row, but layer 1 of run 0 "
                                            r"is a conv layer \(its 384 units are channel × position outputs of 6 "
                                            r"weight rows\)"):
        actstats.unit_learning(ds)
    claims = {c.id: c for c in assess(ds.sel(layer=[1, 2]), claims=["C1", "C4"]).claims}
    assert claims["C1"].population["activation_fn"] == "tanh"
    assert all(c.verdict != "not testable" for c in claims.values()), {k: c.summary for k, c in claims.items()}
