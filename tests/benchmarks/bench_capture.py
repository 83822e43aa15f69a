"""Capture overhead: wall time of a capture against the same training recording only epoch 0.

Measured side by side in one process, same network (5 x 256 sigmoid, default init, SGD, batch
10, lr 0.1) on digits with every sample as a probe:

- ``init only``       record.epochs = [0]  (the baseline: training plus one record)
- ``log:16``          the default schedule, every variable
- ``every epoch``     record.epochs = [0, 1, ..., E], every variable
- ``every epoch, no fsync``  the same without an fsync per chunk (durability against power loss)
- ``every epoch, sync``  the same with the writer thread off (writes on the training thread)
- ``tensorboard``     the same training, and at every epoch the activations and
                      pre-activations of every layer logged as TensorBoard histograms
- ``plain zarr``      the same training, and at every epoch activations and pre-activations
                      written synchronously with zarr's default codecs (zstd)

Each variant runs `--repeat` times (interleaved) and the median is reported. Also reports
write throughput: actstats' writer against a plain zarr write of the same arrays.

Usage: python tests/benchmarks/bench_capture.py [--epochs 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CONFIG = """
[dataset]
name = "digits"
[model]
depth = 5
width = 256
activation = "sigmoid"
init = "default"
[train]
optimizer = "sgd"
lr = 0.1
batch_size = 10
epochs = {epochs}
seed = 0
[record]
epochs = {schedule}
"""


def _config(directory, epochs, schedule):
    path = os.path.join(directory, f"bench-{abs(hash(schedule))}.toml")
    with open(path, "w") as f:
        f.write(CONFIG.format(epochs=epochs, schedule=schedule))
    return path


def run_capture(directory, epochs, schedule, asynchronous=True, fsync=True):
    from actstats.capture import capture
    from actstats.capture import recorder

    recorder.FSYNC = fsync

    store = os.path.join(directory, "store.zarr")
    shutil.rmtree(store, ignore_errors=True)
    config = _config(directory, epochs, schedule)
    start = time.perf_counter()
    capture(config, store, progress=False, asynchronous=asynchronous)
    elapsed = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) for f in fs)
    shutil.rmtree(store)
    return elapsed, size


def _trainer(directory, epochs):
    import torch

    from actstats.capture.config import load_config
    from actstats.capture.data import load_dataset
    from actstats.capture.recorder import RunTrainer, select_probes

    torch.set_num_threads(1)
    config = load_config(_config(directory, epochs, "[0]"))
    run = config.runs[0]
    data = load_dataset(run["dataset"])
    probes = select_probes(data, run["dataset"])
    sizes = {"unit": 256, "fan_in": 256, "class": 10}
    return RunTrainer(0, run, data, probes, sizes)


def run_tensorboard(directory, epochs):
    """What many users do today: log each layer's activations as histograms every epoch."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    logdir = os.path.join(directory, "tb")
    shutil.rmtree(logdir, ignore_errors=True)
    start = time.perf_counter()
    trainer = _trainer(directory, epochs)
    writer = SummaryWriter(logdir)
    for epoch in range(epochs + 1):
        trainer.train_until(epoch * trainer.spe)
        with torch.no_grad():
            _, zs, hs = trainer.model(trainer.x_probe, keep=True)
        for layer, (z, h) in enumerate(zip(zs, hs), start=1):
            writer.add_histogram(f"activation/{layer}", h, epoch)
            writer.add_histogram(f"preactivation/{layer}", z, epoch)
    writer.close()
    return time.perf_counter() - start


def run_plain_zarr(directory, epochs):
    """A plain synchronous zarr write (default codecs) of activations and pre-activations."""
    import torch
    import zarr

    path = os.path.join(directory, "plain.zarr")
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    trainer = _trainer(directory, epochs)
    n = len(trainer.x_probe)
    group = zarr.open_group(path, mode="w")
    arrays = {
        name: group.create_array(name, shape=(epochs + 1, 5, n, 256), chunks=(1, 1, n, 256), dtype="float32")
        for name in ("activation", "preactivation")
    }
    for epoch in range(epochs + 1):
        trainer.train_until(epoch * trainer.spe)
        with torch.no_grad():
            _, zs, hs = trainer.model(trainer.x_probe, keep=True)
        arrays["activation"][epoch] = np.stack([h.numpy() for h in hs])
        arrays["preactivation"][epoch] = np.stack([z.numpy() for z in zs])
    elapsed = time.perf_counter() - start
    shutil.rmtree(path)
    return elapsed


def write_throughput(directory, repeat=5):
    """MB/s of actstats' record write (capture.chunks: checksum, no compressor) against a
    plain zarr write (default codecs: zstd) of the same arrays."""
    import zarr

    trainer = _trainer(directory, 1)
    values = trainer.record()
    big = {k: v for k, v in values.items() if np.ndim(v) > 1}
    nbytes = sum(v.nbytes for v in big.values())
    from actstats.store import StoreLayout, create_store

    n = len(trainer.x_probe)
    layout = StoreLayout(1, (0.0,), 5, 256, 256, 10, 64, n, frozenset({"delta", "weight_grad", "readout_weight", "readout_bias"}))
    results = {}
    for label in ("actstats", "plain zarr (zstd)"):
        times = []
        for i in range(repeat):
            path = os.path.join(directory, f"w{i}.zarr")
            shutil.rmtree(path, ignore_errors=True)
            if label == "actstats":
                from actstats.store import COORDINATES

                coords = {name: np.zeros([layout.sizes()[d] for d in dims], dtype=object if kind == "str" else None)
                          for name, (dims, kind) in COORDINATES.items()}
                for name, (dims, kind) in COORDINATES.items():
                    if kind == "str":
                        coords[name] = np.full(coords[name].shape, "x")
                create_store(path, layout, coords, {"torch_version": "", "sweep": "{}"}, np.zeros((n, 64)))
                from actstats.capture.chunks import ChunkWriter

                group = zarr.open_group(path, mode="r")
                writers = {k: ChunkWriter(path, k, group[k]) for k in big}
                start = time.perf_counter()
                for k, v in big.items():
                    writers[k].write_block((0, 0), v[None, None])
            else:
                group = zarr.open_group(path, mode="w")
                start = time.perf_counter()
                for k, v in big.items():
                    a = group.create_array(k, shape=v.shape, chunks=(1,) + v.shape[1:], dtype="float32")
                    a[...] = v
            times.append(time.perf_counter() - start)
            shutil.rmtree(path)
        results[label] = nbytes / statistics.median(times) / 1e6
    return nbytes, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    epochs = args.epochs
    every = "[" + ", ".join(str(e) for e in range(epochs + 1)) + "]"
    variants = {
        "init only": lambda d: run_capture(d, epochs, "[0]")[0],
        "log:16": lambda d: run_capture(d, epochs, '"log:16"')[0],
        "every epoch": lambda d: run_capture(d, epochs, every)[0],
        "every epoch, no fsync": lambda d: run_capture(d, epochs, every, fsync=False)[0],
        "every epoch, sync writes": lambda d: run_capture(d, epochs, every, asynchronous=False)[0],
        "tensorboard histograms": lambda d: run_tensorboard(d, epochs),
        "plain zarr (sync, zstd)": lambda d: run_plain_zarr(d, epochs),
    }
    times = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as directory:
        run_capture(directory, 1, "[0]")  # warm up imports and caches
        for _ in range(args.repeat):
            for name, fn in variants.items():
                times[name].append(fn(directory))
        nbytes, throughput = write_throughput(directory)
    base = statistics.median(times["init only"])
    print(f"capture overhead: 5x256 sigmoid on digits (1797 probes), {epochs} epochs, median of {args.repeat}")
    print(f"{'variant':28s} {'seconds':>8s} {'ratio':>6s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:8.2f} {median / base:6.2f}x")
    print(f"\nwrite throughput, one record of the large variables ({nbytes / 1e6:.1f} MB):")
    for label, mbps in throughput.items():
        print(f"  {label:20s} {mbps:7.0f} MB/s")


if __name__ == "__main__":
    main()
