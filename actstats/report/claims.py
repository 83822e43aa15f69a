"""The claims C1-C6: each with its criterion, computed from the query results, and a verdict.

Verdicts are `supported`, `not supported`, `mixed`, or `not testable` (the store lacks what the
claim needs; the evidence says what). The thresholds are written in each criterion so that a
reader can disagree with them, and the numbers behind each verdict are in its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

SUPPORTED, NOT_SUPPORTED, MIXED, NOT_TESTABLE = "supported", "not supported", "mixed", "not testable"

#: Shares of groups that decide a verdict: at least SUPPORT_SHARE of groups meeting the
#: criterion -> supported; at most REJECT_SHARE -> not supported; between -> mixed.
SUPPORT_SHARE = 0.75
REJECT_SHARE = 0.25
#: A factor "matters" (C5, C6) when its levels' mean saturated fractions differ by at least
#: this much and the BH-adjusted p-value is below ALPHA.
FACTOR_EFFECT = 0.10
ALPHA = 0.05
#: C4: a run shows "saturation with vanishing gradients" when the Spearman correlation between
#: its saturated fraction and log10 of its weight-gradient norm, over (epoch, layer), is at
#: most this.
GRADIENT_RHO = -0.3


@dataclass
class Claim:
    id: str
    claim: str
    criterion: str
    verdict: str = NOT_TESTABLE
    evidence: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "claim": self.claim,
            "criterion": self.criterion,
            "verdict": self.verdict,
            "evidence": _jsonable({"summary": self.summary, **self.evidence}),
        }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def share_verdict(share: float) -> str:
    if not np.isfinite(share):
        return NOT_TESTABLE
    if share >= SUPPORT_SHARE:
        return SUPPORTED
    if share <= REJECT_SHARE:
        return NOT_SUPPORTED
    return MIXED


def c1_saturation(saturation, bounded_runs: np.ndarray, eps: float) -> Claim:
    """`saturation`: the query result at each run's last epoch (no epoch dim)."""
    claim = Claim(
        "C1",
        "In a trained network, the hidden activations on training points sit near the bounds of the activation function (near 0 or 1 for the sigmoid).",
        f"At the last recorded epoch, for each run with a bounded activation function and each hidden layer: "
        f"the fraction of activations on training probes within eps = {eps:g} of a bound (eps as a share of the range), "
        f"with a {int(100 * saturation.attrs.get('confidence_level', 0.95))}% interval that resamples probes. "
        f"A layer is saturated when the interval's lower end exceeds 0.5. Supported when at least "
        f"{SUPPORT_SHARE:.0%} of (run, layer) pairs are saturated, not supported when at most {REJECT_SHARE:.0%} are, mixed otherwise.",
    )
    if not bounded_runs.any() or "train" not in saturation["split"].values:
        claim.evidence["missing"] = "no run with a bounded activation function, or no training probes"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    final = saturation.sel(split="train").isel(run=np.flatnonzero(bounded_runs))
    fraction = final["fraction"].values
    low = final["ci_low"].values
    valid = np.isfinite(fraction)
    saturated = (low > 0.5) & valid
    share = saturated.sum() / max(1, valid.sum())
    claim.verdict = share_verdict(share if valid.any() else np.nan)
    claim.evidence.update(
        groups=int(valid.sum()),
        saturated_groups=int(saturated.sum()),
        share_saturated=float(share),
        median_fraction=float(np.nanmedian(fraction)),
        fraction_range=[float(np.nanmin(fraction)), float(np.nanmax(fraction))],
        median_fraction_low=float(np.nanmedian(final["fraction_low"].values)),
        median_fraction_high=float(np.nanmedian(final["fraction_high"].values)),
    )
    per_layer = {}
    for i, layer in enumerate(final["layer"].values):
        values = fraction[:, i] if fraction.ndim == 2 else fraction
        if np.isfinite(values).any():
            per_layer[f"layer {int(layer)}"] = float(np.nanmedian(values))
    claim.evidence["median_fraction_by_layer"] = per_layer
    claim.summary = (
        f"{int(saturated.sum())} of {int(valid.sum())} (run, layer) pairs are saturated at the last epoch "
        f"({share:.0%}); median saturated fraction {np.nanmedian(fraction):.2f} "
        f"(range {np.nanmin(fraction):.2f}–{np.nanmax(fraction):.2f})."
    )
    return claim


def c2_train_vs_test(comparison, bounded_runs: np.ndarray) -> Claim:
    """`comparison`: compare_splits at each run's last epoch (no epoch dim), or None."""
    claim = Claim(
        "C2",
        "Activations sit near the bounds more on training points than on held-out points.",
        "At the last recorded epoch, per bounded run and layer: the difference in saturated fraction between training "
        "and held-out probes, with a bootstrap interval over probes and a permutation p-value, Benjamini–Hochberg "
        f"adjusted across all (run, layer) pairs. A pair shows the effect when the difference is positive and the adjusted "
        f"p-value is below {ALPHA}. Supported when at least {SUPPORT_SHARE:.0%} of pairs show it, not supported at most "
        f"{REJECT_SHARE:.0%}, mixed otherwise.",
    )
    if comparison is None or not bounded_runs.any():
        claim.evidence["missing"] = "needs both training and held-out probes and a bounded activation function"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    final = comparison.isel(run=np.flatnonzero(bounded_runs))
    difference = final["difference"].values
    adjusted = final["pvalue_adjusted"].values
    valid = np.isfinite(difference)
    shows = valid & (difference > 0) & (adjusted < ALPHA)
    share = shows.sum() / max(1, valid.sum())
    claim.verdict = share_verdict(share if valid.any() else np.nan)
    claim.evidence.update(
        groups=int(valid.sum()),
        groups_with_effect=int(shows.sum()),
        groups_with_opposite_effect=int((valid & (difference < 0) & (adjusted < ALPHA)).sum()),
        median_difference=float(np.nanmedian(difference)),
        difference_range=[float(np.nanmin(difference)), float(np.nanmax(difference))],
        median_fraction_train=float(np.nanmedian(final["fraction_train"].values)),
        median_fraction_test=float(np.nanmedian(final["fraction_test"].values)),
    )
    claim.summary = (
        f"{int(shows.sum())} of {int(valid.sum())} (run, layer) pairs saturate significantly more on training probes; "
        f"median difference {np.nanmedian(difference):+.3f} (training {np.nanmedian(final['fraction_train'].values):.2f}, "
        f"held-out {np.nanmedian(final['fraction_test'].values):.2f})."
    )
    return claim


def c3_gaussian_weights(normality, final) -> Claim:
    """`normality`: weight_normality over all epochs; `final`: at each run's last epoch."""
    thresholds = normality.attrs.get("gaussian_criterion", "the effect-size thresholds of actstats.weight_normality")
    claim = Claim(
        "C3",
        "Each layer's trained weights are Gaussian, even from a non-Gaussian initialisation.",
        f"At the last recorded epoch, per run and hidden layer, the weights are called Gaussian by effect size, not by "
        f"p-value (with this many weights every test rejects): {thresholds}. Supported when at least {SUPPORT_SHARE:.0%} "
        f"of (run, layer) pairs are Gaussian, not supported at most {REJECT_SHARE:.0%}, mixed otherwise.",
    )
    gaussian = final["gaussian"].values.astype(float)
    n = final["n"].values
    valid = np.isfinite(gaussian) & (n > 0)
    share = np.nansum(gaussian[valid]) / max(1, valid.sum())
    claim.verdict = share_verdict(share if valid.any() else np.nan)
    claim.evidence.update(
        groups=int(valid.sum()),
        gaussian_groups=int(np.nansum(gaussian[valid])),
        median_excess_kurtosis=float(np.nanmedian(final["excess_kurtosis"].values[valid])),
        excess_kurtosis_range=[float(np.nanmin(final["excess_kurtosis"].values[valid])), float(np.nanmax(final["excess_kurtosis"].values[valid]))],
        median_skewness=float(np.nanmedian(final["skewness"].values[valid])),
        median_w1_normal=float(np.nanmedian(final["w1_normal"].values[valid])),
        best_family_counts=_counts(final["best_family"].values[valid]),
    )
    if 0.0 in normality["epoch"].values:
        initial = normality.sel(epoch=0.0)
        claim.evidence["median_excess_kurtosis_at_initialisation"] = float(np.nanmedian(initial["excess_kurtosis"].values))
        claim.evidence["gaussian_groups_at_initialisation"] = int(np.nansum(initial["gaussian"].values.astype(float)))
    claim.summary = (
        f"{int(np.nansum(gaussian[valid]))} of {int(valid.sum())} (run, layer) weight matrices are Gaussian by effect size at the "
        f"last epoch; median excess kurtosis {claim.evidence['median_excess_kurtosis']:+.2f}, median W1 to the fitted normal "
        f"{claim.evidence['median_w1_normal']:.3f} std."
    )
    if "median_excess_kurtosis_at_initialisation" in claim.evidence:
        claim.summary += f" At initialisation the median excess kurtosis was {claim.evidence['median_excess_kurtosis_at_initialisation']:+.2f}."
    return claim


def _counts(values) -> dict[str, int]:
    names, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts)}


def c4_vanishing_gradients(saturation, gradients, gradients_final, bounded_runs: np.ndarray) -> Claim:
    """`saturation`, `gradients`: over all epochs; `gradients_final`: at each run's last epoch."""
    claim = Claim(
        "C4",
        "Saturation goes with vanishing gradients (sigmoid: σ' ≤ 1/4, and near the bounds σ' ≈ 0).",
        f"Per bounded run, over all recorded (epoch, layer) pairs: the Spearman correlation between the saturated fraction "
        f"on training probes and log10 of the layer's weight-gradient norm ‖∂L/∂W‖. A run shows the link when ρ ≤ {GRADIENT_RHO}. "
        f"Supported when at least {SUPPORT_SHARE:.0%} of runs show it, not supported at most {REJECT_SHARE:.0%}, mixed otherwise. "
        f"The mean σ'(z) per layer is reported beside it.",
    )
    if gradients is None:
        claim.evidence["missing"] = "the store has no weight_grad (record.weight_grad = false)"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    if not bounded_runs.any():
        claim.evidence["missing"] = "no run with a bounded activation function"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    fraction = saturation.sel(split="train")["fraction"]
    norm = gradients["weight_grad_norm"]
    rhos = {}
    for run in saturation["run"].values[bounded_runs]:
        f = fraction.sel(run=run).values.ravel()
        g = norm.sel(run=run).values.ravel()
        ok = np.isfinite(f) & np.isfinite(g) & (g > 0)
        if ok.sum() >= 5 and np.ptp(f[ok]) > 0:
            rhos[int(run)] = float(stats.spearmanr(f[ok], np.log10(g[ok])).statistic)
    if not rhos:
        claim.evidence["missing"] = "no run whose saturated fraction varies over training"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    values = np.array(list(rhos.values()))
    shows = values <= GRADIENT_RHO
    share = shows.mean()
    claim.verdict = share_verdict(share)
    derivative = gradients_final["mean_derivative"].isel(run=np.flatnonzero(bounded_runs)).values
    claim.evidence.update(
        runs=len(values),
        runs_with_link=int(shows.sum()),
        median_spearman_rho=float(np.median(values)),
        spearman_rho_by_run=rhos,
        median_mean_derivative_last_epoch=float(np.nanmedian(derivative)),
        max_mean_derivative_last_epoch=float(np.nanmax(derivative)),
    )
    claim.summary = (
        f"{int(shows.sum())} of {len(values)} runs show ρ ≤ {GRADIENT_RHO} between saturation and log gradient norm "
        f"(median ρ {np.median(values):+.2f}); median mean f'(z) at the last epoch {np.nanmedian(derivative):.3f}."
    )
    return claim


def factor_effects(run_fraction: np.ndarray, factors: dict[str, np.ndarray]) -> dict[str, dict]:
    """For each factor with at least two levels: level means, their range, and a p-value
    (Kruskal-Wallis across levels over runs; scipy), BH-adjusted across factors."""
    from actstats.kernels import benjamini_hochberg

    out = {}
    for name, levels in factors.items():
        levels = np.asarray(levels).astype(str)
        ok = np.isfinite(run_fraction)
        unique = [u for u in np.unique(levels[ok])]
        if len(unique) < 2:
            continue
        groups = [run_fraction[ok & (levels == u)] for u in unique]
        if all(np.ptp(np.concatenate(groups)) == 0 for _ in [0]):
            pvalue = 1.0
        else:
            pvalue = float(stats.kruskal(*groups).pvalue)
        means = {u: float(np.mean(g)) for u, g in zip(unique, groups)}
        out[name] = {
            "level_means": means,
            "runs_per_level": {u: int(len(g)) for u, g in zip(unique, groups)},
            "effect": float(max(means.values()) - min(means.values())),
            "pvalue": pvalue,
        }
    if out:
        adjusted = benjamini_hochberg(np.array([v["pvalue"] for v in out.values()]))
        for value, p in zip(out.values(), adjusted):
            value["pvalue_adjusted"] = float(p)
    return out


def c5_factors(effects: dict[str, dict]) -> Claim:
    claim = Claim(
        "C5",
        "Whether activations saturate depends on the initialisation, the depth or the optimizer.",
        f"Per run: the saturated fraction on training probes at the last epoch, averaged over its hidden layers. For each "
        f"swept factor (init, depth, optimizer, learning rate, batch size): Kruskal–Wallis across its levels over runs, "
        f"Benjamini–Hochberg adjusted across factors (with C6's activation function). A factor matters when its levels' "
        f"means differ by at least {FACTOR_EFFECT} and the adjusted p-value is below {ALPHA}. Supported when every swept "
        f"factor among init, depth and optimizer matters, not supported when none does, mixed otherwise.",
    )
    relevant = {k: v for k, v in effects.items() if k in ("init", "depth", "optimizer", "lr", "batch_size")}
    if not relevant:
        claim.evidence["missing"] = "the store does not vary init, depth, optimizer, learning rate or batch size across runs"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    matters = {k: v["effect"] >= FACTOR_EFFECT and v["pvalue_adjusted"] < ALPHA for k, v in relevant.items()}
    core = [k for k in ("init", "depth", "optimizer") if k in matters]
    if not core:
        core = list(matters)
    n = sum(matters[k] for k in core)
    claim.verdict = SUPPORTED if n == len(core) else NOT_SUPPORTED if n == 0 else MIXED
    claim.evidence.update(factors=relevant, matters={k: bool(v) for k, v in matters.items()})
    claim.summary = "; ".join(
        f"{k}: effect {v['effect']:.2f}, adjusted p {v['pvalue_adjusted']:.3g} ({'matters' if matters[k] else 'no clear effect'})"
        for k, v in relevant.items()
    ) + "."
    return claim


def c6_activation(effects: dict[str, dict]) -> Claim:
    claim = Claim(
        "C6",
        "Other activation functions behave differently (they avoid the saturation).",
        f"As C5, for the factor activation function: its levels' mean saturated fractions differ by at least {FACTOR_EFFECT} "
        f"with a BH-adjusted Kruskal–Wallis p-value below {ALPHA} → supported; otherwise not supported.",
    )
    effect = effects.get("activation_fn")
    if effect is None:
        claim.evidence["missing"] = "the store has a single activation function"
        claim.summary = "Not testable: " + claim.evidence["missing"] + "."
        return claim
    matters = effect["effect"] >= FACTOR_EFFECT and effect["pvalue_adjusted"] < ALPHA
    claim.verdict = SUPPORTED if matters else NOT_SUPPORTED
    claim.evidence.update(effect)
    claim.summary = (
        "Mean saturated fraction by activation function: "
        + ", ".join(f"{k} {v:.2f}" for k, v in effect["level_means"].items())
        + f" (adjusted p {effect['pvalue_adjusted']:.3g})."
    )
    return claim
