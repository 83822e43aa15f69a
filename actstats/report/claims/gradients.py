"""C4: saturation goes with vanishing gradients.

The back-propagated error of layer l is δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f′(z_l). Its attenuation
‖δ_l‖ / ‖δ_{l+1}‖ below 1 is "vanishing". The ``attenuation`` query splits it into a
derivative factor (mean f′(z_l) over its maximum: 1 in the linear regime, near 0 when the
units saturate) and the rest (the weights). Saturation drives the vanishing when the
derivative factor carries most of the log-attenuation; when the derivative factor stays near
1 while δ still shrinks, gradients vanish without saturation, and the report says so.
"""

from __future__ import annotations

import numpy as np

from actstats.report.claims._decide import decide_by_activation, strata_text
from actstats.report.context import Context, at_last
from actstats.report.verdicts import ClaimResult, Rule

#: Share of the log-attenuation carried by the derivative factor: more than half → saturation
#: drives the vanishing.
C4_RULE = Rule(0.5, 0.5)
C4_THRESHOLDS = (Rule(0.3, 0.3), Rule(0.7, 0.7))


def c4(ctx: Context) -> ClaimResult:
    result = ClaimResult(
        "C4",
        "Saturation goes with vanishing gradients (sigmoid: σ′ ≤ 1/4, and near the bounds σ′ ≈ 0).",
        "Per activation function with bounds, among runs that trained, at each run's last record: for each hidden "
        "layer whose back-propagated error shrinks (‖δ_l‖/‖δ_{l+1}‖ < 1), the share of log(‖δ_l‖/‖δ_{l+1}‖) carried by "
        "the derivative factor log(mean f′(z_l) / max f′); a run's value is the mean over such layers, the estimate "
        f"the mean over runs with a 95% t interval over runs (a run whose error shrinks in no layer counts 0: there is "
        f"no vanishing for saturation to explain). {C4_RULE.describe('that share')}. When gradients "
        "shrink while the derivative factor stays near 1, they vanish without saturation (said in the result).",
        figures=["gradients"],
    )
    attenuation = ctx.attenuation
    if attenuation is None:
        missing = ctx.missing_for_attenuation
        needs = {"delta": "delta (each probe's back-propagated error; capture: record.delta = true)",
                 "preactivation": "preactivation (f'(z) needs z; capture: record.preactivation = true)"}
        return result.not_testable("the store has no " + " and no ".join(needs[m] for m in missing))
    last = at_last(attenuation, ctx.last)
    share = last["log_share_derivative"].where(last["vanishing"]).transpose("run", "layer").values
    defined = last["delta_attenuation"].notnull().transpose("run", "layer").values.any(axis=1)
    with np.errstate(all="ignore"):
        per_run = np.nanmean(share, axis=1)
    # a run whose error shrinks in no layer has no vanishing for saturation to explain: 0
    no_vanishing = defined & ~np.isfinite(per_run)
    per_run = np.where(no_vanishing, 0.0, per_run)
    decide_by_activation(result, ctx, lambda eps: per_run, C4_RULE, eps_sensitive=False, thresholds=C4_THRESHOLDS)
    positions = ctx.positions(result.population.get("runs", []))
    if positions.size:
        sel = last.isel(run=positions)
        with np.errstate(all="ignore"):
            attenuation_mean = float(np.nanmean(sel["delta_attenuation"].values))
            derivative_mean = float(np.nanmean(sel["derivative_factor"].values))
            vanishing_share = float(np.nanmean(sel["vanishing"].where(sel["delta_attenuation"].notnull()).values))
        result.evidence.update(mean_delta_attenuation=attenuation_mean, mean_derivative_factor=derivative_mean,
                               share_of_layers_vanishing=vanishing_share,
                               runs_without_vanishing=[int(r) for r in ctx.labels[positions][no_vanishing[positions]]])
        if ctx.gradients is not None:
            ratio = at_last(ctx.gradients, ctx.last)["ratio_to_next_layer"].isel(run=positions).values
            with np.errstate(all="ignore"):
                result.evidence["mean_weight_gradient_ratio_to_next_layer"] = float(np.nanmean(ratio))
        units = _saturated_units_learning(ctx, population_runs=result.population["runs"])
        if units:
            result.evidence["saturated_vs_other_units"] = units
        without = vanishing_share > 0.5 and np.isfinite(result.estimate) and result.estimate < C4_RULE.supported
        result.evidence["vanishing_without_saturation"] = bool(without)
    result.summary = f"Share of the gradient's attenuation due to f′ below its maximum: {strata_text(result)}."
    if result.evidence.get("share_of_layers_vanishing") == 0.0:
        result.summary += (f" In no layer of these runs does the back-propagated error shrink (mean "
                           f"‖δ_l‖/‖δ_(l+1)‖ {result.evidence['mean_delta_attenuation']:.2f}): nothing vanishes for "
                           f"saturation to explain.")
    if result.evidence.get("vanishing_without_saturation"):
        result.summary += (f" Gradients shrink by {result.evidence['mean_delta_attenuation']:.2f}× per layer with mean "
                           f"f′ at {result.evidence['mean_derivative_factor']:.0%} of its maximum: they vanish "
                           f"without saturation.")
    return result


def _saturated_units_learning(ctx: Context, population_runs) -> dict:
    """Do the incoming weights of saturated units change less than those of the other units
    of the same layer (the unit_learning query, permutation p-values, BH-adjusted)?"""
    import actstats

    if 0.0 not in ctx.ds["epoch"].values or not population_runs:
        return {}
    ds = ctx.ds.sel(run=list(population_runs))
    if "layer_weight_rows" in ds.variables:  # conv layers: units are not one a weight row
        dense = [int(l) for l, rows, width in zip(ds["layer"].values, ds["layer_weight_rows"].values.T,
                                                  ds["width"].values.T) if (rows == width).all()]
        if not dense:
            return {"layers_compared": 0, "note": "conv layers only: a unit (channel × position) has no weight row "
                                                  "of its own"}
        ds = ds.sel(layer=dense)
    result = actstats.unit_learning(ds, ctx.eps, n_permutations=999)
    tested = np.isfinite(result["difference"].values)
    if not tested.any():
        return {"layers_compared": 0, "note": "no layer has at least two saturated and two other units"}
    with np.errstate(all="ignore"):
        return {
            "layers_compared": int(tested.sum()),
            "mean_difference_in_relative_weight_change": float(np.nanmean(result["difference"].values)),
            "layers_where_saturated_units_change_less": int(((result["difference"].values < 0)
                                                              & (result["pvalue_adjusted"].values < 0.05)).sum()),
            "mean_spearman_rho_saturation_vs_change": float(np.nanmean(result["spearman_rho"].values)),
            "rule": result.attrs.get("rule", ""),
        }
