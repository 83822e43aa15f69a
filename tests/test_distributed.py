"""The distributed and fsspec parts of "Scale" (DESIGN.md): queries and capture sweeps on a
real dask.distributed cluster (a scheduler and two worker processes on loopback, started
once for this module), and stores at fsspec URLs (memory://, file://).

What the cluster must not change: every number (moments to 1e-10 relative, everything else
exactly), a capture's store (bit for bit), the exit codes (2 for a scheduler that does not
answer, 3 for a damaged chunk read by a worker).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import actstats
from actstats.errors import ActstatsError, IntegrityError
from conftest import ROOT, write_config
from reliability_tools import MICRO_CONFIG, cli, one_line

pytestmark = pytest.mark.slow

QUERIES = ("saturation", "weight_normality", "bimodality", "compare_splits", "gradient_flow")

#: Statistics merged from per-chunk moments: equal to 1e-10 relative across schedulers
#: (a different order of floating-point additions is allowed); every other field exactly.
MOMENT_FIELD = re.compile(r"mean|std|skewness|kurtosis|rms|norm|derivative|ratio")

#: Two runs (depth 1 and 2: NaN padding), two records each: one run per worker.
CLUSTER_CONFIG = MICRO_CONFIG + '\n[sweep]\n"model.depth" = [1, 2]\n'


@pytest.fixture(scope="module")
def cluster():
    """A scheduler in this process and two worker processes, on loopback."""
    distributed = pytest.importorskip("distributed")  # the fsspec tests run without it
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def no_scheduler_from_the_environment(monkeypatch):
    monkeypatch.delenv("ACTSTATS_SCHEDULER", raising=False)
    monkeypatch.delenv("ACTSTATS_SCHEDULER_TIMEOUT", raising=False)


def _tasks_done(cluster) -> int:
    """Task transitions the scheduler has made (it runs in this process): grows when work
    reaches the cluster."""
    return cluster.scheduler.transition_counter


def _assert_same(local, remote, what: str) -> None:
    assert local.attrs == remote.attrs, what
    assert set(local.variables) == set(remote.variables), what
    for name in local.variables:
        a, b = local[name], remote[name]
        assert a.dims == b.dims, f"{what}: {name}"
        if MOMENT_FIELD.search(str(name)) and np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(b.values, a.values, rtol=1e-10, atol=0, equal_nan=True, err_msg=f"{what}: {name}")
        else:
            np.testing.assert_array_equal(b.values, a.values, err_msg=f"{what}: {name}")


def _assert_no_client_left(cluster) -> None:
    """Each query closes its client: none stays connected to (and later reconnecting to) the
    scheduler. The scheduler hears of a close a moment later."""
    deadline = time.monotonic() + 10
    while set(cluster.scheduler.clients) - {"fire-and-forget"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(cluster.scheduler.clients) <= {"fire-and-forget"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- queries


@pytest.mark.long  # 11-13 s in make test's profile: run by make test-long
def test_queries_on_the_cluster_give_the_numbers_of_the_local_scheduler(small_store, cluster):
    """On the first and the last run of the small store (depth 1 and 3, sigmoid and tanh),
    to keep the time down; the command-line test below compares the whole store."""
    ds = actstats.open_store(small_store).isel(run=[0, -1])
    assert len(set(ds["depth"].values)) == 2 and len(set(ds["activation_fn"].values)) == 2
    with actstats.set_options(scheduler=False):
        local = {name: getattr(actstats, name)(ds) for name in QUERIES}
    before = _tasks_done(cluster)
    with actstats.set_options(scheduler=cluster.scheduler_address):
        remote = {name: getattr(actstats, name)(ds) for name in QUERIES}
    assert _tasks_done(cluster) > before, "the queries did not run on the cluster"
    _assert_no_client_left(cluster)
    for name in QUERIES:
        _assert_same(local[name], remote[name], name)


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_streamed_bimodality_and_fit_on_the_cluster_equal_the_local_scheduler(small_store, cluster):
    """The histogram path (groups pooled over runs, epochs, samples and units): the summed
    histograms are counts, equal exactly; the fits from sums merged in another order agree
    to the Beta's Newton tolerance."""
    ds = actstats.open_store(small_store)
    queries = {
        "bimodality": lambda: actstats.bimodality(ds, by=("layer",), method="histogram", mixture="always"),
        "fit": lambda: actstats.fit(ds, by=("layer",), method="histogram"),
        "weight fit": lambda: actstats.fit(ds, by=("layer",), variable="weight", method="histogram"),
    }
    with actstats.set_options(scheduler=False):
        local = {name: query() for name, query in queries.items()}
    before = _tasks_done(cluster)
    with actstats.set_options(scheduler=cluster.scheduler_address):
        remote = {name: query() for name, query in queries.items()}
    assert _tasks_done(cluster) > before
    for name in queries:
        assert local[name].attrs == remote[name].attrs, name
        assert local[name].attrs["cdf_method"] == "histogram"
        for variable in local[name].variables:
            a, b = local[name][variable].values, remote[name][variable].values
            if np.issubdtype(a.dtype, np.floating):
                np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-12, equal_nan=True, err_msg=f"{name}: {variable}")
            else:
                np.testing.assert_array_equal(b, a, err_msg=f"{name}: {variable}")


def test_the_command_line_uses_the_scheduler_option_and_the_environment(small_store, cluster, monkeypatch):
    code, expected, err = cli("saturation", small_store, "--format", "json")
    assert code == 0, err
    before = _tasks_done(cluster)
    address = cluster.scheduler_address
    for argv in (("--scheduler", address, "saturation", small_store, "--format", "json"),
                 ("saturation", small_store, "--format", "json", "--scheduler", address)):
        code, out, err = cli(*argv)
        assert (code, err) == (0, ""), err
        assert json.loads(out) == json.loads(expected)
    after_option = _tasks_done(cluster)
    assert after_option > before
    # set after `import actstats`: read when the query computes
    monkeypatch.setenv("ACTSTATS_SCHEDULER", address)
    code, out, err = cli("saturation", small_store, "--format", "json")
    assert (code, err) == (0, ""), err
    assert json.loads(out) == json.loads(expected)
    assert _tasks_done(cluster) > after_option


def test_environment_is_read_at_call_time_and_false_means_local(monkeypatch):
    from actstats.options import scheduler_address, scheduler_timeout

    assert scheduler_address() is None
    monkeypatch.setenv("ACTSTATS_SCHEDULER", "tcp://127.0.0.1:8786")
    assert scheduler_address() == "tcp://127.0.0.1:8786"
    with actstats.set_options(scheduler=False):
        assert scheduler_address() is None
    with actstats.set_options(scheduler="tcp://10.0.0.1:8786"):
        assert scheduler_address() == "tcp://10.0.0.1:8786"
    assert scheduler_timeout() == 10.0
    monkeypatch.setenv("ACTSTATS_SCHEDULER_TIMEOUT", "2.5")
    assert scheduler_timeout() == 2.5
    monkeypatch.setenv("ACTSTATS_SCHEDULER_TIMEOUT", "soon")
    with pytest.raises(ActstatsError, match="ACTSTATS_SCHEDULER_TIMEOUT='soon'"):
        scheduler_timeout()
    for bad in ({"scheduler": ""}, {"scheduler": True}, {"scheduler_timeout": 0}, {"scheduler_timeout": "1"}):
        with pytest.raises(ValueError, match=f"option '{next(iter(bad))}'"):
            actstats.set_options(**bad)


def test_a_scheduler_that_does_not_answer_is_one_line_and_exit_2(small_store):
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_free_port()}"
    # a fresh process (started first, checked last): nothing else on stderr, not even at exit
    process = subprocess.Popen(
        [sys.executable, "-m", "actstats.cli", "--scheduler", address, "saturation", small_store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "ACTSTATS_SCHEDULER_TIMEOUT": "1"},
    )
    ds = actstats.open_store(small_store)
    start = time.monotonic()
    with actstats.set_options(scheduler=address, scheduler_timeout=1):
        with pytest.raises(ActstatsError, match=r"no dask scheduler answered within 1 s"):
            actstats.saturation(ds)
    assert time.monotonic() - start < 10
    with actstats.set_options(scheduler="no-port-here"):
        with pytest.raises(ActstatsError, match="not a scheduler address"):
            actstats.saturation(ds)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert one_line(err) and "no dask scheduler answered within 1 s" in err, err
    assert out == ""


def test_a_damaged_chunk_read_on_the_cluster_is_an_integrity_error(small_store, cluster, tmp_path):
    store = str(tmp_path / "damaged.zarr")
    shutil.copytree(small_store, store)
    chunk = os.path.join(store, "activation", "c", "1", "2", "0", "0", "0")
    with open(chunk, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with open(chunk, "wb") as f:
        f.write(bytes(data))
    ds = actstats.open_store(store)
    with actstats.set_options(scheduler=cluster.scheduler_address):
        with pytest.raises(IntegrityError, match=r"variable 'activation' chunk \(1, 2, 0, 0, 0\) is damaged"):
            actstats.saturation(ds)
    code, out, err = cli("--scheduler", cluster.scheduler_address, "saturation", store)
    assert code == 3 and one_line(err) and "chunk (1, 2, 0, 0, 0)" in err, err
    assert out == ""


# ----------------------------------------------------------------------------- capture


def _assert_same_store(path, reference) -> None:
    got, want = actstats.open_store(path), actstats.open_store(reference)
    assert set(got.variables) == set(want.variables)
    for name in want.variables:
        a, b = np.asarray(got[name].values), np.asarray(want[name].values)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if a.dtype.kind in "fc":
            assert a.tobytes() == b.tobytes(), f"{name} differs"
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert {k: v for k, v in got.attrs.items() if k != "created_at"} == {
        k: v for k, v in want.attrs.items() if k != "created_at"
    }


def test_a_capture_sweep_on_the_cluster_writes_the_store_of_a_local_capture(cluster, tmp_path):
    from actstats.capture import capture

    config = write_config(tmp_path, CLUSTER_CONFIG)
    local, remote = str(tmp_path / "local.zarr"), str(tmp_path / "remote.zarr")
    capture(config, local, progress=False)
    before = _tasks_done(cluster)
    with actstats.set_options(scheduler=cluster.scheduler_address):
        summary = capture(config, remote, progress=False)
        assert summary == {"runs": 2, "written": 4, "already_complete": 0, "estimated_seconds": None}  # no progress: no estimate
        assert _tasks_done(cluster) > before, "the runs were not trained on the cluster"
        # complete runs are skipped: nothing is submitted, nothing written
        again = capture(config, remote, resume=True, progress=False)
        assert again == {"runs": 2, "written": 0, "already_complete": 4, "estimated_seconds": None}
    _assert_same_store(remote, local)
    assert actstats.verify_store(remote, progress=False).ok
    _assert_no_client_left(cluster)


def test_a_run_that_fails_on_the_cluster_is_one_error_naming_it(cluster, tmp_path):
    """A worker that cannot see the store (as on a host without the shared file system)."""
    import tqdm

    from actstats.capture.sweep import _capture_on_cluster

    config = write_config(tmp_path, CLUSTER_CONFIG)
    missing = str(tmp_path / "not-here.zarr")
    with tqdm.tqdm(disable=True) as bar, pytest.raises(ActstatsError, match="not found by the cluster worker") as info:
        _capture_on_cluster(cluster.scheduler_address, config, missing, [(0, None, [0, 1])], {}, bar, True)
    assert "\n" not in str(info.value)
    assert not os.path.exists(missing)


def test_capture_refuses_a_url_it_cannot_write_and_a_scheduler_that_does_not_answer(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("ACTSTATS_SCHEDULER_TIMEOUT", "1")
    config = write_config(tmp_path, CLUSTER_CONFIG)
    code, out, err = cli("capture", config, "-o", "memory://stores/x.zarr")
    assert code == 2 and one_line(err) and "local path or a file:// URL" in err, err
    code, out, err = cli("--scheduler", f"tcp://127.0.0.1:{_free_port()}", "capture", config,
                         "-o", str(tmp_path / "never.zarr"))
    assert code == 2 and one_line(err) and "no dask scheduler answered" in err, err
    assert not os.path.exists(tmp_path / "never.zarr")  # no store is made before the cluster answers


# ----------------------------------------------------------------------------- fsspec


@pytest.fixture
def memory_store(small_store):
    """The small store copied file by file into fsspec's memory file system."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = "/test-distributed/small.zarr"
    for directory, _, files in os.walk(small_store):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                fs.pipe(f"{root}/{os.path.relpath(path, small_store)}", f.read())
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


def test_a_store_in_memory_opens_verifies_and_gives_the_same_numbers(small_store, memory_store):
    import xarray as xr

    with actstats.set_options(scheduler=False):
        want = actstats.saturation(actstats.open_store(small_store))
        got = actstats.saturation(actstats.open_store(memory_store))
    xr.testing.assert_identical(got, want)
    report = actstats.verify_store(memory_store, progress=False)
    assert report.ok and report.chunks_read == actstats.verify_store(small_store, progress=False).chunks_read
    code, out, err = cli("verify", memory_store)
    assert code == 0 and "intact" in out, err
    code, out, err = cli("info", memory_store, "--format", "json")
    assert code == 0 and json.loads(out)["records_complete"] == 32, err
    plain = xr.open_zarr(memory_store)  # plain xarray reads the URL too
    assert plain["activation"].shape == actstats.open_store(small_store)["activation"].shape


def test_file_urls_and_missing_urls(small_store):
    import xarray as xr

    url = "file://" + os.path.abspath(small_store)
    with actstats.set_options(scheduler=False):
        xr.testing.assert_identical(actstats.saturation(actstats.open_store(url)),
                                    actstats.saturation(actstats.open_store(small_store)))
    assert actstats.verify_store(url, progress=False).ok
    for url, message in (("memory://nothing/here.zarr", "no such store"),
                         ("file:///nothing/here.zarr", "no such store"),
                         ("nosuchprotocol://bucket/x.zarr", "cannot open this URL")):
        code, out, err = cli("verify", url)
        assert code == 2 and one_line(err) and message in err, (url, err)
