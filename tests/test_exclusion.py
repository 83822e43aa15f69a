"""Writers exclude each other, and signals stop a capture with its workers (issue 19, items 1,
7 and 9; docs/reliability.md).

A capture is stopped between two records with the fault injection of actstats/capture/chunks.py
(``ACTSTATS_FAULT_PAUSE_BEFORE_RECORD``: it creates ``F.paused`` and waits for ``F``), so
that the overwrite, the move or the signal lands at a known moment while the capture
holds its locks.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest

from conftest import write_config
from reliability_tools import TINY_CONFIG, capture_process, cli, leftovers, one_line
from test_capture import assert_stores_identical

#: The same sweep with another learning rate: a store of it is told apart by its `lr`.
OTHER_CONFIG = TINY_CONFIG.replace("lr = 0.05", "lr = 0.06")


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> tuple[str, str]:
    directory = tmp_path_factory.mktemp("configs")
    return write_config(directory, TINY_CONFIG, "tiny.toml"), write_config(directory, OTHER_CONFIG, "other.toml")


@pytest.fixture(scope="module")
def reference(configs, tmp_path_factory) -> str:
    from actstats.capture import capture

    path = str(tmp_path_factory.mktemp("reference") / "reference.zarr")
    capture(configs[0], path, progress=False)
    return path


def _interruptible() -> None:
    """In the capture's process before it starts: SIGINT as a terminal's foreground job has it.
    pytest-xdist's workers ignore SIGINT and a child inherits that (Python then keeps it
    ignored, as a background job must), so under `make test` a Ctrl-C trial never reached
    the capture: it waited on, paused, until the test's timeout."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _paused_capture(config, store, flag, record: int, *extra, processes: int = 1):
    """A capture in a new session, paused before its `record`-th record (in each process);
    returns once `processes` of its processes are paused there (each writes FLAG.paused.PID)."""
    process = capture_process(config, store, "--no-progress", *extra, env={
        "ACTSTATS_FAULT_PAUSE_BEFORE_RECORD": str(record), "ACTSTATS_FAULT_PAUSE_FILE": str(flag)},
        preexec_fn=_interruptible)
    deadline = time.monotonic() + 300
    directory, prefix = os.path.dirname(str(flag)), os.path.basename(str(flag)) + ".paused."
    while sum(name.startswith(prefix) for name in os.listdir(directory)) < processes:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process


def _files(path) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def _tiny_contents(lr: float):
    from actstats.store import StoreContents, StoreLayout

    return StoreContents(StoreLayout(1, (0.0,), 1, 2, 2, 2, 2, 3), {
        "run": [0], "epoch": [0.0], "layer": [1], "unit": [0, 1], "fan_in": [0, 1], "class": [0, 1],
        "feature": [0, 1], "sample": [0, 1, 2], "step": [[0]], "split": ["train", "train", "test"],
        "label": [0, 1, 0], "source_index": [0, 1, 2], "width": [[2]], "depth": [1],
        "activation_fn": ["sigmoid"], "init": ["default"], "optimizer": ["sgd"], "lr": [lr],
        "batch_size": [1], "seed": [0], "dataset": ["example"], "config": ["{}"]},
        {"torch_version": "", "sweep": '{"a":1}'}, np.zeros((3, 2)))


def test_prepare_store_refuses_to_replace_a_store_held_for_writing(tmp_path):
    """The API under the command line: `prepare_store(mode="overwrite")` is refused (one
    line, nothing changed) while any writer holds the store, and works once none does; a
    writer whose store was moved or replaced fails its check, and cannot hold a store by
    another identity than its capture's."""
    from actstats.errors import ActstatsError
    from actstats.store import hold_store_for_writing, prepare_store

    store = str(tmp_path / "s.zarr")
    prepare_store(store, "create", contents=_tiny_contents(0.1))
    before = _files(store)
    writer = hold_store_for_writing(store)
    second = hold_store_for_writing(store, writer.identity)  # another process of the same capture
    loaded = []
    with pytest.raises(ActstatsError, match="a capture is writing this store") as refusal:
        prepare_store(store, "overwrite", contents=lambda: loaded.append(1) or _tiny_contents(0.2))
    assert "\n" not in str(refusal.value) and not loaded  # refused before building the new store
    assert _files(store) == before and os.listdir(tmp_path) == ["s.zarr"]
    writer.check()
    second.close()
    with pytest.raises(ActstatsError, match="a capture is writing this store"):
        prepare_store(store, "overwrite", contents=_tiny_contents(0.2))  # one writer is enough
    writer.close()
    assert prepare_store(store, "overwrite", contents=_tiny_contents(0.2)) == "replaced"
    writer = hold_store_for_writing(store)
    os.rename(store, str(tmp_path / "moved.zarr"))
    with pytest.raises(ActstatsError, match="moved away or replaced"):
        writer.check()
    prepare_store(store, "create", contents=_tiny_contents(0.3))
    with pytest.raises(ActstatsError, match="moved away or replaced"):
        writer.check()
    with pytest.raises(ActstatsError, match="moved away or replaced"):
        hold_store_for_writing(store, writer.identity)
    writer.close()


def test_overwrite_is_refused_while_a_capture_writes_the_store(configs, tmp_path):
    """Capture A stands between two records (2 complete); `--overwrite` of its store with
    another config is refused in one line, exit 2, and changes nothing; A then finishes as
    if nothing had happened."""
    tiny, other = configs
    store, flag = tmp_path / "s.zarr", tmp_path / "go"
    a = _paused_capture(tiny, store, flag, 3)
    before, beside = _files(store), sorted(os.listdir(tmp_path))
    code, _, err = cli("capture", other, "-o", store, "--overwrite", "--no-progress")
    assert code == 2 and one_line(err), err
    assert "a capture is writing this store" in err
    assert _files(store) == before and sorted(os.listdir(tmp_path)) == beside
    flag.touch()
    _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    import actstats

    ds = actstats.open_store(str(store))
    assert ds["complete"].values.all() and np.all(ds["lr"].values == np.float64(0.05))
    assert cli("verify", store, "--no-progress")[0] == 0


def test_a_capture_whose_store_was_replaced_stops_without_writing_into_the_new_one(configs, tmp_path):
    """Capture A stands between two records; its store is moved away and another capture
    (another lr) makes a new store at the path. A stops in one line, exit 2, at its next
    record: the new store stays byte for byte what the second capture wrote, and the moved
    store holds A's two complete records and nothing half-written."""
    tiny, other = configs
    store, moved, flag = tmp_path / "s.zarr", tmp_path / "moved.zarr", tmp_path / "go"
    a = _paused_capture(tiny, store, flag, 3)
    os.rename(store, moved)
    code, _, err = cli("capture", other, "-o", store, "--no-progress")
    assert code == 0, err
    second = _files(store)
    flag.touch()
    _, err = a.communicate(timeout=300)
    assert a.returncode == 2 and one_line(err), err
    assert "moved away or replaced" in err
    assert _files(store) == second
    import actstats

    assert np.all(actstats.open_store(str(store))["lr"].values == np.float64(0.06))
    assert int(actstats.open_store(str(moved))["complete"].values.sum()) == 2
    assert not leftovers(moved)


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.info["pid"]) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.info["pid"])
        except (ProcessLookupError, psutil.Error):
            pass
    return alive


@pytest.mark.parametrize("signum, to_group", [
    pytest.param(signal.SIGINT, True, id="SIGINT-to-the-group (Ctrl-C)"),
    pytest.param(signal.SIGTERM, False, id="SIGTERM-to-the-parent (kill PID)", marks=pytest.mark.stress),
    pytest.param(signal.SIGTERM, True, id="SIGTERM-to-the-group (a job scheduler)", marks=pytest.mark.stress),
])
def test_a_signal_stops_capture_and_its_workers_quietly_then_resume_is_identical(
        configs, reference, tmp_path, signum, to_group):
    """`capture --workers 2`, each worker paused before its second record: the signal ends
    the capture with one line, exit 128 + signal number, no worker traceback, no process of
    its group left (workers, resource tracker); `--resume` then ends identical to the
    uninterrupted capture."""
    tiny, _ = configs
    store, flag = tmp_path / "s.zarr", tmp_path / "go"
    # both workers paused: the signal finds each past its start (a worker still importing would
    # meet it before it ignores SIGINT)
    process = _paused_capture(tiny, store, flag, 2, "--workers", 2, processes=2)
    (os.killpg if to_group else os.kill)(process.pid, signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert one_line(err), err
    deadline = time.monotonic() + 5
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(process.pid)
    code, _, err = cli("capture", tiny, "-o", store, "--resume", "--no-progress")
    assert code == 0, err
    assert_stores_identical(reference, str(store))
    assert not leftovers(store)


@pytest.mark.stress
def test_a_signal_to_a_sequential_capture_finishes_the_record_being_written_and_drops_the_queued_ones(
        configs, reference, tmp_path):
    """Without workers the training thread queues records for the writer thread: on SIGTERM
    the record being written (paused here, released after the signal) is finished and the
    queued ones are not written (the capture stops in about a second, not after them)."""
    tiny, _ = configs
    store, flag = tmp_path / "s.zarr", tmp_path / "go"
    process = _paused_capture(tiny, store, flag, 2)
    time.sleep(1.0)  # the run's other records are queued meanwhile
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    flag.touch()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and one_line(err), err
    import actstats

    assert int(actstats.open_store(str(store))["complete"].values.sum()) == 2
    code, _, err = cli("capture", tiny, "-o", store, "--resume", "--no-progress")
    assert code == 0, err
    assert_stores_identical(reference, str(store))
