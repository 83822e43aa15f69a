"""The query registry: one :class:`QuerySpec` per query, from which the rest is derived.

``actstats.<query>`` (the lazy exports of :mod:`actstats`), the ``ds.actstats.<query>``
methods (:mod:`actstats.accessor`), the command line's sub-commands, their options and
table columns (:mod:`actstats.cli_queries`) and the query tests' parametrisation all read
:data:`QUERIES`. Adding a query is one module in ``actstats/queries/`` and one entry here.

Names: the API and the command line use the same words except for three documented
aliases kept by the command line (DESIGN.md's command line is a contract):
``weights`` = :func:`~actstats.weight_normality`, ``gradients`` =
:func:`~actstats.gradient_flow`, ``compare`` = :func:`~actstats.compare_splits`.

Importing this module is cheap: the query functions (scipy, statsmodels) are imported
when :attr:`QuerySpec.function` is first read.

Examples
--------
>>> from actstats.registry import QUERIES, get_query
>>> get_query("weights").name
'weight_normality'
>>> [spec.cli_name for spec in QUERIES.values()]
['saturation', 'bimodality', 'fit', 'weights', 'gradients', 'compare', 'training', 'units', 'attenuation', 'factors',
 'unit-learning']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CliOption", "QUERIES", "QuerySpec", "get_query", "parse_names"]

ACTIVATION_BY = ("run", "epoch", "layer", "sample", "unit", "split")
WEIGHT_BY = ("run", "epoch", "layer", "unit", "fan_in")


def parse_names(text: str) -> tuple[str, ...] | str:
    """A comma-separated list on the command line: ``"a,b"`` → ``("a", "b")``; ``"all"`` stays ``"all"``.

    Nothing is checked here: the query checks the names and says what is wrong.
    """
    if text.strip() == "all":
        return "all"
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class CliOption:
    """A command-line option of a query: ``flag`` sets the function's keyword ``argument``.

    ``parse`` turns the text into the value (argparse's ``type``); ``None`` as the value
    (the default) passes nothing, so the function's own default — or the option registry's
    (:data:`actstats.options.OPTIONS`) — applies.
    """

    flag: str
    argument: str
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    default: Any = None
    metavar: str | None = None


@dataclass(frozen=True)
class QuerySpec:
    """One query: its function, its command-line face and its table.

    Attributes
    ----------
    name : the function's name (``actstats.<name>``, ``ds.actstats.<name>``).
    module : where the function lives (imported on first use).
    cli_name : the sub-command (an alias where it differs from ``name``).
    summary : one line, the sub-command's help.
    by : the dimensions ``--by``/``by=`` may keep, or None for a query without ``by``.
    default_by : the function's default ``by`` (for the help text).
    options : the query's other command-line options.
    table_columns : the statistic columns of the human-readable table (json and csv have all).
    """

    name: str
    module: str
    cli_name: str
    summary: str
    by: tuple[str, ...] | None
    default_by: str
    options: tuple[CliOption, ...]
    table_columns: tuple[str, ...]

    @property
    def function(self) -> Callable:
        return getattr(importlib.import_module(self.module), self.name)


_EPS = CliOption("--eps", "eps", "band width as a fraction of the range (default: the option eps, 0.05)", parse=float)

QUERIES: dict[str, QuerySpec] = {spec.name: spec for spec in (
    QuerySpec(
        "saturation", "actstats.queries.saturation", "saturation",
        "fraction of activations within eps of the bounds, with sample-level CIs",
        ACTIVATION_BY, "run,epoch,layer,split", (_EPS,),
        ("fraction", "fraction_low", "fraction_high", "ci_low", "ci_high", "n_samples", "n_nonfinite"),
    ),
    QuerySpec(
        "bimodality", "actstats.queries.bimodality", "bimodality",
        "dip test, bimodality coefficient, U-shaped Beta, Beta mixture",
        ACTIVATION_BY, "run,epoch,layer,split", (),
        ("n", "dip", "dip_pvalue", "pvalue_adjusted", "bimodality_coefficient", "beta_a", "beta_b", "u_shaped",
         "bimodal_at_bounds"),
    ),
    QuerySpec(
        "fit", "actstats.queries.fit", "fit",
        "distribution fits with AIC/BIC and goodness of fit",
        tuple(dict.fromkeys(ACTIVATION_BY + WEIGHT_BY)),
        "run,epoch,layer,split for activations, run,epoch,layer for weights",
        (
            CliOption("--variable", "variable", "the variable fitted", choices=("activation", "weight"),
                      default="activation"),
            CliOption("--family", "family",
                      "comma-separated families, or all (activation: beta,logit_normal,beta_mixture; "
                      "weight: normal,t,laplace,logistic,uniform,gennorm); default: the fast ones "
                      "(beta,logit_normal; normal,laplace,logistic,uniform)", parse=parse_names, metavar="NAMES"),
        ),
        ("n", "log_likelihood", "aic", "bic", "ks_statistic", "best_family"),
    ),
    QuerySpec(
        "weight_normality", "actstats.queries.normality", "weights",
        "weight normality: moments, tests, effect sizes, best family",
        WEIGHT_BY, "run,epoch,layer", (),
        ("n", "mean", "std", "skewness", "excess_kurtosis", "ks_d", "w1_normal", "k2_pvalue", "pvalue_adjusted",
         "best_family", "gaussian", "distance_from_init"),
    ),
    QuerySpec(
        "gradient_flow", "actstats.queries.gradients", "gradients",
        "gradient flow per layer",
        None, "", (),
        ("weight_grad_norm", "delta_rms", "mean_derivative", "ratio_to_next_layer"),
    ),
    QuerySpec(
        "compare_splits", "actstats.queries.compare", "compare",
        "training vs held-out probes: saturated fractions, difference, CI, p-value",
        ("run", "epoch", "layer"), "run,epoch,layer", (_EPS,),
        ("fraction_train", "fraction_test", "difference", "ci_low", "ci_high", "pvalue", "pvalue_adjusted"),
    ),
    QuerySpec(
        "training", "actstats.queries.training", "training",
        "did each run train: accuracy and loss at its last complete record, diverged, status",
        None, "", (
            CliOption("--min-accuracy", "min_accuracy",
                      "training accuracy a run needs to count as trained (default: the option trained_accuracy, 0.9)",
                      parse=float),
        ),
        ("epoch_last", "train_accuracy", "test_accuracy", "train_loss", "chance_accuracy", "diverged", "status",
         "at_chance"),
    ),
    QuerySpec(
        "unit_states", "actstats.queries.unit_states", "units",
        "per unit across probes: stuck at a bound, binary, graded or dead; counts and shares per group",
        ("run", "epoch", "layer"), "run,epoch,layer", (
            _EPS,
            CliOption("--split", "split", "the probes units are judged on (default: train)",
                      choices=("train", "test", "all")),
            CliOption("--stuck-share", "stuck_share", "share of probes that makes a unit stuck (default 0.95)",
                      parse=float),
        ),
        ("n_units", "share_stuck_low", "share_stuck_high", "share_binary", "share_graded", "share_dead",
         "mean_low_share", "mean_high_share"),
    ),
    QuerySpec(
        "attenuation", "actstats.queries.attenuation", "attenuation",
        "back-propagated error attenuation per layer: derivative factor x weight factor",
        None, "", (),
        ("delta_attenuation", "derivative_factor", "weight_factor", "log_share_derivative", "vanishing"),
    ),
    QuerySpec(
        "factor_effects", "actstats.queries.factors", "factors",
        "saturation per level of a factor (init, depth, optimizer, ...): end, initial, change; most vs least "
        "saturated level with a bootstrap interval over runs and a permutation p-value",
        None, "", (
            CliOption("--factor", "factor",
                      "the run coordinate compared: init (with its scale where one init has several), depth, "
                      "optimizer, lr, batch_size, activation_fn, ... (default: init)", default="init"),
            _EPS,
            CliOption("--layer", "layer", "a run's number: the mean over its hidden layers, or its top hidden layer "
                      "(default: mean)", choices=("mean", "top")),
            CliOption("--split", "split", "the probes the fractions are taken on (default: train)",
                      choices=("train", "test")),
        ),
        ("n_runs", "mean_fraction", "mean_fraction_initial", "mean_change", "most_saturated", "least_saturated",
         "difference", "ci_low", "ci_high", "pvalue"),
    ),
    QuerySpec(
        "unit_learning", "actstats.queries.unit_learning", "unit-learning",
        "do saturated units learn less? per (run, layer): relative weight change since epoch 0 of saturated vs "
        "other units, permutation p-values, Spearman rho of saturated share and change",
        None, "", (
            _EPS,
            CliOption("--split", "split", "the probes units are judged on (default: train)",
                      choices=("train", "test", "all")),
            CliOption("--stuck-share", "stuck_share", "share of probes that makes a unit saturated (default 0.95)",
                      parse=float),
            CliOption("--permutations", "n_permutations", "permutations of each test (default 9999)", parse=int),
            CliOption("--seed", "seed", "seed of the permutations (default 0)", parse=int),
        ),
        ("n_saturated_units", "n_other_units", "change_saturated", "change_other", "difference", "pvalue",
         "pvalue_adjusted", "spearman_rho", "spearman_pvalue"),
    ),
)}

#: Names :mod:`actstats` exports lazily besides the queries.
HELPERS = {"to_records": "actstats.queries.records"}


def get_query(name: str) -> QuerySpec:
    """The spec of a query by its function name or its command-line name."""
    if name in QUERIES:
        return QUERIES[name]
    for spec in QUERIES.values():
        if spec.cli_name == name:
            return spec
    raise KeyError(f"unknown query {name!r}; known: {', '.join(QUERIES)}")
