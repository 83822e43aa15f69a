"""The one place that owns axis and NaN handling for the kernels.

Every kernel reduces over ``axis=`` and skips NaN, which in an actstats store is the
padding of absent units, layers or samples. Like scipy's ``_axis_nan_policy``, this
module does it once: the reduced axes are moved to the end (in their original order)
and flattened, so a kernel sees a 2-D array ``values`` of shape ``(n_rows, m)`` with a
boolean mask ``valid = ~isnan(values)``; results of shape ``(n_rows, ...)`` are reshaped
back to the kept axes, with any new axis at the end.

Only NaN is padding. ``±inf`` is data (a diverged network) and propagates into the
statistics, which then come out non-finite.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Axis = int | Sequence[int] | None

#: Default seed of every deterministic subsample and resampling in the kernels.
DEFAULT_SEED = 0


def normalize_axis(axis: Axis, ndim: int) -> tuple[int, ...]:
    """Return ``axis`` as a sorted tuple of non-negative axes of an ``ndim`` array.

    ``None`` means every axis. Duplicates and out-of-range axes raise
    :class:`numpy.exceptions.AxisError` naming the axis given.

    Examples
    --------
    >>> from actstats.kernels import normalize_axis
    >>> normalize_axis((-1, 0), 3)
    (0, 2)
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axes = (operator.index(axis),)
    else:
        axes = tuple(operator.index(a) for a in axis)
    normalized = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim)
        normalized.append(a % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"repeated axis in axis={axis!r}")
    return tuple(sorted(normalized))


@dataclass(frozen=True, slots=True)
class Rows:
    """An array seen as rows (kept axes flattened) of values (reduced axes flattened).

    Attributes
    ----------
    values : ndarray, shape (n_rows, m), float64
        The data; NaN marks padding.
    valid : ndarray of bool, shape (n_rows, m)
        ``~isnan(values)``.
    batch_shape : tuple of int
        Shape of the kept axes, in their original order.
    moved_shape : tuple of int
        Shape of the input after moving the reduced axes to the end.
    axes : tuple of int
        The reduced axes of the input, sorted.
    """

    values: np.ndarray
    valid: np.ndarray
    batch_shape: tuple[int, ...]
    moved_shape: tuple[int, ...]
    axes: tuple[int, ...]

    @property
    def n_rows(self) -> int:
        return self.values.shape[0]

    @property
    def counts(self) -> np.ndarray:
        """Number of non-NaN values in each row (int64)."""
        return self.valid.sum(axis=1)

    def zeroed(self) -> np.ndarray:
        """The values with NaN replaced by 0 (for sums)."""
        return np.where(self.valid, self.values, 0.0)

    def row(self, i: int) -> np.ndarray:
        """The non-NaN values of row ``i``, in flattened order."""
        return self.values[i][self.valid[i]]

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row sorted ascending with NaN last, and the per-row counts."""
        return np.sort(self.values, axis=1), self.counts

    def unflatten(self, result: np.ndarray) -> np.ndarray:
        """Reshape ``(n_rows, *new)`` to ``(*batch_shape, *new)``."""
        result = np.asarray(result)
        return result.reshape(self.batch_shape + result.shape[1:])

    def restore(self, result: np.ndarray) -> np.ndarray:
        """Put an ``(n_rows, m)`` array back into the input's shape and axis order."""
        result = np.asarray(result).reshape(self.moved_shape)
        ndim = len(self.moved_shape)
        return np.moveaxis(result, range(ndim - len(self.axes), ndim), self.axes)


def as_rows(x, axis: Axis = -1, *, dtype=np.float64) -> Rows:
    """View ``x`` as :class:`Rows`, reducing over ``axis`` (int, tuple or None = all).

    The reduced axes are moved to the end in their original order and flattened (C
    order); this order is the one that deterministic subsamples refer to.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected real numbers, got an array of dtype {array.dtype}")
    array = array.astype(dtype, copy=False)
    ndim = array.ndim
    if ndim == 0:
        array = array.reshape(1)
        ndim = 1
        axis = 0
    axes = normalize_axis(axis, ndim)
    moved = np.moveaxis(array, axes, range(ndim - len(axes), ndim))
    batch_shape = moved.shape[: ndim - len(axes)]
    m = math.prod(moved.shape[ndim - len(axes):])
    values = moved.reshape(math.prod(batch_shape), m)
    return Rows(values, ~np.isnan(values), tuple(batch_shape), moved.shape, axes)


def map_rows(
    function: Callable[[np.ndarray], Sequence],
    rows: Rows,
    output_shapes: Sequence[tuple[int, ...]],
    *,
    minimum_count: int = 1,
    fill=np.nan,
    dtypes: Sequence | None = None,
) -> list[np.ndarray]:
    """Apply ``function`` to the non-NaN values of each row (a loop over groups).

    ``function(values_1d)`` returns one item per entry of ``output_shapes`` (a scalar
    for ``()``). Rows with fewer than ``minimum_count`` values get ``fill``. Returns
    arrays of shape ``(*batch_shape, *output_shape)``.
    """
    dtypes = dtypes or [np.float64] * len(output_shapes)
    outputs = [
        np.full((rows.n_rows, *shape), fill if np.dtype(dt).kind == "f" else 0, dtype=dt)
        for shape, dt in zip(output_shapes, dtypes)
    ]
    counts = rows.counts
    for i in range(rows.n_rows):
        if counts[i] < minimum_count:
            continue
        results = function(rows.row(i))
        for out, value in zip(outputs, results):
            out[i] = value
    return [rows.unflatten(out) for out in outputs]


def deterministic_subsample(values: np.ndarray, max_size: int | None, seed: int = DEFAULT_SEED) -> np.ndarray:
    """At most ``max_size`` of ``values``, chosen reproducibly.

    If ``len(values) <= max_size`` (or ``max_size`` is None) all values are returned.
    Otherwise the positions are ``np.random.default_rng(seed).choice(len(values),
    max_size, replace=False)``, sorted, so the subsample keeps the input order. The same
    input, ``max_size`` and ``seed`` always give the same subsample.

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.kernels import deterministic_subsample
    >>> deterministic_subsample(np.arange(10.0), 3, seed=0)
    array([5., 6., 9.])
    """
    values = np.asarray(values)
    if max_size is None or values.shape[0] <= max_size:
        return values
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(values.shape[0], size=max_size, replace=False))
    return values[positions]


def rows_quantile(sorted_rows: np.ndarray, counts: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default) of rows sorted with NaN last.

    ``probabilities`` has shape ``(n_rows,)`` or ``(n_rows, k)``; each row uses its own
    count of valid values.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    squeeze = probabilities.ndim == 1
    if squeeze:
        probabilities = probabilities[:, None]
    n = counts[:, None].astype(float)
    usable = (n > 0) & np.isfinite(probabilities)
    position = np.where(usable, probabilities * (n - 1), 0.0)
    with np.errstate(invalid="ignore"):
        lower = np.clip(np.floor(position), 0, np.maximum(n - 1, 0)).astype(np.intp)
    upper = np.minimum(lower + 1, np.maximum(n - 1, 0).astype(np.intp))
    fraction = position - lower
    low_values = np.take_along_axis(sorted_rows, lower, axis=1)
    high_values = np.take_along_axis(sorted_rows, upper, axis=1)
    result = low_values + fraction * (high_values - low_values)
    result = np.where(usable, result, np.nan)
    return result[:, 0] if squeeze else result
