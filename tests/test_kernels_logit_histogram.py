"""Logit-space histograms of bounded activations against the exact statistics.

References: ``diptest.dipstat`` / ``diptest.diptest`` on the values themselves (the
implementation the exact path uses), ``scipy.stats.kstest`` of the clipped values
against ``scipy.stats.beta`` and the fitted logit-normal, ``numpy.histogram`` for the
counts, :func:`actstats.kernels.fit_logit_normal` on the whole sample.
"""

from __future__ import annotations

import json

import diptest
import numpy as np
import pytest
from scipy import special, stats

from actstats import kernels
from actstats.kernels.logit_histogram import _all_edges
from test_kernels_compiled import BOUND, assert_moments_within_bound
from tolerances import STATISTIC, fit_rtol, float_rtol

DELTA = kernels.DEFAULT_DELTA
pytestmark = pytest.mark.filterwarnings("ignore:Sample size exceeds:UserWarning")


def _with_saturation(rng, y, fraction):
    """Replace a fraction of values by exact 0 and 1 and by values in (0, delta) and (1-delta, 1)."""
    y = y.copy()
    k = int(fraction * y.size)
    y[:k] = 0.0
    y[k: 2 * k] = 1.0
    y[2 * k: 3 * k] = 10.0 ** rng.uniform(-40, -6.5, k)  # a float32 sigmoid of very negative inputs
    y[3 * k: 4 * k] = 1 - 10.0 ** rng.uniform(-7.5, -6.2, k)
    return rng.permutation(y)


def _samples():
    rng = np.random.default_rng(7)
    n = 120_000
    return {
        "u_shaped": rng.beta(0.2, 0.2, n),
        "unimodal": rng.beta(5.0, 5.0, n),
        "one_sided": rng.beta(0.3, 5.0, n),
        "logit_normal": special.expit(rng.normal(0.5, 1.5, n)),
        "saturated": _with_saturation(rng, rng.beta(0.5, 0.5, n), 0.05),
        "spikes_and_bump": np.concatenate([rng.beta(0.5, 40, n // 3), rng.beta(6, 6, n // 3), rng.beta(40, 0.5, n // 3)]),
        "narrow": special.expit(rng.normal(-2.0, 0.05, n)),
    }


SAMPLES = _samples()


def test_histogram_merges_by_summing_and_counts_like_numpy():
    y = SAMPLES["saturated"]
    whole = kernels.logit_histogram(y)
    parts = kernels.logit_histogram(y[:50_000]) + kernels.logit_histogram(y[50_000:])
    np.testing.assert_array_equal(whole, parts)
    assert whole.sum() == y.size
    edges = _all_edges(kernels.LOGIT_HISTOGRAM_BINS, DELTA, kernels.LOGIT_OUTER_BINS)
    inside = y[(y > 0) & (y < 1)]
    z = np.log(inside) - np.log1p(-inside)
    counts, _ = np.histogram(z, bins=edges)
    total = edges.size - 1
    # numpy's bins agree except where logit rounding puts a value on the other side of an edge
    assert np.abs(whole[:total] - counts).sum() <= 4
    assert whole[total] == np.sum(y == 0) and whole[total + 3] == np.sum(y == 1)
    # rows are independent groups; NaN is skipped
    two = np.stack([y[:1000], np.where(np.arange(1000) % 2 == 0, y[1000:2000], np.nan)])
    rows = kernels.logit_histogram(two)
    np.testing.assert_array_equal(rows[0], kernels.logit_histogram(y[:1000]))
    assert rows[1].sum() == 500


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_dip_within_its_bound_and_pvalue_conservative(name):
    y = SAMPLES[name]
    exact_dip, exact_p = diptest.diptest(y)
    result = kernels.logit_histogram_dip(kernels.logit_histogram(y))
    assert abs(float(result.statistic) - exact_dip) <= float(result.error) + 1e-12
    assert float(result.error) < 0.01
    assert float(result.pvalue) >= exact_p - 1e-12
    if name in ("u_shaped", "saturated", "spikes_and_bump"):
        assert float(result.pvalue) < 1e-6  # a bimodal group is still rejected


@pytest.mark.parametrize("name", ["saturated", "narrow", "spikes_and_bump"])
def test_quantile_points_stay_within_the_bound_of_the_data(name):
    y = np.sort(SAMPLES[name])
    histogram = kernels.logit_histogram(y)
    size = 4096
    sample = kernels.logit_histogram_sample(histogram, size)
    assert np.all(np.diff(sample) >= 0)
    bound = kernels.logit_histogram_dip(histogram, sample_size=size).error
    points = np.concatenate([y, sample])
    f_data = np.searchsorted(y, points, side="right") / y.size
    f_sample = np.searchsorted(sample, points, side="right") / size
    assert np.max(np.abs(f_data - f_sample)) <= bound + 1e-12


def _ks_reference(y, cdf):
    return stats.kstest(np.clip(y, DELTA, 1 - DELTA), cdf).statistic


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_ks_to_fitted_beta_and_logit_normal_within_bound(name):
    y = SAMPLES[name]
    histogram = kernels.logit_histogram(y)
    edges = kernels.logit_histogram_edges()
    middles = kernels.logit_histogram_middles()
    beta = kernels.fit_beta(y)
    a, b = float(beta.a), float(beta.b)
    ks, error = kernels.logit_histogram_ks(
        histogram, special.betainc(a, b, special.expit(edges)), special.betainc(a, b, special.expit(middles))
    )
    exact = _ks_reference(y, stats.beta(a, b).cdf)
    assert abs(float(ks) - exact) <= float(error) + 1e-12
    assert float(error) < 0.02
    normal = kernels.fit_logit_normal(y)
    mu, sigma = float(normal.mean_logit), float(normal.std_logit)
    ks, error = kernels.logit_histogram_ks(
        histogram, special.ndtr((edges - mu) / sigma), special.ndtr((middles - mu) / sigma)
    )
    exact = _ks_reference(y, lambda v: special.ndtr((np.log(v) - np.log1p(-v) - mu) / sigma))
    assert abs(float(ks) - exact) <= float(error) + 1e-12
    assert float(error) < 0.02


def test_logit_normal_from_merged_statistics_equals_the_whole():
    y = SAMPLES["saturated"]
    clipped = np.clip(y, DELTA, 1 - DELTA)
    logit = np.log(clipped) - np.log1p(-clipped)
    chunks = np.array_split(np.arange(y.size), 7)
    moments = kernels.combine_moments(np.stack([kernels.moments(logit[c]) for c in chunks]), axis=0)
    sums = sum(kernels.beta_sufficient_statistics(y[c]) for c in chunks)
    streamed = kernels.fit_logit_normal_from_statistics(moments, sums)
    whole = kernels.fit_logit_normal(y)
    # closed forms (mean, std, log-likelihood of the logit-normal) of sums in another order
    for field in ("mean_logit", "std_logit", "log_likelihood", "bic", "n", "n_clipped"):
        np.testing.assert_allclose(getattr(streamed, field), getattr(whole, field),
                                   rtol=float_rtol(y.size, condition=STATISTIC))


def test_binned_mixture_likelihood_close_to_the_exact_one():
    y = SAMPLES["spikes_and_bump"]
    fit = kernels.fit_beta_mixture(y, max_size=5000)
    binned = kernels.logit_histogram_mixture_log_likelihood(kernels.logit_histogram(y), fit.weights, fit.a, fit.b)
    # exact: the kernel's own log-likelihood on all values (clipped, [0, 1] scale)
    assert abs(float(binned) - float(fit.log_likelihood)) <= 1e-4 * abs(float(fit.log_likelihood))


def test_dip_pvalue_matches_diptest_below_its_table_limit():
    rng = np.random.default_rng(3)
    for n in (50, 1000, 20_000):
        y = rng.beta(0.6, 0.6, n)
        dip, p = diptest.diptest(y)
        np.testing.assert_allclose(kernels.dip_pvalue(dip, n), p, rtol=1e-12)


# ------------------------------------------------------------------ the queries' path


def test_fit_histogram_path_equals_the_exact_fits_and_bounds_the_ks(small_store):
    import actstats

    ds = actstats.open_store(small_store)  # dask chunks: the summaries merge across them
    exact = actstats.fit(ds, by=("layer",), method="exact")
    streamed = actstats.fit(ds, by=("layer",), method="histogram")
    assert exact.attrs["cdf_method"] == "exact" and streamed.attrs["cdf_method"] == "histogram"
    # sums in another order: the Beta's Newton solve to its line search's band (the policy's
    # iterative kind), and what is computed from its shapes with it
    rtol = fit_rtol(exact["beta_a"].values, exact["beta_b"].values, int(exact["n"].max()))
    for name in ("log_likelihood", "aic", "bic", "logit_normal_mean", "logit_normal_std"):
        np.testing.assert_allclose(streamed[name], exact[name], rtol=rtol, err_msg=name)
    for name in ("beta_a", "beta_b", "beta_a_standard_error"):
        np.testing.assert_allclose(streamed[name], exact[name], rtol=rtol, err_msg=name)
    for name in ("n", "n_clipped", "n_nonfinite", "best_family"):
        np.testing.assert_array_equal(streamed[name], exact[name], err_msg=name)
    assert np.all(np.abs(streamed.ks_statistic - exact.ks_statistic) <= streamed.ks_statistic_error + 1e-12)
    assert float(streamed.ks_statistic_error.max()) < 0.01
    assert float(np.abs(exact.ks_statistic_error).max()) == 0.0
    # "auto" switches to the histogram beyond exact_max_size, and refuses what needs the values
    assert actstats.fit(ds, by=("layer",), exact_max_size=1000).attrs["cdf_method"] == "histogram"
    with pytest.raises(actstats.ActstatsError, match="beta_mixture needs the values in memory"):
        actstats.fit(ds, family="beta_mixture", by=("layer",), exact_max_size=1000)


def test_command_line_streams_large_groups_and_refuses_the_mixture_in_one_line(small_store, monkeypatch, capsys):
    from actstats.cli import main
    from actstats.options import OPTIONS

    monkeypatch.setitem(OPTIONS, "exact_max_size", 1000)  # every --by layer group is "large"
    assert main(["fit", small_store, "--family", "all", "--by", "layer", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta_mixture needs the values in memory" in err
    assert main(["bimodality", small_store, "--by", "layer", "--format", "json", "--no-progress"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 3 and all(r["dip_error"] > 0 for r in records)


def test_bimodality_histogram_path_agrees_with_the_exact_one(small_store):
    import actstats

    ds = actstats.open_store(small_store)
    exact = actstats.bimodality(ds, by=("layer", "split"), method="exact", mixture="never")
    streamed = actstats.bimodality(ds, by=("layer", "split"), method="histogram", mixture="never")
    n = int(exact["n"].max())
    np.testing.assert_allclose(streamed["bimodality_coefficient"], exact["bimodality_coefficient"],
                               rtol=float_rtol(n, condition=STATISTIC))
    np.testing.assert_allclose(streamed["logit_normal_log_likelihood"], exact["logit_normal_log_likelihood"],
                               rtol=float_rtol(n, condition=STATISTIC))
    rtol = fit_rtol(exact["beta_a"].values, exact["beta_b"].values, n)  # Newton's line-search band
    for name in ("beta_a", "beta_b", "beta_bic"):
        np.testing.assert_allclose(streamed[name], exact[name], rtol=rtol, err_msg=name)
    for name in ("n", "n_clipped", "u_shaped"):
        np.testing.assert_array_equal(streamed[name], exact[name], err_msg=name)
    assert np.all(np.abs(streamed.dip - exact.dip) <= streamed.dip_error + 1e-12)
    assert np.all(streamed.dip_pvalue >= exact.dip_pvalue - 1e-12)  # conservative
    assert float(np.abs(exact.dip_error).max()) == 0.0
    assert "conservative" in streamed.attrs["dip_method"]


@pytest.mark.parametrize("shape", [(0.2, 0.2), (5.0, 5.0)])
def test_bimodality_verdicts_survive_the_histogram_path(shape):
    import actstats
    from actstats.synthetic import synthetic_store

    ds = synthetic_store(activation=lambda rng, size: rng.beta(*shape, size), depth=1, units=200)
    exact = actstats.bimodality(ds, by=("epoch",), method="exact", mixture="always")
    streamed = actstats.bimodality(ds, by=("epoch",), method="histogram", mixture="always")
    np.testing.assert_array_equal(streamed.bimodal_at_bounds, exact.bimodal_at_bounds)
    assert bool(exact.bimodal_at_bounds.all()) == (shape[0] < 1)
    # the binned mixture likelihood is close to the exact one on the same values
    np.testing.assert_allclose(streamed.mixture_bic, exact.mixture_bic, rtol=0.01)
    np.testing.assert_array_equal(streamed.mixture_preferred_by_bic, exact.mixture_preferred_by_bic)


def test_an_unknown_method_is_refused(small_store):
    import actstats

    ds = actstats.open_store(small_store)
    for query in (actstats.bimodality, actstats.fit, actstats.weight_normality):
        with pytest.raises(ValueError, match="method must be 'auto', 'exact' or 'histogram', got 'sorted'"):
            query(ds, method="sorted")


def test_bounded_summary_equals_the_kernels_one_by_one():
    y = np.stack([SAMPLES["saturated"], SAMPLES["narrow"]])
    y[1, :500] = np.nan
    summary = kernels.bounded_summary(y)
    clipped = np.clip(y, DELTA, 1 - DELTA)
    head = kernels.SUMMARY_FIELDS
    sums = kernels.beta_sufficient_statistics(y)
    # counts bit for bit; the compiled pass sums in another order than numpy's pairwise sums,
    # within the bound its docstring states (tests/test_kernels_compiled.py: BOUND)
    np.testing.assert_array_equal(summary[:, [0, 3]], sums[:, [0, 3]])
    np.testing.assert_allclose(summary[:, 1:3], sums[:, 1:3], rtol=BOUND, atol=0)
    assert_moments_within_bound(summary[:, 4:9], kernels.moments(y))
    assert_moments_within_bound(summary[:, 9:head], kernels.moments(np.log(clipped) - np.log1p(-clipped)))
    np.testing.assert_array_equal(summary[:, head:], kernels.logit_histogram(y))
