"""Activations with bounded range: saturation, bimodality near the bounds, Beta fits.

Values in ``[lower, upper]`` (sigmoid ``[0, 1]``, tanh ``[-1, 1]``) are rescaled to
``y = (x - lower) / (upper - lower)`` in [0, 1]. For the likelihood-based fits ``y`` is
clipped into ``[delta, 1 - delta]`` (``delta = 1e-6`` by default): a float32 sigmoid
returns exactly 0 or 1 once saturated, where Beta and logit-normal densities are 0 or
infinite. Clipped values are counted (``n_clipped``) so a reader sees how much of a fit
rests on them. Log-likelihoods are on the scale of ``x`` (they include the Jacobian
``-n log(upper - lower)``) so that fits of different families are comparable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._rows import DEFAULT_SEED, Axis, as_rows, deterministic_subsample, map_rows
from .moments import moment_statistics, moments

__all__ = [
    "BETA_STATISTIC_FIELDS",
    "BIMODALITY_COEFFICIENT_THRESHOLD",
    "BetaFit",
    "BetaMixtureFit",
    "BimodalityResult",
    "DEFAULT_DELTA",
    "DipTestResult",
    "LogitNormalFit",
    "MIXTURE_MAX_SIZE",
    "SATURATION_FIELDS",
    "beta_sufficient_statistics",
    "bimodal_at_bounds",
    "bimodality",
    "bimodality_coefficient",
    "dip_test",
    "fit_beta",
    "fit_beta_from_statistics",
    "fit_beta_mixture",
    "fit_logit_normal",
    "fit_logit_normal_from_statistics",
    "rescale_to_unit",
    "saturation_counts",
]

#: Default clipping margin for likelihood fits on [0, 1].
DEFAULT_DELTA = 1e-6
#: A bimodality coefficient above 5/9 (its value for the uniform) suggests bimodality.
BIMODALITY_COEFFICIENT_THRESHOLD = 5 / 9
#: The Beta mixture is fitted by EM on a deterministic subsample of at most this many values.
MIXTURE_MAX_SIZE = 20_000
#: Entries of the last axis of :func:`saturation_counts`.
SATURATION_FIELDS = ("low", "high", "total")
#: Entries of the last axis of :func:`beta_sufficient_statistics`.
BETA_STATISTIC_FIELDS = ("count", "sum_log", "sum_log_complement", "clipped")

#: Upper bound on the shape parameters of a single Beta fit (a + b ~ 1e12 means a spread
#: of ~1e-6 around the mean, about the limit that float64 sums of logs resolve).
_MAX_SHAPE = 1e12


def rescale_to_unit(x, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """``(x - lower) / (upper - lower)``: values in [lower, upper] mapped to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import rescale_to_unit
    >>> rescale_to_unit(np.array([-1.0, 0.0, 1.0]), -1.0, 1.0)
    array([0. , 0.5, 1. ])
    """
    if not upper > lower:
        raise ValueError(f"need upper > lower, got lower={lower!r}, upper={upper!r}")
    return (np.asarray(x, dtype=np.float64) - lower) / (upper - lower)


def saturation_counts(
    x,
    lower: float = 0.0,
    upper: float = 1.0,
    eps: float = 0.05,
    axis: Axis = -1,
    *,
    mode: str = "bounds",
) -> np.ndarray:
    """Count values near the bounds: ``[low, high, total]`` on a new last axis.

    Parameters
    ----------
    x : array_like
        Activations (NaN padding skipped).
    lower, upper : float
        Range of the activation function (sigmoid 0, 1; tanh -1, 1).
    eps : float, default 0.05
        Width of each saturated band as a fraction of ``upper - lower``:
        low is ``x <= lower + eps (upper - lower)``, high is
        ``x >= upper - eps (upper - lower)``.
    axis : int, tuple of int or None, default -1
    mode : {"bounds", "zero"}
        ``"zero"`` is for ReLU: low counts exact zeros (dead units), high is 0, and
        ``upper``/``eps`` are ignored.

    Returns
    -------
    ndarray of int64, shape (..., 3)
        ``[low, high, total]`` where total counts the non-NaN values. Counts add up
        across chunks.

    Verification: equal to explicit comparisons with numpy on examples including
    values exactly on the band edges and NaN padding (``tests/test_kernels_bounded.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import saturation_counts
    >>> saturation_counts(np.array([0.0, 0.01, 0.5, 0.97, np.nan]))
    array([2, 1, 4])
    >>> saturation_counts(np.array([0.0, 0.0, 2.5]), mode="zero")
    array([2, 0, 3])
    """
    rows = as_rows(x, axis)
    values, valid = rows.values, rows.valid
    if mode == "bounds":
        if not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps!r}")
        width = upper - lower
        if not (np.isfinite(lower) and np.isfinite(upper) and width > 0):
            raise ValueError(
                f"mode='bounds' needs finite bounds with upper > lower, got lower={lower!r}, "
                f"upper={upper!r} (for ReLU use mode='zero')"
            )
        with np.errstate(invalid="ignore"):
            low = (valid & (values <= lower + eps * width)).sum(axis=1)
            high = (valid & (values >= upper - eps * width)).sum(axis=1)
    elif mode == "zero":
        low = (valid & (values == 0)).sum(axis=1)
        high = np.zeros_like(low)
    else:
        raise ValueError(f"mode must be 'bounds' or 'zero', got {mode!r}")
    counts = np.stack([low, high, rows.counts], axis=-1).astype(np.int64)
    return rows.unflatten(counts)


def bimodality_coefficient(m=None, *, x=None, axis: Axis = -1, bias: bool = False) -> np.ndarray:
    """Sarle's bimodality coefficient with the finite-sample correction, from moments.

    ``BC = (G1² + 1) / (G2 + 3(n-1)² / ((n-2)(n-3)))``; values above 5/9 (the value
    for a uniform distribution) suggest bimodality.

    Parameters
    ----------
    m : array_like, shape (..., 5), optional
        Moment array (:func:`~actstats.kernels.moments`), e.g. merged over chunks.
    x : array_like, optional
        Data instead of ``m``, reduced over ``axis``.
    axis : int, tuple of int or None, default -1
    bias : bool, default False
        False: ``G1``, ``G2`` are the adjusted (SAS type-2) skewness and excess
        kurtosis, as in SAS's documentation, Pfister et al. (2013, Frontiers in
        Psychology 4:700) and R's ``mousetrap::bimodality_coefficient``; this makes the
        denominator the adjusted (non-excess) kurtosis. True: the moment estimators
        ``g1``, ``g2`` are put in the same formula.

    Returns
    -------
    ndarray
        NaN for n < 4 or zero variance.

    Verification: equal to the formula evaluated with
    ``scipy.stats.skew/kurtosis(bias=False)`` (``tests/reference/bounded.json``); the
    uniform gives ≈ 5/9 and Beta(0.2, 0.2) > 5/9 (``tests/test_kernels_bounded.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import bimodality_coefficient
    >>> y = np.random.default_rng(0).beta(0.2, 0.2, size=2000)
    >>> bool(bimodality_coefficient(x=y) > 5 / 9)
    True
    """
    if (m is None) == (x is None):
        raise TypeError("give exactly one of a moment array `m` or data `x`")
    m = moments(x, axis) if m is None else np.asarray(m, dtype=np.float64)
    statistics = moment_statistics(m, bias=bias)
    n = statistics.n
    with np.errstate(invalid="ignore", divide="ignore"):
        coefficient = (statistics.skewness**2 + 1) / (
            statistics.excess_kurtosis + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))
        )
    return np.where(n >= 4, coefficient, np.nan)


@dataclass(frozen=True, slots=True)
class DipTestResult:
    """Hartigan's dip test of unimodality.

    Attributes
    ----------
    statistic : the dip (in [0, 1/4]).
    pvalue : interpolated in Hartigan's table of the dip under the uniform (the
        least favourable unimodal null), so conservative for other unimodal laws.
    n : number of values tested.
    method : description.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    n: np.ndarray
    method: str


def dip_test(x, axis: Axis = -1) -> DipTestResult:
    """Hartigan & Hartigan's (1985) dip test, by the ``diptest`` package.

    Parameters
    ----------
    x : array_like
        Data (NaN skipped).
    axis : int, tuple of int or None, default -1

    Returns
    -------
    DipTestResult
        NaN where n < 4.

    Notes
    -----
    ``diptest.diptest`` computes the dip exactly and interpolates the p-value on the
    ``sqrt(n) * dip`` scale in tabulated quantiles for n ≤ 72000; beyond it uses the
    table at n = 72000 on that scale (the asymptotic regime), and its warning about
    this is silenced here. One call per group; the dip is O(n) after sorting.

    Verification: equal to ``diptest.diptest`` (it is that function) and to stored
    values in ``tests/reference/bounded.json``; rejection rate on unimodal data at most
    the nominal level by simulation (``tests/test_kernels_calibration.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import dip_test
    >>> y = np.random.default_rng(0).beta(0.2, 0.2, size=2000)
    >>> bool(dip_test(y).pvalue < 0.05)
    True
    """
    import diptest

    rows = as_rows(x, axis)

    def test(values):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sample size exceeds", category=UserWarning)
            dip, pvalue = diptest.diptest(values)
        return dip, pvalue

    statistic, pvalue = map_rows(test, rows, [(), ()], minimum_count=4)
    return DipTestResult(
        statistic=statistic,
        pvalue=pvalue,
        n=rows.unflatten(rows.counts),
        method="Hartigan dip test (diptest package, interpolated table p-value)",
    )


# --------------------------------------------------------------------------- Beta


def _clip_unit(rows_values, lower, upper, delta):
    y = rescale_to_unit(rows_values, lower, upper)
    with np.errstate(invalid="ignore"):
        clipped = (y < delta) | (y > 1 - delta)
    return np.clip(y, delta, 1 - delta), clipped


def beta_sufficient_statistics(
    x, lower: float = 0.0, upper: float = 1.0, axis: Axis = -1, *, delta: float = DEFAULT_DELTA
) -> np.ndarray:
    """``[count, Σ log y, Σ log(1-y), clipped]`` of the rescaled, clipped values.

    These sums determine the Beta MLE (:func:`fit_beta_from_statistics`) and add up
    across chunks.

    Parameters
    ----------
    x : array_like
    lower, upper : float
        Range of the activation.
    axis : int, tuple of int or None, default -1
    delta : float, default 1e-6
        ``y`` is clipped into ``[delta, 1 - delta]``; ``clipped`` counts the values moved.

    Returns
    -------
    ndarray, shape (..., 4)

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import beta_sufficient_statistics
    >>> beta_sufficient_statistics(np.array([0.5, 1.0]))[[0, 3]]
    array([2., 1.])
    """
    rows = as_rows(x, axis)
    y, clipped = _clip_unit(rows.values, lower, upper, delta)
    valid = rows.valid
    sum_log = np.where(valid, np.log(np.where(valid, y, 0.5)), 0.0).sum(axis=1)
    sum_log_complement = np.where(valid, np.log1p(-np.where(valid, y, 0.5)), 0.0).sum(axis=1)
    result = np.stack(
        [rows.counts.astype(float), sum_log, sum_log_complement, (clipped & valid).sum(axis=1).astype(float)],
        axis=-1,
    )
    return rows.unflatten(result)


def _beta_log_likelihood_per_value(a, b, mean_log, mean_log_complement):
    return (a - 1) * mean_log + (b - 1) * mean_log_complement - special.betaln(a, b)


def _solve_beta(mean_log, mean_log_complement, a=None, b=None, *, max_shape=_MAX_SHAPE, iterations=100):
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        return _solve_beta_unguarded(mean_log, mean_log_complement, a, b, max_shape=max_shape, iterations=iterations)


def _solve_beta_unguarded(mean_log, mean_log_complement, a, b, *, max_shape, iterations):
    """Vectorised Beta MLE from mean log y and mean log(1-y) (Newton, backtracking).

    The Beta log-likelihood is strictly concave in (a, b) (an exponential family in its
    natural parameters), so Newton's method with a line search that keeps a, b in
    (0, max_shape] and never lowers the likelihood converges to the unique maximum
    (or to the bound when the maximum lies beyond it).
    """
    s1 = np.asarray(mean_log, dtype=float)
    s2 = np.asarray(mean_log_complement, dtype=float)
    if a is None:
        # Minka's start: psi(x) ~ log(x - 1/2)
        g1, g2 = np.exp(s1), np.exp(s2)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = 0.5 / (1 - g1 - g2)
        a = np.where(c > 0, 0.5 + g1 * c, 1.0)
        b = np.where(c > 0, 0.5 + g2 * c, 1.0)
    a = np.clip(np.asarray(a, dtype=float), 1e-8, max_shape).copy()
    b = np.clip(np.asarray(b, dtype=float), 1e-8, max_shape).copy()
    finite = np.isfinite(s1) & np.isfinite(s2)
    a = np.where(finite, a, 1.0)
    b = np.where(finite, b, 1.0)
    s1 = np.where(finite, s1, -1.0)
    s2 = np.where(finite, s2, -1.0)
    objective = _beta_log_likelihood_per_value(a, b, s1, s2)
    active = np.ones(a.shape, dtype=bool)
    for _ in range(iterations):
        if not active.any():
            break
        psi_ab = special.digamma(a + b)
        gradient_a = s1 - special.digamma(a) + psi_ab
        gradient_b = s2 - special.digamma(b) + psi_ab
        t_ab = special.polygamma(1, a + b)
        j11 = special.polygamma(1, a) - t_ab
        j22 = special.polygamma(1, b) - t_ab
        j12 = -t_ab
        determinant = j11 * j22 - j12 * j12
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            step_a = (j22 * gradient_a - j12 * gradient_b) / determinant
            step_b = (j11 * gradient_b - j12 * gradient_a) / determinant
        bad = ~(np.isfinite(step_a) & np.isfinite(step_b))
        # fall back to a scaled gradient step where the Hessian is numerically singular
        step_a = np.where(bad, gradient_a * a * a, step_a)
        step_b = np.where(bad, gradient_b * b * b, step_b)
        step = np.ones(a.shape)
        accepted = np.zeros(a.shape, dtype=bool)
        new_a, new_b, new_objective = a, b, objective
        for _ in range(60):
            candidate_a = np.clip(a + step * step_a, a * 1e-3, max_shape)
            candidate_b = np.clip(b + step * step_b, b * 1e-3, max_shape)
            with np.errstate(invalid="ignore", over="ignore"):
                candidate = _beta_log_likelihood_per_value(candidate_a, candidate_b, s1, s2)
            ok = active & ~accepted & (candidate >= objective - 1e-15 * np.abs(objective))
            new_a = np.where(ok, candidate_a, new_a)
            new_b = np.where(ok, candidate_b, new_b)
            new_objective = np.where(ok, candidate, new_objective)
            accepted |= ok
            if accepted[active].all():
                break
            step = step * 0.5
        change = np.maximum(np.abs(new_a - a) / a, np.abs(new_b - b) / b)
        a, b, objective = new_a, new_b, new_objective
        active &= accepted & (change > 1e-13)
    a = np.where(finite, a, np.nan)
    b = np.where(finite, b, np.nan)
    return a, b


@dataclass(frozen=True, slots=True)
class BetaFit:
    """Maximum-likelihood Beta(a, b) fit of values rescaled to [0, 1].

    Attributes
    ----------
    a, b : shape parameters.
    a_standard_error, b_standard_error, ab_covariance : from the inverse Fisher
        information ``n I(a, b)``, ``I = [[ψ'(a) - ψ'(a+b), -ψ'(a+b)], [-ψ'(a+b),
        ψ'(b) - ψ'(a+b)]]`` (observed = expected information: the Beta is an
        exponential family in (a, b)).
    log_likelihood : on the original scale (Jacobian ``-n log(upper - lower)``
        included), of the clipped values.
    aic, bic : ``2k - 2LL``, ``k log n - 2LL`` with k = 2.
    n : number of values.
    n_clipped : number of values moved into ``[delta, 1 - delta]``.
    u_shaped : both upper bounds of the 95% Wald intervals for a and b are below 1.
    delta : the clipping margin.
    """

    a: np.ndarray
    b: np.ndarray
    a_standard_error: np.ndarray
    b_standard_error: np.ndarray
    ab_covariance: np.ndarray
    log_likelihood: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    n: np.ndarray
    n_clipped: np.ndarray
    u_shaped: np.ndarray
    delta: float

    def confidence_interval(self, confidence_level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Wald intervals ``(a_low, a_high, b_low, b_high)``: estimate ± z SE."""
        z = special.ndtri(0.5 + confidence_level / 2)
        return (
            self.a - z * self.a_standard_error,
            self.a + z * self.a_standard_error,
            self.b - z * self.b_standard_error,
            self.b + z * self.b_standard_error,
        )

    def is_u_shaped(self, confidence_level: float = 0.95) -> np.ndarray:
        """Both upper Wald bounds below 1: density rising towards both 0 and 1."""
        _, a_high, _, b_high = self.confidence_interval(confidence_level)
        return (a_high < 1) & (b_high < 1)


def fit_beta_from_statistics(
    statistics, lower: float = 0.0, upper: float = 1.0, *, delta: float = DEFAULT_DELTA
) -> BetaFit:
    """Beta MLE from :func:`beta_sufficient_statistics` (possibly summed over chunks).

    Parameters
    ----------
    statistics : array_like, shape (..., 4)
    lower, upper : float
        Range of the activation (only for the Jacobian of the log-likelihood).
    delta : float
        The clipping margin used (recorded in the result).

    Returns
    -------
    BetaFit
        NaN where n < 2 or all values are equal.

    Verification: statistics summed over chunks give the fit of the whole to 1e-12;
    the fit equals ``scipy.stats.beta.fit`` (see :func:`fit_beta`).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import beta_sufficient_statistics, fit_beta_from_statistics
    >>> y = np.random.default_rng(0).beta(2.0, 5.0, size=(2, 5000))
    >>> chunks = beta_sufficient_statistics(y[:, :2500]) + beta_sufficient_statistics(y[:, 2500:])
    >>> fit = fit_beta_from_statistics(chunks)
    >>> print(np.round(fit.a), np.round(fit.b))
    [2. 2.] [5. 5.]
    """
    statistics = np.asarray(statistics, dtype=np.float64)
    n, sum_log, sum_log_complement, clipped = np.moveaxis(statistics, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s1 = sum_log / n
        s2 = sum_log_complement / n
        # Jensen: exp(s1) + exp(s2) < 1 unless all values are equal
        degenerate = (n < 2) | ~(np.exp(s1) + np.exp(s2) < 1 - 1e-12)
    s1 = np.where(degenerate, np.nan, s1)
    s2 = np.where(degenerate, np.nan, s2)
    a, b = _solve_beta(s1, s2)
    t_ab = special.polygamma(1, a + b)
    j11 = special.polygamma(1, a) - t_ab
    j22 = special.polygamma(1, b) - t_ab
    with np.errstate(invalid="ignore", divide="ignore"):
        determinant = n * (j11 * j22 - t_ab**2)
        variance_a = j22 / determinant
        variance_b = j11 / determinant
        covariance = t_ab / determinant
        log_likelihood = n * _beta_log_likelihood_per_value(a, b, s1, s2) - n * np.log(upper - lower)
        bic = 2 * np.log(n) - 2 * log_likelihood
    a_standard_error = np.sqrt(variance_a)
    b_standard_error = np.sqrt(variance_b)
    z = special.ndtri(0.975)
    u_shaped = (a + z * a_standard_error < 1) & (b + z * b_standard_error < 1)
    return BetaFit(
        a=a,
        b=b,
        a_standard_error=a_standard_error,
        b_standard_error=b_standard_error,
        ab_covariance=covariance,
        log_likelihood=log_likelihood,
        aic=4 - 2 * log_likelihood,
        bic=bic,
        n=n,
        n_clipped=clipped,
        u_shaped=u_shaped,
        delta=delta,
    )


def fit_beta(
    x, lower: float = 0.0, upper: float = 1.0, axis: Axis = -1, *, delta: float = DEFAULT_DELTA
) -> BetaFit:
    """Maximum-likelihood Beta fit of activations rescaled to [0, 1], with Wald SEs.

    Parameters
    ----------
    x : array_like
        Activations in ``[lower, upper]`` (NaN skipped).
    lower, upper : float
        Range of the activation function.
    axis : int, tuple of int or None, default -1
    delta : float, default 1e-6
        Rescaled values are clipped into ``[delta, 1 - delta]`` first.

    Returns
    -------
    BetaFit
        ``u_shaped`` is True where both upper 95% Wald bounds of a and b are below 1.

    Notes
    -----
    Solves ``ψ(a) - ψ(a+b) = mean log y``, ``ψ(b) - ψ(a+b) = mean log(1-y)`` by Newton's
    method from Minka's starting point, vectorised over groups. Values piled up at the
    bounds enter as ``delta`` / ``1 - delta``, which pulls a or b towards 0; read
    ``n_clipped`` with the fit.

    Verification: a, b equal ``scipy.stats.beta.fit(y, floc=0, fscale=1)`` to 1e-6
    relative and the log-likelihood equals ``scipy.stats.beta.logpdf(...).sum()``
    (``tests/reference/bounded.json`` and live); the standard errors equal the
    inverse of a finite-difference Hessian of scipy's log-likelihood
    (``statsmodels.tools.numdiff.approx_hess3``) and match the spread of the estimates
    over simulated samples.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import fit_beta
    >>> fit = fit_beta(np.random.default_rng(0).beta(0.2, 0.2, size=4000))
    >>> bool(fit.u_shaped)
    True
    """
    return fit_beta_from_statistics(
        beta_sufficient_statistics(x, lower, upper, axis, delta=delta), lower, upper, delta=delta
    )


# ------------------------------------------------------------------- logit-normal


@dataclass(frozen=True, slots=True)
class LogitNormalFit:
    """Maximum-likelihood logit-normal fit: ``logit(y) ~ N(mean_logit, std_logit²)``.

    Attributes
    ----------
    mean_logit, std_logit : MLE of the normal on the logit scale (std with ddof=0).
    log_likelihood : on the original scale, including the Jacobian
        ``-Σ log(y(1-y)) - n log(upper - lower)``, so it is comparable with
        :class:`BetaFit`'s.
    aic, bic : with k = 2.
    n, n_clipped : as in :class:`BetaFit`.
    delta : the clipping margin.
    """

    mean_logit: np.ndarray
    std_logit: np.ndarray
    log_likelihood: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    n: np.ndarray
    n_clipped: np.ndarray
    delta: float


def fit_logit_normal(
    x, lower: float = 0.0, upper: float = 1.0, axis: Axis = -1, *, delta: float = DEFAULT_DELTA
) -> LogitNormalFit:
    """Maximum-likelihood logit-normal fit of activations rescaled to [0, 1].

    Parameters
    ----------
    x : array_like
        Activations (NaN skipped).
    lower, upper : float
    axis : int, tuple of int or None, default -1
    delta : float, default 1e-6
        Clipping margin, as in :func:`fit_beta`.

    Returns
    -------
    LogitNormalFit

    Notes
    -----
    For a sigmoid layer ``logit(y)`` is the pre-activation, so a logit-normal fit is a
    normal fit of the pre-activations, with the likelihood carried to the activation
    scale: ``LL = Σ log φ((l - μ)/σ) - n log σ - Σ log y - Σ log(1 - y) - n log(upper - lower)``.

    Verification: the log-likelihood equals
    ``Σ scipy.stats.norm.logpdf(logit y, μ, σ) - Σ log(y(1-y))`` and ``(μ, σ)`` equal
    ``scipy.stats.norm.fit(logit y)`` (``tests/test_kernels_bounded.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import fit_logit_normal
    >>> y = 1 / (1 + np.exp(-np.random.default_rng(0).normal(1.0, 2.0, size=10000)))
    >>> fit = fit_logit_normal(y)
    >>> print(round(float(fit.mean_logit), 1), round(float(fit.std_logit), 1))
    1.0 2.0
    """
    rows = as_rows(x, axis)
    y, clipped = _clip_unit(rows.values, lower, upper, delta)
    valid = rows.valid
    y = np.where(valid, y, 0.5)
    log_y = np.log(y)
    log_complement = np.log1p(-y)
    logit = np.where(valid, log_y - log_complement, 0.0)
    n = rows.counts.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = logit.sum(axis=1) / n
        deviation = np.where(valid, logit - mean[:, None], 0.0)
        variance = (deviation**2).sum(axis=1) / n
        jacobian = np.where(valid, log_y + log_complement, 0.0).sum(axis=1)
        log_likelihood = (
            -0.5 * n * np.log(2 * np.pi * variance) - 0.5 * n - jacobian - n * np.log(upper - lower)
        )
        bic = 2 * np.log(n) - 2 * log_likelihood
    degenerate = (n < 2) | ~(variance > 0)
    mean = np.where(n > 0, mean, np.nan)
    std = np.where(degenerate, np.nan, np.sqrt(variance))
    log_likelihood = np.where(degenerate, np.nan, log_likelihood)
    return LogitNormalFit(
        mean_logit=rows.unflatten(mean),
        std_logit=rows.unflatten(std),
        log_likelihood=rows.unflatten(log_likelihood),
        aic=rows.unflatten(4 - 2 * log_likelihood),
        bic=rows.unflatten(np.where(degenerate, np.nan, bic)),
        n=rows.unflatten(n),
        n_clipped=rows.unflatten((clipped & valid).sum(axis=1).astype(float)),
        delta=delta,
    )


def fit_logit_normal_from_statistics(logit_moments, beta_statistics, lower: float = 0.0, upper: float = 1.0, *,
                                     delta: float = DEFAULT_DELTA) -> LogitNormalFit:
    """Logit-normal MLE from merged moments of ``logit y`` and :func:`beta_sufficient_statistics`.

    For groups streamed chunk by chunk: ``logit_moments`` (``(..., 5)``, from
    :func:`~actstats.kernels.moments` of the logits of the clipped rescaled values,
    merged with :func:`~actstats.kernels.combine_moments`) give ``μ`` and ``σ``; the
    Beta statistics (summed) give the Jacobian ``Σ log y + Σ log(1 - y)`` and the clip count.

    Verification: equal to :func:`fit_logit_normal` of the whole to 1e-10 relative
    (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import (beta_sufficient_statistics, fit_logit_normal_from_statistics,
    ...                               moments)
    >>> y = 1 / (1 + np.exp(-np.random.default_rng(0).normal(1.0, 2.0, size=10000)))
    >>> fit = fit_logit_normal_from_statistics(moments(np.log(y) - np.log1p(-y)), beta_sufficient_statistics(y))
    >>> print(round(float(fit.mean_logit), 1), round(float(fit.std_logit), 1))
    1.0 2.0
    """
    logit_moments = np.asarray(logit_moments, dtype=np.float64)
    statistics = np.asarray(beta_statistics, dtype=np.float64)
    n, sum_log, sum_log_complement, clipped = np.moveaxis(statistics, -1, 0)
    mean = logit_moments[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = logit_moments[..., 2] / n
        log_likelihood = (
            -0.5 * n * np.log(2 * np.pi * variance) - 0.5 * n - (sum_log + sum_log_complement)
            - n * np.log(upper - lower)
        )
        bic = 2 * np.log(n) - 2 * log_likelihood
    degenerate = (n < 2) | ~(variance > 0)
    log_likelihood = np.where(degenerate, np.nan, log_likelihood)
    return LogitNormalFit(
        mean_logit=np.where(n > 0, mean, np.nan),
        std_logit=np.where(degenerate, np.nan, np.sqrt(variance)),
        log_likelihood=log_likelihood,
        aic=4 - 2 * log_likelihood,
        bic=np.where(degenerate, np.nan, bic),
        n=n,
        n_clipped=clipped,
        delta=delta,
    )


# -------------------------------------------------------------------- Beta mixture

_COMPONENTS = ("low", "interior", "high")


@dataclass(frozen=True, slots=True)
class BetaMixtureFit:
    """Three-component Beta mixture (near 0, interior, near 1), fitted by EM.

    Component arrays have a last axis of length 3 ordered ``("low", "interior",
    "high")`` by component mean.

    Attributes
    ----------
    weights, a, b : mixture weights and Beta shapes of the components.
    log_likelihood, aic, bic : of the mixture (k = 8 parameters) on all n values.
    single_log_likelihood, single_aic, single_bic : of the single Beta MLE on the same
        values (k = 2).
    preferred_by_bic : ``bic < single_bic``.
    n : number of values; n_used : number of values EM ran on (a deterministic
        subsample of at most ``max_size``).
    iterations, converged : EM diagnostics.
    delta : the clipping margin.
    """

    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray
    log_likelihood: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    single_log_likelihood: np.ndarray
    single_aic: np.ndarray
    single_bic: np.ndarray
    preferred_by_bic: np.ndarray
    n: np.ndarray
    n_used: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    delta: float


def _mixture_log_densities(log_y, log_complement, weights, a, b):
    return (
        np.log(weights)[None, :]
        + (a - 1)[None, :] * log_y[:, None]
        + (b - 1)[None, :] * log_complement[:, None]
        - special.betaln(a, b)[None, :]
    )


def _newton_step_beta(a, b, s1, s2, max_shape):
    """One safeguarded Newton step of the (weighted) Beta MLE for each component.

    The step is halved until the shapes stay in (0, max_shape] and the expected
    log-likelihood does not decrease, so EM with this M-step (a generalised EM) keeps
    the likelihood non-decreasing.
    """
    psi_ab = special.digamma(a + b)
    gradient_a = s1 - special.digamma(a) + psi_ab
    gradient_b = s2 - special.digamma(b) + psi_ab
    t_ab = special.polygamma(1, a + b)
    j11 = special.polygamma(1, a) - t_ab
    j22 = special.polygamma(1, b) - t_ab
    determinant = j11 * j22 - t_ab * t_ab
    step_a = (j22 * gradient_a + t_ab * gradient_b) / determinant
    step_b = (j11 * gradient_b + t_ab * gradient_a) / determinant
    current = _beta_log_likelihood_per_value(a, b, s1, s2)
    new_a, new_b = a.copy(), b.copy()
    # steps at round-off level are not worth a line search
    pending = (
        np.isfinite(step_a) & np.isfinite(step_b)
        & ((np.abs(step_a) > 1e-12 * a) | (np.abs(step_b) > 1e-12 * b))
    )
    tolerance = 1e-14 * np.abs(current)
    step = 1.0
    for _ in range(40):
        if not pending.any():
            break
        candidate_a = np.clip(a + step * step_a, a * 1e-3, max_shape)
        candidate_b = np.clip(b + step * step_b, b * 1e-3, max_shape)
        candidate = _beta_log_likelihood_per_value(candidate_a, candidate_b, s1, s2)
        better = pending & (candidate >= current - tolerance)
        new_a = np.where(better, candidate_a, new_a)
        new_b = np.where(better, candidate_b, new_b)
        pending &= ~better
        step *= 0.5
    return new_a, new_b


def _em_beta_mixture(log_y, log_complement, start, *, max_iterations, tolerance, max_shape):
    """EM for a 3-component Beta mixture from initial responsibilities ``start`` (n, 3).

    E-step: responsibilities. M-step: weights, and for each component one safeguarded
    Newton step towards the weighted Beta MLE (it depends on the data only through the
    weighted means of log y and log(1-y)); the first M-step solves it fully. Stops when
    the total log-likelihood gains less than ``tolerance`` nats in an iteration.
    """
    data = np.stack([log_y, log_complement])  # (2, n); components on axis 0 (fast reductions)
    responsibilities = np.ascontiguousarray(start.T)  # (3, n)
    a = b = None
    previous = -np.inf
    log_likelihood = -np.inf
    converged = False
    iteration = 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        for iteration in range(1, max_iterations + 1):
            totals = responsibilities.sum(axis=1)
            weights = np.maximum(totals / totals.sum(), 1e-300)
            means = (responsibilities @ data.T) / totals[:, None]  # (3, 2)
            s1 = np.where(totals > 0, means[:, 0], -1.0)
            s2 = np.where(totals > 0, means[:, 1], -1.0)
            if a is None:
                a, b = _solve_beta(s1, s2, max_shape=max_shape)
                a = np.where(np.isfinite(a), a, 1.0)
                b = np.where(np.isfinite(b), b, 1.0)
            else:
                a, b = _newton_step_beta(a, b, s1, s2, max_shape)
            log_density = np.stack([a - 1, b - 1], axis=1) @ data
            log_density += (np.log(weights) - special.betaln(a, b))[:, None]
            peak = log_density.max(axis=0)
            log_total = peak + np.log(np.exp(log_density - peak).sum(axis=0))
            log_likelihood = log_total.sum()
            responsibilities = np.exp(log_density - log_total)
            if log_likelihood - previous < tolerance:
                converged = True
                break
            previous = log_likelihood
    return weights, a, b, log_likelihood, iteration, converged


def _mixture_starts(y):
    """Two deterministic starting responsibilities: fixed cut points and terciles.

    Cuts at 0.1 and 0.9 suit values piled at the bounds; tercile cuts always give three
    non-empty groups, which breaks the symmetry when nothing lies near a bound.
    Each start puts 0.97 on its group and 0.01 on each other component.
    """
    rank = np.argsort(np.argsort(y, kind="stable"), kind="stable") / y.size
    for group in (
        np.where(y < 0.1, 0, np.where(y > 0.9, 2, 1)),
        np.where(rank < 1 / 3, 0, np.where(rank >= 2 / 3, 2, 1)),
    ):
        yield 0.96 * (group[:, None] == np.arange(3)[None, :]) + 0.01


def fit_beta_mixture(
    x,
    lower: float = 0.0,
    upper: float = 1.0,
    axis: Axis = -1,
    *,
    delta: float = DEFAULT_DELTA,
    max_size: int = MIXTURE_MAX_SIZE,
    seed: int = DEFAULT_SEED,
    max_iterations: int = 500,
    tolerance: float = 1e-2,
    max_shape: float = 1e4,
) -> BetaMixtureFit:
    """Fit a mixture of three Beta distributions (near 0, interior, near 1) by EM.

    Parameters
    ----------
    x : array_like
        Activations (NaN skipped).
    lower, upper : float
    axis : int, tuple of int or None, default -1
    delta : float, default 1e-6
        Clipping margin, as in :func:`fit_beta`.
    max_size : int, default 20000
        EM runs on a deterministic subsample of this size (seeded by ``seed``; see
        :func:`actstats.kernels.deterministic_subsample`); the log-likelihoods are then
        evaluated on all values.
    seed : int, default 0
    max_iterations : int, default 500
    tolerance : float, default 1e-2
        EM stops when the total log-likelihood of the subsample (nats) gains less than
        this in one iteration. Mixtures with overlapping components are weakly
        identified and EM crawls along ridges there; log-likelihoods then agree to a
        few nats, which does not move BIC comparisons, while the weights may differ by
        a few percent between tolerances.
    max_shape : float, default 1e4
        Upper bound on every shape parameter.

    Returns
    -------
    BetaMixtureFit
        Components sorted by mean into low, interior, high. NaN for n < 10.

    Notes
    -----
    EM runs from two deterministic starts (cut points 0.1/0.9 and terciles; see
    ``_mixture_starts``) and keeps the one with the higher likelihood; the components
    are then sorted by mean. Shapes are capped at ``max_shape``, which keeps the
    likelihood bounded when values pile up at the clipping margin (a point mass).
    Cost: at most ``2 × max_iterations`` passes over ``max_size`` values per group.

    The comparison with a single Beta uses the full-data single-Beta MLE and the
    mixture fitted on the subsample, both evaluated on all values: if anything this
    favours the single Beta. A mixture whose components coincide is the single Beta
    with 6 wasted parameters, so it loses by BIC.

    Verification: recovers the parameters of simulated three-component mixtures;
    its log-likelihood equals ``Σ log Σ_k w_k scipy.stats.beta.pdf`` and it never falls
    below the single Beta's by more than the subsample effect
    (``tests/test_kernels_bounded.py``). EM finds a local maximum: not verified to be
    global.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import fit_beta_mixture
    >>> rng = np.random.default_rng(0)
    >>> y = np.concatenate([rng.beta(0.5, 30, 3000), rng.beta(5, 5, 4000), rng.beta(30, 0.5, 3000)])
    >>> fit = fit_beta_mixture(y)
    >>> print(np.round(fit.weights, 1), bool(fit.preferred_by_bic))
    [0.3 0.4 0.3] True
    """
    rows = as_rows(x, axis)
    single = fit_beta(rows.values, lower, upper, axis=-1, delta=delta)
    width = np.log(upper - lower)

    def fit(values):
        y = np.clip(rescale_to_unit(values, lower, upper), delta, 1 - delta)
        subsample = deterministic_subsample(y, max_size, seed)
        log_y, log_complement = np.log(subsample), np.log1p(-subsample)
        best = None
        for start in _mixture_starts(subsample):
            candidate = _em_beta_mixture(
                log_y, log_complement, start,
                max_iterations=max_iterations, tolerance=tolerance, max_shape=max_shape,
            )
            if best is None or candidate[3] > best[3]:
                best = candidate
        weights, a, b, _, iterations, converged = best
        order = np.argsort(a / (a + b), kind="stable")
        weights, a, b = weights[order], a[order], b[order]
        log_likelihood = special.logsumexp(
            _mixture_log_densities(np.log(y), np.log1p(-y), weights, a, b), axis=1
        ).sum() - y.size * width
        return weights, a, b, log_likelihood, subsample.size, iterations, converged

    weights, a, b, log_likelihood, n_used, iterations, converged = map_rows(
        fit,
        rows,
        [(3,), (3,), (3,), (), (), (), ()],
        minimum_count=10,
        dtypes=[float, float, float, float, float, float, bool],
    )
    n = rows.unflatten(rows.counts.astype(float))
    n_used = np.where(n >= 10, n_used, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        aic = 16 - 2 * log_likelihood
        bic = 8 * np.log(n) - 2 * log_likelihood
    single_log_likelihood = single.log_likelihood.reshape(n.shape)
    single_bic = single.bic.reshape(n.shape)
    return BetaMixtureFit(
        weights=weights,
        a=a,
        b=b,
        log_likelihood=log_likelihood,
        aic=aic,
        bic=bic,
        single_log_likelihood=single_log_likelihood,
        single_aic=single.aic.reshape(n.shape),
        single_bic=single_bic,
        preferred_by_bic=bic < single_bic,
        n=n,
        n_used=n_used,
        iterations=iterations,
        converged=converged,
        delta=delta,
    )


# ------------------------------------------------------------------ the criterion


def bimodal_at_bounds(
    dip_pvalue,
    bimodality_coefficient,
    u_shaped,
    mixture: BetaMixtureFit,
    *,
    alpha: float = 0.05,
    min_weight: float = 0.1,
) -> np.ndarray:
    """The criterion "the values pile up at both bounds, with a dip between them".

    ``bimodal_at_bounds = multimodal AND mass_at_both_bounds`` where

    * ``multimodal``: the dip test rejects unimodality at ``alpha``
      (``dip_pvalue < alpha``; pass Benjamini–Hochberg adjusted p-values when many
      groups are tested) OR Sarle's ``bimodality_coefficient > 5/9``;
    * ``mass_at_both_bounds``: the single Beta fit is U-shaped (both upper 95% Wald
      bounds of a and b below 1) OR the three-component Beta mixture beats the single
      Beta by BIC with at least ``min_weight`` in each of the low and high
      components, and those components pile up at their bound (low component
      ``a < 1``, high component ``b < 1``: density unbounded at 0, resp. 1).

    The second alternative catches distributions the single Beta cannot describe
    (spikes at both bounds plus an interior bump); the shape conditions keep two
    interior modes (e.g. at 0.3 and 0.7) from counting as "at the bounds".

    Parameters
    ----------
    dip_pvalue, bimodality_coefficient, u_shaped : array_like
        From :func:`dip_test`, :func:`bimodality_coefficient`, :class:`BetaFit`.
    mixture : BetaMixtureFit
    alpha : float, default 0.05
    min_weight : float, default 0.1

    Returns
    -------
    ndarray of bool
        False where an input is NaN.

    Verification: True for Beta(0.2, 0.2) samples and for spike–bump–spike mixtures;
    False for Beta(5, 5), logit-normal(0, 1), a one-sided pile-up Beta(0.3, 5) and two
    interior modes (``tests/test_kernels_bounded.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import bimodality
    >>> y = np.random.default_rng(0).beta(0.2, 0.2, size=2000)
    >>> bool(bimodality(y).bimodal_at_bounds)
    True
    """
    dip_pvalue = np.asarray(dip_pvalue, dtype=float)
    coefficient = np.asarray(bimodality_coefficient, dtype=float)
    with np.errstate(invalid="ignore"):
        multimodal = (dip_pvalue < alpha) | (coefficient > BIMODALITY_COEFFICIENT_THRESHOLD)
        mixture_supports = (
            np.asarray(mixture.preferred_by_bic, dtype=bool)
            & (mixture.weights[..., 0] >= min_weight)
            & (mixture.weights[..., 2] >= min_weight)
            & (mixture.a[..., 0] < 1)
            & (mixture.b[..., 2] < 1)
        )
    return multimodal & (np.asarray(u_shaped, dtype=bool) | mixture_supports)


@dataclass(frozen=True, slots=True)
class BimodalityResult:
    """Everything the ``bimodality`` query reports, for each group.

    Attributes
    ----------
    dip, dip_pvalue : Hartigan's dip test.
    bimodality_coefficient : Sarle's BC (adjusted G1, G2).
    beta : single Beta fit (``beta.a``, ``beta.b``, ``beta.u_shaped`` …).
    logit_normal : logit-normal fit, for comparison with the Beta by AIC.
    mixture : three-component Beta mixture.
    bimodal_at_bounds : :func:`bimodal_at_bounds` with the unadjusted dip p-value.
    """

    dip: np.ndarray
    dip_pvalue: np.ndarray
    bimodality_coefficient: np.ndarray
    beta: BetaFit
    logit_normal: LogitNormalFit
    mixture: BetaMixtureFit
    bimodal_at_bounds: np.ndarray


def bimodality(
    x,
    lower: float = 0.0,
    upper: float = 1.0,
    axis: Axis = -1,
    *,
    delta: float = DEFAULT_DELTA,
    alpha: float = 0.05,
    mixture_max_size: int = MIXTURE_MAX_SIZE,
    seed: int = DEFAULT_SEED,
) -> BimodalityResult:
    """Dip test, bimodality coefficient, Beta, logit-normal and Beta-mixture fits.

    Parameters
    ----------
    x : array_like
        Activations in ``[lower, upper]`` (NaN skipped).
    lower, upper : float
    axis : int, tuple of int or None, default -1
    delta : float, default 1e-6
    alpha : float, default 0.05
        Level of the dip test inside :func:`bimodal_at_bounds`. When many groups are
        tested, adjust ``dip_pvalue`` (:func:`benjamini_hochberg`) and call
        :func:`bimodal_at_bounds` again.
    mixture_max_size : int, default 20000
    seed : int, default 0

    Returns
    -------
    BimodalityResult

    Verification: see the functions it calls.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import bimodality
    >>> y = np.random.default_rng(0).beta(5, 5, size=(2, 1000))
    >>> bimodality(y).bimodal_at_bounds
    array([False, False])
    """
    rows = as_rows(x, axis)
    values = rows.values  # (n_rows, m): every kernel below reduces its last axis
    dip = dip_test(values)
    coefficient = bimodality_coefficient(x=values)
    beta = fit_beta(values, lower, upper, delta=delta)
    logit_normal = fit_logit_normal(values, lower, upper, delta=delta)
    mixture = fit_beta_mixture(values, lower, upper, delta=delta, max_size=mixture_max_size, seed=seed)
    verdict = bimodal_at_bounds(dip.pvalue, coefficient, beta.u_shaped, mixture, alpha=alpha)

    def shaped(obj):
        fields = {}
        for name in obj.__dataclass_fields__:
            value = getattr(obj, name)
            fields[name] = rows.unflatten(value) if isinstance(value, np.ndarray) and value.ndim >= 1 else value
        return type(obj)(**fields)

    return BimodalityResult(
        dip=rows.unflatten(dip.statistic),
        dip_pvalue=rows.unflatten(dip.pvalue),
        bimodality_coefficient=rows.unflatten(coefficient),
        beta=shaped(beta),
        logit_normal=shaped(logit_normal),
        mixture=shaped(mixture),
        bimodal_at_bounds=rows.unflatten(verdict),
    )
