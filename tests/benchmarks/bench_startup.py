"""Start-up: ``actstats --help`` and ``actstats info STORE`` against the goal of 0.5 s each.

Each command runs in a fresh process, N times interleaved (the page cache warm after the first
round); the wall time of the whole process is measured from here (interpreter start, imports,
work and exit), as a user at a terminal sees it. Beside them: ``python -c pass`` (the floor of
any Python command) and ``info`` through ``open_store`` (the path it takes when the direct
reader cannot vouch for a store: xarray, zarr and dask imported, every array wrapped for dask).

Usage: python tests/benchmarks/bench_startup.py [--store PATH] [--repeat N]
(without --store a small synthetic store is written in a temporary directory)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ACTSTATS = os.path.join(os.path.dirname(sys.executable), "actstats")
GOAL_SECONDS = 0.5

SLOW_INFO = (
    "import sys\n"
    "from actstats.store import summary\n"
    "def refuse(*args, **kwargs):\n"
    "    raise summary.NotServed('benchmark: the open_store path')\n"
    "summary.store_summary = refuse\n"
    "from actstats.cli import main\n"
    "sys.exit(main(['info', sys.argv[1]]))\n"
)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store for info (default: a small synthetic one)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            from actstats.synthetic import write_synthetic_store

            store = write_synthetic_store(os.path.join(tmp, "s.zarr"), runs=8, epochs=6, layers=3, samples=64,
                                          units=32)
        variants = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "actstats --help": [ACTSTATS, "--help"],
            "actstats info STORE": [ACTSTATS, "info", store],
            "info through open_store": [sys.executable, "-c", SLOW_INFO, store],
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for name, command in variants.items():  # warm-up: page cache, bytecode caches
            timed(command)
        for _ in range(args.repeat):
            for name, command in variants.items():
                times[name].append(timed(command))
    print(f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; {args.repeat} interleaved runs; "
          f"store {'given' if args.store else 'synthetic (8 runs)'}")
    print()
    print("| command | median s | min s | max s | goal |")
    print("|---|---:|---:|---:|---|")
    for name, values in times.items():
        goal = ""
        if name in ("actstats --help", "actstats info STORE"):
            goal = ("met" if statistics.median(values) < GOAL_SECONDS else "not met") + f" (< {GOAL_SECONDS} s)"
        print(f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} | {goal} |")


if __name__ == "__main__":
    main()
