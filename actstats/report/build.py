"""`actstats report`: decide every registered claim on a store, draw its figures, write the report."""

from __future__ import annotations

import os
import warnings

import numpy as np

from actstats.errors import ActstatsError
from actstats.report.claims import CLAIMS
from actstats.report.context import Context, last_complete
from actstats.report.findings import Findings


def assess(ds, *, eps: float | None = None, claims=None) -> Findings:
    """Decide the claims (all registered ones by default) on a Dataset in the store layout.

    Runs without a complete record are left out (and counted in each claim's population).
    No figure is drawn and nothing is written: :func:`build_report` does that.

    Examples
    --------
    >>> from actstats.synthetic import synthetic_store
    >>> findings = assess(synthetic_store(runs=3, seed=1), claims=["C1"])
    >>> findings.claims[0].id, findings.claims[0].verdict in {"supported", "not supported", "mixed", "not testable"}
    ('C1', True)
    """
    from actstats.validate import validate_eps

    eps = validate_eps(eps)
    if "layer_activation_fn" in ds.variables:  # a run is its layers' function (a selection of layers of one)
        from actstats.queries._engine import run_activation_functions

        ds = ds.assign_coords(activation_fn=("run", run_activation_functions(ds)))
    last = last_complete(ds)
    if not (last >= 0).any():
        raise ActstatsError("no complete record to report on")
    incomplete = np.asarray(ds["run"].values)[last < 0].tolist()
    ds = ds.isel(run=np.flatnonzero(last >= 0))
    ctx = Context(ds, eps)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of padding
        for claim_id in claims or CLAIMS:
            result = CLAIMS[claim_id].decide(ctx)
            if incomplete and result.population:
                result.population.setdefault("excluded", {})["no complete record"] = incomplete
            results.append(result)
    return Findings(results, ctx)


def representative_run(ctx: Context, population_runs) -> int | None:
    """The run a claim's figures show: among its population, the one with the highest training
    accuracy at its last record (ties: the deepest, then the first); None for an empty population."""
    if not population_runs:
        return None
    positions = ctx.positions(population_runs)
    accuracy = ctx.training["train_accuracy"].values[positions]
    accuracy = np.where(np.isfinite(accuracy), accuracy, -np.inf)
    depth = np.asarray(ctx.ds["depth"].values)[positions]
    order = sorted(range(positions.size), key=lambda i: (-accuracy[i], -depth[i], positions[i]))
    return int(positions[order[0]])


def build_report(store: str, output: str, *, eps: float | None = None, progress: bool | None = None,
                 runs=None) -> dict:
    """Decide every claim on ``store`` and write ``output``/index.html, findings.md,
    findings.json and figures/; ``runs`` keeps only those run labels. Returns findings.json's
    content."""

    from actstats.options import progress_bar
    from actstats.report import figures
    from actstats.store import open_store
    from actstats.validate import validate_eps

    eps = validate_eps(eps)  # checked before any work
    ds = open_store(store)
    if runs is not None:
        ds = ds.sel(run=list(runs))
    bar = progress_bar(total=3, desc="report", unit="step", progress=progress)
    bar.set_postfix_str("claims")
    findings = assess(ds, eps=eps)
    findings.store = store
    ctx = findings.context
    bar.update()
    bar.set_postfix_str("figures")
    directory = os.path.join(output, "figures")
    os.makedirs(directory, exist_ok=True)
    paths, shown = _figures(ctx, findings, directory, figures)
    findings.figures, findings.figure_runs = paths, shown
    bar.update()
    bar.set_postfix_str("write")
    findings.write(output)
    bar.update()
    bar.close()
    return findings.as_dict()


def _figures(ctx: Context, findings: Findings, directory: str, figures) -> tuple[dict, dict]:
    """Each claim's figures on runs of its own population (the representative run: the best
    trained one), drawn by :mod:`actstats.plot`; the captions say which runs."""
    from actstats import plot
    from actstats.plot._saturation import _varying_factors

    by_id = {c.id: c for c in findings.claims}
    label = lambda r: figures.run_label(ctx.ds, r)  # noqa: E731
    labels = lambda positions: ctx.labels[list(positions)].tolist()  # noqa: E731

    def population(claim_id):
        return by_id[claim_id].population.get("runs", []) if claim_id in by_id else []

    def reps(claim_id):
        """The representative run of each activation stratum of the claim."""
        picks = []
        for stratum in by_id[claim_id].strata if claim_id in by_id else []:
            pick = representative_run(ctx, stratum.runs) if not stratum.name.endswith("did not train") else None
            if pick is not None and pick not in picks:
                picks.append(pick)
        return picks

    def save(axes, name):
        return figures.save(axes, directory, name)

    figures.pyplot()  # Agg and the report's style, before anything is drawn
    paths, shown = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        main = representative_run(ctx, population("C1"))
        if main is not None:
            strata = reps("C1")
            paths["mean_std"] = save(plot.mean_std(ctx.ds, runs=labels(strata)), "mean_std_over_training.png")
            shown["mean_std"] = [label(r) for r in strata]
            paths["histograms"] = save(plot.histograms(ctx.ds, runs=labels([main])), "histograms.png")
            paths["heatmap"] = save(plot.saturation_heatmap(ctx.saturation(), runs=labels([main])),
                                    "saturation_heatmap.png")
            shown["histograms"] = shown["heatmap"] = [label(main)]
        main2 = representative_run(ctx, population("C2"))
        if main2 is not None:
            paths["trajectories"] = save(plot.trajectories(ctx.ds, runs=labels([main2]), eps=ctx.eps),
                                         "trajectories.png")
            shown["trajectories"] = [label(main2)]
        main3 = representative_run(ctx, population("C3"))
        if main3 is not None:
            paths["qq"] = save(plot.weight_qq(ctx.ds, runs=labels([main3])), "weights_qq.png")
            shown["qq"] = [label(main3)]
            strata = reps("C3")
            paths["kurtosis"] = save(plot.weight_kurtosis(ctx.normality, runs=labels(strata)), "weights_kurtosis.png")
            shown["kurtosis"] = [label(r) for r in strata]
        strata = reps("C4")
        if strata and ctx.gradients is not None:
            paths["gradients"] = save(plot.gradient_flow(ctx.gradients, runs=labels(strata)), "gradient_flow.png")
            shown["gradients"] = [label(r) for r in strata]
        eligible = ctx.positions(np.asarray(ctx.labels)[ctx.runs.eligible()].tolist())
        if eligible.size:
            fraction = np.full(ctx.labels.size, np.nan)  # the runs that trained; the others not drawn
            fraction[eligible] = ctx.run_saturation()[eligible]
            for key, factors, name in (("sweep", plot.SWEEP_FACTORS, "sweep_comparison.png"),
                                       ("activation", ("activation_fn",), "activation_comparison.png")):
                if _varying_factors(ctx.ds, factors):
                    paths[key] = save(plot.sweep_comparison(ctx.ds, factors=factors, values=fraction), name)
            shown["sweep"] = shown["activation"] = [f"the {eligible.size} runs that trained"]
    try:
        from actstats.report.training_figures import training_curves

        paths["training"] = training_curves(ctx.ds, list(range(ctx.ds.sizes["run"])), directory)
        shown["training"] = ["every run"]
    except ImportError:
        pass
    return {k: v for k, v in paths.items() if v}, shown
