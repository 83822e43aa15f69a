"""Stores that another program wrote with a compressor (the format allows bytes, then any
compressor, then crc32c): open_store reads their chunks itself (checksum, then numcodecs'
decoder, outside the GIL) and gets exactly what zarr-python reads; damage is still an
IntegrityError that names the chunk."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

import actstats
from actstats.errors import IntegrityError
from actstats.store.open import _chunk_files
from actstats.synthetic import write_synthetic_store

COMPRESSORS = {
    "blosc-lz4": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "blosc-zstd-bitshuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
    "zstd": lambda: ZstdCodec(level=3),
    "gzip": lambda: GzipCodec(level=5),
}


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plain") / "plain.zarr")
    write_synthetic_store(path, runs=2, epochs=3, layers=2, samples=40, units=16, seed=3)
    return path


def _rewrite(source: str, target: str, compressor) -> str:
    """The store rewritten by plain xarray with `compressor` + crc32c on every array, one
    chunk per (run, epoch, layer) slab, every chunk written (as a user would)."""
    ds = xr.open_zarr(source, consolidated=False, chunks=None)
    encoding = {}
    for variable in ds.variables.values():
        variable.encoding = {}
    for name, variable in ds.variables.items():
        encoding[name] = {"compressors": [compressor(), Crc32cCodec()]}
        if variable.dims[:3] == ("run", "epoch", "layer"):
            chunks = (1, 1, 1) + variable.shape[3:]
            encoding[name]["chunks"] = chunks
            ds[name] = ds[name].chunk(dict(zip(variable.dims, chunks)))
    ds.to_zarr(target, mode="w", encoding=encoding, zarr_format=3, consolidated=False, write_empty_chunks=True)
    return target


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_a_compressed_store_reads_exactly_what_zarr_reads(plain_store, tmp_path, kind):
    path = _rewrite(plain_store, str(tmp_path / f"{kind}.zarr"), COMPRESSORS[kind])
    group = zarr.open_group(path, mode="r")
    files = _chunk_files(group["activation"], "activation", path)
    assert files is not None and files.decoders, "the direct reader must take compressed chunks"
    ds = actstats.open_store(path)
    for name in ("activation", "preactivation", "weight"):
        np.testing.assert_array_equal(ds[name].values, group[name][...])
    plain = actstats.saturation(actstats.open_store(plain_store), by=("run", "epoch", "layer", "split"))
    compressed = actstats.saturation(ds, by=("run", "epoch", "layer", "split"))
    for field in ("fraction", "fraction_low", "fraction_high", "ci_low", "ci_high", "n_values"):
        np.testing.assert_array_equal(compressed[field].values, plain[field].values)


def _chunk_file(path: str, name: str, index: tuple[int, ...]) -> str:
    array = zarr.open_group(path, mode="r")[name]
    return os.path.join(path, name, *array.metadata.encode_chunk_key(index).split("/"))


def test_a_flipped_byte_in_a_compressed_chunk_is_an_integrity_error(plain_store, tmp_path):
    path = _rewrite(plain_store, str(tmp_path / "damaged.zarr"), COMPRESSORS["blosc-lz4"])
    chunk = _chunk_file(path, "activation", (1, 2, 0, 0, 0))
    data = bytearray(open(chunk, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(chunk, "wb").write(bytes(data))
    ds = actstats.open_store(path)
    with pytest.raises(IntegrityError, match=r"'activation' chunk \(1, 2, 0, 0, 0\) is damaged \(CRC-32C"):
        ds["activation"].isel(run=1, epoch=2).values


def test_a_chunk_whose_checksum_holds_but_whose_frame_is_not_blosc_is_an_integrity_error(plain_store, tmp_path):
    import crc32c

    path = _rewrite(plain_store, str(tmp_path / "garbage.zarr"), COMPRESSORS["blosc-lz4"])
    chunk = _chunk_file(path, "activation", (0, 1, 1, 0, 0))
    body = b"not a blosc frame at all" * 4
    open(chunk, "wb").write(body + crc32c.crc32c(body).to_bytes(4, "little"))
    ds = actstats.open_store(path)
    with pytest.raises(IntegrityError, match=r"chunk \(0, 1, 1, 0, 0\) is damaged \(blosc cannot decode it"):
        ds["activation"].isel(run=0, epoch=1).values


def test_a_compressed_array_is_never_written_by_the_direct_writer(plain_store, tmp_path):
    path = _rewrite(plain_store, str(tmp_path / "ro.zarr"), COMPRESSORS["zstd"])
    files = _chunk_files(zarr.open_group(path, mode="r")["activation"], "activation", path)
    with pytest.raises(ValueError, match="read here, never written"):
        files.write((0, 0, 0, 0, 0), np.zeros(files.chunks, dtype=np.float32))


@pytest.mark.parametrize("kind", ["blosc-lz4", "blosc-zstd-bitshuffle"])
def test_a_whole_blosc_chunk_is_decoded_straight_into_the_callers_block(plain_store, tmp_path, kind):
    """The frame's header names its uncompressed size (c-blosc's format: uint32 at byte 4),
    read here without numcodecs' helpers (numcodecs 0.16 made `cbuffer_sizes` private, and its
    absence had made every chunk decode into a new buffer and a copy); another size is the
    plain decode, and what is read is zarr's either way."""
    from numcodecs import blosc

    from actstats.store.chunks import _decodes_into

    path = _rewrite(plain_store, str(tmp_path / f"{kind}.zarr"), COMPRESSORS[kind])
    group = zarr.open_group(path, mode="r")
    files = _chunk_files(group["activation"], "activation", path)
    with open(files.path((1, 2, 0, 0, 0)), "rb") as f:
        frame = f.read()[:-4]
    assert _decodes_into(files.decoders[0], frame, files.nbytes)
    assert not _decodes_into(files.decoders[0], frame, files.nbytes + 4)
    assert not _decodes_into(files.decoders[0], frame[:12], files.nbytes)  # no whole header
    if hasattr(blosc, "_cbuffer_sizes"):  # numcodecs' own reading of the header, where it has one
        assert blosc._cbuffer_sizes(frame)[0] == files.nbytes
    out = np.full(files.chunks, np.nan, dtype=np.float32)
    region = tuple(slice(0, c) for c in files.chunks)
    assert files.read_region((1, 2, 0, 0, 0), region, out)
    values = files.read((1, 2, 0, 0, 0), out=out)
    assert np.shares_memory(values, out)
    np.testing.assert_array_equal(out, group["activation"][1:2, 2:3, 0:1])
