"""The statistical query sub-commands, derived from :data:`actstats.registry.QUERIES`.

Each prints a table for people (rounded for display only) or, with ``--format json|csv``,
the flat records of :func:`actstats.to_records` with every statistic at full precision.
Every sub-command (and ``report``) takes ``--where KEY=VALUE[,VALUE…]`` (repeatable) and
``--runs 0,3,5``: :func:`actstats.select_runs` on the opened store, before the query; and
``--epochs 0,100`` or ``--epochs last`` and ``--layers 1,3``: :func:`actstats.selection.select_records`.
Option values are checked by the queries themselves (:mod:`actstats.validate`): their
:class:`~actstats.errors.ActstatsValueError` names the argument, and :func:`actstats.cli.main`
says it of the option as given (``--eps 2: must be ...``), on one line with exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings

from actstats.errors import ActstatsError, ActstatsValueError, shorten
from actstats.registry import QUERIES, QuerySpec, parse_names

FORMATS = ("table", "json", "csv")


def register(add, commands: dict) -> None:
    """Add one sub-command per registered query with ``add(name, help) -> parser``, and its handler to ``commands``."""
    for spec in QUERIES.values():
        parser = add(spec.cli_name, spec.summary)
        parser.add_argument("store", metavar="STORE")
        parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
        if spec.by is not None:
            parser.add_argument("--by", default=None, type=parse_names, metavar="DIMS",
                                help=f"kept dimensions, comma-separated, from {','.join(spec.by)} "
                                     f"(default {spec.default_by})")
        for option in spec.options:
            parser.add_argument(option.flag, dest=option.argument, type=option.parse, choices=option.choices,
                                default=option.default, metavar=option.metavar, help=option.help)
        add_selection_options(parser)
        commands[spec.cli_name] = _command(spec)


def _argument_type(parse, name: str):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:  # argparse says "argument --where: ..." on one line, exit 2
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def add_selection_options(parser, records: bool = True) -> None:
    """``--where KEY=VALUE[,VALUE…]`` (repeatable) and ``--runs 0,3,5``: which runs of the store to use;
    with `records`, ``--epochs`` and ``--layers`` too (the report decides at each run's last
    record over all its layers, so it takes runs only)."""
    from actstats.selection import parse_epochs, parse_layers, parse_runs, parse_where

    parser.add_argument("--where", action="append", default=None, metavar="KEY=VALUE[,VALUE...]",
                        type=_argument_type(parse_where, "where"),
                        help="keep the runs whose coordinate KEY (activation_fn, init, optimizer, lr, batch_size, "
                             "seed, dataset, depth, ...) is one of the values; repeat for several keys (all must match)")
    parser.add_argument("--runs", default=None, metavar="RUNS", type=_argument_type(parse_runs, "runs"),
                        help="keep these runs (labels, comma-separated, e.g. 0,3,5)")
    if not records:
        return
    parser.add_argument("--epochs", default=None, metavar="EPOCHS", type=_argument_type(parse_epochs, "epochs"),
                        help="keep these epochs (e.g. 0,100), or 'last': each run's last complete record")
    parser.add_argument("--layers", default=None, metavar="LAYERS", type=_argument_type(parse_layers, "layers"),
                        help="keep these hidden layers (1 the lowest; comma-separated, e.g. 1,3)")


def apply_selection(ds, args):
    """``ds`` restricted by the parsed ``--where``/``--runs`` of ``args`` (``ds`` itself without them).

    An :class:`~actstats.errors.ActstatsValueError` of :func:`actstats.select_runs` is said of
    the option as given (``--where activation=tanh: unknown run coordinate ...``).
    """
    from actstats.selection import select_runs

    items = getattr(args, "where", None) or []
    texts: dict[str, list[str]] = {}
    where: dict[str, list[str]] = {}
    for key, values in items:  # a key given twice: either of its values
        where.setdefault(key, []).extend(values)
        texts.setdefault(key, []).append(f"{key}={','.join(values)}")
    runs = getattr(args, "runs", None)
    epochs, layers = getattr(args, "epochs", None), getattr(args, "layers", None)
    if epochs is not None or layers is not None:
        from actstats.selection import select_records

        try:
            ds = select_records(ds, epochs=epochs, layers=layers)
        except ActstatsValueError as exc:
            given = {"epochs": epochs, "layers": layers}[exc.argument]
            text = given if isinstance(given, str) else ",".join(f"{v:g}" for v in given)
            raise ActstatsError(f"--{exc.argument} {shorten(text, quote=False)}: {exc.problem}") from None
    if not where and runs is None:
        return ds
    try:
        return select_runs(ds, where=where or None, runs=runs)
    except ActstatsValueError as exc:
        key = getattr(exc, "key", None)
        if exc.argument == "runs":
            given = f"--runs {shorten(','.join(str(r) for r in runs), quote=False)}"
        elif key in texts:
            given = " ".join(f"--where {shorten(text, quote=False)}" for text in texts[key])
        else:
            given = shorten(" ".join(f"--where {text}" for parts in texts.values() for text in parts), quote=False)
        raise ActstatsError(f"{given}: {exc.problem}") from None


def _command(spec: QuerySpec):
    def command(args) -> int:
        arguments = {}
        if spec.by is not None and args.by is not None:
            arguments["by"] = args.by
        for option in spec.options:
            value = getattr(args, option.argument)
            if value is not None:
                arguments[option.argument] = value
        return _run(args, spec, lambda ds: spec.function(ds, **arguments))

    command.__name__ = f"_cmd_{spec.cli_name}"
    return command


def _run(args, spec: QuerySpec, query) -> int:
    from actstats.queries import to_records
    from actstats.store import open_store

    ds = apply_selection(open_store(args.store), args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = query(ds)
    for warning in caught:  # one line each, no source line
        print(f"actstats {spec.cli_name}: warning: {warning.message}", file=sys.stderr)
    records = to_records(result)
    if args.format == "json":
        json.dump(records, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    elif args.format == "csv":
        _write_csv(records)
    else:
        _write_table(records, spec.table_columns, result)
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


def _write_table(records: list[dict], table_columns: tuple[str, ...], result) -> None:
    if not records:
        print("(no groups)")
        return
    keys = [k for k in records[0] if k in result.dims or k in ("split", "activation_fn")]
    columns = keys + [c for c in table_columns if c in records[0] and c not in keys]
    cells = [[_display(r[c]) for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r[c], (int, float)) or r[c] is None for r in records)
               and not all(isinstance(r[c], bool) for r in records) for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    print(line(columns))
    for row in cells:
        print(line(row))
    notes = [result.attrs.get(k) for k in ("not_applicable", "interval", "pvalue_adjustment", "gaussian_criterion",
                                           "skipped")]
    for note in filter(None, notes):
        print(f"# {note}")
