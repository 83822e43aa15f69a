"""Sample-level intervals: Wilson (statsmodels, Newcombe 1998), bootstrap (scipy), coverage."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.proportion import proportion_confint

from actstats import kernels
from actstats.kernels import bootstrap_mean_interval, fraction_interval, wilson_interval

REFERENCE = json.loads((Path(__file__).parent / "reference" / "intervals.json").read_text())


@pytest.mark.parametrize(
    "case", REFERENCE["cases"], ids=lambda c: f"{c['successes']}/{c['trials']}@{c['confidence_level']}"
)
def test_wilson_against_stored_statsmodels(case):
    low, high = wilson_interval(case["successes"], case["trials"], case["confidence_level"])
    assert low == pytest.approx(case["expected"]["low"], rel=1e-12, abs=1e-15)
    assert high == pytest.approx(case["expected"]["high"], rel=1e-12)


@pytest.mark.parametrize("case", REFERENCE["published"], ids=lambda c: f"{c['successes']}/{c['trials']}")
def test_wilson_against_newcombe_1998(case):
    low, high = wilson_interval(case["successes"], case["trials"])
    assert low == pytest.approx(case["low"], abs=5e-5)
    assert high == pytest.approx(case["high"], abs=5e-5)


def test_wilson_vectorised_live():
    successes = np.array([0, 3, 10, 7.5])
    trials = np.array([10, 40, 10, 30])
    low, high = wilson_interval(successes, trials, 0.9)
    expected = proportion_confint(successes, trials, alpha=0.1, method="wilson")
    np.testing.assert_allclose(low, expected[0], atol=1e-15)
    np.testing.assert_allclose(high, expected[1], rtol=1e-12)
    assert np.isnan(wilson_interval(0, 0)[0])


@pytest.mark.parametrize("method, scipy_method", [("bca", "BCa"), ("percentile", "percentile")])
def test_bootstrap_agrees_with_scipy(method, scipy_method):
    x = np.random.default_rng(0).lognormal(0, 0.8, size=150)
    estimate, low, high = bootstrap_mean_interval(x, method=method, n_resamples=20_000, seed=1)
    reference = scipy.stats.bootstrap(
        (x,), np.mean, method=scipy_method, n_resamples=20_000, rng=np.random.default_rng(2)
    ).confidence_interval
    # both are Monte Carlo approximations of the same ideal interval
    width = reference.high - reference.low
    assert estimate == pytest.approx(x.mean())
    assert low == pytest.approx(reference.low, abs=0.03 * width)
    assert high == pytest.approx(reference.high, abs=0.03 * width)


def test_bootstrap_padding_and_determinism():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(3, 80))
    x[1, 60:] = np.nan
    estimate, low, high = bootstrap_mean_interval(x, seed=4)
    again = bootstrap_mean_interval(x, seed=4)
    np.testing.assert_array_equal(low, again[1])
    alone = bootstrap_mean_interval(x[1, :60], seed=4)
    np.testing.assert_allclose([estimate[1], low[1], high[1]], [float(v) for v in alone], rtol=1e-12)
    assert np.all((low < estimate) & (estimate < high))


def simulate_fractions(rng, n_datasets, n_samples, n_units, mean, concentration):
    """Hierarchical data: each sample has its own propensity; units within it binomial."""
    if mean == 0:
        propensity = np.zeros((n_datasets, n_samples))
    else:
        propensity = rng.beta(mean * concentration, (1 - mean) * concentration, size=(n_datasets, n_samples))
    return rng.binomial(n_units, propensity) / n_units


# 200 datasets per case; nominal 95%: the coverage must lie in the binomial 99% band
COVERAGE_BAND = np.array(scipy.stats.binom.interval(0.99, 200, 0.95)) / 200


@pytest.mark.parametrize(
    "mean, concentration, n_samples",
    [
        (0.3, 2.0, 100),  # moderate, strongly varying between samples
        (0.6, 10.0, 50),
        (0.05, 5.0, 100),  # small
        (0.9, 1.0, 100),  # near 1
        (0.005, 1.0, 200),  # sparse: few samples with any saturated unit -> Wilson
    ],
)
def test_fraction_interval_coverage(mean, concentration, n_samples):
    rng = np.random.default_rng(int(1000 * mean) + n_samples)
    fractions = simulate_fractions(rng, 200, n_samples, 50, mean, concentration)
    result = fraction_interval(fractions, n_resamples=1000)
    coverage = np.mean((result.ci_low <= mean) & (mean <= result.ci_high))
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], coverage
    assert result.estimate.shape == (200,)


def test_fraction_interval_true_zero():
    fractions = simulate_fractions(np.random.default_rng(5), 200, 100, 50, 0.0, 1.0)
    result = fraction_interval(fractions)
    assert np.all(result.ci_low == 0)  # includes the truth, every time
    assert set(result.interval_method.tolist()) == {"wilson"}
    # z^2 / (S + z^2): the two-sided analogue of the rule of three (3 / S)
    z = scipy.stats.norm.ppf(0.975)
    np.testing.assert_allclose(result.ci_high, z**2 / (100 + z**2))
    assert np.all((3 / 100 <= result.ci_high) & (result.ci_high <= 4 / 100))


def test_fraction_interval_all_saturated_and_axes():
    fractions = np.ones((2, 30))
    fractions[1, :5] = np.nan
    result = fraction_interval(fractions)
    assert np.all(result.ci_high == 1)
    assert np.all(result.ci_low < 1) and result.n_samples.tolist() == [30, 25]
    x = np.random.default_rng(6).uniform(size=(4, 50, 2))
    moved = fraction_interval(x, axis=1)
    direct = fraction_interval(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(moved.ci_low, direct.ci_low)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fraction_interval(np.array([0.5, 1.5]))


def test_from_counts_to_interval():
    """The intended pipeline: activations -> counts per sample -> fractions -> interval."""
    rng = np.random.default_rng(7)
    activations = 1 / (1 + np.exp(-rng.normal(0, 3, size=(120, 64))))  # sample x unit
    counts = kernels.saturation_counts(activations, axis=-1)  # per sample
    fractions = kernels.saturated_fractions(counts)[..., 0]
    result = fraction_interval(fractions)
    assert result.n_samples == 120
    assert result.ci_low < result.estimate < result.ci_high


def test_kept_resampling_counts_give_the_same_interval():
    """bootstrap_mean_interval after keep_resampling_weights (as saturation draws them on another
    thread while it reads) against a call that draws them itself: the same numbers, bit for bit."""
    from actstats.kernels import intervals

    x = np.random.default_rng(12).random((4, 41))
    intervals._kept_weights.clear()
    drawn = intervals.bootstrap_mean_interval(x, n_resamples=500, seed=9)
    intervals._kept_weights.clear()
    intervals.keep_resampling_weights(41, n_resamples=500, seed=9)
    assert (9, 41, 500) in intervals._kept_weights
    kept = intervals.bootstrap_mean_interval(x, n_resamples=500, seed=9)
    for a, b in zip(drawn, kept):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size, n_resamples", [(1000, 2000), (41, 500), (7, 64), (3, 65), (1, 1), (5, 0)])
def test_resampling_counts_block_by_block_equal_one_bincount(size, n_resamples):
    """The resampling counts, counted a block of resamples at a time, equal those of one
    bincount over every draw (the former implementation, copied here): the same draws of
    the same generator, the same counts, so the same bootstrap."""
    from actstats.kernels.intervals import _resampling_weights

    rng = np.random.default_rng(3)
    draws = rng.integers(0, size, size=(n_resamples, size))
    draws += np.arange(n_resamples)[:, None] * size
    reference = np.bincount(draws.ravel(), minlength=n_resamples * size).reshape(n_resamples, size).astype(np.float64)
    got = _resampling_weights(np.random.default_rng(3), size, n_resamples)
    assert got.dtype == np.float64 and got.shape == (n_resamples, size)
    np.testing.assert_array_equal(got, reference)
    assert (got.sum(axis=1) == size).all()
