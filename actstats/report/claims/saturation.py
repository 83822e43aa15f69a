"""C1, C2 and C6: saturation on training points, training vs held-out, other activations."""

from __future__ import annotations

import warnings

import numpy as np

from actstats.report.claims._decide import decide_by_activation, strata_text
from actstats.report.context import Context
from actstats.report.verdicts import (
    MIXED, NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED, ClaimResult, Rule, Stratum, two_group_interval,
)

#: C1: a network "sits near the bounds" when most of its activations on training points do.
C1_RULE = Rule(0.5, 0.5)
C1_THRESHOLDS = (Rule(0.4, 0.4), Rule(0.6, 0.6))
#: C2: training minus held-out saturated fraction of the top hidden layer. Supported when the
#: interval lies above one percentage point (a significant but negligible difference does not
#: make the units "sit near the bounds more" on training points); not supported when it lies
#: below two.
C2_RULE = Rule(0.01, 0.02)
C2_THRESHOLDS = (Rule(0.0, 0.01), Rule(0.02, 0.05))
#: C6: another activation "avoids" saturation when its saturated fraction is below sigmoid's;
#: it does not when it is not lower by at least five percentage points.
C6_RULE = Rule(0.0, -0.05, direction="less")
C6_THRESHOLDS = (Rule(0.0, -0.02, direction="less"), Rule(0.0, -0.1, direction="less"))


def _mean(values) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if np.size(values) else np.nan


def c1(ctx: Context) -> ClaimResult:
    result = ClaimResult(
        "C1",
        "In a trained network, the hidden activations on training points sit near the bounds of the activation "
        "function (near 0 or 1 for the sigmoid).",
        f"Per activation function with bounds (sigmoid first: the question's own), among runs that trained: each run's "
        f"saturated fraction at its last record (activations on training probes within eps = {ctx.eps:g} of a bound, "
        f"eps a share of the range), averaged over its hidden layers; the estimate is the mean over runs with a 95% t "
        f"interval over runs. {C1_RULE.describe('that mean')}. Repeated at eps 0.01, 0.02, 0.05, 0.1 and "
        f"at thresholds 0.4 and 0.6. Beside it: the low and high sides apart, units stuck at one bound, binary units, "
        f"and the bimodality test at the bounds.",
        figures=["mean_std", "histograms", "heatmap"],
    )
    if "train" not in set(np.asarray(ctx.ds["split"].values).astype(str)):
        return result.not_testable("the store has no training probes")
    decide_by_activation(result, ctx, lambda eps: ctx.run_saturation(eps), C1_RULE, thresholds=C1_THRESHOLDS)
    if result.verdict == NOT_TESTABLE and not result.strata:
        return result
    positions = ctx.positions(result.population.get("runs", []))
    if positions.size:
        low = ctx.run_saturation(variable="fraction_low")[positions]
        high = ctx.run_saturation(variable="fraction_high")[positions]
        per_layer = ctx.saturation_last()["fraction"].sel(split="train").isel(run=positions)
        result.evidence.update(
            mean_fraction_low=_mean(low), mean_fraction_high=_mean(high),
            mean_fraction_by_layer={f"layer {int(l)}": _mean(per_layer.sel(layer=l).values)
                                    for l in per_layer["layer"].values if np.isfinite(per_layer.sel(layer=l).values).any()},
        )
        units = _unit_states(ctx, positions)
        if units:
            result.evidence["unit_states"] = units
        bimodality = ctx.bimodality_last(result.population["runs"]).sel(split="train")
        present = bimodality["n"].values > 0
        if present.any():
            result.evidence["bimodal_at_bounds"] = {
                "layers_tested": int(present.sum()),
                "share_bimodal_at_bounds": float(bimodality["bimodal_at_bounds"].values[present].mean()),
                "rule": bimodality.attrs.get("criterion", "see actstats.bimodality"),
            }
    result.summary = (
        f"Mean saturated fraction on training probes, per activation among trained runs: {strata_text(result)}."
    )
    return result


def _unit_states(ctx: Context, positions) -> dict:
    try:
        units = ctx.units.isel(run=positions)
    except (AttributeError, KeyError, ValueError):
        return {}
    shares = {}
    for name in ("share_stuck_low", "share_stuck_high", "share_binary", "share_graded"):
        if name in units:
            shares[name.removeprefix("share_")] = _mean(units[name].values)
    return shares


def c2(ctx: Context) -> ClaimResult:
    result = ClaimResult(
        "C2",
        "Activations sit near the bounds more on training points than on held-out points.",
        f"Per activation function with bounds, among runs that trained: each run's difference between the saturated "
        f"fractions of training and held-out probes (eps = {ctx.eps:g}) in its top hidden layer at its last record, "
        f"where an effect of memorisation is expected first; the estimate is the mean over runs with a 95% t "
        f"interval over runs (one-sided claim: only a positive difference of more than one percentage point supports it). {C2_RULE.describe('that mean')}. "
        f"The other layers are reported beside it.",
        figures=["trajectories"],
    )
    comparison = ctx.comparison
    if comparison is None:
        return result.not_testable("the store lacks training or held-out probes")

    def per_run(eps):
        if eps == ctx.eps:
            return ctx._per_run(comparison["difference"], "top")
        train = ctx.run_saturation(eps, "train", layer="top")
        test = ctx.run_saturation(eps, "test", layer="top")
        return train - test

    decide_by_activation(result, ctx, per_run, C2_RULE, thresholds=C2_THRESHOLDS)
    positions = ctx.positions(result.population.get("runs", []))
    if positions.size:
        difference = comparison["difference"].isel(run=positions)
        result.evidence["mean_difference_by_layer"] = {
            f"layer {int(l)}": _mean(difference.sel(layer=l).values)
            for l in difference["layer"].values if np.isfinite(difference.sel(layer=l).values).any()
        }
    result.summary = f"Training minus held-out saturated fraction, top hidden layer: {strata_text(result, '{:+.3f}')}."
    return result


def c6(ctx: Context) -> ClaimResult:
    result = ClaimResult(
        "C6",
        "Other activation functions behave differently: they avoid the saturation.",
        f"Directional: among runs that trained, each other activation function's mean saturated fraction on training "
        f"probes at the last record (eps = {ctx.eps:g}, mean over hidden layers) minus sigmoid's, with a 95% Welch t "
        f"interval over the runs of the two groups. Per activation: {C6_RULE.describe('the difference')}. The claim "
        f"is supported when every other bounded activation avoids it, not supported when none does, mixed otherwise. "
        f"ReLU has no upper bound: its dead units (zero on every probe) are reported beside, not compared as "
        f"saturation. Where the store has gain-matched runs (a sigmoid run with 4× a tanh run's init_scale, "
        f"tanh(z) = 2σ(2z) − 1), their comparison is given beside.",
        figures=["activation"],
    )
    runs = ctx.runs
    if "sigmoid" not in set(ctx.activation):
        return result.not_testable("the store has no sigmoid runs to compare with")
    base = runs.population("sigmoid")
    others = [a for a in runs.activations(bounded_only=True) if a != "sigmoid"]
    if not others or not base.runs:
        return result.not_testable("the store has no trained sigmoid runs, or no other bounded activation function")
    result.population = base.as_dict() | {"activation_fn": "sigmoid", "compared_with": others}

    def differences(eps):
        values = ctx.run_saturation(eps)
        reference = values[ctx.positions(base.runs)]
        out = {}
        for name in others:
            mine = values[ctx.positions(runs.population(name).runs)]
            if mine.size == 0 or reference.size == 0:
                out[name] = (np.nan, np.nan, np.nan)
                continue
            out[name] = two_group_interval(mine, reference)
        return out

    def combine(verdicts):
        decided = [v for v in verdicts if v != NOT_TESTABLE]
        if not decided:
            return NOT_TESTABLE
        if all(v == SUPPORTED for v in decided):
            return SUPPORTED
        if all(v == NOT_SUPPORTED for v in decided):
            return NOT_SUPPORTED
        return MIXED

    found = differences(ctx.eps)
    for name, (estimate, low, high) in found.items():
        result.strata.append(Stratum(f"{name} minus sigmoid", runs.population(name).runs,
                                     C6_RULE.decide(estimate, low, high), estimate, (low, high)))
    result.verdict = combine([s.verdict for s in result.strata])
    primary = result.strata[0]
    result.estimate, result.ci = primary.estimate, primary.ci
    if np.isfinite(primary.estimate):
        result.margin = C6_RULE.margin(primary.estimate, *primary.ci)
    sensitivity = {"eps": {}}
    for eps in (0.01, 0.02, 0.05, 0.1):
        found_eps = differences(eps)
        sensitivity["eps"][f"{eps:g}"] = {"verdict": combine([C6_RULE.decide(*v) for v in found_eps.values()]),
                                          "differences": {k: v[0] for k, v in found_eps.items()}}
    sensitivity["thresholds"] = {
        f"not supported above {r.not_supported:g}": combine([r.decide(s.estimate, *s.ci) for s in result.strata])
        for r in C6_THRESHOLDS
    }
    verdicts = [v["verdict"] for v in sensitivity["eps"].values()] + list(sensitivity["thresholds"].values())
    sensitivity["verdict_survives"] = all(v == result.verdict for v in verdicts)
    result.sensitivity = sensitivity
    matched = _gain_matched(ctx, base.runs, runs.population("tanh").runs if "tanh" in set(ctx.activation) else [])
    result.evidence["gain_matched"] = matched
    if "relu" in set(ctx.activation):
        relu = runs.population("relu")
        try:
            dead = ctx.units["share_dead"].isel(run=ctx.positions(relu.runs)).mean("layer", skipna=True).values
            zeros = ctx.run_saturation(variable="fraction_low")[ctx.positions(relu.runs)]
            result.evidence["relu"] = {"runs": relu.runs, "mean_share_dead_units": _mean(dead),
                                       "mean_share_exact_zeros": _mean(zeros)}
        except (AttributeError, KeyError, ValueError):
            pass
    result.summary = (f"Saturated fraction of each other activation minus sigmoid's (trained runs): "
                      f"{strata_text(result, '{:+.3f}')}.")
    return result


def _gain_matched(ctx: Context, sigmoid_runs, tanh_runs) -> dict:
    """tanh(z) = 2σ(2z) − 1: a tanh unit is a sigmoid unit with twice the pre-activation gain
    (and 4× the slope at 0). A sigmoid run is gain-matched to a tanh run when its config is the
    same except for the activation and an ``init_scale`` 4× the tanh run's; the comparison of
    such pairs separates the activation's shape from its gain. Where the store has no such
    pairs, says so."""
    import json

    def key(run):
        try:
            config = json.loads(str(ctx.ds["config"].values[ctx.positions([run])[0]]))
        except ValueError:
            return None, None
        model = dict(config.get("model", {}))
        scale = model.pop("init_scale", None)
        model.pop("activation", None)
        config["model"] = model
        config.get("train", {}).pop("seed", None)
        return json.dumps(config, sort_keys=True), scale

    tanh = {}
    for run in tanh_runs:
        k, scale = key(run)
        if k is not None and isinstance(scale, (int, float)):
            tanh.setdefault((k, float(scale) * 4), []).append(run)
    pairs_sigmoid, pairs_tanh = [], []
    for run in sigmoid_runs:
        k, scale = key(run)
        if k is not None and isinstance(scale, (int, float)) and (k, float(scale)) in tanh:
            pairs_sigmoid.append(run)
            pairs_tanh.extend(r for r in tanh[(k, float(scale))] if r not in pairs_tanh)
    if not pairs_sigmoid:
        return {"note": "the store has no gain-matched runs (a trained sigmoid run whose config equals a trained "
                        "tanh run's but for the activation and an init_scale 4× larger)"}
    values = ctx.run_saturation()
    difference, low, high = two_group_interval(values[ctx.positions(pairs_tanh)], values[ctx.positions(pairs_sigmoid)])
    return {"sigmoid_runs": pairs_sigmoid, "tanh_runs": pairs_tanh, "tanh_minus_sigmoid": difference,
            "ci": [low, high], "verdict": C6_RULE.decide(difference, low, high)}
