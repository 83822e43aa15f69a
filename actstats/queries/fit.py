"""``fit``: maximum-likelihood fits of distribution families, with AIC, BIC and KS distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy import special

from actstats import kernels
from actstats.errors import ActstatsError
from actstats.queries._engine import (
    QUERY_MIXTURE_MAX_SIZE, _FIELD, Fields, Reduction, _Layout, _chunk_values, _compute, _flat, _largest_group,
    _layout, _map_chunks, _template, _unbounded_functions,
)
from actstats.queries._results import (
    _attrs, _concat_splits, _describe, _like, _sample_subsets, _take, _to_int, _warn_nonfinite,
)
from actstats.queries._streamed import (
    MOMENTS_EXTREMA, STANDARDIZED_HISTOGRAM, _standardized_histograms, _stream_bounded, _Streamed,
)
from actstats.validate import (
    ACTIVATION_DIMS, DEFAULT_ACTIVATION_BY, DEFAULT_WEIGHT_BY, WEIGHT_DIMS, require_variables, validate_by,
    validate_choice, validate_families, validate_method,
)

_FAMILY_PARAMETERS = {"beta": 2, "logit_normal": 2, "beta_mixture": 8,
                      "normal": 2, "t": 3, "laplace": 2, "logistic": 2, "uniform": 2, "gennorm": 3}


def _activation_fit_fields(families) -> tuple[str, ...]:
    fields = ["n", "n_clipped"]
    for family in families:
        fields += [f"{family}:{s}" for s in ("log_likelihood", "aic", "bic", "ks_statistic")]
        if family == "beta":
            fields += ["beta_a", "beta_b", "beta_a_standard_error", "beta_b_standard_error"]
        elif family == "logit_normal":
            fields += ["logit_normal_mean", "logit_normal_std"]
        else:
            fields += [f"mixture_{p}_{c}" for p in ("weight", "a", "b") for c in ("low", "interior", "high")]
    return tuple(fields)


def _activation_fit_chunk(values, *, grid, n_reduce, layout, families, mixture_max_size, seed):
    flat = _flat(values, n_reduce)
    batch = flat.shape[:-1]
    rows = flat.reshape(-1, flat.shape[-1])
    delta = kernels.DEFAULT_DELTA
    ordered = np.sort(np.clip(rows, delta, 1 - delta), axis=1)  # as the likelihoods see them
    counts = (~np.isnan(rows)).sum(axis=1)
    beta = kernels.fit_beta(rows, 0.0, 1.0, axis=-1)
    fields: dict = {"n": beta.n, "n_clipped": beta.n_clipped}
    for family in families:
        if family == "beta":
            fit = beta
            cdf = special.betainc(beta.a[:, None], beta.b[:, None], ordered)
            parameters = {"beta_a": beta.a, "beta_b": beta.b, "beta_a_standard_error": beta.a_standard_error,
                          "beta_b_standard_error": beta.b_standard_error}
        elif family == "logit_normal":
            fit = kernels.fit_logit_normal(rows, 0.0, 1.0, axis=-1)
            logit = np.log(ordered) - np.log1p(-ordered)
            cdf = special.ndtr((logit - fit.mean_logit[:, None]) / fit.std_logit[:, None])
            parameters = {"logit_normal_mean": fit.mean_logit, "logit_normal_std": fit.std_logit}
        else:
            fit = kernels.fit_beta_mixture(rows, 0.0, 1.0, axis=-1, max_size=mixture_max_size, seed=seed)
            cdf = sum(
                fit.weights[:, k, None] * special.betainc(fit.a[:, k, None], fit.b[:, k, None], ordered)
                for k in range(3)
            )
            parameters = {f"mixture_{name}_{component}": getattr(fit, attribute)[:, k]
                          for name, attribute in (("weight", "weights"), ("a", "a"), ("b", "b"))
                          for k, component in enumerate(("low", "interior", "high"))}
        fields.update({f"{family}:log_likelihood": fit.log_likelihood, f"{family}:aic": fit.aic,
                       f"{family}:bic": fit.bic, f"{family}:ks_statistic": kernels.ks_from_cdf(cdf, counts)})
        fields.update(parameters)
    return {name: np.reshape(value, batch) for name, value in fields.items()}


_WEIGHT_FIT_STATISTICS = ("shape", "loc", "scale", "log_likelihood", "aic", "bic", "ks_statistic", "fit_size")


def _weight_fit_fields(families) -> tuple[str, ...]:
    return tuple(f"{f}:{s}" for s in _WEIGHT_FIT_STATISTICS for f in families) + ("n", "best_family_index")


def _weight_fit_chunk(values, *, grid, n_reduce, layout, families, max_fit_size, seed):
    fits = kernels.fit_families(_flat(values, n_reduce), axis=-1, families=families,
                                max_fit_size=max_fit_size, seed=seed)
    fields = {f"{f}:{s}": getattr(fits, s)[..., k] for s in _WEIGHT_FIT_STATISTICS for k, f in enumerate(families)}
    return {**fields, "n": fits.n, "best_family_index": fits.best_family_index}


def _fit_reduction(variable: str, families) -> Reduction:
    """Whole groups in one chunk each (the exact path); the fields depend on the families."""
    if variable == "activation":
        return Reduction("fit_activation", _activation_fit_chunk, Fields(*_activation_fit_fields(families)),
                         combine="whole")
    return Reduction("fit_weight", _weight_fit_chunk, Fields(*_weight_fit_fields(families)), combine="whole")


def _weight_fit_streamed(weight: xr.DataArray, group: Sequence[str], core: Sequence[str], layout: _Layout,
                         families) -> dict[str, xr.DataArray]:
    """Weight fits of groups too large for memory, by field name like the whole-group result (+ KS errors)."""
    (blocks,) = _compute(_map_chunks(weight, MOMENTS_EXTREMA, group, core, layout))
    values, axes = _chunk_values(blocks, group, core)
    moments = kernels.combine_moments(MOMENTS_EXTREMA.get(values, "moments"), axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(moments[..., 2] / moments[..., 0])
    (histogram,) = _compute(_standardized_histograms(weight, group, core, layout, moments[..., 1], std))
    fits = kernels.histogram_fit_families(STANDARDIZED_HISTOGRAM.get(histogram.transpose(*group, _FIELD).values,
                                                                     "histogram"), moments,
                                          MOMENTS_EXTREMA.get(values, "min").min(axis=axes),
                                          MOMENTS_EXTREMA.get(values, "max").max(axis=axes), families=families)
    columns = {"shape": np.full(fits.loc.shape, np.nan), "fit_size": np.broadcast_to(fits.n[..., None], fits.loc.shape)}
    columns.update({s: getattr(fits, s) for s in _WEIGHT_FIT_STATISTICS if s not in columns})
    fields = {f"{f}:{s}": columns[s][..., k] for s in _WEIGHT_FIT_STATISTICS for k, f in enumerate(families)}
    fields.update({"n": fits.n, "best_family_index": fits.best_family_index})
    fields.update({f"{f}:ks_statistic_error": fits.ks_statistic_error[..., k] for k, f in enumerate(families)})
    fields["n_nonfinite"] = MOMENTS_EXTREMA.get(values, "n_nonfinite").sum(axis=axes)
    template = _template(blocks, core)
    return {name: xr.DataArray(np.asarray(value, dtype=np.float64), dims=template.dims, coords=template.coords)
            for name, value in fields.items()}


def _activation_fit_from_histogram(streamed: _Streamed, families) -> dict[str, np.ndarray]:
    """The fields of :func:`_activation_fit_fields` then each family's KS error bound, from streamed summaries."""
    beta = kernels.fit_beta_from_statistics(streamed.sums)
    normal = kernels.fit_logit_normal_from_statistics(streamed.logit_moments, streamed.sums)
    fields: dict = {"n": beta.n, "n_clipped": beta.n_clipped}
    errors = {}
    for family in families:
        fit = beta if family == "beta" else normal
        if family == "beta":
            parameters = {"beta_a": beta.a, "beta_b": beta.b, "beta_a_standard_error": beta.a_standard_error,
                          "beta_b_standard_error": beta.b_standard_error}
            cdfs = kernels.logit_grid_cdfs("beta", (beta.a, beta.b))
        else:
            parameters = {"logit_normal_mean": normal.mean_logit, "logit_normal_std": normal.std_logit}
            cdfs = kernels.logit_grid_cdfs("logit_normal", (normal.mean_logit, normal.std_logit))
        ks, errors[f"{family}:ks_statistic_error"] = kernels.logit_histogram_ks(streamed.histogram, *cdfs)
        fields.update({f"{family}:log_likelihood": fit.log_likelihood, f"{family}:aic": fit.aic,
                       f"{family}:bic": fit.bic, f"{family}:ks_statistic": ks})
        fields.update(parameters)
    return {name: np.asarray(value, dtype=np.float64) for name, value in {**fields, **errors}.items()}


def fit(
    ds: xr.Dataset,
    family: str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    variable: str = "activation",
    *,
    mixture_max_size: int = QUERY_MIXTURE_MAX_SIZE,
    max_fit_size: int = kernels.SLOW_FIT_MAX_SIZE,
    seed: int = kernels.DEFAULT_SEED,
    method: str = "auto",
    exact_max_size: int | None = None,
) -> xr.Dataset:
    """Maximum-likelihood fits of distribution families, with AIC, BIC and KS distance.

    Parameters
    ----------
    ds : xarray.Dataset
    family : str, sequence of str or "all", optional
        For activations ``beta``, ``logit_normal``, ``beta_mixture``; for weights
        ``normal``, ``t``, ``laplace``, ``logistic``, ``uniform``, ``gennorm``; ``"all"``
        for every family of the variable. Default: the families that fit in
        milliseconds per group — ``beta``, ``logit_normal`` for activations and
        ``normal``, ``laplace``, ``logistic``, ``uniform`` for weights. The others
        (``beta_mixture``: EM; ``t``, ``gennorm``: scipy's numerical optimisation) cost
        0.05–1 s per group, minutes on a store with thousands of groups
        (docs/queries.md, "Query costs"), so they are fitted only when named.
    by : str or sequence of str, optional
        Kept dimensions. Default ("run", "epoch", "layer", "split") for activations,
        ("run", "epoch", "layer") for weights.
    variable : {"activation", "weight"}
    mixture_max_size : int, default 5000
        Subsample of the Beta mixture's EM (activations).
    max_fit_size : int, default 20000
        Subsample for the numerical fits of ``t`` and ``gennorm`` (weights).
    seed : int, default 0
    method : {"auto", "exact", "histogram"}, default "auto"
        How activation groups are read. "exact": each group whole. "histogram": one
        streaming pass; the Beta and logit-normal fits are the same (they need only
        sums), the KS distances come from a logit-space histogram with an error bound
        (``ks_statistic_error``; :mod:`actstats.kernels.logit_histogram`), and
        ``beta_mixture`` is not available. For weights: ``normal`` and ``uniform`` are the
        exact fits (merged moments, streamed extremes), ``laplace`` and ``logistic``
        are fitted to a standardised histogram (:func:`actstats.kernels.histogram_fit_families`)
        and ``t``, ``gennorm`` are not available. "auto": "exact" for groups of at most
        ``exact_max_size`` values.
    exact_max_size : int, optional
        The largest group loaded whole by ``method="auto"``; default
        ``OPTIONS["exact_max_size"]`` (2**25, :func:`actstats.set_options`).

    Returns
    -------
    xarray.Dataset
        A ``family`` dimension with ``log_likelihood``, ``aic``, ``bic``,
        ``ks_statistic`` (Kolmogorov–Smirnov distance between the data and the fitted
        distribution), ``ks_statistic_error`` (0 when exact) and ``n_parameters``; ``best_family`` (lowest AIC) and ``n`` per
        group; the parameters (activations: ``beta_a``, ``beta_b``,
        ``logit_normal_mean``/``_std``, ``mixture_*``; weights: ``shape``, ``loc``,
        ``scale`` in scipy's convention and ``fit_size`` along ``family``).

    Notes
    -----
    Activations are rescaled to [0, 1] with each run's bounds (relu runs skipped, as in
    :func:`bimodality`) and clipped into ``[1e-6, 1 - 1e-6]`` as the kernels' likelihoods
    require (``n_clipped`` counts the values moved); the KS distances are computed on
    those clipped values against the fitted CDFs (regularised incomplete beta function,
    the normal CDF of the logit, the weighted sum of Beta CDFs). The fits are
    :func:`actstats.kernels.fit_beta`, :func:`~actstats.kernels.fit_logit_normal`,
    :func:`~actstats.kernels.fit_beta_mixture` and
    :func:`~actstats.kernels.fit_families`. Costs: ``t`` and ``gennorm`` take
    0.1–1 s per group (scipy's numerical optimisation), the mixture 0.02–0.3 s per
    group of 20k values (EM iterations vary); see docs/queries.md.

    Verification: the fitted values equal the kernels applied in a plain loop over
    groups, and the KS distances equal ``scipy.stats.kstest`` against
    ``scipy.stats.beta`` / the fitted logit-normal (``tests/test_queries.py``); uniform
    weights come out ``uniform`` and Laplace weights ``laplace``.

    Examples
    --------
    >>> import actstats
    >>> from actstats.synthetic import synthetic_store
    >>> ds = synthetic_store(weight=lambda rng, shape: rng.uniform(-1, 1, shape), units=40, depth=1)
    >>> result = actstats.fit(ds, family=("normal", "laplace", "uniform"), variable="weight")
    >>> result.best_family.sel(run=0, layer=1).values.tolist()  # one per epoch
    ['uniform', 'uniform']
    """
    validate_choice("variable", variable, ("activation", "weight"))
    families = validate_families(family, variable)
    dims = ACTIVATION_DIMS if variable == "activation" else WEIGHT_DIMS
    if by is None:
        by = DEFAULT_ACTIVATION_BY if variable == "activation" else DEFAULT_WEIGHT_BY
    by = validate_by(by, dims, split=variable == "activation")
    require_variables(ds, [variable], "fit")
    layout = _layout(ds)
    if variable == "activation":
        layout.check_activations(ds["run"].values)
        options = {"mixture_max_size": mixture_max_size}
    else:
        options = {"max_fit_size": max_fit_size}
    reduction = _fit_reduction(variable, families)
    group = [d for d in by if d != "split"]
    core = [d for d in dims if d not in group]
    subsets = _sample_subsets(ds, by)
    group_size = _largest_group(ds[variable], core, subsets)
    method = validate_method(method, "fit", group_size, exact_max_size)
    if method == "histogram":
        streamable = ("beta", "logit_normal") if variable == "activation" else kernels.HISTOGRAM_FIT_FAMILIES
        unsupported = [f for f in families if f not in streamable]
        if unsupported:
            raise ActstatsError(
                f"fit: {', '.join(unsupported)} needs the values in memory; with groups of {group_size} values "
                f"(streamed) choose among {', '.join(streamable)}, or keep more dimensions in --by / by="
            )
        if variable == "weight":
            packs = [_weight_fit_streamed(ds[variable], group, core, layout, families)]
        else:
            streamed = _stream_bounded([_take(ds[variable], index) for _, index in subsets], group, core, layout)
            packs = [part.fields(_activation_fit_from_histogram(part, families)) for part in streamed]
    else:
        lazy = [
            _map_chunks(_take(ds[variable], index), reduction, group, core, layout,
                        rescale=variable == "activation", families=families, seed=seed, **options)
            for _, index in subsets
        ]
        packs = [reduction.fields.unpack(reduction.merge(computed)) for computed in _compute(*lazy)]
    statistics = list(dict.fromkeys(f.split(":")[1] for f in packs[0] if ":" in f))
    family_index = xr.DataArray(list(families), dims="family", name="family")
    names = np.array(list(families) + [""])
    parts = []
    for unpacked in packs:
        out = xr.Dataset()
        for statistic in statistics:
            out[statistic] = xr.concat([unpacked[f"{f}:{statistic}"] for f in families], dim=family_index)
        for name, array in unpacked.items():
            if ":" not in name and name != "n_nonfinite":
                out[name] = array
        if "ks_statistic_error" not in out:
            out["ks_statistic_error"] = xr.zeros_like(out["ks_statistic"])
        if variable == "weight":
            best = out["best_family_index"].fillna(-1).astype(int).values
            out = out.drop_vars("best_family_index")
            out["fit_size"] = _to_int(out["fit_size"])
        else:
            aic = out["aic"].transpose(..., "family").values
            finite = np.isfinite(aic)
            best = np.where(finite.any(axis=-1), np.argmin(np.where(finite, aic, np.inf), axis=-1), -1)
            out["n_clipped"] = _to_int(out["n_clipped"])
        out["best_family"] = _like(out["n"], names[best])
        out["n"] = _to_int(out["n"])
        out["n_nonfinite"] = _to_int(unpacked["n_nonfinite"])
        parts.append(out)
    result = _concat_splits(parts, [label for label, _ in subsets])
    result = result.assign_coords(family=list(families))
    result["n_parameters"] = xr.DataArray([_FAMILY_PARAMETERS[f] for f in families], dims="family",
                                          coords={"family": list(families)})
    result = result.transpose(*by, ..., "family")
    _warn_nonfinite(result["n_nonfinite"], f"{variable!r}", "fit")
    _describe(result, {
        "ks_statistic": "Kolmogorov-Smirnov distance between the group's values and the fitted distribution",
        "ks_statistic_error": "the exact KS distance lies within ks_statistic ± this (0: computed exactly)",
        "best_family": "family with the lowest AIC",
        "n_parameters": "free parameters of the family (in AIC and BIC)",
    })
    skipped = _unbounded_functions(layout) if variable == "activation" else []
    result.attrs = _attrs(
        "fit", by, [d for d in dims if d not in by],
        variable=variable,
        method=(
            "maximum likelihood: kernels.fit_beta, fit_logit_normal, fit_beta_mixture (EM on a deterministic "
            f"subsample of at most {mixture_max_size} values, seed {seed}) on activations rescaled to [0, 1] "
            "and clipped into [1e-6, 1-1e-6]; log-likelihoods on that scale"
            if variable == "activation"
            else "maximum likelihood: kernels.fit_families (t and gennorm fitted on a deterministic subsample "
            f"of at most {max_fit_size} values, seed {seed}; likelihoods on all values)"
        ),
        selection="best_family: lowest AIC",
        cdf_method=method,
        ks_method=(
            "exact: each group loaded whole" if method == "exact" else
            "histogram: one streaming pass; fits from summed sufficient statistics and merged moments (exact); "
            f"KS from {kernels.LOGIT_HISTOGRAM_BINS} bins of logit y with exact bounds (ks_statistic_error)"
            if variable == "activation" else
            "histogram: two streaming passes (moments and extremes, then a standardised histogram of "
            f"{kernels.HISTOGRAM_BINS} bins); normal and uniform exact, laplace and logistic fitted to the "
            "histogram (kernels.histogram_fit_families); KS with exact bounds (ks_statistic_error)"
        ),
        skipped=(
            f"runs with unbounded activation functions ({', '.join(skipped)}): their values are not analysed"
            if skipped else None
        ),
    )
    return result
