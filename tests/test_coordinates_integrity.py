"""A store proves what it holds (issue 19, item 3): coordinates and per-run variables that
cannot silently vanish, and chunk checksums bound to their places by the manifest
(actstats.store.manifest).

Each damage is done to a copy of the captured small store (conftest.small_store): one chunk
deleted, or two chunks swapped. `actstats verify` must exit 3 naming it, and where the damage
would give wrong labels (a coordinate, ``complete``), opening the store and a query must exit 3
with one line. Sound stores must verify with exit 0 (no false alarm)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import actstats
from actstats.errors import IntegrityError
from actstats.store.manifest import MANIFEST_GROUP, STORE_MANIFEST
from conftest import run_main, small_config_text, write_config

#: (name, chunk file under the store) of each coordinate: one chunk each
COORDINATE_CHUNKS = [(name, f"{name}/c/0") for name in
                     ("epoch", "layer", "split", "seed", "init", "activation_fn", "depth")]
COORDINATE_CHUNKS.append(("width", "width/c/0/0"))

#: per-run variables: one chunk a run (run 1's)
PER_RUN_CHUNKS = [(name, f"{name}/c/1/0") for name in
                  ("complete", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "diverged")]


@pytest.fixture
def copy(small_store, tmp_path):
    """A fresh copy of the captured store for each test."""
    path = str(tmp_path / "copy.zarr")
    shutil.copytree(small_store, path)
    return path


def verify(capsys, path):
    return run_main(capsys, "verify", path)


@pytest.mark.parametrize("name,chunk", COORDINATE_CHUNKS + PER_RUN_CHUNKS, ids=lambda v: v if "/" not in v else "")
def test_a_deleted_coordinate_or_per_run_chunk_is_caught(copy, capsys, name, chunk):
    os.remove(os.path.join(copy, *chunk.split("/")))
    code, out, err = verify(capsys, copy)
    assert code == 3, out + err
    assert f"{name!r} chunk" in out and "missing" in out, out
    if name in dict(COORDINATE_CHUNKS) or name == "complete":  # would give wrong labels / leave a run out
        with pytest.raises(IntegrityError, match=f"{name!r} chunk .* is missing"):
            actstats.open_store(copy)
        code, out, err = run_main(capsys, "saturation", copy, "--by", "epoch")
        assert code == 3, out + err
        assert len(err.strip().splitlines()) == 1 and name in err, err
        assert "Traceback" not in err


def test_width_deleted_does_not_switch_off_the_missing_chunk_check(copy, capsys):
    os.remove(os.path.join(copy, "width", "c", "0", "0"))
    os.remove(os.path.join(copy, "activation", "c", "0", "1", "0", "0", "0"))
    code, out, err = verify(capsys, copy)
    assert code == 3
    assert "coordinate 'width' chunk (0, 0) is missing" in out, out
    assert "variable 'activation' chunk (0, 1, 0, 0, 0) is missing" in out, out


def test_depth_deleted_does_not_switch_off_the_missing_chunk_check(copy, capsys):
    os.remove(os.path.join(copy, "depth", "c", "0"))
    os.remove(os.path.join(copy, "weight", "c", "2", "3", "0", "0", "0"))
    code, out, err = verify(capsys, copy)
    assert code == 3
    assert "coordinate 'depth' chunk (0,) is missing" in out, out
    assert "variable 'weight' chunk (2, 3, 0, 0, 0) is missing" in out, out


def _swap(path, a, b):
    a, b = os.path.join(path, *a.split("/")), os.path.join(path, *b.split("/"))
    assert os.path.getsize(a) == os.path.getsize(b)
    tmp = a + ".swap"
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def test_swapped_activation_chunks_are_both_named(copy, capsys):
    _swap(copy, "activation/c/0/1/0/0/0", "activation/c/0/2/0/0/0")
    code, out, err = verify(capsys, copy)
    assert code == 3, out + err
    assert "'activation' chunk (0, 1, 0, 0, 0) does not belong at its place" in out, out
    assert "'activation' chunk (0, 2, 0, 0, 0) does not belong at its place" in out, out
    assert len(out.strip().splitlines()) == 2, out


def test_chunks_swapped_between_runs_are_named(copy, capsys):
    _swap(copy, "weight/c/0/3/0/0/0", "weight/c/2/3/0/0/0")  # runs 0 and 2: same depth 1, width 12
    code, out, err = verify(capsys, copy)
    assert code == 3, out + err
    assert "'weight' chunk (0, 3, 0, 0, 0)" in out and "'weight' chunk (2, 3, 0, 0, 0)" in out, out


def test_swapped_per_run_scalars_are_named(copy, capsys):
    _swap(copy, "train_loss/c/0/0", "train_loss/c/1/0")
    code, out, err = verify(capsys, copy)
    assert code == 3, out + err
    assert "variable 'train_loss' at run 0, epoch 0.25 is not the value the manifest holds" in out, out
    assert "variable 'train_loss' at run 1, epoch 0.25 is not the value the manifest holds" in out, out


def test_swapped_coordinate_chunks_are_named(copy, capsys):
    _swap(copy, "label/c/0", "source_index/c/0")  # both int64 over `sample`: each decodes fine
    code, out, err = verify(capsys, copy)
    assert code == 3, out + err
    assert "'label' chunk (0,) does not belong" in out and "'source_index' chunk (0,) does not belong" in out, out


def test_a_sound_store_verifies(small_store, capsys):
    code, out, err = verify(capsys, small_store)
    assert code == 0, out + err
    assert "intact" in out and "checked against the manifest" in out, out


def test_every_record_has_a_manifest_entry_and_chunk_files_are_unchanged(small_store):
    directory = os.path.join(small_store, MANIFEST_GROUP)
    created = json.load(open(os.path.join(directory, STORE_MANIFEST)))
    assert "epoch/c/0" in created["chunks"] and "complete/c/0/0" in created["present"]
    complete = np.asarray(actstats.open_store(small_store).complete)
    for r, e in zip(*np.nonzero(complete)):
        entry = json.load(open(os.path.join(directory, f"r{r:05d}-e{e:05d}.json")))
        for key, crc in entry["chunks"].items():  # the manifest's CRC is the chunk's own trailing CRC
            with open(os.path.join(small_store, *key.split("/")), "rb") as f:
                assert f.read()[-4:] == int(crc, 16).to_bytes(4, "little")
        assert {"train_loss", "test_accuracy", "diverged"} <= set(entry["values"])


@pytest.fixture(scope="module")
def epoch_zero_store(tmp_path_factory):
    from actstats.capture import capture

    directory = tmp_path_factory.mktemp("epoch0")
    config = write_config(str(directory), small_config_text(**{"epochs = [0, 0.25, 1, 2]": "epochs = [0]"}))
    path = str(directory / "s.zarr")
    capture(config, path, progress=False)
    return path


def test_a_store_recording_epoch_zero_only_verifies(epoch_zero_store, capsys):
    # `step`, `epoch` and `run`'s first value are all zero (the fill value): chunks still written
    code, out, err = verify(capsys, epoch_zero_store)
    assert code == 0, out + err
    actstats.open_store(epoch_zero_store)


def test_a_store_without_a_manifest_verifies_by_checksums_only(copy, capsys):
    shutil.rmtree(os.path.join(copy, MANIFEST_GROUP))
    code, out, err = verify(capsys, copy)
    assert code == 0, out + err
    assert "no manifest" in out and "checksums checked" in out, out
    # coordinates are still required in full where they cannot all be the fill value
    os.remove(os.path.join(copy, "split", "c", "0"))
    code, out, err = verify(capsys, copy)
    assert code == 3 and "coordinate 'split' chunk (0,) is missing" in out, out
    with pytest.raises(IntegrityError, match="'split' chunk"):
        actstats.open_store(copy)


def test_a_synthetic_store_has_a_manifest_and_verifies(tmp_path, capsys):
    from actstats.synthetic import write_synthetic_store

    path = write_synthetic_store(str(tmp_path / "s.zarr"), runs=2, epochs=2, layers=2, samples=10, units=4)
    code, out, err = verify(capsys, path)
    assert code == 0 and "checked against the manifest" in out, out + err
    _swap(path, "activation/c/0/0/0/0/0", "activation/c/1/1/1/0/0")
    code, out, err = verify(capsys, path)
    assert code == 3 and out.count("does not belong at its place") == 2, out
