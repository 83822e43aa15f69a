"""``unit_states``: what each hidden unit does across the probes — stuck at a bound, binary, graded or dead."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from actstats.activations import describe_saturation
from actstats.errors import ActstatsValueError
from actstats.queries._engine import _FIELD, _compute, _layout, _map_chunks
from actstats.queries._results import _attrs, _describe, _divide, _like, _take, _warn_nonfinite
from actstats.queries.saturation import COUNTS
from actstats.validate import require_variables, validate_by, validate_eps

#: The dimensions ``by`` may keep (each unit is classified within one (run, epoch, layer)).
UNIT_STATE_DIMS = ("run", "epoch", "layer")

#: The states, in the order a unit is tested for them (the first that holds is its state).
STATES = ("dead", "stuck_low", "stuck_high", "binary", "graded")

#: A share equal to a cut reaches it: shares and cuts are compared with this slack, so that
#: 1/20 of the probes reaches the minority cut 1 - 0.95 (0.050000000000000044 in float64).
#: It decides nothing else: a share k/n with n < 10⁹ that differs from a cut with a
#: denominator below 100 differs from it by more than 1e-11.
_SLACK = 1e-12


def _validate_stuck_share(value) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if isinstance(value, bool) or not 0.5 < share <= 1:
        problem = "must be a share of probes greater than 0.5 and at most 1"
        raise ActstatsValueError(f"stuck_share {problem}, got {value!r}", argument="stuck_share", problem=problem)
    return share


def _validate_split(ds: xr.Dataset, split):
    if split is None or split == "all":
        return None, None
    labels = np.asarray(ds["split"].values).astype(str)
    known = list(dict.fromkeys(labels.tolist()))
    if split not in known:
        problem = f"must be one of {', '.join(map(repr, known))} or 'all'"
        raise ActstatsValueError(f"split {problem}, got {split!r}", argument="split", problem=problem)
    return split, np.flatnonzero(labels == split)


def classify_units(low, high, total, saturation, stuck_share: float = 0.95) -> dict[str, np.ndarray]:
    """The state of each unit from its counts over probes: masks by state, and which units count.

    Parameters
    ----------
    low, high, total : arrays of the same shape
        Per unit: probes at the low bound, at the high bound, and probes counted
        (:func:`actstats.kernels.saturation_counts` over the probes).
    saturation : array of str, broadcastable
        Each unit's activation's :attr:`~actstats.activations.Activation.saturation`.
    stuck_share : float in (0.5, 1]

    Returns
    -------
    dict
        ``counted`` (a unit with at least one finite value and a saturation notion),
        ``bounded`` / ``zero`` (counted units of "bounds" / "dead_at_zero" activations),
        and one mask per state of :data:`STATES`; every counted unit has exactly one state.

    Examples
    --------
    >>> states = classify_units(np.array([40, 0, 38, 20, 0]), np.array([0, 40, 2, 20, 0]), np.full(5, 40),
    ...                         np.array(["bounds", "bounds", "bounds", "bounds", "dead_at_zero"]))
    >>> [next(s for s in STATES if states[s][i]) for i in range(5)]
    ['stuck_low', 'stuck_high', 'stuck_low', 'binary', 'graded']
    """
    low, high, total = (np.asarray(a, dtype=np.float64) for a in (low, high, total))
    saturation = np.broadcast_to(np.asarray(saturation), total.shape)
    counted = (total > 0) & np.isin(saturation, ("bounds", "dead_at_zero"))
    bounded = counted & (saturation == "bounds")
    zero = counted & (saturation == "dead_at_zero")
    low_share, high_share, either = (_divide(a, total) for a in (low, high, low + high))
    minority = 1.0 - stuck_share
    with np.errstate(invalid="ignore"):
        dead = zero & (low == total)
        stuck_low = bounded & (low_share >= stuck_share - _SLACK)
        stuck_high = bounded & ~stuck_low & (high_share >= stuck_share - _SLACK)
        binary = (bounded & ~stuck_low & ~stuck_high & (either >= stuck_share - _SLACK)
                  & (low_share >= minority - _SLACK) & (high_share >= minority - _SLACK))
    graded = counted & ~dead & ~stuck_low & ~stuck_high & ~binary
    return {"counted": counted, "bounded": bounded, "zero": zero, "dead": dead, "stuck_low": stuck_low,
            "stuck_high": stuck_high, "binary": binary, "graded": graded, "low_share": low_share,
            "high_share": high_share}


def unit_states(
    ds: xr.Dataset,
    eps: float | None = None,
    by: str | Sequence[str] = UNIT_STATE_DIMS,
    *,
    split: str | None = "train",
    stuck_share: float = 0.95,
) -> xr.Dataset:
    """How many units are stuck at a bound, binary across probes, graded, or dead.

    Each existing unit of each (run, epoch, layer) is classified by the share of probes on
    which it is at the low bound and at the high bound (``eps`` band of
    :func:`actstats.kernels.saturation_counts`, with the run's activation function), then
    the units are counted per group of ``by``.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (:func:`actstats.open_store`) or the same data in memory.
    eps : float, optional
        Width of each saturated band as a fraction of the range; default
        ``OPTIONS["eps"]`` (0.05). Not used for relu (exact zeros).
    by : str or sequence of str, default ("run", "epoch", "layer")
        Kept dimensions, from run, epoch, layer; units (and the others) are pooled.
    split : str or None, default "train"
        The probes a unit is judged on: ``"train"``, ``"test"``, or ``None``/``"all"``.
    stuck_share : float, default 0.95
        The cut s in (0.5, 1] of the rule below (1 - s is the minority cut).

    Returns
    -------
    xarray.Dataset
        Per group: ``n_units`` (units classified), ``n_<state>`` and ``share_<state>``
        (``n_<state> / n_units``) for each state, ``mean_low_share`` and
        ``mean_high_share`` (the mean over units of each unit's share of probes at the low
        / high bound), ``n_nonfinite``. A unit's state is the first that holds:

        * ``dead`` ("dead_at_zero" activations, relu): exactly 0 on every probe;
        * ``stuck_low``: at the low bound on ≥ s of the probes ("bounds" activations:
          sigmoid, tanh, softsign);
        * ``stuck_high``: at the high bound on ≥ s of the probes;
        * ``binary``: at either bound on ≥ s of the probes, at the low bound on ≥ 1 - s
          and at the high bound on ≥ 1 - s (near 0 *or* 1, depending on the input);
        * ``graded``: the rest (for relu: every unit that is not dead).

        ``share_dead`` is NaN for groups without relu units, ``share_stuck_low``,
        ``share_stuck_high`` and ``share_binary`` for groups without units of a bounded
        activation: those states do not apply there. Where both kinds are pooled the
        shares still sum to 1.

    Notes
    -----
    Padding (units beyond ``width``, absent layers, incomplete records) never enters; a
    value that exists but is not finite is excluded (the unit is judged on its other
    probes) and counted in ``n_nonfinite``. A share equal to a cut reaches it (1 of 20
    probes reaches 1 - 0.95). One pass over the activations: per chunk, per-unit counts
    summed over the chunk's probes (:data:`actstats.queries.saturation.COUNTS`), merged by
    summing; the classification runs on the per-unit counts in memory.

    Verification: equal to a loop over (run, epoch, layer) and units that counts with
    float64 band edges and classifies with exact fractions, on a captured store and on
    synthetic stores with planted stuck, binary, graded and dead units, including units at
    the cuts (``tests/test_queries_verdicts.py``); numpy- and dask-backed identical.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(weight_scale=8.0)
    >>> result = actstats.unit_states(ds, by="layer")
    >>> result.share_graded.dims
    ('layer',)
    >>> bool(np.allclose(result[["share_stuck_low", "share_stuck_high", "share_binary", "share_graded"]]
    ...                  .to_array().sum("variable"), 1.0))
    True
    """
    eps = validate_eps(eps)
    by = validate_by(by, UNIT_STATE_DIMS, split=False)
    stuck_share = _validate_stuck_share(stuck_share)
    require_variables(ds, ["activation"], "unit_states")
    split, index = _validate_split(ds, split)
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    keep = ["run", "epoch", "layer", "unit"]
    (computed,) = _compute(_map_chunks(_take(ds["activation"], index), COUNTS, keep, ["sample"], layout, eps=eps))
    counts = COUNTS.merge(computed).transpose(*keep, _FIELD)
    low, high, total, nonfinite = (COUNTS.get(counts, name) for name in ("low", "high", "total", "n_nonfinite"))
    saturation = np.asarray(layout.saturation, dtype=str).reshape(-1, 1, 1, 1)
    states = classify_units(low.values, high.values, total.values, saturation, stuck_share)

    pooled = [d for d in keep if d not in by]
    as_array = lambda values: _like(low, values)  # noqa: E731  (run, epoch, layer, unit)
    summed = {name: as_array(states[name].astype(np.int64)).sum(pooled) for name in
              ("counted", "bounded", "zero", *STATES)}
    n_units = summed["counted"]
    result = xr.Dataset(coords=n_units.coords)
    result["n_units"] = n_units
    for state in STATES:
        result[f"n_{state}"] = summed[state]
    applies = {"dead": summed["zero"] > 0, "stuck_low": summed["bounded"] > 0, "stuck_high": summed["bounded"] > 0,
               "binary": summed["bounded"] > 0, "graded": n_units > 0}
    for state in STATES:
        share = _divide(summed[state], n_units)
        result[f"share_{state}"] = _like(n_units, np.where(applies[state].values, share, np.nan))
    for name in ("low_share", "high_share"):
        values = np.where(states["counted"], states[name], 0.0)
        result[f"mean_{name}"] = _like(n_units, _divide(as_array(values).sum(pooled), n_units))
    result["n_nonfinite"] = as_array(nonfinite.values.astype(np.int64)).sum(pooled)
    result = result.transpose(*by)
    _warn_nonfinite(result["n_nonfinite"], "'activation'", "unit_states")

    cut, minority = f"{stuck_share:g}", f"{1 - stuck_share:.3g}"
    _describe(result, {
        "n_units": "units classified (existing, with a finite value and a saturation notion)",
        "n_dead": "relu units exactly 0 on every probe",
        "n_stuck_low": f"units at the low bound on >= {cut} of the probes",
        "n_stuck_high": f"units at the high bound on >= {cut} of the probes",
        "n_binary": f"units at a bound on >= {cut} of the probes, low on >= {minority} and high on >= {minority}",
        "n_graded": "the other units (for relu: not dead)",
        "share_dead": "n_dead / n_units (NaN without relu units)",
        "share_stuck_low": "n_stuck_low / n_units (NaN without units of a bounded activation)",
        "share_stuck_high": "n_stuck_high / n_units (NaN without units of a bounded activation)",
        "share_binary": "n_binary / n_units (NaN without units of a bounded activation)",
        "share_graded": "n_graded / n_units",
        "mean_low_share": "mean over units of the share of probes at the low bound (relu: exact zeros)",
        "mean_high_share": "mean over units of the share of probes at the high bound (relu: 0)",
        "n_nonfinite": "existing values that were not finite (excluded)",
    })
    result.attrs = _attrs(
        "unit_states", by, [d for d in keep if d not in by],
        method="per unit, counts of probes within eps*(upper-lower) of each bound (kernels.saturation_counts), "
               "summed over probe chunks; each unit classified, then units counted per group",
        eps=eps,
        split=split if split is not None else "all",
        stuck_share=stuck_share,
        rule=(
            f"a unit's state is the first that holds: dead (relu: exactly 0 on every probe); stuck_low (at the low "
            f"bound on >= {cut} of the probes); stuck_high (at the high bound on >= {cut}); binary (at a bound on >= "
            f"{cut}, low on >= {minority} and high on >= {minority}); graded (the rest). Probes: "
            f"{split if split is not None else 'all'}"
        ),
        bounds=describe_saturation(),
    )
    return result
