"""C5: saturation depends on the initialisation, the depth or the optimizer."""

from __future__ import annotations

import numpy as np

import actstats

from actstats.queries.factors import init_labels
from actstats.report.context import Context
from actstats.report.verdicts import (
    MIXED, NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED, ClaimResult, Rule, Stratum,
)

#: A factor matters when its most and least saturated levels differ by more than this
#: (95% interval over runs entirely above), and does not when the interval lies below it.
C5_RULE = Rule(0.05, 0.05)
FACTORS = ("init", "depth", "optimizer", "batch_size")


def _levels(ctx: Context) -> dict[str, np.ndarray]:
    ds = ctx.ds
    levels = {"init": init_labels(ds), "depth": np.asarray(ds["depth"].values).astype(str),
              "optimizer": np.asarray(ds["optimizer"].values).astype(str),
              "batch_size": np.asarray(ds["batch_size"].values).astype(str)}
    lr = np.asarray(ds["lr"].values).astype(str)
    # a learning rate tied to the optimizer is one factor, not two
    pairs = set(zip(levels["optimizer"], lr))
    if len(pairs) > len(set(levels["optimizer"])):
        if len(pairs) == len(set(lr)):
            levels["optimizer"] = np.array([f"{o} (lr {l})" for o, l in zip(levels["optimizer"], lr)])
        else:
            levels["lr"] = lr
    return levels


def c5(ctx: Context) -> ClaimResult:
    result = ClaimResult(
        "C5",
        "Whether activations saturate depends on the initialisation, the depth or the optimizer.",
        f"Among sigmoid runs that trained (the primary activation; others as strata would need their own sweep): for "
        f"each factor the store varies (init with its scale, depth, optimizer — with its learning rate when the two "
        f"were varied together — batch size, learning rate when varied on its own): the difference in the saturated "
        f"fraction on training probes at the last record (eps = {ctx.eps:g}; the top hidden layer for depth, so that "
        f"depths are compared at the same relative position, else the mean over layers) between the factor's most and "
        f"least saturated levels (the factor_effects query), with a 95% Welch t interval over the runs of the two levels; the change "
        f"from initialisation to the end is given beside the end level, and initialisations already saturated "
        f"(above 0.5) before training are flagged. Per factor: {C5_RULE.describe('the difference')}; the factor "
        f"matters when that is supported. "
        f"The claim is supported when at least one of init, depth and optimizer matters, not supported when none "
        f"does, mixed otherwise. The most and least saturated levels are picked from the data, so the interval is "
        f"optimistic for factors with many levels.",
        figures=["sweep"],
    )
    runs = ctx.runs
    name = "sigmoid" if "sigmoid" in set(ctx.activation) else next(iter(runs.activations(bounded_only=True)), None)
    if name is None:
        return result.not_testable("no run with a bounded activation function")
    population = runs.population(name)
    result.population = population.as_dict() | {"activation_fn": name}
    positions = ctx.positions(population.runs)
    levels = _levels(ctx)
    ds = ctx.ds.assign_coords({f"report_{factor}": ("run", labels) for factor, labels in levels.items()})
    factors = {}
    for factor, labels in levels.items():
        if len(set(labels[positions])) < 2:
            continue
        where = "top" if factor == "depth" else "mean"
        effects = actstats.factor_effects(ds, f"report_{factor}", ctx.eps, layer=where, runs=population.runs,
                                          n_permutations=999)
        means = dict(zip(effects["level"].values.tolist(), effects["mean_fraction"].values.tolist()))
        high, low = str(effects["most_saturated"].values), str(effects["least_saturated"].values)
        estimate, ci = float(effects["difference"]), (float(effects["ci_low"]), float(effects["ci_high"]))
        entry = {"levels": means, "runs_per_level": dict(zip(means, effects["n_runs"].values.tolist())),
                 "most_saturated": high, "least_saturated": low, "difference": estimate, "ci": list(ci),
                 "pvalue": float(effects["pvalue"]), "verdict": C5_RULE.decide(estimate, *ci), "layer": where}
        initial = effects["mean_fraction_initial"].values
        if np.isfinite(initial).any():
            entry["level_means_at_initialisation"] = dict(zip(means, initial.tolist()))
            entry["level_changes"] = dict(zip(means, effects["mean_change"].values.tolist()))
            entry["saturated_before_training"] = [u for u, v in entry["level_means_at_initialisation"].items() if v > 0.5]
        factors[factor] = entry
        result.strata.append(Stratum(factor, population.runs, entry["verdict"], estimate, ci, f"{high} vs {low}"))
    if not factors:
        return result.not_testable("the store does not vary init, depth, optimizer, learning rate or batch size "
                                   f"among trained {name} runs")
    core = [f for f in ("init", "depth", "optimizer") if f in factors] or list(factors)
    verdicts = [factors[f]["verdict"] for f in core]
    result.verdict = (SUPPORTED if SUPPORTED in verdicts else NOT_SUPPORTED if all(v == NOT_SUPPORTED for v in verdicts)
                      else MIXED if verdicts else NOT_TESTABLE)
    best = max(core, key=lambda f: factors[f]["difference"])
    result.estimate, result.ci = factors[best]["difference"], tuple(factors[best]["ci"])
    result.margin = C5_RULE.margin(result.estimate, *result.ci) | {"factor": best}
    result.evidence["factors"] = factors
    flagged = {f: e["saturated_before_training"] for f, e in factors.items() if e.get("saturated_before_training")}
    if flagged:
        result.evidence["saturated_before_training"] = flagged
    result.summary = "; ".join(
        f"{f}: {e['most_saturated']} − {e['least_saturated']} = {e['difference']:+.3f} "
        f"[{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}] ({e['verdict']})" for f, e in factors.items()) + "."
    result.sensitivity = {"verdict_survives": None, "note": "eps and threshold sensitivity: see C1"}
    return result
