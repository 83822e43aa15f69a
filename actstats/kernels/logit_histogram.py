"""Bounded activations of groups too large for memory: histograms in logit space.

The bimodality and fit queries look at activations rescaled to ``y ∈ [0, 1]``. The
Beta and logit-normal fits need only sums (:func:`~actstats.kernels.beta_sufficient_statistics`
and the moments of ``logit y``), but the KS distance and the dip test need the whole
distribution. For groups that do not fit in memory they come from a histogram of
``logit y`` on a fixed grid, which chunks give independently and which merges by summing:
one streaming pass, no first pass for a location or scale.

Layout of a histogram array, last axis of length ``bins + 2 * outer_bins + 4``::

    [counts of logit y in the outer_bins wide bins below the inner grid,
     the bins inner bins (y in [delta, 1 - delta]), the outer_bins wide bins above it,
     n at y <= 0, n in (0, expit(lowest edge)), n in (expit(highest edge), 1), n at y >= 1]

The inner grid is ``[-L, L]`` with ``L = logit(1 - delta)``, the range the likelihoods
clip to (``delta = 1e-6``: ``L ≈ 13.8``; 65536 bins of 0.00042 in logit units); its last
bin is closed. Beyond it 1024 bins 256 times wider (0.108) on each side reach ``|logit y| ≈ 124``
(``y ≈ 1e-54``, below float32's smallest sigmoid): saturated units of a float32 network
have values in ``(0, delta)``, and the dip test needs to see where they are, while the
fits see them at the clip points. Values exactly at the bounds (a float32 sigmoid that
rounded to 0 or 1) are counted apart.

Error bounds, exact and per group (up to the rounding of a value within an ulp of an edge):

* KS distance to a continuous reference CDF ``G`` of the clipped values (the values
  outside ``[delta, 1 - delta]`` sit at the clip points, as the fits see them): in
  each bin the empirical CDF lies between its values at the two edges, so ``D`` lies
  between the largest gap at the edges and the largest
  ``max(B_k − G(u_k), G(u_{k+1}) − A_k)``; the width is at most the largest bin mass
  of the data plus that of ``G``.
* Dip: the dip is a distance (sup norm) from the empirical CDF ``F_n`` to the set of
  unimodal CDFs, so it moves by at most ``sup |F_n − Q|`` when ``F_n`` is replaced by
  ``Q``. ``H`` spreads each bin's (and each open tail's) values evenly; it agrees with
  ``F_n`` at every cell boundary and at the two atoms, so ``sup |F_n − H|`` is at most
  the largest cell mass. ``Q`` is the empirical CDF of ``m`` quantile points
  ``H⁻¹((i − ½)/m)``, within ``1/(2m)`` of ``H``. Hence ``|dip(F_n) − dip(Q)| ≤`` the
  largest cell mass ``+ 1/(2m)``.

The reference: ``tests/test_kernels_logit_histogram.py`` checks every bound against
the exact values (``diptest.dipstat``, the KS distance of the sorted values) on
U-shaped, unimodal, one-sided and spiked samples.

Why one module of ~860 lines: one topic (the logit histogram: its layout, the one-pass
summary that fills it, the statistics and bounds read from it), and the compiled loop of
the summary must compute the bins with this module's float operations in this order (equal
counts), so it lives beside the numpy code it mirrors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._jit import jit
from .beta import DEFAULT_DELTA
from .mixture import _mixture_log_densities

#: Default grid: 65536 equal bins of logit y on [logit(delta), logit(1 - delta)] ...
LOGIT_HISTOGRAM_BINS = 65536
#: ... and 1024 bins 256 times wider on each side beyond them (to |logit y| ≈ 124, y ≈ 1e-54).
LOGIT_OUTER_BINS = 1024
OUTER_WIDTH_FACTOR = 256
#: Quantile points whose dip stands for the histogram's (adds 1/(2m) to the bound).
DIP_SAMPLE_SIZE = 2**16
#: Names of the four tail fields after the bins.
LOGIT_TAIL_FIELDS = ("n_at_lower", "n_below", "n_above", "n_at_upper")


def logit_histogram_edges(bins: int = LOGIT_HISTOGRAM_BINS, delta: float = DEFAULT_DELTA) -> np.ndarray:
    """The ``bins + 1`` equal-width edges of the inner grid, in logit units.

    Examples
    --------
    >>> from actstats.kernels import logit_histogram_edges
    >>> logit_histogram_edges(2).round(3).tolist()  # delta = 1e-6
    [-13.816, 0.0, 13.816]
    """
    if bins < 1 or not 0 < delta < 0.5:
        raise ValueError(f"logit histogram: need bins >= 1 and 0 < delta < 0.5, got bins={bins}, delta={delta}")
    limit = np.log1p(-delta) - np.log(delta)
    return np.linspace(-limit, limit, bins + 1)


def _all_edges(bins: int, delta: float, outer: int) -> np.ndarray:
    """Edges of every bin: ``outer`` wide bins, the ``bins`` inner ones, ``outer`` wide bins."""
    inner = logit_histogram_edges(bins, delta)
    step = OUTER_WIDTH_FACTOR * (inner[1] - inner[0])
    beyond = step * np.arange(1, outer + 1)
    return np.concatenate([(inner[0] - beyond)[::-1], inner, inner[-1] + beyond])


def logit_histogram(
    y, *, bins: int = LOGIT_HISTOGRAM_BINS, delta: float = DEFAULT_DELTA, outer_bins: int = LOGIT_OUTER_BINS,
    logit=None,
) -> np.ndarray:
    """Histogram fields of ``logit y`` over the last axis (NaN skipped).

    Parameters
    ----------
    y : array_like (..., m)
        Activations rescaled to [0, 1].
    bins, delta, outer_bins : the grid (see the module docstring).
    logit : array_like, optional
        ``log(y) - log1p(-y)`` of the same values, when the caller has it already.

    Returns
    -------
    ndarray (..., bins + 2 * outer_bins + 4)
        Mergeable by summing over chunks of the same group.

    Verification: the histogram of a sample equals the sum of those of its parts, and
    the counts equal ``numpy.histogram`` of ``logit y`` on the same edges
    (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import logit_histogram
    >>> y = np.array([0.0, 1e-9, 1e-60, 0.3, 0.7, 1.0, np.nan])
    >>> logit_histogram(y, bins=2, outer_bins=1).tolist()  # outer, 2 inner, outer; 0, below, above, 1
    [2.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    """
    values = np.asarray(y, dtype=np.float64)
    lead = values.shape[:-1]
    rows = values.reshape(-1, values.shape[-1])
    n_rows = rows.shape[0]
    limit, step, position_scale = _grid_parameters(bins, delta, outer_bins)
    total = bins + 2 * outer_bins
    fields = total + 4
    with np.errstate(invalid="ignore", divide="ignore"):
        if logit is None:
            z = np.log(rows)
            z -= np.log1p(-rows)  # -inf at 0, +inf at 1, NaN for NaN
        else:
            z = np.asarray(logit, dtype=np.float64).reshape(rows.shape)
        position = z + limit
        position *= position_scale
        np.clip(position, 0, bins - 1, out=position)
        index = position.astype(np.int64)  # floor: position >= 0 (NaN gives garbage, dropped below)
        index += outer_bins
        low = rows < delta
        if low.any():
            beyond = np.floor((-limit - z[low]) / step)  # 0 for the wide bin next to the inner grid
            part = np.where(beyond >= outer_bins, total + 1, outer_bins - 1 - np.maximum(beyond, 0))
            part[rows[low] <= 0] = total
            index[low] = part
        high = rows > 1 - delta
        if high.any():
            beyond = np.floor((z[high] - limit) / step)
            part = np.where(beyond >= outer_bins, total + 2, outer_bins + bins + np.maximum(beyond, 0))
            part[rows[high] >= 1] = total + 3
            index[high] = part
    valid = ~np.isnan(rows)
    index += fields * np.arange(n_rows)[:, None]
    out = np.bincount(index[valid], minlength=n_rows * fields).astype(np.float64)
    return out.reshape(lead + (fields,))


#: Fields of :func:`bounded_summary` before the histogram.
SUMMARY_FIELDS = 14


#: Values of a row whose logarithms numpy takes at once in :func:`bounded_summary` (their
#: float64 arrays, 256 KiB each, stay in L2 cache for the compiled pass that follows).
SUMMARY_SLICE = 2**15


def _grid_parameters(bins: int, delta: float, outer_bins: int) -> tuple[float, float, float]:
    """``limit`` (the inner grid's last edge), the outer bins' ``step`` and ``bins / (2 limit)``."""
    edges = _all_edges(bins, delta, outer_bins)
    limit = float(edges[outer_bins + bins])
    step = float(edges[1] - edges[0]) if outer_bins else 1.0
    return limit, step, bins / (2 * limit)


def bounded_summary(y, *, delta: float = DEFAULT_DELTA) -> np.ndarray:
    """Everything the streamed bimodality and fits need of a chunk, in one pass over it.

    Returns ``(..., 14 + bins + 2 * outer_bins + 4)``: the Beta sums
    (:func:`~actstats.kernels.beta_sufficient_statistics`, summed over chunks), the moments
    of ``y`` and of ``logit`` of the clipped ``y`` (:func:`~actstats.kernels.moments`,
    merged with :func:`~actstats.kernels.combine_moments`) and :func:`logit_histogram`
    (summed). ``y`` is rescaled to [0, 1]; NaN is skipped.

    Notes
    -----
    numpy takes ``log y`` and ``log1p(-y)`` (its SIMD logarithms, the ones the numpy
    kernels take) of :data:`SUMMARY_SLICE` values of a row at a time; two compiled loops
    then do the rest. The first counts each value's histogram field (the float operations
    of :func:`logit_histogram`, in its order: the same counts). The second clips the
    logarithms and takes the sums, the counts and the moments in tiles of
    :data:`~actstats.kernels.moments.MOMENT_TILE` merged pairwise (as
    :func:`~actstats.kernels.moments.moments_extremes`); its loops have no branches and are
    compiled with reassociation allowed, so each tile's sums are kept in vector lanes, in
    an order the compiled code fixes (the same on every call, so the block and the engine
    paths still agree bit for bit).

    Bounds, against the numpy kernels called one by one: the counts (n, clipped, every
    histogram field) are equal; the two sums of logarithms agree to 1e-12 relative (all
    their terms have one sign, so any order of the sum is within γ_{n-1} of the exact one;
    tile sums Neumaier-compensated, against numpy's pairwise sums); the moments within the
    bound of
    :func:`~actstats.kernels.moments.moments_extremes` (mean within ``1e-12 (|mean| +
    std)``, M2 and M4 1e-12 relative, M3 within ``1e-12 sqrt(M2 M4)``).

    Verification: equal to those four kernels called one by one within these bounds
    (``tests/test_kernels_logit_histogram.py``, ``tests/test_kernels_compiled.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import bounded_summary
    >>> summary = bounded_summary(np.array([0.0, 0.25, 0.5, 1.0]))
    >>> summary[[0, 3, 4, 9]].tolist()  # n, n clipped, n of y, n of logit
    [4.0, 2.0, 4.0, 4.0]
    """
    values = np.asarray(y, dtype=np.float64)
    lead = values.shape[:-1]
    rows = np.ascontiguousarray(values.reshape(int(np.prod(lead, dtype=np.int64)), values.shape[-1]))
    out, _ = _bounded_summary_rows(rows, None, None, delta)
    return out.reshape(lead + (out.shape[-1],))


def bounded_summary_block(rows, exists=None, rescale=None, *, delta: float = DEFAULT_DELTA
                          ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bounded_summary` of a block's rows as they are stored, and each row's count of
    values that exist but are not finite.

    Parameters
    ----------
    rows : ndarray (n, m), float32 or float64
        Stored activations, read in their own dtype.
    exists : ndarray (n, m) of bool, optional
        Which values exist (default: all). Values that do not exist are skipped whatever
        they hold; values that exist but are NaN or ±inf are skipped and counted.
    rescale : (lower, scale), optional
        ``y = (x - lower) / scale`` in float64 (each value converted to float64 exactly,
        then the two operations): the rescale to [0, 1]. Default: ``y = x``.

    Returns
    -------
    (summary (n, 14 + histogram fields), nonfinite (n,) int64)

    Notes
    -----
    A compiled pass writes each :data:`SUMMARY_SLICE` of a row's values, cleaned (NaN where
    a value is skipped) and rescaled, into a float64 buffer that stays in cache; numpy's
    logarithms and the compiled loops of :func:`bounded_summary` then take that buffer. The
    summary equals, bit for bit, :func:`bounded_summary` of the float64 rows cleaned and
    rescaled as a whole (the same values at the same positions: the same slices, tiles and
    operations).
    """
    rows = np.asarray(rows)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    rows = np.ascontiguousarray(rows)
    exists = _ALL_EXIST if exists is None else np.ascontiguousarray(exists, dtype=np.bool_)
    return _bounded_summary_rows(rows, exists, rescale, delta)


#: ``exists`` of a block whose values all exist.
_ALL_EXIST = np.zeros((0, 0), dtype=np.bool_)
#: The values whose logarithms :func:`bounded_summary` takes as they are; a value outside is
#: moved to the nearer end first. Nothing it computes depends on the logarithms of those:
#: y <= 0 and y >= 1 have fields of their own and clipped logarithms that are constants, and
#: 0 < y < 1e-300 has logit y < -690, as has the floor, beyond the outer bins (|logit y| <=
#: 124.4: the open tail) with its logarithms clipped to log(delta), log1p(-delta).
_LOG_FLOOR, _LOG_CEILING = 1e-300, 1 - 2.0**-53


def _bounded_summary_rows(rows, exists, rescale, delta):
    """Rows (n, m) contiguous: the summaries and the non-finite counts. ``exists`` None: the
    public path (the float64 rows as given, NaN skipped); otherwise each slice is cleaned
    (and rescaled when ``rescale`` is (lower, scale)) into a buffer first."""
    from .moments import MOMENT_TILE

    clean = exists is not None
    lower, scale = (0.0, 1.0) if rescale is None else (float(rescale[0]), float(rescale[1]))
    apply_rescale = rescale is not None and not (lower == 0 and scale == 1)  # (x - 0) / 1 is x
    # every value exists and the rescale keeps finite values finite: the compiled loop skips
    # and counts what is not finite (a finite value stays finite), no cleaning pass first
    fast = clean and exists.shape[0] == 0 and np.isfinite(lower) and np.isfinite(scale) and scale != 0
    bins, outer = LOGIT_HISTOGRAM_BINS, LOGIT_OUTER_BINS
    fields = bins + 2 * outer + 4
    limit, step, position_scale = _grid_parameters(bins, delta, outer)
    # log of the clipped y = the clipped log (log is monotone), as beta_sufficient_statistics takes it
    clip = np.array([np.log(delta), np.log(1 - delta), np.log1p(-(1 - delta)), np.log1p(-delta)])
    out = np.zeros((rows.shape[0], SUMMARY_FIELDS + fields))
    nonfinite = np.zeros(rows.shape[0], dtype=np.int64)
    state = np.zeros(_STATE_SIZE)
    levels = np.zeros((64, 10))
    counts = np.zeros(fields, dtype=np.int32)  # a row's histogram counts (half the cache of float64 fields)
    width = rows.shape[1]
    part = SUMMARY_SLICE
    log_y = np.empty(min(part, width))
    log_complement = np.empty(min(part, width))
    index = np.empty(min(part, width), dtype=np.int32)
    cleaned = np.empty(min(part, width)) if clean else None
    with np.errstate(invalid="ignore", divide="ignore"):
        for r in range(rows.shape[0]):
            state[:] = 0.0
            pending = 0  # values counted in `counts` since they were last added to the row's fields
            for start in range(0, width, part):
                stop = min(start + part, width)
                if not clean:
                    piece = rows[r, start:stop]
                elif fast:  # numpy's cast (and the rescale's two operations); the loop counts NaN and ±inf
                    piece = cleaned[: stop - start]
                    np.copyto(piece, rows[r, start:stop])
                    if apply_rescale:
                        np.subtract(piece, lower, out=piece)
                        np.divide(piece, scale, out=piece)
                else:
                    piece = cleaned[: stop - start]
                    nonfinite[r] += _clean_slice(rows, exists, r, start, stop, apply_rescale, lower, scale, piece)
                ly, lc = log_y[: piece.size], log_complement[: piece.size]
                # the logarithms of the values in [1e-300, 1 - 2**-53], as they are: outside it
                # (0, 1, a tail beyond the outer bins) no field or sum depends on them, and
                # numpy's SIMD logarithms take a slow path for a vector that holds 0 or 1
                np.clip(piece, _LOG_FLOOR, _LOG_CEILING, out=lc)
                np.log(lc, out=ly)
                np.negative(lc, out=lc)
                np.log1p(lc, out=lc)
                skipped = _logit_bins(piece, ly, lc, float(delta), limit, step, position_scale, bins, outer, index,
                                      counts, clean and fast)
                if clean and fast and skipped:  # ±inf in the buffer becomes NaN: the moments skip it
                    nonfinite[r] += skipped
                    piece[np.isinf(piece)] = np.nan
                _summary_moments(piece, ly, lc, float(delta), clip, MOMENT_TILE, state, levels, out[r],
                                 stop >= width)
                pending += piece.size
                if pending > 2**30:  # exact: integer counts below 2**31, added as float64
                    out[r, SUMMARY_FIELDS:] += counts
                    counts[:] = 0
                    pending = 0
            if width == 0:
                _summary_moments(log_y, log_y, log_y, float(delta), clip, MOMENT_TILE, state, levels, out[r], True)
            out[r, SUMMARY_FIELDS:] += counts
            counts[:] = 0
    return out, nonfinite


@jit
def _clean_slice(rows, exists, r, start, stop, apply_rescale, lower, scale, out):
    """``rows[r, start:stop]`` into float64 ``out``: NaN where a value does not exist or is not
    finite, ``(x - lower) / scale`` with ``apply_rescale``; returns how many that exist are
    not finite."""
    nonfinite = 0
    if exists.shape[0] > 0:
        for i in range(start, stop):
            j = i - start
            x = np.float64(rows[r, i])
            if not exists[r, i]:
                out[j] = np.nan
            elif x - x != 0.0:  # NaN or ±inf
                nonfinite += 1
                out[j] = np.nan
            else:
                out[j] = (x - lower) / scale if apply_rescale else x
    elif apply_rescale:  # branch-free loops (the usual block): x - x is 0 for finite x, NaN otherwise
        for i in range(start, stop):
            x = np.float64(rows[r, i])
            bad = x - x != 0.0
            nonfinite += bad
            out[i - start] = np.nan if bad else (x - lower) / scale
    else:
        for i in range(start, stop):
            x = np.float64(rows[r, i])
            bad = x - x != 0.0
            nonfinite += bad
            out[i - start] = np.nan if bad else x
    return nonfinite


#: Running state of one row in :func:`_summary_moments`: count, clipped, the two sums and
#: their compensations, the two origins, whether they are set, tiles merged.
_STATE_SIZE = 10


@jit
def _logit_bins(y, log_y, log_complement, delta, limit, step, position_scale, bins, outer, index, counts,
                count_nonfinite):
    """One slice of a row: each value's histogram field counted in ``counts`` (int32), with
    :func:`logit_histogram`'s float operations in its order (so equal counts). NaN is
    skipped; with ``count_nonfinite``, ±inf is skipped too; the values skipped are counted
    and the count returned.

    Two loops: every value's field, branch-free (vectorised: the inner bin and both tails'
    wide bins are computed for every value and the one that applies is selected; the same
    operations on the same value as :func:`logit_histogram`'s), -1 for a value skipped;
    then the counting. Not ``fastmath``: the bin is the rounding of these exact operations."""
    total_bins = bins + 2 * outer
    upper = 1 - delta
    top = bins - 1.0
    width = y.size
    for i in range(width):
        v = y[i]
        z = log_y[i] - log_complement[i]
        # inside [delta, 1 - delta]: the inner grid
        position = (z + limit) * position_scale
        position = 0.0 if position < 0 else position
        position = top if position > top else position
        inner = np.int32(position) + outer if position == position else 0
        # below delta, above 1 - delta: the wide bins (max(beyond, 0) < outer) or the open tail
        beyond = np.floor((-limit - z) / step)
        beyond = 0.0 if beyond < 0 else beyond
        low = np.int32(outer - 1 - beyond) if beyond < outer else total_bins + 1
        beyond = np.floor((z - limit) / step)
        beyond = 0.0 if beyond < 0 else beyond
        high = np.int32(outer + bins + beyond) if beyond < outer else total_bins + 2
        k = inner
        k = low if v < delta else k
        k = total_bins if v <= 0 else k
        k = high if v > upper else k
        k = total_bins + 3 if v >= 1 else k
        if count_nonfinite:
            k = k if v - v == 0.0 else -1  # NaN, ±inf
        else:
            k = k if v == v else -1
        index[i] = k
    skipped = 0
    for i in range(width):
        k = index[i]
        if k >= 0:
            counts[k] += 1
        else:
            skipped += 1
    return skipped


@jit(fastmath={"reassoc"})
def _summary_moments(y, log_y, log_complement, delta, clip, tile, state, levels, out, last):
    """One slice of a row (NaN skipped): the clipped logarithms' sums, the clipped count and
    the moments of ``y`` and of the clipped logit into ``state`` and ``levels``; with
    ``last``, the row's 14 head fields into ``out[:14]``.

    Per tile of ``tile`` positions: one pass for the count, the tile's two sums of clipped
    logarithms and its two means, one for the sums of powers of the deviations, then the
    exact re-centring (as :func:`~actstats.kernels.moments`); tiles merged pairwise with
    Pébay's formulas, the tiles' sums of logarithms Neumaier-compensated. A skipped value
    enters a tile's loops as 0 with weight 0, so the loops have no branches, and
    ``fastmath={"reassoc"}`` (reassociation only: no NaN, infinity or signed-zero
    assumptions) lets the compiler keep each sum in vector lanes: a tile's sums are added in
    an order of the compiler's choosing, fixed in the compiled code. The bounds of
    :func:`bounded_summary` hold in any order (a sum of n terms of one sign is within
    γ_{n-1} of the exact one; the moments' rounding is that of
    :func:`~actstats.kernels.moments_extremes`'s tiles)."""

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

    def add(total, error, term):
        # Neumaier's compensated sum
        t = total + term
        if abs(total) >= abs(term):
            error += (total - t) + term
        else:
            error += (term - t) + total
        return t, error

    log_low, log_high, complement_low, complement_high = clip[0], clip[1], clip[2], clip[3]
    upper = 1 - delta
    count = state[0]
    clipped = state[1]
    sum_log, sum_log_error = state[2], state[3]
    sum_complement, sum_complement_error = state[4], state[5]
    origin_y, origin_z = state[6], state[7]
    tiles = state[9]
    width = y.size
    if state[8] == 0:  # the origins: the means of the row's first `tile` values (see moments_extremes)
        nt = 0
        for i in range(width):
            v = y[i]
            if v != v:
                continue
            ly = log_y[i]
            if v < delta or ly < log_low:
                ly = log_low
            elif ly > log_high:
                ly = log_high
            lc = log_complement[i]
            if v > upper or lc < complement_low:
                lc = complement_low
            elif lc > complement_high:
                lc = complement_high
            origin_y += v
            origin_z += ly - lc
            nt += 1
            if nt == tile:
                break
        if nt > 0:
            origin_y /= nt
            origin_z /= nt
            state[8] = 1
    for start in range(0, width, tile):
        stop = min(start + tile, width)
        # views indexed from 0: the compiler sees non-negative indices and vectorises
        ys = y[start:stop]
        lys = log_y[start:stop]
        lcs = log_complement[start:stop]
        m = stop - start
        nt = 0
        nc = 0
        tile_log = 0.0
        tile_complement = 0.0
        sy = 0.0
        sz = 0.0
        for i in range(m):
            v = ys[i]
            ok = v == v
            ly = lys[i]
            ly = log_low if (v < delta) | (ly < log_low) else (log_high if ly > log_high else ly)
            lc = lcs[i]
            lc = complement_low if (v > upper) | (lc < complement_low) else (
                complement_high if lc > complement_high else lc)
            nt += ok
            nc += ok & ((v < delta) | (v > upper))
            tile_log += ly if ok else 0.0
            tile_complement += lc if ok else 0.0
            sy += (v - origin_y) if ok else 0.0
            sz += ((ly - lc) - origin_z) if ok else 0.0
        if nt == 0:
            continue
        count += nt
        clipped += nc
        sum_log, sum_log_error = add(sum_log, sum_log_error, tile_log)
        sum_complement, sum_complement_error = add(sum_complement, sum_complement_error, tile_complement)
        tiles += 1
        n = float(nt)
        mean_y = sy / n
        mean_z = sz / n
        s1y = 0.0
        s2y = 0.0
        s3y = 0.0
        s4y = 0.0
        s1z = 0.0
        s2z = 0.0
        s3z = 0.0
        s4z = 0.0
        for i in range(m):
            v = ys[i]
            ok = v == v
            ly = lys[i]
            ly = log_low if (v < delta) | (ly < log_low) else (log_high if ly > log_high else ly)
            lc = lcs[i]
            lc = complement_low if (v > upper) | (lc < complement_low) else (
                complement_high if lc > complement_high else lc)
            d = ((v - origin_y) - mean_y) if ok else 0.0
            e = (((ly - lc) - origin_z) - mean_z) if ok else 0.0
            d2 = d * d
            e2 = e * e
            s1y += d
            s2y += d2
            s3y += d2 * d
            s4y += d2 * d2
            s1z += e
            s2z += e2
            s3z += e2 * e
            s4z += e2 * e2
        for which in range(2):  # the moments of y, then of the clipped logit
            if which == 0:
                mean, s1, m2, m3, m4 = mean_y, s1y, s2y, s3y, s4y
            else:
                mean, s1, m2, m3, m4 = mean_z, s1z, s2z, s3z, s4z
            shift = s1 / n  # as moments(): the exact re-centring
            m4 = m4 - 4 * shift * m3 + 6 * shift**2 * m2 - 3 * n * shift**4
            m3 = m3 - 3 * shift * m2 + 2 * n * shift**3
            m2 = m2 - n * shift**2
            nn, mean = n, mean + shift
            base = 5 * which
            level = 0
            while level < 64 and int(tiles) >> level & 1 == 0:  # binary counter: merge equal-sized parts
                nn, mean, m2, m3, m4 = merge(levels[level, base], levels[level, base + 1], levels[level, base + 2],
                                             levels[level, base + 3], levels[level, base + 4], nn, mean, m2, m3, m4)
                level += 1
            levels[level, base] = nn
            levels[level, base + 1] = mean
            levels[level, base + 2] = m2
            levels[level, base + 3] = m3
            levels[level, base + 4] = m4
    state[0] = count
    state[1] = clipped
    state[2], state[3] = sum_log, sum_log_error
    state[4], state[5] = sum_complement, sum_complement_error
    state[6], state[7] = origin_y, origin_z
    state[9] = tiles
    if not last:
        return
    out[0] = count
    out[1] = sum_log + sum_log_error
    out[2] = sum_complement + sum_complement_error
    out[3] = clipped
    for which in range(2):
        base = 5 * which
        nn, mean, m2, m3, m4 = 0.0, np.nan, 0.0, 0.0, 0.0
        for level in range(64):
            if int(tiles) >> level & 1:
                nn, mean, m2, m3, m4 = merge(levels[level, base], levels[level, base + 1], levels[level, base + 2],
                                             levels[level, base + 3], levels[level, base + 4], nn, mean, m2, m3, m4)
        out[4 + base] = nn
        out[5 + base] = mean + (origin_y if which == 0 else origin_z)
        out[6 + base] = m2
        out[7 + base] = m3
        out[8 + base] = m4


def _parts(histogram, outer: int = LOGIT_OUTER_BINS):
    """``bins`` and the inner counts; the clipped low and high tails; the total."""
    histogram = np.asarray(histogram, dtype=np.float64)
    bins = histogram.shape[-1] - 4 - 2 * outer
    if bins < 1:
        raise ValueError(f"logit histogram: last axis has {histogram.shape[-1]} fields, expected "
                         f"bins + {2 * outer + 4}")
    total = bins + 2 * outer
    counts = histogram[..., outer: outer + bins]
    low_tail = histogram[..., :outer].sum(axis=-1) + histogram[..., total] + histogram[..., total + 1]
    high_tail = histogram[..., outer + bins: total].sum(axis=-1) + histogram[..., total + 2] + histogram[..., total + 3]
    return bins, counts, low_tail, high_tail


def logit_histogram_middles(bins: int = LOGIT_HISTOGRAM_BINS, delta: float = DEFAULT_DELTA) -> np.ndarray:
    """The bins' middles in logit units.

    Examples
    --------
    >>> from actstats.kernels import logit_histogram_middles
    >>> logit_histogram_middles(2).round(3).tolist()
    [-6.908, 6.908]
    """
    edges = logit_histogram_edges(bins, delta)
    return (edges[:-1] + edges[1:]) / 2


def logit_histogram_ks(histogram, cdf_edges, cdf_middles) -> tuple[np.ndarray, np.ndarray]:
    """KS distance of the clipped values to a reference CDF, with its error bound.

    Parameters
    ----------
    histogram : array_like (..., bins + 2 * LOGIT_OUTER_BINS + 4)
        From :func:`logit_histogram`, summed over chunks.
    cdf_edges : array_like (..., bins + 1)
        The reference CDF at the inner grid's edges (``expit`` of the logit edges); the first
        and last are its values at ``delta`` and ``1 - delta``.
    cdf_middles : array_like (..., bins)
        The reference CDF at the bins' middles (for the estimate).

    Returns
    -------
    (ks, error)
        The exact distance of the values clipped into ``[delta, 1 - delta]`` lies in
        ``[ks - error, ks + error]``; NaN for an empty group.

    Verification: holds the exact ``scipy.stats.kstest`` distance of the clipped values
    against fitted Beta and logit-normal CDFs within the bound
    (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import special
    >>> from actstats.kernels import logit_histogram, logit_histogram_edges, logit_histogram_ks
    >>> y = np.random.default_rng(0).beta(2.0, 2.0, size=100_000)
    >>> edges = logit_histogram_edges()
    >>> middles = (edges[:-1] + edges[1:]) / 2
    >>> g = lambda z: special.betainc(2.0, 2.0, special.expit(z))
    >>> ks, error = logit_histogram_ks(logit_histogram(y), g(edges), g(middles))
    >>> bool(ks < 0.01 and error < 0.001)
    True
    """
    bins, counts, low_tail, high_tail = _parts(histogram)
    g = np.asarray(cdf_edges, dtype=np.float64)
    g_middle = np.asarray(cdf_middles, dtype=np.float64)
    n = counts.sum(axis=-1) + low_tail + high_tail
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = n[..., None]
        inclusive = (low_tail[..., None] + np.cumsum(counts, axis=-1)) / nn  # B_k: F just below u_{k+1}
        exclusive = inclusive - counts / nn  # A_k: F at u_k (the clipped low tail sits at u_0)
        g0, g1 = g[..., :-1], g[..., 1:]
        in_bins_up = np.maximum(inclusive - g0, g1 - exclusive).max(axis=-1)
        below_first = g[..., 0]  # t < delta: F = 0
        from_last = 1 - g[..., -1]  # t >= 1 - delta: F = 1 (the clipped high tail sits there)
        ks_up = np.maximum(np.maximum(in_bins_up, below_first), from_last)
        # Known values of F just below each inner edge and just below 1 - delta.
        f_minus = exclusive[..., 1:]
        edge_gaps = np.abs(f_minus - g[..., 1:-1]).max(axis=-1, initial=0.0)
        last_gap = np.abs(inclusive[..., -1] - g[..., -1])
        ks_low = np.maximum.reduce([edge_gaps, last_gap, below_first, from_last])
        middle = np.abs((exclusive + inclusive) / 2 - g_middle).max(axis=-1)
        estimate = np.clip(np.maximum(ks_low, middle), ks_low, ks_up)
        error = np.maximum(estimate - ks_low, ks_up - estimate)
    valid = n > 0
    return np.where(valid, estimate, np.nan), np.where(valid, error, np.nan)


def _cells(histogram, outer: int = LOGIT_OUTER_BINS):
    """Cell masses in the order of y: [at 0, below the grid, every bin, above the grid, at 1]."""
    histogram = np.asarray(histogram, dtype=np.float64)
    total = histogram.shape[-1] - 4
    _parts(histogram, outer)  # checks the layout
    return total, np.concatenate(
        [histogram[..., total: total + 2], histogram[..., :total], histogram[..., total + 2:]], axis=-1
    )


def logit_histogram_sample(histogram, size: int, *, delta: float = DEFAULT_DELTA) -> np.ndarray:
    """``size`` quantile points ``H⁻¹((i − ½)/size)`` of the histogram's spread-out CDF.

    Inside a bin the values are spread evenly in logit units, inside the open tails
    beyond the grid evenly in ``y``; the atoms at 0 and 1 stay where they are. Their
    empirical CDF is within ``1/(2·size)`` of ``H`` (see the module docstring).

    Returns
    -------
    ndarray (..., size)
        Sorted ascending; NaN for an empty group.

    Verification: the empirical CDF of the points is within the dip's bound of the data's
    on saturated, narrow and spiked samples (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import logit_histogram, logit_histogram_sample
    >>> h = logit_histogram(np.array([0.0, 0.0, 0.2, 1.0]))
    >>> logit_histogram_sample(h, 4).round(3).tolist()
    [0.0, 0.0, 0.2, 1.0]
    """
    total, cells = _cells(histogram)
    bins = total - 2 * LOGIT_OUTER_BINS
    lead = cells.shape[:-1]
    flat = cells.reshape(-1, total + 4)
    edges = _all_edges(bins, delta, LOGIT_OUTER_BINS)
    first, last = special.expit(edges[0]), special.expit(edges[-1])
    out = np.full((flat.shape[0], size), np.nan)
    targets = (np.arange(size) + 0.5) / size
    for i, row in enumerate(flat):
        n = row.sum()
        if n <= 0:
            continue
        cumulative = np.cumsum(row)
        t = targets * n
        j = np.minimum(np.searchsorted(cumulative, t, side="left"), total + 3)
        start = cumulative[j] - row[j]
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.clip(np.where(row[j] > 0, (t - start) / row[j], 0.0), 0.0, 1.0)
        k = np.clip(j - 2, 0, total - 1)
        inner = special.expit(edges[k] + fraction * (edges[k + 1] - edges[k]))
        points = np.select(
            [j == 0, j == 1, j == total + 2, j == total + 3],
            [0.0, fraction * first, last + fraction * (1 - last), 1.0],
            inner,
        )
        out[i] = np.maximum.accumulate(points)  # sorted despite rounding at cell borders
    return out.reshape(lead + (size,))


@dataclass(frozen=True)
class HistogramDip:
    """The dip of histogrammed data, its error bound and a conservative p-value.

    Attributes
    ----------
    statistic : the dip of the quantile points.
    error : the exact dip lies in ``[statistic - error, statistic + error]``.
    pvalue : the p-value of the smallest dip the bound allows (``statistic - error``) at
        the group's n: at least the exact dip's p-value, so a rejection is a rejection.
    n : number of values.
    """

    statistic: np.ndarray
    error: np.ndarray
    pvalue: np.ndarray
    n: np.ndarray


def dip_pvalue(dip, n) -> np.ndarray:
    """The ``diptest`` package's table p-value of a dip at sample size n (NaN for n < 4).

    ``diptest.diptest`` computes this p-value from the data; here the dip and n are given,
    so a dip known only within a bound gets the p-value of either end. Beyond the table's
    n = 72000 the table is read on the ``sqrt(n) * dip`` scale, as ``diptest`` does.

    Verification: equal to ``diptest.diptest``'s p-value for n = 50, 1000 and 20000
    (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> from actstats.kernels import dip_pvalue
    >>> print(round(float(dip_pvalue(0.05, 1000)), 6), float(dip_pvalue(0.001, 10**8)))
    0.0 0.0
    """
    from diptest.consts import Consts

    dip = np.asarray(dip, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), dip.shape)
    out = np.full(dip.shape, np.nan)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sample size exceeds", category=UserWarning)
        for index in np.ndindex(dip.shape):
            if n[index] >= 4 and np.isfinite(dip[index]):
                out[index] = float(Consts.compute_pval_interpolation(int(n[index]), float(dip[index])))
    return out


def logit_histogram_dip(histogram, *, delta: float = DEFAULT_DELTA, sample_size: int = DIP_SAMPLE_SIZE) -> HistogramDip:
    """Hartigan's dip of histogrammed activations, with an exact error bound.

    The dip is ``diptest.dipstat`` of :func:`logit_histogram_sample`'s quantile points;
    the bound is the largest mass of a bin or open tail plus ``1/(2·sample_size)``
    (module docstring). NaN for groups of fewer than 4 values.

    Verification: ``diptest.dipstat`` of the values lies within the bound on U-shaped,
    unimodal, one-sided and spiked samples, and the p-value is never below the exact
    one (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import logit_histogram, logit_histogram_dip
    >>> y = np.random.default_rng(0).beta(0.2, 0.2, size=200_000)
    >>> dip = logit_histogram_dip(logit_histogram(y))
    >>> bool(dip.error < 0.01 and dip.pvalue < 0.05)
    True
    """
    import diptest

    _, cells = _cells(histogram)
    n = cells.sum(axis=-1)
    spread = cells[..., 1:-1]  # the atoms at 0 and 1 are exact
    with np.errstate(invalid="ignore", divide="ignore"):
        error = spread.max(axis=-1) / n + 1 / (2 * sample_size)
    sample = logit_histogram_sample(histogram, sample_size, delta=delta)
    flat = sample.reshape(-1, sample_size)
    statistic = np.full(flat.shape[0], np.nan)
    for i, row in enumerate(flat):
        if n.reshape(-1)[i] >= 4:
            statistic[i] = float(diptest.dipstat(row, sort_x=False))
    statistic = statistic.reshape(n.shape)
    valid = n >= 4
    error = np.where(valid, error, np.nan)
    pvalue = dip_pvalue(np.maximum(statistic - error, 0.0), n)
    return HistogramDip(statistic=statistic, error=error, pvalue=pvalue, n=n)


def logit_histogram_mixture_log_likelihood(histogram, weights, a, b, *, delta: float = DEFAULT_DELTA) -> np.ndarray:
    """Binned log-likelihood of a Beta mixture on the clipped values (an approximation).

    Values in a bin enter at its middle (logit units); the clipped tails enter at
    ``delta`` and ``1 - delta``, where the clipped values are (exact for them).
    ``weights``, ``a``, ``b`` are ``(..., 3)``. On the [0, 1] scale.

    Verification: within 1e-4 relative of the exact log-likelihood of a fitted mixture
    (``kernels.fit_beta_mixture``) on 120 000 spike–bump–spike values
    (``tests/test_kernels_logit_histogram.py``).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import logit_histogram, logit_histogram_mixture_log_likelihood
    >>> y = np.random.default_rng(0).beta(2.0, 3.0, size=10_000)
    >>> w, a, b = np.array([0.2, 0.6, 0.2]), np.array([2.0, 2.0, 2.0]), np.array([3.0, 3.0, 3.0])
    >>> binned = logit_histogram_mixture_log_likelihood(logit_histogram(y), w, a, b)
    >>> exact = np.sum(np.log(y * (1 - y) ** 2 * 12))  # Beta(2, 3) density: 12 y (1 - y)^2
    >>> bool(abs(binned - exact) < 1e-3 * abs(exact))
    True
    """
    bins, counts, low_tail, high_tail = _parts(histogram)
    y = special.expit(logit_histogram_middles(bins, delta))
    y = np.concatenate([[delta], y, [1 - delta]])
    mass = np.concatenate([low_tail[..., None], counts, high_tail[..., None]], axis=-1)
    lead = mass.shape[:-1]
    flat_mass = mass.reshape(-1, bins + 2)
    w, aa, bb = (np.asarray(v, dtype=np.float64).reshape(-1, 3) for v in (weights, a, b))
    out = np.full(flat_mass.shape[0], np.nan)
    log_y, log_complement = np.log(y), np.log1p(-y)
    for i in range(flat_mass.shape[0]):
        if not np.all(np.isfinite(w[i])):
            continue
        log_density = special.logsumexp(_mixture_log_densities(log_y, log_complement, w[i], aa[i], bb[i]), axis=1)
        out[i] = np.where(flat_mass[i] > 0, flat_mass[i] * log_density, 0.0).sum()
    return out.reshape(lead)
