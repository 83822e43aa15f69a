"""Block reductions without dask's graph (actstats.queries._direct): taken only where it may be,
and the same numbers, errors and refusals as dask computing the same blocks."""

from __future__ import annotations

import os
import shutil
import time

import dask
import dask.threaded
import numpy as np
import pytest
import xarray as xr

import actstats
from actstats.errors import IntegrityError, StoreFormatError
from actstats.queries import _direct, _engine
from actstats.queries._engine import _layout


def _through_dask(dsk, keys, **kwargs):
    """dask's threaded scheduler under another name: a scheduler _direct does not know, so the
    queries compute their graphs with dask, as before _direct."""
    return dask.threaded.get(dsk, keys, **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    from actstats.synthetic import write_synthetic_store

    path = str(tmp_path_factory.mktemp("direct") / "s.zarr")
    return write_synthetic_store(path, runs=3, epochs=3, layers=2, samples=40, units=24, seed=3,
                                 activation_fn=["sigmoid", "tanh", "relu"])


def _cell_counts(ds):
    from actstats.queries.saturation import _cell_counts

    return _cell_counts(ds, _layout(ds), 0.05)


def test_the_streamed_summaries_are_computed_without_the_graph(store, monkeypatch):
    """bimodality by layer (groups pooled over runs, epochs and samples: blocks transposed,
    layer first) takes the local path, and its histograms are the same as dask's."""
    from actstats.queries import _streamed

    calls = []
    original = _direct.compute_gathered
    monkeypatch.setattr(_direct, "compute_gathered", lambda *a, **k: calls.append(a[0].dims) or original(*a, **k))
    with dask.config.set(scheduler="threads", num_workers=2), actstats.set_options(exact_max_size=50):
        actstats.bimodality(actstats.open_store(store, chunks="zarr"), by=("layer",), mixture="never")
    assert calls and calls[0][0] == "layer"
    assert _streamed._direct is _direct


def test_a_plan_only_for_the_store_arrays_themselves(store):
    ds = actstats.open_store(store, chunks="zarr")
    assert len(_direct.plan_of(_cell_counts(ds)).blocks()) == 3 * 3 * 2
    ds = actstats.open_store(store)
    assert _direct.plan_of(_cell_counts(ds)) is not None
    assert _direct.plan_of(_cell_counts(ds.isel(run=[0, 2]))) is None  # a selection: dask's
    assert _direct.plan_of(_cell_counts(ds.chunk({"sample": 7}))) is None  # rechunked: dask's
    assert _direct.plan_of(_cell_counts(ds.load())) is None  # numpy: no dask at all


@pytest.mark.parametrize("scheduler, expected", [
    (None, "num_workers"), ("threads", "num_workers"), (dask.threaded.get, "num_workers"),
    ("sync", 1), ("synchronous", 1), ("processes", None), (_through_dask, None),
])
def test_threads_only_where_dask_would_use_threads_here(scheduler, expected):
    with dask.config.set(scheduler=scheduler, num_workers=3):
        assert _direct.workers() == (3 if expected == "num_workers" else expected)
        with actstats.set_options(scheduler="tcp://127.0.0.1:8786"):  # a cluster named: it computes
            assert _direct.workers() is None


QUERIES = [
    ("saturation", dict(by=("run", "epoch", "layer", "split"))),
    ("saturation", dict(by=("layer",))),
    ("saturation", dict(by=("run", "unit"))),
    ("saturation", dict(by=("run", "sample"))),
    ("compare_splits", dict(by=("run", "epoch", "layer"), n_permutations=199, n_resamples=200)),
    ("compare_splits", dict(by=("layer",), n_permutations=199, n_resamples=200)),
    ("bimodality", dict(by=("run", "layer"), mixture="never")),
    ("weight_normality", dict()),
    # groups beyond exact_max_size: the streamed paths, over blocks in the query's order (layer
    # first: transposed views of the stored blocks), their histograms summed without the graph
    ("bimodality", dict(by=("layer",), mixture="never", streamed=True)),
    ("fit", dict(by=("layer", "split"), streamed=True)),
    ("fit", dict(variable="weight", by=("layer",), method="histogram", streamed=True)),
    ("weight_normality", dict(by=("layer",), streamed=True)),
]


#: Each query with a block a Zarr chunk (18 of them) and with one block; saturation and compare
#: (which reduce batches of runs) also a run a batch; all on two reading threads, and with a
#: block a chunk on the calling thread alone (dask's synchronous scheduler: one worker).
CASES = [
    (name, kwargs, batch, chunks, local)
    for name, kwargs in QUERIES
    for batch in ([None, 40 * 3 * 2] if name in ("saturation", "compare_splits") else [None])
    for chunks in ("zarr", "auto")
    for local in (("threads", "sync") if chunks == "zarr" else ("threads",))
]


@pytest.mark.parametrize("name, kwargs, batch, chunks, local", CASES)
def test_the_same_numbers_as_dask_computing_the_same_blocks(store, monkeypatch, name, kwargs, batch, chunks, local):
    if batch is not None:
        monkeypatch.setattr(_engine, "SATURATION_CELL_BATCH", batch)
    query = getattr(actstats, name)
    kwargs = dict(kwargs)
    options = {"exact_max_size": 50} if kwargs.pop("streamed", False) else {}
    with dask.config.set(scheduler=local, num_workers=2), actstats.set_options(**options):
        direct = query(actstats.open_store(store, chunks=chunks), **kwargs)
    with dask.config.set(scheduler=_through_dask), actstats.set_options(**options):
        through_dask = query(actstats.open_store(store, chunks=chunks), **kwargs)
    xr.testing.assert_identical(direct, through_dask)


def test_batches_end_on_block_boundaries_at_multiples_of_the_batch(store):
    ds = actstats.open_store(store, chunks="zarr")  # a block a run along run
    counts = _cell_counts(ds)
    seen = []
    parts = _direct.in_batches((counts,), 2, 2, lambda part: seen.append(part.run.values.tolist()) or part)
    assert seen == [[0, 1], [2]]
    computed = xr.concat(parts, dim="run")
    with dask.config.set(scheduler=_through_dask):
        (whole,) = _engine._compute(counts)
    xr.testing.assert_identical(computed, whole)


def _copy(store, tmp_path) -> str:
    target = str(tmp_path / "copy.zarr")
    shutil.copytree(store, target)
    return target


def _both(path, query, **kwargs):
    """The error each way of computing raises (type and message)."""
    errors = []
    for config in (dict(scheduler="threads", num_workers=2), dict(scheduler=_through_dask)):
        with dask.config.set(**config), pytest.raises((IntegrityError, StoreFormatError)) as caught:
            getattr(actstats, query)(actstats.open_store(path), **kwargs)
        errors.append((type(caught.value), str(caught.value)))
    return errors


def test_a_damaged_chunk_is_the_same_error_either_way(store, tmp_path):
    path = _copy(store, tmp_path)
    chunk = os.path.join(path, "activation", "c", "1", "2", "0", "0", "0")
    with open(chunk, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xfe\xfd\xfc")
    (direct, through_dask) = _both(path, "saturation")
    assert direct == through_dask
    assert "chunk (1, 2, 0, 0, 0) is damaged" in direct[1]


def test_a_missing_chunk_of_a_complete_record_is_the_same_error_either_way(store, tmp_path):
    path = _copy(store, tmp_path)
    os.remove(os.path.join(path, "preactivation", "c", "2", "0", "1", "0", "0"))
    (direct, through_dask) = _both(path, "compare_splits", n_permutations=99, n_resamples=100)
    assert direct == through_dask
    assert "chunk (2, 0, 1, 0, 0) is missing" in direct[1]


def test_a_value_beyond_a_layers_width_is_refused_either_way(store, tmp_path):
    import zarr

    path = _copy(store, tmp_path)
    group = zarr.open_group(path, mode="r+")
    width = np.asarray(group["width"][...])
    width[1, 0] = 20  # layer 0 of run 1 now 20 units wide: its units 20-23 hold values, not NaN
    group["width"][...] = width
    (direct, through_dask) = _both(path, "saturation")
    assert direct == through_dask
    assert direct[0] is StoreFormatError


def test_a_blocks_error_stops_the_others(store, monkeypatch):
    """The first block's error is raised; the blocks not started are not read."""
    ds = actstats.open_store(store, chunks="zarr")
    counts = _cell_counts(ds)
    plan = _direct.plan_of(counts)
    calls = []

    def failing(*arrays, location):
        calls.append(location)
        if len(calls) == 1:
            raise RuntimeError("this block fails")
        time.sleep(0.05)  # the others take a while, as reads do: without it two threads could
        # finish all 18 blocks before the calling thread wakes to cancel them (seen on a busy CI)
        raise RuntimeError("this block fails")

    monkeypatch.setattr(plan, "call", failing)
    with pytest.raises(RuntimeError, match="this block fails"):
        _direct.compute((counts,), 2)
    assert len(calls) < len(plan.blocks())


def test_a_per_cell_reduction_is_computed_a_zarr_chunk_at_a_time(store):
    """Saturation's cell counts (per_cell): each block cut at the store's chunk boundaries along
    the kept axes, the pieces covering it exactly once; a reduction that is not per cell keeps
    its blocks whole."""
    ds = actstats.open_store(store)  # one block holds every chunk
    plan = _direct.plan_of(_cell_counts(ds))
    chunks = ds["activation"].data._actstats_source.chunk_shape
    assert plan.parts == chunks[:4]
    covered = np.zeros(ds["activation"].shape[:4], dtype=int)
    for index, location in plan.tasks():
        piece = tuple(slice(a, b) for a, b in location[:4])
        covered[piece] += 1
        assert all(b - a <= c for (a, b), c in zip(location[:4], chunks)), location
        assert location[4] == plan.location(index)[4]  # the reduced axis whole
    assert (covered == 1).all()
    assert len(plan.tasks()) == np.prod([-(-n // c) for n, c in zip(covered.shape, chunks)])  # one a chunk
    whole = _direct.DirectPlan(plan.call, plan.sources, plan.chunks, plan.n_keep, plan.shape)
    assert [location for _, location in whole.tasks()] == [plan.location(i) for i in plan.blocks()]


def test_one_progress_bar_for_every_batch(store, monkeypatch):
    """With progress on, the batches of runs share one bar counting every piece read."""
    bars = []

    class Bar:
        def __init__(self, total):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(_direct, "_progress", Bar)
    monkeypatch.setattr(_engine, "SATURATION_CELL_BATCH", 40 * 3 * 2)  # a run a batch
    with dask.config.set(scheduler="threads", num_workers=2):
        actstats.saturation(actstats.open_store(store, chunks="zarr"))
    assert len(bars) == 1 and bars[0].closed
    assert bars[0].n == bars[0].total == 3 * 3 * 2  # every (run, epoch, layer) chunk


def test_batches_are_reduced_on_one_blas_thread_and_blas_is_restored_after(store):
    """The reductions (bootstraps, permutation tests) run with BLAS limited to one thread (the
    limit entered on the reducing thread before the first of them), and BLAS has as many
    threads as before once the batches are done, also when a reduction raises."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    counts = _cell_counts(actstats.open_store(store, chunks="zarr"))
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        seen = []
        _direct.in_batches((counts,), 2, 1, lambda part: seen.append(blas_threads()) or part)
        assert seen and all(threads == [1] * len(before) for threads in seen)
        assert blas_threads() == before

        def failing(part):
            raise RuntimeError("this reduction fails")

        with pytest.raises(RuntimeError, match="this reduction fails"):
            _direct.in_batches((counts,), 2, 1, failing)
        assert blas_threads() == before
