"""The command line: ``actstats SUBCOMMAND STORE [options]``.

Errors are one line on stderr and an exit code: 2 for bad usage or bad input, 3 for damaged
or incomplete data. Global options (``--no-progress``, ``--scheduler``) go before or after
the sub-command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys

import numpy as np

from actstats.errors import ActstatsError, shorten

EXIT_OK, EXIT_USAGE, EXIT_INTEGRITY = 0, 2, 3
#: The longest error line the command line prints (the values in it are shortened to ~200 each).
MESSAGE_CHARACTERS = 2000


def _one_line(message: str) -> str:
    """A message as one line: control characters from user input (a newline in an
    argument or a key) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)}\n")


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="no progress bar on stderr")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=default,
                        help="a dask.distributed scheduler address (default: $ACTSTATS_SCHEDULER or local threads)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="actstats", description="Record and test what the hidden layers of trained networks do.")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True

    def add(name, help):
        p = sub.add_parser(name, help=help, description=help)
        _global_options(p, suppress=True)
        return p

    p = add("init", "write an example capture config to a file to edit (--list: the examples)")
    p.add_argument("name", metavar="NAME", nargs="?", help=f"the example (default: {DEFAULT_EXAMPLE})")
    p.add_argument("-o", "--output", metavar="FILE", help="the file to write (default: NAME.toml; -: standard output)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.add_argument("--list", action="store_true", help="the examples' names, each with its first comment line")

    p = add("capture", "train and record the sweep of a TOML config into a store")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("config", metavar="CONFIG", nargs="?", help="a TOML config (actstats init writes one to edit)")
    source.add_argument("--example", metavar="NAME",
                        help="an example config shipped with actstats, instead of CONFIG (actstats init --list)")
    p.add_argument("-o", "--output", metavar="STORE", required=True, help="the store to write")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue a store (or start it if absent)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="train runs in N processes")

    p = add("info", "runs, dimensions, sizes and completeness of a store")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = add("verify", "read every chunk; exit 3 listing damaged or incomplete parts")
    p.add_argument("store", metavar="STORE")

    p = add("report", "a verdict on each registered claim (C1-C6) on the runs it is about, with the numbers and figures behind it")
    p.add_argument("store", metavar="STORE")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="directory for index.html, findings.*, figures/")
    p.add_argument("--eps", type=float, default=None,
                   help="saturation: within eps (share of the range) of a bound (default: the option eps, 0.05)")

    from actstats import cli_queries

    cli_queries.add_selection_options(p, records=False)

    cli_queries.register(add, COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from actstats.options import set_options

    try:
        options = {}
        if args.no_progress:
            options["progress"] = False
        else:
            options["progress_log"] = _progress_log_interval()
        if args.scheduler is not None:  # else OPTIONS' default: $ACTSTATS_SCHEDULER, read when work starts
            if not args.scheduler.strip():
                raise ActstatsError("--scheduler: empty address (expected e.g. tcp://127.0.0.1:8786)")
            options["scheduler"] = args.scheduler.strip()
        with set_options(**options):
            return COMMANDS[args.command](args)
    except ActstatsError as exc:  # its exit_code: 2 bad usage or input, 3 integrity
        # at most ~2000 characters: each echoed value is shortened where the message is made
        # (actstats.errors.shorten); this bounds what any other message could echo
        message = shorten(_one_line(_as_given(exc, args)), MESSAGE_CHARACTERS, quote=False)
        print(f"actstats {args.command}: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        hint = " (complete records are kept: --resume continues)" if args.command == "capture" else ""
        print(f"actstats {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:  # disk full, permissions: say what and where
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"actstats {args.command}: {_one_line(f'{exc.strerror or exc}{where}')}", file=sys.stderr)
        return EXIT_USAGE


#: The exit status of a process killed by SIGPIPE (128 + 13), what Unix tools report when
#: the reader of their output goes away.
EXIT_PIPE = 141


def _reader_gone() -> int:
    """The reader of stdout went away (``actstats saturation STORE | head -1``): stop quietly,
    as Unix tools do. stdout is pointed at /dev/null so that the interpreter's last flush at
    exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a file descriptor
        pass
    return EXIT_PIPE


#: Seconds between the one-line progress reports of capture, verify and report when stderr
#: is not a terminal; $ACTSTATS_PROGRESS_LOG overrides it ("off": none).
PROGRESS_LOG_SECONDS = 60.0


def _progress_log_interval() -> float | None:
    text = os.environ.get("ACTSTATS_PROGRESS_LOG", "").strip()
    if not text:
        return PROGRESS_LOG_SECONDS
    if text.lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise ActstatsError(f"ACTSTATS_PROGRESS_LOG={shorten(text)}: expected a number of seconds >= 0, or off")
    return value


def _as_given(exc: ActstatsError, args) -> str:
    """The error said of the command-line option as the user gave it, when it names one
    (``--eps 2: must be ...``, ``--by run,nonsense: unknown dimension ...``)."""
    argument = getattr(exc, "argument", None)
    given = getattr(args, argument, None) if argument else None
    if given is None:
        return str(exc)
    if isinstance(given, float):
        text = f"{given:g}"
    elif isinstance(given, tuple):
        text = ",".join(given)
    else:
        text = str(given)
    return f"--{argument.replace('_', '-')} {shorten(text, quote=False)}: {exc.problem}"


def _cmd_capture(args) -> int:
    if args.example is not None:  # an unknown name is refused before torch is imported
        from actstats import configs

        config = configs.path(args.example)
    else:
        config = contextlib.nullcontext(args.config)
    try:
        from actstats.capture import capture
    except ImportError as exc:
        if "torch" in str(exc) or "sklearn" in str(exc) or "mnist1d" in str(exc):
            raise ActstatsError("capture needs PyTorch: install actstats[capture]") from None
        raise
    with config as path:
        summary = capture(
            path,
            args.output,
            resume=args.resume,
            overwrite=args.overwrite,
            workers=args.workers,
        )
    print(
        f"{args.output}: {summary['runs']} runs; {summary['written']} records written, "
        f"{summary['already_complete']} were already complete"
    )
    return EXIT_OK


#: The example ``actstats init`` writes when no NAME is given (actstats/configs/default.toml).
DEFAULT_EXAMPLE = "default"


def _cmd_init(args) -> int:
    """Write an example config (package data: no torch import) to a file, or list them."""
    from actstats import configs

    if args.list:
        if args.name is not None or args.output is not None or args.overwrite:
            raise ActstatsError("--list takes no NAME, -o or --overwrite")
        names = configs.names()
        width = max(map(len, names), default=0)
        for name in names:
            print(f"{name:<{width}}  {configs.summary(name)}")
        return EXIT_OK
    name = DEFAULT_EXAMPLE if args.name is None else args.name
    text = configs.text(name)  # an unknown name: one line listing the known ones
    output = f"{name}.toml" if args.output is None else args.output
    if output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    shown = shorten(output, quote=False)
    if not output:
        raise ActstatsError("-o: an empty file name")
    if os.path.isdir(output):
        raise ActstatsError(f"-o {shown}: is a directory; give a file name")
    try:  # "x": created only if absent (no window between a check and the write)
        with open(output, "w" if args.overwrite else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise ActstatsError(f"{shown}: exists; --overwrite replaces it") from None
    print(f"{output}: the example {name!r}; edit it, then: actstats capture {shlex.quote(output)} -o STORE")
    return EXIT_OK


#: ``actstats info`` lists each run's training numbers up to this many runs, and summarises beyond.
INFO_RUNS_LISTED = 20
_TRAINING_FIELDS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


def _number(value):
    return None if value is None or not np.isfinite(value) else float(value)


def _store_summary(store: str) -> dict:
    """What ``info`` shows (:func:`actstats.store.summary.store_summary`): read from the store's
    metadata and small arrays without xarray, zarr or dask when that reader serves the store (a
    local actstats.store/2 store, intact); else (a URL, actstats.store/1, no consolidated
    metadata, any damage) through :func:`actstats.open_store`, which says what is wrong."""
    from actstats.store.summary import NotServed, store_summary

    try:
        return store_summary(store)
    except NotServed:
        pass
    from actstats.store import open_store

    return _summary_of_dataset(open_store(store))


def _summary_of_dataset(ds) -> dict:
    """:func:`actstats.store.summary.store_summary`'s dict, from a store opened with xarray."""
    complete = ds["complete"].values
    summary = {
        "schema": ds.attrs["schema"],
        "created_at": ds.attrs["created_at"],
        "dims": {k: int(v) for k, v in ds.sizes.items()},
        "variables": {name: f"{'x'.join(str(s) for s in var.shape)} {var.dtype}" for name, var in ds.data_vars.items()},
        "complete": complete,
        "stopped": ds["stopped"].values if "stopped" in ds.data_vars else None,
        **{name: ds[name].values for name in ("run", "epoch", "step", "depth", "width", "activation_fn", "init",
                                               "optimizer", "lr", "seed")},
    }
    summary["training"] = _training_of_dataset(ds)
    return summary


def _training_of_dataset(ds) -> dict | None:
    """Each run's status and training numbers (:func:`actstats.training`), as
    :func:`actstats.store.summary.store_summary` gives them; None when the store has none of
    the four variables, or when they cannot be read (a warning says why)."""
    if not any(name in ds.data_vars for name in _TRAINING_FIELDS):
        return None
    from actstats.errors import IntegrityError
    from actstats.queries.training import training

    try:
        result = training(ds)
    except IntegrityError as exc:  # info still describes the store; verify says more
        print(f"actstats info: warning: training numbers not shown: {_one_line(exc)}", file=sys.stderr)
        return None
    return {
        "fields": [name for name in _TRAINING_FIELDS if name in ds.data_vars],
        "min_accuracy": result.attrs["min_accuracy"],
        "rule": result.attrs["rule"],
        **{name: result[name].values for name in (*_TRAINING_FIELDS, "status", "chance_accuracy", "at_chance")},
    }


def _training_info(training: dict | None, n_runs: int) -> dict | None:
    """Each run's accuracy and loss at its last complete record, its status and whether it sits
    at chance (:func:`actstats.training`), from a summary's ``training``."""
    if training is None:
        return None
    present = training["fields"]
    runs = [
        {"status": str(training["status"][i]), **{name: _number(training[name][i]) for name in present}}
        for i in range(n_runs)
    ]
    chance = _number(training["chance_accuracy"][0]) if n_runs else None
    return {
        "fields": present,
        "runs": runs,
        "chance_accuracy": chance,
        "runs_at_chance": int(training["at_chance"].sum()),
        "rule": training["rule"],
        "min_accuracy": training["min_accuracy"],
    }


def _cmd_info(args) -> int:
    from actstats.store.schema import scheduled_records

    summary = _store_summary(args.store)
    complete = summary["complete"]
    # records after a run's train.until stop are never written: not scheduled
    stopped = summary["stopped"] & complete if summary["stopped"] is not None else None
    scheduled = scheduled_records(summary["step"], complete, stopped)
    info = {
        "store": args.store,
        "schema": summary["schema"],
        "created_at": summary["created_at"],
        "dims": summary["dims"],
        "variables": summary["variables"],
        "records_complete": int((complete & scheduled).sum()),
        "records_scheduled": int(scheduled.sum()),
        "runs": [
            {
                "run": int(r),
                "depth": int(summary["depth"][i]),
                "width": [int(w) for w in summary["width"][i] if w > 0],
                "activation_fn": str(summary["activation_fn"][i]),
                "init": str(summary["init"][i]),
                "optimizer": str(summary["optimizer"][i]),
                "lr": float(summary["lr"][i]),
                "seed": int(summary["seed"][i]),
                "complete": f"{int((complete[i] & scheduled[i]).sum())}/{int(scheduled[i].sum())}",
            }
            for i, r in enumerate(summary["run"])
        ],
    }
    if stopped is not None:  # the epoch at which train.until ended each run (None: it did not)
        epochs = summary["epoch"]
        for run, row in zip(info["runs"], stopped):
            run["stopped_at"] = float(epochs[np.argmax(row)]) if row.any() else None
    learned = _training_info(summary["training"], len(info["runs"]))
    if learned is not None:  # at each run's last complete record
        for run, numbers in zip(info["runs"], learned["runs"]):
            run.update(numbers)
        info["chance_accuracy"] = learned["chance_accuracy"]
        info["runs_at_chance"] = learned["runs_at_chance"]
    if args.format == "json":
        print(json.dumps(info, indent=2))
        _warn_at_chance(learned, len(info["runs"]))
        return EXIT_OK
    print(f"{args.store}  ({info['schema']}, created {info['created_at']})")
    print("dims: " + ", ".join(f"{k}={v}" for k, v in info["dims"].items()))
    print(f"records complete: {info['records_complete']}/{info['records_scheduled']}")
    print("variables:")
    for name, desc in info["variables"].items():
        print(f"  {name:16s} {desc}")
    print("runs:")
    listed = learned is not None and len(info["runs"]) <= INFO_RUNS_LISTED
    header = "  run depth width            activation init            optimizer lr       seed complete"
    if listed:
        header += " " + " ".join(f"{_SHORT[name]:>10s}" for name in learned["fields"]) + " status"
    print(header)
    for r in info["runs"]:
        width = ",".join(str(w) for w in r["width"])
        line = (
            f"  {r['run']:<3d} {r['depth']:<5d} {width:16s} {r['activation_fn']:10s} {r['init']:15s} "
            f"{r['optimizer']:9s} {r['lr']:<8g} {r['seed']:<4d} {r['complete']}"
        )
        if listed:  # the training numbers at the run's last complete record
            numbers = " ".join(f"{_shown_number(r[name]):>10s}" for name in learned["fields"])
            line = f"{line[:-len(r['complete'])]}{r['complete']:8s} {numbers} {r['status']}"
        print(line)
    ended = [(r["run"], r["stopped_at"]) for r in info["runs"] if r.get("stopped_at") is not None]
    if stopped is not None:
        print(f"stopped by train.until: {len(ended)} of {len(info['runs'])} runs"
              + (": " + ", ".join(f"run {r} at epoch {e:g}" for r, e in ended[:INFO_RUNS_LISTED]) if ended else "")
              + (f", … ({len(ended) - INFO_RUNS_LISTED} more)" if len(ended) > INFO_RUNS_LISTED else ""))
    if learned is not None:
        _print_training_summary(learned, listed)
    _warn_at_chance(learned, len(info["runs"]))
    return EXIT_OK


_SHORT = {"train_accuracy": "train_acc", "test_accuracy": "test_acc", "train_loss": "train_loss",
          "test_loss": "test_loss"}


def _shown_number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_training_summary(learned: dict, listed: bool) -> None:
    runs = learned["runs"]
    counts = {}
    for run in runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    print("training, at each run's last complete record: "
          + ", ".join(f"{n} {status}" for status, n in counts.items())
          + f" (trained: train accuracy >= {learned['min_accuracy']:g}, not diverged)")
    if listed:
        return
    for name in learned["fields"]:  # more runs than a table can show: the spread over runs
        values = np.array([run[name] for run in runs if run[name] is not None])
        if values.size:
            print(f"  {name:15s} min {values.min():.4g}  median {np.median(values):.4g}  max {values.max():.4g}"
                  f"  ({values.size} runs)")
        else:
            print(f"  {name:15s} not recorded at any run's last complete record")


def _warn_at_chance(learned: dict | None, n_runs: int) -> None:
    if learned is None or not learned["runs_at_chance"] or learned["chance_accuracy"] is None:
        return
    chance = learned["chance_accuracy"]
    print(
        f"actstats info: warning: {learned['runs_at_chance']} of {n_runs} runs sit at chance accuracy "
        f"(train accuracy <= {chance:.3g} + 0.05 at their last complete record, chance = 1/{round(1 / chance)} "
        f"classes): their activations are those of networks that did not learn",
        file=sys.stderr,
    )


def _cmd_verify(args) -> int:
    from actstats.options import OPTIONS
    from actstats.store import verify_store

    report = verify_store(args.store, progress=OPTIONS["progress"])
    if report.ok:
        print(f"{args.store}: intact ({report.chunks_read} chunks read; {report.checked()})")
        return EXIT_OK
    for line in report.lines():
        print(line)
    print(
        _one_line(f"{args.store}: {len(report.damaged)} damaged or missing, {len(report.incomplete)} incomplete"),
        file=sys.stderr,
    )
    return EXIT_INTEGRITY


def _cmd_report(args) -> int:
    from actstats.cli_queries import apply_selection
    from actstats.options import OPTIONS
    from actstats.report import build_report
    from actstats.store import open_store

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise ActstatsError(f"-o {args.output}: exists and is not a directory")
    selection = {}
    if args.where or args.runs is not None:  # checked before any work; the report keeps these run labels
        selection["runs"] = [int(r) for r in apply_selection(open_store(args.store), args)["run"].values]
    findings = build_report(args.store, args.output, eps=args.eps, progress=OPTIONS["progress"], **selection)
    for claim in findings["claims"]:
        print(f"{claim['id']}: {claim['verdict']}")
    print(os.path.join(args.output, "index.html"))
    return EXIT_OK


COMMANDS = {"init": _cmd_init, "capture": _cmd_capture, "info": _cmd_info, "verify": _cmd_verify, "report": _cmd_report}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
