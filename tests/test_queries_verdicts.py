"""The queries the verdicts need (training, unit_states, attenuation) against plain loops.

Each query runs on the captured `small_store` (numpy-backed and dask-backed) and on synthetic
stores with planted answers, and is compared with an independent loop over runs, layers or
units written from the definitions in docs/queries.md (tolerances: tests/README.md).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr

import actstats
from actstats import cli
from actstats.errors import ActstatsValueError
from actstats.options import set_options
from actstats.synthetic import synthetic_store
from conftest import run_main as _main


# ------------------------------------------------------------------------- training


def _training_reference(ds, min_accuracy):
    """One run at a time, from the definitions: the last complete record, its numbers, the status."""
    rows = []
    n_classes = ds.sizes.get("class", 0)
    chance = 1.0 / n_classes if n_classes else math.nan
    for r in range(ds.sizes["run"]):
        complete = [bool(v) for v in ds["complete"].isel(run=r).values]
        records = [e for e, c in enumerate(complete) if c]
        row = {"chance_accuracy": chance}
        if not records:
            row.update(status="no complete record", epoch_last=math.nan, diverged=False, at_chance=False,
                       **{n: math.nan for n in ("train_accuracy", "test_accuracy", "train_loss", "test_loss")})
            # a run without a complete record can still not have diverged at one
            rows.append(row)
            continue
        e = records[-1]
        row["epoch_last"] = float(ds["epoch"].values[e])
        for name in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
            row[name] = float(ds[name].isel(run=r, epoch=e)) if name in ds.data_vars else math.nan
        diverged = False
        for k in records:
            if "diverged" in ds.data_vars and bool(ds["diverged"].isel(run=r, epoch=k)):
                diverged = True
            if "train_loss" in ds.data_vars and not math.isfinite(float(ds["train_loss"].isel(run=r, epoch=k))):
                diverged = True
        row["diverged"] = diverged
        accuracy = row["train_accuracy"]
        # the store's float32 accuracy against the cut rounded to float32
        stored = np.float32(accuracy) if "train_accuracy" in ds.data_vars else accuracy
        if diverged:
            row["status"] = "diverged"
        elif math.isnan(accuracy):
            row["status"] = "not known"
        elif stored >= np.float32(min_accuracy):
            row["status"] = "trained"
        else:
            row["status"] = "not trained"
        row["at_chance"] = (not math.isnan(accuracy)) and bool(stored <= np.float32(chance + 0.05))
        rows.append(row)
    return rows


def _check_training(result, reference):
    for r, row in enumerate(reference):
        got = result.isel(run=r)
        for name in ("epoch_last", "train_accuracy", "test_accuracy", "train_loss", "test_loss", "chance_accuracy"):
            # read from the store and converted, no arithmetic but 1/classes: bit for bit
            np.testing.assert_array_equal(float(got[name]), row[name], err_msg=f"run {r} {name}")
        assert bool(got["diverged"]) == row["diverged"], r
        assert str(got["status"].values) == row["status"], r
        assert bool(got["trained"]) == (row["status"] == "trained"), r
        assert bool(got["at_chance"]) == row["at_chance"], r


@pytest.mark.parametrize("min_accuracy", [None, 0.05, 0.5])
def test_training_equals_a_loop_over_runs_on_the_captured_store(ds, stores, min_accuracy):
    result = actstats.training(ds, min_accuracy=min_accuracy)
    _check_training(result, _training_reference(stores["numpy"], 0.9 if min_accuracy is None else min_accuracy))
    assert result.sizes == {"run": stores["numpy"].sizes["run"]}
    assert result.attrs["min_accuracy"] == (0.9 if min_accuracy is None else min_accuracy)
    assert str(result.attrs["min_accuracy"] if min_accuracy else "0.9") in result.attrs["rule"]
    # the captured store has every metric: nothing is NaN, chance is 1/10 on digits
    assert not np.isnan(result["train_accuracy"].values).any()
    np.testing.assert_array_equal(result["chance_accuracy"].values, 0.1)


def test_training_on_planted_accuracies_and_divergence():
    accuracy = np.array([[0.1, 0.99], [0.1, 0.5], [0.1, 0.95], [0.1, 0.9], [0.1, 0.55], [0.3, 0.2]])
    diverged = np.array([[False, False], [False, False], [False, True], [False, False], [False, False],
                         [False, False]])
    ds = synthetic_store(runs=6, train_accuracy=accuracy, diverged=diverged)
    loss = ds["train_loss"].values.copy()
    loss[4, 0] = np.inf  # diverged at an earlier record only: still diverged
    ds["train_loss"] = (("run", "epoch"), loss)
    complete = ds["complete"].values.copy()
    complete[5, 1] = False  # the last record is incomplete: judged at epoch 0
    ds["complete"] = (("run", "epoch"), complete)
    for cut in (0.9, 0.5, 0.96):
        result = actstats.training(ds, min_accuracy=cut)
        _check_training(result, _training_reference(ds, cut))
    result = actstats.training(ds)
    assert result["status"].values.tolist() == [
        "trained", "not trained", "diverged", "trained", "diverged", "not trained"]
    assert result["epoch_last"].values.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    # chance is 1/2 (two classes): 0.5 and 0.55 sit at chance, 0.3 below it
    assert result["at_chance"].values.tolist() == [False, True, False, False, True, True]


def test_training_without_metrics_or_complete_records_says_so():
    ds = synthetic_store(runs=2)
    complete = ds["complete"].values.copy()
    complete[1] = False
    ds["complete"] = (("run", "epoch"), complete)
    result = actstats.training(ds)
    assert result["status"].values.tolist() == ["not known", "no complete record"]
    assert not result["trained"].any() and not result["at_chance"].any()
    assert np.isnan(result["train_accuracy"].values).all() and np.isnan(result["epoch_last"].values[1])
    assert result.attrs["missing_variables"] == "train_accuracy,test_accuracy,train_loss,test_loss,diverged"
    no_class = actstats.training(ds.drop_vars("class"))
    assert np.isnan(no_class["chance_accuracy"].values).all()


def test_trained_accuracy_is_an_option_read_at_call_time():
    ds = synthetic_store(runs=2, train_accuracy=[0.85, 0.95])
    assert actstats.training(ds)["trained"].values.tolist() == [False, True]
    with set_options(trained_accuracy=0.8):
        result = actstats.training(ds)
        assert result["trained"].values.tolist() == [True, True]
        assert "at least 0.8 " in result.attrs["rule"] and result.attrs["min_accuracy"] == 0.8
    with pytest.raises(ValueError, match="trained_accuracy"):
        set_options(trained_accuracy=1.5)
    with pytest.raises(ValueError, match="trained_accuracy"):
        set_options(trained_accuracy=True)
    for bad in (0, 1.5, -0.1, float("nan"), "high", True):
        with pytest.raises(ActstatsValueError, match="min_accuracy"):
            actstats.training(ds, min_accuracy=bad)


def test_training_cli_json_and_table(small_store, capsys):
    code, out, err = _main(capsys, "training", small_store, "--format", "json", "--min-accuracy", "0.05")
    assert code == 0, err
    records = json.loads(out)
    assert [r["run"] for r in records] == list(range(len(records)))
    assert {"status", "trained", "train_accuracy", "chance_accuracy", "diverged", "at_chance"} <= set(records[0])
    assert all(r["status"] in ("trained", "not trained", "diverged") for r in records)
    code, out, err = _main(capsys, "training", small_store)
    assert code == 0 and out.splitlines()[0].split()[:2] == ["run", "activation_fn"]
    code, out, err = _main(capsys, "training", small_store, "--min-accuracy", "2")
    assert code == 2 and "--min-accuracy" in err


# ---------------------------------------------------------------------- unit_states

from fractions import Fraction  # noqa: E402

from queries_reference import BOUNDS, activation_slab, split_samples  # noqa: E402
from tolerances import float_rtol  # noqa: E402

STATE_NAMES = ("dead", "stuck_low", "stuck_high", "binary", "graded")


def _unit_state(column, function, eps, stuck_share):
    """One unit's state and its low/high shares, from float64 band edges and exact fractions."""
    values = column[~np.isnan(column)]
    if values.size == 0:
        return None, 0.0, 0.0
    lower, upper = BOUNDS[function]
    if np.isinf(upper):
        low, high = int((values == 0).sum()), 0
    else:
        low = int((values <= lower + eps * (upper - lower)).sum())
        high = int((values >= upper - eps * (upper - lower)).sum())
    n = values.size
    cut = Fraction(str(stuck_share))
    if np.isinf(upper):
        state = "dead" if low == n else "graded"
    elif Fraction(low, n) >= cut:
        state = "stuck_low"
    elif Fraction(high, n) >= cut:
        state = "stuck_high"
    elif Fraction(low + high, n) >= cut and Fraction(low, n) >= 1 - cut and Fraction(high, n) >= 1 - cut:
        state = "binary"
    else:
        state = "graded"
    return state, low / n, high / n


def _unit_states_reference(ds, eps, split, stuck_share):
    """Per (run, epoch, layer): state counts, unit count and summed low/high shares."""
    samples = None if split is None else split_samples(ds)[split]
    out = {}
    for r in range(ds.sizes["run"]):
        function = str(ds["activation_fn"].values[r])
        for e in range(ds.sizes["epoch"]):
            for l in range(ds.sizes["layer"]):
                slab = activation_slab(ds, "activation", r, e, l, samples)
                counts = dict.fromkeys(STATE_NAMES, 0)
                low_sum = high_sum = 0.0
                for u in range(slab.shape[1]):
                    state, low, high = _unit_state(slab[:, u], function, eps, stuck_share)
                    if state is not None:
                        counts[state] += 1
                        low_sum += low
                        high_sum += high
                out[r, e, l] = (counts, low_sum, high_sum, function)
    return out


def _check_unit_states(result, reference, ds):
    for (r, e, l), (counts, low_sum, high_sum, function) in reference.items():
        got = result.isel(run=r, epoch=e, layer=l)
        n = sum(counts.values())
        assert int(got["n_units"]) == n, (r, e, l)
        for state in STATE_NAMES:
            assert int(got[f"n_{state}"]) == counts[state], (r, e, l, state)
            applies = n > 0 and (state == "graded" or (state == "dead") == (function == "relu"))
            # the same one division of the same two integers: bit for bit
            expected = counts[state] / n if applies else math.nan
            np.testing.assert_array_equal(float(got[f"share_{state}"]), expected, err_msg=f"{(r, e, l)} {state}")
        if n:
            # means of n shares of one sign summed in another order (kind 2)
            np.testing.assert_allclose([float(got["mean_low_share"]), float(got["mean_high_share"])],
                                       [low_sum / n, high_sum / n], rtol=float_rtol(n), atol=0)


@pytest.mark.parametrize("eps, split, stuck_share", [(0.1, "train", 0.95), (0.05, None, 0.9), (0.2, "test", 0.8)])
def test_unit_states_equal_a_loop_over_units_on_the_captured_store(ds, stores, eps, split, stuck_share):
    result = actstats.unit_states(ds, eps=eps, split=split, stuck_share=stuck_share)
    assert result["n_units"].dims == ("run", "epoch", "layer")
    _check_unit_states(result, _unit_states_reference(stores["numpy"], eps, split, stuck_share), stores["numpy"])
    assert result.attrs["split"] == (split or "all") and result.attrs["stuck_share"] == stuck_share


def _planted(rng, shape):
    """Sigmoid units over 40 training probes (then 20 held-out): 0-1 stuck low, 2-3 stuck high,
    4-5 binary (half low, half high), 6 graded, 7 at the cut (38 of 40 low: stuck low),
    8 below it (37 low, 3 high: binary), 9 (39 low, 1 mid: stuck low), 10 (37 low, 1 high, 2 mid:
    graded: 38 of 40 saturated but 1 of 40 high is below 5%), 11 (20 low, 20 mid: graded)."""
    n, width = shape
    x = np.full((n, width), 0.5)
    x[:, 0:2] = 0.001
    x[:, 2:4] = 0.999
    x[:, 4:6] = np.where(np.arange(n)[:, None] % 2 == 0, 0.001, 0.999)
    x[:, 6] = rng.uniform(0.2, 0.8, n)
    for unit, (n_low, n_high) in {7: (38, 2), 8: (37, 3), 9: (39, 0), 10: (37, 1), 11: (20, 0)}.items():
        x[:n_low, unit] = 0.001
        x[n_low:n_low + n_high, unit] = 0.999
    return x


def test_unit_states_on_planted_units_including_the_cuts():
    ds = synthetic_store(runs=1, epochs=(0.0,), depth=1, width=12, samples=(40, 20), activation=_planted,
                         gradients=False)
    result = actstats.unit_states(ds, by="layer").isel(layer=0)
    expected = {"stuck_low": 4, "stuck_high": 2, "binary": 3, "graded": 3, "dead": 0}
    assert {s: int(result[f"n_{s}"]) for s in expected} == expected
    assert np.isnan(float(result["share_dead"])) and float(result["share_binary"]) == 3 / 12
    _check_unit_states(actstats.unit_states(ds), _unit_states_reference(ds, 0.05, "train", 0.95), ds)
    # dask-backed, chunked across probes and units: the same counts, identical results
    chunked = actstats.unit_states(ds.chunk({"sample": 7, "unit": 5}))
    xr.testing.assert_identical(chunked, actstats.unit_states(ds))


def _relu_planted(rng, shape):
    """ReLU units: 0-2 zero on every probe (dead), 3 zero except on the last (held-out) probe,
    4-7 positive on half the probes."""
    n, width = shape
    x = np.where(rng.random((n, width)) < 0.5, 0.0, rng.uniform(0.1, 2.0, (n, width)))
    x[:, 0:4] = 0.0
    x[-1, 3] = 1.0
    return x


def test_relu_units_are_dead_or_graded_and_the_split_decides():
    ds = synthetic_store(runs=2, width=8, samples=(40, 20), activation=_relu_planted,
                         activation_fn=["relu", "sigmoid"], gradients=False)
    train = actstats.unit_states(ds, by=("run", "layer"))
    every = actstats.unit_states(ds, by=("run", "layer"), split=None)
    relu = {"run": 0}
    assert train["n_dead"].sel(relu).values.tolist() == [2 * 4, 2 * 4]  # two epochs, units 0-3
    assert every["n_dead"].sel(relu).values.tolist() == [2 * 3, 2 * 3]  # unit 3 fires on a held-out probe
    assert np.isnan(train["share_stuck_low"].sel(relu).values).all()
    assert (train["n_stuck_low"].sel(relu) == 0).all() and (train["mean_high_share"].sel(relu) == 0).all()
    assert np.isnan(train["share_dead"].sel(run=1).values).all()
    pooled = actstats.unit_states(ds, by=())
    shares = sum(float(pooled[f"share_{s}"]) for s in STATE_NAMES)
    np.testing.assert_allclose(shares, 1.0, rtol=float_rtol(5))  # five shares of the same count summed
    _check_unit_states(actstats.unit_states(ds, split=None), _unit_states_reference(ds, 0.05, None, 0.95), ds)


def test_unit_states_refuse_bad_arguments():
    ds = synthetic_store()
    for arguments, name in [({"stuck_share": 0.5}, "stuck_share"), ({"stuck_share": 1.2}, "stuck_share"),
                            ({"split": "validation"}, "split"), ({"by": ("sample",)}, "by"), ({"eps": 0.7}, "eps")]:
        with pytest.raises(ActstatsValueError, match=name):
            actstats.unit_states(ds, **arguments)


def test_units_cli(small_store, capsys):
    code, out, err = _main(capsys, "units", small_store, "--format", "json", "--by", "layer", "--split", "all",
                           "--stuck-share", "0.9", "--eps", "0.1")
    assert code == 0, err
    records = json.loads(out)
    assert [r["layer"] for r in records] == [1, 2, 3]
    assert {"n_units", "share_stuck_low", "share_binary", "share_graded", "mean_low_share"} <= set(records[0])
    code, out, err = _main(capsys, "units", small_store, "--stuck-share", "0.3")
    assert code == 2 and "--stuck-share" in err


# ---------------------------------------------------------------------- attenuation

from scipy import stats  # noqa: E402


def test_attenuation_equals_numpy_in_a_loop(ds, stores):
    reference = stores["numpy"]
    result = actstats.attenuation(ds)
    maxima = {"sigmoid": 0.25, "tanh": 1.0}  # written here, not read from the registry
    derivatives = {"sigmoid": stats.logistic.pdf, "tanh": lambda z: 1 / np.cosh(z) ** 2}
    for r in range(reference.sizes["run"]):
        function = str(reference["activation_fn"].values[r])
        depth = int(reference["depth"].values[r])
        for e in range(reference.sizes["epoch"]):
            for l in range(reference.sizes["layer"]):
                group = result.isel(run=r, epoch=e, layer=l)
                if l + 1 >= depth:
                    assert np.isnan(group["delta_attenuation"]) and not bool(group["vanishing"])
                    assert np.isnan(group["log_share_derivative"]) and np.isnan(group["weight_factor"])
                    continue
                delta = activation_slab(reference, "delta", r, e, l)
                above = activation_slab(reference, "delta", r, e, l + 1)
                z = activation_slab(reference, "preactivation", r, e, l)
                ratio = np.sqrt(np.mean(delta**2)) / np.sqrt(np.mean(above**2))
                factor = derivatives[function](z).mean() / maxima[function]
                expected = [ratio, factor, ratio / factor]
                # sums of squares and of f' (one sign) over the slab in two orders, and two other
                # implementations of f' (a few ulps): kind 2, a statistic of a few sums
                rtol = float_rtol(max(delta.size, above.size), condition=16)
                np.testing.assert_allclose([float(group[n]) for n in ("delta_attenuation", "derivative_factor",
                                                                      "weight_factor")], expected, rtol=rtol)
                assert bool(group["vanishing"]) == (ratio < 1)
                if ratio < 1:
                    # log of values near 1 amplifies relative error by 1/|log x|
                    np.testing.assert_allclose(float(group["log_share_derivative"]),
                                               np.log(factor) / np.log(ratio),
                                               rtol=rtol * (1 / abs(np.log(factor)) + 1 / abs(np.log(ratio))))
                else:
                    assert np.isnan(group["log_share_derivative"])
    assert np.array_equal(result["derivative_max"].values,
                          np.broadcast_to(np.where(result["activation_fn"].values == "sigmoid", 0.25, 1.0)[:, None, None],
                                          result["derivative_max"].shape))


def test_gradients_vanish_without_saturation_and_saturation_raises_the_derivative_share():
    """synthetic_store plants deltas 10x smaller per layer down; small weights keep z near 0
    (f' near its maximum), large ones saturate the units."""
    linear = actstats.attenuation(synthetic_store(depth=4, width=32, weight_scale=0.5, seed=1))
    saturated = actstats.attenuation(synthetic_store(depth=4, width=32, weight_scale=12.0, seed=1))
    below_top = dict(layer=[1, 2, 3])
    for result in (linear, saturated):
        assert result["vanishing"].sel(below_top).all() and not result["vanishing"].sel(layer=4).any()
        np.testing.assert_allclose(result["delta_attenuation"].sel(below_top), 0.1, rtol=0.2)  # planted, sampled
    assert (linear["derivative_factor"].sel(below_top) > 0.9).all()
    assert (linear["log_share_derivative"].sel(below_top) < 0.05).all()  # vanishing without saturation
    assert (saturated["derivative_factor"].sel(below_top) < linear["derivative_factor"].sel(below_top)).all()
    assert (saturated["log_share_derivative"].sel(below_top) > linear["log_share_derivative"].sel(below_top)).all()
    np.testing.assert_allclose(saturated["weight_factor"] * saturated["derivative_factor"],
                               saturated["delta_attenuation"], rtol=4 * np.finfo(float).eps)  # one product back


def test_attenuation_needs_delta_and_its_cli(small_store, capsys):
    from actstats.errors import ActstatsError

    with pytest.raises(ActstatsError, match="'delta'"):
        actstats.attenuation(synthetic_store(gradients=False))
    code, out, err = _main(capsys, "attenuation", small_store, "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    assert {"run", "epoch", "layer", "delta_attenuation", "derivative_factor", "weight_factor",
            "log_share_derivative", "vanishing"} <= set(records[0])
