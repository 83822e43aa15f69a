"""Run the numerical tests as another CPU would: numpy's SIMD dispatch narrowed, one BLAS thread.

numpy picks, at import, the widest SIMD kernels the CPU offers (AVX-512, AVX2, ... on x86-64;
SVE, ASIMD extensions on arm64) for its ufuncs (exp, log, sums, sorts) and OpenBLAS picks its
kernel and thread count; each choice can change the last bits of a float. A test whose
tolerance is tighter than the tolerance policy allows (tests/README.md) passes on the machine
it was written on and fails on the next one. This script switches off every SIMD target that
numpy dispatches to beyond its compiled baseline (``NPY_DISABLE_CPU_FEATURES``) and runs the
BLAS with one thread, then runs the numerical tests: a fragile tolerance fails here, on this
machine. ``OPENBLAS_CORETYPE`` is left as the environment sets it.

Usage: ``python tests/portable.py [pytest arguments]`` (``make test-portable``).
"""

from __future__ import annotations

import os
import subprocess
import sys

#: The tests whose numbers depend on floating-point arithmetic (kernels, queries, synthetic
#: stores, the report's verdict numbers). Capture, CLI and fault-injection tests are not
#: repeated: they compare bytes or exit codes, which the SIMD width does not change.
NUMERICAL = [
    "tests/test_kernels_*.py",
    "tests/test_queries*.py",
    "tests/test_synthetic_store.py",
    "tests/test_activations.py",
]


def dispatched_features() -> tuple[list[str], list[str]]:
    """numpy's dispatch targets this CPU has (to disable) and its compiled baseline."""
    from numpy._core import _multiarray_umath as umath

    found = [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]
    return found, list(umath.__cpu_baseline__)


def main(argv: list[str]) -> int:
    import glob

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    disable, baseline = dispatched_features()
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable)
        print(f"portable: numpy SIMD narrowed to its baseline {'+'.join(baseline) or '(none)'} "
              f"(disabled: {' '.join(disable)}); BLAS on one thread", flush=True)
        files = sorted({f for pattern in NUMERICAL for f in glob.glob(os.path.join(root, pattern))})
    else:
        print(f"portable: this CPU has no numpy SIMD target beyond the baseline "
              f"{'+'.join(baseline) or '(none)'}: nothing to narrow; running the plain suite "
              f"with the BLAS on one thread", flush=True)
        files = []
    check = ("import numpy; from numpy._core import _multiarray_umath as u; "
             "print(' '.join(n for n in u.__cpu_dispatch__ if u.__cpu_features__.get(n)))")
    still = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True)
    if disable and still.stdout.strip():
        print(f"portable: numpy did not disable {still.stdout.strip()}", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files, *argv],
                           env=env, cwd=root)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
