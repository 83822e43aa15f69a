"""Codecs for recorded float32 arrays: compression ratio and speed, measured on a real capture.

Captures a small Glorot-style run (4 x 256 sigmoid on digits, 6 epochs, every variable), then
for activation, preactivation, delta and weight measures zstd (levels 1, 3), blosc-lz4 and
blosc-zstd with byte shuffle, and the crc32c checksum alone. The result decided the store's
codec chain (docs/store-format.md: no compressor).

Usage: python tests/benchmarks/bench_codecs.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import crc32c
from numcodecs import Blosc, Zstd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CONFIG = """
[dataset]
probe_train = 300
probe_test = 200
[model]
depth = 4
width = 256
[train]
epochs = 6
[record]
epochs = [0, 1, 2, 4, 6]
"""


def main():
    import actstats
    from actstats.capture import capture

    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "c.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        store = os.path.join(directory, "s.zarr")
        capture(config, store, progress=False)
        ds = actstats.open_store(store)
        codecs = [
            ("zstd-1", Zstd(level=1)),
            ("zstd-3", Zstd(level=3)),
            ("blosc-lz4+shuffle", Blosc("lz4", 5, Blosc.SHUFFLE)),
            ("blosc-zstd1+shuffle", Blosc("zstd", 1, Blosc.SHUFFLE)),
        ]
        print(f"{'variable':14s} {'codec':20s} {'ratio':>6s} {'encode MB/s':>12s} {'decode MB/s':>12s}")
        for name in ["activation", "preactivation", "delta", "weight"]:
            raw = ds[name].isel(run=0).values.tobytes()
            for label, codec in codecs:
                start = time.perf_counter()
                encoded = codec.encode(raw)
                encode = time.perf_counter() - start
                start = time.perf_counter()
                codec.decode(encoded)
                decode = time.perf_counter() - start
                print(f"{name:14s} {label:20s} {len(encoded) / len(raw):6.3f} {len(raw) / encode / 1e6:12.0f} {len(raw) / decode / 1e6:12.0f}")
            start = time.perf_counter()
            crc32c.crc32c(raw)
            elapsed = time.perf_counter() - start
            print(f"{name:14s} {'crc32c only':20s} {1.0:6.3f} {len(raw) / elapsed / 1e6:12.0f} {'':>12s}")


if __name__ == "__main__":
    main()
