"""Adjustment of p-values for multiple testing across layers, epochs and runs."""

from __future__ import annotations

import numpy as np

from ._rows import Axis, as_rows

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(pvalues, axis: Axis = None) -> np.ndarray:
    """Benjamini–Hochberg (1995) adjusted p-values (false discovery rate).

    Parameters
    ----------
    pvalues : array_like
        p-values; NaN (a test that could not be computed) is skipped and stays NaN.
    axis : int, tuple of int or None, default None
        Axes spanning one family of tests (None: all p-values form one family). Each
        slice along the other axes is adjusted separately.

    Returns
    -------
    ndarray
        Same shape as ``pvalues``: ``min(1, min_{j ≥ i} m p_(j) / j)`` at the position
        of ``p_(i)``, where m is the number of non-NaN p-values in the family.

    Verification: equal to ``statsmodels.stats.multitest.multipletests(p,
    method="fdr_bh")[1]`` to 1e-12, live and against
    ``tests/reference/multiple.json``.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import benjamini_hochberg
    >>> benjamini_hochberg(np.array([0.01, 0.04, np.nan, 0.03]))
    array([0.03, 0.04,  nan, 0.04])
    """
    rows = as_rows(pvalues, axis)
    values = rows.values
    present = values[rows.valid]
    if present.size and (present.min() < 0 or present.max() > 1):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(values, axis=1, kind="stable")  # NaN last
    ordered = np.take_along_axis(values, order, axis=1)
    m = rows.counts[:, None].astype(float)
    rank = np.arange(1, values.shape[1] + 1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(rank <= m, ordered * m / rank, np.inf)
    adjusted = np.minimum.accumulate(scaled[:, ::-1], axis=1)[:, ::-1]
    adjusted = np.where(rank <= m, np.minimum(adjusted, 1.0), np.nan)
    result = np.empty_like(adjusted)
    np.put_along_axis(result, order, adjusted, axis=1)
    return rows.restore(result)
