"""Snapshot every query's output, to prove a refactoring changed no number.

Not a test (no ``test_`` prefix): run it before a change and after it.

    python tests/snapshot_queries.py /tmp/snap_before            # write a snapshot
    python tests/snapshot_queries.py --compare /tmp/snap_before  # recompute, report differences

The inputs are the small captured store of ``tests/conftest.py`` (``SMALL_CONFIG``,
captured with ``capture.capture`` into a temporary directory; torch needed) and
synthetic stores (:mod:`actstats.synthetic`: sigmoid/tanh/relu runs, padding, Beta
activations, non-Gaussian weights). Every query runs numpy-backed and dask-backed with
several ``by``/``eps``/``method`` values; each result's variables, coordinates and attrs
go into ``arrays.npz`` and ``meta.json``, and ``to_records`` of each into ``records.json``.

``--compare`` is bit-for-bit: arrays must be equal (NaN equal to NaN) with the same
dtype and dims, attrs and records equal; where floats differ it prints the maximum
relative difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _stores():
    import actstats
    from actstats.synthetic import synthetic_store
    from actstats.capture import capture
    from conftest import SMALL_CONFIG, write_config

    directory = tempfile.mkdtemp(prefix="snapshot_queries_")
    path = os.path.join(directory, "small.zarr")
    capture(write_config(directory, SMALL_CONFIG), path, progress=False)
    small = actstats.open_store(path)
    synthetic = {
        "mixed": synthetic_store(runs=3, depth=[2, 1, 2], width=[16, 16, 10],
                                 activation_fn=["sigmoid", "tanh", "relu"], weight_scale=4.0, seed=2),
        "saturated": synthetic_store(runs=2, weight_scale=8.0, seed=1),
        "beta": synthetic_store(activation=lambda rng, shape: rng.beta(0.2, 0.2, shape), depth=1, seed=3,
                                weight=lambda rng, shape: rng.laplace(0, 0.1, shape), units=40),
    }
    stores = {"small/dask": small, "small/numpy": small.load()}
    for name, ds in synthetic.items():
        stores[f"{name}/numpy"] = ds
        stores[f"{name}/dask"] = ds.chunk({"run": 1, "epoch": 1, "layer": 1, "sample": 17, "unit": 7, "fan_in": 9})
    return stores, directory


def _queries():
    import actstats

    sat_eps = 0.1
    return {
        "saturation_default": lambda ds: actstats.saturation(ds),
        "saturation_eps0.1": lambda ds: actstats.saturation(ds, eps=sat_eps),
        "saturation_layer_split_eps0.2": lambda ds: actstats.saturation(ds, eps=0.2, by=("layer", "split")),
        "saturation_unit": lambda ds: actstats.saturation(ds, eps=sat_eps, by=("layer", "unit")),
        "saturation_run_unit": lambda ds: actstats.saturation(ds, by=("run", "epoch", "layer", "unit")),
        "saturation_sample": lambda ds: actstats.saturation(ds, eps=sat_eps, by=("run", "layer", "sample")),
        "saturation_none": lambda ds: actstats.saturation(ds, eps=0.01, by=()),
        "bimodality_exact": lambda ds: actstats.bimodality(ds, by=("layer", "split"), method="exact"),
        "bimodality_histogram": lambda ds: actstats.bimodality(ds, by=("layer", "split"), method="histogram"),
        "bimodality_always": lambda ds: actstats.bimodality(ds, by=("run", "layer"), mixture="always",
                                                            method="exact"),
        "fit_activation_exact": lambda ds: actstats.fit(ds, family="all", by=("run", "layer"), method="exact"),
        "fit_activation_histogram": lambda ds: actstats.fit(ds, family=("beta", "logit_normal"),
                                                            by=("run", "layer"), method="histogram"),
        "fit_weight_exact": lambda ds: actstats.fit(ds, family=("normal", "laplace", "logistic", "uniform", "t"),
                                                    variable="weight", by="layer", method="exact"),
        "fit_weight_histogram": lambda ds: actstats.fit(ds, family=("normal", "laplace", "logistic", "uniform"),
                                                        variable="weight", by="layer", method="histogram"),
        "weight_normality_exact": lambda ds: actstats.weight_normality(ds, by=("run", "layer"), method="exact"),
        "weight_normality_histogram": lambda ds: actstats.weight_normality(ds, by=("run", "layer"),
                                                                           method="histogram"),
        "weight_normality_unit": lambda ds: actstats.weight_normality(ds, by=("layer", "unit")),
        "gradient_flow": lambda ds: actstats.gradient_flow(ds),
        "compare_default": lambda ds: actstats.compare_splits(ds, n_permutations=199, n_resamples=199),
        "compare_layer_eps0.2": lambda ds: actstats.compare_splits(ds, eps=0.2, by="layer", n_permutations=199,
                                                                   n_resamples=199),
    }


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    return value


def snapshot() -> tuple[dict[str, np.ndarray], dict, dict]:
    import actstats

    import shutil

    stores, directory = _stores()
    arrays, meta, records = {}, {}, {}
    for store_name, ds in stores.items():
        for query_name, query in _queries().items():
            key = f"{store_name}/{query_name}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    result = query(ds)
                except Exception as error:  # noqa: BLE001 - a refusal is part of the snapshot
                    meta[key] = {"error": f"{type(error).__name__}: {error}"}
                    print(f"{key}: {type(error).__name__}: {error}", file=sys.stderr)
                    continue
            entry = {"attrs": _plain(dict(result.attrs)), "variables": {}}
            for name, variable in result.variables.items():
                values = np.asarray(variable.values)
                if values.dtype.kind == "O":
                    values = values.astype(str)
                arrays[f"{key}/{name}"] = values
                entry["variables"][str(name)] = {"dims": list(variable.dims), "dtype": str(values.dtype),
                                                 "attrs": _plain(dict(variable.attrs)),
                                                 "coordinate": name in result.coords}
            meta[key] = entry
            records[key] = json.loads(json.dumps(actstats.to_records(result), allow_nan=True))
    shutil.rmtree(directory, ignore_errors=True)
    return arrays, meta, records


def write(directory: str) -> None:
    arrays, meta, records = snapshot()
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, "arrays.npz"), **arrays)
    for name, content in (("meta.json", meta), ("records.json", records)):
        with open(os.path.join(directory, name), "w") as f:
            json.dump(content, f, indent=1, sort_keys=True)
    print(f"{len(meta)} results, {len(arrays)} arrays written to {directory}")


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    if (np.isnan(a) != np.isnan(b)).any() or (np.isinf(a) != np.isinf(b)).any():
        return float("inf")
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.abs(a[both]), np.abs(b[both]))
        rel = np.where(scale > 0, np.abs(a[both] - b[both]) / np.where(scale > 0, scale, 1), 0.0)
    return float(rel.max(initial=0.0))


def compare(directory: str) -> int:
    with np.load(os.path.join(directory, "arrays.npz")) as stored:
        before = {k: stored[k] for k in stored.files}
    with open(os.path.join(directory, "meta.json")) as f:
        meta_before = json.load(f)
    with open(os.path.join(directory, "records.json")) as f:
        records_before = json.load(f)
    arrays, meta, records = snapshot()
    meta = json.loads(json.dumps(meta, sort_keys=True))
    records = json.loads(json.dumps(records))
    identical, differing = 0, []
    for key in sorted(set(meta_before) | set(meta)):
        problems = []
        old, new = meta_before.get(key), meta.get(key)
        if old is None or new is None:
            problems.append("missing before" if old is None else "missing after")
        elif old != new:
            if old.get("attrs") != new.get("attrs"):
                changed = sorted(k for k in set(old.get("attrs", {})) | set(new.get("attrs", {}))
                                 if old.get("attrs", {}).get(k) != new.get("attrs", {}).get(k))
                problems.append(f"attrs differ: {changed}")
            if old.get("variables") != new.get("variables"):
                problems.append("variable metadata differ (names, dims, dtype or attrs)")
            if "error" in old or "error" in new:
                problems.append(f"error: {old.get('error')!r} vs {new.get('error')!r}")
        for name in sorted((old or {}).get("variables", {})):
            a, b = before.get(f"{key}/{name}"), arrays.get(f"{key}/{name}")
            if a is None or b is None:
                continue
            if a.shape != b.shape or a.dtype != b.dtype:
                problems.append(f"{name}: shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
            elif a.dtype.kind in "fc":
                if not np.array_equal(a, b, equal_nan=True):
                    problems.append(f"{name}: max relative difference {_relative(a, b):.3g}")
            elif not np.array_equal(a, b):
                problems.append(f"{name}: values differ")
        if records_before.get(key) != records.get(key) and not any(": max relative" in p for p in problems):
            problems.append("records differ")
        if problems:
            differing.append((key, problems))
        else:
            identical += 1
    for key, problems in differing:
        print(f"DIFFERENT {key}: " + "; ".join(problems))
    print(f"{identical} results bit-identical, {len(differing)} different")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="/tmp/snap_before")
    parser.add_argument("--compare", metavar="DIR", help="recompute and compare with the snapshot in DIR")
    args = parser.parse_args()
    if args.compare:
        return compare(args.compare)
    write(args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
