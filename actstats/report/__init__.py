"""`actstats report STORE -o DIR`: a verdict on each claim C1-C6, with the numbers and figures.

Writes DIR/index.html (self-contained: figures embedded as data URIs, no external URL),
DIR/findings.md, DIR/findings.json ({"store", "claims": [{"id", "claim", "criterion",
"verdict", "evidence"}]}) and DIR/figures/*.png.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from actstats.errors import ActstatsError
from actstats.report import claims as claim_rules
from actstats.report import figures
from actstats.report.render import render_html, render_markdown

FACTOR_NAMES = ("init", "depth", "optimizer", "lr", "batch_size", "activation_fn")


def last_complete(ds) -> np.ndarray:
    """Each run's position on ``epoch`` of its last complete record; -1 for a run with none.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"complete": (("run", "epoch"), [[True, True, False], [False, False, False]])})
    >>> last_complete(ds).tolist()
    [1, -1]
    """
    complete = np.asarray(ds["complete"].values, dtype=bool)
    last = np.where(complete.any(axis=1), complete.shape[1] - 1 - np.argmax(complete[:, ::-1], axis=1), -1)
    return last


def _at_last(result, last):
    import xarray as xr

    return result.isel(epoch=xr.DataArray(np.maximum(last, 0), dims="run"))


def init_labels(ds) -> np.ndarray:
    """Each run's ``init``, with its ``init_scale`` (from the run's ``config``) appended where
    runs of one init differ in scale: ``normal(0.01)`` and ``normal(1)`` are two levels."""
    names = np.asarray(ds["init"].values).astype(str)
    scales = []
    for text in np.asarray(ds["config"].values).astype(str):
        try:
            scale = json.loads(text).get("model", {}).get("init_scale")
        except (ValueError, AttributeError):
            scale = None
        scales.append(scale if isinstance(scale, (int, float)) else None)
    labels = names.astype(object)
    for name in np.unique(names):
        runs = np.flatnonzero(names == name)
        if len({scales[r] for r in runs}) > 1:
            for r in runs:
                labels[r] = f"{name}({scales[r]:g})" if scales[r] is not None else name
    return labels.astype(str)


def _representative_runs(ds, usable):
    """One run per activation function: the deepest, then the first in sweep order."""
    picks = []
    for name in dict.fromkeys(ds["activation_fn"].values[usable]):
        candidates = [r for r in np.flatnonzero(usable) if ds["activation_fn"].values[r] == name]
        picks.append(max(candidates, key=lambda r: (int(ds["depth"].values[r]), -r)))
    return picks


def build_report(store: str, output: str, *, eps: float | None = None, progress: bool | None = None) -> dict:
    """Compute every query the claims need, decide each claim, and write the report.

    Returns the findings (the content of findings.json).
    """
    from tqdm.auto import tqdm

    from actstats import queries
    from actstats.activations import get_activation
    from actstats.options import progress_enabled
    from actstats.store import open_store

    from actstats.validate import validate_eps

    eps = validate_eps(eps)  # default OPTIONS["eps"]; checked before any work
    ds = open_store(store)
    last = last_complete(ds)
    usable = last >= 0
    if not usable.any():
        raise ActstatsError(f"{store}: no complete record to report on (run `actstats verify {store}`)")
    ds = ds.isel(run=np.flatnonzero(usable))
    last = last[usable]
    usable = np.ones(ds.sizes["run"], dtype=bool)
    bounded = np.array([get_activation(str(a)).bounded for a in ds["activation_fn"].values])
    directory = os.path.join(output, "figures")
    os.makedirs(directory, exist_ok=True)
    splits = set(ds["split"].values.tolist())

    steps = ["saturation", "comparison", "weights", "gradients", "claims", "figures", "write"]
    bar = tqdm(total=len(steps), desc="report", unit="step", disable=not progress_enabled(progress))

    def step(name):
        bar.set_postfix_str(name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of padding
        step("saturation")
        saturation = queries.saturation(ds, eps=eps, by=("run", "epoch", "layer", "split")).compute()
        bar.update()
        step("comparison")
        comparison = None
        if {"train", "test"} <= splits:
            comparison = _compare_at_last(queries, ds, last, eps)
        bar.update()
        step("weights")
        normality = queries.weight_normality(ds, by=("run", "epoch", "layer")).compute()
        bar.update()
        step("gradients")
        gradients = None
        if "weight_grad" in ds:
            gradients = queries.gradient_flow(ds).compute()
        bar.update()

        step("claims")
        saturation_last = _at_last(saturation, last)
        run_fraction = saturation_last["fraction"].sel(split="train").mean("layer", skipna=True).values
        factors = {name: ds[name].values for name in FACTOR_NAMES}
        factors["init"] = init_labels(ds)
        effects = claim_rules.factor_effects(np.where(bounded, run_fraction, np.nan) if bounded.any() else run_fraction, factors)
        effects_all = claim_rules.factor_effects(run_fraction, {"activation_fn": ds["activation_fn"].values})
        effects["activation_fn"] = effects_all.get("activation_fn") if "activation_fn" in effects_all else effects.get("activation_fn")
        if effects.get("activation_fn") is None:
            effects.pop("activation_fn", None)
        found = [
            claim_rules.c1_saturation(saturation_last, bounded, eps),
            claim_rules.c2_train_vs_test(comparison, bounded),
            claim_rules.c3_gaussian_weights(normality, _at_last(normality, last)),
            claim_rules.c4_vanishing_gradients(
                saturation, gradients, _at_last(gradients, last) if gradients is not None else None, bounded
            ),
            claim_rules.c5_factors(effects),
            claim_rules.c6_activation(effects),
        ]
        bar.update()

        step("figures")
        reps = _representative_runs(ds, usable)
        main_run = next((r for r in reps if bounded[r]), reps[0])
        heat_runs = _heatmap_runs(saturation_last, bounded, main_run)
        paths = {
            "mean_std": figures.mean_std_over_training(ds, reps, directory),
            "histograms": figures.histograms(ds, main_run, directory),
            "heatmap": figures.saturation_heatmap(saturation, ds, heat_runs, directory),
            "trajectories": figures.trajectories(ds, heat_runs[-1], eps, directory),
            "qq": figures.weight_qq(ds, main_run, directory),
            "kurtosis": figures.weight_kurtosis(normality, ds, reps, directory),
            "gradients": figures.gradient_flow(gradients, ds, reps, directory) if gradients is not None else None,
            "sweep": figures.sweep_comparison(
                run_fraction, {k: v for k, v in factors.items() if k != "activation_fn"}, directory
            ),
            "activation": figures.sweep_comparison(
                run_fraction, {"activation_fn": factors["activation_fn"]}, directory, "activation_comparison.png"
            ),
        }
        bar.update()
    claim_figures = {
        "C1": ["mean_std", "histograms", "heatmap"],
        "C2": ["trajectories"],
        "C3": ["qq", "kurtosis"],
        "C4": ["gradients"],
        "C5": ["sweep"],
        "C6": ["activation"],
    }
    step("write")
    findings = {"store": store, "claims": [c.as_dict() for c in found]}
    context = {
        "store": store,
        "attrs": dict(ds.attrs),
        "sizes": {k: int(v) for k, v in ds.sizes.items()},
        "runs": [figures.run_label(ds, r) for r in range(ds.sizes["run"])],
        "eps": eps,
        "claims": found,
        "figures": {k: v for k, v in paths.items() if v},
        "claim_figures": claim_figures,
    }
    with open(os.path.join(output, "findings.json"), "w") as f:
        json.dump(findings, f, indent=2, allow_nan=False)
    with open(os.path.join(output, "findings.md"), "w") as f:
        f.write(render_markdown(context, output))
    with open(os.path.join(output, "index.html"), "w") as f:
        f.write(render_html(context))
    bar.update()
    bar.close()
    return findings


def _heatmap_runs(saturation_last, bounded, main_run):
    """The representative run, and the bounded run that saturates most at its last epoch."""
    fraction = saturation_last["fraction"].sel(split="train").mean("layer", skipna=True).values
    fraction = np.where(bounded, fraction, np.nan)
    if not np.isfinite(fraction).any():
        return [main_run]
    most = int(np.nanargmax(fraction))
    return [main_run] if most == main_run else [main_run, most]


def _compare_at_last(queries, ds, last, eps):
    """compare_splits at each run's last complete epoch (no epoch dim). Runs that end at the
    same epoch are compared together; the BH adjustment is then redone across all of them."""
    import xarray as xr

    from actstats.kernels import benjamini_hochberg

    parts = []
    for index in np.unique(last):
        runs = np.flatnonzero(last == index)
        part = queries.compare_splits(ds.isel(run=runs, epoch=[int(index)]), eps=eps, by=("run", "epoch", "layer"))
        parts.append(part.compute().isel(epoch=0, drop=True))
    result = xr.concat(parts, dim="run") if len(parts) > 1 else parts[0]
    result = result.sortby("run")
    adjusted = benjamini_hochberg(result["pvalue"].values, axis=None)
    result["pvalue_adjusted"] = (result["pvalue"].dims, adjusted)
    return result
