"""Beta and logit-normal fits of bounded activations, exact and from streamed statistics.

Values in ``[lower, upper]`` (sigmoid ``[0, 1]``, tanh ``[-1, 1]``) are rescaled to
``y = (x - lower) / (upper - lower)`` in [0, 1]. For the likelihood-based fits ``y`` is
clipped into ``[delta, 1 - delta]`` (``delta = 1e-6`` by default): a float32 sigmoid
returns exactly 0 or 1 once saturated, where Beta and logit-normal densities are 0 or
infinite. Clipped values are counted (``n_clipped``) so a reader sees how much of a fit
rests on them. Log-likelihoods are on the scale of ``x`` (they include the Jacobian
``-n log(upper - lower)``) so that fits of different families are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ._rows import Axis, as_rows

__all__ = [
    "BETA_STATISTIC_FIELDS",
    "BetaFit",
    "DEFAULT_DELTA",
    "LogitNormalFit",
    "beta_sufficient_statistics",
    "fit_beta",
    "fit_beta_from_statistics",
    "fit_logit_normal",
    "fit_logit_normal_from_statistics",
    "rescale_to_unit",
]

#: Default clipping margin for likelihood fits on [0, 1].
DEFAULT_DELTA = 1e-6
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
