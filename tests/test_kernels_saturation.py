"""The kernels moved down from the queries, on plain arrays against independent computations:
the saturated band (dtype-exact thresholds, byte counting), KS from a CDF, the logit-grid CDFs,
histogram normality statistics and the bimodality fields."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from actstats import kernels
from actstats.kernels import band_thresholds, saturation_counts


@pytest.mark.parametrize("lower, upper, eps", [(0.0, 1.0, 0.05), (-1.0, 1.0, 0.1), (0.0, 1.0, 0.3)])
def test_band_thresholds_classify_float32_as_float64_does(lower, upper, eps):
    """Every float32 within a few ulps of each band edge is classified as its float64 value is
    (exact: the comparison is of representable numbers, no tolerance)."""
    width = upper - lower
    low_edge, high_edge = lower + eps * width, upper - eps * width
    low_t, high_t = kernels.band_thresholds(lower, upper, eps, np.float32)
    for edge in (low_edge, high_edge):
        centre = np.float32(edge)
        around = [centre]
        for direction in (-np.inf, np.inf):
            value = centre
            for _ in range(4):
                value = np.nextafter(value, np.float32(direction))
                around.append(value)
        x = np.array(around, dtype=np.float32)
        np.testing.assert_array_equal(x <= low_t, x.astype(np.float64) <= low_edge)
        np.testing.assert_array_equal(x >= high_t, x.astype(np.float64) >= high_edge)


def test_saturation_counts_float32_equal_float64_counts():
    x = np.random.default_rng(0).uniform(-0.01, 1.01, size=(7, 3001)).astype(np.float32)
    x[2, :5] = np.nan
    expected = kernels.saturation_counts(x.astype(np.float64), eps=0.05)  # float64 comparisons
    np.testing.assert_array_equal(kernels.saturation_counts(x, eps=0.05), expected)
    np.testing.assert_array_equal(expected[:, 2], (~np.isnan(x)).sum(axis=1))
    assert kernels.saturation_counts(x, mode="none")[:, :2].sum() == 0


@pytest.mark.parametrize("width", [10, 2**16 + 3, 8, 1000, 2040, 2048])
def test_count_true_equals_sum(width):
    """Rows of 8, 1000 and 2040 take the eight-lane path (a row's uint64 words summed, each
    byte lane at most 255); 2048 and 10 do not. All-True rows put 255 in every lane at 2040."""
    mask = np.random.default_rng(1).random((3, width)) < 0.3
    np.testing.assert_array_equal(kernels.count_true(mask), mask.sum(axis=1))
    full = np.ones((2, width), dtype=bool)
    np.testing.assert_array_equal(kernels.count_true(full), [width, width])
    np.testing.assert_array_equal(kernels.count_true(full[:, ::2]), [-(-width // 2)] * 2)  # not contiguous


def test_ks_from_cdf_equals_scipy_kstest():
    """Against scipy.stats.kstest; tolerance 1e-14: both take max over the same n differences,
    scipy computes i/n - F and F - (i-1)/n in its own order (rounding only)."""
    rng = np.random.default_rng(2)
    rows = [rng.beta(0.5, 2.0, 50), rng.beta(2.0, 2.0, 37)]
    padded = np.full((2, 50), np.nan)
    for i, row in enumerate(rows):
        padded[i, : row.size] = np.sort(row)
    a, b = 0.6, 1.8
    cdf = stats.beta.cdf(padded, a, b)
    counts = np.array([r.size for r in rows])
    result = kernels.ks_from_cdf(cdf, counts)
    for i, row in enumerate(rows):
        expected = stats.kstest(row, stats.beta(a, b).cdf).statistic
        assert abs(result[i] - expected) <= 1e-14
    assert np.isnan(kernels.ks_from_cdf(np.full((1, 3), np.nan), np.array([0]))[0])


def test_logit_grid_cdfs_equal_scipy():
    """Against scipy.stats.beta/norm at the grid; tolerance 1e-12 (scipy's beta.cdf and
    special.betainc are the same Boost routine; ndtr vs norm.cdf identical up to rounding)."""
    from scipy.special import expit

    edges = kernels.logit_histogram_edges()
    beta_edges, _ = kernels.logit_grid_cdfs("beta", (np.array(0.3), np.array(0.4)))
    np.testing.assert_allclose(beta_edges, stats.beta.cdf(expit(edges), 0.3, 0.4), rtol=1e-12, atol=1e-15)
    normal_edges, normal_middles = kernels.logit_grid_cdfs("logit_normal", (np.array(0.5), np.array(2.0)))
    np.testing.assert_allclose(normal_edges, stats.norm.cdf(edges, 0.5, 2.0), rtol=1e-12, atol=1e-15)
    assert normal_middles.shape[-1] == edges.size - 1
    with pytest.raises(ValueError, match="family"):
        kernels.logit_grid_cdfs("gamma", (1.0, 1.0))


def test_histogram_normality_within_its_bounds_of_the_exact_statistics():
    """The histogram's statistics lie within their stated error bounds of the exact ones
    (bounds, not a tolerance: 1e-12 slack for float rounding only)."""
    x = np.random.default_rng(3).standard_t(5, size=(2, 20000))
    mean, std = x.mean(axis=-1), x.std(axis=-1)
    histogram = kernels.standardized_histogram(x, mean, std)
    result = kernels.histogram_normality(histogram, np.full(2, x.shape[1], dtype=float))
    exact_ks = kernels.ks_distance_normal(x)
    exact_w1 = kernels.wasserstein_normal(x, standardize=True)
    assert np.all(np.abs(result.ks_d - exact_ks) <= result.ks_d_error + 1e-12)
    assert np.all(np.abs(result.w1_normal - exact_w1) <= result.w1_normal_error + 1e-12)
    exact_ad = kernels.anderson_darling(x).statistic
    assert np.all(np.abs(result.ad_statistic - exact_ad) <= result.ad_statistic_error + 1e-12)


def test_bimodality_fields_always_equal_the_bimodality_kernel():
    """With the mixture always fitted, the fields are kernels.bimodality's (same calls: exact)."""
    y = np.random.default_rng(4).beta(0.3, 0.3, size=(3, 300))
    dip = kernels.dip_test(y)
    beta, normal = kernels.fit_beta(y), kernels.fit_logit_normal(y)
    fields = kernels.bimodality_fields(dip.statistic, dip.pvalue, kernels.bimodality_coefficient(x=y), beta, normal,
                                       lambda mask: kernels.fit_beta_mixture(y[mask], max_size=200, seed=0),
                                       alpha=0.05, mixture="always")
    assert tuple(fields) == kernels.BIMODALITY_FIELDS
    expected = kernels.bimodality(y, mixture_max_size=200, seed=0)
    np.testing.assert_array_equal(fields["dip"], expected.dip)
    np.testing.assert_array_equal(fields["mixture_bic"], expected.mixture.bic)
    np.testing.assert_array_equal(fields["bimodal_at_bounds_unadjusted"], expected.bimodal_at_bounds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode, lower, upper", [("bounds", 0.0, 1.0), ("bounds", -1.0, 1.0), ("lower_bound", -1.0, 0.0),
                                                ("dead_at_zero", 0.0, np.inf), ("none", np.nan, np.nan)])
def test_band_counts_is_saturation_counts_of_the_finite_values_plus_the_rest(dtype, mode, lower, upper):
    """The compiled one-pass kernel of the saturation query against the numpy definition:
    values next to both band edges (nextafter steps), exact zeros, NaN and ±inf, on a strided
    slab (units cut short, as for a layer narrower than the chunk)."""
    from actstats.kernels import band_counts

    rng = np.random.default_rng(3)
    span = 2.0 if np.isnan(lower) else (upper - lower if np.isfinite(upper) else 4.0)
    base = (0.0 if np.isnan(lower) else lower) + rng.random((40, 70)) * span
    x = base.astype(dtype)
    if mode in ("bounds", "lower_bound"):
        low_t, high_t = band_thresholds(lower, upper, 0.05, x.dtype)
        for k, edge in enumerate((low_t, high_t)):
            steps = [edge, np.nextafter(edge, dtype(np.inf)), np.nextafter(edge, dtype(-np.inf))]
            x[k, :3] = steps
    x[2, 5:8] = [np.nan, np.inf, -np.inf]
    x[3, 10:14] = 0.0
    slab = x[:, :61]  # not contiguous
    out = np.full((40, 4), -1.0)
    thresholds = band_thresholds(lower, upper, 0.05, x.dtype) if mode in ("bounds", "lower_bound") else (0.0, 0.0)
    band_counts(slab, *thresholds, mode, out)
    finite = np.isfinite(slab)
    expected = saturation_counts(np.where(finite, slab, np.nan), lower, upper, 0.05, mode=mode)
    np.testing.assert_array_equal(out[:, :3], expected)
    np.testing.assert_array_equal(out[:, 3], (~finite).sum(axis=1))
