"""Maximum-likelihood fits of candidate families to weights (or any real values).

Families (names are a contract): ``normal``, ``t``, ``laplace``, ``logistic``,
``uniform``, ``gennorm`` — the ``scipy.stats`` distributions ``norm``, ``t``,
``laplace``, ``logistic``, ``uniform``, ``gennorm``. Each is fitted to each group; the
log-likelihood, AIC, BIC and Kolmogorov–Smirnov distance are computed on all of the
group's values, so the families are compared on the same data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from ._jit import jit
from ._rows import DEFAULT_SEED, Axis, deterministic_subsample
from .normality import _scratch, sort_sample

__all__ = ["FAMILIES", "FamilyFits", "SLOW_FIT_MAX_SIZE", "fit_families", "ks_from_cdf", "logit_grid_cdfs"]

#: Supported families, in the order of the family axis.
FAMILIES = ("normal", "t", "laplace", "logistic", "uniform", "gennorm")
#: ``t`` and ``gennorm`` (numerical optimisation in scipy) are fitted on a
#: deterministic subsample of at most this many values.
SLOW_FIT_MAX_SIZE = 20_000

_SCIPY = {
    "normal": stats.norm,
    "t": stats.t,
    "laplace": stats.laplace,
    "logistic": stats.logistic,
    "uniform": stats.uniform,
    "gennorm": stats.gennorm,
}
_N_PARAMETERS = {"normal": 2, "t": 3, "laplace": 2, "logistic": 2, "uniform": 2, "gennorm": 3}
_SLOW = frozenset({"t", "gennorm"})
_FORMULAS = frozenset({"normal", "laplace", "logistic", "uniform"})


@dataclass(frozen=True, slots=True)
class FamilyFits:
    """Fits of several families to each group; family is the last axis.

    Attributes
    ----------
    families : tuple of str
        Names along the last axis.
    shape, loc, scale : ndarray (..., F)
        Parameters in scipy's convention (``shape`` is ``df`` for t, ``beta`` for
        gennorm, NaN for two-parameter families).
    log_likelihood, aic, bic : ndarray (..., F)
        On all n values of the group.
    ks_statistic : ndarray (..., F)
        Kolmogorov–Smirnov distance between the data and the fitted distribution.
    n_parameters : ndarray (F,)
    fit_size : ndarray (..., F)
        Number of values each fit was estimated from (< n where subsampled).
    subsampled : ndarray of bool (..., F)
        ``fit_size < n``.
    n : ndarray (...)
    best_family : ndarray of str (...)
        Family with the lowest AIC ("" where nothing could be fitted).
    best_family_index : ndarray of int (...)
        Its position in ``families`` (-1 where nothing could be fitted).
    max_fit_size, seed : the subsampling settings used.
    """

    families: tuple[str, ...]
    shape: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    log_likelihood: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    ks_statistic: np.ndarray
    n_parameters: np.ndarray
    fit_size: np.ndarray
    subsampled: np.ndarray
    n: np.ndarray
    best_family: np.ndarray
    best_family_index: np.ndarray
    max_fit_size: int
    seed: int


def _logpdf_cdf(family, x, loc, scale):
    """``logpdf`` and ``cdf`` of the two-parameter families by their formulas: the same
    values as ``scipy.stats.<family>.logpdf/cdf`` (to rounding; tests/test_kernels_fits.py
    compares them) at a fraction of the cost of scipy's generic machinery on 10⁶ values."""
    with np.errstate(all="ignore"):
        z = (x - loc) / scale
        if family == "normal":
            return -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi), special.ndtr(z)
        if family == "laplace":
            return -np.abs(z) - np.log(2 * scale), np.where(z < 0, 0.5 * np.exp(z), 1 - 0.5 * np.exp(-z))
        if family == "logistic":
            a = np.abs(z)
            return -a - 2 * np.log1p(np.exp(-a)) - np.log(scale), special.expit(z)
        if family == "uniform":
            inside = (z >= 0) & (z <= 1)
            return np.where(inside, -np.log(scale), -np.inf), np.clip(z, 0, 1)
    raise AssertionError(family)


#: The logistic Newton iteration first runs on every k-th order statistic of a group
#: larger than this (a quantile summary whose root is within ~1/size of the group's: 2e-4 to
#: 9e-4 relative at 4096 on 10⁶ weights), then on summaries 16 times larger while the group
#: holds at least 8 times as many values as the next one (65 536 order statistics: 1e-5 to
#: 5e-5 from the root), then finishes on every value: two full steps from within ~5e-5 (the
#: second one, below 1e-8, stops it) where a start from the 4096 statistics of 10⁶ values took
#: three. (A group of 2¹⁸ values takes 2.2 full steps on average from 4096 statistics: the
#: ~2.2 steps on 65 536 more would cost more than they save.)
_LOGISTIC_WARM_START_SIZE = 4096


_LOG_2 = float(np.log(2.0))


def _dot(a, b):
    """``Σ a b`` without BLAS (whose threads contend with the scheduler's in a dask task)."""
    return np.einsum("i,i->", a, b)


#: Newton steps on at least this many values use the compiled passes (:func:`_logistic_half`,
#: :func:`_logistic_sums`); smaller ones numpy's (no numba to load for a small fit).
_LOGISTIC_COMPILED_SIZE = 2**16
#: The compiled sums add this many terms in sequence, then add that block's sum to a
#: compensated total: ~127 roundings of a block's terms at most, as numpy's pairwise sums.
_SUM_BLOCK = 128


@jit
def _logistic_half(x, mu, sc, half):
    """``u/2`` with ``u = (x - mu)/sc`` into ``half``: numpy's ``(x - mu)/sc*0.5``, bit for bit."""
    for i in range(x.size):
        half[i] = (x[i] - mu) / sc * 0.5


@jit
def _logistic_sums(half, t):
    """The seven sums of a logistic Newton step from ``u/2`` and ``t = tanh(u/2)``, in one pass:
    ``Σt, Σt², Σu, Σut, Σut², Σu², Σ(ut)²`` (``u = 2·half``, exact).

    Each is summed in blocks of :data:`_SUM_BLOCK` terms added in sequence, the blocks' sums
    into a compensated total (Neumaier): the error is that of ~127 additions of a block's
    terms, the order of numpy's pairwise sums (``tests/test_kernels_fits.py``)."""
    total = np.zeros(7)
    carry = np.zeros(7)
    block = np.zeros(7)
    n = half.size
    for start in range(0, n, _SUM_BLOCK):
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = 0.0
        for i in range(start, min(start + _SUM_BLOCK, n)):
            ti = t[i]
            u = half[i] + half[i]
            ut = u * ti
            s0 += ti
            s1 += ti * ti
            s2 += u
            s3 += ut
            s4 += ut * ti
            s5 += u * u
            s6 += ut * ut
        block[0], block[1], block[2], block[3], block[4], block[5], block[6] = s0, s1, s2, s3, s4, s5, s6
        for k in range(7):
            value = block[k]
            following = total[k] + value
            if abs(total[k]) >= abs(value):
                carry[k] += (total[k] - following) + value
            else:
                carry[k] += (value - following) + total[k]
            total[k] = following
    return total + carry


@jit
def _logistic_magnitudes(half, t):
    """``Σ|u|`` (``u = 2·half``) summed as :func:`_logistic_sums` sums, and ``t`` replaced by
    ``1 + |t|`` in place (the logistic log-likelihood's terms before their log)."""
    total = 0.0
    carry = 0.0
    n = half.size
    for start in range(0, n, _SUM_BLOCK):
        value = 0.0
        for i in range(start, min(start + _SUM_BLOCK, n)):
            value += abs(half[i] + half[i])
            t[i] = 1.0 + abs(t[i])
        following = total + value
        if abs(total) >= abs(value):
            carry += (total - following) + value
        else:
            carry += (value - following) + total
        total = following
    return total + carry


def _logistic_newton(x, mu, sc, max_steps=100, likelihood=False):
    """Newton's method on the logistic score equations from (mu, sc); returns (mu, sc, converged)
    (and, with ``likelihood``, the log-likelihood at the returned (mu, sc), NaN when not converged).

    The sums of one step are seven sums and dot products of ``t = tanh(u/2)`` and ``u t`` (the
    Jacobian's ``Σ d``, ``Σ u d`` and ``Σ u² d`` with ``d = 1 - t²`` expanded), so a step
    costs one ``tanh`` and a few passes. Convergence is quadratic: a step of relative size
    s leaves an error of order s², so the iteration stops after a step below 1e-8 that is
    smaller than the one before it (the error left is then below ~1e-16, as with a
    stopping rule of 1e-14 on the next step, one pass of ``tanh`` sooner).

    The log-likelihood comes from the last step's ``t``: at its parameters θ,
    ``log(1 + e^{-|u|}) = log 2 - log(1 + |t|)``, so ``ℓ(θ) = Σ(-|u| + 2 log(1 + |t|)) - 2n log 2
    - n log s`` (one ``log``, where ``Σ logpdf`` takes an ``exp`` and a ``log``); the step δ to
    the returned parameters (≤ 1e-8 relative) is added by Taylor's formula with the step's exact
    gradient ``(G1, G2)/s`` and Hessian (``J/s`` less the terms of ``∂(1/s)/∂s``); what it leaves
    is of order ``n |δ/s|³`` (< n·1e-24), far below the rounding of the sum (~n·1e-16).
    """
    n = float(x.size)
    previous = np.inf
    compiled = x.size >= _LOGISTIC_COMPILED_SIZE
    u, t, ut = [None, *_scratch(x.shape, 2)] if compiled else _scratch(x.shape, 3)
    for _ in range(max_steps):
        if compiled:  # u/2 into ut, its tanh, the seven sums: three passes
            _logistic_half(x, mu, sc, ut)
            np.tanh(ut, out=t)
            st, stt, su, sut, sutt, suu, sutut = _logistic_sums(ut, t)
        else:
            np.subtract(x, mu, out=u)
            np.divide(u, sc, out=u)
            np.multiply(u, 0.5, out=t)
            np.tanh(t, out=t)
            np.multiply(u, t, out=ut)
            st, stt, su, sut = t.sum(), _dot(t, t), u.sum(), ut.sum()
            sutt, suu, sutut = _dot(ut, t), _dot(u, u), _dot(ut, ut)
        g1, g2 = st, sut - n
        j11 = -(n - stt) / (2 * sc)
        j12 = -(su - sutt) / (2 * sc)
        j21 = -(st + (su - sutt) / 2) / sc
        j22 = -(sut + (suu - sutut) / 2) / sc
        det = j11 * j22 - j12 * j21
        if not np.isfinite(det) or det == 0:
            return mu, sc, False
        step_mu = (g1 * j22 - g2 * j12) / det
        step_sc = (j11 * g2 - j21 * g1) / det
        factor = 1.0
        while sc - factor * step_sc <= 0:
            factor /= 2
        last_mu, last_sc = mu, sc
        mu, sc = mu - factor * step_mu, sc - factor * step_sc
        size = max(abs(step_mu) / (abs(mu) + sc), abs(step_sc) / sc)
        if size <= 1e-14 or (factor == 1.0 and size <= 1e-8 and size < previous):
            converged = bool(np.isfinite(mu) and np.isfinite(sc))
            if not likelihood:
                return mu, sc, converged
            if not converged:
                return mu, sc, converged, np.nan
            # ℓ at the step's parameters from its t and u (u, t overwritten), then Taylor to (mu, sc)
            if compiled:
                magnitude = _logistic_magnitudes(ut, t)
            else:
                magnitude = np.abs(u, out=u).sum()
                np.abs(t, out=t)
                np.add(t, 1.0, out=t)
            logs = np.log(t, out=t).sum()
            at_last = -magnitude + 2.0 * logs - 2.0 * n * _LOG_2 - n * np.log(last_sc)
            d_mu, d_sc = mu - last_mu, sc - last_sc
            gradient = (g1 * d_mu + g2 * d_sc) / last_sc
            curvature = (j11 * d_mu * d_mu + 2.0 * (j12 - g1 / last_sc) * d_mu * d_sc
                         + (j22 - g2 / last_sc) * d_sc * d_sc) / last_sc
            return mu, sc, converged, at_last + gradient + 0.5 * curvature
        previous = size
    return (mu, sc, False, np.nan) if likelihood else (mu, sc, False)


def _logistic_mle(sample, usable):
    """Maximum-likelihood logistic (loc, scale) per row, by Newton's method on the score
    equations ``Σ tanh(u/2) = 0`` and ``Σ u tanh(u/2) = n`` with ``u = (x - loc)/scale``
    (the equations ``scipy.stats.logistic.fit`` solves), started from the median and the
    moments (on a quantile summary of a large group first, :data:`_LOGISTIC_WARM_START_SIZE`)
    and iterated to machine precision; rows where it does not converge fall back to scipy."""
    ordered, counts = sample.ordered, sample.counts
    n_rows = ordered.shape[0]
    loc = np.full(n_rows, np.nan)
    scale = np.full(n_rows, np.nan)
    log_likelihood = np.full(n_rows, np.nan)
    for i in np.flatnonzero(usable):
        x = ordered[i, : counts[i]]
        stride = x.size // _LOGISTIC_WARM_START_SIZE
        summary = x[stride // 2::stride] if stride > 1 else x
        # the median and the moments' scale (of the summary of a large group) start it
        middle = summary.size // 2
        median = summary[middle] if summary.size % 2 else 0.5 * (summary[middle - 1] + summary[middle])
        mu, sc = float(median), summary.std() * np.sqrt(3) / np.pi
        size = _LOGISTIC_WARM_START_SIZE
        while stride > 1:  # summaries of 4096, 65 536, ... order statistics, each from the last one's root
            start_mu, start_sc, converged = _logistic_newton(summary, mu, sc)
            if not converged:
                break
            mu, sc = start_mu, start_sc
            size *= 16
            stride = x.size // size if x.size >= 8 * size else 1
            summary = x[stride // 2::stride]
        mu, sc, converged, log_likelihood[i] = _logistic_newton(x, mu, sc, likelihood=True)
        if not converged:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                mu, sc = stats.logistic.fit(x)
        loc[i], scale[i] = mu, sc
    return loc, scale, log_likelihood


def _closed_form(family, sample):
    """MLE and log-likelihood for normal, laplace, uniform on sorted rows, a row at a time.

    The log-likelihoods are the sums of the log-densities written through the sufficient
    statistic the fit already computed (``Σ(x-μ)²`` for the normal, ``Σ|x-m|`` for the
    Laplace; the uniform's is ``-n log(range)``): the same sums as ``logpdf(...).sum()``
    up to the order of the float additions (numpy's pairwise sums of each row's values).
    """
    ordered, counts = sample.ordered, sample.counts
    n = counts.astype(float)
    n_rows = ordered.shape[0]
    if family == "uniform":
        last = np.maximum(counts - 1, 0)
        minimum = ordered[:, 0]
        maximum = np.take_along_axis(ordered, last[:, None], axis=1)[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            return minimum, maximum - minimum, -n * np.log(maximum - minimum)
    if family not in ("normal", "laplace"):
        raise AssertionError(family)
    loc, scale = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    squares = np.full(n_rows, np.nan)
    (work,) = _scratch((ordered.shape[1],), 1)  # one row's work: no copy of a task's many groups
    known = sample.row_sums.get("mean_squares") if family == "normal" else None
    if known is not None:  # normality_statistics' mean and Σ(x - mean)²: the same sums as below
        loc, squares = (a.copy() for a in known)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in np.flatnonzero(counts > 0) if known is None else ():
            count = int(counts[i])
            row, deviation = ordered[i, :count], work[:count]
            if family == "normal":
                loc[i] = row.sum() / count
                np.subtract(row, loc[i], out=deviation)
                squares[i] = np.multiply(deviation, deviation, out=deviation).sum()
            else:
                middle = count // 2
                loc[i] = row[middle] if count % 2 else 0.5 * (row[middle - 1] + row[middle])
                squares[i] = np.abs(np.subtract(row, loc[i], out=deviation), out=deviation).sum()
        if family == "normal":
            scale = np.sqrt(squares / n)
            return loc, scale, -0.5 * squares / scale**2 - n * np.log(scale) - 0.5 * n * np.log(2 * np.pi)
        scale = squares / n
        return loc, scale, -squares / scale - n * np.log(2 * scale)


def _logistic_log_likelihood(sample, loc, scale):
    """``Σ logpdf`` of the logistic: ``-|u| - 2 log(1 + e^{-|u|}) - log s`` summed, a row at a time.

    ``log(1 + e)`` for ``e = e^{-|u|}`` in (0, 1] is within about one ulp of ``log1p(e)``
    in absolute terms (the rounding of ``1 + e`` is at most 1.1e-16 relative), so the sum
    is within ~n·1e-16 of scipy's, the order of the rounding of the sum itself."""
    ordered, counts = sample.ordered, sample.counts
    total = np.full(ordered.shape[0], np.nan)
    magnitude_work, terms_work = _scratch((ordered.shape[1],), 2)
    with np.errstate(all="ignore"):
        for i in np.flatnonzero(counts > 0):
            count = int(counts[i])
            magnitude, terms = magnitude_work[:count], terms_work[:count]
            np.subtract(ordered[i, :count], loc[i], out=magnitude)
            np.divide(magnitude, scale[i], out=magnitude)
            np.abs(magnitude, out=magnitude)
            np.negative(magnitude, out=terms)
            np.exp(terms, out=terms)
            np.add(terms, 1.0, out=terms)
            np.log(terms, out=terms)
            np.multiply(terms, -2.0, out=terms)
            np.subtract(terms, magnitude, out=terms)
            total[i] = terms.sum()
        return total - counts * np.log(scale)


def fit_families(
    x,
    axis: Axis = -1,
    *,
    families=FAMILIES,
    max_fit_size: int = SLOW_FIT_MAX_SIZE,
    seed: int = DEFAULT_SEED,
    ks: bool = True,
) -> FamilyFits:
    """Fit each family by maximum likelihood; compare by AIC, BIC and KS distance.

    Parameters
    ----------
    x : array_like or SortedSample
        Data (NaN skipped), e.g. the weights of a layer, or groups already sorted by
        :func:`actstats.kernels.normality.sort_sample` (then ``axis`` is not used).
    axis : int, tuple of int or None, default -1
    families : sequence of str, default all of ``FAMILIES``
    max_fit_size : int, default 20000
        ``t`` and ``gennorm`` are estimated on a deterministic subsample of this many
        values (:func:`actstats.kernels.deterministic_subsample` with ``seed``); their
        likelihood, AIC, BIC and KS are still computed on all values.
    seed : int, default 0
    ks : bool, default True
        Compute ``ks_statistic`` (each family's CDF at every value); NaN without it.

    Returns
    -------
    FamilyFits
        Family on a new last axis; NaN for groups with fewer than 3 values or zero
        spread.

    Notes
    -----
    Estimators: normal — mean and std (ddof=0); laplace — median and mean absolute
    deviation from it; uniform — minimum and range (all closed forms, vectorised over
    groups); logistic — Newton's method on the score equations that
    ``scipy.stats.logistic.fit`` solves, on all values; t, gennorm — ``scipy.stats.{t,gennorm}.fit`` (numerical optimisation)
    on the subsample. ``gennorm`` contains the normal (β = 2) and the Laplace (β = 1),
    and ``t`` the normal (df → ∞); AIC charges their extra parameter.

    Verification: parameters equal ``scipy.stats.<family>.fit`` and log-likelihoods
    equal ``scipy.stats.<family>.logpdf(...).sum()`` (``tests/reference/fits.json`` and
    live); KS equals ``scipy.stats.kstest``; uniform, Laplace and normal samples are
    recognised (``tests/test_kernels_fits.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import fit_families
    >>> x = np.random.default_rng(0).uniform(-1, 1, size=(2, 3000))
    >>> fit_families(x, families=("normal", "laplace", "uniform")).best_family
    array(['uniform', 'uniform'], dtype='<U7')
    """
    families = tuple(families)
    unknown = [f for f in families if f not in _SCIPY]
    if unknown:
        raise ValueError(f"unknown family {unknown[0]!r}; choose from {', '.join(FAMILIES)}")
    sample = sort_sample(x, axis)
    rows, ordered, counts = sample.rows, sample.ordered, sample.counts
    n = counts.astype(float)
    n_rows, n_families = rows.n_rows, len(families)
    shape = np.full((n_rows, n_families), np.nan)
    loc = np.full((n_rows, n_families), np.nan)
    scale = np.full((n_rows, n_families), np.nan)
    fit_size = np.zeros((n_rows, n_families))
    log_likelihood = np.full((n_rows, n_families), np.nan)
    spread = np.where(counts > 0, np.take_along_axis(ordered, np.maximum(counts - 1, 0)[:, None], 1)[:, 0] - ordered[:, 0], 0.0)
    usable = (counts >= 3) & (spread > 0)

    for k, family in enumerate(families):
        if family in ("normal", "laplace", "uniform"):
            loc[:, k], scale[:, k], log_likelihood[:, k] = _closed_form(family, sample)
            fit_size[:, k] = n
            continue
        if family == "logistic":
            # ℓ from the Newton iteration's last step; Σ logpdf where it did not converge
            loc[:, k], scale[:, k], log_likelihood[:, k] = _logistic_mle(sample, usable)
            missing = np.isnan(log_likelihood[:, k])
            if missing.any():
                log_likelihood[missing, k] = _logistic_log_likelihood(sample, loc[:, k], scale[:, k])[missing]
            fit_size[:, k] = n
            continue
        for i in np.flatnonzero(usable):
            values = ordered[i, : counts[i]]
            if family in _SLOW:
                values = deterministic_subsample(rows.row(i), max_fit_size, seed)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                parameters = _SCIPY[family].fit(values)
            if len(parameters) == 3:
                shape[i, k] = parameters[0]
            loc[i, k], scale[i, k] = parameters[-2], parameters[-1]
            fit_size[i, k] = values.size

    ks_statistic = np.full((n_rows, n_families), np.nan)
    index = None  # 1..m, made when a KS distance or a scipy likelihood needs it
    for k, family in enumerate(families):
        if family in _FORMULAS and not ks:
            continue
        if index is None:
            index = np.arange(1, ordered.shape[1] + 1)[None, :]
        distribution = _SCIPY[family]
        arguments = ([shape[:, k, None]] if family in ("t", "gennorm") else []) + [
            loc[:, k, None],
            scale[:, k, None],
        ]
        with np.errstate(all="ignore"):
            if family in _FORMULAS:
                cdf = _logpdf_cdf(family, ordered, *arguments)[1]
            else:
                log_likelihood[:, k] = sample.sum(distribution.logpdf(ordered, *arguments))
                if not ks:
                    continue
                cdf = distribution.cdf(ordered, *arguments)
            above = sample.max(index / n[:, None] - cdf)
            below = sample.max(cdf - (index - 1) / n[:, None])
        ks_statistic[:, k] = np.maximum(above, below)

    log_likelihood = np.where(usable[:, None], log_likelihood, np.nan)
    ks_statistic = np.where(usable[:, None], ks_statistic, np.nan)
    shape = np.where(usable[:, None], shape, np.nan)
    loc = np.where(usable[:, None], loc, np.nan)
    scale = np.where(usable[:, None], scale, np.nan)
    n_parameters = np.array([_N_PARAMETERS[f] for f in families], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        aic = 2 * n_parameters - 2 * log_likelihood
        bic = n_parameters * np.log(n)[:, None] - 2 * log_likelihood
    finite = np.isfinite(aic)
    best_index = np.where(finite.any(axis=1), np.argmin(np.where(finite, aic, np.inf), axis=1), -1)
    names = np.array(list(families) + [""])
    best_family = names[best_index]
    return FamilyFits(
        families=families,
        shape=rows.unflatten(shape),
        loc=rows.unflatten(loc),
        scale=rows.unflatten(scale),
        log_likelihood=rows.unflatten(log_likelihood),
        aic=rows.unflatten(aic),
        bic=rows.unflatten(bic),
        ks_statistic=rows.unflatten(ks_statistic),
        n_parameters=n_parameters,
        fit_size=rows.unflatten(np.where(usable[:, None], fit_size, 0.0)),
        subsampled=rows.unflatten(usable[:, None] & (fit_size < n[:, None])),
        n=rows.unflatten(n),
        best_family=rows.unflatten(best_family),
        best_family_index=rows.unflatten(best_index),
        max_fit_size=max_fit_size,
        seed=seed,
    )


def ks_from_cdf(cdf, counts) -> np.ndarray:
    """Two-sided Kolmogorov–Smirnov distance of sorted samples to a model CDF, row by row.

    Parameters
    ----------
    cdf : array_like, shape (groups, m)
        The model CDF at each group's values sorted ascending, NaN (padding) last.
    counts : array_like of int, shape (groups,)
        The number of values of each group (its first ``counts`` entries count).

    Returns
    -------
    ndarray, shape (groups,)
        ``max_i max(i/n - F(x_(i)), F(x_(i)) - (i-1)/n)``; NaN for empty groups.

    Verification: equal to ``scipy.stats.kstest(x, cdf).statistic`` for Beta, normal and
    padded groups (``tests/test_kernels_fits.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> x = np.sort(np.array([0.1, 0.4, 0.5, 0.9]))
    >>> float(ks_from_cdf(stats.uniform.cdf(x)[None, :], np.array([4]))[0])
    0.25
    """
    cdf = np.asarray(cdf, dtype=float)
    counts = np.asarray(counts)
    n = counts[:, None].astype(float)
    index = np.arange(1, cdf.shape[1] + 1)[None, :]
    valid = index <= n
    with np.errstate(invalid="ignore", divide="ignore"):
        above = np.where(valid, index / n - cdf, -np.inf).max(axis=1, initial=-np.inf)
        below = np.where(valid, cdf - (index - 1) / n, -np.inf).max(axis=1, initial=-np.inf)
    distance = np.maximum(above, below)
    return np.where((counts > 0) & np.isfinite(distance), distance, np.nan)


def logit_grid_cdfs(family: str, parameters) -> tuple[np.ndarray, np.ndarray]:
    """A fitted family's CDF at the logit histogram's edges and bin middles.

    ``family`` is ``"beta"`` (``parameters = (a, b)`` on [0, 1]) or ``"logit_normal"``
    (``(mean, std)`` of logit y). Returns ``(..., bins + 1)`` and ``(..., bins)`` arrays
    (:func:`actstats.kernels.logit_histogram_edges` and ``_middles``), what
    :func:`actstats.kernels.logit_histogram_ks` compares a streamed histogram with.

    Verification: equal to ``scipy.stats.beta.cdf`` and ``scipy.stats.norm.cdf`` of the
    logit at the grid (``tests/test_kernels_fits.py``).

    Examples
    --------
    >>> edges, middles = logit_grid_cdfs("logit_normal", (0.0, 1.0))
    >>> bool(edges[0] < 0.5 < edges[-1]) and edges.shape[-1] == middles.shape[-1] + 1
    True
    """
    from scipy.special import betainc, expit, ndtr

    from .logit_histogram import logit_histogram_edges, logit_histogram_middles

    edges, middles = logit_histogram_edges(), logit_histogram_middles()
    if family == "beta":
        a, b = (np.asarray(p, dtype=float)[..., None] for p in parameters)
        return betainc(a, b, expit(edges)), betainc(a, b, expit(middles))
    if family != "logit_normal":
        raise ValueError(f"family must be 'beta' or 'logit_normal', got {family!r}")
    mean, std = (np.asarray(p, dtype=float)[..., None] for p in parameters)
    return ndtr((edges - mean) / std), ndtr((middles - mean) / std)
