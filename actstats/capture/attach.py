"""Record a user's own PyTorch model from the user's own training loop: :class:`Recorder`.

The Recorder writes the same store format as ``actstats capture`` (docs/store-format.md),
through capture's own writer (:class:`capture.recorder.Writer`): each ``rec.record(epoch=…)``
writes every chunk of the record, then its manifest, then ``complete[run, epoch]``, each file
written whole and renamed into place, so a loop killed at any moment leaves a store that opens
and verifies with its complete records intact.

What a layer is: a call of an activation module of a kind that :data:`actstats.activations.ACTIVATIONS`
knows (``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``, ``nn.Softsign``, ``nn.ELU``, ``nn.Softplus``,
``nn.SiLU``, ``nn.GELU``, ``nn.Hardtanh``, ``nn.LeakyReLU``, with their default arguments) whose
input is the output of an ``nn.Linear`` or an ``nn.Conv1d/2d/3d``. The module's input is the layer's
pre-activation z, its output the activation h = f(z), and the Linear's (or conv's) weight and bias
are the layer's. A conv layer's units are its channel × position outputs (z flattened per probe),
its weight one row a channel (docs/store-format.md, "Conv layers"). Layers are found by one forward pass
on a few training probes with hooks, in the order the forward calls them; an activation module
called several times (one ``nn.ReLU()`` applied after each Linear) is one layer per call.

Non-interference: hooks exist only while the Recorder runs its own forward passes (in
:meth:`Recorder.record` and at construction), and are removed right after. Those passes run on
the probes with every module in eval mode by default (restored, module by module, after), the
random number generator state saved and restored, and gradients taken with
``torch.autograd.grad``, which does not touch any parameter's ``.grad``; the optimizer is never
seen. So training with and without the Recorder gives identical weights bit for bit
(tests/test_recorder_user.py).

``delta`` is each probe's own gradient dℓᵢ/dz: the gradient of the sum of the per-probe losses
(``loss(output, y, reduction="none")``) with respect to the pre-activations of a batch of
probes, which equals each probe's own gradient because the rows of a batch do not interact.
That holds when no module mixes the rows of a batch: BatchNorm in training mode does (the
Recorder refuses it with ``mode="as_is"``; with the default ``mode="eval"`` it uses its
running statistics and rows are independent). Custom modules that mix rows cannot be seen:
the first record checks one probe alone against the same probe in its batch and refuses when
they differ.

This module is the one class, :class:`Recorder` (about 800 lines): its forward passes, hooks,
mode and random-state handling and writes share the state of one attached model, so they stay
together; the checks of its arguments are in :mod:`capture.attach_checks`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from actstats.activations import ACTIVATIONS
from actstats.errors import ActstatsError, ActstatsValueError, shorten
from actstats.store import (
    StoreContents, StoreLayout, canonical_json, hold_store_for_writing, is_local, local_path,
    open_group_read_only, prepare_store,
)
from actstats.capture.attach_checks import (
    RUN_ATTRIBUTES, _check_attributes, _check_epochs, _check_probes, _check_run, _check_runs, _kind, _refuse_other_arguments, _signature_difference, _wanted,
)
from actstats.capture.recorder import EVAL_BATCH, Writer, _pad, _remove_leftovers, read_complete, run_lock

__all__ = ["Recorder"]

#: The store format's word for a run whose layers have different activation functions.
MIXED = "mixed"

#: What the sweep attribute of a Recorder's store says it is.
RECORDER_FORMAT = "actstats.recorder/1"

#: Training probes in the forward pass that finds the layers.
DISCOVERY_ROWS = 8

#: Tolerance of the check that rows of a batch do not interact (float32 arithmetic in blocks
#: of another size differs in the last bits).
ROWS_INDEPENDENT_RTOL = 1e-4

#: The parameterised modules that feed a recorded layer besides nn.Linear.
CONV_MODULES = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


@dataclass(frozen=True)
class _Layer:
    """One recorded layer: a call of an activation module fed by an nn.Linear or an nn.ConvNd.

    A conv layer's units are its outputs, channel × position (C order of (channels, *spatial)):
    ``positions`` per channel; its weight is one row a channel (``rows``), of ``fan_in`` =
    in_channels / groups × kernel size columns."""

    name: str  # the user's label, or the module's name (with [k] for its k-th call)
    module: torch.nn.Module
    module_name: str
    call: int  # which call of the module in one forward pass (0, 1, ...)
    activation: str  # the ACTIVATIONS name
    linear: torch.nn.Module  # the nn.Linear or nn.Conv1d/2d/3d feeding it
    linear_name: str
    positions: int = 1  # spatial positions a channel (1: fully connected)

    @property
    def conv(self) -> bool:
        return isinstance(self.linear, CONV_MODULES)

    @property
    def rows(self) -> int:
        return int(self.linear.weight.shape[0])

    @property
    def fan_in(self) -> int:
        return int(self.linear.weight[0].numel())

    @property
    def units(self) -> int:
        return self.rows * self.positions

    def weight_matrix(self, weight=None):
        """The weight (or a gradient of its shape) as rows × fan_in."""
        weight = self.linear.weight if weight is None else weight
        return weight.reshape(weight.shape[0], -1)

    def signature(self) -> dict:
        out = {"name": self.name, "activation": self.activation, "linear": self.linear_name,
               "units": self.units, "fan_in": self.fan_in, "bias": self.linear.bias is not None}
        if self.conv:
            out |= {"conv": type(self.linear).__name__, "channels": self.rows, "positions": self.positions}
        return out


class Recorder:
    """Record a PyTorch model's layers from any training loop into an actstats store.

    Parameters
    ----------
    path : str or path-like
        The store (a local directory). Made if absent; if present, it must have been made by a
        Recorder of the same model (same layers, widths and activation functions), with the
        same probes and record options: the new records are added to it.
    model : torch.nn.Module
        The user's model, called as ``model(x)``. Its layers: see the module docstring.
    probes : mapping
        ``{"train": (x, y), "test": (x, y)}``: the recorded samples (tensors or arrays), ``x``
        what the model takes (rows first), ``y`` integer class labels, one per row. Losses,
        accuracies and ``weight_grad`` are computed on these probes (not on a whole split).
    loss : callable
        ``loss(output, y, reduction="none")`` returning one loss per row, e.g.
        ``torch.nn.functional.cross_entropy``.
    layers : None, mapping or sequence, optional
        None: every activation module found. A mapping of names (the store's labels) to
        modules of `model` or to module names (``dict(model.named_modules())`` keys), or a
        sequence of module names: those only.
    epochs : sequence of float
        The moments to be recorded (epochs elapsed; 0 = before training; fractions allowed),
        fixed when the store is made: ``record(epoch=…)`` takes one of them. Needed to make a
        store; when adding to one, omitted or equal to the store's. (Why fixed: the store's
        ``epoch`` axis, like its other coordinates, is written whole at creation and never
        changes, which keeps every moment of a write safe to kill; docs/store-format.md.)
    delta, weight_grad : bool, default True
        Record each probe's back-propagated error at the pre-activations, and the gradient of
        the mean training-probe loss with respect to each layer's weight.
    mode : {"eval", "as_is"}, default "eval"
        The modules' modes during the recording passes: all in eval mode (Dropout off,
        BatchNorm on its running statistics; each module's own mode restored after), or as
        they are (then BatchNorm in training mode is refused: it mixes the rows of a batch and
        recording would change its running statistics).
    steps_per_epoch : int, optional
        Optimizer steps per epoch, for the store's ``step`` coordinate (round(epoch × it));
        without it ``step`` holds each epoch's position in `epochs`.
    attributes : mapping, optional
        The run's description: ``init``, ``optimizer``, ``dataset`` (str), ``lr`` (float),
        ``batch_size``, ``seed`` (int) become the store's run coordinates, and every key goes
        into the run's ``config`` (JSON). Unknown: ``init`` "user", ``optimizer`` "", ``lr``
        NaN, ``batch_size`` and ``seed`` −1, ``dataset`` "user".
    runs : int or sequence of mappings, optional
        Several runs in one store (a sweep: models trained one after another, or in parallel
        processes): each run's attributes (as `attributes`), one mapping a run, or the number
        of runs when they need none. Fixed when the store is made, as `epochs` (the store's
        ``run`` axis and run coordinates are written whole at creation); when adding to a
        store, omitted or equal to the store's. A run's mapping may also hold ``"name"`` (a
        label for `run`) and ``"activation"`` (an activation name, or one a layer: the run's
        model has other functions than the model that made the store; then every run says
        its own). Without it the store has one run, described by `attributes`.
    run : int or str, default 0
        Which run of `runs` this Recorder records: its index, or its ``"name"``. Recorders of
        different runs may write one store at the same time (one writer a run).
    asynchronous : bool, default True
        Write each record on a background thread while training goes on (its values are
        computed in :meth:`record`, on the calling thread). Errors of a write surface at the
        next :meth:`record` or at :meth:`close`.

    Raises
    ------
    actstats.errors.ActstatsValueError
        Bad arguments: no recognisable layer, a layer name that does not exist, probes of the
        wrong shape, epochs missing or not numbers (one line saying what and where).
    actstats.errors.ActstatsError
        The store was made by another model or from other probes, or another Recorder (or a
        capture) is writing it.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.zarr")
    >>> with Recorder(path, model, probes={"train": (x[:12], y[:12]), "test": (x[12:], y[12:])},
    ...               loss=torch.nn.functional.cross_entropy, epochs=[0, 1]) as rec:
    ...     rec.record(epoch=0)
    ...     # ... one epoch of the user's own training here ...
    ...     rec.record(epoch=1)
    >>> import actstats
    >>> ds = actstats.open_store(path)
    >>> ds.activation.sizes["layer"], str(ds.activation_fn.values[0]), bool(ds.complete.all())
    (1, 'tanh', True)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        model: torch.nn.Module,
        *,
        probes: Mapping[str, tuple[Any, Any]],
        loss: Callable,
        layers: Mapping[str, Any] | Sequence[str] | None = None,
        epochs: Sequence[float] | None = None,
        delta: bool = True,
        weight_grad: bool = True,
        mode: str = "eval",
        steps_per_epoch: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        runs: int | Sequence[Mapping[str, Any]] | None = None,
        run: int | str = 0,
        asynchronous: bool = True,
    ):
        if not isinstance(model, torch.nn.Module):
            raise ActstatsValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}",
                                     argument="model")
        if not callable(loss):
            raise ActstatsValueError(f"loss: expected a callable loss(output, y, reduction='none'), got "
                                     f"{type(loss).__name__}", argument="loss")
        if mode not in ("eval", "as_is"):
            raise ActstatsValueError(f"mode: expected 'eval' or 'as_is', got {shorten(mode)}", argument="mode")
        path = os.fspath(path)
        if not is_local(path):
            raise ActstatsValueError(f"{path}: the Recorder writes to a local path or a file:// URL only",
                                     argument="path")
        self.path = local_path(path)
        self.model = model
        self.loss = loss
        self.mode = mode
        self.delta = bool(delta)
        self.weight_grad = bool(weight_grad)
        self.asynchronous = bool(asynchronous)
        attributes = _check_attributes(attributes)
        self._stack = contextlib.ExitStack()
        self._writer = None
        self._closed = False
        self._rows_checked = False
        parameter = next(model.parameters(), None)
        self._device = parameter.device if parameter is not None else torch.device("cpu")
        self._dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        self.probes = _check_probes(probes, self._device, self._dtype)
        self._refuse_batch_coupling()
        self.layers = self._find_layers(layers)
        self.n_classes = self._n_classes()
        stored = self._stored_signature() if os.path.exists(self.path) else None
        stored_epochs = tuple(float(e) for e in stored["epochs"]) if stored is not None else None
        self.epochs = _check_epochs(epochs, stored_epochs, self.path)
        self.runs = _check_runs(runs, stored, attributes, self.path, len(self.layers))
        self.run = _check_run(run, self.runs)
        self.attributes = attributes if self.runs is None else self.runs[self.run]
        self._check_run_activations()
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, (int, np.integer))
                                            or isinstance(steps_per_epoch, bool) or steps_per_epoch < 1):
            raise ActstatsValueError(f"steps_per_epoch: expected a positive integer, got {shorten(steps_per_epoch)}",
                                     argument="steps_per_epoch")
        self.steps_per_epoch = steps_per_epoch
        self._open_store(stored is not None)

    # -- the store -----------------------------------------------------------------------
    def _signature(self) -> dict:
        """What must not change between the Recorders adding to one store (its ``sweep``)."""
        x = self.probes["train"][0]
        return {"recorder": {
            "format": RECORDER_FORMAT,
            "layers": [layer.signature() | ({"activation": "per run"} if self._declares_activations() else {})
                       for layer in self.layers],
            "input_shape": [int(n) for n in x.shape[1:]],
            "classes": self.n_classes,
            "probes": {split: int(len(self.probes[split][0])) for split in ("train", "test")},
            "epochs": [float(e) for e in self.epochs],
            "record": {"delta": self.delta, "weight_grad": self.weight_grad},
        } | ({"runs": self.runs} if self.runs is not None else {})}

    def _declares_activations(self) -> bool:
        return self.runs is not None and any("activation" in spec for spec in self.runs)

    def _run_activations(self, run: int) -> list[str]:
        """The activation function of each layer of run `run`."""
        declared = self.runs[run].get("activation") if self.runs is not None else None
        if declared is None:
            return [layer.activation for layer in self.layers]
        return [declared] * len(self.layers) if isinstance(declared, str) else list(declared)

    def _check_run_activations(self) -> None:
        """This model's layers have the functions its run declares."""
        declared = self._run_activations(self.run)
        for layer, name in zip(self.layers, declared):
            if layer.activation != name:
                raise ActstatsValueError(
                    f"runs[{self.run}] declares activation {name!r} for layer {layer.name!r}, but the model has "
                    f"{layer.activation!r} there", argument="runs")

    def _stored_signature(self) -> dict:
        import json

        try:
            attrs = dict(open_group_read_only(self.path).attrs)
        except Exception:
            raise ActstatsError(f"{self.path}: exists but is not a readable store; the Recorder adds records only "
                                "to a store a Recorder made") from None
        try:
            stored = json.loads(attrs["sweep"])["recorder"]
            stored["epochs"], stored["layers"]
        except (KeyError, TypeError, ValueError):
            raise ActstatsError(f"{self.path}: not a store made by a Recorder (made by capture or another program); "
                                "record into another store") from None
        return stored

    def _open_store(self, exists: bool) -> None:
        signature = self._signature()
        fingerprint = self._fingerprint()
        if exists:
            stored = self._stored_signature()
            difference = _signature_difference(stored, signature["recorder"])
            if difference:
                raise ActstatsError(f"{self.path}: made by a Recorder of another model or with other settings "
                                    f"({difference}); record into another store")
            stored_fingerprint = dict(open_group_read_only(self.path).attrs).get("data_fingerprint", {})
            changed = [k for k, v in fingerprint["arrays"].items() if stored_fingerprint.get("arrays", {}).get(k) != v]
            if changed:
                raise ActstatsError(f"{self.path}: recorded on other probes ({', '.join(changed)} differ); "
                                    "record into another store")
        sweep = canonical_json(signature)
        prepare_store(self.path, "resume", contents=self._contents, sweep=sweep)
        try:
            self._hold(sweep)
        except BaseException:
            self._stack.close()  # the locks: released at once, not when garbage is collected
            raise

    def _hold(self, sweep: str) -> None:
        store = self._stack.enter_context(hold_store_for_writing(self.path))
        held = self._stack.enter_context(run_lock(self.path, self.run, blocking=False))
        if not held:
            which = f"run {self.run} of " if self.runs is not None else ""
            raise ActstatsError(f"{self.path}: another Recorder (or capture) is writing {which}this store now; "
                                "one writer a run")
        if open_group_read_only(self.path).attrs.get("sweep") != sweep:  # replaced meanwhile
            raise ActstatsError(f"{self.path}: the store was replaced while this Recorder opened it; stopped")
        self._complete = read_complete(self.path, self.run)
        self._submitted: set[int] = set()
        self._writer = Writer(self.path, asynchronous=self.asynchronous, check=store.check)
        _remove_leftovers(self.path, self.run, self._writer)

    def _fingerprint(self) -> dict:
        arrays = {}
        for split in ("train", "test"):
            x, y = self.probes[split]
            for name, values in ((f"x_{split}", x), (f"y_{split}", y)):
                values = np.ascontiguousarray(values.detach().cpu().numpy())
                h = hashlib.blake2b(digest_size=16)
                h.update(f"{values.dtype.str} {values.shape}\n".encode())
                h.update(memoryview(values).cast("B") if values.size else b"")
                arrays[name] = h.hexdigest()
        arrays["n_classes"] = self.n_classes
        return {"format": "actstats.data-fingerprint/1", "hash": "blake2b-128", "arrays": arrays,
                "source": {"generator": "capture.Recorder probes"}}

    def _contents(self) -> StoreContents:
        x_train, y_train = self.probes["train"]
        x_test, y_test = self.probes["test"]
        n_train, n_test = len(x_train), len(x_test)
        inputs = torch.cat([x_train, x_test]).reshape(n_train + n_test, -1).detach().cpu().numpy()
        n_features = inputs.shape[1]
        widths = [layer.units for layer in self.layers]
        fan_ins = [layer.fan_in for layer in self.layers]
        depth = len(self.layers)
        n_runs = len(self.runs) if self.runs is not None else 1
        specs = self.runs if self.runs is not None else [self.attributes]
        optional = {"preactivation", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "diverged"}
        optional |= {"delta"} if self.delta else set()
        optional |= {"weight_grad"} if self.weight_grad else set()
        layout = StoreLayout(
            n_runs=n_runs, epochs=tuple(self.epochs), n_layers=depth, n_units=max(widths),
            n_fan_in=max(max(fan_ins), n_features), n_classes=self.n_classes, n_features=n_features,
            n_samples=n_train + n_test, optional=frozenset(optional),
        )
        steps = []
        for spec in specs:
            per_epoch = spec.get("steps_per_epoch", self.steps_per_epoch)
            steps.append([int(round(e * per_epoch)) for e in self.epochs] if per_epoch is not None
                         else list(range(len(self.epochs))))
        described = [{name: spec.get(name, default) for name, (_, default) in RUN_ATTRIBUTES.items()}
                     for spec in specs]
        signature = self._signature()
        configs = [canonical_json({**signature, "loss": getattr(self.loss, "__name__", type(self.loss).__name__),
                                   "mode": self.mode, "attributes": spec, "run": r,
                                   "steps_per_epoch": spec.get("steps_per_epoch", self.steps_per_epoch)})
                   for r, spec in enumerate(specs)]
        functions = [self._run_activations(r) for r in range(n_runs)]
        labels = torch.cat([y_train, y_test]).cpu().numpy().astype(np.int64)

        def column(name, dtype=None):
            return np.array([d[name] for d in described], dtype=dtype)

        coordinates = {
            "run": np.arange(n_runs), "epoch": np.asarray(self.epochs, dtype=np.float64),
            "layer": np.arange(1, depth + 1), "unit": np.arange(max(widths)), "fan_in": np.arange(layout.n_fan_in),
            "class": np.arange(self.n_classes), "feature": np.arange(n_features),
            "sample": np.arange(n_train + n_test), "step": np.array(steps, dtype=np.int64),
            "split": np.array(["train"] * n_train + ["test"] * n_test), "label": labels,
            "source_index": np.concatenate([np.arange(n_train), np.arange(n_test)]).astype(np.int64),
            "width": np.array([widths] * n_runs, dtype=np.int64), "depth": np.array([depth] * n_runs),
            "activation_fn": np.array([f[0] if len(set(f)) == 1 else MIXED for f in functions]),
            "init": column("init"), "optimizer": column("optimizer"), "lr": column("lr", np.float64),
            "batch_size": column("batch_size", np.int64), "seed": column("seed", np.int64),
            "dataset": column("dataset"), "config": np.array(configs),
            "layer_activation_fn": np.array(functions), "layer_fan_in": np.array([fan_ins] * n_runs, dtype=np.int64),
        }
        if any(layer.conv for layer in self.layers):  # units = channels × positions, one weight row a channel
            coordinates["layer_weight_rows"] = np.array([[layer.rows for layer in self.layers]] * n_runs, dtype=np.int64)
            coordinates["layer_positions"] = np.array([[layer.positions for layer in self.layers]] * n_runs,
                                                      dtype=np.int64)
        attrs = {"torch_version": torch.__version__, "sweep": canonical_json(signature),
                 "data_fingerprint": self._fingerprint()}
        return StoreContents(layout, coordinates, attrs, inputs)

    # -- recording -----------------------------------------------------------------------
    @property
    def recorded_epochs(self) -> tuple[float, ...]:
        """The epochs already recorded in the store (complete) or handed to the writer."""
        return tuple(float(e) for i, e in enumerate(self.epochs) if self._complete[i] or i in self._submitted)

    def record(self, epoch: float) -> None:
        """Record the model as it is now, as the moment `epoch` (one of the Recorder's `epochs`).

        Computes every recorded variable on the calling thread, then writes the record (on the
        writer thread with ``asynchronous=True``): its chunks, its manifest, and last its
        ``complete`` flag. A moment is recorded once: an epoch already recorded is refused
        (:attr:`recorded_epochs` lists them, so that a resumed loop can skip them).
        """
        if self._closed:
            raise ActstatsError(f"{self.path}: this Recorder is closed")
        index = self._epoch_index(epoch)
        self._refuse_batch_coupling()
        if self._complete[index] or index in self._submitted:
            raise ActstatsValueError(
                f"epoch {float(epoch):g} is already recorded in {self.path}{self._run_words()} (a moment is recorded once; "
                "skip the epochs in rec.recorded_epochs)", argument="epoch")
        values = self._measure()
        self._writer.submit((self.run, index, values, None, None))
        self._submitted.add(index)

    def _run_words(self) -> str:
        return f" for run {self.run}" if self.runs is not None else ""

    def _epoch_index(self, epoch) -> int:
        try:
            value = float(epoch)
        except (TypeError, ValueError):
            raise ActstatsValueError(f"epoch: expected a number, got {shorten(epoch)}", argument="epoch") from None
        for i, e in enumerate(self.epochs):
            if math.isclose(e, value, rel_tol=1e-6, abs_tol=1e-9):  # 0.1 given as float32 is 0.1
                return i
        shown = ", ".join(f"{e:g}" for e in self.epochs[:12]) + (", …" if len(self.epochs) > 12 else "")
        raise ActstatsValueError(f"epoch {value:g} is not one of the store's epochs ({shown}), fixed when the store "
                                 "was made (Recorder(..., epochs=...))", argument="epoch")

    def close(self) -> None:
        """Wait for the records handed to the writer, and release the store."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._stack.close()

    def _abandon(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._writer.close(abandon=True)
        finally:
            self._stack.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, Exception):  # an error in the loop: the records handed over are written
            try:
                self.close()
            except Exception:  # the loop's error is the one to see
                pass
        else:  # Ctrl-C, SystemExit: the record being written is finished, queued ones dropped (as a kill would)
            self._abandon()

    # -- the passes ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _passes(self):
        """The state of the Recorder's own forward passes: modes (eval by default), and the
        random number generators saved and restored, so that training does not see them."""
        modes = [(m, m.training) for m in self.model.modules()]
        cpu_state = torch.random.get_rng_state()
        cuda = self._device.type == "cuda"
        cuda_states = torch.cuda.get_rng_state_all() if cuda else None
        try:
            if self.mode == "eval":
                for module, _ in modes:
                    module.training = False
            yield
        finally:
            for module, training in modes:
                module.training = training
            torch.random.set_rng_state(cpu_state)
            if cuda:
                torch.cuda.set_rng_state_all(cuda_states)

    def _refuse_batch_coupling(self) -> None:
        if self.mode != "as_is":
            return
        for name, module in self.model.named_modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training:
                raise ActstatsValueError(
                    f"mode='as_is': {type(module).__name__} {name!r} is in training mode: it mixes the rows of a "
                    "batch (each probe's delta would depend on the others) and recording would change its running "
                    "statistics; use mode='eval' (the default)", argument="mode")

    def _find_layers(self, layers) -> list[_Layer]:
        """The recorded layers, from one forward pass on a few training probes."""
        names = {module: name for name, module in self.model.named_modules()}
        modules = dict(self.model.named_modules())
        wanted = _wanted(layers, modules, names)  # module -> label (None: every known one)
        calls = []  # (module, z, h) of each activation call, in forward order
        linear_out = {}  # id(output) -> (output, linear)

        def on_linear(module, inputs, output):  # nn.Linear and nn.Conv1d/2d/3d
            linear_out[id(output)] = (output, module)

        def on_activation(module, inputs, output):
            calls.append((module, inputs[0] if inputs else None))

        hooks = []
        try:
            for module in self.model.modules():
                if isinstance(module, (torch.nn.Linear, *CONV_MODULES)):
                    hooks.append(module.register_forward_hook(on_linear))
                if _kind(module) is not None:
                    hooks.append(module.register_forward_hook(on_activation))
            x = self.probes["train"][0][:DISCOVERY_ROWS]
            with self._passes(), torch.no_grad():
                output = self.model(x)
        except ActstatsError:
            raise
        except Exception as exc:
            raise ActstatsValueError(f"probes: the model fails on the training probes ({type(exc).__name__}: "
                                     f"{shorten(str(exc))})", argument="probes") from None
        finally:
            for hook in hooks:
                hook.remove()
        self._discovery_output = output
        found, counts = [], {}
        for module, z in calls:
            call = counts.get(module, 0)
            counts[module] = call + 1
            if wanted is not None and module not in wanted:
                continue
            kind = _kind(module)
            module_name = names.get(module, "?")
            _refuse_other_arguments(module, kind, module_name)
            feeding = linear_out.get(id(z)) if z is not None else None
            if feeding is None or feeding[0] is not z:
                where = f"{type(module).__name__} {module_name!r}"
                raise ActstatsValueError(
                    f"layers: {where} is not fed by an nn.Linear or nn.Conv1d/2d/3d (its input is computed by "
                    "something else); the Recorder records activation modules whose input is such a module's "
                    "output: pass layers= without it", argument="layers")
            linear = feeding[1]
            expected = 2 if isinstance(linear, torch.nn.Linear) else 2 + len(linear.kernel_size)
            if z.dim() != expected:
                raise ActstatsValueError(
                    f"layers: {type(module).__name__} {module_name!r} gets a pre-activation of shape "
                    f"{tuple(z.shape)}, not (probes, units) of a fully connected layer or (probes, channels, "
                    "*positions) of a conv layer", argument="layers")
            positions = int(np.prod(z.shape[2:])) if z.dim() > 2 else 1
            found.append((module, module_name, call, kind, linear, names.get(linear, "?"), positions))
        if not found:
            if wanted:
                listed = ", ".join(repr(label) for label in wanted.values())
                raise ActstatsValueError(f"layers: {listed} never called in the model's forward pass on the probes",
                                         argument="layers")
            known = ", ".join(f"nn.{a.torch_module}" for a in ACTIVATIONS.values())
            raise ActstatsValueError(f"model: no activation module that the Recorder knows ({known}) is called in "
                                     f"its forward pass (a functional call such as torch.relu(x) cannot be hooked: "
                                     "use the module)", argument="model")
        calls_of = {module: counts[module] for module, *_ in found}
        out = []
        for module, module_name, call, kind, linear, linear_name, positions in found:
            label = wanted[module] if wanted is not None else module_name
            if calls_of[module] > 1:
                label = f"{label}[{call}]"
            out.append(_Layer(label, module, module_name, call, kind, linear, linear_name, positions))
        if wanted is not None:
            missing = [label for module, label in wanted.items() if module not in calls_of]
            if missing:
                raise ActstatsValueError(f"layers: {', '.join(repr(m) for m in missing)} never called in the model's "
                                         "forward pass on the probes", argument="layers")
        return out

    def _n_classes(self) -> int:
        output = self._discovery_output
        if not isinstance(output, torch.Tensor):
            raise ActstatsValueError(f"model: its output is a {type(output).__name__}, not a tensor; the Recorder "
                                     "calls loss(model(x), y, reduction='none')", argument="model")
        labels = torch.cat([self.probes["train"][1], self.probes["test"][1]])
        largest = int(labels.max()) + 1 if len(labels) else 1
        if output.dim() == 2 and output.shape[1] > 1:
            if largest > output.shape[1]:
                raise ActstatsValueError(f"probes: label {largest - 1} is out of range for the model's "
                                         f"{output.shape[1]} outputs", argument="probes")
            return int(output.shape[1])
        return max(largest, 2)

    def _measure(self) -> dict[str, np.ndarray]:
        """Every recorded variable of this moment, as NaN-padded numpy blocks."""
        layers = self.layers
        depth = len(layers)
        need_grad = self.delta or self.weight_grad
        keep = {name: [[] for _ in range(depth)] for name in ("z", "h", "delta")}
        trainable = [layer.linear.weight.requires_grad for layer in layers]
        weight_grad = [torch.zeros_like(layer.linear.weight) for layer in layers]
        totals = {"train": [0.0, 0, 0], "test": [0.0, 0, 0]}  # loss sum, correct, rows
        finite = True
        with self._passes():
            for split in ("train", "test"):
                x_all, y_all = self.probes[split]
                for start in range(0, len(x_all), EVAL_BATCH):
                    x, y = x_all[start:start + EVAL_BATCH], y_all[start:start + EVAL_BATCH]
                    with torch.set_grad_enabled(need_grad):
                        output, zs, hs = self._forward(x)
                        losses = self._losses(output, y)
                        deltas, grads = self._gradients(losses, zs, split == "train" and self.weight_grad, trainable)
                    totals[split][0] += float(losses.detach().sum())
                    totals[split][2] += len(x)
                    if output.dim() == 2 and output.shape[1] > 1:
                        totals[split][1] += int((output.detach().argmax(1) == y).sum())
                    for i in range(depth):  # a conv layer's (channels, *positions) flattened: its units
                        keep["z"][i].append(zs[i].detach().float().cpu().reshape(len(x), -1))
                        keep["h"][i].append(hs[i].detach().float().cpu().reshape(len(x), -1))
                        finite = finite and bool(torch.isfinite(hs[i]).all())
                        if self.delta:
                            keep["delta"][i].append(deltas[i].reshape(len(x), -1))
                        if grads is not None and grads[i] is not None:
                            weight_grad[i].add_(grads[i])
            if not self._rows_checked and not self._dropout_active():
                self._check_rows_independent(keep)
                self._rows_checked = True
        n_samples = sum(len(self.probes[s][0]) for s in ("train", "test"))
        n_units, n_fan_in = self._sizes()

        def probe_block(name):
            return _pad([torch.cat(parts).numpy() for parts in keep[name]], (n_samples, n_units))

        out: dict[str, np.ndarray] = {"activation": probe_block("h"), "preactivation": probe_block("z")}
        if self.delta:
            out["delta"] = probe_block("delta")
        out["weight"] = _pad([layer.weight_matrix().detach().float().cpu().numpy() for layer in layers],
                             (n_units, n_fan_in))
        biases = [layer.linear.bias.detach().float().cpu().numpy() if layer.linear.bias is not None
                  else np.full(layer.rows, np.nan, dtype=np.float32) for layer in layers]
        out["bias"] = _pad(biases, (n_units,))
        if self.weight_grad:
            n_train = max(1, totals["train"][2])
            out["weight_grad"] = _pad([layer.weight_matrix(g / n_train).float().cpu().numpy() if ok
                                       else np.full((layer.rows, layer.fan_in), np.nan, dtype=np.float32)
                                       for layer, g, ok in zip(layers, weight_grad, trainable)], (n_units, n_fan_in))
        classifies = self._discovery_output.dim() == 2 and self._discovery_output.shape[1] > 1
        for split in ("train", "test"):
            loss_sum, correct, rows = totals[split]
            out[f"{split}_loss"] = np.float32(loss_sum / rows if rows else np.nan)
            out[f"{split}_accuracy"] = np.float32(correct / rows if rows and classifies else np.nan)
        finite = finite and all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        out["diverged"] = np.bool_(not finite)
        return out

    def _sizes(self) -> tuple[int, int]:
        n_features = int(np.prod(self.probes["train"][0].shape[1:]))
        n_units = max(layer.units for layer in self.layers)
        n_fan_in = max(max(layer.fan_in for layer in self.layers), n_features)
        return n_units, n_fan_in

    def _forward(self, x):
        """The model's output on `x`, and each recorded layer's z and h (hooks only meanwhile)."""
        wanted = {}
        for i, layer in enumerate(self.layers):
            wanted.setdefault(layer.module, {})[layer.call] = i
        depth = len(self.layers)
        zs, hs = [None] * depth, [None] * depth
        counts = {}

        def before(module, inputs):
            call = counts.get(module, 0)
            counts[module] = call + 1
            i = wanted[module].get(call)
            if i is None:
                return None
            zs[i] = inputs[0]
            if getattr(module, "inplace", False):  # keep z: the module works on a copy
                return (inputs[0].clone(),) + tuple(inputs[1:])
            return None

        def after(module, inputs, output):
            i = wanted[module].get(counts[module] - 1)
            if i is not None:
                hs[i] = output

        hooks = []
        try:
            for module in wanted:
                hooks.append(module.register_forward_pre_hook(before))
                hooks.append(module.register_forward_hook(after))
            output = self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        missing = [self.layers[i].name for i in range(depth) if zs[i] is None or hs[i] is None]
        if missing:
            raise ActstatsError(f"layer {missing[0]!r} was not called in this forward pass of the model "
                                "(its forward changed since the Recorder was made)")
        return output, zs, hs

    def _losses(self, output, y):
        losses = self.loss(output, y, reduction="none")
        if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (len(y),):
            shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
            raise ActstatsValueError(f"loss: loss(output, y, reduction='none') returned {shape}, expected one loss "
                                     f"per probe ({len(y)},)", argument="loss")
        return losses

    def _gradients(self, losses, zs, with_weights: bool, trainable):
        """Each probe's delta at every layer (rows do not interact: see the module docstring),
        and the summed loss's gradient w.r.t. each layer's weight (if `with_weights`)."""
        depth = len(zs)
        if not (self.delta or with_weights):
            return None, None
        targets = [("z", i) for i in range(depth) if self.delta and zs[i].requires_grad]
        if with_weights:
            targets += [("w", i) for i in range(depth) if trainable[i]]
        tensors = [zs[i] if kind == "z" else self.layers[i].linear.weight for kind, i in targets]
        results = torch.autograd.grad(losses.sum(), tensors, allow_unused=True) if tensors and losses.requires_grad \
            else [None] * len(tensors)
        deltas = [torch.full(tuple(z.shape), float("nan")) for z in zs] if self.delta else None
        grads = [None] * depth if with_weights else None
        for (kind, i), value in zip(targets, results):
            if kind == "z":
                deltas[i] = (value if value is not None else torch.zeros_like(zs[i])).detach().float().cpu()
            else:
                grads[i] = value.detach() if value is not None else torch.zeros_like(self.layers[i].linear.weight)
        return deltas, grads

    def _dropout_active(self) -> bool:
        """Dropout in training mode (mode="as_is"): a probe alone draws another mask than in its
        batch, so the check below cannot compare them; the values hold that pass's masks."""
        return self.mode == "as_is" and any(
            isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training for m in self.model.modules())

    def _check_rows_independent(self, keep) -> None:
        """The first probe alone gives the activations (and deltas) it gets in its batch: no
        module mixes the rows of a batch (the premise of delta)."""
        x, y = self.probes["train"][0][:1], self.probes["train"][1][:1]
        with torch.set_grad_enabled(self.delta):
            output, zs, hs = self._forward(x)
            deltas, _ = self._gradients(self._losses(output, y), zs, False, None)
        for i, layer in enumerate(self.layers):
            pairs = [(hs[i].detach().float().cpu()[0].reshape(-1), keep["h"][i][0][0])]
            if self.delta:
                pairs.append((deltas[i][0].reshape(-1), keep["delta"][i][0][0]))
            for alone, batched in pairs:
                scale = float(batched.abs().max()) if batched.numel() else 0.0
                if not torch.allclose(alone, batched, rtol=ROWS_INDEPENDENT_RTOL, atol=ROWS_INDEPENDENT_RTOL * scale,
                                      equal_nan=True):
                    raise ActstatsError(
                        f"layer {layer.name!r}: the first training probe gives other values alone than in its batch: "
                        "a module of the model mixes the rows of a batch, so per-probe values (delta) cannot be "
                        "recorded; use mode='eval' or remove the module that mixes rows")
