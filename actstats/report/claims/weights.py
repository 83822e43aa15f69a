"""C3: trained weights are Gaussian, even from a non-Gaussian initialisation.

Calibration of the threshold against the alternative that matters. Let a layer's trained
weights be its initial weights W₀ (uniform: excess kurtosis −1.2) plus an update ΔW that is
Gaussian and independent of W₀, with a share s of the trained weights' variance. Cumulants
add, so the excess kurtosis of W₀ + ΔW is −1.2 (1 − s)² (tested by simulation in
tests/test_report_verdicts.py). A layer whose variance is still half the uniform
initialisation (s = 0.5) has excess kurtosis −0.3: the "approximately Gaussian" threshold
|excess kurtosis| < 0.3 therefore means "at least half of the variance is not the
initialisation". The strict threshold is the noise floor of the kurtosis for n weights,
2·√(24/n) (twice its standard error under normality): at n = 4096 it is 0.15.
"""

from __future__ import annotations

import numpy as np

from actstats.report.claims._decide import decide_by_activation, strata_text
from actstats.report.context import Context, at_last
from actstats.report.verdicts import ClaimResult, Rule

#: The uniform initialisation's excess kurtosis.
UNIFORM_KURTOSIS = -1.2
#: |excess kurtosis| below this: at least half of the variance is not the uniform init.
APPROXIMATE = 0.3
C3_RULE = Rule(APPROXIMATE, APPROXIMATE, direction="less")
C3_THRESHOLDS = (Rule(0.15, 0.15, direction="less"), Rule(0.6, 0.6, direction="less"))
#: An initialisation is non-Gaussian when its layers' mean |excess kurtosis| at epoch 0 is
#: beyond this (uniform: 1.2; a Gaussian init at n = 4096: about 0.08).
NON_GAUSSIAN_INIT = 0.5


def remaining_init_share(excess_kurtosis):
    """The share of variance still from a uniform initialisation that gives this excess
    kurtosis under the model W₀ + Gaussian ΔW: √(κ / −1.2), clipped to [0, 1].

    Examples
    --------
    >>> float(remaining_init_share(-0.3))
    0.5
    """
    k = np.clip(np.asarray(excess_kurtosis, dtype=float) / UNIFORM_KURTOSIS, 0.0, 1.0)
    return np.sqrt(k)


def c3(ctx: Context) -> ClaimResult:
    result = ClaimResult(
        "C3",
        "Each layer's trained weights are Gaussian, even from a non-Gaussian initialisation.",
        f"Per activation function, among runs that trained and whose initial weights are non-Gaussian (mean "
        f"|excess kurtosis| over layers at epoch 0 above {NON_GAUSSIAN_INIT}; uniform: 1.2): each run's mean over its "
        f"hidden layers of |excess kurtosis| of the weights at its last record (the first layer's columns on inputs "
        f"that are constant on every probe excluded: they get no gradient); the estimate is the mean over runs, "
        f"with a 95% t interval over runs. Calibrated on W₀ + Gaussian ΔW (excess kurtosis −1.2(1−s)² for a "
        f"share s of the variance from the update): {APPROXIMATE} means half the variance is still the "
        f"initialisation. {C3_RULE.describe('that mean')}. The strict reading (the noise floor 2·√(24/n), 0.15 at "
        f"n = 4096) and 0.6 are given as sensitivity. Tests p-values are not used: with this many weights every "
        f"normality test rejects.",
        figures=["qq", "kurtosis"],
    )
    normality = ctx.weights_varying_inputs
    if normality["n"].sum() == 0:
        return result.not_testable("the store has no weights")
    final = at_last(normality, ctx.last)
    kurtosis_last = np.abs(final["excess_kurtosis"].transpose("run", "layer").values)
    with np.errstate(all="ignore"):
        per_run = np.nanmean(np.where(np.isfinite(kurtosis_last), kurtosis_last, np.nan), axis=1)
    if 0.0 in normality["epoch"].values:
        initial = np.abs(normality["excess_kurtosis"].sel(epoch=0.0).transpose("run", "layer").values)
        with np.errstate(all="ignore"):
            initial_run = np.nanmean(np.where(np.isfinite(initial), initial, np.nan), axis=1)
        non_gaussian = initial_run > NON_GAUSSIAN_INIT
        what = f"from a non-Gaussian initialisation (mean |excess kurtosis| at epoch 0 above {NON_GAUSSIAN_INIT})"
    else:
        uniform_inits = {"default", "uniform", "xavier_uniform", "kaiming_uniform"}
        non_gaussian = np.isin(np.asarray(ctx.ds["init"].values).astype(str), list(uniform_inits))
        initial_run = np.full(per_run.shape, np.nan)
        what = "from a uniform initialisation (by name: the store has no epoch 0)"

    def population_filter(name):
        return non_gaussian, "Gaussian initialisation (not what the claim is about)", what

    decide_by_activation(result, ctx, lambda eps: per_run, C3_RULE, bounded_only=False, eps_sensitive=False,
                         thresholds=C3_THRESHOLDS, population_filter=population_filter)
    positions = ctx.positions(result.population.get("runs", []))
    if positions.size:
        n = final["n"].isel(run=positions).values
        with np.errstate(all="ignore"):
            floor = float(np.nanmean(2 * np.sqrt(24 / np.where(n > 0, n, np.nan))))
        sel = final.isel(run=positions)
        result.evidence.update(
            strict_threshold_noise_floor=floor,
            strict_verdict=Rule(floor, floor, "less").decide(result.estimate, *result.ci),
            mean_abs_excess_kurtosis_at_initialisation=float(np.nanmean(initial_run[positions])),
            remaining_init_share_of_variance=float(remaining_init_share(-result.estimate)),
            mean_abs_skewness=float(np.nanmean(np.abs(sel["skewness"].values))),
            mean_w1_normal=float(np.nanmean(sel["w1_normal"].values)),
            mean_distance_from_init=float(np.nanmean(sel["distance_from_init"].values)),
            first_layer_columns_excluded=f"{ctx.constant_inputs.size} inputs constant on every probe",
        )
        updates = ctx.weight_updates
        if updates is not None:
            last_updates = at_last(updates, ctx.last).isel(run=positions)
            layers = last_updates["layer"].values
            result.evidence["update_since_initialisation"] = {
                f"layer {int(l)}": {
                    "mean_excess_kurtosis": float(np.nanmean(last_updates["excess_kurtosis"].sel(layer=l).values)),
                    "mean_skewness": float(np.nanmean(last_updates["skewness"].sel(layer=l).values)),
                    "mean_w1_normal": float(np.nanmean(last_updates["w1_normal"].sel(layer=l).values)),
                } for l in layers if np.isfinite(last_updates["excess_kurtosis"].sel(layer=l).values).any()
            }
    result.summary = (f"Mean |excess kurtosis| of trained weights from a non-Gaussian initialisation "
                      f"(0 = normal, 1.2 = uniform): {strata_text(result)}.")
    return result
