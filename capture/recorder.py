"""Train one run and record it into its region of the store.

Crash safety rests on one order of writes per (run, epoch) record, kept by a single writer
thread: every record variable -> the run's checkpoint (resume/run-NNNNN.pt, replaced
atomically) -> `complete[run, epoch] = True`. zarr's LocalStore replaces each chunk
atomically (a temporary file, then a rename), so a kill at any moment leaves old or new
chunks, never half a chunk. `--resume` trusts only records marked complete.

Determinism: one intra-op thread, the weights seeded by `train.seed`, and each epoch's
mini-batch order drawn from a generator seeded by (seed, epoch) alone, so a run resumed
from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import zarr

from actstats.store import canonical_json
from capture.data import Dataset
from capture.model import FeedForward, initialise, make_optimizer

#: Rows per forward pass when a whole split is evaluated (bounds memory on large splits).
EVAL_BATCH = 4096


@dataclass(frozen=True)
class Probes:
    """The recorded samples: training probes first, then held-out probes."""

    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    source_index: np.ndarray


def select_probes(data: Dataset, spec: dict) -> Probes:
    n_train = min(spec.get("probe_train", len(data.x_train)), len(data.x_train))
    n_test = min(spec.get("probe_test", len(data.x_test)), len(data.x_test))
    return Probes(
        x=np.concatenate([data.x_train[:n_train], data.x_test[:n_test]]).astype(np.float32),
        y=np.concatenate([data.y_train[:n_train], data.y_test[:n_test]]).astype(np.int64),
        split=np.array(["train"] * n_train + ["test"] * n_test),
        source_index=np.concatenate([data.index_train[:n_train], data.index_test[:n_test]]).astype(np.int64),
    )


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def record_steps(run: dict, n_train: int) -> list[int]:
    """Optimizer step of each recording epoch: the nearest step to epoch x steps-per-epoch."""
    spe = steps_per_epoch(n_train, run["train"]["batch_size"])
    return [int(round(e * spe)) for e in run["record"]["epochs"]]


def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed((seed % 2**31) * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


class Writer:
    """A background thread that writes records in order; errors surface on the next call."""

    def __init__(self, store_path: str, *, asynchronous: bool = True):
        self.path = store_path
        self.group = zarr.open_group(store_path, mode="r+")
        # Every chunk of a record is written, even one equal to the fill value (an all-False
        # `diverged`), so that `verify` can tell a missing chunk from an unwritten one.
        self.arrays = {
            name: array.with_config({"write_empty_chunks": True}) for name, array in self.group.arrays()
        }
        self.asynchronous = asynchronous
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = None
        if asynchronous:
            self.thread = threading.Thread(target=self._loop, name="actstats-writer", daemon=True)
            self.thread.start()

    def submit(self, item) -> None:
        self._raise()
        if self.asynchronous:
            self.queue.put(item)
        else:
            self._write(*item)

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the training thread
                    self.error = exc

    def _write(self, run: int, epoch_index: int, values: dict, checkpoint: dict, on_done: Callable | None) -> None:
        for name, value in values.items():
            array = self.arrays.get(name)
            if array is None:
                continue
            if np.ndim(value) == 0:
                array[run, epoch_index] = value
            else:
                array[(run, epoch_index) + tuple(slice(0, n) for n in np.shape(value)[:1])] = value
        path = checkpoint_path(self.path, run)
        tmp = f"{path}.{os.getpid()}.partial"
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
        self.arrays["complete"][run, epoch_index] = True
        if on_done is not None:
            on_done()


def checkpoint_path(store_path: str, run: int) -> str:
    return os.path.join(store_path, "resume", f"run-{run:05d}.pt")


def _pad(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Stack per-layer arrays into one NaN-padded block of `shape` per layer."""
    out = np.full((len(arrays), *shape), np.nan, dtype=np.float32)
    for i, a in enumerate(arrays):
        out[(i,) + tuple(slice(0, n) for n in a.shape)] = a
    return out


class RunTrainer:
    """One run: its model, optimizer and data, trained step by step and recorded."""

    def __init__(self, run_index: int, run: dict, data: Dataset, probes: Probes, sizes: dict):
        self.run_index = run_index
        self.run = run
        self.data = data
        self.sizes = sizes
        model_spec, train = run["model"], run["train"]
        self.seed = int(train["seed"])
        torch.manual_seed(self.seed)
        self.x_train = torch.from_numpy(data.x_train)
        self.y_train = torch.from_numpy(data.y_train)
        self.x_test = torch.from_numpy(data.x_test)
        self.y_test = torch.from_numpy(data.y_test)
        self.x_probe = torch.from_numpy(probes.x)
        self.y_probe = torch.from_numpy(probes.y)
        self.model = FeedForward(data.x_train.shape[1], list(model_spec["width"]), sizes["class"], model_spec["activation"])
        lsuv_rows = torch.from_numpy(np.random.default_rng(self.seed).permutation(len(data.x_train))[:512])
        initialise(self.model, model_spec["init"], float(model_spec["init_scale"]), self.x_train[lsuv_rows])
        self.optimizer = make_optimizer(self.model, train)
        self.loss = torch.nn.CrossEntropyLoss()
        self.batch_size = int(train["batch_size"])
        self.spe = steps_per_epoch(len(data.x_train), self.batch_size)
        self.step = 0
        self._permutation_epoch = -1
        self._permutation = None
        self.record_options = run["record"]
        self.config_json = canonical_json(run)

    # -- state ------------------------------------------------------------------------
    def checkpoint(self, epoch_index: int) -> dict:
        return {
            "format": "actstats.checkpoint/1",
            "config": self.config_json,
            "step": self.step,
            "epoch_index": epoch_index,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": _clone(self.optimizer.state_dict()),
        }

    def restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step = int(checkpoint["step"])

    # -- training ---------------------------------------------------------------------
    def train_until(self, step: int) -> None:
        n = len(self.x_train)
        model, optimizer, loss_fn = self.model, self.optimizer, self.loss
        while self.step < step:
            epoch, position = divmod(self.step, self.spe)
            if epoch != self._permutation_epoch:
                self._permutation = _epoch_permutation(self.seed, epoch, n)
                self._permutation_epoch = epoch
            rows = self._permutation[position * self.batch_size : (position + 1) * self.batch_size]
            logits, _, _ = model(self.x_train[rows])
            loss = loss_fn(logits, self.y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.step += 1

    # -- recording --------------------------------------------------------------------
    def record(self) -> dict[str, np.ndarray]:
        """Everything the store holds for this moment, as NaN-padded numpy blocks."""
        options = self.record_options
        model = self.model
        n_units, n_fan_in = self.sizes["unit"], self.sizes["fan_in"]
        n_samples = len(self.x_probe)
        out: dict[str, np.ndarray] = {}
        logits, zs, hs = model(self.x_probe, keep=True)
        if options["delta"]:
            loss_sum = torch.nn.functional.cross_entropy(logits, self.y_probe, reduction="sum")
            deltas = torch.autograd.grad(loss_sum, zs)
            out["delta"] = _pad([d.numpy() for d in deltas], (n_samples, n_units))
        out["activation"] = _pad([h.detach().numpy() for h in hs], (n_samples, n_units))
        if options["preactivation"]:
            out["preactivation"] = _pad([z.detach().numpy() for z in zs], (n_samples, n_units))
        out["weight"] = _pad([layer.weight.detach().numpy() for layer in model.hidden], (n_units, n_fan_in))
        out["bias"] = _pad([layer.bias.detach().numpy() for layer in model.hidden], (n_units,))
        readout_weight = np.full((self.sizes["class"], n_fan_in), np.nan, dtype=np.float32)
        readout_weight[:, : model.readout.in_features] = model.readout.weight.detach().numpy()
        out["readout_weight"] = readout_weight
        out["readout_bias"] = model.readout.bias.detach().numpy().copy()

        weights = [layer.weight for layer in model.hidden]
        train_loss, train_correct, grads = 0.0, 0, [torch.zeros_like(w) for w in weights]
        n_train = len(self.x_train)
        for start in range(0, n_train, EVAL_BATCH):
            x, y = self.x_train[start : start + EVAL_BATCH], self.y_train[start : start + EVAL_BATCH]
            if options["weight_grad"]:
                logits, _, _ = model(x)
                loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                for g, part in zip(grads, torch.autograd.grad(loss, weights)):
                    g += part
            else:
                with torch.no_grad():
                    logits, _, _ = model(x)
                    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            train_loss += float(loss.detach())
            train_correct += int((logits.argmax(1) == y).sum())
        if options["weight_grad"]:
            out["weight_grad"] = _pad([(g / n_train).numpy() for g in grads], (n_units, n_fan_in))
        with torch.no_grad():
            test_loss, test_correct = 0.0, 0
            for start in range(0, len(self.x_test), EVAL_BATCH):
                x, y = self.x_test[start : start + EVAL_BATCH], self.y_test[start : start + EVAL_BATCH]
                logits, _, _ = model(x)
                test_loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                test_correct += int((logits.argmax(1) == y).sum())
        out["train_loss"] = np.float32(train_loss / n_train)
        out["train_accuracy"] = np.float32(train_correct / n_train)
        out["test_loss"] = np.float32(test_loss / max(1, len(self.x_test)))
        out["test_accuracy"] = np.float32(test_correct / max(1, len(self.x_test)))
        out["diverged"] = np.bool_(
            not all(bool(torch.isfinite(p).all()) for p in model.parameters())
            or not all(bool(torch.isfinite(h).all()) for h in hs)
        )
        return out


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return value


def load_checkpoint(store_path: str, run: int) -> dict | None:
    path = checkpoint_path(store_path, run)
    if not os.path.exists(path):
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a damaged checkpoint: replay the run from its start instead
        return None


def capture_run(
    store_path: str,
    run_index: int,
    run: dict,
    data: Dataset,
    probes: Probes,
    sizes: dict,
    epoch_indices: list[int],
    complete: np.ndarray,
    on_record: Callable[[], None] | None = None,
    asynchronous: bool = True,
) -> int:
    """Train run `run_index` and write every record that is not complete yet.

    Returns the number of records written.
    """
    torch.set_num_threads(1)
    steps = record_steps(run, len(data.x_train))
    schedule = sorted(zip(steps, epoch_indices))
    pending = [(s, e) for s, e in schedule if not complete[e]]
    if not pending:
        return 0
    trainer = RunTrainer(run_index, run, data, probes, sizes)
    checkpoint = load_checkpoint(store_path, run_index)
    if (
        checkpoint is not None
        and checkpoint.get("config") == trainer.config_json
        and int(checkpoint["step"]) <= pending[0][0]
    ):
        trainer.restore(checkpoint)
    writer = Writer(store_path, asynchronous=asynchronous)
    try:
        for step, epoch_index in pending:
            trainer.train_until(step)
            values = trainer.record()
            writer.submit((run_index, epoch_index, values, trainer.checkpoint(epoch_index), on_record))
    finally:
        writer.close()
    return len(pending)


def config_of(store_attrs: dict) -> dict:
    return json.loads(store_attrs["sweep"])
