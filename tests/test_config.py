"""The capture config: defaults, sweeps, and one clear line for every bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actstats.capture.config import ConfigError, SCHEMA, log_schedule, parse_config


def test_defaults_fill_every_key():
    config = parse_config("")
    assert len(config.runs) == 1
    run = config.runs[0]
    assert run["model"]["depth"] == 5 and run["model"]["width"] == [256] * 5
    assert run["train"]["optimizer"] == "sgd" and run["train"]["lr"] == 0.1
    assert run["record"]["epochs"] == log_schedule(16, 50)


def test_sweep_is_a_cartesian_product_first_key_slowest():
    config = parse_config('[sweep]\n"model.init" = ["default", "lsuv"]\n"train.seed" = [0, 1, 2]')
    pairs = [(r["model"]["init"], r["train"]["seed"]) for r in config.runs]
    assert pairs == [("default", 0), ("default", 1), ("default", 2), ("lsuv", 0), ("lsuv", 1), ("lsuv", 2)]
    assert config.sweep["sweep"] == {"model.init": ["default", "lsuv"], "train.seed": [0, 1, 2]}


def test_log_schedule_has_zero_and_end_and_n_points():
    points = log_schedule(16, 50)
    assert len(points) == 16 and points[0] == 0 and points[-1] == 50
    assert all(b > a for a, b in zip(points, points[1:]))
    assert points[1] == pytest.approx(0.05)


def test_width_list_and_fractional_epochs():
    config = parse_config("[model]\ndepth = 2\nwidth = [4, 3]\n[train]\nepochs = 1\n[record]\nepochs = [0, 0.1, 1]")
    assert config.runs[0]["model"]["width"] == [4, 3]
    assert config.epochs == (0.0, 0.1, 1.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[model]\nwidht = 3", "unknown key 'model.widht' (did you mean 'model.width'?)"),
        ("[modle]\ndepth = 3", "unknown section [modle] (did you mean 'model'?)"),
        ('[sweep]\n"model.dept" = [1]', "unknown sweep key 'model.dept' (did you mean 'model.depth'?)"),
        ("[model]\nwidth = -3", "model.width = -3: must be a positive integer"),
        ("[model]\ndepth = 0", "model.depth = 0: must be a positive integer"),
        ("[train]\nlr = 0", "train.lr = 0: must be a number > 0"),
        ("[train]\nlr = -0.1", "train.lr = -0.1: must be a number > 0"),
        ("[train]\nepochs = 2\n[record]\nepochs = [0, 3]", "record.epochs contains 3, beyond train.epochs = 2"),
        ('[dataset]\nname = "cifar"', "dataset.name = 'cifar': must be one of digits, mnist1d, synthetic, npz"),
        ('[dataset]\nname = "npz"', "dataset.name = 'npz' needs dataset.path"),
        ("[model]\ndepth = 2\nwidth = [3, 3, 3]", "model.width = [3, 3, 3]: has 3 entries but model.depth = 2"),
        ('[record]\nepochs = "log:1"', "record.epochs = 'log:1'"),
        ('[model]\nactivation = "swish"', "model.activation = 'swish': must be one of"),
        ('[sweep]\n"dataset.name" = ["digits"]', "sweep key 'dataset.name' is not allowed"),
        ('[sweep]\n"train.lr" = [0.1, -1]', "train.lr = -1: must be a number > 0 (run 1: train.lr = -1)"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_config_names_key_and_value(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="c.toml")
    message = str(info.value)
    assert message.startswith("c.toml: ")
    assert expected in message
    assert "\n" not in message


KEYS = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]
values = st.one_of(
    st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
    st.lists(st.integers(-2, 300), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS + ["model.nope", "zzz.depth"]), value=values)
def test_parser_never_fails_with_anything_but_a_config_error(key, value):
    section, name = key.split(".")
    rendered = _toml_value(value)
    if rendered is None:
        return
    text = f"[{section}]\n{name} = {rendered}\n"
    try:
        config = parse_config(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        run = config.runs[0]
        assert run["model"]["depth"] >= 1 and run["train"]["lr"] > 0
        assert all(0 <= e <= run["train"]["epochs"] for e in run["record"]["epochs"])


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"' if value.isprintable() else None
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return None


def test_linked_sweep_keys_vary_together():
    config = parse_config(
        '[sweep]\n"train.optimizer, train.lr" = [["sgd", 0.1], ["adam", 0.001]]\n"train.seed" = [0, 1]'
    )
    got = [(r["train"]["optimizer"], r["train"]["lr"], r["train"]["seed"]) for r in config.runs]
    assert got == [("sgd", 0.1, 0), ("sgd", 0.1, 1), ("adam", 0.001, 0), ("adam", 0.001, 1)]
    with pytest.raises(ConfigError, match="each value must be a list of 2 values"):
        parse_config('[sweep]\n"train.optimizer, train.lr" = [["sgd"]]')
    with pytest.raises(ConfigError, match="unknown sweep key 'train.lrr'"):
        parse_config('[sweep]\n"train.optimizer, train.lrr" = [["sgd", 1]]')


@pytest.mark.parametrize("width, depth, expected", [
    (10**9, 1, "more than the 1048576 units a layer"),
    (70_000, 3, r"9\.8e\+09 weights \(36\.5 GiB as float32\)"),
])
def test_absurd_widths_are_config_errors_not_allocator_failures(width, depth, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(f"[model]\ndepth = {depth}\nwidth = {width}\n")
    assert parse_config("[model]\ndepth = 3\nwidth = 4096\n").runs[0]["model"]["width"] == [4096] * 3
