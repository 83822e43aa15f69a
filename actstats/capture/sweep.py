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
import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
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
from actstats.capture.recorder import capture_run, record_steps, select_probes
from actstats.capture.estimate import _Progress, estimate_capture, run_work


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
