"""Two-group comparison of per-sample values (training vs held-out probes).

Each sample contributes one value (e.g. its saturated fraction); the two groups are
independent sets of samples. The difference in means gets a stratified bootstrap
interval and a permutation-test p-value, both seeded and vectorised over groups.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._rows import DEFAULT_SEED, Axis, as_rows, rows_quantile
from .intervals import DEFAULT_RESAMPLES, _resampling_weights, _shared_resampling_weights

__all__ = ["DEFAULT_PERMUTATIONS", "GroupComparison", "absolute_sums", "compare_groups", "prepare_compare_groups"]

#: Default number of random permutations (p-values are multiples of 1/(9999 + 1)).
DEFAULT_PERMUTATIONS = 9999
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class GroupComparison:
    """Difference in means of two independent groups of per-sample values.

    Attributes
    ----------
    statistic : ``mean_first - mean_second`` (also ``difference``).
    pvalue : two-sided permutation p-value ``(1 + #{|T*| >= |T|}) / (1 + P)``.
    ci_low, ci_high : stratified percentile bootstrap interval of the difference.
    mean_first, mean_second, n_first, n_second : per group.
    n_permutations, n_resamples, confidence_level, method : settings.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    mean_first: np.ndarray
    mean_second: np.ndarray
    n_first: np.ndarray
    n_second: np.ndarray
    n_permutations: int
    n_resamples: int
    confidence_level: float
    method: str

    @property
    def difference(self) -> np.ndarray:
        return self.statistic

    def confidence_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ci_low, ci_high)`` at ``confidence_level``."""
        return self.ci_low, self.ci_high


def _permutation_indicators(rng, size: int, n_first: int, batch: int) -> np.ndarray:
    """`batch` random splits of `size` samples: rows of 1.0 (first group, `n_first` of them) and 0.0."""
    template = np.zeros(size)
    template[:n_first] = 1.0
    return rng.permuted(np.tile(template, (batch, 1)), axis=1)


#: Permutations kept for the next call with the same seed and sizes, up to this many bytes in
#: all (one byte a sample and permutation: 20 MB at the default 9999 permutations of 2000
#: samples), the oldest dropped first: ``compare_splits`` on a store, a batch of runs at a
#: time, draws the same permutations for every batch (same seed, same result).
_KEPT_PERMUTATIONS_MAX_BYTES = 2**25
_kept_permutations: dict = {}
_kept_permutations_lock = threading.Lock()


def _shared_permutations(seed, size: int, n_first: int, n_permutations: int) -> np.ndarray | None:
    """Every batch of :func:`_permutation_indicators` that ``default_rng(seed)`` draws in
    turn, as one read-only int8 array (n_permutations, size); None when too large to keep or
    the seed is not an int."""
    if not isinstance(seed, (int, np.integer)) or n_permutations * size > _KEPT_PERMUTATIONS_MAX_BYTES:
        return None
    key = (int(seed), size, n_first, n_permutations)
    with _kept_permutations_lock:  # drawn under the lock: two threads wanting it draw it once
        kept = _kept_permutations.get(key)
        if kept is None:
            rng = np.random.default_rng(seed)
            kept = np.empty((n_permutations, size), dtype=np.int8)
            for done in range(0, n_permutations, _BATCH):
                batch = min(_BATCH, n_permutations - done)
                kept[done:done + batch] = _permutation_indicators(rng, size, n_first, batch)
            kept.flags.writeable = False
            _kept_permutations[key] = kept
            while sum(k.nbytes for k in _kept_permutations.values()) > _KEPT_PERMUTATIONS_MAX_BYTES:
                del _kept_permutations[next(iter(_kept_permutations))]  # the oldest
    return kept


def _permutation_exceedances(pooled, n_first, n_permutations, seed, observed, shared: bool = False):
    """Count |T*| >= |T| over random splits of each row of ``pooled`` (no NaN). With
    `shared`, the splits are kept for the next call (:func:`_shared_permutations`): the same
    splits as drawn here, so the same counts."""
    size = pooled.shape[1]
    n_second = size - n_first
    total = pooled.sum(axis=1)
    rng = np.random.default_rng(seed)
    kept = _shared_permutations(seed, size, n_first, n_permutations) if shared else None
    exceed = np.zeros(pooled.shape[0])
    # relative tolerance so that ties up to round-off count as ties (as scipy does)
    threshold = np.abs(observed) * (1 - 1e-12)
    done = 0
    while done < n_permutations:
        batch = min(_BATCH, n_permutations - done)
        if kept is not None:
            indicators = kept[done:done + batch].astype(np.float64)
        else:
            indicators = _permutation_indicators(rng, size, n_first, batch)
        first_sums = pooled @ indicators.T
        permuted = first_sums / n_first - (total[:, None] - first_sums) / n_second
        exceed += (np.abs(permuted) >= threshold[:, None]).sum(axis=1)
        done += batch
    return exceed


def prepare_compare_groups(n_first: int, n_second: int, *, n_permutations: int = DEFAULT_PERMUTATIONS,
                           n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
    """Draw and keep the permutations and resampling counts that :func:`compare_groups` will
    use for groups of `n_first` and `n_second` values without NaN (the same draws: it finds them
    kept), so that a caller can draw them on another thread while it reads the values.

    Verification: :func:`compare_groups` returns the same numbers after it as without it, and
    what it keeps equals a fresh draw (``tests/test_kernels_comparison.py``).

    Examples
    --------
    >>> prepare_compare_groups(30, 20, n_permutations=99, n_resamples=100)
    >>> result = compare_groups(np.linspace(0, 1, 30), np.linspace(0.2, 1, 20), n_permutations=99, n_resamples=100)
    >>> bool(0 < result.pvalue <= 1)
    True
    """
    if n_first > 0 and n_second > 0:
        _shared_permutations(seed, n_first + n_second, n_first, n_permutations)
        rng_seeds = np.random.SeedSequence(seed).spawn(2)
        _shared_resampling_weights(rng_seeds[0], n_first, n_resamples)
        _shared_resampling_weights(rng_seeds[1], n_second, n_resamples)


def compare_groups(
    first,
    second,
    axis: Axis = -1,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = DEFAULT_SEED,
) -> GroupComparison:
    """Compare the means of two independent groups of per-sample values.

    Parameters
    ----------
    first, second : array_like
        Per-sample values (e.g. saturated fractions of training and of held-out probe
        samples); ``axis`` holds the samples, the other axes must match.
    axis : int, tuple of int or None, default -1
    n_permutations : int, default 9999
        Random permutations of the pooled samples (seeded).
    n_resamples : int, default 2000
        Bootstrap resamples (each group resampled separately).
    confidence_level : float, default 0.95
    seed : int, default 0

    Returns
    -------
    GroupComparison

    Notes
    -----
    p-value: the permutation test of exchangeability with statistic ``|mean_first -
    mean_second|``, ``(1 + #{|T*| ≥ |T|}) / (1 + P)`` (Phipson & Smyth 2010), exact
    under the null of equal distributions. Interval: the percentile interval of the
    bootstrap distribution of the difference, resampling samples within each group.
    Groups without NaN share the permutations and resamples (one matrix product);
    groups with NaN are drawn separately with the same seed.

    Verification: p-value agrees with ``scipy.stats.permutation_test`` within Monte
    Carlo error; rejection rate under the null at α = 0.05 inside the binomial 99%
    interval (``tests/test_kernels_calibration.py``); interval agrees with
    ``scipy.stats.bootstrap`` (two samples, percentile).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import compare_groups
    >>> rng = np.random.default_rng(0)
    >>> result = compare_groups(rng.normal(0.5, 1, 200), rng.normal(0.0, 1, 150))
    >>> bool(result.pvalue < 0.01), bool(result.ci_low < 0.5 < result.ci_high)
    (True, True)
    """
    rows_first = as_rows(first, axis)
    rows_second = as_rows(second, axis)
    if rows_first.batch_shape != rows_second.batch_shape:
        raise ValueError(
            f"the kept axes of the two groups differ: {rows_first.batch_shape} and {rows_second.batch_shape}"
        )
    x, y = rows_first.values, rows_second.values
    n_x, n_y = rows_first.counts, rows_second.counts
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = rows_first.zeroed().sum(axis=1) / n_x
        mean_y = rows_second.zeroed().sum(axis=1) / n_y
    observed = mean_x - mean_y
    n_rows = x.shape[0]

    # permutation p-values
    exceed = np.full(n_rows, np.nan)
    full = (n_x == x.shape[1]) & (n_y == y.shape[1])
    if full.any() and x.shape[1] > 0 and y.shape[1] > 0:
        pooled = np.concatenate([x[full], y[full]], axis=1)
        exceed[full] = _permutation_exceedances(pooled, x.shape[1], n_permutations, seed, observed[full],
                                                shared=True)
    for i in np.flatnonzero(~full & (n_x > 0) & (n_y > 0)):
        pooled = np.concatenate([rows_first.row(i), rows_second.row(i)])[None, :]
        exceed[i] = _permutation_exceedances(pooled, int(n_x[i]), n_permutations, seed, observed[i : i + 1])[0]
    pvalue = (1 + exceed) / (1 + n_permutations)

    # stratified bootstrap of the difference
    differences = np.full((n_rows, n_resamples), np.nan)
    rng_seeds = np.random.SeedSequence(seed).spawn(2)
    if full.any() and x.shape[1] > 0 and y.shape[1] > 0:
        # kept for the next call (the same draws: default_rng of the same spawned sequence)
        weights_x = _shared_resampling_weights(rng_seeds[0], x.shape[1], n_resamples)
        weights_y = _shared_resampling_weights(rng_seeds[1], y.shape[1], n_resamples)
        differences[full] = x[full] @ weights_x.T / x.shape[1] - y[full] @ weights_y.T / y.shape[1]
    for i in np.flatnonzero(~full & (n_x > 0) & (n_y > 0)):
        row_x, row_y = rows_first.row(i), rows_second.row(i)
        weights_x = _resampling_weights(np.random.default_rng(rng_seeds[0]), row_x.size, n_resamples)
        weights_y = _resampling_weights(np.random.default_rng(rng_seeds[1]), row_y.size, n_resamples)
        differences[i] = weights_x @ row_x / row_x.size - weights_y @ row_y / row_y.size
    alpha = (1 - confidence_level) / 2
    levels = np.tile([alpha, 1 - alpha], (n_rows, 1))
    valid = (n_x > 0) & (n_y > 0)
    interval = rows_quantile(
        np.sort(differences, axis=1), np.where(valid, n_resamples, 0), levels
    )
    unflatten = rows_first.unflatten
    return GroupComparison(
        statistic=unflatten(observed),
        pvalue=unflatten(np.where(valid, pvalue, np.nan)),
        ci_low=unflatten(interval[:, 0]),
        ci_high=unflatten(interval[:, 1]),
        mean_first=unflatten(mean_x),
        mean_second=unflatten(mean_y),
        n_first=unflatten(n_x),
        n_second=unflatten(n_y),
        n_permutations=n_permutations,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        method=(
            f"permutation test ({n_permutations} permutations, two-sided |difference|); "
            f"stratified percentile bootstrap ({n_resamples} resamples)"
        ),
    )


def welch_interval(first, second, *, confidence_level: float = 0.95) -> tuple[float, float, float]:
    """Difference of the means of two small groups and its Welch t interval.

    For comparing groups of a few runs (each run one value): the interval
    ``d ± t_{q, ν} · sqrt(s₁²/n₁ + s₂²/n₂)`` with the Welch–Satterthwaite degrees of freedom ν,
    which keeps its coverage with 3–5 runs a group where a bootstrap over runs is too narrow
    (measured: 7% one-sided error at a planted null with 4 runs a group, nominal 2.5%).

    Parameters
    ----------
    first, second : array_like
        One value per run; NaN skipped.
    confidence_level : float, default 0.95

    Returns
    -------
    (difference, ci_low, ci_high) : floats
        NaN interval with fewer than two values in a group; a zero-width interval when both
        groups are constant.

    Verification: equals ``scipy.stats.ttest_ind(equal_var=False).confidence_interval()``
    (``tests/test_kernels_comparison.py``).

    Examples
    --------
    >>> d, low, high = welch_interval([0.5, 0.6, 0.55], [0.2, 0.25, 0.3])
    >>> round(d, 4), round(low, 4), round(high, 4)
    (0.3, 0.1867, 0.4133)
    """
    first = np.asarray(first, dtype=float).ravel()
    second = np.asarray(second, dtype=float).ravel()
    first, second = first[np.isfinite(first)], second[np.isfinite(second)]
    if first.size == 0 or second.size == 0:
        return np.nan, np.nan, np.nan
    difference = float(first.mean() - second.mean())
    if first.size < 2 or second.size < 2:
        return difference, np.nan, np.nan
    a, b = first.var(ddof=1) / first.size, second.var(ddof=1) / second.size
    if a + b == 0:
        return difference, difference, difference
    dof = (a + b) ** 2 / (a * a / (first.size - 1) + b * b / (second.size - 1))
    half = float(stats.t.ppf(0.5 + confidence_level / 2, dof) * np.sqrt(a + b))
    return difference, difference - half, difference + half


def absolute_sums(values: np.ndarray, units: int, out: np.ndarray) -> None:
    """Per row of a 2-D float array, over its first `units` columns: ``out[:, 0]`` the sum of
    ``|x|`` over the finite values (float64), ``out[:, 1]`` how many are finite, ``out[:, 2]``
    how many are NaN or infinite. `out`: float64, shape (rows, 3), overwritten.

    The per-sample mean ``|preactivation|`` of ``compare_splits``: the row is summed whole in
    float64, with zeros for the columns from `units` on and for the values that are not
    finite, so the sum is numpy's pairwise sum of exactly the terms the generic chunk path
    summed (the same number to the last bit), without its masks of the whole block.

    Verification: equal to ``np.where(finite, np.abs(x), 0).sum(axis=1)`` on the float64 row
    with the columns beyond `units` zero, counts equal (``tests/test_kernels_comparison.py``).

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty((1, 3))
    >>> absolute_sums(np.array([[-1.5, 2.0, np.nan, np.inf, np.nan]]), 4, out)
    >>> out.tolist()
    [[3.5, 2.0, 2.0]]
    """
    rows = values.shape[0]
    step = max(1, min(rows, _ABSOLUTE_ROWS_BYTES // max(8 * values.shape[1], 1)))
    terms = np.empty((step, values.shape[1]), dtype=np.float64)  # a few rows at a time: the sums are per row
    for start in range(0, rows, step):
        part = terms[: min(step, rows - start)]
        _absolute_rows(values[start:start + part.shape[0]], units, out[start:start + part.shape[0]], part)


#: The float64 terms of :func:`absolute_sums` are made this many bytes of rows at a time.
_ABSOLUTE_ROWS_BYTES = 2**20


def _absolute_rows(values, units: int, out, terms) -> None:
    np.absolute(values, out=terms)  # |x| of the float64 value, in one pass (exact)
    terms[:, units:] = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        sums = terms.sum(axis=1)
    # every term finite: the row sums are the answer (a float64 sum of |float32| or of finite
    # float64 terms that overflows is not finite either, and goes the other way, as before)
    if np.isfinite(sums).all():
        out[:, 0] = sums
        out[:, 1] = units
        out[:, 2] = 0
        return
    inside = terms[:, :units]
    finite = np.isfinite(inside)
    out[:, 1] = finite.sum(axis=1)
    out[:, 2] = units - out[:, 1]
    inside[~finite] = 0.0
    out[:, 0] = terms.sum(axis=1)
