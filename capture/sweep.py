"""`actstats capture`: lay out the store for a whole sweep, then train and record its runs."""

from __future__ import annotations

import functools
import multiprocessing
import os
import uuid
from typing import Any

import numpy as np

from actstats.errors import ActstatsError
from actstats.options import progress_enabled
from actstats.store import StoreContents, StoreLayout, canonical_json, is_local, local_path, prepare_store
from capture.config import CaptureConfig, load_config
from capture.data import data_fingerprint, load_dataset
from capture.recorder import capture_run, record_steps, select_probes


def _layout_and_coordinates(config: CaptureConfig):
    data = load_dataset(config.runs[0]["dataset"], config.source)
    probes = select_probes(data, config.runs[0]["dataset"])
    epochs = config.epochs
    runs = config.runs
    n_features = data.x_train.shape[1]
    max_depth = max(r["model"]["depth"] for r in runs)
    max_width = max(max(r["model"]["width"]) for r in runs)
    optional = {"readout_weight", "readout_bias", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "diverged"}
    if any(r["record"]["delta"] for r in runs):
        optional.add("delta")
    if any(r["record"]["weight_grad"] for r in runs):
        optional.add("weight_grad")
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

    Returns a summary: runs, records written, records already complete.
    """
    import zarr

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

    group = zarr.open_group(store_path, mode="r")
    complete = np.asarray(group["complete"][...])
    epochs = list(config.epochs)
    jobs = []
    for i, run in enumerate(config.runs):
        indices = [epochs.index(e) for e in run["record"]["epochs"]]
        if not complete[i, indices].all():
            jobs.append((i, run, indices))
    total = sum(int((~complete[i, idx]).sum()) for i, _, idx in jobs)
    sizes = layout.sizes()
    from tqdm.auto import tqdm

    written = 0
    with tqdm(total=total, desc="capture", unit="record", disable=not progress_enabled(progress)) as bar:
        if scheduler:
            written = _capture_on_cluster(scheduler, config_path, store_path, jobs, sizes, bar, asynchronous)
        elif workers == 1 or len(jobs) <= 1:
            # Runs that another process is capturing (its lock is held) are left for later,
            # then waited for; a run that process left unfinished (killed) is finished here.
            for wait in (False, True):
                deferred = []
                for i, run, indices in jobs:
                    bar.set_postfix_str(f"run {i}")
                    count = capture_run(store_path, i, run, data, probes, sizes, indices, None,
                                        lambda: bar.update(1), asynchronous, wait=wait)
                    if count is None:
                        deferred.append((i, run, indices))
                    else:
                        written += count
                jobs = deferred
        else:
            written = _capture_parallel(config_path, store_path, jobs, sizes, workers, bar, asynchronous)
    return {"runs": len(config.runs), "written": written, "already_complete": int(complete.sum())}


def _worker(args):
    config_path, store_path, run_index, indices, sizes, asynchronous, progress_queue = args
    config = load_config(config_path)
    run = config.runs[run_index]
    data = load_dataset(run["dataset"], config.source)
    probes = select_probes(data, run["dataset"])
    return capture_run(
        store_path, run_index, run, data, probes, sizes, indices, None,
        None if progress_queue is None else lambda: progress_queue.put(1), asynchronous,
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


def _capture_on_cluster(scheduler, config_path, store_path, jobs, sizes, bar, asynchronous) -> int:
    """One task per run on the cluster at `scheduler`; each task takes its run's lock as a
    local worker process does. Returns the number of records written; the first failed run
    raises (one line) and the runs not yet started are cancelled."""
    from actstats.cluster import scheduler_client

    with scheduler_client(scheduler) as client:
        return _submit_runs(client, config_path, store_path, jobs, sizes, bar, asynchronous)


def _submit_runs(client, config_path, store_path, jobs, sizes, bar, asynchronous) -> int:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    config_path, store_path = os.path.abspath(config_path), os.path.abspath(store_path)
    tag = uuid.uuid4().hex[:8]
    futures = {
        client.submit(_cluster_worker, (config_path, store_path, i, idx, sizes, asynchronous, None),
                      key=f"actstats-capture-{tag}-run-{i}", pure=False, retries=0): i
        for i, _, idx in jobs
    }
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
            bar.update(count)
    except BaseException:
        client.cancel(list(futures))  # the runs not started yet (a running task goes on until its run ends)
        raise
    return written


def _capture_parallel(config_path, store_path, jobs, sizes, workers, bar, asynchronous) -> int:
    """Runs in `workers` processes; each writes only its own runs' chunks (disjoint regions).
    Returns the number of records written."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    progress_queue = manager.Queue()
    written = 0
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {
                pool.submit(_worker, (config_path, store_path, i, idx, sizes, asynchronous, progress_queue))
                for i, _, idx in jobs
            }
            while futures:
                done, futures = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                while not progress_queue.empty():
                    bar.update(progress_queue.get())
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
            while not progress_queue.empty():
                bar.update(progress_queue.get())
    finally:
        manager.shutdown()
    return written
