"""actstats.select_runs: runs kept by per-run coordinates (text or typed values) and by label."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import actstats
from actstats.errors import ActstatsValueError
from actstats.selection import parse_runs, parse_where, select_runs
from actstats.synthetic import synthetic_store


@pytest.fixture(scope="module")
def ds():
    ds = synthetic_store(runs=6, depth=[1, 2, 1, 2, 1, 2], width=4, samples=(3, 2),
                         activation_fn=["sigmoid", "tanh", "sigmoid", "relu", "tanh", "sigmoid"], gradients=False)
    return ds.assign_coords(
        lr=("run", np.array([0.1, 0.01, 0.1, 0.001, 0.01, 0.1], dtype="float32")),  # float32: "0.1" must still match
        seed=("run", np.array([0, 0, 1, 1, 2, 2])),
        optimizer=("run", np.array(["sgd", "adam", "sgd", "adam", "sgd", "adam"])),
    )


def _kept(result) -> list[int]:
    return result["run"].values.tolist()


def test_exported_from_actstats():
    assert "select_runs" in actstats.__all__ and actstats.select_runs is select_runs


def test_where_with_a_scalar_keeps_the_matching_runs_with_their_labels(ds):
    sigmoid = select_runs(ds, where={"activation_fn": "sigmoid"})
    assert _kept(sigmoid) == [0, 2, 5]
    assert set(sigmoid["activation_fn"].values) == {"sigmoid"}
    xr.testing.assert_identical(sigmoid, ds.isel(run=[0, 2, 5]))  # values untouched, labels kept


def test_where_with_a_list_is_either_value_and_keys_all_match(ds):
    assert _kept(select_runs(ds, where={"activation_fn": ["tanh", "relu"]})) == [1, 3, 4]
    assert _kept(select_runs(ds, where={"activation_fn": ("sigmoid", "tanh"), "depth": 2})) == [1, 5]
    assert _kept(select_runs(ds, where={"seed": [0, 2], "optimizer": "sgd"})) == [0, 4]


def test_text_values_are_converted_to_the_coordinate_dtype(ds):
    assert _kept(select_runs(ds, where={"lr": "0.1"})) == [0, 2, 5]  # float32 coordinate
    assert _kept(select_runs(ds, where={"lr": 0.1})) == [0, 2, 5]
    assert _kept(select_runs(ds, where={"lr": ["1e-2", "0.001"]})) == [1, 3, 4]
    assert _kept(select_runs(ds, where={"depth": "2", "seed": [" 1 "]})) == [3]
    assert _kept(select_runs(ds, where={"depth": 2.0})) == [1, 3, 5]
    assert _kept(select_runs(ds, where={"seed": np.int64(2)})) == [4, 5]


def test_runs_by_label_and_with_where(ds):
    assert _kept(select_runs(ds, runs=[5, 0, 3])) == [0, 3, 5]  # the store's order
    assert _kept(select_runs(ds, runs=["4"])) == [4]
    assert _kept(select_runs(ds, where={"activation_fn": "sigmoid"}, runs=[2, 3, 5])) == [2, 5]
    selected = select_runs(ds, runs=[1, 3, 5])
    assert _kept(select_runs(selected, runs=[3])) == [3]  # labels, not positions


def test_no_selection_returns_the_dataset(ds):
    assert select_runs(ds) is ds and select_runs(ds, where={}) is ds


def _one_line_error(ds, **kwargs) -> str:
    with pytest.raises(ActstatsValueError) as caught:
        select_runs(ds, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_coordinate_names_the_key_and_the_known_ones(ds):
    message = _one_line_error(ds, where={"activation": "tanh"})
    assert "'activation'" in message
    for known in ("activation_fn", "init", "optimizer", "lr", "batch_size", "seed", "dataset", "depth"):
        assert known in message
    assert "width" not in message and "split" not in message  # not per-run coordinates


def test_no_matching_run_names_the_key_and_the_values_present(ds):
    message = _one_line_error(ds, where={"activation_fn": "softsign"})
    assert "activation_fn=softsign" in message and "sigmoid" in message and "relu" in message
    message = _one_line_error(ds, where={"activation_fn": "relu", "depth": 1})
    assert "activation_fn=relu and depth=1" in message
    assert "no run 9" in _one_line_error(ds, runs=[0, 9])
    assert "runs" in _one_line_error(ds, where={"activation_fn": "relu"}, runs=[0, 1])
    assert "no run given" in _one_line_error(ds, runs=[])
    assert "no value given" in _one_line_error(ds, where={"depth": []})


def test_values_that_are_not_of_the_coordinate_dtype(ds):
    assert "depth='deep' is not an integer" in _one_line_error(ds, where={"depth": "deep"})
    assert "is not an integer" in _one_line_error(ds, where={"depth": 1.5})
    assert "is not a number" in _one_line_error(ds, where={"lr": "fast"})
    assert "is not an integer" in _one_line_error(ds, runs=["x"])
    assert "must be a dict" in _one_line_error(ds, where=["activation_fn=tanh"])


def test_errors_carry_the_argument_for_the_command_line(ds):
    with pytest.raises(ActstatsValueError) as caught:
        select_runs(ds, where={"nope": 1})
    assert caught.value.argument == "where" and caught.value.key == "nope"
    assert caught.value.problem.startswith("unknown run coordinate 'nope'")
    with pytest.raises(ValueError):  # a ValueError for Python users
        select_runs(ds, runs=[99])


def test_command_line_text_forms():
    assert parse_where("activation_fn=sigmoid") == ("activation_fn", ["sigmoid"])
    assert parse_where(" lr = 0.1, 0.01 ") == ("lr", ["0.1", "0.01"])
    assert parse_runs("0,3,5") == [0, 3, 5]
    for bad in ("activation_fn", "=tanh", "depth=", "depth=,"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_where(bad)
    for bad in ("", "a,b", "1.5"):
        with pytest.raises(ValueError, match="run labels"):
            parse_runs(bad)


def test_module_doctests_pass():
    import doctest

    import actstats.selection

    result = doctest.testmod(actstats.selection, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 7 and result.failed == 0
