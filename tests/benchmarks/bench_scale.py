"""Scale: out-of-core queries on 1 GB and 4 GB stores against a hand-written zarr loop.

For each size, builds (or reuses, when present and complete) a synthetic store written by
actstats.synthetic.write_synthetic_store: R runs x 12 epochs x 5 layers x 2000 samples x
1000 units of float32 activations and as many pre-activations (4 MiB chunks: 1048 samples x
1000 units), and R x 12 x 5 weight matrices of 1000 x 1000 (one 4 MB chunk each); R = 2 for
"1" (0.96 GB of activations), 9 for "4" (4.32 GB of activations, 2.16 GB of weights). Then,
each variant in a fresh subprocess (peak RSS = ru_maxrss of that child, from os.wait4), the
libraries imported before the clock starts (numpy, zarr, xarray, dask with dask.array, scipy,
numba, actstats and actstats.queries: what any variant imports; the table's "process" column
of each run includes them):

  saturation, 2 threads   actstats.saturation(open_store(p), by=run,epoch,layer,split)
                          (the CLI's `actstats saturation STORE --by run,epoch,layer,split`),
                          dask threaded scheduler with 2 workers
  saturation, 1 thread    the same with 1 worker
  zarr loop (saturation)  zarr.open_group(p)["activation"], one chunk at a time
                          (arr[slice] on chunk boundaries), low/high/total counts per
                          (run, epoch, layer, sample) with numpy, then fractions per split
  zarr read only          the same chunks read with zarr, nothing computed
  raw read                open(chunk_file).read() of the same chunk files (1 thread; "raw2": 2)
  read + CRC-32C + count  ("floor2") each activation chunk read by actstats' ChunkFiles into a
                          buffer of its thread's, checked against its CRC-32C and counted by
                          actstats' band_counts, 2 threads: the per-chunk work saturation cannot
                          skip and nothing else (no bootstrap, no engine), its floor
  weight_normality        actstats.weight_normality(open_store(p)) (by run, epoch, layer), 2 threads
  scipy loop (weights)    each (run, epoch, layer) matrix read with zarr; scipy.stats skew,
                          kurtosis (bias=False), normaltest, jarque_bera, anderson, kstest
                          against the fitted normal, wasserstein_distance to normal quantiles
  zarr read only, raw read (weights)
  weight fit by layer     actstats.fit(open_store(p), variable="weight", by=layer, method="histogram"):
                          the streamed weight fits of groups of 2.4e7 / 1.1e8 weights; baseline: zarr read only
  bimodality by layer     actstats.bimodality(open_store(p), by=layer, mixture="never"): groups of
                          4.8e7 / 2.2e8 values, so the streamed logit-histogram path; baseline:
                          the zarr read-only pass (no loop computes the dip of 10^8 values)

The files of every store that its variants read (metadata, coordinates, and the chunks of
the variables read) are read once (raw) before its variants run, and fincore reports how much
of them is in the page cache before and after: the timings are of page-cache reads, not disk.
Checks: the loop's saturation fractions equal actstats' (max |difference| <= 1e-12); the
scipy loop's skewness, excess kurtosis, K2 and JB p-values, Anderson-Darling and KS
statistics equal weight_normality's (rtol 1e-8), W1 within 3e-4 (quantile-grid reference); on
the first store, diptest.dipstat of all of layer 1's values in memory lies within the
streamed dip's bound.

With --compressed, each store is also rewritten by plain xarray as another program would write
the format (blosc-lz4 + shuffle, then crc32c; one chunk per (run, epoch, layer) slab), and the
saturation variants run on that copy too, so that neither read path can regress unseen.

Usage: python tests/benchmarks/bench_scale.py [--sizes 1,4] [--dir /tmp/actstats-bench-scale]
           [--verify] [--no-weights] [--only sat2,sat1,...] [--repeat N] [--profile] [--compressed]
With --repeat N each variant runs N times, interleaved, and the table shows medians.
Sizes below 0.45 use 1 run and fewer epochs (for trying the script: --sizes 0.05,0.2).
Not part of `make test` or `make bench` (it writes ~13 GB); results in docs/benchmarks.md
("Scale").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.abspath(__file__)
EPOCHS, LAYERS, SAMPLES, UNITS = 12, 5, 2000, 1000
EPS = 0.05
BY = ("run", "epoch", "layer", "split")
SLAB = SAMPLES * UNITS * 4  # bytes of one (run, epoch, layer) activation slab


# ----------------------------------------------------------------------------- stores


def shape_for(size_gib: float) -> dict:
    per_run = EPOCHS * LAYERS * SLAB
    runs = round(size_gib * 2**30 / per_run)
    if runs >= 1:
        return dict(runs=runs, epochs=EPOCHS, layers=LAYERS, samples=SAMPLES, units=UNITS)
    epochs = max(2, round(size_gib * 2**30 / (LAYERS * SLAB)))
    return dict(runs=1, epochs=epochs, layers=LAYERS, samples=SAMPLES, units=UNITS)


def store_path(directory: str, shape: dict) -> str:
    return os.path.join(directory, "scale-{runs}x{epochs}x{layers}x{samples}x{units}.zarr".format(**shape))


def reusable(path: str, shape: dict) -> bool:
    """A store written by write_synthetic_store with these arguments, every record complete."""
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        params = json.loads(group.attrs["sweep"])["write_synthetic_store"]
        complete = np.asarray(group["complete"][...])
    except Exception:
        return False
    return (all(params.get(k) == v for k, v in shape.items() if k != "epochs")
            and len(params["epochs"]) == shape["epochs"] and params["seed"] == 0 and bool(complete.all()))


def build(path: str, shape: dict) -> None:
    from actstats.synthetic import write_synthetic_store

    start = time.perf_counter()
    state = {"next": 0.0}

    def progress(done, total):
        if done / total >= state["next"] or done == total:
            elapsed = time.perf_counter() - start
            print(f"  building {os.path.basename(path)}: {done / 1e9:5.2f} / {total / 1e9:.2f} GB "
                  f"({done / 1e6 / max(elapsed, 1e-9):.0f} MB/s)", flush=True)
            state["next"] += 0.1

    write_synthetic_store(path, **shape, seed=0, progress=progress, overwrite=True)
    elapsed = time.perf_counter() - start
    print(f"  built in {elapsed:.0f} s", flush=True)


def build_compressed(source: str) -> str:
    """`source` rewritten by plain xarray as another program would write the format: every
    array with blosc-lz4 + shuffle, then crc32c; one chunk per (run, epoch, layer) slab of the
    large arrays; every chunk written. Reused when present."""
    import xarray as xr
    from zarr.codecs import BloscCodec, Crc32cCodec

    target = source.replace(".zarr", "-xarray-blosc-lz4.zarr")
    if os.path.exists(os.path.join(target, "zarr.json")) and os.path.exists(os.path.join(target, "weight")):
        return target
    start = time.perf_counter()
    ds = xr.open_zarr(source, consolidated=False, chunks=None)
    encoding = {}
    for variable in ds.variables.values():
        variable.encoding = {}
    for name, variable in ds.variables.items():
        encoding[name] = {"compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]}
        if variable.dims[:3] == ("run", "epoch", "layer"):
            chunks = (1, 1, 1) + variable.shape[3:]
            encoding[name]["chunks"] = chunks
            ds[name] = ds[name].chunk(dict(zip(variable.dims, chunks)))
    ds.to_zarr(target + ".partial", mode="w", encoding=encoding, zarr_format=3, consolidated=False,
               write_empty_chunks=True)
    os.replace(target + ".partial", target)
    print(f"  wrote {os.path.basename(target)} with xarray in {time.perf_counter() - start:.0f} s", flush=True)
    return target


def chunk_files(path: str, name: str) -> list[str]:
    import zarr

    array = zarr.open_group(path, mode="r")[name]
    return [os.path.join(path, name, *array.metadata.encode_chunk_key(i).split("/"))
            for i in np.ndindex(*array.cdata_shape)]


def all_files(path: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]


def cached_fraction(files: list[str]) -> float:
    """Fraction of the files' bytes in the page cache (fincore), NaN without fincore."""
    resident = size = 0
    try:
        for i in range(0, len(files), 500):
            out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", *files[i:i + 500]],
                                 capture_output=True, text=True, check=True).stdout
            for line in out.split("\n"):
                if line.strip():
                    res, total = line.split()
                    resident += int(res)
                    size += int(total)
    except (OSError, subprocess.CalledProcessError):
        return float("nan")
    return resident / size if size else float("nan")


def read_files(path: str, variables: set[str]) -> list[str]:
    """The store's files the chosen variants read: its metadata and coordinates, and the
    chunks of the large variables among `variables` (the others are left out of the page
    cache, so that two 4 GB stores fit in memory one after the other)."""
    large = {"activation", "preactivation", "weight", "delta", "weight_grad"}
    return [f for f in all_files(path)
            if os.path.relpath(f, path).split(os.sep)[0] not in large - variables]


def warm(files: list[str]) -> float:
    start = time.perf_counter()
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                n += len(chunk)
    return n / 1e6 / (time.perf_counter() - start)


# ------------------------------------------------------------------ variants (children)


def _thresholds(lower: float, upper: float) -> tuple[np.float32, np.float32]:
    """float32 thresholds equivalent to actstats' float64 comparisons of float32 values:
    x <= lo32 iff x <= lower + eps w, and x >= hi32 iff x >= upper - eps w."""
    width = upper - lower
    low, high = lower + EPS * width, upper - EPS * width
    lo32, hi32 = np.float32(low), np.float32(high)
    if float(lo32) > low:
        lo32 = np.nextafter(lo32, np.float32(-np.inf))
    if float(hi32) < high:
        hi32 = np.nextafter(hi32, np.float32(np.inf))
    return lo32, hi32


def _text(group, name: str) -> np.ndarray:
    """A text coordinate as a plain zarr user reads it: integer codes and their ``labels``
    attribute (docs/store-format.md), or strings in stores of the older encoding."""
    array = group[name]
    values = np.asarray(array[...])
    if "labels" in array.attrs:
        return np.asarray(array.attrs["labels"], dtype=object)[values].astype(str)
    return values.astype(object).astype(str)


def _split(group) -> np.ndarray:
    return _text(group, "split")


def saturation_loop(path: str, out: str) -> int:
    import zarr

    group = zarr.open_group(path, mode="r")
    array = group["activation"]
    bounds = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
    functions = _text(group, "activation_fn")
    split = _split(group)
    runs, epochs, layers, samples, _ = array.shape
    rows = array.chunks[3]
    low = np.zeros((runs, epochs, layers, samples), np.int64)
    high, total = np.zeros_like(low), np.zeros_like(low)
    for r in range(runs):
        lo32, hi32 = _thresholds(*bounds[functions[r]])
        for e in range(epochs):
            for layer in range(layers):
                for start in range(0, samples, rows):
                    x = array[r, e, layer, start:start + rows]
                    where = (r, e, layer, slice(start, start + rows))
                    low[where] = np.count_nonzero(x <= lo32, axis=-1)
                    high[where] = np.count_nonzero(x >= hi32, axis=-1)
                    total[where] = x.shape[-1] - np.count_nonzero(np.isnan(x), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_sample = {"fraction": (low + high) / total, "fraction_low": low / total, "fraction_high": high / total}
    labels = list(dict.fromkeys(split.tolist()))
    result = {name: np.stack([np.nanmean(v[..., split == s], axis=-1) for s in labels], axis=-1)
              for name, v in per_sample.items()}
    np.savez(out, labels=np.array(labels), **result)
    return array.nbytes


def saturation_actstats(path: str, out: str) -> int:
    import actstats

    ds = actstats.open_store(path)
    result = actstats.saturation(ds, eps=EPS, by=BY)
    np.savez(out, labels=result.split.values.astype(str),
             **{name: result[name].transpose(*BY).values for name in ("fraction", "fraction_low", "fraction_high")})
    return ds["activation"].nbytes


def read_zarr(path: str, name: str) -> int:
    import zarr

    array = zarr.open_group(path, mode="r")[name]
    n = 0
    for index in np.ndindex(*array.cdata_shape):
        n += array[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, array.chunks))].nbytes
    return n


def read_raw(path: str, name: str) -> int:
    n = 0
    for f in chunk_files(path, name):
        with open(f, "rb") as fh:
            n += len(fh.read())
    return n


def read_raw_threads(path: str, name: str, threads: int = 2) -> int:
    """The chunk files read whole by `threads` threads (file reads release the GIL): the read
    limit that the issue's "50% of the raw-read throughput (2 threads)" is measured against."""
    from concurrent.futures import ThreadPoolExecutor

    def size(f: str) -> int:
        with open(f, "rb") as fh:
            return len(fh.read())

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(size, chunk_files(path, name), chunksize=16))


def read_check_count(path: str, out: str, threads: int = 2) -> int:
    """The floor under `saturation` on actstats' own format: the per-chunk work it cannot skip,
    and nothing else. Each activation chunk read into a buffer of its thread's, checked
    against its CRC-32C (actstats' ChunkFiles, as the query reads) and counted per row (low,
    high, finite: actstats' band_counts, as the query counts), on `threads` threads. No
    bootstrap, no store opening beyond zarr's metadata, no engine, no hand-off between
    threads: the query adds those. Its counts are checked against the zarr loop's."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    from actstats.kernels.saturation import band_counts
    from actstats.store.chunks import ChunkFiles

    group = zarr.open_group(path, mode="r")
    array = group["activation"]
    files = ChunkFiles(path, "activation", array, read_only=True)
    bounds = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
    functions = _text(group, "activation_fn")
    runs, epochs, layers, samples, units = array.shape
    rows = array.chunks[3]
    counts = np.zeros((runs, epochs, layers, samples, 4))
    local = threading.local()

    def count(index):
        r, e, layer, k, _ = index
        n = min(rows, samples - k * rows)
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = np.empty(rows * units, dtype=array.dtype)
        values = buffer[: n * units].reshape(1, 1, 1, n, units)
        region = (0, 0, 0, slice(0, n), slice(None))
        if not files.read_region(index, region, values):
            raise FileNotFoundError(files.path(index))
        lo32, hi32 = _thresholds(*bounds[functions[r]])
        band_counts(values.reshape(n, units), lo32, hi32, "bounds", counts[r, e, layer, k * rows:k * rows + n])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(count, np.ndindex(*array.cdata_shape), chunksize=8))
    # the fractions per split as the loop computes them (inside its clock too), to check the counts
    low, high, total = counts[..., 0], counts[..., 1], counts[..., 2]
    split = _split(group)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_sample = {"fraction": (low + high) / total, "fraction_low": low / total, "fraction_high": high / total}
    labels = list(dict.fromkeys(split.tolist()))
    np.savez(out, labels=np.array(labels), **{name: np.stack([np.nanmean(v[..., split == s], axis=-1) for s in labels],
                                                             axis=-1) for name, v in per_sample.items()})
    return runs * epochs * layers * samples * units * array.dtype.itemsize


def compare_loop(path: str, out: str) -> int:
    """What compare_splits reports per (run, epoch, layer) without its tests: the mean over the
    train and the test samples of each sample's saturated fraction and mean |preactivation|,
    a chunk at a time with zarr and numpy."""
    import zarr

    group = zarr.open_group(path, mode="r")
    activation, preactivation = group["activation"], group["preactivation"]
    bounds = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
    functions = _text(group, "activation_fn")
    split = _split(group)
    runs, epochs, layers, samples, _ = activation.shape
    rows = activation.chunks[3]
    fraction = np.zeros((runs, epochs, layers, samples))
    absolute = np.zeros_like(fraction)
    for r in range(runs):
        lo32, hi32 = _thresholds(*bounds[functions[r]])
        for e in range(epochs):
            for layer in range(layers):
                for start in range(0, samples, rows):
                    x = activation[r, e, layer, start:start + rows]
                    z = preactivation[r, e, layer, start:start + rows]
                    where = (r, e, layer, slice(start, start + rows))
                    total = x.shape[-1] - np.count_nonzero(np.isnan(x), axis=-1)
                    fraction[where] = (np.count_nonzero(x <= lo32, axis=-1) + np.count_nonzero(x >= hi32, axis=-1)) / total
                    absolute[where] = np.nansum(np.abs(z), axis=-1, dtype=np.float64) / total
    result = {}
    for label in ("train", "test"):
        result[f"fraction_{label}"] = np.nanmean(fraction[..., split == label], axis=-1)
        result[f"mean_abs_preactivation_{label}"] = np.nanmean(absolute[..., split == label], axis=-1)
    np.savez(out, **result)
    return activation.nbytes + preactivation.nbytes


def compare_actstats(path: str, out: str) -> int:
    import actstats

    ds = actstats.open_store(path)
    result = actstats.compare_splits(ds, eps=EPS, by=("run", "epoch", "layer"))
    np.savez(out, **{name: result[name].transpose("run", "epoch", "layer").values
                     for name in ("fraction_train", "fraction_test", "mean_abs_preactivation_train",
                                  "mean_abs_preactivation_test")})
    return ds["activation"].nbytes + ds["preactivation"].nbytes


WEIGHT_FIELDS = ("skewness", "excess_kurtosis", "k2_pvalue", "jb_pvalue", "ad_statistic", "ks_d", "w1_normal")


def weights_loop(path: str, out: str) -> int:
    import zarr
    from scipy import stats

    array = zarr.open_group(path, mode="r")["weight"]
    grid = stats.norm.ppf((np.arange(50_000) + 0.5) / 50_000)
    result = {name: np.full(array.shape[:3], np.nan) for name in WEIGHT_FIELDS}
    for index in np.ndindex(*array.shape[:3]):
        x = np.asarray(array[index], dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        mean, std = x.mean(), x.std()
        result["skewness"][index] = stats.skew(x, bias=False)
        result["excess_kurtosis"][index] = stats.kurtosis(x, bias=False)
        result["k2_pvalue"][index] = stats.normaltest(x).pvalue
        result["jb_pvalue"][index] = stats.jarque_bera(x).pvalue
        result["ad_statistic"][index] = stats.anderson(x, method="interpolate").statistic
        result["ks_d"][index] = stats.kstest(x, "norm", args=(mean, std)).statistic
        result["w1_normal"][index] = stats.wasserstein_distance((x - mean) / std, grid)
    np.savez(out, **result)
    return array.nbytes


def weights_actstats(path: str, out: str) -> int:
    import actstats

    ds = actstats.open_store(path)
    result = actstats.weight_normality(ds)
    np.savez(out, **{name: result[name].transpose("run", "epoch", "layer").values for name in WEIGHT_FIELDS})
    return ds["weight"].nbytes


def bimodality_actstats(path: str, out: str) -> int:
    import actstats

    ds = actstats.open_store(path)
    result = actstats.bimodality(ds, by=("layer",), mixture="never")  # groups of > 2**25 values: histogram path
    np.savez(out, **{name: result[name].values for name in ("n", "dip", "dip_error", "dip_pvalue", "beta_a",
                                                              "beta_b", "bimodality_coefficient")},
             method=result.attrs["cdf_method"])
    return ds["activation"].nbytes


def weight_fit_actstats(path: str, out: str) -> int:
    import actstats

    ds = actstats.open_store(path)
    result = actstats.fit(ds, variable="weight", by=("layer",), method="histogram")  # pooled: streamed
    np.savez(out, best=result.best_family.values.astype(str), n=result.n.values)
    return ds["weight"].nbytes


def check_bimodality(outputs: dict, path: str) -> str:
    """The exact dip (diptest.dipstat of every value of layer 1) against the histogram path's bound."""
    import diptest
    import zarr

    ours = np.load(outputs["bim2"])
    values = np.asarray(zarr.open_group(path, mode="r")["activation"][:, :, 0], dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    start = time.perf_counter()
    exact = float(diptest.dipstat(values))
    seconds = time.perf_counter() - start
    dip, error = float(ours["dip"][0]), float(ours["dip_error"][0])
    ok = str(ours["method"]) == "histogram" and abs(dip - exact) <= error and int(ours["n"][0]) == values.size
    return (f"bimodality layer 1 ({values.size} values, method {ours['method']}): dip {dip:.6f} ± {error:.6f}, "
            f"exact diptest.dipstat {exact:.6f} ({seconds:.0f} s in memory) -> {'OK' if ok else 'MISMATCH'}")


VARIANTS = {  # name: (label, variable, function, dask threads)
    "sat2": ("actstats saturation, 2 threads", "activation", saturation_actstats, 2),
    "sat1": ("actstats saturation, 1 thread", "activation", saturation_actstats, 1),
    "satloop": ("zarr loop + numpy (saturation)", "activation", saturation_loop, None),
    "zread": ("zarr read only (activation)", "activation", lambda p, o: read_zarr(p, "activation"), None),
    "raw": ("raw file read (activation)", "activation", lambda p, o: read_raw(p, "activation"), None),
    "raw2": ("raw file read, 2 threads (activation)", "activation", lambda p, o: read_raw_threads(p, "activation"),
             None),
    "floor2": ("read + CRC-32C + count only, 2 threads (activation)", "activation", read_check_count, None),
    "cmp2": ("actstats compare_splits, 2 threads", "activation+preactivation", compare_actstats, 2),
    "cmploop": ("zarr loop + numpy (compare)", "activation+preactivation", compare_loop, None),
    "wn2": ("actstats weight_normality, 2 threads", "weight", weights_actstats, 2),
    "wloop": ("zarr loop + scipy.stats (weights)", "weight", weights_loop, None),
    "wzread": ("zarr read only (weight)", "weight", lambda p, o: read_zarr(p, "weight"), None),
    "wraw": ("raw file read (weight)", "weight", lambda p, o: read_raw(p, "weight"), None),
    "bim2": ("actstats bimodality by layer (streamed), 2 threads", "activation", bimodality_actstats, 2),
    "wfit2": ("actstats weight fit by layer (streamed), 2 threads", "weight", weight_fit_actstats, 2),
}
COMPRESSED_VARIANTS = ("sat2", "sat1", "satloop", "zread", "raw", "raw2", "floor2", "cmp2", "cmploop")
BASELINE = {"sat2": "satloop", "sat1": "satloop", "satloop": "satloop", "zread": "satloop", "raw": "satloop",
            "raw2": "satloop", "floor2": "satloop", "cmp2": "cmploop", "cmploop": "cmploop",
            "wn2": "wloop", "wloop": "wloop", "wzread": "wloop", "wraw": "wloop",
            "bim2": "zread", "wfit2": "wzread"}  # no loop computes the dip of 10^8 values: against reading alone


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(variant: str, path: str, out: str) -> None:
    import dask
    import dask.array  # noqa: F401  the libraries imported before timing, as in every variant
    import numba  # noqa: F401  (actstats' compiled kernels: their first call, loading them, is timed)
    import scipy.stats  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import actstats
    import actstats.queries  # noqa: F401

    _, _, function, threads = VARIANTS[variant]
    if threads:  # the function, not the name "threads": given a name, dask imports distributed (0.5 s)
        import dask.threaded

        dask.config.set(scheduler=dask.threaded.get, num_workers=threads)
    actstats.set_options(progress=False)
    rss_before = _rss_mb()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    nbytes = function(path, out)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "bytes": nbytes,
                      "rss_after_imports_mb": rss_before}))


def run_child(variant: str, path: str, out: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, HERE, "--child", variant, path, out], stdout=subprocess.PIPE,
                            text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"variant {variant} failed (exit {proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


# ------------------------------------------------------------------------- checks


def check_saturation(outputs: dict, variant: str) -> str:
    ours, loop = np.load(outputs[variant]), np.load(outputs["satloop"])
    assert ours["labels"].tolist() == loop["labels"].tolist(), (ours["labels"], loop["labels"])
    diff = max(float(np.nanmax(np.abs(ours[k] - loop[k]))) for k in ("fraction", "fraction_low", "fraction_high"))
    same_nan = all(np.array_equal(np.isnan(ours[k]), np.isnan(loop[k])) for k in ("fraction",))
    ok = diff <= 1e-12 and same_nan
    return (f"saturation ({VARIANTS[variant][0]}) vs zarr loop: {ours['fraction'].size} groups, fraction/low/high "
            f"max |diff| = {diff:.1e} -> {'OK' if ok else 'MISMATCH'} (<= 1e-12)")


def check_compare(outputs: dict) -> str:
    ours, loop = np.load(outputs["cmp2"]), np.load(outputs["cmploop"])
    parts, ok = [], True
    for name in loop.files:
        diff = float(np.nanmax(np.abs(ours[name] - loop[name]) / np.maximum(np.abs(loop[name]), 1e-300)))
        parts.append(f"{name} max rel {diff:.1e}")
        ok &= diff <= 1e-12 and np.array_equal(np.isnan(ours[name]), np.isnan(loop[name]))
    return (f"compare_splits vs zarr loop: {ours['fraction_train'].size} groups, " + ", ".join(parts)
            + f" -> {'OK' if ok else 'MISMATCH'} (<= 1e-12 relative)")


def check_weights(outputs: dict) -> str:
    ours, loop = np.load(outputs["wn2"]), np.load(outputs["wloop"])
    parts, ok = [], True
    for name in WEIGHT_FIELDS:
        a, b = ours[name], loop[name]
        if name == "w1_normal":
            err = float(np.max(np.abs(a - b)))
            good = err <= 3e-4
            parts.append(f"{name} max|diff| {err:.1e}")
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                err = float(np.nanmax(np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1e-300))))
            good = err <= 1e-8 or (name.endswith("pvalue") and float(np.max(np.abs(a - b))) <= 1e-300)
            parts.append(f"{name} max rel {err:.1e}")
        ok &= good
    return f"weights: {ours['skewness'].size} groups, " + ", ".join(parts) + f" -> {'OK' if ok else 'MISMATCH'}"


# ------------------------------------------------------------------------- profile


def profile(path: str) -> None:
    """cProfile of one saturation run with dask's synchronous scheduler (single thread)."""
    import cProfile
    import pstats

    import dask

    import actstats
    import actstats.queries  # noqa: F401

    dask.config.set(scheduler="synchronous")
    actstats.set_options(progress=False)
    ds = actstats.open_store(path)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    actstats.saturation(ds, eps=EPS, by=BY)
    profiler.disable()
    print(f"saturation, synchronous scheduler, under cProfile: {time.perf_counter() - start:.1f} s")
    stats = pstats.Stats(profiler).sort_stats("tottime")
    stats.print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# ------------------------------------------------------------------------- main


def fmt_table(stores: list[dict], results: dict) -> str:
    head = "| variant | " + " | ".join(
        f"{s['label']}: wall s | CPU s | MB/s | peak RSS MB | × baseline | process s" for s in stores) + " |"
    sep = "|---|" + "---:|---:|---:|---:|---:|---:|" * len(stores)
    lines = [head, sep]
    for variant in VARIANTS:
        cells = []
        for s in stores:
            r = results.get((s["label"], variant))
            if r is None:
                cells.append(" | | | | | ")
                continue
            base = results.get((s["label"], BASELINE[variant]))
            ratio = f"{r['seconds'] / base['seconds']:.2g}×" if base else ""
            cells.append(f"{r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['bytes'] / 1e6 / r['seconds']:.0f} | "
                         f"{r['peak_rss_mb']:.0f} | {ratio} | {r['process_seconds']:.1f}")
        if any(results.get((s["label"], variant)) for s in stores):
            lines.append(f"| {VARIANTS[variant][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4", help="activation GiB per store, comma-separated")
    parser.add_argument("--dir", default="/tmp/actstats-bench-scale")
    parser.add_argument("--verify", action="store_true", help="also time actstats.verify_store on each store")
    parser.add_argument("--no-weights", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (interleaved); medians")
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--profile", action="store_true", help="cProfile one saturation run on the first store")
    parser.add_argument("--compressed", action="store_true",
                        help="also each store as plain xarray writes it with blosc-lz4 (saturation variants only)")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "STORE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    import zarr

    os.makedirs(args.dir, exist_ok=True)
    variants = [v for v in VARIANTS if (not args.only or v in args.only.split(","))
                and not (args.no_weights and VARIANTS[v][1] == "weight")]
    print(f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; variants: {', '.join(variants)}",
          flush=True)
    started = time.time()
    stores = []
    for size in [float(s) for s in args.sizes.split(",")]:
        shape = shape_for(size)
        path = store_path(args.dir, shape)
        if reusable(path, shape):
            print(f"store {path}: reusing (complete)", flush=True)
        else:
            print(f"store {path}: writing", flush=True)
            build(path, shape)
        group = zarr.open_group(path, mode="r")
        sizes = {n: group[n].nbytes for n in ("activation", "preactivation", "weight")}
        disk = sum(os.path.getsize(f) for f in all_files(path))
        label = f"{sizes['activation'] / 1e9:.2f} GB"
        stores.append({"path": path, "label": label, "shape": shape, "sizes": sizes, "disk": disk})
        print(f"  {shape}: activation {sizes['activation'] / 1e9:.2f} GB, preactivation "
              f"{sizes['preactivation'] / 1e9:.2f} GB, weight {sizes['weight'] / 1e9:.2f} GB, "
              f"{disk / 1e9:.2f} GB on disk", flush=True)
        if args.compressed:
            other = build_compressed(path)
            stores.append({"path": other, "label": f"{label} xarray blosc-lz4", "shape": shape, "sizes": sizes,
                           "disk": sum(os.path.getsize(f) for f in all_files(other)), "compressed": True})
    if args.profile:
        profile(stores[0]["path"])
        return
    results, runs_of, checks = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for s in stores:
            path = s["path"]
            files = read_files(path, {name for v in variants for name in VARIANTS[v][1].split("+")})
            print(f"{s['label']} store (the files the variants read): page cache {cached_fraction(files):.0%} "
                  f"resident; warm-up read {warm(files):.0f} MB/s; now {cached_fraction(files):.0%} resident",
                  flush=True)
            if args.verify:
                import actstats

                start = time.perf_counter()
                report = actstats.verify_store(path, progress=False)
                elapsed = time.perf_counter() - start
                checks.append(f"{s['label']}: actstats.verify_store ok={report.ok}, {report.chunks_read} chunks, "
                              f"{elapsed:.0f} s ({s['disk'] / 1e6 / elapsed:.0f} MB/s)")
                print("  " + checks[-1], flush=True)
            outputs = {}
            chosen = [v for v in variants if not s.get("compressed") or v in COMPRESSED_VARIANTS]
            for round_, variant in [(i, v) for i in range(args.repeat) for v in chosen]:  # interleaved
                out = os.path.join(tmp, f"{variant}-{s['label']}.npz")
                r = run_child(variant, path, out)
                runs_of.setdefault((s["label"], variant), []).append(r)
                results[(s["label"], variant)] = {k: float(np.median([x[k] for x in runs_of[(s["label"], variant)]]))
                                                  for k in r}
                outputs[variant] = out
                print(f"  {VARIANTS[variant][0]:40s} {r['seconds']:7.1f} s (CPU {r['cpu_seconds']:6.1f} s)"
                      f"  {r['bytes'] / 1e6 / r['seconds']:6.0f} MB/s"
                      f"  peak RSS {r['peak_rss_mb']:5.0f} MB (after imports {r['rss_after_imports_mb']:.0f} MB)"
                      f"  process {r['process_seconds']:.1f} s", flush=True)
            for variant in ("sat2", "sat1", "floor2"):
                if variant in outputs and "satloop" in outputs:
                    checks.append(f"{s['label']}: " + check_saturation(outputs, variant))
                    print("  " + checks[-1], flush=True)
            if "cmp2" in outputs and "cmploop" in outputs:
                checks.append(f"{s['label']}: " + check_compare(outputs))
                print("  " + checks[-1], flush=True)
            if "bim2" in outputs and s is stores[0]:  # after every variant: loading layer 1 raises this
                dip_outputs = dict(outputs)  # process's peak RSS, which later children would inherit
            if "wn2" in outputs and "wloop" in outputs:
                checks.append(f"{s['label']}: " + check_weights(outputs))
                print("  " + checks[-1], flush=True)
            print(f"  page cache after: {cached_fraction(files):.0%} resident", flush=True)
        if "bim2" in variants:
            checks.append(f"{stores[0]['label']}: " + check_bimodality(dip_outputs, stores[0]["path"]))
            print("  " + checks[-1], flush=True)
    print(f"\nmedians of {args.repeat} interleaved run(s) per variant" if args.repeat > 1 else "")
    print(f"done in {(time.time() - started) / 60:.0f} min; load average at the end "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("stores: " + "; ".join(
        f"{s['label']} = {s['shape']['runs']} runs x {s['shape']['epochs']} epochs x {LAYERS} layers x {SAMPLES} "
        f"samples x {UNITS} units (activation {s['sizes']['activation'] / 1e9:.2f} GB, weight "
        f"{s['sizes']['weight'] / 1e9:.2f} GB, {s['disk'] / 1e9:.1f} GB on disk)" for s in stores))
    print()
    print(fmt_table(stores, results))
    print()
    for line in checks:
        print(line)


if __name__ == "__main__":
    main()
