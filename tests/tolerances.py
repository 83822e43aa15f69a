"""The tolerance policy of the tests, as code (the policy itself: tests/README.md).

Every assertion that compares floats uses one of these, so that each tolerance says why it
is as tight as it is, and so that it holds on a CPU other than the one a test was written on
(another SIMD width changes the order of a sum and the last bits of ``exp``/``log``;
``make test-portable`` runs the numerical tests with numpy's dispatch narrowed to check this).

The four kinds:

1. **Same computation order** (capture's resume, the chunk codec, a chunked path that is the
   same code on the same slices): bit for bit, ``np.testing.assert_array_equal``.
2. **Two orders of the same floating-point sums** (a query against the kernel in a loop, dask
   against numpy, chunks merged against the whole): :func:`float_rtol` of the number of terms
   and the sum's condition number.
3. **A closed form against a reference value** from an independent implementation
   (tests/reference/): the same bound, since the reference was computed in float64 by other
   code: :func:`float_rtol` of n. A reference printed to fewer digits is compared at its
   printed precision.
4. **An iterative estimate** (Beta and logistic Newton, EM, scipy's optimisers): the
   optimiser's stopping tolerance carried through the problem's conditioning, e.g.
   :func:`beta_mle_rtol`; or the optimiser's stated tolerance, named in the assertion.
"""

from __future__ import annotations

import numpy as np
from scipy import special

#: Unit round-off of float64, u = 2**-53.
UNIT_ROUNDOFF = float(np.finfo(np.float64).eps / 2)

#: The largest error, in units of the last place, of the transcendental functions numpy
#: dispatches to SIMD kernels (exp, log, log1p, expm1, tanh: numpy's documented maximum ULP
#: errors of its AVX-512/AVX2/SVML float64 kernels are below 4) or that scipy.special computes.
FUNCTION_ULPS = 4


def float_rtol(n: int, *, condition: float = 1.0, dtype=np.float64, function_ulps: int = FUNCTION_ULPS) -> float:
    """Relative tolerance for two float computations of the same sum of ``n`` terms.

    Each term may carry ``function_ulps`` ulps of a transcendental function, and a sum of n
    terms in any order is within γ_{n-1} Σ|xᵢ| of the exact sum (Higham, *Accuracy and
    Stability of Numerical Algorithms*, 2nd ed., 2002, eq. 4.4: γ_k = k u / (1 - k u)). Two
    such computations differ by at most twice that, relative to the exact sum times the
    condition number ``condition`` = Σ|xᵢ| / |Σxᵢ| (1 for terms of one sign). A statistic
    built from a few such sums (a mean, a variance, a ratio) multiplies it by a small
    constant: pass that in ``condition``.

    Examples
    --------
    >>> f"{float_rtol(10_000):.1e}"
    '2.2e-12'
    """
    u = float(np.finfo(dtype).eps) / 2
    k = max(int(n) - 1, 1)
    gamma = k * u / (1 - k * u)
    return 2 * (function_ulps * u + gamma) * float(condition)


#: The condition factor for a statistic made of a few float sums (a mean and a standard
#: deviation, a ratio of moments, a Wilson bound, a permutation p-value's counts divided):
#: each operation adds at most an ulp and passes the sums' relative error on with a factor
#: of at most 2 (a square, a ratio); 16 covers four such steps.
STATISTIC = 16

#: Benjamini–Hochberg adjusted p-values against statsmodels: the same sort, products p·m/k
#: and running minimum of the same p-values, one rounding each, so a few ulps.
BH_RTOL = 8 * UNIT_ROUNDOFF * STATISTIC


def sum_condition(x) -> float:
    """The condition number Σ|xᵢ| / |Σxᵢ| of a sum (1 for terms of one sign; large for a mean
    near zero of terms of both signs, e.g. a layer's weights).

    Examples
    --------
    >>> sum_condition([1.0, 2.0]), sum_condition([1.0, -0.5])
    (1.0, 3.0)
    """
    x = np.asarray(x, dtype=float)
    total = abs(float(x.sum()))
    return float(np.abs(x).sum() / total) if total > 0 else float("inf")


#: Beta Newton's line search (actstats.kernels' Beta MLE) accepts a step whose per-value
#: log-likelihood is not lower than the current one by more than this, relative.
BETA_LINE_SEARCH = 1e-15


def beta_mle_rtol(a: float, b: float, n: int, *, mean_abs_log: float = 1.0) -> float:
    """Relative tolerance of a Beta MLE (a, b) computed twice: on sufficient statistics summed
    in another order, or on another CPU.

    The MLE maximises f(a, b) = (a−1) s₁ + (b−1) s₂ − log B(a, b), with s₁, s₂ the means of
    log y and log(1−y) (sums of ``n`` terms; ``mean_abs_log`` bounds their size). Two causes
    move the answer:

    - the statistics: a change δs moves the maximum by J⁻¹ δs, J the per-value Fisher
      information (trigamma terms), with |δs| ≤ float_rtol(n) · ``mean_abs_log``;
    - the stopping rule: Newton's line search accepts any point whose f is within
      :data:`BETA_LINE_SEARCH` · |f| (plus f's own rounding, a few ulps of its largest term)
      of the current one, so near the maximum, where f is flat, the iterate is pinned only to
      the set where f is within that band of its maximum: |δθ| ≤ sqrt(2 Δf / λ_min(J)) along
      J's weakest direction. This term dominates (about 1e-8 to 1e-7 relative for the shapes
      of the test stores), and it is what differs from one CPU to another: another rounding of
      f accepts or rejects another last step.

    Examples
    --------
    >>> 1e-9 < beta_mle_rtol(2.3, 2.4, 768) < 1e-6
    True
    """
    t_ab = special.polygamma(1, a + b)
    fisher = np.array([[special.polygamma(1, a) - t_ab, -t_ab], [-t_ab, special.polygamma(1, b) - t_ab]])
    shapes = np.array([a, b])
    delta_s = float_rtol(n) * mean_abs_log
    from_statistics = np.abs(np.linalg.inv(fisher)).sum(axis=1) * delta_s / shapes
    terms = np.array([a * mean_abs_log, b * mean_abs_log, special.betaln(a, b)])
    band = BETA_LINE_SEARCH * np.abs(terms).sum() + 2 * FUNCTION_ULPS * UNIT_ROUNDOFF * np.abs(terms).max()
    from_stopping = np.sqrt(2 * band / np.linalg.eigvalsh(fisher)[0]) / shapes
    return float((from_statistics + from_stopping).max())


def fit_rtol(a, b, n: int = 10_000) -> float:
    """Tolerance for quantities fitted by one of actstats' line-searched Newton solvers (the
    Beta MLE; the Beta-mixture EM, whose M-steps are such Newton steps), given the fitted
    Beta shapes ``a``, ``b`` (arrays, one pair a group or a mixture component; the worst pair
    decides): :func:`beta_mle_rtol` of each pair. Quantities derived at the maximum
    (log-likelihood, AIC, BIC, KS distance to the fitted CDF, mixture weights) move by at most
    the parameters' relative change times their elasticity, which is ≤ 1 near a maximum."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    usable = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    bounds = [beta_mle_rtol(x, y, n) for x, y in zip(a[usable].ravel(), b[usable].ravel())]
    return max(bounds, default=float_rtol(n))


def anderson_darling_condition(row) -> float:
    """The condition number of the Anderson–Darling sum of a row (NaN padding dropped):
    A² = -n - Σ (2i-1)/n [log Φ(z_i) + log Φ(-z_(n+1-i))] cancels to ~1 from terms of size
    ~n, so two orders of it differ by float_rtol(n, condition=(n + Σ|terms|) / |A²|)."""
    from scipy import special

    x = np.sort(row[~np.isnan(row)])
    if x.size < 4 or x.std() == 0:
        return 1.0
    z = (x - x.mean()) / x.std(ddof=1)
    i = np.arange(1, x.size + 1)
    terms = (2 * i - 1) / x.size * (special.log_ndtr(z) + special.log_ndtr(-z[::-1]))
    a2 = -x.size - terms.sum()
    return float((x.size + np.abs(terms).sum()) / max(abs(a2), 1e-300))
