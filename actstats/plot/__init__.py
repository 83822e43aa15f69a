"""Figures for notebooks, in the manner of ArviZ's ``az.plot_*``: one function per figure of the
report, which calls these same functions and only saves what they draw.

Each function takes a store (:func:`actstats.open_store`, possibly narrowed with
:func:`actstats.select_runs` or :func:`actstats.selection.select_records`) or, where the figure
is of a query's numbers, that query's result; keyword arguments say what to show (``runs=``
run labels, ``layers=`` layer labels, ``epochs=`` epoch values, ``split=``, ``eps=``); ``ax=``
draws into existing matplotlib axes. Each returns the axes drawn into (a new figure's as a
rows × columns array). Nothing is written to disk, and the numbers come from the queries and
kernels (:func:`actstats.saturation`, :func:`actstats.weight_normality`,
:func:`actstats.gradient_flow`, :func:`actstats.kernels.saturation_counts`).

================================  ==============================================================
:func:`mean_std`                  each layer's mean ± std over training, a panel per run
:func:`histograms`                activation histograms resolving both bounds, runs × layers
:func:`saturation_heatmap`        saturated fraction, layer × epoch, a heatmap per run
:func:`trajectories`              tracked probes' saturated share and mean activation
:func:`weight_qq`                 weights against the fitted normal, runs × layers
:func:`weight_kurtosis`           excess kurtosis of the weights over training
:func:`gradient_flow`             ‖∂L/∂W‖ and mean f′(z) per layer over training
:func:`sweep_comparison`          one number per run against each swept factor
:func:`training_curves`           accuracy and loss over training, a line per run
================================  ==============================================================

Importing this module imports no matplotlib; the first figure drawn does (with matplotlib's
own backend choice: the report picks Agg before it draws). Labels come from the store
as they are (a ``$`` in them is shown, not parsed as mathtext).

Examples
--------
>>> import actstats
>>> from actstats.synthetic import synthetic_store
>>> ds = actstats.select_runs(synthetic_store(runs=3), where={"activation_fn": "sigmoid"})
>>> axes = actstats.plot.mean_std(ds, runs=[0, 2])
>>> [panel.get_title().split(":")[0] for panel in axes.flat]
['run 0', 'run 2']
"""

from actstats.plot._activations import histograms, mean_std, trajectories
from actstats.plot._common import run_label
from actstats.plot._saturation import SWEEP_FACTORS, saturation_heatmap, sweep_comparison
from actstats.plot._training import TRAINING_VARIABLES, training_curves
from actstats.plot._weights import gradient_flow, weight_kurtosis, weight_qq

__all__ = [
    "SWEEP_FACTORS",
    "TRAINING_VARIABLES",
    "gradient_flow",
    "histograms",
    "mean_std",
    "run_label",
    "saturation_heatmap",
    "sweep_comparison",
    "training_curves",
    "trajectories",
    "weight_kurtosis",
    "weight_qq",
]
