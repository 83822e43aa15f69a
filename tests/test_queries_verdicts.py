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

import actstats
from actstats import cli
from actstats.errors import ActstatsValueError
from actstats.options import set_options
from actstats.synthetic import synthetic_store


@pytest.fixture(scope="module")
def stores(small_store):
    return {"dask": actstats.open_store(small_store), "numpy": actstats.open_store(small_store).load()}


@pytest.fixture(params=["numpy", "dask"])
def ds(stores, request):
    return stores[request.param]


def _main(capsys, *args):
    code = cli.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
