"""Normality tests and effect sizes against scipy, statsmodels and quadrature."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.diagnostic import lilliefors as statsmodels_lilliefors
from statsmodels.stats.diagnostic import normal_ad

from actstats import kernels
from actstats.kernels import deterministic_subsample
from tolerances import STATISTIC, anderson_darling_condition, float_rtol, sum_condition

REFERENCE = json.loads((Path(__file__).parent / "reference" / "normality.json").read_text())
CASES = REFERENCE["cases"]
ids = [c["name"] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_against_stored_references(case):
    x = np.array(case["input"])
    expected = case["expected"]
    k2 = kernels.dagostino_pearson(x=x)
    assert k2.statistic == pytest.approx(expected["normaltest_statistic"], rel=1e-10)
    assert k2.pvalue == pytest.approx(expected["normaltest_pvalue"], rel=1e-10)
    assert k2.skewness_z == pytest.approx(expected["skewtest_statistic"], rel=1e-10)
    assert k2.kurtosis_z == pytest.approx(expected["kurtosistest_statistic"], rel=1e-10)
    jb = kernels.jarque_bera(x=x)
    assert jb.statistic == pytest.approx(expected["jarque_bera_statistic"], rel=1e-10)
    assert jb.pvalue == pytest.approx(expected["jarque_bera_pvalue"], rel=1e-10)
    ad = kernels.anderson_darling(x)
    assert ad.statistic == pytest.approx(expected["anderson_statistic_scipy"], rel=1e-10)
    # statsmodels takes log(cdf), log(1 - cdf) (scipy and we: logcdf, logsf): ~1e-9 apart
    assert ad.statistic == pytest.approx(expected["anderson_statistic_statsmodels"], rel=1e-8)
    assert ad.pvalue == pytest.approx(expected["anderson_pvalue_statsmodels"], rel=1e-8)
    lf = kernels.lilliefors(x)
    assert lf.statistic == pytest.approx(expected["lilliefors_statistic"], rel=1e-10)
    assert lf.pvalue == pytest.approx(expected["lilliefors_pvalue"], rel=1e-10)
    sw = kernels.shapiro_wilk(x)
    assert sw.statistic == pytest.approx(expected["shapiro_statistic"], rel=1e-12)
    assert sw.pvalue == pytest.approx(expected["shapiro_pvalue"], rel=1e-12)
    assert kernels.ks_distance_normal(x) == pytest.approx(expected["ks_statistic_fitted_normal_ddof0"], rel=1e-12)
    assert kernels.wasserstein_normal(x) == pytest.approx(
        expected["wasserstein1_fitted_normal_quadrature"], rel=1e-10
    )


def test_moment_tests_from_merged_chunks_equal_scipy_live():
    rng = np.random.default_rng(10)
    x = rng.gamma(5.0, size=(3, 2000))
    merged = kernels.merge_moments(kernels.moments(x[:, :700]), kernels.moments(x[:, 700:]))
    k2 = kernels.dagostino_pearson(merged)
    jb = kernels.jarque_bera(merged)
    scipy_k2 = scipy.stats.normaltest(x, axis=1)
    scipy_jb = scipy.stats.jarque_bera(x, axis=1)
    np.testing.assert_allclose(k2.statistic, scipy_k2.statistic, rtol=1e-10)
    np.testing.assert_allclose(k2.pvalue, scipy_k2.pvalue, rtol=1e-10)
    np.testing.assert_allclose(jb.statistic, scipy_jb.statistic, rtol=1e-10)
    np.testing.assert_allclose(jb.pvalue, scipy_jb.pvalue, rtol=1e-10)


def test_data_or_moments_exactly_one():
    with pytest.raises(TypeError):
        kernels.jarque_bera()
    with pytest.raises(TypeError):
        kernels.dagostino_pearson(kernels.moments(np.ones(10)), x=np.ones(10))


def test_small_samples_give_nan():
    x = np.random.default_rng(0).normal(size=(2, 7))
    assert np.isnan(kernels.dagostino_pearson(x=x).statistic).all()
    assert np.isnan(kernels.anderson_darling(x).statistic).all()
    assert np.isnan(kernels.lilliefors(x[:, :3]).statistic).all()


def test_edf_tests_live_with_nan_rows():
    rng = np.random.default_rng(11)
    x = rng.standard_t(6, size=(4, 250))
    x[2, 200:] = np.nan
    ad = kernels.anderson_darling(x)
    lf = kernels.lilliefors(x)
    ks = kernels.ks_distance_normal(x, ddof=1)
    for i, row in enumerate(x):
        row = row[~np.isnan(row)]
        statistic, pvalue = normal_ad(row)
        assert ad.statistic[i] == pytest.approx(statistic, rel=1e-8)
        assert ad.pvalue[i] == pytest.approx(pvalue, rel=1e-8)
        assert ad.statistic[i] == pytest.approx(
            scipy.stats.anderson(row, method="interpolate").statistic, rel=1e-10
        )
        statistic, pvalue = statsmodels_lilliefors(row, pvalmethod="table")
        assert lf.statistic[i] == pytest.approx(statistic, rel=1e-10)
        assert lf.pvalue[i] == pytest.approx(pvalue, rel=1e-10)
        assert ks[i] == pytest.approx(
            scipy.stats.kstest(row, "norm", args=(row.mean(), row.std(ddof=1))).statistic, rel=1e-12
        )
    assert lf.n[2] == 200


def test_anderson_darling_pvalue_pieces_against_statsmodels():
    # exercise every branch of the D'Agostino-Stephens formula
    statistics = np.array([0.1, 0.25, 0.45, 2.0, 20.0])
    from actstats.kernels.normality import _anderson_darling_pvalue

    n = np.full(statistics.shape, 1e9)
    ours = _anderson_darling_pvalue(statistics, n)
    assert ours[-1] == 0.0
    for a2, p in zip(statistics[:-1], ours[:-1]):
        adjusted = a2  # n is huge: no small-sample modification
        if adjusted < 0.2:
            expected = 1 - np.exp(-13.436 + 101.14 * adjusted - 223.73 * adjusted**2)
        elif adjusted < 0.34:
            expected = 1 - np.exp(-8.318 + 42.796 * adjusted - 59.938 * adjusted**2)
        elif adjusted < 0.6:
            expected = np.exp(0.9177 - 4.279 * adjusted - 1.38 * adjusted**2)
        else:
            expected = np.exp(1.2937 - 5.709 * adjusted + 0.0186 * adjusted**2)
        assert p == pytest.approx(expected, rel=1e-8)


def test_shapiro_wilk_subsample_documented_and_reproducible():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 12_000))
    x[1, :3000] = np.nan
    result = kernels.shapiro_wilk(x, seed=5)
    assert result.n_used.tolist() == [5000, 5000]
    assert result.n.tolist() == [12_000, 9000]
    for i in range(2):
        row = x[i][~np.isnan(x[i])]
        positions = np.sort(np.random.default_rng(5).choice(row.size, 5000, replace=False))
        expected = scipy.stats.shapiro(row[positions])
        assert result.statistic[i] == expected.statistic
        assert result.pvalue[i] == expected.pvalue
        np.testing.assert_array_equal(deterministic_subsample(row, 5000, 5), row[positions])
    again = kernels.shapiro_wilk(x, seed=5)
    np.testing.assert_array_equal(again.statistic, result.statistic)


def test_wasserstein_against_large_normal_sample():
    rng = np.random.default_rng(13)
    x = rng.standard_t(4, size=300)
    reference = scipy.stats.norm.rvs(x.mean(), x.std(), size=2_000_000, random_state=rng)
    # Monte Carlo error of W1(F_n, G_m) ~ 1/sqrt(m) in units of sd: ~1e-3 here
    assert kernels.wasserstein_normal(x) == pytest.approx(
        scipy.stats.wasserstein_distance(x, reference), abs=3e-3 * x.std()
    )


def test_wasserstein_scale_and_standardize():
    rng = np.random.default_rng(14)
    x = rng.laplace(size=(3, 500))
    distance = kernels.wasserstein_normal(x)
    np.testing.assert_allclose(kernels.wasserstein_normal(7.0 * x + 3.0), 7.0 * distance, rtol=1e-10)
    np.testing.assert_allclose(kernels.wasserstein_normal(x, standardize=True), distance / x.std(axis=1), rtol=1e-12)
    # normal data: W1/sd shrinks like n^(-1/2); Laplace does not
    normal = kernels.wasserstein_normal(rng.normal(size=100_000), standardize=True)
    laplace = kernels.wasserstein_normal(rng.laplace(size=100_000), standardize=True)
    assert normal < 0.01 < laplace


def test_constant_group_gives_nan():
    x = np.ones((1, 50))
    assert np.isnan(kernels.ks_distance_normal(x)).all()
    assert np.isnan(kernels.wasserstein_normal(x)).all()
    assert np.isnan(kernels.lilliefors(x).statistic).all()
    assert np.isnan(kernels.shapiro_wilk(x).statistic).all()


def test_normality_statistics_equal_the_single_statistics():
    # the same sorted sample and standardisation as the single kernels; the compiled kernels take
    # Φ from the C library's erfc (scipy: ndtr) and compensated sums (numpy: pairwise)
    rng = np.random.default_rng(21)
    x = rng.standard_t(5, size=(5, 3000))
    x[1, 2500:] = np.nan  # padding
    x[3, 5:] = np.nan  # too few values for A2 and Lilliefors
    x[4] = 2.0  # constant
    for data in (x, x.astype(np.float32).astype(np.float64)):  # the float32 sort and the float64 one
        result = kernels.normality.normality_statistics(data)
        ad, lf = kernels.anderson_darling(data), kernels.lilliefors(data)
        # kind 2 (tests/README.md): two orders of the same sums of transcendental terms. A² is
        # -n - Σ (2i-1)/n [log Φ(z_i) + log Φ(-z_(n+1-i))], a sum that cancels to ~1: its
        # condition number (n + Σ|terms|) / |A²|; its p-value, a smooth function of it, and
        # W1 and the mean (sums of n terms) within STATISTIC times the same bound.
        condition = np.array([anderson_darling_condition(row) for row in data])
        n = np.sum(~np.isnan(data), axis=1)
        rtol_ad = np.array([float_rtol(int(k), condition=c) if k > 3 else 0.0 for k, c in zip(n, condition)])
        for got, want in ((result.ad_statistic, ad.statistic), (result.ad_pvalue, ad.pvalue)):
            np.testing.assert_array_less(np.abs(got - want), STATISTIC * rtol_ad * np.abs(want) + 1e-300)
        # KS distances: maxima of |F_n - Φ| at the same points, Φ from two implementations (a few ulps of 1)
        np.testing.assert_allclose(result.lilliefors_statistic, lf.statistic, rtol=0, atol=1e-15)
        np.testing.assert_allclose(result.ks_d, kernels.ks_distance_normal(data), rtol=0, atol=1e-15)
        # its p-value, the same table lookup of D (within 1e-15): the table's slope |d log p / dD|
        # times that, plus a few roundings
        h = 1e-9
        slope = np.abs(np.log(kernels.normality.lilliefors_pvalue(lf.statistic + h, n)) - np.log(lf.pvalue)) / h
        np.testing.assert_array_less(np.abs(result.lilliefors_pvalue - lf.pvalue),
                                     (np.nan_to_num(slope) * 1e-15 + STATISTIC * float_rtol(1)) * lf.pvalue + 1e-300)
        np.testing.assert_allclose(result.w1_normal, kernels.wasserstein_normal(data, standardize=True),
                                   rtol=STATISTIC * float_rtol(3000))
        for row, got in zip(data, result.mean):
            finite = row[~np.isnan(row)]
            if finite.size:
                np.testing.assert_allclose(got, finite.mean(), rtol=float_rtol(finite.size, condition=sum_condition(finite)))
        assert result.n.tolist() == [3000, 2500, 3000, 5, 3000]
        assert np.isnan(result.ks_d[4]) and np.isnan(result.ad_statistic[3]) and np.isfinite(result.ks_d[3])
        assert np.isnan(result.w1_normal[4]) and np.isnan(result.lilliefors_statistic[4])


def test_sort_sample_float32_path_is_the_float64_sort():
    rng = np.random.default_rng(22)
    single = rng.normal(size=(3, 30_000)).astype(np.float32).astype(np.float64)  # past _FLOAT32_SORT_SIZE
    single[0, :10] = np.nan
    np.testing.assert_array_equal(kernels.normality.sort_sample(single).ordered, np.sort(single, axis=1))
    double = single + 1e-12  # not float32 numbers: sorted as float64
    np.testing.assert_array_equal(kernels.normality.sort_sample(double).ordered, np.sort(double, axis=1))


def test_ks_distance_from_candidates_against_scipy_at_large_n():
    # the KS distance to N(mean, std ddof=0) is evaluated at the Lilliefors gaps' candidates only:
    # scipy's kstest evaluates Φ everywhere (the same ndtr at the same z: 1e-12 for the mean's order)
    rng = np.random.default_rng(23)
    for x in (rng.normal(size=200_000), rng.logistic(size=200_000), rng.uniform(size=50_000)):
        expected = scipy.stats.kstest(x, "norm", args=(x.mean(), x.std())).statistic
        assert kernels.normality.normality_statistics(x).ks_d == pytest.approx(expected, rel=1e-12)


def test_wasserstein_against_exact_arithmetic():
    # kind 3: the exact W1 of the same standardised values, summed in 40-digit arithmetic (mpmath:
    # Φ⁻¹ by erfinv, each slice's closed form). float64 gives ~1e-16 per slice relative to W1/n, so
    # the sum is within a few hundred ulps; the previous clip formula was 1e-13 off (cancellation).
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    rng = np.random.default_rng(24)
    n = 1500
    for x in (rng.normal(size=n), rng.laplace(size=n)):
        z = np.sort((x - x.mean()) / x.std())
        ours = float(kernels.normality._wasserstein_standardized(kernels.normality.sort_sample(z[None, :]), z[None, :])[0])
        edges = [mp.mpf("-inf")] + [mp.sqrt(2) * mp.erfinv(2 * mp.mpf(k) / n - 1) for k in range(1, n)] + [mp.mpf("inf")]
        total = mp.mpf(0)
        for i in range(n):
            value, left, right = mp.mpf(float(z[i])), edges[i], edges[i + 1]
            clipped = min(max(value, left), right)
            density = [mp.npdf(t) if mp.isfinite(t) else 0 for t in (left, right)]
            total += value * (2 * mp.ncdf(clipped) - mp.mpf(2 * i + 1) / n) + 2 * mp.npdf(clipped) - sum(density)
        assert ours == pytest.approx(float(total), rel=1e-13)
