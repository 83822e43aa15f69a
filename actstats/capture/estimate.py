"""The line ``actstats capture`` prints before training, and the progress bar's units.

The estimate counts the work left (records, runs, training steps from each run's last
complete record) and times it with a short calibration on this machine: a throwaway copy of
each network shape trained a few steps and recorded once, on its own random state, so the
capture itself trains exactly as without it (tests/test_capture_estimate.py). The progress
counts training steps, a record as its cost in steps, so its time left follows the work
rather than the records, which crowd into the first epochs.

Split from :mod:`actstats.capture.sweep`, which calls :func:`run_work`,
:func:`estimate_capture` and :class:`_Progress`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

from actstats.store import canonical_json
from actstats.capture.config import CaptureConfig
from actstats.capture.data import load_dataset
from actstats.capture import recorder
from actstats.capture.recorder import record_steps, select_probes, steps_per_epoch


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
