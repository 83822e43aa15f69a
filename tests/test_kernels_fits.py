"""Distribution-family fits against scipy, and recognition of known families."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from actstats import kernels
from actstats.kernels import FAMILIES, fit_families
from tolerances import float_rtol, sum_condition

REFERENCE = json.loads((Path(__file__).parent / "reference" / "fits.json").read_text())
CASES = REFERENCE["cases"]
SCIPY = {
    "normal": scipy.stats.norm,
    "t": scipy.stats.t,
    "laplace": scipy.stats.laplace,
    "logistic": scipy.stats.logistic,
    "uniform": scipy.stats.uniform,
    "gennorm": scipy.stats.gennorm,
}
# gennorm nests the normal (beta = 2) and the Laplace (beta = 1) and tends to the uniform
# as beta -> infinity; t tends to the normal as df -> infinity
NESTING = {"normal": {"t", "gennorm"}, "laplace": {"gennorm"}, "uniform": {"gennorm"}}


def parameters(fits, k, index=()):
    family = fits.families[k]
    values = [fits.loc[index + (k,)], fits.scale[index + (k,)]]
    return ([fits.shape[index + (k,)]] if family in ("t", "gennorm") else []) + values


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_against_stored_scipy_fits(case):
    x = np.array(case["input"])
    fits = fit_families(x)
    assert fits.families == FAMILIES
    for k, family in enumerate(FAMILIES):
        expected = case["expected"][family]
        ours = np.array(parameters(fits, k))
        theirs = np.array(expected["parameters"])
        if family in ("t", "gennorm"):
            # numerical optimisation: compare where the shape is identified (df, beta finite)
            if theirs[0] < 1e3:
                np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-6)
            assert fits.log_likelihood[k] == pytest.approx(expected["log_likelihood"], rel=1e-6)
        elif family == "logistic":
            # scipy solves the score equations to its root finder's tolerance (~1e-8
            # relative); ours iterates Newton's method to machine precision: the same
            # parameters to 1e-7, and a likelihood at least as high (it is the maximum)
            np.testing.assert_allclose(ours, theirs, rtol=1e-7)
            assert fits.log_likelihood[k] >= expected["log_likelihood"] - 1e-12 * abs(expected["log_likelihood"])
            assert fits.log_likelihood[k] == pytest.approx(expected["log_likelihood"], rel=1e-10)
            assert fits.ks_statistic[k] == pytest.approx(expected["ks_statistic"], rel=1e-6)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-10)
            assert fits.log_likelihood[k] == pytest.approx(expected["log_likelihood"], rel=1e-10)
            assert fits.ks_statistic[k] == pytest.approx(expected["ks_statistic"], rel=1e-9)
        n_parameters = 3 if family in ("t", "gennorm") else 2
        assert fits.aic[k] == pytest.approx(2 * n_parameters - 2 * fits.log_likelihood[k])
        assert fits.bic[k] == pytest.approx(n_parameters * np.log(x.size) - 2 * fits.log_likelihood[k])


def test_live_scipy_on_groups_with_padding():
    rng = np.random.default_rng(0)
    x = rng.logistic(1.0, 2.0, size=(2, 3, 200))
    x[1, 2, 150:] = np.nan
    fits = fit_families(x, axis=-1)
    assert fits.log_likelihood.shape == (2, 3, len(FAMILIES))
    for index in [(0, 0), (1, 2)]:
        row = x[index][~np.isnan(x[index])]
        for k, family in enumerate(FAMILIES):
            theta = parameters(fits, k, index)
            if family not in ("t", "gennorm"):
                np.testing.assert_allclose(theta, SCIPY[family].fit(row), rtol=1e-7)
            assert fits.log_likelihood[index + (k,)] == pytest.approx(SCIPY[family].logpdf(row, *theta).sum(), rel=1e-12)
            assert fits.ks_statistic[index + (k,)] == pytest.approx(
                scipy.stats.kstest(row, SCIPY[family].cdf, args=tuple(theta)).statistic, rel=1e-9
            )
    assert fits.n[1, 2] == 150


@pytest.mark.parametrize(
    "family, draw, excess_kurtosis, tolerance",
    [
        ("uniform", lambda rng, size: rng.uniform(-1, 1, size), -1.2, 0.05),
        ("laplace", lambda rng, size: rng.laplace(0, 1, size), 3.0, 0.5),
        ("normal", lambda rng, size: rng.normal(0, 1, size), 0.0, 0.15),
    ],
)
def test_recognises_known_families(family, draw, excess_kurtosis, tolerance):
    rng = np.random.default_rng(2026)
    x = draw(rng, (3, 20_000))
    statistics = kernels.moment_statistics(kernels.moments(x))
    np.testing.assert_allclose(statistics.excess_kurtosis, excess_kurtosis, atol=tolerance)
    fits = fit_families(x[:, :4000])
    index = FAMILIES.index(family)
    for group in range(3):
        best = fits.best_family[group]
        # A family that nests the true one (gennorm contains normal and Laplace, t the
        # normal) gains a little likelihood by chance and can win by AIC by less than 2;
        # the non-nesting families must lose clearly.
        assert best == family or (best in NESTING[family] and fits.aic[group, index] - fits.aic[group].min() < 2)
        for k, other in enumerate(FAMILIES):
            if other != family and other not in NESTING[family]:
                assert fits.aic[group, k] - fits.aic[group, index] > 10, other
    assert (fits.best_family == family).sum() >= 2


def test_subsample_for_slow_families_is_reported():
    x = np.random.default_rng(1).normal(size=(1, 3000))
    fits = fit_families(x, families=("normal", "t", "gennorm"), max_fit_size=500, seed=3)
    assert fits.fit_size.tolist() == [[3000, 500, 500]]
    assert fits.subsampled.tolist() == [[False, True, True]]
    subsample = kernels.deterministic_subsample(x[0], 500, 3)
    df, loc, scale = scipy.stats.t.fit(subsample)
    # the kernel calls the same scipy optimiser on the same subsample: the same computation
    # order, so equal up to the last bits (1e-10 leaves room for scipy's own threading)
    assert fits.loc[0, 1] == pytest.approx(loc, rel=1e-10)
    # the likelihood is still that of all 3000 values
    assert fits.log_likelihood[0, 1] == pytest.approx(scipy.stats.t.logpdf(x[0], df, loc, scale).sum(), rel=1e-12)


def test_unknown_family_and_degenerate_groups():
    with pytest.raises(ValueError, match="unknown family 'cauchy'"):
        fit_families(np.ones(10), families=("normal", "cauchy"))
    fits = fit_families(np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, np.nan, np.nan]]), families=("normal", "uniform"))
    assert np.isnan(fits.aic).all()
    assert fits.best_family.tolist() == ["", ""]
    assert fits.best_family_index.tolist() == [-1, -1]


@pytest.mark.parametrize("draw", ["logistic", "normal", "laplace", "uniform"])
def test_logistic_warm_started_fit_at_large_n_against_scipy(draw):
    # kind 4: Newton warm-started on a quantile summary, stopped after a step below 1e-8 (error
    # ~1e-16 left by quadratic convergence); scipy solves the same score equations to its root
    # finder's tolerance (~1e-8): parameters within 1e-7 and a likelihood at least as high
    x = getattr(np.random.default_rng(31), draw)(size=60_000)
    fits = fit_families(x, families=("logistic",))
    theirs = scipy.stats.logistic.fit(x)
    np.testing.assert_allclose([fits.loc[0], fits.scale[0]], theirs, rtol=1e-7, atol=1e-9)
    scipy_likelihood = scipy.stats.logistic.logpdf(x, *theirs).sum()
    assert fits.log_likelihood[0] >= scipy_likelihood - 1e-12 * abs(scipy_likelihood)
    # the score equations hold at our estimate to rounding
    u = (x - fits.loc[0]) / fits.scale[0]
    t = np.tanh(u / 2)
    assert abs(t.sum()) < 1e-9 * x.size and abs((u * t).sum() - x.size) < 1e-9 * x.size


def test_ks_off_gives_the_same_fits_without_ks():
    x = np.random.default_rng(32).laplace(size=(3, 2000))
    full, lean = fit_families(x, families=("normal", "laplace", "logistic", "uniform")), fit_families(
        x, families=("normal", "laplace", "logistic", "uniform"), ks=False)
    np.testing.assert_array_equal(full.log_likelihood, lean.log_likelihood)
    np.testing.assert_array_equal(full.best_family_index, lean.best_family_index)
    assert np.isnan(lean.ks_statistic).all() and np.isfinite(full.ks_statistic).all()


def test_logistic_likelihood_from_the_last_newton_step_against_scipy_logpdf():
    # the Newton iteration's ℓ (last step's tanh plus a Taylor step) against Σ logpdf at the fit
    from actstats.kernels.fits import _logistic_log_likelihood, _logistic_mle
    from actstats.kernels.normality import sort_sample

    rng = np.random.default_rng(18)
    generators = (rng.normal, rng.laplace, rng.logistic, lambda size: rng.uniform(-1, 1, size),
                  lambda size: rng.standard_t(3, size))
    for generate in generators:
        for n in (20, 5000, 20_000):
            x = (generate(size=(2, n)) * 0.02 + 0.001).astype(np.float32).astype(np.float64)
            sample = sort_sample(x)
            loc, scale, log_likelihood = _logistic_mle(sample, np.ones(2, bool))
            assert np.isfinite(log_likelihood).all()
            terms = [scipy.stats.logistic.logpdf(x[i], loc[i], scale[i]) for i in range(2)]
            expected = [t.sum() for t in terms]
            # two orders of the same sum of n transcendental terms (tests/README.md, kind 2)
            rtol = float_rtol(n, condition=max(sum_condition(t) for t in terms))
            np.testing.assert_allclose(log_likelihood, expected, rtol=rtol, atol=0)
            np.testing.assert_allclose(log_likelihood, _logistic_log_likelihood(sample, loc, scale), rtol=rtol)


def test_normal_fit_from_normality_statistics_sums_equals_its_own():
    # fit_families reads the mean and Σ(x - mean)² normality_statistics left on the sample
    from actstats.kernels.normality import normality_statistics, sort_sample

    rng = np.random.default_rng(19)
    x = rng.standard_t(5, size=(4, 3000)) * 0.03 + 0.5
    x[1, :1000] = np.nan  # a padded row
    x[2] = np.nan  # an empty one
    x[3, 1:] = np.nan  # a single value
    shared = sort_sample(x)
    with np.errstate(divide="ignore"):  # the empty row's A² p-value divides by n = 0
        normality_statistics(shared)
    assert "mean_squares" in shared.row_sums
    families = ("normal", "laplace", "logistic", "uniform")
    with_sums = fit_families(shared, families=families, ks=False)
    alone = fit_families(sort_sample(x), families=families, ks=False)
    for name in ("loc", "scale", "log_likelihood", "aic", "best_family_index"):
        np.testing.assert_array_equal(getattr(with_sums, name), getattr(alone, name))


def test_compiled_logistic_step_passes_against_numpy_and_exact_sums():
    # the compiled Newton passes of large groups (fits._LOGISTIC_COMPILED_SIZE): u/2 bit for bit
    # numpy's (x - mu)/sc*0.5 (same operations, no fastmath); the seven sums and Σ|u| against
    # the exactly rounded sums (math.fsum) at float_rtol(n, condition) (kind 2: another order)
    import math

    from actstats.kernels.fits import _logistic_half, _logistic_magnitudes, _logistic_sums

    rng = np.random.default_rng(40)
    for n in (1, 127, 128, 129, 70_001):
        x = np.sort(rng.logistic(0.003, 0.02, size=n))
        mu, sc = 0.0031, 0.0197
        half = np.empty(n)
        _logistic_half(x, mu, sc, half)
        np.testing.assert_array_equal(half, (x - mu) / sc * 0.5)
        t = np.tanh(half)
        u = 2 * half
        terms = (t, t * t, u, u * t, u * t * t, u * u, (u * t) ** 2)
        ours = _logistic_sums(half, t)
        for value, term in zip(ours, terms):
            exact = math.fsum(term)
            assert abs(value - exact) <= float_rtol(n, condition=sum_condition(term)) * abs(exact)
        magnitude = _logistic_magnitudes(half, t)
        assert abs(magnitude - math.fsum(np.abs(u))) <= float_rtol(n) * math.fsum(np.abs(u))
        np.testing.assert_array_equal(t, 1.0 + np.abs(np.tanh(half)))


@pytest.mark.parametrize("draw, n", [("logistic", 150_000), ("normal", 150_000), ("uniform", 600_000)])
def test_logistic_fit_of_a_large_group_compiled_and_numpy_against_scipy(draw, n, monkeypatch):
    # kind 4: groups of >= 2**16 values take the compiled passes, of >= 2**19 a second warm start
    # (65 536 order statistics); scipy's root finder stops at ~1e-8: parameters within 1e-7 and a
    # likelihood at least as high; the numpy passes (the threshold raised) reach the same root:
    # both satisfy the score equations to rounding, and their likelihoods, at the same maximum,
    # differ by the rounding of the sum (kind 2)
    from actstats.kernels import fits

    x = getattr(np.random.default_rng(41), draw)(size=n) * 0.02
    compiled = fit_families(x, families=("logistic",))
    monkeypatch.setattr(fits, "_LOGISTIC_COMPILED_SIZE", x.size + 1)
    plain = fit_families(x, families=("logistic",))
    theirs = scipy.stats.logistic.fit(x)
    scipy_likelihood = scipy.stats.logistic.logpdf(x, *theirs).sum()
    for fit in (compiled, plain):
        np.testing.assert_allclose([fit.loc[0], fit.scale[0]], theirs, rtol=1e-7, atol=1e-9)
        assert fit.log_likelihood[0] >= scipy_likelihood - 1e-12 * abs(scipy_likelihood)
        u = (x - fit.loc[0]) / fit.scale[0]
        t = np.tanh(u / 2)
        assert abs(t.sum()) < 1e-9 * x.size and abs((u * t).sum() - x.size) < 1e-9 * x.size
    terms = scipy.stats.logistic.logpdf(x, compiled.loc[0], compiled.scale[0])
    np.testing.assert_allclose(compiled.log_likelihood, plain.log_likelihood,
                               rtol=float_rtol(x.size, condition=sum_condition(terms)))
