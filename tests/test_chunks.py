"""The chunk codec (actstats.store.chunks, and capture's writer on it) writes exactly what zarr
would, zarr reads it back, and it reads back what zarr wrote."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.codecs import Crc32cCodec, ZstdCodec

from actstats.store.chunks import ChunkFiles, DamagedChunkError, atomic_write
from actstats.capture.chunks import ChunkWriter


def _pair(tmp_path, shape, chunks, dtype, fill):
    arrays = []
    for name in ("by_zarr", "by_writer"):
        group = zarr.open_group(tmp_path / name, mode="a", zarr_format=3)
        arrays.append(group.create_array(
            "a", shape=shape, chunks=chunks, dtype=dtype, compressors=[Crc32cCodec()],
            fill_value=fill, dimension_names=[f"d{i}" for i in range(len(shape))],
        ).with_config({"write_empty_chunks": True}))
    return arrays


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=2, max_size=4),
    data=st.data(),
)
def test_blocks_are_byte_identical_to_zarrs_encoding(tmp_path_factory, shape, data):
    tmp_path = tmp_path_factory.mktemp("chunks")
    chunks = [data.draw(st.integers(1, n)) for n in shape]
    by_zarr, by_writer = _pair(tmp_path, shape, chunks, "float32", np.nan)
    # a block from a chunk-aligned start along the first axis to the end
    start0 = data.draw(st.integers(0, (shape[0] - 1) // chunks[0])) * chunks[0]
    block = np.random.default_rng(len(shape)).normal(size=[shape[0] - start0, *shape[1:]]).astype("float32")
    by_zarr[start0:] = block
    ChunkWriter(str(tmp_path / "by_writer"), "a", by_writer).write_block((start0,), block)
    np.testing.assert_array_equal(by_writer[...], by_zarr[...])
    for dirpath, _, files in os.walk(tmp_path / "by_zarr" / "a" / "c"):
        for f in files:
            mine = os.path.join(str(dirpath).replace("by_zarr", "by_writer"), f)
            assert open(os.path.join(dirpath, f), "rb").read() == open(mine, "rb").read()


def test_padding_inside_a_chunk_is_the_fill_value(tmp_path):
    _, array = _pair(tmp_path, (2, 5, 3), (1, 5, 3), "float32", np.nan)
    writer = ChunkWriter(str(tmp_path / "by_writer"), "a", array)
    writer.write_block((1,), np.ones((1, 2, 3), "float32"))
    out = array[...]
    assert np.isnan(out[0]).all() and (out[1, :2] == 1).all() and np.isnan(out[1, 2:]).all()


def test_update_and_bool_arrays(tmp_path):
    by_zarr, by_writer = _pair(tmp_path, (3, 4), (1, 4), "bool", False)
    writer = ChunkWriter(str(tmp_path / "by_writer"), "a", by_writer)
    writer.update((1, 0), (0, 2), True)
    writer.update((1, 0), (0, 0), True)
    by_zarr[1, 2] = True
    by_zarr[1, 0] = True
    np.testing.assert_array_equal(by_writer[...], by_zarr[...])


def test_a_damaged_chunk_is_refused_on_update(tmp_path):
    _, array = _pair(tmp_path, (2, 4), (1, 4), "float32", np.nan)
    writer = ChunkWriter(str(tmp_path / "by_writer"), "a", array)
    writer.update((0, 0), (0, 1), 2.0)
    path = tmp_path / "by_writer" / "a" / "c" / "0" / "0"
    raw = bytearray(path.read_bytes())
    raw[0] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="crc32c"):
        writer.update((0, 0), (0, 2), 3.0)


def test_other_codecs_are_refused(tmp_path):
    group = zarr.open_group(tmp_path / "z", mode="w", zarr_format=3)
    array = group.create_array("a", shape=(4,), chunks=(2,), dtype="float32", compressors=[ZstdCodec(), Crc32cCodec()])
    with pytest.raises(ValueError, match="not bytes\\+crc32c"):
        ChunkWriter(str(tmp_path / "z"), "a", array)


def test_reads_what_zarr_wrote_and_refuses_a_damaged_or_truncated_chunk(tmp_path):
    by_zarr, _ = _pair(tmp_path, (2, 5), (1, 5), "float32", np.nan)
    by_zarr[...] = np.arange(10, dtype="float32").reshape(2, 5)
    files = ChunkFiles(str(tmp_path / "by_zarr"), "a", by_zarr)
    np.testing.assert_array_equal(files.read((1, 0)), by_zarr[1:2])
    assert ChunkFiles(str(tmp_path / "by_writer"), "a", by_zarr).read((0, 0)) is None  # absent
    raw = bytearray(open(files.path((0, 0)), "rb").read())
    raw[0] ^= 1
    open(files.path((0, 0)), "wb").write(bytes(raw))
    with pytest.raises(DamagedChunkError, match="CRC-32C checksum mismatch"):
        files.read((0, 0))
    open(files.path((0, 0)), "wb").write(bytes(raw[:-1]))
    with pytest.raises(DamagedChunkError, match="23 bytes, expected 24"):
        files.read((0, 0))


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def killed():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), [b"new"], before_rename=killed)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]
    atomic_write(str(target), [b"n", memoryview(b"ew")], fsync=False)
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("dtype, fill, compressors", [
    ("int64", -1, [Crc32cCodec()]),
    ("float64", np.nan, [Crc32cCodec()]),
    ("int32", 7, [ZstdCodec(level=1), Crc32cCodec()]),
    ("bool", False, [Crc32cCodec()]),  # one byte, no byte order: read by zarr
])
def test_open_stores_whole_array_reads_equal_zarrs(tmp_path, dtype, fill, compressors):
    """open_store's reads of whole small arrays (coordinates, `complete`) through the chunk
    files: the values zarr reads, edge chunks cut and an absent chunk read as the fill value."""
    from actstats.store.open import _read_all

    group = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    array = group.create_array("a", shape=(7, 5), chunks=(3, 2), dtype=dtype, compressors=compressors,
                               fill_value=fill, dimension_names=["x", "y"])
    values = np.arange(35).reshape(7, 5) % 4 == 1 if dtype == "bool" else np.arange(35, dtype=dtype).reshape(7, 5)
    array[...] = values
    os.remove(tmp_path / "s.zarr" / "a" / "c" / "1" / "2")  # rows 3-5, column 4: the fill value
    expected = zarr.open_group(tmp_path / "s.zarr", mode="r")["a"][...]
    assert (expected[3:6, 4] == fill).all() or np.isnan(expected[3:6, 4]).all()
    got = _read_all(zarr.open_group(tmp_path / "s.zarr", mode="r")["a"], "a", str(tmp_path / "s.zarr"))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype

    with open(tmp_path / "s.zarr" / "a" / "c" / "0" / "0", "r+b") as f:  # a flipped byte: refused
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises((DamagedChunkError, ValueError)):  # ValueError: zarr's checksum error
        _read_all(zarr.open_group(tmp_path / "s.zarr", mode="r")["a"], "a", str(tmp_path / "s.zarr"))
