"""The query layer against plain numpy/scipy/statsmodels loops over groups.

Every query runs on the captured `small_store` through one `backend` fixture (numpy-backed
via `.load()`, dask-backed as opened), and the numbers are compared with an independent
computation (tests/queries_reference.py): slabs cut with `width`, statistics from
numpy, scipy and statsmodels. Padding, non-finite values, incomplete records and a store
written without actstats are covered at the end.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import actstats
from actstats import kernels
from actstats.errors import ActstatsError, ActstatsWarning, StoreFormatError
from actstats.queries import GAUSSIAN_THRESHOLDS
from actstats.registry import QUERIES as REGISTERED, get_query
from actstats.synthetic import synthetic_store
from tolerances import BH_RTOL, STATISTIC, fit_rtol, float_rtol, sum_condition
from queries_reference import (
    BOUNDS,
    activation_slab,
    rescaled,
    sample_fractions,
    split_samples,
    weight_values,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 0.1  # the small store saturates little; a wider band gives non-trivial fractions


def _groups(ds):
    for r in range(ds.sizes["run"]):
        for e in range(ds.sizes["epoch"]):
            for l in range(ds.sizes["layer"]):
                yield r, e, l


def _function(ds, r):
    return str(ds["activation_fn"].values[r])


# ------------------------------------------------------------------------- saturation


def test_saturation_equals_a_numpy_loop_over_groups(ds, stores):
    reference = stores["numpy"]
    result = actstats.saturation(ds, eps=EPS)
    assert result["fraction"].dims == ("run", "epoch", "layer", "split")
    assert result.attrs["eps"] == EPS and result.attrs["confidence_level"] == 0.95
    checked = 0
    for r, e, l in _groups(reference):
        for label, samples in split_samples(reference).items():
            group = result.isel(run=r, epoch=e, layer=l).sel(split=label)
            slab = activation_slab(reference, "activation", r, e, l, samples)
            if slab.shape[1] == 0:
                assert int(group["n_samples"]) == 0 and np.isnan(group["fraction"])
                assert int(group["n_values"]) == 0
                continue
            both, low, high = sample_fractions(slab, _function(reference, r), EPS)
            interval = kernels.fraction_interval(both)
            # means of n per-sample fractions summed in another order; the interval is a few
            # operations on such means (a bound near 0 compared absolutely)
            rtol = float_rtol(samples.size, condition=STATISTIC)
            np.testing.assert_allclose(group["fraction"], both.mean(), rtol=rtol)
            np.testing.assert_allclose(group["fraction_low"], low.mean(), rtol=rtol, atol=1e-15)
            np.testing.assert_allclose(group["fraction_high"], high.mean(), rtol=rtol, atol=1e-15)
            np.testing.assert_allclose(group["ci_low"], interval.ci_low, rtol=rtol, atol=1e-15)
            np.testing.assert_allclose(group["ci_high"], interval.ci_high, rtol=rtol, atol=1e-15)
            assert str(group["interval_method"].values) == str(interval.interval_method)
            assert int(group["n_samples"]) == samples.size
            assert int(group["n_values"]) == slab.size
            assert int(group["n_nonfinite"]) == 0
            checked += 1
    assert checked > 40


def test_saturation_pooled_runs_resample_run_sample_pairs(ds, stores):
    reference = stores["numpy"]
    result = actstats.saturation(ds, eps=EPS, by=("layer", "split"))
    assert result.attrs["independent_unit"] == "(run, sample) pair"
    for l in range(reference.sizes["layer"]):
        for label, samples in split_samples(reference).items():
            cells = []
            for r in range(reference.sizes["run"]):
                slabs = [activation_slab(reference, "activation", r, e, l, samples)
                         for e in range(reference.sizes["epoch"])]
                if slabs[0].shape[1]:
                    # pooled epochs: a sample's fraction is over all its values of the layer
                    cells.append(sample_fractions(np.concatenate(slabs, axis=1), _function(reference, r), EPS)[0])
            cells = np.concatenate(cells)
            interval = kernels.fraction_interval(cells)
            group = result.isel(layer=l).sel(split=label)
            assert int(group["n_samples"]) == cells.size
            rtol = float_rtol(cells.size, condition=STATISTIC)
            np.testing.assert_allclose(group["fraction"], cells.mean(), rtol=rtol)
            np.testing.assert_allclose([group["ci_low"], group["ci_high"]], [interval.ci_low, interval.ci_high],
                                       rtol=rtol)


def test_saturation_per_sample_and_per_unit(stores):
    reference = stores["numpy"]
    per_sample = actstats.saturation(reference, eps=EPS, by=("run", "epoch", "layer", "sample"))
    per_unit = actstats.saturation(reference, eps=EPS, by=("run", "epoch", "layer", "unit"))
    assert "split" in per_sample.coords and per_sample["split"].dims == ("sample",)
    assert bool(per_sample["ci_low"].isnull().all()) and bool(per_unit["ci_high"].isnull().all())
    for r, e, l in [(0, 3, 0), (5, 2, 2), (6, 1, 1)]:
        slab = activation_slab(reference, "activation", r, e, l)
        both, low, _ = sample_fractions(slab, _function(reference, r), EPS)
        rtol = float_rtol(slab.shape[1])  # one sample's count over its units, divided
        np.testing.assert_allclose(per_sample["fraction"].values[r, e, l], both, rtol=rtol)
        np.testing.assert_allclose(per_sample["fraction_low"].values[r, e, l], low, rtol=rtol)
        lower, upper = BOUNDS[_function(reference, r)]
        saturated = (slab <= lower + EPS * (upper - lower)) | (slab >= upper - EPS * (upper - lower))
        width = slab.shape[1]
        np.testing.assert_allclose(per_unit["fraction"].values[r, e, l, :width], saturated.mean(axis=0),
                                   rtol=float_rtol(slab.shape[0]))
        assert np.isnan(per_unit["fraction"].values[r, e, l, width:]).all()
        assert (per_unit["n_samples"].values[r, e, l, :width] == slab.shape[0]).all()


def test_relu_counts_exact_zeros_as_low_and_nothing_as_high():
    ds = synthetic_store(runs=2, activation_fn=["relu", "sigmoid"], weight_scale=3.0, seed=4)
    result = actstats.saturation(ds, by=("run", "layer"))
    for l in range(2):
        slab = np.concatenate([activation_slab(ds, "activation", 0, e, l) for e in range(2)], axis=1)
        np.testing.assert_allclose(result["fraction_low"].values[0, l], (slab == 0).mean(axis=1).mean())
        assert result["fraction_high"].values[0, l] == 0
        assert 0 < result["fraction"].values[0, l] < 1


# ------------------------------------------------------------------------- bimodality


def _pooled_epochs(ds, r, l, samples, name="activation"):
    slabs = [activation_slab(ds, name, r, e, l, samples) for e in range(ds.sizes["epoch"])]
    return np.concatenate([s.ravel() for s in slabs])


def test_bimodality_equals_the_kernel_in_a_loop_and_bh_equals_statsmodels(ds, stores):
    from statsmodels.stats.multitest import multipletests

    runs = [0, 3, 4, 7]  # both depths, both activation functions
    reference = stores["numpy"].isel(run=runs)
    ds = ds.isel(run=runs)
    by = ("run", "layer", "split")
    result = actstats.bimodality(ds, by=by, mixture="always")
    for r in range(len(runs)):
        for l in range(reference.sizes["layer"]):
            for label, samples in split_samples(reference).items():
                group = result.isel(run=r, layer=l).sel(split=label)
                y = rescaled(_pooled_epochs(reference, r, l, samples), _function(reference, r))
                if y.size == 0:
                    assert int(group["n"]) == 0 and np.isnan(group["dip"]) and not bool(group["bimodal_at_bounds"])
                    continue
                expected = kernels.bimodality(y, mixture_max_size=actstats.queries.QUERY_MIXTURE_MAX_SIZE)
                assert int(group["n"]) == y.size
                # the dip is a difference of empirical CDFs of the same sorted values and its
                # p-value an interpolation at it; the coefficient comes from moment sums; the
                # Beta shapes and the mixture from line-searched Newton iterations (the policy's
                # iterative kind: tolerances.beta_mle_rtol)
                rtol = float_rtol(y.size, condition=STATISTIC)
                np.testing.assert_allclose(group["dip"], expected.dip, rtol=rtol)
                np.testing.assert_allclose(group["dip_pvalue"], expected.dip_pvalue, rtol=rtol)
                np.testing.assert_allclose(group["bimodality_coefficient"], expected.bimodality_coefficient, rtol=rtol)
                np.testing.assert_allclose([group["beta_a"], group["beta_b"]], [expected.beta.a, expected.beta.b],
                                           rtol=fit_rtol(expected.beta.a, expected.beta.b, y.size))
                mixture_rtol = fit_rtol(expected.mixture.a, expected.mixture.b, y.size)
                assert bool(group["u_shaped"]) == bool(expected.beta.u_shaped)
                np.testing.assert_allclose(
                    [group[f"mixture_weight_{c}"] for c in ("low", "interior", "high")], expected.mixture.weights,
                    rtol=mixture_rtol)
                np.testing.assert_allclose(group["mixture_bic"], expected.mixture.bic, rtol=mixture_rtol)
                assert bool(group["bimodal_at_bounds_unadjusted"]) == bool(expected.bimodal_at_bounds)
    pvalues = result["dip_pvalue"].values.ravel()
    present = ~np.isnan(pvalues)
    np.testing.assert_allclose(result["pvalue_adjusted"].values.ravel()[present],
                               multipletests(pvalues[present], method="fdr_bh")[1], rtol=BH_RTOL)
    assert "Benjamini-Hochberg" in result.attrs["pvalue_adjustment"]
    assert f"all {present.sum()} groups" in result.attrs["pvalue_adjustment"]

    auto = actstats.bimodality(ds, by=by)  # the mixture only where it can change the criterion
    xr.testing.assert_equal(auto["bimodal_at_bounds_unadjusted"], result["bimodal_at_bounds_unadjusted"])
    xr.testing.assert_equal(auto["bimodal_at_bounds"], result["bimodal_at_bounds"])
    assert bool(auto["mixture_bic"].where(~auto["mixture_fitted"]).isnull().all())
    fitted = auto["mixture_fitted"]
    xr.testing.assert_allclose(auto["mixture_bic"].where(fitted), result["mixture_bic"].where(fitted))


def test_bimodality_skips_unbounded_runs():
    ds = synthetic_store(runs=2, activation_fn=["relu", "sigmoid"], weight_scale=3.0)
    result = actstats.bimodality(ds, by=("run", "layer"))
    assert bool(result["dip"].sel(run=0).isnull().all()) and int(result["n"].sel(run=0).sum()) == 0
    assert bool(result["dip"].sel(run=1).notnull().all())
    assert "relu" in result.attrs["skipped"]


# ------------------------------------------------------------------------------- fits


def test_activation_fits_equal_the_kernels_and_scipy_ks(stores):
    reference = stores["numpy"]
    assert list(actstats.fit(reference.isel(run=[0]), by="run")["family"].values) == ["beta", "logit_normal"]
    result = actstats.fit(reference, family="all", by=("run", "layer"))
    assert list(result["family"].values) == ["beta", "logit_normal", "beta_mixture"]
    for r, l in [(0, 0), (5, 2), (7, 1)]:
        group = result.isel(run=r, layer=l)
        samples = np.arange(reference.sizes["sample"])
        y = rescaled(_pooled_epochs(reference, r, l, samples), _function(reference, r))
        clipped = np.clip(y, 1e-6, 1 - 1e-6)
        beta = kernels.fit_beta(y)
        logit_normal = kernels.fit_logit_normal(y)
        mixture = kernels.fit_beta_mixture(y, max_size=actstats.queries.QUERY_MIXTURE_MAX_SIZE)
        # iterative fits (tolerances.fit_rtol) on the same values pooled in another order
        rtol = fit_rtol(np.r_[beta.a, mixture.a], np.r_[beta.b, mixture.b], y.size)
        np.testing.assert_allclose([group["beta_a"], group["beta_b"]], [beta.a, beta.b], rtol=rtol)
        np.testing.assert_allclose(group["log_likelihood"].values,
                                   [beta.log_likelihood, logit_normal.log_likelihood, mixture.log_likelihood],
                                   rtol=rtol)
        np.testing.assert_allclose(group["aic"].values, [beta.aic, logit_normal.aic, mixture.aic], rtol=rtol)
        ks_beta = stats.kstest(clipped, stats.beta(float(beta.a), float(beta.b)).cdf).statistic
        logit = np.log(clipped) - np.log1p(-clipped)
        ks_logit = stats.kstest(logit, stats.norm(float(logit_normal.mean_logit), float(logit_normal.std_logit)).cdf)
        mixture_cdf = lambda t: sum(  # noqa: E731
            w * stats.beta(a, b).cdf(t) for w, a, b in zip(mixture.weights, mixture.a, mixture.b))
        ks_mixture = stats.kstest(clipped, mixture_cdf).statistic
        np.testing.assert_allclose(group["ks_statistic"].values, [ks_beta, ks_logit.statistic, ks_mixture], rtol=1e-8)
        aic = group["aic"].values
        assert str(group["best_family"].values) == ["beta", "logit_normal", "beta_mixture"][int(np.argmin(aic))]


def test_weight_fits_equal_scipy(stores):
    reference = stores["numpy"]
    families = ("normal", "laplace", "logistic", "uniform")
    result = actstats.fit(reference, family=families, variable="weight", by=("run", "layer"))
    assert result["log_likelihood"].dims == ("run", "layer", "family")
    for r, l in [(0, 0), (4, 1), (6, 2)]:
        x = np.concatenate([weight_values(reference, "weight", r, e, l) for e in range(reference.sizes["epoch"])])
        group = result.isel(run=r, layer=l)
        fitted = {
            "normal": stats.norm(*stats.norm.fit(x)),
            "laplace": stats.laplace(*stats.laplace.fit(x)),
            "logistic": stats.logistic(*stats.logistic.fit(x)),
            "uniform": stats.uniform(*stats.uniform.fit(x)),
        }
        log_likelihood = [fitted[f].logpdf(x).sum() for f in families]
        np.testing.assert_allclose(group["log_likelihood"].values, log_likelihood, rtol=1e-6)
        np.testing.assert_allclose(group["ks_statistic"].values,
                                   [stats.kstest(x, fitted[f].cdf).statistic for f in families], rtol=1e-6)
        aic = 2 * np.array([2, 2, 2, 2]) - 2 * np.array(log_likelihood)
        assert str(group["best_family"].values) == families[int(np.argmin(aic))]
        assert int(group["n"]) == x.size


# ------------------------------------------------------------------ weight normality


def _w1_standardised(x):
    """W1 of the standardised sample to N(0, 1) by scipy, against a fine quantile grid."""
    z = (x - x.mean()) / x.std()
    grid = stats.norm.ppf((np.arange(50_000) + 0.5) / 50_000)
    return stats.wasserstein_distance(z, grid)


def test_weight_normality_equals_scipy_and_statsmodels(ds, stores):
    from statsmodels.stats.diagnostic import lilliefors
    from statsmodels.stats.multitest import multipletests

    reference = stores["numpy"]
    result = actstats.weight_normality(ds)
    assert result["n"].dims == ("run", "epoch", "layer")
    checked = 0
    for r, e, l in _groups(reference):
        group = result.isel(run=r, epoch=e, layer=l)
        x = weight_values(reference, "weight", r, e, l)
        if x.size == 0:
            assert int(group["n"]) == 0 and np.isnan(group["mean"]) and group["best_family"] == ""
            assert np.isnan(group["distance_from_init"])
            continue
        assert int(group["n"]) == x.size
        # the mean of weights of both signs: the sum's condition number Σ|x|/|Σx| enters
        np.testing.assert_allclose(group["mean"], x.mean(), rtol=float_rtol(x.size, condition=sum_condition(x)))
        np.testing.assert_allclose(group["std"], x.std(ddof=1), rtol=float_rtol(x.size, condition=STATISTIC))
        np.testing.assert_allclose(group["skewness"], stats.skew(x, bias=False), rtol=1e-8)
        np.testing.assert_allclose(group["excess_kurtosis"], stats.kurtosis(x, bias=False), rtol=1e-8)
        np.testing.assert_allclose(group["k2_pvalue"], stats.normaltest(x).pvalue, rtol=1e-8)
        np.testing.assert_allclose(group["jb_pvalue"], stats.jarque_bera(x).pvalue, rtol=1e-8)
        np.testing.assert_allclose(group["ad_statistic"], stats.anderson(x, method="interpolate").statistic,
                                   rtol=1e-8)
        np.testing.assert_allclose(group["shapiro_pvalue"], stats.shapiro(x).pvalue, rtol=1e-8)
        np.testing.assert_allclose(group["lilliefors_pvalue"], lilliefors(x, pvalmethod="table")[1], rtol=1e-8)
        np.testing.assert_allclose(group["ks_d"], stats.kstest(x, "norm", args=(x.mean(), x.std())).statistic,
                                   rtol=float_rtol(x.size, condition=sum_condition(x) * STATISTIC))
        if (r + e + l) % 4 == 0:  # the quantile-grid reference is slow; a quarter of the groups
            np.testing.assert_allclose(group["w1_normal"], _w1_standardised(x), atol=3e-4)
        initial = weight_values(reference, "weight", r, 0, l)
        np.testing.assert_allclose(group["distance_from_init"],
                                   np.linalg.norm(x - initial) / np.linalg.norm(initial), rtol=1e-6)
        fits = kernels.fit_families(x, families=("normal", "laplace", "logistic", "uniform"))
        assert group["best_family"] == fits.best_family
        skew, kurt, w1 = float(group["skewness"]), float(group["excess_kurtosis"]), float(group["w1_normal"])
        assert bool(group["gaussian"]) == (abs(skew) < GAUSSIAN_THRESHOLDS["max_abs_skewness"]
                                           and abs(kurt) < GAUSSIAN_THRESHOLDS["max_abs_excess_kurtosis"]
                                           and w1 < GAUSSIAN_THRESHOLDS["max_w1_normal"])
        checked += 1
    assert checked > 40
    pvalues = result["k2_pvalue"].values.ravel()
    present = ~np.isnan(pvalues)
    np.testing.assert_allclose(result["pvalue_adjusted"].values.ravel()[present],
                               multipletests(pvalues[present], method="fdr_bh")[1], rtol=BH_RTOL)
    assert "gaussian_criterion" in result.attrs and "|skewness| < 0.5" in result.attrs["gaussian_criterion"]


def test_gaussian_thresholds_are_an_option_read_at_call_time(stores):
    reference = stores["numpy"].isel(run=[0, 1])
    default = actstats.weight_normality(reference, by=("run", "layer"))
    present = default["n"] > 0
    assert not bool(default["gaussian"].where(present, False).all())  # uniform-initialised layers fail the default
    lenient = {"max_abs_skewness": 1e9, "max_abs_excess_kurtosis": 1e9, "max_w1_normal": 1e9}
    with actstats.set_options(gaussian_thresholds=lenient):
        result = actstats.weight_normality(reference, by=("run", "layer"))
    xr.testing.assert_equal(result["gaussian"], present.rename("gaussian").drop_attrs())
    assert "|skewness| < 1000000000.0" in result.attrs["gaussian_criterion"]
    xr.testing.assert_identical(actstats.weight_normality(reference, by=("run", "layer")), default)
    with pytest.raises(ValueError, match="gaussian_thresholds"):
        actstats.set_options(gaussian_thresholds={"max_abs_skewness": 0.5})


def test_weight_moments_merge_across_chunks_like_the_whole(stores):
    """Pooled groups and a store chunked along units give the moments of the whole."""
    reference = stores["numpy"]
    whole = actstats.weight_normality(reference, by="layer")
    chunked = actstats.weight_normality(reference.chunk({"run": 1, "epoch": 1, "layer": 1, "unit": 5}), by="layer")
    for l in range(reference.sizes["layer"]):
        x = np.concatenate([weight_values(reference, "weight", r, e, l)
                            for r in range(reference.sizes["run"]) for e in range(reference.sizes["epoch"])])
        for result in (whole, chunked):
            group = result.isel(layer=l)
            assert int(group["n"]) == x.size
            np.testing.assert_allclose(group["mean"], x.mean(), rtol=float_rtol(x.size, condition=sum_condition(x)))
            np.testing.assert_allclose(group["excess_kurtosis"], stats.kurtosis(x, bias=False), rtol=1e-8)
            np.testing.assert_allclose(group["k2_pvalue"], stats.normaltest(x).pvalue, rtol=1e-6)
    for name in ("ks_d", "w1_normal", "ad_statistic", "shapiro_pvalue", "best_family"):
        xr.testing.assert_equal(whole[name], chunked[name])


def test_shapiro_uses_the_documented_subsample():
    ds = synthetic_store(width=80, depth=1, epochs=(0.0,))  # 6400 weights > 5000
    result = actstats.weight_normality(ds)
    x = weight_values(ds, "weight", 0, 0, 0)
    positions = np.sort(np.random.default_rng(0).choice(x.size, 5000, replace=False))
    assert int(result["shapiro_n_used"].values.item()) == 5000
    np.testing.assert_allclose(result["shapiro_pvalue"].values.item(), stats.shapiro(x[positions]).pvalue,
                               rtol=float_rtol(5000, condition=STATISTIC))  # the same values, scipy both times


# ----------------------------------------------------------------------- gradients


def test_gradient_flow_equals_numpy(ds, stores):
    reference = stores["numpy"]
    result = actstats.gradient_flow(ds)
    sigmoid_derivative = lambda z: stats.logistic.pdf(z)  # noqa: E731  σ' = σ(1 - σ)
    for r, e, l in _groups(reference):
        group = result.isel(run=r, epoch=e, layer=l)
        grad = weight_values(reference, "weight_grad", r, e, l)
        if grad.size == 0:
            assert np.isnan(group["weight_grad_norm"]) and np.isnan(group["mean_derivative"])
            continue
        np.testing.assert_allclose(group["weight_grad_norm"], np.linalg.norm(grad), rtol=1e-6)
        delta = activation_slab(reference, "delta", r, e, l)
        np.testing.assert_allclose(group["delta_rms"], np.sqrt(np.mean(delta**2)), rtol=1e-6)
        z = activation_slab(reference, "preactivation", r, e, l)
        derivative = sigmoid_derivative(z) if _function(reference, r) == "sigmoid" else 1 - np.tanh(z) ** 2
        np.testing.assert_allclose(group["mean_derivative"], derivative.mean(), rtol=1e-6)
        depth = int(reference["depth"].values[r])
        if l + 1 < depth:
            upper = np.linalg.norm(weight_values(reference, "weight_grad", r, e, l + 1))
            np.testing.assert_allclose(group["ratio_to_next_layer"], np.linalg.norm(grad) / upper, rtol=1e-6)
        else:
            assert np.isnan(group["ratio_to_next_layer"])
    sigmoid = result["activation_fn"] == "sigmoid"
    assert float(result["mean_derivative"].where(sigmoid).max()) <= 0.25


def test_gradient_flow_names_the_missing_variables():
    with pytest.raises(ActstatsError, match="'weight_grad' and 'delta'"):
        actstats.gradient_flow(synthetic_store(gradients=False))


# ----------------------------------------------------------------------- comparison


def test_compare_splits_equals_the_kernel_on_numpy_fractions(ds, stores):
    from statsmodels.stats.multitest import multipletests

    reference = stores["numpy"]
    result = actstats.compare_splits(ds, eps=EPS, n_permutations=999)
    splits = split_samples(reference)
    for r, e, l in _groups(reference):
        group = result.isel(run=r, epoch=e, layer=l)
        train = activation_slab(reference, "activation", r, e, l, splits["train"])
        test = activation_slab(reference, "activation", r, e, l, splits["test"])
        if train.shape[1] == 0:
            assert np.isnan(group["pvalue"]) and np.isnan(group["fraction_train"])
            continue
        first = sample_fractions(train, _function(reference, r), EPS)[0]
        second = sample_fractions(test, _function(reference, r), EPS)[0]
        expected = kernels.compare_groups(first, second, n_permutations=999)
        np.testing.assert_allclose(
            [group[n] for n in ("fraction_train", "fraction_test", "difference", "ci_low", "ci_high", "pvalue")],
            [first.mean(), second.mean(), expected.statistic, expected.ci_low, expected.ci_high, expected.pvalue],
            rtol=float_rtol(splits["train"].size, condition=STATISTIC), atol=1e-15)
        z_train = activation_slab(reference, "preactivation", r, e, l, splits["train"])
        z_test = activation_slab(reference, "preactivation", r, e, l, splits["test"])
        np.testing.assert_allclose(group["mean_abs_preactivation_train"], np.abs(z_train).mean(),
                                   rtol=float_rtol(z_train.size))
        np.testing.assert_allclose(group["mean_abs_preactivation_difference"],
                                   np.abs(z_train).mean() - np.abs(z_test).mean(), rtol=1e-8)
        assert int(group["n_train"]) == splits["train"].size and int(group["n_test"]) == splits["test"].size
    pvalues = result["pvalue"].values.ravel()
    present = ~np.isnan(pvalues)
    np.testing.assert_allclose(result["pvalue_adjusted"].values.ravel()[present],
                               multipletests(pvalues[present], method="fdr_bh")[1], rtol=BH_RTOL)


# ---------------------------------------------------------------- numpy == dask


#: Arguments of each registered query's cases (keys: the registry's CLI names, then variants);
#: every query of actstats.registry.QUERIES must have at least one (checked below).
QUERY_CASES = {
    "saturation": {"by": ("run", "layer", "split")},
    "saturation_unit": {"by": ("layer", "unit")},
    "bimodality": {"by": ("layer", "split")},
    "fit": {"family": ("beta", "logit_normal"), "by": ("run", "layer")},
    "fit_weight": {"family": ("normal", "uniform"), "variable": "weight", "by": "layer"},
    "weights": {"by": ("run", "layer")},
    "gradients": {},
    "compare": {"by": "layer", "n_permutations": 999},
    "training": {},
    "units": {"eps": 0.1},
    "units_pooled": {"by": "layer", "split": None},
    "attenuation": {},
    "factors": {"factor": "depth", "layer": "top", "n_permutations": 999, "n_resamples": 500},
    "unit-learning": {"eps": 0.1, "stuck_share": 0.6, "n_permutations": 999},
}
QUERIES = {
    case: functools.partial(get_query(case.split("_")[0]).function, **arguments)
    for case, arguments in QUERY_CASES.items()
}


def test_every_registered_query_has_a_case():
    assert {spec.cli_name for spec in REGISTERED.values()} <= {case.split("_")[0] for case in QUERY_CASES}


def _dask_rtol(result, name):
    """Two orders of the same sums: the float bound at the size of the largest group (the
    small store's groups hold at most ~10⁴ values; moments merged per chunk are statistics of
    a few sums); for variables an iterative fit produces, the fit's bound at the result's
    shapes (tolerances.fit_rtol)."""
    if "beta_a" in result and name not in ("n", "dip", "dip_pvalue", "bimodality_coefficient"):
        pairs = [("beta_a", "beta_b")] + [(f"mixture_a_{c}", f"mixture_b_{c}") for c in ("low", "interior", "high")]
        pairs = [(a, b) for a, b in pairs if a in result]
        return fit_rtol(np.concatenate([result[a].values.ravel() for a, _ in pairs]),
                        np.concatenate([result[b].values.ravel() for _, b in pairs]))
    return float_rtol(10_000, condition=STATISTIC)


@pytest.mark.parametrize("query", QUERIES)
def test_dask_backed_equals_numpy_backed(stores, query):
    numpy_result = QUERIES[query](stores["numpy"])
    dask_result = QUERIES[query](stores["dask"])
    assert not any(hasattr(v.data, "dask") for v in dask_result.variables.values())  # results are in memory
    assert numpy_result.attrs == dask_result.attrs
    for name, variable in numpy_result.variables.items():
        other = dask_result[name]
        assert variable.dims == other.dims, name
        if variable.dtype.kind == "f":
            # identical up to the order of float sums (pooled groups merge per-chunk moments),
            # and what an iterative fit makes of sums in another order
            np.testing.assert_allclose(variable.values, other.values, rtol=_dask_rtol(numpy_result, name),
                                       atol=1e-15, err_msg=name)
        else:
            np.testing.assert_array_equal(variable.values, other.values, err_msg=name)


# ------------------------------------------------- padding, non-finite, incomplete


def _padded_store():
    return synthetic_store(runs=3, depth=[2, 1, 2], width=[16, 16, 10], activation_fn=["sigmoid", "tanh", "sigmoid"],
                           weight_scale=4.0, seed=2)


def test_padding_that_is_not_nan_is_a_format_error_never_silently_left_out():
    """A writer that pads with zeros (or whose data is wider than its `width`): every query
    that reads the padding refuses it (docs/store-format.md, "Padding"), where it used to
    leave it out silently."""
    ds = _padded_store()
    for name, query in (("activation", lambda d: actstats.saturation(d)),
                        ("weight", lambda d: actstats.weight_normality(d)),
                        ("activation", lambda d: actstats.bimodality(d, by=("run", "layer"))),
                        ("weight_grad", actstats.gradient_flow)):
        garbage = ds.copy(deep=True)
        garbage[name] = garbage[name].fillna(0.0)
        with pytest.raises(StoreFormatError, match=f"variable '{name}' holds a value at .* a format error"):
            query(garbage)
    result = actstats.saturation(ds, by=("run", "layer"))
    assert int(result["n_values"].sel(run=1, layer=2)) == 0
    assert int(result["n_values"].sel(run=2, layer=1)) == 2 * 50 * 10
    assert int(result["n_nonfinite"].sum()) == 0


def test_non_finite_values_are_counted_excluded_and_warned():
    ds = _padded_store()
    broken = ds.copy(deep=True)
    activation = broken["activation"].values
    activation[0, 1, 0, :3, 2] = np.inf  # a diverged record: inf ...
    activation[2, 0, 1, 5, :4] = np.nan  # ... and NaN where width says units exist
    weight = broken["weight"].values
    weight[1, 1, 0, 0, :7] = -np.inf
    with pytest.warns(ActstatsWarning, match="saturation: 7 non-finite values of 'activation'"):
        result = actstats.saturation(broken, by=("run", "epoch", "layer"))
    assert int(result["n_nonfinite"].sum()) == 7
    assert int(result["n_nonfinite"].sel(run=0, epoch=1.0, layer=1)) == 3
    slab = activation_slab(broken, "activation", 0, 1, 0)
    np.testing.assert_allclose(result["fraction"].isel(run=0, epoch=1, layer=0),
                               np.nanmean(sample_fractions(slab, "sigmoid", 0.05)[0]),
                               rtol=float_rtol(slab.shape[0]))
    assert int(result["n_values"].isel(run=0, epoch=1, layer=0)) == np.isfinite(slab).sum()
    with pytest.warns(ActstatsWarning, match="7 non-finite values of 'weight'"):
        weights = actstats.weight_normality(broken)
    x = weight_values(broken, "weight", 1, 1, 0)
    assert int(weights["n"].isel(run=1, epoch=1, layer=0)) == x.size == 16 * 16 - 7
    np.testing.assert_allclose(weights["excess_kurtosis"].isel(run=1, epoch=1, layer=0),
                               stats.kurtosis(x, bias=False), rtol=1e-8)
    with pytest.warns(ActstatsWarning, match="bimodality: 7 non-finite"):
        actstats.bimodality(broken, by="run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        actstats.saturation(ds)  # nothing to report: no warning


def test_incomplete_records_are_absent_not_non_finite():
    ds = _padded_store()
    incomplete = ds.copy(deep=True)
    incomplete["complete"].values[0, 1] = False
    incomplete["activation"].values[0, 1] = np.nan  # missing chunks read as NaN
    result = actstats.saturation(incomplete, by=("run", "epoch", "layer"))
    assert int(result["n_values"].isel(run=0, epoch=1).sum()) == 0
    assert int(result["n_nonfinite"].sum()) == 0
    assert bool(result["fraction"].isel(run=0, epoch=1).isnull().all())


# ---------------------------------------------------------- a store from elsewhere


def test_a_store_written_without_actstats_is_analysed_like_a_captured_one(tmp_path):
    path = tmp_path / "foreign.zarr"
    subprocess.run([sys.executable, os.path.join(ROOT, "docs", "examples", "write_store_without_actstats.py"),
                    str(path)], check=True, capture_output=True, timeout=120)
    ds = actstats.open_store(path)
    reference = ds.load()
    result = actstats.saturation(ds)
    for r, e, l in _groups(reference):
        for label, samples in split_samples(reference).items():
            slab = activation_slab(reference, "activation", r, e, l, samples)
            group = result.isel(run=r, epoch=e, layer=l).sel(split=label)
            if slab.shape[1] == 0:
                assert int(group["n_samples"]) == 0
                continue
            np.testing.assert_allclose(group["fraction"], sample_fractions(slab, "sigmoid", 0.05)[0].mean())
    weights = actstats.weight_normality(ds)
    assert int(weights["n"].sel(run=0, layer=2).values[0]) == 6 * 8  # 6 units, fan-in from layer 1's 8
    assert int(weights["n"].sel(run=0, layer=1).values[0]) == 8 * 5  # fan-in: the 5 input features
    assert int(weights["n"].sel(run=1, layer=2).sum()) == 0
    x = weight_values(reference, "weight", 0, 2, 1)
    np.testing.assert_allclose(weights["skewness"].isel(run=0, epoch=2, layer=1), stats.skew(x, bias=False))
    assert bool(actstats.bimodality(ds)["n"].sum() > 0)
    assert bool(actstats.compare_splits(ds, n_permutations=99)["pvalue"].notnull().any())
    with pytest.raises(ActstatsError, match="'weight_grad' and 'delta'"):
        actstats.gradient_flow(ds)


# ----------------------------------------------------------- accessor and records


def test_the_accessor_forwards_to_the_functions():
    ds = synthetic_store()
    xr.testing.assert_identical(ds.actstats.saturation(eps=0.1, by="layer"), actstats.saturation(ds, 0.1, "layer"))
    xr.testing.assert_identical(ds.actstats.weight_normality(by="layer"), actstats.weight_normality(ds, "layer"))
    xr.testing.assert_identical(ds.actstats.gradient_flow(), actstats.gradient_flow(ds))
    assert "saturation" in ds.actstats.saturation.__doc__


def test_records_are_flat_json_with_grouping_keys_first():
    ds = synthetic_store(runs=2, depth=[2, 1])
    result = actstats.saturation(ds, by=("run", "layer", "split"))
    records = actstats.to_records(result)
    assert len(records) == 2 * 2 * 2
    assert list(records[0])[:5] == ["run", "layer", "split", "activation_fn", "fraction"]
    json.dumps(records, allow_nan=False)  # NaN became null
    absent = [r for r in records if r["run"] == 1 and r["layer"] == 2]
    assert absent and all(r["fraction"] is None and r["n_samples"] == 0 for r in absent)
    assert isinstance(records[0]["run"], int) and isinstance(records[0]["fraction"], float)
    fits = actstats.to_records(actstats.fit(ds, family=("beta", "logit_normal"), by="run"))
    assert [r["family"] for r in fits] == ["beta", "logit_normal"] * 2
    assert fits[0]["best_family"] == fits[1]["best_family"]
    assert actstats.to_records(actstats.saturation(ds, by=()))[0].keys() >= {"fraction", "ci_low", "n_samples"}


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("eps", [0, 0.5, 2, -0.1, float("nan"), "wide"])
def test_eps_outside_the_open_interval_is_refused(eps):
    with pytest.raises(ValueError, match="eps must be"):
        actstats.saturation(synthetic_store(), eps=eps)


def test_by_takes_the_command_lines_spelling_in_python():
    """by="layer,split" (the command line's spelling) is by=("layer", "split")."""
    ds = synthetic_store()
    xr_testing = pytest.importorskip("xarray").testing
    xr_testing.assert_identical(actstats.saturation(ds, by="layer, split").compute(),
                                actstats.saturation(ds, by=("layer", "split")).compute())
    with pytest.raises(ValueError, match="by: unknown dimension 'nonsense'"):
        actstats.saturation(ds, by="layer,nonsense")


def test_bad_by_family_and_variable_are_refused():
    ds = synthetic_store()
    with pytest.raises(ValueError, match="by: unknown dimension 'nonsense'"):
        actstats.saturation(ds, by=("run", "nonsense"))
    with pytest.raises(ValueError, match="by: unknown dimension 'split'"):
        actstats.weight_normality(ds, by=("layer", "split"))
    with pytest.raises(ValueError, match="unknown family 'gamma'"):
        actstats.fit(ds, family="gamma", variable="weight")
    with pytest.raises(ValueError, match="unknown family 'normal' for activations"):
        actstats.fit(ds, family="normal")
    with pytest.raises(ValueError, match="variable must be"):
        actstats.fit(ds, variable="bias")
    with pytest.raises(ValueError, match="confidence_level"):
        actstats.saturation(ds, confidence_level=95)


def test_selections_keep_working_and_name_a_dimension_selected_away(stores):
    reference = stores["numpy"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN columns of the unknown fan-in are padding, not non-finite
        top = actstats.weight_normality(reference.isel(layer=[2]))  # the layer below is not selected
    whole = actstats.weight_normality(reference).isel(layer=[2])
    different = ["pvalue_adjusted"]  # another family of tests
    xr.testing.assert_allclose(top.drop_vars(different).drop_attrs(), whole.drop_vars(different).drop_attrs())
    with pytest.raises(ActstatsError, match="'activation' has no 'run' dimension.*isel"):
        actstats.saturation(reference.isel(run=0))


def test_unknown_activation_function_names_the_run():
    ds = synthetic_store(runs=2)
    ds = ds.assign_coords(activation_fn=("run", np.array(["sigmoid", "swish"])))
    with pytest.raises(ActstatsError, match="run 1: unknown activation function 'swish'"):
        actstats.saturation(ds)
    assert int(actstats.weight_normality(ds, by="run")["n"].sum()) > 0  # weights need no bounds


@pytest.mark.parametrize("module", ["actstats.queries.saturation", "actstats.queries.bimodality", "actstats.queries.fit",
                                    "actstats.queries.normality", "actstats.queries.gradients",
                                    "actstats.queries.compare", "actstats.queries.records", "actstats.accessor",
                                    "actstats.synthetic"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_saturation_in_batches_of_runs_is_identical(small_store, monkeypatch):
    """Stores with many runs are counted a batch of runs at a time (bounded memory)."""
    from actstats.queries import _engine

    ds = actstats.open_store(small_store)
    whole = actstats.saturation(ds)
    monkeypatch.setattr(_engine, "SATURATION_CELL_BATCH", ds.sizes["epoch"] * ds.sizes["layer"] * ds.sizes["sample"] * 3)
    batched = actstats.saturation(ds)
    xr.testing.assert_identical(whole, batched)
    pooled = actstats.saturation(ds, by=("layer", "split"))  # runs pooled: one pass, as before
    assert pooled.fraction.dims == ("layer", "split")


def test_compare_splits_in_batches_of_runs_is_identical(small_store, monkeypatch):
    from actstats.queries import _engine

    ds = actstats.open_store(small_store).isel(run=[0, 3, 5, 7], epoch=[0, -1])
    options = {"n_permutations": 199, "n_resamples": 199}
    whole = actstats.compare_splits(ds, **options)
    monkeypatch.setattr(_engine, "SATURATION_CELL_BATCH", ds.sizes["epoch"] * ds.sizes["layer"] * ds.sizes["sample"] * 3)
    batched = actstats.compare_splits(ds, **options)  # batches of 3 and 1 runs
    xr.testing.assert_identical(whole, batched)
