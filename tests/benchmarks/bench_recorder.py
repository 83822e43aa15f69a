"""capture.Recorder's overhead on a user's training loop, against histogram logging.

One loop, measured side by side in one process: a user's nn.Sequential (3 x 128 sigmoid) on
digits (1438 training rows), SGD, batch 32, one torch thread (as capture trains). Variants:

- ``loop alone``          the baseline
- ``Recorder``            capture.Recorder, a record at every epoch (500 training + 359 held-out
                          probes; activations, pre-activations, delta, weights, weight_grad),
                          written on its writer thread
- ``Recorder, sync``      the same with ``asynchronous=False`` (writes on the training thread)
- ``Recorder, no fsync``  the same (on its writer thread) without an fsync per chunk
- ``wandb.watch-style``   what ``wandb.watch(model, log="all", log_freq=100)`` computes: every
                          100 steps a 64-bin histogram (``torch.histc``) of each parameter and
                          its gradient, kept and appended to a file (wandb itself is not
                          installed here: no network, no service process)
- ``TensorBoard``         ``SummaryWriter.add_histogram`` at every epoch of each layer's
                          pre-activations and activations on the same probes, and of each
                          parameter and its gradient

Each variant runs ``--repeat`` times, interleaved, and the median is reported with its ratio to
the baseline and its cost per epoch beyond the loop's. Not a test: nothing is asserted (docs/benchmarks.md, "Recorder").

Usage: python tests/benchmarks/bench_recorder.py [--epochs 10] [--repeat 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from actstats.capture.data import load_digits  # noqa: E402

F = torch.nn.functional
WIDTH, DEPTH, N_TRAIN = 128, 3, 1438
BATCH = 32


def data():
    x, y = load_digits()
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def model():
    torch.manual_seed(0)
    layers, fan_in = [], 64
    for _ in range(DEPTH):
        layers += [torch.nn.Linear(fan_in, WIDTH), torch.nn.Sigmoid()]
        fan_in = WIDTH
    return torch.nn.Sequential(*layers, torch.nn.Linear(fan_in, 10))


def train_epoch(net, optimizer, x, y, epoch, after_step=None):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
    net.train()
    for rows in order.split(BATCH):
        optimizer.zero_grad()
        F.cross_entropy(net(x[rows]), y[rows]).backward()
        optimizer.step()
        if after_step is not None:
            after_step()


def run(variant: str, epochs: int, directory: str) -> float:
    from actstats.capture import Recorder

    x, y, x_test, y_test = data()
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    probes = {"train": (x[:500], y[:500]), "test": (x_test, y_test)}
    path = os.path.join(directory, f"{variant.replace(' ', '_').replace(',', '')}.zarr")
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    if variant.startswith("Recorder"):
        import actstats.capture.recorder

        saved = actstats.capture.recorder.FSYNC
        actstats.capture.recorder.FSYNC = variant != "Recorder, no fsync"
        try:
            with Recorder(path, net, probes=probes, loss=F.cross_entropy, epochs=range(epochs + 1),
                          asynchronous=variant != "Recorder, sync") as rec:
                rec.record(epoch=0)
                for epoch in range(1, epochs + 1):
                    train_epoch(net, optimizer, x, y, epoch)
                    rec.record(epoch=epoch)
        finally:
            actstats.capture.recorder.FSYNC = saved
    elif variant == "wandb.watch-style":
        step, kept = [0], []
        log = open(os.path.join(directory, "watch.jsonl"), "w")

        def after_step():
            step[0] += 1
            if step[0] % 100:
                return
            entry = {}
            for name, p in net.named_parameters():
                for key, t in ((name, p.detach()), (f"{name}.grad", p.grad)):
                    entry[key] = [float(t.min()), float(t.max()), torch.histc(t.float(), bins=64).tolist()]
            kept.append(entry)
            log.write(json.dumps(entry) + "\n")

        for epoch in range(1, epochs + 1):
            train_epoch(net, optimizer, x, y, epoch, after_step)
        log.close()
    elif variant == "TensorBoard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(directory, "tb"))
        probe_x = torch.cat([probes["train"][0], probes["test"][0]])

        def histograms(epoch):
            seen = {}
            hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.update({f"z{k}": i[0], f"h{k}": o}))
                     for k, m in enumerate(net) if isinstance(m, torch.nn.Sigmoid)]
            with torch.no_grad():
                net(probe_x)
            for hook in hooks:
                hook.remove()
            for name, values in seen.items():
                writer.add_histogram(name, values, epoch)
            for name, p in net.named_parameters():
                writer.add_histogram(name, p.detach(), epoch)
                if p.grad is not None:
                    writer.add_histogram(f"{name}.grad", p.grad, epoch)

        histograms(0)
        for epoch in range(1, epochs + 1):
            train_epoch(net, optimizer, x, y, epoch)
            histograms(epoch)
        writer.close()
    else:
        for epoch in range(1, epochs + 1):
            train_epoch(net, optimizer, x, y, epoch)
    return time.perf_counter() - start


VARIANTS = ("loop alone", "Recorder", "Recorder, sync", "Recorder, no fsync", "wandb.watch-style", "TensorBoard")


def main(argv=None) -> None:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per step (fewer: more training per epoch)")
    args = parser.parse_args(argv)
    BATCH = args.batch
    torch.set_num_threads(1)
    directory = tempfile.mkdtemp(prefix="actstats-bench-recorder-")
    times = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.repeat):
            for variant in VARIANTS:
                times[variant].append(run(variant, args.epochs, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    base = statistics.median(times["loop alone"])
    print(f"{args.epochs} epochs of {-(-N_TRAIN // BATCH)} steps (batch {BATCH}), {DEPTH} x {WIDTH} sigmoid, "
          f"median of {args.repeat}")
    print("| variant | median | ratio to the loop alone | cost per epoch beyond the loop |\n|---|---:|---:|---:|")
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        extra = (median - base) / args.epochs * 1000
        print(f"| {variant} | {median:.2f} s | {median / base:.2f}x | {extra:.0f} ms |")


if __name__ == "__main__":
    main()
