"""The chunk engine of the queries: what exists where, one task per dask chunk, one compute.

``_Layout`` says by position which values exist (complete records, units below
``width``, fan-in columns below the width of the layer beneath) and each run's
activation bounds. ``_map_chunks`` applies a per-chunk function to every chunk of a
variable (numpy-backed data: once, on the whole array), after masking what does not
exist and counting what is not finite; ``_compute`` computes the lazy pieces of a query
together, on the scheduler that ``actstats.options`` names, with a progress bar.
"""

from __future__ import annotations

import functools
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np
import xarray as xr

from actstats.activations import ACTIVATIONS
from actstats.errors import ActstatsError, ActstatsWarning, StoreFormatError
from actstats.options import OPTIONS, progress_enabled
from actstats.queries._results import _take
from actstats.queries import _direct

_FIELD = "statistic_field"

#: ``saturation`` and ``compare_splits`` keep per-sample counts of at most about this many
#: (run, epoch, layer, sample) cells in memory at once (~140 bytes of peak memory each,
#: measured), computing larger stores a batch of runs at a time when runs are kept apart.
SATURATION_CELL_BATCH = 2**18

#: The Beta mixture inside the queries runs EM on a deterministic subsample of at most
#: this many values per group (the kernel's default is 20000); its log-likelihood and
#: BIC are still evaluated on all values. Measured on 100 groups of 19200 values: 3x
#: faster, the same BIC preference in all 100; the weights of weakly identified
#: mixtures moved by up to 0.35, as the kernel warns they may (docs/queries.md).
QUERY_MIXTURE_MAX_SIZE = 5000


@dataclass(frozen=True)
class _Layout:
    """What exists where, by position: the numpy side of every per-chunk function."""

    complete: np.ndarray  # (run, epoch) bool
    width: np.ndarray  # (run, layer) units that exist
    fan_in_width: np.ndarray  # (run, layer) fan_in columns that exist
    fan_in_known: np.ndarray  # (run, layer) False where the layer below was selected away
    lower: np.ndarray  # (run,) activation bounds; NaN for unknown functions
    upper: np.ndarray  # (run,) inf when unbounded above (relu)
    activation_index: np.ndarray  # (run,) position in ACTIVATIONS, -1 if unknown
    names: tuple[str, ...]  # (run,) activation_fn
    saturation: tuple[str, ...]  # (run,) Activation.saturation: bounds | dead_at_zero | none ("none" if unknown)
    # (run, layer) each layer's function, bounds and saturation kind: the run's own unless the
    # store has layer_activation_fn; `mixed` (run,): the run's layers differ in function
    layer_names: np.ndarray | None = None
    layer_lower: np.ndarray | None = None
    layer_upper: np.ndarray | None = None
    layer_saturation: np.ndarray | None = None
    mixed: np.ndarray | None = None
    # (run, layer) the top of each layer's saturated band's scale: `upper` for "bounds", f(0)
    # for "lower_bound" (Activation.band_upper), NaN where eps does not apply
    layer_band_upper: np.ndarray | None = None
    # (run, layer) rows of weight/bias/weight_grad that exist: width, or fewer for conv layers
    # (one row a channel: layer_weight_rows)
    rows: np.ndarray | None = None

    def unit_limit(self, grid) -> np.ndarray:
        """Units that exist along `unit` of a block: the width for probe variables (with a
        sample dim), the weight rows for parameters (weight, bias, weight_grad)."""
        rows = self.rows if (self.rows is not None and "sample" not in grid) else self.width
        return rows[grid["run"], grid["layer"]]

    @property
    def bounded(self) -> np.ndarray:
        """(run,) whether each run's activation saturates at two finite bounds."""
        return np.array([kind == "bounds" for kind in self.saturation], dtype=bool)

    def check_activations(self, runs, *, per_layer: bool = False) -> None:
        """Refuse runs whose activation function is unknown. A run whose layers differ
        (``layer_activation_fn``) passes only with `per_layer` (the query reads each layer's
        own function) and if every function of its layers is known."""
        mixed = self.mixed if self.mixed is not None else np.zeros(len(self.names), dtype=bool)
        for position, (run, name, index) in enumerate(zip(runs, self.names, self.activation_index)):
            if mixed[position]:
                functions = [f for f in dict.fromkeys(self.layer_names[position]) if f]
                if not per_layer:
                    raise ActstatsError(
                        f"run {run}: its layers have different activation functions ({', '.join(functions)}) "
                        "and this query takes one function per run: select layers of one function, "
                        "e.g. ds.sel(layer=[...]), or use saturation"
                    )
                for function in functions:
                    if function not in ACTIVATIONS:
                        raise ActstatsError(f"run {run}: unknown activation function {function!r} of a layer; "
                                            f"known: {', '.join(ACTIVATIONS)}")
            elif index < 0:
                raise ActstatsError(
                    f"run {run}: unknown activation function {name!r}; known: {', '.join(ACTIVATIONS)}"
                )


def _layout(ds: xr.Dataset) -> _Layout:
    complete = np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool)
    width = np.asarray(ds["width"].transpose("run", "layer").values, dtype=np.int64)
    layers = [int(v) for v in np.atleast_1d(ds["layer"].values)]
    n_fan_in = ds.sizes.get("fan_in", 0)
    n_features = ds.sizes.get("feature", n_fan_in)
    fan_in_width = np.full(width.shape, n_fan_in, dtype=np.int64)
    fan_in_known = np.ones(width.shape, dtype=bool)
    for j, layer in enumerate(layers):
        if layer == 1:
            fan_in_width[:, j] = n_features
        elif layer - 1 in layers:
            fan_in_width[:, j] = width[:, layers.index(layer - 1)]
        else:  # the layer below is not in this dataset: its NaN columns are taken as padding
            fan_in_known[:, j] = False
    if "layer_fan_in" in ds.variables:  # the store says each layer's inputs (branches, skips)
        fan_in_width = np.asarray(ds["layer_fan_in"].transpose("run", "layer").values, dtype=np.int64)
        fan_in_known = np.ones(width.shape, dtype=bool)
    names, layer_names, mixed = _activation_functions(ds, width)
    names = tuple(names)
    known = list(ACTIVATIONS)
    index = np.array([known.index(n) if n in ACTIVATIONS else -1 for n in names], dtype=np.int64)
    lower = np.array([ACTIVATIONS[n].lower if n in ACTIVATIONS else np.nan for n in names], dtype=float)
    upper = np.array([ACTIVATIONS[n].upper if n in ACTIVATIONS else np.nan for n in names], dtype=float)
    saturation = tuple(ACTIVATIONS[n].saturation if n in ACTIVATIONS else "none" for n in names)

    def per_layer(field, default):
        return np.vectorize(lambda n: getattr(ACTIVATIONS[n], field) if n in ACTIVATIONS else default,
                            otypes=[object if field == "saturation" else float])(layer_names) \
            if layer_names.size else np.zeros(layer_names.shape, dtype=object if field == "saturation" else float)

    return _Layout(complete, width, fan_in_width, fan_in_known, lower, upper, index, names, saturation,
                   layer_names, per_layer("lower", np.nan), per_layer("upper", np.nan),
                   per_layer("saturation", "none"), mixed, per_layer("band_upper", np.nan),
                   np.asarray(ds["layer_weight_rows"].transpose("run", "layer").values, dtype=np.int64)
                   if "layer_weight_rows" in ds.variables else width)


def _activation_functions(ds: xr.Dataset, width: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each run's activation function, each (run, layer)'s, and whether a run's layers differ.

    Without ``layer_activation_fn`` every layer has its run's ``activation_fn``. With it, a
    run whose existing layers (in `ds`, perhaps a selection of layers) share one function is
    that function's run, whatever its ``activation_fn`` says (``"mixed"``)."""
    names = [str(v) for v in np.atleast_1d(ds["activation_fn"].values)]
    layer_names = np.array([[n] * width.shape[1] for n in names], dtype=object).reshape(width.shape)
    mixed = np.zeros(len(names), dtype=bool)
    if "layer_activation_fn" in ds.variables:  # each layer's own function
        stored = np.asarray(ds["layer_activation_fn"].transpose("run", "layer").values).astype(str)
        for r in range(len(names)):
            present = [str(f) for f, w in zip(stored[r], width[r]) if w > 0 and str(f)]
            layer_names[r] = [str(f) if str(f) else names[r] for f in stored[r]]
            functions = list(dict.fromkeys(present))
            if len(functions) == 1:  # one function among the layers kept: the run's function
                names[r] = functions[0]
            elif len(functions) > 1:
                mixed[r] = True
    return names, layer_names, mixed


def run_activation_functions(ds: xr.Dataset) -> np.ndarray:
    """(run,) each run's activation function as the queries read it: ``activation_fn``, or,
    in a store with ``layer_activation_fn``, the one function of the run's layers in `ds`
    (``"mixed"`` where they differ).

    Examples
    --------
    >>> import numpy as np
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(runs=1, depth=2).assign_coords(
    ...     activation_fn=("run", ["mixed"]), layer_activation_fn=(("run", "layer"), [["tanh", "relu"]]))
    >>> run_activation_functions(ds).tolist(), run_activation_functions(ds.sel(layer=[2])).tolist()
    (['mixed'], ['relu'])
    """
    width = np.asarray(ds["width"].transpose("run", "layer").values, dtype=np.int64)
    return np.array(_activation_functions(ds, width)[0])


def _grid(dims: Sequence[str], location) -> dict[str, np.ndarray]:
    """Positions along each dim of a block, shaped to broadcast against the block."""
    grid = {}
    for axis, (dim, (start, stop)) in enumerate(zip(dims, location)):
        shape = [1] * len(dims)
        shape[axis] = stop - start
        grid[dim] = np.arange(start, stop).reshape(shape)
    return grid


def _exists(layout: _Layout, grid: dict[str, np.ndarray], epoch=None) -> np.ndarray:
    """Where a block holds values that exist (broadcastable to the block)."""
    epoch = grid["epoch"] if epoch is None else epoch
    mask = layout.complete[grid["run"], epoch]
    if "unit" in grid:
        mask = mask & (grid["unit"] < layout.unit_limit(grid))
    if "fan_in" in grid:
        mask = mask & (grid["fan_in"] < layout.fan_in_width[grid["run"], grid["layer"]])
    return mask


class Fields:
    """Named fields of a per-chunk result, laid out once: name -> position(s) on the last axis.

    A field is a name (one number per group) or ``(name, width)`` (a vector, e.g. the five
    mergeable moments). The engine appends ``n_nonfinite``. Per-chunk functions return a
    dict by name (:meth:`pack` lays it out); queries read fields by name (:meth:`get`).
    """

    def __init__(self, *spec):
        self.slices: dict[str, slice | int] = {}
        start = 0
        for entry in (*spec, "n_nonfinite"):
            name, width = (entry, None) if isinstance(entry, str) else entry
            if name in self.slices:
                raise ValueError(f"field {name!r} named twice")
            self.slices[name] = start if width is None else slice(start, start + width)
            start += 1 if width is None else width
        self.size = start  # including n_nonfinite

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.slices)

    def pack(self, values: dict, keep_shape: tuple[int, ...]) -> np.ndarray:
        """``(*keep_shape, size - 1)``: the fields of ``values`` (all but n_nonfinite) in their places."""
        expected = self.names[:-1]
        if tuple(values) != expected:
            raise ValueError(f"fields {tuple(values)} given where {expected} are laid out")
        parts = [np.asarray(values[name], dtype=np.float64).reshape(keep_shape + (-1,)) for name in expected]
        return np.concatenate(parts, axis=-1) if parts else np.zeros(keep_shape + (0,))

    def get(self, array, name: str):
        """The field ``name`` of a packed array: numpy (last axis) or xarray (the field dim)."""
        where = self.slices[name]
        if isinstance(array, xr.DataArray):
            return array.isel({_FIELD: where}, drop=isinstance(where, int))
        return np.asarray(array)[..., where]

    def unpack(self, array: xr.DataArray) -> dict[str, xr.DataArray]:
        """Every field of a packed DataArray, by name."""
        return {name: self.get(array, name) for name in self.slices}


@dataclass(frozen=True)
class Reduction:
    """A chunked reduction with named fields, in the spirit of flox's ``Aggregation``.

    ``chunk(values, *others, grid, n_reduce, layout, **options)`` reduces the last
    ``n_reduce`` axes of one cleaned block (what does not exist is NaN, see :func:`_block`)
    and returns a dict ``{field: array}`` in the order of ``fields``. ``combine`` says how
    the per-chunk entries of a group merge: ``"sum"`` (counts and sums, added),
    ``"whole"`` (the group was one chunk: its single entry) or ``"gather"`` (kept per
    chunk, for a merge the query does itself, e.g. moments or extremes). ``block``, if
    given, replaces :func:`_block` (cleaning and reducing in one pass, for hot loops).
    ``per_cell``: each kept cell's result depends on that cell's values alone (row by row),
    so that a block may be reduced in parts along the kept axes with the same numbers
    (:mod:`actstats.queries._direct` reduces each Zarr chunk as soon as it is read).
    """

    name: str
    chunk: Callable | None
    fields: Fields
    combine: str = "sum"
    block: Callable | None = None
    per_cell: bool = False

    def merge(self, computed: xr.DataArray) -> xr.DataArray:
        """The per-chunk entries of a computed :func:`_map_chunks` result combined per group."""
        if self.combine == "sum":
            return _merge_sum(computed)
        if self.combine == "whole":
            return _single(computed)
        return computed

    def get(self, array, name: str):
        return self.fields.get(array, name)


def _refuse_beyond_width(values, grid, exists, layout, variable) -> None:
    """A value that is not NaN beyond a layer's width or fan-in in a complete record is a
    format error, never silently left out (:mod:`actstats.store.padding`)."""
    if "unit" not in grid and "fan_in" not in grid:
        return
    padding = layout.complete[grid["run"], grid["epoch"]] & ~exists  # small: the grid's broadcast shape
    if not padding.any():
        return
    with np.errstate(invalid="ignore"):
        beyond = padding & ~np.isnan(values)
    if not beyond.any():
        return
    from actstats.store.padding import describe_beyond

    where = tuple(int(i) for i in np.argwhere(np.broadcast_to(beyond, values.shape))[0])
    at = {dim: int(np.broadcast_to(grid[dim], values.shape)[where]) for dim in grid}
    found = {"run": at["run"], "epoch": at["epoch"], "layer": at["layer"]}
    limit = int(np.broadcast_to(layout.unit_limit(grid), values.shape)[where]) if "unit" in at else 0
    if "unit" in at and at["unit"] >= limit:
        found.update(unit=at["unit"], width=limit)
    else:
        found.update(fan_in=at["fan_in"], width=int(layout.fan_in_width[at["run"], at["layer"]]))
    raise StoreFormatError(describe_beyond(variable or "?", found) + "; actstats verify lists every such place")


def _block(block, *others, reduction, dims, n_reduce, layout, rescale, options, block_info=None, location=None,
           variable=None):
    """Clean one block, apply ``reduction.chunk`` to it, append the count of non-finite values.

    The block's last ``n_reduce`` axes are reduced. Values that do not exist become NaN;
    values that exist but are not finite become NaN and are counted; a value beyond a
    layer's width that is not NaN is refused (:class:`StoreFormatError`). Returns an array
    of the kept shape, with size-1 axes for the reduced ones and a last field axis.
    """
    if location is None:
        location = block_info[0]["array-location"]
    grid = _grid(dims, location)
    values = np.array(block, dtype=np.float64)  # a copy of our own: cleaned and rescaled in place
    exists = _exists(layout, grid)
    _refuse_beyond_width(values, grid, exists, layout, variable)
    reduce_axes = tuple(range(values.ndim - n_reduce, values.ndim))
    keep_shape = values.shape[: values.ndim - n_reduce]
    with np.errstate(over="ignore", invalid="ignore"):
        # every value exists and is finite (one reading pass; the usual block of a complete
        # record): nothing to mask, and the masks below would leave the values as they are
        clean = bool(np.all(exists)) and bool(np.isfinite(values.sum()))
    if clean:
        nonfinite = np.zeros(keep_shape, dtype=np.int64)
    else:
        finite = np.isfinite(values)
        nonfinite = exists & ~finite
        if "fan_in" in grid and not layout.fan_in_known.all():
            nonfinite = nonfinite & ~(np.isnan(values) & ~layout.fan_in_known[grid["run"], grid["layer"]])
        nonfinite = np.broadcast_to(nonfinite, values.shape).sum(axis=reduce_axes)
        np.copyto(values, np.nan, where=~(exists & finite))
    if rescale:  # to [0, 1] with each run's bounds; NaN for runs not saturating at two bounds (relu)
        lower = layout.lower[grid["run"]]
        upper = layout.upper[grid["run"]]
        scale = np.where(layout.bounded[grid["run"]], upper - lower, np.nan)
        if not (np.all(lower == 0) and np.all(scale == 1)):  # (x - 0) / 1 is x: sigmoid's blocks stay as they are
            with np.errstate(invalid="ignore"):
                np.subtract(values, lower, out=values)
                np.divide(values, scale, out=values)
    with np.errstate(all="ignore"):
        out = reduction.chunk(values, *others, grid=grid, n_reduce=n_reduce, layout=layout, **options)
    out = reduction.fields.pack(out, keep_shape)
    out = np.concatenate([out, np.asarray(nonfinite, dtype=np.float64).reshape(keep_shape + (1,))], axis=-1)
    return out.reshape(keep_shape + (1,) * n_reduce + (out.shape[-1],))


def _is_dask(obj) -> bool:
    from dask import is_dask_collection

    return is_dask_collection(obj)


def _map_chunks(
    x: xr.DataArray,
    reduction: Reduction,
    keep: Sequence[str],
    reduce: Sequence[str],
    layout: _Layout,
    *,
    rescale: bool = False,
    others: Sequence[xr.DataArray] = (),
    **options,
) -> xr.DataArray:
    """``reduction`` on each chunk of ``x`` (dims ``keep`` + ``reduce``), lazily: one task a chunk.

    With ``reduction.combine == "whole"`` the ``reduce`` dims are first merged into one
    chunk, so that each call sees whole groups (refused beyond ``OPTIONS["exact_max_size"]``
    values a group). The result has dims ``keep``, one ``<dim>_chunk`` dim per reduced dim
    (one entry per chunk: :meth:`Reduction.merge` combines them) and the field dim of
    ``reduction.fields``, whose last entry is the number of non-finite values.
    """
    keep, reduce = list(keep), list(reduce)
    dims = tuple(keep + reduce)
    stored = x.data, [o.data for o in others], [x.dims.index(d) for d in dims], x.dims  # before the transpose
    x = x.transpose(*dims)
    n_keep, ndim = len(keep), len(dims)
    call = functools.partial(
        reduction.block or _block, reduction=reduction, dims=dims, n_reduce=len(reduce), layout=layout,
        rescale=rescale, options=options, variable=x.name,
    )
    if _is_dask(x):
        import dask.array as da

        data = x.data
        if reduction.combine == "whole" and reduce:
            group_size = int(np.prod(data.shape[n_keep:], dtype=np.int64))
            limit = OPTIONS["exact_max_size"]
            if group_size > limit:
                raise ActstatsError(
                    f"groups of {group_size} values (pooled over {', '.join(reduce)}) are too large to load whole "
                    f"(at most {limit}, option exact_max_size): keep more dimensions in --by / by="
                )
            data = data.rechunk({axis: -1 for axis in range(n_keep, ndim)})
        other_data = [da.asarray(o.transpose(*dims).data).rechunk(data.chunks) for o in others]
        chunks = data.chunks[:n_keep] + tuple((1,) * len(c) for c in data.chunks[n_keep:]) + ((reduction.fields.size,),)
        out = da.map_blocks(
            call, data, *other_data, chunks=chunks, new_axis=ndim, dtype=np.float64,
            meta=np.empty((0,) * (ndim + 1), dtype=np.float64),
        )
        plan = None
        if data is x.data and all(o.dims == stored[3] for o in others):  # not rechunked: the stored blocks
            plan = _direct.plan_for(call, stored[0], stored[1], n_keep, out.shape, per_cell=reduction.per_cell,
                                    axes=stored[2], chunks=data.chunks)
        if plan is not None:  # the same blocks, computable without the graph (_direct)
            out._actstats_direct = plan
    else:
        out = call(
            np.asarray(x.values), *[np.asarray(o.transpose(*dims).values) for o in others],
            location=[(0, n) for n in x.shape],
        )
    coords = {name: c.variable for name, c in x.coords.items() if set(c.dims) <= set(keep)}
    return xr.DataArray(out, dims=dims[:n_keep] + tuple(f"{d}_chunk" for d in reduce) + (_FIELD,), coords=coords)


def _merge_sum(computed: xr.DataArray) -> xr.DataArray:
    """Sum the per-chunk entries of a :func:`_map_chunks` result (counts and sums)."""
    return computed.sum([d for d in computed.dims if str(d).endswith("_chunk")])


def _single(computed: xr.DataArray) -> xr.DataArray:
    """The one entry of a whole-group :func:`_map_chunks` result."""
    return computed.isel({d: 0 for d in computed.dims if str(d).endswith("_chunk")}, drop=True)


def _flat(values: np.ndarray, n_reduce: int) -> np.ndarray:
    """``(*kept, *reduced)`` → ``(*kept, m)`` in C order of the reduced axes."""
    return values.reshape(values.shape[: values.ndim - n_reduce] + (-1,))


def _reduce_axes(values: np.ndarray, n_reduce: int) -> tuple[int, ...]:
    return tuple(range(values.ndim - n_reduce, values.ndim))


def _chunk_values(computed: xr.DataArray, group: Sequence[str], core: Sequence[str]) -> tuple[np.ndarray, tuple]:
    """A gathered result as numpy ``(*group, *chunks, field)`` and the chunk axes."""
    values = computed.transpose(*group, *[f"{d}_chunk" for d in core], _FIELD).values
    return values, tuple(range(len(group), len(group) + len(core)))


def _template(computed: xr.DataArray, core: Sequence[str] = ()) -> xr.DataArray:
    """Dims and coords of the groups of a :func:`_map_chunks` result (one field, first chunk)."""
    first = computed.isel({f"{d}_chunk": 0 for d in core}, drop=True) if core else computed
    return first.isel({_FIELD: 0}, drop=True)


def _compute(*objects):
    """Compute xarray objects together (one graph: every chunk is read once)."""
    import dask

    from actstats.cluster import scheduler_client

    if not any(_is_dask(o) for o in objects):
        return objects
    with scheduler_client() as client:  # None: no scheduler named (option or $ACTSTATS_SCHEDULER, read now)
        if client is not None:
            # The workers read the chunks themselves; an IntegrityError raised there is
            # re-raised here with its type and message.
            return dask.compute(*objects, scheduler=client)
    if all(_direct.plan_of(o) is not None for o in objects):
        n_workers = _direct.workers()
        if n_workers:  # blocks of store arrays, on threads here: no graph (_direct)
            return _direct.compute(objects, n_workers)
    scheduler = _local_scheduler()
    if progress_enabled():
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=1.0, out=sys.stderr):
            return dask.compute(*objects, scheduler=scheduler)
    return dask.compute(*objects, scheduler=scheduler)


def _local_scheduler():
    """dask's threaded scheduler unless the user chose dask's scheduler (dask's config) or may hold a
    dask.distributed client (distributed is imported): then None, dask's own choice.

    With no scheduler configured, dask looks for a distributed client by importing
    dask.distributed, which takes 0.5-0.8 s at each command; when nothing has imported it,
    there is no client to find. (The function, not the name "threads": given a name, dask
    still imports distributed to look for a client.)
    """
    import dask
    import dask.threaded

    if "distributed" in sys.modules or dask.config.get("scheduler", None) is not None:
        return None
    return dask.threaded.get


def one_blas_thread():
    """A context in which BLAS runs on one thread: the bootstrap's and the permutation tests'
    matrix products give the same last bits whatever the path that computes them (a batch on
    a worker thread, or the whole on the calling one) and whatever the number of cores.
    OpenBLAS on two threads sums some products in another order: on a (18 x 32) @ (32 x 2000)
    product, 2177 of the 36000 entries differed from one thread's by an ulp, which moved two
    interval ends of a small store's saturation by 1e-16."""
    return blas_controller().limit(limits=1, user_api="blas")


def blas_controller():
    """The process's threadpoolctl controller, made at the first call: finding the loaded BLAS
    libraries takes 10-40 ms (a walk over every loaded library), once a process. Any thread
    may make it (`_direct.in_batches` makes it on its reducing thread while the first batch
    is read); the limit itself is entered on the calling thread (:func:`one_blas_thread`)."""
    global _BLAS_CONTROLLER
    with _BLAS_LOCK:
        if _BLAS_CONTROLLER is None:  # the products limited are numpy's, whose BLAS is loaded with numpy
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER


_BLAS_CONTROLLER = None
_BLAS_LOCK = threading.Lock()


def _runs_per_batch(ds: xr.Dataset) -> int:
    """Runs whose (run, epoch, layer, sample) cells fit in ``SATURATION_CELL_BATCH``."""
    return max(1, SATURATION_CELL_BATCH // max(ds.sizes["epoch"] * ds.sizes["layer"] * ds.sizes["sample"], 1))


def _in_run_batches(ds: xr.Dataset, query) -> xr.Dataset:
    """``query`` on batches of runs, concatenated along run (the caller warns once for the whole)."""
    batch = _runs_per_batch(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ActstatsWarning)
        parts = [query(ds.isel(run=slice(start, start + batch))) for start in range(0, ds.sizes["run"], batch)]
    return xr.concat(parts, dim="run", data_vars="minimal", coords="minimal", compat="override",
                     join="outer", combine_attrs="override")


def _cells_by(counts: xr.DataArray, by: Sequence[str]) -> xr.DataArray:
    """Counts per cell (run, sample and the kept dims): pooled epochs/layers summed."""
    summed = [d for d in ("epoch", "layer") if d not in by]
    return counts.sum(summed) if summed else counts


def _pool_axes(array: xr.DataArray, group: Sequence[str], pool: Sequence[str]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Values with dims ``group + pool`` (+ any trailing field dim) and the pool axes."""
    rest = [d for d in array.dims if d not in group and d not in pool]
    values = np.ascontiguousarray(array.transpose(*group, *pool, *rest).values)
    return values, tuple(range(len(group), len(group) + len(pool)))


def _largest_group(x: xr.DataArray, core: Sequence[str], subsets) -> int:
    sizes = []
    for _, index in subsets:
        part = _take(x, index)
        sizes.append(int(np.prod([part.sizes[d] for d in core], dtype=np.int64)))
    return max(sizes)


def _unbounded_functions(layout: _Layout) -> list[str]:
    """The activation functions of runs that do not saturate at two bounds (skipped by bimodality and fit)."""
    return sorted({n for n, kind in zip(layout.names, layout.saturation) if kind != "bounds"})
