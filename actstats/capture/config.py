"""The capture config (TOML): parsing, defaults, validation and sweep expansion.

Key names are a contract (../DESIGN.md, docs/configs.md): add keys, never rename one
without keeping the old name as an alias.

One module (about 600 lines) because the schema table, its validators and the checks across
keys are read together when a key is added.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from actstats.activations import ACTIVATIONS
from actstats.errors import ActstatsError, shorten


class ConfigError(ActstatsError):
    """A config that cannot be used; the message names the file, the key and the value."""


INITS = (
    "default",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_normal",
    "normal",
    "uniform",
    "orthogonal",
    "lsuv",
)
#: model.bias_init: "default" leaves the biases as model.init makes them (PyTorch's
#: U(±1/sqrt(fan_in)) for "default", 0 for every other init); "zero" sets them to 0.
BIAS_INITS = ("default", "zero")
DATASETS = ("digits", "mnist1d", "synthetic", "npz")
#: dataset.fresh (a new training set each epoch) needs a generator.
FRESH_DATASETS = ("mnist1d", "synthetic")
OPTIMIZERS = ("sgd", "adam")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: Upper bounds on values whose size the parser itself would spend memory or time on.
MAX_DEPTH = 10_000
MAX_LOG_POINTS = 1_000
MAX_RUNS = 100_000
#: Integers are stored as int64 (coordinates such as `seed` and `batch_size`).
MAX_INT = 2**63 - 1
#: Learning rates, momentum, weight decay and init_scale are used as float32 by PyTorch.
MAX_FLOAT32 = float(np.finfo(np.float32).max)
#: Class counts (the readout's outputs, the store's `class` dimension): labels are in [0, MAX_CLASSES).
MAX_CLASSES = 10_000
#: Training length in epochs (the `step` coordinate is an int64 count of optimizer steps).
MAX_EPOCHS = 1_000_000
#: Values a synthetic or mnist1d data set may generate (n_samples x n_features; 16 GiB as float32).
MAX_GENERATED_VALUES = 2**32
#: A config file is read only if it is a regular file of at most this many bytes.
MAX_CONFIG_BYTES = 2**20
#: mnist1d's generator seeds numpy's legacy generator with data_seed + 42, which takes < 2**32.
MNIST1D_SEED_OFFSET = 42


def _positive_int(v):
    return None if _is_int(v) and 0 < v <= MAX_INT else "must be a positive integer (at most 2**63-1)"


def _seed(v):
    return None if _is_int(v) and 0 <= v <= MAX_INT else "must be an integer from 0 to 2**63-1"


def _n_samples(v):
    if _is_int(v) and 2 <= v <= MAX_INT:
        return None
    return "must be an integer >= 2 (at least one training and one held-out row)"


def _n_classes(v):
    if _is_int(v) and 1 <= v <= MAX_CLASSES:
        return None
    return f"must be an integer from 1 to {MAX_CLASSES}"


def _float32_number(v) -> bool:
    return _is_number(v) and abs(v) <= MAX_FLOAT32


def _depth(v):
    return None if _is_int(v) and 0 < v <= MAX_DEPTH else f"must be a positive integer (at most {MAX_DEPTH})"


def _nonnegative_int(v):
    return None if _is_int(v) and 0 <= v <= MAX_INT else "must be an integer >= 0 (at most 2**63-1)"


def _int(v):
    return None if _is_int(v) else "must be an integer"


_BEYOND_FLOAT32 = f"must be at most {MAX_FLOAT32:.8g} (float32's largest finite value: PyTorch trains in float32)"


def _positive_number(v):
    if not (_is_number(v) and v > 0):
        return "must be a number > 0"
    return None if _float32_number(v) else _BEYOND_FLOAT32


def _nonnegative_number(v):
    if not (_is_number(v) and v >= 0):
        return "must be a number >= 0"
    return None if _float32_number(v) else _BEYOND_FLOAT32


def _train_epochs(v):
    return None if _is_number(v) and 0 < v <= MAX_EPOCHS else f"must be a number > 0 and at most {MAX_EPOCHS}"


def _fraction(v):
    return None if _is_number(v) and 0 < v < 1 else "must be a number between 0 and 1 (exclusive)"


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _one_of(choices):
    def check(v):
        return None if v in choices else f"must be one of {', '.join(choices)}"

    return check


def _width(v):
    if _is_int(v):
        return None if v > 0 else "must be a positive integer or a list of them"
    if isinstance(v, list) and v and all(_is_int(w) and w > 0 for w in v):
        return None
    return "must be a positive integer or a list of them"


def _layer_lr(v):
    if isinstance(v, list) and v and all(_float32_number(x) and x > 0 for x in v):
        return None
    return f"must be a list of numbers > 0 and at most {MAX_FLOAT32:.8g} (float32), one per hidden layer"


def _record_epochs(v):
    if isinstance(v, str):
        if _parse_log_schedule(v) is not None:
            return None
        return f'must be a list of epochs or "log:N" with 2 <= N <= {MAX_LOG_POINTS}'
    if isinstance(v, list) and v and all(_is_number(x) and x >= 0 for x in v):
        return None
    return 'must be a non-empty list of epochs >= 0, or "log:N"'


def _string(v):
    return None if isinstance(v, str) and v else "must be a non-empty string"


#: train.until: "METRIC OP NUMBER", read by :func:`parse_until` (no eval).
UNTIL_METRICS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss")
UNTIL_OPERATORS = (">=", "<=", ">", "<")
UNTIL_FORM = (
    f'must be "METRIC OP NUMBER" with METRIC one of {", ".join(UNTIL_METRICS)} and OP one of '
    f'{", ".join(UNTIL_OPERATORS)} (e.g. "train_accuracy >= 0.99")'
)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_UNTIL = re.compile(
    rf"\s*({'|'.join(UNTIL_METRICS)})\s*({'|'.join(re.escape(op) for op in UNTIL_OPERATORS)})\s*({_NUMBER})\s*"
)


@dataclass(frozen=True)
class Until:
    """A parsed ``train.until`` condition: ``metric op threshold``.

    Examples
    --------
    >>> condition = parse_until("train_accuracy >= 0.99")
    >>> condition.metric, condition.holds(0.995), condition.holds(0.98)
    ('train_accuracy', True, False)
    """

    metric: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        value = float(value)
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<=":
            return value <= self.threshold
        if self.op == ">":
            return value > self.threshold
        return value < self.threshold


def parse_until(text) -> Until | None:
    """A ``train.until`` string as an :class:`Until`, or None when it is not of the form
    "METRIC OP NUMBER" (a finite number)."""
    if not isinstance(text, str):
        return None
    match = _UNTIL.fullmatch(text)
    if match is None:
        return None
    threshold = float(match.group(3))
    if not math.isfinite(threshold):
        return None
    return Until(match.group(1), match.group(2), threshold)


def _until(v):
    return None if parse_until(v) is not None else UNTIL_FORM


def _until_then(v):
    if _is_number(v) and 0 <= v <= MAX_EPOCHS:
        return None
    return f"must be a number of epochs >= 0 (at most {MAX_EPOCHS})"


def _betas(v):
    if isinstance(v, list) and len(v) == 2 and all(_is_number(x) and 0 <= x < 1 for x in v):
        return None
    return "must be a list of two numbers in [0, 1)"


_ABSENT = None

#: section -> key -> (default, validator). A default of None means "absent unless given".
SCHEMA: dict[str, dict[str, tuple[Any, Callable[[Any], str | None]]]] = {
    "dataset": {
        "name": ("digits", _one_of(DATASETS)),
        "path": (_ABSENT, _string),
        "test_fraction": (0.2, _fraction),
        "split_seed": (0, _seed),
        "probe_train": (_ABSENT, _nonnegative_int),
        "probe_test": (_ABSENT, _nonnegative_int),
        "n_samples": (_ABSENT, _n_samples),
        "n_features": (32, _positive_int),
        "n_classes": (4, _n_classes),
        "teacher_width": (64, _positive_int),
        "data_seed": (0, _seed),
        # Absent unless given: a fresh training set each epoch (mnist1d and synthetic only).
        "fresh": (_ABSENT, _bool),
    },
    "model": {
        "depth": (5, _depth),
        "width": (256, _width),
        "activation": ("sigmoid", _one_of(tuple(ACTIVATIONS))),
        "init": ("default", _one_of(INITS)),
        "init_scale": (1.0, _positive_number),
        # Absent unless given, so that configs written before these keys keep their meaning
        # (and their stores resume): the readout is then initialised like the hidden layers.
        "bias_init": (_ABSENT, _one_of(BIAS_INITS)),
        "readout_init": (_ABSENT, _one_of(INITS)),
        "readout_init_scale": (_ABSENT, _positive_number),
    },
    "train": {
        "optimizer": ("sgd", _one_of(OPTIMIZERS)),
        "lr": (0.1, _positive_number),
        "momentum": (0.0, _nonnegative_number),
        "weight_decay": (0.0, _nonnegative_number),
        "betas": ([0.9, 0.999], _betas),
        "layer_lr": (_ABSENT, _layer_lr),
        "batch_size": (10, _positive_int),
        "epochs": (50, _train_epochs),
        "seed": (0, _seed),
        # Absent unless given: train until a condition holds (train.epochs is then the cap),
        # and until_then epochs more (0 when absent).
        "until": (_ABSENT, _until),
        "until_then": (_ABSENT, _until_then),
    },
    "record": {
        "epochs": ("log:16", _record_epochs),
        "preactivation": (True, _bool),
        "delta": (True, _bool),
        "weight_grad": (True, _bool),
    },
}

#: Sweep keys that must be the same for every run of one store: the probe samples and
#: their inputs are shared (sample x feature), so the data set cannot vary within a store.
_NOT_SWEEPABLE = {f"dataset.{k}" for k in SCHEMA["dataset"]}


def _parse_log_schedule(text: str) -> int | None:
    digits = text[4:] if text.startswith("log:") else ""
    if not (digits.isascii() and digits.isdigit()):
        return None
    n = int(digits)
    return n if 2 <= n <= MAX_LOG_POINTS else None


def log_schedule(n: int, epochs: float) -> list[float]:
    """``"log:N"``: 0 and N-1 points log-spaced from epochs/1000 to `epochs` (4 significant digits).

    Examples
    --------
    >>> log_schedule(4, 10)
    [0.0, 0.01, 0.3162, 10.0]
    """
    if not epochs / 1000 > 0:  # underflows: no log-spaced points (the config check says so)
        return [0.0] * n
    points = np.geomspace(epochs / 1000, epochs, n - 1)
    rounded = [float(f"{p:.4g}") for p in points]
    rounded[-1] = float(epochs)
    return [0.0] + rounded


def _suggest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass(frozen=True)
class CaptureConfig:
    """A parsed and validated config: the normalized whole and one resolved dict per run."""

    source: str
    text: str
    sweep: dict[str, Any]  # the whole config, defaults filled in (stored as the root 'sweep')
    runs: tuple[dict[str, Any], ...]  # one full config per run
    sweep_keys: tuple[str, ...]

    @property
    def epochs(self) -> tuple[float, ...]:
        """The store's epoch coordinate: every run's recording moments, sorted."""
        return tuple(sorted({e for run in self.runs for e in run["record"]["epochs"]}))


def load_config(path: str | os.PathLike) -> CaptureConfig:
    """Read, validate and expand a capture config file.

    Raises
    ------
    ConfigError
        One line naming the file, the key and what is wrong with its value.
    """
    path = os.fspath(path)
    shown = shorten(path, quote=False)
    try:
        # O_NONBLOCK: a FIFO given as the config must not block the open; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{shown}: is a directory, not a config file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{shown}: not a regular file (a device, FIFO or socket); a config must be a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{shown}: {info.st_size} bytes; a config file may hold at most {MAX_CONFIG_BYTES} bytes (1 MiB)"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            raw_bytes = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(raw_bytes) > MAX_CONFIG_BYTES:  # grew while being read
        raise ConfigError(f"{shown}: a config file may hold at most {MAX_CONFIG_BYTES} bytes (1 MiB)")
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not a UTF-8 text file (a TOML config was expected)") from None
    return parse_config(text, source=path)


def parse_config(text: str, source: str = "<config>") -> CaptureConfig:
    """Parse TOML text into a :class:`CaptureConfig` (see :func:`load_config`).

    Examples
    --------
    >>> config = parse_config('[model]\\ndepth = 2\\nwidth = 8\\n[sweep]\\n"train.seed" = [0, 1]')
    >>> len(config.runs), config.runs[1]["train"]["seed"]
    (2, 1)
    """
    given_source, source = source, shorten(source, quote=False)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or inline tables
        raise ConfigError(f"{source}: not valid TOML: arrays or tables nested too deeply") from None
    sections = set(SCHEMA) | {"sweep"}
    for section, body in raw.items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section [{_printable(section)}]{_suggest(section, sections)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{_printable(section)}] must be a table, not a value")
    base: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                valid = [f"{section}.{k}" for k in keys]
                raise ConfigError(
                    f"{source}: unknown key '{section}.{_printable(key)}'{_suggest(f'{section}.{key}', valid)}"
                )
        base[section] = {}
        for key, (default, _) in keys.items():
            value = given.get(key, copy.deepcopy(default))
            if value is not None:
                base[section][key] = value

    sweep = raw.get("sweep", {})
    valid_keys = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]
    axes: list[tuple[tuple[str, ...], list[tuple]]] = []  # (keys, one tuple of values per point)
    for key, values in sweep.items():
        keys = tuple(k.strip() for k in key.split(","))
        for k in keys:
            if k not in valid_keys:
                raise ConfigError(f"{source}: unknown sweep key '{_printable(k)}'{_suggest(k, valid_keys)}")
            if k in _NOT_SWEEPABLE:
                raise ConfigError(
                    f"{source}: sweep key '{_printable(k)}' is not allowed: one store holds the probes of one data set"
                )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: sweep.'{_printable(key)}' must be a non-empty list of values")
        if len(keys) == 1:
            points = [(v,) for v in values]
        else:  # linked keys vary together: "train.optimizer, train.lr" = [["sgd", 0.1], ["adam", 0.001]]
            for v in values:
                if not isinstance(v, list) or len(v) != len(keys):
                    raise ConfigError(
                        f"{source}: sweep.'{_printable(key)}': each value must be a list of {len(keys)} values, one per key, got {_show(v)}"
                    )
            points = [tuple(v) for v in values]
        axes.append((keys, points))

    sweep_keys = tuple(k for keys, _ in axes for k in keys)
    n_runs = math.prod(len(points) for _, points in axes)
    if n_runs > MAX_RUNS:
        raise ConfigError(f"{source}: [sweep] gives {n_runs} runs; at most {MAX_RUNS} are supported")
    runs = []
    for combo in itertools.product(*(points for _, points in axes)):
        run = copy.deepcopy(base)
        assigned = []
        for (keys, _), values in zip(axes, combo):
            for key, value in zip(keys, values):
                section, name = key.split(".")
                run[section][name] = value
                assigned.append(f"{key} = {_show(value)}")
        label = ", ".join(assigned)
        _validate_run(run, source, f" (run {len(runs)}: {label})" if sweep_keys else "")
        runs.append(run)

    whole = {section: dict(values) for section, values in base.items()}
    whole["sweep"] = {k: list(v) for k, v in sweep.items()}
    return CaptureConfig(source=given_source, text=text, sweep=whole, runs=tuple(runs), sweep_keys=sweep_keys)


def _validate_run(run: dict, source: str, where: str) -> None:
    for section, keys in SCHEMA.items():
        for key, (_, check) in keys.items():
            if key not in run[section]:
                continue
            value = run[section][key]
            problem = check(value)
            if problem:
                raise ConfigError(f"{source}: {section}.{key} = {_show(value)}: {problem}{where}")
    model, train, record, dataset = run["model"], run["train"], run["record"], run["dataset"]
    depth = model["depth"]
    if isinstance(model["width"], list) and len(model["width"]) != depth:
        raise ConfigError(
            f"{source}: model.width = {_show(model['width'])}: has {len(model['width'])} entries "
            f"but model.depth = {depth}{where}"
        )
    if "layer_lr" in train and len(train["layer_lr"]) != depth:
        raise ConfigError(
            f"{source}: train.layer_lr = {_show(train['layer_lr'])}: has {len(train['layer_lr'])} entries "
            f"but model.depth = {depth}{where}"
        )
    if dataset["name"] == "npz" and "path" not in dataset:
        raise ConfigError(f"{source}: dataset.name = 'npz' needs dataset.path (a .npz file with x and y){where}")
    if dataset["name"] != "npz" and "path" in dataset:
        raise ConfigError(f"{source}: dataset.path is only used with dataset.name = 'npz'{where}")
    if dataset.get("probe_train") == 0 and dataset.get("probe_test") == 0:
        raise ConfigError(
            f"{source}: dataset.probe_train = 0 and dataset.probe_test = 0: at least one probe sample is needed "
            f"(set probe_train or probe_test to 1 or more){where}"
        )
    if dataset["name"] == "mnist1d" and dataset["data_seed"] + MNIST1D_SEED_OFFSET >= 2**32:
        raise ConfigError(
            f"{source}: dataset.data_seed = {_show(dataset['data_seed'])}: mnist1d's generator takes seeds up to "
            f"{2**32 - 1 - MNIST1D_SEED_OFFSET} (data_seed + {MNIST1D_SEED_OFFSET} < 2**32){where}"
        )
    if dataset["name"] == "mnist1d" and dataset.get("n_samples", 10) < 10:
        raise ConfigError(
            f"{source}: dataset.n_samples = {_show(dataset['n_samples'])}: mnist1d generates n_samples // 10 rows "
            f"of each of its 10 classes, so it needs at least 10{where}"
        )
    if dataset["name"] in ("synthetic", "mnist1d"):
        n_samples = dataset.get("n_samples", 2000 if dataset["name"] == "synthetic" else 5000)
        n_features = dataset["n_features"] if dataset["name"] == "synthetic" else 40
        for key, a, b in (("n_samples", n_samples, n_features), ("n_features", n_features, dataset["teacher_width"])):
            if dataset["name"] == "mnist1d" and key == "n_features":
                continue
            if a * b > MAX_GENERATED_VALUES:
                other = "n_features" if key == "n_samples" else "teacher_width"
                raise ConfigError(
                    f"{source}: dataset.{key} = {_show(a)}: with {other} = {_show(b)} the generator would make "
                    f"{a * b:.3g} values, more than the {MAX_GENERATED_VALUES:.3g} capture allows{where}"
                )
    if "layer_lr" in train:
        for i, factor in enumerate(train["layer_lr"]):
            if train["lr"] * factor > MAX_FLOAT32:
                raise ConfigError(
                    f"{source}: train.layer_lr = {_show(train['layer_lr'])}: entry {i} times train.lr = "
                    f"{_show(train['lr'])} is beyond float32's range ({MAX_FLOAT32:.8g}){where}"
                )
    if "readout_init_scale" in model and "readout_init" not in model:
        raise ConfigError(
            f"{source}: model.readout_init_scale = {_show(model['readout_init_scale'])}: only used with "
            f"model.readout_init (the readout is otherwise initialised like the hidden layers, with model.init_scale){where}"
        )
    if "until_then" in train and "until" not in train:
        raise ConfigError(
            f"{source}: train.until_then = {_show(train['until_then'])}: only used with train.until "
            f"(the epochs trained on after the condition first holds){where}"
        )
    if dataset.get("fresh") and dataset["name"] not in FRESH_DATASETS:
        raise ConfigError(
            f"{source}: dataset.fresh = true: only for dataset.name = 'mnist1d' or 'synthetic', whose generators "
            f"can make new rows (dataset.name = {_show(dataset['name'])}){where}"
        )
    if train["optimizer"] == "adam" and train["momentum"] != 0:
        raise ConfigError(f"{source}: train.momentum = {_show(train['momentum'])}: not used by adam (set betas){where}")
    epochs = record["epochs"]
    if isinstance(epochs, str):
        schedule = log_schedule(_parse_log_schedule(epochs), train["epochs"])
        if schedule[1] <= 0 or len(set(schedule)) != len(schedule):
            raise ConfigError(
                f"{source}: record.epochs = {_show(epochs)}: train.epochs = {_show(train['epochs'])} is too small "
                f"for that many distinct log-spaced epochs{where}"
            )
        record["epochs"] = schedule
    else:
        for e in epochs:
            if e > train["epochs"]:
                raise ConfigError(
                    f"{source}: record.epochs contains {_show(e)}, beyond train.epochs = {_show(train['epochs'])}{where}"
                )
        if len(set(epochs)) != len(epochs):
            raise ConfigError(f"{source}: record.epochs = {_show(epochs)}: contains a repeated epoch{where}")
        record["epochs"] = sorted(float(e) for e in epochs)
        if "until" in train and float(train["epochs"]) not in record["epochs"]:
            raise ConfigError(
                f"{source}: record.epochs = {_show(epochs)}: with train.until it must contain train.epochs = "
                f"{_show(train['epochs'])} (the cap), so that a run stops at a recorded moment{where}"
            )
    model["width"] = model["width"] if isinstance(model["width"], list) else [model["width"]] * depth
    if max(model["width"]) > MAX_WIDTH:
        raise ConfigError(
            f"{source}: model.width = {_show(max(model['width']))}: more than the {MAX_WIDTH} units a layer "
            f"capture allows{where}"
        )
    hidden = sum(a * b for a, b in zip(model["width"][:-1], model["width"][1:]))
    if hidden > MAX_HIDDEN_WEIGHTS:
        raise ConfigError(
            f"{source}: model.width = {_show(model['width'] if len(set(model['width'])) > 1 else model['width'][0])}: "
            f"the hidden layers would hold {hidden:.3g} weights ({4 * hidden / 2**30:.3g} GiB as float32), more than "
            f"the {MAX_HIDDEN_WEIGHTS:.3g} capture allows{where}"
        )


#: At most this many hidden-to-hidden weights (16 GiB as float32): a bound on what a config
#: can make capture allocate, so that a typo in model.width is a config error.
MAX_HIDDEN_WEIGHTS = 2**32
MAX_WIDTH = 2**20


def _printable(name: str) -> str:
    """A key or section name as it can stand in a one-line message (newlines escaped, at
    most about 200 characters: see :func:`actstats.errors.shorten`)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return shorten(text, quote=False)


def _show(value) -> str:
    """A value as an error message shows it: TOML's spelling of booleans, at most about 200
    characters (:func:`actstats.errors.shorten`)."""
    if isinstance(value, str):
        return shorten(value)
    return shorten(str(value).replace("True", "true").replace("False", "false"), quote=False)
