"""docs/findings.md, generated: the answer to the question, from the project's own report.

``python tools/findings.py --data data --out docs`` (what ``make findings`` runs after
capturing the experiments; public actstats API only) writes ``docs/findings.md`` and
``docs/findings/*.png``. For each answer sweep it runs :func:`actstats.report.build_report`
(the verdicts C1–C6 are the report's, word for word), then adds breakdowns by
activation, initialisation, depth, optimizer and layer with bootstrap intervals over
runs, and one section per reproduction (Glorot & Bengio 2010, Saxe et al. 2018, the
initialisation scale). Every number in the text is computed here from the stores; the
comparisons with the literature are sentences chosen by those numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
import warnings

import numpy as np

from actstats.report.figures import pyplot

ANSWER_SWEEPS = (("answer", "digits"), ("answer_mnist1d", "mnist1d"))
EPS = 0.05


# ----------------------------------------------------------------------------- helpers


def _fmt(x, digits=2):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _ci(values, seed=0):
    """Mean and 95% BCa bootstrap interval over runs (NaN skipped)."""
    from actstats.kernels import bootstrap_mean_interval

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    if values.size == 1 or np.ptp(values) == 0:
        return float(values[0]), float(values[0]), float(values[0])
    estimate, low, high = bootstrap_mean_interval(values, seed=seed)
    return float(estimate), float(low), float(high)


def _cell(values):
    mean, low, high = _ci(values)
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]" if np.isfinite(mean) else "–"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------- answer sweeps


class Sweep:
    """One answer store: its report's verdicts and per-run numbers for the breakdowns."""

    def __init__(self, name, dataset, store, work, reuse=False):
        import xarray as xr

        from actstats import queries
        from actstats.report import build_report, init_labels, last_complete
        from actstats.store import open_store

        self.name, self.dataset, self.store = name, dataset, store
        started = time.perf_counter()
        existing = os.path.join(work, name, "findings.json")
        self.reused = bool(reuse and os.path.exists(existing) and os.path.getmtime(existing) >= _newest_write(store))
        if self.reused:
            with open(existing) as f:  # a report of this store as it is now
                self.findings = json.load(f)
        else:
            self.findings = build_report(store, os.path.join(work, name), eps=EPS, progress=False)
        self.report_seconds = time.perf_counter() - started
        self.figures = os.path.join(work, name, "figures")
        ds = open_store(store)
        last = last_complete(ds)
        keep = np.flatnonzero(last >= 0)
        ds, last = ds.isel(run=keep), last[keep]
        self.ds, self.last = ds, last
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saturation = queries.saturation(ds, eps=EPS, by=("run", "epoch", "layer", "split")).compute()
        runs = np.arange(ds.sizes["run"])
        at_last = saturation.isel(epoch=xr.DataArray(last, dims="run"))
        self.layer_fraction = at_last["fraction"].sel(split="train").transpose("run", "layer").values
        self.layer_fraction_test = at_last["fraction"].sel(split="test").transpose("run", "layer").values
        self.initial_fraction = saturation["fraction"].sel(split="train").isel(epoch=0).mean("layer", skipna=True).values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.run_fraction = np.nanmean(self.layer_fraction, axis=1)
            self.run_fraction_test = np.nanmean(self.layer_fraction_test, axis=1)
        self.factors = {
            "activation": ds["activation_fn"].values.astype(str),
            "init": init_labels(ds),
            "depth": ds["depth"].values.astype(int),
            "optimizer": ds["optimizer"].values.astype(str),
        }
        accuracy = ds["test_accuracy"].values if "test_accuracy" in ds else np.full(ds["complete"].shape, np.nan)
        self.accuracy = accuracy[runs, last]
        self.diverged = (
            ds["diverged"].values[runs, last] if "diverged" in ds else np.zeros(len(runs), dtype=bool)
        ) | ~np.isfinite(self.run_fraction)
        self.n_runs = len(runs)
        self.epochs = float(ds["epoch"].values[-1])
        # weights at initialisation and at each run's last epoch (histogram CDF path: fast)
        ends = sorted(set(last.tolist()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            normality = queries.weight_normality(ds.isel(epoch=sorted({0, *ends})), by=("run", "epoch", "layer"),
                                                 families=("normal",), method="histogram").compute()
        self.kurtosis_init = normality["excess_kurtosis"].isel(epoch=0).transpose("run", "layer").values
        positions = np.searchsorted(sorted({0, *ends}), last)
        end = normality.isel(epoch=xr.DataArray(positions, dims="run"))
        self.kurtosis_end = end["excess_kurtosis"].transpose("run", "layer").values
        self.gaussian_end = end["gaussian"].transpose("run", "layer").values.astype(float)
        self.gaussian_end[~np.isfinite(self.kurtosis_end)] = np.nan

    def claim(self, claim_id):
        return next(c for c in self.findings["claims"] if c["id"] == claim_id)

    def by(self, factor, values, where=None, levels=None):
        """Rows ``level, runs, mean [95% CI]`` of ``values`` over runs, by ``factor``."""
        labels = self.factors[factor]
        where = np.ones(self.n_runs, dtype=bool) if where is None else where
        rows = []
        for level in levels if levels is not None else sorted(set(labels[where].tolist()), key=str):
            pick = where & (labels == level)
            rows.append((level, int(pick.sum()), _cell(values[pick])))
        return rows


def _two_way(sweep, values, row_factor, column_factor, where=None):
    where = np.ones(sweep.n_runs, dtype=bool) if where is None else where
    rows_levels = sorted(set(sweep.factors[row_factor][where].tolist()), key=str)
    column_levels = sorted(set(sweep.factors[column_factor][where].tolist()), key=str)
    rows = []
    for r in rows_levels:
        row = [r]
        for c in column_levels:
            pick = where & (sweep.factors[row_factor] == r) & (sweep.factors[column_factor] == c)
            row.append(_fmt(np.nanmean(values[pick])) if pick.any() and np.isfinite(values[pick]).any() else "–")
        rows.append(row)
    return _table([f"{row_factor} \\ {column_factor}"] + [str(c) for c in column_levels], rows)


def _copy_figure(sweep, name, out_dir, new_name):
    source = os.path.join(sweep.figures, name)
    if not os.path.exists(source):
        return None
    shutil.copyfile(source, os.path.join(out_dir, new_name))
    return new_name


# ---------------------------------------------------------------------- reproductions


def glorot_section(store, figures_dir):
    """Glorot & Bengio 2010, Fig. 2: mean activation per layer over training."""
    from actstats.store import open_store

    ds = open_store(store)
    train = np.flatnonzero(ds["split"].values == "train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean = ds["activation"].isel(sample=train).mean(["sample", "unit"]).compute().values  # run, epoch, layer
    epochs = ds["epoch"].values
    depth = ds["depth"].values
    plt = pyplot()
    depths = sorted(set(depth.tolist()))
    fig, axes = plt.subplots(1, len(depths), figsize=(5 * len(depths), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    lines = []
    for ax, d in zip(axes, depths):
        runs = np.flatnonzero(depth == d)
        for layer in range(d):
            values = mean[runs][:, :, layer]
            ax.plot(epochs, values.mean(axis=0), label=f"layer {layer + 1}")
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), alpha=0.2)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(0, epochs.max() * 1.1)
        ax.set_title(f"depth {d}: mean sigmoid activation (training probes; {len(runs)} seeds)")
        ax.set_xlabel("epoch")
        ax.axhline(0.5, color="grey", lw=0.5)
        top = mean[runs][:, :, d - 1]
        top_mean = top.mean(axis=0)
        lowest = int(np.argmin(top_mean))
        recovered = float(top_mean[-1] - top_mean[lowest])
        lower = mean[runs][:, -1, : d - 1].mean(axis=0)
        acc = ds["test_accuracy"].values[runs, -1] if "test_accuracy" in ds else np.full(len(runs), np.nan)
        lines.append((d, len(runs), float(top_mean[0]), float(top_mean[lowest]), float(epochs[lowest]),
                      float(top_mean[-1]), recovered, lower, float(np.mean(acc))))
    axes[0].set_ylabel("mean activation")
    axes[-1].legend(loc="center right")
    fig.tight_layout()
    fig.savefig(os.path.join(figures_dir, "glorot2010_mean_activation.png"), bbox_inches="tight", dpi=90)
    plt.close(fig)
    rows, sentences = [], []
    for d, n, start, low, at, end, recovered, lower, acc in lines:
        rows.append((d, n, _fmt(start), f"{_fmt(low, 3)} (epoch {at:g})", _fmt(end, 3),
                     ", ".join(_fmt(v) for v in lower), _fmt(acc)))
        collapsed = low < 0.2
        desaturated = recovered > 0.1
        sentences.append(
            f"With depth {d} the top layer's mean activation "
            + (f"collapsed from {start:.2f} to {low:.3f} (lowest at epoch {at:g})" if collapsed else
               f"did not collapse (lowest {low:.2f})")
            + (f" and recovered by {recovered:.2f} by epoch {epochs[-1]:g}" if desaturated else
               f" and had not desaturated by epoch {epochs[-1]:g} (it ends at {end:.3f})")
            + "; the layers below end at " + ", ".join(f"{v:.2f}" for v in lower)
            + (", above 0.5 and rising with height, as in the paper." if np.all(lower >= 0.5) and np.all(np.diff(lower) >= 0)
               else ".")
            + f" Test accuracy at the end: {acc:.2f}"
            + (" — chance level: these networks had not started to learn, the plateau that Glorot & Bengio "
               "describe before the top layer desaturates." if acc < 0.2 else ".")
        )
    table = _table(["depth", "seeds", "top layer at init", "top layer lowest", "top layer at end",
                    "lower layers at end", "test accuracy"], rows)
    return table, sentences


def saxe_section(store, figures_dir):
    """Saxe et al. 2018: tanh layers saturate over training, ReLU layers do not."""
    from actstats import queries
    from actstats.activations import get_activation
    from actstats.store import open_store

    ds = open_store(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = queries.saturation(ds, eps=EPS, by=("run", "epoch", "layer", "split")).compute()
    fraction = result["fraction"].sel(split="train").transpose("run", "epoch", "layer").values
    epochs = ds["epoch"].values
    names = ds["activation_fn"].values.astype(str)
    plt = pyplot()
    kinds = list(dict.fromkeys(names.tolist()))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    rows = []
    for ax, kind in zip(axes, kinds):
        runs = np.flatnonzero(names == kind)
        for layer in range(fraction.shape[2]):
            values = fraction[runs][:, :, layer]
            if not np.isfinite(values).any():
                continue
            ax.plot(epochs, np.nanmean(values, axis=0), label=f"layer {layer + 1}")
            start, end = np.nanmean(values[:, 0]), np.nanmean(values[:, -1])
            rows.append((kind, layer + 1, len(runs), _fmt(start), _fmt(end), _fmt(end - start)))
        ax.set_xscale("symlog", linthresh=float(epochs[1]))
        ax.set_xlim(0, epochs.max() * 1.1)
        what = "dead (exactly 0)" if get_activation(kind).saturation == "dead_at_zero" else f"within {EPS} of ±1"
        ax.set_title(f"{kind}: fraction of activations {what}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("fraction (training probes)")
    axes[-1].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(figures_dir, "saxe2018_saturation.png"), bbox_inches="tight", dpi=90)
    plt.close(fig)
    change = {k: float(np.nanmean(fraction[names == k][:, -1] - fraction[names == k][:, 0])) for k in kinds}
    accuracy = {k: float(np.mean(ds["test_accuracy"].values[names == k, -1])) for k in kinds} if "test_accuracy" in ds else {}
    table = _table(["activation", "layer", "runs", "fraction at init", "at the end", "change"], rows)
    return table, change, accuracy, float(epochs[-1])


def init_scale_section(store, figures_dir):
    """Saturation, gradient size and accuracy against the scale of N(0, s²) initial weights."""
    from actstats import queries
    from actstats.report import init_labels
    from actstats.store import open_store

    ds = open_store(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sat = queries.saturation(ds, eps=EPS, by=("run", "epoch", "split")).compute()
        grads = queries.gradient_flow(ds).compute()
    scales = np.array([json.loads(c)["model"]["init_scale"] for c in ds["config"].values.astype(str)])
    names = ds["activation_fn"].values.astype(str)
    at_init = sat["fraction"].sel(split="train").isel(epoch=0).values
    at_end = sat["fraction"].sel(split="train").isel(epoch=-1).values
    grad = grads["weight_grad_norm"].isel(epoch=0).sel(layer=1).values
    accuracy = ds["test_accuracy"].values[:, -1]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    rows = []
    for index, kind in enumerate(dict.fromkeys(names.tolist())):
        color = f"C{index}"
        levels = sorted(set(scales[names == kind].tolist()))
        pick = [(names == kind) & (scales == s) for s in levels]
        series = [
            [np.mean(at_init[p]) for p in pick], [np.mean(at_end[p]) for p in pick],
            [np.mean(grad[p]) for p in pick], [np.mean(accuracy[p]) for p in pick],
        ]
        axes[0].plot(levels, series[1], marker="o", color=color, label=f"{kind}, end")
        axes[0].plot(levels, series[0], marker=".", ls=":", color=color, label=f"{kind}, init")
        axes[1].plot(levels, series[2], marker="o", color=color, label=kind)
        axes[2].plot(levels, series[3], marker="o", color=color, label=kind)
        for s, values in zip(levels, zip(*series)):
            rows.append((kind, f"{s:g}", *[_fmt(v, 3) for v in values]))
    for ax, title in zip(axes, ["saturated fraction (training probes)", "‖∂L/∂W₁‖ at initialisation",
                                "test accuracy at the end"]):
        ax.set_xscale("log")
        ax.set_xlabel("initial weight scale s in N(0, s²)")
        ax.set_title(title)
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(figures_dir, "init_scale.png"), bbox_inches="tight", dpi=90)
    plt.close(fig)
    table = _table(["activation", "scale s", "saturated at init", "saturated at end", "‖∂L/∂W₁‖ at init",
                    "test accuracy"], rows)
    data = {"scales": scales, "names": names, "at_end": at_end, "grad": grad, "accuracy": accuracy,
            "labels": init_labels(ds)}
    return table, data


# ---------------------------------------------------------------------- the document


def _verdict_table(sweeps, claim_id):
    rows = []
    for s in sweeps:
        c = s.claim(claim_id)
        rows.append((s.dataset, f"**{c['verdict']}**", c["evidence"].get("summary", "").replace("|", "/")))
    return _table(["sweep", "verdict", "numbers (from the report)"], rows)


def write_findings(data_dir: str, out_dir: str, work_dir: str, timings: dict[str, float], *,
                   reuse_reports: bool = False) -> str:
    started = time.perf_counter()
    figures_dir = os.path.join(out_dir, "findings")
    os.makedirs(figures_dir, exist_ok=True)
    sweeps = []
    for name, dataset in ANSWER_SWEEPS:
        store = os.path.join(data_dir, f"{name}.zarr")
        if os.path.exists(store):
            sweeps.append(Sweep(name, dataset, store, work_dir, reuse=reuse_reports))
    if not sweeps:
        raise SystemExit(f"findings: no answer store in {data_dir} (run `make findings-data` first)")
    for s in sweeps:
        timings[f"report of {s.name}" + (" (reused: not computed again in this generation)" if s.reused else "")] = (
            None if s.reused else s.report_seconds)
    lines = [
        "# Findings: are the hidden activations of trained sigmoid networks saturated?",
        "",
        f"*Generated by `make findings` on {datetime.date.today().isoformat()} from the stores in `{data_dir}/` "
        "(`python tools/findings.py`); every number below comes from them. Do not edit by hand: "
        "change the generator or the configs and run it again.*",
        "",
    ]
    lines += _answer(sweeps)
    lines += _sweeps_table(sweeps, data_dir)
    for claim_id in ("C1", "C2", "C3", "C4", "C5", "C6"):
        lines += _claim_section(sweeps, claim_id, figures_dir)
    lines += _reproductions(data_dir, figures_dir, sweeps)
    lines += _not_supported(sweeps)
    timings["this document: reports, breakdowns, reproductions, figures"] = time.perf_counter() - started
    lines += _regenerate(timings)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "findings.md"), "w") as f:
        f.write(text)
    return text


def _sigmoid_runs(s):
    return s.factors["activation"] == "sigmoid"


def _answer(sweeps):
    parts, medians, shares, large, rest, initial_large = [], [], [], [], [], []
    for s in sweeps:
        sig = _sigmoid_runs(s) & ~s.diverged
        layer = s.layer_fraction[sig]
        finite = layer[np.isfinite(layer)]
        normal_large = sig & (s.factors["init"] == "normal(1)")
        others = sig & (s.factors["init"] != "normal(1)")
        medians.append(float(np.median(finite)))
        shares.append(float(np.mean(finite > 0.5)))
        large.append(_ci(s.run_fraction[normal_large])[0])
        rest.append(_ci(s.run_fraction[others])[0])
        initial_large.append(float(np.nanmean(s.initial_fraction[normal_large])) if normal_large.any() else np.nan)
        parts.append(
            f"On **{s.dataset}** ({sig.sum()} trained sigmoid networks, {s.n_runs} runs in all, {s.epochs:g} epochs), "
            f"the median fraction of a hidden layer's activations within {EPS} of 0 or 1 on training points is "
            f"{medians[-1]:.3f} (90th percentile {np.quantile(finite, 0.9):.3f}; {shares[-1]:.0%} of run×layer pairs "
            f"have more than half saturated). From N(0, 1) initial weights the mean is "
            f"{_cell(s.run_fraction[normal_large])} ({initial_large[-1]:.2f} already at initialisation); from every "
            f"other initialisation {_cell(s.run_fraction[others])} (mean over runs, 95% bootstrap interval)."
        )
    if max(medians) < 0.1 and max(shares) < 0.25:
        headline = ("**Mostly no.** A trained sigmoid network's hidden activations on its training points are, in "
                    "general, not saturated near 0 or 1: in most layers only a small minority of activations sit "
                    f"within {EPS} of a bound at the end of training.")
    elif min(medians) > 0.5:
        headline = ("**Yes, mostly.** In most layers of the trained sigmoid networks more than half of the "
                    f"activations on training points sit within {EPS} of 0 or 1.")
    else:
        headline = ("**It depends.** Some trained sigmoid networks have saturated hidden layers on their training "
                    "points and many do not; the breakdowns below say which.")
    if all(np.isfinite(v) for v in large + rest) and min(large) > 2 * max(rest) and min(initial_large) > 0.5 * min(large):
        headline += (" Heavy saturation comes with large initial weights (N(0, 1)), and it is there from the first "
                     "step: initialisation, not training, puts the units there.")
    return [
        "## The answer",
        "",
        headline + " The claims that come with the question fare as the sections below show; the verdicts are "
        "the report's (`actstats report`), applied to each answer sweep.",
        "",
        *[p + "\n" for p in parts],
    ]


def _sweeps_table(sweeps, data_dir):
    rows = []
    for s in sweeps:
        rows.append((s.dataset, f"`data/configs/{s.name}.toml`", s.n_runs, int(s.diverged.sum()), f"{s.epochs:g}",
                     _fmt(float(np.nanmedian(s.accuracy)))))
    return [
        "## The sweeps",
        "",
        "Depth 1, 3 and 5 hidden layers of 64 units; sigmoid, tanh and ReLU; five initialisations (PyTorch's "
        "default U(±1/√fan_in), `xavier_uniform`, N(0, 1) `normal(1)`, N(0, 0.01²) `normal(0.01)`, LSUV); SGD "
        "(lr 0.1) and Adam (lr 0.001); three seeds; 200 training and 100 held-out probes recorded at 12 "
        "log-spaced moments. Saturation is the fraction of activations within 0.05 of a bound of the "
        "activation function (for ReLU: exactly 0, a dead unit).",
        "",
        _table(["dataset", "config", "runs", "diverged or unusable", "epochs", "median test accuracy"], rows),
        "",
    ]


def _claim_section(sweeps, claim_id, figures_dir):
    first = sweeps[0]
    claim = first.claim(claim_id)
    lines = [f"## {claim_id}: {claim['claim']}", "", f"*Criterion (the report's):* {claim['criterion']}", "",
             _verdict_table(sweeps, claim_id), ""]
    figure_names = {
        "C1": [("saturation_heatmap.png", "saturated fraction by layer and epoch")],
        "C2": [("trajectories.png", "training vs held-out")],
        "C3": [("weights_qq.png", "weights against the normal"), ("weights_kurtosis.png", "excess kurtosis over training")],
        "C4": [("gradient_flow.png", "gradient flow")],
        "C5": [("sweep_comparison.png", "saturated fraction by factor")],
        "C6": [("activation_comparison.png", "by activation function")],
    }[claim_id]
    detail = {
        "C1": _c1_detail, "C2": _c2_detail, "C3": _c3_detail, "C4": _c4_detail, "C5": _c5_detail, "C6": _c6_detail,
    }[claim_id]
    lines += detail(sweeps)
    for s in sweeps:
        for name, caption in figure_names:
            copied = _copy_figure(s, name, figures_dir, f"{s.name}_{name}")
            if copied:
                lines += [f"![{claim_id}, {s.dataset}: {caption}](findings/{copied})", ""]
    lines += [LITERATURE[claim_id](sweeps), ""]
    return lines


def _c1_detail(sweeps):
    lines = ["Where it holds: mean saturated fraction on training probes at the end of training (mean over a "
             "run's layers, then over runs), by activation and initialisation:", ""]
    for s in sweeps:
        lines += [f"*{s.dataset}*", "", _two_way(s, s.run_fraction, "init", "activation", ~s.diverged), ""]
    lines += ["By depth and by layer (sigmoid runs; layer 1 is the lowest):", ""]
    for s in sweeps:
        sig = _sigmoid_runs(s) & ~s.diverged
        rows = []
        for depth in sorted(set(s.factors["depth"][sig].tolist())):
            pick = sig & (s.factors["depth"] == depth)
            rows.append((depth, int(pick.sum()), *[_cell(s.layer_fraction[pick, k]) for k in range(depth)]))
        width = max(len(r) for r in rows)
        rows = [r + ("",) * (width - len(r)) for r in rows]
        header = ["depth", "runs"] + [f"layer {k + 1}" for k in range(width - 2)]
        lines += [f"*{s.dataset}*", "", _table(header, rows), ""]
    return lines


def _c2_detail(sweeps):
    lines = ["Training minus held-out saturated fraction at the end, by activation (mean over runs, 95% interval):", ""]
    for s in sweeps:
        rows = s.by("activation", s.run_fraction - s.run_fraction_test, ~s.diverged)
        lines += [f"*{s.dataset}*", "", _table(["activation", "runs", "train − held-out"], rows), ""]
    return lines


def _c3_detail(sweeps):
    lines = ["Excess kurtosis of each layer's weights (median over run×layer pairs) at initialisation and at the "
             "end, and the share of pairs Gaussian by the report's effect-size criterion at the end, by "
             "initialisation:", ""]
    for s in sweeps:
        rows = []
        for level in sorted(set(s.factors["init"].tolist())):
            pick = (s.factors["init"] == level) & ~s.diverged
            k0, k1, g = s.kurtosis_init[pick], s.kurtosis_end[pick], s.gaussian_end[pick]
            rows.append((level, int(pick.sum()), _fmt(np.nanmedian(k0)), _fmt(np.nanmedian(k1)),
                         f"{np.nanmean(g):.0%}" if np.isfinite(g).any() else "–"))
        lines += [f"*{s.dataset}*", "", _table(["init", "runs", "kurtosis at init", "kurtosis at end",
                                                 "Gaussian at end"], rows), ""]
        uniform = np.isin(s.factors["init"], ["default", "xavier_uniform"]) & ~s.diverged
        if uniform.any():
            g = s.gaussian_end[uniform]
            g = g[np.isfinite(g)]
            lines += [f"From the non-Gaussian (uniform) initialisations alone, which is what the claim is about: "
                      f"{int(g.sum())} of {g.size} run×layer weight matrices ({g.mean():.0%}) are Gaussian by the "
                      f"criterion at the end, median excess kurtosis {np.nanmedian(s.kurtosis_init[uniform]):.2f} at "
                      f"initialisation and {np.nanmedian(s.kurtosis_end[uniform]):.2f} at the end.", ""]
    for s in sweeps:
        c = s.claim("C3")["evidence"]
        if "best_family_counts" in c:
            counts = ", ".join(f"{k} {v}" for k, v in c["best_family_counts"].items())
            lines += [f"*{s.dataset}*: best family by AIC at the last epoch: {counts}; median excess kurtosis "
                      f"{_fmt(c.get('median_excess_kurtosis'))} at the end against "
                      f"{_fmt(c.get('median_excess_kurtosis_at_initialisation'))} at initialisation.", ""]
    return lines


def _c4_detail(sweeps):
    lines = []
    for s in sweeps:
        c = s.claim("C4")["evidence"]
        if "median_mean_derivative_last_epoch" in c:
            lines += [f"*{s.dataset}*: the mean derivative f′(z) over a layer's units at the last epoch has "
                      f"median {_fmt(c['median_mean_derivative_last_epoch'], 3)} over bounded run×layer pairs "
                      f"(maximum {_fmt(c.get('max_mean_derivative_last_epoch'), 3)}; σ′ ≤ 0.25, tanh′ ≤ 1).", ""]
    return lines


def _c5_detail(sweeps):
    lines = ["Factor effects (the report's Kruskal–Wallis across levels, BH-adjusted):", ""]
    for s in sweeps:
        factors = s.claim("C5")["evidence"].get("factors", {})
        rows = [(k, ", ".join(f"{lvl} {m:.2f}" for lvl, m in v["level_means"].items()), _fmt(v["effect"]),
                 f"{v['pvalue_adjusted']:.2g}") for k, v in factors.items()]
        lines += [f"*{s.dataset}*", "", _table(["factor", "mean saturated fraction by level", "effect", "adjusted p"],
                                               rows), ""]
    lines += ["By optimizer and activation (mean saturated fraction at the end):", ""]
    for s in sweeps:
        lines += [f"*{s.dataset}*", "", _two_way(s, s.run_fraction, "optimizer", "activation", ~s.diverged), ""]
    return lines


def _c6_detail(sweeps):
    lines = []
    for s in sweeps:
        rows = s.by("activation", s.run_fraction, ~s.diverged)
        accuracy = s.by("activation", s.accuracy, ~s.diverged)
        rows = [r + (a[2],) for r, a in zip(rows, accuracy)]
        lines += [f"*{s.dataset}*", "", _table(["activation", "runs", "saturated (ReLU: dead) fraction",
                                                 "test accuracy"], rows), ""]
    return lines


def _verdicts(sweeps, claim_id):
    return [s.claim(claim_id)["verdict"] for s in sweeps]


def _where_most(s):
    """The init with the most saturated sigmoid runs, and the top layer against the others."""
    sig = _sigmoid_runs(s) & ~s.diverged
    means = {level: np.nanmean(s.run_fraction[sig & (s.factors["init"] == level)])
             for level in set(s.factors["init"][sig].tolist())}
    worst = max(means, key=lambda k: means[k]) if means else None
    deep = sig & (s.factors["depth"] >= 3)
    top = np.array([s.layer_fraction[r, s.factors["depth"][r] - 1] for r in np.flatnonzero(deep)])
    below = np.array([np.nanmean(s.layer_fraction[r, : s.factors["depth"][r] - 1]) for r in np.flatnonzero(deep)])
    return worst, means.get(worst, np.nan), float(np.nanmean(top)) if top.size else np.nan, \
        float(np.nanmean(below)) if below.size else np.nan


def _lit_c1(sweeps):
    parts = []
    for s in sweeps:
        worst, value, top, below = _where_most(s)
        parts.append(f"on {s.dataset} the most saturated sigmoid runs come from `{worst}` ({value:.2f} on average), "
                     f"and in networks of depth 3 or more the top layer averages {top:.2f} against {below:.2f} for "
                     f"the layers below")
    return ("*Literature.* Glorot & Bengio (2010) saw the top hidden layer of deep sigmoid networks saturate at 0 "
            "early in training (reproduced below) while lower layers did not; they argued against the sigmoid "
            "for deep networks on these grounds. Verdicts here: " + ", ".join(_verdicts(sweeps, "C1"))
            + ". Where saturation occurs: " + "; ".join(parts) + ".")


def _lit_c2(sweeps):
    return ("*Literature.* The question's premise (saturation on training points, more than on unseen points) "
            "has no direct source we know of; it is tested here with paired sample-level comparisons. Verdicts: "
            + ", ".join(_verdicts(sweeps, "C2")) + ".")


def _lit_c3(sweeps):
    return ("*Literature.* Trained weights are often said to stay near their initial distribution in wide "
            "networks (the lazy/NTK regime; Jacot et al. 2018; Lee et al. 2019) and to develop heavy tails "
            "with longer training and larger learning rates (Martin & Mahoney 2021). Verdicts here: "
            + ", ".join(_verdicts(sweeps, "C3")) + ". The initialisation decides much of it (table above): "
            "uniform initial weights have excess kurtosis −1.2, and the table shows how far training moves them.")


def _lit_c4(sweeps):
    return ("*Literature.* σ′(z) ≤ 1/4 makes back-propagated signals shrink by at least 4× per sigmoid layer "
            "unless the weights compensate (Glorot & Bengio 2010; Hochreiter 1991). What matters in the data "
            "is whether *more* saturation goes with *smaller* gradients within a run. Verdicts: "
            + ", ".join(_verdicts(sweeps, "C4")) + ". The initialisation-scale experiment below looks at the "
            "other side: whether gradients vanish with small weights, where nothing saturates.")


def _lit_c5(sweeps):
    return ("*Literature.* Mishkin & Matas (2016, LSUV) and Glorot & Bengio (2010, normalised init) report "
            "that the initialisation decides whether deep networks train; Kingma & Ba (2015) make Adam's "
            "step sizes insensitive to gradient scale. Verdicts: " + ", ".join(_verdicts(sweeps, "C5")) + ".")


def _lit_c6(sweeps):
    relu = [f"{np.nanmean(s.run_fraction[s.factors['activation'] == 'relu']):.2f} on {s.dataset}"
            for s in sweeps if (s.factors["activation"] == "relu").any()]
    note = (" The ReLU rows count dead units (exactly 0), not saturation: " + "; ".join(relu) + ".") if relu else ""
    return ("*Literature.* Saxe et al. (2018) found that tanh networks saturate as training goes on while ReLU "
            "networks, which have no upper bound, do not (reproduced below); Glorot & Bengio (2010) found tanh "
            "and softsign saturating less than sigmoid at the top. Verdicts here: "
            + ", ".join(_verdicts(sweeps, "C6")) + "." + note)


LITERATURE = {"C1": _lit_c1, "C2": _lit_c2, "C3": _lit_c3, "C4": _lit_c4, "C5": _lit_c5, "C6": _lit_c6}


def _reproductions(data_dir, figures_dir, sweeps):
    lines = ["## Reproductions", ""]
    store = os.path.join(data_dir, "glorot2010.zarr")
    if os.path.exists(store):
        table, sentences = glorot_section(store, figures_dir)
        lines += [
            "### Glorot & Bengio (2010), Fig. 2: the top sigmoid layer saturates first",
            "",
            "*Paper:* with the standard initialisation, the top hidden layer's sigmoid activations are pushed to 0 "
            "early in training while the lower layers' means stay above 0.5, ordered by height; the top layer "
            "slowly desaturates later (with depth 5, it did not). *Here* (`data/configs/glorot2010.toml`; 256 "
            "units, digits, SGD lr 0.1, mini-batches of 10):",
            "",
            table,
            "",
            *[s + "\n" for s in sentences],
            "![Glorot 2010 reproduction](findings/glorot2010_mean_activation.png)",
            "",
        ]
    store = os.path.join(data_dir, "saxe2018.zarr")
    if os.path.exists(store):
        table, change, accuracy, end = saxe_section(store, figures_dir)
        tanh, relu = change.get("tanh", np.nan), change.get("relu", np.nan)
        verdict = ("reproduced: tanh layers saturate as training goes on, ReLU layers do not grow more dead"
                   if tanh > 0.1 and relu < tanh / 2 else "not reproduced at this scale")
        lines += [
            "### Saxe et al. (2018): tanh saturates over training, ReLU does not",
            "",
            "*Paper:* in the 12-10-7-5-4-3-2 network, tanh layers move into saturation during training while "
            f"ReLU layers do not. *Here* (`data/configs/saxe2018.toml`, {end:g} epochs, 3 seeds each): the "
            f"saturated fraction changes on average by {tanh:+.2f} per tanh layer and the dead fraction by "
            f"{relu:+.2f} per ReLU layer from initialisation to the end: {verdict}. Test accuracy: "
            + ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items()) + ".",
            "",
            table,
            "",
            "![Saxe 2018 reproduction](findings/saxe2018_saturation.png)",
            "",
        ]
    store = os.path.join(data_dir, "init_scale.zarr")
    if os.path.exists(store):
        table, data = init_scale_section(store, figures_dir)
        lines += [
            "### Initialisation scale: small weights vanish, large weights saturate",
            "",
            "*Claim (the question's answer):* small initial weights make gradients vanish, large ones saturate "
            "the units, and both fail. *Here* (`data/configs/init_scale.toml`: 5 layers of 64 units, N(0, s²) "
            "weights, digits, SGD lr 0.1, 30 epochs, 2 seeds):",
            "",
            table,
            "",
            _init_scale_sentence(data),
            "",
            "![initialisation scale](findings/init_scale.png)",
            "",
        ]
    lines += _init_comparison(sweeps)
    return lines


def _init_scale_sentence(data):
    parts = []
    for kind in dict.fromkeys(data["names"].tolist()):
        pick = data["names"] == kind
        scales = data["scales"][pick]
        acc = data["accuracy"][pick]
        grad = data["grad"][pick]
        sat = data["at_end"][pick]
        small, large = scales.min(), scales.max()
        best = scales[np.argmax(acc)]
        parts.append(
            f"{kind}: at s = {small:g} the first layer's gradient norm is {np.mean(grad[scales == small]):.2g} and "
            f"accuracy {np.mean(acc[scales == small]):.2f}; at s = {large:g} {np.mean(sat[scales == large]):.0%} of "
            f"activations are saturated and accuracy is {np.mean(acc[scales == large]):.2f}; the best scale is "
            f"{best:g} (accuracy {acc.max():.2f})"
        )
    return ("Both failure modes appear, but not symmetrically: " + "; ".join(parts) + ". Large weights give "
            "*large*, not vanishing, first-layer gradients at initialisation; what fails with them is the "
            "saturated units' learning, and sigmoid networks tolerate it better than tanh.")


def _init_comparison(sweeps):
    lines = ["### LSUV and Xavier against PyTorch's default (answer sweeps)", "",
             "Mishkin & Matas (2016) report that LSUV matches or beats other initialisations for deep networks. "
             "Test accuracy at the end and saturated fraction, by initialisation (all activations, depths and "
             "optimizers; mean over runs, 95% interval):", ""]
    for s in sweeps:
        rows = s.by("init", s.accuracy, ~s.diverged)
        saturation = s.by("init", s.run_fraction, ~s.diverged)
        rows = [r + (a[2],) for r, a in zip(rows, saturation)]
        lines += [f"*{s.dataset}*", "", _table(["init", "runs", "test accuracy", "saturated fraction"], rows), ""]
    return lines


def _not_supported(sweeps):
    lines = ["## What the data do not support", ""]
    for claim_id in ("C1", "C2", "C3", "C4", "C5", "C6"):
        verdicts = _verdicts(sweeps, claim_id)
        if all(v == "supported" for v in verdicts):
            continue
        claim = sweeps[0].claim(claim_id)["claim"].rstrip(".")
        against = [f"{v} on {s.dataset}" for s, v in zip(sweeps, verdicts) if v != "supported"]
        backing = [s.dataset for s, v in zip(sweeps, verdicts) if v == "supported"]
        lines.append(f"- **{claim_id}** — {claim}: " + "; ".join(against)
                     + (f" (supported on {', '.join(backing)})" if backing else "") + ".")
    weak = [f"{s.dataset} (median test accuracy {np.nanmedian(s.accuracy):.2f})" for s in sweeps
            if np.nanmedian(s.accuracy) < 0.6]
    lines += ["", "Limits of this evidence: small networks (64 units) on small data sets (digits, mnist1d), 30 "
              "epochs, one learning rate per optimizer; no batch normalisation, no convolutions."
              + (" Not every network is fully trained: " + ", ".join(weak) + ", where small fully connected "
                 "networks learn slowly; its verdicts describe partly trained networks." if weak else "")
              + " The claims are about those networks, and the same commands run on larger sweeps.", ""]
    return lines


def _regenerate(timings):
    rows = [(k, f"{v / 60:.1f} min" if v is not None else "–") for k, v in timings.items()]
    return [
        "## How to regenerate",
        "",
        "```",
        "make findings        # captures every experiment (resuming), then writes this file and docs/findings/",
        "```",
        "",
        "or step by step: `actstats capture data/configs/NAME.toml -o data/NAME.zarr --resume --workers 2` for NAME "
        "in saxe2018, init_scale, answer, answer_mnist1d, glorot2010; then `python tools/findings.py --data data "
        "--out docs`. Times on this project's two-core machine (wall clock; a capture's span "
        "from its store's creation to its last write includes any time the machine spent on other jobs or "
        "the capture was paused, so read them as upper bounds):",
        "",
        _table(["step", "time"], rows),
        "",
    ]


def _newest_write(store) -> float:
    """The modification time of the newest file in a store."""
    newest = 0.0
    for root, _, files in os.walk(store):
        for name in files:
            newest = max(newest, os.path.getmtime(os.path.join(root, name)))
    return newest


def _store_span(store):
    """Seconds from a store's ``created_at`` to the newest chunk file in it, or None."""
    try:
        with open(os.path.join(store, "zarr.json")) as f:
            created = json.load(f)["attributes"]["created_at"]
        start = datetime.datetime.fromisoformat(created).timestamp()
    except (OSError, KeyError, ValueError):
        return None
    return max(_newest_write(store), start) - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/findings.py", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data", help="directory of the experiment stores (default: data)")
    parser.add_argument("--out", default="docs", help="writes OUT/findings.md and OUT/findings/ (default: docs)")
    parser.add_argument("--work", default="build/findings", help="the full reports (default: build/findings)")
    parser.add_argument("--reuse-reports", action="store_true",
                        help="use a report in --work that is newer than its store instead of computing it again")
    args = parser.parse_args(argv)
    timings = {}
    # data/timings/NAME.seconds: written by `make findings-data` after a capture that wrote
    # records; else the span from the store's created_at to its last chunk write
    directory = os.path.join(args.data, "timings")
    for name in ("saxe2018", "init_scale", "answer", "answer_mnist1d", "glorot2010"):
        path = os.path.join(directory, f"{name}.seconds")
        if os.path.exists(path):
            with open(path) as f:
                timings[f"capture of {name}"] = float(f.read().strip())
        else:
            span = _store_span(os.path.join(args.data, f"{name}.zarr"))
            if span is not None:
                timings[f"capture of {name} (store creation to last write)"] = span
    started = time.perf_counter()
    write_findings(args.data, args.out, args.work, timings, reuse_reports=args.reuse_reports)
    print(f"findings: wrote {os.path.join(args.out, 'findings.md')} in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
