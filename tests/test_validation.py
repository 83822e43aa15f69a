"""Validation owns every input (issue 19, items 5, 6 and 10).

Every bound that training needs is checked before the store is created: a config that
would crash capture (negative seeds, no probes, an empty split, floats beyond float32, a
label of 10⁹, a TOML nested 100,000 deep, a special file as the config) is refused with
one line on stderr that names the key (and the file), exit 2, no traceback, and nothing
left behind. Messages show at most ~200 characters of any value.

Each case runs through the command line's own code (``actstats.cli.main``) in this process
(so the file stays fast), and a few of them again in a subprocess (``run_cli``) to see the
real stderr and exit code of the ``actstats`` command.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest

from actstats.cli import main
from actstats.errors import shorten
from conftest import run_cli, write_config

#: A small valid config that each case breaks in one place.
BASE = {
    "dataset": {"name": '"digits"', "probe_train": "8", "probe_test": "8"},
    "model": {"depth": "1", "width": "4"},
    "train": {"lr": "0.1", "batch_size": "32", "epochs": "1", "seed": "0"},
    "record": {"epochs": "[0, 1]"},
}


def config_text(**changes) -> str:
    """BASE with ``section__key=value`` changes (value None removes the key)."""
    tables = {section: dict(keys) for section, keys in BASE.items()}
    for name, value in changes.items():
        section, key = name.split("__")
        tables.setdefault(section, {})
        if value is None:
            tables[section].pop(key, None)
        else:
            tables[section][key] = value
    return "\n".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items()) for section, keys in tables.items()
    )


def npz_config(directory, **arrays) -> str:
    path = os.path.join(directory, "data.npz")
    np.savez(path, **arrays)
    return config_text(dataset__name='"npz"', dataset__path=f'"{path}"')


rng = np.random.default_rng(0)

#: id -> (config text, or a function of the test's directory giving it; what the line must contain)
CASES = {
    # seeds: torch.manual_seed and numpy's generators need integers >= 0; the store holds int64
    "negative train.seed": (config_text(train__seed="-1"), "train.seed = -1"),
    "negative dataset.split_seed": (config_text(dataset__split_seed="-5"), "dataset.split_seed = -5"),
    "negative dataset.data_seed": (
        config_text(dataset__name='"synthetic"', dataset__data_seed="-1"), "dataset.data_seed = -1"),
    "train.seed beyond int64": (config_text(train__seed=str(2**64)), "train.seed = 18446744073709551616"),
    "mnist1d data_seed beyond its generator": (
        config_text(dataset__name='"mnist1d"', dataset__data_seed=str(2**32)), "dataset.data_seed = 4294967296"),
    # initialisation: readout_init_scale means nothing without readout_init
    "readout_init_scale alone": (config_text(model__readout_init_scale="0.5"), "model.readout_init_scale = 0.5"),
    "unknown bias_init": (config_text(model__bias_init='"ones"'), "model.bias_init = 'ones'"),
    # train.until (a "METRIC OP NUMBER" string) and its terminal phase; dataset.fresh needs a generator
    "malformed train.until": (config_text(train__until='"accuracy >= 0.9"'), 'train.until = \'accuracy >= 0.9\': must be "METRIC OP NUMBER"'),
    "train.until_then alone": (config_text(train__until_then="3"), "train.until_then = 3: only used with train.until"),
    "train.until without train.epochs recorded": (
        config_text(train__until='"train_loss < 0.1"', train__epochs="2"), "record.epochs = [0, 1]: with train.until"),
    "dataset.fresh with digits": (config_text(dataset__fresh="true"), "dataset.fresh = true: only for dataset.name"),
    "dataset.fresh not a bool": (
        config_text(dataset__name='"synthetic"', dataset__fresh='"yes"'), "dataset.fresh = 'yes': must be true or false"),
    "dataset.fresh with classes the teacher never labels": (
        config_text(dataset__name='"synthetic"', dataset__fresh="true", dataset__n_samples="4", dataset__n_classes="50"),
        "dataset.fresh = true: the teacher labels the 4 generated rows"),
    # probes
    "probe_train = probe_test = 0": (
        config_text(dataset__probe_train="0", dataset__probe_test="0"), "dataset.probe_train = 0 and dataset.probe_test = 0"),
    # splits
    "test_fraction 0.9999 on digits": (config_text(dataset__test_fraction="0.9999"), "dataset.test_fraction = 0.9999"),
    "synthetic n_samples = 1": (config_text(dataset__name='"synthetic"', dataset__n_samples="1"), "dataset.n_samples = 1"),
    "mnist1d n_samples = 5": (config_text(dataset__name='"mnist1d"', dataset__n_samples="5"), "dataset.n_samples = 5"),
    "one-row npz": (lambda d: npz_config(d, x=np.ones((1, 3)), y=np.zeros(1, dtype=int)), "dataset.path"),
    "npz with an empty x_test": (
        lambda d: npz_config(d, x=np.ones((4, 3)), y=np.zeros(4, dtype=int), x_test=np.ones((0, 3)),
                             y_test=np.zeros(0, dtype=int)), "dataset.path"),
    "npz label 10**9": (
        lambda d: npz_config(d, x=rng.standard_normal((20, 3)), y=np.r_[np.zeros(19, dtype=np.int64), 10**9]),
        "holds the label 1000000000"),
    "npz x beyond float32": (
        lambda d: npz_config(d, x=np.full((20, 3), 1e300), y=np.zeros(20, dtype=int)), "beyond float32"),
    "synthetic n_classes 10**9": (
        config_text(dataset__name='"synthetic"', dataset__n_classes=str(10**9)), "dataset.n_classes = 1000000000"),
    "synthetic n_samples x n_features too large": (
        config_text(dataset__name='"synthetic"', dataset__n_samples=str(10**9), dataset__n_features="1000"),
        "dataset.n_samples = 1000000000"),
    # floats beyond float32 and non-finite
    "train.lr = 1e300": (config_text(train__lr="1e300"), "train.lr = 1e+300"),
    "train.weight_decay = 1e308": (config_text(train__weight_decay="1e308"), "train.weight_decay = 1e+308"),
    "train.momentum = 1e39": (config_text(train__momentum="1e39"), "train.momentum = 1e+39"),
    "model.init_scale = 1e39": (config_text(model__init_scale="1e39"), "model.init_scale = 1e+39"),
    "train.lr = inf": (config_text(train__lr="inf"), "train.lr = inf"),
    "train.lr = nan": (config_text(train__lr="nan"), "train.lr = nan"),
    "train.layer_lr times lr beyond float32": (
        config_text(train__lr="1e38", train__layer_lr="[10.0]"), "train.layer_lr = [10.0]"),
    "train.epochs = 1e300": (config_text(train__epochs="1e300", record__epochs='"log:4"'), "train.epochs = 1e+300"),
    "train.batch_size beyond int64": (config_text(train__batch_size=str(2**70)), "train.batch_size"),
    # the file itself
    "TOML nested 100,000 deep": ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    "TOML inline tables nested deep": ("a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
    "config larger than 1 MiB": ("# " + "x" * 2**20 + "\n", "at most 1048576 bytes"),
    "config not UTF-8": (b"[model]\ndepth = \xff\n", "not a UTF-8 text file"),
    # messages show at most ~200 characters of a value
    "50 MB dataset.name": (None, "dataset.name = "),
}


def _materialise(directory, text) -> str:
    if callable(text):
        text = text(directory)
    path = os.path.join(directory, "config.toml")
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())
    return path


def _check_refused(directory, code, err, expected, config, before):
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err[:2000]
    assert "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert len(lines[0]) < 1000, lines[0][:300]
    if config is not None:
        assert config[:100] in lines[0] or shorten(config, quote=False)[:50] in lines[0]
    assert sorted(os.listdir(directory)) == before, "something was left behind"


@pytest.mark.parametrize("case", [c for c in CASES if c != "50 MB dataset.name"])
def test_refused_in_one_line(case, tmp_path, capsys):
    text, expected = CASES[case]
    config = _materialise(str(tmp_path), text)
    before = sorted(os.listdir(tmp_path))
    code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
    out, err = capsys.readouterr()
    _check_refused(str(tmp_path), code, err, expected, config, before)
    assert out == ""


def test_long_value_shortened(tmp_path, capsys):
    config = write_config(str(tmp_path), f'[dataset]\nname = "{"d" * 50_000_000}"\n')
    before = sorted(os.listdir(tmp_path))
    code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
    _, err = capsys.readouterr()
    # the file is larger than 1 MiB: the size cap answers first, in one short line
    _check_refused(str(tmp_path), code, err, "at most 1048576 bytes", config, before)
    config = write_config(str(tmp_path), f'[dataset]\nname = "{"d" * 1_000_000}"\n')
    code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
    _, err = capsys.readouterr()
    _check_refused(str(tmp_path), code, err, "dataset.name = 'ddd", config, before)
    assert "(1000002 characters)" in err and len(err) < 400, err[:500]


@pytest.mark.parametrize("key", ["[" + "k" * 10_000 + "]", "[model]\n" + "w" * 10_000 + " = 1",
                                 '[sweep]\n"' + "s" * 10_000 + '" = [1]', '[sweep]\n"train.seed" = [' + "1, " * 2_000 + "-1]"])
def test_long_keys_and_sweeps_shortened(key, tmp_path, capsys):
    config = write_config(str(tmp_path), key + "\n")
    code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.splitlines()) == 1 and len(err) < 800, err[:1000]


def test_special_files_refused(tmp_path, capsys):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it for reading would block without O_NONBLOCK
    cases = {"/dev/zero": "not a regular file", str(fifo): "not a regular file",
             str(tmp_path): "is a directory", str(tmp_path / "absent.toml"): "no such config file"}
    for config, expected in cases.items():
        before = sorted(os.listdir(tmp_path))
        code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
        _, err = capsys.readouterr()
        _check_refused(str(tmp_path), code, err, expected, None, before)
        assert config in err


def test_npz_path_special_file_refused(tmp_path, capsys):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    config = write_config(str(tmp_path), config_text(dataset__name='"npz"', dataset__path=f'"{fifo}"'))
    before = sorted(os.listdir(tmp_path))
    code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
    _, err = capsys.readouterr()
    _check_refused(str(tmp_path), code, err, "dataset.path", config, before)


def test_unreadable_config_refused(tmp_path, capsys, monkeypatch):
    """A config the process may not read. Permission bits cannot show it here (tests and CI run
    as root, which reads any file), so the open itself is made to fail as it would for another
    user: EACCES from os.open."""
    import errno

    import actstats.capture.config

    config = write_config(str(tmp_path), config_text())
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if os.fspath(path) == config:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(actstats.capture.config.os, "open", refuse)
    code = main(["capture", config, "-o", str(tmp_path / "store.zarr"), "--no-progress"])
    _, err = capsys.readouterr()
    _check_refused(str(tmp_path), code, err, "cannot read", config, sorted(os.listdir(tmp_path)))


def test_bounds_themselves_accepted():
    """The largest accepted values parse: the bounds are where the docs say."""
    from actstats.capture.config import MAX_CLASSES, MAX_FLOAT32, parse_config

    text = config_text(train__seed=str(2**63 - 1), dataset__split_seed=str(2**63 - 1), train__lr=repr(MAX_FLOAT32),
                       train__weight_decay=repr(MAX_FLOAT32))
    run = parse_config(text).runs[0]
    assert run["train"]["seed"] == 2**63 - 1 and run["train"]["lr"] == MAX_FLOAT32
    parse_config(config_text(dataset__name='"synthetic"', dataset__n_classes=str(MAX_CLASSES), dataset__n_samples="2"))
    parse_config(config_text(dataset__name='"mnist1d"', dataset__data_seed=str(2**32 - 43), dataset__n_samples="10"))
    parse_config(config_text(dataset__probe_train="0"))


def test_npz_labels_with_gaps_accepted(tmp_path):
    """Labels need not be consecutive: the class count is the largest label + 1 (at most 10000)."""
    from actstats.capture.data import load_dataset

    path = str(tmp_path / "d.npz")
    np.savez(path, x=rng.standard_normal((30, 3)), y=np.r_[np.zeros(15, dtype=int), np.full(15, 9999)])
    data = load_dataset({"name": "npz", "path": path, "test_fraction": 0.2, "split_seed": 0})
    assert data.n_classes == 10_000


#: Cases seen through the real command (a subprocess): exit code, stderr, nothing left behind.
SUBPROCESS_CASES = ["negative train.seed", "TOML nested 100,000 deep", "npz label 10**9"]


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_refused_by_the_command(tmp_path):
    for i, case in enumerate(SUBPROCESS_CASES + ["/dev/zero"]):
        directory = tmp_path / str(i)
        directory.mkdir()
        if case == "/dev/zero":
            config, expected = case, "not a regular file"
        else:
            text, expected = CASES[case]
            config = _materialise(str(directory), text)
        before = sorted(os.listdir(directory))
        result = run_cli("capture", config, "-o", directory / "store.zarr", "--no-progress", timeout=60)
        _check_refused(str(directory), result.returncode, result.stderr, expected, None, before)
        assert result.stderr.startswith("actstats capture: "), result.stderr


def test_query_arguments_shortened(tmp_path, capsys):
    """--by, --where, --runs and library arguments echo at most ~200 characters of a value."""
    import actstats
    from actstats.errors import ActstatsValueError
    from actstats.selection import parse_runs, parse_where
    from actstats.synthetic import synthetic_store, write_synthetic_store

    long = "q" * 100_000
    ds = synthetic_store(runs=2, depth=1, width=3, samples=(3, 2), epochs=(0.0, 1.0))
    for call in (lambda: actstats.saturation(ds, by=long), lambda: actstats.saturation(ds, eps=long),
                 lambda: actstats.select_runs(ds, where={"seed": long}), lambda: parse_where(long),
                 lambda: parse_runs(long + ",")):
        with pytest.raises((ActstatsValueError, ValueError)) as info:
            call()
        assert len(str(info.value)) < 500 and " characters)" in str(info.value), str(info.value)[:300]
    path = str(tmp_path / "s.zarr")
    write_synthetic_store(path, runs=1, epochs=(0.0, 1.0), layers=1, samples=4, units=3)
    for args in (["--by", "run," + long], ["--where", f"seed={long}"], ["--where", f"{long}=1"]):
        code = main(["saturation", path, "--no-progress", *args])
        _, err = capsys.readouterr()
        assert code == 2 and len(err.splitlines()) == 1 and len(err) < 800, err[:500]
