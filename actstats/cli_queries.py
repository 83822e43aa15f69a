"""The statistical query sub-commands, derived from :data:`actstats.registry.QUERIES`.

Each prints a table for people (rounded for display only) or, with ``--format json|csv``,
the flat records of :func:`actstats.to_records` with every statistic at full precision.
Option values are checked by the queries themselves (:mod:`actstats.validate`): their
:class:`~actstats.errors.ActstatsValueError` names the argument, and :func:`actstats.cli.main`
says it of the option as given (``--eps 2: must be ...``), on one line with exit code 2.
"""

from __future__ import annotations

import csv
import json
import sys
import warnings

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
        commands[spec.cli_name] = _command(spec)


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

    ds = open_store(args.store)
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
    notes = [result.attrs.get(k) for k in ("interval", "pvalue_adjustment", "gaussian_criterion", "skipped")]
    for note in filter(None, notes):
        print(f"# {note}")
