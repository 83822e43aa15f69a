"""Shared by tests/test_reliability.py and tests/test_fuzz.py: a tiny sweep, the command
line run in-process, small file systems, and the checks every damaged or killed store
must pass. docs/reliability.md reports what these tests tried."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import subprocess
import sys
import textwrap

import numpy as np

from conftest import ROOT

#: Four runs (depth 1 and 2, two seeds), four recording moments: 16 records, ~260 chunk
#: writes, a few seconds in a fresh process (most of it importing torch).
TINY_CONFIG = textwrap.dedent(
    """
    [dataset]
    name = "digits"
    probe_train = 20
    probe_test = 10

    [model]
    depth = 2
    width = 8
    activation = "sigmoid"

    [train]
    optimizer = "sgd"
    momentum = 0.9
    lr = 0.05
    batch_size = 32
    epochs = 1
    seed = 3

    [record]
    epochs = [0, 0.25, 0.5, 1]

    [sweep]
    "model.depth" = [1, 2]
    "train.seed" = [3, 4]
    """
)

#: One run, two moments: a store of a few dozen files, for fuzzing.
MICRO_CONFIG = textwrap.dedent(
    """
    [dataset]
    name = "digits"
    probe_train = 8
    probe_test = 4

    [model]
    depth = 2
    width = 4

    [train]
    epochs = 1
    batch_size = 64

    [record]
    epochs = [0, 1]
    """
)

#: Chunk writes of one TINY_CONFIG capture (counted with ACTSTATS_FAULT_KILL_AFTER_PUTS):
#: a depth-1 record writes 14 chunks, a depth-2 record 19, the last of each is `complete`.
TINY_PUTS = 8 * 14 + 8 * 19


def cli(*argv) -> tuple[int, str, str]:
    """`actstats ARGV` in this process: (exit code, stdout, stderr)."""
    from actstats.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def one_line(stderr: str) -> bool:
    return stderr.count("\n") == 1 and stderr.endswith("\n") and "Traceback" not in stderr


def capture_process(config: str, store, *extra, env=None, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "actstats.cli", "capture", config, "-o", str(store), *map(str, extra)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, preexec_fn=preexec_fn,
        start_new_session=True,  # a process group: kill -9 of a capture with --workers takes its workers too
    )


def leftovers(store) -> list[str]:
    return glob.glob(os.path.join(str(store), "**", "*.partial"), recursive=True)


def assert_complete_records_match(store, reference) -> np.ndarray:
    """Every record marked complete in `store` equals `reference`'s bit for bit; returns
    `complete`. Opening the store and reading it must work whatever state it is in."""
    import actstats
    from actstats.store import RECORD_VARIABLES

    ds, ref = actstats.open_store(store), actstats.open_store(reference)
    complete = ds["complete"].values
    for name in RECORD_VARIABLES:
        if name not in ds:
            continue
        got, want = ds[name].values[complete], ref[name].values[complete]
        assert got.tobytes() == want.tobytes(), f"{name}: a record marked complete differs"
    return complete


def assert_verify_names_what_is_incomplete(store) -> int:
    """`actstats verify` exits 3 listing exactly the incomplete records (0 if none) and
    nothing damaged. Returns the number of incomplete records."""
    import actstats

    from actstats.store import scheduled_records

    ds = actstats.open_store(store)
    stopped = ds["stopped"].values if "stopped" in ds.data_vars else None  # train.until: later records not due
    missing = scheduled_records(ds["step"].values, ds["complete"].values, stopped) & ~ds["complete"].values
    expected = {f"incomplete: run {r}, epoch {ds['epoch'].values[e]:g}" for r, e in zip(*np.nonzero(missing))}
    code, out, err = cli("verify", store, "--no-progress")
    assert "damaged" not in out, out
    assert {line for line in out.splitlines() if line.startswith("incomplete")} == expected
    assert code == (3 if expected else 0), (code, out, err)
    return len(expected)


@contextlib.contextmanager
def small_filesystem(path, size: str):
    """A tmpfs of `size` at `path` (root only); yields a `remount(options)` function.
    Raises OSError when mounting is not possible here."""
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"cannot mount a tmpfs: {result.stderr.strip()}")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)

    try:
        yield remount
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
