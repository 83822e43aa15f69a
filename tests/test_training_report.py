"""Whether the networks learned: the report's training curves and table, and `actstats info`'s
training numbers and chance warning."""

from __future__ import annotations

import json

import numpy as np
import pytest

import actstats
from actstats.report.training_figures import TRAINING_VARIABLES, training_curves, training_table
from actstats.synthetic import synthetic_store, write_synthetic_store
from conftest import run_cli

EPOCHS = (0.0, 0.1, 0.5, 1.0, 10.0)  # fractions of the first epoch: the symmetric-log axis


def _planted(runs: int = 4, seed: int = 1):
    """A store in memory with planted accuracy and loss per (run, epoch); run 1's last record is
    incomplete, run 3 has no complete record."""
    ds = synthetic_store(runs=runs, epochs=EPOCHS, depth=1, width=3, samples=(4, 3), gradients=False,
                         activation_fn=["sigmoid", "tanh", "sigmoid", "relu"][:runs])
    rng = np.random.default_rng(seed)
    shape = (runs, len(EPOCHS))
    complete = np.ones(shape, bool)
    complete[1, -1] = False
    complete[3, :] = False
    return ds.assign(
        train_accuracy=(("run", "epoch"), rng.random(shape).astype("float32")),
        test_accuracy=(("run", "epoch"), rng.random(shape).astype("float32")),
        train_loss=(("run", "epoch"), rng.exponential(1.0, shape).astype("float32")),
        test_loss=(("run", "epoch"), rng.exponential(1.0, shape).astype("float32")),
        complete=(("run", "epoch"), complete),
    ).assign_coords(init=("run", np.array(["default", "xavier_uniform", "normal", "default"])),
                    optimizer=("run", np.array(["sgd", "adam", "sgd", "adam"])))


def test_training_curves_writes_a_figure(tmp_path):
    ds = _planted()
    path = training_curves(ds, [0, 1, 2, 3], str(tmp_path))  # run 3 has no complete record
    assert path == str(tmp_path / "training_curves.png")
    data = (tmp_path / "training_curves.png").read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curves_on_a_selection_and_on_partial_or_absent_variables(tmp_path):
    ds = actstats.select_runs(_planted(), runs=[1, 2])  # labels 1 and 2 at positions 0 and 1
    assert training_curves(ds, [0, 1], str(tmp_path), name="selected.png")
    assert (tmp_path / "selected.png").stat().st_size > 0
    partial = _planted().drop_vars(["test_accuracy", "test_loss"])
    assert training_curves(partial, [0], str(tmp_path), name="partial.png")
    assert (tmp_path / "partial.png").stat().st_size > 0
    nothing = _planted().drop_vars(list(TRAINING_VARIABLES))
    assert training_curves(nothing, [0], str(tmp_path), name="nothing.png") is None
    assert not (tmp_path / "nothing.png").exists()


def test_training_table_rows_are_the_stores_values_at_the_last_complete_record():
    ds = _planted()
    rows = training_table(ds)
    assert [row["run"] for row in rows] == [0, 1, 2, 3]
    last = {0: 4, 1: 3, 2: 4}  # run 1's last record is incomplete; run 3 has none
    for row in rows:
        r = row["run"]
        assert row["activation_fn"] == str(ds["activation_fn"].values[r])
        assert row["init"] == str(ds["init"].values[r]) and row["optimizer"] == str(ds["optimizer"].values[r])
        assert row["label"].startswith(f"run {r}: {row['activation_fn']}")
        if r in last:
            assert row["epoch"] == EPOCHS[last[r]]
            for name in TRAINING_VARIABLES:
                assert row[name] == float(ds[name].values[r, last[r]])  # exactly the stored float32
        else:
            assert row["epoch"] is None and row["status"] == "no complete record"
            assert all(row[name] is None for name in TRAINING_VARIABLES)
    assert all(row["chance_accuracy"] == 0.5 for row in rows)  # two classes
    json.dumps(rows, allow_nan=False)  # ready for findings.json


def test_training_table_names_runs_by_label_after_a_selection():
    rows = training_table(actstats.select_runs(_planted(), runs=[2]))
    assert [row["run"] for row in rows] == [2] and rows[0]["label"].startswith("run 2: sigmoid")
    assert rows[0]["train_accuracy"] == float(_planted()["train_accuracy"].values[2, -1])


def test_training_table_without_training_variables_has_none():
    rows = training_table(_planted().drop_vars(list(TRAINING_VARIABLES)))
    assert all(row[name] is None for row in rows for name in TRAINING_VARIABLES)
    assert {row["status"] for row in rows} == {"not known", "no complete record"}


# ------------------------------------------------------------------ actstats info


@pytest.fixture(scope="module")
def chance_store(tmp_path_factory) -> str:
    """Four runs, 10 classes (chance 0.1): runs 0 and 2 end at chance (0.1, 0.15 = the limit),
    run 1 just above it (0.16), run 3 trained (0.97)."""
    path = str(tmp_path_factory.mktemp("info") / "chance.zarr")
    accuracy = np.array([[0.1, 0.1, 0.1], [0.1, 0.13, 0.16], [0.2, 0.15, 0.15], [0.1, 0.6, 0.97]])
    return write_synthetic_store(path, runs=4, epochs=[0.0, 0.5, 2.0], layers=1, samples=10, units=3,
                                 training={"train_accuracy": accuracy, "test_accuracy": accuracy - 0.01,
                                           "train_loss": 2.3 - accuracy, "test_loss": 2.4 - accuracy})


def test_info_lists_each_runs_accuracy_and_loss_and_warns_at_chance(chance_store):
    result = run_cli("info", chance_store)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("run depth"))
    assert header.split()[-5:] == ["train_acc", "test_acc", "train_loss", "test_loss", "status"]
    rows = lines[lines.index(header) + 1: lines.index(header) + 5]
    ds = actstats.open_store(chance_store)
    statuses = ["not trained", "not trained", "not trained", "trained"]
    for r, (row, status) in enumerate(zip(rows, statuses)):
        assert row.endswith(f" {status}") and row.split()[0] == str(r)
        shown = [float(c) for c in row[: -len(status)].split()[-4:]]
        for value, name in zip(shown, TRAINING_VARIABLES):  # 4 significant digits
            assert value == pytest.approx(float(ds[name].values[r, -1]), rel=5e-4)
    assert "training, at each run's last complete record: 3 not trained, 1 trained" in result.stdout
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("actstats info: warning: 2 of 4 runs sit at chance")
    assert "1/10" in warning[0]


def test_info_json_has_the_training_numbers(chance_store):
    result = run_cli("info", chance_store, "--format", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    ds = actstats.open_store(chance_store)
    assert info["chance_accuracy"] == 0.1 and info["runs_at_chance"] == 2
    for r, run in enumerate(info["runs"]):
        for name in TRAINING_VARIABLES:
            assert run[name] == float(ds[name].values[r, -1])
    assert [run["status"] for run in info["runs"]] == ["not trained"] * 3 + ["trained"]
    assert "2 of 4 runs sit at chance" in result.stderr


def test_info_summarises_more_than_20_runs(tmp_path):
    accuracy = np.linspace(0.05, 1.0, 25)
    path = write_synthetic_store(tmp_path / "many.zarr", runs=25, epochs=[0.0, 1.0], layers=1, samples=10, units=2,
                                 training={"train_accuracy": accuracy})
    result = run_cli("info", path)
    assert result.returncode == 0, result.stderr
    assert " train_acc " not in result.stdout  # no per-run columns
    summary = next(line for line in result.stdout.splitlines() if line.split()[:2] == ["train_accuracy", "min"])
    assert summary.split()[1:] == ["min", "0.05", "median", "0.525", "max", "1", "(25", "runs)"]
    at_chance = int((accuracy.astype("float32") <= np.float32(0.15)).sum())
    assert f"{at_chance} of 25 runs sit at chance" in result.stderr


def test_info_without_training_variables_is_unchanged_and_quiet(tmp_path):
    path = write_synthetic_store(tmp_path / "plain.zarr", runs=2, epochs=2, layers=1, samples=10, units=2)
    result = run_cli("info", path)
    assert result.returncode == 0 and result.stderr == ""
    assert " train_acc " not in result.stdout and "training," not in result.stdout
    assert "runs_at_chance" not in json.loads(run_cli("info", path, "--format", "json").stdout)


def test_module_doctests_pass():
    import doctest

    import actstats.report.training_figures as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0
