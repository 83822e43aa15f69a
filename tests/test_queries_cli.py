"""The query sub-commands: DESIGN.md's fields in json and csv, tables, one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pytest

from actstats import cli
from actstats.options import set_options
from conftest import run_cli

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


def _main(capsys, *args):
    code = cli.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
