"""Do the queries recognise what synthetic stores were built to contain? And calibration.

The stores are xarray Datasets in the store layout (actstats.synthetic) whose activations
or weights are drawn from known distributions, so the right answer is known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import actstats
from actstats.synthetic import synthetic_store


def _one(result):
    """The single group of a one-run, one-epoch, one-layer store."""
    return result.squeeze(drop=True)


def _beta_store(a, b, activation_fn="sigmoid", seed=0):
    lower, upper = (0.0, 1.0) if activation_fn == "sigmoid" else (-1.0, 1.0)
    return synthetic_store(
        activation=lambda rng, shape: lower + (upper - lower) * rng.beta(a, b, shape),
        activation_fn=activation_fn, depth=1, width=32, samples=(200, 100), epochs=(0.0,), seed=seed,
    )


@pytest.mark.parametrize("activation_fn", ["sigmoid", "tanh"])
def test_u_shaped_activations_are_saturated_u_shaped_and_bimodal_at_bounds(activation_fn):
    ds = _beta_store(0.2, 0.2, activation_fn)
    saturation = actstats.saturation(ds, by="split")
    truth = 2 * stats.beta(0.2, 0.2).cdf(0.05)  # P(y <= 0.05) + P(y >= 0.95)
    assert ((saturation["ci_low"] < truth) & (truth < saturation["ci_high"])).all()
    assert (saturation["fraction"] > 0.5).all()
    bimodality = actstats.bimodality(ds, by="split")
    assert bimodality["u_shaped"].all() and bimodality["bimodal_at_bounds"].all()
    assert (bimodality["pvalue_adjusted"] < 1e-3).all()
    assert (abs(bimodality["beta_a"] - 0.2) < 0.03).all() and (abs(bimodality["beta_b"] - 0.2) < 0.03).all()


def test_bell_shaped_activations_are_neither_saturated_nor_bimodal():
    ds = _beta_store(5.0, 5.0)
    saturation = actstats.saturation(ds, by="split")
    assert (saturation["fraction"] < 0.01).all()
    bimodality = actstats.bimodality(ds, by="split")
    assert not bimodality["u_shaped"].any() and not bimodality["bimodal_at_bounds"].any()
    fits = actstats.fit(ds, family=("beta", "logit_normal"), by="split")
    assert (abs(fits["beta_a"] - 5) < 0.5).all() and (fits["best_family"] == "beta").all()


def test_training_samples_more_saturated_than_held_out_ones_are_detected():
    ds = _beta_store(0.2, 0.2)
    test = ds["split"] == "test"
    rng = np.random.default_rng(1)
    ds["activation"] = ds["activation"].where(~test, rng.beta(3, 3, ds["activation"].shape).astype("float32"))
    result = _one(actstats.compare_splits(ds))
    assert float(result["difference"]) > 0.5 and float(result["pvalue"]) < 1e-3
    assert float(result["ci_low"]) > 0.4


def _weight_store(sampler, width=128, seed=0):
    return synthetic_store(weight=sampler, depth=1, width=width, epochs=(0.0,), seed=seed, gradients=False)



def test_uniform_weights_have_negative_excess_kurtosis_and_are_not_gaussian():
    result = _one(actstats.weight_normality(_weight_store(lambda rng, shape: rng.uniform(-0.1, 0.1, shape))))
    assert abs(float(result["excess_kurtosis"]) + 1.2) < 0.1
    assert str(result["best_family"].item()) == "uniform" and not bool(result["gaussian"])
    assert float(result["w1_normal"]) > 0.1


def test_laplace_weights_have_excess_kurtosis_three_and_are_not_gaussian():
    result = _one(actstats.weight_normality(_weight_store(lambda rng, shape: rng.laplace(0, 0.05, shape))))
    assert abs(float(result["excess_kurtosis"]) - 3) < 0.6
    assert str(result["best_family"].item()) == "laplace" and not bool(result["gaussian"])


def test_normal_weights_are_gaussian_although_tests_may_reject_elsewhere():
    result = _one(actstats.weight_normality(_weight_store(lambda rng, shape: rng.normal(0, 0.05, shape))))
    assert bool(result["gaussian"]) and str(result["best_family"].item()) == "normal"
    assert abs(float(result["excess_kurtosis"])) < 0.2 and float(result["w1_normal"]) < 0.02


def test_all_weight_families_including_the_slow_ones():
    ds = _weight_store(lambda rng, shape: rng.uniform(-1, 1, shape), width=48)
    assert list(actstats.fit(ds, variable="weight")["family"].values) == ["normal", "laplace", "logistic", "uniform"]
    result = _one(actstats.fit(ds, family="all", variable="weight"))
    assert list(result["family"].values) == ["normal", "t", "laplace", "logistic", "uniform", "gennorm"]
    assert str(result["best_family"].item()) == "uniform"
    assert float(result["shape"].sel(family="gennorm")) > 5  # flat-topped: a large gennorm beta


def test_saturation_interval_coverage_on_a_simulated_store():
    """100 replicate runs of a hierarchical store: each sample has its own propensity.

    Sample s saturates each of its units with probability p_s ~ Beta(2, 6), so the
    population fraction is E[p_s] = 0.25 while units of a sample are dependent. The
    95% interval (per run) must cover 0.25 in 95% of runs, within the binomial 99% band.
    """
    runs, samples, units = 100, 60, 20
    rng = np.random.default_rng(12)
    propensity = rng.beta(2, 6, (runs, 1, 1, samples, 1))
    saturated = rng.random((runs, 1, 1, samples, units)) < propensity
    near = np.where(rng.random(saturated.shape) < 0.5, rng.uniform(0, 0.05, saturated.shape),
                    rng.uniform(0.95, 1, saturated.shape))
    values = np.where(saturated, near, rng.uniform(0.1, 0.9, saturated.shape)).astype("float32")
    ds = synthetic_store(runs=runs, depth=1, width=units, samples=(samples, 0), epochs=(0.0,), gradients=False)
    ds["activation"] = (ds["activation"].dims, values)
    result = actstats.saturation(ds, by="run")
    covered = ((result["ci_low"] <= 0.25) & (0.25 <= result["ci_high"])).mean()
    low, high = stats.binom.interval(0.99, runs, 0.95)
    assert low / runs <= float(covered) <= 1.0, float(covered)
    assert (result["interval_method"] == "bootstrap-bca").all()
