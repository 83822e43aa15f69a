"""Write a valid actstats.store/2 store with plain zarr-python, without actstats.

The format spelled out by hand, for a program that cannot import actstats (and as a model for
writers in other languages): it follows docs/store-format.md; tests/test_store.py runs it with
actstats hidden and opens the result with actstats. A Python program that can import actstats
writes the same store in a few lines with actstats.write_store
(write_store_from_arrays.py beside this file), which also checks the arrays first.

Usage: python write_store_without_actstats.py OUT.zarr
"""

import json
import sys
from datetime import datetime, timezone

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

path = sys.argv[1]
rng = np.random.default_rng(0)
R, E, L, S, U, F, C, X = 2, 3, 2, 30, 8, 8, 3, 5  # runs, epochs, layers, samples, units, fan_in, classes, features
depth = np.array([2, 1])  # run 1 has one hidden layer: its layer 2 is NaN padding
width = np.array([[8, 6], [8, 0]])  # run 0's layer 2 has 6 units: units 6, 7 are NaN

root = zarr.open_group(path, mode="w-", zarr_format=3)
root.attrs.update({
    "schema": "actstats.store/2",
    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    "creation_library": "my-trainer",
    "creation_library_version": "1.0",
    "torch_version": "",
    "sweep": json.dumps({"note": "written without actstats"}),
})


def array(name, dims, values, dtype, coordinates="", attributes=None):
    values = np.asarray(values)
    a = root.create_array(
        name, shape=values.shape, chunks=values.shape, dtype=dtype,
        compressors=[Crc32cCodec()], dimension_names=list(dims),
        fill_value=-1 if attributes else (False if dtype == "bool" else 0),
        attributes={**({"coordinates": coordinates} if coordinates else {}), **(attributes or {})},
    )
    a[...] = values


def text(name, dims, values):
    """A text coordinate: int32 codes, code k meaning labels[k] (fill value -1: no label), and
    CF's flag_values / flag_meanings where every label is one word."""
    labels = list(dict.fromkeys(values))  # in order of first appearance
    codes = np.array([labels.index(v) for v in values], dtype="int32")
    attributes = {"labels": labels}
    if all(label and all(c.isalnum() or c in "_-.+@" for c in label) for label in labels):
        attributes.update(flag_values=list(range(len(labels))), flag_meanings=" ".join(labels))
    array(name, dims, codes, "int32", attributes=attributes)


# Hidden activations of a sigmoid network: z from a forward pass, h = sigmoid(z)
x = rng.random((S, X)).astype("float32")
weight = np.full((R, E, L, U, F), np.nan, "float32")
bias = np.full((R, E, L, U), np.nan, "float32")
z = np.full((R, E, L, S, U), np.nan, "float32")
for r in range(R):
    for e in range(E):
        h_prev, fan_in = x, X
        for layer in range(depth[r]):
            w = rng.normal(0, 1 + e, (width[r, layer], fan_in)).astype("float32")
            b = np.zeros(width[r, layer], "float32")
            weight[r, e, layer, : width[r, layer], :fan_in] = w
            bias[r, e, layer, : width[r, layer]] = b
            zl = h_prev @ w.T + b
            z[r, e, layer, :, : width[r, layer]] = zl
            h_prev, fan_in = 1 / (1 + np.exp(-zl)), width[r, layer]
h = 1 / (1 + np.exp(-z))

sample_coords = "split label source_index"
record_coords = "step width depth activation_fn init optimizer lr batch_size seed dataset config"
array("activation", ("run", "epoch", "layer", "sample", "unit"), h, "float32", sample_coords)
array("preactivation", ("run", "epoch", "layer", "sample", "unit"), z, "float32", sample_coords)
array("weight", ("run", "epoch", "layer", "unit", "fan_in"), weight, "float32")
array("bias", ("run", "epoch", "layer", "unit"), bias, "float32")
array("complete", ("run", "epoch"), np.ones((R, E), bool), "bool", record_coords)
array("input", ("sample", "feature"), x, "float32", sample_coords)

for name, n in {"run": R, "layer": L, "unit": U, "fan_in": F, "class": C, "feature": X, "sample": S}.items():
    array(name, (name,), np.arange(n) + (1 if name == "layer" else 0), "int64")
array("epoch", ("epoch",), [0.0, 1.0, 2.0], "float64")
array("step", ("run", "epoch"), [[0, 10, 20], [0, 10, 20]], "int64")
text("split", ("sample",), ["train"] * 20 + ["test"] * 10)
array("label", ("sample",), rng.integers(0, C, S), "int64")
array("source_index", ("sample",), np.arange(S), "int64")
array("width", ("run", "layer"), width, "int64")
array("depth", ("run",), depth, "int64")
for name, values in {"activation_fn": ["sigmoid", "sigmoid"], "init": ["normal", "normal"],
                     "optimizer": ["sgd", "sgd"], "dataset": ["synthetic", "synthetic"],
                     "config": ["{}", "{}"]}.items():
    text(name, ("run",), values)
array("lr", ("run",), [0.1, 0.1], "float64")
array("batch_size", ("run",), [10, 10], "int64")
array("seed", ("run",), [0, 1], "int64")
print(f"wrote {path}")
