"""`actstats capture`: lay out the store for a whole sweep, then train and record its runs.

Writers and replacers: once the store is prepared, the capture holds it for writing
(:func:`actstats.store.hold_store_for_writing`, a shared lock on the store directory) until
it returns, and so does every worker while it writes a run; ``--overwrite`` of the store
is refused meanwhile. The directory's identity found here is handed to the workers, so a
store moved or replaced between this process preparing it and a worker writing it stops
the capture (one line) instead of being written into.

Signals: SIGINT (Ctrl-C) and SIGTERM stop the whole capture with one line on stderr,
exit 130 and 143 (:class:`Terminated`). With ``--workers``, the worker processes ignore
SIGINT (a terminal sends it to the whole process group: only this process reacts) and
die of SIGTERM, which this process sends them as it stops; a worker whose parent has
gone (killed with SIGKILL) exits by itself within a second. No worker is left running and
none prints a traceback. A worker killed mid-record leaves what any kill leaves (records
not marked complete, perhaps a temporary file), which ``--resume`` finishes identically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from actstats.errors import ActstatsError, IntegrityError
from actstats.options import progress_bar, progress_enabled, progress_shown
from actstats.store.chunks import DamagedChunkError
from actstats.store import (
    open_group_read_only,
    refuse_special_files,
    StoreContents,
    StoreLayout,
    canonical_json,
    hold_store_for_writing,
    is_local,
    local_path,
    prepare_store,
)
from actstats.capture.config import CaptureConfig, load_config
from actstats.capture.data import data_fingerprint, load_dataset
from actstats.capture import recorder
from actstats.capture.recorder import capture_run, record_steps, select_probes, steps_per_epoch


class Terminated(ActstatsError):
    """The capture received SIGTERM: exit code 143, as a shell reports death by SIGTERM."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def _stop_on_sigterm():
    """While the capture runs (in the main thread), SIGTERM raises :class:`Terminated` there,
    once: a second SIGTERM during the cleanup that follows is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        if not received:
            received.append(signum)
            raise Terminated("terminated (SIGTERM); records marked complete are kept: run again with --resume to finish")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _layout_and_coordinates(config: CaptureConfig):
    data = load_dataset(config.runs[0]["dataset"], config.source)
    probes = select_probes(data, config.runs[0]["dataset"])
    epochs = config.epochs
    runs = config.runs
    n_features = data.x_train.shape[1]
    max_depth = max(r["model"]["depth"] for r in runs)
    max_width = max(max(r["model"]["width"]) for r in runs)
    optional = {"readout_weight", "readout_bias", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "diverged"}
    if any(r["record"]["preactivation"] for r in runs):
        optional.add("preactivation")
    if any(r["record"]["delta"] for r in runs):
        optional.add("delta")
    if any(r["record"]["weight_grad"] for r in runs):
        optional.add("weight_grad")
    if any("until" in r["train"] for r in runs):  # absent otherwise: stores made before keep their layout
        optional |= {"stopped", "until_epoch"}
    layout = StoreLayout(
        n_runs=len(runs),
        epochs=epochs,
        n_layers=max_depth,
        n_units=max_width,
        n_fan_in=max(n_features, max_width),
        n_classes=data.n_classes,
        n_features=n_features,
        n_samples=len(probes.x),
        optional=frozenset(optional),
    )
    step = np.full((len(runs), len(epochs)), -1, dtype=np.int64)
    width = np.zeros((len(runs), max_depth), dtype=np.int64)
    for i, run in enumerate(runs):
        for e, s in zip(run["record"]["epochs"], record_steps(run, len(data.x_train))):
            step[i, epochs.index(e)] = s
        width[i, : run["model"]["depth"]] = run["model"]["width"]
    coords = {
        "run": np.arange(len(runs)),
        "epoch": np.asarray(epochs, dtype=np.float64),
        "layer": np.arange(1, max_depth + 1),
        "unit": np.arange(max_width),
        "fan_in": np.arange(layout.n_fan_in),
        "class": np.arange(data.n_classes),
        "feature": np.arange(n_features),
        "sample": np.arange(len(probes.x)),
        "step": step,
        "split": probes.split,
        "label": probes.y,
        "source_index": probes.source_index,
        "width": width,
        "depth": np.array([r["model"]["depth"] for r in runs]),
        "activation_fn": np.array([r["model"]["activation"] for r in runs]),
        "init": np.array([r["model"]["init"] for r in runs]),
        "optimizer": np.array([r["train"]["optimizer"] for r in runs]),
        "lr": np.array([float(r["train"]["lr"]) for r in runs]),
        "batch_size": np.array([r["train"]["batch_size"] for r in runs]),
        "seed": np.array([r["train"]["seed"] for r in runs]),
        "dataset": np.array([r["dataset"]["name"] for r in runs]),
        "config": np.array([canonical_json(r) for r in runs]),
    }
    return layout, coords, data, probes


def _root_attributes(config: CaptureConfig) -> dict[str, Any]:
    import torch

    return {
        "torch_version": torch.__version__,
        "sweep": canonical_json(config.sweep),
        "config_text": config.text,
    }


def capture(
    config_path: str,
    store_path: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool | None = None,
    asynchronous: bool = True,
) -> dict:
    """Capture the sweep of `config_path` into `store_path`.

    An existing store is refused unless `resume` (continue it: only records not yet marked
    complete are trained and written; the config must be the one the store was made with)
    or `overwrite` (replace it) is given. With `resume` and no store, a new one is made.

    Several captures of one store may run at once (``--resume`` each; also what `workers`
    does): the store is created by one of them (atomically, see
    :func:`actstats.store.create_store`) and the others join it; each run is captured by
    one process at a time under its lock (:func:`capture.recorder.run_lock`), and a
    process returns once every run is complete, finishing any run whose capturing
    process died. Without `resume`, a capture that finds the store created meanwhile is
    refused like one that found it at the start.

    With a dask.distributed scheduler named (``--scheduler``, ``$ACTSTATS_SCHEDULER`` or
    ``actstats.set_options(scheduler=...)``), each run is one task on that cluster
    (``client.submit``) instead of a local process, and `workers` is not used: the cluster's
    workers and threads decide how many runs train at once. The run locks, resuming and
    skipping of complete runs are the same. The workers must have ``actstats[capture]``
    installed and see `config_path` and `store_path` at the same absolute paths (the same
    machine, or a shared file system whose locks work).

    `store_path` is a local path (or a ``file://`` URL): capture does not write to other
    fsspec URLs; capture locally and copy the store there.

    Where progress is shown (a bar, or the one-line log), one line on stderr first names the
    work left and the time it should take (:func:`estimate_capture`), and the progress counts
    training steps, a record as the steps it costs.

    Returns a summary: runs, records written, records already complete, and the estimate's
    seconds (``estimated_seconds``; None when none was made).
    """
    with _stop_on_sigterm():
        return _capture(config_path, store_path, resume=resume, overwrite=overwrite, workers=workers,
                        progress=progress, asynchronous=asynchronous)


def _capture(config_path, store_path, *, resume, overwrite, workers, progress, asynchronous) -> dict:
    from actstats.cluster import check_scheduler, scheduler_address

    if resume and overwrite:
        raise ActstatsError("--resume and --overwrite exclude each other")
    if workers < 1:
        raise ActstatsError(f"--workers {workers}: must be at least 1")
    store_path = os.fspath(store_path)
    if not is_local(store_path):
        raise ActstatsError(
            f"{store_path}: capture writes to a local path or a file:// URL only; capture locally, then copy the store"
        )
    store_path = local_path(store_path)
    config = load_config(config_path)
    scheduler = scheduler_address()
    if scheduler:
        check_scheduler(scheduler)  # before any store is made: an absent scheduler fails here
    # The data set is loaded only after the checks that may refuse the store (see prepare_store).
    prepared = functools.cache(lambda: _layout_and_coordinates(config))

    def contents() -> StoreContents:
        layout, coords, _, probes = prepared()
        attributes = {**_root_attributes(config), "data_fingerprint": fingerprint()}
        return StoreContents(layout, coords, attributes, probes.x)

    def fingerprint() -> dict:  # the data this capture is made from: --resume compares it
        return data_fingerprint(config.runs[0]["dataset"], prepared()[2])

    mode = "resume" if resume else "overwrite" if overwrite else "create"
    prepare_store(store_path, mode, contents=contents, sweep=canonical_json(config.sweep),
                  data_fingerprint=fingerprint)
    layout, _, data, probes = prepared()

    with hold_store_for_writing(store_path) as store:  # --overwrite is refused from here on
        group = open_group_read_only(store_path)
        if group.attrs.get("sweep") != canonical_json(config.sweep):  # replaced since prepare_store
            raise ActstatsError(f"{store_path}: the store was replaced by another capture's while this one started; stopped")
        return _capture_runs(config, config_path, store_path, store.identity, group, layout, data, probes,
                             workers, scheduler, progress, asynchronous)


def _capture_runs(config, config_path, store_path, identity, group, layout, data, probes, workers, scheduler,
                  progress, asynchronous) -> dict:
    refuse_special_files(store_path, "complete")
    try:
        complete = np.asarray(group["complete"][...])
    except DamagedChunkError as exc:  # e.g. a FIFO in its place: refused, not read for ever
        raise IntegrityError(f"{store_path}: variable 'complete': {exc}") from None
    # train.until: a run that stopped (a complete record marked `stopped`) is done; its later
    # records are never written
    if "stopped" in group:
        refuse_special_files(store_path, "stopped")
        try:
            done = (np.asarray(group["stopped"][...], dtype=bool) & complete).any(axis=1)
        except DamagedChunkError as exc:
            raise IntegrityError(f"{store_path}: variable 'stopped': {exc}") from None
    else:
        done = np.zeros(len(config.runs), dtype=bool)
    epochs = list(config.epochs)
    jobs = []
    for i, run in enumerate(config.runs):
        indices = [epochs.index(e) for e in run["record"]["epochs"]]
        if not done[i] and not complete[i, indices].all():
            jobs.append((i, run, indices))
    sizes = layout.sizes()
    work = [run_work(run, idx, complete[i], len(data.x_train)) for i, run, idx in jobs]
    serial = not scheduler and (workers == 1 or len(jobs) <= 1)
    estimate = None
    if jobs and progress_shown(progress):  # said where the progress is shown, before training
        chunks = {name: array.chunks for name, array in group.arrays()}
        estimate = estimate_capture(config, store_path, jobs, work, data, probes, sizes, chunks,
                                    processes=1 if serial or scheduler else min(workers, len(jobs)),
                                    cluster=bool(scheduler), asynchronous=asynchronous)
        print(estimate.line(), file=sys.stderr, flush=True)

    written = 0
    records, steps = sum(w.records for w in work), sum(w.steps for w in work)
    record_steps = estimate.record_steps if estimate else 1
    # A bar counts training steps (records in its postfix); the one-line log counts records
    terminal = progress_enabled(progress)
    with progress_bar(total=steps + records * record_steps if terminal else records, desc="capture",
                      unit="step" if terminal else "record", progress=progress) as bar:
        bar = _Progress(bar, records=records, steps=steps, record_steps=record_steps)
        if scheduler:
            # No identity for the cluster's workers: a device number is per host (NFS); each
            # worker checks against the store it finds at the path once it holds it.
            written = _capture_on_cluster(scheduler, config_path, store_path, jobs, sizes, bar, asynchronous,
                                          work=work)
        elif serial:
            # Runs that another process is capturing (its lock is held) are left for later,
            # then waited for; a run that process left unfinished (killed) is finished here.
            for wait in (False, True):
                deferred = []
                for i, run, indices in jobs:
                    bar.set_run(i)
                    count = capture_run(store_path, i, run, data, probes, sizes, indices, None, bar.record,
                                        asynchronous, wait=wait, identity=identity, on_steps=bar.add)
                    if count is None:
                        deferred.append((i, run, indices))
                    else:
                        written += count
                jobs = deferred
        else:
            written = _capture_parallel(config_path, store_path, jobs, sizes, workers, bar, asynchronous, identity)
        bar.finish()  # runs that train.until stopped never write their later records
    return {"runs": len(config.runs), "written": written, "already_complete": int(complete.sum()),
            "estimated_seconds": None if estimate is None else estimate.seconds}


#: In a worker process of :func:`_capture_parallel`: where it reports its progress, as
#: (training steps, records written).
_PROGRESS_QUEUE = None


def _start_worker(progress_queue, parent: int) -> None:
    """Initialise a worker process: SIGINT ignored (the parent stops the workers), SIGTERM
    kills it at once, and it exits by itself once its parent is gone."""
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # the parent was killed: as if this worker had been killed with it

    threading.Thread(target=watch, name="actstats-parent-watch", daemon=True).start()


def _worker(args):
    config_path, store_path, run_index, indices, sizes, asynchronous, identity = args
    progress_queue = _PROGRESS_QUEUE
    config = load_config(config_path)
    run = config.runs[run_index]
    data = load_dataset(run["dataset"], config.source)
    probes = select_probes(data, run["dataset"])
    return capture_run(
        store_path, run_index, run, data, probes, sizes, indices, None,
        None if progress_queue is None else lambda: progress_queue.put((0, 1)), asynchronous, identity=identity,
        on_steps=None if progress_queue is None else lambda steps: progress_queue.put((steps, 0)),
    )


def _cluster_worker(args):
    """:func:`_worker` as a task on a dask.distributed worker, which may be on another host."""
    store_path = args[1]
    if not os.path.isfile(os.path.join(store_path, "zarr.json")):
        import socket

        raise ActstatsError(
            f"{store_path}: not found by the cluster worker on {socket.gethostname()}; capture on a "
            "cluster needs the store on a file system that every worker sees at the same path"
        )
    return _worker(args)


def _capture_on_cluster(scheduler, config_path, store_path, jobs, sizes, bar, asynchronous, *, work=None) -> int:
    """One task per run on the cluster at `scheduler`; each task takes its run's lock as a
    local worker process does. Returns the number of records written; the first failed run
    raises (one line) and the runs not yet started are cancelled."""
    from actstats.cluster import scheduler_client

    with scheduler_client(scheduler) as client:
        return _submit_runs(client, config_path, store_path, jobs, sizes, bar, asynchronous, work=work)


def _submit_runs(client, config_path, store_path, jobs, sizes, bar, asynchronous, *, work=None) -> int:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    config_path, store_path = os.path.abspath(config_path), os.path.abspath(store_path)
    tag = uuid.uuid4().hex[:8]
    futures = {
        client.submit(_cluster_worker, (config_path, store_path, i, idx, sizes, asynchronous, None),
                      key=f"actstats-capture-{tag}-run-{i}", pure=False, retries=0): i
        for i, _, idx in jobs
    }
    steps = {i: w.steps for (i, _, _), w in zip(jobs, work)} if work else {}
    written = 0
    try:
        for future in as_completed(futures, loop=client.loop):
            run = futures[future]
            try:
                count = future.result()
            except (ActstatsError, OSError):
                raise
            except KilledWorker:
                raise ActstatsError(
                    f"{store_path}: the cluster worker capturing run {run} died (killed, or out of memory); records "
                    "marked complete are kept: run the capture again with --resume to finish"
                ) from None
            except ImportError as exc:
                raise ActstatsError(
                    f"run {run}: the cluster's workers cannot import capture ({exc}); install actstats[capture] where they run"
                ) from None
            except Exception as exc:
                raise ActstatsError(f"{store_path}: run {run} failed on the cluster ({type(exc).__name__}: {exc})") from exc
            written += count
            if isinstance(bar, _Progress):  # a run's steps and records, reported as it ends
                bar.add(steps.get(run, 0), count)
            else:
                bar.update(count)
    except BaseException:
        client.cancel(list(futures))  # the runs not started yet (a running task goes on until its run ends)
        raise
    return written


def _capture_parallel(config_path, store_path, jobs, sizes, workers, bar, asynchronous, identity=None) -> int:
    """Runs in `workers` processes; each writes only its own runs' chunks (disjoint regions).
    Returns the number of records written. However this ends (an error, SIGINT, SIGTERM),
    no worker process outlives it (see the module header)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()  # handed to the workers as they start: no manager process

    def drain():
        while True:
            try:
                steps, records = progress_queue.get_nowait()
            except Exception:  # queue.Empty
                return
            bar.add(steps, records)

    written = 0
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(progress_queue, os.getpid()))
    try:
        futures = {
            pool.submit(_worker, (config_path, store_path, i, idx, sizes, asynchronous, identity))
            for i, _, idx in jobs
        }
        while futures:
            done, futures = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                if future.exception() is not None:  # e.g. a full disk: start no other run
                    for other in futures:
                        other.cancel()
                try:
                    written += future.result()  # re-raises a worker's error
                except BrokenProcessPool:
                    raise ActstatsError(
                        f"{store_path}: a capture worker process died (killed, or out of memory); records "
                        "marked complete are kept: run the capture again with --resume to finish"
                    ) from None
        drain()
    except BaseException:
        _stop_workers(pool)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        progress_queue.close()
        progress_queue.cancel_join_thread()
    return written


def _stop_workers(pool, timeout: float = 10.0) -> None:
    """Terminate `pool`'s worker processes (SIGTERM: they die at once, as if killed: what they
    were writing is finished by ``--resume``) and wait for them, so that none outlives the
    capture."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)


# -- the estimate printed before training, and the progress bar's units ------------------

#: Seconds the calibration of network shapes may take (it measures at least one shape; the
#: other shapes of a sweep use the work-weighted mean of those measured).
CALIBRATION_SECONDS = 0.5

#: The first network a process makes pays one-time lazy imports (torch's compiler stack, at
#: the first optimizer): measured once in this process, kept here.
_first_network_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RunWork:
    """What is left of one run: records to write and optimizer steps to train (from the step
    of its last complete record, whose checkpoint --resume restores, to ``train.epochs``)."""

    records: int
    steps: int
    epochs: float  # the training epochs those steps span (train.until's checks: one an epoch)
    until: bool  # train.until may end the run sooner: records and steps are upper bounds


@dataclass(frozen=True, slots=True)
class ShapeCost:
    """Seconds one network shape costs, measured on this machine with one intra-op thread:
    CPU time, except the writes (time waiting for the disk)."""

    setup: float  # making the run's network, optimizer and data tensors
    step: float  # one optimizer step (forward, backward, update)
    record: float  # one record's passes over both splits, its copy of the network and checkpoint
    record_io: float  # writing one record's chunk files, manifest, checkpoint and flag, fsync'd
    epoch: float  # per epoch: train.until's evaluation and dataset.fresh's new rows


class _Timer:
    """CPU time of this thread and wall time between `start` and `stop`; the totals give the
    share of a core this thread had meanwhile."""

    def __init__(self):
        self.cpu_total = self.wall_total = 0.0

    def start(self) -> None:
        self._cpu, self._wall = time.thread_time(), time.perf_counter()

    def stop(self) -> float:
        """The CPU seconds since `start`."""
        cpu, wall = time.thread_time() - self._cpu, time.perf_counter() - self._wall
        self.cpu_total += cpu
        self.wall_total += wall
        return cpu

    def wall(self) -> float:
        return time.perf_counter() - self._wall


@dataclass(frozen=True, slots=True)
class CaptureEstimate:
    """The work left in a capture and the time it should take (:func:`estimate_capture`)."""

    runs: int
    records: int
    steps: int
    at_most: bool
    seconds: float
    processes: int
    cores: int
    cluster: bool
    load: float  # the machine's runnable tasks besides this process (load average, share measured)
    step_seconds: float  # CPU, the work-weighted mean of the shapes measured
    record_seconds: float  # CPU, computing one record (its writes are not counted here)
    record_steps: int  # what the progress bar counts a record as, in training steps

    def line(self) -> str:
        """The line ``actstats capture`` prints before training."""
        most = "at most " if self.at_most else ""
        sooner = "; train.until may end runs sooner" if self.at_most else ""
        if self.cluster:
            how = "for one worker as fast as this machine (the cluster's workers share the runs)"
        elif self.processes == 1:
            how = "in one process"
        else:
            how = f"with {self.processes} workers" + (f" on {self.cores} cores" if self.cores < self.processes else "")
        return (
            f"capture: {most}{self.records:,} records ({self.runs:,} run{'s' if self.runs != 1 else ''}, "
            f"{most}{self.steps:,} training steps{sooner}) to write; about {_duration(self.seconds)} {how} "
            f"(measured here: {self.step_seconds * 1e3:.2g} ms of CPU a training step, "
            f"{self.record_seconds * 1e3:.2g} ms a record; {self.cores} core{'s' if self.cores != 1 else ''}, "
            f"load {self.load:.1f} besides this process)"
        )


def _duration(seconds: float) -> str:
    if seconds < 59.5:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def run_work(run: dict, indices: list[int], complete: np.ndarray, n_train: int) -> RunWork:
    """The records and optimizer steps left in `run` (its record `indices` into the store's
    epochs, `complete` its row of the store's flags), as :func:`capture_run` will train them.

    Examples
    --------
    1438 training rows in batches of 32 are 45 steps an epoch; records at epochs 0, 0.25, 1
    and 2 fall at steps 0, 11, 45 and 90. With the first two complete, training resumes from
    the checkpoint of step 11:

    >>> run = {"train": {"batch_size": 32, "epochs": 2}, "record": {"epochs": [0, 0.25, 1, 2]}}
    >>> run_work(run, [0, 1, 2, 3], np.array([True, True, False, False]), 1438)
    RunWork(records=2, steps=79, epochs=1.7555555555555555, until=False)
    """
    spe = steps_per_epoch(n_train, int(run["train"]["batch_size"]))
    schedule = sorted(zip(record_steps(run, n_train), indices))
    pending = [step for step, e in schedule if not complete[e]]
    if not pending:
        return RunWork(0, 0, 0.0, "until" in run["train"])
    start = max((step for step, e in schedule if complete[e] and step <= pending[0]), default=0)
    end = max(int(round(run["train"]["epochs"] * spe)), pending[-1])
    return RunWork(len(pending), end - start, (end - start) / spe, "until" in run["train"])


def _shape(run: dict) -> str:
    """What a run's cost depends on: runs alike in these are measured once."""
    model, train = run["model"], run["train"]
    return canonical_json({
        "model": [model["depth"], list(model["width"]), model["activation"]],
        "train": [train["optimizer"], train["batch_size"], "until" in train],
        "record": [bool(run["record"][k]) for k in ("preactivation", "delta", "weight_grad")],
        "fresh": bool(run["dataset"].get("fresh")),
    })


#: Files written to time one file of a record (the disk's time to sync varies from file to file).
CALIBRATION_FILES = 6


def _file_seconds(store_path: str, n_bytes: int) -> float:
    """Mean seconds to write a file of `n_bytes` as capture writes a chunk (a temporary file,
    fsync'd when ``recorder.FSYNC``, renamed), timed on :data:`CALIBRATION_FILES` files in a
    directory of the store's ``resume/`` that is removed at once."""
    from actstats.store.chunks import atomic_write

    directory = os.path.join(store_path, "resume", f"calibration-{uuid.uuid4().hex}")
    payload = b"\0" * n_bytes
    os.mkdir(directory)
    try:
        started = time.perf_counter()
        for k in range(CALIBRATION_FILES):
            atomic_write(os.path.join(directory, str(k)), (payload,), fsync=recorder.FSYNC)
        return (time.perf_counter() - started) / CALIBRATION_FILES
    finally:
        for k in range(CALIBRATION_FILES):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, str(k)))
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _measure_shape(run_index: int, run: dict, data, probes, sizes: dict, chunks: dict, write_seconds,
                   timer: _Timer, *, warm_up: bool) -> ShapeCost:
    """Train a throwaway copy of run `run_index` for a few steps and record it once (with
    `warm_up`, after the one-time costs of a first network and a first record are paid)."""
    global _first_network_seconds
    import torch

    from actstats.capture.data import FreshData

    if warm_up:
        started = time.perf_counter()
        recorder.RunTrainer(run_index, run, data, probes, sizes)
        first = time.perf_counter() - started
    timer.start()
    trainer = recorder.RunTrainer(run_index, run, data, probes, sizes)
    setup = timer.stop()
    if warm_up and _first_network_seconds is None:
        _first_network_seconds = max(0.0, first - setup)
    until, trainer.until = trainer.until, None  # its evaluation is timed apart
    trainer.fresh = None  # so is making an epoch's fresh rows
    trainer.train_until(3)  # first steps: allocations, the optimizer's state
    # The first shape's first window pays the first optimizer steps' lazy set-up (imports,
    # read from disk): timed again, and only the second window counts.
    for window in (_Timer(), timer) if warm_up else (timer,):
        first_step = trainer.step
        window.start()
        while trainer.step - first_step < 8 or (window.wall() < 0.05 and trainer.step - first_step < 256):
            trainer.train_until(trainer.step + 4)
        step = window.stop() / (trainer.step - first_step)
    if warm_up:
        trainer.record(trainer.snapshot())  # the first backward pass to the z's pays set-up of its own
    timer.start()
    values = trainer.record(trainer.snapshot(), trainer.until_values())
    buffer = io.BytesIO()
    torch.save(trainer.checkpoint(0), buffer)
    record = timer.stop()
    files, n_bytes = 3, buffer.tell()  # the checkpoint, the record's manifest, its `complete` flag
    for name, value in values.items():
        if name in chunks:
            shape = (1, 1, *np.shape(value))
            files += int(np.prod([-(-n // c) for n, c in zip(shape, chunks[name])])) if np.ndim(value) else 1
            n_bytes += np.asarray(value).nbytes
    epoch = 0.0
    if until is not None:
        timer.start()
        trainer.evaluate(until.metric.split("_")[0])
        epoch += timer.stop()
    if run["dataset"].get("fresh"):  # rows are made one epoch at a time: time a few and scale
        rows = min(100, len(data.x_train))
        timer.start()
        FreshData(run["dataset"], rows).epoch(1)
        epoch += timer.stop() * len(data.x_train) / rows
    return ShapeCost(setup=setup, step=step, record=record, record_io=write_seconds(files, n_bytes), epoch=epoch)


def estimate_capture(config: CaptureConfig, store_path: str, jobs: list, work: list[RunWork], data, probes,
                     sizes: dict, chunks: dict, *, processes: int, cluster: bool = False,
                     asynchronous: bool = True) -> CaptureEstimate:
    """How long the runs of `jobs` (with `work` left each) should take, from a calibration on
    this machine: a throwaway copy of each network shape (a fraction of a second in all,
    :data:`CALIBRATION_SECONDS`) trained for a few steps and recorded once, and
    :data:`CALIBRATION_FILES` files written and fsync'd in the store's ``resume/`` directory
    (removed at once).

    The model of the time: each of `processes` processes captures its runs one after the
    other; a run computes (set-up, training steps, records: CPU time measured) as if on one
    core, since its writer thread computes records under the same interpreter lock as
    training (measured: training ran 1.5x slower beside it), while the records' writes,
    which wait for the disk, overlap training (asynchronous). Each process gets an equal
    share of the cores among all runnable tasks, at most a core: the machine's other work
    counts (the load average, or the share of a core the calibration had, whichever says
    busier). On a shared two-core machine at load 7.7 the default sweep with 2 workers took
    2.7 min where the calibration's wall time alone had predicted 47 s; this model, measured
    at load 4-5, said 1.6-2.0 min, 2.7-3.3 min once scaled to that load.

    Worker processes first import torch and its compiler stack: counted as twice this
    process's one-time cost of its first network (the two imports take about as long,
    measured here), not measured apart; two workers starting at once on a loaded machine
    took longer (12 s where 3 s were counted). Not counted either: a slower machine or disk
    later on.

    Nothing the capture trains is touched: the copies are made with torch's random state
    saved and restored (``torch.random.fork_rng``) and the thread count put back, and the
    capture makes its own networks from the config's seeds (tests/test_capture_estimate.py
    checks the store is bit-identical with and without the estimate).
    """
    import torch

    total_steps = sum(w.steps for w in work)
    by_shape: dict[str, list[int]] = {}
    for k, (i, run, _) in enumerate(jobs):
        by_shape.setdefault(_shape(run), []).append(k)
    order = sorted(by_shape, key=lambda s: -sum(work[k].steps + 1 for k in by_shape[s]))

    per_file: list[float] = []

    def write_seconds(files: int, n_bytes: int) -> float:
        """A record's `files` files of `n_bytes` in all, from files of the first shape's mean size."""
        if not per_file:
            try:
                per_file.append(_file_seconds(store_path, max(1, n_bytes // files)))
            except OSError:  # the capture itself will say what is wrong with the store
                per_file.append(0.0)
        return files * per_file[0]

    costs: dict[str, ShapeCost] = {}
    threads = torch.get_num_threads()
    timer = _Timer()
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(1)  # as capture_run trains
            for shape in order:
                if costs and time.perf_counter() - started > CALIBRATION_SECONDS:
                    break
                i, run, _ = jobs[by_shape[shape][0]]
                costs[shape] = _measure_shape(i, run, data, probes, sizes, chunks, write_seconds, timer,
                                              warm_up=not costs)
            load = 0.0
            if processes > 1 or cluster:  # each run's worker loads the data set again
                first = jobs[0][1]
                timer.start()
                select_probes(load_dataset(first["dataset"], config.source), first["dataset"])
                load = timer.stop()
    finally:
        torch.set_num_threads(threads)

    # Shapes not measured in time: the work-weighted mean of those measured.
    weights = {s: sum(work[k].steps + 1 for k in by_shape[s]) for s in costs}
    mean = ShapeCost(*(
        sum(weights[s] * getattr(costs[s], field.name) for s in costs) / sum(weights.values())
        for field in dataclasses.fields(ShapeCost)
    ))
    # The machine's other work: the busier of the load average (less this process) and what
    # this thread's share of a core during the calibration implies; each of our processes
    # then gets an equal share of the cores among all runnable tasks, at most one core.
    cores = _usable_cores()
    share = timer.cpu_total / timer.wall_total if timer.wall_total > 0 else 1.0
    others = max(0.0, _load_average() - 1, cores / max(share, 1e-3) - 1 if share < 0.95 else 0.0)
    speed = min(1.0, cores / (others + processes))  # of one process: core-seconds a second
    run_seconds, training, records = 0.0, 0.0, 0
    for k, (i, run, _) in enumerate(jobs):
        cost, w = costs.get(_shape(run), mean), work[k]
        train = (w.steps * cost.step + w.epochs * cost.epoch) / speed
        compute = (load + cost.setup + w.records * cost.record) / speed + train
        write = w.records * cost.record_io
        run_seconds += compute + (max(0.0, write - train) if asynchronous else write)
        training += w.steps * cost.step / speed
        records += w.records
    busy = run_seconds / processes
    start = 2 * (_first_network_seconds or 0.0) if processes > 1 else 0.0
    step_cpu = sum(w.steps * costs.get(_shape(run), mean).step for (_, run, _), w in zip(jobs, work))
    # The bar counts training steps and each record as the steps that take as long as the
    # time this estimate puts on records (and set-ups) beyond training, so that its rate and
    # time left follow the estimate rather than the records, which crowd into the first epochs.
    step_wall = training / total_steps if total_steps else mean.step / speed
    beyond = run_seconds - training
    record_steps = max(1, round(beyond / max(1, records) / step_wall)) if step_wall > 0 else 1
    return CaptureEstimate(
        runs=len(jobs), records=records, steps=total_steps, at_most=any(w.until for w in work),
        seconds=busy + start, processes=processes, cores=cores, cluster=cluster, load=others,
        step_seconds=step_cpu / total_steps if total_steps else mean.step, record_seconds=mean.record,
        record_steps=int(record_steps),
    )


def _load_average() -> float:
    """The one-minute load average: runnable tasks, this process included (0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Progress:
    """The capture's progress: training steps and records, a record counted as
    `record_steps` steps, so that the time left follows the work rather than the records
    (which crowd into the first epochs while training fills the later ones).

    On a terminal (tqdm) the bar counts those steps and names the records in its postfix;
    the one-line log (:class:`actstats.options.ProgressLog`) counts records and takes its
    time left from the steps (``set_work``). Thread-safe: the writer thread reports records
    while the training thread reports steps.
    """

    def __init__(self, bar, *, records: int, steps: int, record_steps: int):
        self.bar, self.records, self.record_steps = bar, records, record_steps
        self.records_done, self.done, self.total = 0, 0, steps + records * record_steps
        self.log = hasattr(bar, "set_work")
        self.run = ""
        self.lock = threading.Lock()
        if not self.log:
            bar.unit, bar.unit_scale = "step", True
            if bar.total != self.total:
                bar.reset(total=self.total)

    def set_run(self, run: int) -> None:
        with self.lock:
            self.run = f"run {run}"
            self._postfix()

    def add(self, steps: int = 0, records: int = 0) -> None:
        units = steps + records * self.record_steps
        with self.lock:
            self.done += units
            self.records_done += records
            if self.log:
                self.bar.set_work(self.done, self.total)
                self.bar.update(records)  # writes a line when one is due
            else:
                if records:
                    self._postfix()
                self.bar.update(units)

    def record(self) -> None:
        self.add(records=1)

    def finish(self) -> None:
        """Runs that train.until stopped never write their later records nor train on."""
        with self.lock:
            if self.log:
                self.bar.total = min(self.bar.total, self.bar.n)
                self.bar.set_work(self.done, self.done)
            elif self.bar.n < self.bar.total:
                self.bar.total = self.bar.n
                self.bar.refresh()

    def _postfix(self) -> None:
        counted = "" if self.log else f"{self.records_done}/{self.records} records"
        self.bar.set_postfix_str(", ".join(p for p in (self.run, counted) if p), **({} if self.log else {"refresh": False}))
