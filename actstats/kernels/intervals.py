"""Confidence intervals where the sample (probe input) is the independent unit.

Activations of one probe sample across units are not independent, so intervals never
resample single activations: each sample contributes one number (e.g. the fraction of
its units near the bounds), and the bootstrap resamples samples.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._rows import DEFAULT_SEED, Axis, as_rows, rows_quantile

__all__ = [
    "DEFAULT_RESAMPLES",
    "FractionInterval",
    "MIN_INFORMATIVE_SAMPLES",
    "bootstrap_mean_interval",
    "fraction_interval",
    "keep_resampling_weights",
    "saturated_fractions",
    "wilson_interval",
]

#: Default number of bootstrap resamples.
DEFAULT_RESAMPLES = 2000


def saturated_fractions(counts) -> np.ndarray:
    """Per-group fractions ``[fraction, fraction_low, fraction_high]`` from counts.

    Parameters
    ----------
    counts : array_like, shape (..., 3)
        ``[low, high, total]`` from :func:`~actstats.kernels.saturation_counts`.

    Returns
    -------
    ndarray, shape (..., 3)
        ``(low + high) / total``, ``low / total``, ``high / total``; NaN where total is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import saturated_fractions
    >>> saturated_fractions(np.array([1, 3, 8]))
    array([0.5  , 0.125, 0.375])
    """
    counts = np.asarray(counts, dtype=np.float64)
    low, high, total = counts[..., 0], counts[..., 1], counts[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.stack([low + high, low, high], axis=-1) / total[..., None]
    return np.where((total > 0)[..., None], fractions, np.nan)


def wilson_interval(successes, trials, confidence_level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (vectorised).

    ``(p̂ + z²/2n ± z sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``. For 0 successes it is
    ``[0, z²/(n + z²)]`` (≈ 3.84/n at 95%, close to the "rule of three" 3/n).

    Parameters
    ----------
    successes, trials : array_like
    confidence_level : float, default 0.95

    Returns
    -------
    (low, high) : ndarrays; NaN where trials is 0.

    Verification: equal to ``statsmodels.stats.proportion.proportion_confint(...,
    method="wilson")`` (``tests/reference/intervals.json`` and live).

    Examples
    --------
    >>> from actstats.kernels import wilson_interval
    >>> low, high = wilson_interval(0, 100)
    >>> print(float(low), round(float(high), 4))
    0.0 0.037
    """
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    z = special.ndtri(0.5 + confidence_level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        proportion = successes / trials
        denominator = 1 + z**2 / trials
        centre = (proportion + z**2 / (2 * trials)) / denominator
        half_width = z * np.sqrt(proportion * (1 - proportion) / trials + z**2 / (4 * trials**2)) / denominator
    low = np.where(successes == 0, 0.0, np.clip(centre - half_width, 0, 1))
    high = np.where(successes == trials, 1.0, np.clip(centre + half_width, 0, 1))
    valid = trials > 0
    return np.where(valid, low, np.nan), np.where(valid, high, np.nan)


def _resampling_weights(rng, size: int, n_resamples: int) -> np.ndarray:
    """Counts (n_resamples, size): how often each unit is drawn in each resample.

    ``size`` uniform draws with replacement per resample, counted with a bincount over each
    block of resamples: the same multinomial law as ``rng.multinomial``, about 10× faster for
    1000 units. The counts of a block of 64 resamples (512 KB at 1000 units) stay in cache and
    go straight into the float64 result: for 2000 × 1000, 30-40 ms in a new process against
    40-100 ms for one bincount over the whole (whose 16 MB of int64 counts and float64 copy
    were new memory to fault in); the same counts (``tests/test_kernels_intervals.py``).
    """
    draws = rng.integers(0, size, size=(n_resamples, size))
    out = np.empty((n_resamples, size))
    block = 64
    offsets = (np.arange(block) * size)[:, None]
    for start in range(0, n_resamples, block):
        rows = draws[start:start + block]
        n = rows.shape[0]
        out[start:start + n] = np.bincount((rows + offsets[:n]).ravel(), minlength=n * size).reshape(n, size)
    return out


#: Resampling counts are kept for the next call with the same seed, size and resamples, up to
#: this many entries in all (n_resamples x units each; 16 MB at the default 2000 resamples of
#: 1000 samples), the oldest dropped first: ``saturation`` on a store computed a batch of runs
#: at a time draws the same matrices for every batch, one a split (same seed, same result:
#: common random numbers).
_KEPT_WEIGHTS_MAX_SIZE = 2**23
_kept_weights: dict = {}
_kept_weights_lock = threading.Lock()


def _shared_resampling_weights(seed, size: int, n_resamples: int) -> np.ndarray:
    """:func:`_resampling_weights` of ``default_rng(seed)``, read-only, kept when small.
    `seed`: an int, or a ``numpy.random.SeedSequence`` (kept by its entropy and spawn key,
    which are all that ``default_rng`` draws from)."""
    if isinstance(seed, np.random.SeedSequence) and isinstance(seed.entropy, (int, np.integer)):
        key = ("sequence", int(seed.entropy), tuple(seed.spawn_key), seed.pool_size, size, n_resamples)
    elif isinstance(seed, (int, np.integer)):
        key = (int(seed), size, n_resamples)
    else:
        key = None
    if key is None or n_resamples * size > _KEPT_WEIGHTS_MAX_SIZE:
        return _resampling_weights(np.random.default_rng(seed), size, n_resamples)
    with _kept_weights_lock:  # drawn under the lock: two threads wanting it draw it once
        kept = _kept_weights.get(key)
        if kept is None:
            kept = _resampling_weights(np.random.default_rng(seed), size, n_resamples)
            kept.flags.writeable = False
            _kept_weights[key] = kept
            while sum(w.size for w in _kept_weights.values()) > _KEPT_WEIGHTS_MAX_SIZE:
                del _kept_weights[next(iter(_kept_weights))]  # the oldest
    return kept


def keep_resampling_weights(size: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
    """Draw and keep the resampling counts that :func:`bootstrap_mean_interval` (and
    :func:`fraction_interval`) will use for rows of `size` values without NaN (the same draws:
    they find them kept), so that a caller can draw them on another thread while it reads.

    Verification: :func:`bootstrap_mean_interval` returns the same numbers after it as
    without it (``tests/test_kernels_intervals.py``).

    Examples
    --------
    >>> import numpy as np
    >>> keep_resampling_weights(50, n_resamples=200)
    >>> estimate, low, high = bootstrap_mean_interval(np.linspace(0, 1, 50), n_resamples=200)
    >>> bool(low < estimate < high)
    True
    """
    if size > 0 and n_resamples > 0:
        _shared_resampling_weights(seed, size, n_resamples)


def _bootstrap_means(values, counts, n_resamples, seed):
    """Bootstrap means of each row's non-NaN values, rows resampled independently.

    Rows without NaN share one matrix of resampling counts (a matrix product, fast);
    rows with NaN get their own draw of their own size. Same seed, same result.
    """
    n_rows, width = values.shape
    means = np.full((n_rows, n_resamples), np.nan)
    full = counts == width
    if width > 0 and full.any():
        weights = _shared_resampling_weights(seed, width, n_resamples)
        means[full] = values[full] @ weights.T / width
    for i in np.flatnonzero(~full & (counts > 0)):
        row = values[i][~np.isnan(values[i])]
        weights = _resampling_weights(np.random.default_rng(seed), row.size, n_resamples)
        means[i] = weights @ row / row.size
    return means


def _percentile_of_score(bootstrap, estimate):
    """Mid-rank fraction of bootstrap values below the estimate (as scipy's BCa).

    Bootstrap means within 1e-12 (relative) of the estimate count as ties: with discrete
    data (fractions of units) many resamples equal the estimate exactly in real numbers,
    and their round-off depends on how many rows share the matrix product, which must not
    change a row's interval.
    """
    tolerance = 1e-12 * np.abs(estimate)[:, None]
    below = (bootstrap < estimate[:, None] - tolerance).sum(axis=1)
    at_or_below = (bootstrap <= estimate[:, None] + tolerance).sum(axis=1)
    return (below + at_or_below) / (2 * bootstrap.shape[1])


def _interval_from_bootstrap(bootstrap, estimate, values, counts, confidence_level, method):
    alpha = (1 - confidence_level) / 2
    ordered = np.sort(bootstrap, axis=1)
    resample_counts = np.full(bootstrap.shape[0], bootstrap.shape[1])
    if method == "percentile":
        levels = np.stack([np.full(estimate.shape, alpha), np.full(estimate.shape, 1 - alpha)], axis=1)
    elif method == "bca":
        n = counts.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            z0 = special.ndtri(_percentile_of_score(bootstrap, estimate))
            # jackknife of the mean: theta_(i) - mean(theta_(.)) = -(x_i - mean) / (n - 1)
            deviation = np.where(np.isnan(values), 0.0, values - estimate[:, None])
            acceleration = (deviation**3).sum(axis=1) / (6 * ((deviation**2).sum(axis=1)) ** 1.5)
            z = special.ndtri(np.array([alpha, 1 - alpha]))[None, :]
            shifted = z0[:, None] + z
            levels = special.ndtr(z0[:, None] + shifted / (1 - acceleration[:, None] * shifted))
        levels = np.where(n[:, None] > 1, levels, np.nan)
    else:
        raise ValueError(f"method must be 'bca' or 'percentile', got {method!r}")
    interval = rows_quantile(ordered, resample_counts, levels)
    return interval[:, 0], interval[:, 1]


def bootstrap_mean_interval(
    values,
    axis: Axis = -1,
    *,
    confidence_level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "bca",
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap interval for the mean of per-unit values (the units are resampled).

    Parameters
    ----------
    values : array_like
        One value per independent unit (e.g. per sample) along ``axis``; NaN skipped.
    axis : int, tuple of int or None, default -1
    confidence_level : float, default 0.95
    n_resamples : int, default 2000
    method : {"bca", "percentile"}, default "bca"
        BCa (Efron 1987) with the jackknife acceleration in closed form for the mean,
        or the plain percentile interval.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; every group uses the same resampling
        counts when it has no NaN (common random numbers).

    Returns
    -------
    (estimate, ci_low, ci_high) : ndarrays
        Where all bootstrap means are equal the interval is that value (degenerate).

    Verification: agrees with ``scipy.stats.bootstrap(..., method="BCa"/"percentile")``
    within Monte Carlo error (``tests/test_kernels_intervals.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import bootstrap_mean_interval
    >>> x = np.random.default_rng(0).exponential(size=(2, 200))
    >>> estimate, low, high = bootstrap_mean_interval(x)
    >>> bool(np.all((low < estimate) & (estimate < high)))
    True
    """
    rows = as_rows(values, axis)
    counts = rows.counts
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = rows.zeroed().sum(axis=1) / counts
    bootstrap = _bootstrap_means(rows.values, counts, n_resamples, seed)
    low, high = _interval_from_bootstrap(bootstrap, estimate, rows.values, counts, confidence_level, method)
    # a degenerate bootstrap distribution (all values equal) gives that value
    spread = bootstrap.max(axis=1) - bootstrap.min(axis=1) if n_resamples else np.zeros(rows.n_rows)
    low = np.where(spread == 0, estimate, low)
    high = np.where(spread == 0, estimate, high)
    return rows.unflatten(estimate), rows.unflatten(low), rows.unflatten(high)


#: Below this many samples with a nonzero fraction (or with a fraction below 1) the
#: bootstrap is too discrete and :func:`fraction_interval` uses the Wilson interval.
MIN_INFORMATIVE_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class FractionInterval:
    """A fraction averaged over samples, with its confidence interval.

    Attributes
    ----------
    estimate : mean over samples of the per-sample fraction.
    ci_low, ci_high : interval bounds.
    n_samples : number of samples (non-NaN fractions).
    n_nonzero : number of samples whose fraction is > 0.
    n_below_one : number of samples whose fraction is < 1.
    interval_method : ndarray of str: "bootstrap-bca", "bootstrap-percentile" or
        "wilson" (see :func:`fraction_interval`); "" where there are no samples.
    confidence_level : float.
    """

    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_samples: np.ndarray
    n_nonzero: np.ndarray
    n_below_one: np.ndarray
    interval_method: np.ndarray
    confidence_level: float

    def confidence_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ci_low, ci_high)`` at ``confidence_level``."""
        return self.ci_low, self.ci_high


def fraction_interval(
    fractions,
    axis: Axis = -1,
    *,
    confidence_level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "bca",
    seed: int = DEFAULT_SEED,
    min_informative_samples: int = MIN_INFORMATIVE_SAMPLES,
) -> FractionInterval:
    """Interval for a saturated fraction with the sample as the independent unit.

    Parameters
    ----------
    fractions : array_like
        Per-sample fractions in [0, 1] (e.g. ``saturated_fractions(counts)[..., 0]``
        with the unit axis already reduced), with the sample axis in ``axis``.
    axis : int, tuple of int or None, default -1
        The sample axis (with runs too, when runs are also resampled as units).
    confidence_level : float, default 0.95
    n_resamples : int, default 2000
    method : {"bca", "percentile"}, default "bca"
    seed : int, default 0
    min_informative_samples : int, default 10
        See Notes.

    Returns
    -------
    FractionInterval

    Notes
    -----
    The estimate is the mean of the per-sample fractions ``f_s`` over the S samples.

    * Usually its interval is a cluster bootstrap (:func:`bootstrap_mean_interval`:
      samples resampled with replacement, BCa by default).
    * When fewer than ``min_informative_samples`` samples have ``f_s > 0`` (or fewer
      have ``f_s < 1``) the bootstrap distribution is too discrete and undercovers
      (it collapses to [0, 0] when no sample has a saturated unit). Then the interval
      is the Wilson score interval with ``Σ f_s`` successes in ``S`` trials. A
      variable in [0, 1] with mean μ has variance at most μ(1-μ), the Bernoulli
      variance the score interval assumes, so this is conservative; with ``f_s`` all
      0 or 1 it is the ordinary Wilson interval for the proportion of saturated
      samples. With no saturated unit at all it is ``[0, z²/(S + z²)]``: ≈ 3.84/S at
      95%, the two-sided analogue of the rule of three (3/S).

    Verification: coverage by simulation of hierarchical data (sample-level
    propensities, units within samples), 200 datasets per case, inside the binomial
    99% band around 95% for moderate, sparse and near-1 fractions, and 100% with upper
    bound ≈ 3.84/S when the true fraction is 0 (``tests/test_kernels_intervals.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import fraction_interval
    >>> result = fraction_interval(np.zeros(100))
    >>> print(float(result.ci_low), round(float(result.ci_high), 4), result.interval_method)
    0.0 0.037 wilson
    """
    rows = as_rows(fractions, axis)
    counts = rows.counts
    values = rows.values
    present = rows.valid
    if np.any(values[present] < 0) or np.any(values[present] > 1):
        raise ValueError("fractions must lie in [0, 1]")
    n_nonzero = (present & (values > 0)).sum(axis=1)
    n_below_one = (present & (values < 1)).sum(axis=1)
    estimate, low, high = bootstrap_mean_interval(
        values, confidence_level=confidence_level, n_resamples=n_resamples, method=method, seed=seed
    )
    sparse = (counts > 0) & (
        (n_nonzero < min_informative_samples) | (n_below_one < min_informative_samples)
    )
    wilson_low, wilson_high = wilson_interval(rows.zeroed().sum(axis=1), counts, confidence_level)
    low = np.where(sparse, wilson_low, low)
    high = np.where(sparse, wilson_high, high)
    interval_method = np.where(sparse, "wilson", f"bootstrap-{method}")
    interval_method = np.where(counts > 0, interval_method, "")
    return FractionInterval(
        estimate=rows.unflatten(estimate),
        ci_low=rows.unflatten(low),
        ci_high=rows.unflatten(high),
        n_samples=rows.unflatten(counts),
        n_nonzero=rows.unflatten(n_nonzero),
        n_below_one=rows.unflatten(n_below_one),
        interval_method=rows.unflatten(interval_method),
        confidence_level=confidence_level,
    )
