"""Saturation and bimodality near the bounds: counts in the saturated bands, the dip test,
the bimodality coefficient and the ``bimodal_at_bounds`` criterion.

The saturated band of an activation with bounds ``[lower, upper]`` is ``x <= lower + eps
(upper - lower)`` (low) and ``x >= upper - eps (upper - lower)`` (high), decided in the
values' own dtype with thresholds rounded so that the answer is that of float64
(:func:`band_thresholds`); ReLU-like activations (``dead_at_zero``) count exact zeros.

About 600 lines: one topic (the criterion "bimodal at the bounds" and its parts, the
counting in the bands beside it), most of it docstrings with verification notes and examples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._rows import DEFAULT_SEED, Axis, as_rows, map_rows, normalize_axis
from .beta import DEFAULT_DELTA, BetaFit, LogitNormalFit, fit_beta, fit_logit_normal
from .mixture import MIXTURE_MAX_SIZE, BetaMixtureFit, fit_beta_mixture
from .moments import moment_statistics, moments

__all__ = [
    "BIMODALITY_COEFFICIENT_THRESHOLD",
    "BIMODALITY_FIELDS",
    "BimodalityResult",
    "DipTestResult",
    "SATURATION_FIELDS",
    "band_counts",
    "band_thresholds",
    "bimodal_at_bounds",
    "bimodality",
    "bimodality_coefficient",
    "bimodality_fields",
    "count_true",
    "dip_test",
    "saturation_counts",
]

#: A bimodality coefficient above 5/9 (its value for the uniform) suggests bimodality.
BIMODALITY_COEFFICIENT_THRESHOLD = 5 / 9
#: Entries of the last axis of :func:`saturation_counts`.
SATURATION_FIELDS = ("low", "high", "total")
#: The per-group fields of :func:`bimodality_fields` (the bimodality query's variables).
BIMODALITY_FIELDS = (
    "n", "dip", "dip_pvalue", "bimodality_coefficient",
    "beta_a", "beta_b", "beta_a_standard_error", "beta_b_standard_error", "u_shaped", "n_clipped",
    "beta_log_likelihood", "beta_bic", "logit_normal_log_likelihood", "logit_normal_bic",
    "mixture_weight_low", "mixture_weight_interior", "mixture_weight_high",
    "mixture_a_low", "mixture_b_low", "mixture_a_interior", "mixture_b_interior",
    "mixture_a_high", "mixture_b_high",
    "mixture_log_likelihood", "mixture_bic", "mixture_preferred_by_bic", "mixture_fitted",
    "bimodal_at_bounds_unadjusted",
)

def saturation_counts(
    x,
    lower: float = 0.0,
    upper: float = 1.0,
    eps: float = 0.05,
    axis: Axis = -1,
    *,
    mode: str = "bounds",
    no_nan: bool | None = None,
) -> np.ndarray:
    """Count values near the bounds: ``[low, high, total]`` on a new last axis.

    Parameters
    ----------
    x : array_like
        Activations (NaN padding skipped).
    lower, upper : float
        Range of the activation function (sigmoid 0, 1; tanh -1, 1).
    eps : float, default 0.05
        Width of each saturated band as a fraction of ``upper - lower``, in (0, 0.5):
        low is ``x <= lower + eps (upper - lower)``, high is
        ``x >= upper - eps (upper - lower)``, both decided as in float64 whatever the
        dtype of ``x`` (:func:`band_thresholds`).
    axis : int, tuple of int or None, default -1
    mode : {"bounds", "lower_bound", "dead_at_zero", "zero", "none"}
        The activation's saturation semantics (:attr:`actstats.activations.Activation.saturation`).
        ``"lower_bound"`` is one-sided (ELU, softplus, SiLU, GELU): low is
        ``x <= lower + eps (upper - lower)`` with `upper` the top of the band's scale
        (:attr:`~actstats.activations.Activation.band_upper`, f(0)), high is 0.
        ``"dead_at_zero"`` (alias ``"zero"``) is for ReLU: low counts exact zeros (dead
        units), high is 0, and ``upper``/``eps`` are ignored. ``"none"``: saturation has no
        meaning; nothing is counted (low, high and total 0, so a fraction is 0/0 = NaN).
    no_nan : bool, optional
        ``True`` when the caller knows ``x`` holds no NaN (skips counting them);
        default: checked with one pass.

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
    >>> saturation_counts(np.array([-0.99, -0.9, 3.0]), -1.0, 0.0, mode="lower_bound")  # ELU
    array([1, 0, 3])
    """
    array = np.asarray(x)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if array.ndim == 0:
        array, axis = array.reshape(1), 0
    axes = normalize_axis(axis, array.ndim)
    moved = np.moveaxis(array, axes, range(array.ndim - len(axes), array.ndim))
    batch = moved.shape[: array.ndim - len(axes)]
    values = moved.reshape(int(np.prod(batch, dtype=np.int64)), -1)
    if no_nan is None:
        with np.errstate(over="ignore", invalid="ignore"):
            no_nan = not np.isnan(values.sum())
    total = np.full(values.shape[0], values.shape[1], dtype=np.int64)
    if not no_nan:
        total -= count_true(np.isnan(values))
    if mode in ("bounds", "lower_bound"):
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        if not (np.isfinite(lower) and np.isfinite(upper) and upper > lower):
            raise ValueError(
                f"mode='bounds' needs finite bounds with upper > lower, got lower={lower!r}, "
                f"upper={upper!r} (for ReLU use mode='zero', alias 'dead_at_zero')"
            )
        low_threshold, high_threshold = band_thresholds(lower, upper, eps, values.dtype)
        with np.errstate(invalid="ignore"):  # NaN is in neither band
            low = count_true(values <= low_threshold)
            high = count_true(values >= high_threshold) if mode == "bounds" else np.zeros_like(low)
    elif mode in ("dead_at_zero", "zero"):
        low = count_true(values == 0)
        high = np.zeros_like(low)
    elif mode == "none":
        low = high = np.zeros(values.shape[0], dtype=np.int64)
        total = np.zeros_like(total)
    else:
        raise ValueError(f"mode must be 'bounds', 'lower_bound', 'dead_at_zero' or 'none', got {mode!r}")
    return np.stack([low, high, total], axis=-1).reshape(batch + (3,))


def band_thresholds(lower: float, upper: float, eps: float, dtype) -> tuple:
    """The saturated band's thresholds in ``dtype``, exact for every value of that dtype.

    Returns ``(low, high)`` with ``x <= low ⟺ float64(x) <= lower + eps (upper - lower)``
    and ``x >= high ⟺ float64(x) >= upper - eps (upper - lower)`` for every ``x`` of
    ``dtype``: the float64 band edges rounded down and up to the dtype, so float32 data are
    compared without conversion and counted as float64 would count them.

    Verification: every float32 value next to the edges (``np.nextafter`` steps) is
    classified as its float64 value is (``tests/test_kernels_saturation.py``).

    Examples
    --------
    >>> import numpy as np
    >>> low, high = band_thresholds(0.0, 1.0, 0.05, np.dtype(np.float32))
    >>> bool(np.float64(low) <= 0.05 < np.float64(np.nextafter(low, np.float32(1))))
    True
    """
    dtype = np.dtype(dtype)
    width = upper - lower
    low, high = lower + eps * width, upper - eps * width
    low_t, high_t = dtype.type(low), dtype.type(high)
    if float(low_t) > low:
        low_t = np.nextafter(low_t, dtype.type(-np.inf))
    if float(high_t) < high:
        high_t = np.nextafter(high_t, dtype.type(np.inf))
    return low_t, high_t


def count_true(mask: np.ndarray) -> np.ndarray:
    """True values per row of a 2-D boolean mask, as int64 (summing bytes: ~2× ``np.count_nonzero``).

    Verification: equal to ``mask.sum(axis=1)`` on random masks, rows longer than 2**16
    included (``tests/test_kernels_saturation.py``).

    Examples
    --------
    >>> import numpy as np
    >>> count_true(np.array([[True, False, True], [False, False, False]])).tolist()
    [2, 0]
    """
    rows, width = mask.shape
    if mask.flags.c_contiguous and width % 8 == 0 and 0 < width <= 8 * 255:
        # eight bytes at a time: a row's uint64 words summed hold eight byte-lane sums, each at
        # most width / 8 <= 255 (no carry between lanes), then the lanes summed: integer adds
        # only, with no cast (~1.6x the uint8 sum below on rows of 1000)
        lanes = mask.view(np.uint64).sum(axis=1)
        return lanes.view(np.uint8).reshape(rows, 8).sum(axis=1, dtype=np.int64)
    dtype = np.uint16 if width < 2**16 else np.int64
    return mask.view(np.uint8).sum(axis=1, dtype=dtype).astype(np.int64)

def band_counts(values: np.ndarray, low_threshold, high_threshold, mode: str, out: np.ndarray) -> None:
    """Per row of a 2-D float array: ``out[:, 0]`` low, ``out[:, 1]`` high, ``out[:, 2]``
    finite values counted, ``out[:, 3]`` values that are NaN or infinite.

    The hot loop of ``saturation`` and ``compare``: :func:`saturation_counts` on the finite
    values plus the count of the others, in the values' own dtype, with no float64 copy
    and no mask of the whole block: one summing pass tells whether any value is not finite
    (then the finite ones are masked), one comparison pass a band, counted by
    :func:`count_true`. `low_threshold` and `high_threshold` are :func:`band_thresholds` in
    the values' dtype; `mode` as in :func:`saturation_counts` (``"none"``: low, high and
    counted are 0). `out` is a float64 array of shape (rows, 4), overwritten.

    numpy, not a compiled loop: measured on a 4 MiB float32 chunk, this takes 0.49 ms of CPU
    and a numba loop 0.13 ms, but numba's import and first call cost 0.4-0.6 s in each new
    process, which the saving repays only beyond ~5 GB of activations.

    Verification: equal to :func:`saturation_counts` on the finite values and
    ``~np.isfinite`` counts, on rows with values on the band edges, NaN and ±inf, in float32
    and float64, for every mode (``tests/test_kernels_saturation.py``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.01, 0.5, 0.97, np.nan, np.inf]])
    >>> out = np.empty((1, 4))
    >>> band_counts(x, *band_thresholds(0.0, 1.0, 0.05, x.dtype), "bounds", out)
    >>> out.tolist()
    [[2.0, 1.0, 4.0, 2.0]]
    """
    rows, width = values.shape
    mask = np.empty(values.shape, dtype=bool)  # one mask, reused by each pass
    np.isfinite(values, out=mask)
    clean = bool(mask.all())  # no NaN or inf: the usual block
    if clean:
        out[:, 2] = width
        out[:, 3] = 0
    else:
        out[:, 2] = count_true(mask)
        out[:, 3] = width - out[:, 2]
        values = np.where(mask, values, np.nan)  # NaN is in neither band
    out[:, 1] = 0
    if mode in ("bounds", "lower_bound"):
        with np.errstate(invalid="ignore"):
            out[:, 0] = count_true(np.less_equal(values, low_threshold, out=mask))
            if mode == "bounds":
                out[:, 1] = count_true(np.greater_equal(values, high_threshold, out=mask))
    elif mode in ("dead_at_zero", "zero"):
        out[:, 0] = count_true(np.equal(values, 0, out=mask))
    elif mode == "none":
        out[:, 0] = 0
        out[:, 2] = 0
    else:
        raise ValueError(f"mode must be 'bounds', 'lower_bound', 'dead_at_zero' or 'none', got {mode!r}")


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
        # a filter of the process, not catch_warnings: that saves and restores the filters of the
        # whole process, so two dask threads inside it at once restore each other's state and the
        # warning leaked at times. Adding the same filter again replaces it (idempotent).
        warnings.filterwarnings("ignore", message="Sample size exceeds the maximum limit", category=UserWarning,
                                module="diptest")
        return diptest.diptest(values)

    statistic, pvalue = map_rows(test, rows, [(), ()], minimum_count=4)
    return DipTestResult(
        statistic=statistic,
        pvalue=pvalue,
        n=rows.unflatten(rows.counts),
        method="Hartigan dip test (diptest package, interpolated table p-value)",
    )


# --------------------------------------------------------------------------- Beta


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


@dataclass
class _MixtureParts:
    """The fields of a BetaMixtureFit that :func:`bimodal_at_bounds` reads, filled group by group."""

    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray
    log_likelihood: np.ndarray
    bic: np.ndarray
    preferred_by_bic: np.ndarray


def bimodality_fields(dip, dip_pvalue, coefficient, beta, logit_normal, fit_mixture, *, alpha, mixture):
    """The fields of :data:`BIMODALITY_FIELDS` for flat groups, from their parts.

    ``dip``, ``dip_pvalue``, ``coefficient`` are arrays over the groups, ``beta`` a
    :class:`~actstats.kernels.BetaFit` and ``logit_normal`` a
    :class:`~actstats.kernels.LogitNormalFit` of 1-D batches; ``fit_mixture(mask)`` fits the
    Beta mixture of the masked groups (an object with ``weights``, ``a``, ``b``,
    ``log_likelihood``, ``bic``, ``preferred_by_bic``). ``mixture``: ``"always"``,
    ``"never"`` or ``"auto"`` (only where the mixture can change ``bimodal_at_bounds``: not
    U-shaped and multimodal by the dip at ``alpha`` or the coefficient). Groups of fewer
    than 10 values get no mixture. Returns a dict of arrays by field name, in the order of
    :data:`BIMODALITY_FIELDS`; the exact and the streamed bimodality queries both use it.

    Verification: with ``mixture="always"`` equal to :func:`bimodality` group by group
    (``tests/test_kernels_saturation.py``, and through the query ``tests/test_queries.py``).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).beta(0.2, 0.2, size=(1, 400))
    >>> dip = dip_test(y)
    >>> fields = bimodality_fields(dip.statistic, dip.pvalue, bimodality_coefficient(x=y), fit_beta(y),
    ...                            fit_logit_normal(y), lambda mask: fit_beta_mixture(y[mask]),
    ...                            alpha=0.05, mixture="auto")
    >>> bool(fields["u_shaped"][0]), bool(fields["bimodal_at_bounds_unadjusted"][0])
    (True, True)
    """
    n_rows = np.shape(beta.n)[0]
    if mixture == "always":
        fitted = np.ones(n_rows, dtype=bool)
    elif mixture == "never":
        fitted = np.zeros(n_rows, dtype=bool)
    else:  # the mixture can change bimodal_at_bounds only for multimodal groups that are not U-shaped
        fitted = ~np.asarray(beta.u_shaped, dtype=bool) & (
            (dip_pvalue < alpha) | (coefficient > BIMODALITY_COEFFICIENT_THRESHOLD)
        )
    fit = _MixtureParts(
        weights=np.full((n_rows, 3), np.nan), a=np.full((n_rows, 3), np.nan), b=np.full((n_rows, 3), np.nan),
        log_likelihood=np.full(n_rows, np.nan), bic=np.full(n_rows, np.nan),
        preferred_by_bic=np.zeros(n_rows, dtype=bool),
    )
    fitted &= beta.n >= 10  # the kernel's minimum
    if fitted.any():
        part = fit_mixture(fitted)
        for name in ("weights", "a", "b", "log_likelihood", "bic", "preferred_by_bic"):
            getattr(fit, name)[fitted] = getattr(part, name)
    verdict = bimodal_at_bounds(dip_pvalue, coefficient, beta.u_shaped, fit, alpha=alpha)
    values = (
        beta.n, dip, dip_pvalue, coefficient,
        beta.a, beta.b, beta.a_standard_error, beta.b_standard_error, beta.u_shaped, beta.n_clipped,
        beta.log_likelihood, beta.bic, logit_normal.log_likelihood, logit_normal.bic,
        *(fit.weights[:, k] for k in range(3)),
        fit.a[:, 0], fit.b[:, 0], fit.a[:, 1], fit.b[:, 1], fit.a[:, 2], fit.b[:, 2],
        fit.log_likelihood, fit.bic, fit.preferred_by_bic, fitted, verdict,
    )
    return dict(zip(BIMODALITY_FIELDS, values))
