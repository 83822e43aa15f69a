"""Normality: tests from mergeable moments, tests on data in memory, effect sizes.

With 10⁵–10⁹ values every normality test rejects, so next to the tests this module
gives effect sizes that do not grow with n: the Kolmogorov–Smirnov distance and the
Wasserstein-1 distance from the data to the normal fitted to them.

Why one module of ~1180 lines (its compiled one-sort kernels included): one topic (normality tests and effect sizes); about half
of it is docstrings with the references each test is verified against. The one-sort path
(:class:`SortedSample`, :func:`normality_statistics`: every CDF statistic from a single
sort, for ``weight_normality``) and the single tests share the normal-tail helpers and the
p-value tables, and each calls the other's: split, the two modules would import each other.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from ._jit import jit
from ._rows import DEFAULT_SEED, Axis, Rows, as_rows
from .moments import _standardized_moments, moments

__all__ = [
    "DAgostinoPearsonResult",
    "NormalityStatistics",
    "NormalityTestResult",
    "SHAPIRO_MAX_SIZE",
    "SortedSample",
    "anderson_darling",
    "dagostino_pearson",
    "jarque_bera",
    "ks_distance_normal",
    "lilliefors",
    "normality_statistics",
    "shapiro_wilk",
    "sort_sample",
    "wasserstein_normal",
]

#: Shapiro–Wilk runs on a deterministic subsample of at most this many values
#: (the limit of the Royston 1995 p-value approximation that scipy implements).
SHAPIRO_MAX_SIZE = 5000


@dataclass(frozen=True, slots=True)
class NormalityTestResult:
    """Result of a test of normality (fields are arrays over the kept axes).

    Attributes
    ----------
    statistic, pvalue : the test statistic and its p-value.
    n : number of non-NaN values in each group.
    n_used : number of values the test was computed on (``< n`` when subsampled).
    method : name of the test and of its p-value method.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    n: np.ndarray
    n_used: np.ndarray
    method: str


@dataclass(frozen=True, slots=True)
class DAgostinoPearsonResult:
    """D'Agostino–Pearson K²: ``statistic = skewness_z² + kurtosis_z²`` ~ χ²(2).

    Attributes
    ----------
    statistic, pvalue : K² and its χ²(2) upper-tail probability.
    skewness_z : D'Agostino's (1970) normalising transform of ``g1`` (``skewtest``).
    kurtosis_z : Anscombe & Glynn's (1983) transform of ``b2`` (``kurtosistest``).
    n : number of values.
    method : description.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    skewness_z: np.ndarray
    kurtosis_z: np.ndarray
    n: np.ndarray
    method: str


def _moment_input(m, x, axis):
    if (m is None) == (x is None):
        raise TypeError("give exactly one of a moment array `m` or data `x`")
    return moments(x, axis) if m is None else np.asarray(m, dtype=np.float64)


def dagostino_pearson(m=None, *, x=None, axis: Axis = -1) -> DAgostinoPearsonResult:
    """D'Agostino–Pearson omnibus K² test of normality, from moments.

    Parameters
    ----------
    m : array_like, shape (..., 5), optional
        Moment array (:func:`~actstats.kernels.moments`), e.g. merged over chunks.
    x : array_like, optional
        Data instead of ``m`` (NaN skipped), reduced over ``axis``.
    axis : int, tuple of int or None, default -1
        Axes of ``x`` to reduce; ignored with ``m``.

    Returns
    -------
    DAgostinoPearsonResult
        NaN where n < 8 (the skewness transform needs n ≥ 8).

    Notes
    -----
    Same formulas as ``scipy.stats.skewtest`` (D'Agostino, Belanger & D'Agostino 1990),
    ``kurtosistest`` (Anscombe & Glynn 1983) and ``normaltest`` (D'Agostino & Pearson
    1973). A zero denominator in the kurtosis transform gives NaN.

    Verification: equal to ``scipy.stats.normaltest`` (statistic and p-value) to 1e-10
    relative, live and against ``tests/reference/normality.json``; type-I error at
    α = 0.05 checked by simulation (``tests/test_kernels_calibration.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import dagostino_pearson
    >>> x = np.random.default_rng(0).normal(size=(3, 500))
    >>> dagostino_pearson(x=x, axis=1).pvalue.shape
    (3,)
    """
    m = _moment_input(m, x, axis)
    n, g1, g2 = _standardized_moments(m)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        n = np.where(n < 8, np.nan, n)
        # skewtest
        y = g1 * np.sqrt(((n + 1) * (n + 3)) / (6.0 * (n - 2)))
        beta2 = 3.0 * (n**2 + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
        w2 = -1 + np.sqrt(2 * (beta2 - 1))
        delta = 1 / np.sqrt(0.5 * np.log(w2))
        alpha = np.sqrt(2.0 / (w2 - 1))
        y = np.where(y == 0, 1.0, y)
        z_skew = delta * np.log(y / alpha + np.sqrt((y / alpha) ** 2 + 1))
        # kurtosistest (b2 = g2 + 3)
        b2 = g2 + 3.0
        expected = 3.0 * (n - 1) / (n + 1)
        variance_b2 = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) * (n + 1.0) * (n + 3) * (n + 5))
        standardized = (b2 - expected) / np.sqrt(variance_b2)
        sqrt_beta1 = 6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9)) * np.sqrt(
            (6.0 * (n + 3) * (n + 5)) / (n * (n - 2) * (n - 3))
        )
        a = 6.0 + 8.0 / sqrt_beta1 * (2.0 / sqrt_beta1 + np.sqrt(1 + 4.0 / sqrt_beta1**2))
        term1 = 1 - 2 / (9.0 * a)
        denominator = 1 + standardized * np.sqrt(2 / (a - 4.0))
        term2 = np.sign(denominator) * np.where(
            denominator == 0.0, np.nan, np.cbrt((1 - 2.0 / a) / np.abs(denominator))
        )
        z_kurtosis = (term1 - term2) / np.sqrt(2 / (9.0 * a))
        statistic = z_skew**2 + z_kurtosis**2
        pvalue = stats.chi2.sf(statistic, 2)
    return DAgostinoPearsonResult(
        statistic=statistic,
        pvalue=np.asarray(pvalue),
        skewness_z=z_skew,
        kurtosis_z=z_kurtosis,
        n=m[..., 0],
        method="D'Agostino-Pearson K^2 (chi-square, 2 df)",
    )


def jarque_bera(m=None, *, x=None, axis: Axis = -1) -> NormalityTestResult:
    """Jarque–Bera test of normality, from moments.

    ``JB = n/6 (g1² + g2²/4)`` with the biased moment estimators, referred to χ²(2).

    Parameters
    ----------
    m : array_like, shape (..., 5), optional
        Moment array.
    x : array_like, optional
        Data instead of ``m``, reduced over ``axis``.
    axis : int, tuple of int or None, default -1

    Returns
    -------
    NormalityTestResult

    Notes
    -----
    The χ² reference is asymptotic; the test is conservative-to-liberal for n below a
    few thousand (scipy's docstring suggests n > 2000).

    Verification: equal to ``scipy.stats.jarque_bera`` to 1e-10 relative, live and
    against ``tests/reference/normality.json``; type-I error at n = 2000 checked by
    simulation.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import jarque_bera
    >>> result = jarque_bera(x=np.random.default_rng(0).laplace(size=5000))
    >>> bool(result.pvalue < 1e-6)
    True
    """
    m = _moment_input(m, x, axis)
    n, g1, g2 = _standardized_moments(m)
    with np.errstate(invalid="ignore"):
        statistic = n / 6 * (g1**2 + g2**2 / 4)
    return NormalityTestResult(
        statistic=statistic,
        pvalue=np.asarray(stats.chi2.sf(statistic, 2)),
        n=n,
        n_used=n,
        method="Jarque-Bera (chi-square, 2 df)",
    )


@dataclass(frozen=True, slots=True)
class SortedSample:
    """Groups sorted once, for every statistic that needs order statistics.

    Made by :func:`sort_sample`; :func:`normality_statistics`, :func:`anderson_darling`,
    :func:`lilliefors`, :func:`ks_distance_normal`, :func:`wasserstein_normal` and
    :func:`actstats.kernels.fit_families` accept it in place of data, so that a group is
    sorted once whatever is asked of it.

    Attributes
    ----------
    ordered : ndarray, shape (n_rows, m), float64
        Each group's values sorted ascending, NaN (padding) last.
    counts : ndarray of int, shape (n_rows,)
        Number of values of each group.
    full : bool
        No group has padding (every count is m): the masks are skipped.
    rows : Rows
        The unsorted groups (for subsamples in their original order, and the output shape).
    row_sums : dict
        Sums of the rows that one statistic computed and another reads (filled in, not
        compared): ``"mean_squares"``, each row's mean and ``Σ(x - mean)²`` as
        :func:`normality_statistics` computes them, which the normal fit of
        :func:`actstats.kernels.fit_families` computes the same way.
    """

    ordered: np.ndarray
    counts: np.ndarray
    full: bool
    rows: Rows
    row_sums: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def valid(self) -> np.ndarray:
        """``(n_rows, m)`` mask of the values (not the padding)."""
        return np.arange(self.ordered.shape[1])[None, :] < self.counts[:, None]

    def sum(self, a: np.ndarray) -> np.ndarray:
        """Row sums of an ``(n_rows, m)`` array computed from ``ordered``, padding skipped."""
        return a.sum(axis=1) if self.full else np.where(self.valid, a, 0.0).sum(axis=1)

    def max(self, a: np.ndarray) -> np.ndarray:
        """Row maxima of an ``(n_rows, m)`` array, padding skipped (-inf for empty rows)."""
        if self.full:
            return a.max(axis=1, initial=-np.inf)
        return np.where(self.valid, a, -np.inf).max(axis=1, initial=-np.inf)


#: Groups of at least this many values are checked for float32 numbers and then sorted as
#: float32 (a smaller sort is quick either way, and needs no compiled check).
_FLOAT32_SORT_SIZE = 2**16


def sort_sample(x, axis: Axis = -1) -> SortedSample:
    """Sort each group once (NaN last), for the statistics that need order statistics.

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped); a :class:`SortedSample` is returned as it is.
    axis : int, tuple of int or None, default -1
        Axes to reduce.

    Returns
    -------
    SortedSample

    Notes
    -----
    Values that are all float32 numbers (a store's weights, even when handed over as
    float64; checked by a compiled pass when there are at least 2**16 of them) are sorted
    as float32 and converted afterwards: the conversion is exact and
    monotone, so the result is the float64 sort's bit for bit, at about half its cost.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels.normality import sort_sample
    >>> sort_sample(np.array([[3.0, np.nan, 1.0]])).ordered
    array([[ 1.,  3., nan]])
    """
    if isinstance(x, SortedSample):
        return x
    rows = as_rows(x, axis)
    values = rows.values
    if values.size >= _FLOAT32_SORT_SIZE and _float32_exact(values):  # one compiled pass, early exit
        single = values.astype(np.float32)
        single.sort(axis=1)  # in place: a copy of a large group costs its page faults
        ordered = single.astype(np.float64)
    else:
        ordered = np.sort(values, axis=1)
    counts = rows.counts
    return SortedSample(ordered, counts, bool((counts == values.shape[1]).all()), rows)


_LOCAL = threading.local()
#: Work arrays kept per thread between calls, at most this many bytes: a fresh array of a
#: large group costs its page faults every call (~1 ms per 2 MB on some VMs), a kept one once.
_SCRATCH_BYTES = 64 * 2**20
_SORTED = threading.local()


def _sort_float32_row(values: np.ndarray, single: np.ndarray) -> SortedSample:
    """:func:`sort_sample` of one row ``values`` (1-D float64 without NaN) that is the conversion
    of ``single`` (its float32 values, e.g. a store's weights): the same float32 sort and exact
    conversion, bit for bit, without the check that the values are float32 numbers and in work
    arrays kept per thread (a float32 copy and a float64 result of 10⁶ values: 12 MB of new
    pages a call otherwise). The result's ``ordered`` is overwritten by the next call in the
    same thread: only for a sample that does not outlive its caller."""
    n = values.size
    kept = getattr(_SORTED, "arrays", None)
    if kept is None or kept[0].size != n:
        kept = (np.empty(n, np.float32), np.empty((1, n)))
        if n * 12 <= _SCRATCH_BYTES:
            _SORTED.arrays = kept
    work, ordered = kept
    np.copyto(work, single.reshape(-1))
    work.sort()
    np.copyto(ordered[0], work)
    rows = as_rows(values[None, :])
    return SortedSample(ordered, np.array([n]), True, rows)


def _scratch(shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    """``count`` float64 work arrays of ``shape``, kept per thread (new ones beyond the limit).

    Only for values that do not outlive the call that takes them: the next call in the same
    thread gets the same arrays."""
    size = math.prod(shape)
    if size * 8 * count > _SCRATCH_BYTES:
        return [np.empty(shape) for _ in range(count)]
    kept = getattr(_LOCAL, "arrays", [])
    if len(kept) < count or kept[0].size < size:
        kept = [np.empty(max(size, kept[0].size if kept else 0)) for _ in range(max(count, len(kept)))]
        _LOCAL.arrays = kept
    return [a[:size].reshape(shape) for a in kept[:count]]


def _mean_squares(sample: SortedSample, out=None):
    """Mean and sum of squared deviations of each group (two passes; NaN for empty groups)."""
    n = sample.counts.astype(float)
    ordered = sample.ordered
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sample.sum(ordered) / n
        deviation = np.subtract(ordered, mean[:, None], out=out)
        if out is not None and sample.full:  # numpy's pairwise sum (einsum's would add in sequence)
            (square,) = _scratch(ordered.shape, 7)[6:]
            return mean, np.multiply(deviation, deviation, out=square).sum(axis=1)
        return mean, sample.sum(deviation * deviation)


def _std(sample: SortedSample, squares, ddof):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(squares / (sample.counts - ddof))


def _standardize(sample: SortedSample, mean, std) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sample.ordered - mean[:, None]) / std[:, None]


@functools.lru_cache(maxsize=4)
def _probabilities(n: int):
    """``(i-1)/n``, ``i/n`` and ``2i - 1`` for i = 1..n (read-only)."""
    index = np.arange(n + 1, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        edges = index / n
    odd = 2 * index[1:] - 1
    for a in (edges, odd):
        a.setflags(write=False)
    return edges[:-1], edges[1:], odd


def _ks_gaps(cdf, counts, out=None):
    """``max(i/n - F_i, F_i - (i-1)/n)`` for each sorted value (NaN in the padding)."""
    above, below = out if out is not None else (None, None)
    width = cdf.shape[1]
    if np.all(counts == width):
        left, right = (p[None, :] for p in _probabilities(width)[:2])
    else:
        n = counts[:, None].astype(float)
        index = np.arange(1, width + 1)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            left, right = (index - 1) / n, index / n
    with np.errstate(invalid="ignore", divide="ignore"):
        above = np.subtract(right, cdf, out=above)
        below = np.subtract(cdf, left, out=below)
        return np.maximum(above, below, out=above)


def _ks_distance(sample: SortedSample, z):
    """Two-sided KS distance between each sorted row of z and the standard normal."""
    distance = sample.max(_ks_gaps(special.ndtr(z), sample.counts))
    return np.where(sample.counts > 0, distance, np.nan)


def _normal_cdf(z):
    """Φ(z) as ``Φ(-|z|)`` or ``1 - Φ(-|z|)``: what :func:`_normal_tails` gives (it equals
    ``scipy.special.ndtr`` beyond |z| = 1 bit for bit, and to an ulp below)."""
    with np.errstate(invalid="ignore"):
        tail = special.ndtr(-np.abs(z))
        return np.where(z < 0, tail, 1.0 - tail)


def _normal_tails(z, out=None):
    """``Φ(z)``, ``log Φ(z)`` and ``log(1 - Φ(z))`` from one evaluation of the smaller tail.

    ``tail = Φ(-|z|)`` is accurate to a few ulps relative in both tails; Φ and 1 - Φ are
    ``tail`` and ``1 - tail`` (exact to half an ulp of a number ≥ 1/2). ``log(1 - tail)``
    is within an ulp of ``log1p(-tail)`` in absolute terms (the log of a number in
    [1/2, 1]); beyond |z| = 20 the log of the tail comes from ``log_ndtr`` (no underflow).
    These are the values ``scipy.special.log_ndtr(±z)`` gives (it computes ``log(ndtr)``
    for -20 < z ≤ 6 and ``-ndtr(-z)`` above) to about 1e-16 absolute.
    """
    # in place, in four work arrays (``out``, or new ones)
    tail, log_tail, cdf, log_body = out if out is not None else [np.empty_like(z) for _ in range(4)]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.abs(z, out=tail)
        far = np.nonzero(tail > 20) if (tail > 20).any() else None
        np.negative(tail, out=tail)
        special.ndtr(tail, out=tail)
        np.log(tail, out=log_tail)
        if far is not None:
            log_tail[far] = special.log_ndtr(-np.abs(z[far]))
        np.subtract(1.0, tail, out=cdf)
        np.log(cdf, out=log_body)
        negative = z < 0
        np.copyto(cdf, tail, where=negative)
        log_cdf = tail  # the tail is no longer needed
        np.copyto(log_cdf, log_body)
        np.copyto(log_cdf, log_tail, where=negative)
        np.copyto(log_tail, log_body, where=negative)  # now log(1 - Φ)
        return cdf, log_cdf, log_tail


def _anderson_darling_statistic(sample: SortedSample, log_cdf, log_sf):
    """A² from log Φ and log(1 - Φ) at the sorted standardised values.

    ``Σ (2i-1)/n [log Φ(z_(i)) + log(1 - Φ(z_(n+1-i)))]`` regrouped by value:
    ``Σ [(2i-1) log Φ(z_(i)) + (2n-2i+1) log(1 - Φ(z_(i)))] / n``. Overwrites its
    inputs (work arrays) when no group is padded.
    """
    n = sample.counts.astype(float)
    width = sample.ordered.shape[1]
    weights = _probabilities(width)[2]  # 2i - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        if sample.full:  # 2n - 2i + 1 is 2i - 1 reversed; pairwise sums in place
            total = np.multiply(log_cdf, weights, out=log_cdf).sum(axis=1)
            total += np.multiply(log_sf, weights[::-1], out=log_sf).sum(axis=1)
        else:
            reverse = 2 * n[:, None] - weights[None, :]
            total = sample.sum(weights * log_cdf + reverse * log_sf)
        return -sample.counts - total / n


@functools.lru_cache(maxsize=4)
def _normal_quantile_slices(n: int):
    """For ``u`` in ``[(i-1)/n, i/n]``, i = 1..n: ``Φ⁻¹`` at both ends, φ there, and the
    mean of ``Φ⁻¹(u)`` over the slice, ``n (φ(α) - φ(β))``, computed without cancellation
    as ``-n φ(α) expm1(-(β - α)(β + α)/2)`` (``-n φ(β)`` at i = 1, where α = -inf; at
    i = n, β = +inf and expm1 gives -1)."""
    edges = special.ndtri(np.arange(n + 1) / n)
    with np.errstate(invalid="ignore", over="ignore"):
        density = np.where(np.isfinite(edges), np.exp(-0.5 * edges * edges) / np.sqrt(2 * np.pi), 0.0)
        left, right = edges[:-1], edges[1:]
        decay = np.expm1(-0.5 * (right - left) * (right + left))
        mean = np.where(density[:-1] > 0, -n * density[:-1] * decay, -n * density[1:])
    out = (left, right, density[:-1], density[1:], mean)
    for a in out:
        a.setflags(write=False)
    return out


def _slices_for(counts, width):
    """The arrays of :func:`_normal_quantile_slices` laid out as ``(n_rows, width)`` rows."""
    distinct = np.unique(counts)
    if distinct.size == 1 and distinct[0] == width:
        return [a[None, :] for a in _normal_quantile_slices(int(width))]
    out = [np.full((counts.size, width), np.nan) for _ in range(5)]
    for n in distinct:
        if n == 0:
            continue
        where = counts == n
        for target, source in zip(out, _normal_quantile_slices(int(n))):
            target[where, :n] = source
    return out


def _wasserstein_standardized(sample: SortedSample, z, out=None):
    """W1 between each sorted standardised row and N(0, 1).

    On the slice of ``u`` where the empirical quantile is ``z_(i)``, the distance is
    ``∫ |z_(i) - Φ⁻¹(u)| du``. When ``z_(i)`` lies outside ``[α, β]`` (almost every
    value of a large group) it is ``|z_(i) - m_i| / n`` with ``m_i`` the slice's mean
    quantile; inside, the closed form with ``c = z_(i)``:
    ``z (2Φ(z) - (i-1)/n - i/n) + 2φ(z) - φ(α) - φ(β)``.
    """
    left, right, density_left, density_right, mean = _slices_for(sample.counts, z.shape[1])
    n = sample.counts[:, None].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        outside = np.subtract(z, mean, out=out)
        np.abs(outside, out=outside)
        np.divide(outside, n, out=outside)
        distance = sample.sum(outside)
        inside = np.nonzero((z > left) & (z < right))
        if inside[0].size:
            row = inside[0]
            zi = z[inside]
            count = n[row, 0]
            position = inside[1].astype(float)
            piece = (
                zi * (2 * special.ndtr(zi) - position / count - (position + 1) / count)
                + 2 * np.exp(-0.5 * zi * zi) / np.sqrt(2 * np.pi)
                - _broadcast_pick(density_left, inside)
                - _broadcast_pick(density_right, inside)
            )
            np.add.at(distance, row, piece - outside[inside])
    return distance


#: ``1/√2`` and ``log √(2π)`` as the compiled kernels use them.
_SQRT_HALF = 0.7071067811865476
_LOG_SQRT_2PI = 0.9189385332046728
_INV_SQRT_2PI = 0.3989422804014327


#: :func:`_row_tail` evaluates ``erfc`` afresh where ``|a - a₀| max(a₀, 1)`` would exceed this
#: (``a₀`` the last point where it did); between, a Taylor polynomial of degree 6 from there.
_TAIL_STEP = 1e-3
#: Beyond this many standard deviations every tail value comes from ``erfc`` (the far tail,
#: where :func:`_row_cdf_statistics` takes the log from its own series).
_TAIL_FAR = 20.0


@jit
def _row_tail(x, mean, std, tail):
    """The normal tail ``T(a) = Φ(-a)`` of each ``a = |x - mean|/std`` into ``tail``.

    At an anchor ``a₀`` it is ``erfc(a₀/√2)/2`` from the C library's ``erfc``; at the values
    that follow within ``|h| max(a₀, 1) ≤`` :data:`_TAIL_STEP` (``h = a - a₀``), Taylor's
    formula from there: ``T(a₀ + h) = T(a₀) - φ(a₀) Σ_{k<6} (-1)^k He_k(a₀) h^{k+1}/(k+1)!``
    (``He_k`` the Hermite polynomials: ``φ^{(k)} = (-1)^k He_k φ``). The next term is below
    ``φ(a₀) 1e-21`` there, and the correction is at most ~2.5e-3 of ``T`` (``φ/T < a + 1/a``),
    so its own rounding (and the ~a²u error of ``exp(-a₀²/2)``) reaches ``T`` at ~2.5e-3 of
    that; what remains is
    ``erfc``'s and the argument's rounding, as for ``erfc`` at every value (within 1e-15
    absolute and 1e-13 relative of ``scipy.special.ndtr(-a)`` down to a = 37, where both
    underflow; relative to exact Φ as close as ``erfc`` at each value:
    ``tests/test_kernels_normality_compiled.py``). On a sorted row most values of a large
    group are within a step of an anchor (10⁶ values: 2.9 against 5.1 ns a value with
    ``erfc`` at each); beyond :data:`_TAIL_FAR` every value is an anchor.
    """
    anchor = -1.0
    start = 0.0
    c0 = c1 = c2 = c3 = c4 = c5 = 0.0
    for i in range(x.size):
        a = abs((x[i] - mean) / std)
        h = a - anchor
        if anchor < 0.0 or abs(h) * max(anchor, 1.0) > _TAIL_STEP or a > _TAIL_FAR:
            anchor = a
            start = 0.5 * math.erfc(a * _SQRT_HALF)
            density = _INV_SQRT_2PI * math.exp(-0.5 * a * a)
            he2 = a * a - 1.0
            he3 = a * he2 - 2.0 * a
            he4 = a * he3 - 3.0 * he2
            he5 = a * he4 - 4.0 * he3
            c0 = density
            c1 = -density * a / 2.0
            c2 = density * he2 / 6.0
            c3 = -density * he3 / 24.0
            c4 = density * he4 / 120.0
            c5 = -density * he5 / 720.0
            tail[i] = start
        else:
            tail[i] = start - h * (c0 + h * (c1 + h * (c2 + h * (c3 + h * (c4 + h * c5)))))


#: :func:`_row_cdf_statistics` keeps the largest Lilliefors gap of each block of this many
#: values, and looks for the KS distance's candidates in the blocks that can hold one only.
_GAP_BLOCK = 1024


@jit
def _row_cdf_statistics(x, mean, std1, std0, tail, log_tail, log_body, below, above, left, right, density_left,
                        density_right, slice_mean):
    """A², Lilliefors, KS and W1 of one sorted row ``x`` (no NaN, ``std1 > 0``).

    ``tail`` is :func:`_row_tail` at the ddof=1 ``z``, ``log_tail = log(tail)`` and
    ``log_body = log(1 - tail)`` (numpy's vectorised log), ``below``/``above`` are
    ``(i-1)/n`` and ``i/n`` (:func:`_probabilities`), the rest the row's
    :func:`_normal_quantile_slices`. Beyond |z| = 20 the log of the tail is its asymptotic
    series (12 terms: relative error below 1e-18 there), as ``scipy.special.log_ndtr``
    computes it. The sums of A² and W1 are compensated (Neumaier): within about an ulp of
    the exact sum of their terms. Returns ``(a2, lilliefors_d, ks_d, w1)``.
    """
    n = x.size
    nf = float(n)
    # A², the Lilliefors gaps (z with the ddof=1 std) and W1 of (x - mean)/std0, value by value
    total = 0.0
    carry = 0.0
    w1_total = 0.0
    w1_carry = 0.0
    lilliefors_d = -np.inf
    block_gaps = np.full((n + _GAP_BLOCK - 1) // _GAP_BLOCK, -np.inf)  # each block's largest gap
    for i in range(n):
        deviation = x[i] - mean
        small = tail[i]
        far = log_tail[i]
        if small < 2.8e-89:  # |z| > 20
            a = abs(deviation / std1)
            if a > 20.0:
                r = 1.0 / (a * a)
                term = 1.0
                series = 1.0
                for k in range(1, 13):
                    term *= -(2 * k - 1) * r
                    series += term
                far = -0.5 * a * a - math.log(a) - _LOG_SQRT_2PI + math.log(series)
        if deviation < 0:
            cdf = small
            value = (2.0 * i + 1.0) * far + (2.0 * (nf - i) - 1.0) * log_body[i]
        else:
            cdf = 1.0 - small
            value = (2.0 * i + 1.0) * log_body[i] + (2.0 * (nf - i) - 1.0) * far
        following = total + value
        if abs(total) >= abs(value):
            carry += (total - following) + value
        else:
            carry += (value - following) + total
        total = following
        gap = max(above[i] - cdf, cdf - below[i])
        if gap > lilliefors_d:
            lilliefors_d = gap
        if gap > block_gaps[i // _GAP_BLOCK]:
            block_gaps[i // _GAP_BLOCK] = gap
        # W1 summed as n times each slice's integral (divided by n once at the end)
        z = deviation / std0
        if left[i] < z < right[i]:
            small = 0.5 * math.erfc(abs(z) * _SQRT_HALF)
            cdf = small if z < 0 else 1.0 - small
            value = nf * (z * (2.0 * cdf - below[i] - above[i]) + 2.0 * _INV_SQRT_2PI * math.exp(-0.5 * z * z)
                          - density_left[i] - density_right[i])
        else:
            value = abs(z - slice_mean[i])
        following = w1_total + value
        if abs(w1_total) >= abs(value):
            w1_carry += (w1_total - following) + value
        else:
            w1_carry += (value - following) + w1_total
        w1_total = following
    a2 = -nf - (total + carry) / nf
    # the KS distance to N(mean, std0), where the Lilliefors gaps say it can be largest (in the
    # blocks whose largest gap reaches the threshold: the same candidates, fewer visited)
    threshold = lilliefors_d - 2.0 * (0.25 * (std1 / std0 - 1.0) + 1e-12)
    ks_d = -np.inf
    for block in range(block_gaps.size):
        if block_gaps[block] < threshold:
            continue
        for i in range(block * _GAP_BLOCK, min((block + 1) * _GAP_BLOCK, n)):
            cdf = tail[i] if x[i] < mean else 1.0 - tail[i]
            if max(above[i] - cdf, cdf - below[i]) >= threshold:
                z = (x[i] - mean) / std0
                small = 0.5 * math.erfc(abs(z) * _SQRT_HALF)
                cdf = small if z < 0 else 1.0 - small
                gap = max(above[i] - cdf, cdf - below[i])
                if gap > ks_d:
                    ks_d = gap
    return a2, lilliefors_d, ks_d, (w1_total + w1_carry) / nf


@jit
def _float32_exact(values):
    """Whether every value of a float64 array is a float32 number (NaN and ±inf are)."""
    flat = values.ravel()
    for i in range(flat.size):
        value = flat[i]
        if value == value and np.float64(np.float32(value)) != value:
            return False
    return True


def _broadcast_pick(a, index):
    rows, columns = index
    return a[0, columns] if a.shape[0] == 1 else a[rows, columns]


@dataclass(frozen=True, slots=True)
class NormalityStatistics:
    """The statistics of the sorted sample that :func:`normality_statistics` computes at once.

    Attributes
    ----------
    ad_statistic, ad_pvalue : Anderson–Darling A² and its p-value (as :func:`anderson_darling`).
    lilliefors_statistic, lilliefors_pvalue : as :func:`lilliefors`.
    ks_d : KS distance to the maximum-likelihood normal (as :func:`ks_distance_normal`).
    w1_normal : W1 of the standardised values to N(0, 1)
        (as ``wasserstein_normal(x, standardize=True)``).
    mean, std : mean and standard deviation (ddof=0) of each group.
    n : number of values of each group.
    """

    ad_statistic: np.ndarray
    ad_pvalue: np.ndarray
    lilliefors_statistic: np.ndarray
    lilliefors_pvalue: np.ndarray
    ks_d: np.ndarray
    w1_normal: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray


def normality_statistics(x, axis: Axis = -1) -> NormalityStatistics:
    """Anderson–Darling, Lilliefors, KS and W1 of each group from one sort.

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), or groups already sorted by :func:`sort_sample`.
    axis : int, tuple of int or None, default -1

    Returns
    -------
    NormalityStatistics
        The values :func:`anderson_darling`, :func:`lilliefors`,
        :func:`ks_distance_normal` (ddof=0) and ``wasserstein_normal(standardize=True)``
        give, with their NaN rules.

    Notes
    -----
    Every statistic is a function of the sorted standardised sample, so the group is
    sorted once; row by row, the mean and std are numpy's (as the single kernels'), then
    two compiled kernels (nogil) read the sorted row: :func:`_row_tail` the normal tail at ``z``
    (ddof=1 std), then, after numpy's vectorised logs of the tail and of its complement,
    :func:`_row_cdf_statistics` A², the Lilliefors gaps and W1 in one pass, and the KS
    distance to the ddof=0 normal. That KS distance differs from the Lilliefors statistic's gaps by at most
    ``sup|t φ(t)| (c - 1) ≈ 0.242 (c - 1)`` at every value, ``c = std(ddof=1)/std(ddof=0)``,
    so its maximum lies among the values whose Lilliefors gap is within twice that of the
    maximum; Φ is evaluated there only. W1 needs Φ only where a value falls inside its own
    quantile slice (:func:`wasserstein_normal`).

    The kernels' Φ comes from the C library's ``erfc`` (the tail array: at anchors, with
    Taylor polynomials between them, as close to exact Φ as ``erfc`` at every value) and their
    sums are compensated, where
    the single kernels use ``scipy.special.ndtr`` and numpy's pairwise sums: KS and
    Lilliefors agree with them to 1e-15, A² to 1e-10 relative (its sum of n terms of size
    ~1 cancels to ~1), W1 to 1e-14 absolute (9e-15 at n = 262 144, where W1 of normal values
    is ~2e-3: of the order of the numpy path's own error), and where checked each is at least
    as close to exact arithmetic (W1: 1.3e-15 from 40-digit arithmetic at n = 40 000, the
    numpy path 4.5e-15; ``tests/test_kernels_normality_compiled.py``).

    Verification: within those bounds of :func:`anderson_darling`, :func:`lilliefors`,
    :func:`ks_distance_normal` and :func:`wasserstein_normal`, which are checked against
    scipy, statsmodels and quadrature (``tests/test_kernels_normality.py``); A² within
    4e-10 relative of ``scipy.stats.anderson``, KS and Lilliefors within 1e-13 of
    ``scipy.stats.kstest`` and statsmodels.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels.normality import normality_statistics
    >>> result = normality_statistics(np.random.default_rng(0).laplace(size=(2, 5000)))
    >>> bool((result.w1_normal > 0.1).all()), result.ad_pvalue.tolist()
    (True, [0.0, 0.0])
    """
    sample = sort_sample(x, axis)
    rows, counts = sample.rows, sample.counts
    n_rows, width = sample.ordered.shape
    work = _scratch((width,), 3)  # a row at a time: a task of many groups needs no large arrays
    out = np.full((n_rows, 6), np.nan)  # mean, squares, A², Lilliefors, KS, W1
    for i in np.flatnonzero(counts > 0):
        count = int(counts[i])
        row = sample.ordered[i, :count]
        tail, log_tail, log_body = (a[:count] for a in work)
        square = log_body  # the squares are summed before log_body is needed
        # the mean and squares of _mean_squares (numpy's pairwise sums of the same terms)
        with np.errstate(invalid="ignore", over="ignore"):  # ±inf values: NaN statistics, as there
            mean = row.sum() / count
            squares = np.multiply(np.subtract(row, mean, out=square), square, out=square).sum()
        out[i, :2] = mean, squares
        if count < 2 or not 0 < squares < np.inf:
            continue
        std1, std0 = np.sqrt(squares / (count - 1)), np.sqrt(squares / count)
        _row_tail(row, mean, std1, tail)
        with np.errstate(divide="ignore"):  # a tail that underflows: its log comes from a series
            np.log(tail, out=log_tail)
            np.log(np.subtract(1.0, tail, out=log_body), out=log_body)
        out[i, 2:] = _row_cdf_statistics(row, mean, std1, std0, tail, log_tail, log_body,
                                         *_probabilities(count)[:2], *_normal_quantile_slices(count))
    mean, squares, ad, lilliefors_d, ks, w1 = out.T
    sample.row_sums["mean_squares"] = (mean.copy(), squares.copy())  # the normal fit's sums
    std0, std1 = _std(sample, squares, 0), _std(sample, squares, 1)
    usable0, usable1 = (counts >= 2) & (std0 > 0), std1 > 0
    ad = np.where((counts >= 8) & usable1, ad, np.nan)
    lilliefors_d = np.where((counts >= 4) & usable1, lilliefors_d, np.nan)
    ks = np.where(usable0, ks, np.nan)
    w1 = np.where(usable0, w1, np.nan)
    n = counts.astype(float)
    return NormalityStatistics(
        ad_statistic=rows.unflatten(ad),
        ad_pvalue=rows.unflatten(_anderson_darling_pvalue(ad, n)),
        lilliefors_statistic=rows.unflatten(lilliefors_d),
        lilliefors_pvalue=rows.unflatten(_lilliefors_pvalues(lilliefors_d, counts)),
        ks_d=rows.unflatten(ks),
        w1_normal=rows.unflatten(w1),
        mean=rows.unflatten(mean),
        std=rows.unflatten(std0),
        n=rows.unflatten(counts),
    )


def ks_distance_normal(x, axis: Axis = -1, *, ddof: int = 0) -> np.ndarray:
    """Kolmogorov–Smirnov distance from the data to the normal fitted by mean and std.

    ``D = sup_t |F_n(t) - Φ((t - mean) / std)|``, an effect size in [0, 1] that does
    not grow with n (unlike the tests' p-values).

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), or groups sorted by :func:`sort_sample` (then ``axis`` is not used).
    axis : int, tuple of int or None, default -1
    ddof : int, default 0
        0: the maximum-likelihood normal; 1: the Lilliefors convention.

    Returns
    -------
    ndarray
        NaN for groups with fewer than 2 values or zero variance.

    Verification: equal to ``scipy.stats.kstest(x, "norm", args=(mean, std))``
    statistic to 1e-12 (``tests/test_kernels_normality.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import ks_distance_normal
    >>> print(round(float(ks_distance_normal(np.array([-1.0, 0.0, 1.0]))), 4))
    0.223
    """
    sample = sort_sample(x, axis)
    mean, squares = _mean_squares(sample)
    std = _std(sample, squares, ddof)
    distance = _ks_distance(sample, _standardize(sample, mean, std))
    distance = np.where((sample.counts >= 2) & (std > 0), distance, np.nan)
    return sample.rows.unflatten(distance)


def _lilliefors_pvalues(statistic: np.ndarray, n: np.ndarray) -> np.ndarray:
    """p-values from statsmodels' Lilliefors table (10⁷ simulations), per distinct n.

    The table object is what ``statsmodels.stats.diagnostic.lilliefors`` uses internally
    (``pvalmethod="table"``); it is reached through a private module, so the kernel
    checks for it and says so if a statsmodels release moves it.
    """
    try:
        from statsmodels.stats._lilliefors import get_lilliefors_table
    except ImportError as error:  # pragma: no cover - depends on the statsmodels release
        raise ImportError(
            "actstats.kernels.lilliefors needs statsmodels.stats._lilliefors.get_lilliefors_table "
            "(statsmodels >= 0.14)"
        ) from error

    table = get_lilliefors_table(dist="norm")
    pvalue = np.full(statistic.shape, np.nan)
    for size in np.unique(n[np.isfinite(statistic)]):
        where = (n == size) & np.isfinite(statistic)
        pvalue[where] = table.prob(np.atleast_1d(statistic[where]), float(size))
    return pvalue


def lilliefors(x, axis: Axis = -1) -> NormalityTestResult:
    """Lilliefors test: the KS distance to the normal with estimated mean and std.

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), or groups sorted by :func:`sort_sample` (then ``axis`` is not used).
    axis : int, tuple of int or None, default -1

    Returns
    -------
    NormalityTestResult
        NaN where n < 4.

    Notes
    -----
    The statistic uses ``std(ddof=1)``, as ``statsmodels.stats.diagnostic.lilliefors``.
    The p-value is interpolated in statsmodels' table of critical values (built from
    10⁷ simulations, with an asymptotic formula for large n); it is clipped to
    [0.001, 0.99] by construction of the table.

    Verification: statistic and p-value equal ``statsmodels.stats.diagnostic.
    lilliefors(x, pvalmethod="table")`` to 1e-10, live and against
    ``tests/reference/normality.json``; type-I error checked by simulation.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import lilliefors
    >>> result = lilliefors(np.random.default_rng(0).uniform(size=2000))
    >>> print(round(float(result.pvalue), 3))
    0.001
    """
    sample = sort_sample(x, axis)
    rows, counts = sample.rows, sample.counts
    mean, squares = _mean_squares(sample)
    std = _std(sample, squares, 1)
    cdf = _normal_cdf(_standardize(sample, mean, std))
    statistic = np.where((counts >= 4) & (std > 0), sample.max(_ks_gaps(cdf, counts)), np.nan)
    pvalue = _lilliefors_pvalues(statistic, counts)
    return NormalityTestResult(
        statistic=rows.unflatten(statistic),
        pvalue=rows.unflatten(pvalue),
        n=rows.unflatten(counts),
        n_used=rows.unflatten(counts),
        method="Lilliefors (statsmodels table p-value)",
    )


def _anderson_darling_pvalue(a2: np.ndarray, n: np.ndarray) -> np.ndarray:
    """D'Agostino & Stephens (1986, Table 4.9) p-value of the modified A²."""
    with np.errstate(invalid="ignore", over="ignore"):
        adjusted = a2 * (1 + 0.75 / n + 2.25 / n**2)
        pvalue = np.select(
            [
                adjusted < 0.2,
                adjusted < 0.34,
                adjusted < 0.6,
                adjusted <= 13,
            ],
            [
                1 - np.exp(-13.436 + 101.14 * adjusted - 223.73 * adjusted**2),
                1 - np.exp(-8.318 + 42.796 * adjusted - 59.938 * adjusted**2),
                np.exp(0.9177 - 4.279 * adjusted - 1.38 * adjusted**2),
                np.exp(1.2937 - 5.709 * adjusted + 0.0186 * adjusted**2),
            ],
            default=0.0,
        )
    return np.where(np.isfinite(a2), pvalue, np.nan)


def anderson_darling(x, axis: Axis = -1) -> NormalityTestResult:
    """Anderson–Darling test of normality with estimated mean and std (ddof=1).

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), or groups sorted by :func:`sort_sample` (then ``axis`` is not used).
    axis : int, tuple of int or None, default -1

    Returns
    -------
    NormalityTestResult
        ``statistic`` is A² (unmodified, as ``scipy.stats.anderson``); NaN where n < 8.

    Notes
    -----
    ``A² = -n - Σ (2i-1)/n [log Φ(z_(i)) + log(1 - Φ(z_(n+1-i)))]``. The p-value uses
    the modified ``A²(1 + 0.75/n + 2.25/n²)`` and the piecewise formula of D'Agostino &
    Stephens (1986), Goodness-of-Fit Techniques, Table 4.9 (as statsmodels'
    ``normal_ad``); above 13 it is reported as 0 (it is < 5e-31).

    Verification: statistic equal to ``scipy.stats.anderson(x, method="interpolate")``
    and statistic + p-value equal to ``statsmodels.stats.diagnostic.normal_ad`` to
    1e-10, live and against ``tests/reference/normality.json``.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import anderson_darling
    >>> result = anderson_darling(np.random.default_rng(0).normal(size=(4, 100)))
    >>> result.statistic.shape
    (4,)
    """
    sample = sort_sample(x, axis)
    rows, counts = sample.rows, sample.counts
    mean, squares = _mean_squares(sample)
    std = _std(sample, squares, 1)
    _, log_cdf, log_sf = _normal_tails(_standardize(sample, mean, std))
    a2 = np.where((counts >= 8) & (std > 0), _anderson_darling_statistic(sample, log_cdf, log_sf), np.nan)
    pvalue = _anderson_darling_pvalue(a2, counts.astype(float))
    return NormalityTestResult(
        statistic=rows.unflatten(a2),
        pvalue=rows.unflatten(pvalue),
        n=rows.unflatten(counts),
        n_used=rows.unflatten(counts),
        method="Anderson-Darling (D'Agostino & Stephens 1986 p-value)",
    )


@functools.lru_cache(maxsize=8)
def _subsample_positions(n: int, max_size: int | None, seed: int) -> np.ndarray | None:
    """The positions :func:`actstats.kernels.deterministic_subsample` takes (None: all),
    kept for the next group of the same size (drawing them costs a pass over n)."""
    if max_size is None or n <= max_size:
        return None
    positions = np.sort(np.random.default_rng(seed).choice(n, size=max_size, replace=False))
    positions.setflags(write=False)
    return positions


def shapiro_wilk(
    x, axis: Axis = -1, *, max_size: int = SHAPIRO_MAX_SIZE, seed: int = DEFAULT_SEED
) -> NormalityTestResult:
    """Shapiro–Wilk test on a deterministic subsample of at most ``max_size`` values.

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), or groups sorted by :func:`sort_sample` (then ``axis`` is not used).
    axis : int, tuple of int or None, default -1
    max_size : int, default 5000
        Groups with more values are tested on a subsample of this size.
    seed : int, default 0
        Seed of the subsample.

    Returns
    -------
    NormalityTestResult
        ``n_used`` says how many values were tested; NaN where n < 3.

    Notes
    -----
    The subsample of a group is
    ``values[sort(default_rng(seed).choice(n, max_size, replace=False))]`` where
    ``values`` are the group's non-NaN values in C order of the reduced axes (see
    :func:`actstats.kernels.deterministic_subsample`). The test itself is
    ``scipy.stats.shapiro`` (Royston's 1995 algorithm AS R94), whose p-value
    approximation is valid up to 5000 values — hence the default.

    Verification: equal to ``scipy.stats.shapiro`` on the documented subsample; the
    subsample is reproducible (``tests/test_kernels_normality.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import shapiro_wilk
    >>> result = shapiro_wilk(np.random.default_rng(0).normal(size=20000))
    >>> int(result.n_used), int(result.n)
    (5000, 20000)
    """
    rows = x.rows if isinstance(x, SortedSample) else as_rows(x, axis)

    def test(values):
        positions = _subsample_positions(values.shape[0], max_size, seed)
        subsample = values if positions is None else values[positions]
        if np.ptp(subsample) == 0:
            return np.nan, np.nan, subsample.size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.shapiro(subsample)
        return result.statistic, result.pvalue, subsample.size

    # map_rows' loop, with a full row's values taken as they are (no masked copy of the group)
    counts = rows.counts
    out = np.full((3, rows.n_rows), np.nan)
    for i in np.flatnonzero(counts >= 3):
        row = rows.values[i]
        out[:, i] = test(row if counts[i] == row.size else row[rows.valid[i]])
    statistic, pvalue, n_used = (rows.unflatten(a) for a in out)
    return NormalityTestResult(
        statistic=statistic,
        pvalue=pvalue,
        n=rows.unflatten(rows.counts),
        n_used=n_used,
        method=f"Shapiro-Wilk (scipy; deterministic subsample of at most {max_size}, seed {seed})",
    )


def wasserstein_normal(
    x, axis: Axis = -1, *, ddof: int = 0, standardize: bool = False
) -> np.ndarray:
    """Exact Wasserstein-1 distance from the data to the normal fitted by mean and std.

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), or groups sorted by :func:`sort_sample` (then ``axis`` is not used).
    axis : int, tuple of int or None, default -1
    ddof : int, default 0
        0: the maximum-likelihood normal N(mean, std(ddof=0)).
    standardize : bool, default False
        Divide by the fitted std, giving a scale-free distance (that of the
        standardised data to N(0, 1)).

    Returns
    -------
    ndarray
        In the units of the data (or of std with ``standardize``); NaN for fewer than 2
        values or zero variance.

    Notes
    -----
    ``W1 = ∫ |F_n(t) - Φ((t-μ)/σ)| dt = ∫₀¹ |F_n⁻¹(u) - μ - σΦ⁻¹(u)| du``. On
    ``u ∈ [(i-1)/n, i/n]`` the empirical quantile is the i-th order statistic, and with
    ``z = (x_(i) - μ)/σ``, ``α = Φ⁻¹((i-1)/n)``, ``β = Φ⁻¹(i/n)``,
    ``c = clip(z, α, β)``, the piece is exactly
    ``σ [z (2Φ(c) - (i-1)/n - i/n) + 2φ(c) - φ(α) - φ(β)]``
    (from ``∫(z - t)φ(t)dt = zΦ(t) + φ(t)``). No quadrature, no sampling.

    Verification: equal to adaptive quadrature of ``|F_n - Φ|`` (scipy.integrate.quad)
    to 1e-8, and to ``scipy.stats.wasserstein_distance`` against 2·10⁶ normal draws
    within its Monte Carlo error (``tests/test_kernels_normality.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import wasserstein_normal
    >>> print(round(float(wasserstein_normal(np.array([-1.0, 1.0]))), 4))
    0.5354
    """
    sample = sort_sample(x, axis)
    mean, squares = _mean_squares(sample)
    std = _std(sample, squares, ddof)
    distance = _wasserstein_standardized(sample, _standardize(sample, mean, std))
    if not standardize:
        distance = distance * std
    distance = np.where((sample.counts >= 2) & (std > 0), distance, np.nan)
    return sample.rows.unflatten(distance)


def lilliefors_pvalue(statistic, n) -> np.ndarray:
    """The Lilliefors p-value of a KS statistic (std with ddof=1) for samples of size n
    (statsmodels' table, as :func:`lilliefors`); for statistics computed elsewhere, e.g.
    from histograms (:mod:`actstats.kernels.histogram`).

    Verification: the same table lookup as :func:`lilliefors`, which equals
    ``statsmodels.stats.diagnostic.lilliefors(x, pvalmethod="table")``.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import lilliefors, lilliefors_pvalue
    >>> result = lilliefors(np.random.default_rng(1).normal(size=500))
    >>> bool(lilliefors_pvalue(result.statistic, 500) == result.pvalue)
    True
    """
    statistic = np.asarray(statistic, dtype=np.float64)
    return _lilliefors_pvalues(statistic, np.broadcast_to(np.asarray(n, dtype=np.float64), statistic.shape))


def anderson_darling_pvalue(statistic, n) -> np.ndarray:
    """The p-value of an Anderson–Darling A² (mean and std estimated) for samples of size
    n, as :func:`anderson_darling` gives it (D'Agostino & Stephens 1986).

    Verification: the formula of :func:`anderson_darling`, which equals
    ``statsmodels.stats.diagnostic.normal_ad``.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import anderson_darling, anderson_darling_pvalue
    >>> result = anderson_darling(np.random.default_rng(1).normal(size=500))
    >>> bool(anderson_darling_pvalue(result.statistic, 500) == result.pvalue)
    True
    """
    statistic = np.asarray(statistic, dtype=np.float64)
    return _anderson_darling_pvalue(statistic, np.broadcast_to(np.asarray(n, dtype=np.float64), statistic.shape))
