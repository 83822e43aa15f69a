"""Where dask work runs: local threads, or the dask.distributed cluster that ``--scheduler``,
``$ACTSTATS_SCHEDULER`` or ``set_options(scheduler=...)`` names.

Each query (and each capture sweep) opens its own :class:`distributed.Client` and closes it
when its graph is computed: on loopback that costs about 25 ms (measured: connect 11 ms,
close 10 ms, against seconds for a query), and no client outlives its work, so a cluster
that is shut down between two queries leaves no client behind trying to reconnect to it.
dask.distributed is imported only when a scheduler is named.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from actstats.errors import ActstatsError
from actstats.options import scheduler_address, scheduler_timeout

__all__ = ["check_scheduler", "scheduler_address", "scheduler_client"]


def check_scheduler(address: str) -> None:
    """Fail now, in one line, if no dask scheduler answers at `address`.

    Raises
    ------
    ActstatsError
        When dask.distributed is not installed, when `address` is not an address, or when
        no scheduler answers there within :func:`actstats.options.scheduler_timeout`
        seconds.
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ActstatsError(
            f"scheduler {address}: dask.distributed is not installed (install actstats[distributed])"
        ) from None
    _probe(address, scheduler_timeout())


@contextlib.contextmanager
def scheduler_client(address: str | None = None) -> Iterator[object | None]:
    """A client of the scheduler at `address` (default: :func:`scheduler_address`) for a
    ``with`` block, closed at its end; None when work runs on local threads.

    Raises :class:`~actstats.errors.ActstatsError` as :func:`check_scheduler` does.

    Examples
    --------
    >>> with scheduler_client() as client:  # no scheduler set: local threads
    ...     client is None
    True
    """
    address = address or scheduler_address()
    if not address:
        yield None
        return
    check_scheduler(address)
    from distributed import Client

    timeout = scheduler_timeout()
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # the scheduler went away between the probe and now
        raise ActstatsError(f"scheduler {address}: could not connect ({type(exc).__name__}: {exc})") from None
    try:
        yield client
    finally:
        try:
            client.close(timeout=timeout)
        except Exception:  # a scheduler that died meanwhile: nothing left to release
            pass


def _probe(address: str, timeout: float) -> None:
    """Connect once with dask's own protocol (and the TLS settings of dask's config, as a
    Client would) and hang up. A Client whose connection fails in its constructor prints
    "Exception ignored" tracebacks when it is collected later; a bare connection leaves
    nothing behind. Runs on its own thread, so it works where an event loop is already
    running (Jupyter)."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def probe():
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        await comm.close()

    failures: list[BaseException] = []

    def run():
        try:
            asyncio.run(probe())
        except BaseException as exc:  # handed to the calling thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="actstats-scheduler-probe", daemon=True)
    thread.start()
    thread.join()
    if not failures:
        return
    exc = failures[0]
    if isinstance(exc, ValueError):  # distributed's address parser
        raise ActstatsError(f"scheduler {address}: not a scheduler address ({exc})") from None
    if isinstance(exc, OSError):  # refused, unreachable, timed out: distributed retries until the timeout
        raise ActstatsError(
            f"scheduler {address}: no dask scheduler answered within {timeout:g} s "
            f"(set ACTSTATS_SCHEDULER_TIMEOUT or set_options(scheduler_timeout=...) to wait longer)"
        ) from None
    if isinstance(exc, MemoryError):  # something answered, and its first bytes read as an absurd length
        raise ActstatsError(f"scheduler {address}: what answered is not a dask scheduler") from None
    if isinstance(exc, Exception):  # e.g. tls:// without TLS settings in dask's config
        raise ActstatsError(f"scheduler {address}: could not connect ({type(exc).__name__}: {exc})") from None
    raise exc  # KeyboardInterrupt and the like
