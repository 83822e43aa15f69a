"""The axis/NaN helper that every kernel goes through, and padding invariance."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actstats import kernels
from actstats.kernels._rows import as_rows, deterministic_subsample, normalize_axis, rows_quantile


def test_normalize_axis():
    assert normalize_axis(None, 3) == (0, 1, 2)
    assert normalize_axis(-1, 3) == (2,)
    assert normalize_axis((2, 0), 3) == (0, 2)
    with pytest.raises(np.exceptions.AxisError):
        normalize_axis(3, 3)
    with pytest.raises(ValueError, match="repeated axis"):
        normalize_axis((1, -2), 3)


def test_as_rows_moves_reduced_axes_last_in_order():
    x = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    rows = as_rows(x, axis=(1, 3))
    assert rows.batch_shape == (2, 4)
    expected = np.moveaxis(x, (1, 3), (2, 3)).reshape(8, 15)
    np.testing.assert_array_equal(rows.values, expected)
    np.testing.assert_array_equal(rows.restore(rows.values), x)


def test_as_rows_rejects_non_numbers():
    with pytest.raises(TypeError, match="real numbers"):
        as_rows(np.array(["a", "b"]))


def test_scalar_and_whole_array_reductions():
    x = np.arange(6.0).reshape(2, 3)
    assert kernels.moments(x, axis=None).shape == (5,)
    np.testing.assert_allclose(kernels.moments(x, axis=None), kernels.moments(x.ravel()))
    assert kernels.moments(x, axis=(0, 1)).shape == (5,)


def test_deterministic_subsample_is_reproducible_and_ordered():
    values = np.arange(100_000.0)
    first = deterministic_subsample(values, 500, seed=3)
    second = deterministic_subsample(values, 500, seed=3)
    np.testing.assert_array_equal(first, second)
    assert first.size == 500 and np.all(np.diff(first) > 0)
    assert not np.array_equal(first, deterministic_subsample(values, 500, seed=4))
    assert deterministic_subsample(values[:10], 500).size == 10


def test_rows_quantile_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 37))
    x[1, 30:] = np.nan
    probabilities = np.array([0.025, 0.5, 0.975, 0.1])
    result = rows_quantile(np.sort(x, axis=1), (~np.isnan(x)).sum(axis=1), probabilities)
    expected = [np.quantile(row[~np.isnan(row)], p) for row, p in zip(x, probabilities)]
    np.testing.assert_allclose(result, expected, rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(12, 60),
    pad=st.integers(0, 30),
    data=st.data(),
)
def test_nan_padding_is_invisible(seed, n, pad, data):
    """NaN padding anywhere along the reduced axis gives the numbers of the data alone."""
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, size=n)
    positions = data.draw(st.permutations(range(n + pad)))
    padded = np.full(n + pad, np.nan)
    padded[np.sort(positions[:n])] = values
    both = np.full((2, n + pad), np.nan)
    both[0] = padded
    both[1, :n] = values
    np.testing.assert_allclose(kernels.moments(both)[0], kernels.moments(both)[1], rtol=1e-12)
    for function in (kernels.ks_distance_normal, kernels.wasserstein_normal):
        result = function(both)
        np.testing.assert_allclose(result[0], result[1], rtol=1e-12)
    for function in (kernels.anderson_darling, kernels.lilliefors):
        result = function(both)
        np.testing.assert_allclose(result.statistic[0], result.statistic[1], rtol=1e-12)
    counts = kernels.saturation_counts(both / values.max(), eps=0.2)
    np.testing.assert_array_equal(counts[0], counts[1])
    fits = kernels.fit_families(both, families=("normal", "laplace", "uniform"))
    np.testing.assert_allclose(fits.log_likelihood[0], fits.log_likelihood[1], rtol=1e-12)


def test_all_nan_group_gives_nan_not_warnings():
    x = np.full((2, 10), np.nan)
    x[0] = np.linspace(0.01, 0.99, 10)
    assert np.isnan(kernels.moment_statistics(kernels.moments(x)).mean[1])
    assert np.isnan(kernels.dagostino_pearson(x=x).statistic[1])
    assert np.isnan(kernels.wasserstein_normal(x)[1])
    assert np.isnan(kernels.fit_beta(x).a[1])
    assert kernels.saturation_counts(x)[1].tolist() == [0, 0, 0]


def test_kernels_import_only_numerical_libraries():
    """The kernels layer stays free of xarray, dask, torch and matplotlib."""
    import ast
    from pathlib import Path

    allowed = {"numpy", "scipy", "statsmodels", "diptest", "__future__", "dataclasses", "math",
               "operator", "collections", "warnings", "typing",
               "functools", "threading",  # caches of quantile slices; per-thread work arrays (normality)
               "contextlib", "gc",  # the collector paused over a kernel's first call (_jit.py)
               "numba"}  # the compiled one-pass kernels (_jit.py, imported at their first call)
    for path in Path(kernels.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"
