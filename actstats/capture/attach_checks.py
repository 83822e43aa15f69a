"""The checks of :class:`capture.Recorder`'s arguments (probes, epochs, runs and their
attributes, the layers asked for) and the comparison of a store's model signature with the
model's, each refusing bad input in one line; split from :mod:`capture.attach` by topic.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from actstats.activations import ACTIVATIONS
from actstats.errors import ActstatsValueError, shorten

#: Run attributes that are coordinates of the store, with their type and the value they
#: take when not given.
RUN_ATTRIBUTES = {
    "init": (str, "user"), "optimizer": (str, ""), "lr": (float, math.nan),
    "batch_size": (int, -1), "seed": (int, -1), "dataset": (str, "user"),
}

_KINDS = {getattr(torch.nn, a.torch_module): a.name for a in ACTIVATIONS.values()}


def _kind(module) -> str | None:
    for cls in type(module).__mro__:
        if cls in _KINDS:
            return _KINDS[cls]
    return None


def _refuse_other_arguments(module, kind: str, module_name: str) -> None:
    """The registry's entry is the function of the torch module with its default arguments
    (nn.ELU(): alpha 1); a module built with others is another function: refused."""
    default = getattr(torch.nn, ACTIVATIONS[kind].torch_module)()
    for key, value in vars(default).items():
        if key.startswith("_") or key in ("training", "inplace"):
            continue
        mine = getattr(module, key, None)
        if mine != value:
            raise ActstatsValueError(
                f"layers: {type(module).__name__} {module_name!r} has {key}={mine!r}; actstats knows "
                f"nn.{ACTIVATIONS[kind].torch_module} with its defaults ({key}={value!r}) as {kind!r}: its bounds and "
                "derivative are those of the defaults", argument="layers")


def _wanted(layers, modules: dict, names: dict) -> dict | None:
    """`layers` as module -> label (None: every activation module)."""
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(layers, Mapping):
        items = list(layers.items())
    elif isinstance(layers, Sequence):
        items = [(name, name) for name in layers]
    else:
        raise ActstatsValueError(f"layers: expected None, a mapping of names to modules, or module names; got "
                                 f"{type(layers).__name__}", argument="layers")
    if not items:
        raise ActstatsValueError("layers: empty; give at least one layer, or None for every activation module",
                                 argument="layers")
    wanted = {}
    for label, target in items:
        if not isinstance(label, str) or not label:
            raise ActstatsValueError(f"layers: names must be non-empty strings, got {shorten(label)}", argument="layers")
        if isinstance(target, str):
            if target not in modules or not target:
                close = difflib.get_close_matches(target, [n for n in modules if n], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ActstatsValueError(f"layers: the model has no module named {shorten(target)}{hint}",
                                         argument="layers")
            module = modules[target]
        elif isinstance(target, torch.nn.Module):
            if target not in names:
                raise ActstatsValueError(f"layers[{label!r}]: this {type(target).__name__} is not a module of the "
                                         "model", argument="layers")
            module = target
        else:
            raise ActstatsValueError(f"layers[{label!r}]: expected a module of the model or its name, got "
                                     f"{type(target).__name__}", argument="layers")
        if _kind(module) is None:
            known = ", ".join(f"nn.{a.torch_module}" for a in ACTIVATIONS.values())
            raise ActstatsValueError(f"layers[{label!r}]: {type(module).__name__} {names[module]!r} is not an "
                                     f"activation module the Recorder knows ({known})", argument="layers")
        if module in wanted:
            raise ActstatsValueError(f"layers: {names[module]!r} is given twice", argument="layers")
        wanted[module] = label
    return wanted


def _check_probes(probes, device, dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if not isinstance(probes, Mapping) or set(probes) != {"train", "test"}:
        keys = sorted(map(str, probes)) if isinstance(probes, Mapping) else type(probes).__name__
        raise ActstatsValueError(f"probes: expected {{'train': (x, y), 'test': (x, y)}}, got {shorten(keys)}",
                                 argument="probes")
    out = {}
    for split in ("train", "test"):
        pair = probes[split]
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ActstatsValueError(f"probes[{split!r}]: expected a pair (x, y)", argument="probes")
        try:
            x = torch.as_tensor(np.asarray(pair[0]) if not isinstance(pair[0], torch.Tensor) else pair[0])
            y = torch.as_tensor(np.asarray(pair[1]) if not isinstance(pair[1], torch.Tensor) else pair[1])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ActstatsValueError(f"probes[{split!r}]: not arrays ({shorten(str(exc))})", argument="probes") from None
        if x.dim() < 2:
            raise ActstatsValueError(f"probes[{split!r}]: x has shape {tuple(x.shape)}; expected rows first, then "
                                     "the model's input shape, e.g. (n, features)", argument="probes")
        if not x.is_floating_point():
            x = x.float()
        if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
            raise ActstatsValueError(f"probes[{split!r}]: y has shape {tuple(y.shape)} and dtype {y.dtype}; expected "
                                     "integer class labels, one per row", argument="probes")
        if len(x) != len(y):
            raise ActstatsValueError(f"probes[{split!r}]: x has {len(x)} rows but y has {len(y)}", argument="probes")
        if len(x) == 0 and split == "train":
            raise ActstatsValueError("probes['train']: no rows", argument="probes")
        if len(y) and int(y.min()) < 0:
            raise ActstatsValueError(f"probes[{split!r}]: negative label {int(y.min())}", argument="probes")
        out[split] = (x.detach().to(device=device, dtype=dtype), y.detach().to(device=device, dtype=torch.int64))
    if out["train"][0].shape[1:] != out["test"][0].shape[1:]:
        raise ActstatsValueError(f"probes: x of 'train' has rows of shape {tuple(out['train'][0].shape[1:])}, x of "
                                 f"'test' {tuple(out['test'][0].shape[1:])}", argument="probes")
    return out


def _check_epochs(epochs, stored: tuple[float, ...] | None, path: str) -> tuple[float, ...]:
    if epochs is None:
        if stored is None:
            raise ActstatsValueError("epochs: needed to make a store, e.g. epochs=range(31): the moments to be "
                                     "recorded, fixed when the store is made", argument="epochs")
        return stored
    if isinstance(epochs, (str, bytes)) or not isinstance(epochs, (Sequence, range, np.ndarray)):
        raise ActstatsValueError(f"epochs: expected a sequence of numbers, got {type(epochs).__name__}",
                                 argument="epochs")
    try:
        values = [float(e) for e in epochs]
    except (TypeError, ValueError):
        raise ActstatsValueError(f"epochs: expected numbers, got {shorten(list(epochs))}", argument="epochs") from None
    if not values:
        raise ActstatsValueError("epochs: empty; give at least one moment", argument="epochs")
    bad = [e for e in values if not (math.isfinite(e) and e >= 0)]
    if bad:
        raise ActstatsValueError(f"epochs: {bad[0]:g} is not a finite number >= 0", argument="epochs")
    if len(set(values)) != len(values):
        raise ActstatsValueError("epochs: a moment is given twice", argument="epochs")
    values = tuple(sorted(values))
    if stored is not None and values != stored:
        raise ActstatsValueError(f"epochs: {path} records epochs {_show(stored)} (fixed when it was made), not "
                                 f"{_show(values)}; omit epochs= to use the store's", argument="epochs")
    return values


def _show(epochs) -> str:
    return "[" + ", ".join(f"{e:g}" for e in epochs[:8]) + (", …" if len(epochs) > 8 else "") + "]"


def _check_attributes(attributes) -> dict:
    import json

    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise ActstatsValueError(f"attributes: expected a mapping, got {type(attributes).__name__}",
                                 argument="attributes")
    out = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise ActstatsValueError(f"attributes: keys must be strings, got {shorten(key)}", argument="attributes")
        if key in RUN_ATTRIBUTES:
            kind = RUN_ATTRIBUTES[key][0]
            ok = isinstance(value, str) if kind is str else (
                isinstance(value, (int, np.integer)) and not isinstance(value, bool) if kind is int
                else isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool))
            if not ok:
                raise ActstatsValueError(f"attributes[{key!r}]: expected {kind.__name__}, got {shorten(value)}",
                                         argument="attributes")
            value = kind(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ActstatsValueError(f"attributes[{key!r}]: not JSON ({type(value).__name__})",
                                     argument="attributes") from None
        out[key] = value
    return out


#: Keys of a run's declaration in ``runs=`` that are not attributes of the run.
RUN_DECLARATION_KEYS = ("name", "activation", "steps_per_epoch")


def _check_runs(runs, stored: dict | None, attributes: dict, path: str, depth: int) -> list[dict] | None:
    """`runs` as one attribute mapping a run (None: a store of one run, described by `attributes`)."""
    stored_runs = stored.get("runs") if stored is not None else None
    if runs is None:
        if stored_runs is not None and attributes:
            raise ActstatsValueError(f"attributes: {path} holds {len(stored_runs)} runs, whose attributes were "
                                     "given in runs= when it was made; omit attributes=", argument="attributes")
        return stored_runs
    if attributes:
        raise ActstatsValueError("attributes: with runs=, give each run's attributes in runs= (one mapping a run)",
                                 argument="attributes")
    if isinstance(runs, (int, np.integer)) and not isinstance(runs, bool):
        if runs < 1:
            raise ActstatsValueError(f"runs: expected a positive number of runs, got {runs}", argument="runs")
        specs = [{} for _ in range(int(runs))]
    elif isinstance(runs, Sequence) and not isinstance(runs, (str, bytes)):
        if not runs:
            raise ActstatsValueError("runs: empty; give at least one run", argument="runs")
        specs = []
        for r, spec in enumerate(runs):
            if not isinstance(spec, Mapping):
                raise ActstatsValueError(f"runs[{r}]: expected a mapping of the run's attributes, got "
                                         f"{type(spec).__name__}", argument="runs")
            specs.append(_check_run_declaration(spec, r, depth))
    else:
        raise ActstatsValueError(f"runs: expected a number of runs or a sequence of mappings (each run's "
                                 f"attributes), got {type(runs).__name__}", argument="runs")
    names = [spec["name"] for spec in specs if "name" in spec]
    if len(set(names)) != len(names):
        raise ActstatsValueError("runs: two runs have the same name", argument="runs")
    declaring = sum("activation" in spec for spec in specs)
    if 0 < declaring < len(specs):
        raise ActstatsValueError("runs: some runs declare an activation and others not; when runs differ in "
                                 "activation functions every run says its own", argument="runs")
    if stored is not None and stored_runs != specs:
        held = f"{len(stored_runs)} runs" if stored_runs is not None else "one run"
        raise ActstatsValueError(f"runs: {path} was made with {held} declared otherwise (fixed when it was made); "
                                 "omit runs= to use the store's", argument="runs")
    return specs


def _check_run_declaration(spec: Mapping, r: int, depth: int) -> dict:
    from actstats.activations import ACTIVATIONS as known

    rest = {k: v for k, v in spec.items() if k not in RUN_DECLARATION_KEYS}
    try:
        out = _check_attributes(rest)
    except ActstatsValueError as exc:
        raise ActstatsValueError(str(exc).replace("attributes", f"runs[{r}]", 1), argument="runs") from None
    if "name" in spec:
        if not isinstance(spec["name"], str) or not spec["name"]:
            raise ActstatsValueError(f"runs[{r}]['name']: expected a non-empty string, got {shorten(spec['name'])}",
                                     argument="runs")
        out["name"] = spec["name"]
    if "activation" in spec:
        declared = spec["activation"]
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names) or (
                not isinstance(declared, str) and len(names) != depth):
            raise ActstatsValueError(f"runs[{r}]['activation']: expected an activation name or one a layer "
                                     f"({depth}), got {shorten(declared)}", argument="runs")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ActstatsValueError(f"runs[{r}]['activation']: unknown activation {unknown[0]!r}; known: "
                                     f"{', '.join(known)}", argument="runs")
        out["activation"] = declared if isinstance(declared, str) else list(declared)
    if "steps_per_epoch" in spec:
        value = spec["steps_per_epoch"]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ActstatsValueError(f"runs[{r}]['steps_per_epoch']: expected a positive integer, got "
                                     f"{shorten(value)}", argument="runs")
        out["steps_per_epoch"] = int(value)
    return out


def _check_run(run, runs: list[dict] | None) -> int:
    """The index of `run` among `runs`."""
    n = len(runs) if runs is not None else 1
    if isinstance(run, str):
        names = [spec.get("name") for spec in runs or []]
        if run not in names:
            raise ActstatsValueError(f"run: no run is named {run!r} (names: "
                                     f"{', '.join(repr(x) for x in names if x) or 'none given'})", argument="run")
        return names.index(run)
    if not isinstance(run, (int, np.integer)) or isinstance(run, bool):
        raise ActstatsValueError(f"run: expected a run's index or name, got {shorten(run)}", argument="run")
    if not 0 <= run < n:
        hint = "" if runs is not None else " (declare several runs with runs=)"
        raise ActstatsValueError(f"run: {int(run)} is not a run of the store (0…{n - 1}){hint}", argument="run")
    return int(run)


def _signature_difference(stored: dict, new: dict) -> str | None:
    """The first way two Recorder signatures differ, in a few words."""
    old_layers, new_layers = stored.get("layers", []), new["layers"]
    if len(old_layers) != len(new_layers):
        return f"the store has {len(old_layers)} layers, this model {len(new_layers)}"
    for i, (a, b) in enumerate(zip(old_layers, new_layers), start=1):
        for key in ("activation", "units", "fan_in", "bias", "name", "linear"):
            if a.get(key) != b.get(key):
                return f"layer {i} {key}: store has {a.get(key)!r}, this model {b.get(key)!r}"
    for key in ("input_shape", "classes", "probes", "epochs", "record", "format", "runs"):
        if stored.get(key) != new.get(key):
            return f"{key}: store has {shorten(stored.get(key))}, now {shorten(new.get(key))}"
    return None
