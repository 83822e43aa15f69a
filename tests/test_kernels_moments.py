"""Mergeable moments: against scipy, exact rational arithmetic, NIST StRD, and chunking."""

import json
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from actstats.kernels import combine_moments, merge_moments, moment_statistics, moments

REFERENCE = json.loads((Path(__file__).parent / "reference" / "moments.json").read_text())


def scaled_close(actual, expected, n, m2, rtol):
    """Compare central sums with a tolerance relative to their natural scale n·σᵏ."""
    sigma = np.sqrt(m2 / n)
    for k, (a, e) in enumerate(zip(actual, expected), start=2):
        assert abs(a - e) <= rtol * (abs(e) + n * sigma**k), (k, a, e)


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: c["name"])
def test_moments_equal_exact_rational_arithmetic(case):
    m = moments(np.array(case["input"]))
    exact = case["exact"]
    assert m[0] == len(case["input"])
    assert m[1] == pytest.approx(exact["mean"], rel=1e-15)
    scaled_close(m[2:], [exact["M2"], exact["M3"], exact["M4"]], m[0], exact["M2"], 1e-12)


@pytest.mark.parametrize(
    "case",
    [c for c in REFERENCE["cases"] if c["name"] != "normal_offset_60"],
    ids=lambda c: c["name"],
)
def test_moment_statistics_equal_stored_scipy(case):
    x = np.array(case["input"])
    expected = case["expected"]
    m = moments(x)
    scaled_close(m[2:], [expected["M2"], expected["M3"], expected["M4"]], m[0], expected["M2"], 1e-10)
    biased = moment_statistics(m)
    adjusted = moment_statistics(m, ddof=1, bias=False)
    assert biased.std == pytest.approx(expected["std_ddof0"], rel=1e-12)
    assert adjusted.std == pytest.approx(expected["std_ddof1"], rel=1e-12)
    assert biased.skewness == pytest.approx(expected["skewness_biased"], rel=1e-10, abs=1e-12)
    assert adjusted.skewness == pytest.approx(expected["skewness_adjusted"], rel=1e-10, abs=1e-12)
    assert biased.excess_kurtosis == pytest.approx(expected["excess_kurtosis_biased"], rel=1e-10)
    assert adjusted.excess_kurtosis == pytest.approx(expected["excess_kurtosis_adjusted"], rel=1e-10)


@pytest.mark.parametrize("case", REFERENCE["published"], ids=lambda c: c["name"])
def test_nist_strd_numacc(case):
    # Certified values of NIST StRD; NumAcc3/4 (offsets 1e6, 1e7 with deviations 0.1) are
    # limited by the float64 representation of the inputs themselves (~1e-9 relative).
    statistics = moment_statistics(moments(np.array(case["input"])), ddof=1)
    assert statistics.mean == pytest.approx(case["certified"]["mean"], rel=1e-15)
    assert statistics.std == pytest.approx(case["certified"]["std_ddof1"], rel=1e-8)
    assert abs(statistics.skewness) < 1e-10


def test_live_scipy_with_axis_tuple_and_nan():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, size=(3, 40, 4, 5))
    x[0, :7, 1, :] = np.nan
    m = moments(x, axis=(1, 3))
    assert m.shape == (3, 4, 5)
    statistics = moment_statistics(m)
    for i in range(3):
        for j in range(4):
            values = x[i, :, j, :]
            values = values[~np.isnan(values)]
            assert m[i, j, 0] == values.size
            assert statistics.skewness[i, j] == pytest.approx(scipy.stats.skew(values), rel=1e-10)
            assert statistics.excess_kurtosis[i, j] == pytest.approx(scipy.stats.kurtosis(values), rel=1e-10)
            assert statistics.std[i, j] == pytest.approx(np.std(values), rel=1e-12)


def test_merge_identity_and_symmetry():
    rng = np.random.default_rng(2)
    a = moments(rng.normal(size=50))
    b = moments(rng.exponential(size=30))
    empty = moments(np.array([np.nan, np.nan]))
    assert empty[0] == 0 and np.isnan(empty[1]) and np.all(empty[2:] == 0)
    np.testing.assert_array_equal(merge_moments(a, empty), a)
    np.testing.assert_array_equal(merge_moments(empty, a), a)
    np.testing.assert_allclose(merge_moments(a, b), merge_moments(b, a), rtol=1e-13)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 400),
    location=st.floats(-1e3, 1e3),
    scale=st.floats(1e-2, 1e2),
    data=st.data(),
)
def test_merging_chunks_equals_whole(seed, n, location, scale, data):
    rng = np.random.default_rng(seed)
    x = location + scale * rng.standard_t(4, size=n)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8)))
    chunks = np.split(x, cuts)
    whole = moments(x)
    parts = [moments(chunk) for chunk in chunks]
    for merged in (reduce(merge_moments, parts), combine_moments(np.stack(parts), axis=0)):
        assert merged[0] == whole[0]
        assert merged[1] == pytest.approx(whole[1], rel=1e-10, abs=1e-10 * scale)
        scaled_close(merged[2:], whole[2:], whole[0], whole[2], 1e-10)
        whole_statistics = moment_statistics(whole)
        merged_statistics = moment_statistics(merged)
        if n > 3:
            assert merged_statistics.skewness == pytest.approx(whole_statistics.skewness, rel=1e-9, abs=1e-9)
            assert merged_statistics.excess_kurtosis == pytest.approx(
                whole_statistics.excess_kurtosis, rel=1e-9, abs=1e-9
            )


def test_combine_moments_over_axes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 5, 7))
    per_chunk = moments(x, axis=2)  # (6, 5, 5)
    np.testing.assert_allclose(combine_moments(per_chunk, axis=(0, 1)), moments(x, axis=None), rtol=1e-12)
    np.testing.assert_allclose(combine_moments(per_chunk, axis=1), moments(x, axis=(1, 2)), rtol=1e-12)


def test_standard_errors_closed_form_and_simulation():
    statistics = moment_statistics(moments(np.arange(100.0)))
    n = 100
    ses = np.sqrt(6 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3)))
    assert statistics.skewness_standard_error == pytest.approx(ses, rel=1e-14)
    assert statistics.excess_kurtosis_standard_error == pytest.approx(
        2 * ses * np.sqrt((n**2 - 1) / ((n - 3) * (n + 5))), rel=1e-14
    )
    assert statistics.skewness_standard_error == pytest.approx(0.2414, abs=1e-4)
    assert statistics.excess_kurtosis_standard_error == pytest.approx(0.4783, abs=1e-4)
    # They are the exact sds of the adjusted G1, G2 under normality: check by simulation.
    x = np.random.default_rng(4).normal(size=(20_000, 30))
    simulated = moment_statistics(moments(x), bias=False)
    one = moment_statistics(moments(x[0]))
    assert np.std(simulated.skewness) == pytest.approx(one.skewness_standard_error, rel=0.03)
    assert np.std(simulated.excess_kurtosis) == pytest.approx(one.excess_kurtosis_standard_error, rel=0.05)


def test_small_and_constant_groups():
    statistics = moment_statistics(moments(np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, np.nan, np.nan]])))
    assert np.isnan(statistics.skewness[0])  # constant: undefined, as scipy.stats.skew
    assert statistics.skewness[1] == 0
    assert np.isnan(statistics.skewness_standard_error[1])
    assert statistics.std[0] == 0
    one = moment_statistics(moments(np.array([5.0])), ddof=1)
    assert np.isnan(one.std)
