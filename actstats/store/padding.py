"""Padding: where a run has no such layer, unit or input column, a store holds NaN.

``width[run, layer]`` says how many units of a layer exist, and its fan-in (``layer_fan_in``
where the store has it; else the feature count for layer 1 and the width of the layer below
for the others) how many columns of its weight. A value that is not NaN beyond them is a
format error (docs/store-format.md, "Padding"): data wider than the store says, which a
reader that trusts ``width`` would silently leave out. :func:`actstats.verify_store` lists
every chunk that holds one, and the queries refuse to read one
(:func:`actstats.queries._engine._block`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fan_in_widths", "values_beyond_width"]


def fan_in_widths(width: np.ndarray, n_features: int, layer_fan_in: np.ndarray | None = None) -> np.ndarray:
    """(run, layer) the weight columns that exist: ``layer_fan_in``, or the chain rule.

    Examples
    --------
    >>> fan_in_widths(np.array([[4, 3, 0]]), 6).tolist()
    [[6, 4, 3]]
    """
    if layer_fan_in is not None and np.shape(layer_fan_in) == np.shape(width):
        return np.asarray(layer_fan_in, dtype=np.int64)
    width = np.asarray(width, dtype=np.int64)
    out = np.empty_like(width)
    if width.size:
        out[:, 0] = n_features
        out[:, 1:] = width[:, :-1]
    return out


def values_beyond_width(dims: tuple[str, ...], values: np.ndarray, origin: tuple[int, ...], width: np.ndarray,
                        fan_in: np.ndarray | None, complete: np.ndarray, rows: np.ndarray | None = None) -> dict | None:
    """The first value of a block (dims ``run, epoch, layer, …``; first element at `origin`)
    that is not NaN although it lies beyond its layer's width or fan-in, in a complete
    record: ``{"run", "epoch", "layer", "unit" or "fan_in", "width"}`` (positions), or None.
    For parameters (no ``sample`` dim), `rows` (``layer_weight_rows``: a conv layer's
    channels) replaces `width` where given.

    Examples
    --------
    >>> block = np.full((1, 1, 1, 2, 4), np.nan); block[..., :3] = 0.5
    >>> dims = ("run", "epoch", "layer", "sample", "unit")
    >>> values_beyond_width(dims, block, (0, 0, 0, 0, 0), np.array([[3]]), None, np.array([[True]])) is None
    True
    >>> block[0, 0, 0, 1, 3] = 0.25
    >>> values_beyond_width(dims, block, (0, 0, 0, 0, 0), np.array([[3]]), None, np.array([[True]]))
    {'run': 0, 'epoch': 0, 'layer': 0, 'unit': 3, 'width': 3}
    """
    if dims[:3] != ("run", "epoch", "layer") or not ({"unit", "fan_in"} & set(dims)):
        return None
    values = np.asarray(values)
    grid = {}
    for axis, (dim, start) in enumerate(zip(dims, origin)):
        shape = [1] * values.ndim
        shape[axis] = values.shape[axis]
        grid[dim] = np.arange(start, start + values.shape[axis]).reshape(shape)
    if rows is not None and "sample" not in dims:
        width = rows
    run, epoch, layer = grid["run"], grid["epoch"], grid["layer"]
    inside = (run < complete.shape[0]) & (epoch < complete.shape[1]) & (run < width.shape[0]) & (layer < width.shape[1])
    if not inside.all():  # a shape problem, reported as such elsewhere
        return None
    # the common case first: no padding in this block at all
    padded = False
    if "unit" in grid:
        padded |= bool((width[run, layer] < grid["unit"].max() + 1).any())
    if "fan_in" in grid and fan_in is not None:
        padded |= bool((fan_in[run, layer] < grid["fan_in"].max() + 1).any())
    if not padded:
        return None
    exists = np.ones((1,) * values.ndim, dtype=bool)
    if "unit" in grid:
        exists = exists & (grid["unit"] < width[run, layer])
    if "fan_in" in grid and fan_in is not None:
        exists = exists & (grid["fan_in"] < fan_in[run, layer])
    with np.errstate(invalid="ignore"):
        beyond = complete[run, epoch] & ~exists & ~np.isnan(values)
    if not beyond.any():
        return None
    where = tuple(int(i) for i in np.argwhere(beyond)[0])
    at = {dim: int(origin[axis] + where[axis]) for axis, dim in enumerate(dims)}
    out = {"run": at["run"], "epoch": at["epoch"], "layer": at["layer"]}
    r, l = at["run"], at["layer"]
    if "unit" in at and at["unit"] >= width[r, l]:
        out.update(unit=at["unit"], width=int(width[r, l]))
    else:
        out.update(fan_in=at["fan_in"], width=int(fan_in[r, l]))
    return out


def describe_beyond(name: str, found: dict, epochs=None, layers=None) -> str:
    """One line on a value beyond a layer's width (as :func:`values_beyond_width` found it)."""
    e = found["epoch"]
    epoch = f"{epochs[e]:g}" if epochs is not None and e < len(epochs) else f"index {e}"
    layer = layers[found["layer"]] if layers is not None and found["layer"] < len(layers) else found["layer"] + 1
    if "unit" in found:
        what = f"unit {found['unit']} of layer {layer}, whose width is {found['width']}"
    else:
        what = f"input column {found['fan_in']} of layer {layer}, whose fan-in is {found['width']}"
    return (f"variable {name!r} holds a value at {what} (run {found['run']}, epoch {epoch}): a format error — "
            "padding must be NaN; the data is wider than 'width' (or 'layer_fan_in') says, and readers that "
            "trust it would leave values out")
