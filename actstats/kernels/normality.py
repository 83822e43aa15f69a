"""Normality: tests from mergeable moments, tests on data in memory, effect sizes.

With 10⁵–10⁹ values every normality test rejects, so next to the tests this module
gives effect sizes that do not grow with n: the Kolmogorov–Smirnov distance and the
Wasserstein-1 distance from the data to the normal fitted to them.

Why one module of ~580 lines: one topic (normality tests and effect sizes); about half
of it is docstrings with the references each test is verified against.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from ._rows import DEFAULT_SEED, Axis, as_rows, deterministic_subsample, map_rows
from .moments import _standardized_moments, moments

__all__ = [
    "DAgostinoPearsonResult",
    "NormalityTestResult",
    "SHAPIRO_MAX_SIZE",
    "anderson_darling",
    "dagostino_pearson",
    "jarque_bera",
    "ks_distance_normal",
    "lilliefors",
    "shapiro_wilk",
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


def _standardized_sorted(rows, ddof):
    """Rows sorted (NaN last), counts, and values standardised by mean and std(ddof)."""
    ordered, counts = rows.sorted()
    n = counts.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = rows.zeroed().sum(axis=1) / n
        deviation = np.where(rows.valid, rows.values - mean[:, None], 0.0)
        std = np.sqrt((deviation**2).sum(axis=1) / (n - ddof))
        z = (ordered - mean[:, None]) / std[:, None]
    return z, counts, mean, std


def _ks_distance(z, counts):
    """Two-sided KS distance between each sorted row of z and the standard normal."""
    n = counts[:, None].astype(float)
    index = np.arange(1, z.shape[1] + 1)[None, :]
    cdf = special.ndtr(z)
    valid = index <= n
    with np.errstate(invalid="ignore", divide="ignore"):
        above = np.where(valid, index / n - cdf, -np.inf).max(axis=1, initial=-np.inf)
        below = np.where(valid, cdf - (index - 1) / n, -np.inf).max(axis=1, initial=-np.inf)
    distance = np.maximum(above, below)
    return np.where(counts > 0, distance, np.nan)


def ks_distance_normal(x, axis: Axis = -1, *, ddof: int = 0) -> np.ndarray:
    """Kolmogorov–Smirnov distance from the data to the normal fitted by mean and std.

    ``D = sup_t |F_n(t) - Φ((t - mean) / std)|``, an effect size in [0, 1] that does
    not grow with n (unlike the tests' p-values).

    Parameters
    ----------
    x : array_like
        Data (NaN skipped).
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
    rows = as_rows(x, axis)
    z, counts, _, std = _standardized_sorted(rows, ddof)
    distance = _ks_distance(z, counts)
    distance = np.where((counts >= 2) & (std > 0), distance, np.nan)
    return rows.unflatten(distance)


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
    x : array_like
        Data (NaN skipped).
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
    rows = as_rows(x, axis)
    z, counts, _, std = _standardized_sorted(rows, 1)
    statistic = np.where((counts >= 4) & (std > 0), _ks_distance(z, counts), np.nan)
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
    x : array_like
        Data (NaN skipped).
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
    rows = as_rows(x, axis)
    z, counts, _, std = _standardized_sorted(rows, 1)
    width = z.shape[1]
    n = counts[:, None].astype(float)
    index = np.arange(width)[None, :]
    valid = index < n
    reverse = np.clip(counts[:, None] - 1 - index, 0, max(width - 1, 0))
    log_cdf = special.log_ndtr(z)
    log_sf = special.log_ndtr(-np.take_along_axis(z, reverse, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(valid, (2 * index + 1) / n * (log_cdf + log_sf), 0.0)
        a2 = -counts - terms.sum(axis=1)
    a2 = np.where((counts >= 8) & (std > 0), a2, np.nan)
    pvalue = _anderson_darling_pvalue(a2, counts.astype(float))
    return NormalityTestResult(
        statistic=rows.unflatten(a2),
        pvalue=rows.unflatten(pvalue),
        n=rows.unflatten(counts),
        n_used=rows.unflatten(counts),
        method="Anderson-Darling (D'Agostino & Stephens 1986 p-value)",
    )


def shapiro_wilk(
    x, axis: Axis = -1, *, max_size: int = SHAPIRO_MAX_SIZE, seed: int = DEFAULT_SEED
) -> NormalityTestResult:
    """Shapiro–Wilk test on a deterministic subsample of at most ``max_size`` values.

    Parameters
    ----------
    x : array_like
        Data (NaN skipped).
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
    rows = as_rows(x, axis)

    def test(values):
        subsample = deterministic_subsample(values, max_size, seed)
        if np.ptp(subsample) == 0:
            return np.nan, np.nan, subsample.size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.shapiro(subsample)
        return result.statistic, result.pvalue, subsample.size

    statistic, pvalue, n_used = map_rows(test, rows, [(), (), ()], minimum_count=3)
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
    x : array_like
        Data (NaN skipped).
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
    rows = as_rows(x, axis)
    z, counts, _, std = _standardized_sorted(rows, ddof)
    n = counts[:, None].astype(float)
    index = np.arange(z.shape[1])[None, :]
    valid = index < n
    with np.errstate(invalid="ignore", divide="ignore"):
        left_probability = index / n
        right_probability = (index + 1) / n
        left = special.ndtri(left_probability)
        right = special.ndtri(right_probability)
        clipped = np.clip(z, left, right)
        density = lambda t: np.where(np.isfinite(t), np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi), 0.0)  # noqa: E731
        pieces = (
            z * (2 * special.ndtr(clipped) - left_probability - right_probability)
            + 2 * density(clipped)
            - density(left)
            - density(right)
        )
        distance = np.where(valid, pieces, 0.0).sum(axis=1)
    if not standardize:
        distance = distance * std
    distance = np.where((counts >= 2) & (std > 0), distance, np.nan)
    return rows.unflatten(distance)


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
