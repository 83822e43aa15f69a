"""Shared fixtures: small configs and stores captured once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The command line's periodic progress lines (stderr not a terminal) are off in the tests,
# which check what stderr says; tests/test_queries_cli.py turns them on where it tests them.
os.environ["ACTSTATS_PROGRESS_LOG"] = "off"

#: A small sweep: two depths (so NaN padding of absent layers), two widths,
#: sigmoid and tanh, SGD with momentum. Captures in a few seconds.
SMALL_CONFIG = textwrap.dedent(
    """
    [dataset]
    name = "digits"
    probe_train = 40
    probe_test = 24

    [model]
    depth = 3
    width = 12
    activation = "sigmoid"

    [train]
    optimizer = "sgd"
    momentum = 0.9
    lr = 0.05
    batch_size = 32
    epochs = 2
    seed = 3

    [record]
    epochs = [0, 0.25, 1, 2]

    [sweep]
    "model.depth" = [1, 3]
    "model.width" = [12, 8]
    "model.activation" = ["sigmoid", "tanh"]
    """
)


def write_config(directory, text: str, name: str = "config.toml") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def small_config_text(**overrides) -> str:
    text = SMALL_CONFIG
    for old, new in overrides.items():
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="session")
def small_config(tmp_path_factory) -> str:
    return write_config(tmp_path_factory.mktemp("config"), SMALL_CONFIG)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, small_config) -> str:
    from actstats.capture import capture

    path = str(tmp_path_factory.mktemp("stores") / "small.zarr")
    capture(small_config, path, progress=False)
    return path


def run_cli(*args, env=None, cwd=None, timeout=300):
    """Run `actstats ARGS` in a subprocess (stderr is a pipe, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "actstats.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        timeout=timeout,
    )


# ------------------------------------------------------------- the captured store, two backends


@pytest.fixture(scope="module")
def stores(small_store):
    """The captured small store opened lazily (dask) and loaded (numpy)."""
    import actstats

    return {"dask": actstats.open_store(small_store), "numpy": actstats.open_store(small_store).load()}


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    return request.param


@pytest.fixture
def ds(stores, backend):
    """Every query test runs on numpy- and dask-backed data through this one fixture."""
    return stores[backend]


def run_main(capsys, *args):
    """`actstats ARGS --no-progress` in this process: (exit code, stdout, stderr)."""
    from actstats import cli

    code = cli.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
