"""Bounded activations: saturation counts, bimodality, Beta / logit-normal / mixture fits."""

import json
from pathlib import Path

import diptest
import numpy as np
import pytest
import scipy.stats
from scipy.special import expit

from actstats import kernels
from tolerances import fit_rtol

REFERENCE = json.loads((Path(__file__).parent / "reference" / "bounded.json").read_text())
CASES = REFERENCE["cases"]


# ------------------------------------------------------------------ saturation


def test_saturation_counts_edges_and_padding():
    x = np.array([0.0, 0.05, 0.0500001, 0.5, 0.95, 0.9499999, 1.0, np.nan])
    assert kernels.saturation_counts(x, eps=0.05).tolist() == [2, 2, 7]


def test_saturation_counts_tanh_bounds_and_axis():
    rng = np.random.default_rng(0)
    x = np.tanh(rng.normal(0, 3, size=(2, 50, 4)))
    counts = kernels.saturation_counts(x, -1.0, 1.0, 0.05, axis=(1, 2))
    assert counts.shape == (2, 3)
    for i in range(2):
        assert counts[i, 0] == np.sum(x[i] <= -1 + 0.1)
        assert counts[i, 1] == np.sum(x[i] >= 1 - 0.1)
        assert counts[i, 2] == 200
    # counts add up over chunks
    np.testing.assert_array_equal(
        kernels.saturation_counts(x[:, :20], -1, 1, axis=(1, 2)) + kernels.saturation_counts(x[:, 20:], -1, 1, axis=(1, 2)),
        counts,
    )


def test_saturation_counts_relu_mode():
    x = np.array([[0.0, 0.0, 1e-30, 3.0, np.nan]])
    assert kernels.saturation_counts(x, mode="zero").tolist() == [[2, 0, 4]]


def test_saturation_counts_rejects_bad_options():
    with pytest.raises(ValueError, match="mode='zero'"):
        kernels.saturation_counts(np.ones(3), 0.0, np.inf)
    with pytest.raises(ValueError, match="eps"):
        kernels.saturation_counts(np.ones(3), eps=0.7)
    with pytest.raises(ValueError, match="mode"):
        kernels.saturation_counts(np.ones(3), mode="relu")


def test_saturated_fractions():
    counts = kernels.saturation_counts(np.array([[0.0, 1.0, 0.5, 0.99], [np.nan] * 4]))
    fractions = kernels.saturated_fractions(counts)
    np.testing.assert_allclose(fractions[0], [0.75, 0.25, 0.5])
    assert np.isnan(fractions[1]).all()


# --------------------------------------------------- references (beta, dip, BC)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_against_stored_references(case):
    x = np.array(case["input"])
    expected = case["expected"]
    dip = kernels.dip_test(x)
    assert dip.statistic == pytest.approx(expected["dip"], rel=1e-12)
    assert dip.pvalue == pytest.approx(expected["dip_pvalue"], rel=1e-12, abs=1e-15)
    fit = kernels.fit_beta(x, delta=case["delta"])
    assert fit.a == pytest.approx(expected["beta_a"], rel=1e-6)
    assert fit.b == pytest.approx(expected["beta_b"], rel=1e-6)
    # scipy's optimiser finds a, b to ~1e-6 (above); the log-likelihood at a maximum is
    # second order in that distance, (1e-6)² ≪ 1e-9
    assert fit.log_likelihood == pytest.approx(expected["beta_log_likelihood"], rel=1e-9, abs=1e-9)
    assert fit.a_standard_error == pytest.approx(expected["beta_a_standard_error_numerical_hessian"], rel=1e-4)
    assert fit.b_standard_error == pytest.approx(expected["beta_b_standard_error_numerical_hessian"], rel=1e-4)
    assert kernels.bimodality_coefficient(x=x) == pytest.approx(expected["bimodality_coefficient"], rel=1e-10)
    logit_normal = kernels.fit_logit_normal(x, delta=case["delta"])
    assert logit_normal.mean_logit == pytest.approx(expected["logit_normal_mean"], rel=1e-10, abs=1e-12)
    assert logit_normal.std_logit == pytest.approx(expected["logit_normal_std"], rel=1e-10)
    assert logit_normal.log_likelihood == pytest.approx(expected["logit_normal_log_likelihood"], rel=1e-10)


def test_dip_live_and_vectorised():
    rng = np.random.default_rng(1)
    x = rng.beta(0.5, 0.5, size=(3, 300))
    x[1, 250:] = np.nan
    result = kernels.dip_test(x)
    for i in range(3):
        row = x[i][~np.isnan(x[i])]
        dip, pvalue = diptest.diptest(row)
        assert result.statistic[i] == dip and result.pvalue[i] == pvalue
    assert result.n.tolist() == [300, 250, 300]


def test_dip_above_table_size_is_silent():
    # diptest warns beyond n = 72000; the kernel documents and silences it
    x = np.random.default_rng(2).normal(size=80_000)
    result = kernels.dip_test(x)
    assert 0 <= result.pvalue <= 1


def test_beta_fit_live_with_chunks_and_bounds():
    rng = np.random.default_rng(3)
    y = rng.beta(0.7, 2.5, size=(2, 3000))
    whole = kernels.fit_beta(y)
    merged = kernels.fit_beta_from_statistics(
        kernels.beta_sufficient_statistics(y[:, :1000]) + kernels.beta_sufficient_statistics(y[:, 1000:])
    )
    # the same Newton solve on sums merged in another order (the policy's iterative kind)
    np.testing.assert_allclose(merged.a, whole.a, rtol=fit_rtol(whole.a, whole.b, 3000))
    np.testing.assert_allclose(merged.b, whole.b, rtol=fit_rtol(whole.a, whole.b, 3000))
    for i in range(2):
        a, b, _, _ = scipy.stats.beta.fit(np.clip(y[i], 1e-6, 1 - 1e-6), floc=0, fscale=1)
        assert whole.a[i] == pytest.approx(a, rel=1e-6)
        assert whole.b[i] == pytest.approx(b, rel=1e-6)
    # the same activations on a tanh-like range [-1, 1]: same shapes, Jacobian n log 2
    tanh_scale = kernels.fit_beta(2 * y - 1, -1.0, 1.0)
    np.testing.assert_allclose(tanh_scale.a, whole.a, rtol=fit_rtol(whole.a, whole.b, 3000))
    np.testing.assert_allclose(tanh_scale.log_likelihood, whole.log_likelihood - 3000 * np.log(2),
                               rtol=fit_rtol(whole.a, whole.b, 3000))


def test_beta_clipping_counted():
    fit = kernels.fit_beta(np.array([0.0, 0.0, 1.0, 0.3, 0.6, 0.5, 0.2]))
    assert fit.n_clipped == 3 and fit.delta == 1e-6
    assert fit.a < 1 and fit.b < 1


def test_beta_standard_errors_match_sampling_spread():
    y = np.random.default_rng(4).beta(0.7, 2.5, size=(400, 500))
    fit = kernels.fit_beta(y)
    assert np.std(fit.a) == pytest.approx(np.mean(fit.a_standard_error), rel=0.12)
    assert np.std(fit.b) == pytest.approx(np.mean(fit.b_standard_error), rel=0.12)
    a_low, a_high, _, _ = fit.confidence_interval(0.95)
    coverage = np.mean((a_low <= 0.7) & (0.7 <= a_high))
    assert 0.91 <= coverage <= 0.98


def test_degenerate_beta_inputs():
    fit = kernels.fit_beta(np.array([[0.5] * 10, [0.3] + [np.nan] * 9]))
    assert np.isnan(fit.a).all() and not fit.u_shaped.any()


def test_logit_normal_live():
    rng = np.random.default_rng(5)
    y = expit(rng.normal(-0.5, 1.5, size=2000))
    fit = kernels.fit_logit_normal(y)
    logit = np.log(y) - np.log1p(-y)
    mu, sigma = scipy.stats.norm.fit(logit)
    assert fit.mean_logit == pytest.approx(mu, rel=1e-12)
    assert fit.std_logit == pytest.approx(sigma, rel=1e-12)
    expected = scipy.stats.norm.logpdf(logit, mu, sigma).sum() - np.log(y * (1 - y)).sum()
    assert fit.log_likelihood == pytest.approx(expected, rel=1e-10)
    assert fit.aic < kernels.fit_beta(y).aic  # the true family wins


# ------------------------------------------------------------------ bimodality


def test_bimodality_coefficient_values():
    rng = np.random.default_rng(6)
    assert kernels.bimodality_coefficient(x=rng.uniform(size=200_000)) == pytest.approx(5 / 9, abs=0.005)
    assert kernels.bimodality_coefficient(x=rng.beta(0.2, 0.2, size=5000)) > 5 / 9
    assert kernels.bimodality_coefficient(x=rng.normal(size=5000)) == pytest.approx(1 / 3, abs=0.02)
    # mergeable: from a moment array
    x = rng.normal(size=(2, 100))
    np.testing.assert_allclose(
        kernels.bimodality_coefficient(kernels.moments(x)), kernels.bimodality_coefficient(x=x), rtol=1e-14
    )
    assert np.isnan(kernels.bimodality_coefficient(x=np.array([0.1, 0.2, 0.3])))


def test_mixture_recovers_a_simulated_mixture():
    rng = np.random.default_rng(7)
    y = np.concatenate([rng.beta(0.6, 15, 3000), rng.beta(4, 4, 4000), rng.beta(12, 0.6, 3000)])
    fit = kernels.fit_beta_mixture(y)
    np.testing.assert_allclose(fit.weights, [0.3, 0.4, 0.3], atol=0.03)
    np.testing.assert_allclose(fit.a, [0.6, 4, 12], rtol=0.2)
    np.testing.assert_allclose(fit.b, [15, 4, 0.6], rtol=0.2)
    assert fit.converged and fit.preferred_by_bic
    clipped = np.clip(y, 1e-6, 1 - 1e-6)
    density = sum(w * scipy.stats.beta.pdf(clipped, a, b) for w, a, b in zip(fit.weights, fit.a, fit.b))
    assert fit.log_likelihood == pytest.approx(np.log(density).sum(), rel=1e-10)
    assert fit.bic == pytest.approx(8 * np.log(y.size) - 2 * fit.log_likelihood)


def test_mixture_subsample_and_single_beta_comparison():
    rng = np.random.default_rng(8)
    y = rng.beta(5, 5, size=(2, 3000))
    fit = kernels.fit_beta_mixture(y, max_size=1000)
    assert fit.n_used.tolist() == [1000, 1000] and fit.n.tolist() == [3000, 3000]
    assert not fit.preferred_by_bic.any()
    single = kernels.fit_beta(y)
    np.testing.assert_allclose(fit.single_log_likelihood, single.log_likelihood)
    # the mixture contains the single Beta; fitted on a subsample it may lose a little
    assert np.all(fit.log_likelihood > fit.single_log_likelihood - 10)
    again = kernels.fit_beta_mixture(y, max_size=1000)
    np.testing.assert_array_equal(again.a, fit.a)


@pytest.mark.parametrize(
    "name, sample, expected",
    [
        ("beta(0.2, 0.2)", lambda rng: rng.beta(0.2, 0.2, 2000), True),
        ("spike-bump-spike", lambda rng: np.concatenate([rng.beta(0.5, 30, 800), rng.beta(5, 5, 400), rng.beta(30, 0.5, 800)]), True),
        ("saturated float32 sigmoid", lambda rng: expit(rng.normal(0, 30, 3000).astype(np.float32)), True),
        ("beta(5, 5)", lambda rng: rng.beta(5, 5, 2000), False),
        ("logit-normal(0, 1)", lambda rng: expit(rng.normal(0, 1, 2000)), False),
        ("one bound: beta(0.3, 5)", lambda rng: rng.beta(0.3, 5, 2000), False),
        ("two interior modes", lambda rng: np.concatenate([rng.beta(30, 70, 1000), rng.beta(70, 30, 1000)]), False),
        ("uniform", lambda rng: rng.uniform(size=2000), False),
    ],
)
@pytest.mark.parametrize("seed", [9, 10, 11])
def test_bimodal_at_bounds_recognition(name, sample, expected, seed):
    result = kernels.bimodality(sample(np.random.default_rng(seed)))
    assert bool(result.bimodal_at_bounds) is expected, name
    if name == "beta(0.2, 0.2)":
        assert result.beta.u_shaped and result.dip_pvalue < 0.05
    if name in ("beta(5, 5)", "logit-normal(0, 1)"):
        assert not result.beta.u_shaped and result.dip_pvalue > 0.05


def test_bimodality_shapes_and_recompute_with_adjusted_pvalues():
    rng = np.random.default_rng(10)
    x = np.stack([rng.beta(0.2, 0.2, size=(3, 400)), rng.beta(5, 5, size=(3, 400))])  # (2, 3, 400)
    result = kernels.bimodality(x)
    assert result.dip.shape == (2, 3)
    assert result.mixture.weights.shape == (2, 3, 3)
    assert result.beta.a.shape == (2, 3)
    assert result.bimodal_at_bounds[0].all() and not result.bimodal_at_bounds[1].any()
    adjusted = kernels.benjamini_hochberg(result.dip_pvalue)
    again = kernels.bimodal_at_bounds(
        adjusted, result.bimodality_coefficient, result.beta.u_shaped, result.mixture
    )
    np.testing.assert_array_equal(again, result.bimodal_at_bounds)
    transposed = kernels.bimodality(np.moveaxis(x, 2, 0), axis=0)
    np.testing.assert_allclose(transposed.dip, result.dip)
