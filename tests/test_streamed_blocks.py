"""The streamed reductions' own block functions (bounded summary, weight moments and extremes,
standardised histogram) against the engine's ``_block`` + the reduction's chunk function.

The block functions hand the stored float32 values to the compiled kernels, which skip what
does not exist, skip and count what is not finite and rescale value by value; the engine
copies the block to float64, masks and rescales it first. The values reach the kernels at
the same positions, so the results are equal bit for bit, n_nonfinite included.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from actstats.queries import _engine
from actstats.queries._streamed import BOUNDED_SUMMARY, MOMENTS_EXTREMA, STANDARDIZED_HISTOGRAM


def _store():
    """Three runs (sigmoid, tanh, sigmoid), layers narrower than the widest (NaN padding), an
    incomplete record holding values that must be ignored, NaN and ±inf where values exist."""
    from actstats.synthetic import synthetic_store

    ds = synthetic_store(runs=3, depth=[2, 1, 2], width=[16, 16, 10], epochs=(0.0, 1.0, 2.0), seed=5,
                         activation_fn=["sigmoid", "tanh", "sigmoid"])
    activation = ds["activation"].values
    activation[0, 1, 0, 3, :4] = np.inf
    activation[1, 0, 0, 5, 2] = -np.inf
    activation[2, 2, 1, 0, 1] = np.nan  # exists (layer 2 of run 2 is 10 wide): counted
    activation[0, 0, 1, :, 0] = 0.0  # at the bounds: the histogram's atoms
    activation[0, 0, 1, :, 1] = 1.0
    weight = ds["weight"].values
    weight[1, 1, 0, 0, :7] = -np.inf
    weight[0, 2, 1, 3, 2] = np.nan
    weight[2, 0, 0, 1, 1] = np.inf
    ds["complete"].values[2, 1] = False
    activation[2, 1] = 7.0  # an incomplete record: whatever it holds is not read
    weight[2, 1] = 7.0
    return ds


STORE = _store()


def _engine_version(reduction):
    """The same reduction cleaned by the engine's _block."""
    return dataclasses.replace(reduction, block=None)


def _compare(x, reduction, group, core, layout, **options):
    ours, theirs = (_engine._map_chunks(x, r, group, core, layout, **options)
                    for r in (reduction, _engine_version(reduction)))
    ours, theirs = (a.compute().values if _engine._is_dask(a.data) else a.values for a in (ours, theirs))
    np.testing.assert_array_equal(ours, theirs)
    return ours


CHUNKINGS = {
    "numpy": None,
    "runs_apart": {"run": 1, "epoch": 2, "layer": 2, "sample": 20, "unit": 16},  # tanh blocks alone
    "runs_together": {"run": 3, "epoch": 1, "layer": 1, "sample": 50, "unit": 8},  # mixed bounds: the engine's
}


@pytest.mark.parametrize(("chunking", "group"), [
    (chunking, group) for chunking in CHUNKINGS for group in (["layer"], ["run", "epoch", "layer"])
] + [("numpy", ["run", "unit"])])
def test_bounded_summary_block_equals_the_engine_block(chunking, group):
    ds = STORE if CHUNKINGS[chunking] is None else STORE.chunk(CHUNKINGS[chunking])
    layout = _engine._layout(ds)
    core = [d for d in ("run", "epoch", "layer", "sample", "unit") if d not in group]
    out = _compare(ds["activation"], BOUNDED_SUMMARY, group, core, layout, rescale=True)
    # 4 inf, one -inf, one NaN where a value exists; the incomplete record is not read
    assert int(out[..., -1].sum()) == 6


@pytest.mark.parametrize("chunking", [None, {"run": 1, "epoch": 3, "layer": 2, "unit": 8, "fan_in": 16},
                                      {"run": 3, "epoch": 1, "layer": 1, "unit": 16, "fan_in": 5}])
@pytest.mark.parametrize("group", [["layer"], ["run", "epoch", "layer"]])
def test_weight_blocks_equal_the_engine_block(chunking, group):
    ds = STORE if chunking is None else STORE.chunk(chunking)
    layout = _engine._layout(ds)
    core = [d for d in ("run", "epoch", "layer", "unit", "fan_in") if d not in group]
    out = _compare(ds["weight"], MOMENTS_EXTREMA, group, core, layout)
    assert int(out[..., -1].sum()) == 9  # 7 -inf, a NaN and an inf where weights exist
    mean = np.linspace(-0.1, 0.1, int(np.prod([ds.sizes[d] for d in group])), dtype=float).reshape(
        [ds.sizes[d] for d in group])
    std = np.full(mean.shape, 0.2)
    std.reshape(-1)[0] = np.nan  # a group without a usable scale: no histogram, its non-finite values counted
    out = _compare(ds["weight"], STANDARDIZED_HISTOGRAM, group, core, layout, mean=mean, std=std, n_group=len(group))
    assert int(out[..., -1].sum()) == 9


def test_weight_blocks_of_a_layer_whose_layer_below_is_away():
    # fan-in columns beyond an unknown width: their NaN is padding (the engine's cleaning)
    ds = STORE.sel(layer=[2]).chunk({"run": 1, "epoch": 3})
    layout = _engine._layout(ds)
    assert not layout.fan_in_known.all()
    _compare(ds["weight"], MOMENTS_EXTREMA, ["layer"], ["run", "epoch", "unit", "fan_in"], layout)


def test_a_value_beyond_the_width_is_refused_as_by_the_engine():
    from actstats.errors import StoreFormatError

    ds = STORE.copy(deep=True)
    ds["activation"].values[2, 0, 1, 2, 12] = 0.5  # the layers of run 2 are 10 wide
    layout = _engine._layout(ds)
    for reduction in (BOUNDED_SUMMARY, _engine_version(BOUNDED_SUMMARY)):
        with pytest.raises(StoreFormatError, match="unit 12 of layer 2, whose width is 10"):
            _engine._map_chunks(ds["activation"], reduction, ["layer"], ["run", "epoch", "sample", "unit"], layout,
                                rescale=True)
