"""One registry of actstats' options, with a validator each (like xarray's set_options)."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

OPTIONS: dict[str, Any] = {
    # None: a bar on stderr only when stderr is a terminal; False: never; True: always.
    "progress": None,
    # Seconds between the one-line progress reports of capture, verify and report when no bar
    # is shown because stderr is not a terminal (logs, CI); None: no reports (the library's
    # default; the command line sets 30).
    "progress_log": None,
    # Address of a dask.distributed scheduler; None: $ACTSTATS_SCHEDULER, read when a query
    # computes (local threads if it is unset or empty); False: local threads regardless.
    "scheduler": None,
    # Seconds to wait for the scheduler to answer before failing; None: $ACTSTATS_SCHEDULER_TIMEOUT,
    # else 10.
    "scheduler_timeout": None,
    # Statistical defaults of the queries, read when a query is called.
    # Width of the saturated band, a fraction of the activation's range (saturation, compare_splits, report).
    "eps": 0.05,
    # The largest group (values) that method="auto" loads whole; larger groups are streamed
    # (bimodality, fit, weight_normality). 2**25 values are 256 MiB as float64.
    "exact_max_size": 2**25,
    # The effect-size rule of weight_normality's `gaussian` (and of the report's C3): a layer
    # is called Gaussian when |skewness|, |excess kurtosis| and W1 to the fitted normal (in
    # standard deviations) are all below these.
    "gaussian_thresholds": {"max_abs_skewness": 0.5, "max_abs_excess_kurtosis": 1.0, "max_w1_normal": 0.1},
    # The `training` query's rule: a run that did not diverge is "trained" when its training
    # accuracy at its last complete record is at least this (0.9: it fits at least 90% of
    # its training points).
    "trained_accuracy": 0.9,
}

_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "progress": lambda v: v is None or isinstance(v, bool),
    "progress_log": lambda v: v is None or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf")
    ),
    "scheduler": lambda v: v is None or v is False or (isinstance(v, str) and bool(v.strip())),
    "scheduler_timeout": lambda v: v is None or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
    ),
    "eps": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 0.5,
    "exact_max_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    "gaussian_thresholds": lambda v: isinstance(v, dict)
    and set(v) == {"max_abs_skewness", "max_abs_excess_kurtosis", "max_w1_normal"}
    and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < float("inf") for x in v.values()),
    "trained_accuracy": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
}

_DESCRIPTIONS = {
    "progress": "None, True or False",
    "progress_log": "None or a number of seconds >= 0",
    "scheduler": "None, False or a scheduler address such as 'tcp://127.0.0.1:8786'",
    "scheduler_timeout": "None or a positive number of seconds",
    "eps": "a number greater than 0 and less than 0.5",
    "exact_max_size": "a positive integer (values per group)",
    "gaussian_thresholds": "a dict of positive numbers with the keys max_abs_skewness, max_abs_excess_kurtosis and max_w1_normal",
    "trained_accuracy": "a number greater than 0 and at most 1 (a training accuracy)",
}

#: Seconds to wait for a scheduler when neither the option nor $ACTSTATS_SCHEDULER_TIMEOUT says.
DEFAULT_SCHEDULER_TIMEOUT = 10.0


def scheduler_address() -> str | None:
    """The dask.distributed scheduler to compute on, or None for local threads.

    ``OPTIONS["scheduler"]`` if it is an address; if it is None, ``$ACTSTATS_SCHEDULER`` as
    it is now (read at each call, so setting the variable after ``import actstats`` takes
    effect); if it is False, None whatever the environment says.

    Examples
    --------
    >>> with set_options(scheduler="tcp://127.0.0.1:8786"):
    ...     scheduler_address()
    'tcp://127.0.0.1:8786'
    >>> with set_options(scheduler=False):
    ...     scheduler_address() is None
    True
    """
    value = OPTIONS["scheduler"]
    if value is False:
        return None
    if value is None:
        value = os.environ.get("ACTSTATS_SCHEDULER", "")
    return value.strip() or None


def scheduler_timeout() -> float:
    """Seconds to wait for the scheduler to answer: ``OPTIONS["scheduler_timeout"]``, else
    ``$ACTSTATS_SCHEDULER_TIMEOUT``, else :data:`DEFAULT_SCHEDULER_TIMEOUT`.

    Raises :class:`~actstats.errors.ActstatsError` naming the variable when ``$ACTSTATS_SCHEDULER_TIMEOUT`` is not a
    positive number.
    """
    value = OPTIONS["scheduler_timeout"]
    if value is not None:
        return float(value)
    text = os.environ.get("ACTSTATS_SCHEDULER_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_SCHEDULER_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        from actstats.errors import ActstatsError

        raise ActstatsError(f"ACTSTATS_SCHEDULER_TIMEOUT={text!r}: expected a positive number of seconds")
    return value


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show a progress bar on stderr: `progress` if it is True or False, else
    ``OPTIONS["progress"]`` if that is, else only when stderr is a terminal (so a bar hides
    itself in pipes, logs and tests).

    Examples
    --------
    >>> with set_options(progress=True):
    ...     progress_enabled(), progress_enabled(False)
    (True, False)
    """
    if progress is None:
        progress = OPTIONS["progress"]
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def progress_bar(*, total: int, desc: str, unit: str, progress: bool | None = None):
    """A tqdm bar when :func:`progress_enabled`; else, when ``OPTIONS["progress_log"]`` is a
    number of seconds and progress was not switched off, a :class:`ProgressLog` that writes
    one line on stderr at most that often (stderr is then a log, not a terminal); else a
    disabled bar."""
    from tqdm.auto import tqdm

    if progress_enabled(progress):
        return tqdm(total=total, desc=desc, unit=unit)
    if progress_shown(progress):
        return ProgressLog(total=total, desc=desc, unit=unit, interval=float(OPTIONS["progress_log"]))
    return tqdm(total=total, desc=desc, unit=unit, disable=True)


def progress_shown(progress: bool | None = None) -> bool:
    """Whether :func:`progress_bar` shows anything: a bar (:func:`progress_enabled`) or the
    periodic one-line log (``OPTIONS["progress_log"]`` set and progress not switched off).
    Work that says something before its bar (capture's estimate) says it only then.

    Examples
    --------
    >>> with set_options(progress=False, progress_log=60):
    ...     progress_shown()
    False
    """
    if progress_enabled(progress):
        return True
    return OPTIONS["progress_log"] is not None and progress is None and OPTIONS["progress"] is None


class ProgressLog:
    """The part of tqdm's interface that actstats uses, writing a line such as
    ``capture: 120/612 records (20%), 3.2 min elapsed, about 12.9 min left`` on stderr at most
    every `interval` seconds, and one at the end when a line was written before it.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with ProgressLog(total=4, desc="verify", unit="chunk", interval=0, file=out) as log:
    ...     log.update(2)
    >>> out.getvalue().splitlines()[0].startswith("verify: 2/4 chunks (50%)")
    True
    """

    def __init__(self, *, total: int, desc: str, unit: str, interval: float, file=None):
        import time

        self._clock = time.monotonic
        self.total, self.n, self.desc, self.unit = total, 0, desc, unit
        self.interval, self.file = interval, file
        self._start = self._last = self._clock()
        self._postfix = ""
        self._wrote = False
        self._work = None  # (done, total) units of work, when set_work gives them
        self._first_work = None  # (time, done) at the first work reported: rates count from there

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._clock() - self._last >= self.interval:
            self._write()

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    def set_work(self, done: float, total: float) -> None:
        """Take the time left from `done` of `total` units of work rather than from the items
        counted (capture counts records, which crowd into the first epochs while training
        fills the later ones), at the rate since the first work was reported (the start-up
        before it, e.g. worker processes importing torch, is not work done slowly);
        ``update(0)`` then writes a line if one is due."""
        if self._first_work is None and done > 0:
            self._first_work = (self._clock(), done)
        self._work = (done, total)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._wrote and self._last_written != self.n:
            self._write()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self) -> None:
        now = self._clock()
        elapsed = now - self._start
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        line = f"{self.desc}: {self.n}/{self.total} {self.unit}s{share}, {elapsed / 60:.1f} min elapsed"
        if self._work is None:
            if 0 < self.n < self.total:
                line += f", about {elapsed / self.n * (self.total - self.n) / 60:.1f} min left"
        elif self._first_work is not None:
            (since, before), (done, total) = self._first_work, self._work
            if before < done < total and now > since:
                line += f", about {(now - since) / (done - before) * (total - done) / 60:.1f} min left"
        if self._postfix:
            line += f" ({self._postfix})"
        print(line, file=self.file or sys.stderr, flush=True)
        self._last, self._wrote, self._last_written = now, True, self.n


class set_options:
    """Set options globally, or for a ``with`` block.

    Examples
    --------
    >>> with set_options(progress=False):
    ...     OPTIONS["progress"]
    False
    """

    def __init__(self, **kwargs: Any):
        self.old: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key not in OPTIONS:
                raise ValueError(f"unknown option {key!r}; options are: {', '.join(OPTIONS)}")
            if not _VALIDATORS[key](value):
                raise ValueError(f"option {key!r}: {value!r} is not valid (expected {_DESCRIPTIONS[key]})")
            self.old[key] = OPTIONS[key]
        OPTIONS.update(kwargs)

    def __enter__(self) -> "set_options":
        return self

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self.old)
