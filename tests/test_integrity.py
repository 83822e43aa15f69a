"""The store proves what it holds (issue 19, items 2, 4 and 8): `--resume` refuses changed
data, `verify` does not call a sound store damaged, and reads open regular files only.
Fast: each test is a tiny capture or a synthetic store. docs/reliability.md sums them up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from reliability_tools import cli, one_line
from reliability_tools import MICRO_CONFIG


def _synthetic(path) -> str:
    from actstats.synthetic import write_synthetic_store

    return write_synthetic_store(str(path), runs=1, epochs=2, layers=2, samples=10, units=4)


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> str:
    return _synthetic(tmp_path_factory.mktemp("synthetic") / "s.zarr")


# ------------------------------------------------------------------ item 8: special files

def _fifo_in_place(store, tmp_path, chunk: str) -> str:
    damaged = str(tmp_path / "fifo.zarr")
    shutil.copytree(store, damaged)
    path = os.path.join(damaged, *chunk.split("/"))
    os.remove(path)
    os.mkfifo(path)
    return damaged


@pytest.mark.parametrize("command, chunk, named", [
    ("weights", "weight/c/0/0/0/0/0", "variable 'weight' chunk (0, 0, 0, 0, 0)"),  # plain chunk reads
    ("saturation", "activation/c/0/0/0/0/0", "variable 'activation' chunk (0, 0, 0, 0, 0)"),
    ("saturation", "complete/c/0/0", "variable 'complete'"),  # one-byte: read by zarr-python
    ("weights", "step/c/0/0", "coordinate 'step'"),  # coordinates: read by zarr-python
])
def test_a_fifo_in_a_chunks_place_is_exit_3_in_one_line_without_blocking(synthetic_store, tmp_path, command,
                                                                         chunk, named):
    damaged = _fifo_in_place(synthetic_store, tmp_path, chunk)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "actstats.cli", command, damaged], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 60
    assert result.returncode == 3, result.stderr
    assert one_line(result.stderr), result.stderr
    assert named in result.stderr
    # a plain chunk read names the FIFO; where a presence check (regular files) runs first,
    # the chunk is reported missing: either way exit 3, one line, at once
    assert "a FIFO, not a regular file" in result.stderr or "is missing" in result.stderr


def test_verify_lists_a_fifo_chunk_as_damaged(synthetic_store, tmp_path):
    damaged = _fifo_in_place(synthetic_store, tmp_path, "bias/c/0/0/0/0")
    code, out, _ = cli("verify", damaged, "--no-progress")
    assert code == 3
    assert "variable 'bias' chunk (0, 0, 0, 0)" in out and "a FIFO, not a regular file" in out


def test_the_chunk_codec_refuses_a_special_file_unread(synthetic_store, tmp_path):
    import zarr

    from actstats.store.chunks import ChunkFiles, DamagedChunkError

    damaged = _fifo_in_place(synthetic_store, tmp_path, "weight/c/0/0/0/0/0")
    files = ChunkFiles(damaged, "weight", zarr.open_group(damaged, mode="r")["weight"])
    with pytest.raises(DamagedChunkError, match="a FIFO, not a regular file"):
        files.read((0, 0, 0, 0, 0))
    assert files.read((0, 1, 0, 0, 0)) is not None


# ------------------------------------------------------------- item 2: the data's fingerprint

NPZ_CONFIG = """
[dataset]
name = "npz"
path = "{path}"
probe_train = 8
probe_test = 4

[model]
depth = 1
width = 4

[train]
epochs = 1
batch_size = 16

[record]
epochs = [0, 0.5, 1]

[sweep]
"train.seed" = [0, 1]
"""


def _npz(path, seed: int) -> str:
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.standard_normal((40, 5)).astype("float32"), y=rng.integers(0, 3, 40))
    return str(path)


def _snapshot(store) -> dict:
    out = {}
    for directory, _, files in os.walk(store):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, store)] = f.read()
    return out


@pytest.fixture(scope="module")
def npz_capture(tmp_path_factory):
    """An .npz config, its uninterrupted store, and a store of the same capture killed half way."""
    from actstats.capture import capture
    from reliability_tools import capture_process

    base = tmp_path_factory.mktemp("npz")
    data = _npz(base / "data.npz", 0)
    config = str(base / "npz.toml")
    with open(config, "w") as f:
        f.write(NPZ_CONFIG.format(path=data))
    reference = str(base / "reference.zarr")
    capture(config, reference, progress=False)
    killed = str(base / "killed.zarr")
    process = capture_process(config, killed, env={"ACTSTATS_FAULT_KILL_AFTER_PUTS": "20"})
    process.communicate(timeout=300)
    assert process.returncode == -9
    return base, data, config, reference, killed


def test_resume_of_a_store_with_a_fifo_in_completes_place_does_not_block(npz_capture, tmp_path):
    """capture --resume reads `complete` to find what is left: a FIFO there is exit 3 at once."""
    _, _, config, _, killed = npz_capture
    damaged = _fifo_in_place(killed, tmp_path, "complete/c/0/0")
    result = subprocess.run([sys.executable, "-m", "actstats.cli", "capture", config, "-o", damaged, "--resume",
                             "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and one_line(result.stderr), result.stderr
    assert "complete" in result.stderr


def test_the_store_records_the_fingerprint_of_its_data(npz_capture):
    import zarr

    _, _, _, reference, _ = npz_capture
    fingerprint = zarr.open_group(reference, mode="r").attrs["data_fingerprint"]
    assert fingerprint["format"] == "actstats.data-fingerprint/1"
    assert set(fingerprint["arrays"]) >= {"x_train", "y_train", "x_test", "y_test"}
    assert fingerprint["source"]["generator"] == "npz file"


def test_resume_with_other_data_of_the_same_shape_is_refused_in_one_line(npz_capture, tmp_path):
    from test_capture import assert_stores_identical

    _, data, config, reference, killed = npz_capture
    store = str(tmp_path / "s.zarr")
    shutil.copytree(killed, store)
    before = _snapshot(store)
    os.replace(data, str(tmp_path / "kept.npz"))
    try:
        _npz(data, 1)  # other values, same shapes
        code, _, err = cli("capture", config, "-o", store, "--resume", "--no-progress")
        assert code == 2, err
        assert one_line(err), err
        assert "--resume with other data than the store was made from" in err
        assert "x_train" in err and "y_train" in err
        assert _snapshot(store) == before
    finally:
        os.replace(str(tmp_path / "kept.npz"), data)
    code, _, err = cli("capture", config, "-o", store, "--resume", "--no-progress")  # the same data again
    assert code == 0, err
    assert_stores_identical(reference, store)
    assert cli("verify", store, "--no-progress")[0] == 0


def test_a_store_without_a_fingerprint_resumes_and_says_it_was_not_checked(npz_capture, tmp_path):
    import json

    _, _, config, _, killed = npz_capture
    store = str(tmp_path / "old.zarr")
    shutil.copytree(killed, store)
    for name in ("zarr.json",):  # as an older actstats wrote it: no data_fingerprint attribute
        path = os.path.join(store, name)
        with open(path) as f:
            meta = json.load(f)
        del meta["attributes"]["data_fingerprint"]
        with open(path, "w") as f:
            json.dump(meta, f)
    code, _, err = cli("capture", config, "-o", store, "--resume", "--no-progress")
    assert code == 0, err
    assert "no data fingerprint" in err


def test_fingerprint_difference_names_what_differs():
    from actstats.store.create import _fingerprint_difference

    a = {"arrays": {"x_train": "1", "y_train": "2", "n_classes": 3}, "source": {"version": "1.0"}}
    assert _fingerprint_difference(a, a) is None
    assert _fingerprint_difference(a, {**a, "source": {"version": "2.0"}}) is None  # same arrays: same data
    b = {"arrays": {"x_train": "9", "y_train": "2", "n_classes": 3}, "source": {"version": "2.0"}}
    assert _fingerprint_difference(a, b) == "x_train differs; version: store has '1.0', now '2.0'"


# ------------------------------------------------- item 4: verify calls no sound store damaged

EPOCH_ZERO_CONFIG = MICRO_CONFIG.replace("epochs = [0, 1]", "epochs = [0]")  # one record, at initialisation
assert EPOCH_ZERO_CONFIG != MICRO_CONFIG



@pytest.fixture(scope="module")
def epoch_zero_store(tmp_path_factory) -> str:
    """A fresh store of `record.epochs = [0]`: `step` is all 0, zarr's fill value."""
    from actstats.capture import capture

    base = tmp_path_factory.mktemp("epoch0")
    config = str(base / "e0.toml")
    with open(config, "w") as f:
        f.write(EPOCH_ZERO_CONFIG)
    store = str(base / "e0.zarr")
    capture(config, store, progress=False)
    return store


def test_verify_passes_a_fresh_store_recorded_at_epoch_0_only(epoch_zero_store):
    import actstats

    assert (actstats.open_store(epoch_zero_store)["step"].values == 0).all()
    code, out, err = cli("verify", epoch_zero_store, "--no-progress")
    assert code == 0, out + err
    assert cli("weights", epoch_zero_store)[0] == 0


def test_verify_passes_such_a_store_written_without_its_all_fill_step_chunk(epoch_zero_store, tmp_path):
    """As an older actstats (and zarr-python by default) wrote it: the all-zero `step` chunk
    left out, and no manifest. Zero is a valid step, so its absence is not damage."""
    store = str(tmp_path / "older.zarr")
    shutil.copytree(epoch_zero_store, store)
    os.remove(os.path.join(store, "step", "c", "0", "0"))
    shutil.rmtree(os.path.join(store, "actstats_manifest"), ignore_errors=True)
    code, out, err = cli("verify", store, "--no-progress")
    assert code == 0, out + err


def test_a_fifo_in_place_of_the_manifest_does_not_block(synthetic_store, tmp_path):
    damaged = _fifo_in_place(synthetic_store, tmp_path, "actstats_manifest/store.json")
    for command in ("saturation", "verify"):
        result = subprocess.run([sys.executable, "-m", "actstats.cli", command, damaged, "--no-progress"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode in (0, 3), result.stderr
    assert "store.json is not readable (a FIFO, not a regular file)" in result.stdout
