"""Fuzzing with hypothesis: whole random configs, random command lines, randomly damaged
stores. The promise under test: never a traceback. Configs fail with ConfigError, the
command line exits 0, 2 or 3 with one line on stderr for 2 and 3, and only ActstatsError
subclasses leave open_store, verify_store or reading a store's data. The `stress`
variants run many more examples (docs/reliability.md gives the counts)."""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import tempfile
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actstats
from actstats.errors import ActstatsError, IntegrityError
from actstats.capture.config import SCHEMA, ConfigError, load_config, parse_config

from conftest import write_config
from reliability_tools import MICRO_CONFIG, cli

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STRESS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ config documents

def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value) -> str:
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
        return _toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _document(tables: dict) -> str:
    lines = []
    for section, body in tables.items():
        if not isinstance(body, dict):
            lines.append(f"{_toml_string(section)} = {_toml_value(body)}")
    for section, body in tables.items():
        if isinstance(body, dict):
            lines.append(f"[{_toml_string(section)}]")
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


DOTTED = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]
scalars = st.one_of(
    st.integers(), st.integers(-3, 300), st.floats(), st.floats(1e-6, 1e3), st.booleans(), st.text(max_size=12),
    st.sampled_from(["sigmoid", "tanh", "relu", "digits", "npz", "sgd", "adam", "default", "lsuv", "log:4",
                     "log:0", "log:2000", "log:99999999999"]),
    st.dates(), st.datetimes(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=12)
positive = st.floats(1e-6, 1e3)
#: Plausible values of each key, so that documents get past the first check and reach
#: the later ones (per-run validation, sweep expansion, log schedules).
PLAUSIBLE = {
    "dataset.name": st.sampled_from(["digits", "mnist1d", "synthetic", "npz"]),
    "dataset.path": st.sampled_from(["x.npz", ""]),
    "dataset.test_fraction": st.floats(0.0, 1.0),
    "dataset.probe_train": st.integers(-1, 2000),
    "dataset.probe_test": st.integers(-1, 2000),
    "model.depth": st.integers(0, 12) | st.sampled_from([10_000, 10_001, 2**62]),
    "model.width": st.integers(0, 512) | st.lists(st.integers(1, 64), min_size=1, max_size=6),
    "model.activation": st.sampled_from(["sigmoid", "tanh", "relu", "softsign", "swish"]),
    "model.init": st.sampled_from(["default", "xavier_uniform", "normal", "uniform", "lsuv", "he"]),
    "model.init_scale": positive | st.just(0.0),
    "train.optimizer": st.sampled_from(["sgd", "adam", "rmsprop"]),
    "train.lr": positive | st.sampled_from([0.0, -1.0, float("inf"), 1e30]),
    "train.momentum": st.floats(0, 0.99),
    "train.betas": st.lists(st.floats(0, 1), min_size=1, max_size=3),
    "train.layer_lr": st.lists(positive, min_size=1, max_size=6),
    "train.batch_size": st.integers(0, 256),
    "train.epochs": positive | st.integers(1, 100) | st.sampled_from([5e-324, 1e-300, 1e300]),
    "train.seed": st.integers(),
    "record.epochs": st.lists(st.floats(0, 120) | st.integers(0, 120), min_size=0, max_size=8)
    | st.sampled_from(["log:2", "log:16", "log:1000", "log:1001", "log:1_0", "log:", "lin:4"]),
}


def _value_of(draw, key):
    if key in PLAUSIBLE and draw(st.sampled_from(range(6))) < 5:
        return draw(PLAUSIBLE[key])
    return draw(values)


@st.composite
def config_documents(draw) -> str:
    tables: dict = {}
    known = list(SCHEMA) + ["sweep"]
    sections = draw(st.lists(st.sampled_from(known * 6 + ["modle", "Model", "", "\n"]), max_size=6, unique=True))
    for section in sections:
        if section == "sweep":
            body = {}
            for _ in range(draw(st.integers(0, 3))):
                keys = draw(st.lists(st.sampled_from(DOTTED * 8 + ["model.dept", "", " , "]), min_size=1, max_size=3))
                if draw(st.sampled_from(range(8))) == 7:
                    body[", ".join(keys)] = draw(values)  # not a list
                elif len(keys) == 1:
                    body[keys[0]] = [_value_of(draw, keys[0]) for _ in range(draw(st.integers(0, 3)))]
                else:
                    body[", ".join(keys)] = [[_value_of(draw, k) for k in keys] for _ in range(draw(st.integers(0, 3)))]
            tables[section] = body
        elif draw(st.sampled_from(range(20))) == 19:
            tables[section] = draw(values)  # a value where a table belongs
        else:
            names = list(SCHEMA.get(section, {"x": None}))
            chosen = draw(st.lists(st.sampled_from(names * 8 + ["widht", "nope"]), max_size=6, unique=True))
            tables[section] = {name: _value_of(draw, f"{section}.{name}") for name in chosen}
    return _document(tables)


def _check_config_text(text: str) -> str:
    try:
        config = parse_config(text, source="fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ") and "\n" not in message
        return "ConfigError"
    for run in config.runs:
        assert 1 <= run["model"]["depth"] <= 10_000 and len(run["model"]["width"]) == run["model"]["depth"]
        assert run["train"]["lr"] > 0 and math.isfinite(run["train"]["lr"])
        epochs = run["record"]["epochs"]
        assert epochs == sorted(set(epochs)) and all(0 <= e <= run["train"]["epochs"] for e in epochs)
    assert len(config.epochs) == len(set(config.epochs))
    return "parsed"


@FAST
@given(text=config_documents())
def test_whole_random_config_documents_parse_or_fail_with_one_line(text):
    _check_config_text(text)


@FAST
@given(text=st.text(max_size=300))
def test_random_text_as_a_config_parses_or_fails_with_one_line(text):
    _check_config_text(text)


@pytest.mark.stress
def test_stress_whole_random_config_documents():
    outcomes = Counter()

    @STRESS
    @given(text=config_documents())
    def check(text):
        outcomes[_check_config_text(text)] += 1

    check()
    print("\nconfig documents:", json.dumps(dict(outcomes)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_as_a_config_file(tmp_path, data):
    path = tmp_path / "bytes.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


# ----------------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def micro_store(tmp_path_factory) -> str:
    from actstats.capture import capture

    directory = tmp_path_factory.mktemp("micro")
    path = str(directory / "micro.zarr")
    capture(write_config(directory, MICRO_CONFIG, "micro.toml"), path, progress=False)
    return path


@pytest.fixture(scope="module")
def stores(micro_store, tmp_path_factory) -> tuple[str, str]:
    """The micro store, and a copy with one activation chunk that fails its checksum."""
    damaged = str(tmp_path_factory.mktemp("micro-damaged") / "damaged.zarr")
    shutil.copytree(micro_store, damaged)
    chunk = os.path.join(damaged, "activation", "c", "0", "1", "0", "0", "0")
    data = bytearray(open(chunk, "rb").read())
    data[7] ^= 1
    open(chunk, "wb").write(bytes(data))
    return micro_store, damaged


QUERIES = ["saturation", "bimodality", "fit", "weights", "gradients", "compare", "info", "verify"]
DIMS = ["run", "epoch", "layer", "sample", "unit", "split", "fan_in"]
by_values = st.one_of(
    st.lists(st.sampled_from(DIMS), max_size=4).map(",".join),
    st.lists(st.sampled_from(DIMS + ["", " ", "runs", "RUN"]), max_size=4).map(",".join),
    st.text(max_size=10),
)
number_text = st.one_of(
    st.floats().map(repr), st.sampled_from(["0", "0.5", "0.05", "-0", "nan", "inf", "1e400", "0x10", "", "1/2", "2"]),
    st.text(max_size=6),
)
option = st.one_of(
    st.tuples(st.just("--by"), by_values),
    st.tuples(st.just("--by"), st.lists(st.sampled_from(DIMS), max_size=3, unique=True).map(",".join)),
    st.tuples(st.just("--eps"), st.floats(0.001, 0.49).map(repr)),
    st.tuples(st.just("--eps"), number_text),
    st.tuples(st.just("--format"), st.sampled_from(["table", "json", "csv", "xml", "", "JSON"]) | st.text(max_size=5)),
    st.tuples(st.just("--family"), st.sampled_from(["all", "beta", "normal,t", "beta_mixture", ",", "gauss"])
              | st.text(max_size=8)),
    st.tuples(st.just("--variable"), st.sampled_from(["activation", "weight", "delta"])),
    st.tuples(st.sampled_from(["--no-progress", "--help", "-h", "--resume", "--overwrite", "--", "-"])),
    st.tuples(st.sampled_from(["-o", "--workers", "--output"]), st.text(max_size=6)),
    st.tuples(st.text(max_size=8)),
)


def _rarely(draw, strategy, otherwise):
    """`strategy` one time in eight, else `otherwise` (hypothesis' one_of is even-handed)."""
    return draw(strategy) if draw(st.sampled_from(range(8))) == 7 else draw(otherwise)


@st.composite
def command_lines(draw, stores: tuple[str, str]) -> list[str]:
    command = _rarely(draw, st.text(max_size=6), st.sampled_from(QUERIES))
    target = _rarely(draw, st.sampled_from(["/nonexistent/x.zarr", "", "."]) | st.text(max_size=8),
                     st.sampled_from([stores[0]] * 3 + [stores[1]]))
    argv = [command] if draw(st.sampled_from(range(16))) == 15 else [command, target]
    for part in draw(st.lists(option, max_size=3)):
        argv += list(part)
    if draw(st.sampled_from(range(10))) == 9:
        argv = draw(st.permutations(argv))
    return argv


def _check_command_line(argv) -> str:
    if argv and argv[0] in ("report", "capture") or any(a.startswith("--sch") for a in argv):
        return "skipped"  # report draws figures and capture trains (both tested elsewhere); --scheduler would dial out
    code, out, err = cli(*argv)
    assert code in (0, 2, 3), (argv, code, err)
    lines = err.split("\n")[:-1]
    if code in (2, 3):
        assert err.endswith("\n") and "Traceback" not in err, (argv, err)
        assert len(lines) == 1, (argv, err)
        if argv and argv[0] == "verify" and code == 3:
            assert out  # the list is on stdout
    else:
        assert all(line.startswith("actstats ") and ": warning: " in line for line in lines), (argv, err)
    return f"exit {code}"


def test_random_command_lines_exit_0_2_or_3_with_one_line(stores):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(argv=command_lines(stores))
    def check(argv):
        _check_command_line(argv)

    check()


@pytest.mark.stress
def test_stress_random_command_lines(stores):
    outcomes = Counter()

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(argv=command_lines(stores))
    def check(argv):
        outcomes[_check_command_line(argv)] += 1

    check()
    print("\ncommand lines:", json.dumps(dict(outcomes)))


# -------------------------------------------------------------------- damaged stores

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("delete")),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("replace"), st.binary(max_size=64)),
    st.tuples(st.just("json"), st.integers(0, 2**31), json_values),
    st.tuples(st.just("json-delete"), st.integers(0, 2**31)),
)


def _json_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _json_paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _json_paths(child, prefix + (i,))


def _apply(path: str, change) -> None:
    kind = change[0]
    data = open(path, "rb").read()
    if kind == "flip" and data:
        buffer = bytearray(data)
        buffer[change[1] % len(buffer)] ^= 1 << change[2]
        data = bytes(buffer)
    elif kind == "truncate":
        data = data[: int(len(data) * change[1])]
    elif kind == "delete":
        os.remove(path)
        return
    elif kind == "append":
        data += change[1]
    elif kind == "replace":
        data = change[1]
    elif kind in ("json", "json-delete") and path.endswith("zarr.json"):
        try:
            document = json.loads(data)
        except ValueError:  # an earlier change broke it already
            return
        paths = [p for p in _json_paths(document) if kind == "json" or p]
        where = paths[change[1] % len(paths)]
        if not where:
            document = change[2]
        else:
            parent = document
            for key in where[:-1]:
                parent = parent[key]
            if kind == "json":
                parent[where[-1]] = change[2]
            else:
                del parent[where[-1]]
        data = json.dumps(document).encode()
    open(path, "wb").write(data)


@st.composite
def damage(draw):
    count = draw(st.integers(1, 3))
    return [(draw(st.integers(0, 2**31)), draw(st.booleans()), draw(edit)) for _ in range(count)]


def _check_damaged_store(store: str, changes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        copy = os.path.join(directory, "damaged.zarr")
        shutil.copytree(store, copy)
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(copy) for f in fs if not f.endswith(".lock"))
        metadata = [f for f in files if f.endswith("zarr.json")]
        for choice, prefer_metadata, change in changes:
            pool = metadata if prefer_metadata or change[0].startswith("json") else files
            pool = [f for f in pool if os.path.exists(f)]
            if pool:
                _apply(pool[choice % len(pool)], change)
        try:
            ds = actstats.open_store(copy)
        except ActstatsError as exc:
            opened = f"open_store: {type(exc).__name__}"
        else:
            opened = "open_store: opened"
            for name in ds.data_vars:
                try:
                    ds[name].values
                except IntegrityError:
                    opened = "open_store: opened, IntegrityError on reading"
        try:
            report = actstats.verify_store(copy, progress=False)
        except ActstatsError as exc:
            assert "\n" not in str(exc)
            verified = f"verify: {type(exc).__name__} (exit 2)"
        else:
            verified = "verify: intact (exit 0)" if report.ok else "verify: listed (exit 3)"
        return opened, verified


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_randomly_damaged_stores_raise_only_actstats_errors(micro_store):
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(changes=damage())
    def check(changes):
        _check_damaged_store(micro_store, changes)

    check()


@pytest.mark.stress
def test_stress_randomly_damaged_stores(micro_store):
    outcomes = Counter()

    @settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(changes=damage())
    def check(changes):
        for outcome in _check_damaged_store(micro_store, changes):
            outcomes[outcome] += 1

    check()
    print("\ndamaged stores:", json.dumps(dict(outcomes)))


def test_the_damage_strategy_reaches_every_kind_of_file(micro_store):
    """The fuzzing above edits chunks, array metadata and the root metadata alike."""
    files = sorted(os.path.relpath(os.path.join(d, f), micro_store)
                   for d, _, fs in os.walk(micro_store) for f in fs)
    assert "zarr.json" in files and "activation/zarr.json" in files
    assert any(f.startswith("activation/c/") for f in files) and any(f.startswith("complete/c/") for f in files)
