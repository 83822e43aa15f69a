"""Compiled kernels: ``numba.njit`` applied on first call, so that importing a kernel module
imports no numba (``import numba`` costs ~0.3 s; ``tests/test_imports.py``).

Every compiled kernel is ``nogil`` (dask's threads run it side by side), cached on disk
(``cache=True``: the first process compiles, later ones load the machine code in
milliseconds; numba keeps the cache beside the module, or in its user cache directory when
that is not writable) and not ``fastmath``: the compiled loop does the float operations in
the order its source says, so a kernel's result can be compared with a numpy expression
of the same order bit for bit, and with any other order within the rounding its docstring
states. Two exceptions, named in their docstrings: the moments and sums of the bounded
summary (``logit_histogram._summary_moments``) and the weight fit's moments
(``moments._moments_lanes_rows``) allow reassociation (``fastmath={"reassoc"}``, no other
flag) so that their sums are vectorised; their bounds are stated for any order of the sums. No ``parallel=True``: the engine already runs one task per chunk on each core.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading

_COMPILE_LOCK = threading.Lock()
_PAUSE_LOCK = threading.Lock()
_pauses = 0  # first calls under way (any thread)
_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the block (and back as it was after the last
    of several overlapping blocks, on any thread).

    A process's first compiled call imports about 90 of numba's modules (its typing and
    lowering registries, ~60k objects that live as long as the process); so many new objects
    start a collection of the oldest generation, a walk over every object the process holds:
    measured, 0.10 s of the 0.21-0.23 s that the first call costs beside xarray, dask and
    scipy (0.11-0.13 s without it; docs/benchmarks.md). Nothing of that collection is
    garbage; collecting is left to the next ordinary collection.
    """
    global _pauses, _collector_was_enabled
    with _PAUSE_LOCK:
        if _pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pauses -= 1
            if _pauses == 0 and _collector_was_enabled:
                gc.enable()


class _Lazy:
    """A function that is compiled by numba on its first call."""

    def __init__(self, func, options):
        self._func = func
        self._options = options
        self._compiled = None
        functools.update_wrapper(self, func)

    def _compile(self):
        with _COMPILE_LOCK:
            if self._compiled is None:
                import numba

                self._compiled = numba.njit(cache=True, nogil=True, **self._options)(self._func)
        return self._compiled

    def __call__(self, *args):
        compiled = self._compiled
        if compiled is None:
            # the first call loads the machine code (and, the first in a process, numba itself):
            # no collection over the objects of its imports (collector_paused)
            with collector_paused():
                return self._compile()(*args)
        return compiled(*args)

    @property
    def py_func(self):
        """The plain Python function (for tests that check the compiled one against it)."""
        return self._func


def jit(func=None, **options):
    """Decorator: ``numba.njit(cache=True, nogil=True, **options)``, applied at the first call.

    A kernel cannot call another lazy kernel from compiled code: keep each one
    self-contained (one loop, one pass over the data).
    """
    if func is None:
        return lambda f: _Lazy(f, options)
    return _Lazy(func, options)
