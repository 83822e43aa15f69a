"""Write a store from numpy arrays with named dimensions, with actstats.write_store.

What a JAX, Keras or C++ trainer would do with the arrays it dumped: the same store as
write_store_without_actstats.py (which writes it with plain zarr-python, following
docs/store-format.md by hand), in a few lines. write_store checks the arrays against the
schema first and says in one line what is missing or wrongly shaped.

Usage: python write_store_from_arrays.py OUT.zarr
"""

import sys

import numpy as np

import actstats

rng = np.random.default_rng(0)
R, E, L, S, U, X = 2, 3, 2, 30, 8, 5  # runs, epochs, layers, samples, units, features
depth, width = [2, 1], [[8, 6], [8, 0]]  # run 1 has one hidden layer; run 0's layer 2 has 6 units

# A forward pass of sigmoid networks: what the trainer dumped, NaN where a layer or unit is absent
x = rng.random((S, X)).astype("float32")
weight = np.full((R, E, L, U, U), np.nan, "float32")
z = np.full((R, E, L, S, U), np.nan, "float32")
for r in range(R):
    for e in range(E):
        h_prev = x
        for layer in range(depth[r]):
            w = rng.normal(0, 1 + e, (width[r][layer], h_prev.shape[1])).astype("float32")
            weight[r, e, layer, : w.shape[0], : w.shape[1]] = w
            z[r, e, layer, :, : w.shape[0]] = h_prev @ w.T
            h_prev = 1 / (1 + np.exp(-(h_prev @ w.T)))
bias = np.where(np.isnan(weight[..., 0]), np.nan, 0).astype("float32")

neurons = ("run", "epoch", "layer", "sample", "unit")
actstats.write_store(sys.argv[1], {
    "activation": (neurons, 1 / (1 + np.exp(-z))),
    "preactivation": (neurons, z),
    "weight": (("run", "epoch", "layer", "unit", "fan_in"), weight),
    "bias": (("run", "epoch", "layer", "unit"), bias),
    "input": (("sample", "feature"), x),
    "epoch": ("epoch", [0.0, 1.0, 2.0]),
    "split": ("sample", ["train"] * 20 + ["test"] * 10),
    "label": ("sample", rng.integers(0, 3, S)),
    "activation_fn": ("run", ["sigmoid", "sigmoid"]),
}, attributes={"sweep": '{"note": "written from arrays"}'})
print(f"wrote {sys.argv[1]}")
