"""The compiled one-pass kernels of the streamed paths against the numpy kernels they replace.

References: :func:`actstats.kernels.moments` with numpy's ``nanmin``/``nanmax``; the numpy
implementations of ``standardized_histogram`` and ``bounded_summary`` as they were before
they were compiled (copied below, unchanged); :func:`actstats.kernels.logit_histogram` and
:func:`actstats.kernels.beta_sufficient_statistics` (numpy). Counts must be equal bin for bin;
sums and moments within the bounds the kernels' docstrings state (1e-12, see
:func:`assert_moments_within_bound`).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from actstats import kernels
from actstats.kernels.logit_histogram import _all_edges
from actstats.kernels.moments import moments_extremes

DELTA = kernels.DEFAULT_DELTA
#: The bound the compiled kernels' docstrings state against numpy's pairwise sums.
BOUND = 1e-12


def assert_moments_within_bound(actual, desired, bound=BOUND):
    """count equal; mean within bound (|mean| + std); M2, M4 within bound relative; M3 within
    bound sqrt(M2 M4) (by Cauchy-Schwarz the scale of Σ|d|³, which its rounding is relative to)."""
    actual, desired = np.atleast_2d(actual), np.atleast_2d(desired)
    np.testing.assert_array_equal(actual[:, 0], desired[:, 0])
    n, mean, m2, m3, m4 = desired.T
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(m2 / n)
    empty = n == 0
    assert np.isnan(actual[empty, 1]).all() and (actual[empty, 2:5] == 0).all()
    full = ~empty
    assert (np.abs(actual[full, 1] - mean[full]) <= bound * (np.abs(mean[full]) + std[full])).all()
    for k, scale in ((2, m2), (4, m4), (3, np.sqrt(m2 * m4))):
        assert (np.abs(actual[full, k] - desired[full, k]) <= bound * scale[full]).all(), (k, actual[:, k], desired[:, k])


def standardized_histogram_numpy(values, mean, std, *, bins=kernels.HISTOGRAM_BINS, limit=kernels.HISTOGRAM_LIMIT):
    """actstats.kernels.standardized_histogram as numpy computed it (the reference)."""
    values = np.asarray(values, dtype=np.float64)
    lead = values.shape[:-1]
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), lead).reshape(-1)
    std = np.broadcast_to(np.asarray(std, dtype=np.float64), lead).reshape(-1)
    rows = values.reshape(-1, values.shape[-1])
    out = np.zeros((rows.shape[0], bins + 4))
    scale = bins / (2.0 * limit)
    for i in range(rows.shape[0]):
        if not (np.isfinite(std[i]) and std[i] > 0 and np.isfinite(mean[i])):
            continue
        row = rows[i]
        z = (row[~np.isnan(row)] - mean[i]) / std[i]
        low = z < -limit
        high = z >= limit
        inside = z[~(low | high)]
        index = np.minimum(((inside + limit) * scale).astype(np.int64), bins - 1)
        out[i, :bins] = np.bincount(index, minlength=bins)
        out[i, bins] = low.sum()
        out[i, bins + 1] = high.sum()
        out[i, bins + 2] = (-limit - z[low]).sum()
        out[i, bins + 3] = (z[high] - limit).sum()
    return out.reshape(lead + (bins + 4,))


def bounded_summary_numpy(y, *, delta=DELTA):
    """actstats.kernels.bounded_summary as numpy computed it (the reference)."""
    values = np.asarray(y, dtype=np.float64)
    rows = values.reshape(-1, values.shape[-1])
    valid = ~np.isnan(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_y = np.log(rows)
        log_complement = np.log1p(-rows)
        logit = log_y - log_complement
        low, high = float(np.log(delta)), float(np.log(1 - delta))
        np.clip(log_y, low, high, out=log_y)
        log_y[rows < delta] = low
        low, high = float(np.log1p(-(1 - delta))), float(np.log1p(-delta))
        np.clip(log_complement, low, high, out=log_complement)
        log_complement[rows > 1 - delta] = low
    sums = np.stack([
        valid.sum(axis=1), np.where(valid, log_y, 0.0).sum(axis=1), np.where(valid, log_complement, 0.0).sum(axis=1),
        (((rows < delta) | (rows > 1 - delta)) & valid).sum(axis=1),
    ], axis=-1).astype(np.float64)
    log_y -= log_complement
    out = np.concatenate(
        [sums, kernels.moments(rows), kernels.moments(log_y), kernels.logit_histogram(rows, delta=delta, logit=logit)],
        axis=-1,
    )
    return out.reshape(values.shape[:-1] + (out.shape[-1],))


def _moment_rows():
    rng = np.random.default_rng(11)
    rows = {
        "normal": rng.normal(3.0, 2.0, 100_003),
        "offset": 1e6 + rng.normal(0.0, 1.0, 100_003),  # far from 0: the tiles' origin matters
        "heavy_sorted": np.sort(rng.standard_t(2, 100_003)),  # the first tile far from the mean
        "weights": rng.normal(0.0, 0.03, 100_003).astype(np.float32),
        "padded": np.where(rng.random(100_003) < 0.3, np.nan, rng.laplace(0.0, 1.0, 100_003)),
        "short": np.array([1.0, 2.0, 4.0] + [np.nan] * 100_000),
    }
    return rows


MOMENT_ROWS = _moment_rows()


@pytest.mark.parametrize("name", list(MOMENT_ROWS))
def test_moments_extremes_within_the_bound_of_numpy_moments(name):
    x = MOMENT_ROWS[name]
    got = moments_extremes(x)
    assert_moments_within_bound(got[:5], kernels.moments(x.astype(np.float64)))
    assert got[5] == np.nanmin(x) and got[6] == np.nanmax(x)


def test_moments_extremes_rows_constant_and_empty():
    x = np.random.default_rng(12).normal(size=(3, 1000))
    x[1] = 0.3  # a constant row: M2..M4 at the rounding level, as numpy's
    x[2] = np.nan
    got = moments_extremes(x)
    want = kernels.moments(x)
    assert_moments_within_bound(got[[0], :5], want[[0]])
    assert got[1, 0] == 1000 and abs(got[1, 1] - 0.3) <= 1e-16 and got[1, 2] <= 1000 * (4e-16 * 0.3) ** 2
    assert abs(want[1, 2]) <= 1000 * (4e-16 * 0.3) ** 2
    assert got[2].tolist()[:5] == [0.0] + [pytest.approx(np.nan, nan_ok=True)] + [0.0, 0.0, 0.0]
    assert got[2, 5] == np.inf and got[2, 6] == -np.inf
    # merged over chunks like numpy's: combine_moments of per-chunk parts
    parts = moments_extremes(x[0].reshape(10, 100))[:, :5]
    assert_moments_within_bound(kernels.combine_moments(parts, axis=0), want[0])


def test_standardized_histogram_counts_equal_numpy_bin_for_bin():
    rng = np.random.default_rng(13)
    bins, limit = kernels.HISTOGRAM_BINS, kernels.HISTOGRAM_LIMIT
    edges = kernels.histogram_edges(bins, limit)
    x = np.stack([
        rng.standard_t(3, 200_000),  # tails beyond ±10 std
        np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),  # on and beside every edge
                        [-np.inf, np.inf, np.nan, 1e300, -1e300], rng.normal(size=200_000 - 3 * edges.size - 5)]),
    ])
    mean, std = np.array([0.1, 0.0]), np.array([1.3, 1.0])  # the second row: z = x exactly
    got = kernels.standardized_histogram(x, mean, std)
    want = standardized_histogram_numpy(x, mean, std)
    np.testing.assert_array_equal(got[:, : bins + 2], want[:, : bins + 2])
    np.testing.assert_allclose(got[0, bins + 2:], want[0, bins + 2:], rtol=BOUND)
    assert np.isinf(got[1, bins + 2:]).all() and np.isinf(want[1, bins + 2:]).all()
    # float32 values are read as numpy reads them (cast to float64); a group without a std is empty
    x32 = x[0, :50_000].astype(np.float32)
    np.testing.assert_array_equal(kernels.standardized_histogram(x32, 0.0, 1.0)[:bins + 2],
                                  standardized_histogram_numpy(x32, 0.0, 1.0)[:bins + 2])
    assert not kernels.standardized_histogram(x[:, :10], np.array([0.0, np.nan]), np.array([0.0, 1.0])).any()


def _bounded_rows():
    rng = np.random.default_rng(14)
    n = 100_000
    edges = _all_edges(kernels.LOGIT_HISTOGRAM_BINS, DELTA, kernels.LOGIT_OUTER_BINS)
    picked = edges[rng.integers(0, edges.size, 20_000)]
    near_edges = special.expit(picked + rng.integers(-3, 4, picked.size) * np.spacing(np.abs(picked) + 1))
    special_values = np.array([0.0, 1.0, DELTA, 1 - DELTA, np.nextafter(DELTA, 0), np.nextafter(1 - DELTA, 1),
                               5e-324, 1e-300, -0.5, 1.5, np.nan, -0.0])
    saturated = rng.beta(0.3, 0.3, n)
    saturated[:3000] = 0.0
    saturated[3000:6000] = 1.0
    saturated[6000:9000] = 10.0 ** rng.uniform(-60, -6.1, 3000)
    return {
        "u_shaped_saturated": rng.permutation(saturated),
        "near_edges": np.concatenate([near_edges, np.tile(special_values, 100), rng.random(n - 21_200)]),
        "narrow_padded": np.where(rng.random(n) < 0.2, np.nan, special.expit(rng.normal(-2.0, 0.05, n))),
        "float32_sigmoid": special.expit(rng.normal(0.0, 4.0, n)).astype(np.float32).astype(np.float64),
    }


BOUNDED_ROWS = _bounded_rows()


@pytest.mark.parametrize("name", list(BOUNDED_ROWS))
def test_bounded_summary_against_its_numpy_version(name):
    y = BOUNDED_ROWS[name]
    got = kernels.bounded_summary(y)
    want = bounded_summary_numpy(y)
    head = kernels.SUMMARY_FIELDS
    np.testing.assert_array_equal(got[head:], want[head:])  # every histogram field
    np.testing.assert_array_equal(got[[0, 3]], want[[0, 3]])  # n, n clipped
    np.testing.assert_allclose(got[1:3], want[1:3], rtol=BOUND, atol=0)  # Σ log y, Σ log(1-y): one sign
    assert_moments_within_bound(got[4:9], want[4:9])
    assert_moments_within_bound(got[9:head], want[9:head])


def test_bounded_summary_rows_slices_and_empty_rows():
    y = np.stack([BOUNDED_ROWS["u_shaped_saturated"], BOUNDED_ROWS["narrow_padded"]])
    y[1] = np.nan
    got = kernels.bounded_summary(y.reshape(2, 1, -1))  # rows of more than one slice (SUMMARY_SLICE)
    want = bounded_summary_numpy(y)
    assert got.shape == (2, 1, want.shape[-1])
    np.testing.assert_array_equal(got[:, 0, kernels.SUMMARY_FIELDS:], want[:, kernels.SUMMARY_FIELDS:])
    assert_moments_within_bound(got[:, 0, 4:9], want[:, 4:9])
    np.testing.assert_array_equal(got[1, 0, :14], want[1, :14])  # an all-NaN row: counts 0, means NaN
    empty = kernels.bounded_summary(np.zeros((2, 0)))
    assert empty.shape == (2, want.shape[-1]) and not empty[:, kernels.SUMMARY_FIELDS:].any()
    # chunks merge: the histogram by summing (exactly), the moments with combine_moments
    parts = kernels.bounded_summary(y[0].reshape(4, -1))
    np.testing.assert_array_equal(parts[:, kernels.SUMMARY_FIELDS:].sum(axis=0), want[0, kernels.SUMMARY_FIELDS:])
    assert_moments_within_bound(kernels.combine_moments(parts[:, 4:9], axis=0), want[0, 4:9])


@pytest.mark.parametrize("width", [1, 7, 255, 257, 1023, 32_768 + 13])
def test_bounded_summary_vectorised_sums_at_any_length_and_gaps(width):
    # the moments loop keeps each tile's sums in vector lanes (reassociation allowed): rows of
    # lengths that are not multiples of the lanes, the tile or a slice, with NaN gaps at tile
    # borders, the clip points and values at y = 1/2 (logit 0: the logit moments' deviations
    # cancel), against independent sums. The sums of the clipped logarithms: math.fsum of
    # numpy's clipped logarithms (exactly rounded), within float_rtol(n) (terms of one sign,
    # any order, plus numpy's and the kernel's use of the same logarithms: 0 ulps apart);
    # the moments against kernels.moments at the kernels' stated bound.
    import math

    from tolerances import float_rtol

    rng = np.random.default_rng(width)
    y = rng.beta(0.4, 0.4, width)
    y[rng.random(width) < 0.1] = 0.5
    y[rng.random(width) < 0.05] = DELTA / 3
    y[rng.random(width) < 0.05] = 1.0
    y[(np.arange(width) % 256) < 3] = np.nan  # the first values of every tile skipped
    if width > 300:
        y[250:262] = np.nan  # a gap across a tile border
    got = kernels.bounded_summary(y)
    valid = ~np.isnan(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.where(y < DELTA, np.log(DELTA), np.clip(np.log(y), np.log(DELTA), np.log(1 - DELTA)))
        log_c = np.where(y > 1 - DELTA, np.log1p(-(1 - DELTA)),
                         np.clip(np.log1p(-y), np.log1p(-(1 - DELTA)), np.log1p(-DELTA)))
    n = int(valid.sum())
    assert got[0] == n and got[3] == ((y[valid] < DELTA) | (y[valid] > 1 - DELTA)).sum()
    for field, terms in ((1, log_y[valid]), (2, log_c[valid])):
        exact = math.fsum(terms)
        assert abs(got[field] - exact) <= float_rtol(n, function_ulps=0) * abs(exact), (field, got[field], exact)
    assert_moments_within_bound(got[4:9], kernels.moments(y))
    assert_moments_within_bound(got[9:14], kernels.moments(np.where(valid, log_y - log_c, np.nan)))
    want = bounded_summary_numpy(y)
    np.testing.assert_array_equal(got[kernels.SUMMARY_FIELDS:], want[kernels.SUMMARY_FIELDS:])


def test_bounded_summary_of_values_at_and_beyond_the_bounds_among_values_near_edges():
    # the logarithms are taken of the values moved into [1e-300, 1 - 2**-53] (0, 1, values
    # beyond them and below 1e-300 have fields and clipped logarithms of their own): shuffled
    # among values within a few ulps of every kind of edge, so that they share SIMD vectors
    # with them, the counts equal numpy's logit_histogram bin for bin
    rng = np.random.default_rng(15)
    y = rng.permutation(BOUNDED_ROWS["near_edges"])
    y[rng.integers(0, y.size, 5000)] = rng.choice([0.0, 1.0, -0.0, -3.0, 2.0, 5e-324, 1e-310, 1e-301, 1 - 2.0**-53])
    got = kernels.bounded_summary(y)
    want = bounded_summary_numpy(y)
    head = kernels.SUMMARY_FIELDS
    np.testing.assert_array_equal(got[head:], want[head:])
    np.testing.assert_array_equal(got[[0, 3]], want[[0, 3]])
    np.testing.assert_allclose(got[1:3], want[1:3], rtol=BOUND, atol=0)
    assert_moments_within_bound(got[4:9], want[4:9])
    assert_moments_within_bound(got[9:head], want[9:head])


def test_bounded_summary_block_skips_and_counts_infinities_in_its_buffer():
    # ±inf is counted by the histogram loop and replaced by NaN in the block path's own
    # buffer (the moments loop skips NaN only); the caller's rows are not written
    from actstats.kernels.logit_histogram import bounded_summary_block

    rows = np.array([[0.25, np.inf, 0.5, -np.inf, np.nan, 0.75]], dtype=np.float32)
    before = rows.copy()
    got, nonfinite = bounded_summary_block(rows)
    np.testing.assert_array_equal(rows, before)
    assert nonfinite.tolist() == [3]
    want = kernels.bounded_summary(np.array([0.25, np.nan, 0.5, np.nan, np.nan, 0.75]))
    np.testing.assert_array_equal(got[0], want)


def _stored_block(rng, n_rows=3, width=70_000, dtype=np.float32, low=-1.0, high=1.0):
    """Stored values (float32) with NaN, ±inf and values that do not exist (holding garbage)."""
    rows = rng.uniform(low, high, (n_rows, width)).astype(dtype)
    rows[0, rng.integers(0, width, 50)] = np.nan
    rows[1, rng.integers(0, width, 20)] = np.inf
    rows[1, rng.integers(0, width, 20)] = -np.inf
    rows[2, :300] = low  # at the bounds
    rows[2, 300:600] = high
    exists = np.ones(rows.shape, dtype=bool)
    exists[:, width - 9_000:] = False  # padding and a record that does not exist
    exists[0, 1000:1500] = False
    rows[~exists & (rng.random(rows.shape) < 0.5)] = 7.0
    return rows, exists


def _cleaned(rows, exists):
    """The engine's cleaning: float64, NaN where a value does not exist or is not finite."""
    values = rows.astype(np.float64)
    values[~(exists & np.isfinite(values))] = np.nan
    return values, (exists & ~np.isfinite(rows)).sum(axis=-1)


@pytest.mark.parametrize("name", list(MOMENT_ROWS))
def test_moments_extremes_lanes_within_the_bound_of_numpy_moments(name):
    # the weight fit's first pass: tile sums in vector lanes (any order), against numpy's
    # two-pass moments at the bound moments_extremes states; min and max equal numpy's
    from actstats.kernels.moments import moments_extremes_lanes

    x = MOMENT_ROWS[name]
    got, nonfinite = moments_extremes_lanes(np.asarray(x)[None, :])
    assert_moments_within_bound(got[:, :5], kernels.moments(np.asarray(x, dtype=np.float64))[None, :])
    assert got[0, 5] == np.nanmin(x) and got[0, 6] == np.nanmax(x)
    assert nonfinite.tolist() == [int(np.isnan(x).sum())]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_extremes_lanes_skip_what_does_not_exist_and_count_what_is_not_finite(dtype):
    # the block path (stored rows and a mask) equals the engine path (its cleaned float64 copy)
    # bit for bit; against numpy on the values that count; ±inf, NaN, an empty row
    from actstats.kernels.moments import moments_extremes_lanes

    rng = np.random.default_rng(42)
    rows, exists = _stored_block(rng, dtype=dtype)
    values, nonfinite = _cleaned(rows, exists)
    got, count = moments_extremes_lanes(rows, exists)
    np.testing.assert_array_equal(count, nonfinite)
    engine, _ = moments_extremes_lanes(values)
    np.testing.assert_array_equal(got, engine)
    assert_moments_within_bound(got[:, :5], kernels.moments(values))
    np.testing.assert_array_equal(got[:, 5], np.nanmin(values, axis=1))
    np.testing.assert_array_equal(got[:, 6], np.nanmax(values, axis=1))
    empty, count = moments_extremes_lanes(rows[:1], np.zeros_like(exists[:1]))
    assert empty[0, 0] == 0 and np.isnan(empty[0, 1]) and (empty[0, 2:5] == 0).all()
    assert empty[0, 5] == np.inf and empty[0, 6] == -np.inf and count.tolist() == [0]
    # all exist: the stored values, ±inf and NaN skipped and counted
    got, count = moments_extremes_lanes(rows)
    want, want_count = _cleaned(rows, np.ones_like(exists))
    np.testing.assert_array_equal(count, want_count)
    assert_moments_within_bound(got[:, :5], kernels.moments(want))
    np.testing.assert_array_equal(got[:, 5:], np.stack([np.nanmin(want, axis=1), np.nanmax(want, axis=1)], axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_kernels_equal_the_public_kernels_on_cleaned_values_bit_for_bit(dtype):
    # the block kernels read stored values, skip what does not exist and count what is not
    # finite: the same numbers as the public kernels of the engine's cleaned float64 copy
    from actstats.kernels.histogram import standardized_histogram_block
    from actstats.kernels.logit_histogram import bounded_summary_block
    from actstats.kernels.moments import moments_extremes_block

    rng = np.random.default_rng(41)
    rows, exists = _stored_block(rng, dtype=dtype)
    values, nonfinite = _cleaned(rows, exists)
    for mask in (exists, None):
        want_values, want_nonfinite = (values, nonfinite) if mask is not None else _cleaned(rows, np.ones_like(exists))
        got, count = moments_extremes_block(rows, mask)
        np.testing.assert_array_equal(got, moments_extremes(want_values))
        np.testing.assert_array_equal(count, want_nonfinite)
        mean, std = np.array([0.0, 0.1, np.nan]), np.array([0.3, 0.2, 0.5])  # a row without a usable mean
        got, count = standardized_histogram_block(rows, mean, std, mask)
        np.testing.assert_array_equal(got, kernels.standardized_histogram(want_values, mean, std))
        np.testing.assert_array_equal(count, want_nonfinite)
        for bounds in (None, (-1.0, 2.0), (0.0, 1.0), (-1.0, np.nan)):  # tanh's, sigmoid's, an unbounded run
            got, count = bounded_summary_block(rows, mask, bounds)
            y = want_values if bounds is None else (want_values - bounds[0]) / bounds[1]
            np.testing.assert_array_equal(got, kernels.bounded_summary(y))
            np.testing.assert_array_equal(count, want_nonfinite)


# ------------------------------------------------------------------ the collector over first calls


def test_collector_paused_restores_the_state_it_found():
    """Off inside (nested and from two threads at once), back as it was after the last block:
    on when it was on, still off when the caller had turned it off."""
    import gc
    import threading

    from actstats.kernels._jit import collector_paused

    was = gc.isenabled()
    try:
        gc.enable()
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the outer block is still under way
        assert gc.isenabled()

        inside, release = threading.Event(), threading.Event()

        def hold():
            with collector_paused():
                inside.set()
                release.wait(10)

        other = threading.Thread(target=hold)
        other.start()
        inside.wait(10)
        with collector_paused():
            pass
        assert not gc.isenabled()  # the other thread's block is still open
        release.set()
        other.join()
        assert gc.isenabled()

        gc.disable()  # a caller that runs with the collector off keeps it off
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_first_compiled_call_leaves_the_collector_on():
    """A kernel's first call (compiling or loading it) runs with the collector off, and the
    collector is on again after it, also when the call raises."""
    import gc

    from actstats.kernels._jit import jit

    seen = []

    @jit
    def twice(x):
        return 2 * x

    original = twice._compile

    def compile_and_look():
        seen.append(gc.isenabled())
        return original()

    twice._compile = compile_and_look
    assert gc.isenabled()
    assert twice(3.0) == 6.0
    assert seen == [False] and gc.isenabled()
    assert twice(4.0) == 8.0 and seen == [False]  # compiled once

    @jit
    def broken(x):
        return x.no_such_attribute

    with pytest.raises(Exception):
        broken(1.0)  # numba's typing error on the first call
    assert gc.isenabled()
