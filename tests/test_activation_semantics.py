"""Activation functions beyond sigmoid, tanh, relu and softsign: each one's own saturation
semantics checked with known values (bounded: hardtanh; one-sided: ELU, softplus, SiLU, GELU;
none: leaky ReLU), in the query on a written store and on a model recorded by capture.Recorder."""

from __future__ import annotations

import math

import numpy as np
import pytest

import actstats
from actstats.activations import ACTIVATIONS, get_activation
from actstats.store import write_store

NEURONS = ("run", "epoch", "layer", "sample", "unit")

#: Per function: pre-activations (one a unit) and how many of them lie in the saturated band at
#: eps = 0.05 (low, high), worked out by hand from each function's own band:
#: elu h <= -1 + 0.05 ⟺ z <= ln 0.05 = -2.996; softplus h <= 0.05 ln 2 ⟺ z <= ln(2^0.05 - 1) =
#: -3.345; silu h <= 0.95 min = -0.26454 ⟺ z in about [-1.83, -0.96] (its tail towards 0 is not
#: counted: silu(-5) = -0.033); gelu h <= 0.95 min = -0.16147 ⟺ z in about [-0.96, -0.56];
#: hardtanh h <= -0.9 or h >= 0.9.
KNOWN = {
    "elu": ([-5.0, -3.5, -2.9, -1.0, 0.0, 2.0], 2, 0),
    "softplus": ([-6.0, -4.0, -3.0, 0.0, 1.0, 5.0], 2, 0),
    "silu": ([-5.0, -2.0, -1.5, -1.28, -1.0, 0.5], 3, 0),
    "gelu": ([-3.0, -1.0, -0.75, -0.6, -0.5, 1.0], 2, 0),
    "hardtanh": ([-3.0, -1.0, -0.95, 0.0, 0.89, 2.0], 3, 1),
    "leaky_relu": ([-5.0, -1.0, 0.0, 0.5, 1.0, 9.0], 0, 0),
}


def test_one_sided_minima_and_band_edges_are_the_known_values():
    from scipy.optimize import minimize_scalar
    from scipy.special import expit, ndtr

    assert get_activation("silu").lower == pytest.approx(-0.2784645427610738, abs=1e-15)  # -W(1/e)
    for name, f in (("silu", lambda z: z * expit(z)), ("gelu", lambda z: z * ndtr(z))):
        found = minimize_scalar(f, bounds=(-3, 0), method="bounded", options={"xatol": 1e-12})
        assert get_activation(name).lower == pytest.approx(found.fun, abs=1e-14)
    elu, softplus = get_activation("elu"), get_activation("softplus")
    assert (elu.lower, elu.band_upper, softplus.lower, softplus.band_upper) == (-1.0, 0.0, 0.0, math.log(2))
    # the ELU band is where f' <= eps: h = -1 + eps at z = ln eps, and f'(ln eps) = eps
    assert float(elu.function(np.array(math.log(0.05)))) == pytest.approx(-0.95, abs=1e-15)
    assert float(elu.derivative(np.array(math.log(0.05)))) == pytest.approx(0.05, abs=1e-15)
    hardtanh, leaky = get_activation("hardtanh"), get_activation("leaky_relu")
    assert (hardtanh.lower, hardtanh.upper, hardtanh.saturation) == (-1.0, 1.0, "bounds")
    assert leaky.saturation == "none" and math.isnan(leaky.band_upper)


def _store(tmp_path):
    names = list(KNOWN)
    z = np.array([KNOWN[n][0] for n in names], dtype=np.float32)  # (run, unit)
    h = np.stack([get_activation(n).function(z[r].astype(np.float64)) for r, n in enumerate(names)]).astype(np.float32)
    samples = 3  # the same values on two training probes and one held-out probe
    shape = (len(names), 1, 1, samples, 6)
    rng = np.random.default_rng(0)
    return write_store(tmp_path / "functions.zarr", {
        "activation": (NEURONS, np.broadcast_to(h[:, None, None, None, :], shape).copy()),
        "preactivation": (NEURONS, np.broadcast_to(z[:, None, None, None, :], shape).copy()),
        "weight": (("run", "epoch", "layer", "unit", "fan_in"), rng.normal(size=(len(names), 1, 1, 6, 4))),
        "bias": (("run", "epoch", "layer", "unit"), np.zeros((len(names), 1, 1, 6))),
        "input": (("sample", "feature"), rng.random((samples, 4))),
        "epoch": ("epoch", [0.0]), "split": ("sample", ["train", "train", "test"]),
        "activation_fn": ("run", names),
    })


def test_the_saturation_query_counts_each_functions_own_band(tmp_path):
    ds = actstats.open_store(_store(tmp_path))
    result = actstats.saturation(ds, eps=0.05, by=("run",))
    for r, name in enumerate(KNOWN):
        _, low, high = KNOWN[name]
        row = result.isel(run=r)
        if name == "leaky_relu":  # saturation has no meaning: not counted, said plainly
            assert np.isnan(float(row["fraction"])) and int(row["n_values"]) == 0
            continue
        assert float(row["fraction_low"]) == pytest.approx(low / 6, abs=1e-12), name
        assert float(row["fraction_high"]) == pytest.approx(high / 6, abs=1e-12), name
        assert float(row["fraction"]) == pytest.approx((low + high) / 6, abs=1e-12), name
    assert result.attrs["not_applicable"].startswith("leaky_relu: saturation has no meaning")
    assert "elu: one-sided: near the lower bound -1" in result.attrs["bounds"]
    assert "hardtanh [-1, 1]" in result.attrs["bounds"]
    # pooled over runs, the leaky ReLU run adds nothing to the counts: the others' mean
    pooled = actstats.saturation(ds, eps=0.05, by=())
    counted = [(low + high) / 6 for name, (_, low, high) in KNOWN.items() if name != "leaky_relu"]
    assert float(pooled["fraction"]) == pytest.approx(np.mean(counted), abs=1e-12)
    # and one run of leaky ReLU alone: NaN, with the note
    alone = actstats.saturation(ds.isel(run=[5]), eps=0.05, by=("run",))
    assert np.isnan(alone["fraction"].values).all() and "not_applicable" in alone.attrs


def test_the_command_line_says_when_saturation_has_no_meaning(tmp_path, capsys):
    from actstats.cli import main

    path = _store(tmp_path)
    assert main(["--no-progress", "saturation", path, "--by", "run"]) == 0
    out = capsys.readouterr().out
    assert "# leaky_relu: saturation has no meaning (no bound, no dead value)" in out


def test_the_recorder_records_these_functions_and_saturation_equals_a_plain_count(tmp_path):
    torch = pytest.importorskip("torch")
    import actstats.capture.recorder
    from actstats.capture import Recorder
    from actstats.capture.data import load_digits

    saved, actstats.capture.recorder.FSYNC = actstats.capture.recorder.FSYNC, False
    try:
        torch.manual_seed(0)
        nn = torch.nn
        modules = [nn.GELU(), nn.SiLU(), nn.ELU(), nn.Softplus(), nn.Hardtanh(), nn.LeakyReLU()]
        layers = [nn.Linear(64, 12)]
        for i, module in enumerate(modules):
            layers += [module, nn.Linear(12, 12 if i < len(modules) - 1 else 10)]
        model = nn.Sequential(*layers)
        with torch.no_grad():  # wide weights: values reach every band
            for linear in model[::2]:
                linear.weight.mul_(4.0)
        x, y = load_digits()
        x, y = torch.tensor(x[:40], dtype=torch.float32), torch.tensor(y[:40])
        path = str(tmp_path / "functions.zarr")
        with Recorder(path, model, probes={"train": (x[:30], y[:30]), "test": (x[30:], y[30:])},
                      loss=torch.nn.functional.cross_entropy, epochs=[0]) as rec:
            rec.record(epoch=0)
    finally:
        actstats.capture.recorder.FSYNC = saved
    ds = actstats.open_store(path)
    names = ["gelu", "silu", "elu", "softplus", "hardtanh", "leaky_relu"]
    assert ds["layer_activation_fn"].values[0].tolist() == names and str(ds["activation_fn"].values[0]) == "mixed"
    result = actstats.saturation(ds, eps=0.05, by=("layer",))
    # the plain count, with each band written out here
    edges = {"gelu": -0.16997120747990366 * 0.95, "silu": -0.2784645427610738 * 0.95, "elu": -0.95,
             "softplus": 0.05 * math.log(2)}
    for layer, name in enumerate(names):
        z = ds["preactivation"].isel(run=0, epoch=0, layer=layer).values.astype(np.float64)
        h = ds["activation"].isel(run=0, epoch=0, layer=layer).values
        np.testing.assert_allclose(h, get_activation(name).function(z), rtol=1e-5, atol=1e-6)
        fraction = float(result["fraction"].isel(layer=layer))
        if name == "leaky_relu":
            assert np.isnan(fraction)
            continue
        plain = (h <= edges[name]) if name in edges else (h <= -0.9) | (h >= 0.9)
        assert fraction == pytest.approx(plain.mean(), abs=1e-6), name
        assert 0 < plain.mean() < 1, name  # the band is reached, and not by everything


@pytest.mark.parametrize("module, message", [
    ("ELU(alpha=0.5)", r"ELU '1' has alpha=0.5; actstats knows nn.ELU with its defaults \(alpha=1.0\) as 'elu'"),
    ("GELU(approximate='tanh')", r"GELU '1' has approximate='tanh'; actstats knows nn.GELU with its defaults"),
    ("ReLU6()", r"ReLU6 '1' has min_val=0.0; actstats knows nn.Hardtanh with its defaults \(min_val=-1.0\)"),
])
def test_a_module_with_other_arguments_is_refused_in_one_line(tmp_path, module, message):
    torch = pytest.importorskip("torch")
    from actstats.errors import ActstatsValueError
    from actstats.capture import Recorder

    model = torch.nn.Sequential(torch.nn.Linear(4, 5), eval(f"torch.nn.{module}"), torch.nn.Linear(5, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with pytest.raises(ActstatsValueError, match="^layers: " + message):
        Recorder(str(tmp_path / "s.zarr"), model, probes={"train": (x, y), "test": (x, y)},
                 loss=torch.nn.functional.cross_entropy, epochs=[0])


def test_every_registry_entry_has_a_semantics_checked_here():
    assert set(ACTIVATIONS) == set(KNOWN) | {"sigmoid", "tanh", "relu", "softsign"}
