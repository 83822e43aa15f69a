"""CDF statistics from fixed fine histograms: for groups too large to hold in memory.

One module (about 810 lines, the compiled block kernels of the streamed paths included) because the three statistics share one set of per-bin error
bounds, derived once below, and the code that evaluates them must stay beside that derivation.

KS distance, Wasserstein-1 and Anderson–Darling need the sorted data; a group pooled
over many runs, epochs or layers of a large store does not fit in memory. These
kernels instead take a histogram of the standardised values on a fixed grid of edges
(``[-limit, limit]`` in standard deviations, ``bins`` equal bins) plus four tail
fields, which chunks give independently and which merge by summing: one streaming
pass after the moments (which give the mean and std used to standardise).

Layout of a histogram array, last axis of length ``bins + 4``::

    [counts of bins 0 … bins-1, n below -limit, n at or above +limit,
     Σ(-limit - z) over the values below, Σ(z - limit) over the values above]

Error bounds, exact and per group (no assumption on the data): in bin k,
``[e_k, e_{k+1})``, the empirical CDF ``F_n`` lies between its values at the two edges,
``A_k`` and ``B_k``, and the reference CDF between ``G(e_k)`` and ``G(e_{k+1})``. So

* KS ``D = sup |F_n − G|`` lies between the largest gap at the edges (attained, so a
  lower bound) and the largest ``max(B_k − G(e_k), G(e_{k+1}) − A_k)`` (an upper bound);
* W1 ``= ∫ |F_n − G| dt``: per bin, between ``h·(smallest gap)`` and ``h·(largest gap)``;
  the tails beyond ``±limit`` are bounded with the tail sums (exact for F_n);
* A² ``= n ∫ (F_n − G)² / (G(1 − G)) dG``: per bin between the smallest and largest
  squared gap times ``∫ dG / (G(1−G))`` over the bin (the change of ``logit G``); beyond
  ``±limit`` exact when no value lies there, unbounded (inf) otherwise.

Each statistic is estimated with the values spread evenly inside each bin (the gap
taken at the bin's middle), clipped to its bounds, and reported with the distance from
the estimate to the farther bound as its error bound. For KS and W1 the width is at most the largest bin mass of ``F_n`` plus that
of ``G`` (KS) and at most ``2h`` (W1, in standard deviations) with ``h = 2·limit/bins``;
with the defaults (``limit`` 10, 8192 bins, h ≈ 0.0024) the W1 error is below 0.0025 σ.
Quantiles come with the edges of the bin that holds them.

Why one module of ~670 lines: one topic (statistics of fixed-grid histograms: their
layout, merging, CDF statistics with bounds, the streamed family fits and normality
summary that read them); about half of it is docstrings stating bounds and verification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ._jit import jit

#: Default grid: 8192 equal bins on [-10, 10] standard deviations.
HISTOGRAM_BINS = 8192
HISTOGRAM_LIMIT = 10.0
#: Families a histogram can rank (moment-matched, binned likelihood).
HISTOGRAM_FAMILIES = ("normal", "laplace", "logistic", "uniform")


def histogram_edges(bins: int = HISTOGRAM_BINS, limit: float = HISTOGRAM_LIMIT) -> np.ndarray:
    """The ``bins + 1`` equal-width edges on ``[-limit, limit]``.

    Examples
    --------
    >>> from actstats.kernels import histogram_edges
    >>> histogram_edges(4, 2.0).tolist()
    [-2.0, -1.0, 0.0, 1.0, 2.0]
    """
    if bins < 1 or not limit > 0:
        raise ValueError(f"histogram: need bins >= 1 and limit > 0, got bins={bins}, limit={limit}")
    return np.linspace(-limit, limit, bins + 1)


def standardized_histogram(
    values, mean, std, *, bins: int = HISTOGRAM_BINS, limit: float = HISTOGRAM_LIMIT
) -> np.ndarray:
    """Histogram fields of ``(values - mean) / std`` over the last axis (NaN skipped).

    Parameters
    ----------
    values : array_like (..., m)
    mean, std : array_like, broadcastable to ``values.shape[:-1]``
        The group's mean and standard deviation (from merged moments).
    bins, limit : the grid (see the module docstring).

    Returns
    -------
    ndarray (..., bins + 4)
        Mergeable by summing over chunks of the same group.

    Notes
    -----
    Compiled, one pass over the values of a row. The counts are those of the numpy
    expression ``min(int(((x - mean) / std + limit) * bins / (2 limit)), bins - 1)`` bit for
    bit (the same float operations in the same order); the two excess sums are
    Neumaier-compensated and agree with numpy's pairwise sums to 1e-12 relative (all their
    terms are positive).

    Verification: the histogram of a whole sample equals the sum of those of its parts,
    tail fields included (``tests/test_kernels_histogram.py``); the counts equal the numpy
    expression's bin for bin and the sums agree to 1e-12
    (``tests/test_kernels_histogram_compiled.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import standardized_histogram
    >>> h = standardized_histogram(np.array([-20.0, 0.1, 0.2, 0.3]), 0.0, 1.0, bins=4, limit=2.0)
    >>> h.tolist()  # 4 bins, then: below, above, excess below, excess above
    [0.0, 0.0, 3.0, 0.0, 1.0, 0.0, 18.0, 0.0]
    """
    values = np.asarray(values, dtype=np.float64)
    lead = values.shape[:-1]
    mean = np.ascontiguousarray(np.broadcast_to(np.asarray(mean, dtype=np.float64), lead).reshape(-1))
    std = np.ascontiguousarray(np.broadcast_to(np.asarray(std, dtype=np.float64), lead).reshape(-1))
    rows = np.ascontiguousarray(values.reshape(-1, values.shape[-1]))
    out = np.zeros((rows.shape[0], bins + 4))
    _standardized_histogram_rows(rows, _ALL_EXIST, False, mean, std, float(limit), bins / (2.0 * limit), bins, out,
                                 _NO_COUNTS)
    return out.reshape(lead + (bins + 4,))


#: ``exists`` of a block whose values all exist, and the counts a public call does not keep.
_ALL_EXIST = np.zeros((0, 0), dtype=np.bool_)
_NO_COUNTS = np.zeros(0, dtype=np.int64)


def standardized_histogram_block(rows, mean, std, exists=None, *, bins: int = HISTOGRAM_BINS,
                                 limit: float = HISTOGRAM_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """:func:`standardized_histogram` of a block's rows as they are stored, and each row's
    count of values that exist but are not finite.

    Parameters
    ----------
    rows : ndarray (n, m), float32 or float64
        Read in their own dtype (each value converted to float64 exactly).
    mean, std : array_like, broadcastable to ``(n,)``
    exists : ndarray (n, m) of bool, optional
        Which values exist (default: all). Values that do not exist are skipped whatever
        they hold; values that exist but are NaN or ±inf are skipped and counted (also in a
        row whose mean or std is not usable, whose histogram stays empty).

    Returns
    -------
    (histogram (n, bins + 4), nonfinite (n,) int64)
        The histogram equals, bit for bit, :func:`standardized_histogram` of the float64
        rows with every skipped value replaced by NaN (the same operations in the same order).
    """
    rows = np.asarray(rows)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    rows = np.ascontiguousarray(rows)
    n_rows = rows.shape[0]
    mean = np.ascontiguousarray(np.broadcast_to(np.asarray(mean, dtype=np.float64), (n_rows,)))
    std = np.ascontiguousarray(np.broadcast_to(np.asarray(std, dtype=np.float64), (n_rows,)))
    exists = _ALL_EXIST if exists is None else np.ascontiguousarray(exists, dtype=np.bool_)
    out = np.zeros((n_rows, bins + 4))
    nonfinite = np.zeros(n_rows, dtype=np.int64)
    _standardized_histogram_rows(rows, exists, True, mean, std, float(limit), bins / (2.0 * limit), bins, out,
                                 nonfinite)
    return out, nonfinite


#: Values of a row whose bins :func:`_standardized_histogram_rows` computes at once (16 KiB of
#: int32 bins, in L1 cache for the counting loop).
_PIECE = 4096


@jit
def _standardized_histogram_rows(rows, exists, clean, mean, std, limit, scale, bins, out, nonfinite):
    """One pass per row: ``z = (x - mean) / std``, its bin (or tail) and the tails' excess sums.

    The same float operations as numpy on each value (``(x - mean) / std``, then
    ``(z + limit) * scale`` truncated), so the counts equal numpy's bin for bin; the two
    excess sums are Neumaier-compensated (within a few ulps of the exact sum; numpy's
    pairwise sum is within ~log2(n) ulps: all terms are positive, so they agree to 1e-12
    relative).

    ``exists`` (n, m) or (0, 0) (all exist): values that do not exist are skipped. With
    ``clean``, ±inf is skipped too and the NaN and ±inf that exist are counted in
    ``nonfinite`` (otherwise ±inf falls in a tail).

    Per :data:`_PIECE` values of a row, two loops: the bin of every value (branch-free, so
    vectorised), then the counting in the values' order, where the values outside the grid
    (few) take the branches of the tails, NaN and ±inf (their excess sums in the same order
    as one loop would add them: the same numbers).
    """
    n_rows, width = rows.shape
    index = np.empty(min(_PIECE, width), dtype=np.int32)
    masked = exists.shape[0] > 0
    for r in range(n_rows):
        m = mean[r]
        s = std[r]
        usable = np.isfinite(s) and s > 0 and np.isfinite(m)
        if not usable:
            if clean:  # the count only
                for i in range(width):
                    if masked and not exists[r, i]:
                        continue
                    x = rows[r, i]
                    if x != x or x == np.inf or x == -np.inf:
                        nonfinite[r] += 1
            continue
        below = 0
        above = 0
        low_sum = 0.0
        low_error = 0.0
        high_sum = 0.0
        high_error = 0.0
        for start in range(0, width, _PIECE):
            stop = min(start + _PIECE, width)
            piece = rows[r, start:stop]
            # every value's bin, branch-free (vectorised: the division's throughput is the
            # cost); -1 for a value that is not in the grid (a tail, NaN, ±inf)
            for j in range(stop - start):
                z = (piece[j] - m) / s
                position = (z + limit) * scale
                k = np.int32(position) if (z >= -limit) & (z < limit) else -1
                index[j] = k if k < bins - 1 else bins - 1
            for j in range(stop - start):
                i = start + j
                if masked and not exists[r, i]:
                    continue
                k = index[j]
                if k >= 0:
                    out[r, k] += 1.0
                    continue
                x = piece[j]
                if x != x or (clean and (x == np.inf or x == -np.inf)):
                    if clean:
                        nonfinite[r] += 1
                    continue
                z = (x - m) / s
                if z < -limit:
                    below += 1
                    term = -limit - z
                    total = low_sum + term
                    if abs(low_sum) >= abs(term):
                        low_error += (low_sum - total) + term
                    else:
                        low_error += (term - total) + low_sum
                    low_sum = total
                else:
                    above += 1
                    term = z - limit
                    total = high_sum + term
                    if abs(high_sum) >= abs(term):
                        high_error += (high_sum - total) + term
                    else:
                        high_error += (term - total) + high_sum
                    high_sum = total
        out[r, bins] = below
        out[r, bins + 1] = above
        # an infinite value makes its tail's sum infinite (and the compensation NaN)
        out[r, bins + 2] = low_sum + low_error if np.isfinite(low_sum) else low_sum
        out[r, bins + 3] = high_sum + high_error if np.isfinite(high_sum) else high_sum


@dataclass(frozen=True)
class HistogramCDFStatistics:
    """Statistics of histogrammed groups against a reference CDF, with error bounds.

    Every field is an array over the groups; ``*_error`` is the half-width of the
    interval that surely holds the exact value (see the module docstring).
    """

    n: np.ndarray
    ks_d: np.ndarray
    ks_d_error: np.ndarray
    w1: np.ndarray
    w1_error: np.ndarray
    ad_statistic: np.ndarray
    ad_statistic_error: np.ndarray


def _split(histogram, bins):
    histogram = np.asarray(histogram, dtype=np.float64)
    if histogram.shape[-1] != bins + 4:
        raise ValueError(f"histogram: last axis has {histogram.shape[-1]} fields, expected bins + 4 = {bins + 4}")
    counts = histogram[..., :bins]
    below, above, below_excess, above_excess = (histogram[..., bins + i] for i in range(4))
    return counts, below, above, below_excess, above_excess


def histogram_cdf_statistics(
    histogram, *, scale: float | np.ndarray = 1.0, limit: float = HISTOGRAM_LIMIT
) -> HistogramCDFStatistics:
    """KS distance, W1 and A² of histogrammed standardised data against N(0, scale²).

    Parameters
    ----------
    histogram : array_like (..., bins + 4)
        From :func:`standardized_histogram` (summed over chunks).
    scale : float or array over the groups, default 1
        Standard deviation of the reference normal in the histogram's units: 1 for the
        normal fitted by maximum likelihood (std with ddof=0), ``s1/s0`` for the normal
        with ``std(ddof=1)`` (Lilliefors and Anderson–Darling conventions).
    limit : float
        The grid's limit (bins are read from the array).

    Returns
    -------
    HistogramCDFStatistics
        ``w1`` in the histogram's units (standard deviations); ``ad_statistic`` is A²
        (unmodified), with error inf when values lie beyond ``±limit``.

    Verification: with the exact statistics of :mod:`actstats.kernels.normality` inside
    the stated bounds on normal, uniform, Laplace and t₃ data
    (``tests/test_kernels_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import histogram_cdf_statistics, standardized_histogram
    >>> x = np.random.default_rng(0).uniform(size=100_000)
    >>> h = standardized_histogram(x, x.mean(), x.std())
    >>> result = histogram_cdf_statistics(h)
    >>> print(round(float(result.w1), 3), bool(result.w1_error < 0.005))
    0.153 True
    """
    bins = np.asarray(histogram).shape[-1] - 4
    counts, below, above, below_excess, above_excess = _split(histogram, bins)
    n = counts.sum(axis=-1) + below + above
    edges = histogram_edges(bins, limit)
    h = edges[1] - edges[0]
    scale = np.asarray(scale, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = n[..., None]
        cumulative = np.concatenate([below[..., None], below[..., None] + np.cumsum(counts, axis=-1)], axis=-1)
        f_edge = cumulative / nn  # F_n just below each edge, (..., bins + 1)
        g = special.ndtr(edges / scale)  # (..., bins + 1)
        g_complement = special.ndtr(-edges / scale)  # 1 - g without cancellation
        a, b = f_edge[..., :-1], f_edge[..., 1:]
        g0, g1 = g[..., :-1], g[..., 1:]
        largest = np.maximum(b - g0, g1 - a)
        smallest = np.maximum(np.maximum(a - g1, g0 - b), 0.0)
        # Point estimates: values spread evenly inside each bin (F_n linear there),
        # the gap taken at the bin's middle.
        middle_edges = (edges[:-1] + edges[1:]) / 2
        gap_middle = (a + b) / 2 - special.ndtr(middle_edges / scale)
        ks_low, ks_estimate, ks_up = _ks_bounds(f_edge, g, g_complement[..., -1], gap_middle)
        # W1: per bin; tails: ∫F_n below -limit is below_excess/n exactly, ∫G likewise.
        s = scale[..., 0]
        tail_g = s * _normal_partial_expectation(-limit / s)  # ∫_{-inf}^{-limit} G = ∫_{limit}^{inf} (1 - G)
        tail_f_low = below_excess / n
        tail_f_high = above_excess / n
        tail_w1_low = np.abs(tail_f_low - tail_g) + np.abs(tail_f_high - tail_g)
        tail_w1_up = tail_f_low + tail_g + tail_f_high + tail_g
        w1_low = h * smallest.sum(axis=-1) + tail_w1_low
        w1_up = h * largest.sum(axis=-1) + tail_w1_up
        w1_estimate = h * np.abs(gap_middle).sum(axis=-1) + (tail_w1_low + tail_w1_up) / 2
        # A²: weights ∫ dG/(G(1-G)) over each bin = change of logit G.
        logit = special.log_ndtr(edges / scale) - special.log_ndtr(-edges / scale)
        weight = np.diff(logit, axis=-1)
        ad_low = (smallest**2 * weight).sum(axis=-1)
        ad_up = (largest**2 * weight).sum(axis=-1)
        ad_estimate = (gap_middle**2 * weight).sum(axis=-1)
        # Tails with F_n = 0 (below) or 1 (above) exactly: ∫_0^{G0} G/(1-G) dG = -G0 - log(1-G0).
        g_low = g[..., 0]
        g_high = g_complement[..., -1]
        tail_ad = (-g_low - np.log1p(-g_low)) + (-g_high - np.log1p(-g_high))
        tails_empty = (below == 0) & (above == 0)
        tail_ad = np.where(tails_empty, tail_ad, 0.0)
        ad_low = n * (ad_low + tail_ad)
        ad_estimate = n * (ad_estimate + tail_ad)
        ad_up = np.where(tails_empty, n * (ad_up + tail_ad), np.inf)
    valid = n > 0

    def pair(estimate, low, up):
        estimate = np.clip(estimate, low, up)
        error = np.maximum(estimate - low, up - estimate)
        return np.where(valid, estimate, np.nan), np.where(valid, error, np.nan)

    ks, ks_error = pair(ks_estimate, ks_low, ks_up)
    w1, w1_error = pair(w1_estimate, w1_low, w1_up)
    ad, ad_error = pair(ad_estimate, ad_low, ad_up)
    return HistogramCDFStatistics(n=n, ks_d=ks, ks_d_error=ks_error, w1=w1, w1_error=w1_error,
                                  ad_statistic=ad, ad_statistic_error=ad_error)


def _ks_bounds(f_edge, g, g_last_complement, gap_middle):
    """Lower bound, estimate and upper bound of sup |F_n - G| from the CDFs at the edges.

    ``f_edge``: F_n just below each edge (the first holds the values below the grid);
    ``g``: G at the edges; ``gap_middle``: F_n spread evenly minus G at the bins' middles.
    """
    a, b = f_edge[..., :-1], f_edge[..., 1:]
    g0, g1 = g[..., :-1], g[..., 1:]
    in_bins = np.maximum(b - g0, g1 - a).max(axis=-1)
    tail_low = np.maximum(f_edge[..., 0], g[..., 0])  # below the grid: both CDFs in [0, their value there]
    tail_high = np.maximum(1 - f_edge[..., -1], g_last_complement)
    low = np.abs(f_edge - g).max(axis=-1)  # attained just below each edge
    up = np.maximum(np.maximum(in_bins, tail_low), tail_high)
    return low, np.maximum(low, np.abs(gap_middle).max(axis=-1)), up


def histogram_ks(histogram, cdf_edges, cdf_middles, *, limit: float = HISTOGRAM_LIMIT):
    """KS distance of histogrammed standardised data to any continuous CDF, with its bound.

    Parameters
    ----------
    histogram : array_like (..., bins + 4)
        From :func:`standardized_histogram` (summed over chunks).
    cdf_edges, cdf_middles : array_like (..., bins + 1) and (..., bins)
        The reference CDF at the grid's edges and at the bins' middles, in the
        histogram's (standardised) units.
    limit : float
        The grid's limit.

    Returns
    -------
    (ks, error)
        The exact distance lies in ``[ks - error, ks + error]`` (the bounds of
        :func:`histogram_cdf_statistics`, for any reference); NaN for an empty group.

    Verification: ``scipy.stats.kstest`` against fitted Laplace, logistic and uniform
    distributions lies within the bound (``tests/test_kernels_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from actstats.kernels import histogram_edges, histogram_ks, standardized_histogram
    >>> x = np.random.default_rng(0).laplace(size=100_000)
    >>> h = standardized_histogram(x, x.mean(), x.std())
    >>> edges = histogram_edges()
    >>> g = stats.laplace(scale=1 / np.sqrt(2)).cdf  # unit variance
    >>> ks, error = histogram_ks(h, g(edges), g((edges[:-1] + edges[1:]) / 2))
    >>> bool(ks < 0.01 and error < 0.002)
    True
    """
    bins = np.asarray(histogram).shape[-1] - 4
    counts, below, above, _, _ = _split(histogram, bins)
    n = counts.sum(axis=-1) + below + above
    g = np.asarray(cdf_edges, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = n[..., None]
        f_edge = np.concatenate([below[..., None], below[..., None] + np.cumsum(counts, axis=-1)], axis=-1) / nn
        gap_middle = (f_edge[..., :-1] + f_edge[..., 1:]) / 2 - np.asarray(cdf_middles, dtype=np.float64)
        low, estimate, up = _ks_bounds(f_edge, g, 1 - g[..., -1], gap_middle)
        estimate = np.clip(estimate, low, up)
        error = np.maximum(estimate - low, up - estimate)
    valid = n > 0
    return np.where(valid, estimate, np.nan), np.where(valid, error, np.nan)


def _normal_partial_expectation(t):
    """``∫_{-inf}^{t} Φ(u) du = t Φ(t) + φ(t)``."""
    t = np.asarray(t, dtype=np.float64)
    return t * special.ndtr(t) + np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)


def histogram_quantiles(histogram, q, *, limit: float = HISTOGRAM_LIMIT):
    """Quantiles of histogrammed data with their bracket.

    Returns ``(estimate, low, high)``, each ``(..., len(q))``: the quantile (the inverse
    of ``F_n``, ``inf{t: F_n(t) ≥ q}``) lies in ``[low, high]``, the edges of the bin where
    the cumulative count reaches ``q·n``; the estimate interpolates linearly inside it.
    ``low = -inf`` or ``high = inf`` when the quantile falls in a tail.

    Verification: numpy's inverted-CDF quantiles lie in ``[low, high]`` for normal, Laplace
    and lognormal samples (``tests/test_kernels_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import histogram_quantiles, standardized_histogram
    >>> x = np.random.default_rng(0).normal(size=100_000)
    >>> estimate, low, high = histogram_quantiles(standardized_histogram(x, x.mean(), x.std()), [0.5])
    >>> bool(low[0] <= 0.0 <= high[0] + 0.01)
    True
    """
    bins = np.asarray(histogram).shape[-1] - 4
    counts, below, above, _, _ = _split(histogram, bins)
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    edges = histogram_edges(bins, limit)
    n = counts.sum(axis=-1) + below + above
    cumulative = np.concatenate([below[..., None], below[..., None] + np.cumsum(counts, axis=-1)], axis=-1)
    lead = cumulative.shape[:-1]
    flat_cum = cumulative.reshape(-1, bins + 1)
    flat_n = n.reshape(-1)
    estimate = np.full((flat_cum.shape[0], q.size), np.nan)
    low = np.full_like(estimate, np.nan)
    high = np.full_like(estimate, np.nan)
    for i in range(flat_cum.shape[0]):
        if flat_n[i] <= 0:
            continue
        target = q * flat_n[i]
        # the first edge index j whose cumulative count reaches the target
        j = np.searchsorted(flat_cum[i], target, side="left")
        for k, (jj, t) in enumerate(zip(j, target)):
            if jj == 0:
                low[i, k], high[i, k], estimate[i, k] = -np.inf, edges[0], edges[0]
            elif jj > bins:
                low[i, k], high[i, k], estimate[i, k] = edges[-1], np.inf, edges[-1]
            else:
                left, right = flat_cum[i, jj - 1], flat_cum[i, jj]
                fraction = (t - left) / (right - left) if right > left else 1.0
                low[i, k], high[i, k] = edges[jj - 1], edges[jj]
                estimate[i, k] = edges[jj - 1] + fraction * (edges[jj] - edges[jj - 1])
    shape = lead + (q.size,)
    return estimate.reshape(shape), low.reshape(shape), high.reshape(shape)


def histogram_best_family(histogram, median, mean_abs_deviation, *, families=HISTOGRAM_FAMILIES,
                          limit: float = HISTOGRAM_LIMIT) -> np.ndarray:
    """Index of the family with the highest binned log-likelihood (standardised units).

    Each family is matched to the data's moments (normal N(0, 1); logistic with scale
    √3/π), for Laplace to the median and the mean absolute deviation from it, for the
    uniform to the span of the filled bins (its maximum-likelihood support on the grid); the likelihood is multinomial over the bins and the two tails. Two
    parameters each, so the AIC order is the likelihood order. An approximation of
    :func:`actstats.kernels.fit_families` (maximum likelihood on the values) for groups
    that do not fit in memory; -1 where the group is empty.

    Verification: agrees with :func:`actstats.kernels.fit_families` on normal, Laplace and
    uniform samples (``tests/test_kernels_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import histogram_best_family, standardized_histogram
    >>> x = np.random.default_rng(0).laplace(size=50_000)
    >>> z = (x - x.mean()) / x.std()
    >>> h = standardized_histogram(x, x.mean(), x.std())
    >>> int(histogram_best_family(h, np.median(z), np.mean(np.abs(z - np.median(z)))))  # laplace
    1
    """
    from scipy import stats

    bins = np.asarray(histogram).shape[-1] - 4
    counts, below, above, _, _ = _split(histogram, bins)
    edges = histogram_edges(bins, limit)
    lead = counts.shape[:-1]
    flat = np.concatenate([below.reshape(-1, 1), counts.reshape(-1, bins), above.reshape(-1, 1)], axis=-1)
    median = np.broadcast_to(np.asarray(median, dtype=float), lead).reshape(-1)
    mad = np.broadcast_to(np.asarray(mean_abs_deviation, dtype=float), lead).reshape(-1)
    scores = np.full((flat.shape[0], len(families)), -np.inf)
    for k, family in enumerate(families):
        for i in range(flat.shape[0]):
            if family == "normal":
                cdf = stats.norm.cdf(edges)
            elif family == "logistic":
                cdf = stats.logistic.cdf(edges, scale=np.sqrt(3) / np.pi)
            elif family == "uniform":  # the smallest support on the grid holding every value
                filled = np.flatnonzero(flat[i])
                if filled.size == 0 or filled[0] == 0 or filled[-1] == bins + 1:
                    continue
                low, high = edges[filled[0] - 1], edges[filled[-1]]
                cdf = stats.uniform.cdf(edges, loc=low, scale=high - low)
            elif family == "laplace":
                if not (np.isfinite(mad[i]) and mad[i] > 0):
                    continue
                cdf = stats.laplace.cdf(edges, loc=median[i], scale=mad[i])
            else:
                raise ValueError(f"histogram_best_family: no binned fit for family {family!r}; "
                                 f"available: {', '.join(HISTOGRAM_FAMILIES)}")
            probability = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(flat[i] > 0, flat[i] * np.log(probability), 0.0)
            scores[i, k] = terms.sum()
    best = np.where(flat.sum(axis=-1) > 0, np.argmax(scores, axis=-1), -1)
    best = np.where(np.isfinite(scores.max(axis=-1)), best, -1)
    return best.reshape(lead)


#: Families :func:`histogram_fit_families` fits (the fast defaults of ``fit``).
HISTOGRAM_FIT_FAMILIES = ("normal", "laplace", "logistic", "uniform")


@dataclass(frozen=True)
class HistogramFamilyFits:
    """Fits of two-parameter families to histogrammed groups; family is the last axis.

    ``loc``, ``scale``, ``log_likelihood``, ``aic``, ``bic``, ``ks_statistic`` and
    ``ks_statistic_error`` are ``(..., F)`` on the data's own scale (scipy's convention);
    ``n`` and ``best_family_index`` (lowest AIC, -1 where none is finite) are ``(...)``.
    """

    families: tuple
    loc: np.ndarray
    scale: np.ndarray
    log_likelihood: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    ks_statistic: np.ndarray
    ks_statistic_error: np.ndarray
    n: np.ndarray
    best_family_index: np.ndarray


def _weighted_logistic(points, weights):
    """Logistic MLE (loc, scale) of weighted points (standardised units), by L-BFGS."""
    from scipy import optimize

    total = weights.sum()

    def objective(theta):
        loc, log_scale = theta
        z = (points - loc) * np.exp(-log_scale)
        a = np.abs(z)
        term = a + 2 * np.log1p(np.exp(-a))
        value = (weights * term).sum() / total + log_scale
        s = np.tanh(z / 2)  # d term / dz
        grad_loc = -(weights * s).sum() / total * np.exp(-log_scale)
        grad_log_scale = -(weights * s * z).sum() / total + 1
        return value, np.array([grad_loc, grad_log_scale])

    start = np.array([0.0, np.log(np.sqrt(3) / np.pi)])
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                               options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 200})
    return result.x[0], np.exp(result.x[1])


def histogram_fit_families(histogram, moments, minimum, maximum, *, families=HISTOGRAM_FIT_FAMILIES,
                           limit: float = HISTOGRAM_LIMIT) -> HistogramFamilyFits:
    """Maximum-likelihood fits of normal, Laplace, logistic and uniform from streamed summaries.

    Parameters
    ----------
    histogram : array_like (..., bins + 4)
        :func:`standardized_histogram` of the values standardised by the merged mean and
        std (ddof 0), summed over chunks.
    moments : array_like (..., 5)
        The merged moments (:func:`~actstats.kernels.combine_moments`).
    minimum, maximum : array_like (...)
        The smallest and largest value of each group.
    families : subset of ``HISTOGRAM_FIT_FAMILIES``

    Returns
    -------
    HistogramFamilyFits

    Notes
    -----
    ``normal`` (mean, std) and ``uniform`` (minimum, span) are the exact maximum-likelihood
    fits, with exact log-likelihoods. ``laplace``: the median interpolated in its bin
    (within one bin width, 0.0024 std) and the mean absolute deviation from it with the
    values at their bins' middles (the tails exact from their sums); ``logistic``: the
    likelihood maximised over the bins' middles weighted by their counts (the tails at
    their means). Their log-likelihoods are at those parameters, approximations of the
    exact ones. KS distances to every fitted distribution come from :func:`histogram_ks`
    with exact bounds on the distance to the distribution fitted here.

    Verification: normal and uniform equal :func:`actstats.kernels.fit_families` to 1e-10;
    Laplace and logistic parameters within 1e-3 relative and log-likelihoods within 1e-5
    relative on 200 000-value samples, the same best family, and ``scipy.stats.kstest``
    to the fitted distributions within the bounds (``tests/test_kernels_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import histogram_fit_families, moments, standardized_histogram
    >>> x = np.random.default_rng(0).uniform(-1, 1, size=100_000)
    >>> h = standardized_histogram(x, x.mean(), x.std())
    >>> fits = histogram_fit_families(h, moments(x), x.min(), x.max())
    >>> str(np.array(fits.families)[fits.best_family_index])
    'uniform'
    """
    from .fits import _logpdf_cdf

    families = tuple(families)
    unknown = [f for f in families if f not in HISTOGRAM_FIT_FAMILIES]
    if unknown:
        raise ValueError(f"histogram_fit_families: no streamed fit for {', '.join(unknown)}; "
                         f"available: {', '.join(HISTOGRAM_FIT_FAMILIES)}")
    histogram = np.asarray(histogram, dtype=np.float64)
    bins = histogram.shape[-1] - 4
    lead = histogram.shape[:-1]
    flat = histogram.reshape(-1, bins + 4)
    m = np.asarray(moments, dtype=np.float64).reshape(-1, 5)
    low = np.broadcast_to(np.asarray(minimum, dtype=np.float64), lead).reshape(-1)
    high = np.broadcast_to(np.asarray(maximum, dtype=np.float64), lead).reshape(-1)
    n = m[:, 0]
    mean = m[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(m[:, 2] / n)
    edges = histogram_edges(bins, limit)
    middles = (edges[:-1] + edges[1:]) / 2
    median = histogram_quantiles(flat, [0.5], limit=limit)[0][:, 0]
    n_rows, n_families = flat.shape[0], len(families)
    loc_z = np.full((n_rows, n_families), np.nan)
    scale_z = np.full((n_rows, n_families), np.nan)
    log_likelihood = np.full((n_rows, n_families), np.nan)
    usable = (n >= 3) & (std > 0) & np.isfinite(std) & (high > low)
    counts, below, above, below_excess, above_excess = _split(flat, bins)
    for i in np.flatnonzero(usable):
        for k, family in enumerate(families):
            if family == "normal":
                loc_z[i, k], scale_z[i, k] = 0.0, 1.0
                log_likelihood[i, k] = -0.5 * n[i] * (np.log(2 * np.pi) + 1)
            elif family == "uniform":
                loc_z[i, k] = (low[i] - mean[i]) / std[i]
                scale_z[i, k] = (high[i] - low[i]) / std[i]
                log_likelihood[i, k] = -n[i] * np.log(scale_z[i, k])
            elif family == "laplace":
                center = median[i]
                spread = (counts[i] * np.abs(middles - center)).sum()
                spread += below[i] * (center + limit) + below_excess[i] + above[i] * (limit - center) + above_excess[i]
                b = spread / n[i]
                loc_z[i, k], scale_z[i, k] = center, b
                log_likelihood[i, k] = -n[i] * (np.log(2 * b) + 1)
            else:  # logistic
                tails = [(-limit - below_excess[i] / below[i], below[i])] if below[i] else []
                tails += [(limit + above_excess[i] / above[i], above[i])] if above[i] else []
                points = np.concatenate([middles, [p for p, _ in tails]])
                weights = np.concatenate([counts[i], [w for _, w in tails]])
                keep = weights > 0
                loc_z[i, k], scale_z[i, k] = _weighted_logistic(points[keep], weights[keep])
                log_pdf, _ = _logpdf_cdf("logistic", points[keep], loc_z[i, k], scale_z[i, k])
                log_likelihood[i, k] = (weights[keep] * log_pdf).sum()
    ks = np.full((n_rows, n_families), np.nan)
    ks_error = np.full((n_rows, n_families), np.nan)
    for k, family in enumerate(families):
        _, cdf_edges = _logpdf_cdf(family, edges[None, :], loc_z[:, k, None], scale_z[:, k, None])
        _, cdf_middles = _logpdf_cdf(family, middles[None, :], loc_z[:, k, None], scale_z[:, k, None])
        ks[:, k], ks_error[:, k] = histogram_ks(flat, cdf_edges, cdf_middles, limit=limit)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_likelihood = log_likelihood - n[:, None] * np.log(std)[:, None]  # back to the data's scale
        aic = 4 - 2 * log_likelihood
        bic = 2 * np.log(n)[:, None] - 2 * log_likelihood
    ks = np.where(usable[:, None], ks, np.nan)
    ks_error = np.where(usable[:, None], ks_error, np.nan)
    finite = np.isfinite(aic)
    best = np.where(finite.any(axis=1), np.argmin(np.where(finite, aic, np.inf), axis=1), -1)

    def shaped(a):
        return a.reshape(lead + a.shape[1:])

    return HistogramFamilyFits(
        families=families,
        loc=shaped(mean[:, None] + std[:, None] * loc_z),
        scale=shaped(std[:, None] * scale_z),
        log_likelihood=shaped(log_likelihood), aic=shaped(aic), bic=shaped(bic),
        ks_statistic=shaped(ks), ks_statistic_error=shaped(ks_error),
        n=shaped(n), best_family_index=shaped(best),
    )


@dataclass(frozen=True)
class HistogramNormality:
    """The CDF-based normality statistics of groups, from their standardised histograms.

    Fields are arrays over the groups: ``ad_statistic``/``ad_pvalue`` (Anderson–Darling,
    NaN below 8 values), ``lilliefors_statistic``/``lilliefors_pvalue`` (NaN below 4),
    ``ks_d`` and ``w1_normal`` (to the maximum-likelihood normal), ``best_family_index``
    (into ``families``, binned likelihood), and the error bounds ``ks_d_error``,
    ``w1_normal_error``, ``ad_statistic_error``.
    """

    ad_statistic: np.ndarray
    ad_pvalue: np.ndarray
    lilliefors_statistic: np.ndarray
    lilliefors_pvalue: np.ndarray
    ks_d: np.ndarray
    w1_normal: np.ndarray
    best_family_index: np.ndarray
    ks_d_error: np.ndarray
    w1_normal_error: np.ndarray
    ad_statistic_error: np.ndarray


def histogram_normality(histogram, n, *, families=HISTOGRAM_FAMILIES) -> HistogramNormality:
    """Normality statistics of groups too large for memory, from :func:`standardized_histogram`.

    Parameters
    ----------
    histogram : array_like, shape (..., HISTOGRAM_BINS + 4)
        Summed standardised histograms (standardised with the ddof=0 standard deviation).
    n : array_like
        Values per group.
    families : sequence of str
        Compared for ``best_family_index`` (:func:`histogram_best_family`).

    Returns
    -------
    HistogramNormality

    Verification: within the stated error bounds of the exact statistics
    (:func:`~actstats.kernels.anderson_darling`, :func:`~actstats.kernels.lilliefors`,
    :func:`~actstats.kernels.ks_distance_normal`, :func:`~actstats.kernels.wasserstein_normal`)
    on plain arrays (``tests/test_kernels_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1, 4000))
    >>> h = standardized_histogram(x, x.mean(axis=-1), x.std(axis=-1))
    >>> result = histogram_normality(h, np.array([4000.0]))
    >>> bool(result.ks_d[0] < 0.03 and result.ad_pvalue[0] > 0.01)
    True
    """
    from .normality import anderson_darling_pvalue, lilliefors_pvalue

    histogram = np.asarray(histogram, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(n / (n - 1))  # std(ddof=1) / std(ddof=0): the Lilliefors/AD normal
    fitted = histogram_cdf_statistics(histogram)
    sample = histogram_cdf_statistics(histogram, scale=ratio)
    ad = np.where(~(n >= 8), np.nan, sample.ad_statistic)
    lilliefors = np.where(~(n >= 4), np.nan, sample.ks_d)
    median = histogram_quantiles(histogram, [0.5])[0][..., 0]
    bins = histogram.shape[-1] - 4
    edges = histogram_edges(bins)
    middles = (edges[:-1] + edges[1:]) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mad = (histogram[..., :bins] * np.abs(middles - median[..., None])).sum(axis=-1) / n
    return HistogramNormality(
        ad_statistic=ad, ad_pvalue=anderson_darling_pvalue(ad, n),
        lilliefors_statistic=lilliefors, lilliefors_pvalue=lilliefors_pvalue(lilliefors, n),
        ks_d=fitted.ks_d, w1_normal=fitted.w1,
        best_family_index=histogram_best_family(histogram, median, mad, families=families),
        ks_d_error=fitted.ks_d_error, w1_normal_error=fitted.w1_error, ad_statistic_error=sample.ad_statistic_error,
    )
