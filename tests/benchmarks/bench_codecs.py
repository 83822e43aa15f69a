import time, numpy as np, actstats
from numcodecs import Zstd, Blosc
import crc32c
ds = actstats.open_store('/tmp/g.zarr')
for name in ["activation", "preactivation", "delta", "weight"]:
    a = ds[name].isel(run=0, epoch=slice(0, None, 4)).values
    raw = a.tobytes()
    out = [f"{name:14s} {len(raw)/1e6:6.1f}MB"]
    for label, codec in [("zstd1", Zstd(level=1)), ("zstd3", Zstd(level=3)), ("blosc-lz4-shuf", Blosc("lz4", 5, Blosc.SHUFFLE)), ("blosc-zstd1-shuf", Blosc("zstd", 1, Blosc.SHUFFLE))]:
        t = time.perf_counter(); c = codec.encode(raw); dt = time.perf_counter() - t
        t = time.perf_counter(); codec.decode(c); dd = time.perf_counter() - t
        out.append(f"{label}: ratio {len(c)/len(raw):.3f} enc {len(raw)/dt/1e6:5.0f}MB/s dec {len(raw)/dd/1e6:5.0f}MB/s")
    t = time.perf_counter(); crc32c.crc32c(raw); dt = time.perf_counter() - t
    out.append(f"crc32c {len(raw)/dt/1e6:5.0f}MB/s")
    print(" | ".join(out))
