"""Why a store at a URL could not be opened, in words a user can act on.

zarr and fsspec report a failed open of ``s3://bucket/x.zarr`` as whatever the back end
raised: botocore's ``NoCredentialsError``, an ``ImportError`` saying "Install s3fs", or no
error at all but an empty group. :func:`url_problem` turns those into one line that says
what is wrong and where (``no such bucket 'bucket'``) and, for credentials, how to provide
them. Only the URL's reach is judged here: a store that is there but not in the format is
reported by :func:`~actstats.store.open.open_store` itself.

S3 is reached through s3fs and botocore, configured as the AWS tools are: credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` or ``~/.aws/credentials``; a
server other than AWS (MinIO, Ceph, moto) from ``AWS_ENDPOINT_URL``; a public bucket read
without credentials with ``FSSPEC_S3_ANON=true`` (fsspec's configuration by environment).
tests/test_remote_s3.py checks these messages against moto's S3 server.
"""

from __future__ import annotations

#: What to install for a protocol whose fsspec back end is missing.
EXTRAS = {"s3": ("s3fs", "pip install 'actstats[s3]'"), "s3a": ("s3fs", "pip install 'actstats[s3]'"),
          "gs": ("gcsfs", "pip install gcsfs"), "gcs": ("gcsfs", "pip install gcsfs")}

#: How to give S3 credentials (the places botocore looks, in its order).
S3_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE for a profile in "
                       "~/.aws/credentials; a public bucket reads without credentials with FSSPEC_S3_ANON=true")

# botocore's exceptions by name, so that this module imports without botocore
_CREDENTIAL_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                      "NoAuthTokenError", "UnauthorizedSSOTokenError"}
_UNREACHABLE_ERRORS = {"EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError",
                       "SSLError", "ClientConnectorError"}


def protocol_of(url: str) -> str:
    """The protocol of `url` (the part before ``://``), lower case.

    Examples
    --------
    >>> protocol_of("S3://bucket/x.zarr"), protocol_of("memory://x")
    ('s3', 'memory')
    """
    return url.split("://", 1)[0].lower() if "://" in url else ""


def url_problem(url: str, exc: BaseException) -> str | None:
    """Why `url` could not be opened when the reason is its reach (back end, credentials,
    server, bucket, path) rather than its content; None when the original error says more.

    `exc` is what opening raised. It is judged first (a missing back end, missing
    credentials, an unreachable server need no further requests); else the bucket and the
    path are looked up.

    Examples
    --------
    >>> url_problem("s3://bucket/x.zarr", ImportError("Install s3fs to access S3"))
    "s3:// URLs need s3fs, which is not installed: pip install 'actstats[s3]'"
    >>> url_problem("memory://nothing/here.zarr", KeyError("zarr.json"))
    'no such store'
    """
    known = _known_failure(url, exc)
    if known:
        if any({c.__name__ for c in type(e).__mro__} & _UNREACHABLE_ERRORS for e in _chain(exc)):
            _cancel_reads(url)
        return known
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        if _is_s3(fs):
            return _s3_problem(fs, root)
        return None if fs.exists(root) else "no such store"
    except Exception as probe:  # its own failure may say why (credentials, access); else exc says more
        return _known_failure(url, probe)


def _known_failure(url: str, exc: BaseException) -> str | None:
    """What `exc` (or an exception it was raised from) says about reaching `url`."""
    protocol = protocol_of(url)
    for error in _chain(exc):
        names = {cls.__name__ for cls in type(error).__mro__}
        if isinstance(error, ImportError):
            return missing_backend(protocol, error)
        if isinstance(error, ValueError) and "protocol" in str(error).lower():
            return f"cannot open this URL ({error})"
        if names & _CREDENTIAL_ERRORS:
            if protocol in ("s3", "s3a"):
                return f"no S3 credentials found: {S3_CREDENTIALS_HINT}"
            return f"no credentials found ({_one_line(error)})"
        if names & _UNREACHABLE_ERRORS:
            where = " and AWS_ENDPOINT_URL" if protocol in ("s3", "s3a") else ""
            return f"cannot reach the server ({_one_line(error)}): check the network{where}"
        if isinstance(error, PermissionError):
            return (f"access denied ({_one_line(error)}): check that the credentials may read it"
                    + (" (AWS_ACCESS_KEY_ID, AWS_PROFILE; AWS_ENDPOINT_URL for a server other than AWS)"
                       if protocol in ("s3", "s3a") else ""))
    return None


def missing_backend(protocol: str, exc: BaseException | None = None) -> str:
    """The message for a protocol whose fsspec back end is not installed.

    Examples
    --------
    >>> missing_backend("s3")
    "s3:// URLs need s3fs, which is not installed: pip install 'actstats[s3]'"
    >>> missing_backend("ftpx", ImportError("Install ftpx-fs"))
    'cannot open this URL (Install ftpx-fs)'
    """
    if protocol in EXTRAS:
        package, command = EXTRAS[protocol]
        # fsspec raises "Install s3fs to access S3" from the import's own error: a module
        # missing under s3fs (its aiobotocore) is a broken install, not a missing one
        cause = exc.__cause__ if exc is not None and isinstance(exc.__cause__, ImportError) else exc
        name = getattr(cause, "name", None)
        if name and name.split(".")[0] != package:
            return f"{package} cannot be imported ({_one_line(cause)}): {command}"
        return f"{protocol}:// URLs need {package}, which is not installed: {command}"
    return f"cannot open this URL ({exc})"


def _is_s3(fs) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "s3" in protocols and hasattr(fs, "call_s3")


def _s3_problem(fs, root: str) -> str | None:
    """No such bucket, or nothing at the path inside it (None: both are there)."""
    bucket, _, key = root.strip("/").partition("/")
    try:
        # HeadBucket: 404 for a bucket that does not exist (fs.exists says False for a
        # bucket it may not read, too)
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        return f"no such bucket {bucket!r}{_endpoint(fs)}"
    if key and not fs.exists(root):
        return f"no such store (nothing at {key!r} in bucket {bucket!r})"
    return None


def _endpoint(fs) -> str:
    """`` at ENDPOINT`` when the S3 server is not AWS's (a wrong AWS_ENDPOINT_URL is a likely
    reason for a missing bucket)."""
    try:
        endpoint = fs.s3.meta.endpoint_url
    except AttributeError:
        return ""
    return "" if not endpoint or "amazonaws.com" in endpoint else f" at {endpoint}"


def _cancel_reads(url: str) -> None:
    """Cancel the reads of `url`'s store still waiting on an unreachable server.

    zarr reads a group's metadata files side by side; when the first fails (after botocore's
    retries) the others are left suspended in zarr's event loop, and when they are collected
    at exit aiobotocore's clean-up fails outside their context: tracebacks after the one-line
    message ("Exception ignored in: <coroutine object FsspecStore.get ...>"). Cancelled in
    the loop they end quietly. Only reads of this store (a zarr StorePath on its path) are
    touched; anything unexpected leaves them as they are.
    """
    import asyncio

    try:
        import fsspec
        from zarr.core.sync import sync

        root = fsspec.core.url_to_fs(url)[1].rstrip("/")
    except Exception:  # noqa: BLE001 - nothing to cancel that can be found
        return

    async def cancel():
        mine = []
        for task in asyncio.all_tasks():
            frame = getattr(task.get_coro(), "cr_frame", None)
            store = getattr(frame.f_locals.get("self"), "store", None) if frame is not None else None
            if isinstance(getattr(store, "path", None), str) and store.path.rstrip("/") == root:
                task.cancel()
                mine.append(task)
        if mine:
            await asyncio.wait(mine, timeout=1)

    try:
        sync(cancel(), timeout=2)
    except Exception:  # noqa: BLE001 - at worst the tracebacks at exit remain
        pass


def _chain(exc: BaseException):
    """`exc`, then what it was raised from or during (each once)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
