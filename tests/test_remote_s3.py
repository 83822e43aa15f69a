"""Stores at s3:// URLs, read from a real S3 server: moto's server mode, started on loopback
once for this module, with a small captured store uploaded to it.

Configured the way a user configures any S3-compatible server (README, "Stores at URLs"):
credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the server in AWS_ENDPOINT_URL
(botocore reads it; s3fs needs no option), a public bucket read without credentials with
FSSPEC_S3_ANON=true (fsspec's settings by environment). A query runs in a new process that
has only that environment; the rest runs through the same main() in this process.

What must hold: the store at the URL reads as the same values as the local copy (the API,
and a query's JSON through the command line, byte for byte); info, verify and report work
on it; and what stops a user (no credentials, no such bucket, nothing at the path, s3fs not
installed, a server that does not answer) is one line on stderr naming the URL and what is
wrong, exit 2. Each request costs moto a few milliseconds: the store is kept to ~110
objects; the report and the unreachable server (botocore's retries) are marked long."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

import actstats
from actstats.errors import StoreFormatError
from conftest import ROOT, run_main, write_config
from reliability_tools import MICRO_CONFIG

import boto3  # noqa: E402,F401  (dev dependencies: a missing one fails here, never skips)
import moto.server as moto_server  # noqa: E402
import s3fs  # noqa: E402,F401

#: A server, a capture and an upload (about 20 s of setup on two loaded cores): run by
#: make test-long, which CI runs after make test.
pytestmark = pytest.mark.long

BUCKET = "actstats-test"
STORE = f"s3://{BUCKET}/sweep/small.zarr"

#: Two runs (depth 1 and 2: NaN padding, whose reads look up chunks on the server), two
#: records each, no deltas or weight gradients: ~110 objects, so that a read of the whole
#: store through the server (two requests an object: s3fs heads before it gets) is short.
CONFIG = MICRO_CONFIG + 'delta = false\nweight_grad = false\n\n[sweep]\n"model.depth" = [1, 2]\n'

#: The environment of every process in this module: fake credentials, moto as the server,
#: no configuration files and no instance metadata lookups (which hang off EC2).
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(ROOT, "no-such-dir", "credentials"),
    "AWS_CONFIG_FILE": os.path.join(ROOT, "no-such-dir", "config"),
    "AWS_EC2_METADATA_DISABLED": "true",
    "BOTO_CONFIG": os.path.join(ROOT, "no-such-dir", "boto.cfg"),
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
#: Settings from the developer's environment that would send requests elsewhere.
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
         "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
         "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> str:
    from actstats.capture import capture

    directory = tmp_path_factory.mktemp("remote")
    path = str(directory / "small.zarr")
    capture(write_config(directory, CONFIG), path, progress=False)
    return path


@pytest.fixture(scope="module")
def s3(tiny_store):
    """moto's S3 server on 127.0.0.1 (a free port), this process's environment pointed at
    it, and the small captured store uploaded (readable without credentials too: moto
    honours the objects' public-read ACL for unsigned requests). Yields the endpoint URL."""
    import boto3
    import s3fs

    werkzeug = logging.getLogger("werkzeug")  # moto's server logs each request there
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in UNSET + tuple(k for k in os.environ if k.startswith("FSSPEC_S3")):
            mp.delenv(name, raising=False)
        for name, value in {**FAKE_AWS, "AWS_ENDPOINT_URL": endpoint}.items():
            mp.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()  # none made with another environment
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        objects = {}
        for directory, _, files in os.walk(tiny_store):
            for name in files:
                path = os.path.join(directory, name)
                key = os.path.relpath(path, tiny_store).replace(os.sep, "/")
                with open(path, "rb") as f:
                    objects[f"{STORE.removeprefix('s3://')}/{key}"] = f.read()
        # one PUT an object, side by side (fs.put would add a HEAD for each)
        s3fs.S3FileSystem(skip_instance_cache=True, s3_additional_kwargs={"ACL": "public-read"}).pipe(objects)
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()  # their endpoint is about to go
            server.stop()
            werkzeug.setLevel(level)


@pytest.fixture
def fresh_s3fs():
    """New S3 file systems for this test and after it: s3fs keeps one per set of arguments,
    with the credentials it found when it was made."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def start_cli(*args, env: dict | None = None) -> subprocess.Popen:
    """`actstats ARGS` in a new process with this process's environment (the fixture's) and
    `env` added."""
    return subprocess.Popen([sys.executable, "-m", "actstats.cli", *map(str, args)], cwd=ROOT, text=True,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def one_line_error(result, *fragments) -> None:
    code, out, err = result
    assert code == 2 and out == "", result
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# ------------------------------------------------------------------ reading the store


def test_open_store_at_s3_reads_the_local_values(s3, tiny_store):
    import xarray as xr

    remote, local = actstats.open_store(STORE), actstats.open_store(tiny_store)
    assert remote.attrs == local.attrs
    xr.testing.assert_identical(remote.load(), local.load())


def test_command_line_on_s3(s3, tiny_store, capsys):
    """A query's JSON is the local copy's byte for byte, from a new process configured by
    its environment only (AWS_ENDPOINT_URL, the credentials); verify reads every chunk."""
    process = start_cli("saturation", STORE, "--format", "json")
    code, local, err = run_main(capsys, "saturation", tiny_store, "--format", "json")
    assert code == 0 and json.loads(local), err
    code, out, err = run_main(capsys, "verify", STORE)
    assert code == 0 and "intact" in out, (out, err)
    code, out, err = finish(process)
    assert code == 0 and "Traceback" not in err, err
    assert out == local


def test_info_on_a_public_bucket_without_credentials(s3, tiny_store, capsys, monkeypatch, fresh_s3fs):
    """`actstats info` says what it says of the local copy, with FSSPEC_S3_ANON=true as
    fsspec reads it from the environment (when it is imported) and no credentials."""
    import fsspec.config

    from_environment = {}
    fsspec.config.set_conf_env(from_environment, {"FSSPEC_S3_ANON": "true"})
    assert from_environment == {"s3": {"anon": True}}
    monkeypatch.setitem(fsspec.config.conf, "s3", from_environment["s3"])
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run_main(capsys, "info", STORE, "--format", "json")
    assert code == 0, err
    code, local, err = run_main(capsys, "info", tiny_store, "--format", "json")
    assert json.loads(out) == {**json.loads(local), "store": STORE}


@pytest.mark.long
def test_report_on_s3(s3, tmp_path):
    code, out, err = finish(start_cli("report", STORE, "-o", tmp_path / "report"))
    assert code == 0, err
    assert (tmp_path / "report" / "index.html").stat().st_size > 0
    assert os.listdir(tmp_path / "report" / "figures")


# ------------------------------------------------------------------ what stops a user


def test_missing_bucket_and_store(s3, capsys):
    one_line_error(run_main(capsys, "saturation", "s3://no-such-bucket/small.zarr"),
                   f"actstats saturation: s3://no-such-bucket/small.zarr: no such bucket 'no-such-bucket' at {s3}")
    one_line_error(run_main(capsys, "verify", f"s3://{BUCKET}/sweep/other.zarr"),
                   f"actstats verify: s3://{BUCKET}/sweep/other.zarr: no such store "
                   f"(nothing at 'sweep/other.zarr' in bucket '{BUCKET}')")


def test_missing_credentials(s3, capsys, monkeypatch, fresh_s3fs):
    """No credentials in the environment, no configuration files, no instance metadata
    (the fixture's environment): botocore finds none."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    one_line_error(run_main(capsys, "info", STORE), f"actstats info: {STORE}: no S3 credentials found: set "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "FSSPEC_S3_ANON=true")


def test_s3fs_not_installed(s3, capsys, monkeypatch):
    """s3fs's import fails (None in sys.modules), and fsspec has not imported it before
    (its registry of imported back ends forgets it)."""
    import importlib

    import fsspec

    imported = importlib.import_module("fsspec.registry")._registry  # (fsspec.registry: a read-only view)
    monkeypatch.setitem(sys.modules, "s3fs", None)
    for protocol in ("s3", "s3a"):
        monkeypatch.delitem(imported, protocol, raising=False)
    with pytest.raises(ImportError):
        fsspec.filesystem("s3")
    one_line_error(run_main(capsys, "info", STORE),
                   f"actstats info: {STORE}: s3:// URLs need s3fs, which is not installed: pip install 'actstats[s3]'")


@pytest.mark.long
def test_an_unreachable_server_is_one_line(s3):
    """Nothing listens at the endpoint: botocore's and s3fs's retries take several seconds,
    then one line (the reads zarr left waiting are cancelled, not reported at exit)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    one_line_error(finish(start_cli("info", STORE, env={"AWS_ENDPOINT_URL": closed})),
                   f"actstats info: {STORE}: cannot reach the server", closed, "AWS_ENDPOINT_URL")


def test_the_api_says_the_same(s3):
    """open_store and verify_store raise StoreFormatError with the command line's words."""
    for url, message in (("s3://no-such-bucket/x.zarr", "no such bucket 'no-such-bucket'"),
                         (f"s3://{BUCKET}/sweep", "not a Zarr group"),  # a prefix with objects under it
                         (f"s3://{BUCKET}/x.zarr", f"no such store (nothing at 'x.zarr' in bucket '{BUCKET}')")):
        with pytest.raises(StoreFormatError) as caught:
            actstats.open_store(url)
        assert str(caught.value).startswith(f"{url}: {message}"), caught.value
    with pytest.raises(StoreFormatError) as by_verify:
        actstats.verify_store(url, progress=False)
    assert str(by_verify.value) == str(caught.value)


def test_messages_of_other_failures():
    """Failures moto does not produce (denied access, s3fs present but broken) and the
    unreachable server's without its retries, from what the back end raises; the module's
    examples."""
    import doctest

    import actstats.store.remote
    from actstats.store.remote import url_problem

    assert doctest.testmod(actstats.store.remote).failed == 0

    denied = url_problem("s3://b/x.zarr", PermissionError("Access Denied"))
    assert denied.startswith("access denied (PermissionError: Access Denied)") and "AWS_PROFILE" in denied

    class EndpointConnectionError(Exception):  # botocore's, by name
        pass

    unreachable = url_problem("s3://b/x.zarr", EndpointConnectionError('Could not connect to "http://x:1/b"'))
    assert unreachable.startswith("cannot reach the server") and "AWS_ENDPOINT_URL" in unreachable
    broken = ImportError("Install s3fs to access S3")
    broken.__cause__ = ModuleNotFoundError("No module named 'aiobotocore'", name="aiobotocore")
    assert url_problem("s3://b/x.zarr", broken) == (
        "s3fs cannot be imported (ModuleNotFoundError: No module named 'aiobotocore'): pip install 'actstats[s3]'")
    assert url_problem("gs://b/x.zarr", ImportError("Install gcsfs to access Google Storage")) == (
        "gs:// URLs need gcsfs, which is not installed: pip install gcsfs")
