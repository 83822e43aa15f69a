"""docs/findings.md (tools/findings.py): the terminal phase, training well past zero training error.

From the stores of the sweeps in TERMINAL (terminal: width 64; terminal_wide: width 256;
terminal_mnist1d) and LR_SWEEP (learning rates within each optimizer): saturation per layer
against epoch, the low and high bounds
apart, per unit too, beside the training loss and each layer's weight norm; the change from
the record where the training accuracy first reaches FIT_ACCURACY to the last record, per run,
with a t interval over runs; its rate per decade of epochs; by optimizer, width and learning
rate. Every sentence is chosen by those numbers.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from actstats.report.figures import pyplot
from findings_common import (
    EPS, FIT_ACCURACY, MNIST1D_MLP_LEVEL, cell, direction, fmt, interval_text, markdown_table, t_interval, welch_interval,
)

#: The terminal-phase sweeps, each analysed the same way; adding one is one line here (and one
#: in findings.py's EXPERIMENTS). WIDTH_PAIR are compared at matched cells; LR_SWEEP varies the
#: learning rate within each optimizer.
TERMINAL = ("terminal", "terminal_wide", "terminal_mnist1d")
WIDTH_PAIR = ("terminal", "terminal_wide")
LR_SWEEP = "terminal_lr"
#: A cell whose runs start with at least this saturated fraction (mean over layers, epoch 0)
#: is saturated by its initialisation: reported apart, never pooled with the others.
INIT_SATURATED = 0.25


class Phase:
    """Per run of one experiment: the saturated fraction (mean over layers and per layer) at
    initialisation, at the fit and at the end, the change between the last two, its rate per
    decade of epochs, over the whole terminal phase and over its last decade."""

    def __init__(self, e, until=None):
        self.e = e
        f, last = e.fit_index, e.last
        if until is not None:  # the last complete record at or before epoch ``until``
            usable = e.complete & (e.epochs[None, :] <= until)
            last = np.where(usable.any(axis=1), usable.shape[1] - 1 - np.argmax(usable[:, ::-1], axis=1), -1)
        self.last = last
        self.fitted = (f >= 0) & (f < last)
        self.f = np.where(self.fitted, f, -1)
        epochs = e.epochs
        layers = e.fraction
        mean = e.mean_over_layers(layers)
        self.mean, self.layers = mean, layers
        self.init = mean[:, 0]
        self.at_fit, self.at_end = e.at(mean, self.f), e.at(mean, last)
        self.layers_fit, self.layers_end = e.at(layers, self.f), e.at(layers, last)
        self.low_end = e.at(e.mean_over_layers(e.fraction_low), last)
        self.high_end = e.at(e.mean_over_layers(e.fraction_high), last)
        self.change = np.where(self.fitted, self.at_end - self.at_fit, np.nan)
        self.layer_change = np.where(self.fitted[:, None], self.layers_end - self.layers_fit, np.nan)
        fit_epoch = np.where(self.fitted, epochs[np.maximum(self.f, 0)], np.nan)
        end_epoch = np.where(last >= 0, epochs[np.maximum(last, 0)], np.nan)
        self.fit_epoch, self.end_epoch = fit_epoch, end_epoch
        with np.errstate(divide="ignore", invalid="ignore"):
            decades = np.log10(end_epoch / fit_epoch)
            self.rate = np.where(decades > 0, self.change / decades, np.nan)
        # the last decade: from the record nearest at or before a tenth of the last epoch
        start = np.array([np.flatnonzero(epochs <= epochs[max(l, 0)] / 10).max(initial=0) for l in last])
        start = np.maximum(start, np.maximum(self.f, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            span = np.log10(end_epoch / epochs[start])
            late = self.at_end - e.at(mean, start)
            self.late_rate = np.where(self.fitted & (span > 0), late / span, np.nan)
        self.units_fit = e.at(e.mean_over_layers(e.units_saturated), self.f)
        self.units_end = e.at(e.mean_over_layers(e.units_saturated), last)
        norm = e.mean_over_layers(e.weight_norm)
        self.norm_fit, self.norm_end = e.at(norm, self.f), e.at(norm, last)
        loss = e.metric("train_loss")
        self.loss_fit, self.loss_end = e.at(loss, self.f), e.at(loss, last)

    def groups(self):
        """(label, runs) pools: activation × optimizer over the cells not saturated by their
        initialisation (all cells for ReLU, whose zeros are not a saturation), then each
        saturated-from-initialisation cell on its own."""
        e = self.e
        key = np.array([f"{a} · {o}" for a, o in zip(e.activation, e.optimizer_labels)])
        saturated = np.zeros(e.n_runs, dtype=bool)
        for label in e.cells():
            runs = e.cell_labels == label
            bounded = e.activation[runs][0] != "relu"
            if bounded and np.nanmean(self.init[runs]) >= INIT_SATURATED:
                saturated |= runs
        out = []
        for k in dict.fromkeys(key.tolist()):
            runs = np.flatnonzero((key == k) & ~saturated)
            if runs.size:
                inits = sorted(set(e.value_of("init")[runs].tolist())) if "init" in " ".join(e.factors) else []
                out.append((k + (f" ({', '.join(inits)})" if len(inits) > 1 else ""), runs))
        for label in e.cells():
            runs = np.flatnonzero((e.cell_labels == label) & saturated)
            if runs.size:
                out.append((f"{label} (saturated from initialisation)", runs))
        return out


def _rows(phase, groups):
    rows = []
    for label, runs in groups:
        fitted = runs[phase.fitted[runs]]
        seen = fitted if fitted.size else runs  # the fitted runs, or all when none fitted
        rows.append((
            label, f"{fitted.size} of {runs.size}", f"{np.nanmedian(phase.fit_epoch[runs]):g}" if fitted.size else "–",
            fmt(np.nanmean(phase.init[seen])), fmt(np.nanmean(phase.at_fit[fitted])) if fitted.size else "–",
            f"{fmt(np.nanmean(phase.at_end[seen]))} ({fmt(np.nanmean(phase.low_end[seen]))} / "
            f"{fmt(np.nanmean(phase.high_end[seen]))})",
            cell(phase.change[fitted], signed=True), cell(phase.rate[fitted], 3, signed=True),
            cell(phase.late_rate[fitted], 3, signed=True),
        ))
    return markdown_table(["runs (activation · optimizer)", "fitted", "fit epoch", "at init", "at fit",
                           "at end (low / high)", "change fit → end", "per decade", "per decade, last decade"], rows)


def _mechanism_rows(phase, groups):
    rows = []
    for label, runs in groups:
        fitted = runs[phase.fitted[runs]]
        if not fitted.size:
            continue
        rows.append((label, f"{fmt(np.nanmean(phase.units_fit[fitted]))} → {fmt(np.nanmean(phase.units_end[fitted]))}",
                     f"{fmt(np.nanmean(phase.norm_fit[fitted]), 1)} → {fmt(np.nanmean(phase.norm_end[fitted]), 1)}",
                     f"{np.nanmean(phase.loss_fit[fitted]):.3g} → {np.nanmean(phase.loss_end[fitted]):.3g}"))
    return markdown_table(["runs", "units saturated on most training probes", "weight norm ‖W‖_F (mean over layers)",
                           "training loss"], rows)


def _layer_rows(phase, groups):
    e = phase.e
    depth = phase.layers.shape[2]
    low, high = e.at(e.fraction_low, phase.last), e.at(e.fraction_high, phase.last)
    units = e.at(e.units_saturated, phase.last)
    rows = []
    for label, runs in groups:
        fitted = runs[phase.fitted[runs]]
        if fitted.size:
            rows.append((label, *[f"{cell(phase.layer_change[fitted, k], signed=True)}; end "
                                  f"{fmt(np.nanmean(low[fitted, k]))} / {fmt(np.nanmean(high[fitted, k]))}; units "
                                  f"{fmt(np.nanmean(units[fitted, k]))}" for k in range(depth)]))
    return markdown_table(["runs", *[f"layer {k + 1}" for k in range(depth)]], rows)


def _growing_layers(phase, runs):
    fitted = runs[phase.fitted[runs]]
    grows, falls = [], []
    for k in range(phase.layers.shape[2]):
        _, low, high = t_interval(phase.layer_change[fitted, k])
        if np.isfinite(low) and low > 0:
            grows.append(k + 1)
        elif np.isfinite(high) and high < 0:
            falls.append(k + 1)
    return grows, falls


def _most_changed(phase, fitted):
    """(layer, mean change) of the layer whose saturated fraction changes most after the fit."""
    if not fitted.size:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(phase.layer_change[fitted], axis=0)
    if not np.isfinite(means).any():
        return None
    k = int(np.nanargmax(np.abs(means)))
    return k + 1, float(means[k])


def _layers_text(numbers):
    return ("layer " + str(numbers[0]) if len(numbers) == 1 else
            "layers " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}")


def _group_sentence(phase, label, runs, width):
    fitted = runs[phase.fitted[runs]]
    activation = label.split(" · ")[0]
    if not fitted.size:
        return (f"- **{label}** (width {width}): none of the {runs.size} runs reached a training accuracy of "
                f"{FIT_ACCURACY:g}, so no terminal phase was observed.")
    mean, low, high = t_interval(phase.change[fitted])
    rate = t_interval(phase.rate[fitted])
    late = t_interval(phase.late_rate[fitted])
    word = direction(low, high)
    what = "share of activations exactly 0" if activation == "relu" else "saturated fraction"
    text = (f"- **{label}** (width {width}, {fitted.size} of {runs.size} runs fitted): after a median "
            f"{np.nanmedian(phase.end_epoch[fitted] - phase.fit_epoch[fitted]):.0f} epochs past the fit (training accuracy "
            f"≥ {FIT_ACCURACY:g}, reached at a median epoch {np.nanmedian(phase.fit_epoch[fitted]):g}), the {what} "
            f"on training points is {fmt(np.nanmean(phase.at_end[fitted]))}, against "
            f"{fmt(np.nanmean(phase.at_fit[fitted]))} at the fit and {fmt(np.nanmean(phase.init[fitted]))} at "
            f"initialisation: it {word} after the fit ({interval_text(mean, low, high, signed=True)}; "
            f"{interval_text(*rate, 3, signed=True)} per decade of epochs")
    if np.isfinite(late[0]):
        text += f", {interval_text(*late, 3, signed=True)} over the last decade"
    text += ")."
    grows, falls = _growing_layers(phase, runs)
    if grows:
        text += f" It grows in {_layers_text(grows)}."
    if falls:
        text += f" It falls in {_layers_text(falls)}."
    ratio = np.nanmean(phase.norm_end[fitted]) / np.nanmean(phase.norm_fit[fitted])
    text += (f" Meanwhile the training loss goes from {np.nanmean(phase.loss_fit[fitted]):.2g} to "
             f"{np.nanmean(phase.loss_end[fitted]):.2g} and the weight norm is multiplied by {ratio:.2f}.")
    return text


def _figure(experiments, activation, optimizer, figures_dir):
    """One row per cell of the terminal sweeps with this activation and optimizer (width 64
    from terminal, width 256 from terminal_wide), four panels: saturated fraction per layer
    (low bound solid, high dashed), units saturated, training loss, weight norm per layer."""
    rows = []
    for name, e in experiments:
        mine = (e.activation == activation) & (np.asarray(e.ds["optimizer"].values).astype(str) == optimizer)
        for label in e.cells():
            runs = np.flatnonzero(mine & (e.cell_labels == label))
            if runs.size:
                width = int(np.asarray(e.ds["width"].values)[runs[0]].max())
                scale = e.configs[runs[0]]["model"].get("init_scale", 1)
                rows.append((f"{e.dataset}, init {e.ds['init'].values[runs[0]]}({scale:g}), width {width}", e, runs))
    if not rows:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 4, figsize=(15, 2.6 * len(rows)), squeeze=False)
    for (title, e, runs), ax in zip(rows, axes):
        epochs = e.epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = np.nanmedian(np.where(e.fit_index[runs] >= 0, epochs[np.maximum(e.fit_index[runs], 0)], np.nan))
            for k in range(e.fraction.shape[2]):
                color = f"C{k}"
                ax[0].plot(epochs, np.nanmean(e.fraction_low[runs, :, k], axis=0), color=color, label=f"layer {k + 1} low")
                if activation != "relu":
                    ax[0].plot(epochs, np.nanmean(e.fraction_high[runs, :, k], axis=0), color=color, ls="--",
                               label=f"layer {k + 1} high")
                ax[1].plot(epochs, np.nanmean(e.units_saturated[runs, :, k], axis=0), color=color, label=f"layer {k + 1}")
                ax[3].plot(epochs, np.nanmean(e.weight_norm[runs, :, k], axis=0), color=color, label=f"layer {k + 1}")
            ax[2].plot(epochs, np.nanmean(e.metric("train_loss")[runs], axis=0), color="k", label="training loss")
        ax[2].set_yscale("log")
        twin = ax[2].twinx()
        twin.plot(epochs, np.nanmean(e.metric("train_accuracy")[runs], axis=0), color="C3", lw=0.8)
        twin.set_ylabel("training accuracy", color="C3")
        ax[0].set_ylabel(title)
        for a in ax:
            a.set_xscale("symlog", linthresh=float(epochs[epochs > 0].min()))
            a.set_xlim(0, epochs.max() * 1.1)
            if np.isfinite(fit):
                a.axvline(fit, color="grey", lw=0.6, ls=":")
    what = "dead (exactly 0)" if activation == "relu" else f"within {EPS} of a bound"
    for a, title in zip(axes[0], [f"fraction {what} (training probes)", "units at a bound on most probes",
                                  "training loss (log)", "‖W‖_F per layer"]):
        a.set_title(title)
    for a in axes[-1]:
        a.set_xlabel("epoch (dotted: the fit)")
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    name = f"terminal_{activation}_{optimizer}.png"
    fig.savefig(os.path.join(figures_dir, name), bbox_inches="tight", dpi=72)
    plt.close(fig)
    return name


def _lr_figure(e, figures_dir):
    plt = pyplot()
    optimizers = list(dict.fromkeys(np.asarray(e.ds["optimizer"].values).astype(str).tolist()))
    lrs = np.asarray(e.ds["lr"].values, dtype=float)
    fig, axes = plt.subplots(len(optimizers), 4, figsize=(15, 2.8 * len(optimizers)), squeeze=False)
    for optimizer, ax in zip(optimizers, axes):
        mine = np.asarray(e.ds["optimizer"].values).astype(str) == optimizer
        for i, lr in enumerate(sorted(set(lrs[mine].tolist()))):
            runs = np.flatnonzero(mine & (lrs == lr))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for a, values in zip(ax, [e.mean_over_layers(e.fraction), e.mean_over_layers(e.units_saturated),
                                          e.metric("train_loss"), e.mean_over_layers(e.weight_norm)]):
                    a.plot(e.epochs, np.nanmean(values[runs], axis=0), color=f"C{i}", label=f"lr {lr:g}")
        ax[0].set_ylabel(optimizer)
        ax[2].set_yscale("log")
        for a in ax:
            a.set_xscale("symlog", linthresh=float(e.epochs[e.epochs > 0].min()))
            a.set_xlim(0, e.epochs.max() * 1.1)
        ax[0].legend(fontsize=7)
    for a, title in zip(axes[0], ["saturated fraction (mean over layers)", "units at a bound on most probes",
                                  "training loss (log)", "‖W‖_F (mean over layers)"]):
        a.set_title(title)
    for a in axes[-1]:
        a.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(os.path.join(figures_dir, "terminal_lr.png"), bbox_inches="tight", dpi=72)
    plt.close(fig)
    return "terminal_lr.png"


def _width_lines(narrow, wide):
    """The narrow sweep against the wide one on matched cells (activation, optimizer, init),
    both at the shorter sweep's last epoch."""
    until = min(narrow.epochs.max(), wide.epochs.max())
    pn, pw = Phase(narrow, until), Phase(wide, until)

    def keys(e):
        return np.array([f"{a}|{o}|{i}|{c['model'].get('init_scale')}" for a, o, i, c in zip(
            e.activation, e.optimizer_labels, e.ds["init"].values.astype(str), e.configs)])

    narrow_keys, wide_keys = keys(narrow), keys(wide)
    rows, facts = [], []
    for label in wide.cells():
        mine = wide.cell_labels == label
        w = np.flatnonzero(mine & pw.fitted)
        n = np.flatnonzero(np.isin(narrow_keys, wide_keys[mine]) & pn.fitted)
        if not w.size or not n.size:
            continue
        diff = welch_interval(pw.change[w], pn.change[n])
        end = welch_interval(pw.at_end[w], pn.at_end[n])
        rows.append((label, f"{n.size} / {w.size}", f"{fmt(np.nanmean(pn.at_end[n]))} / {fmt(np.nanmean(pw.at_end[w]))}",
                     interval_text(*end, signed=True),
                     f"{fmt(np.nanmean(pn.change[n]), 3)} / {fmt(np.nanmean(pw.change[w]), 3)}",
                     interval_text(*diff, 3, signed=True)))
        facts.append((label, end, diff))
    table = markdown_table(["cell", "runs fitted (narrow / wide)", "at the end (narrow / wide)", "wide − narrow at end",
                            "change fit → end (narrow / wide)", "wide − narrow in the change"], rows)
    return table, facts, until


def _lr_lines(e):
    phase = Phase(e)
    optimizer = np.asarray(e.ds["optimizer"].values).astype(str)
    lrs = np.asarray(e.ds["lr"].values, dtype=float)
    rows, sentences = [], []
    for opt in dict.fromkeys(optimizer.tolist()):
        levels = sorted(set(lrs[optimizer == opt].tolist()))
        ends, fits = [], []
        for lr in levels:
            runs = np.flatnonzero((optimizer == opt) & (lrs == lr))
            fitted = runs[phase.fitted[runs]]
            ends.append(np.nanmean(phase.at_end[runs]))
            fits.append(f"{fitted.size} of {runs.size} fitted")
            rows.append((opt, f"{lr:g}", f"{fitted.size} of {runs.size}",
                         f"{np.nanmedian(phase.fit_epoch[fitted]):g}" if fitted.size else "–",
                         fmt(np.nanmean(phase.at_fit[fitted])) if fitted.size else "–", fmt(ends[-1]),
                         cell(phase.change[fitted], signed=True), cell(phase.rate[fitted], 3, signed=True),
                         fmt(np.nanmean(e.final("test_accuracy")[runs]))))
        steps = np.diff(ends)
        order = ("rises with the learning rate" if np.all(steps >= 0) and np.nansum(steps) > 0 else
                 "falls as the learning rate grows" if np.all(steps <= 0) and np.nansum(steps) < 0 else
                 "is not monotone in the learning rate")
        sentences.append(f"With {opt} ({', '.join(sorted(set(e.activation)))}, width {_width(e)}), the saturated "
                         f"fraction at the end {order} ("
                         + "; ".join(f"lr {lr:g}: {fmt(v)}, {n}" for lr, v, n in zip(levels, ends, fits)) + ").")
    table = markdown_table(["optimizer", "lr", "fitted", "fit epoch", "at fit", "at end", "change fit → end",
                            "per decade", "test accuracy"], rows)
    return table, sentences


def _width(e) -> int:
    return int(np.nanmax(np.asarray(e.ds["width"].values)))


def _sweep_lines(name, e, facts):
    phase = Phase(e)
    groups = phase.groups()
    width = _width(e)
    lines = [f"### `{name}` ({e.dataset}, width {width}, {e.n_runs} runs, {e.epochs.max():g} epochs)", ""]
    if e.partly_trained:
        lines += [f"*Partly trained:* median test accuracy {np.nanmedian(e.final('test_accuracy')):.2f}, below "
                  f"{MNIST1D_MLP_LEVEL:g} (an MLP's level on mnist1d); kept out of the headline.", ""]
    lines += [_rows(phase, groups), "", "What goes with it, from the fit to the end (means over the fitted runs):", "",
              _mechanism_rows(phase, groups), "", "Per layer (layer 1 lowest), over the fitted runs: the change from "
              "the fit to the end [95% interval]; at the end, the fraction at the low / high bound; the share of "
              "units at a bound on most training probes:", "", _layer_rows(phase, groups), ""]
    for label, runs in groups:
        lines.append(_group_sentence(phase, label, runs, width))
        fitted = runs[phase.fitted[runs]]
        inits = sorted(set(f"{e.ds['init'].values[r]}({e.configs[r]['model'].get('init_scale', 1):g})" for r in runs))
        facts["groups"][(name, label)] = {
            "optimizer": e.optimizer_labels[runs[0]], "activation": str(e.activation[runs[0]]), "inits": inits,
            "width": width, "dataset": e.dataset, "headline": not e.partly_trained, "runs": runs.size,
            "fitted": fitted.size, "change": t_interval(phase.change[fitted]), "rate": t_interval(phase.rate[fitted]),
            "at_end": t_interval(phase.at_end[fitted]), "at_fit": t_interval(phase.at_fit[fitted]),
            "init": t_interval(phase.init[fitted]),
            "epochs_past_fit": (float(np.nanmedian(phase.end_epoch[fitted] - phase.fit_epoch[fitted])) if fitted.size
                                else np.nan),
            "layers": _growing_layers(phase, runs),
            "low_end": float(np.nanmean(phase.low_end[fitted])) if fitted.size else np.nan,
            "high_end": float(np.nanmean(phase.high_end[fitted])) if fitted.size else np.nan,
            "saturated_init": "saturated from" in label, "most": _most_changed(phase, fitted),
        }
    lines.append("")
    by_optimizer = _optimizer_sentence(phase, groups)
    return lines + ([by_optimizer, ""] if by_optimizer else [])


def terminal_section(experiments, figures_dir):
    """Lines of the section and the facts the headline quotes (``facts``)."""
    present = [(name, experiments[name]) for name in TERMINAL if name in experiments]
    lr = experiments.get(LR_SWEEP)
    lines = ["## The terminal phase: training well past zero training error", ""]
    facts = {"groups": {}, "width": [], "lr": []}
    if not present and lr is None:
        return lines + [f"No terminal-phase store ({', '.join(TERMINAL + (LR_SWEEP,))}) was found: section skipped.",
                        ""], facts
    lines += [
        f"*What is measured.* Per run, the saturated fraction (activations on the training probes within {EPS} of a "
        f"bound, as a share of the range; for ReLU: exactly 0) averaged over the hidden layers, at the record where "
        f"the training accuracy first reaches {FIT_ACCURACY:g} (*the fit*) and at the last record; the change between "
        "them, and that change per decade of epochs (change / log₁₀(last epoch / fit epoch)), the same over the last "
        "decade of training (from the record at or before a tenth of the last epoch), a mean over runs with a 95% t "
        "interval over runs. Runs that never reach the fit are counted and left out (of every column when some run "
        "of the row fitted). Cells whose runs "
        f"start with a saturated fraction of {INIT_SATURATED:g} or more are saturated by their initialisation and are "
        "reported apart; the other initialisations are pooled per activation and optimizer. *Units saturated*: the "
        "share of units at a bound (either) on more than half of the training probes. At end, *low / high* split the "
        "fraction by bound.",
        "",
    ]
    for name in TERMINAL:
        if name in experiments:
            lines += _sweep_lines(name, experiments[name], facts)
        else:
            lines += [f"`{name}`: store absent, skipped.", ""]
    if present:
        for activation in ("sigmoid", "tanh", "relu"):
            for optimizer in ("sgd", "adam"):
                name = _figure(present, activation, optimizer, figures_dir)
                if name:
                    lines += [f"![terminal phase, {activation}, {optimizer}](findings/{name})", ""]
    narrow, wide = (experiments.get(k) for k in WIDTH_PAIR)
    if narrow is not None and wide is not None:
        table, width_facts, until = _width_lines(narrow, wide)
        facts["width"] = width_facts
        a, b = _width(narrow), _width(wide)
        lines += [f"### Width {a} against {b}", "", f"`{WIDTH_PAIR[0]}` against `{WIDTH_PAIR[1]}` on the cells both "
                  f"have, both taken at their last record at or before epoch {until:g}; differences with a 95% Welch "
                  "interval over the runs of the two widths:", "", table, ""]
        for label, end, diff in width_facts:
            lines.append(f"- {label}: at width {b} the saturated fraction at epoch {until:g} differs by "
                         f"{interval_text(*end, signed=True)} from width {a}, and its change after the fit by "
                         f"{interval_text(*diff, 3, signed=True)} ("
                         + direction(diff[1], diff[2], f"larger at {b}", f"smaller at {b}",
                                     "no difference the interval can tell") + ").")
        lines.append("")
    if lr is not None:
        table, sentences = _lr_lines(lr)
        facts["lr"] = sentences
        lines += [f"### Learning rate within each optimizer (`{LR_SWEEP}`: {', '.join(sorted(set(lr.activation)))}, "
                  f"width {_width(lr)}, {lr.n_runs} runs, {lr.epochs.max():g} epochs)", "", table, "", *sentences, "",
                  f"![terminal phase by learning rate](findings/{_lr_figure(lr, figures_dir)})", ""]
    return lines, facts


def _optimizer_sentence(phase, groups):
    """SGD against Adam per activation, pooled groups only: the change after the fit."""
    parts = []
    pooled = [(label, runs) for label, runs in groups if "saturated from" not in label]
    for activation in dict.fromkeys(label.split(" · ")[0] for label, _ in pooled):
        mine = [(label, runs) for label, runs in pooled if label.startswith(activation + " ·")]
        if len(mine) != 2:
            continue
        (la, ra), (lb, rb) = mine
        fa, fb = ra[phase.fitted[ra]], rb[phase.fitted[rb]]
        diff = welch_interval(phase.change[fb], phase.change[fa])
        if not np.isfinite(diff[0]):
            continue
        name_a, name_b = la.split(" · ")[1].split(" (")[0], lb.split(" · ")[1].split(" (")[0]
        parts.append(f"{activation}: the change after the fit with {name_b} minus with {name_a} is "
                     f"{interval_text(*diff, 3, signed=True)} ("
                     + direction(diff[1], diff[2], f"larger with {name_b}", f"larger with {name_a}",
                                 "no difference the interval can tell") + ")")
    return ("By optimizer (Welch interval over runs): " + "; ".join(parts) + ".") if parts else ""
