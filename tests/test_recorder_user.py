"""capture.Recorder on users' own models, trained in hand-written loops: the store it writes
(opened by actstats, plain xarray and zarr; verified), what it holds (activation = f(z), the
model's weights, autograd's per-probe delta and mean-loss gradient), that it changes nothing
of training, crash safety, adding to a store, and one-line refusals of bad input."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import actstats
from actstats.errors import ActstatsError, ActstatsValueError
from actstats.capture import Recorder
from recorder_tools import digits_tensors, quick_recording


F = torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def no_fsync():
    with quick_recording():
        yield


@pytest.fixture(scope="module")
def digits():
    return digits_tensors()


def probes_of(digits, n_train=60, n_test=30):
    x, y = digits
    return {"train": (x[:n_train], y[:n_train]), "test": (x[-n_test:], y[-n_test:])}


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(64, 24), torch.nn.Sigmoid(), torch.nn.Linear(24, 16), torch.nn.Tanh()]
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers, torch.nn.Linear(16, 10))


def train_epoch(model, optimizer, digits, epoch, batch=64, rows=640):
    x, y = digits
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(epoch))
    model.train()
    for start in range(0, rows, batch):
        index = order[start:start + batch]
        optimizer.zero_grad()
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, digits):
    """An nn.Sequential MLP (sigmoid, tanh) trained 3 epochs, recorded at 0..3; the model at the end."""
    path = str(tmp_path_factory.mktemp("rec") / "mlp.zarr")
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    with Recorder(path, model, probes=probes_of(digits), loss=F.cross_entropy, epochs=range(4),
                  steps_per_epoch=10, attributes={"optimizer": "sgd", "lr": 0.5, "seed": 0, "note": "x"}) as rec:
        rec.record(epoch=0)
        for epoch in range(1, 4):
            train_epoch(model, optimizer, digits, epoch)
            rec.record(epoch=epoch)
    return path, model


def test_the_store_opens_everywhere_and_verifies(recorded):
    import xarray as xr
    import zarr

    path, _ = recorded
    ds = actstats.open_store(path)
    assert ds["complete"].values.all()
    assert ds.sizes["layer"] == 2 and ds.sizes["unit"] == 24 and ds.sizes["fan_in"] == 64
    assert ds["width"].values.tolist() == [[24, 16]]
    assert ds["layer_activation_fn"].values.tolist() == [["sigmoid", "tanh"]]
    assert ds["activation_fn"].values.tolist() == ["mixed"]
    assert ds["layer_fan_in"].values.tolist() == [[64, 24]]
    assert ds["step"].values.tolist() == [[0, 10, 20, 30]]
    assert ds["optimizer"].values.tolist() == ["sgd"] and ds["lr"].values.tolist() == [0.5]
    plain = xr.open_zarr(path)
    assert "layer_activation_fn" in plain.coords
    np.testing.assert_array_equal(plain["activation"].values, ds["activation"].values)
    group = zarr.open_group(path, mode="r")
    assert group["weight"].shape == (1, 4, 2, 24, 64)
    report = actstats.verify_store(path, progress=False)
    assert report.ok and report.manifest and report.records_without_manifest == 0, report.lines()


def test_activation_is_f_of_preactivation_and_padding_is_nan(recorded):
    path, _ = recorded
    ds = actstats.open_store(path)
    z, h = ds["preactivation"].values[0], ds["activation"].values[0]
    np.testing.assert_allclose(h[:, 0, :, :24], 1 / (1 + np.exp(-z[:, 0, :, :24].astype(np.float64))), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(h[:, 1, :, :16], np.tanh(z[:, 1, :, :16]), rtol=1e-5, atol=1e-6)
    assert np.isnan(h[:, 1, :, 16:]).all() and np.isnan(ds["weight"].values[0, :, 1, :16, 24:]).all()


def test_weights_and_gradients_equal_the_models(recorded, digits):
    """The last record holds the model's weights bit for bit; delta is autograd's gradient of
    each probe's own loss at z, computed one probe at a time; weight_grad that of the mean
    training-probe loss."""
    path, model = recorded
    ds = actstats.open_store(path)
    last = {name: ds[name].values[0, -1] for name in ("weight", "bias", "delta", "weight_grad", "preactivation")}
    linears = [model[0], model[2]]
    for i, (linear, units, fan_in) in enumerate(zip(linears, (24, 16), (64, 24))):
        assert np.array_equal(last["weight"][i, :units, :fan_in], linear.weight.detach().numpy())
        assert np.array_equal(last["bias"][i, :units], linear.bias.detach().numpy())
    probes = probes_of(digits)
    x = torch.cat([probes["train"][0], probes["test"][0]])
    y = torch.cat([probes["train"][1], probes["test"][1]])
    for i in (0, 7, 59, 60, 89):  # train and test probes, one at a time
        z1 = model[0](x[i:i + 1])
        z2 = model[2](torch.sigmoid(z1))
        loss = F.cross_entropy(model[4](torch.tanh(z2)), y[i:i + 1])
        d1, d2 = torch.autograd.grad(loss, [z1, z2])
        # float32 sums in another order (a batch, one row): relative to the largest entry
        np.testing.assert_allclose(last["delta"][0, i, :24], d1[0].numpy(), rtol=1e-4, atol=1e-4 * float(d1.abs().max()))
        np.testing.assert_allclose(last["delta"][1, i, :16], d2[0].numpy(), rtol=1e-4, atol=1e-4 * float(d2.abs().max()))
        np.testing.assert_allclose(last["preactivation"][0, i, :24], z1[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    copy_ = copy.deepcopy(model)
    mean = F.cross_entropy(copy_(probes["train"][0]), probes["train"][1])
    g1, g2 = torch.autograd.grad(mean, [copy_[0].weight, copy_[2].weight])
    np.testing.assert_allclose(last["weight_grad"][0, :24, :64], g1.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(last["weight_grad"][1, :16, :24], g2.numpy(), rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        out = model(probes["train"][0])
    assert float(ds["train_loss"].values[0, -1]) == pytest.approx(float(F.cross_entropy(out, probes["train"][1])),
                                                                  rel=1e-5)
    assert float(ds["train_accuracy"].values[0, -1]) == pytest.approx(
        float((out.argmax(1) == probes["train"][1]).float().mean()), abs=1e-6)


def test_queries_run_on_it(recorded):
    path, _ = recorded
    ds = actstats.open_store(path)
    saturation = actstats.saturation(ds, by=("epoch", "layer", "split"))
    assert np.isfinite(saturation["fraction"].values).all()
    weights = actstats.weight_normality(ds, by=("epoch", "layer"))
    assert weights["n"].values.tolist() == [[24 * 64, 16 * 24]] * 4
    gradients = actstats.gradient_flow(ds.sel(layer=[1]))  # one function among the layers kept: sigmoid
    assert np.isfinite(gradients["delta_rms"].values).all()
    with pytest.raises(ActstatsError, match=r"run 0: its layers have different activation functions \(sigmoid, tanh\) "
                                            r"and this query takes one function per run"):
        actstats.gradient_flow(ds)


def test_training_is_bit_identical_with_and_without_the_recorder(tmp_path, digits):
    """Same weights, gradients, optimizer state, module modes and RNG stream, with Dropout in
    training mode drawing from the global generator."""
    runs = []
    for with_recorder in (False, True):
        model = mlp(seed=1, dropout=0.2)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(123)
        recorder = Recorder(tmp_path / "bit.zarr", model, probes=probes_of(digits), loss=F.cross_entropy,
                            epochs=[0, 1, 2]) if with_recorder else None
        model[0].eval()  # a module left in eval mode by the user: the recorder must leave it so
        for epoch in range(3):
            if recorder is not None:
                recorder.record(epoch=epoch)
            if epoch < 2:
                train_epoch(model, optimizer, digits, epoch, rows=320)
                model[0].eval()
        if recorder is not None:
            recorder.close()
            assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
        runs.append((model, optimizer, torch.rand(3)))
    (a, opt_a, draw_a), (b, opt_b, draw_b) = runs
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
        assert torch.equal(pa.grad, pb.grad), name
    state_a, state_b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert all(torch.equal(state_a[k]["exp_avg"], state_b[k]["exp_avg"]) for k in state_a)
    assert [m.training for m in a.modules()] == [m.training for m in b.modules()]
    assert torch.equal(draw_a, draw_b)


def test_a_killed_loop_leaves_a_verified_store_and_adding_continues_it(tmp_path, digits):
    """SIGKILL inside the second record's chunk writes: the first record stays complete, the
    store verifies with nothing damaged; a Recorder of the same model then adds the rest."""
    path = str(tmp_path / "killed.zarr")
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from actstats.capture import Recorder
        from actstats.capture.data import load_digits
        x, y = load_digits()
        x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10))
        with Recorder({path!r}, model, probes={{"train": (x[:40], y[:40]), "test": (x[-20:], y[-20:])}},
                      loss=torch.nn.functional.cross_entropy, epochs=[0, 1, 2], asynchronous=False) as rec:
            for epoch in [0, 1, 2]:
                rec.record(epoch=epoch)
                with torch.no_grad():
                    model[0].weight.mul_(1.01)
    """))
    killed = subprocess.run([sys.executable, str(script)], env={**os.environ, "ACTSTATS_FAULT_KILL_AFTER_PUTS": "16"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    ds = actstats.open_store(path)
    assert ds["complete"].values.tolist() == [[True, False, False]]
    report = actstats.verify_store(path, progress=False)
    assert report.damaged == [] and report.incomplete == [(0, 1.0), (0, 2.0)]
    assert any(name.endswith(".partial") for _, _, files in os.walk(path) for name in files)
    x, y = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10))
    with Recorder(path, model, probes={"train": (x[:40], y[:40]), "test": (x[-20:], y[-20:])},
                  loss=F.cross_entropy) as rec:  # the loop run again, skipping what is recorded
        for epoch in [0, 1, 2]:
            if epoch not in rec.recorded_epochs:
                rec.record(epoch=epoch)
            with torch.no_grad():
                model[0].weight.mul_(1.01)
    assert actstats.verify_store(path, progress=False).ok
    assert not any(name.endswith(".partial") for _, _, files in os.walk(path) for name in files)


def test_adding_to_a_store_checks_the_model_probes_and_epochs(tmp_path, digits):
    path = tmp_path / "add.zarr"
    kwargs = dict(probes=probes_of(digits), loss=F.cross_entropy)
    with Recorder(path, mlp(), epochs=[0, 1], **kwargs) as rec:
        rec.record(epoch=0)
    with Recorder(path, mlp(seed=5), **kwargs) as rec:  # the same architecture: epochs from the store
        assert rec.recorded_epochs == (0.0,)
        with pytest.raises(ActstatsValueError, match=r"epoch 0 is already recorded"):
            rec.record(epoch=0)
        with pytest.raises(ActstatsValueError, match=r"epoch 3 is not one of the store's epochs \(0, 1\)"):
            rec.record(epoch=3)
        rec.record(epoch=1)
    assert actstats.open_store(path)["complete"].values.all()
    other = torch.nn.Sequential(torch.nn.Linear(64, 20), torch.nn.Sigmoid(), torch.nn.Linear(20, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 10))
    with pytest.raises(ActstatsError, match=r"another model .*layer 1 units: store has 24, this model 20"):
        Recorder(path, other, **kwargs)
    with pytest.raises(ActstatsError, match=r"recorded on other probes \(x_train, y_train differ\)"):
        Recorder(path, mlp(), probes=probes_of(digits, n_train=60)
                 | {"train": (digits[0][1:61], digits[1][1:61])}, loss=F.cross_entropy)
    with pytest.raises(ActstatsValueError, match=r"records epochs \[0, 1\] \(fixed when it was made\), not \[0, 1, 2\]"):
        Recorder(path, mlp(), epochs=[0, 1, 2], **kwargs)


def test_a_second_writer_is_refused_while_the_first_holds_the_store(tmp_path, digits):
    path = tmp_path / "two.zarr"
    kwargs = dict(probes=probes_of(digits), loss=F.cross_entropy)
    with Recorder(path, mlp(), epochs=[0, 1], **kwargs) as first:
        with pytest.raises(ActstatsError, match=r"another Recorder \(or capture\) is writing this store now"):
            Recorder(path, mlp(), **kwargs)
        first.record(epoch=0)
    with Recorder(path, mlp(), **kwargs) as second:  # released on close
        second.record(epoch=1)


class TwoBranches(torch.nn.Module):
    """Two branches on the input (tanh and relu, the relu in place), joined by a readout."""

    def __init__(self):
        super().__init__()
        self.left, self.right = torch.nn.Linear(64, 10), torch.nn.Linear(64, 6)
        self.squash, self.rectify = torch.nn.Tanh(), torch.nn.ReLU(inplace=True)
        self.readout = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.readout(torch.cat([self.squash(self.left(x)), self.rectify(self.right(x))], dim=1))


def test_a_custom_module_with_two_branches(tmp_path, digits):
    torch.manual_seed(0)
    model = TwoBranches()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    path = tmp_path / "branches.zarr"
    with Recorder(path, model, probes=probes_of(digits), loss=F.cross_entropy, epochs=[0, 1],
                  layers={"left": model.squash, "right": "rectify"}) as rec:
        rec.record(epoch=0)
        train_epoch(model, optimizer, digits, 1, rows=320)
        rec.record(epoch=1)
    ds = actstats.open_store(path)
    assert ds["layer_activation_fn"].values.tolist() == [["tanh", "relu"]]
    assert ds["layer_fan_in"].values.tolist() == [[64, 64]]  # both read the input, not the layer below
    z = ds["preactivation"].values[0, 1, 1, :, :6]
    assert (z < 0).any()  # the pre-activation, not the in-place ReLU's output
    np.testing.assert_array_equal(ds["activation"].values[0, 1, 1, :, :6], np.maximum(z, 0))
    assert np.array_equal(ds["weight"].values[0, 1, 1, :6, :64], model.right.weight.detach().numpy())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-finite values": layer 2's 64 inputs are known to exist
        weights = actstats.weight_normality(ds, by=("epoch", "layer"))
    assert weights["n"].values.tolist() == [[640, 384]] * 2
    assert np.isfinite(actstats.saturation(ds, by=("layer",))["fraction"].values).all()
    assert actstats.verify_store(path, progress=False).ok
    config = __import__("json").loads(str(ds["config"].values[0]))
    assert [layer["name"] for layer in config["recorder"]["layers"]] == ["left", "right"]


def test_a_shared_activation_module_is_one_layer_per_call(tmp_path, digits):
    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = torch.nn.Linear(64, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 10)
            self.act = torch.nn.Sigmoid()

        def forward(self, x):
            return self.out(self.act(self.b(self.act(self.a(x)))))

    model = Shared()
    with Recorder(tmp_path / "shared.zarr", model, probes=probes_of(digits), loss=F.cross_entropy, epochs=[0]) as rec:
        assert [(layer.name, layer.linear_name) for layer in rec.layers] == [("act[0]", "a"), ("act[1]", "b")]
        rec.record(epoch=0)


def test_batchnorm_in_training_mode_is_refused_as_is_and_recorded_in_eval(tmp_path, digits):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 10))
    model.train()
    kwargs = dict(probes=probes_of(digits), loss=F.cross_entropy, epochs=[0])
    with pytest.raises(ActstatsValueError, match=r"mode='as_is': BatchNorm1d '2' is in training mode"):
        Recorder(tmp_path / "bn_as_is.zarr", model, mode="as_is", **kwargs)
    before = model[2].running_mean.clone()
    with Recorder(tmp_path / "bn.zarr", model, **kwargs) as rec:  # eval mode: running statistics, rows apart
        rec.record(epoch=0)
    assert torch.equal(model[2].running_mean, before) and model.training and model[2].training
    between = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                  torch.nn.Linear(8, 10))
    with pytest.raises(ActstatsValueError, match=r"ReLU '2' is not fed by an nn.Linear"):
        Recorder(tmp_path / "between.zarr", between, **kwargs)


@pytest.mark.parametrize("change, message", [
    (lambda m, p: (torch.nn.Sequential(torch.nn.Linear(64, 10)), p),
     r"model: no activation module that the Recorder knows \(nn.Sigmoid, nn.Tanh, nn.ReLU, nn.Softsign, nn.ELU, "
     r"nn.Softplus, nn.SiLU, nn.GELU, nn.Hardtanh, nn.LeakyReLU\)"),
    (lambda m, p: (m, p | {"train": (p["train"][0][:5], p["train"][1][:6])}),
     r"probes\['train'\]: x has 5 rows but y has 6"),
    (lambda m, p: (m, p | {"test": (p["test"][0], p["test"][1].float())}),
     r"probes\['test'\]: y has shape \(30,\) and dtype torch.float32; expected integer class labels"),
    (lambda m, p: (m, p | {"test": (p["test"][0][:, :32], p["test"][1])}),
     r"probes: x of 'train' has rows of shape \(64,\), x of 'test' \(32,\)"),
    (lambda m, p: (m, {"train": p["train"]}), r"probes: expected \{'train': \(x, y\), 'test': \(x, y\)\}"),
])
def test_bad_input_is_one_line(tmp_path, digits, change, message):
    model, probes = change(mlp(), probes_of(digits))
    with pytest.raises(ActstatsValueError, match=message) as error:
        Recorder(tmp_path / "bad.zarr", model, probes=probes, loss=F.cross_entropy, epochs=[0])
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "bad.zarr")


def test_bad_layers_and_epochs_are_one_line(tmp_path, digits):
    kwargs = dict(probes=probes_of(digits), loss=F.cross_entropy)
    with pytest.raises(ActstatsValueError, match=r"layers: the model has no module named '9'"):
        Recorder(tmp_path / "a.zarr", mlp(), layers=["9"], epochs=[0], **kwargs)
    with pytest.raises(ActstatsValueError, match=r"layers\['first'\]: Linear '0' is not an activation module"):
        Recorder(tmp_path / "a.zarr", mlp(), layers={"first": "0"}, epochs=[0], **kwargs)
    with pytest.raises(ActstatsValueError, match=r"layers\['x'\]: this Tanh is not a module of the model"):
        Recorder(tmp_path / "a.zarr", mlp(), layers={"x": torch.nn.Tanh()}, epochs=[0], **kwargs)
    with pytest.raises(ActstatsValueError, match=r"epochs: needed to make a store"):
        Recorder(tmp_path / "a.zarr", mlp(), **kwargs)
    with pytest.raises(ActstatsValueError, match=r"loss: loss\(output, y, reduction='none'\) returned \(\)"):
        with Recorder(tmp_path / "b.zarr", mlp(), probes=kwargs["probes"], epochs=[0],
                      loss=lambda out, y, reduction: F.cross_entropy(out, y)) as rec:
            rec.record(epoch=0)
    with pytest.raises(ActstatsError, match=r"not a store made by a Recorder"):
        from actstats.synthetic import write_synthetic_store

        write_synthetic_store(str(tmp_path / "s.zarr"), runs=1, epochs=1, layers=1, samples=4, units=2)
        Recorder(tmp_path / "s.zarr", mlp(), epochs=[0], **kwargs)


def test_the_command_line_reports_errors_in_one_line(tmp_path, digits):
    """A Recorder error reaching actstats' command-line handling is exit 2 (its exit_code)."""
    with pytest.raises(ActstatsValueError) as error:
        Recorder(tmp_path / "c.zarr", mlp(), probes=probes_of(digits), loss=F.cross_entropy, epochs=[-1])
    assert error.value.exit_code == 2 and str(error.value) == "epochs: -1 is not a finite number >= 0"


def test_saturation_reads_each_layers_own_function(tmp_path, digits):
    """A user's nn.Sequential mixing sigmoid, tanh and relu: saturation per layer uses that
    layer's bounds (layer_activation_fn), checked against a plain numpy count."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.Sigmoid(), torch.nn.Linear(12, 10), torch.nn.Tanh(),
                                torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    with torch.no_grad():
        for i in (0, 2, 4):
            model[i].weight.mul_(6.0)
    path = tmp_path / "mixed.zarr"
    with Recorder(path, model, probes=probes_of(digits), loss=F.cross_entropy, epochs=[0]) as rec:
        rec.record(epoch=0)
    ds = actstats.open_store(path)
    assert ds["layer_activation_fn"].values.tolist() == [["sigmoid", "tanh", "relu"]]
    eps = 0.05
    result = actstats.saturation(ds, eps=eps, by=("layer", "split"))
    h = ds["activation"].values[0, 0]
    train = ds["split"].values == "train"
    for layer, (units, bounds) in enumerate([(12, (0, 1)), (10, (-1, 1)), (8, None)]):
        values = h[layer][train][:, :units].astype(np.float64)
        if bounds is None:
            saturated = values == 0
        else:
            low, high = bounds
            band = eps * (high - low)
            saturated = (values <= low + band) | (values >= high - band)
        expected = saturated.mean(axis=1).mean()
        assert 0 < expected < 1
        got = float(result["fraction"].sel(layer=layer + 1, split="train"))
        assert got == pytest.approx(expected, abs=1e-12), layer
    pooled = actstats.saturation(ds, eps=eps, by=("run", "split"))  # a group spanning three functions
    assert np.isfinite(pooled["fraction"].values).all()
    tanh_only = actstats.bimodality(ds.sel(layer=[2]), by=("layer",))  # layers of one function: other queries
    assert tanh_only.sizes["layer"] == 1



def test_as_is_mode_records_dropout_masks_and_a_float32_epoch_is_found(tmp_path, digits):
    model = mlp(dropout=0.5)
    model.train()
    with Recorder(tmp_path / "as_is.zarr", model, probes=probes_of(digits), loss=F.cross_entropy, epochs=[0, 0.1],
                  mode="as_is") as rec:
        rec.record(epoch=np.float32(0.1))  # 0.10000000149...: the moment 0.1
        assert rec.recorded_epochs == (0.1,)
    assert actstats.open_store(tmp_path / "as_is.zarr")["complete"].values.tolist() == [[False, True]]


def test_a_model_that_mixes_the_rows_of_a_batch_is_refused(tmp_path, digits):
    class Centred(torch.nn.Module):  # centres each batch on its own mean: rows interact
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            return self.net(x - x.mean(0, keepdim=True))

    with Recorder(tmp_path / "mix.zarr", Centred(), probes=probes_of(digits), loss=F.cross_entropy,
                  epochs=[0]) as rec:
        with pytest.raises(ActstatsError, match=r"layer 'net.1': the first training probe gives other values alone "
                                                r"than in its batch: a module of the model mixes the rows"):
            rec.record(epoch=0)
        assert rec.recorded_epochs == ()
