"""Two-group comparison (scipy permutation_test / bootstrap) and Benjamini–Hochberg."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from actstats.kernels import benjamini_hochberg, compare_groups
from tolerances import BH_RTOL, STATISTIC, float_rtol

REFERENCE = json.loads((Path(__file__).parent / "reference" / "multiple.json").read_text())


def test_permutation_pvalue_agrees_with_scipy():
    rng = np.random.default_rng(0)
    first, second = rng.normal(0.25, 1, 80), rng.normal(0.0, 1, 60)
    result = compare_groups(first, second, n_permutations=9999, seed=1)
    reference = scipy.stats.permutation_test(
        (first, second),
        lambda a, b, axis: np.abs(np.mean(a, axis=axis) - np.mean(b, axis=axis)),
        n_resamples=9999,
        alternative="greater",
        rng=np.random.default_rng(2),
    )
    # Monte Carlo standard error of either p-value: sqrt(p(1-p)/10^4) < 0.005
    assert result.pvalue == pytest.approx(reference.pvalue, abs=0.02)
    assert result.statistic == pytest.approx(first.mean() - second.mean())
    assert result.difference == result.statistic


def test_bootstrap_interval_agrees_with_scipy():
    rng = np.random.default_rng(3)
    first, second = rng.exponential(1.0, 70), rng.exponential(1.5, 90)
    result = compare_groups(first, second, n_resamples=20_000, seed=4)
    reference = scipy.stats.bootstrap(
        (first, second),
        lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        method="percentile",
        n_resamples=20_000,
        rng=np.random.default_rng(5),
    ).confidence_interval
    width = reference.high - reference.low
    assert result.ci_low == pytest.approx(reference.low, abs=0.03 * width)
    assert result.ci_high == pytest.approx(reference.high, abs=0.03 * width)


def test_groups_with_padding_equal_groups_alone():
    rng = np.random.default_rng(6)
    first = rng.normal(size=(3, 40))
    second = rng.normal(0.5, 1, size=(3, 30))
    first[2, 35:] = np.nan
    second[2, :4] = np.nan
    result = compare_groups(first, second, n_permutations=999, n_resamples=500, seed=7)
    alone = compare_groups(first[2, :35], second[2, 4:], n_permutations=999, n_resamples=500, seed=7)
    assert result.pvalue[2] == alone.pvalue
    assert result.ci_low[2] == pytest.approx(alone.ci_low)
    assert result.n_first.tolist() == [40, 40, 35]
    with pytest.raises(ValueError, match="kept axes"):
        compare_groups(first, second[:2])


def test_equal_groups_give_pvalue_one():
    x = np.ones(20)
    result = compare_groups(x, x, n_permutations=99)
    assert result.pvalue == 1.0 and result.statistic == 0


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: c["name"])
def test_benjamini_hochberg_against_stored_statsmodels(case):
    adjusted = benjamini_hochberg(np.array(case["input"]))
    np.testing.assert_allclose(adjusted, case["expected"]["adjusted"], rtol=BH_RTOL)
    np.testing.assert_array_equal(adjusted <= 0.05, case["expected"]["reject_at_0.05"])


def test_benjamini_hochberg_published_example():
    example = REFERENCE["published"][0]
    adjusted = benjamini_hochberg(np.array(example["input"]))
    assert (adjusted <= 0.05).sum() == example["rejected_at_q_0.05"]


def test_benjamini_hochberg_axis_and_nan_live():
    rng = np.random.default_rng(8)
    p = rng.uniform(size=(4, 6, 5)) ** 3
    p[1, 2, :] = np.nan
    p[3, 0, 1] = np.nan
    adjusted = benjamini_hochberg(p, axis=(0, 1))
    assert adjusted.shape == p.shape
    for j in range(5):
        family = p[:, :, j]
        present = ~np.isnan(family)
        expected = multipletests(family[present], method="fdr_bh")[1]
        np.testing.assert_allclose(adjusted[:, :, j][present], expected, rtol=BH_RTOL)
        assert np.isnan(adjusted[:, :, j][~present]).all()
    whole = benjamini_hochberg(p)
    present = ~np.isnan(p)
    np.testing.assert_allclose(whole[present], multipletests(p[present], method="fdr_bh")[1], rtol=BH_RTOL)
    with pytest.raises(ValueError):
        benjamini_hochberg(np.array([0.5, 1.2]))


@pytest.mark.parametrize("sizes", [(3, 3), (4, 5), (2, 7)])
def test_welch_interval_equals_scipy(sizes):
    """Against scipy.stats.ttest_ind(equal_var=False).confidence_interval(): the same closed
    form (Welch–Satterthwaite ν, t quantile) computed by other code on a handful of values;
    float_rtol of the few sums with STATISTIC for the quantile and square root."""
    from scipy import stats

    from actstats.kernels import welch_interval

    rng = np.random.default_rng(sum(sizes))
    first, second = rng.normal(0.4, 0.1, sizes[0]), rng.normal(0.2, 0.2, sizes[1])
    difference, low, high = welch_interval(first, second)
    expected = stats.ttest_ind(first, second, equal_var=False).confidence_interval(0.95)
    rtol = float_rtol(sum(sizes), condition=STATISTIC)
    np.testing.assert_allclose([difference, low, high], [first.mean() - second.mean(), expected.low, expected.high],
                               rtol=rtol)
    assert np.isnan(welch_interval([0.1], second)[1])
    assert welch_interval([0.5, 0.5], [0.2, 0.2])[1:] == (0.3, 0.3) or np.allclose(welch_interval([0.5, 0.5], [0.2, 0.2]), 0.3)


@pytest.mark.parametrize("rows", [50, 300])  # one block of rows; three (131 rows of 1000 a block), the last partial
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_absolute_sums_are_the_generic_paths_masked_float64_sum(dtype, rows):
    """compare_splits' per-sample sum of |x| against the masked float64 sum the generic chunk
    path computed (bit for bit: same terms, same pairwise order); rows with NaN, ±inf, zeros,
    magnitudes from 1e-8 to 1e3 and columns beyond the layer's width."""
    from actstats.kernels import absolute_sums

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((rows, 1000)) * 10.0 ** rng.uniform(-8, 3, (rows, 1000))).astype(dtype)
    x[1, :4] = [np.nan, np.inf, -np.inf, 0.0]
    x[2] = np.nan
    x[-1, 5] = np.inf  # in the last block of rows, the others clean
    units = 997
    x[:, units:] = np.nan  # padding beyond the width
    out = np.full((rows, 3), -1.0)
    absolute_sums(x, units, out)
    values = x.astype(np.float64)
    present = np.isfinite(values) & (np.arange(1000) < units)
    np.testing.assert_array_equal(out[:, 0], np.where(present, np.abs(values), 0.0).sum(axis=1))
    np.testing.assert_array_equal(out[:, 1], present.sum(axis=1))
    np.testing.assert_array_equal(out[:, 2], units - present.sum(axis=1))


def test_kept_permutations_and_resamples_give_the_same_numbers():
    """compare_groups with its permutations and resampling counts drawn beforehand and kept
    (prepare_compare_groups, as compare_splits does on another thread) against a call that
    draws them itself: the same numbers, bit for bit; what is kept equals a fresh draw."""
    from actstats.kernels import comparison

    rng = np.random.default_rng(11)
    x, y = rng.random((6, 37)), rng.random((6, 23))
    options = dict(n_permutations=2500, n_resamples=300, seed=5)  # 2500: three batches of 1000, the last partial
    comparison._kept_permutations.clear()
    with_draws = comparison.compare_groups(x, y, **options)
    comparison._kept_permutations.clear()
    comparison.prepare_compare_groups(37, 23, **options)
    kept = comparison._kept_permutations[(5, 60, 37, 2500)]
    fresh = np.random.default_rng(5)
    expected = np.concatenate([comparison._permutation_indicators(fresh, 60, 37, b) for b in (1000, 1000, 500)])
    np.testing.assert_array_equal(kept, expected)
    assert not kept.flags.writeable
    with_kept = comparison.compare_groups(x, y, **options)
    for field in ("statistic", "pvalue", "ci_low", "ci_high"):
        np.testing.assert_array_equal(getattr(with_kept, field), getattr(with_draws, field))
