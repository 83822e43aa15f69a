"""The query sub-commands: DESIGN.md's fields in json and csv, tables, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from actstats import cli
from actstats.options import set_options
from conftest import ROOT, run_cli, run_main as _main

#: DESIGN.md, "The command line": the fields each query's records have at least.
DESIGN_FIELDS = {
    "saturation": ["fraction", "fraction_low", "fraction_high", "ci_low", "ci_high", "n_samples"],
    "bimodality": ["dip", "dip_pvalue", "bimodality_coefficient", "beta_a", "beta_b", "u_shaped",
                   "bimodal_at_bounds", "pvalue_adjusted"],
    "weights": ["n", "mean", "std", "skewness", "excess_kurtosis", "k2_pvalue", "jb_pvalue", "ks_d", "w1_normal",
                "best_family", "pvalue_adjusted"],
    "gradients": ["weight_grad_norm", "delta_rms", "mean_derivative", "ratio_to_next_layer"],
    "compare": ["fraction_train", "fraction_test", "difference", "ci_low", "ci_high", "pvalue", "pvalue_adjusted"],
    "fit": ["family", "log_likelihood", "aic", "bic", "ks_statistic", "best_family"],
}
KEYS = {
    "saturation": ["run", "epoch", "layer", "split"],
    "bimodality": ["layer", "split"],
    "weights": ["run", "epoch", "layer"],
    "gradients": ["run", "epoch", "layer"],
    "compare": ["run", "epoch", "layer"],
    "fit": ["layer", "family"],
}
OPTIONS = {
    "bimodality": ["--by", "layer,split"],  # keeps the test fast; the default by is tested in test_queries
    "fit": ["--by", "layer", "--family", "beta,logit_normal"],
}


@pytest.mark.parametrize("command", list(DESIGN_FIELDS))
def test_json_records_have_the_design_fields(small_store, capsys, command):
    code, out, err = _main(capsys, command, small_store, "--format", "json", *OPTIONS.get(command, []))
    assert code == 0, err
    records = json.loads(out)
    assert records and all(isinstance(r, dict) for r in records)
    for record in records:
        assert set(KEYS[command]) <= set(record), record.keys()
        assert set(DESIGN_FIELDS[command]) <= set(record)
    assert list(records[0])[: len(KEYS[command])] == KEYS[command]
    numbers = [r[f] for r in records for f in DESIGN_FIELDS[command] if r[f] is not None]
    assert numbers, "every value is null"


def test_csv_has_a_header_and_the_json_values(small_store, capsys):
    _, as_json, _ = _main(capsys, "saturation", small_store, "--format", "json", "--by", "layer,split")
    _, as_csv, _ = _main(capsys, "saturation", small_store, "--format", "csv", "--by", "layer,split")
    records = json.loads(as_json)
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert list(rows[0]) == list(records[0])
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert float(row["fraction"]) == record["fraction"]  # full precision, not rounded


def test_table_is_aligned_and_rounded_for_display_only(small_store, capsys):
    code, out, _ = _main(capsys, "weights", small_store, "--by", "layer")
    assert code == 0
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:2] == ["layer", "n"] and "gaussian" in header
    table = [line for line in lines if not line.startswith("#")]
    assert len(table) == 4  # header + 3 layers
    assert any(line.startswith("# Benjamini-Hochberg") for line in lines)
    assert all(len(cell) <= 10 for line in table[1:] for cell in line.split())  # 4 significant digits


def test_bad_options_exit_2_with_one_line_naming_option_and_value(small_store, capsys):
    code, out, err = _main(capsys, "saturation", small_store, "--by", "run,nonsense")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "--by run,nonsense" in err and "'nonsense'" in err
    code, _, err = _main(capsys, "fit", small_store, "--variable", "weight", "--family", "normal,gamma")
    assert code == 2 and "--family normal,gamma" in err and "'gamma'" in err
    code, _, err = _main(capsys, "compare", small_store, "--eps", "0")
    assert code == 2 and "--eps 0" in err
    code, _, err = _main(capsys, "weights", small_store, "--by", "split")
    assert code == 2 and "'split'" in err


def test_eps_2_in_a_real_process_exits_2_without_traceback(small_store):
    result = run_cli("saturation", small_store, "--eps", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--eps 2" in lines[0] and "Traceback" not in result.stderr


def test_a_reader_that_goes_away_stops_the_output_quietly(small_store):
    """`actstats saturation STORE | head -1`: no "Broken pipe", no traceback; the status is
    SIGPIPE's (141), as Unix tools report it."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "actstats.cli", "saturation", str(small_store),
                                "--format", "csv", "--no-progress"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.close()  # the reader goes away before the query has written anything
    _, err = process.communicate(timeout=300)
    assert err == b"", err.decode()[:2000]
    assert process.returncode == cli.EXIT_PIPE


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_without_a_terminal_long_work_reports_in_one_line_a_period(tmp_path):
    """stderr a log (not a terminal): capture and verify write one-line progress reports at
    most every $ACTSTATS_PROGRESS_LOG seconds (0: at each step here), and nothing with
    --no-progress."""
    config = tmp_path / "c.toml"
    config.write_text('[dataset]\nprobe_train = 10\nprobe_test = 5\n[model]\ndepth = 1\nwidth = 4\n'
                      '[train]\nepochs = 1\n[record]\nepochs = [0, 0.5, 1]\n')
    store = tmp_path / "s.zarr"
    result = run_cli("capture", config, "-o", store, env={"ACTSTATS_PROGRESS_LOG": "0"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("capture: ") and " records (" in line for line in lines), lines
    assert lines[-1].startswith("capture: ") and "(100%)" in lines[-1]
    quiet = run_cli("verify", store, "--no-progress", env={"ACTSTATS_PROGRESS_LOG": "0"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    bad = run_cli("verify", store, env={"ACTSTATS_PROGRESS_LOG": "soon"})
    assert bad.returncode == 2 and "ACTSTATS_PROGRESS_LOG='soon'" in bad.stderr


def test_epochs_and_layers_select_the_records_a_query_sees(small_store, capsys):
    """--epochs last keeps each run's last complete record, --epochs and --layers given values;
    a value not in the store is one line naming the option, exit 2."""
    import actstats

    ds = actstats.open_store(small_store)
    code, out, _ = _main(capsys, "saturation", small_store, "--format", "json", "--by", "run,epoch,layer",
                         "--epochs", "last", "--layers", "1")
    assert code == 0
    rows = json.loads(out)
    last = float(ds["epoch"].values[-1])  # the small store's runs are all complete
    assert {row["epoch"] for row in rows} == {last} and {row["layer"] for row in rows} == {1}
    assert len(rows) == ds.sizes["run"]
    expected = actstats.saturation(ds.isel(epoch=[-1], layer=[0]), by=("run", "epoch", "layer")).compute()
    assert sorted(row["fraction"] for row in rows) == pytest.approx(sorted(expected["fraction"].values.ravel()))
    for option, value in (("--epochs", "12345"), ("--layers", "9")):
        code, out, err = _main(capsys, "saturation", small_store, option, value)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and f"{option} {value}" in err, err
    with pytest.raises(SystemExit) as exit_:  # argparse's own one line (usage above it)
        cli.main(["saturation", str(small_store), "--epochs", "soon"])
    assert exit_.value.code == 2 and "argument --epochs: expected last or epochs" in capsys.readouterr().err


def test_gradients_on_a_store_without_gradients_names_them(tmp_path, capsys):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "foreign.zarr"
    subprocess.run([sys.executable, os.path.join(root, "docs", "examples", "write_store_without_actstats.py"),
                    str(path)], check=True, capture_output=True, timeout=120)
    code, _, err = _main(capsys, "gradients", path)
    assert code == 2 and "'weight_grad' and 'delta'" in err and err.count("\n") == 1


def test_progress_bar_only_when_options_and_terminal_allow():
    from actstats.options import progress_enabled as _progress_enabled

    with set_options(progress=False):
        assert not _progress_enabled()
    with set_options(progress=True):
        assert _progress_enabled()
    with set_options(progress=None):  # pytest captures stderr: not a terminal
        assert not _progress_enabled()


# ------------------------------------------------------------------ --where and --runs


def test_where_and_runs_select_the_runs_a_query_sees(small_store, capsys):
    code, out, err = _main(capsys, "saturation", small_store, "--format", "json", "--by", "run",
                           "--where", "activation_fn=tanh", "--where", "depth=3")
    assert code == 0, err
    records = json.loads(out)
    assert [r["run"] for r in records] == [5, 7]  # labels of the store, not positions
    assert {r["activation_fn"] for r in records} == {"tanh"}
    _, everything, _ = _main(capsys, "saturation", small_store, "--format", "json", "--by", "run")
    by_run = {r["run"]: r for r in json.loads(everything)}
    assert records == [by_run[5], by_run[7]]  # the same numbers as without the selection
    code, out, err = _main(capsys, "weights", small_store, "--format", "json", "--by", "run",
                           "--runs", "0,3,5", "--where", "activation_fn=sigmoid,tanh", "--where", "lr=0.05")
    assert code == 0, err
    assert [r["run"] for r in json.loads(out)] == [0, 3, 5]


def test_every_query_takes_where_and_runs():
    from actstats.registry import QUERIES

    parser = cli.build_parser()
    for spec in QUERIES.values():
        args = parser.parse_args([spec.cli_name, "STORE", "--where", "seed=1,2", "--where", "init=default",
                                  "--runs", "0,3"])
        assert args.where == [("seed", ["1", "2"]), ("init", ["default"])] and args.runs == [0, 3]
    args = parser.parse_args(["report", "STORE", "-o", "DIR", "--where", "activation_fn=sigmoid", "--runs", "1"])
    assert args.where == [("activation_fn", ["sigmoid"])] and args.runs == [1]


@pytest.mark.parametrize("option, expected", [
    (["--where", "activation=tanh"], ["--where activation=tanh", "unknown run coordinate 'activation'",
                                      "activation_fn", "optimizer", "seed"]),
    (["--where", "activation_fn=relu"], ["--where activation_fn=relu", "no run has activation_fn=relu",
                                         "sigmoid, tanh"]),
    (["--where", "depth=deep"], ["--where depth=deep", "is not an integer"]),
    (["--runs", "2,99"], ["--runs 2,99", "no run 99"]),
    (["--where", "activation_fn"], ["argument --where", "KEY=VALUE"]),
    (["--runs", "first"], ["argument --runs", "0,3,5"]),
])
def test_a_bad_selection_exits_2_with_one_line(small_store, capsys, option, expected):
    try:
        code, out, err = _main(capsys, "saturation", small_store, *option)
    except SystemExit as exc:  # argparse's own errors (the form of the option)
        captured = capsys.readouterr()
        code, out, err = exc.code, captured.out, captured.err
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    for text in expected:
        assert text in err


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_a_bad_where_key_in_a_real_process_exits_2_without_traceback(small_store, tmp_path):
    for command in (["compare", small_store], ["report", small_store, "-o", tmp_path / "report"]):
        result = run_cli(*command, "--where", "nonsense=1", "--no-progress")
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert "--where nonsense=1" in lines[0] and "'nonsense'" in lines[0] and "activation_fn" in lines[0]


@pytest.mark.long  # 11-13 s in make test's profile: run by make test-long
def test_report_on_the_runs_selected(small_store, tmp_path):
    output = tmp_path / "report"
    result = run_cli("report", small_store, "-o", output, "--where", "activation_fn=sigmoid", "--runs", "0,2,4,5",
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    findings = json.loads((output / "findings.json").read_text())
    assert [c["id"] for c in findings["claims"]][:6] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert (output / "index.html").stat().st_size > 0


def test_report_passes_the_selected_labels_to_build_report(small_store, tmp_path, monkeypatch, capsys):
    import actstats.report

    seen = {}

    def fake_build_report(store, output, *, eps=None, progress=None, runs=None):
        seen.update(store=store, runs=runs)
        return {"claims": []}

    monkeypatch.setattr(actstats.report, "build_report", fake_build_report)
    code, _, err = _main(capsys, "report", small_store, "-o", tmp_path / "r", "--where", "depth=3",
                         "--where", "activation_fn=tanh")
    assert code == 0, err
    assert seen == {"store": str(small_store), "runs": [5, 7]}
    seen.clear()
    _main(capsys, "report", small_store, "-o", tmp_path / "r")
    assert seen == {"store": str(small_store), "runs": None}  # no selection: every run
