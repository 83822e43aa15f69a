"""Train one run and record it into its region of the store.

(One module of ~620 lines: the order of writes below is kept by code that must be read
together — the training loop, the writer thread and the checkpoint — so it stays whole.)

Crash safety rests on one order of writes per (run, epoch) record, kept by a single writer
thread: every record variable -> the run's checkpoint (resume/run-NNNNN.pt, replaced
atomically) -> `complete[run, epoch] = True`. Each chunk and checkpoint is replaced
atomically (a temporary file, fsync'd, then a rename: :mod:`actstats.store.chunks`), so a
kill at any moment leaves old or new chunks, never half a chunk. `--resume` trusts only
records marked complete.

One process writes a run at a time: :func:`capture_run` holds the run's lock
(resume/run-NNNNN.lock) while it trains and records it, and removes the temporary files
that a killed write of that run left behind. It also holds the store itself for writing
(:func:`actstats.store.hold_store_for_writing`: a shared lock that makes ``--overwrite``
refuse while the run is written), and before each record's first write the writer checks
that the store path still leads to the directory it locked: a store moved away or
replaced meanwhile stops the capture with one line (ActstatsError), with nothing written
into whatever took its place. The check comes before the record's writes, so the order
above is unchanged. When the capture stops (an error, SIGINT, SIGTERM), the record being
written is finished and the records queued behind it are dropped (:meth:`Writer.close`).

Determinism: one intra-op thread, the weights seeded by `train.seed`, and each epoch's
mini-batch order drawn from a generator seeded by (seed, epoch) alone (and with
``dataset.fresh`` each epoch's rows made from the config and the epoch alone), so a run
resumed from a checkpoint continues exactly as if it had never stopped.

``train.until``: the condition is checked at the end of every whole epoch; the first epoch
at which it held is kept in the checkpoint (``until_epoch``, -1 before), and the run ends at
the first recording moment at or after that epoch + ``until_then`` (that record has
``stopped`` true; the later ones are never written, and ``--resume`` writes nothing more for
a run with a complete stopped record).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import glob
import io
import json
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from actstats.store import (
    RECORD_VARIABLES, canonical_json, hold_store_for_writing, open_group_read_only, refuse_special_files,
)
from actstats.errors import IntegrityError
from actstats.store.chunks import DamagedChunkError, atomic_write
from actstats.store.manifest import write_record_manifest
from actstats.capture.chunks import ChunkWriter, before_record
from actstats.capture.config import parse_until
from actstats.capture.data import Dataset, FreshData
from actstats.capture.model import FeedForward, initialise, make_optimizer

#: Rows per forward pass when a whole split is evaluated (bounds memory on large splits).
EVAL_BATCH = 4096

#: fsync every chunk and checkpoint before its rename, so that `complete` never vouches for
#: data still in the page cache (power loss). Costs ~8 ms per chunk here (docs/benchmarks.md).
FSYNC = True

#: Seconds between reports of training steps to a run's `on_steps` (the progress bar).
STEPS_REPORT_SECONDS = 0.25

#: Records waiting for the writer thread. Recording moments cluster early in training
#: ("log:N": half of them fall in the first epoch), so records queue while the writer
#: catches up during later training. A queued record is only a copy of the network and a
#: checkpoint (the record itself is computed on the writer thread), so the queue is cheap.
MAX_QUEUED_RECORDS = 32


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
    """A background thread that computes and writes records in order; errors surface on the
    next call. With ``asynchronous=False`` everything happens on the calling thread."""

    def __init__(self, store_path: str, *, asynchronous: bool = True, check: Callable[[], None] | None = None):
        self.path = store_path
        self.check = check  # raises if the store is no longer the one being written
        group = open_group_read_only(store_path)
        self.arrays = {
            name: ChunkWriter(store_path, name, array, fsync=FSYNC)
            for name, array in group.arrays()
            if name in RECORD_VARIABLES or name == "complete"
        }
        self.asynchronous = asynchronous
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=MAX_QUEUED_RECORDS)
        self.thread = None
        self.abandoned = False
        self.finished = threading.Event()  # set when the thread's loop has ended
        if asynchronous:
            self.thread = threading.Thread(target=self._loop, name="actstats-writer", daemon=True)
            self.thread.start()

    def submit(self, item) -> None:
        self._raise()
        if self.asynchronous:
            self.queue.put(item)
        else:
            self._write(*item)

    def close(self, *, abandon: bool = False) -> None:
        """Wait until the queued records are written. With `abandon` (the capture is stopping:
        an error, a signal), only the record being written is finished; the queued ones are
        dropped, as a kill would drop them, and a writer error is not raised over the cause."""
        if self.thread is not None:
            self.abandoned = abandon
            self.queue.put(None)
            # Not Thread.join() alone: a join interrupted by a signal (Ctrl-C, SIGTERM) takes the
            # thread for stopped (Python 3.11), and the join of the cleanup would not wait.
            self.finished.wait()
            self.thread.join()
            self.thread = None
        if not abandon:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _loop(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                if self.error is None and not self.abandoned:
                    try:
                        self._write(*item)
                    except BaseException as exc:  # handed to the training thread
                        self.error = exc
        finally:
            self.finished.set()

    def _write(self, run: int, epoch_index: int, values, checkpoint: dict, on_done: Callable | None) -> None:
        if callable(values):  # a snapshot to record here, on the writer's thread
            values = values()
        before_record()  # fault injection (tests only; see actstats/capture/chunks.py)
        if self.check is not None:  # the record's first write goes to the store we locked
            self.check()
        for name, value in values.items():
            writer = self.arrays.get(name)
            if writer is None:
                continue
            if np.ndim(value) == 0:  # a (run, epoch) scalar: chunks hold one run's epochs
                writer.update((run, 0), (0, epoch_index), value)
            else:
                writer.write_block((run, epoch_index), value[None, None])
        if checkpoint is not None:  # None: no checkpoint (capture.Recorder: the user's loop resumes itself)
            # Serialise in memory first: torch.save on a full disk raises a RuntimeError without
            # the file's name, where a plain write raises OSError (ENOSPC) naming it.
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            atomic_write(checkpoint_path(self.path, run), (buffer.getbuffer(),), fsync=True)
        # the record's manifest (its chunks' checksums bound to their keys): before `complete` vouches for it
        write_record_manifest(self.path, self.arrays, run, epoch_index, values, fsync=FSYNC)
        self.arrays["complete"].update((run, 0), (0, epoch_index), True)
        if on_done is not None:
            on_done()


def checkpoint_path(store_path: str, run: int) -> str:
    return os.path.join(store_path, "resume", f"run-{run:05d}.pt")


@contextlib.contextmanager
def run_lock(store_path: str, run: int, *, blocking: bool = True):
    """Hold run `run`'s lock (an flock on resume/run-NNNNN.lock) while it is captured.

    Yields True when held, False when another process holds it and `blocking` is false.
    Captures of one store in several processes (``--workers``, or separate ``--resume``
    commands started together) thereby write each run from one process at a time; the
    kernel drops the lock of a killed process. Where the file system has no locks, goes on
    unlocked.
    """
    try:
        import fcntl
    except ImportError:  # no flock on this platform
        yield True
        return
    directory = os.path.join(store_path, "resume")
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, f"run-{run:05d}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            held = True
        except BlockingIOError:
            held = False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            held = True
        yield held
    finally:
        os.close(fd)  # releases the lock


def read_complete(store_path: str, run: int) -> np.ndarray:
    """`complete[run, :]` as it is in the store now."""
    refuse_special_files(store_path, "complete")
    try:
        return np.asarray(open_group_read_only(store_path)["complete"][run], dtype=bool)
    except DamagedChunkError as exc:  # e.g. a FIFO in its place: refused, not read for ever
        raise IntegrityError(f"{store_path}: variable 'complete': {exc}") from None


def _remove_leftovers(store_path: str, run: int, writer: "Writer") -> None:
    """Temporary files of run `run` that a killed capture left (its lock is held)."""
    for chunk_writer in writer.arrays.values():
        chunk_writer.remove_leftovers(run)
    pattern = glob.escape(checkpoint_path(store_path, run)) + ".*.partial"
    for leftover in glob.glob(pattern):
        try:
            os.remove(leftover)
        except FileNotFoundError:
            pass


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
        # Probes are the first rows of each split (select_probes), so one pass over the
        # splits yields the probes' values too.
        self.n_probe_train = int((probes.split == "train").sum())
        self.n_probe_test = len(probes.split) - self.n_probe_train
        self.x_probe = torch.from_numpy(probes.x)
        self.model = FeedForward(data.x_train.shape[1], list(model_spec["width"]), sizes["class"], model_spec["activation"])
        lsuv_rows = torch.from_numpy(np.random.default_rng(self.seed).permutation(len(data.x_train))[:512])
        initialise(
            self.model, model_spec["init"], float(model_spec["init_scale"]), self.x_train[lsuv_rows],
            bias_init=model_spec.get("bias_init", "default"),
            readout_init=model_spec.get("readout_init"),
            readout_scale=float(model_spec.get("readout_init_scale", 1.0)),
        )
        self.optimizer = make_optimizer(self.model, train)
        self.loss = torch.nn.CrossEntropyLoss()
        self.batch_size = int(train["batch_size"])
        self.spe = steps_per_epoch(len(data.x_train), self.batch_size)
        self.step = 0
        self._permutation_epoch = -1
        self._permutation = None
        # dataset.fresh: each epoch k >= 1 trains on a new set from the generator (made when reached)
        self.fresh = FreshData(run["dataset"], len(data.x_train)) if run["dataset"].get("fresh") else None
        self._epoch_rows = (self.x_train, self.y_train)
        # train.until: checked at the end of every whole epoch; until_epoch is the first epoch at
        # which it held (-1: not yet)
        self.until = parse_until(train["until"]) if "until" in train else None
        self.until_then = float(train.get("until_then", 0))
        self.until_epoch = -1
        self.record_options = run["record"]
        self.config_json = canonical_json(run)
        # Progress: called with the number of optimizer steps taken since its last call, at
        # most every STEPS_REPORT_SECONDS and when train_until returns (None: not reported).
        self.on_steps: Callable[[int], None] | None = None
        self._steps_reported = 0

    # -- state ------------------------------------------------------------------------
    def checkpoint(self, epoch_index: int) -> dict:
        return {
            "format": "actstats.checkpoint/1",
            "config": self.config_json,
            "step": self.step,
            "epoch_index": epoch_index,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": _clone(self.optimizer.state_dict()),
            "until_epoch": self.until_epoch,
        }

    def restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step = self._steps_reported = int(checkpoint["step"])
        self.until_epoch = int(checkpoint.get("until_epoch", -1))

    # -- train.until ------------------------------------------------------------------
    def stop_step(self) -> int | None:
        """The optimizer step from which a record ends the run (the first scheduled recording
        moment at or after it does): the step nearest to epoch until_epoch + until_then, as
        record steps are the nearest to theirs; None while the condition has not held."""
        if self.until is None or self.until_epoch < 0:
            return None
        return int(round((self.until_epoch + self.until_then) * self.spe))

    def until_values(self, stopped: bool = False) -> dict[str, np.generic]:
        """The record's ``stopped`` and ``until_epoch`` (NaN while the condition has not held)."""
        epoch = np.float32(self.until_epoch) if self.until_epoch >= 0 else np.float32(np.nan)
        return {"stopped": np.bool_(stopped), "until_epoch": epoch}

    def evaluate(self, split: str) -> tuple[np.float32, np.float32]:
        """Mean cross-entropy and accuracy on the whole `split` ("train": the fixed training
        split), as :meth:`record` computes ``train_loss`` etc.: the same blocks, sums and
        float32 values."""
        x_all, y_all = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(x_all), EVAL_BATCH):
                x, y = x_all[start : start + EVAL_BATCH], y_all[start : start + EVAL_BATCH]
                logits, _, _ = self.model(x, keep=True)
                losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
                loss_sum += float(losses.sum())
                correct += int((logits.argmax(1) == y).sum())
        n = max(1, len(x_all))
        return np.float32(loss_sum / n), np.float32(correct / n)

    def _check_until(self) -> None:
        """At the end of a whole epoch: note the first epoch at which train.until holds."""
        split, kind = self.until.metric.split("_")
        loss, accuracy = self.evaluate(split)
        if self.until.holds(accuracy if kind == "accuracy" else loss):
            self.until_epoch = self.step // self.spe

    # -- training ---------------------------------------------------------------------
    def train_until(self, step: int) -> None:
        n = len(self.x_train)
        model, optimizer, loss_fn = self.model, self.optimizer, self.loss
        on_steps = self.on_steps
        reported_at = time.monotonic()
        while self.step < step:
            epoch, position = divmod(self.step, self.spe)
            if epoch != self._permutation_epoch:
                self._permutation = _epoch_permutation(self.seed, epoch, n)
                self._permutation_epoch = epoch
                if self.fresh is not None:
                    self._epoch_rows = (self.x_train, self.y_train) if epoch == 0 else tuple(
                        torch.from_numpy(a) for a in self.fresh.epoch(epoch))
            x_epoch, y_epoch = self._epoch_rows
            rows = self._permutation[position * self.batch_size : (position + 1) * self.batch_size]
            logits, _, _ = model(x_epoch[rows])
            loss = loss_fn(logits, y_epoch[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.step += 1
            if self.until is not None and self.until_epoch < 0 and self.step % self.spe == 0:
                self._check_until()
            if on_steps is not None and time.monotonic() - reported_at >= STEPS_REPORT_SECONDS:
                reported_at = time.monotonic()
                self._report_steps()
        if on_steps is not None:
            self._report_steps()

    def _report_steps(self) -> None:
        if self.step > self._steps_reported:
            self.on_steps(self.step - self._steps_reported)
            self._steps_reported = self.step

    # -- recording --------------------------------------------------------------------
    def snapshot(self) -> FeedForward:
        """A copy of the network as it is now, for recording while training goes on."""
        return copy.deepcopy(self.model)

    def record(self, model: FeedForward | None = None, extra: dict | None = None) -> dict[str, np.ndarray]:
        """Everything the store holds for this moment, as NaN-padded numpy blocks.

        One pass over every row of both splits, in blocks of EVAL_BATCH rows: a forward pass
        keeping each layer's z and h, and one backward pass of the summed per-row losses to
        the z's. Because rows do not interact, d(sum of losses)/dz_i = dl_i/dz_i: that is
        each probe's own `delta`; and the gradient of the mean training loss w.r.t. W_l is
        the sum over training rows of delta_l h_(l-1)^T divided by their count.
        """
        options = self.record_options
        model = self.model if model is None else model
        n_units, n_fan_in = self.sizes["unit"], self.sizes["fan_in"]
        n_train, n_test = len(self.x_train), len(self.x_test)
        n_probe_train, n_probe_test = self.n_probe_train, self.n_probe_test
        depth = len(model.hidden)
        need_grad = options["delta"] or options["weight_grad"]
        keep = {k: [[] for _ in range(depth)] for k in ("z", "h", "delta")}
        weight_grad = [torch.zeros_like(layer.weight) for layer in model.hidden]
        totals = {"train": [0.0, 0], "test": [0.0, 0]}
        finite = True
        for split, x_all, y_all, n_probe in (
            ("train", self.x_train, self.y_train, n_probe_train),
            ("test", self.x_test, self.y_test, n_probe_test),
        ):
            for start in range(0, len(x_all), EVAL_BATCH):
                x, y = x_all[start : start + EVAL_BATCH], y_all[start : start + EVAL_BATCH]
                with torch.set_grad_enabled(need_grad):
                    logits, zs, hs = model(x, keep=True)
                    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
                    deltas = torch.autograd.grad(losses.sum(), zs) if need_grad else None
                totals[split][0] += float(losses.detach().sum())
                totals[split][1] += int((logits.argmax(1) == y).sum())
                finite = finite and all(bool(torch.isfinite(h).all()) for h in hs)
                if split == "train" and options["weight_grad"]:
                    inputs = [x, *hs[:-1]]
                    for g, d, h_prev in zip(weight_grad, deltas, inputs):
                        g.add_(d.T @ h_prev.detach())
                rows = max(0, min(len(x), n_probe - start))
                if rows:
                    for layer in range(depth):
                        keep["z"][layer].append(zs[layer][:rows].detach())
                        keep["h"][layer].append(hs[layer][:rows].detach())
                        if options["delta"]:
                            keep["delta"][layer].append(deltas[layer][:rows])

        def probe_block(name):
            return _pad([torch.cat(parts).numpy() for parts in keep[name]], (n_probe_train + n_probe_test, n_units))

        out: dict[str, np.ndarray] = {"activation": probe_block("h")}
        if options["preactivation"]:
            out["preactivation"] = probe_block("z")
        if options["delta"]:
            out["delta"] = probe_block("delta")
        out["weight"] = _pad([layer.weight.detach().numpy() for layer in model.hidden], (n_units, n_fan_in))
        out["bias"] = _pad([layer.bias.detach().numpy() for layer in model.hidden], (n_units,))
        readout_weight = np.full((self.sizes["class"], n_fan_in), np.nan, dtype=np.float32)
        readout_weight[:, : model.readout.in_features] = model.readout.weight.detach().numpy()
        out["readout_weight"] = readout_weight
        out["readout_bias"] = model.readout.bias.detach().numpy().copy()
        if options["weight_grad"]:
            out["weight_grad"] = _pad([(g / n_train).numpy() for g in weight_grad], (n_units, n_fan_in))
        out["train_loss"] = np.float32(totals["train"][0] / n_train)
        out["train_accuracy"] = np.float32(totals["train"][1] / n_train)
        out["test_loss"] = np.float32(totals["test"][0] / max(1, n_test))
        out["test_accuracy"] = np.float32(totals["test"][1] / max(1, n_test))
        finite = finite and all(bool(torch.isfinite(p).all()) for p in model.parameters())
        out["diverged"] = np.bool_(not finite)
        out.update(extra or {})
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
    complete: np.ndarray | None = None,
    on_record: Callable[[], None] | None = None,
    asynchronous: bool = True,
    *,
    wait: bool = True,
    identity: tuple[int, int] | None = None,
    on_steps: Callable[[int], None] | None = None,
) -> int | None:
    """Train run `run_index` and write every record that is not complete yet.

    Holds the run's lock (:func:`run_lock`) throughout, and reads which records are
    complete once it holds it (`complete` is not used: another process may have written
    records since). With ``wait=False`` returns None at once if another process holds the
    lock. Returns the number of records written.

    The store is held for writing throughout (:func:`actstats.store.hold_store_for_writing`);
    `identity` is the store directory's identity as the capture's parent process found it
    (a store moved or replaced since is an ActstatsError, and so is one moved or replaced
    while the run is captured).

    `on_record` is called after each record is marked complete (on the writer's thread),
    `on_steps` with each batch of optimizer steps trained (on this thread, every
    :data:`STEPS_REPORT_SECONDS` or so): the capture's progress bar counts both.
    """
    with hold_store_for_writing(store_path, identity) as store, run_lock(store_path, run_index, blocking=wait) as held:
        if not held:
            return None
        complete = read_complete(store_path, run_index)
        stopped = read_stopped(store_path, run_index)
        return _capture_run(store_path, run_index, run, data, probes, sizes, epoch_indices, complete,
                            on_record, asynchronous, store.check, stopped=stopped, on_steps=on_steps)


def read_stopped(store_path: str, run: int) -> np.ndarray | None:
    """`stopped[run, :]` as it is in the store now (None: the store has no `stopped`)."""
    group = open_group_read_only(store_path)
    if "stopped" not in group:
        return None
    refuse_special_files(store_path, "stopped")
    try:
        return np.asarray(group["stopped"][run], dtype=bool)
    except DamagedChunkError as exc:
        raise IntegrityError(f"{store_path}: variable 'stopped': {exc}") from None


def _capture_run(store_path, run_index, run, data, probes, sizes, epoch_indices, complete, on_record, asynchronous,
                 check=None, *, stopped=None, on_steps=None):
    torch.set_num_threads(1)
    if stopped is not None and (stopped & complete).any():
        return 0  # train.until ended this run: the records after its stop are never written
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
    trainer.on_steps = on_steps
    writer = Writer(store_path, asynchronous=asynchronous, check=check)
    if check is not None:
        check()
    _remove_leftovers(store_path, run_index, writer)
    written = 0
    try:
        for step, epoch_index in pending:
            trainer.train_until(step)
            # train.until: the first recording moment at or after the stop step ends the run
            stop = trainer.stop_step()
            stops = stop is not None and step >= stop
            # Record a copy of the network on the writer's thread (the second core) while
            # this thread trains on; the copy holds exactly the state of this step.
            snapshot = trainer.snapshot() if asynchronous else trainer.model
            values = functools.partial(trainer.record, snapshot, trainer.until_values(stops))
            writer.submit((run_index, epoch_index, values, trainer.checkpoint(epoch_index), on_record))
            written += 1
            if stops:
                break
        else:
            # Train to train.epochs even past the last record: the run is the run the config
            # describes, whatever moments are recorded (and benchmarks compare like with like).
            # Not after a train.until stop: that run ends at its stop.
            trainer.train_until(int(round(run["train"]["epochs"] * trainer.spe)))
        writer.close()
    except BaseException:
        # Stopping (an error, SIGINT, SIGTERM): the record being written is finished, the
        # queued ones are dropped, as a kill would drop them (--resume writes them).
        writer.close(abandon=True)
        raise
    return written


def config_of(store_attrs: dict) -> dict:
    return json.loads(store_attrs["sweep"])
