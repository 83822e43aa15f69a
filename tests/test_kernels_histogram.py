"""Histogram-based CDF statistics: the exact values lie inside the stated bounds.

The exact references are actstats' own exact kernels, each verified against scipy and
statsmodels in tests/test_kernels_normality.py (ks_distance_normal = scipy.stats.kstest,
wasserstein_normal = quadrature of |F_n - Phi|, anderson_darling = scipy.stats.anderson
and statsmodels' normal_ad); the quantiles are numpy's inverted-CDF quantiles.
"""

from __future__ import annotations

import numpy as np
import pytest
import actstats
from actstats import kernels
from actstats.synthetic import synthetic_store

DRAWS = {
    "normal": lambda rng, n: rng.normal(3.0, 2.0, n),
    "uniform": lambda rng, n: rng.uniform(-1, 1, n),
    "laplace": lambda rng, n: rng.laplace(0, 0.1, n),
    "t3": lambda rng, n: rng.standard_t(3, n),  # values beyond ±10 std: A² unbounded
    "lognormal": lambda rng, n: rng.lognormal(0, 0.5, n),  # a long right tail
}


def _histogram(x, ddof=0):
    return kernels.standardized_histogram(x[None, :], x.mean(), x.std(ddof=ddof))[0]


@pytest.mark.parametrize("name", list(DRAWS))
@pytest.mark.parametrize("n", [60, 20_000])
def test_exact_statistics_lie_within_the_stated_bounds(name, n):
    x = DRAWS[name](np.random.default_rng(n), n)
    histogram = _histogram(x)
    fitted = kernels.histogram_cdf_statistics(histogram)
    ks = float(kernels.ks_distance_normal(x))
    w1 = float(kernels.wasserstein_normal(x, standardize=True))
    assert abs(fitted.ks_d - ks) <= fitted.ks_d_error + 1e-12
    assert abs(fitted.w1 - w1) <= fitted.w1_error + 1e-12
    # the documented size of the bounds: W1 within 2h (h = 20/8192), KS within a bin's mass
    assert fitted.w1_error <= 2 * 20 / 8192 + 1e-12
    # Anderson-Darling and Lilliefors use std(ddof=1): the reference normal's scale s1/s0
    sample = kernels.histogram_cdf_statistics(histogram, scale=np.sqrt(n / (n - 1)))
    ad = float(kernels.anderson_darling(x).statistic)
    assert abs(sample.ad_statistic - ad) <= sample.ad_statistic_error + 1e-9 * ad
    assert abs(sample.ks_d - float(kernels.lilliefors(x).statistic)) <= sample.ks_d_error + 1e-12
    # A² is bounded exactly when no value lies beyond the grid (±10 std)
    beyond = np.any(np.abs((x - x.mean()) / x.std()) >= 10)
    assert np.isfinite(sample.ad_statistic_error) == (not beyond)


def test_bounds_are_tight_enough_to_matter():
    x = np.random.default_rng(5).normal(size=200_000)
    fitted = kernels.histogram_cdf_statistics(_histogram(x))
    assert fitted.ks_d_error < 1e-3 and fitted.w1_error < 2.5e-3
    # the estimates themselves are much closer than the bounds
    assert abs(fitted.w1 - float(kernels.wasserstein_normal(x, standardize=True))) < 1e-4
    assert abs(fitted.ks_d - float(kernels.ks_distance_normal(x))) < 1e-4


def test_histograms_merge_by_summing():
    rng = np.random.default_rng(2)
    x = rng.normal(size=30_000)
    x[::97] = 25.0  # beyond the grid: the tail fields
    x[::89] = -30.0
    mean, std = x.mean(), x.std()
    whole = kernels.standardized_histogram(x, mean, std)
    parts = sum(kernels.standardized_histogram(p, mean, std) for p in np.array_split(x, 7))
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    assert whole[-4] == np.sum((x - mean) / std < -10) and whole[-3] == np.sum((x - mean) / std >= 10)
    np.testing.assert_allclose(whole.sum() - whole[-2:].sum(), x.size)


def test_nan_is_skipped_and_empty_groups_give_nan():
    x = np.random.default_rng(3).normal(size=(2, 1000))
    x[0, ::3] = np.nan
    histogram = kernels.standardized_histogram(x, np.nanmean(x, axis=1), np.nanstd(x, axis=1))
    assert histogram[0, :-2].sum() == np.isfinite(x[0]).sum()
    empty = kernels.histogram_cdf_statistics(np.zeros((1, kernels.HISTOGRAM_BINS + 4)))
    assert np.isnan(empty.ks_d).all() and np.isnan(empty.w1).all()


@pytest.mark.parametrize("name", ["normal", "laplace", "lognormal"])
def test_quantiles_are_bracketed(name):
    x = DRAWS[name](np.random.default_rng(4), 50_000)
    q = np.array([0.001, 0.05, 0.5, 0.95, 0.999])
    estimate, low, high = kernels.histogram_quantiles(_histogram(x), q)
    exact = (np.quantile(x, q, method="inverted_cdf") - x.mean()) / x.std()
    assert np.all(low <= exact) and np.all(exact <= high)
    assert np.all(high - low <= 20 / 8192 + 1e-12)
    assert np.all(np.abs(estimate - exact) <= high - low)


@pytest.mark.parametrize("name, family", [("normal", "normal"), ("laplace", "laplace"), ("uniform", "uniform")])
def test_binned_best_family_agrees_with_maximum_likelihood(name, family):
    x = DRAWS[name](np.random.default_rng(6), 100_000)
    histogram = _histogram(x)
    median = kernels.histogram_quantiles(histogram, [0.5])[0][0]
    z = (x - x.mean()) / x.std()
    mad = np.mean(np.abs(z - np.median(z)))
    index = kernels.histogram_best_family(histogram, median, mad)
    exact = kernels.fit_families(x, families=kernels.HISTOGRAM_FAMILIES)
    assert kernels.HISTOGRAM_FAMILIES[int(index)] == family
    assert kernels.HISTOGRAM_FAMILIES[int(exact.best_family_index)] == family


def _laplace_store():
    return synthetic_store(runs=3, epochs=(0, 1, 2), depth=2, width=48, units=48,
                           weight=lambda rng, shape: rng.laplace(0, 0.1, shape), seed=1)


@pytest.mark.parametrize("by", [("run", "epoch", "layer"), ("layer",), ()])
def test_weight_normality_histogram_method_agrees_with_the_exact_one(by):
    ds = _laplace_store()
    exact = actstats.weight_normality(ds, by=by, method="exact")
    binned = actstats.weight_normality(ds, by=by, method="histogram")
    assert exact.attrs["cdf_method"] == "exact" and binned.attrs["cdf_method"] == "histogram"
    for name in ("n", "mean", "std", "skewness", "excess_kurtosis", "k2_pvalue", "jb_pvalue", "distance_from_init"):
        np.testing.assert_allclose(binned[name], exact[name], rtol=1e-10, atol=1e-14, err_msg=name)
    for name, error in (("ks_d", "ks_d_error"), ("w1_normal", "w1_normal_error"),
                        ("ad_statistic", "ad_statistic_error"), ("lilliefors_statistic", "ks_d_error")):
        gap = np.abs(binned[name] - exact[name]).values
        # Lilliefors shares the KS bound up to the ddof=1 rescaling (a bin's mass at most)
        slack = 2 * binned[error].values if name == "lilliefors_statistic" else binned[error].values
        assert np.all(gap <= slack + 1e-9), name
    assert (exact.ks_d_error == 0).all()
    np.testing.assert_array_equal(binned.best_family, exact.best_family)
    np.testing.assert_array_equal(binned.gaussian, exact.gaussian)
    assert np.isnan(binned.shapiro_pvalue).all() and (binned.shapiro_n_used == 0).all()


def test_auto_switches_to_histograms_above_the_size_and_refuses_slow_families():
    ds = _laplace_store()
    assert actstats.weight_normality(ds, by=("layer",)).attrs["cdf_method"] == "exact"
    auto = actstats.weight_normality(ds, by=("layer",), exact_max_size=1000)
    assert auto.attrs["cdf_method"] == "histogram"
    with pytest.raises(ValueError, match="gennorm"):
        actstats.weight_normality(ds, by=("layer",), method="histogram", families=("normal", "gennorm"))
    with pytest.raises(ValueError, match="method"):
        actstats.weight_normality(ds, method="sorted")


def test_histogram_path_on_a_store_streams_and_matches(small_store):
    ds = actstats.open_store(small_store)
    lazy = actstats.weight_normality(ds, by=("layer",), method="histogram")
    eager = actstats.weight_normality(ds.load(), by=("layer",), method="histogram")
    for name in ("n", "mean", "skewness", "ks_d", "w1_normal", "ad_statistic"):
        np.testing.assert_allclose(lazy[name], eager[name], rtol=1e-10, err_msg=name)
    exact = actstats.weight_normality(ds, by=("layer",), method="exact")
    assert np.all(np.abs(lazy.w1_normal - exact.w1_normal) <= lazy.w1_normal_error + 1e-12)
    assert np.all(np.abs(lazy.ks_d - exact.ks_d) <= lazy.ks_d_error + 1e-12)
    np.testing.assert_array_equal(lazy.n, exact.n)


def test_queries_that_load_whole_groups_refuse_groups_beyond_the_limit(small_store, monkeypatch):
    from actstats.errors import ActstatsError
    from actstats.options import OPTIONS

    ds = actstats.open_store(small_store)
    monkeypatch.setitem(OPTIONS, "exact_max_size", 1000)
    with pytest.raises(ActstatsError, match="too large to load whole"):
        actstats.bimodality(ds, by=("layer",), method="exact")
    with pytest.raises(ActstatsError, match="too large to load whole"):
        actstats.fit(ds, by=("layer",), variable="weight", method="exact")
    with pytest.raises(ActstatsError, match="too large to load whole"):
        actstats.weight_normality(ds, by=("layer",), method="exact")
    # the histogram path and the streamed queries do not need whole groups
    assert actstats.weight_normality(ds, by=("layer",), exact_max_size=1000).attrs["cdf_method"] == "histogram"
    assert actstats.bimodality(ds, by=("layer",), exact_max_size=1000).attrs["cdf_method"] == "histogram"
    assert np.isfinite(actstats.saturation(ds, by=("layer",)).fraction.values).all()


# ------------------------------------------------ weight families from streamed summaries


def _streamed(x):
    m = kernels.moments(x)
    histogram = kernels.standardized_histogram(x, m[1], np.sqrt(m[2] / m[0]))
    return kernels.histogram_fit_families(histogram, m, x.min(), x.max())


@pytest.mark.parametrize("name", ["normal", "laplace", "logistic", "uniform", "t3"])
def test_family_fits_from_histograms_against_fit_families_and_kstest(name):
    from scipy import stats

    rng = np.random.default_rng(11)
    n = 200_000
    x = {"normal": rng.normal(2, 3, n), "laplace": rng.laplace(1, 2, n), "logistic": rng.logistic(-1, 0.5, n),
         "uniform": rng.uniform(-1, 3, n), "t3": rng.standard_t(3, n)}[name]
    streamed = _streamed(x)
    exact = kernels.fit_families(x, families=kernels.HISTOGRAM_FIT_FAMILIES)
    assert streamed.best_family_index == exact.best_family_index
    std = x.std()
    for k, family in enumerate(streamed.families):
        if family in ("normal", "uniform"):  # exact maximum likelihood
            np.testing.assert_allclose(streamed.loc[k], exact.loc[k], rtol=1e-10, err_msg=family)
            np.testing.assert_allclose(streamed.scale[k], exact.scale[k], rtol=1e-10, err_msg=family)
            np.testing.assert_allclose(streamed.log_likelihood[k], exact.log_likelihood[k], rtol=1e-10)
        else:  # median within a bin; the rest binned
            assert abs(streamed.loc[k] - exact.loc[k]) <= 2 * 20 / 8192 * std, family
            np.testing.assert_allclose(streamed.scale[k], exact.scale[k], rtol=1e-3, err_msg=family)
            np.testing.assert_allclose(streamed.log_likelihood[k], exact.log_likelihood[k], rtol=1e-5)
        distribution = getattr(stats, {"normal": "norm"}.get(family, family))(streamed.loc[k], streamed.scale[k])
        reference = stats.kstest(x, distribution.cdf).statistic
        assert abs(streamed.ks_statistic[k] - reference) <= streamed.ks_statistic_error[k] + 1e-12, family
        assert streamed.ks_statistic_error[k] < 0.002


def test_family_fits_from_histograms_merge_over_chunks_and_refuse_other_families():
    x = np.random.default_rng(2).laplace(size=(3, 40_000))
    whole = _streamed(x.ravel())
    m = kernels.combine_moments(kernels.moments(x, axis=-1), axis=0)
    std = np.sqrt(m[2] / m[0])
    histogram = kernels.standardized_histogram(x, m[1], std).sum(axis=0)
    merged = kernels.histogram_fit_families(histogram, m, x.min(axis=-1).min(), x.max(axis=-1).max())
    np.testing.assert_allclose(merged.log_likelihood, whole.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(merged.ks_statistic, whole.ks_statistic, rtol=1e-10)
    with pytest.raises(ValueError, match="no streamed fit for t"):
        kernels.histogram_fit_families(histogram, m, -1.0, 1.0, families=("normal", "t"))


def test_weight_fit_streams_large_groups_like_the_exact_path(small_store):
    ds = actstats.open_store(small_store)
    exact = actstats.fit(ds, by=("layer",), variable="weight", method="exact")
    streamed = actstats.fit(ds, by=("layer",), variable="weight", method="histogram")
    assert streamed.attrs["cdf_method"] == "histogram" and exact.attrs["cdf_method"] == "exact"
    np.testing.assert_array_equal(streamed.best_family, exact.best_family)
    np.testing.assert_array_equal(streamed.n, exact.n)
    exact_families = ["normal", "uniform"]
    for name in ("loc", "scale", "log_likelihood", "aic"):
        np.testing.assert_allclose(streamed[name].sel(family=exact_families), exact[name].sel(family=exact_families),
                                   rtol=1e-10, err_msg=name)
        if name != "loc":
            np.testing.assert_allclose(streamed[name], exact[name], rtol=2e-3, err_msg=name)
    bin_width = 2 * kernels.HISTOGRAM_LIMIT / kernels.HISTOGRAM_BINS * exact.scale.sel(family="normal")
    assert bool((np.abs(streamed["loc"] - exact["loc"]) <= 2 * bin_width).all())  # medians within a bin or two
    for family in exact_families:  # the same fitted distribution: the exact KS within the bound
        gap = np.abs(streamed.ks_statistic.sel(family=family) - exact.ks_statistic.sel(family=family))
        assert bool((gap <= streamed.ks_statistic_error.sel(family=family) + 1e-12).all()), family
    assert float(np.abs(exact.ks_statistic_error).max()) == 0.0
    with pytest.raises(actstats.ActstatsError, match="t needs the values in memory"):
        actstats.fit(ds, family=("normal", "t"), by=("layer",), variable="weight", method="histogram")
