"""Mergeable central moments and the statistics derived from them.

A moment array has a last axis of length 5: ``[count, mean, M2, M3, M4]`` where
``Mk = sum((x - mean) ** k)`` over the non-NaN values. Moment arrays of disjoint chunks
merge exactly (Chan, Golub & LeVeque 1979; Pébay 2008), so a store read in chunks gives
the numbers of the same store read whole. An empty chunk is ``[0, nan, 0, 0, 0]`` and is
the identity of the merge.

About 740 lines in one module: the compiled one-pass kernels (tiles merged as the moment
arrays are, and their vectorised variant for the weight fit) must compute exactly what the
merge rules below define, and are tested against them; the module's other half is docstrings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._jit import jit
from ._rows import Axis, as_rows, normalize_axis

__all__ = [
    "MOMENT_FIELDS",
    "MomentStatistics",
    "combine_moments",
    "merge_moments",
    "moment_statistics",
    "moments",
    "moments_extremes",
]

#: Names of the entries of the last axis of a moment array.
MOMENT_FIELDS = ("count", "mean", "M2", "M3", "M4")
#: Values per tile of the compiled one-pass moments (two passes inside a tile, in L1 cache).
MOMENT_TILE = 256


def moments(x, axis: Axis = -1) -> np.ndarray:
    """Count, mean and central sums of powers 2–4 of the non-NaN values.

    Parameters
    ----------
    x : array_like
        Data; NaN is padding and is skipped.
    axis : int, tuple of int or None, default -1
        Axes to reduce (None: all).

    Returns
    -------
    ndarray, shape (..., 5), float64
        ``[count, mean, M2, M3, M4]`` with ``Mk = sum((x - mean)**k)``; the reduced axes
        are removed and the moment axis is last.

    Notes
    -----
    Two passes in float64: the mean, then the sums of powers of the deviations; the
    round-off of the mean is removed exactly with the shift identities
    (``Σ(d-δ)² = Σd² - nδ²`` and so on). Memory: a few float64 copies of the input.

    Verification: equal to ``scipy.stats.moment`` times ``n`` and to ``numpy.mean`` on
    random data, on NIST StRD NumAcc1–4 (certified mean and standard deviation), and
    merging chunks equals the whole (``tests/test_kernels_moments.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import moments
    >>> moments(np.array([1.0, 2.0, 3.0, np.nan]))
    array([3., 2., 2., 0., 2.])
    """
    rows = as_rows(x, axis)
    values = rows.values
    valid = rows.valid
    count = rows.counts.astype(np.float64)
    full = bool(valid.all())  # no padding: the same sums without the masked copies
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (values if full else rows.zeroed()).sum(axis=1) / count
        deviation = values - mean[:, None]
        if not full:
            deviation[~valid] = 0.0
        shift = deviation.sum(axis=1) / count
        square = deviation * deviation
        m2 = square.sum(axis=1)
        product = np.multiply(square, deviation)
        m3 = product.sum(axis=1)
        m4 = np.multiply(square, square, out=product).sum(axis=1)
        empty = count == 0
        shift = np.where(empty, 0.0, shift)
        # exact re-centring on the corrected mean (removes the mean's round-off)
        m4 = m4 - 4 * shift * m3 + 6 * shift**2 * m2 - 3 * count * shift**4
        m3 = m3 - 3 * shift * m2 + 2 * count * shift**3
        m2 = m2 - count * shift**2
        mean = mean + shift
    result = np.stack([count, mean, m2, m3, m4], axis=-1)
    result[empty, 1] = np.nan
    result[empty, 2:] = 0.0
    return rows.unflatten(result)


def moments_extremes(x) -> np.ndarray:
    """:func:`moments` and the smallest and largest value over the last axis, in one compiled pass.

    Parameters
    ----------
    x : array_like (..., m)
        Data; NaN is skipped (read as float64).

    Returns
    -------
    ndarray (..., 7), float64
        ``[count, mean, M2, M3, M4, min, max]``; an empty row is ``[0, nan, 0, 0, 0, inf, -inf]``.

    Notes
    -----
    One pass over the values (the streamed weight fits: one chunk, one loop). The values
    are taken in tiles of :data:`MOMENT_TILE`; inside a tile, which stays in L1 cache, the
    moments are computed as :func:`moments` does (the mean, then the sums of powers of the
    deviations, re-centred exactly on the corrected mean); tiles merge with
    :func:`merge_moments`' formulas as a binary counter (pairwise, so the rounding grows
    with log2 of the number of tiles, as numpy's pairwise sums do). Inside a tile the sums
    run over interleaved accumulators (four for the mean, two for the powers) in a fixed
    order. The values are taken relative to the mean of a row's first 256 values, so that
    far from 0 the tiles' means differ by small numbers; this adds a relative error of
    about ``u |that mean - mean| / std`` (u = 2**-53), negligible unless a row's first
    values lie thousands of standard deviations from the rest.

    Bound: against :func:`moments` the count, min and max are equal; the mean differs by
    at most ``1e-12 (|mean| + std)``, M2 and M4 by at most ``1e-12`` relative and M3 by
    at most ``1e-12 sqrt(M2 M4)`` (both are float64 algorithms whose rounding is a few
    ulps times log2(m); ``tests/test_kernels_moments_compiled.py`` checks the bound on
    offset, heavy-tailed, constant, padded and sorted data).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels.moments import moments_extremes
    >>> moments_extremes(np.array([1.0, 2.0, 3.0, np.nan])).tolist()
    [3.0, 2.0, 2.0, 0.0, 2.0, 1.0, 3.0]
    """
    values = np.asarray(x, dtype=np.float64)
    lead = values.shape[:-1]
    rows = np.ascontiguousarray(values.reshape(int(np.prod(lead, dtype=np.int64)), values.shape[-1]))
    out = np.empty((rows.shape[0], 7))
    _moments_extremes_rows(rows, _ALL_EXIST, False, MOMENT_TILE, out, _NO_COUNTS)
    return out.reshape(lead + (7,))


#: ``exists`` of a block whose values all exist, and the counts a public call does not keep.
_ALL_EXIST = np.zeros((0, 0), dtype=np.bool_)
_NO_COUNTS = np.zeros(0, dtype=np.int64)


def moments_extremes_block(rows, exists=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`moments_extremes` of a block's rows as they are stored, and each row's count of
    values that exist but are not finite.

    Parameters
    ----------
    rows : ndarray (n, m), float32 or float64
        Read in their own dtype (each value converted to float64 exactly, as a float64 copy
        would hold it).
    exists : ndarray (n, m) of bool, optional
        Which values exist (default: all). Values that do not exist are skipped whatever
        they hold; values that exist but are NaN or ±inf are skipped and counted.

    Returns
    -------
    (summary (n, 7), nonfinite (n,) int64)
        The summary equals, bit for bit, :func:`moments_extremes` of the float64 rows with
        every skipped value replaced by NaN (the same values at the same positions, so the
        same tiles and the same operations).
    """
    rows = np.asarray(rows)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    rows = np.ascontiguousarray(rows)
    exists = _ALL_EXIST if exists is None else np.ascontiguousarray(exists, dtype=np.bool_)
    out = np.empty((rows.shape[0], 7))
    nonfinite = np.zeros(rows.shape[0], dtype=np.int64)
    _moments_extremes_rows(rows, exists, True, MOMENT_TILE, out, nonfinite)
    return out, nonfinite


@jit
def _moments_extremes_rows(rows, exists, clean, tile, out, nonfinite):
    """Per row: count, mean, M2, M3, M4 (tiles merged pairwise), min, max; NaN skipped.

    ``exists`` (n, m) or (0, 0) (all exist): values that do not exist are skipped. With
    ``clean``, ±inf is skipped too and the NaN and ±inf that exist are counted in
    ``nonfinite`` (otherwise ±inf enters the sums, as in :func:`moments_extremes`)."""

    def tile_moments(buf, nt):
        # as moments(): the mean, the sums of powers of the deviations, the exact re-centring
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        k = 0
        while k + 4 <= nt:
            a0 += buf[k]
            a1 += buf[k + 1]
            a2 += buf[k + 2]
            a3 += buf[k + 3]
            k += 4
        while k < nt:
            a0 += buf[k]
            k += 1
        count = float(nt)
        mean = ((a0 + a1) + (a2 + a3)) / count
        s1a = 0.0
        s1b = 0.0
        s2a = 0.0
        s2b = 0.0
        s3a = 0.0
        s3b = 0.0
        s4a = 0.0
        s4b = 0.0
        k = 0
        while k + 2 <= nt:
            d = buf[k] - mean
            e = buf[k + 1] - mean
            d2 = d * d
            e2 = e * e
            s1a += d
            s1b += e
            s2a += d2
            s2b += e2
            s3a += d2 * d
            s3b += e2 * e
            s4a += d2 * d2
            s4b += e2 * e2
            k += 2
        if k < nt:
            d = buf[k] - mean
            d2 = d * d
            s1a += d
            s2a += d2
            s3a += d2 * d
            s4a += d2 * d2
        shift = (s1a + s1b) / count
        m2 = s2a + s2b
        m3 = s3a + s3b
        m4 = s4a + s4b
        m4 = m4 - 4 * shift * m3 + 6 * shift**2 * m2 - 3 * count * shift**4
        m3 = m3 - 3 * shift * m2 + 2 * count * shift**3
        m2 = m2 - count * shift**2
        return count, mean + shift, m2, m3, m4

    def merge(na, mean_a, m2a, m3a, m4a, nb, mean_b, m2b, m3b, m4b):
        # merge_moments' formulas (Pébay 2008), the same order of operations
        if na == 0:
            return nb, mean_b, m2b, m3b, m4b
        if nb == 0:
            return na, mean_a, m2a, m3a, m4a
        n = na + nb
        delta = mean_b - mean_a
        product = na * nb
        mean = mean_a + delta * nb / n
        m2 = m2a + m2b + delta**2 * product / n
        m3 = m3a + m3b + delta**3 * product * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * m2a) / n
        m4 = (m4a + m4b + delta**4 * product * (na**2 - product + nb**2) / n**3
              + 6 * delta**2 * (na**2 * m2b + nb**2 * m2a) / n**2 + 4 * delta * (na * m3b - nb * m3a) / n)
        return n, mean, m2, m3, m4

    n_rows, width = rows.shape
    masked = exists.shape[0] > 0
    buf = np.empty(tile)
    levels = np.zeros((64, 5))
    used = np.zeros(64, dtype=np.bool_)
    for r in range(n_rows):
        used[:] = False
        smallest = np.inf
        largest = -np.inf
        # the values are taken relative to the mean of the first `tile` of them, so that the
        # tiles' means and their differences are small numbers where the data sit far from 0
        origin = 0.0
        nt = 0
        for i in range(width):
            if masked and not exists[r, i]:
                continue
            v = rows[r, i]
            if v == v and not (clean and (v == np.inf or v == -np.inf)):
                origin += v
                nt += 1
                if nt == tile:
                    break
        origin = origin / nt if nt else 0.0
        tiles = (width + tile - 1) // tile
        for t in range(tiles + 1):  # the last step merges what the counter holds
            flush = t == tiles
            n, mean, m2, m3, m4 = 0.0, np.nan, 0.0, 0.0, 0.0
            if not flush:
                nt = 0
                for i in range(t * tile, min(t * tile + tile, width)):
                    if masked and not exists[r, i]:
                        continue
                    v = rows[r, i]
                    if v != v or (clean and (v == np.inf or v == -np.inf)):
                        if clean:
                            nonfinite[r] += 1
                        continue
                    buf[nt] = v - origin
                    nt += 1
                    if v < smallest:
                        smallest = v
                    if v > largest:
                        largest = v
                if nt == 0:
                    continue
                n, mean, m2, m3, m4 = tile_moments(buf, nt)
            level = 0
            while level < 64 and (used[level] or flush):  # binary counter: merge equal-sized parts
                if used[level]:
                    n, mean, m2, m3, m4 = merge(levels[level, 0], levels[level, 1], levels[level, 2],
                                                levels[level, 3], levels[level, 4], n, mean, m2, m3, m4)
                    used[level] = False
                level += 1
            if not flush:
                levels[level, 0] = n
                levels[level, 1] = mean
                levels[level, 2] = m2
                levels[level, 3] = m3
                levels[level, 4] = m4
                used[level] = True
        out[r, 0] = n
        out[r, 1] = mean + origin
        out[r, 2] = m2
        out[r, 3] = m3
        out[r, 4] = m4
        out[r, 5] = smallest
        out[r, 6] = largest


def merge_moments(a, b) -> np.ndarray:
    """Merge the moment arrays of two disjoint sets of values exactly.

    Parameters
    ----------
    a, b : array_like, shape (..., 5)
        Moment arrays from :func:`moments` (broadcast against each other).

    Returns
    -------
    ndarray, shape (..., 5)
        The moments of the union.

    Notes
    -----
    With ``n = na + nb`` and ``δ = mean_b - mean_a`` (Pébay 2008, eqs. 1.1–1.4)::

        mean = mean_a + δ nb / n
        M2 = M2a + M2b + δ² na nb / n
        M3 = M3a + M3b + δ³ na nb (na - nb) / n² + 3δ (na M2b - nb M2a) / n
        M4 = M4a + M4b + δ⁴ na nb (na² - na nb + nb²) / n³
             + 6δ² (na² M2b + nb² M2a) / n² + 4δ (na M3b - nb M3a) / n

    An empty side (count 0) returns the other side unchanged.

    Verification: merging hypothesis-generated chunks equals :func:`moments` of the
    whole to 1e-10 relative (``tests/test_kernels_moments.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import merge_moments, moments
    >>> x = np.arange(10.0)
    >>> bool(np.allclose(merge_moments(moments(x[:3]), moments(x[3:])), moments(x)))
    True
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    na, mean_a, m2a, m3a, m4a = np.moveaxis(a, -1, 0)
    nb, mean_b, m2b, m3b, m4b = np.moveaxis(b, -1, 0)
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = mean_b - mean_a
        product = na * nb
        mean = mean_a + delta * nb / n
        m2 = m2a + m2b + delta**2 * product / n
        m3 = (
            m3a + m3b
            + delta**3 * product * (na - nb) / n**2
            + 3 * delta * (na * m2b - nb * m2a) / n
        )
        m4 = (
            m4a + m4b
            + delta**4 * product * (na**2 - product + nb**2) / n**3
            + 6 * delta**2 * (na**2 * m2b + nb**2 * m2a) / n**2
            + 4 * delta * (na * m3b - nb * m3a) / n
        )
    merged = np.stack([n, mean, m2, m3, m4], axis=-1)
    merged = np.where((na == 0)[..., None], b, merged)
    merged = np.where((nb == 0)[..., None], a, merged)
    return merged


def combine_moments(m, axis: Axis = 0) -> np.ndarray:
    """Merge many moment arrays along ``axis`` (the moment axis itself excluded).

    Parameters
    ----------
    m : array_like, shape (..., 5)
        Moment arrays of disjoint chunks.
    axis : int, tuple of int or None, default 0
        Axes of ``m[..., 0]`` to merge over.

    Returns
    -------
    ndarray, shape (..., 5)

    Notes
    -----
    Vectorised form of repeated :func:`merge_moments`: with the grand mean ``μ`` and
    ``d_i = mean_i - μ``, ``M2 = Σ(M2_i + n_i d_i²)``,
    ``M3 = Σ(M3_i + 3 d_i M2_i + n_i d_i³)``,
    ``M4 = Σ(M4_i + 4 d_i M3_i + 6 d_i² M2_i + n_i d_i⁴)`` (exact binomial shift).

    Verification: equals a fold of :func:`merge_moments` and :func:`moments` of the
    whole (``tests/test_kernels_moments.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import combine_moments, moments
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> bool(np.allclose(combine_moments(moments(x, axis=1), axis=0), moments(x, axis=None)))
    True
    """
    m = np.asarray(m, dtype=np.float64)
    axes = normalize_axis(axis, m.ndim - 1)
    n_i = m[..., 0]
    present = n_i > 0
    mean_i = np.where(present, m[..., 1], 0.0)
    m2_i, m3_i, m4_i = m[..., 2], m[..., 3], m[..., 4]
    n = n_i.sum(axis=axes, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (n_i * mean_i).sum(axis=axes, keepdims=True) / n
        d = np.where(present, mean_i - mean, 0.0)
        m2 = (m2_i + n_i * d**2).sum(axis=axes)
        m3 = (m3_i + 3 * d * m2_i + n_i * d**3).sum(axis=axes)
        m4 = (m4_i + 4 * d * m3_i + 6 * d**2 * m2_i + n_i * d**4).sum(axis=axes)
    n = n.squeeze(axis=axes)
    mean = np.where(n > 0, mean.squeeze(axis=axes), np.nan)
    return np.stack([n, mean, m2, m3, m4], axis=-1)


@dataclass(frozen=True, slots=True)
class MomentStatistics:
    """Descriptive statistics computed from a moment array (fields are arrays).

    Attributes
    ----------
    n : number of values.
    mean : arithmetic mean.
    variance, std : with the ``ddof`` recorded below.
    skewness : ``g1 = m3 / m2**1.5`` (``bias=True``, as ``scipy.stats.skew``) or the
        adjusted ``G1 = g1 sqrt(n(n-1)) / (n-2)`` (``bias=False``).
    excess_kurtosis : ``g2 = m4 / m2**2 - 3`` (``bias=True``, as
        ``scipy.stats.kurtosis``) or ``G2 = ((n+1) g2 + 6)(n-1) / ((n-2)(n-3))``.
    skewness_standard_error : ``sqrt(6n(n-1) / ((n-2)(n+1)(n+3)))``, the exact standard
        deviation of ``G1`` for normal samples (NaN for n < 3).
    excess_kurtosis_standard_error : ``2 SES sqrt((n²-1) / ((n-3)(n+5)))``, the exact
        standard deviation of ``G2`` for normal samples (NaN for n < 4).
    ddof, bias : the options used.
    """

    n: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    std: np.ndarray
    skewness: np.ndarray
    excess_kurtosis: np.ndarray
    skewness_standard_error: np.ndarray
    excess_kurtosis_standard_error: np.ndarray
    ddof: int
    bias: bool


def _standardized_moments(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n, biased g1 and g2 from a moment array; NaN where the variance is 0."""
    n, mean, m2, m3, m4 = np.moveaxis(np.asarray(m, dtype=np.float64), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        variance = m2 / n
        # scipy.stats.skew's rule: a variance at the round-off level of the mean is 0
        constant = variance <= (np.finfo(np.float64).resolution * mean) ** 2
        g1 = (m3 / n) / variance**1.5
        g2 = (m4 / n) / variance**2 - 3.0
    g1 = np.where(constant | (n < 1), np.nan, g1)
    g2 = np.where(constant | (n < 1), np.nan, g2)
    return n, g1, g2


def moment_statistics(m, *, ddof: int = 0, bias: bool = True) -> MomentStatistics:
    """Mean, standard deviation, skewness, excess kurtosis and their standard errors.

    Parameters
    ----------
    m : array_like, shape (..., 5)
        Moment array from :func:`moments` / :func:`merge_moments`.
    ddof : int, default 0
        Delta degrees of freedom of ``variance`` and ``std`` (0: population, as
        ``numpy.std``; 1: sample).
    bias : bool, default True
        True: the moment estimators ``g1``, ``g2`` (scipy's defaults). False: the
        adjusted ``G1``, ``G2`` (scipy's ``bias=False``; SAS, Excel).

    Returns
    -------
    MomentStatistics

    Notes
    -----
    The standard errors are those of ``G1`` and ``G2`` under normality (Joanes & Gill
    1998, "Comparing measures of sample skewness and kurtosis", The Statistician 47,
    183–189); they are the ones SPSS and SAS print and serve as the yardstick for both
    ``bias`` settings.

    Verification: ``skewness``/``excess_kurtosis`` equal ``scipy.stats.skew`` /
    ``scipy.stats.kurtosis`` (both ``bias`` settings) to 1e-10; ``std`` equals
    ``numpy.std``; the standard errors equal the closed forms above and, by
    simulation, the standard deviation of ``G1``/``G2`` of normal samples
    (``tests/test_kernels_moments.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import moment_statistics, moments
    >>> statistics = moment_statistics(moments(np.array([1.0, 2.0, 3.0, 10.0])), ddof=1)
    >>> print(round(float(statistics.std), 4), round(float(statistics.skewness), 4))
    4.0825 1.0182
    """
    m = np.asarray(m, dtype=np.float64)
    n, g1, g2 = _standardized_moments(m)
    m2 = m[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(n - ddof > 0, m2 / (n - ddof), np.nan)
        std = np.sqrt(variance)
        if bias:
            skewness, excess_kurtosis = g1, g2
        else:
            skewness = np.where(n > 2, g1 * np.sqrt(n * (n - 1)) / (n - 2), np.nan)
            excess_kurtosis = np.where(
                n > 3, ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3)), np.nan
            )
        ses = np.where(n > 2, np.sqrt(6 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3))), np.nan)
        sek = np.where(n > 3, 2 * ses * np.sqrt((n**2 - 1) / ((n - 3) * (n + 5))), np.nan)
    return MomentStatistics(
        n=n,
        mean=np.where(n > 0, m[..., 1], np.nan),
        variance=variance,
        std=std,
        skewness=skewness,
        excess_kurtosis=excess_kurtosis,
        skewness_standard_error=ses,
        excess_kurtosis_standard_error=sek,
        ddof=ddof,
        bias=bias,
    )


def moments_extremes_lanes(rows, exists=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`moments_extremes` with the tile sums in vector lanes: the streamed weight fit's
    first pass (``MOMENTS_EXTREMA``), 3–4× faster on a block.

    Parameters
    ----------
    rows : ndarray (n, m), float32 or float64
        Read in their own dtype (each value converted to float64 exactly).
    exists : ndarray (n, m) of bool, optional
        Which values exist (default: all); values that do not exist are skipped whatever they
        hold, values that exist and are NaN or ±inf are skipped and counted (the engine's
        cleaning; on the engine's cleaned copy, NaN wherever a value was skipped, the same
        values count, by the same compiled loops: the block and the engine paths agree bit
        for bit).

    Returns
    -------
    (summary (n, 7), nonfinite (n,) int64)
        ``[count, mean, M2, M3, M4, min, max]`` as :func:`moments_extremes` lays it out.

    Notes
    -----
    The tiles, origin, re-centring and pairwise merge of :func:`moments_extremes`; inside a
    tile two branch-free loops (the count and the mean, then the sums of powers; a skipped
    value enters as 0 with weight 0) compiled with ``fastmath={"reassoc"}`` only, so the
    sums are kept in vector lanes in an order the compiled code fixes (the same on every
    call). The smallest and largest value are integer minima of the values' bit patterns
    ordered as the floats are (``b ^ ((b >> 63) & 0x7FFF...)``), which vectorise as float
    comparisons with a skip do not; -0.0 orders below +0.0 (the float comparison would keep
    whichever came first: the same value).

    Bound: against :func:`moments` the count, min and max are equal (as values); the mean
    within ``1e-12 (|mean| + std)``, M2 and M4 within 1e-12 relative, M3 within
    ``1e-12 sqrt(M2 M4)``, the bound of :func:`moments_extremes`, which holds for any order
    of a tile's sums (``tests/test_kernels_compiled.py``).
    """
    rows = np.asarray(rows)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    rows = np.ascontiguousarray(rows)
    n_rows, width = rows.shape
    masked = exists is not None
    exists = (np.ascontiguousarray(exists, dtype=np.bool_) if masked else np.ones((1, width), dtype=np.bool_))
    out = np.empty((n_rows, 7))
    nonfinite = np.zeros(n_rows, dtype=np.int64)
    _moments_lanes_rows(rows, exists, masked, MOMENT_TILE, out, nonfinite)
    if rows.dtype == np.float32:
        itype, top, shift = np.int32, np.int32(0x7FFFFFFF), np.int32(31)
        exponent = np.int32(0x7F800000)
    else:
        itype, top, shift = np.int64, np.int64(0x7FFFFFFFFFFFFFFF), np.int64(63)
        exponent = np.int64(0x7FF0000000000000)
    keys = np.empty((n_rows, 2), dtype=itype)
    _extreme_keys(rows.view(itype), exists, masked, top, shift, exponent, keys)
    values = (keys ^ ((keys >> shift) & top)).view(rows.dtype).astype(np.float64)
    empty = out[:, 0] == 0
    out[:, 5] = np.where(empty, np.inf, values[:, 0])
    out[:, 6] = np.where(empty, -np.inf, values[:, 1])
    return out, nonfinite


@jit
def _extreme_keys(bits, exists, masked, top, shift, exponent, keys):
    """Per row, the smallest and largest ordered key ``b ^ ((b >> shift) & top)`` of the values
    that count (exist and are finite): integer reductions, vectorised."""
    n_rows, width = bits.shape
    for r in range(n_rows):
        row = bits[r]
        present = exists[r if masked else 0]
        lowest = top
        highest = -top - 1
        for i in range(width):
            b = row[i]
            ok = present[i] & ((b & exponent) != exponent)  # exists, not NaN or ±inf
            key = b ^ ((b >> shift) & top)
            lowest = min(lowest, key if ok else top)
            highest = max(highest, key if ok else -top - 1)
        keys[r, 0] = lowest
        keys[r, 1] = highest


@jit(fastmath={"reassoc"})
def _moments_lanes_rows(rows, exists, masked, tile, out, nonfinite):
    """Per row: count, mean, M2, M3, M4 of the values that exist and are finite into
    ``out[:, :5]`` (tiles merged pairwise) and the count of values that exist and are not
    finite into ``nonfinite``."""

    def merge(na, mean_a, m2a, m3a, m4a, nb, mean_b, m2b, m3b, m4b):
        # merge_moments' formulas (Pébay 2008), the same order of operations
        if na == 0:
            return nb, mean_b, m2b, m3b, m4b
        if nb == 0:
            return na, mean_a, m2a, m3a, m4a
        n = na + nb
        delta = mean_b - mean_a
        product = na * nb
        mean = mean_a + delta * nb / n
        m2 = m2a + m2b + delta**2 * product / n
        m3 = m3a + m3b + delta**3 * product * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * m2a) / n
        m4 = (m4a + m4b + delta**4 * product * (na**2 - product + nb**2) / n**3
              + 6 * delta**2 * (na**2 * m2b + nb**2 * m2a) / n**2 + 4 * delta * (na * m3b - nb * m3a) / n)
        return n, mean, m2, m3, m4

    n_rows, width = rows.shape
    levels = np.zeros((64, 5))
    used = np.zeros(64, dtype=np.bool_)
    for r in range(n_rows):
        row = rows[r]
        present = exists[r if masked else 0]
        used[:] = False
        # the values are taken relative to the mean of the first `tile` of them (see moments_extremes)
        origin = 0.0
        nt = 0
        for i in range(width):
            v = np.float64(row[i])
            if present[i] and v - v == 0.0:
                origin += v
                nt += 1
                if nt == tile:
                    break
        origin = origin / nt if nt else 0.0
        skipped = 0
        tiles = (width + tile - 1) // tile
        for t in range(tiles + 1):  # the last step merges what the counter holds
            flush = t == tiles
            n, mean, m2, m3, m4 = 0.0, np.nan, 0.0, 0.0, 0.0
            if not flush:
                start = t * tile
                stop = min(start + tile, width)
                # views indexed from 0: the compiler sees non-negative indices and vectorises
                values = row[start:stop]
                here = present[start:stop]
                m = stop - start
                count = 0
                bad = 0
                total = 0.0
                for i in range(m):
                    v = np.float64(values[i])
                    ok = here[i] & (v - v == 0.0)  # exists, not NaN or ±inf
                    bad += here[i] & (v - v != 0.0)
                    count += ok
                    total += (v - origin) if ok else 0.0
                skipped += bad
                if count == 0:
                    continue
                n = float(count)
                centre = total / n
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                s4 = 0.0
                for i in range(m):
                    v = np.float64(values[i])
                    ok = here[i] & (v - v == 0.0)
                    d = ((v - origin) - centre) if ok else 0.0
                    d2 = d * d
                    s1 += d
                    s2 += d2
                    s3 += d2 * d
                    s4 += d2 * d2
                shift = s1 / n  # as moments(): the exact re-centring
                m4 = s4 - 4 * shift * s3 + 6 * shift**2 * s2 - 3 * n * shift**4
                m3 = s3 - 3 * shift * s2 + 2 * n * shift**3
                m2 = s2 - n * shift**2
                mean = centre + shift
            level = 0
            while level < 64 and (used[level] or flush):  # binary counter: merge equal-sized parts
                if used[level]:
                    n, mean, m2, m3, m4 = merge(levels[level, 0], levels[level, 1], levels[level, 2],
                                                levels[level, 3], levels[level, 4], n, mean, m2, m3, m4)
                    used[level] = False
                level += 1
            if not flush:
                levels[level, 0] = n
                levels[level, 1] = mean
                levels[level, 2] = m2
                levels[level, 3] = m3
                levels[level, 4] = m4
                used[level] = True
        out[r, 0] = n
        out[r, 1] = mean + origin
        out[r, 2] = m2
        out[r, 3] = m3
        out[r, 4] = m4
        nonfinite[r] = skipped
