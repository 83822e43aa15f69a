"""Weights: ``weight_normality`` against a bare zarr read and a plain scipy loop, side by side.

Builds (or reuses) a synthetic store written by actstats.synthetic.write_synthetic_store with
R runs x E epochs x 5 layers of 512 x 512 float32 weight matrices (1 MiB each; the default
4 x 10 x 5 is 210 MB of weights; normal layers, with uniform and Laplace ones), then runs
each variant in a fresh subprocess and reports its wall time and CPU time (all threads,
time.process_time) after the imports, MB/s of weights, and the child's peak RSS (os.wait4):

  zarr read only        zarr.open_group(p)["weight"], one (run, epoch, layer) matrix at a time
  weight_normality      actstats.weight_normality(actstats.open_store(p)), dask threads, 2 workers
  scipy loop            the same matrices read with zarr; per matrix scipy.stats.anderson,
                        statsmodels' lilliefors (table p-value), scipy.stats.shapiro on the
                        deterministic subsample of 5000 that weight_normality tests,
                        scipy.stats.kstest against the fitted normal, scipy.stats.laplace.fit
                        and scipy.stats.logistic.fit

The ratios are measured in the same run (the machine may be shared: compare ratios, not
absolute numbers across runs). The loop's Anderson-Darling, Lilliefors, Shapiro-Wilk and KS
numbers are compared with weight_normality's at the end (relative differences printed).

Usage: python tests/benchmarks/bench_weights.py [--runs 4] [--epochs 10] [--units 512]
           [--dir /tmp/actstats-bench-weights] [--threads 2] [--compare-with DIR] [--rounds 1]
--rounds N runs the weight_normality variants N times, alternating (the table shows each one's
round of median CPU time; every round is printed); the load average is printed at start and end.
--compare-with DIR adds a row of weight_normality imported from another checkout's source
tree (PYTHONPATH=DIR), e.g. the code before a change (``git archive HEAD actstats | tar -x -C DIR``).
Not part of `make test`; results in docs/benchmarks.md ("Weights").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.abspath(__file__)
LAYERS, SAMPLES = 5, 64
SHAPIRO_MAX_SIZE, SEED = 5000, 0
FIELDS = ("ad_statistic", "lilliefors_statistic", "lilliefors_pvalue", "shapiro_statistic", "ks_d")


def build(path: str, runs: int, epochs: int, units: int) -> None:
    import zarr

    from actstats.synthetic import write_synthetic_store

    try:
        group = zarr.open_group(path, mode="r")
        params = json.loads(group.attrs["sweep"])["write_synthetic_store"]
        if (params["runs"], len(params["epochs"]), params["units"]) == (runs, epochs, units) \
                and bool(np.asarray(group["complete"][...]).all()):
            return
    except Exception:
        pass
    start = time.perf_counter()
    write_synthetic_store(path, runs=runs, epochs=epochs, layers=LAYERS, samples=SAMPLES, units=units, seed=0,
                          overwrite=True)
    print(f"built {path} in {time.perf_counter() - start:.0f} s", flush=True)


# ------------------------------------------------------------------ variants (run in a child)


def zarr_read(path: str, out: str) -> int:
    import zarr

    array = zarr.open_group(path, mode="r")["weight"]
    total = 0.0
    for index in np.ndindex(*array.shape[:3]):
        total += float(np.asarray(array[index])[0, 0])
    return array.nbytes


def actstats_variant(path: str, out: str, threads: int) -> int:
    import dask

    import actstats

    # dask's threaded scheduler, which the queries choose when no scheduler is named; naming it
    # ("threads") makes dask import dask.distributed at compute to look for a client (0.3-0.8 s)
    dask.config.set(num_workers=threads)
    ds = actstats.open_store(path)
    result = actstats.weight_normality(ds)
    np.savez(out, **{name: result[name].transpose("run", "epoch", "layer").values for name in FIELDS})
    return ds["weight"].nbytes


def scipy_loop(path: str, out: str) -> int:
    import warnings

    import zarr
    from scipy import stats
    from statsmodels.stats.diagnostic import lilliefors

    array = zarr.open_group(path, mode="r")["weight"]
    result = {name: np.full(array.shape[:3], np.nan) for name in FIELDS}
    for index in np.ndindex(*array.shape[:3]):
        x = np.asarray(array[index], dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        result["ad_statistic"][index] = stats.anderson(x, method="interpolate").statistic
        result["lilliefors_statistic"][index], result["lilliefors_pvalue"][index] = lilliefors(x, pvalmethod="table")
        rng = np.random.default_rng(SEED)
        subsample = x[np.sort(rng.choice(x.size, SHAPIRO_MAX_SIZE, replace=False))] if x.size > SHAPIRO_MAX_SIZE else x
        result["shapiro_statistic"][index] = stats.shapiro(subsample).statistic
        result["ks_d"][index] = stats.kstest(x, "norm", args=(x.mean(), x.std())).statistic
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats.laplace.fit(x)
            stats.logistic.fit(x)
    np.savez(out, **result)
    return array.nbytes


def child(variant: str, path: str, out: str, threads: int, report: str) -> None:
    """Time one variant after its imports: wall and CPU (every thread of this process)."""
    import scipy.stats  # noqa: F401
    import statsmodels.stats.diagnostic  # noqa: F401
    import zarr  # noqa: F401

    import actstats  # noqa: F401

    start, cpu = time.perf_counter(), time.process_time()
    if variant == "zarr":
        nbytes = zarr_read(path, out)
    elif variant == "loop":
        nbytes = scipy_loop(path, out)
    else:
        nbytes = actstats_variant(path, out, threads)
    with open(report, "w") as handle:
        json.dump({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "bytes": nbytes}, handle)


def run(variant: str, path: str, out: str, threads: int, pythonpath: str | None = None) -> dict:
    """The variant in a fresh process (its peak RSS from wait4)."""
    report = out + ".json"
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    process = subprocess.Popen([sys.executable, HERE, "--child", variant, path, out, str(threads), report], env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"variant {variant} failed (status {status})")
    with open(report) as handle:
        measured = json.load(handle)
    measured["peak_rss_mb"] = usage.ru_maxrss / 1024
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--dir", default="/tmp/actstats-bench-weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare-with", default=None, help="another source tree of actstats (PYTHONPATH)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the weight_normality variants (median)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, path, out, threads, report = args.child
        child(variant, path, out, int(threads), report)
        return

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"weights-{args.runs}x{args.epochs}x{LAYERS}x{args.units}.zarr")
    build(path, args.runs, args.epochs, args.units)
    variants = [("zarr", "zarr read only (weight)", None), ("actstats", f"weight_normality, {args.threads} threads", None)]
    if args.compare_with:
        variants.append(("actstats", f"weight_normality from {args.compare_with}, {args.threads} threads",
                         args.compare_with))
    variants.append(("loop", "scipy loop (anderson, lilliefors, shapiro, kstest, laplace/logistic fit)", None))
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        zarr_read(path, "")  # the store's files in the page cache before any timing
        results, rounds = {}, {}
        order = [(i, v) for i, v in enumerate(variants) if v[0] != "actstats"]
        alternating = [(i, v) for i, v in enumerate(variants) if v[0] == "actstats"] * max(args.rounds, 1)
        for i, (variant, label, pythonpath) in order[:1] + alternating + order[1:]:
            out = os.path.join(scratch, f"{i}.npz")
            measured = run(variant, path, out, args.threads, pythonpath) | {"out": out}
            rounds.setdefault(label, []).append(measured)
            print(f"  {label}: {measured['wall']:.1f} s wall, {measured['cpu']:.1f} s CPU", flush=True)
        for label, measured in rounds.items():  # the median round (by CPU) of each variant
            results[label] = sorted(measured, key=lambda m: m["cpu"])[(len(measured) - 1) // 2]
        results = {label: results[label] for _, label, _ in variants}
        ours = np.load(results[variants[1][1]]["out"])
        loop = np.load(results[variants[-1][1]]["out"])
        differences = {name: float(np.max(np.abs(ours[name] - loop[name]) / np.abs(loop[name]))) for name in FIELDS}

    nbytes = results[variants[0][1]]["bytes"]
    reference = results[variants[-1][1]]
    print(f"\nstore: {args.runs} runs x {args.epochs} epochs x {LAYERS} layers of {args.units} x {args.units} "
          f"float32 weights ({nbytes / 1e6:.0f} MB)")
    print(f"{'variant':75s} {'wall s':>8s} {'CPU s':>8s} {'MB/s':>8s} {'x loop':>8s} {'x loop CPU':>10s} {'RSS MB':>7s}")
    for label, measured in results.items():
        print(f"{label:75s} {measured['wall']:8.1f} {measured['cpu']:8.1f} {nbytes / 1e6 / measured['wall']:8.1f} "
              f"{reference['wall'] / measured['wall']:8.1f} {reference['cpu'] / measured['cpu']:10.1f} "
              f"{measured['peak_rss_mb']:7.0f}")
    print("load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("weight_normality against the loop, max relative difference: "
          + ", ".join(f"{name} {value:.1e}" for name, value in differences.items()))


if __name__ == "__main__":
    main()
