"""factor_effects against a loop over runs, on the captured store and on synthetic stores.

The reference (tests/queries_reference.py: factor_effects_reference) takes each run's last
complete record by looping over `complete`, each hidden layer's slab by slicing with `width`,
per-sample fractions with the bounds table written there, and compares the two levels with
`compare_groups` on its own arrays. Tolerances: tests/README.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import actstats
from actstats import cli
from actstats.errors import ActstatsValueError
from actstats.kernels import compare_groups
from actstats.queries.factors import init_labels
from actstats.report import init_labels as report_init_labels
from actstats.selection import select_runs
from actstats.synthetic import synthetic_store
from queries_reference import factor_effects_reference
from tolerances import STATISTIC, float_rtol
from conftest import run_main as _main

FAST = {"n_permutations": 999, "n_resamples": 500, "seed": 3}


def _order(values) -> list[str]:
    """A coordinate's levels as text, in the order of its values."""
    return [str(v) for v in sorted(set(np.asarray(values).tolist()))]


def _text(values) -> list[str]:
    return [str(v) for v in np.asarray(values).tolist()]


def _assert_matches(result, expected, ds):
    """Kind 2 (two orders of the same sums): per-sample fractions averaged over samples, then
    layers, then runs, in another order. Every term is a fraction in [0, 1], so a mean, or a
    difference of two means, and the bootstrap quantiles of such differences, are within the
    relative bound times 1 (absolute), whatever cancellation the difference has. The p-value
    counts permuted differences at least the observed one with a 1e-12 relative tie band
    (compare_groups), far above these rounding differences: equal."""
    atol = float_rtol(ds.sizes["sample"] * ds.sizes["layer"] * ds.sizes["run"], condition=STATISTIC)
    assert result["level"].values.tolist() == expected["level"]
    assert result["n_runs"].values.tolist() == expected["n_runs"]
    for name in ("mean_fraction", "mean_fraction_initial", "mean_change"):
        np.testing.assert_allclose(result[name].values, expected[name], rtol=0, atol=atol, err_msg=name)
    assert str(result["most_saturated"].values) == expected["most_saturated"]
    assert str(result["least_saturated"].values) == expected["least_saturated"]
    for name in ("difference", "ci_low", "ci_high"):
        np.testing.assert_allclose(float(result[name]), expected[name], rtol=0, atol=atol, err_msg=name)
    assert float(result["pvalue"]) == expected["pvalue"]


# ------------------------------------------------------------------- the captured store


@pytest.mark.parametrize("factor, layer, split", [
    ("depth", "mean", "train"),
    ("depth", "top", "train"),
    ("activation_fn", "mean", "test"),
    ("activation_fn", "top", "train"),
])
def test_equals_a_loop_over_runs_on_the_captured_store(ds, factor, layer, split):
    result = actstats.factor_effects(ds, factor, 0.05, layer=layer, split=split, **FAST)
    expected = factor_effects_reference(ds, _text(ds[factor].values), _order(ds[factor].values), 0.05,
                                        split, layer, **FAST)
    _assert_matches(result, expected, ds)
    assert result.attrs["factor"] == factor and result.attrs["layer"] == layer and result.attrs["split"] == split
    assert result["mean_fraction_initial"].notnull().all()  # the store has epoch 0


def test_the_accessor_and_a_selection_of_runs(stores):
    ds = stores["numpy"]
    whole = actstats.factor_effects(ds, "activation_fn", eps=0.1, **FAST)
    assert whole.equals(ds.actstats.factor_effects("activation_fn", eps=0.1, **FAST))
    runs = [1, 2, 5, 6]
    mine = actstats.factor_effects(ds, "activation_fn", eps=0.1, runs=runs, **FAST)
    assert mine.equals(actstats.factor_effects(select_runs(ds, runs=runs), "activation_fn", eps=0.1, **FAST))
    assert int(mine["n_runs"].sum()) == 4 and mine.attrs["runs_used"] == "1,2,5,6"


# ------------------------------------------------------------------- synthetic stores


def _store_of_functions():
    """Six runs of four activation functions and three depths; epochs 0, 1, 2, with weights
    growing with the epoch (so saturation changes from initialisation)."""
    return synthetic_store(runs=6, epochs=(0.0, 1.0, 2.0), depth=[1, 2, 3, 1, 2, 3], width=[12, 16, 10, 16, 12, 16],
                           activation_fn=["sigmoid", "tanh", "softsign", "sigmoid", "tanh", "relu"],
                           weight_scale=5.0, seed=4)


@pytest.mark.parametrize("factor, layer", [("activation_fn", "mean"), ("depth", "mean"), ("depth", "top")])
def test_equals_a_loop_over_runs_on_a_synthetic_store(factor, layer):
    ds = _store_of_functions()
    result = actstats.factor_effects(ds, factor, 0.02, layer=layer, **FAST)
    expected = factor_effects_reference(ds, _text(ds[factor].values), _order(ds[factor].values), 0.02,
                                        "train", layer, **FAST)
    _assert_matches(result, expected, ds)
    assert (result["mean_change"] != 0).any()


def _planted(fractions_end, fractions_start, **coords):
    """Sigmoid runs whose every sample has exactly ``k`` of its 16 units at 0.999 (the rest 0.5):
    a saturated fraction k/16 in every layer, exactly, at epoch 0 and at the end."""
    runs = len(fractions_end)
    ds = synthetic_store(runs=runs, epochs=(0.0, 1.0), depth=coords.pop("depth", 2), width=16, seed=1)
    activation = ds["activation"].values
    for r, (end, start) in enumerate(zip(fractions_end, fractions_start)):
        for e, share in enumerate((start, end)):
            k = int(round(share * 16))
            depth = int(ds["depth"].values[r])
            activation[r, e, :depth] = 0.5
            activation[r, e, :depth, :, :k] = 0.999
    return ds.assign_coords({name: ("run", values) for name, values in coords.items()})


def test_planted_effects_are_recovered_exactly():
    ds = _planted([0.5, 0.5, 0.5, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 0.25, 0.25, 0.25],
                  optimizer=["sgd", "sgd", "sgd", "adam", "adam", "adam"])
    result = actstats.factor_effects(ds, "optimizer", **FAST)
    assert result["level"].values.tolist() == ["adam", "sgd"]  # in the order of the values
    assert result["mean_fraction"].values.tolist() == [0.25, 0.5]
    assert result["mean_fraction_initial"].values.tolist() == [0.25, 0.0]
    assert result["mean_change"].values.tolist() == [0.0, 0.5]
    assert result["n_runs"].values.tolist() == [3, 3]
    assert str(result["most_saturated"].values) == "sgd" and str(result["least_saturated"].values) == "adam"
    # the same kernel on the same (exact) arrays: bit for bit; constant groups: a zero-width interval
    expected = compare_groups(np.full(3, 0.5), np.full(3, 0.25), **FAST)
    assert float(result["pvalue"]) == float(expected.pvalue)
    assert float(result["difference"]) == float(result["ci_low"]) == float(result["ci_high"]) == 0.25
    assert float(result["pvalue"]) == pytest.approx(0.1, abs=0.03)  # 2 of the 20 splits of 3 + 3 runs


def test_top_compares_the_layer_equal_to_the_depth():
    ds = _planted([0.5, 0.5, 0.25, 0.25], [0.0] * 4, depth=[1, 1, 2, 2])
    ds["activation"][2:, 1, 0] = 0.5  # depth-2 runs: layer 1 unsaturated, layer 2 at 0.25
    top = actstats.factor_effects(ds, "depth", layer="top", **FAST)
    mean = actstats.factor_effects(ds, "depth", layer="mean", **FAST)
    assert top["mean_fraction"].values.tolist() == [0.5, 0.25]
    assert mean["mean_fraction"].values.tolist() == [0.5, 0.125]
    assert top["level"].values.tolist() == ["1", "2"]


def test_init_levels_carry_the_scale_where_one_init_has_several():
    configs = [json.dumps({"model": {"init_scale": s}}) for s in (0.01, 0.01, 1.0, 1.0, 1.0, 1.0)]
    ds = _planted([0.5, 0.5, 0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
                  init=["normal", "normal", "normal", "normal", "uniform", "uniform"], config=configs)
    assert init_labels(ds).tolist() == ["normal(0.01)"] * 2 + ["normal(1)"] * 2 + ["uniform"] * 2
    assert report_init_labels is init_labels  # still importable from the report
    result = actstats.factor_effects(ds, "init", **FAST)
    assert result["level"].values.tolist() == ["normal(0.01)", "normal(1)", "uniform"]
    assert result["mean_fraction"].values.tolist() == [0.5, 0.0, 0.25]
    assert result["mean_change"].values.tolist() == [0.0, 0.0, 0.25]
    assert (str(result["most_saturated"].values), str(result["least_saturated"].values)) == ("normal(0.01)",
                                                                                           "normal(1)")
    expected = factor_effects_reference(ds, init_labels(ds).tolist(), ["normal(0.01)", "normal(1)", "uniform"],
                                        0.05, **FAST)
    _assert_matches(result, expected, ds)


def test_records_that_are_not_complete_and_a_store_without_epoch_zero():
    ds = _store_of_functions()
    complete = ds["complete"].values
    complete[0, 2] = False  # run 0 ends at epoch 1
    complete[4, :] = False  # run 4 has no complete record: not used
    result = actstats.factor_effects(ds, "activation_fn", 0.05, **FAST)
    expected = factor_effects_reference(ds, _text(ds["activation_fn"].values), _order(ds["activation_fn"].values),
                                        0.05, **FAST)
    _assert_matches(result, expected, ds)
    assert result.attrs["runs_excluded"] == "4" and result["n_runs"].values.tolist() == [1, 2, 1, 1]
    later = actstats.factor_effects(ds.isel(epoch=[1, 2]), "activation_fn", 0.05, **FAST)
    assert later["mean_fraction_initial"].isnull().all() and later["mean_change"].isnull().all()
    np.testing.assert_array_equal(later["mean_fraction"].values, result["mean_fraction"].values)


# ------------------------------------------------------------------- errors, command line


def test_fewer_than_two_levels_is_one_clear_line(stores):
    ds = stores["numpy"]
    with pytest.raises(ActstatsValueError) as error:
        actstats.factor_effects(ds, "init")
    message = str(error.value)
    assert "\n" not in message and "'init'" in message and "at least 2" in message and "'default'" in message
    with pytest.raises(ActstatsValueError, match="at least 2"):
        actstats.factor_effects(ds, "depth", runs=[0, 1])  # both depth 1
    with pytest.raises(ActstatsValueError, match="factor must be a run coordinate .*depth"):
        actstats.factor_effects(ds, "activation")
    with pytest.raises(ActstatsValueError, match="layer must be"):
        actstats.factor_effects(ds, "depth", layer="bottom")
    with pytest.raises(ActstatsValueError, match="split must be"):
        actstats.factor_effects(ds, "depth", split="validation")
    with pytest.raises(ActstatsValueError, match="eps"):
        actstats.factor_effects(ds, "depth", eps=0.7)


def test_command_line(small_store, stores, capsys):
    code, out, err = _main(capsys, "factors", small_store, "--factor", "depth", "--layer", "top", "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    result = actstats.factor_effects(stores["numpy"], "depth", layer="top")
    assert [r["level"] for r in records] == ["1", "3"]
    assert [r["mean_fraction"] for r in records] == result["mean_fraction"].values.tolist()
    assert {r["pvalue"] for r in records} == {float(result["pvalue"])}
    code, out, err = _main(capsys, "factors", small_store, "--factor", "activation_fn", "--split", "test",
                           "--eps", "0.1", "--format", "csv")
    assert code == 0, err
    assert out.splitlines()[0].startswith("level,mean_fraction,") and len(out.splitlines()) == 3
    code, out, err = _main(capsys, "factors", small_store, "--factor", "activation_fn", "--where", "depth=3")
    assert code == 0 and "most_saturated" in out and "bootstrap" in out
    code, out, err = _main(capsys, "factors", small_store)  # the default factor, init, does not vary here
    assert code == 2 and out == "" and err.count("\n") == 1 and "--factor init" in err and "at least 2" in err
