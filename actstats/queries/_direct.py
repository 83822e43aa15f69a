"""Block reductions of a store's arrays computed without dask's graph, on local threads.

:func:`~actstats.queries._engine._map_chunks` turns each block of a variable into a small array
of counts or sums; dask computes those blocks as tasks of a graph. When the variable is the
array :func:`~actstats.store.open_store` made, untouched, read from local files, and dask would
run the blocks on threads of this process anyway, this module runs the same block function on
the same blocks (the same boundaries, the same calls, so the same numbers, bit for bit) from a
pool of threads, each reading its blocks into a buffer of its own that it reuses:

- no graph to build, optimise, order and schedule (a few hundred tasks cost dask's scheduler
  0.1-0.7 s on the benchmark stores, on the thread that should be waiting);
- no new array per block (a new 16 MiB block costs about as much in page faults as reading it);
- each thread runs read, check and reduction of one block back to back, the data still in cache.

Anything else (a selection of the variable, a rechunked one, a remote store, a
dask.distributed client, another scheduler configured) goes through dask as before.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class DirectPlan:
    """What computing one :func:`_map_chunks` result needs without dask: the block function,
    the store arrays it reads (the variable, then the others, all of one chunking), the dask
    chunks of the variable, how many leading axes are kept, and the result's shape (kept axes,
    one slot a block along each reduced axis, the fields)."""

    def __init__(self, call, sources, chunks, n_keep: int, shape: tuple[int, ...], parts=None, axes=None):
        self.call = call
        self.sources = sources
        self.chunks = chunks
        self.n_keep = n_keep
        self.shape = shape
        #: the stored array's axis of each axis of the blocks (the query's order: kept dims
        #: first), as ``numpy.transpose`` takes them; None: the stored order
        self.axes = None if axes is None or list(axes) == list(range(len(axes))) else tuple(axes)
        self.starts = [np.concatenate([[0], np.cumsum(c)]).astype(int).tolist() for c in chunks]
        #: the store's chunk sizes along the kept axes when a block is reduced a Zarr chunk at a
        #: time (a per-cell reduction: the same numbers), else None
        self.parts = parts
        self._tasks = None

    def blocks(self) -> list[tuple[int, ...]]:
        """Block indices in C order (the order dask's blocks of one array are numbered)."""
        return list(itertools.product(*(range(len(c)) for c in self.chunks)))

    def tasks(self) -> list[tuple[tuple[int, ...], list[tuple[int, int]]]]:
        """(block index, location) of each piece reduced at once: the blocks, or with
        :attr:`parts` each block cut along the kept axes at the store's chunk boundaries (a
        4 MiB chunk is read, checked and reduced while it is in the cache; a 16 MiB block
        read whole is not: measured, the counting of a cold 2000 x 1000 slab takes 1.27 ms
        of CPU and of one in cache 0.64 ms)."""
        if self._tasks is not None:
            return self._tasks
        out = []
        for index in self.blocks():
            location = self.location(index)
            if self.parts is None:
                out.append((index, location))
                continue
            ranges = []
            for axis, (a, b) in enumerate(location):
                size = self.parts[axis] if axis < self.n_keep else None
                if not size:
                    ranges.append([(a, b)])
                    continue
                edges = sorted({a, b, *range(-(-a // size) * size, b, size)})
                ranges.append(list(zip(edges, edges[1:])))
            out.extend((index, list(piece)) for piece in itertools.product(*ranges))
        self._tasks = out  # kept: each batch of in_batches filters them
        return out

    def location(self, index) -> list[tuple[int, int]]:
        return [(s[i], s[i + 1]) for s, i in zip(self.starts, index)]

    def target(self, index, location) -> tuple[slice, ...]:
        """Where the block's result goes: its extent along the kept axes, its own slot along
        each reduced one (as ``dask.array.map_blocks`` places it)."""
        keep = tuple(slice(a, b) for a, b in location[: self.n_keep])
        slots = tuple(slice(i, i + 1) for i in index[self.n_keep:])
        return keep + slots + (slice(None),)

    def compute(self, index, buffers: dict, location=None) -> tuple[tuple[slice, ...], np.ndarray]:
        """Block `index` (or the piece of it at `location`) read and reduced: where its
        result goes, and the result."""
        location = self.location(index) if location is None else location
        stored = location if self.axes is None else [None] * len(location)
        if self.axes is not None:
            for axis, where in zip(self.axes, location):
                stored[axis] = where
        key = tuple(slice(a, b) for a, b in stored)
        shape = tuple(b - a for a, b in stored)
        arrays = []
        size = int(np.prod(shape, dtype=np.int64))
        for j, source in enumerate(self.sources):
            # one buffer a source and thread, as large as its largest block; a smaller block
            # (at an edge) is read into the start of it
            flat = buffers.get((id(source), j))
            buffer = flat[:size].reshape(shape) if flat is not None and flat.size >= size else None
            values = source.read_block(key, buffer)
            if values is not buffer and isinstance(values, np.ndarray) and values.shape == shape \
                    and values.flags.c_contiguous and values.flags.writeable \
                    and (flat is None or values.size > flat.size):
                buffers[(id(source), j)] = values.reshape(-1)  # read into it next time
            # in the query's order, as dask's transpose hands the block over: a view
            arrays.append(values if self.axes is None else np.transpose(values, self.axes))
        return self.target(index, location), self.call(*arrays, location=location)


def plan_for(call, data, others, n_keep: int, shape, *, per_cell: bool = False, axes=None,
             chunks=None) -> DirectPlan | None:
    """A :class:`DirectPlan` when `data` and every array of `others` is a store array that
    :func:`~actstats.store.open_store` made, untouched, read from local files with the same
    chunks; else None (dask computes it). `axes`: the stored axis of each of the query's axes
    (its dims reordered, kept ones first; the blocks are transposed views, as dask's), and
    `chunks` the blocks in the query's order. `per_cell`: the block function's result for a
    kept cell depends on that cell's values alone, so blocks are reduced a Zarr chunk at a
    time (see :meth:`DirectPlan.tasks`)."""
    sources = [getattr(d, "_actstats_source", None) for d in (data, *others)]
    if any(s is None or not s.reads_files for s in sources):
        return None
    if any(o.chunks != data.chunks for o in others):
        return None
    axes = list(range(data.ndim)) if axes is None else list(axes)
    chunks = data.chunks if chunks is None else chunks
    if sorted(axes) != list(range(data.ndim)) or tuple(chunks) != tuple(data.chunks[a] for a in axes):
        return None
    parts = None
    if per_cell and all(s.chunk_shape == sources[0].chunk_shape for s in sources):
        parts = tuple(sources[0].chunk_shape[a] for a in axes[:n_keep])
    return DirectPlan(call, sources, chunks, n_keep, tuple(int(n) for n in shape), parts, axes)


def plan_of(obj) -> DirectPlan | None:
    """The plan attached to the data of a lazy :func:`_map_chunks` result, or None."""
    return getattr(getattr(obj, "data", None), "_actstats_direct", None)


def workers() -> int | None:
    """Threads to compute blocks with when dask would compute them on threads of this process
    (its threaded scheduler, or the synchronous one: 1); None when dask is configured for
    anything else, a scheduler is named (``--scheduler``, ``$ACTSTATS_SCHEDULER``,
    ``set_options(scheduler=...)``: the cluster computes them) or a dask.distributed client is
    current (then dask computes them)."""
    import dask

    from actstats.options import scheduler_address

    if scheduler_address():
        return None

    configured = dask.config.get("scheduler", None)
    count = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    if configured is None:
        if "distributed" in sys.modules:
            from distributed import Client

            try:
                Client.current(allow_global=True)
                return None  # dask would use it
            except ValueError:
                pass
        return count
    import dask.local
    import dask.threaded

    if configured is dask.threaded.get or configured in ("threads", "threading"):
        return count
    if configured is dask.local.get_sync or configured in ("sync", "synchronous", "single-threaded"):
        return 1
    return None


def _progress(total: int):
    """A progress bar of `total` pieces on stderr, shown after a second, when the options say
    so (as dask's bar of the same work would be); else None."""
    from actstats.options import progress_enabled

    if not progress_enabled():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="block", delay=1.0, file=sys.stderr, leave=False)


def _run(tasks, run, n_workers: int, *, pool=None, bar=None) -> None:
    """``run(task)`` for every task on `n_workers` threads (on this one when 1), in order of
    submission, `bar` (if any) advanced as each finishes. The first error is raised here; the
    tasks not yet started are cancelled, and those running finish before this returns (they
    use buffers the caller reuses). `pool`: a ThreadPoolExecutor of the caller's (else one of
    this call's own)."""
    if n_workers <= 1:
        for task in tasks:
            run(task)
            if bar is not None:
                bar.update()
        return
    own = pool is None
    pool = ThreadPoolExecutor(n_workers, thread_name_prefix="actstats-read") if own else pool
    futures = [pool.submit(run, task) for task in tasks]
    try:
        for future in futures:
            future.result()
            if bar is not None:
                bar.update()
    finally:
        for future in futures:
            future.cancel()
        if own:
            pool.shutdown(wait=True)
        else:
            for future in futures:
                if not future.cancelled():
                    future.exception()  # waits for it to finish


def compute(objects, n_workers: int, leading: tuple[int, int] | None = None, *, pool=None, local=None,
            bar=None) -> tuple:
    """Each lazy result of `objects` (all with a plan) computed block by block on `n_workers`
    threads; xarray objects like the inputs, with numpy data. With `leading` = (start, stop),
    only positions start:stop of the first axis (a kept one; both on block boundaries, see
    :attr:`DirectPlan.starts`). A block's error is raised here, the blocks not yet started
    are cancelled. `pool` (a ThreadPoolExecutor of `n_workers` threads) and `local` (a
    ``threading.local`` holding each thread's buffers) let successive calls share threads and
    buffers: new threads each time would leave freed buffers in new malloc arenas, and the
    process's memory would grow with every call; `bar`, a progress bar they share."""
    plans = [plan_of(o) for o in objects]
    if leading is not None:
        start, stop = leading
        if any(p.n_keep < 1 or start not in p.starts[0] or stop not in p.starts[0] for p in plans):
            raise ValueError(f"leading={leading}: not on block boundaries of the first axis")
        objects = [o.isel({o.dims[0]: slice(start, stop)}) for o in objects]
    else:
        start, stop = 0, None
    outs = [np.empty(o.shape, dtype=np.float64) for o in objects]
    tasks = [(k, index, location) for k, plan in enumerate(plans) for index, location in plan.tasks()
             if leading is None or start <= plan.starts[0][index[0]] < stop]
    local = threading.local() if local is None else local

    def run(task):
        k, index, location = task
        buffers = local.__dict__.setdefault("buffers", {})
        target, result = plans[k].compute(index, buffers, location)
        if start:
            target = (slice(target[0].start - start, target[0].stop - start),) + target[1:]
        outs[k][target] = result  # a copy: the buffer the block was read into is reused

    own_bar = bar is None
    bar = _progress(len(tasks)) if own_bar else (bar or None)  # False: the caller shows none
    try:
        _run(tasks, run, n_workers, pool=pool, bar=bar)
    finally:
        if own_bar and bar is not None:
            bar.close()
    return tuple(o.copy(data=out) for o, out in zip(objects, outs))


def in_batches(objects, n_workers: int, batch: int, reduce, prepare=None) -> list:
    """``reduce(*parts)`` for each batch of about `batch` positions along the first axis of
    the lazy `objects` (all with a plan, the same block boundaries along that axis; batches
    end on those boundaries, at multiples of `batch` where they fall on one): a batch's
    blocks computed on `n_workers` threads (:func:`compute`), then reduced on one more thread
    while the next batch is read, so that the reduction (a bootstrap, a permutation test)
    costs no time of its own beside the reading. At most two batches' parts are in memory.
    The results in the order of the batches. `prepare` (no arguments), when given, runs on
    that thread while the first batch is read (drawing what every reduction will reuse)."""
    from actstats.queries._engine import blas_controller

    boundaries = plan_of(objects[0]).starts[0]
    if any(plan_of(o).starts[0] != boundaries for o in objects[1:]):
        raise ValueError("the lazy results' blocks differ along their first axis")
    edges = [0]
    for b in boundaries[1:]:
        if b - edges[-1] >= batch or b == boundaries[-1]:
            edges.append(b)
    results, pending = [], None
    local = threading.local()
    bar = _progress(sum(len(plan_of(o).tasks()) for o in objects))  # one bar for every batch
    # one BLAS thread: a reduction's matrix products run beside the reading threads. The
    # controller is made on the reducing thread while the first batch is read (10-40 ms the
    # first time in a process); the limit is entered here, before the first reduction: a limit
    # entered on another thread did not take (measured with OpenBLAS 0.3.30 and 0.3.31: still
    # 2 threads; tests/test_direct.py checks that the limit holds)
    limited = contextlib.ExitStack()
    with limited, \
            ThreadPoolExecutor(n_workers, thread_name_prefix="actstats-read") as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="actstats-reduce") as side:
        controller = side.submit(blas_controller)
        prepared = side.submit(prepare) if prepare is not None else None  # done before the first reduce
        try:
            for start, stop in zip(edges, edges[1:]):
                parts = compute(objects, n_workers, leading=(start, stop), pool=pool, local=local,
                                bar=bar if bar is not None else False)
                if pending is not None:
                    results.append(pending.result())
                else:
                    limited.enter_context(controller.result().limit(limits=1, user_api="blas"))
                pending = side.submit(reduce, *parts)
            if prepared is not None:
                prepared.result()  # its error, if it raised one
            if pending is not None:
                results.append(pending.result())
        finally:
            for future in (controller, prepared, pending):
                if future is not None:
                    future.cancel()
            if bar is not None:
                bar.close()
    return results


def compute_gathered(obj, n_workers: int, gather, summed: slice) -> tuple[np.ndarray, np.ndarray]:
    """A lazy :func:`_map_chunks` result with a plan, computed without holding every block's
    whole result: the fields at positions `gather` kept per block (as ``obj.isel(field=gather)``
    would hold them), the fields in `summed` added over the blocks (as
    :func:`~actstats.queries._engine._merge_sum` would, NaN as 0), each thread into its own
    total, the totals added at the end. For fields whose values are integers (counts: exact
    in any order below 2**53, as a histogram's are) the sums equal dask's to the last bit;
    the streamed histograms of bimodality and fit are such (540 KiB a group a block: kept
    per block they would be 0.15 GB on the 4 GB bench store)."""
    plan = plan_of(obj)
    gather = np.asarray(gather)
    width = summed.stop - summed.start
    head = np.empty(obj.shape[:-1] + (gather.size,), dtype=np.float64)
    local = threading.local()
    totals, lock = [], threading.Lock()
    keep_shape = obj.shape[: plan.n_keep]

    def run(task):
        index, location = task
        buffers = local.__dict__.setdefault("buffers", {})
        total = getattr(local, "total", None)
        if total is None:
            total = local.total = np.zeros(keep_shape + (width,))
            with lock:
                totals.append(total)
        target, result = plan.compute(index, buffers, location)
        head[target] = result[..., gather]
        part = result[..., summed]
        part = part.reshape(part.shape[: plan.n_keep] + (width,))
        total[target[: plan.n_keep]] += np.where(np.isnan(part), 0.0, part)

    tasks = plan.tasks()
    bar = _progress(len(tasks))
    try:
        _run(tasks, run, n_workers, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    out = np.zeros(keep_shape + (width,))
    for total in totals:
        out += total
    return head, out
