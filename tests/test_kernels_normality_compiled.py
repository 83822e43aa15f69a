"""The compiled kernels of ``normality_statistics`` and ``sort_sample`` against scipy,
statsmodels, exact arithmetic and their own Python source."""

import numpy as np
import pytest
import scipy.stats
from scipy import special
from statsmodels.stats.diagnostic import lilliefors as statsmodels_lilliefors

from actstats.kernels import normality
from actstats.kernels.normality import _float32_exact, _row_cdf_statistics, _row_tail, normality_statistics
from tolerances import STATISTIC, anderson_darling_condition, float_rtol


def test_normal_tail_against_scipy_ndtr():
    z = np.concatenate([np.linspace(-38.5, 38.5, 200_001), [0.0, -0.0, 1e-300, -1e-20, 0.7071, -0.7072]])
    tail = np.empty_like(z)
    _row_tail(z, 0.0, 1.0, tail)
    expected = special.ndtr(-np.abs(z))
    np.testing.assert_allclose(tail, expected, rtol=0, atol=1e-15)
    where = expected > 1e-300
    # exact arguments (mean 0, std 1): no rounding of a enters, so the tail's condition number
    # does not either; both sides evaluate Φ(-|z|) within a few ulps of it (scipy's ndtr;
    # erfc at anchors and a Taylor polynomial, checked against 30-digit arithmetic below), and
    # 1e-13 relative (~450 ulps) leaves room for another libm's erfc
    np.testing.assert_allclose(tail[where], expected[where], rtol=1e-13)
    assert (tail[np.abs(z) > 38.5] == 0).all()


def test_normal_tail_against_exact_arithmetic_as_close_as_erfc_at_every_value():
    # _row_tail takes erfc at anchors and a Taylor polynomial between them: against Φ(-a) in
    # 30-digit arithmetic at the exact a = |x - mean|/std of each float64 x, both it and erfc
    # evaluated at every value are within (4κ + 4) u relative, κ = aφ(a)/Φ(-a) the tail's
    # condition number: a carries ~3 roundings (x - mean, /std, ·√½ inside erfc), which move
    # Φ(-a) by κ times their relative size, and erfc adds ~1 ulp (kind 3)
    import math

    import mpmath

    mpmath.mp.dps = 30
    rng = np.random.default_rng(39)
    x = np.sort(rng.normal(0.01, 0.03, size=200_000).astype(np.float32).astype(np.float64))
    x[-1] = 0.01 + 0.03 * 12.0  # one value beyond the anchors' reach of its neighbour
    mean, std = x.mean(), x.std(ddof=1)
    tail = np.empty_like(x)
    _row_tail(x, mean, std, tail)
    picked = np.unique(np.concatenate([np.arange(0, x.size, 211), np.arange(0, 400), np.arange(x.size - 400, x.size)]))
    u = np.finfo(float).eps / 2
    for i in picked:
        a = abs((mpmath.mpf(float(x[i])) - mpmath.mpf(float(mean))) / mpmath.mpf(float(std)))
        exact = mpmath.ncdf(-a)
        kappa = float(a * mpmath.npdf(a) / exact)
        bound = (4 * kappa + 4) * u
        erfc_each = 0.5 * math.erfc(abs((x[i] - mean) / std) * normality._SQRT_HALF)
        assert float(abs(mpmath.mpf(float(tail[i])) - exact) / exact) <= bound, (i, float(a))
        assert float(abs(mpmath.mpf(erfc_each) - exact) / exact) <= bound, (i, float(a))


def test_far_tail_log_series_against_log_ndtr():
    # values beyond 20 std: the log of the tail from its asymptotic series (the numpy kernel: log_ndtr)
    rng = np.random.default_rng(31)
    for outlier in (45.0, 160.0, 1e4):
        x = np.sort(np.concatenate([rng.normal(size=4000), [outlier, -outlier / 2]]))
        result = normality_statistics(x).ad_statistic
        assert np.isfinite(result)
        # kind 2: the same cancelling sum in two orders (tolerances.anderson_darling_condition)
        rel = STATISTIC * float_rtol(x.size, condition=anderson_darling_condition(x))
        assert result == pytest.approx(float(normality.anderson_darling(x).statistic), rel=rel)
    a = np.array([20.000001, 25.0, 37.0, 40.0, 100.0, 1e3, 1e6])
    terms = np.array([(-1) ** k * np.prod(np.arange(1, 2 * k, 2)) / a ** (2 * k) for k in range(13)]).sum(axis=0)
    series = -0.5 * a * a - np.log(a) - 0.5 * np.log(2 * np.pi) + np.log(terms)
    np.testing.assert_allclose(series, special.log_ndtr(-a), rtol=1e-15)


@pytest.mark.parametrize("draw", ["normal", "laplace", "uniform"])
def test_large_group_against_scipy_and_statsmodels(draw):
    rng = np.random.default_rng(32)
    x = getattr(rng, draw)(size=150_000).astype(np.float32).astype(np.float64)
    result = normality_statistics(x)
    # kind 2: the same cancelling sum in another order (scipy's), with Φ from another implementation
    rel = STATISTIC * float_rtol(x.size, condition=anderson_darling_condition(x))
    assert result.ad_statistic == pytest.approx(scipy.stats.anderson(x, method="interpolate").statistic, rel=rel)
    d, p = statsmodels_lilliefors(x, pvalmethod="table")
    assert result.lilliefors_statistic == pytest.approx(d, rel=0, abs=1e-13)
    # statsmodels' table p-value is interpolated in D, which agrees within 1e-13 (above): the
    # p-values agree within the table's slope |d log p / dD| (~4e3 for the normal draw, 0 where
    # it is clipped at 0.001) times that, plus a few roundings
    h = 1e-9
    slope = abs(np.log(normality.lilliefors_pvalue(d + h, x.size)) - np.log(p)) / h
    assert result.lilliefors_pvalue == pytest.approx(p, rel=slope * 1e-13 + STATISTIC * float_rtol(1))
    expected = scipy.stats.kstest(x, "norm", args=(x.mean(), x.std())).statistic
    assert result.ks_d == pytest.approx(expected, rel=0, abs=1e-13)


def test_wasserstein_against_exact_arithmetic():
    # the compiled W1 of the values the kernel standardises, against 40-digit arithmetic
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    rng = np.random.default_rng(33)
    n = 600
    for x in (rng.normal(size=n), rng.laplace(size=n)):
        sample = normality.sort_sample(x)
        mean, squares = normality._mean_squares(sample)
        z = (sample.ordered[0] - mean[0]) / np.sqrt(squares[0] / n)
        ours = float(normality_statistics(x).w1_normal)
        edges = [mp.mpf("-inf")] + [mp.sqrt(2) * mp.erfinv(2 * mp.mpf(k) / n - 1) for k in range(1, n)] + [mp.mpf("inf")]
        total, magnitude = mp.mpf(0), mp.mpf(0)
        for i in range(n):
            value, left, right = mp.mpf(float(z[i])), edges[i], edges[i + 1]
            clipped = min(max(value, left), right)
            density = [mp.npdf(t) if mp.isfinite(t) else 0 for t in (left, right)]
            term = value * (2 * mp.ncdf(clipped) - mp.mpf(2 * i + 1) / n) + 2 * mp.npdf(clipped) - sum(density)
            total += term
            magnitude += abs(term)
        # kind 3: a float64 sum of n transcendental terms against the exact one (Higham's bound
        # times the sum's condition number Σ|term| / |Σ term|)
        assert ours == pytest.approx(float(total), rel=float_rtol(n, condition=float(magnitude / abs(total))))


def test_compiled_kernels_equal_their_python_source():
    # numba compiles what the source says: the same floats from the plain Python function
    rng = np.random.default_rng(34)
    x = np.sort(rng.standard_t(4, size=300))
    x[-1] = 30.0  # one value past the series' threshold
    n = x.size
    mean, std1, std0 = x.mean(), x.std(ddof=1), x.std()
    tails = np.empty((2, 3, n))
    for tail, function in zip(tails, (_row_tail, _row_tail.py_func)):
        function(x, mean, std1, tail[0])
        with np.errstate(divide="ignore"):
            np.log(tail[0], out=tail[1])
            np.log(1.0 - tail[0], out=tail[2])
    np.testing.assert_array_equal(tails[0], tails[1])
    arguments = (x, mean, std1, std0, *tails[0], *normality._probabilities(n)[:2], *normality._normal_quantile_slices(n))
    assert _row_cdf_statistics(*arguments) == _row_cdf_statistics.py_func(*arguments)


def test_float32_exact():
    single = np.random.default_rng(35).normal(size=(2, 1000)).astype(np.float32).astype(np.float64)
    single[0, 3], single[1, 5], single[1, 6] = np.nan, np.inf, -np.inf
    assert _float32_exact(single)
    for value in (0.1, 1e300, 2.0**-150, np.nextafter(1.0, 2.0)):
        other = single.copy()
        other[1, 999] = value
        assert not _float32_exact(other)
    assert _float32_exact(single[:, ::2])  # not contiguous


def test_distance_sums_against_numpy():
    from actstats.queries.normality import _distance_sums

    rng = np.random.default_rng(36)
    initial = rng.normal(size=50_000).astype(np.float32)
    values = initial.astype(np.float64) + rng.normal(0, 0.01, size=initial.size)
    values[:100] = np.nan
    initial[100:110] = np.inf
    initial[110:120] = np.nan
    both = ~np.isnan(values) & np.isfinite(initial)
    change, base, count = _distance_sums(values, initial)
    start = initial[both].astype(np.float64)
    assert count == both.sum() == values.size - 120
    # kind 2: two orders of a sum of positive terms (compensated against numpy's pairwise)
    assert change == pytest.approx(((values[both] - start) ** 2).sum(), rel=float_rtol(int(both.sum())))
    assert base == pytest.approx((start**2).sum(), rel=float_rtol(int(both.sum())))
    assert _distance_sums(values[:50], initial[:50]) == (0.0, 0.0, 0)


def test_normality_block_cleans_as_the_engine_block():
    # weight_normality's block function cleans a group at a time in a kept array; the engine's
    # _block cleans the whole block: the same fields, n_nonfinite included, on a padded store
    # with non-finite weights and an incomplete record, a block of several groups per task
    from actstats.queries import _engine
    from actstats.queries.normality import NORMALITY, _broadcast_epoch, _group_fields
    from actstats.synthetic import synthetic_store

    ds = synthetic_store(runs=3, depth=[2, 1, 2], width=[16, 16, 10], epochs=(0.0, 1.0, 2.0), seed=3)
    weight = ds["weight"].values
    weight[1, 1, 0, 0, :7] = -np.inf
    weight[0, 2, 1, 3, 2] = np.nan
    weight[2, 0, 0, 1, 1] = np.inf  # at epoch 0: left out of distance_from_init
    ds["complete"].values[2, 2] = False
    weight[2, 2] = np.nan
    options = dict(families=("normal", "laplace", "logistic", "uniform"), max_fit_size=20_000,
                   shapiro_max_size=5000, seed=0, initial_epoch=0)

    def reference(values, initial, *, grid, n_reduce, layout, initial_epoch, **group_options):
        exists = _engine._exists(layout, grid, epoch=np.full_like(grid["epoch"], initial_epoch))
        keep_shape = values.shape[: values.ndim - n_reduce]
        out = np.empty(keep_shape + (NORMALITY.fields.size - 1,))
        for index in np.ndindex(*keep_shape):
            both = None if np.all(exists) else np.broadcast_to(exists, values.shape)[index].ravel()
            out[index] = _group_fields(values[index].ravel(), np.broadcast_to(initial, values.shape)[index].ravel(),
                                       both, **group_options)
        return {name: out[..., NORMALITY.fields.slices[name]] for name in NORMALITY.fields.names[:-1]}

    engine = _engine.Reduction("reference", reference, NORMALITY.fields, combine="whole")
    layout = _engine._layout(ds)
    core = ["unit", "fan_in"]
    others = [_broadcast_epoch(ds["weight"], 0)]
    for data in (ds, ds.chunk({"run": 1, "epoch": 3, "layer": 2})):  # numpy, and dask blocks of 6 groups
        ours, theirs = (_engine._map_chunks(data["weight"], reduction, ["run", "epoch", "layer"], core, layout,
                                            others=[o.chunk(data["weight"].chunksizes) if data is not ds else o
                                                    for o in others], **options)
                        for reduction in (NORMALITY, engine))
        ours, theirs = (a.compute().values if _engine._is_dask(a) else a.values for a in (ours, theirs))
        np.testing.assert_array_equal(ours, theirs)
    # 7 -inf, a NaN where a weight exists and an inf at epoch 0; the incomplete record is absent
    assert int(ours[..., -1].sum()) == 9


def test_weight_normality_full_row_moments_equal_kernels_moments_bit_for_bit():
    from actstats.kernels import moments
    from actstats.queries.normality import _full_row_moments

    rng = np.random.default_rng(18)
    for n in (1, 2, 7, 4097, 70_001, 2**17 + 3):  # from 2**16 values the compiled sums
        for scale in (1e-6, 1.0, 1e5):
            x = rng.standard_t(4, size=n) * scale + rng.normal() * 1e3 * scale
            for row in (x, x.astype(np.float32).astype(np.float64)):
                np.testing.assert_array_equal(_full_row_moments(row), moments(row[None, :])[0])


def test_pairwise_moment_sums_equal_numpy_sums_bit_for_bit():
    # numpy's pairwise sum replicated (leaves of < 8, <= 128 values; splits at multiples of 8):
    # the same floats as np.sum of the arrays of terms, at every size that reaches each branch
    from actstats.queries.normality import _pairwise_moment_sums

    rng = np.random.default_rng(37)
    for n in (*range(1, 20), 127, 128, 129, 136, 255, 1000, 4097, 70_001):
        x = rng.standard_t(4, size=n) * 10.0 ** rng.uniform(-3, 3) + rng.normal()
        for values in (x, x.astype(np.float32)):
            wide = values.astype(np.float64)
            assert _pairwise_moment_sums(values, 0.0, False)[0] == wide.sum()
            mean = wide.sum() / n
            d = wide - mean
            q = d * d
            expected = [d.sum(), q.sum(), (q * d).sum(), (q * q).sum()]
            np.testing.assert_array_equal(_pairwise_moment_sums(values, mean, True), expected)
    for zeros in (np.array([-0.0]), np.full(9, -0.0)):  # numpy's sum of -0.0 is 0.0
        assert str(_pairwise_moment_sums(zeros, 0.0, False)[0]) == str(zeros.sum()) == "0.0"


def test_sort_float32_row_equals_sort_sample():
    # the query's sort of a float32 group (no check, kept arrays) against sort_sample's, bit for bit
    from actstats.kernels.normality import _sort_float32_row, sort_sample

    rng = np.random.default_rng(38)
    for n in (2**16, 70_001):
        single = (rng.standard_t(3, size=(2, n // 2 + 1)) * 0.02).astype(np.float32).reshape(-1)[:n]
        single[:5] = [0.0, -0.0, 1e-40, -1e-40, 0.0]  # zeros of both signs, subnormals
        values = single.astype(np.float64)
        ours, theirs = _sort_float32_row(values, single.reshape(2, -1) if n % 2 == 0 else single), sort_sample(values)
        np.testing.assert_array_equal(ours.ordered, theirs.ordered)
        np.testing.assert_array_equal(np.signbit(ours.ordered), np.signbit(theirs.ordered))
        assert ours.full and theirs.full and ours.counts.tolist() == theirs.counts.tolist() == [n]
        np.testing.assert_array_equal(ours.rows.values, theirs.rows.values)
