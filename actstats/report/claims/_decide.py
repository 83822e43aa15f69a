"""The shared way a claim is decided per stratum, with its margin and sensitivity."""

from __future__ import annotations

from typing import Callable

import numpy as np

from actstats.report.context import EPS_GRID, Context
from actstats.report.verdicts import NOT_TESTABLE, ClaimResult, Rule, Stratum, run_interval


def decide_by_activation(
    result: ClaimResult,
    ctx: Context,
    per_run: Callable[..., np.ndarray],
    rule: Rule,
    *,
    bounded_only: bool = True,
    eps_sensitive: bool = True,
    thresholds: tuple[Rule, ...] = (),
    fallback: Callable[[int], tuple[float, float]] | None = None,
    population_filter: Callable[[str], tuple[np.ndarray, str, str]] | None = None,
) -> ClaimResult:
    """Decide ``result`` on each activation function's population; the primary one (sigmoid
    when present) gives the claim's verdict, the others are strata, and the runs that did
    not train are a stratum of their own.

    ``per_run(eps)`` gives one value per run of the store (NaN where it does not apply).
    ``fallback(run)`` gives a single run's probe-level interval. ``population_filter(a)``
    gives a boolean per run that narrows activation ``a``'s population, the reason of those
    it leaves out, and a phrase for the definition.
    """
    runs = ctx.runs
    names = runs.activations(bounded_only=bounded_only)
    if not names:
        return result.not_testable("no run with an activation function this claim is about")
    values = per_run(ctx.eps)
    primary = None
    for name in names:
        extra, reason, what = population_filter(name) if population_filter else (None, "", "")
        population = runs.population(name, extra=extra, extra_reason=reason, what=what)
        positions = ctx.positions(population.runs)
        fb = fallback(positions[0]) if (fallback and positions.size == 1) else (np.nan, np.nan)
        estimate, low, high = run_interval(values[positions], fallback=fb)
        verdict = rule.decide(estimate, low, high) if positions.size else NOT_TESTABLE
        note = "" if positions.size else "no run in this population"
        if positions.size and not np.isfinite(estimate):
            note = "no run of this population has a value"
        elif positions.size and not np.isfinite(low):
            note = "too few runs for an interval over runs: the verdict rests on the estimate alone"
        stratum = Stratum(name, population.runs, verdict, estimate, (low, high), note)
        result.strata.append(stratum)
        if primary is None:
            primary = (name, population, stratum)
    name, population, stratum = primary
    untrained = runs.untrained(name)
    if untrained:
        estimate, low, high = run_interval(values[ctx.positions(untrained)])
        result.strata.append(Stratum(f"{name} that did not train", untrained, rule.decide(estimate, low, high),
                                     estimate, (low, high), "reported apart, never pooled with the trained runs"))
    result.population = population.as_dict() | {"activation_fn": name}
    result.verdict, result.estimate, result.ci = stratum.verdict, stratum.estimate, stratum.ci
    if np.isfinite(stratum.estimate):
        result.margin = rule.margin(stratum.estimate, *stratum.ci)
    positions = ctx.positions(population.runs)
    sensitivity = {}
    if eps_sensitive and positions.size:
        sensitivity["eps"] = {}
        for eps in EPS_GRID:
            e, lo, hi = run_interval(per_run(eps)[positions])
            sensitivity["eps"][f"{eps:g}"] = {"estimate": e, "ci": [lo, hi], "verdict": rule.decide(e, lo, hi)}
    if thresholds and positions.size:
        sensitivity["thresholds"] = {
            f"supported {r.supported:g}, not supported {r.not_supported:g}": r.decide(stratum.estimate, *stratum.ci)
            for r in thresholds
        }
    verdicts = [v["verdict"] for v in sensitivity.get("eps", {}).values()] + list(sensitivity.get("thresholds", {}).values())
    sensitivity["verdict_survives"] = bool(verdicts) and all(v == result.verdict for v in verdicts)
    result.sensitivity = sensitivity
    return result


def strata_text(result: ClaimResult, fmt: str = "{:.2f}") -> str:
    """``sigmoid 0.12 [0.08, 0.15] (not supported, 6 runs); tanh …`` for the summary."""
    parts = []
    for s in result.strata:
        if np.isfinite(s.estimate):
            interval = (f" [{fmt.format(s.ci[0])}, {fmt.format(s.ci[1])}]" if np.isfinite(s.ci[0]) else "")
            parts.append(f"{s.name} {fmt.format(s.estimate)}{interval} ({s.verdict}, {len(s.runs)} runs)")
        else:
            parts.append(f"{s.name}: {s.note or s.verdict}")
    return "; ".join(parts)
