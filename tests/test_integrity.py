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
