"""The statistical query sub-commands (saturation, bimodality, fit, weights, gradients, compare).

Each prints a table for people (rounded for display only) or, with ``--format json|csv``,
the flat records of :func:`actstats.to_records` with every statistic at full precision.
Bad option values raise :class:`~actstats.errors.ActstatsError` naming the option and the
value; the command line turns that into one line on stderr and exit code 2.
"""

from __future__ import annotations

import csv
import json
import sys
import warnings

from actstats.errors import ActstatsError

FORMATS = ("table", "json", "csv")
ACTIVATION_BY = ("run", "epoch", "layer", "sample", "unit", "split")
WEIGHT_BY = ("run", "epoch", "layer", "unit", "fan_in")
COMPARE_BY = ("run", "epoch", "layer")

#: Statistic columns of the human-readable tables (json and csv have every field).
TABLE_COLUMNS = {
    "saturation": ("fraction", "fraction_low", "fraction_high", "ci_low", "ci_high", "n_samples", "n_nonfinite"),
    "bimodality": ("n", "dip", "dip_pvalue", "pvalue_adjusted", "bimodality_coefficient", "beta_a", "beta_b",
                   "u_shaped", "bimodal_at_bounds"),
    "fit": ("n", "log_likelihood", "aic", "bic", "ks_statistic", "best_family"),
    "weights": ("n", "mean", "std", "skewness", "excess_kurtosis", "ks_d", "w1_normal", "k2_pvalue",
                "pvalue_adjusted", "best_family", "gaussian", "distance_from_init"),
    "gradients": ("weight_grad_norm", "delta_rms", "mean_derivative", "ratio_to_next_layer"),
    "compare": ("fraction_train", "fraction_test", "difference", "ci_low", "ci_high", "pvalue", "pvalue_adjusted"),
}


def _parse_by(text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in allowed:
            raise ActstatsError(f"--by {text}: unknown dimension {name!r}; choose from {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise ActstatsError(f"--by {text}: a dimension is repeated")
    return names


def _check_eps(value: float) -> float:
    if not 0 < value < 0.5:
        raise ActstatsError(f"--eps {value:g}: must be greater than 0 and less than 0.5 (a fraction of the range)")
    return value


def _parse_family(text: str | None, variable: str) -> tuple[str, ...] | str | None:
    from actstats.queries import ACTIVATION_FAMILIES, WEIGHT_FAMILIES

    if text is None:
        return None
    if text.strip() == "all":
        return "all"
    known = ACTIVATION_FAMILIES if variable == "activation" else WEIGHT_FAMILIES
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ActstatsError(f"--family {text!r}: give at least one family")
    for name in names:
        if name not in known:
            raise ActstatsError(
                f"--family {text}: unknown family {name!r} for --variable {variable}; choose from {', '.join(known)}"
            )
    return names


def _common(parser) -> None:
    parser.add_argument("store", metavar="STORE")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def register(add, commands: dict) -> None:
    """Add the query sub-commands with `add(name, help) -> parser` and their handlers to `commands`."""
    p = add("saturation", "fraction of activations within eps of the bounds, with sample-level CIs")
    _common(p)
    p.add_argument("--eps", type=float, default=0.05, help="band width as a fraction of the range (default 0.05)")
    p.add_argument("--by", default="run,epoch,layer,split", metavar="DIMS",
                   help=f"kept dimensions, comma-separated, from {','.join(ACTIVATION_BY)}")
    commands["saturation"] = _cmd_saturation

    p = add("bimodality", "dip test, bimodality coefficient, U-shaped Beta, Beta mixture")
    _common(p)
    p.add_argument("--by", default="run,epoch,layer,split", metavar="DIMS",
                   help=f"kept dimensions, comma-separated, from {','.join(ACTIVATION_BY)}")
    commands["bimodality"] = _cmd_bimodality

    p = add("fit", "distribution fits with AIC/BIC and goodness of fit")
    _common(p)
    p.add_argument("--variable", choices=("activation", "weight"), default="activation")
    p.add_argument("--family", default=None, metavar="NAMES",
                   help="comma-separated families, or all (activation: beta,logit_normal,beta_mixture; "
                        "weight: normal,t,laplace,logistic,uniform,gennorm); default: the fast ones "
                        "(beta,logit_normal; normal,laplace,logistic,uniform)")
    p.add_argument("--by", default=None, metavar="DIMS",
                   help="kept dimensions (default run,epoch,layer,split for activations, run,epoch,layer for weights)")
    commands["fit"] = _cmd_fit

    p = add("weights", "weight normality: moments, tests, effect sizes, best family")
    _common(p)
    p.add_argument("--by", default="run,epoch,layer", metavar="DIMS",
                   help=f"kept dimensions, comma-separated, from {','.join(WEIGHT_BY)}")
    commands["weights"] = _cmd_weights

    p = add("gradients", "gradient flow per layer")
    _common(p)
    commands["gradients"] = _cmd_gradients

    p = add("compare", "training vs held-out probes: saturated fractions, difference, CI, p-value")
    _common(p)
    p.add_argument("--eps", type=float, default=0.05, help="band width as a fraction of the range (default 0.05)")
    p.add_argument("--by", default="run,epoch,layer", metavar="DIMS",
                   help=f"kept dimensions, comma-separated, from {','.join(COMPARE_BY)}")
    commands["compare"] = _cmd_compare


def _cmd_saturation(args) -> int:
    from actstats.queries import saturation

    eps = _check_eps(args.eps)
    by = _parse_by(args.by, ACTIVATION_BY)
    if "sample" in by and "unit" in by:
        raise ActstatsError(f"--by {args.by}: sample and unit together make each group a single activation; keep one")
    return _run(args, "saturation", lambda ds: saturation(ds, eps=eps, by=by))


def _cmd_bimodality(args) -> int:
    from actstats.queries import bimodality

    by = _parse_by(args.by, ACTIVATION_BY)
    return _run(args, "bimodality", lambda ds: bimodality(ds, by=by))


def _cmd_fit(args) -> int:
    from actstats.queries import fit

    family = _parse_family(args.family, args.variable)
    allowed = ACTIVATION_BY if args.variable == "activation" else WEIGHT_BY
    by = None if args.by is None else _parse_by(args.by, allowed)
    return _run(args, "fit", lambda ds: fit(ds, family=family, by=by, variable=args.variable))


def _cmd_weights(args) -> int:
    from actstats.queries import weight_normality

    by = _parse_by(args.by, WEIGHT_BY)
    return _run(args, "weights", lambda ds: weight_normality(ds, by=by))


def _cmd_gradients(args) -> int:
    from actstats.queries import gradient_flow

    return _run(args, "gradients", gradient_flow)


def _cmd_compare(args) -> int:
    from actstats.queries import compare_splits

    eps = _check_eps(args.eps)
    by = _parse_by(args.by, COMPARE_BY)
    return _run(args, "compare", lambda ds: compare_splits(ds, eps=eps, by=by))


def _run(args, command: str, query) -> int:
    from actstats.queries import to_records
    from actstats.store import open_store

    ds = open_store(args.store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = query(ds)
    for warning in caught:  # one line each, no source line
        print(f"actstats {command}: warning: {warning.message}", file=sys.stderr)
    records = to_records(result)
    if args.format == "json":
        json.dump(records, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    elif args.format == "csv":
        _write_csv(records)
    else:
        _write_table(records, command, result)
    return 0


def _write_csv(records: list[dict]) -> None:
    if not records:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})


def _display(value) -> str:
    if value is None:
        return "nan"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_table(records: list[dict], command: str, result) -> None:
    if not records:
        print("(no groups)")
        return
    keys = [k for k in records[0] if k in result.dims or k in ("split", "activation_fn")]
    columns = keys + [c for c in TABLE_COLUMNS[command] if c in records[0] and c not in keys]
    cells = [[_display(r[c]) for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r[c], (int, float)) or r[c] is None for r in records)
               and not all(isinstance(r[c], bool) for r in records) for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    print(line(columns))
    for row in cells:
        print(line(row))
    notes = [result.attrs.get(k) for k in ("interval", "pvalue_adjustment", "gaussian_criterion", "skipped")]
    for note in filter(None, notes):
        print(f"# {note}")
