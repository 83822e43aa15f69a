"""The tables of the format "actstats.store/2": variables, coordinates, root attributes, and
the chunk layout of a store of given sizes.

These tables are the schema: :func:`~actstats.store.create_store` lays a store out from
them and :func:`~actstats.store.open_store` checks any store (written by capture or by
another program) against them. docs/store-format.md describes the format for readers and
writers in other languages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: The format actstats writes: text coordinates as integer codes with their labels in the
#: array's attributes (:mod:`actstats.store.text`), which every Zarr 3 reader can read.
SCHEMA = "actstats.store/2"
#: The first format: text coordinates as Zarr 3 ``string`` arrays (``vlen-utf8``), which
#: zarr-python reads but TensorStore does not. Still read (opened, queried, verified,
#: resumed) as before; no longer written.
SCHEMA_1 = "actstats.store/1"
#: The formats a reader accepts, and how each stores text coordinates ("codes", "strings").
TEXT_ENCODING = {SCHEMA: "codes", SCHEMA_1: "strings"}

RECORD_DIMS = ("run", "epoch")

#: Data variables: name -> (dims, dtype, required).
VARIABLES: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "activation": (("run", "epoch", "layer", "sample", "unit"), "float32", True),
    "preactivation": (("run", "epoch", "layer", "sample", "unit"), "float32", False),
    "weight": (("run", "epoch", "layer", "unit", "fan_in"), "float32", True),
    "bias": (("run", "epoch", "layer", "unit"), "float32", True),
    "readout_weight": (("run", "epoch", "class", "fan_in"), "float32", False),
    "readout_bias": (("run", "epoch", "class"), "float32", False),
    "delta": (("run", "epoch", "layer", "sample", "unit"), "float32", False),
    "weight_grad": (("run", "epoch", "layer", "unit", "fan_in"), "float32", False),
    "train_loss": (("run", "epoch"), "float32", False),
    "test_loss": (("run", "epoch"), "float32", False),
    "train_accuracy": (("run", "epoch"), "float32", False),
    "test_accuracy": (("run", "epoch"), "float32", False),
    "diverged": (("run", "epoch"), "bool", False),
    # train.until (capture): the record at which the run stopped, and the epoch the condition first held
    "stopped": (("run", "epoch"), "bool", False),
    "until_epoch": (("run", "epoch"), "float32", False),
    "complete": (("run", "epoch"), "bool", True),
    "input": (("sample", "feature"), "float32", True),
}

#: Coordinates: name -> (dims, kind). kind: "int", "float" or "str" (text: integer codes with
#: their labels in actstats.store/2, :mod:`actstats.store.text`; strings in actstats.store/1).
COORDINATES: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("run",), "int"),
    "epoch": (("epoch",), "float"),
    "layer": (("layer",), "int"),
    "unit": (("unit",), "int"),
    "fan_in": (("fan_in",), "int"),
    "class": (("class",), "int"),
    "feature": (("feature",), "int"),
    "sample": (("sample",), "int"),
    "step": (("run", "epoch"), "int"),
    "split": (("sample",), "str"),
    "label": (("sample",), "int"),
    "source_index": (("sample",), "int"),
    "width": (("run", "layer"), "int"),
    "depth": (("run",), "int"),
    "activation_fn": (("run",), "str"),
    "init": (("run",), "str"),
    "optimizer": (("run",), "str"),
    "lr": (("run",), "float"),
    "batch_size": (("run",), "int"),
    "seed": (("run",), "int"),
    "dataset": (("run",), "str"),
    "config": (("run",), "str"),
}

#: Optional coordinates, absent from stores that do not need them (capture's): name -> (dims,
#: kind). A writer whose layers differ in activation function, or whose layers' inputs are not
#: the layer below (branches, skips), writes them (capture.Recorder does); readers then prefer
#: them to the per-run ``activation_fn`` and to the chain rule of fan-ins.
OPTIONAL_COORDINATES: dict[str, tuple[tuple[str, ...], str]] = {
    # the activation function of each layer; "" where the run has no such layer
    "layer_activation_fn": (("run", "layer"), "str"),
    # the inputs of each layer's weight (its columns that exist); 0 where the run has no such layer
    "layer_fan_in": (("run", "layer"), "int"),
    # conv layers: the rows of `weight`, `bias`, `weight_grad` that exist (output channels) where
    # they are fewer than the layer's units (channels × positions); width where absent
    "layer_weight_rows": (("run", "layer"), "int"),
    # conv layers: spatial positions a channel (unit u is channel u // positions, position
    # u % positions, C order of (channel, *spatial)); 1 for a fully connected layer, 0 where absent
    "layer_positions": (("run", "layer"), "int"),
}

ROOT_ATTRIBUTES = (
    "schema",
    "created_at",
    "creation_library",
    "creation_library_version",
    "torch_version",
    "sweep",
)

#: Variables written once per (run, epoch) record, in the order capture writes them.
RECORD_VARIABLES = tuple(
    name for name, (dims, _, _) in VARIABLES.items() if dims[:2] == RECORD_DIMS and name != "complete"
)

def scheduled_records(step, complete, stopped=None):
    """The (run, epoch) records a store's writer means to write: those whose ``step`` is
    scheduled (>= 0), except the records after a complete record marked ``stopped`` (capture's
    ``train.until`` ended that run there: the later records are never written). Arrays of
    shape (run, epoch) with epochs in increasing order; `stopped` None: no run stopped.

    Examples
    --------
    >>> import numpy as np
    >>> step = np.array([[0, 5, 10, 15], [0, 5, -1, 15]])
    >>> complete = np.array([[True, True, False, False], [True, False, False, False]])
    >>> stopped = np.array([[False, True, False, False], [False, False, False, False]])
    >>> scheduled_records(step, complete, stopped).astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 1]]
    """
    import numpy as np

    scheduled = np.asarray(step) >= 0
    if stopped is None:
        return scheduled
    stopped = np.asarray(stopped, dtype=bool) & np.asarray(complete, dtype=bool)
    if stopped.shape != scheduled.shape:
        return scheduled
    # after the first stop of a run: every later epoch
    after = np.cumsum(stopped, axis=1) - stopped > 0
    return scheduled & ~after


#: Target size of one uncompressed chunk of the large record variables. Chosen by
#: measurement (docs/benchmarks.md): big enough that per-chunk overhead is small, small
#: enough that one (run, epoch, layer) slab of a wide layer splits over several chunks.
CHUNK_TARGET_BYTES = 4 * 2**20


@dataclass(frozen=True)
class StoreLayout:
    """The sizes of every dimension of a store, and which optional variables it holds."""

    n_runs: int
    epochs: tuple[float, ...]
    n_layers: int
    n_units: int
    n_fan_in: int
    n_classes: int
    n_features: int
    n_samples: int
    optional: frozenset[str] = field(default_factory=frozenset)

    def sizes(self) -> dict[str, int]:
        return {
            "run": self.n_runs,
            "epoch": len(self.epochs),
            "layer": self.n_layers,
            "unit": self.n_units,
            "fan_in": self.n_fan_in,
            "class": self.n_classes,
            "feature": self.n_features,
            "sample": self.n_samples,
        }

    def variables(self) -> list[str]:
        return [
            name
            for name, (_, _, required) in VARIABLES.items()
            if required or name in self.optional
        ]

    def chunks(self, name: str) -> tuple[int, ...]:
        """Chunk shape: one chunk per (run, epoch, layer) slab, split along samples or units
        to stay near CHUNK_TARGET_BYTES; (run, epoch) scalars are chunked per run."""
        dims = VARIABLES[name][0]
        sizes = self.sizes()
        shape = [sizes[d] for d in dims]
        if dims == RECORD_DIMS:
            return (1, len(self.epochs))
        if dims[:2] != RECORD_DIMS:
            return tuple(shape)  # input: small, one chunk
        chunk = [1, 1] + shape[2:]
        if len(dims) == 5:
            chunk[2] = 1  # one layer per chunk
            row_bytes = shape[4] * 4
            chunk[3] = max(1, min(shape[3], CHUNK_TARGET_BYTES // row_bytes))
        return tuple(chunk)


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys: equal configs give equal text.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1.5, "x"]})
    '{"a":[1.5,"x"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def library_version() -> str:
    """The installed version of actstats (the root attribute ``creation_library_version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("actstats")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"
