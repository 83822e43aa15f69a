"""Cost of each query on a store shaped like the default sweep (actstats/configs/default.toml).

Writes a synthetic store (actstats.synthetic, a random forward pass) with the default
sweep's shape — 32 runs, 12 record epochs, up to 4 layers of 64 units, 300 + 200 probe
samples — to a temporary Zarr store through actstats.store.create_store, opens it lazily
and times each query end to end (reading included). Prints one line per query.

Usage: python tests/benchmarks/bench_queries.py [--runs 32] [QUERY ...]
Not part of `make test`; results go into docs/queries.md ("Query costs").
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

import actstats
from actstats.store import COORDINATES, StoreLayout, create_store
from actstats.synthetic import synthetic_store

QUERIES = {
    "saturation": lambda ds: actstats.saturation(ds),
    "compare": lambda ds: actstats.compare_splits(ds),
    "gradients": lambda ds: actstats.gradient_flow(ds),
    "weights": lambda ds: actstats.weight_normality(ds),
    "bimodality": lambda ds: actstats.bimodality(ds),
    "bimodality_always": lambda ds: actstats.bimodality(ds, mixture="always"),
    "fit_activation_fast": lambda ds: actstats.fit(ds, family=("beta", "logit_normal")),
    "fit_activation": lambda ds: actstats.fit(ds),
    "fit_weight_fast": lambda ds: actstats.fit(ds, variable="weight", family=("normal", "laplace", "logistic",
                                                                               "uniform")),
    "fit_weight": lambda ds: actstats.fit(ds, variable="weight"),
}


def write(path: str, runs: int) -> int:
    half = runs // 2
    ds = synthetic_store(
        runs=runs, epochs=np.r_[0, np.geomspace(0.01, 10, 11)], depth=[2, 4] * half, width=64,
        samples=(300, 200), activation_fn=["sigmoid", "tanh"] * half, weight_scale=4.0,
    )
    layout = StoreLayout(
        n_runs=runs, epochs=tuple(ds["epoch"].values), n_layers=ds.sizes["layer"], n_units=ds.sizes["unit"],
        n_fan_in=ds.sizes["fan_in"], n_classes=ds.sizes["class"], n_features=ds.sizes["feature"],
        n_samples=ds.sizes["sample"], optional=frozenset({"delta", "weight_grad"}),
    )
    create_store(path, layout, {name: ds[name].values for name in COORDINATES}, {"torch_version": "", "sweep": "{}"},
                 ds["input"].values)
    import zarr

    group = zarr.open_group(path, mode="r+")
    for name in ("activation", "preactivation", "weight", "bias", "delta", "weight_grad", "complete"):
        group[name][...] = ds[name].values
    return int(np.isfinite(ds["activation"].values).sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("queries", nargs="*", default=[q for q in QUERIES if q not in ("fit_activation", "fit_weight")])
    args = parser.parse_args()
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, "bench.zarr")
        values = write(path, args.runs)
        ds = actstats.open_store(path)
        print(f"store: {dict(ds.sizes)}; {values / 1e6:.1f}M activation values present; cores: {os.cpu_count()}")
        for name in args.queries:
            start = time.perf_counter()
            result = QUERIES[name](ds)
            elapsed = time.perf_counter() - start
            groups = int(np.prod([result.sizes[d] for d in result.dims if d != "family"]))
            print(f"{name:22s} {elapsed:7.1f} s  ({groups} groups)", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
