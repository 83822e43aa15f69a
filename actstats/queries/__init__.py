"""Statistical queries on a store: the xarray layer of actstats.

Every query takes a Dataset in the store layout (:func:`actstats.open_store`, or the same
data loaded into memory), maps ``by=`` — the dimensions kept as groups — onto the
kernels' ``axis=`` (:mod:`actstats.kernels`), and returns an in-memory
``xarray.Dataset`` with one entry per group, statistic names that explain themselves,
and attrs that say the method, ``eps``, the confidence level and how p-values were
adjusted.

Conventions shared by every query
---------------------------------
``by``
    Dimensions of the analysed variable kept as groups, plus ``"split"`` (the
    ``train``/``test`` coordinate of ``sample``) where the variable has samples. Every
    other dimension is pooled inside a group. ``by`` is a name or a sequence of names;
    a name the query does not know raises ``ValueError`` naming it.
Which values enter
    A value enters only if it exists: its (run, epoch) record is ``complete``, its unit
    is below ``width[run, layer]`` and, for weights, its ``fan_in`` column is below the
    width of the layer beneath (the number of input features for layer 1). NaN padding
    therefore never enters a statistic. A value that exists but is not finite (inf, or
    NaN from a diverged run) is excluded and counted in ``n_nonfinite``, and the query
    warns with :class:`~actstats.errors.ActstatsWarning` giving the count.
The independent unit
    Activations of one probe sample are not independent across units, so intervals and
    tests on activations resample or permute *samples*; when ``run`` is pooled
    (not in ``by``) the unit is the (run, sample) pair.
Computation
    Each query makes one pass over the store's chunks: one dask task per chunk masks
    what does not exist, counts and drops non-finite values and reduces the chunk
    (counts, sums, mergeable moments), so memory stays bounded by a chunk. Statistics
    that need a whole group (dip test, fits, CDF-based normality statistics) get one task
    per group (the group's chunks are merged first). The small per-chunk results are
    combined in numpy. numpy-backed data go through the same per-chunk function, once,
    on the whole array. The graph is computed once, with a progress bar on stderr when
    ``OPTIONS["progress"]`` allows it (``None``: only when stderr is a terminal), on the
    dask.distributed scheduler named by ``OPTIONS["scheduler"]`` or ``$ACTSTATS_SCHEDULER``
    if any (:mod:`actstats.cluster`: a client for each computation).

Modules
-------
``_engine`` (layout, chunk mapping, compute), ``_results`` (Dataset helpers),
``_streamed`` (groups too large for memory), one module a query (``saturation``,
``bimodality``, ``fit``, ``normality``, ``gradients``, ``compare``), ``records``
(``to_records``); argument checks are :mod:`actstats.validate`. The query functions are
re-exported here, so ``actstats.queries.saturation`` is the function (the module is
``sys.modules["actstats.queries.saturation"]``).

Verification is described in each function's docstring and in docs/queries.md; the
tests are ``tests/test_queries*.py``.
"""

from actstats.queries._engine import QUERY_MIXTURE_MAX_SIZE
from actstats.queries.bimodality import bimodality
from actstats.queries.compare import compare_splits
from actstats.queries.fit import fit
from actstats.queries.gradients import gradient_flow
from actstats.queries.normality import GAUSSIAN_THRESHOLDS, weight_normality
from actstats.queries.records import RECORD_COORDINATES, to_records
from actstats.queries.saturation import saturation
from actstats.validate import (
    ACTIVATION_FAMILIES,
    FAST_ACTIVATION_FAMILIES,
    NORMALITY_FAMILIES,
    WEIGHT_FAMILIES,
)

__all__ = [
    "ACTIVATION_FAMILIES",
    "FAST_ACTIVATION_FAMILIES",
    "GAUSSIAN_THRESHOLDS",
    "NORMALITY_FAMILIES",
    "QUERY_MIXTURE_MAX_SIZE",
    "RECORD_COORDINATES",
    "WEIGHT_FAMILIES",
    "bimodality",
    "compare_splits",
    "fit",
    "gradient_flow",
    "saturation",
    "to_records",
    "weight_normality",
]
