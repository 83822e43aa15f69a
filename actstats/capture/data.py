"""Data sets for capture: all local, nothing is downloaded.

- ``digits``: scikit-learn's bundled 8x8 digits (1797 images), pixels scaled to [0, 1].
- ``mnist1d``: generated offline by ``mnist1d.data.make_dataset`` (the generator, not the
  download), 40 features, 10 classes.
- ``synthetic``: x ~ N(0, I) in ``n_features`` dimensions, labelled by a random teacher
  network (one tanh hidden layer of ``teacher_width`` units, Gaussian weights with
  variance 1/fan_in, seeded by ``data_seed``): the class is the argmax of its outputs.
- ``npz``: the user's arrays ``x`` (n, features) and ``y`` (n,) integer labels, and
  optionally ``x_test``, ``y_test``; loaded with ``allow_pickle=False``.

With ``fresh = true`` (``mnist1d`` and ``synthetic``), training draws a new set of as many
rows as the training split for each epoch after the first (:class:`FreshData`); the splits
above, and so the probes and the recorded training numbers, stay as they are.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np

from actstats.errors import shorten
from actstats.capture.config import MAX_CLASSES, ConfigError


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # float32 (n, features)
    y_train: np.ndarray  # int64 (n,)
    x_test: np.ndarray
    y_test: np.ndarray
    index_train: np.ndarray  # row of each training sample in the source data set
    index_test: np.ndarray
    n_classes: int


def load_dataset(spec: dict, source: str = "<config>") -> Dataset:
    """Build the training and held-out splits that `spec` (the [dataset] table) describes.

    Refuses (:class:`ConfigError`, one line naming the key) a split with no training or no
    held-out row, and labels outside [0, MAX_CLASSES).
    """
    source = shorten(source, quote=False)
    name = spec["name"]
    if name == "digits":
        x, y = load_digits()
        return _split(name, x, y, spec, source)
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = int(spec.get("data_seed", 0)) + 42
        if "n_samples" in spec:
            args.num_samples = int(spec["n_samples"])
        data = make_dataset(args)
        x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
        y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
        return _split(name, x, y, spec, source)
    if name == "synthetic":
        x, y = synthetic_teacher(
            n_samples=int(spec.get("n_samples", 2000)),
            n_features=int(spec["n_features"]),
            n_classes=int(spec["n_classes"]),
            teacher_width=int(spec["teacher_width"]),
            seed=int(spec["data_seed"]),
        )
        data = _split(name, x, y, spec, source)
        if spec.get("fresh") and data.n_classes < int(spec["n_classes"]):
            raise ConfigError(
                f"{source}: dataset.fresh = true: the teacher labels the {len(x)} generated rows with classes 0 to "
                f"{data.n_classes - 1} only, of dataset.n_classes = {spec['n_classes']}; a fresh epoch could hold a "
                "class the network has no output for (generate more rows: dataset.n_samples)"
            )
        return data
    if name == "npz":
        return _load_npz(spec, source)
    raise ConfigError(f"{source}: dataset.name = {name!r}: unknown data set")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: x (1797, 64) in [0, 1], y (1797,) in 0..9.

    Reads the CSV that scikit-learn ships, without importing sklearn.datasets (which takes
    two seconds to import); the values are those of ``sklearn.datasets.load_digits()``
    (checked in tests/test_capture.py).
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dataset.name = 'digits' needs scikit-learn: install actstats[capture]")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return (table[:, :-1] / 16.0).astype(np.float32), table[:, -1].astype(np.int64)


def synthetic_teacher(n_samples: int, n_features: int, n_classes: int, teacher_width: int, seed: int):
    """Inputs x ~ N(0, I) and labels from a random one-hidden-layer tanh teacher network.

    Examples
    --------
    >>> x, y = synthetic_teacher(100, 8, 3, 16, seed=0)
    >>> x.shape, sorted(set(y.tolist())) == [0, 1, 2]
    ((100, 8), True)
    """
    x, w1, w2 = _teacher(n_samples, n_features, n_classes, teacher_width, seed)
    return x, _teacher_labels(x, w1, w2)


def _teacher(n_samples: int, n_features: int, n_classes: int, teacher_width: int, seed: int):
    """The inputs and the teacher's weights, drawn from one generator seeded by `seed` (x first)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    w1 = rng.standard_normal((n_features, teacher_width)) / np.sqrt(n_features)
    w2 = rng.standard_normal((teacher_width, n_classes)) / np.sqrt(teacher_width)
    return x, w1, w2


def _teacher_labels(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    return np.argmax(np.tanh(x @ w1) @ w2, axis=1).astype(np.int64)


class FreshData:
    """``dataset.fresh``: a new training set for each epoch k >= 1, of as many rows as the
    training split, from the generator of the data set (epoch 0 trains on the split itself).

    An epoch's rows depend only on the [dataset] table and k, so a resumed run trains on the
    same rows. ``synthetic``: new inputs x ~ N(0, I) from a generator seeded by
    (``data_seed``, k), labelled by the same teacher network as the data set (the teacher is
    drawn from ``data_seed`` as :func:`synthetic_teacher` draws it). ``mnist1d``:
    ``mnist1d.data.make_dataset`` with its seed derived from (``data_seed``, k) (below 2**32)
    and ``num_samples`` the training rows rounded up to a multiple of 10; its first rows (it
    shuffles them) are kept. mnist1d takes ~0.4 ms a row, so each epoch's set is made only
    when training reaches it.

    Examples
    --------
    >>> spec = {"name": "synthetic", "n_samples": 40, "n_features": 3, "n_classes": 2,
    ...         "teacher_width": 4, "data_seed": 0}
    >>> x, y = FreshData(spec, 30).epoch(1)
    >>> x.shape, y.shape, x.dtype.name, y.dtype.name
    ((30, 3), (30,), 'float32', 'int64')
    >>> bool((FreshData(spec, 30).epoch(1)[0] == x).all()), bool((FreshData(spec, 30).epoch(2)[0] == x).all())
    (True, False)
    """

    def __init__(self, spec: dict, n_rows: int):
        if spec["name"] not in ("synthetic", "mnist1d"):
            raise ConfigError(f"dataset.fresh = true: dataset.name = {spec['name']!r} has no generator")
        self.spec = spec
        self.n_rows = int(n_rows)
        self._weights = None

    def seed(self, k: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([int(self.spec.get("data_seed", 0)), int(k)])

    def epoch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Epoch `k`'s training rows (k >= 1): x float32 (n_rows, features), y int64 (n_rows,)."""
        if k < 1:
            raise ValueError("epoch 0 trains on the training split itself")
        if self.spec["name"] == "synthetic":
            return self._synthetic(k)
        return self._mnist1d(k)

    def _synthetic(self, k):
        spec = self.spec
        if self._weights is None:
            _, w1, w2 = _teacher(int(spec.get("n_samples", 2000)), int(spec["n_features"]), int(spec["n_classes"]),
                                 int(spec["teacher_width"]), int(spec["data_seed"]))
            self._weights = (w1, w2)
        rng = np.random.default_rng(self.seed(k))
        x = rng.standard_normal((self.n_rows, int(spec["n_features"]))).astype(np.float32)
        return x, _teacher_labels(x, *self._weights)

    def _mnist1d(self, k):
        import random

        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = int(self.seed(k).generate_state(1, np.uint32)[0])  # numpy's legacy seeds are < 2**32
        args.num_samples = 10 * -(-self.n_rows // 10)  # n_samples // 10 rows of each class
        # make_dataset seeds the global `random` and numpy generators: leave them as they were
        states = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(args)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
        x = np.concatenate([data["x"], data["x_test"]])[: self.n_rows].astype(np.float32)
        y = np.concatenate([data["y"], data["y_test"]])[: self.n_rows].astype(np.int64)
        return x, y


def _split(name, x, y, spec, source="<config>") -> Dataset:
    if len(x) < 2:
        key = f"path = {shorten(spec['path'])}" if name == "npz" else f"name = {name!r}"
        hint = " (or give x_test and y_test)" if name == "npz" else ""
        raise ConfigError(
            f"{source}: dataset.{key}: {len(x)} row; a training and a held-out split need at least 2{hint}"
        )
    n_test = max(1, int(round(spec["test_fraction"] * len(x))))
    if len(x) - n_test < 1:
        raise ConfigError(
            f"{source}: dataset.test_fraction = {spec['test_fraction']:g}: splits the {len(x)} rows of {name} into "
            f"{len(x) - n_test} training and {n_test} held-out rows; each split needs at least one row"
        )
    rng = np.random.default_rng(int(spec["split_seed"]))
    order = rng.permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return Dataset(name, x[train], y[train], x[test], y[test], train, test, int(y.max()) + 1)


def _load_npz(spec, source) -> Dataset:
    path = spec["path"]
    shown = shorten(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read, a device never end
            raise ConfigError(f"{source}: dataset.path = {shown}: not a regular file")
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise ConfigError(f"{source}: dataset.path = {shown}: no such file") from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{source}: dataset.path = {shown}: not a readable .npz file ({shorten(str(exc), quote=False)})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise ConfigError(f"{source}: dataset.path = {shown}: the .npz has no array {key!r} (it has {sorted(arrays)})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ConfigError(f"{source}: dataset.path = {shown}: x_test and y_test must come together")

    def check(xk, yk):
        x, y = arrays[xk], arrays[yk]
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
            raise ConfigError(f"{source}: dataset.path = {shown}: {xk!r} must be a 2-d numeric array, got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise ConfigError(f"{source}: dataset.path = {shown}: {yk!r} must be non-negative integer labels, one per row of {xk!r}")
        with np.errstate(over="ignore"):  # values beyond float32's range become inf, and are refused
            x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ConfigError(f"{source}: dataset.path = {shown}: {xk!r} holds non-finite values (or values beyond float32's range)")
        if len(x) == 0 or x.shape[1] == 0:
            raise ConfigError(f"{source}: dataset.path = {shown}: {xk!r} has shape {x.shape}; it needs at least one row and one column")
        if y.max() >= MAX_CLASSES:
            raise ConfigError(
                f"{source}: dataset.path = {shown}: {yk!r} holds the label {int(y.max())}; labels must be integers "
                f"in [0, {MAX_CLASSES}) (the class count is the largest label + 1)"
            )
        return x, y.astype(np.int64)

    x, y = check("x", "y")
    if "x_test" not in arrays:
        return _split("npz", x, y, spec, source)
    x_test, y_test = check("x_test", "y_test")
    if x_test.shape[1] != x.shape[1]:
        raise ConfigError(f"{source}: dataset.path = {shown}: x_test has {x_test.shape[1]} features, x has {x.shape[1]}")
    n_classes = int(max(y.max(), y_test.max())) + 1
    return Dataset("npz", x, y, x_test, y_test, np.arange(len(x)), np.arange(len(x_test)), n_classes)


#: The format of :func:`data_fingerprint`'s value (the store's ``data_fingerprint`` attribute).
FINGERPRINT_FORMAT = "actstats.data-fingerprint/1"


def data_fingerprint(spec: dict, data: Dataset) -> dict:
    """What a capture's data are, for the store's ``data_fingerprint`` root attribute, which
    ``--resume`` compares (:func:`actstats.store.prepare_store`).

    ``arrays``: a BLAKE2b (128-bit) hash of each array training and recording use, as they
    are after the split (``x_train``, ``y_train``, ``x_test``, ``y_test`` and the source rows
    ``index_train``, ``index_test``; the dtype and shape are hashed with the bytes), and the
    class count. ``source`` describes where they came from: the generator and its version
    (scikit-learn's for ``digits``, mnist1d's, this module's teacher for ``synthetic`` with its
    parameters, the file for ``npz``) and the seeds. The arrays decide whether the data are the
    same; ``source`` is named when they are not (a changed generator version with identical
    arrays is the same data).

    Examples
    --------
    >>> x, y = synthetic_teacher(20, 3, 2, 4, seed=0)
    >>> spec = {"name": "synthetic", "split_seed": 0, "test_fraction": 0.25, "n_features": 3,
    ...         "n_classes": 2, "teacher_width": 4, "data_seed": 0}
    >>> fp = data_fingerprint(spec, _split("synthetic", x, y, spec))
    >>> sorted(fp["arrays"]), fp["source"]["generator"]
    (['index_test', 'index_train', 'n_classes', 'x_test', 'x_train', 'y_test', 'y_train'], 'synthetic teacher')
    >>> fp == data_fingerprint(spec, _split("synthetic", x, y, spec))
    True
    """
    import hashlib

    arrays = {}
    for name in ("x_train", "y_train", "x_test", "y_test", "index_train", "index_test"):
        values = np.ascontiguousarray(getattr(data, name))
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{values.dtype.str} {values.shape}\n".encode())
        h.update(memoryview(values).cast("B") if values.size else b"")
        arrays[name] = h.hexdigest()
    arrays["n_classes"] = int(data.n_classes)
    return {"format": FINGERPRINT_FORMAT, "hash": "blake2b-128", "arrays": arrays, "source": _data_source(spec)}


def _data_source(spec: dict) -> dict:
    """The generator (name, version, parameters) and seeds behind a [dataset] table."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    name = spec["name"]
    source: dict = {"name": name, "split_seed": spec.get("split_seed"), "test_fraction": spec.get("test_fraction")}
    if name == "digits":
        source.update(generator="scikit-learn digits.csv.gz", version=installed("scikit-learn"))
    elif name == "mnist1d":
        source.update(generator="mnist1d make_dataset", version=installed("mnist1d"),
                      data_seed=spec.get("data_seed", 0), n_samples=spec.get("n_samples"))
    elif name == "synthetic":
        source.update(generator="synthetic teacher", version=installed("actstats"),
                      **{k: spec.get(k) for k in ("data_seed", "n_samples", "n_features", "n_classes", "teacher_width")})
    else:
        source.update(generator="npz file", path=str(spec.get("path")))
    if spec.get("fresh"):  # training draws a new set each epoch (capture.data.FreshData)
        source["fresh"] = True
    return {k: v for k, v in source.items() if v is not None}
