"""``bimodality``: dip test, bimodality coefficient, Beta and Beta-mixture fits near the bounds."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.queries._engine import (
    QUERY_MIXTURE_MAX_SIZE, Fields, Reduction, _compute, _flat, _largest_group, _layout, _map_chunks,
    _unbounded_functions,
)
from actstats.queries._results import (
    _attrs, _bh, _concat_splits, _describe, _family_description, _like, _sample_subsets, _take, _to_bool, _to_int,
    _warn_nonfinite,
)
from actstats.queries._streamed import _Streamed, _stream_bounded
from actstats.validate import (
    ACTIVATION_DIMS, DEFAULT_ACTIVATION_BY, require_variables, validate_by, validate_choice, validate_method,
)

_BIMODALITY_BOOL = ("u_shaped", "mixture_preferred_by_bic", "mixture_fitted", "bimodal_at_bounds_unadjusted")


def _bimodality_chunk(values, *, grid, n_reduce, layout, alpha, mixture, mixture_max_size, seed):
    """What kernels.bimodality computes, with the Beta mixture only where it is asked for."""
    flat = _flat(values, n_reduce)
    batch = flat.shape[:-1]
    rows = flat.reshape(-1, flat.shape[-1])
    dip = kernels.dip_test(rows)
    beta = kernels.fit_beta(rows, 0.0, 1.0)
    logit_normal = kernels.fit_logit_normal(rows, 0.0, 1.0)

    def fit_mixture(selected):
        return kernels.fit_beta_mixture(rows[selected], 0.0, 1.0, max_size=mixture_max_size, seed=seed)

    fields = kernels.bimodality_fields(
        dip.statistic, dip.pvalue, kernels.bimodality_coefficient(x=rows), beta, logit_normal, fit_mixture,
        alpha=alpha, mixture=mixture,
    )
    return {name: np.reshape(value, batch) for name, value in fields.items()}


#: Whole groups (rescaled to [0, 1]) in one chunk each: the exact path.
BIMODALITY = Reduction("bimodality", _bimodality_chunk, Fields(*kernels.BIMODALITY_FIELDS), combine="whole")


def _bimodality_from_histogram(streamed: _Streamed, *, alpha, mixture, mixture_max_size, seed) -> dict:
    """The fields of :data:`BIMODALITY` and ``dip_error``, from streamed summaries."""
    shape = streamed.template.shape
    histogram = streamed.histogram.reshape(-1, streamed.histogram.shape[-1])
    beta = kernels.fit_beta_from_statistics(streamed.sums.reshape(-1, 4))
    normal = kernels.fit_logit_normal_from_statistics(streamed.logit_moments.reshape(-1, 5), streamed.sums.reshape(-1, 4))
    dip = kernels.logit_histogram_dip(histogram)
    coefficient = kernels.bimodality_coefficient(m=streamed.moments.reshape(-1, 5))

    def fit_mixture(selected):
        # EM on quantile points of each group's histogram (a stratified stand-in for the
        # exact path's random subsample); the likelihood binned over all values.
        points = kernels.logit_histogram_sample(histogram[selected], mixture_max_size)
        part = kernels.fit_beta_mixture(points, 0.0, 1.0, max_size=mixture_max_size, seed=seed)
        log_likelihood = kernels.logit_histogram_mixture_log_likelihood(histogram[selected], part.weights, part.a,
                                                                       part.b)
        with np.errstate(invalid="ignore", divide="ignore"):
            bic = 8 * np.log(beta.n[selected]) - 2 * log_likelihood
        return SimpleNamespace(weights=part.weights, a=part.a, b=part.b, log_likelihood=log_likelihood, bic=bic,
                               preferred_by_bic=bic < beta.bic[selected])

    fields = kernels.bimodality_fields(dip.statistic, dip.pvalue, coefficient, beta, normal, fit_mixture,
                                       alpha=alpha, mixture=mixture)
    fields["dip_error"] = dip.error
    return {name: np.asarray(value, dtype=np.float64).reshape(shape) for name, value in fields.items()}


def _mixture_view(result: xr.Dataset) -> SimpleNamespace:
    """The fields of a BetaMixtureFit that kernels.bimodal_at_bounds reads."""
    def stacked(parameter):
        return np.stack([np.asarray(result[f"mixture_{parameter}_{c}"], dtype=float)
                         for c in ("low", "interior", "high")], axis=-1)

    return SimpleNamespace(
        preferred_by_bic=np.asarray(result["mixture_preferred_by_bic"], dtype=bool),
        weights=stacked("weight"),
        a=stacked("a"),
        b=stacked("b"),
    )


def bimodality(
    ds: xr.Dataset,
    by: str | Sequence[str] = DEFAULT_ACTIVATION_BY,
    variable: str = "activation",
    *,
    alpha: float = 0.05,
    mixture: str = "auto",
    mixture_max_size: int = QUERY_MIXTURE_MAX_SIZE,
    seed: int = kernels.DEFAULT_SEED,
    method: str = "auto",
    exact_max_size: int | None = None,
) -> xr.Dataset:
    """Bimodality near the bounds: dip test, bimodality coefficient, Beta and mixture fits.

    Parameters
    ----------
    ds : xarray.Dataset
    by : str or sequence of str, default ("run", "epoch", "layer", "split")
        Kept dimensions, from run, epoch, layer, sample, unit and split.
    variable : {"activation"}
        The bounded variable (the only one a store has).
    alpha : float, default 0.05
        Level of the dip test inside the ``bimodal_at_bounds`` criterion, applied to
        the Benjamini–Hochberg adjusted p-value.
    mixture : {"auto", "always", "never"}, default "auto"
        Where to fit the three-component Beta mixture, the one expensive step (EM, 20–300
        ms per group). ``"auto"``: only where it can change ``bimodal_at_bounds`` — the
        group is multimodal (unadjusted dip p-value < ``alpha``, which the adjusted one
        can only exceed, or coefficient > 5/9) and the single Beta is not U-shaped;
        elsewhere the criterion does not depend on it. ``"always"``: every group (the
        numbers of :func:`actstats.kernels.bimodality`). ``"never"``: the criterion
        rests on the single Beta.
    mixture_max_size : int, default 5000
        EM of the mixture runs on a deterministic subsample of at most this many
        values per group (see ``QUERY_MIXTURE_MAX_SIZE``).
    seed : int, default 0
    method : {"auto", "exact", "histogram"}, default "auto"
        "exact": each group loaded whole. "histogram": one streaming pass over the
        store (:mod:`actstats.kernels.logit_histogram`): the Beta and logit-normal fits
        and the bimodality coefficient are the same (they need only sums and merged
        moments); the dip comes from a logit-space histogram with an exact error bound
        (``dip_error``) and ``dip_pvalue`` is the p-value of the smallest dip the
        bound allows, so at least the exact one (a rejection stays a rejection); the
        mixture's EM runs on ``mixture_max_size`` quantile points of the histogram and
        its log-likelihood is binned. "auto": "exact" for groups of at most
        ``exact_max_size`` values.
    exact_max_size : int, optional
        The largest group loaded whole by ``method="auto"``; default
        ``OPTIONS["exact_max_size"]`` (2**25, :func:`actstats.set_options`).

    Returns
    -------
    xarray.Dataset
        Per group: ``n``, ``dip``, ``dip_error`` (0 when exact), ``dip_pvalue``, ``pvalue_adjusted`` (BH of
        ``dip_pvalue`` across all groups), ``bimodality_coefficient``, the single Beta
        fit (``beta_a``, ``beta_b`` and their standard errors, ``u_shaped``,
        ``n_clipped``, ``beta_log_likelihood``, ``beta_bic``), the logit-normal's
        ``logit_normal_log_likelihood``/``logit_normal_bic``, the mixture
        (``mixture_weight_{low,interior,high}``, ``mixture_{a,b}_{low,interior,high}``,
        ``mixture_log_likelihood``, ``mixture_bic``, ``mixture_preferred_by_bic``,
        ``mixture_fitted``; NaN where not fitted),
        ``bimodal_at_bounds`` (with the adjusted p-value) and
        ``bimodal_at_bounds_unadjusted``, and ``n_nonfinite``.

    Notes
    -----
    Each run's activations are rescaled to [0, 1] with its bounds, ``(x - lower) /
    (upper - lower)``, so groups that pool runs of different activation functions
    compare like with like; log-likelihoods and BICs are on that [0, 1] scale. Runs
    whose activation is unbounded (relu) are skipped: their values never enter, and a
    group with nothing else is NaN (``bimodal_at_bounds`` False). Per group the
    statistics are those of :func:`actstats.kernels.bimodality` (its parts called one
    by one, so that the mixture can be skipped); the criterion is
    :func:`actstats.kernels.bimodal_at_bounds`, re-evaluated with the BH-adjusted dip
    p-value (the family is every group of the result).

    Verification: every field equals ``kernels.bimodality`` applied in a plain loop over
    groups of the rescaled store values, and the adjusted p-values equal
    ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``
    (``tests/test_queries.py``); Beta(0.2, 0.2) activations are found U-shaped and
    bimodal at the bounds and Beta(5, 5) ones are not.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(activation=lambda rng, shape: rng.beta(0.2, 0.2, shape), depth=1)
    >>> result = actstats.bimodality(ds, by=("epoch",))
    >>> result.bimodal_at_bounds.values.tolist()
    [True, True]
    """
    validate_choice("variable", variable, ("activation",), "the bounded variable")
    validate_choice("mixture", mixture, ("auto", "always", "never"))
    by = validate_by(by, ACTIVATION_DIMS, split=True)
    require_variables(ds, [variable], "bimodality")
    layout = _layout(ds)
    layout.check_activations(ds["run"].values)
    group = [d for d in by if d != "split"]
    core = [d for d in ACTIVATION_DIMS if d not in group]
    subsets = _sample_subsets(ds, by)
    method = validate_method(method, "bimodality", _largest_group(ds[variable], core, subsets), exact_max_size)
    if method == "histogram":
        streamed = _stream_bounded([_take(ds[variable], index) for _, index in subsets], group, core, layout)
        packs = [
            part.fields(_bimodality_from_histogram(part, alpha=alpha, mixture=mixture,
                                                   mixture_max_size=mixture_max_size, seed=seed))
            for part in streamed
        ]
    else:
        lazy = [
            _map_chunks(_take(ds[variable], index), BIMODALITY, group, core, layout, rescale=True, alpha=alpha,
                        mixture=mixture, mixture_max_size=mixture_max_size, seed=seed)
            for _, index in subsets
        ]
        packs = [BIMODALITY.fields.unpack(BIMODALITY.merge(computed)) for computed in _compute(*lazy)]
    parts = []
    for fields in packs:
        out = xr.Dataset({name: fields[name] for name in (*kernels.BIMODALITY_FIELDS, "dip_error") if name in fields})
        if "dip_error" not in out:
            out["dip_error"] = xr.zeros_like(out["dip"])
        for name in _BIMODALITY_BOOL:
            out[name] = _to_bool(out[name])
        out["n"] = _to_int(out["n"])
        out["n_clipped"] = _to_int(out["n_clipped"])
        out["n_nonfinite"] = _to_int(fields["n_nonfinite"])
        parts.append(out)
    result = _concat_splits(parts, [label for label, _ in subsets]).transpose(*by, ...)
    _warn_nonfinite(result["n_nonfinite"], f"{variable!r}", "bimodality")

    adjusted = _bh(result["dip_pvalue"].values)
    result["pvalue_adjusted"] = _like(result["dip_pvalue"], adjusted)
    verdict = kernels.bimodal_at_bounds(
        adjusted, result["bimodality_coefficient"].values, result["u_shaped"].values,
        _mixture_view(result), alpha=alpha,
    )
    result["bimodal_at_bounds"] = _like(result["dip_pvalue"], np.asarray(verdict, dtype=bool))
    first = ["n", "dip", "dip_error", "dip_pvalue", "pvalue_adjusted", "bimodality_coefficient", "beta_a", "beta_b",
             "u_shaped", "bimodal_at_bounds"]
    result = result[first + [v for v in result.data_vars if v not in first]]
    family = _family_description(by, int(np.isfinite(adjusted).sum()), "dip_pvalue")
    _describe(result, {
        "pvalue_adjusted": family,
        "bimodal_at_bounds": (
            f"kernels.bimodal_at_bounds with pvalue_adjusted < {alpha}: (dip test rejects unimodality or "
            "bimodality_coefficient > 5/9) and (Beta U-shaped or the Beta mixture wins by BIC with >= 10% "
            "at each bound)"
        ),
        "bimodal_at_bounds_unadjusted": "the same criterion with the unadjusted dip_pvalue",
        "dip_error": "the exact dip lies within dip ± this (0: computed exactly)",
        "u_shaped": "both upper 95% Wald bounds of the Beta's a and b are below 1",
        "mixture_fitted": "whether the Beta mixture was fitted in this group (see the mixture attribute)",
    })
    skipped = _unbounded_functions(layout)
    result.attrs = _attrs(
        "bimodality", by, [d for d in ACTIVATION_DIMS if d not in by],
        method=(
            "kernels.bimodality on activations rescaled to [0, 1] with each run's bounds: Hartigan dip test "
            "(diptest), Sarle's bimodality coefficient, Beta MLE, logit-normal MLE, 3-component Beta mixture "
            f"(EM on a deterministic subsample of at most {mixture_max_size} values, seed {seed})"
        ),
        mixture={
            "auto": "fitted only where it can change bimodal_at_bounds (multimodal and not U-shaped); "
                    "elsewhere the mixture fields are NaN and mixture_fitted is False",
            "always": "fitted in every group",
            "never": "not fitted: bimodal_at_bounds rests on the single Beta",
        }[mixture],
        alpha=alpha,
        cdf_method=method,
        dip_method=(
            "exact: each group loaded whole" if method == "exact" else
            "histogram: one streaming pass; fits and coefficient from sums and merged moments (exact); dip of "
            f"{kernels.DIP_SAMPLE_SIZE} quantile points of a {kernels.LOGIT_HISTOGRAM_BINS}-bin logit histogram "
            "with an exact bound (dip_error); dip_pvalue at dip - dip_error (conservative); mixture EM on "
            f"{mixture_max_size} quantile points, log-likelihood binned"
        ),
        pvalue_adjustment=family,
        scale="log-likelihoods and BIC on the rescaled [0, 1] scale",
        skipped=(
            f"runs with unbounded activation functions ({', '.join(skipped)}): their values are not analysed"
            if skipped else None
        ),
    )
    return result
