"""``unit_learning`` (do saturated units learn less?) against a numpy/scipy loop over (run, layer).

Synthetic stores with planted units: some stuck at a bound on (almost) every probe, others
graded with a varying share of probes at a bound, and the weights of the last record set
to W_0 (1 + c_u) so that each unit's relative change is planted (smaller for the stuck
units, or independent of the state for the null).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from statsmodels.stats.multitest import multipletests

import actstats
from actstats import cli, kernels
from actstats.errors import ActstatsValueError, StoreFormatError
from actstats.queries.unit_learning import spearman_permutation
from actstats.synthetic import synthetic_store
from queries_reference import BOUNDS, activation_slab, split_samples
from tolerances import BH_RTOL, STATISTIC, float_rtol, sum_condition

P = 999  # permutations in the tests (p-values are multiples of 1/1000)

#: Activation values at a bound (inside eps = 0.05 of it) and the interior range, per function.
_AT = {"sigmoid": (0.01, 0.99), "tanh": (-0.98, 0.98)}


def _plant_activations(ds, rng, n_stuck, r, l, e):
    """Units 0..n_stuck-1 at a bound on all probes but at most one; the others graded, at a bound on
    a random share (0-60 %) of the probes and in the interior elsewhere."""
    function = str(ds["activation_fn"].values[r])
    width = int(ds["width"].values[r, l])
    n = ds.sizes["sample"]
    lower, upper = BOUNDS[function]
    low, high = _AT[function]
    values = np.empty((n, width))
    for u in range(width):
        bound = low if u % 2 == 0 else high
        if u < n_stuck:
            column = np.full(n, bound)
            column[rng.integers(n)] = lower + 0.5 * (upper - lower)  # one probe off the bound: still >= 0.95
        else:
            column = rng.uniform(lower + 0.2 * (upper - lower), upper - 0.2 * (upper - lower), n)
            column[rng.random(n) < rng.uniform(0.0, 0.6)] = bound
        values[:, u] = column
    ds["activation"].values[r, e, l, :, :width] = values


def _plant_weights(ds, r, l, e, change):
    """W_e = W_0 (1 + c_u) for each existing unit u: relative change |c_u| (up to float32 rounding)."""
    width = int(ds["width"].values[r, l])
    initial = ds["weight"].values[r, 0, l, :width]
    ds["weight"].values[r, e, l, :width] = initial * (1.0 + np.asarray(change, dtype=np.float32)[:, None])


def _planted_store(*, null=False, seed=0):
    """Run 0 sigmoid (2 layers of 16), run 1 tanh (2 layers of 12; its last record, epoch 2, incomplete:
    epoch 1 is compared), run 2 relu, run 3 sigmoid with one stuck unit in layer 1 (too few to compare)."""
    rng = np.random.default_rng(seed)
    ds = synthetic_store(runs=4, epochs=(0.0, 1.0, 2.0), depth=2, width=[16, 12, 16, 16],
                         activation_fn=["sigmoid", "tanh", "relu", "sigmoid"], seed=seed)
    ds["complete"].values[1, 2] = False
    for name in ("activation", "preactivation", "weight", "weight_grad", "delta"):
        ds[name].values[1, 2] = np.nan
    stuck = {(0, 0): 5, (0, 1): 7, (1, 0): 4, (1, 1): 6, (3, 0): 1, (3, 1): 6}
    last = {0: 2, 1: 1, 2: 2, 3: 2}
    for (r, l), n_stuck in stuck.items():
        for e in (0, last[r]):
            _plant_activations(ds, rng, n_stuck, r, l, e)
        width = int(ds["width"].values[r, l])
        if null:
            change = rng.uniform(0.05, 0.6, width)
        else:
            change = np.where(np.arange(width) < n_stuck, rng.uniform(0.01, 0.05, width), rng.uniform(0.2, 0.6, width))
        _plant_weights(ds, r, l, last[r], change)
    return ds


def _reference(ds, *, eps=0.05, split="train", stuck_share=0.95, n_permutations=P, seed=0):
    """Plain loop over (run, layer): shares with float64 band edges, norms with numpy, kernels.compare_groups
    on the two classes, scipy's Spearman ρ."""
    epochs = np.asarray(ds["epoch"].values, dtype=float)
    initial = int(np.flatnonzero(epochs == 0)[0])
    samples = split_samples(ds)[split] if split != "all" else None
    out = {}
    for r in range(ds.sizes["run"]):
        complete = np.asarray(ds["complete"].values[r], dtype=bool)
        last = int(np.flatnonzero(complete)[-1]) if complete.any() else -1
        function = str(ds["activation_fn"].values[r])
        for l in range(ds.sizes["layer"]):
            width = int(ds["width"].values[r, l])
            row = {"share": np.empty(0), "change": np.empty(0), "n_saturated_units": 0, "n_other_units": 0}
            out[r, l] = row
            if width == 0 or function not in _AT or last <= 0 or not complete[initial]:
                continue
            slab = activation_slab(ds, "activation", r, last, l, samples)
            lower, upper = BOUNDS[function]
            valid = ~np.isnan(slab)
            with np.errstate(invalid="ignore"):
                at_bound = valid & ((slab <= lower + eps * (upper - lower)) | (slab >= upper - eps * (upper - lower)))
            share = at_bound.sum(axis=0) / valid.sum(axis=0)
            layer = int(ds["layer"].values[l])
            fan_in = ds.sizes["feature"] if layer == 1 else int(ds["width"].values[r, l - 1])
            w0 = np.asarray(ds["weight"].values[r, initial, l, :width, :fan_in], dtype=float)
            wt = np.asarray(ds["weight"].values[r, last, l, :width, :fan_in], dtype=float)
            change = np.linalg.norm(wt - w0, axis=1) / np.linalg.norm(w0, axis=1)
            saturated = share >= stuck_share
            row.update(share=share, change=change, saturated=saturated, fan_in=fan_in,
                       n_saturated_units=int(saturated.sum()), n_other_units=int((~saturated).sum()))
            if saturated.any():
                row["change_saturated"] = change[saturated].mean()
            if (~saturated).any():
                row["change_other"] = change[~saturated].mean()
            if saturated.sum() >= 2 and (~saturated).sum() >= 2:
                row["difference"] = row["change_saturated"] - row["change_other"]
                row["pvalue"] = float(kernels.compare_groups(change[saturated], change[~saturated],
                                                             n_permutations=n_permutations, seed=seed).pvalue)
                row["spearman_rho"] = stats.spearmanr(share, change).statistic
    return out


def test_unit_learning_equals_a_numpy_scipy_loop():
    ds = _planted_store()
    result = actstats.unit_learning(ds, n_permutations=P)
    reference = _reference(ds)
    for (r, l), row in reference.items():
        group = result.isel(run=r, layer=l)
        assert int(group["n_saturated_units"]) == row["n_saturated_units"], (r, l)
        assert int(group["n_other_units"]) == row["n_other_units"], (r, l)
        n = row["change"].size + row.get("fan_in", 0)
        for name in ("change_saturated", "change_other"):
            if name in row:
                # kind 2: sums of fan_in squares (one sign) in another order, a ratio and a square root,
                # then a mean over the class's units (one sign)
                np.testing.assert_allclose(group[name], row[name], rtol=float_rtol(n, condition=STATISTIC),
                                           err_msg=f"{name} {(r, l)}")
            else:
                assert np.isnan(group[name]), (name, r, l)
        if "difference" in row:
            condition = STATISTIC * sum_condition([row["change_saturated"], -row["change_other"]])
            np.testing.assert_allclose(group["difference"], row["difference"], rtol=float_rtol(n, condition=condition))
            # the same kernel, seed and permutations on values equal up to round-off, which the kernel's
            # tie slack (1e-12 relative) absorbs: the same count of exceedances
            assert float(group["pvalue"]) == row["pvalue"], (r, l)
            ranks_share = stats.rankdata(row["share"]) - (row["share"].size + 1) / 2
            ranks_change = stats.rankdata(row["change"]) - (row["change"].size + 1) / 2
            # kind 3: Pearson's r of the same (exact) ranks in another order of sums: Σ a·b has terms of
            # both signs (its condition number), then a ratio and a square root of a few sums
            rtol = float_rtol(row["share"].size, condition=STATISTIC * sum_condition(ranks_share * ranks_change))
            np.testing.assert_allclose(group["spearman_rho"], row["spearman_rho"], rtol=rtol)
        else:
            for name in ("difference", "pvalue", "pvalue_adjusted", "spearman_rho", "spearman_pvalue"):
                assert np.isnan(group[name]), (name, r, l)
    pvalues = result["pvalue"].values.ravel()
    present = ~np.isnan(pvalues)
    assert present.sum() == 5  # run 0 and 1 both layers, run 3 layer 2
    np.testing.assert_allclose(result["pvalue_adjusted"].values.ravel()[present],
                               multipletests(pvalues[present], method="fdr_bh")[1], rtol=BH_RTOL)


def test_planted_answer_saturated_units_learn_less():
    result = actstats.unit_learning(_planted_store(), n_permutations=P)
    compared = result["difference"].notnull()
    assert bool((result["difference"].where(compared) < -0.1).sum() == compared.sum())
    assert bool((result["pvalue"].where(compared) <= 0.01).sum() == compared.sum())
    assert bool((result["spearman_rho"].where(compared) < -0.5).sum() == compared.sum())
    # rho mixes the class split with the graded units' unrelated shares (12 to 16 units): weaker than the test
    assert bool((result["spearman_pvalue"].where(compared) <= 0.05).sum() == compared.sum())
    # the tanh run is compared at its last complete record, epoch 1 (epoch 2 is incomplete)
    assert float(result["epoch_last"].sel(run=1, layer=1)) == 1.0
    # relu: no saturation share, so no units compared; the one stuck unit of run 3 layer 1: too few
    relu = result.sel(run=2)
    assert int(relu["n_saturated_units"].sum() + relu["n_other_units"].sum()) == 0
    assert bool(relu["spearman_rho"].isnull().all() and relu["change_other"].isnull().all())
    assert int(result["n_saturated_units"].sel(run=3, layer=1)) == 1
    assert np.isnan(result["difference"].sel(run=3, layer=1)) and np.isnan(result["spearman_rho"].sel(run=3, layer=1))
    assert "fewer than 2 units" in result.attrs["rule"] and "saturated" in result.attrs["rule"]


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_spearman_permutation_pvalue_agrees_with_scipy_within_monte_carlo_error():
    rng = np.random.default_rng(4)
    for strength in (0.0, 0.3, 0.6):
        x = np.round(rng.random(20), 1)  # ties, as shares of probes have
        y = strength * x + rng.random(20)
        rho, pvalue = spearman_permutation(x, y, 4999, seed=1)
        scipy_result = stats.permutation_test((y,), lambda v: stats.spearmanr(x, v).statistic,
                                              permutation_type="pairings", n_resamples=4999,
                                              alternative="two-sided", random_state=2)
        assert rho == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)
        # two Monte Carlo estimates of the same p-value: 4.5 standard errors of their difference, plus
        # scipy's two-sided convention (twice the smaller tail) against |rho*| >= |rho|
        p = max(pvalue, 1 / 5000)
        bound = 4.5 * np.sqrt(2 * p * (1 - p) / 4999) + 2 / 5000
        assert abs(pvalue - scipy_result.pvalue) <= bound, (strength, pvalue, scipy_result.pvalue)


def _null_store(runs, seed=1):
    """One sigmoid layer of 16 units per run: 4 stuck units, 12 graded with random shares; the weight
    changes drawn independently of the units' states (the null of both tests)."""
    rng = np.random.default_rng(seed)
    ds = synthetic_store(runs=runs, epochs=(0.0, 1.0), depth=1, width=16, gradients=False, seed=seed)
    for r in range(runs):
        _plant_activations(ds, rng, 4, r, 0, 1)
        _plant_weights(ds, r, 0, 1, rng.uniform(0.05, 0.6, 16))
    return ds


def test_permutation_pvalues_are_calibrated_on_null_layers():
    groups = 200
    result = actstats.unit_learning(_null_store(groups), n_permutations=P)
    low, high = stats.binom.ppf([0.005, 0.995], groups, 0.05)  # the binomial 99% interval of the count
    for name in ("spearman_pvalue", "pvalue"):
        values = result[name].values.ravel()
        assert np.isfinite(values).all() and values.size == groups
        rejected = int((values <= 0.05).sum())
        assert low <= rejected <= high, (name, rejected, (low, high))
        # and roughly uniform: each fifth of [0, 1] holds a share within a wide binomial bound
        counts = np.histogram(values, bins=5, range=(0, 1))[0]
        assert (counts >= stats.binom.ppf(0.0005, groups, 0.2)).all(), (name, counts)


def test_incomplete_records_never_enter_and_padding_with_numbers_is_refused():
    ds = _planted_store()
    assert not bool(ds["complete"].all())
    garbage = ds.copy(deep=True)
    for name in ("activation", "weight"):  # anything in records that are not complete
        garbage[name] = garbage[name].where(garbage["complete"], 0.5)
    xr.testing.assert_identical(actstats.unit_learning(ds, n_permutations=99),
                                actstats.unit_learning(garbage, n_permutations=99))
    for name in ("activation", "weight"):  # a writer that pads with numbers: a format error
        padded = ds.copy(deep=True)
        padded[name] = padded[name].fillna(0.5)
        with pytest.raises(StoreFormatError, match=f"variable '{name}' holds a value at"):
            actstats.unit_learning(padded, n_permutations=99)


def test_runs_without_a_comparison_are_nan():
    ds = synthetic_store(runs=3, epochs=(0.0, 1.0), weight_scale=8.0)
    ds["complete"].values[1, 1] = False  # last complete record: epoch 0 itself
    ds["complete"].values[2, 0] = False  # no initialisation to compare with
    result = actstats.unit_learning(ds, n_permutations=99, stuck_share=0.6)
    for r in (1, 2):
        assert int(result["n_saturated_units"].isel(run=r).sum() + result["n_other_units"].isel(run=r).sum()) == 0
        assert bool(result["change_other"].isel(run=r).isnull().all())
        assert bool(result["epoch_last"].isel(run=r).isnull().all())
    assert int(result["n_other_units"].isel(run=0).sum()) > 0


def test_a_store_without_epoch_0_is_refused_in_one_line():
    ds = synthetic_store(epochs=(1.0, 2.0))
    with pytest.raises(ActstatsValueError, match="needs epoch 0") as error:
        actstats.unit_learning(ds)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("arguments", [{"n_permutations": 0}, {"n_permutations": 9.5}, {"stuck_share": 0.4},
                                       {"split": "validation"}, {"eps": 0.7}, {"seed": -1}])
def test_bad_arguments_are_refused(arguments):
    with pytest.raises(ActstatsValueError):
        actstats.unit_learning(synthetic_store(), **arguments)


def test_command_line_json_and_csv(small_store, capsys):
    code = cli.main(["unit-learning", small_store, "--format", "json", "--permutations", "99", "--eps", "0.1",
                     "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    records = json.loads(out)
    expected = actstats.unit_learning(actstats.open_store(small_store).load(), eps=0.1, n_permutations=99)
    assert len(records) == expected.sizes["run"] * expected.sizes["layer"]
    for name in ("n_saturated_units", "n_other_units", "change_saturated", "change_other", "difference", "pvalue",
                 "pvalue_adjusted", "spearman_rho", "spearman_pvalue"):
        assert name in records[0]
    code = cli.main(["unit-learning", small_store, "--format", "csv", "--permutations", "99", "--stuck-share",
                     "0.6", "--split", "all", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0].startswith("run,")
    assert "spearman_pvalue" in out.splitlines()[0]


def test_docstring_examples_run():
    import doctest

    import actstats.queries.unit_learning as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
